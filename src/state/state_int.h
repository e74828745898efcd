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
 *   state_queue.c     the queues of offline sessions in <prefix>.queue.<id>,
 *                     read back after a restart, an adoption or a claim.
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
struct state_queue;

struct state {
	const struct cfg *cfg;
	struct broker *br;
	char instance_id[STATE_ID_MAX + 1];
	char t_sessions[STATE_TOPIC_MAX + 1];   /* <prefix>.sessions */
	char t_retained[STATE_TOPIC_MAX + 1];   /* <prefix>.retained */
	char t_instances[STATE_TOPIC_MAX + 1];  /* <prefix>.instances */
	char t_inbox[STATE_TOPIC_MAX + 1];      /* <prefix>.inbox.<instance_id> */
	char t_queue[STATE_TOPIC_MAX + 1];      /* <prefix>.queue.<instance_id> */
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
	struct state_queue *queue;
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

/* As state_produce(), to one partition (RD_KAFKA_PARTITION_UA: the
 * partitioner's choice). */
int state_produce_part(struct state *st, const char *topic, int32_t partition, const void *key,
		       size_t keylen, const void *value, size_t vlen, rd_kafka_headers_t *hdrs,
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
				 const struct broker_sub *subs, size_t n, uint64_t conn_id,
				 uint32_t token);
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
/* The headers of a record of an inbox or queue topic (docs/scaling/bus.md):
 * mqtt.topic, mqtt.qos (= qos), mqtt.retain, kg.props, kg.expires, kg.from,
 * kg.from_client (from, when not NULL). New; state_produce() takes them. */
rd_kafka_headers_t *state_bus_headers(struct state *st, const struct msg *m, uint8_t qos,
				      const char *from, size_t from_len);
/* The message an inbox or queue record carries (new, one reference), with
 * *to / *to_len its kg.to header (NULL when none; borrowed from rkm). NULL:
 * skip it (*why says why; NULL when it expired on the way). */
struct msg *state_bus_msg_of(const rd_kafka_message_t *rkm, const void **to, size_t *to_len,
			     const char **why);
/* Delivers m (the caller's reference and track taken) to the session of
 * client `to` only: here (broker_inject_local) unless the view says
 * another instance owns it now, then to that instance's inbox (header
 * kg.to; m's track completes once the record is written). Any thread. */
void state_bus_deliver_to(struct state_bus *sb, struct msg *m, const void *to, size_t to_len);

/* The queues of offline sessions in <prefix>.queue.<id> (state_queue.c,
 * docs/scaling/queue.md). */
struct state_queue *state_queue_new(struct state *st);
/* The restore thread. Returns 0 or -1. */
int state_queue_start(struct state_queue *q);
/* Stops the restore thread (jobs not run are dropped). */
void state_queue_stop(struct state_queue *q);
/* After the state producer's last delivery report. */
void state_queue_free(struct state_queue *q);
/* The broker's spool hook (broker.h, ops->spool). */
struct msg *state_queue_spool(struct state_queue *q, const char *id, uint16_t id_len,
			      struct msg *m, uint8_t qos, bool retain, bool owes);
/* Reads back what session id kept in <prefix>.queue.<inst> from offset off
 * (inst NULL or "": no queue) and, when owner (the instance that held it)
 * is not this one, what owner's inbox held past its group's commit, and
 * injects it into the session here. owner NULL or "": our own restart (the
 * inbox waits for it). Any thread, no lock held. */
void state_queue_restore(struct state_queue *q, const char *id, uint16_t id_len,
			 const char *inst, int64_t off, const char *owner);
/* As state_queue_restore() (not own) for a session claimed here from
 * another instance that may still be alive: that owner hands over what it
 * holds itself and says so (state_queue_handover_done()); only when it
 * does not (not alive any more, or lease_ms + 5 s passed) is the queue
 * read back, and will (NULL ok; the reference is taken: the will of the
 * connection owner held) published as owner's takeover would have
 * (drain false: only that; the session is a new one). Until then the
 * session's record keeps naming that queue. */
void state_queue_restore_after(struct state_queue *q, const char *id, uint16_t id_len,
			       const char *inst, int64_t off, const char *owner,
			       struct msg *will, bool drain);
/* The previous owner of id handed everything over (its marker record came
 * through our inbox). Any thread. */
void state_queue_handover_done(struct state_queue *q, const char *id, uint16_t id_len);
/* True while restore jobs of this instance's restart are not finished. */
bool state_queue_restoring(struct state_queue *q);
/* For the sessions module, its lock held, when it writes session id's
 * record: fills inst (inst_cap bytes; "" = no queue) and *off with the
 * queue the record must name, or leaves them as they are (a restore of
 * the queue they name is running). Returns the delivery-report context
 * for state_queue_written() (NULL: out of memory; write anyway). */
void *state_queue_current(struct state_queue *q, const char *id, uint16_t id_len, char *inst,
			  size_t inst_cap, int64_t *off);
void state_queue_written(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
int state_queue_metrics_render(struct buf *out, struct state_queue *q);
/* The sessions module's side: true when id is a persistent session this
 * instance holds whose records can be written now (its epoch is known). */
bool state_sessions_spool_ok(struct state_sessions *ss, const char *id, uint16_t id_len);
/* True when one of id's subscriptions (as the view has them) matches
 * topic. Any thread. */
bool state_sessions_matches(struct state_sessions *ss, const char *id, uint16_t id_len,
			    const char *topic, size_t tlen);
/* Writes id's record again with the queue state_queue_current() names. */
void state_sessions_write_queue(struct state_sessions *ss, const char *id, uint16_t id_len);
/* A consumer configuration for the state's own readers (kafka.properties,
 * never committing, earliest; the caller sets group.id). NULL: err says. */
rd_kafka_conf_t *state_consumer_conf(struct state *st, char *err, size_t errlen);

/* Tells owner (its inbox, header kg.handover) that everything this
 * instance held for client `to` was handed over (after the handover
 * records: same partition). Fire and forget. Returns 0 or -1. */
int state_bus_send_marker(struct state_bus *sb, const char *owner, const char *to, size_t to_len);
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
