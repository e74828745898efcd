/*
 * daemon.h - tells the service manager how the daemon is doing (the
 * sd_notify protocol of systemd, spoken by hand: no libsystemd).
 *
 * The manager passes a datagram socket in $NOTIFY_SOCKET: a path ("/run/...")
 * or, with a leading '@', a name in Linux's abstract namespace. Each message
 * is one datagram of newline-separated VAR=value lines (READY=1, STOPPING=1,
 * RELOADING=1, WATCHDOG=1, STATUS=text). When NOTIFY_SOCKET is unset or empty
 * (started by hand, in a container, under tests) every function here is a
 * no-op, so callers never need to ask whether they run under systemd.
 *
 * The unit file (systemd/kafkagate.service) is Type=notify with WatchdogSec:
 * READY=1 must come once the listeners are bound and Kafka is reachable,
 * and WATCHDOG=1 at least every daemon_watchdog_interval_ms().
 *
 * Threads: any thread may call any function; each message is sent on its own
 * short-lived socket, so there is no shared state but one "already warned"
 * flag. They read the environment, so nobody may setenv() at the same time.
 * A failed send is logged once (warn) and otherwise ignored: the manager's
 * own timeouts are the remedy, not ours.
 */
#ifndef KG_DAEMON_H
#define KG_DAEMON_H

/*
 * Sends state (one or more "VAR=value" lines, without a trailing newline)
 * as one datagram. Returns 1 when NOTIFY_SOCKET is unset or empty (nothing
 * sent), 0 when sent, -1 with errno set on failure (EINVAL: the variable is
 * neither a path nor an '@' name, or too long for a socket address).
 * Does not log.
 */
int daemon_notify(const char *state);

/* READY=1: start-up finished, or a reload finished (after RELOADING=1). */
void daemon_notify_ready(void);
/* STOPPING=1: shut-down began; the manager waits up to TimeoutStopSec. */
void daemon_notify_stopping(void);
/* RELOADING=1 with MONOTONIC_USEC (newer systemd wants both); send
 * daemon_notify_ready() when the reload is done, whether it worked or not. */
void daemon_notify_reloading(void);
/* STATUS=text, shown by `systemctl status`. Longer text is cut to 255
 * bytes; newlines become spaces (a newline would start another VAR=). */
void daemon_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * How often to call daemon_watchdog_ping(), in milliseconds: half of
 * $WATCHDOG_USEC (at least 1), or 0 when there is no watchdog (no
 * NOTIFY_SOCKET, no or malformed WATCHDOG_USEC, or WATCHDOG_PID names
 * another process).
 */
int daemon_watchdog_interval_ms(void);
/* WATCHDOG=1: "still alive". */
void daemon_watchdog_ping(void);

#endif
