/*
 * uplink_int.h - what uplink.c (the producer: lifecycle, delivery reports,
 * statistics) and uplink_publish.c (routing a publish into records) share.
 * Not a public interface: other modules use uplink.h.
 */
#ifndef KG_UPLINK_INT_H
#define KG_UPLINK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <librdkafka/rdkafka.h>

#include "core/buf.h"
#include "core/lathist.h"
#include "core/reclaim.h"
#include "kafka/uplink.h"

struct broker;
struct msg;
struct route_table;

/* State of the uplink for one broker worker: only that worker's thread
 * writes it (uplink_publish runs there), so it needs no lock. */
struct uplink_worker {
	struct buf topic, key, value;       /* scratch for rendering records */
	atomic_uint_fast64_t routed;        /* records handed to the producer */
	atomic_uint_fast64_t unrouted;      /* messages that matched no route */
	atomic_uint_fast64_t expired;       /* routed messages not produced: their
					       MQTT 5 Message Expiry had passed */
};

struct uplink {
	struct broker *br;
	struct uplink_worker *wk;    /* one per broker worker */
	int n_wk;
	rd_kafka_t *rk;
	char *dead_letter;           /* NULL: none */
	char *bootstrap;
	pthread_mutex_t rt_mu;       /* guards gen (reload) */
	struct uplink_routes *gen;   /* every table so far, newest first; freed by uplink_free */
	_Atomic(struct uplink_routes *) cur; /* the table publishes use */
	pthread_t thread;
	atomic_bool stop;
	atomic_bool closing;         /* uplink_free(): tickets are freed, not posted */
	bool started;
	int64_t queue_limit;         /* records in flight before UPLINK_BUSY */
	struct uplink_stats st;
	struct uplink_latency lat;
	struct lathist stage_kafka;  /* produce -> delivery report (poll thread) */
	pthread_mutex_t bk_mu;       /* guards brokers, n_brokers */
	struct uplink_broker_state brokers[UPLINK_MAX_BROKERS];
	size_t n_brokers;
	struct uplink_fanout fanout; /* set before the workers start; never changed */
	atomic_int_fast64_t fanout_out; /* fan-out records held, not yet done */
};

/* A routing table with its counters. Never freed before the uplink, so a
 * worker or a delivery report may keep pointing at an old one. */
struct uplink_routes {
	struct route_table *rt;
	struct uplink_route_stats *rs; /* one per route */
	size_t n;
	struct uplink_routes *prev;
};

struct ticket;

/* The opaque of one record: which ticket, which route's counters. */
struct rec {
	struct ticket *t;
	struct uplink_route_stats *rs; /* NULL for a dead letter */
};

/* One per publish; shared by its records. */
struct ticket {
	struct reclaim_node rn;      /* freed by its worker (broker_reclaim) */
	struct uplink *u;
	struct msg *m;               /* raw values point into it */
	uint64_t conn_id;
	uint64_t produced_ns;        /* lathist_now() when its records were produced */
	uint32_t seq;                /* 0: QoS 0, nobody waits */
	atomic_int remaining;
	atomic_bool failed;
	char *clientid;              /* for dead-letter envelopes (inside this allocation) */
	char *username;              /* NULL, or inside this allocation */
	uint16_t clientid_len;
	size_t username_len;         /* 0 when username is NULL */
	uint32_t n_recs;
	struct rec recs[];           /* one per matched route, and one for a dead letter */
};

/* Frees t and drops its message (any thread). */
void uplink_ticket_free(struct ticket *t);
/* One record of t is accounted for; the last one completes t: the broker
 * gets the answer for a QoS 1/2 publish (broker_ack_done), and the ticket
 * goes back to its worker to be freed (any thread). */
void uplink_ticket_release(struct uplink *u, struct ticket *t);
/* A record of t can never be produced as routed: dead letter, or dropped
 * and counted; the publish is acknowledged either way (any thread). */
void uplink_permanent_failure(struct uplink *u, struct ticket *t, const char *ktopic,
			      const char *error);
/* Errors that retrying cannot fix (too large, invalid topic, ...). */
bool uplink_err_is_permanent(rd_kafka_resp_err_t err);

/*
 * The headers of a raw record of m (new; producev takes them): mqtt.topic,
 * mqtt.clientid, mqtt.qos, mqtt.retain, mqtt.username (when username is not
 * NULL), mqtt.message_expiry (when has_expiry: expiry_s, decimal), then one
 * per MQTT 5 property of m in the order received: mqtt.payload_format
 * ("0" | "1"), mqtt.content_type, mqtt.response_topic, mqtt.correlation_data
 * (bytes as they came) and each user property as a header of its own name
 * and value (repeated names kept). Any thread.
 */
rd_kafka_headers_t *uplink_raw_headers(const struct msg *m, const char *clientid,
				       size_t clientid_len, const char *username,
				       size_t username_len, bool has_expiry, uint32_t expiry_s);

/* librdkafka statistics callback of the producer (poll thread). */
int uplink_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque);

#endif
