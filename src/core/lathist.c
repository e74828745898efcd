/* lathist.c - see lathist.h. */
#include "core/lathist.h"

/* 50 us .. 1 s: a sequential PUBACK on loopback takes a few hundred
 * microseconds; a Kafka outage, seconds. */
const uint32_t lathist_bounds_us[LATHIST_BUCKETS - 1] = {
	50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

void lathist_add(struct lathist *h, uint64_t ns, uint64_t n)
{
	uint64_t us = ns / 1000;
	int b = 0;

	while (b < LATHIST_BUCKETS - 1 && us > lathist_bounds_us[b])
		b++;
	ST(h->count[b], LD(h->count[b]) + n);
	ST(h->sum_ns, LD(h->sum_ns) + ns * n);
}

void lathist_read(const struct lathist *h, uint64_t *count, uint64_t *sum_ns)
{
	for (int b = 0; b < LATHIST_BUCKETS; b++)
		count[b] += LD(h->count[b]);
	*sum_ns += LD(h->sum_ns);
}
