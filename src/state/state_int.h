/*
 * state_int.h - what the files of src/state/ share. Not for other layers.
 *
 * Files and what each owns (docs/scaling.md is the design):
 *   state.c           struct state: start/stop, the topics (created or
 *                     checked), the producer, the reader thread that reads
 *                     <prefix>.sessions, .retained and .instances from the
 *                     beginning and hands each record to its module below,
 *                     readiness (caught up), heartbeats and the lease.
 *   state_retained.c  retained messages <-> <prefix>.retained.
 *   state_sessions.c  the sessions view (<prefix>.sessions), claims and
 *                     epochs, the broker's state hooks, kicks, restores.
 *   state_bus.c       cross-instance delivery: the remote subscriptions and
 *                     the per-instance inbox topics <prefix>.inbox.<id>.
 *   state_owner.c     wills and expiry of sessions whose instance died.
 *   state_rec.c       the record formats (encode/decode), pure.
 */
#ifndef KG_STATE_INT_H
#define KG_STATE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "state/state.h"

#define STATE_ID_MAX 200
#define STATE_TOPIC_MAX 249

struct state_sessions;
struct state_retained;
struct state_bus;
struct state_owner;

struct state {
	const struct cfg *cfg;
	struct broker *br;
	char instance_id[STATE_ID_MAX + 1];
	char t_sessions[STATE_TOPIC_MAX + 1];   /* <prefix>.sessions */
	char t_retained[STATE_TOPIC_MAX + 1];   /* <prefix>.retained */
	char t_instances[STATE_TOPIC_MAX + 1];  /* <prefix>.instances */
	char t_inbox[STATE_TOPIC_MAX + 1];      /* <prefix>.inbox.<instance_id> */
	char bootstrap[1024];
	int64_t started_ms;                     /* wall clock */
	/* One idempotent producer (acks=all, murmur2_random) for every state
	 * record; its delivery reports run on its own poll thread. */
	rd_kafka_t *prod;
	atomic_bool stopping;
	atomic_bool caught_up;      /* the reader reached the ends seen at start */
	atomic_bool kafka_ok;       /* the producer and reader hear from Kafka */
	atomic_llong last_heard_ms; /* monotonic: last record or partition EOF read */
	struct state_sessions *sessions;
	struct state_retained *retained;
	struct state_bus *bus;
	struct state_owner *owner;
	struct state_core *core;    /* state.c's own: threads, instances, counters */
};

/* Producing a state record: value NULL = tombstone. key is copied. The
 * delivery report calls done(ud, err, partition, offset) on the producer's
 * poll thread (done NULL: fire and forget, failures logged). Returns 0 or
 * -1 (queue full or stopping; done is then not called). */
typedef void (*state_dr_fn)(void *ud, rd_kafka_resp_err_t err, int32_t partition,
			    int64_t offset);
int state_produce(struct state *st, const char *topic, const void *key, size_t keylen,
		  const void *value, size_t vlen, rd_kafka_headers_t *hdrs /* taken, NULL ok */,
		  state_dr_fn done, void *ud);

/* Monotonic ms. */
int64_t state_now_ms(void);
/* Wall clock ms. */
int64_t state_wall_ms(void);

/* Each module: created by state_new() after the topics exist, records
 * handed over by the reader thread in partition order, a tick every 100 ms
 * on the reader thread, freed after the reader stopped. *_caught_up is
 * called once when the reader reached the ends seen at start (before
 * readiness). */
struct state_sessions *state_sessions_new(struct state *st);
void state_sessions_record(struct state_sessions *ss, const rd_kafka_message_t *rec);
void state_sessions_caught_up(struct state_sessions *ss);
void state_sessions_tick(struct state_sessions *ss);
/* The offset the reader reached in partition p of <prefix>.sessions (the
 * next it will read): claims wait until it passes their own. */
void state_sessions_reader_at(struct state_sessions *ss, int32_t p, int64_t next_offset);
void state_sessions_free(struct state_sessions *ss);
/* One session as <prefix>.sessions says it (state_sessions_foreach()). */
struct state_session_info {
	const char *id;           /* id_len bytes, NUL-terminated */
	uint16_t id_len;
	int32_t partition;        /* of <prefix>.sessions */
	const char *owner;        /* the instance it is online on or parked at */
	int64_t boot;             /* the owner's boot (wall ms) when it wrote */
	int state;                /* enum state_rec_state: online, parked, ended */
	bool persistent;
	uint8_t level;
	uint32_t expiry_s;
	int64_t parked_at;        /* wall ms; 0 = online */
	int64_t at;               /* wall ms of its last record */
	bool has_will;            /* a will not yet published */
	uint32_t will_delay_s;
};
typedef void (*state_sessions_cb)(void *ud, const struct state_session_info *si);
/* Calls cb for every session known in partition p of <prefix>.sessions (-1:
 * every partition), ended ones left out, on a copy taken under the lock:
 * cb may call state_sessions_adopt(). Any thread. */
void state_sessions_foreach(struct state_sessions *ss, int32_t partition, state_sessions_cb cb,
			    void *ud);
/* Takes the session id over from a dead owner (state_owner.c), as at a
 * restart for this instance's own: a persistent session that has not
 * expired is adopted (an "adopt" record; once read back it is restored
 * here, parked) and its will published once its delay passed; an expired
 * or non-persistent one gets an "end" record; either way a will not yet
 * published is published once, after a "will" record said so. Returns 0
 * (started), 1 (nothing to do: unknown, ended, already ours or in
 * progress) or -1. Any thread. */
int state_sessions_adopt(struct state_sessions *ss, const char *id, uint16_t id_len);

