/*
 * log.h - one logging vocabulary for the daemon.
 *
 * One line per event: "2026-11-27T15:33:33.123Z level=info thread=w0 msg text key=value ...".
 * Callers write the event first, then key=value fields (client, addr, topic,
 * reason). log_*() append nothing; log_*_errno() append " err=\"strerror(errno)\"".
 * Pure modules (codec, trie, routing) never log; their callers do, once.
 *
 * Values that come from the network (client ids, usernames, topics, peer
 * strings, HTTP paths, Kafka keys and headers) go through log_q()/log_qn():
 * unquoted, "x addr=10.6.6.6 level=error" would forge fields.
 *
 * Lines an attacker can trigger (refused connections, malformed packets,
 * failed authentication, dropped messages) go through a rate limit:
 * log_warn_rl() and friends, or log_limited() with a shared struct log_limit.
 *
 * Every line is at most LOG_LINE_MAX bytes, newline included (longer text is
 * cut and ends with "... truncated=1"; the err= and suppressed= fields are
 * kept), and is written with one write(2): lines from threads never
 * interleave. LOG_LINE_MAX <= PIPE_BUF keeps that true on a pipe, and a
 * regular file gets O_APPEND on the first line written to it (threads
 * sharing one offset would overwrite each other's lines). Control
 * bytes in the formatted text are escaped (\n, \xHH), so one call is always
 * one line; that alone does not stop field forging, log_q() does.
 *
 * Thread safe: any function may be called from any thread. The level is a
 * relaxed atomic, so log_set_level() may be called from any thread (reload).
 * Every function keeps errno.
 *
 * Files: log_quote.c implements log_q() and log_qn(), log.c the rest.
 */
#ifndef KG_LOG_H
#define KG_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LVL_ERROR = 0, LVL_WARN = 1, LVL_INFO = 2, LVL_DEBUG = 3 };

#define LOG_LINE_MAX 4096

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

/* The level is checked before the arguments are evaluated: a line that is
 * off costs no log_q() and no formatting. */
#define log_at_(level, with_errno, ...) do { \
	if (log_enabled(level)) \
		log_write(level, with_errno, __VA_ARGS__); \
} while (0)

#define log_error(...) log_at_(LVL_ERROR, false, __VA_ARGS__)
#define log_warn(...)  log_at_(LVL_WARN, false, __VA_ARGS__)
#define log_info(...)  log_at_(LVL_INFO, false, __VA_ARGS__)
#define log_debug(...) log_at_(LVL_DEBUG, false, __VA_ARGS__)
#define log_error_errno(...) log_at_(LVL_ERROR, true, __VA_ARGS__)
#define log_warn_errno(...)  log_at_(LVL_WARN, true, __VA_ARGS__)

/* Logs at error level and exits(1). Only at start-up or on a broken invariant.
 * Not subject to any rate limit. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Quoting network values: log_q(s) and log_qn(s, len) return s as a quoted,
 * escaped string for a "%s" field: client=%s -> client="x addr=10.6.6.6".
 *
 * - Always quoted, even a safe token such as "sensor-1" or "a/b/c": a field
 *   quoted in the log came from a peer, and a parser never has to guess.
 *   Two bytes per topic is a fair price for that.
 * - `"` and `\` become \" and \\; newline, CR and tab become \n, \r, \t;
 *   other control bytes (0x00-0x1f, 0x7f), bytes that are not well-formed
 *   UTF-8, and the UTF-8 of C1 controls (U+0080-U+009F), line and paragraph
 *   separators (U+2028, U+2029) and bidi controls (U+200E, U+200F,
 *   U+202A-U+202E, U+2066-U+2069) become \xHH per byte (lower-case hex).
 *   Other well-formed UTF-8 is kept as is.
 * - At most LOG_Q_MAX bytes of escaped text go between the quotes; a longer
 *   value is cut at a character boundary and ends with ...: "aaaa...".
 * - NULL gives - (bare), so client=- still means "no id"; "" gives "".
 * - log_qn() takes len bytes, NUL bytes included (Kafka keys, binary ids).
 *
 * The result lives in one of LOG_Q_SLOTS thread-local slots used in turn:
 * it is valid until the calling thread has made LOG_Q_SLOTS more calls, so
 * up to LOG_Q_SLOTS of them fit in one log call. No allocation, no lock;
 * never NULL. Any thread.
 */
