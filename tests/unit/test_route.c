/* test_route.c - routing table: validation errors, matching order, scale. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "route/route.h"

#define NO_MATCH -1
#define MAX_WANT 5

static const struct route_spec overlapping[] = {
	{ "#", "all", NULL, "raw", 10 },
	{ "factory/#", "factory.${topic[1]}", "${clientid}", "json", 11 },
	{ "factory/+/sensors/#", "sensors", NULL, NULL, 12 },
	{ "office/+", "office", "${topic}", "raw", 13 },
	{ "factory/+/sensors/#", "sensors.copy", NULL, "raw", 14 },
};

struct match_case {
	const char *topic;
	int want[MAX_WANT]; /* route indexes in order, ended by NO_MATCH */
};

static const struct match_case match_cases[] = {
	{ "factory/l1/sensors/temp", { 0, 1, 2, 4, NO_MATCH } },
	{ "factory/l1/sensors", { 0, 1, 2, 4, NO_MATCH } },
	{ "factory/l1/other", { 0, 1, NO_MATCH } },
	{ "factory", { 0, 1, NO_MATCH } },
	{ "office/a", { 0, 3, NO_MATCH } },
	{ "office/a/b", { 0, NO_MATCH } },
	{ "home", { 0, NO_MATCH } },
	{ "$SYS/broker/load", { NO_MATCH } },
};

static void check_matches(const struct route_table *rt, const struct match_case *cases,
			  size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct route *out[8];
		size_t want = 0;
		while (want < MAX_WANT && cases[i].want[want] != NO_MATCH)
			want++;
		size_t got = route_table_match(rt, cases[i].topic, strlen(cases[i].topic),
					       out, 8);
		if (got != want)
			fail_msg("%s: %zu matches, want %zu", cases[i].topic, got, want);
		for (size_t j = 0; j < want; j++)
			if (route_index(out[j]) != (size_t)cases[i].want[j])
				fail_msg("%s: match %zu is route %zu, want %d", cases[i].topic,
					 j, route_index(out[j]), cases[i].want[j]);
	}
}

static void test_overlapping_filters(void **state)
{
	char err[128];
	struct route_table *rt;

	(void)state;
	rt = route_table_new(overlapping, 5, err, sizeof err);
	assert_non_null(rt);
	assert_int_equal(route_table_count(rt), 5);
	check_matches(rt, match_cases, sizeof match_cases / sizeof match_cases[0]);
	route_table_unref(rt);
}

/* The same routes defined in reverse: order follows definition, not the trie. */
static void test_order_is_definition_order(void **state)
{
	struct route_spec rev[5];
	static const struct match_case cases[] = {
		{ "factory/l1/sensors/temp", { 0, 2, 3, 4, NO_MATCH } },
		{ "office/x", { 1, 4, NO_MATCH } },
	};
	struct route_table *rt;

	(void)state;
	for (size_t i = 0; i < 5; i++)
		rev[i] = overlapping[4 - i];
	rt = route_table_new(rev, 5, NULL, 0);
	assert_non_null(rt);
	check_matches(rt, cases, 2);
	route_table_unref(rt);
}

/* A short array gets the first routes in definition order; the count tells
 * the caller to retry. */
static void test_match_more_than_max(void **state)
{
	const struct route *out[2] = { NULL, NULL };
	const char *topic = "factory/l1/sensors/temp";
	struct route_table *rt = route_table_new(overlapping, 5, NULL, 0);

	(void)state;
	assert_non_null(rt);
	assert_int_equal(route_table_match(rt, topic, strlen(topic), out, 2), 4);
	assert_int_equal(route_index(out[0]), 0);
	assert_int_equal(route_index(out[1]), 1);
	assert_int_equal(route_table_match(rt, topic, strlen(topic), NULL, 0), 4);
	assert_int_equal(route_table_match(rt, "nomatch/$x", 3, out, 2), 1);
	route_table_unref(rt);
}

/* 50 routes over five filters that all match "a/b": the trie reports them
 * grouped by filter, the table hands them back as the first max by index. */
static void test_match_prefix_of_many(void **state)
{
	static const char *filters[] = { "#", "a/#", "a/+", "+/b", "a/b" };
	static const size_t maxes[] = { 1, 7, 49, 50, 64 };
	struct route_spec specs[50];
	const struct route *out[64];
	struct route_table *rt;

	(void)state;
	for (int i = 0; i < 50; i++)
		specs[i] = (struct route_spec){ filters[i % 5], "t", NULL, "raw", i + 1 };
	rt = route_table_new(specs, 50, NULL, 0);
	assert_non_null(rt);
	for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
		memset(out, 0, sizeof out);
		assert_int_equal(route_table_match(rt, "a/b", 3, out, maxes[m]), 50);
		for (size_t j = 0; j < maxes[m]; j++) {
			if (j >= 50) {
				assert_null(out[j]);
				continue;
			}
			if (route_index(out[j]) != j)
				fail_msg("max %zu: out[%zu] is route %zu", maxes[m], j,
					 route_index(out[j]));
		}
	}
	route_table_unref(rt);
}

