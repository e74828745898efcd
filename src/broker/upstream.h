/*
 * upstream.h - MQTT brokers that kafkagate connects to as a client (config
 * `upstreams`), so that plants keep their broker and their devices keep
 * their configuration.
 *
 * An upstream connection is a struct client in the upstream role (c->up set)
 * on one worker: upstream i belongs to worker i % n_workers for the life of
 * the process. The bytes, framing, TLS, the ack ring and every handler are
 * the ones a device connection uses; what differs is here and in
 * upstream_connect.c:
 *   - the worker connects out (name resolution with getaddrinfo_a(), a
 *     non-blocking connect(), the TLS client handshake), sends CONNECT, and
 *     after CONNACK sends SUBSCRIBE for the configured filters;
 *   - packets from the peer are dispatched by upstream_dispatch(): CONNACK,
 *     SUBACK, UNSUBACK and PINGRESP are a server's answers; PUBLISH (its topic
 *     prefixed) goes through handle_publish() exactly as a device's would:
 *     local subscribers, the ACL (identity: the upstream's name and user
 *     name), the sink, and PUBACK/PUBREC only once the sink answered, in
 *     order, or a close without them so that the upstream resends;
 *   - the outbound half is a private session (not in the directory, so no
 *     device can take it over) whose in-flight window and queue outlive the
 *     connection: downlink commands for this upstream (broker_inject_upstream)
 *     wait there while it is down, are resent after a reconnect, and complete
 *     their track (the Kafka offset) only on the upstream's PUBACK/PUBCOMP;
 *   - PINGREQ every keepalive, reconnect with exponential backoff and jitter.
 *
 * Threads: upstream_check on any thread; upstream_init_all/free_all on the
 * main thread (before the workers start, after they are released); the
 * rest on the owning worker only, but upstream_snapshot() (any thread) and
 * the relaxed counters in struct upstream_stats. last_error is guarded by
 * err_mu, a lock of its own that is never held with another.
 */
#ifndef KG_UPSTREAM_H
#define KG_UPSTREAM_H

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/loop.h"

struct broker;
struct cfg;
struct client;
struct mqtt_packet;
struct msg;
struct session;
struct worker;

enum upstream_state {
	UPSTREAM_DOWN = 0,     /* waiting for the next attempt */
	UPSTREAM_CONNECTING,   /* resolving, TCP, TLS, CONNECT sent */
	UPSTREAM_UP,           /* CONNACK accepted */
};

/* Counters: written by the owning worker (relaxed), read by anyone. */
struct upstream_stats {
	atomic_uint_fast64_t msgs_in;       /* PUBLISH received from the upstream */
	atomic_uint_fast64_t msgs_out;      /* PUBLISH sent to it (commands, resends too) */
	atomic_uint_fast64_t acked_out;     /* commands it acknowledged (PUBACK, PUBCOMP) */
	atomic_uint_fast64_t dropped;       /* received and acknowledged but not taken
	                                       (topic over the limits with the prefix),
	                                       or commands dropped (QoS 0 while down,
	                                       queue full) */
	atomic_uint_fast64_t attempts;      /* connection attempts */
	atomic_uint_fast64_t connects;      /* CONNACKs accepted */
	atomic_uint_fast64_t disconnects;   /* connections (or attempts) that ended */
};

#define UP_INC(up, f) atomic_fetch_add_explicit(&(up)->st.f, 1, memory_order_relaxed)

struct upstream {
	/* Configuration: immutable after upstream_init_all(). */
	int idx;
	char *name;
	char *address;
	int port;
	char *client_id;
	char *username;              /* NULL: none */
	char *password_file;         /* NULL: none; read at each attempt */
	SSL_CTX *tls;                /* NULL: plain TCP */
	char *server_name;           /* verified in the certificate */
	bool clean;
	uint16_t keepalive;
	char **filters;
	uint8_t *qos;
	uint16_t nsubs;
	char *prefix;
	uint16_t prefix_len;
	bool required;               /* /readyz fails while not UP */
	int backoff_min_ms, backoff_max_ms;
	struct broker *br;
	struct worker *w;            /* the owner */

