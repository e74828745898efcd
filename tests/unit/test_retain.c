/* test_retain.c - the retained store, with topic_matches() as oracle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/msg.h"
#include "broker/retain.h"
#include "mqtt/topic.h"

static struct msg *mk(const char *topic, const char *payload)
{
	struct msg *m = msg_new(topic, strlen(topic), payload, strlen(payload), 1, true);
	assert_non_null(m);
	return m;
}

static unsigned refs(struct msg *m)
{
	return atomic_load(&m->refs);
}

/* Collects the matched messages (borrowed). */
struct seen {
	size_t n, cap;
	struct msg **m;
};

static void seen_cb(struct msg *m, void *ud)
{
	struct seen *s = ud;
	assert_true(s->n < s->cap);
	s->m[s->n++] = m;
}

static size_t match(const struct retain_store *rs, const char *filter, struct seen *s)
{
	s->n = 0;
	size_t n = retain_match(rs, filter, strlen(filter), seen_cb, s);
	assert_int_equal(n, s->n);
	return n;
}

static bool seen_has(const struct seen *s, const struct msg *m)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i] == m)
			return true;
	return false;
}

static void count_cb(struct msg *m, void *ud)
{
	(void)m;
	(*(size_t *)ud)++;
}

static void test_set_replace_clear(void **state)
{
	(void)state;
	struct msg *seen_buf[4];
	struct seen s = { 0, 4, seen_buf };
	struct retain_store *rs = retain_new();
	assert_non_null(rs);
	struct msg *m1 = mk("a/b", "one"), *m2 = mk("a/b", "two"), *m3 = mk("a", "x");
	struct msg *clear = mk("a/b", "");

	assert_int_equal(retain_set(rs, m1), 0);
	assert_int_equal(refs(m1), 2);
	assert_int_equal(retain_set(rs, m1), 0); /* same message again */
	assert_int_equal(refs(m1), 2);
	assert_int_equal(retain_count(rs), 1);

	assert_int_equal(retain_set(rs, m2), 0);
	assert_int_equal(refs(m1), 1);
	assert_int_equal(refs(m2), 2);
	assert_int_equal(retain_count(rs), 1);
	assert_int_equal(match(rs, "a/b", &s), 1);
	assert_ptr_equal(s.m[0], m2);

	assert_int_equal(retain_set(rs, m3), 0);
	assert_int_equal(retain_count(rs), 2);
	assert_int_equal(match(rs, "a/#", &s), 2);
	assert_true(seen_has(&s, m2) && seen_has(&s, m3));

	assert_int_equal(retain_set(rs, clear), 0);
	assert_int_equal(refs(clear), 1); /* never stored */
	assert_int_equal(refs(m2), 1);
	assert_int_equal(retain_count(rs), 1);
	assert_int_equal(retain_node_count(rs), 1); /* "b" pruned, "a" holds m3 */
	assert_int_equal(match(rs, "a/b", &s), 0);
	assert_int_equal(retain_set(rs, clear), 0); /* clearing nothing */

	struct msg *clear_a = mk("a", "");
	assert_int_equal(retain_set(rs, clear_a), 0);
	assert_int_equal(retain_count(rs), 0);
	assert_int_equal(retain_node_count(rs), 0);
	assert_int_equal(refs(m3), 1);

	/* Freeing the store drops its references. */
	assert_int_equal(retain_set(rs, m1), 0);
	assert_int_equal(retain_set(rs, m3), 0);
	assert_int_equal(refs(m1), 2);
	retain_free(rs);
	retain_free(NULL);
	assert_int_equal(refs(m1), 1);
	assert_int_equal(refs(m3), 1);
	msg_unref(m1);
	msg_unref(m2);
	msg_unref(m3);
	msg_unref(clear);
	msg_unref(clear_a);
}

/* retain_set_capped(): a new topic beyond the count or the bytes is not
 * stored; a replacement keeps the count, and one that does not fit clears
 * its topic; clearing always works; retain_bytes() counts topic + payload. */
