/* inbox.c - see inbox.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/inbox.h"

int inbox_init(struct inbox *ib)
{
	ib->io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ib->io.fd < 0)
		return -1;
	pthread_mutex_init(&ib->mu, NULL);
	atomic_init(&ib->depth, 0);
	ib->pending = (struct inbox_batch){ 0 };
	ib->draining = (struct inbox_batch){ 0 };
	return 0;
}

void inbox_release(struct inbox *ib)
{
	if (!ib || ib->io.fd < 0)
		return;
	close(ib->io.fd);
	ib->io.fd = -1;
	pthread_mutex_destroy(&ib->mu);
	free(ib->pending.items);
	free(ib->draining.items);
}

int inbox_post(struct inbox *ib, const struct inbox_item *it)
{
	bool wake;

	pthread_mutex_lock(&ib->mu);
	struct inbox_batch *p = &ib->pending;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct inbox_item *n = realloc(p->items, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&ib->mu);
			return -1;
		}
		p->items = n;
		p->cap = cap;
	}
	p->items[p->n++] = *it;
	wake = p->n == 1;
	atomic_store_explicit(&ib->depth, p->n, memory_order_relaxed);
	pthread_mutex_unlock(&ib->mu);

	if (wake) {
		uint64_t one = 1;
		ssize_t r = write(ib->io.fd, &one, sizeof(one));
		(void)r; /* EAGAIN means the counter is already non-zero: awake anyway */
	}
	return 0;
}

struct inbox_batch *inbox_drain(struct inbox *ib)
{
	uint64_t v;
	/* Clear the eventfd before taking the lock: a post that lands after the
	 * swap below sees an empty array and writes the eventfd again, so no
	 * wake-up is lost. Clearing after the swap could eat that write. */
	ssize_t r = read(ib->io.fd, &v, sizeof(v));
	(void)r;

	ib->draining.n = 0;
	pthread_mutex_lock(&ib->mu);
	struct inbox_batch t = ib->pending;
	ib->pending = ib->draining;
	ib->draining = t;
	atomic_store_explicit(&ib->depth, 0, memory_order_relaxed);
	pthread_mutex_unlock(&ib->mu);
	return &ib->draining;
}