	/* The owner's state. */
	struct session *s;           /* private session, one reference */
	struct client *c;            /* the connection once TCP is up, else NULL */
	struct loop_io cio;          /* the socket while TCP connects (fd -1: none) */
	bool cio_added;
	struct gaicb gai;            /* name resolution in progress: resolving */
	struct addrinfo hints;
	struct addrinfo *ai;         /* resolved addresses (freeaddrinfo) */
	const struct addrinfo *ai_next; /* next one to try in this attempt */
	bool resolving;
	int64_t attempt_ms;          /* start of the current attempt */
	int64_t next_ms;             /* when DOWN: next attempt */
	int64_t up_ms;               /* CONNACK time of the current connection */
	int64_t ping_ms;             /* last PINGREQ */
	int failures;                /* attempts in a row that did not last */
	uint64_t rng;                /* jitter */
	bool subscribed;             /* SUBSCRIBE answered once since start */
	uint16_t sub_pid;            /* SUBSCRIBE awaiting its SUBACK; 0: none */
	struct buf topic;            /* scratch: prefix + received topic */

	/* Shared with the admin thread. */
	atomic_int state;            /* enum upstream_state */
	atomic_int_fast64_t since_ms;/* wall clock of the last state change */
	struct upstream_stats st;
	pthread_mutex_t err_mu;      /* last_error only; never held with another lock */
	char last_error[200];
	int64_t last_error_ms;       /* wall clock; 0: none yet */
	atomic_uint inflight_n;      /* s->out.n and s->queue.n, copied at each tick */
	atomic_uint queued_n;
};

/* A copy of what the admin endpoint shows. */
struct upstream_snapshot {
	enum upstream_state state;
	int64_t since_ms;
	char last_error[200];        /* "" when none */
	int64_t last_error_ms;
	uint32_t inflight, queued;   /* commands awaiting the upstream (approximate) */
};

/* Checks what upstream_init_all() would open or refuse: filters, prefix,
 * client id, the TLS files, the password file. Returns 0, or -1 with
 * "FILE:LINE: reason" in err. Any thread. */
int upstream_check(const struct cfg *cfg, char *err, size_t errlen);
/* Builds br->ups from cfg (br->workers exist). Returns 0, or -1 with
 * "FILE:LINE: reason" in err. Main thread. */
int upstream_init_all(struct broker *br, const struct cfg *cfg, char *err, size_t errlen);
/* After the workers were released (their connections finished): closes a
 * socket still connecting without touching the loop. */
void upstream_free_all(struct broker *br);

/* Worker tick: attempts that are due, name resolution, handshake timeouts,
 * PINGREQ. Owner worker. */
void upstream_tick(struct worker *w);
/* upstream_dispatch.c: every packet from an upstream (dispatch.c). Returns
 * 0, or -1 after closing c. Owner worker. */
int upstream_dispatch(struct client *c, const struct mqtt_packet *p);
/* c is closing (client_close(); was_active: CONNACK had come): DISCONNECT
 * if it was up, the session detached (its window and queue kept, their
 * tracks still owed), the next attempt scheduled. Owner worker. */
void upstream_detach(struct client *c, bool was_active);
/* A downlink command for upstream idx (INBOX_INJECT): sent if connected,
 * else queued in the session (QoS 1/2) or dropped (QoS 0). Borrows m and
 * owes its track one completion. Owner worker. */
void upstream_inject(struct worker *w, int idx, struct msg *m);

/* Records why the upstream is not up, for the status and the log. Owner. */
void upstream_set_error(struct upstream *up, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Moves to state st (and counts). Owner. */
void upstream_set_state(struct upstream *up, enum upstream_state st);
/* The connection ended or an attempt failed: schedules the next one with
 * backoff and jitter. Owner. */
void upstream_schedule(struct upstream *up);

/* upstream_connect.c: the first line of password file path without its
 * line ending, as a new buffer of *len bytes plus a NUL (wipe it with
 * explicit_bzero(p, *len), then free). NULL with errno set (EFBIG: longer
 * than the 65535 bytes a CONNECT carries). Any thread. */
char *upstream_password_read(const char *path, size_t *len);
/* upstream_connect.c: starts an attempt (resolve, connect). Owner. */
void upstream_connect_start(struct upstream *up);
/* upstream_connect.c: polls a name resolution in progress. Owner. */
void upstream_connect_poll(struct upstream *up);
/* upstream_connect.c: abandons an attempt before the client exists (TCP
 * phase or resolution), recording why. Owner, or the main thread at free. */
void upstream_connect_abort(struct upstream *up, const char *why);

/* Copies the shared state of up. Any thread. */
void upstream_snapshot(struct upstream *up, struct upstream_snapshot *out);
/* "down", "connecting", "up". */
const char *upstream_state_name(enum upstream_state st);

#endif
