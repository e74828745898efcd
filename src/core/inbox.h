/*
 * inbox.h - where threads meet: a worker's mutex-protected array of items
 * plus an eventfd that wakes its loop.
 *
 * Any thread may inbox_post(); only the owning worker drains. Items are
 * copied by value into a growable array that the consumer swaps out under
 * the lock, so posting allocates nothing in the steady state. The eventfd is
 * written only when the array goes from empty to non-empty: one wake-up per
 * drain, not per item.
 */
#ifndef KG_INBOX_H
#define KG_INBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/loop.h"


/* One item: `kind` and the fields mean what the owning layer says
 * (broker/worker.h: enum worker_item). */
struct inbox_item {
	uint8_t kind;
	uint8_t a;
	uint16_t b;
	uint32_t c;
	uint64_t u;
	void *p1;
	union {
		void *p2;
		uint64_t v;             /* for kinds that carry a second number */
	};
};

struct inbox_batch {
	struct inbox_item *items;
	size_t n, cap;
};

/* Depth past which publishers feeding this inbox are slowed (QoS 0 copies
 * are dropped, publishing connections paused) so that it stays bounded. */
#define INBOX_SOFT_CAP 65536

struct inbox {
	struct loop_io io;          /* the eventfd */
	atomic_size_t depth;        /* items posted and not yet drained */
	pthread_mutex_t mu;
	struct inbox_batch pending; /* guarded by mu */
	struct inbox_batch draining;/* consumer only */
};

/* Returns 0 or -1 (errno set). */
int inbox_init(struct inbox *ib);
void inbox_release(struct inbox *ib);

/* Any thread. Returns 0, or -1 if the item could not be stored (ENOMEM). */
int inbox_post(struct inbox *ib, const struct inbox_item *it);

/* Any thread: items waiting (approximate). */
static inline size_t inbox_depth(struct inbox *ib)
{
	return atomic_load_explicit(&ib->depth, memory_order_relaxed);
}

/* Consumer thread only: clears the eventfd and returns the items posted
 * since the last drain (valid until the next call). */
struct inbox_batch *inbox_drain(struct inbox *ib);

#endif
