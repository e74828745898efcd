/*
 * abuse.h - the abuse driver: hostile loads against a running gateway, one
 * case per subcommand, each ending in one RESULT line (tests/abuse/run.sh
 * starts a fresh gateway per case and turns the lines into a table).
 *
 * Pieces:
 *   abuse.c         main: options, the case table, the RESULT line, /proc
 *                   probes of the gateway (RSS, descriptors) and /metrics
 *   ab_client.c     a blocking MQTT client on the project codec, and the
 *                   legitimate client (a thread timing PUBLISH -> PUBACK
 *                   and CONNECT -> CONNACK while a case runs)
 *   ab_engine.c     many attacker sockets in one epoll loop per process,
 *                   spread over processes; ab_sock.c: one such socket
 *                   (plain, TLS, WebSocket) and its behaviour
 *   ab_conn.c       cases: slowloris, huge remaining lengths, half-received
 *                   packets
 *   ab_flood.c      cases: connect flood, per-address limit, descriptor
 *                   exhaustion
 *   ab_caps.c       cases: subscriptions, QoS 2 ids, topic and id sizes
 *   ab_store.c      cases: retained, queued bytes, session expiry
 *   ab_storm.c      case: client-id takeover storm against late Kafka acks
 *   ab_mock.c       the mock Kafka cluster host the storm's faults go to
 *
 * Single-threaded but for the legitimate client's thread; the engine forks
 * its workers before that thread starts.
 */
#ifndef KG_ABUSE_H
#define KG_ABUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "mqtt/mqtt_codec.h"

#define AB_MB (1024.0 * 1024.0)

/* ---- options and results --------------------------------------------------- */

struct ab_opts {
	bool full;               /* full-size parameters (make abuse) */
	pid_t pid;               /* the gateway */
	const char *host;        /* "127.0.0.1" */
	int port, tls_port, ws_port, metrics_port;
	const char *ws_path;
	const char *host_addr;   /* a non-loopback local address with a listener */
	int host_port;
	const char *bootstrap;   /* the mock cluster the gateway produces to */
	const char *mock_ctl;    /* its control FIFO (abuse mock) */
	const char *log_path;    /* the gateway's log */
	int p99_max_ms;          /* legitimate PUBACK p99 above it fails */
};

enum ab_verdict { AB_PASS, AB_FAIL, AB_SKIP };

/* Latencies in microseconds. */
struct ab_lat {
	int64_t *v;
	size_t n, cap;
};

struct ab_legit_stats {
	size_t pubs, conns;
	size_t fails;            /* PUBACK or CONNACK not within 5 s, or dropped */
	size_t retries;          /* connection attempts refused before one worked */
	double p50_ms, p99_ms, max_ms;          /* PUBLISH -> PUBACK */
	double conn_p99_ms;                     /* first attempt -> CONNACK */
	char first_fail[160];
};

struct ab_result {
	const char *name;
	char params[200];
	enum ab_verdict verdict;
	char reason[400];
	struct ab_legit_stats legit;
	long rss_base_kb, rss_peak_kb;
	int fds_before, fds_after;
};

