/*
 * test_lathist.c - the acknowledgement-path latency histogram: each
 * observation lands in the first bucket whose bound (in microseconds, "le")
 * holds it, the last bucket takes everything beyond 1 s, n observations at
 * once count n times in the bucket and the sum, and reading adds into the
 * caller's totals (how /metrics sums the workers' histograms).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/lathist.h"

static int bucket_of(uint64_t ns)
{
	struct lathist h;
	uint64_t c[LATHIST_BUCKETS] = { 0 }, sum = 0;
	int found = -1;

	memset(&h, 0, sizeof(h));
	lathist_add(&h, ns, 1);
	lathist_read(&h, c, &sum);
	assert_int_equal(sum, ns);
	for (int b = 0; b < LATHIST_BUCKETS; b++) {
		if (c[b]) {
			assert_int_equal(found, -1);
			assert_int_equal(c[b], 1);
			found = b;
		}
	}
	return found;
}

static void test_buckets(void **state)
{
	(void)state;
	assert_int_equal(bucket_of(0), 0);
	assert_int_equal(bucket_of(50000), 0);         /* 50 us: le 50 us */
	assert_int_equal(bucket_of(50999), 0);         /* whole microseconds */
	assert_int_equal(bucket_of(51000), 1);
	assert_int_equal(bucket_of(150000), 2);        /* le 200 us */
	assert_int_equal(bucket_of(1000000), 5);       /* 1 ms */
	assert_int_equal(bucket_of(1000001000), LATHIST_BUCKETS - 1); /* +Inf */
	for (int b = 1; b < LATHIST_BUCKETS - 1; b++)
		assert_true(lathist_bounds_us[b] > lathist_bounds_us[b - 1]);
	assert_int_equal(lathist_bounds_us[LATHIST_BUCKETS - 2], 1000000);
}

static void test_many_and_sum(void **state)
{
	struct lathist a, b;
	uint64_t c[LATHIST_BUCKETS] = { 0 }, sum = 0;
	(void)state;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	lathist_add(&a, 300000, 7);  /* 300 us, seven answers of one flush */
	lathist_add(&a, 80000, 1);
	lathist_add(&b, 300000, 2);
	lathist_read(&a, c, &sum);
	lathist_read(&b, c, &sum);
	assert_int_equal(c[3], 9);   /* le 300 us */
	assert_int_equal(c[1], 1);   /* le 100 us */
	assert_int_equal(sum, 300000ull * 9 + 80000);
	assert_true(lathist_now() > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_many_and_sum),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