/* Counters for /metrics. Any thread. */
struct state_sessions_stats {
	uint64_t known;           /* sessions in the view (not ended) */
	uint64_t claims_ok, claims_refused, claims_timed_out;
	uint64_t kicks, written, write_failed, stale, malformed, adopted, wills;
};
void state_sessions_stats(struct state_sessions *ss, struct state_sessions_stats *out);
/* Appends those counters (kafkagate_state_sessions_known, _claims_*,
 * _kicks_total, _session_records_*, ...) to a /metrics scrape; for
 * state_metrics_render(). Returns 0 or -1. Any thread. */
struct buf;
int state_sessions_metrics_render(struct buf *out, struct state_sessions *ss);

/* Publishes m (the caller's reference taken) as client id published it: to
 * the Kafka routes, this instance's subscribers and retained store, and the
 * subscribers on other instances. For wills whose connection died with an
 * instance (state_sessions.c); state.c: broker_publish_will(). Returns 0
 * or -1. Any thread. */
struct msg;
int state_publish(struct state *st, const char *id, uint16_t id_len, struct msg *m);

struct state_retained *state_retained_new(struct state *st);
void state_retained_record(struct state_retained *sr, const rd_kafka_message_t *rec);
void state_retained_free(struct state_retained *sr);

/* The broker's hooks (struct broker_state_ops): state_new() sets them with
 * broker_set_state(), ctx = the struct state, and each calls the module's
 * function below with the same arguments (broker/broker.h says the threads). */
struct broker_claim;
struct broker_sub;
struct msg;
int state_sessions_claim(struct state_sessions *ss, const struct broker_claim *c);
void state_sessions_subs_changed(struct state_sessions *ss, const char *id, uint16_t id_len,
				 const struct broker_sub *subs, size_t n);
void state_sessions_parked(struct state_sessions *ss, const char *id, uint16_t id_len,
			   uint32_t expiry_s, const struct msg *will, uint32_t will_delay_s);
void state_sessions_ended(struct state_sessions *ss, const char *id, uint16_t id_len);
void state_retained_hook(struct state_retained *sr, struct msg *m);
/* Counters of state_retained.c for /metrics (relaxed loads). */
void state_retained_counts(const struct state_retained *sr, uint64_t *written,
			   uint64_t *applied, uint64_t *cleared);

/* Instances: heartbeats read from <prefix>.instances (state.c keeps them);
 * true when id wrote a heartbeat ("up", or "down" at a clean stop) within
 * lease_ms: a clean restart within the lease keeps its sessions. */
bool state_instance_alive(struct state *st, const char *id);
/* The "boot" of id's latest heartbeat (its start, wall ms), or -1 when none
 * was read. Any thread. */
int64_t state_instance_boot(struct state *st, const char *id);

struct state_bus *state_bus_new(struct state *st);
int state_bus_start(struct state_bus *sb);
/* A session's subscriptions as read from <prefix>.sessions (n = 0, owner
 * NULL: it ended). owner is the instance it is online on or parked at. */
struct broker_sub;
void state_bus_subs(struct state_bus *sb, const char *id, uint16_t id_len, const char *owner,
		    const struct broker_sub *subs, size_t n);
/* Hooks the bus into the uplink's publishes and the downlink's records
 * (uplink_set_fanout, downlink_set_fanout; either NULL ok). Main thread,
 * after state_bus_new() and uplink_new()/downlink_new(), before
 * broker_start(). */
struct uplink;
struct downlink;
void state_bus_attach(struct state_bus *sb, struct uplink *up, struct downlink *dl);
/* Sends m (borrowed) to the other instances whose sessions subscribe to
 * its topic, as a publish of client `from` (NULL ok) made here, fire and
 * forget (failures counted and logged): for state_publish() (wills of
 * connections that died with an instance). Returns the number of inbox
 * records produced. Any thread. */
struct msg;
size_t state_bus_send(struct state_bus *sb, struct msg *m, const char *from, size_t from_len);
/* Sends m (borrowed) to instance owner's inbox for the session of client
 * `to` only (header kg.to): what a session taken by owner still held here
 * (the broker's handover hook). Fire and forget. Returns 0 or -1. Any
 * thread. */
int state_bus_send_to(struct state_bus *sb, const char *owner, const char *to, size_t to_len,
		      struct msg *m);
/* The instance that owns client id's session in the view (online or
 * parked), copied to out. Returns 0, or -1 when unknown or ended. Any
 * thread. */
int state_sessions_owner(struct state_sessions *ss, const char *id, uint16_t id_len, char *out,
			 size_t cap);
/* Stops the inbox consumer (waits up to its grace for the devices' acks,
 * commits): before broker_stop(), like downlink_stop(). The state
 * producer must be flushed before uplink_free() (inbox records hold the
 * uplink's publishes). */
void state_bus_stop(struct state_bus *sb);
void state_bus_free(struct state_bus *sb);
/* Appends the bus families (kafkagate_state_bus_*: remote sessions and
 * filters, records sent/failed/received/skipped, inbox lag) to a /metrics
 * scrape; for state_metrics_render(). Returns 0 or -1. Any thread. */
struct buf;
int state_bus_metrics_render(struct buf *out, struct state_bus *sb);

struct state_owner *state_owner_new(struct state *st);
void state_owner_tick(struct state_owner *so);
void state_owner_free(struct state_owner *so);
/* The sessions partitions this instance watches now (up to max written to
 * parts); returns how many. Any thread (metrics, tests). */
size_t state_owner_watched(struct state_owner *so, int32_t *parts, size_t max);
/* Appends kafkagate_state_owner_partitions, _adopts_total and
 * _rebalances_total to a /metrics scrape; for state_metrics_render().
 * Returns 0 or -1. Any thread. */
int state_owner_metrics_render(struct buf *out, struct state_owner *so);

#endif