#define LOG_Q_SLOTS 8
#define LOG_Q_MAX   256

const char *log_q(const char *s) __attribute__((returns_nonnull));
const char *log_qn(const char *s, size_t len) __attribute__((returns_nonnull));

/*
 * Rate limits: a token bucket (GCRA: one atomic, lock-free) per kind of
 * line. A kind lets `burst` lines through at once, then `per_sec` a second;
 * the others are counted, not written. The next line of that kind that
 * passes ends with " suppressed=N" (N lines dropped since the last report),
 * and log_flush_suppressed() reports the counts of kinds that went quiet.
 * A line below the current level neither takes a token nor counts.
 *
 * One kind per call site: log_warn_rl("conn rejected addr=%s ...", ...)
 * declares its own static limit (LOG_RL_PER_SEC, LOG_RL_BURST) named after
 * the format's event words, those before the first key= or %: "conn
 * rejected". The format must be a string literal.
 *
 * One kind shared by several call sites, or other numbers: a struct with
 * static storage duration (it joins a list that log_flush_suppressed()
 * walks and is never unlinked) and log_limited():
 *
 *	static struct log_limit lim_refused = LOG_LIMIT("conn rejected", 10, 50);
 *	log_limited(&lim_refused, LVL_WARN, false, "conn rejected addr=%s", peer);
 *
 * per_sec == 0 means no limit. Fields are private to log.c.
 */
struct log_limit {
	const char *kind;              /* for the summary line: kind="..." */
	uint32_t per_sec, burst;
	_Atomic int64_t tat;           /* GCRA: theoretical arrival time, us */
	atomic_ullong suppressed;      /* dropped since the last report */
	atomic_int level;              /* of the dropped lines */
	atomic_bool listed;
	struct log_limit *next;        /* written once, before it is listed */
};

#define LOG_LIMIT(kind_, per_sec_, burst_) \
	{ .kind = (kind_), .per_sec = (per_sec_), .burst = (burst_) }

#define LOG_RL_PER_SEC 10
#define LOG_RL_BURST   50

/* Any thread. Writes the line if lim and the global cap let it through. */
void log_limited(struct log_limit *lim, int level, bool with_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define LOG_FIRST_(a, ...) a
#define log_rl_(level, with_errno, ...) do { \
	static struct log_limit log_lim_ = \
		LOG_LIMIT(LOG_FIRST_(__VA_ARGS__, 0), LOG_RL_PER_SEC, LOG_RL_BURST); \
	if (log_enabled(level)) \
		log_limited(&log_lim_, level, with_errno, __VA_ARGS__); \
} while (0)

#define log_error_rl(...)       log_rl_(LVL_ERROR, false, __VA_ARGS__)
#define log_warn_rl(...)        log_rl_(LVL_WARN, false, __VA_ARGS__)
#define log_info_rl(...)        log_rl_(LVL_INFO, false, __VA_ARGS__)
#define log_debug_rl(...)       log_rl_(LVL_DEBUG, false, __VA_ARGS__)
#define log_error_errno_rl(...) log_rl_(LVL_ERROR, true, __VA_ARGS__)
#define log_warn_errno_rl(...)  log_rl_(LVL_WARN, true, __VA_ARGS__)

/*
 * The global cap, a backstop for every error, warn and info line (debug is
 * the operator's choice and is not capped): per_sec lines a second after a
 * burst of `burst` (defaults 1000 and 5000; per_sec 0 turns it off). Lines
 * it drops are counted under their kind when they have one, else reported
 * as "log lines suppressed kind=\"global\" suppressed=N" before the next line
 * that passes. A new limit starts with a full bucket. Any thread.
 */
void log_set_global_limit(uint32_t per_sec, uint32_t burst);

/* Writes "log lines suppressed kind=\"...\" suppressed=N" for every kind
 * (and the global cap) that dropped lines since its last report. Call it
 * about once a second from one thread (the main loop's tick). Each dropped
 * line is reported exactly once, here or on its kind's next line. */
void log_flush_suppressed(void);

/* Tests: sends lines to fd instead of stderr (the caller keeps it; -1
 * restores stderr), and reads the rate limits' time from now_us (monotonic
 * microseconds; NULL restores CLOCK_MONOTONIC). */
void log_set_fd(int fd);
void log_set_clock(int64_t (*now_us)(void));

#endif
