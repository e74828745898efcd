/*
 * gw.h - start and stop the gateway binary for an integration test.
 *
 * gw_start() writes a libconfig file into a fresh temporary directory, spawns
 * the binary named by $KG_BIN (default build/kafkagate) with
 * "--config <dir>/gw.cfg", sends its stdout and stderr to <dir>/gw.log and
 * waits until its MQTT port accepts TCP connections.
 *
 * With KG_BROKER=mosquitto the same calls run $KG_MOSQUITTO (default
 * /usr/sbin/mosquitto) on a minimal mosquitto config instead, so that test
 * tools can be validated against a reference broker. extra_cfg is ignored then.
 *
 * Other environment: KG_KEEP=1 keeps the temporary directory (config and log)
 * after gw_stop(); TMPDIR chooses where it is made (default /tmp).
 *
 * The child gets PR_SET_PDEATHSIG(SIGKILL): if the thread that called
 * gw_start() dies, so does the gateway, and nothing outlives a crashed test.
 *
 * Not thread safe: call these from one thread (the test's main thread).
 */
#ifndef KG_GW_H
#define KG_GW_H

#include <stdbool.h>
#include <sys/types.h>

struct gw {
	pid_t pid;          /* 0 when not running */
	int port;           /* MQTT listener on 127.0.0.1 */
	int metrics_port;   /* kept by gw_start(); waited for when the config names it */
	bool wait_metrics;       /* gw_start() also waits for metrics_port (it is in the config) */
	char dir[256];      /* temporary directory, "" when none */
	char cfg_path[300];
	char log_path[300];
};

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0,
 * read it, close), or -1. Another process may take it before it is used. */
int gw_free_port(void);

/*
 * Starts the gateway on a free port with this config:
 *   listeners = ( { address = "127.0.0.1"; port = P; } );
 *   log = { level = "debug"; };
 * followed by extra_cfg verbatim (may be NULL), e.g. "limits = { max_inflight = 2; };".
 * Every field of *g is set except metrics_port, which is left as the caller
 * set it: a test that needs metrics sets g->metrics_port = gw_free_port() and
 * writes "metrics = { port = N; ... };" into extra_cfg itself.
 * Waits at most 10 s for the port. Returns 0, or -1 after printing the tail of
 * the log to stderr (the process is stopped and the directory removed).
 */
int gw_start(struct gw *g, const char *extra_cfg);

/*
 * SIGTERM, waits up to 10 s, then SIGKILL. Removes the directory unless
 * KG_KEEP=1. Returns the exit code, 128 + N if signal N ended the process
 * (137 when SIGKILL was needed), or -1 if no process was running.
 */
int gw_stop(struct gw *g);

/* Sends sig to the gateway (SIGHUP to reload, SIGKILL to crash it, ...).
 * Does not reap: gw_stop(), gw_restart() or gw_wait_exit() do. */
void gw_kill(struct gw *g, int sig);

/* Waits up to timeout_ms for the process to exit by itself. Returns its exit
 * status as gw_stop() does, or -1 if it is still running (or none was). */
int gw_wait_exit(struct gw *g, int timeout_ms);

/* Stops the process (as gw_stop, keeping the directory) and starts it again
 * with the same config file and port. Returns 0 or -1 as gw_start(). The log
 * file is appended to, so it holds both runs. */
int gw_restart(struct gw *g);

/* True if the log holds needle (byte-exact). */
bool gw_log_contains(struct gw *g, const char *needle);
/* Polls the log every 20 ms until it holds needle or timeout_ms passes. */
bool gw_log_wait(struct gw *g, const char *needle, int timeout_ms);

/* ---- a whole config: several listeners, files beside it -------------------- */

/*
 * Starts the gateway on cfg, written verbatim as its whole config file: no
 * listener or log line is added, so cfg names every listener (port = 0 lets
 * the gateway pick free ports; gw_listener_port() says which) and the log
 * level. files_dir (may be NULL): every regular file directly in it is
 * copied into g->dir first, so that relative paths in cfg (certificates,
 * keys, password files) name this gateway's own copies, which the test may
 * replace before a SIGHUP. Waits at most 10 s for the "kafkagate started"
 * log line, then sets g->port to listener 0's port and, when cfg has a
 * metrics group, g->metrics_port to the port it bound. Returns 0, or -1
 * after printing the tail of the log (stopped, directory removed).
 * kafkagate only: under KG_BROKER=mosquitto it prints why and returns -1.
 * gw_restart() does not suit a gateway whose ports are 0 (it would bind
 * others): gw_stop() and start again.
 */
int gw_start_files(struct gw *g, const char *files_dir, const char *cfg);

/* The port listener i (0-based, in config order) is bound to, from the
 * "listening address=... port=N" lines the gateway logged when it started
 * (the first start, if the log holds several), or -1. */
int gw_listener_port(struct gw *g, int i);

/* ---- the process's memory ------------------------------------------------- */

/* A "kB" field of /proc/PID/status ("VmRSS", "VmHWM", "VmSize", ...), or
 * -1 when it cannot be read (not printed: the process may be gone). */
long gw_pid_kb(pid_t pid, const char *field);
/* gw_pid_kb() of the running gateway; -1 is printed. */
long gw_mem_kb(const struct gw *g, const char *field);

/* True when the gateway is a sanitizer build: ASan's shadow mapping gives it
 * terabytes of VmSize. ASan keeps freed memory in quarantine, so such a
 * build's RSS follows the bytes that went through it, not what it holds:
 * tests skip their RSS bounds there. */
bool gw_is_asan(const struct gw *g);

#endif
