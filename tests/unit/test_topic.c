/* test_topic.c - topic_matches(), topic_level(), level counts and limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mqtt/topic.h"

struct match_case {
	const char *filter;
	const char *topic;
	bool match;
};

/* MQTT 3.1.1 section 4.7 examples (4.7.1.2, 4.7.1.3, 4.7.2, 4.7.3) and the
 * edge cases around empty levels and '$'. */
static const struct match_case cases[] = {
	{ "sport/tennis/player1/#", "sport/tennis/player1", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
	{ "sport/tennis/player1/#", "sport/tennis/player2", false },
	{ "sport/tennis/player1/#", "sport/tennis", false },
	{ "sport/#", "sport", true },
	{ "sport/#", "sport/", true },
	{ "sport/#", "sports", false },
	{ "sport/tennis/#", "sport", false },
	{ "#", "sport/tennis/player1", true },
	{ "#", "/", true },
	{ "#", "a", true },
	{ "sport/tennis/+", "sport/tennis/player1", true },
	{ "sport/tennis/+", "sport/tennis/player2", true },
	{ "sport/tennis/+", "sport/tennis/player1/ranking", false },
	{ "sport/+", "sport", false },
	{ "sport/+", "sport/", true },
	{ "sport/+/player1", "sport/tennis/player1", true },
	{ "+/tennis/#", "sport/tennis/player1", true },
	{ "+/tennis/#", "sport/tennis", true },
	{ "+/+", "/finance", true },
	{ "/+", "/finance", true },
	{ "+", "/finance", false },
	{ "+", "finance", true },
	{ "+", "", true },
	{ "/finance", "finance", false },
	{ "finance", "/finance", false },
	{ "ACCOUNTS", "Accounts", false },
	{ "Accounts payable", "Accounts payable", true },
	{ "#", "$SYS/monitor/Clients", false },
	{ "+/monitor/Clients", "$SYS/monitor/Clients", false },
	{ "$SYS/#", "$SYS/monitor/Clients", true },
	{ "$SYS/#", "$SYS", true },
	{ "$SYS/monitor/+", "$SYS/monitor/Clients", true },
	{ "+", "$SYS", false },
	{ "+/#", "$SYS", false },
	{ "$SYS", "$SYS", true },
	{ "a/+", "a/$b", true },
	{ "#", "a/$b", true },
	{ "#", "x$", true },
	{ "a/+/b", "a//b", true },
	{ "a/#", "a//b", true },
	{ "+/+/+", "a//b", true },
	{ "a/b", "a//b", false },
	{ "a//b", "a//b", true },
	{ "a//b", "a/b", false },
	{ "+/+", "/", true },
	{ "/#", "/", true },
	{ "+", "/", false },
	{ "/", "/", true },
	{ "//", "/", false },
	{ "a/+/#", "a/b", true },
	{ "a/+/#", "a", false },
	{ "+/#", "a", true },
	{ "a/b/c", "a/b", false },
	{ "a/b", "a/b/c", false },
};

static void test_spec_examples(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct match_case *c = &cases[i];
		bool got = topic_matches(c->filter, strlen(c->filter), c->topic, strlen(c->topic));
		if (got != c->match)
			fail_msg("filter '%s' topic '%s': got %d want %d", c->filter, c->topic,
				 got, c->match);
	}
}

/* Lengths, not NULs, delimit both strings. */
static void test_not_nul_terminated(void **state)
{
	(void)state;
	assert_true(topic_matches("sport/tennisXX", 12, "sport/tennisYY", 12));
	assert_false(topic_matches("sport/tennis", 12, "sport/tennisYY", 14));
	assert_true(topic_matches("a/#/ignored", 3, "a/b", 3));
	assert_true(topic_matches("sport/+", 7, "sport/x/y", 7));
	assert_false(topic_matches("+", 1, "$SYS", 4));
	assert_true(topic_matches("+", 1, "$SYS", 0));
}

static void test_level(void **state)
{
	(void)state;
	const char *s = NULL;
	const char *t = "devices/d1//cmd";
	size_t len = strlen(t);
	assert_int_equal(topic_level(t, len, 0, &s), 7);
	assert_ptr_equal(s, t);
	assert_int_equal(topic_level(t, len, 1, &s), 2);
	assert_ptr_equal(s, t + 8);
	assert_int_equal(topic_level(t, len, 2, &s), 0);
	assert_ptr_equal(s, t + 11);
	assert_int_equal(topic_level(t, len, 3, &s), 3);
	assert_memory_equal(s, "cmd", 3);
	assert_int_equal(topic_level(t, len, 4, &s), (size_t)-1);
	assert_int_equal(topic_level(t, len, 1000, NULL), (size_t)-1);

	assert_int_equal(topic_level("/a", 2, 0, &s), 0);
	assert_int_equal(topic_level("/a", 2, 1, &s), 1);
	assert_int_equal(topic_level("a/", 2, 1, &s), 0);
	assert_int_equal(topic_level("a/", 2, 2, &s), (size_t)-1);
	assert_int_equal(topic_level("abc", 3, 0, NULL), 3);
	assert_int_equal(topic_level("abc", 3, 1, NULL), (size_t)-1);
	/* Only len bytes count. */
	assert_int_equal(topic_level("ab/cd", 2, 1, NULL), (size_t)-1);
}

