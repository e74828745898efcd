/* test_offsets.c - contiguous commit tracking (offsets.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kafka/offsets.h"

/* What a callback reported: up to 16 (topic, partition, offset). */
struct seen {
	size_t n;
	char topic[16][32];
	int32_t partition[16];
	int64_t offset[16];
};

static void record(void *ud, const char *topic, int32_t partition, int64_t offset)
{
	struct seen *s = ud;
	assert_true(s->n < 16);
	snprintf(s->topic[s->n], sizeof(s->topic[0]), "%s", topic);
	s->partition[s->n] = partition;
	s->offset[s->n] = offset;
	s->n++;
}

/* The single position offsets_commit_due() reports, or -1 if none moved. */
static int64_t due_one(struct offsets *o)
{
	struct seen s = { 0 };
	size_t n = offsets_commit_due(o, record, &s);
	assert_int_equal(n, s.n);
	assert_true(n <= 1);
	return n ? s.offset[0] : -1;
}

/* Adds offsets [from, to) on ref, each owing one completion. */
static void add_range(struct offsets *o, struct offsets_ref ref, int64_t from, int64_t to)
{
	for (int64_t i = from; i < to; i++)
		assert_int_equal(offsets_add(o, ref, i, 1000), 0);
}

static void test_in_order(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	assert_int_equal(offsets_assign(o, "cmd", 0, &r), 0);
	assert_int_equal(due_one(o), -1); /* nothing consumed: nothing to commit */
	add_range(o, r, 10, 13);
	assert_int_equal(offsets_in_flight(o), 3);
	assert_int_equal(due_one(o), -1); /* position 10: where the group stood */
	assert_int_equal(offsets_complete(o, r, 10), 1);
	assert_int_equal(due_one(o), 11);
	assert_int_equal(due_one(o), -1); /* reported once */
	assert_int_equal(offsets_complete(o, r, 11), 1);
	assert_int_equal(offsets_complete(o, r, 12), 1);
	assert_int_equal(due_one(o), 13); /* last + 1 */
	assert_int_equal(offsets_in_flight(o), 0);
	offsets_free(o);
}

static void test_out_of_order_and_gaps(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	assert_int_equal(offsets_assign(o, "cmd", 3, &r), 0);
	/* Offsets with gaps, as a compacted topic gives them. */
	int64_t offs[] = { 5, 6, 9, 20, 21 };
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(offsets_add(o, r, offs[i], 0), 0);
	assert_int_equal(offsets_add(o, r, 21, 0), -1); /* not increasing */
	assert_int_equal(offsets_add(o, r, 4, 0), -1);

	assert_int_equal(offsets_complete(o, r, 9), 1);
	assert_int_equal(offsets_complete(o, r, 21), 1);
	assert_int_equal(due_one(o), -1); /* 5 is still in flight */
	assert_int_equal(offsets_complete(o, r, 6), 1);
	assert_int_equal(due_one(o), -1); /* still 5 */
	assert_int_equal(offsets_complete(o, r, 5), 1);
	/* 5, 6, 9 done; 20 not: commit up to 20 (the next to read). */
	assert_int_equal(due_one(o), 20);
	assert_int_equal(offsets_in_flight(o), 2);
	assert_int_equal(offsets_complete(o, r, 20), 1);
	assert_int_equal(due_one(o), 22);
	/* Unknown and repeated completions are ignored. */
	assert_int_equal(offsets_complete(o, r, 20), -1);
	assert_int_equal(offsets_complete(o, r, 7), -1);
	assert_int_equal(offsets_complete(o, r, 99), -1);
	offsets_free(o);
}

static void test_owe(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	assert_int_equal(offsets_assign(o, "cmd", 0, &r), 0);
	add_range(o, r, 0, 2);
	/* Record 0 goes to two mappings: two more completions, then the hold. */
	assert_int_equal(offsets_owe(o, r, 0, 2), 0);
	assert_int_equal(offsets_complete(o, r, 0), 0);
	assert_int_equal(offsets_complete(o, r, 0), 0);
	assert_int_equal(offsets_complete(o, r, 1), 1);
	assert_int_equal(due_one(o), -1); /* 0 still owes one */
	assert_int_equal(offsets_complete(o, r, 0), 1);
	assert_int_equal(due_one(o), 2);
	assert_int_equal(offsets_owe(o, r, 0, 1), -1); /* complete already */
	offsets_free(o);
}

static void test_many_wraps(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	assert_int_equal(offsets_assign(o, "cmd", 0, &r), 0);
	/* Hold 0 back while thousands complete: the ring grows and wraps. */
	int64_t next = 0;
	add_range(o, r, 0, 50);
	for (int round = 0; round < 40; round++) {
		add_range(o, r, 50 + next, 100 + next);
		for (int64_t i = next + 1; i < next + 50; i++)
			assert_int_equal(offsets_complete(o, r, i), 1);
		assert_int_equal(due_one(o), -1); /* held back by `next` */
		assert_int_equal(offsets_complete(o, r, next), 1);
		next += 50;
		assert_int_equal(due_one(o), next);
		assert_int_equal(offsets_in_flight(o), 50);
	}
	offsets_free(o);
}

