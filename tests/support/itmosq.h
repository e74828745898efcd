/*
 * itmosq.h - a real mosquitto for the integration tests that bridge an
 * existing broker (it_upstream.c) and for bench/upstream.sh's checks.
 *
 * itmosq_start() makes a temporary directory, writes mosquitto.conf there
 * (a plain listener on 127.0.0.1 at a free port, the log in the directory,
 * persistence in it when asked, then the caller's lines verbatim), spawns
 * $KG_MOSQUITTO (default /usr/sbin/mosquitto) with PR_SET_PDEATHSIG and
 * waits until the port accepts connections. Stopping is by PID only.
 *
 * Not thread safe: call from the test's main thread. Failures print one
 * line on stderr and return -1; the test asserts.
 */
#ifndef KG_ITMOSQ_H
#define KG_ITMOSQ_H

#include <stdbool.h>
#include <sys/types.h>

struct itmosq {
	pid_t pid;          /* 0 when not running */
	int port;           /* the plain listener */
	char dir[256];      /* temporary directory; "" before start */
	char conf[300];
	char log[300];
};

/* Starts mosquitto as above. persistence: "persistence true" with the
 * database in dir. extra: more config lines (may be NULL), e.g. a TLS
 * listener; "%D" in them is replaced by dir. Waits at most 5 s. */
int itmosq_start(struct itmosq *m, bool persistence, const char *extra);
/* SIGTERM (mosquitto saves its database then), waits up to 5 s (then
 * SIGKILL). The directory stays. Returns 0, or -1 if none was running. */
int itmosq_stop(struct itmosq *m);
/* Starts it again on the same config and port. Returns 0 or -1. */
int itmosq_restart(struct itmosq *m);
/* Sends sig (SIGSTOP, SIGCONT, ...). */
void itmosq_signal(struct itmosq *m, int sig);
/* Stops it if running and removes the directory (kept with KG_KEEP=1). */
void itmosq_release(struct itmosq *m);
/* Runs `mosquitto_passwd -b FILE user password` with FILE in dir. Returns 0 or -1. */
int itmosq_passwd(struct itmosq *m, const char *file, const char *user, const char *password);

#endif