static void test_caps(void **state)
{
	(void)state;
	struct msg *seen_buf[4];
	struct seen s = { 0, 4, seen_buf };
	struct retain_store *rs = retain_new();
	assert_non_null(rs);
	struct msg *a = mk("t/a", "1234567"), *b = mk("t/b", "1234567"); /* 10 bytes each */
	struct msg *c = mk("t/c", "1"), *big_a = mk("t/a", "123456789012345678"); /* 4, 21 */
	struct msg *a2 = mk("t/a", "12"), *clear_a = mk("t/a", "");

	assert_int_equal(retain_set_capped(rs, a, 2, 25), 0);
	assert_int_equal(retain_set_capped(rs, b, 2, 25), 0);
	assert_int_equal(retain_bytes(rs), 20);
	/* Count: a third topic. */
	assert_int_equal(retain_set_capped(rs, c, 2, 25), RETAIN_FULL_COUNT);
	assert_int_equal(refs(c), 1);
	assert_int_equal(retain_count(rs), 2);
	/* Bytes: a third topic that the count allows. */
	assert_int_equal(retain_set_capped(rs, c, 3, 23), RETAIN_FULL_BYTES);
	assert_int_equal(retain_set_capped(rs, c, 3, 24), 0);
	assert_int_equal(retain_bytes(rs), 24);
	/* Replacing a by a smaller message at the count cap: fine. */
	assert_int_equal(retain_set_capped(rs, a2, 3, 24), 0);
	assert_int_equal(retain_bytes(rs), 19);
	assert_int_equal(refs(a), 1);
	/* Replacing it by one that does not fit: the stale one is cleared. */
	assert_int_equal(retain_set_capped(rs, big_a, 3, 30), RETAIN_FULL_BYTES);
	assert_int_equal(refs(big_a), 1);
	assert_int_equal(refs(a2), 1);
	assert_int_equal(retain_count(rs), 2);
	assert_int_equal(retain_bytes(rs), 14);
	assert_int_equal(match(rs, "t/a", &s), 0);
	/* Clearing at zero caps. */
	assert_int_equal(retain_set_capped(rs, a, 3, 30), 0);
	assert_int_equal(retain_set_capped(rs, clear_a, 0, 0), 0);
	assert_int_equal(retain_count(rs), 2);
	assert_int_equal(retain_bytes(rs), 14);
	/* Caps of zero store nothing new. */
	assert_int_equal(retain_set_capped(rs, a, 0, 1000), RETAIN_FULL_COUNT);
	assert_int_equal(retain_set_capped(rs, a, 1000, 0), RETAIN_FULL_BYTES);
	retain_free(rs);
	assert_int_equal(refs(b), 1);
	assert_int_equal(refs(c), 1);
	msg_unref(a);
	msg_unref(b);
	msg_unref(c);
	msg_unref(big_a);
	msg_unref(a2);
	msg_unref(clear_a);
}

#include "topic_spec.h"

static void test_spec_examples(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		struct retain_store *rs = retain_new();
		struct msg *m = mk(spec[i].topic, "p");
		assert_int_equal(retain_set(rs, m), 0);
		size_t n = 0;
		retain_match(rs, spec[i].filter, strlen(spec[i].filter), count_cb, &n);
		if (n != (spec[i].match ? 1u : 0u))
			fail_msg("filter '%s' topic '%s': %zu calls", spec[i].filter,
				 spec[i].topic, n);
		retain_free(rs);
		msg_unref(m);
	}
}

static void test_100k_topics(void **state)
{
	(void)state;
	enum { N = 100000 };
	char topic[64];
	struct msg *seen_buf[4];
	struct seen s = { 0, 4, seen_buf };
	struct retain_store *rs = retain_new();
	for (size_t i = 0; i < N; i++) {
		snprintf(topic, sizeof(topic), "devices/d%zu/state", i);
		struct msg *m = mk(topic, "on");
		assert_int_equal(retain_set(rs, m), 0);
		msg_unref(m);
	}
	struct msg *sys = mk("$SYS/uptime", "1");
	assert_int_equal(retain_set(rs, sys), 0);
	assert_int_equal(retain_count(rs), N + 1);

	assert_int_equal(match(rs, "devices/d1/#", &s), 1);
	assert_string_equal(s.m[0]->topic, "devices/d1/state");
	assert_int_equal(match(rs, "devices/d99999/state", &s), 1);
	assert_int_equal(match(rs, "devices/d100000/state", &s), 0);
	assert_int_equal(match(rs, "$SYS/#", &s), 1);
	assert_ptr_equal(s.m[0], sys);

	size_t n = 0;
	assert_int_equal(retain_match(rs, "devices/+/state", 15, count_cb, &n), N);
	n = 0;
	assert_int_equal(retain_match(rs, "#", 1, count_cb, &n), N); /* not $SYS */
	n = 0;
	assert_int_equal(retain_match(rs, "+/+/+", 5, count_cb, &n), N);

	for (size_t i = 0; i < N; i++) {
		snprintf(topic, sizeof(topic), "devices/d%zu/state", i);
		struct msg *m = mk(topic, "");
		assert_int_equal(retain_set(rs, m), 0);
		msg_unref(m);
	}
	assert_int_equal(retain_count(rs), 1);
	assert_int_equal(retain_node_count(rs), 2);
	retain_free(rs);
	assert_int_equal(refs(sys), 1);
	msg_unref(sys);
}

