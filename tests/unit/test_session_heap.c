/*
 * test_session_heap.c - the timer heap of parked MQTT 5 sessions
 * (broker/session.c: session_heap_*): the top is always the nearest
 * deadline, through random pushes, removals from anywhere, key changes and
 * pops, checked against a plain array; heap_idx always names the slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "broker/session.h"

#define N 300

static struct session *ss[N];
static bool on[N];

static void check(const struct session_heap *h)
{
	uint32_t n = 0;
	int64_t min = INT64_MAX;

	for (int i = 0; i < N; i++) {
		if (!on[i]) {
			assert_int_equal(ss[i]->heap_idx, 0);
			continue;
		}
		n++;
		assert_true(ss[i]->heap_idx >= 1 && ss[i]->heap_idx <= h->n);
		assert_ptr_equal(h->v[ss[i]->heap_idx - 1], ss[i]);
		if (ss[i]->due_ms < min)
			min = ss[i]->due_ms;
	}
	assert_int_equal(n, h->n);
	if (n)
		assert_true(session_heap_top(h)->due_ms == min);
	else
		assert_null(session_heap_top(h));
	for (uint32_t i = 1; i < h->n; i++) /* the heap property itself */
		assert_true(h->v[(i - 1) / 2]->due_ms <= h->v[i]->due_ms);
}

static void test_random_ops(void **state)
{
	struct session_heap h = { 0 };
	char id[16];
	(void)state;

	srand(7);
	for (int i = 0; i < N; i++) {
		int n = snprintf(id, sizeof(id), "s%d", i);
		ss[i] = session_new(id, (uint16_t)n, false);
		assert_non_null(ss[i]);
	}
	for (int step = 0; step < 20000; step++) {
		int i = rand() % N;
		int op = rand() % 4;
		if (!on[i]) {
			ss[i]->due_ms = rand() % 1000; /* many equal keys too */
			assert_int_equal(session_heap_push(&h, ss[i]), 0);
			on[i] = true;
		} else if (op == 0) {
			session_heap_del(&h, ss[i]);
			on[i] = false;
		} else if (op == 1) {
			ss[i]->due_ms = rand() % 1000;
			session_heap_fix(&h, ss[i]);
		} else if (op == 2 && h.n) {
			struct session *t = session_heap_top(&h);
			session_heap_del(&h, t);
			for (int k = 0; k < N; k++)
				if (ss[k] == t)
					on[k] = false;
		}
		if (step % 97 == 0)
			check(&h);
	}
	check(&h);
	/* Draining gives the deadlines in order. */
	int64_t last = -1;
	while (h.n) {
		struct session *t = session_heap_top(&h);
		assert_true(t->due_ms >= last);
		last = t->due_ms;
		session_heap_del(&h, t);
	}
	session_heap_del(&h, ss[0]); /* not on it: no-op */
	session_heap_release(&h);
	for (int i = 0; i < N; i++)
		session_unref(ss[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
