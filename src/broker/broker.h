/*
 * broker.h - the MQTT broker as the rest of the process sees it: start,
 * drain and stop it, give it a sink for publishes, feed it messages from
 * outside MQTT, and complete the acknowledgements it waits for.
 *
 * This is the only broker header other layers include (admin excepted,
 * read-only). The broker knows nothing of Kafka: every message a client
 * publishes is handed to the sink it was given at start-up, and the sink
 * answers later, from any thread, with broker_ack_done().
 *
 * Threads: broker_new/start/stop/free and broker_set_sink on the main
 * thread; the functions marked "any thread" may be called from anywhere
 * (librdkafka's threads, the admin thread, the main thread on reload).
 */
#ifndef KG_BROKER_H
#define KG_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct cfg;
struct msg;
struct reclaim_node;

/*
 * One publish handed to the sink, borrowed for the duration of the call.
 * conn_id names the publishing connection in broker_ack_done() and
 * broker_reclaim(); worker is the index (0..broker_n_workers()-1) of the
 * worker thread making the call, so that a sink may keep per-worker state
 * without locks.
 */
struct sink_publish {
	uint64_t conn_id;
	int worker;
	const char *clientid;        /* not NUL-terminated: clientid_len bytes */
	uint16_t clientid_len;
	const char *username;        /* NUL-terminated, or NULL */
	struct msg *m;               /* msg_ref() it to keep it */
	uint32_t seq;                /* ack sequence; 0 for QoS 0: nobody waits */
};

enum sink_result {
	SINK_DONE = 0,     /* nothing to wait for: acknowledge now */
	SINK_PENDING = 1,  /* broker_ack_done(conn_id, seq) will follow, exactly once */
	SINK_BUSY = -1,    /* full: nothing taken; the broker retries later and stops
	                      reading from this connection meanwhile */
	SINK_UNROUTED = 2, /* as SINK_DONE, and no route matched: nothing taken
	                      (MQTT 5 may say 0x10 No matching subscribers) */
};

struct broker_sink {
	/* Called on the worker thread that owns the publishing connection. */
	enum sink_result (*publish)(void *ctx, const struct sink_publish *p);
	void *ctx;
};

/* Returns a new broker with its workers bound to the configured listeners,
 * or NULL with an error logged. Main thread. */
struct broker *broker_new(const struct cfg *cfg);
/* Without a sink (the default) QoS 1/2 publishes are acknowledged at once.
 * Set it before broker_start(); copied. Main thread. */
void broker_set_sink(struct broker *br, const struct broker_sink *sink);
/* Starts the worker threads. Returns 0 or -1. */
int broker_start(struct broker *br);
/* Asks every worker to stop accepting and reading (acks and deliveries still
 * go out): the first step of a clean shutdown. Any thread. */
void broker_drain(struct broker *br);
/* Asks every worker to close its connections and stop, and joins them. */
void broker_stop(struct broker *br);
/* NULL ok. */
void broker_free(struct broker *br);

/* Applies reloadable limits. Any thread. */
void broker_set_limits(struct broker *br, const struct cfg *cfg);
/* Checks what the broker will open from cfg (TLS certificates, keys and
 * CAs, the password and ACL files, the upstreams' files and filters) without keeping anything: for --check
 * and before a reload. Returns 0 or -1 with "FILE:LINE: reason" in err.
 * Any thread. */
int broker_check(const struct cfg *cfg, char *err, size_t errlen);
/* Applies a reload: limits, the password and ACL files (CONNECTs after it
 * use the new passwords; every connection's next message the new ACL; a
 * file that fails keeps the old one, logged here), and certificates and
 * keys of the TLS listeners (new handshakes use them; connections keep
 * theirs). Returns 0, or -1 with "FILE:LINE: reason" in err (a listener
 * whose files fail keeps its old ones). Main thread. */
int broker_reload(struct broker *br, const struct cfg *cfg, char *err, size_t errlen);
/* The port worker 0 bound for listener i (useful when the config said 0). */
int broker_listener_port(const struct broker *br, int i);
int broker_n_workers(const struct broker *br);
/* False once a worker's event loop failed (logged); /readyz reports it. */
bool broker_healthy(const struct broker *br);
/* True when every worker ran its periodic tick within max_silence_ms (for
 * the systemd watchdog). Any thread. */
