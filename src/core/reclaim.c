/* reclaim.c - lock-free hand-back stack; see reclaim.h. */
#include <stddef.h>

#include "core/reclaim.h"

void reclaim_push(struct reclaim_stack *st, struct reclaim_node *n)
{
	struct reclaim_node *head = atomic_load_explicit(&st->head, memory_order_relaxed);
	do
		n->next = head;
	while (!atomic_compare_exchange_weak_explicit(&st->head, &head, n, memory_order_release,
						      memory_order_relaxed));
}

unsigned reclaim_drain(struct reclaim_stack *st)
{
	struct reclaim_node *n = atomic_exchange_explicit(&st->head, NULL, memory_order_acquire);
	unsigned k = 0;
	while (n) {
		struct reclaim_node *next = n->next;
		n->free(n);
		n = next;
		k++;
	}
	return k;
}
