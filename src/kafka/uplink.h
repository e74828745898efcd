/*
 * uplink.h - MQTT to Kafka: the routing table applied to each publish, the
 * process's one librdkafka producer, and delivery reports back to workers.
 *
 The uplink is the broker's sink (broker/broker.h: struct broker_sink).
 *
 * Threads:
 *  - uplink_publish() runs on the broker worker that owns the publishing
 *    connection (sink_publish.worker names it; the uplink keeps per-worker
 *    scratch buffers and counters). It renders one record per matching route
 *    and hands them to the producer. Each publish gets one ticket shared by
 *    its records.
 *  - The producer's poll thread runs the delivery-report callback. It only
 *    counts, produces dead letters, and, when a ticket's last record is
 *    reported, answers the broker (broker_ack_done) and hands the ticket back
 *    to its worker to be freed (broker_reclaim). It also runs the statistics
 *    callback, which refreshes the Kafka broker table.
 */
#ifndef KG_UPLINK_H
#define KG_UPLINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

struct cfg;
struct lathist;
struct msg;
struct route_table;

struct uplink_stats {
	atomic_uint_fast64_t delivered;      /* records acknowledged by Kafka */
	atomic_uint_fast64_t failed;         /* records failed temporarily (not acked to MQTT) */
	atomic_uint_fast64_t dead_letters;   /* records written to the dead-letter topic */
	atomic_uint_fast64_t dropped;        /* permanent failures without a dead-letter topic */
	atomic_uint_fast64_t qos0_failed;    /* QoS 0 records that did not make it */
	atomic_int_fast64_t in_flight;       /* records produced, not yet reported */
};

/* Per route (by route_index() of the current table); reset on reload. */
struct uplink_route_stats {
	atomic_uint_fast64_t routed;         /* records produced */
	atomic_uint_fast64_t delivered;      /* acknowledged by Kafka */
	atomic_uint_fast64_t failed;         /* failed (temporary or permanent) */
	atomic_int_fast64_t in_flight;
};

/* Publish-to-Kafka-ack latency: cumulative-friendly buckets (upper bounds
 * in ms, the last is +Inf), counts per bucket (not cumulative), and sum. */
#define UPLINK_LAT_BUCKETS 12
extern const double uplink_lat_bounds_ms[UPLINK_LAT_BUCKETS - 1];
struct uplink_latency {
	atomic_uint_fast64_t count[UPLINK_LAT_BUCKETS];
	atomic_uint_fast64_t sum_us;
};

struct uplink;

/*
 * Returns a new uplink for cfg's kafka section, producing to bootstrap
 * ("host:port,..."), with the routing table rt (takes a reference), whose
 * answers go to br (one scratch area per broker worker); or NULL with err
 * set. Main thread; then broker_set_sink(br, &(struct broker_sink){
 * uplink_publish, u }) before broker_start().
 */
struct uplink *uplink_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			  struct route_table *rt, char *err, size_t errlen);
/* Starts the poll thread. Returns 0 or -1. */
int uplink_start(struct uplink *u);
/* Waits up to timeout_ms for every produced record to be reported.
 * Returns the number still outstanding. Any thread but the poll thread. */
int uplink_flush(struct uplink *u, int timeout_ms);
/* Stops the poll thread and destroys the producer. NULL ok. */
void uplink_free(struct uplink *u);

/* Makes rt (takes a reference) the current table with fresh counters.
 * Publishes after the call use it (an atomic pointer switch); older tables
 * stay valid until uplink_free(), so a publish in progress or a delivery
 * report may still use one. Returns 0 or -1 (ENOMEM). Main thread. */
int uplink_set_routes(struct uplink *u, struct route_table *rt);
/* Returns a new reference to the current routing table. Any thread. */
struct route_table *uplink_routes(struct uplink *u);
const struct uplink_stats *uplink_stats(const struct uplink *u);
/* Counters of route i of the current table, or NULL. Any thread. */
const struct uplink_route_stats *uplink_route_stats(struct uplink *u, size_t i);
const struct uplink_latency *uplink_latency(const struct uplink *u);
/* Produce call -> successful delivery report, per record (core/lathist.h;
 * the first stage of the acknowledgement path, the broker's worker_stats
 * hold the next two). Any thread. */