static void test_expire(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	struct seen s = { 0 };
	assert_int_equal(offsets_assign(o, "cmd", 1, &r), 0);
	assert_int_equal(offsets_add(o, r, 0, 1000), 0);
	assert_int_equal(offsets_add(o, r, 1, 2000), 0);
	assert_int_equal(offsets_add(o, r, 2, 3000), 0);
	assert_int_equal(offsets_complete(o, r, 1), 1);
	/* At 32500 with a 30 s timeout, records added at or before 2500 expire:
	 * offset 0 (1 was done already); 2 is younger. */
	assert_int_equal(offsets_expire(o, 32500, 30000, record, &s), 1);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.topic[0], "cmd");
	assert_int_equal(s.partition[0], 1);
	assert_int_equal(s.offset[0], 0);
	assert_int_equal(due_one(o), 2);
	/* The late completion of the expired record is ignored. */
	assert_int_equal(offsets_complete(o, r, 0), -1);
	assert_int_equal(offsets_expire(o, 33000, 30000, NULL, NULL), 1);
	assert_int_equal(due_one(o), 3);
	assert_int_equal(offsets_expire(o, 99999, 30000, NULL, NULL), 0);
	offsets_free(o);
}

static void test_revoke_and_generation(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref a, b, a2, f;
	int64_t pos = -1;
	assert_int_equal(offsets_assign(o, "cmd", 0, &a), 0);
	assert_int_equal(offsets_assign(o, "cmd", 1, &b), 0);
	assert_int_not_equal(a.gen, b.gen);
	assert_int_equal(offsets_find(o, "cmd", 1, &f), 0);
	assert_int_equal(f.slot, b.slot);
	assert_int_equal(f.gen, b.gen);
	assert_int_equal(offsets_find(o, "other", 1, &f), -1);
	add_range(o, a, 0, 3);
	add_range(o, b, 0, 2);
	assert_int_equal(offsets_complete(o, a, 0), 1);
	assert_int_equal(offsets_complete(o, a, 2), 1);

	/* Revoke: what is contiguous (1) is handed out once; 1 and 2 are dropped. */
	assert_int_equal(offsets_revoke(o, "cmd", 0, &pos), 1);
	assert_int_equal(pos, 1);
	assert_int_equal(offsets_in_flight(o), 2);
	assert_int_equal(offsets_revoke(o, "cmd", 0, &pos), -1);
	assert_int_equal(offsets_complete(o, a, 1), -1); /* late: ignored */
	assert_int_equal(offsets_add(o, a, 5, 0), -1);

	/* Assigned again (the slot is reused): the old ref stays dead. */
	assert_int_equal(offsets_assign(o, "cmd", 0, &a2), 0);
	assert_int_equal(a2.slot, a.slot);
	assert_int_not_equal(a2.gen, a.gen);
	assert_int_equal(offsets_add(o, a2, 1, 0), 0); /* fresh window: 1 is fine */
	assert_int_equal(offsets_complete(o, a, 1), -1);
	assert_int_equal(offsets_complete(o, a2, 1), 1);

	/* Both partitions due, each once; a revoke with nothing new says 0. */
	struct seen s = { 0 };
	assert_int_equal(offsets_commit_due(o, record, &s), 1); /* b: position 0 not moved */
	assert_int_equal(s.partition[0], 0);
	assert_int_equal(s.offset[0], 2);
	assert_int_equal(offsets_revoke(o, "cmd", 0, &pos), 0);
	assert_int_equal(offsets_complete(o, b, 0), 1);
	assert_int_equal(offsets_revoke(o, "cmd", 1, &pos), 1);
	assert_int_equal(pos, 1);
	assert_int_equal(offsets_in_flight(o), 0);
	offsets_free(o);
}

static void test_commit_failed(void **state)
{
	(void)state;
	struct offsets *o = offsets_new();
	struct offsets_ref r;
	assert_int_equal(offsets_assign(o, "cmd", 0, &r), 0);
	add_range(o, r, 0, 1);
	assert_int_equal(offsets_complete(o, r, 0), 1);
	assert_int_equal(due_one(o), 1);
	assert_int_equal(due_one(o), -1);
	offsets_commit_failed(o, "cmd", 0);
	assert_int_equal(due_one(o), 1); /* retried */
	offsets_commit_failed(o, "nope", 0); /* untracked: no-op */
	offsets_free(o);
	offsets_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_out_of_order_and_gaps),
		cmocka_unit_test(test_owe),
		cmocka_unit_test(test_many_wraps),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_revoke_and_generation),
		cmocka_unit_test(test_commit_failed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