/* --- randomized cross-check against topic_matches() --- */

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void random_name(const char *const *levels, uint32_t nlevels, uint32_t max_depth,
			bool filter, char *out, size_t cap)
{
	uint32_t depth = 1 + rnd(max_depth);
	size_t len = 0;
	out[0] = '\0';
	for (uint32_t d = 0; d < depth; d++) {
		const char *lv = levels[rnd(nlevels)];
		if (filter && rnd(4) == 0)
			lv = "+";
		if (filter && d == depth - 1 && rnd(5) == 0)
			lv = "#";
		len += (size_t)snprintf(out + len, cap - len, "%s%s", d ? "/" : "", lv);
	}
}

static void cross_check(const char *const *levels, uint32_t nlevels, uint32_t max_depth,
			size_t ntopics, size_t nfilters)
{
	enum { CAP = 64 };
	struct msg **msgs = calloc(ntopics, sizeof(*msgs));
	struct seen s = { 0, ntopics, calloc(ntopics, sizeof(struct msg *)) };
	assert_non_null(msgs);
	assert_non_null(s.m);
	struct retain_store *rs = retain_new();
	for (size_t i = 0; i < ntopics; i++) {
		char topic[CAP];
		random_name(levels, nlevels, max_depth, false, topic, CAP);
		msgs[i] = mk(topic, "p");
		assert_int_equal(retain_set(rs, msgs[i]), 0);
	}
	/* The store holds the last message set per topic. */
	for (int round = 0; round < 2; round++) {
		for (size_t k = 0; k < nfilters; k++) {
			char filter[CAP];
			random_name(levels, nlevels, max_depth, true, filter, CAP);
			match(rs, filter, &s);
			size_t want = 0;
			for (size_t i = 0; i < ntopics; i++) {
				struct msg *m = msgs[i];
				bool stored = refs(m) == 2;
				bool hit = stored && topic_matches(filter, strlen(filter),
								   m->topic, m->topic_len);
				want += hit;
				if (hit != seen_has(&s, m))
					fail_msg("round %d filter '%s' topic '%s': want %d",
						 round, filter, m->topic, hit);
			}
			assert_int_equal(s.n, want);
		}
		/* Clear about half of the topics. */
		for (size_t i = 0; i < ntopics; i++) {
			if (refs(msgs[i]) == 2 && rnd(2) == 0) {
				struct msg *c = mk(msgs[i]->topic, "");
				assert_int_equal(retain_set(rs, c), 0);
				msg_unref(c);
				assert_int_equal(refs(msgs[i]), 1);
			}
		}
	}
	retain_free(rs);
	for (size_t i = 0; i < ntopics; i++) {
		assert_int_equal(refs(msgs[i]), 1);
		msg_unref(msgs[i]);
	}
	free(msgs);
	free(s.m);
}

static const char *const small_levels[] = { "", "a", "b", "$", "$a", "a$" };
static const char *const wide_levels[] = {
	"l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11",
	"l12", "l13", "l14", "l15", "l16", "l17", "l18", "l19", "", "$x",
};

static void test_random_small_alphabet(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++)
		cross_check(small_levels, 6, 4, 200, 200);
}

static void test_random_wide_alphabet(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		cross_check(wide_levels, 22, 3, 3000, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_replace_clear),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_spec_examples),
		cmocka_unit_test(test_100k_topics),
		cmocka_unit_test(test_random_small_alphabet),
		cmocka_unit_test(test_random_wide_alphabet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
