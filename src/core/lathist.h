/*
 * lathist.h - a latency histogram with sub-millisecond buckets, for the
 * stages of the acknowledgement path (kafka/uplink.c: produce -> delivery
 * report; broker/worker.c: delivery report -> owning worker -> PUBACK
 * written) exported as Prometheus histograms by admin/metrics.c.
 *
 * One writer per histogram (the thread that owns it), any number of
 * readers: counters are relaxed atomics updated with a load and a store
 * (no locked instruction on the hot path). Readers may see a bucket and the
 * sum from slightly different moments, as with any scrape.
 */
#ifndef KG_LATHIST_H
#define KG_LATHIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Upper bounds in microseconds; the last bucket is +Inf. */
#define LATHIST_BUCKETS 15
extern const uint32_t lathist_bounds_us[LATHIST_BUCKETS - 1];

struct lathist {
	atomic_uint_fast64_t count[LATHIST_BUCKETS]; /* per bucket, not cumulative */
	atomic_uint_fast64_t sum_ns;
};

/* Nanoseconds on the monotonic clock (the stamps the stages compare). */
static inline uint64_t lathist_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Owner thread: n observations of ns nanoseconds each. */
void lathist_add(struct lathist *h, uint64_t ns, uint64_t n);

/* Any thread: adds h's counts into the plain arrays count[LATHIST_BUCKETS]
 * and *sum_ns (to sum several histograms at scrape time). */
void lathist_read(const struct lathist *h, uint64_t *count, uint64_t *sum_ns);

#endif