bool broker_alive(const struct broker *br, int64_t max_silence_ms);

/*
 * The sink's answer for (conn_id, seq) after SINK_PENDING: ok = the message
 * is safe (PUBACK/PUBREC may go out, in the order the publishes arrived);
 * !ok = it is not (the connection is closed unacknowledged so that the
 * device resends). Posted to the owning worker; a connection that is gone
 * is ignored. n (NULL ok; n->free set) rides along and is freed by that
 * worker once the answer is handled, so that a sink's per-publish memory
 * goes home in the same hand-off (broker_reclaim() is for the rest). Any
 * thread.
 */
void broker_ack_done(struct broker *br, uint64_t conn_id, uint32_t seq, bool ok,
		     struct reclaim_node *n);

/* Hands n back to the worker that owns conn_id, which calls n->free(n) at
 * its next safe point (core/reclaim.h). Any thread. */
void broker_reclaim(struct broker *br, uint64_t conn_id, struct reclaim_node *n);

/*
 * Publishes m as if a client had, from outside the network threads (the
 * downlink). Takes the caller's reference. If m->track is set, the caller
 * initialised track->remaining to 1 (the hold the worker releases after
 * matching); track->done runs once every matching delivery is accounted for
 * (core/msg.h). The worker is chosen by a hash of the topic so that messages
 * to one topic keep their order. Returns 0 or -1 (then m is released and its
 * track completed). Any thread.
 */
int broker_inject(struct broker *br, struct msg *m);

/* The index of the upstream broker (config `upstreams`) called name, or -1.
 * Any thread. */
int broker_upstream_find(const struct broker *br, const char *name);
/*
 * broker_inject() for upstream idx only: m is published to that broker (at
 * m->qos, with m->retain), not to local subscribers. The track (set up as
 * for broker_inject()) completes once the upstream acknowledged it (PUBACK,
 * PUBCOMP; QoS 0: once written). While the upstream is down, QoS 1/2 wait
 * in its session (limits.max_queued_messages and _bytes; beyond, dropped
 * and completed) and QoS 0 is dropped. Returns 0 or -1 (m released, track
 * completed). Any thread.
 */
int broker_inject_upstream(struct broker *br, int idx, struct msg *m);

/*
 * State in Kafka (state.store = "kafka", docs/scaling.md). The broker keeps
 * its sessions and retained messages in memory as always; the state layer
 * (src/state/) mirrors them to Kafka through these hooks, and feeds back
 * what other instances (or this one before a restart) wrote. Without
 * broker_set_state() (state.store = "memory") nothing here is called.
 */

/* One subscription of a session: its filter (len bytes, not necessarily
 * NUL-terminated) and its options packed as the session keeps them (bits
 * 0-1 granted QoS, bit 2 No Local, bit 3 Retain As Published, bits 4-31
 * the Subscription Identifier; broker/session_subs.h SUBOPT_*). */
struct broker_sub {
	const char *filter;
	uint16_t len;
	uint32_t opts;
};

/* A session as the state topics know it. */
struct broker_session_image {
	uint8_t level;              /* protocol level of its last connection: 3, 4 or 5 */
	uint32_t expiry_s;          /* how long it outlives its connection (0 = never expires
	                               for 3.1.1, whose limit is limits.session_expiry) */
	int64_t parked_at_ms;       /* wall clock it went offline; 0 = unknown (now) */
	const struct broker_sub *subs;
	size_t nsubs;
};

/* A CONNECT that passed authentication, asking to own its client id. */
struct broker_claim {
	uint64_t conn_id;
	int worker;
	const char *id;             /* id_len bytes */
	uint16_t id_len;
	uint8_t level;
	bool clean;                 /* clean session / Clean Start: any old session ends */
	bool persistent;            /* the session outlives the connection (3.1.1 clean 0;
	                               MQTT 5 Session Expiry Interval > 0) */
	uint32_t expiry_s;          /* MQTT 5 Session Expiry Interval (3.1.1: 0) */
	const struct msg *will;     /* the connection's will (borrowed), or NULL */
	uint32_t will_delay_s;      /* MQTT 5 Will Delay Interval */
};

