/*
 * reclaim.h - memory handed back to the thread that allocated it.
 *
 * jemalloc (and, more so, glibc's malloc) is fastest when a thread frees
 * what it allocated. Objects made by a worker and finished on another thread
 * (a QoS 0 Kafka ticket and its message, done on the producer's thread) are
 * pushed onto their worker's stack with one CAS and freed by that worker at
 * its safe point.
 *
 * Threads: reclaim_push() from any thread; reclaim_drain() by the owner of
 * the stack only. Lock-free; the owner takes the whole stack at once, so
 * there is no ABA problem.
 */
#ifndef KG_RECLAIM_H
#define KG_RECLAIM_H

#include <stdatomic.h>

struct reclaim_node {
	struct reclaim_node *next;
	void (*free)(struct reclaim_node *n);  /* called once, on the owner */
};

struct reclaim_stack {
	_Atomic(struct reclaim_node *) head;
};

/* Any thread: n->free must be set. */
void reclaim_push(struct reclaim_stack *st, struct reclaim_node *n);
/* Owner: calls free() on every node pushed so far. Returns how many. */
unsigned reclaim_drain(struct reclaim_stack *st);

#endif
