/*
 * log.h - one logging vocabulary for the daemon.
 *
 * One line per event: "2026-11-27T15:33:33.123Z level=info thread=w0 msg text key=value ...".
 * Callers write the event first, then key=value fields (client, addr, topic,
 * reason). log_*() append nothing; log_*_errno() append " err=\"strerror(errno)\"".
 * Pure modules (codec, trie, routing) never log; their callers do, once.
 *
 * Thread safe: each line is written with one write(2). The level is a relaxed
 * atomic, so log_set_level() may be called from any thread (reload).
 */
#ifndef KG_LOG_H
#define KG_LOG_H

#include <stdbool.h>

enum log_level { LVL_ERROR = 0, LVL_WARN = 1, LVL_INFO = 2, LVL_DEBUG = 3 };

/* Returns the level for "error", "warn", "info" or "debug", or -1. */
int log_level_parse(const char *name);
const char *log_level_name(int level);
void log_set_level(int level);
bool log_enabled(int level);
/* Sends lines to syslog (ident "kafkagate") instead of stderr. */
void log_use_syslog(bool on);
/* Names the calling thread in its log lines ("main", "w0", "kafka", ...). */
void log_set_thread(const char *name);

void log_write(int level, bool with_errno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(...) log_write(LVL_ERROR, false, __VA_ARGS__)
#define log_warn(...)  log_write(LVL_WARN, false, __VA_ARGS__)
#define log_info(...)  log_write(LVL_INFO, false, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LVL_DEBUG)) log_write(LVL_DEBUG, false, __VA_ARGS__); } while (0)
#define log_error_errno(...) log_write(LVL_ERROR, true, __VA_ARGS__)
#define log_warn_errno(...)  log_write(LVL_WARN, true, __VA_ARGS__)

/* Logs at error level and exits(1). Only at start-up or on a broken invariant. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