enum broker_claim_result {
	BROKER_CLAIM_OK = 0,        /* this instance owns the id now */
	BROKER_CLAIM_UNAVAILABLE,   /* Kafka could not say: CONNACK 3 / 0x88 */
};

struct broker_state_ops {
	/* A CONNECT wants client id c->id (worker thread). Returns 0: the
	 * connection waits (not reading) until broker_state_claimed() answers,
	 * exactly once, from any thread; -1: refused now (Server unavailable). */
	int (*claim)(void *ctx, const struct broker_claim *c);
	/* The session's subscriptions changed (after a SUBSCRIBE or
	 * UNSUBSCRIBE took effect; all of them, for clean sessions too, so that
	 * other instances can route to them). Owner worker thread.
	 * conn_id 0: nobody waits. Otherwise (a persistent session's
	 * SUBSCRIBE/UNSUBSCRIBE) the broker holds that connection's
	 * SUBACK/UNSUBACK, and reads nothing more from it, until
	 * broker_state_subs_written(br, conn_id, token, ok) is called: exactly
	 * once, from any thread, possibly before this returns; once Kafka
	 * acknowledged the record that carries this set (ok), or at once when
	 * none will (ok false). Without it within subs_timeout_ms the broker
	 * answers anyway, as unconfirmed. */
	void (*subs_changed)(void *ctx, const char *id, uint16_t id_len,
			     const struct broker_sub *subs, size_t n, uint64_t conn_id,
			     uint32_t token);
	/* A persistent session went offline (the connection closed): it lives
	 * expiry_s (3.1.1: limits.session_expiry) from now; will (borrowed,
	 * NULL = none or already published) is due after will_delay_s. Worker
	 * thread. */
	void (*parked)(void *ctx, const char *id, uint16_t id_len, uint32_t expiry_s,
		       const struct msg *will, uint32_t will_delay_s);
	/* The session ended here (clean disconnect, expiry, the close of a
	 * session that does not outlive its connection). Not called for a
	 * session another instance took (broker_state_kick), nor for one that
	 * a newer connection here replaced or discarded (its claim said so
	 * already; the same holds for parked). Any broker thread. */
	void (*ended)(void *ctx, const char *id, uint16_t id_len);
	/* A retained message was stored here from a publish (payload_len 0:
	 * the topic was cleared). Not called for broker_retained_apply().
	 * Worker thread; m borrowed (msg_ref() to keep it). */
	void (*retained)(void *ctx, struct msg *m);
	/* broker_state_kick() is discarding session id, which still holds m
	 * (queued, or sent and not acknowledged) for its client at qos: the
	 * hook carries it to the instance that owns the id now. Called once
	 * per message, in the session's order (unacknowledged first), before
	 * the session goes, then once with m NULL: that was all. Any broker
	 * thread; m borrowed. */
	void (*handover)(void *ctx, const char *id, uint16_t id_len, struct msg *m, uint8_t qos,
			 bool retain);
	/* The durable queue (docs/scaling/queue.md): m is to wait in offline
	 * session id, at qos (a message queued while it is offline, or one
	 * it held when its connection closed; owes: a msg_track_done(m) is
	 * due for it). The hook writes it to Kafka and returns a copy of m
	 * (one reference) whose track is kept (core/msg.h); the session keeps
	 * and owes that copy instead of m until its client acknowledges it,
	 * and the hook completes m's track (when owes) once Kafka has the
	 * copy. NULL: not kept (the session keeps m as without the hook).
	 * May be NULL. Any broker thread, s->mu may be held: it only
	 * produces. */
	struct msg *(*spool)(void *ctx, const char *id, uint16_t id_len, struct msg *m,
			     uint8_t qos, bool retain, bool owes);
	void *ctx;
	/* How long a SUBACK/UNSUBACK waits for broker_state_subs_written()
	 * (state.claim_timeout_ms); 0: 5000. */
	uint32_t subs_timeout_ms;
};

/* Main thread, before broker_start(); copied. */
void broker_set_state(struct broker *br, const struct broker_state_ops *ops);
/*
 * The answer to ops->claim for conn_id. With BROKER_CLAIM_OK, img (NULL =
 * no session known to Kafka, or the claim was clean) is the session the
 * connection resumes when it asked for one (session present = 1): the
 * broker creates it from img when it has none of its own for the id
 * (the one it has is newer when it has one: this instance owned it last).
 * img is copied before the call returns. A connection gone meanwhile is
 * ignored. Any thread.
 */
