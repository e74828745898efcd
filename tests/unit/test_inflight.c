/*
 * test_inflight.c - the per-session QoS structures (broker/inflight.c): the
 * outgoing in-flight window, the bounded queue behind it, and the set of
 * incoming QoS 2 packet ids. Linked alone with core/msg.c. Message
 * references and downlink tracks are counted, so every test also checks
 * that nothing leaks and that each owed track completes exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/inflight.h"
#include "core/msg.h"

static int track_done;

static void on_done(struct msg_track *t)
{
	(void)t;
	track_done++;
}

static struct msg *mk(const char *topic)
{
	struct msg *m = msg_new(topic, (uint16_t)strlen(topic), "p", 1, 1, false);
	assert_non_null(m);
	return m;
}

static void test_window_order_and_pids(void **state)
{
	(void)state;
	struct inflight f;
	inflight_init(&f);
	uint16_t pids[5];
	for (int i = 0; i < 5; i++) {
		pids[i] = inflight_next_pid(&f);
		assert_int_not_equal(pids[i], 0);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(pids[i], pids[j]);
		assert_non_null(inflight_add(&f, mk("a"), pids[i], 1, false, false));
	}
	assert_int_equal(f.n, 5);
	/* Removing from the middle keeps the others in insertion order. */
	inflight_remove(&f, inflight_find(&f, pids[2]));
	assert_null(inflight_find(&f, pids[2]));
	assert_int_equal(f.n, 4);
	uint16_t want[4] = { pids[0], pids[1], pids[3], pids[4] };
	for (int i = 0; i < 4; i++)
		assert_int_equal(f.e[i].pid, want[i]);
	assert_null(inflight_find(&f, 0));
	inflight_release(&f);
}

/* With every packet id in use, none is handed out; one freed is reused. */
static void test_pid_exhaustion(void **state)
{
	(void)state;
	struct inflight f;
	inflight_init(&f);
	struct msg *m = mk("a");
	for (int i = 0; i < 65535; i++) {
		uint16_t pid = inflight_next_pid(&f);
		assert_int_not_equal(pid, 0);
		assert_non_null(inflight_add(&f, msg_ref(m), pid, 1, false, false));
	}
	assert_int_equal(inflight_next_pid(&f), 0);
	struct inflight_entry *e = inflight_find(&f, 777);
	assert_non_null(e);
	inflight_remove(&f, e);
	assert_int_equal(inflight_next_pid(&f), 777);
	inflight_release(&f);
	msg_unref(m);
}

/* Owed track completions: one per owed delivery, whether the entry is
 * acknowledged, settled (session offline) or released; never twice. */
static void test_window_tracks(void **state)
{
	(void)state;
	struct inflight f;
	struct msg_track t = { .done = on_done };
	inflight_init(&f);
	track_done = 0;
	/* Three owed deliveries plus the test's own hold. */
	atomic_init(&t.remaining, 4);
	for (int i = 0; i < 3; i++) {
		struct msg *m = mk("a");
		m->track = &t;
		assert_non_null(inflight_add(&f, m, (uint16_t)(i + 1), 1, false, true));
	}
	inflight_remove(&f, inflight_find(&f, 1));
	assert_int_equal(atomic_load(&t.remaining), 3);
	inflight_settle(&f);
	assert_int_equal(atomic_load(&t.remaining), 1);
	inflight_settle(&f); /* nothing is owed twice */
	inflight_release(&f);
	assert_int_equal(atomic_load(&t.remaining), 1);
	assert_int_equal(track_done, 0);
}

