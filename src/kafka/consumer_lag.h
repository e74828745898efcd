/*
 * consumer_lag.h - the lag table of one downlink consumer: per assigned
 * partition, the high watermark, the committed offset and the lag between
 * them, rebuilt from each librdkafka statistics document
 * (statistics.interval.ms) and read by other threads under a short lock.
 *
 * Embedded in struct consumer (consumer.h). consumer_lag_update() and
 * consumer_lag_drop() run on the consumer thread; consumer_lag_snapshot()
 * runs on any thread. No I/O, no logging.
 */
#ifndef KG_CONSUMER_LAG_H
#define KG_CONSUMER_LAG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct downlink_lag;

struct consumer_lag {
	pthread_mutex_t mu;        /* guards v, n */
	struct downlink_lag *v;    /* owned */
	size_t n;
};

/* An empty table. */
void consumer_lag_init(struct consumer_lag *l);
/* Frees the table. No one may read it any more. */
void consumer_lag_release(struct consumer_lag *l);

/*
 * Replaces the table with the partitions that one statistics document (JSON
 * text, len bytes, borrowed) lists as assigned ("desired"), each entry
 * named with group. Offsets librdkafka does not know yet become -1; the lag
 * is librdkafka's consumer_lag, else hi_offset - committed_offset when both
 * are known, else -1. A document that is not JSON empties the table; on
 * allocation failure the table is left as it was. Consumer thread.
 */
void consumer_lag_update(struct consumer_lag *l, const char *group, const char *json,
			 size_t len);
/* Forgets one partition (revoked): its lag is no longer ours to report.
 * Consumer thread. */
void consumer_lag_drop(struct consumer_lag *l, const char *topic, int32_t partition);
/* Copies up to max entries to out and returns the number in the table
 * (which may exceed max). out may be NULL when max is 0. Any thread. */
size_t consumer_lag_snapshot(struct consumer_lag *l, struct downlink_lag *out, size_t max);

#endif
