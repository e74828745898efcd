/*
 * broker.h - process-wide MQTT broker state shared by the workers, and the
 * publish path that turns one incoming message into deliveries.
 *
 * Shared, read-mostly state and its guards:
 *   subs      subscription trie (owner = struct session *, data = granted QoS)
 *             pthread_rwlock subs_lock: publishers read concurrently
 *   retained  retained store, retain_lock
 *   dir       session directory by client id, dir_lock (connect/disconnect only)
 *   lim       limits, atomics so a reload can change them in place
 * Lock order: dir_lock, session mu, subs_lock, retain_lock.
 */
#ifndef KG_BROKER_H
#define KG_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/session.h"

struct cfg;
struct msg;
struct worker;

struct broker_limits {
	atomic_uint max_connections;
	atomic_uint max_packet_size;
	atomic_uint max_inflight;
	atomic_uint max_queued;
	atomic_uint max_output_bytes;
	atomic_uint connect_timeout_ms;
};

#define LIM(br, f) atomic_load_explicit(&(br)->lim.f, memory_order_relaxed)

struct broker {
	struct broker_limits lim;
	int n_workers;
	struct worker *workers;
	pthread_rwlock_t subs_lock;
	struct sub_trie *subs;
	pthread_mutex_t retain_lock;
	struct retain_store *retained;
	pthread_mutex_t dir_lock;
	struct session_dir dir;
	atomic_int n_connections;
	struct uplink *up;           /* NULL: no Kafka configured */
	atomic_uint_fast64_t reloads;         /* SIGHUP reloads applied */
	atomic_uint_fast64_t reload_failures; /* rejected */
};

/* Returns a new broker with `n_workers` workers bound to the configured
 * listeners, or NULL with an error logged. Main thread. */
struct broker *broker_new(const struct cfg *cfg);
/* Starts the worker threads. Returns 0 or -1. */
int broker_start(struct broker *br);
/* Asks every worker to stop accepting and reading (acks and deliveries still
 * go out): the first step of a clean shutdown. Any thread. */
void broker_drain(struct broker *br);
/* Asks every worker to close its connections and stop, and joins them. */
void broker_stop(struct broker *br);
void broker_free(struct broker *br);
/* Applies reloadable limits. Any thread. */
void broker_set_limits(struct broker *br, const struct cfg *cfg);
/* The port worker 0 bound for listener i (useful when the config said 0). */
int broker_listener_port(const struct broker *br, int i);

/*
 * Delivers m to every matching subscription, from worker w: each session at
 * min(m->qos, granted); a session subscribed through several overlapping
 * filters gets one copy at the highest granted QoS. Stores or clears the
 * retained message when m->retain. Borrows m (takes references as needed).
 * Worker thread w only.
 */
void broker_publish(struct worker *w, struct msg *m);

/*
 * Hands m to session s at `qos` from worker w: sent if the session's client
 * is attached to w, posted to the owning worker's inbox if attached elsewhere,
 * queued (QoS > 0) if offline. `retain` is the RETAIN flag to send.
 * Borrows s and m. Worker thread w only.
 */
void broker_deliver(struct worker *w, struct session *s, struct msg *m, uint8_t qos, bool retain);

/*
 * Publishes m as if a client had, from outside the network threads (the
 * downlink). Takes the caller's reference. If m->track is set, the caller
 * initialised track->remaining to 1 (the hold the worker releases after
 * matching); track->done runs once every matching delivery is accounted for
 * (msg.h). The worker is chosen by a hash of the topic so that messages to
 * one topic keep their order. Returns 0 or -1 (then m is released and its
 * track completed). Any thread.
 */
int broker_inject(struct broker *br, struct msg *m);

/* Removes every subscription of s from the trie, drops its queue and marks
 * it discarded. Caller holds dir_lock and has removed s from the directory. */
void broker_discard_session(struct broker *br, struct session *s);

#endif