static void test_queue_fifo_and_limit(void **state)
{
	(void)state;
	struct mqueue q;
	struct mqueue_entry e;
	int64_t base = mqueue_total();
	mqueue_init(&q);
	char topic[8];
	/* Interleave pushes and pops so the ring wraps while growing. */
	int next_in = 0, next_out = 0;
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 7; i++) {
			snprintf(topic, sizeof(topic), "%d", next_in++);
			assert_int_equal(mqueue_push(&q, mk(topic), 1, i & 1, false, 1000), 0);
		}
		for (int i = 0; i < 5; i++) {
			assert_true(mqueue_pop(&q, &e));
			snprintf(topic, sizeof(topic), "%d", next_out++);
			assert_string_equal(e.m->topic, topic);
			msg_unref(e.m);
		}
	}
	assert_int_equal(q.n, 100);
	assert_int_equal(mqueue_total() - base, 100);
	/* The limit: a push over it fails and the caller keeps its reference. */
	struct msg *m = mk("over");
	for (uint32_t n = q.n; n < 1000; n++)
		assert_int_equal(mqueue_push(&q, msg_ref(m), 0, false, false, 1000), 0);
	assert_int_equal(mqueue_push(&q, m, 0, false, false, 1000), -1);
	msg_unref(m);
	mqueue_release(&q);
	assert_int_equal(mqueue_total(), base);
	assert_false(mqueue_pop(&q, &e));
}

/* mqueue_push_capped(): each cap refuses with its own code, the caller
 * keeps its reference, and the byte counts (this queue's, the process's)
 * follow pushes, pops and release. A message counts topic + payload. */
static void test_queue_caps(void **state)
{
	(void)state;
	struct mqueue q, r;
	struct mqueue_entry e;
	int64_t base = mqueue_total(), base_bytes = mqueue_total_bytes();
	struct msg *m = mk("abcd"); /* 4 + 1 bytes */
	struct mqueue_caps caps = { 10, 12, INT64_MAX, INT64_MAX };

	assert_int_equal(mqueue_msg_bytes(m), 5);
	mqueue_init(&q);
	mqueue_init(&r);
	assert_int_equal(mqueue_push_capped(&q, msg_ref(m), 1, false, false, &caps), 0);
	assert_int_equal(mqueue_push_capped(&q, msg_ref(m), 1, false, false, &caps), 0);
	assert_int_equal(q.bytes, 10);
	assert_int_equal(mqueue_push_capped(&q, m, 1, false, false, &caps), MQUEUE_FULL_BYTES);
	assert_int_equal(mqueue_total_bytes() - base_bytes, 10);
	/* A message larger than the cap on its own. */
	caps.max_bytes = 4;
	assert_int_equal(mqueue_push_capped(&r, m, 1, false, false, &caps), MQUEUE_FULL_BYTES);
	caps.max_bytes = 0;
	assert_int_equal(mqueue_push_capped(&r, m, 1, false, false, &caps), MQUEUE_FULL_BYTES);
	/* The count cap comes first. */
	caps.max = 2;
	caps.max_bytes = SIZE_MAX;
	assert_int_equal(mqueue_push_capped(&q, m, 1, false, false, &caps), MQUEUE_FULL);
	/* Process-wide caps: r is empty, but q holds 2 entries and 10 bytes. */
	caps.max = 10;
	caps.max_total = base + 2;
	assert_int_equal(mqueue_push_capped(&r, m, 1, false, false, &caps), MQUEUE_FULL_TOTAL);
	caps.max_total = INT64_MAX;
	caps.max_total_bytes = base_bytes + 14;
	assert_int_equal(mqueue_push_capped(&r, m, 1, false, false, &caps),
			 MQUEUE_FULL_TOTAL_BYTES);
	caps.max_total_bytes = base_bytes + 15;
	assert_int_equal(mqueue_push_capped(&r, msg_ref(m), 1, false, false, &caps), 0);
	assert_int_equal(mqueue_total_bytes() - base_bytes, 15);
	/* Pops and release give the bytes back. */
	assert_true(mqueue_pop(&q, &e));
	msg_unref(e.m);
	assert_int_equal(q.bytes, 5);
	assert_int_equal(mqueue_total_bytes() - base_bytes, 10);
	mqueue_release(&q);
	mqueue_release(&r);
	assert_int_equal(q.bytes, 0);
	assert_int_equal(mqueue_total(), base);
	assert_int_equal(mqueue_total_bytes(), base_bytes);
	assert_int_equal(atomic_load(&m->refs), 1);
	msg_unref(m);
}

