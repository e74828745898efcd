/*
 * consumer.h - one downlink consumer: a thread driving a librdkafka
 * high-level consumer in one group, committing each partition's offsets only
 * up to the highest contiguous record whose deliveries completed (offsets.h).
 *
 * The thread polls records and hands each to a record callback, which says
 * how many completions the record owes (one per message it injected). Each
 * owed completion is reported with consumer_complete(), from any thread
 * (workers run it from msg_track done() callbacks): it appends to a
 * mutex-protected list that the consumer thread drains every poll round
 * (at most CONSUMER_POLL_MS apart), so a worker never waits on Kafka.
 *
 * Commits are asynchronous, every CONSUMER_COMMIT_MS or after
 * CONSUMER_COMMIT_EVERY completions, whichever comes first; synchronous on
 * revocation and at stop. Rebalance: eager (rd_kafka_assign) or cooperative
 * (incremental assign) as the group's protocol says; on revocation what is
 * complete is committed and the partition's window dropped, and completions
 * that arrive later for it are ignored (per-assignment generation). When
 * more than max_in_flight records are in flight the consumer pauses its
 * partitions, and resumes them below half of that.
 *
 * Lag: statistics (statistics.interval.ms) are parsed on the consumer thread
 * into a per-partition table (consumer_lag.h) readable from any thread under
 * a short lock.
 *
 * Threads: new/start/stop/join/free on the main thread; consumer_complete(),
 * consumer_lag() and the counters on any thread. The consumer must not be
 * freed while a completion may still arrive (see downlink.h).
 */
#ifndef KG_CONSUMER_H
#define KG_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "kafka/offsets.h"

struct cfg;
struct consumer;
struct downlink_lag;

#define CONSUMER_POLL_MS 20
#define CONSUMER_COMMIT_MS 200
#define CONSUMER_COMMIT_EVERY 2000

/* Names one record for consumer_complete(). Plain value: copy it. */
struct consumer_ticket {
	struct consumer *c;
	struct offsets_ref ref;
	int64_t offset;
};

/* Called on the consumer thread for each record (rkm->err == 0). Returns
 * the number of completions the record owes; each later comes through
 * consumer_complete(t) (copy *t: it is borrowed for the call). 0: complete. */
typedef unsigned (*consumer_record_fn)(void *ud, const rd_kafka_message_t *rkm,
				       const struct consumer_ticket *t);

struct consumer_opts {
	const char *group_id;
	const char *const *topics; /* subscribed; duplicates are fine */
	size_t ntopics;
	consumer_record_fn on_record;
	void *ud;
	int64_t timeout_ms;        /* a record in flight longer counts as complete */
	size_t max_in_flight;
	int stop_grace_ms;         /* how long the stop waits for deliveries */
	int start_grace_ms;        /* the thread reads nothing for this long at first */
	const char *instance_id;   /* group.instance.id (static membership); NULL or "": none */
};

/* Returns a new consumer (kafka_conf_new() defaults + group.id, and
 * group.instance.id when opts->instance_id is not empty) or NULL with err
 * set. Borrows cfg and opts for the call only. */
struct consumer *consumer_new(const struct cfg *cfg, const char *bootstrap,
			      const struct consumer_opts *opts, char *err, size_t errlen);
/* Subscribes and starts the thread. Returns 0 or -1 (logged). */
int consumer_start(struct consumer *c);
/* Asks the thread to stop: it stops reading, waits up to stop_grace_ms for
 * deliveries in flight, commits, and closes the consumer (a dynamic member
 * leaves the group; a static one stays until its session times out). Does
 * not wait. */
void consumer_stop(struct consumer *c);
/* Waits for a stopped thread. No-op if it was never started. */
void consumer_join(struct consumer *c);
/* Stops and joins if needed, destroys the handle. NULL ok. */
void consumer_free(struct consumer *c);

/* One owed completion of t's record. Any thread. */
void consumer_complete(const struct consumer_ticket *t);

/* Copies up to max entries of the lag table to out (group set), returns the
 * number in the table. Any thread. */
size_t consumer_lag(struct consumer *c, struct downlink_lag *out, size_t max);
const char *consumer_group(const struct consumer *c);
/* Records declared complete by the timeout so far. Any thread. */
uint64_t consumer_timed_out(const struct consumer *c);

#endif
