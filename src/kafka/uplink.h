/*
 * uplink.h - MQTT to Kafka: the routing table applied to each publish, the
 * process's one librdkafka producer, and delivery reports back to workers.
 *
 * Threads:
 *  - uplink_publish() runs on the worker that owns the publishing client. It
 *    renders one record per matching route and hands them to the producer.
 *    Each publish gets one ticket shared by its records.
 *  - The producer's poll thread runs the delivery-report callback. It only
 *    counts, produces dead letters, and, when a ticket's last record is
 *    reported, posts INBOX_UPLINK_DONE to the owning worker. It also runs
 *    the statistics callback, which refreshes the broker table.
 *  - uplink_done() runs on that worker: it finds the client by conn_id
 *    (it may be gone) and completes the acknowledgement in order.
 */
#ifndef KG_UPLINK_H
#define KG_UPLINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct cfg;
struct client;
struct msg;
struct route_table;
struct worker;

struct uplink_stats {
	atomic_uint_fast64_t delivered;      /* records acknowledged by Kafka */
	atomic_uint_fast64_t failed;         /* records failed temporarily (not acked to MQTT) */
	atomic_uint_fast64_t dead_letters;   /* records written to the dead-letter topic */
	atomic_uint_fast64_t dropped;        /* permanent failures without a dead-letter topic */
	atomic_uint_fast64_t qos0_failed;    /* QoS 0 records that did not make it */
	atomic_int_fast64_t in_flight;       /* records produced, not yet reported */
	atomic_uint_fast64_t closed;         /* connections closed after a failed delivery */
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
 * completions go to br's workers; or NULL with err set. Main thread.
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

/* A routing table with its per-route counters (opaque). */
struct uplink_routes;
/* Makes rt (takes a reference) the current table with fresh counters and
 * returns it, or NULL (ENOMEM). The caller then hands it to every worker
 * (worker->routes). Older tables stay valid until uplink_free(). Main thread. */
const struct uplink_routes *uplink_set_routes(struct uplink *u, struct route_table *rt);
const struct uplink_routes *uplink_current_routes(struct uplink *u);
/* Returns a new reference to the current routing table. Any thread. */
struct route_table *uplink_routes(struct uplink *u);
const struct uplink_stats *uplink_stats(const struct uplink *u);
/* Counters of route i of the current table, or NULL. Any thread. */
const struct uplink_route_stats *uplink_route_stats(struct uplink *u, size_t i);
const struct uplink_latency *uplink_latency(const struct uplink *u);
/* Current producer queue depth (records librdkafka holds). Any thread. */
int uplink_queue_depth(const struct uplink *u);
const char *uplink_bootstrap(const struct uplink *u);

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

/* Result of uplink_publish(). */
enum uplink_result {
	UPLINK_DONE = 0,     /* nothing to wait for (no route, QoS 0, or dead-lettered at once) */
	UPLINK_PENDING = 1,  /* records in flight: uplink_done() will follow */
	UPLINK_BUSY = -1,    /* producer queue full: nothing produced, retry later */
};

/*
 * Routes m published by c through w's routing table. seq is the client's
 * ack sequence number for QoS 1/2 (0 for QoS 0). Worker thread of c.
 */
enum uplink_result uplink_publish(struct worker *w, struct client *c, struct msg *m,
				  uint32_t seq);

/* Worker thread: a ticket posted by the poll thread (INBOX_UPLINK_DONE). */
void uplink_done(struct worker *w, void *ticket);

#endif
