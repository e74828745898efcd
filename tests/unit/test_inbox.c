/*
 * test_inbox.c - the thread hand-off: FIFO order and every field kept, the
 * eventfd written once per empty -> non-empty transition and cleared by the
 * drain, growth past the first array, the depth counter, and four
 * producers against one consumer that sleeps in poll(2) on the eventfd:
 * every item arrives once, in order per producer, and no wake-up is lost.
 *
 * The item kind is the owner's business; these tests use arbitrary values.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/inbox.h"

static int setup(void **state)
{
	static struct inbox ib;
	assert_int_equal(inbox_init(&ib), 0);
	*state = &ib;
	return 0;
}

static int teardown(void **state)
{
	inbox_release(*state);
	return 0;
}

/* The eventfd's counter (reading resets it), 0 if it is not set. */
static uint64_t efd_take(struct inbox *ib)
{
	uint64_t v;
	ssize_t r = read(ib->io.fd, &v, sizeof(v));
	if (r < 0) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	assert_int_equal(r, sizeof(v));
	return v;
}

static bool efd_readable(struct inbox *ib, int timeout_ms)
{
	struct pollfd pfd = { .fd = ib->io.fd, .events = POLLIN };
	int r = poll(&pfd, 1, timeout_ms);
	assert_true(r >= 0);
	return r == 1;
}

static struct inbox_item item(uint32_t i)
{
	return (struct inbox_item){
		.kind = (uint8_t)(i * 7 + 3), .a = (uint8_t)(i >> 3), .b = (uint16_t)(i * 31),
		.c = i, .u = (uint64_t)i << 33 | 5, .p1 = (void *)(uintptr_t)(i + 1),
		.p2 = (void *)(uintptr_t)~(uintptr_t)i,
	};
}

static void check_item(const struct inbox_item *got, uint32_t i)
{
	struct inbox_item want = item(i);
	assert_int_equal(got->kind, want.kind);
	assert_int_equal(got->a, want.a);
	assert_int_equal(got->b, want.b);
	assert_int_equal(got->c, want.c);
	assert_int_equal(got->u, want.u);
	assert_ptr_equal(got->p1, want.p1);
	assert_ptr_equal(got->p2, want.p2);
}

static void post_range(struct inbox *ib, uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++) {
		struct inbox_item it = item(i);
		assert_int_equal(inbox_post(ib, &it), 0);
	}
}

static void test_fifo(void **state)
{
	struct inbox *ib = *state;
	struct inbox_batch *b;

	post_range(ib, 0, 10);
	b = inbox_drain(ib);
	assert_int_equal(b->n, 10);
	for (uint32_t i = 0; i < 10; i++)
		check_item(&b->items[i], i);

	/* The next drain holds only what came after. */
	post_range(ib, 10, 13);
	b = inbox_drain(ib);
	assert_int_equal(b->n, 3);
	for (uint32_t i = 0; i < 3; i++)
		check_item(&b->items[i], 10 + i);
}

static void test_wake_once(void **state)
{
	struct inbox *ib = *state;

	assert_int_equal(efd_take(ib), 0);
	post_range(ib, 0, 5);
	assert_int_equal(efd_take(ib), 1); /* one write for five posts */
	assert_int_equal(inbox_drain(ib)->n, 5);

	/* Still non-empty: no new write until a drain empties it. */
	post_range(ib, 0, 1);
	assert_int_equal(efd_take(ib), 1);
	post_range(ib, 1, 3);
	assert_int_equal(efd_take(ib), 0);
	assert_int_equal(inbox_drain(ib)->n, 3);

	/* Each empty -> non-empty transition writes once. */
	for (int round = 0; round < 3; round++) {
		post_range(ib, 0, 4);
		assert_int_equal(efd_take(ib), 1);
		assert_int_equal(inbox_drain(ib)->n, 4);
	}
}

static void test_drain_clears(void **state)
{
	struct inbox *ib = *state;

	post_range(ib, 0, 2);
	assert_true(efd_readable(ib, 0));
	assert_int_equal(inbox_drain(ib)->n, 2);
	assert_false(efd_readable(ib, 0));
	assert_int_equal(efd_take(ib), 0);

	/* An empty drain: nothing, and still clear. */
	assert_int_equal(inbox_drain(ib)->n, 0);
	assert_false(efd_readable(ib, 0));

	/* The first post after a drain wakes again. */
	post_range(ib, 0, 1);
	assert_true(efd_readable(ib, 0));
	assert_int_equal(inbox_drain(ib)->n, 1);
}