const struct lathist *uplink_stage_kafka(const struct uplink *u);
/* Records handed to the producer, and messages that matched no route,
 * summed over the workers. Any thread. */
void uplink_counts(const struct uplink *u, uint64_t *routed, uint64_t *unrouted);
/* Messages that matched a route but were not produced because their MQTT 5
 * Message Expiry Interval had passed (acknowledged as a success), summed
 * over the workers. Any thread. */
uint64_t uplink_expired(const struct uplink *u);
/* Current producer queue depth (records librdkafka holds). Any thread. */
int uplink_queue_depth(const struct uplink *u);
const char *uplink_bootstrap(const struct uplink *u);
/* The librdkafka version linked at run time, e.g. "2.0.2". Any thread. */
const char *uplink_librdkafka_version(void);

/* One Kafka broker as the producer last saw it (librdkafka statistics). */
#define UPLINK_MAX_BROKERS 64
struct uplink_broker_state {
	char name[256];           /* "host:port/nodeid" */
	int32_t nodeid;
	char state[24];           /* librdkafka's: "UP", "DOWN", "INIT", "CONNECT", ... */
};
/*
 * Copies up to max entries of the latest broker table (real brokers only:
 * the internal and not yet identified bootstrap entries are left out) to
 * out and returns how many were copied. The table is refreshed every
 * statistics.interval.ms (default 5 s, 0 disables it: the table stays
 * empty) and holds at most UPLINK_MAX_BROKERS. Any thread.
 */
size_t uplink_broker_states(struct uplink *u, struct uplink_broker_state *out, size_t max);
/* True when state is one of an established connection ("UP", "UPDATE"). */
bool uplink_broker_is_up(const struct uplink_broker_state *b);
/*
 * Readiness for /readyz: asks a Kafka broker for metadata (no topics, 500 ms
 * timeout) on the producer handle; the answer is cached for 1 s so scrapes
 * do not hammer Kafka. Returns 0 when a broker answered, or -1 with the
 * reason in why. Blocks up to the timeout: admin thread, never a worker.
 */
int uplink_ready(struct uplink *u, char *why, size_t len);

/*
 * Cross-instance fan-out (state.store = "kafka": the state layer's bus,
 * docs/scaling/bus.md). The kafka layer knows nothing of the state layer:
 * it calls these for every publish, Kafka route or not, so that a publish
 * with subscribers on other instances also becomes records for them, and
 * its PUBACK/PUBREC waits for those records like for its routed ones.
 *  - wanted: worker thread, every publish: true when m's topic has
 *    subscribers elsewhere. Must be cheap (one lookup) and allocate
 *    nothing: it is the whole cost of a publish nobody elsewhere wants.
 *  - send: worker thread, after wanted() said true, with the publish's
 *    token: before producing each record it calls uplink_fanout_hold(tok),
 *    and for each hold exactly one uplink_fanout_done(tok, ok) follows, on
 *    any thread (ok = false: the publish is answered as failed, the device
 *    resends). m and clientid are valid until the last done().
 * Every done() must have come before uplink_free() (the state layer flushes
 * its producer in state_stop(), before). fn NULL: none (the default).
 */
struct uplink_fanout_tok;
struct uplink_fanout {
	bool (*wanted)(void *ctx, const struct msg *m, const char *clientid,
		       size_t clientid_len);
	void (*send)(void *ctx, struct msg *m, const char *clientid, size_t clientid_len,
		     struct uplink_fanout_tok *tok);
	void *ctx;
};
/* Main thread, before broker_start(); copied. */
void uplink_set_fanout(struct uplink *u, const struct uplink_fanout *f);
void uplink_fanout_hold(struct uplink_fanout_tok *tok);
void uplink_fanout_done(struct uplink_fanout_tok *tok, bool ok);

/*
 * The sink function (broker.h): routes p->m through the current routing
 * table. ctx is the struct uplink. SINK_UNROUTED when no route matched
 * (and no other instance wanted it: struct uplink_fanout),
 * SINK_DONE when nothing else is to wait for (QoS 0, expired, or
 * dead-lettered at once), SINK_PENDING when records are
 * in flight (broker_ack_done follows), SINK_BUSY when the producer queue is
 * full (nothing produced). Worker thread p->worker.
 */
enum sink_result uplink_publish(void *ctx, const struct sink_publish *p);

#endif