static void test_no_match(void **state)
{
	static const struct route_spec specs[] = {
		{ "a/b", "t1", NULL, "raw", 1 },
		{ "a/+/c", "t2", NULL, "raw", 2 },
	};
	const struct route *out[4];
	struct route_table *rt = route_table_new(specs, 2, NULL, 0);
	struct route_table *empty = route_table_new(NULL, 0, NULL, 0);

	(void)state;
	assert_non_null(rt);
	assert_int_equal(route_table_match(rt, "a/c", 3, out, 4), 0);
	assert_int_equal(route_table_match(rt, "a/b/c/d", 7, out, 4), 0);
	assert_int_equal(route_table_match(rt, "a/x/c", 5, out, 4), 1);
	/* Length counts, not NUL: "a/bX" cut to 3 bytes is "a/b". */
	assert_int_equal(route_table_match(rt, "a/bX", 3, out, 4), 1);
	assert_non_null(empty);
	assert_int_equal(route_table_count(empty), 0);
	assert_null(route_table_get(empty, 0));
	assert_int_equal(route_table_match(empty, "a/b", 3, out, 4), 0);
	route_table_unref(rt);
	route_table_unref(empty);
}

static void test_accessors_and_refs(void **state)
{
	struct route_table *rt = route_table_new(overlapping, 5, NULL, 0);
	const struct route *r;

	(void)state;
	assert_non_null(rt);
	r = route_table_get(rt, 1);
	assert_int_equal(route_index(r), 1);
	assert_int_equal(route_line(r), 11);
	assert_string_equal(route_filter(r), "factory/#");
	assert_string_equal(template_source(route_topic(r)), "factory.${topic[1]}");
	assert_string_equal(template_source(route_key(r)), "${clientid}");
	assert_int_equal(route_format(r), ROUTE_FORMAT_JSON);
	r = route_table_get(rt, 2);
	assert_null(route_key(r));
	assert_int_equal(route_format(r), ROUTE_FORMAT_RAW); /* NULL format means raw */
	assert_true(template_is_literal(route_topic(r)));
	assert_null(route_table_get(rt, 5));
	assert_false(route_text_base64(route_table_get(rt, 1))); /* NULL means utf8 */
	route_table_unref(rt);

	/* payload_text on json routes. */
	static const struct route_spec texts[] = {
		{ "a", "t", NULL, "json", 1, "base64" },
		{ "b", "t", NULL, "json", 2, "utf8" },
	};
	rt = route_table_new(texts, 2, NULL, 0);
	assert_non_null(rt);
	assert_true(route_text_base64(route_table_get(rt, 0)));
	assert_false(route_text_base64(route_table_get(rt, 1)));
	route_table_unref(rt);
	rt = route_table_new(overlapping, 5, NULL, 0);
	assert_non_null(rt);

	/* A reader's reference keeps the table alive after the owner drops it. */
	assert_ptr_equal(route_table_ref(rt), rt);
	route_table_unref(rt);
	assert_int_equal(route_table_count(rt), 5);
	assert_string_equal(route_filter(route_table_get(rt, 4)), "factory/+/sensors/#");
	route_table_unref(rt);
	route_table_unref(NULL);
}

struct error_case {
	struct route_spec spec;
	const char *msg; /* expected prefix of the error */
};

