/*
 * test_session_subs.c - a session's filter set (broker/session_subs.c),
 * linked alone: add, replace, find, remove, iteration, and that the memory
 * goes back as filters go. Random operations are checked against a plain
 * array, so the backward-shift deletion is exercised at every table size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/session_subs.h"

static uint16_t slen(const char *s)
{
	return (uint16_t)strlen(s);
}

static void test_add_find_del(void **state)
{
	(void)state;
	struct session_subs ss;

	session_subs_init(&ss);
	assert_null(session_subs_find(&ss, "a", 1));
	assert_false(session_subs_del(&ss, "a", 1));
	assert_int_equal(session_subs_add(&ss, "a/b", 3, 1), 1);
	assert_int_equal(session_subs_add(&ss, "a/+", 3, 0), 1);
	assert_int_equal(session_subs_add(&ss, "a/b", 3, 2), 0); /* replaced */
	assert_int_equal(ss.n, 2);
	struct sub_entry *e = session_subs_find(&ss, "a/b", 3);
	assert_non_null(e);
	assert_int_equal(e->qos, 2);
	assert_int_equal(e->len, 3);
	assert_string_equal(e->filter, "a/b");
	/* Lengths matter: "a/" is not "a/b"; an empty filter is a key too. */
	assert_null(session_subs_find(&ss, "a/b", 2));
	assert_int_equal(session_subs_add(&ss, "", 0, 1), 1);
	assert_non_null(session_subs_find(&ss, "", 0));
	assert_true(session_subs_del(&ss, "a/b", 3));
	assert_false(session_subs_del(&ss, "a/b", 3));
	assert_null(session_subs_find(&ss, "a/b", 3));
	assert_non_null(session_subs_find(&ss, "a/+", 3));
	assert_true(session_subs_del(&ss, "a/+", 3));
	assert_true(session_subs_del(&ss, "", 0));
	/* Empty again: nothing held. */
	assert_int_equal(ss.n, 0);
	assert_int_equal(ss.cap, 0);
	assert_null(ss.slot);
	assert_int_equal(ss.bytes, 0);
	session_subs_release(&ss);
}

/* MQTT 5 options packed in one word (SUBOPT_*): kept per filter, replaced
 * with it, and the QoS readable on its own. */
static void test_options(void **state)
{
	(void)state;
	struct session_subs ss;
	uint32_t o = subopt_make(2, true, false, SUBOPT_ID_MAX);

	assert_int_equal(SUBOPT_QOS(o), 2);
	assert_true(o & SUBOPT_NO_LOCAL);
	assert_false(o & SUBOPT_RAP);
	assert_int_equal(SUBOPT_ID(o), 268435455);
	/* A 3.1.1 subscription is its QoS alone. */
	assert_int_equal(subopt_make(1, false, false, 0), 1);

	session_subs_init(&ss);
	assert_int_equal(session_subs_add(&ss, "x/#", 3, o), 1);
	struct sub_entry *e = session_subs_find(&ss, "x/#", 3);
	assert_int_equal(e->qos, 2);
	assert_int_equal(e->opts, o);
	uint32_t o2 = subopt_make(0, false, true, 7);
	assert_int_equal(session_subs_add(&ss, "x/#", 3, o2), 0);
	e = session_subs_find(&ss, "x/#", 3);
	assert_int_equal(e->qos, 0);
	assert_int_equal(SUBOPT_ID(e->opts), 7);
	assert_true(e->opts & SUBOPT_RAP);
	assert_false(e->opts & SUBOPT_NO_LOCAL);
	session_subs_release(&ss);
}

#define MANY 100000

/* 100,000 filters in and out (the list this replaces needed 18 s in the
 * gateway); iteration sees each once; bytes go back to 0. */
static void test_many(void **state)
{
	(void)state;
	struct session_subs ss;
	char f[32];
	uint8_t *seen = calloc(MANY, 1);

	assert_non_null(seen);
	session_subs_init(&ss);
	for (int i = 0; i < MANY; i++) {
		snprintf(f, sizeof(f), "dev/%d/cmd", i);
		assert_int_equal(session_subs_add(&ss, f, slen(f), (uint8_t)(i % 3)), 1);
	}
	assert_int_equal(ss.n, MANY);
	size_t full = ss.bytes;
	uint32_t pos = 0, n = 0;
	for (const struct sub_entry *e; (e = session_subs_next(&ss, &pos)); n++) {
		int i = atoi(e->filter + 4);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		assert_int_equal(e->qos, i % 3);
	}
	assert_int_equal(n, MANY);
	for (int i = 0; i < MANY; i += 2) {
		snprintf(f, sizeof(f), "dev/%d/cmd", i);
		assert_true(session_subs_del(&ss, f, slen(f)));
	}
	assert_true(ss.bytes < full);
	for (int i = 0; i < MANY; i++) {
		snprintf(f, sizeof(f), "dev/%d/cmd", i);
		struct sub_entry *e = session_subs_find(&ss, f, slen(f));
		if (i % 2)
			assert_non_null(e);
		else
			assert_null(e);
	}
	for (int i = 1; i < MANY; i += 2) {
		snprintf(f, sizeof(f), "dev/%d/cmd", i);
		assert_true(session_subs_del(&ss, f, slen(f)));
	}
	assert_int_equal(ss.n, 0);
	assert_int_equal(ss.bytes, 0);
	assert_int_equal(ss.cap, 0);
	session_subs_release(&ss);
	free(seen);
}

/* Random adds and removes over a small key space against a plain array. */
static void test_random(void **state)
{
	(void)state;
	enum { KEYS = 300, OPS = 200000 };
	struct session_subs ss;
	int8_t want[KEYS]; /* -1 absent, else qos */
	char f[16];
	unsigned seed = 12345;

	memset(want, -1, sizeof(want));
	session_subs_init(&ss);
	for (int op = 0; op < OPS; op++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % KEYS);
		/* Phases: mostly adds, then mostly removes, so the table grows
		 * and shrinks through every size. */
		bool add = ((seed >> 20) % 100) < ((op / 20000) % 2 ? 30u : 70u);
		snprintf(f, sizeof(f), "k/%d", k);
		if (add) {
			uint8_t qos = (uint8_t)((seed >> 4) % 3);
			assert_int_equal(session_subs_add(&ss, f, slen(f), qos), want[k] < 0 ? 1 : 0);
			want[k] = (int8_t)qos;
		} else {
			assert_int_equal(session_subs_del(&ss, f, slen(f)), want[k] >= 0);
			want[k] = -1;
		}
		if (op % 1000 == 0) {
			uint32_t n = 0;
			for (int i = 0; i < KEYS; i++) {
				snprintf(f, sizeof(f), "k/%d", i);
				struct sub_entry *e = session_subs_find(&ss, f, slen(f));
				assert_true((e != NULL) == (want[i] >= 0));
				if (e) {
					assert_int_equal(e->qos, want[i]);
					n++;
				}
			}
			assert_int_equal(ss.n, n);
			/* Load stays at most 3/4. */
			assert_true(ss.cap == 0 || (uint64_t)ss.n * 4 <= (uint64_t)ss.cap * 3);
		}
	}
	session_subs_release(&ss);
	assert_int_equal(ss.n, 0);
	session_subs_release(&ss); /* twice is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_find_del),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("session_subs", tests, NULL, NULL);
}