/* Sets r's verdict to FAIL (the first reason is kept) and returns -1. */
int ab_fail(struct ab_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends to r->reason (after "; "). */
void ab_note(struct ab_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A detail line for people ("# case: ..."), on stdout. */
void ab_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the gateway, from outside ---------------------------------------------- */

int64_t ab_now_ms(void);
int64_t ab_now_us(void);
void ab_sleep_ms(int ms);
/* A "Vm..." field of /proc/PID/status in kB, or -1. */
long ab_gw_kb(pid_t pid, const char *field);
/* Open descriptors (/proc/PID/fd entries) but the sockets to the Kafka
 * brokers of --bootstrap (opened when first needed), or -1. */
int ab_gw_fds(pid_t pid);
/* Descriptors open on exactly this path (e.g. "/dev/null"), or -1. */
int ab_gw_fds_on(pid_t pid, const char *target);
/* Soft RLIMIT_NOFILE of the process, from /proc/PID/limits, or -1. */
long ab_gw_nofile(pid_t pid);
/* CPU time (user + system) in milliseconds, or -1. */
long ab_gw_cpu_ms(pid_t pid);
bool ab_gw_alive(pid_t pid);
/* Waits up to ms for VmRSS to fall to at most kb; returns the last seen. */
long ab_gw_rss_settle(pid_t pid, long kb, int ms);
/* Waits up to ms for the descriptor count to fall to at most want; returns
 * the last count seen. */
int ab_gw_fds_settle(pid_t pid, int want, int ms);
/* The value of one series ("name" or "name{labels}") from /metrics, or -1
 * (absent), or -2 (the endpoint did not answer). */
double ab_metric(const struct ab_opts *o, const char *series);
/* Number of lines of the gateway log holding needle, or -1. */
long ab_log_count(const struct ab_opts *o, const char *needle);

/* ---- a blocking MQTT client (ab_client.c) ----------------------------------- */

struct ab_cli {
	int fd;
	struct buf in;           /* bytes read, not yet parsed */
	uint8_t *pkt;            /* the last packet read, inside in */
	struct mqtt_frame f;
	size_t pkt_len;
};

/* Connects to addr:port (TCP_NODELAY, blocking). Returns the fd or -1. */
int ab_tcp_connect(const char *addr, int port, const char *src, int timeout_ms);
/* TCP connect, then CONNECT (level 4) and CONNACK within timeout_ms. 0 and
 * rc and present filled (either may be NULL) when a CONNACK came, whatever its
 * code; -1 when the connection failed or closed before it (cl->fd < 0). */
int ab_cli_open(struct ab_cli *cl, const char *addr, int port, const char *id, bool clean,
		uint16_t keepalive, uint8_t *rc, bool *present, int timeout_ms);
/* The same with a whole CONNECT of the caller's (will, odd ids). */
int ab_cli_open_with(struct ab_cli *cl, const char *addr, int port, const struct mqtt_connect *k,
		     uint8_t *rc, bool *present, int timeout_ms);
void ab_cli_close(struct ab_cli *cl);
/* Writes all of b (then empties it). 0 or -1 (errno). */
int ab_cli_send(struct ab_cli *cl, struct buf *b);
/* Reads one packet within timeout_ms: 1 (cl->f is it, valid until the next
 * call), 0 peer closed, -1 timeout or error (errno ETIMEDOUT for a timeout). */
int ab_cli_recv(struct ab_cli *cl, int timeout_ms);
/* Sends a 2-byte packet (MQTT_PINGREQ, MQTT_DISCONNECT). 0 or -1. */
int ab_cli_simple(struct ab_cli *cl, uint8_t type);
/* PINGREQ, then true once PINGRESP came (other packets skipped): the
 * connection is open and in step. */
bool ab_cli_ping(struct ab_cli *cl);
/* DISCONNECT, then ab_cli_close(). */
void ab_cli_quit(struct ab_cli *cl);
/* Encoders into b (level 4). */
int ab_enc_publish(struct buf *b, const char *topic, const void *payload, size_t len, int qos,
		   bool retain, uint16_t pid);
int ab_enc_ack(struct buf *b, uint8_t type, uint16_t pid);
int ab_enc_connect(struct buf *b, const char *id, bool clean, uint16_t keepalive);
/* One SUBSCRIBE of n filters (at qos). */
int ab_enc_subscribe(struct buf *b, uint16_t pid, const char *const *filters, size_t n, int qos);

/* ---- the legitimate client (ab_client.c) ------------------------------------ */

enum ab_legit_mode {
	LEGIT_CYCLE,             /* reconnect after every 20 publishes */
	LEGIT_PERSIST,           /* one connection for the whole case */
};

/* Starts the thread: QoS 1 publishes to legit/<tag> (routed to Kafka) from
 * 127.0.0.1, one every 10 ms, each awaiting its PUBACK. 0 or -1. */
int ab_legit_start(const struct ab_opts *o, const char *tag, enum ab_legit_mode mode);
/* Stops it and fills *st. */
void ab_legit_stop(struct ab_legit_stats *st);

/* Latency vectors. */
void ab_lat_add(struct ab_lat *l, int64_t us);
/* Percentile q (0..1) in ms; 0 when empty. Sorts l. */
double ab_lat_pct(struct ab_lat *l, double q);
void ab_lat_free(struct ab_lat *l);

/* ---- the attacker engine (ab_engine.c) -------------------------------------- */

enum ab_transport { TR_PLAIN, TR_TLS, TR_WS };

enum ab_behaviour {
	BH_IDLE,          /* connect and send nothing */
	BH_TRICKLE_PRE,   /* trickle the transport's first bytes (CONNECT on
			   * plain, a ClientHello on TLS, the upgrade request on
			   * WebSocket), one byte per trickle_ms */
	BH_TRICKLE_IN,    /* finish the TLS / WebSocket handshake, then trickle a
			   * CONNECT one byte per trickle_ms */
	BH_SEND,          /* finish the handshake, send bytes, wait for the close */
	BH_CONNECT_SEND,  /* CONNECT, CONNACK, then send bytes, wait for the close */
	BH_CONNECT_HOLD,  /* CONNECT, CONNACK, hold until released */
	BH_CONNECT_QUIT,  /* CONNECT, CONNACK, DISCONNECT and close at once */
};

/* A group of identical connections. */
struct ab_spec {
	const char *label;
	enum ab_transport tr;
	enum ab_behaviour bh;
	int count;
	const uint8_t *bytes;    /* BH_SEND, BH_CONNECT_SEND: borrowed */
	size_t nbytes;
};

struct ab_plan {
	struct ab_spec spec[8];
	int nspec;
	const char *dst;         /* address to connect to (default o->host) */
	int dst_port;            /* plain connections' port (default o->port) */
	const char *src_fixed;   /* every socket from this address; NULL: rotate
				  * over 127.0.0.2 .. 127.0.0.251 */
	double rate;             /* opens per second, all processes together */
	int trickle_ms;
	int deadline_ms;         /* from the first open: give up waiting */
	int procs;               /* 0: one per 15,000 sockets */
	/* BH_CONNECT_HOLD: once every connection is held or closed (or none
	 * changed for 5 s) the engine calls on_hold(ud) in the parent, then
	 * releases them all. */
	void (*on_hold)(void *ud);
	void *ud;
};

enum ab_end {
	END_OPEN,                /* still open when the engine stopped (deadline) */
	END_PEER,                /* the gateway closed it (EOF or reset) */
	END_SELF,                /* we closed it (QUIT, HOLD released) */
	END_CONNECT_ERR,         /* connect() failed */
	END_ERROR,               /* our side failed (TLS error, out of fds) */
};

/* What happened to one connection; times in ms on CLOCK_MONOTONIC (0 =
 * never). Shared with the worker processes. */
struct ab_rec {
	int64_t t_open;          /* connect() called */
	int64_t t_conn;          /* TCP established */
	int64_t t_ready;         /* handshake done / CONNACK */
	int64_t t_first;         /* first byte of the bytes or trickle written */
	int64_t t_sent;          /* all bytes written */
	int64_t t_end;
	uint8_t spec;
	uint8_t end;             /* enum ab_end */
	uint8_t connack;         /* got a CONNACK (return code + 1) */
	int16_t err;             /* errno of END_CONNECT_ERR / END_ERROR */
};

/* Runs plan against o; returns the records (n_out of them; free with
 * ab_recs_free()), or NULL. */
struct ab_rec *ab_engine_run(const struct ab_opts *o, const struct ab_plan *p, size_t *n_out);
void ab_recs_free(struct ab_rec *r, size_t n);

/* Counts over records of one spec (-1: all). */
struct ab_tally {
	size_t n, peer, self, open, conn_err, error, connack, ready;
	int64_t life_min, life_max;     /* t_end - t_conn of END_PEER, ms */
	int64_t after_max;              /* t_end - t_sent of END_PEER with t_sent */
	int64_t first_max;              /* t_end - t_first of END_PEER with t_first */
	int first_err;
};
void ab_tally(const struct ab_rec *r, size_t n, int spec, struct ab_tally *t);
/* One detail line (ab_say) for a tally. */
void ab_tally_say(const char *label, const struct ab_tally *t);

/* ---- cases ---------------------------------------------------------------------- */

struct ab_case {
	const char *name;
	/* The limits group body for this case (one line), and the open-file
	 * limit run.sh should start the gateway with (0: unchanged). */
	void (*limits)(bool full, char *out, size_t cap, long *nofile);
	int (*run)(const struct ab_opts *o, struct ab_result *r);
	enum ab_legit_mode legit;
	bool legit_may_fail;     /* legit failures are reported, not failed */
};

/* Each file's cases, ended by { NULL }; run in this order. */
extern const struct ab_case ab_conn_cases[], ab_flood_cases[], ab_caps_cases[], ab_store_cases[],
	ab_storm_cases[];

/* abuse mock --ctl FIFO --out FILE: hosts the mock cluster (ab_mock.c). */
int ab_mock_main(int argc, char **argv);
/* Sends one command line to the mock host; 0 or -1. */
int ab_mock_cmd(const struct ab_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