static const struct error_case error_cases[] = {
	{ { "a/#/b", "t", NULL, "raw", 12 }, "12: invalid topic filter \"a/#/b\"" },
	{ { "a/b+", "t", NULL, "raw", 3 }, "3: invalid topic filter" },
	{ { "", "t", NULL, "raw", 4 }, "4: invalid topic filter \"\"" },
	{ { NULL, "t", NULL, "raw", 5 }, "5: invalid topic filter" },
	{ { "a/#", NULL, NULL, "raw", 6 }, "6: route has no Kafka topic" },
	{ { "a/#", "t.${foo}", NULL, "raw", 7 }, "7: topic: unknown variable \"${foo}\"" },
	{ { "a/#", "t.${key}", NULL, "raw", 8 }, "8: topic: \"${key}\" is a downlink variable" },
	{ { "a/#", "", NULL, "raw", 9 }, "9: topic: empty template" },
	{ { "a/#", "bad topic", NULL, "raw", 10 }, "10: topic: \"bad topic\" is not a valid Kafka" },
	{ { "a/#", "..", NULL, "raw", 11 }, "11: topic: \"..\" is not a valid Kafka" },
	{ { "a/#", "t", "${topic[x]}", "raw", 13 }, "13: key: bad level index" },
	{ { "a/#", "t", "${clientid", "raw", 14 }, "14: key: unterminated" },
	{ { "a/#", "t", NULL, "xml", 15 }, "15: unknown format \"xml\" (expected raw or json)" },
	{ { "a/#", "t", NULL, "JSON", 16 }, "16: unknown format" },
	{ { "a/#", "t", NULL, "raw", 17, "base64" },
	  "17: payload_text applies to format \"json\" only" },
	{ { "a/#", "t", NULL, NULL, 18, "utf8" }, "18: payload_text applies to format" },
	{ { "a/#", "t", NULL, "json", 19, "hex" },
	  "19: unknown payload_text \"hex\" (expected utf8 or base64)" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
		/* The bad route comes after a good one: the error names its line. */
		struct route_spec specs[2] = { { "ok/#", "ok", NULL, "raw", 1 },
					       error_cases[i].spec };
		char err[200] = "";
		struct route_table *rt = route_table_new(specs, 2, err, sizeof err);
		if (rt)
			fail_msg("case %zu: table built, want \"%s\"", i, error_cases[i].msg);
		if (strncmp(err, error_cases[i].msg, strlen(error_cases[i].msg)) != 0)
			fail_msg("case %zu: error \"%s\", want \"%s\"", i, err,
				 error_cases[i].msg);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 5,000 routes: lookups stay correct and cost about what a few routes cost. */
static void test_many_routes(void **state)
{
	enum { N = 5000, LOOKUPS = 20000 };
	struct route_spec *specs = calloc(N, sizeof *specs);
	char (*filters)[40] = calloc(N, sizeof *filters);
	char (*topics)[40] = calloc(N, sizeof *topics);
	const struct route *out[4];
	char topic[64];

	(void)state;
	assert_non_null(specs);
	assert_non_null(filters);
	assert_non_null(topics);
	for (int i = 0; i < N; i++) {
		/* Mostly one route per site; every 1000th is a wildcard over all. */
		if (i % 1000 == 999)
			snprintf(filters[i], sizeof filters[i], "site/+/w%d", i);
		else
			snprintf(filters[i], sizeof filters[i], "site/%d/#", i);
		snprintf(topics[i], sizeof topics[i], "t%d", i);
		specs[i] = (struct route_spec){ filters[i], topics[i], NULL, "raw", i + 1 };
	}
	struct route_table *rt = route_table_new(specs, N, NULL, 0);
	assert_non_null(rt);

	assert_int_equal(route_table_match(rt, "site/1234/a/b", 13, out, 4), 1);
	assert_int_equal(route_index(out[0]), 1234);
	assert_string_equal(template_source(route_topic(out[0])), "t1234");
	assert_int_equal(route_table_match(rt, "site/42/w2999", 13, out, 4), 2);
	assert_int_equal(route_index(out[0]), 42);
	assert_int_equal(route_index(out[1]), 2999);
	assert_int_equal(route_table_match(rt, "site/4998", 9, out, 4), 1);
	assert_int_equal(route_index(out[0]), 4998);
	assert_int_equal(route_table_match(rt, "site/999/x", 10, out, 4), 0);
	assert_int_equal(route_table_match(rt, "site/5000/x", 11, out, 4), 0);
	assert_int_equal(route_table_match(rt, "other/1", 7, out, 4), 0);

	/* A linear scan would make ~10^8 filter comparisons here (seconds); the
	 * trie does ~10^5 level steps. The bound is loose for sanitizers. */
	double t0 = now_s();
	size_t total = 0;
	for (int i = 0; i < LOOKUPS; i++) {
		int n = snprintf(topic, sizeof topic, "site/%d/data", i % N);
		total += route_table_match(rt, topic, (size_t)n, out, 4);
	}
	double took = now_s() - t0;
	assert_int_equal(total, LOOKUPS - LOOKUPS / N * (N / 1000));
	print_message("%d lookups over %d routes: %.3f s\n", LOOKUPS, N, took);
	if (took > 1.0)
		fail_msg("%d lookups over %d routes took %.3f s", LOOKUPS, N, took);

	route_table_unref(rt);
	free(specs);
	free(filters);
	free(topics);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlapping_filters),
		cmocka_unit_test(test_order_is_definition_order),
		cmocka_unit_test(test_match_more_than_max),
		cmocka_unit_test(test_match_prefix_of_many),
		cmocka_unit_test(test_no_match),
		cmocka_unit_test(test_accessors_and_refs),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_many_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