static void test_wildcard_predicates(void **state)
{
	(void)state;
	assert_true(topic_is_plus("+", 1));
	assert_false(topic_is_plus("+a", 2));
	assert_false(topic_is_plus("#", 1));
	assert_true(topic_is_hash("#", 1));
	assert_false(topic_is_hash("", 0));
}

static void test_level_end(void **state)
{
	(void)state;
	assert_int_equal(topic_level_end("a/bc/", 5, 0), 1);
	assert_int_equal(topic_level_end("a/bc/", 5, 2), 4);
	assert_int_equal(topic_level_end("a/bc/", 5, 5), 5); /* trailing empty level */
	assert_int_equal(topic_level_end("//", 2, 1), 1);
	assert_int_equal(topic_level_end("abc/d", 3, 0), 3);
}

static void test_levels(void **state)
{
	(void)state;
	static const struct {
		const char *t;
		int levels;
	} levels[] = {
		{ "", 1 },         { "a", 1 },       { "/", 2 },          { "//", 3 },
		{ "a/b", 2 },      { "/a", 2 },      { "a/", 2 },         { "a//b", 3 },
		{ "$SYS/x", 2 },   { "+/+/#", 3 },   { "sport/tennis/player1", 3 },
	};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		assert_int_equal(topic_levels(levels[i].t, strlen(levels[i].t)), levels[i].levels);
	/* Only len bytes count; a NULL pointer is fine when len is 0. */
	assert_int_equal(topic_levels("a/b/c", 3), 2);
	assert_int_equal(topic_levels(NULL, 0), 1);
	/* The shape of the hostile filter: "AA" then 65,533 '/'. */
	size_t len = 65535;
	char *t = malloc(len);
	assert_non_null(t);
	memset(t, '/', len);
	memcpy(t, "AA", 2);
	assert_int_equal(topic_levels(t, len), 65534);
	free(t);
}

static void test_check_limits(void **state)
{
	(void)state;
	static const struct {
		const char *t;
		unsigned max_len, max_levels;
		int want;
	} limits[] = {
		{ "a/b/c", 0, 0, TOPIC_OK },
		{ "a/b/c", 5, 3, TOPIC_OK },           /* both limits exactly reached */
		{ "a/b/c", 4, 3, TOPIC_ERR_TOO_LONG },
		{ "a/b/c", 5, 2, TOPIC_ERR_TOO_DEEP },
		{ "a/b/c", 4, 2, TOPIC_ERR_TOO_LONG }, /* length is checked first */
		{ "a/b/c", 0, 2, TOPIC_ERR_TOO_DEEP },
		{ "a/b/c", 4, 0, TOPIC_ERR_TOO_LONG },
		{ "", 1, 1, TOPIC_OK },
		{ "/", 1, 1, TOPIC_ERR_TOO_DEEP },     /* two empty levels */
		{ "/", 1, 2, TOPIC_OK },
		{ "a//b", 0, 3, TOPIC_OK },
		{ "a//b", 0, 2, TOPIC_ERR_TOO_DEEP },
		{ "+/#", 3, 2, TOPIC_OK },
		{ "x", 1, 1, TOPIC_OK },
		{ "xy", 1, 1, TOPIC_ERR_TOO_LONG },
	};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		int got = topic_check_limits(limits[i].t, strlen(limits[i].t), limits[i].max_len,
					     limits[i].max_levels);
		if (got != limits[i].want)
			fail_msg("'%s' max_len %u max_levels %u: got %d want %d", limits[i].t,
				 limits[i].max_len, limits[i].max_levels, got, limits[i].want);
	}
	assert_int_equal(topic_check_limits(NULL, 0, 10, 10), TOPIC_OK);

	/* A 64 KiB filter of empty levels against typical limits. */
	size_t len = 65535;
	char *t = malloc(len);
	assert_non_null(t);
	memset(t, '/', len);
	memcpy(t, "AA", 2);
	assert_int_equal(topic_check_limits(t, len, 65535, 0), TOPIC_OK);
	assert_int_equal(topic_check_limits(t, len, 65535, 65534), TOPIC_OK);
	assert_int_equal(topic_check_limits(t, len, 65535, 65533), TOPIC_ERR_TOO_DEEP);
	assert_int_equal(topic_check_limits(t, len, 65535, 128), TOPIC_ERR_TOO_DEEP);
	assert_int_equal(topic_check_limits(t, len, 1024, 128), TOPIC_ERR_TOO_LONG);
	assert_int_equal(topic_check_limits(t, len, UINT_MAX, UINT_MAX), TOPIC_OK);
	free(t);

	assert_string_equal(topic_err_str(TOPIC_OK), "ok");
	assert_string_equal(topic_err_str(TOPIC_ERR_TOO_LONG), "topic too long");
	assert_string_equal(topic_err_str(TOPIC_ERR_TOO_DEEP), "too many topic levels");
	assert_string_equal(topic_err_str(42), "unknown topic error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_examples),
		cmocka_unit_test(test_not_nul_terminated),
		cmocka_unit_test(test_level),
		cmocka_unit_test(test_wildcard_predicates),
		cmocka_unit_test(test_level_end),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_check_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