static void test_queue_tracks(void **state)
{
	(void)state;
	struct mqueue q;
	struct msg_track t = { .done = on_done };
	mqueue_init(&q);
	track_done = 0;
	atomic_init(&t.remaining, 4);
	for (int i = 0; i < 4; i++) {
		struct msg *m = mk("a");
		m->track = &t;
		assert_int_equal(mqueue_push(&q, m, 1, false, true, 10), 0);
	}
	mqueue_settle(&q);
	/* The last owed delivery completes the track, once. */
	assert_int_equal(track_done, 1);
	assert_int_equal(atomic_load(&t.remaining), 0);
	mqueue_release(&q);
	assert_int_equal(track_done, 1);
}

/* Fields a push does not take (the MQTT 5 subscription id word) are set on
 * mqueue_back(), which is always the entry the last push added, also
 * after the ring wrapped and grew; pops hand them back in order. */
static void test_queue_back_subid(void **state)
{
	(void)state;
	struct mqueue q;
	struct mqueue_entry e;
	mqueue_init(&q);
	assert_null(mqueue_back(&q));
	uint32_t next = 1, want = 1;
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 7; i++) {
			assert_int_equal(mqueue_push(&q, mk("a"), 1, false, false, 100), 0);
			assert_int_equal(mqueue_back(&q)->subid, 0);
			mqueue_back(&q)->subid = next++;
		}
		for (int i = 0; i < 5; i++) {
			assert_true(mqueue_pop(&q, &e));
			assert_int_equal(e.subid, want++);
			msg_unref(e.m);
		}
	}
	while (mqueue_pop(&q, &e)) {
		assert_int_equal(e.subid, want++);
		msg_unref(e.m);
	}
	assert_int_equal(want, next);
	mqueue_release(&q);
}

/* Held entries (a resumed window larger than the client's Receive
 * Maximum) are counted in f->held; removing one counts it out; a new
 * entry starts neither held nor with an id. */
static void test_window_held(void **state)
{
	(void)state;
	struct inflight f;
	inflight_init(&f);
	for (uint16_t pid = 1; pid <= 4; pid++) {
		struct inflight_entry *e = inflight_add(&f, mk("a"), pid, 1, false, false);
		assert_non_null(e);
		assert_false(e->held);
		assert_int_equal(e->subid, 0);
		e->subid = pid * 10u;
	}
	f.e[2].held = f.e[3].held = true;
	f.held = 2;
	inflight_remove(&f, inflight_find(&f, 3));
	assert_int_equal(f.held, 1);
	inflight_remove(&f, inflight_find(&f, 1));
	assert_int_equal(f.held, 1);
	assert_int_equal(inflight_find(&f, 4)->subid, 40);
	assert_true(inflight_find(&f, 4)->held);
	inflight_remove(&f, inflight_find(&f, 4));
	assert_int_equal(f.held, 0);
	inflight_release(&f);
	assert_int_equal(f.held, 0);
}

static void test_pidset(void **state)
{
	(void)state;
	struct pidset s;
	pidset_init(&s);
	assert_false(pidset_has(&s, 1));
	for (uint32_t pid = 1; pid <= 65535; pid += 3)
		assert_int_equal(pidset_add(&s, (uint16_t)pid), 0);
	assert_int_equal(pidset_add(&s, 1), 0); /* present: no-op */
	uint32_t n = s.n;
	assert_int_equal(n, 21845);
	assert_true(pidset_has(&s, 4));
	assert_false(pidset_has(&s, 5));
	assert_true(pidset_del(&s, 4));
	assert_false(pidset_del(&s, 4));
	assert_false(pidset_has(&s, 4));
	assert_int_equal(s.n, n - 1);
	pidset_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_order_and_pids),
		cmocka_unit_test(test_pid_exhaustion),
		cmocka_unit_test(test_window_tracks),
		cmocka_unit_test(test_queue_fifo_and_limit),
		cmocka_unit_test(test_queue_caps),
		cmocka_unit_test(test_queue_tracks),
		cmocka_unit_test(test_queue_back_subid),
		cmocka_unit_test(test_window_held),
		cmocka_unit_test(test_pidset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