void broker_state_claimed(struct broker *br, uint64_t conn_id, enum broker_claim_result r,
			  const struct broker_session_image *img);
/* The answer to ops->subs_changed for conn_id's SUBSCRIBE/UNSUBSCRIBE
 * numbered token: ok = Kafka acknowledged the record that carries it; false
 * = it will not (the subscription is in force here all the same: the
 * SUBACK goes out, counted as unconfirmed). Stale or unknown answers are
 * ignored. Only posts to the connection's worker (takes no lock of the
 * caller's): safe under the state layer's locks. Any thread. */
void broker_state_subs_written(struct broker *br, uint64_t conn_id, uint32_t token, bool ok);
/* Another instance owns id now: close the connection attached to it here
 * (MQTT 5: DISCONNECT 0x8E Session taken over; its will published as for
 * any takeover) and discard the session here, without calling ops->parked
 * or ops->ended. Any thread. */
void broker_state_kick(struct broker *br, const char *id, uint16_t id_len);
/* Creates an offline session for id from img unless one exists here (at
 * start, for the sessions this instance owned before a restart, so that
 * what arrives for them before they reconnect is queued). Returns 0, 1 if
 * one existed, -1 ENOMEM. Any thread. */
int broker_state_restore(struct broker *br, const char *id, uint16_t id_len,
			 const struct broker_session_image *img);
/* Stores (or, payload_len 0, clears) m in the retained store as another
 * instance published it; delivers nothing and calls no hook. m borrowed.
 * Returns 0 or -1. Any thread. */
int broker_retained_apply(struct broker *br, struct msg *m);
/* As broker_inject(), to this instance's subscribers only and never to the
 * sink or the state hooks: a message another instance received (to_id
 * NULL: every matching local session; else only the session to_id, through
 * its own subscriptions). The retain flag is delivered as for any publish
 * (Retain As Published) but nothing is stored. Takes the caller's
 * reference; track as for broker_inject(). Any thread. */
int broker_inject_local(struct broker *br, struct msg *m, const char *to_id, uint16_t to_len);

/* At a clean stop, after broker_stop(): hands what every persistent session
 * still holds for its client (sent and unacknowledged, then queued) to the
 * state layer's handover hook, whose owner is this instance now: it writes
 * them to its own inbox, so that the restarted instance queues them again.
 * Returns the number of messages. Main thread. */
size_t broker_state_persist(struct broker *br);

/* Publishes m (borrowed) as the will of client id (NULL ok) as a will of a
 * connection closing here is: to this instance's subscribers and retained
 * store, and to the sink (the Kafka routes; with the state in Kafka, the
 * other instances' subscribers), nobody waiting for the answer. For the
 * wills of sessions adopted from a dead instance. Returns 0 or -1. Any
 * thread. */
int broker_publish_will(struct broker *br, struct msg *m, const char *id, uint16_t id_len);

/* Closes every client connection here (MQTT 5: DISCONNECT 0x88 Server
 * unavailable; wills are not published: the instance cannot tell whether
 * another owns the sessions now), for the state layer when its view of
 * Kafka is older than state.lease_ms. Persistent sessions stay parked.
 * Any thread. */
void broker_close_all(struct broker *br, const char *reason);

/* The broker's side of the state counters, for the state layer's
 * /metrics: connections waiting for a claim's answer now, claims refused
 * (CONNACK 3 / 0x88: claim() said -1, the answer was UNAVAILABLE, or none
 * came within limits.connect_timeout), kicks received. Any thread. */
struct broker_state_stats {
	int64_t claims_waiting;
	uint64_t claims_refused;
	uint64_t kicks;
	uint64_t subacks_waited;      /* SUBACK/UNSUBACKs held for Kafka's acknowledgement */
	uint64_t subacks_unconfirmed; /* of those, answered without it (failed, timed out) */
};
void broker_state_stats(const struct broker *br, struct broker_state_stats *out);

/* Counts a configuration reload for /metrics. Any thread. */
void broker_count_reload(struct broker *br, bool applied);

#endif
