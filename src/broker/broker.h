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

/* Counts a configuration reload for /metrics. Any thread. */
void broker_count_reload(struct broker *br, bool applied);

#endif