static void test_growth_and_depth(void **state)
{
	struct inbox *ib = *state;
	struct inbox_batch *b;
	enum { N = 1000 }; /* well past the first array of 64 */

	assert_int_equal(inbox_depth(ib), 0);
	for (uint32_t i = 0; i < N; i++) {
		post_range(ib, i, i + 1);
		assert_int_equal(inbox_depth(ib), i + 1);
	}
	assert_int_equal(efd_take(ib), 1);
	b = inbox_drain(ib);
	assert_int_equal(inbox_depth(ib), 0);
	assert_int_equal(b->n, N);
	assert_true(b->cap >= N);
	for (uint32_t i = 0; i < N; i++)
		check_item(&b->items[i], i);

	/* The arrays are swapped and reused: both rounds stay whole. */
	for (int round = 0; round < 4; round++) {
		post_range(ib, 0, N + (uint32_t)round);
		assert_int_equal(inbox_depth(ib), N + round);
		b = inbox_drain(ib);
		assert_int_equal(b->n, N + round);
		for (uint32_t i = 0; i < N + (uint32_t)round; i++)
			check_item(&b->items[i], i);
	}
}

static void test_release(void **state)
{
	struct inbox ib;
	(void)state;

	inbox_release(NULL);
	assert_int_equal(inbox_init(&ib), 0);
	post_range(&ib, 0, 100); /* items still pending are freed with it */
	inbox_drain(&ib);
	post_range(&ib, 0, 3);
	inbox_release(&ib);
	inbox_release(&ib); /* a second release is a no-op */
}

/* ---- producers and one consumer ---- */

#define P_THREADS 4
#define P_ITEMS   100000

struct producer {
	struct inbox *ib;
	uint8_t id;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;

	for (uint32_t i = 0; i < P_ITEMS; i++) {
		struct inbox_item it = {
			.kind = (uint8_t)(0xa0 + p->id), .a = p->id, .c = i,
			.u = (uint64_t)p->id << 32 | i, .p1 = p,
		};
		if (inbox_post(p->ib, &it) != 0)
			abort();
		/* Pauses let the consumer empty the inbox often, so that the
		 * empty -> non-empty transition (and its race with a drain)
		 * happens thousands of times. */
		if (i % 64 == 0)
			sched_yield();
		if (i % 4096 == 0)
			usleep(200);
	}
	return NULL;
}

static void test_producers(void **state)
{
	struct inbox *ib = *state;
	struct producer prod[P_THREADS];
	pthread_t th[P_THREADS];
	uint32_t next[P_THREADS] = { 0 };
	size_t received = 0, drains = 0, empty = 0, biggest = 0;

	for (int t = 0; t < P_THREADS; t++) {
		prod[t] = (struct producer){ .ib = ib, .id = (uint8_t)t };
		assert_int_equal(pthread_create(&th[t], NULL, producer_main, &prod[t]), 0);
	}
	while (received < (size_t)P_THREADS * P_ITEMS) {
		/* Drain only when the eventfd says so, as the loop does: a lost
		 * wake-up shows as a timeout with items waiting. A producer
		 * between its unlock and its write may delay the wake, so a
		 * first timeout gets a second chance. */
		if (!efd_readable(ib, 2000) && inbox_depth(ib) > 0 && !efd_readable(ib, 2000) &&
		    inbox_depth(ib) > 0)
			fail_msg("lost wake-up: %zu items waiting, eventfd clear", inbox_depth(ib));
		struct inbox_batch *b = inbox_drain(ib);
		drains++;
		empty += b->n == 0;
		if (b->n > biggest)
			biggest = b->n;
		for (size_t k = 0; k < b->n; k++) {
			const struct inbox_item *it = &b->items[k];
			assert_true(it->a < P_THREADS);
			assert_int_equal(it->kind, 0xa0 + it->a);
			assert_ptr_equal(it->p1, &prod[it->a]);
			assert_int_equal(it->u >> 32, it->a);
			if (it->c != next[it->a])
				fail_msg("producer %u: got item %u, want %u", it->a, it->c, next[it->a]);
			next[it->a]++;
		}
		received += b->n;
		if (drains % 128 == 0)
			usleep(100); /* and now and then let a batch build up */
	}
	for (int t = 0; t < P_THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < P_THREADS; t++)
		assert_int_equal(next[t], P_ITEMS);
	/* Nothing left: at most a spurious wake from a post that raced the
	 * last drain, with nothing behind it. */
	assert_int_equal(inbox_drain(ib)->n, 0);
	assert_int_equal(inbox_depth(ib), 0);
	print_message("producers: %zu items in %zu drains (%zu empty, biggest %zu)\n", received,
		      drains, empty, biggest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wake_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_clears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth_and_depth, setup, teardown),
		cmocka_unit_test(test_release),
		cmocka_unit_test_setup_teardown(test_producers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
