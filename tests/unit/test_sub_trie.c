/* test_sub_trie.c - the topic filter trie, with topic_matches() as oracle. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

#define OWNER(i) ((void *)(uintptr_t)((i) + 1))
#define INDEX(p) ((size_t)(uintptr_t)(p) - 1)

/* Counts callbacks per owner index; remembers the last data seen. */
struct hits {
	size_t n;
	unsigned *count;
	uint32_t *data;
};

static void hits_init(struct hits *h, size_t n)
{
	h->n = n;
	h->count = calloc(n, sizeof(*h->count));
	h->data = calloc(n, sizeof(*h->data));
	assert_non_null(h->count);
	assert_non_null(h->data);
}

static void hits_clear(struct hits *h)
{
	memset(h->count, 0, h->n * sizeof(*h->count));
}

static void hits_release(struct hits *h)
{
	free(h->count);
	free(h->data);
}

static void hit_cb(void *owner, uint32_t data, void *ud)
{
	struct hits *h = ud;
	size_t i = INDEX(owner);
	assert_true(i < h->n);
	h->count[i]++;
	h->data[i] = data;
}

static size_t match(const struct sub_trie *t, const char *topic, struct hits *h)
{
	hits_clear(h);
	return sub_trie_match(t, topic, strlen(topic), hit_cb, h);
}

static int add(struct sub_trie *t, const char *filter, size_t owner, uint32_t data)
{
	return sub_trie_add(t, filter, strlen(filter), OWNER(owner), data);
}

static int del(struct sub_trie *t, const char *filter, size_t owner)
{
	return sub_trie_remove(t, filter, strlen(filter), OWNER(owner));
}

#include "topic_spec.h"

static void test_spec_examples(void **state)
{
	(void)state;
	struct hits h;
	hits_init(&h, NSPEC);
	/* One filter at a time: the expectation itself. */
	for (size_t i = 0; i < NSPEC; i++) {
		struct sub_trie *t = sub_trie_new();
		assert_non_null(t);
		assert_int_equal(add(t, spec[i].filter, i, 7), 1);
		size_t n = match(t, spec[i].topic, &h);
		if (n != (spec[i].match ? 1u : 0u))
			fail_msg("filter '%s' topic '%s': %zu calls", spec[i].filter,
				 spec[i].topic, n);
		sub_trie_free(t);
	}
	/* All filters in one trie: every topic against every filter. */
	struct sub_trie *t = sub_trie_new();
	for (size_t i = 0; i < NSPEC; i++)
		assert_true(add(t, spec[i].filter, i, (uint32_t)i) >= 0);
	for (size_t j = 0; j < NSPEC; j++) {
		const char *topic = spec[j].topic;
		match(t, topic, &h);
		for (size_t i = 0; i < NSPEC; i++) {
			bool want = topic_matches(spec[i].filter, strlen(spec[i].filter), topic,
						  strlen(topic));
			if (h.count[i] != (want ? 1u : 0u))
				fail_msg("filter '%s' topic '%s': %u calls", spec[i].filter,
					 topic, h.count[i]);
		}
	}
	sub_trie_free(t);
	hits_release(&h);
}

static void test_add_replace_remove(void **state)
{
	(void)state;
	struct hits h;
	hits_init(&h, 4);
	struct sub_trie *t = sub_trie_new();
	assert_int_equal(sub_trie_count(t), 0);
	assert_int_equal(add(t, "a/b", 0, 1), 1);
	assert_int_equal(add(t, "a/b", 0, 2), 0); /* same owner: data replaced */
	assert_int_equal(sub_trie_count(t), 1);
	assert_int_equal(match(t, "a/b", &h), 1);
	assert_int_equal(h.data[0], 2);
	assert_int_equal(add(t, "a/b", 1, 3), 1);
	assert_int_equal(add(t, "a/+", 0, 4), 1);
	assert_int_equal(sub_trie_count(t), 3);
	assert_int_equal(match(t, "a/b", &h), 3);

	assert_int_equal(del(t, "a/b", 2), 0);  /* no such owner */
	assert_int_equal(del(t, "a", 0), 0);    /* node exists, no entry */
	assert_int_equal(del(t, "a/b/c", 0), 0);
	assert_int_equal(del(t, "x", 0), 0);
	assert_int_equal(del(t, "a/#", 0), 0);
	assert_int_equal(del(t, "a/b", 0), 1);
	assert_int_equal(del(t, "a/b", 0), 0);
	assert_int_equal(sub_trie_count(t), 2);
	assert_int_equal(match(t, "a/b", &h), 2);
	assert_int_equal(h.count[0], 1); /* via a/+ */
	assert_int_equal(h.count[1], 1);
	sub_trie_free(t);
	sub_trie_free(NULL);
	hits_release(&h);
}

static void test_overlap_reports_twice(void **state)
{
	(void)state;
	struct hits h;
	hits_init(&h, 2);
	struct sub_trie *t = sub_trie_new();
	const char *filters[] = { "a/b", "a/+", "a/#", "#", "+/b", "+/+" };
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(add(t, filters[i], 0, (uint32_t)i), 1);
	assert_int_equal(add(t, "a/b", 1, 9), 1);
	assert_int_equal(match(t, "a/b", &h), 7);
	assert_int_equal(h.count[0], 6);
	assert_int_equal(h.count[1], 1);
	assert_int_equal(match(t, "a", &h), 2); /* a/# and # */
	assert_int_equal(match(t, "$a/b", &h), 0);
	sub_trie_free(t);
	hits_release(&h);
}

static void test_pruning(void **state)
{
	(void)state;
	struct hits h;
	hits_init(&h, 8);
	struct sub_trie *t = sub_trie_new();
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(add(t, "a/b/c/d", 0, 0), 1);
	assert_int_equal(add(t, "a/b", 1, 0), 1);
	assert_int_equal(add(t, "a/+/#", 2, 0), 1);
	assert_int_equal(add(t, "//", 3, 0), 1);
	assert_int_equal(sub_trie_node_count(t), 4 + 2 + 3);
	assert_int_equal(del(t, "a/b/c/d", 0), 1);
	assert_int_equal(sub_trie_node_count(t), 2 + 2 + 3); /* a, b kept */
	assert_int_equal(match(t, "a/b", &h), 2);
	assert_int_equal(del(t, "a/b", 1), 1);
	assert_int_equal(sub_trie_node_count(t), 3 + 3);
	assert_int_equal(match(t, "a/b", &h), 1);
	assert_int_equal(del(t, "a/+/#", 2), 1);
	assert_int_equal(del(t, "//", 3), 1);
	assert_int_equal(sub_trie_count(t), 0);
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(match(t, "a/b", &h), 0);
	/* The trie is reusable after emptying. */
	assert_int_equal(add(t, "a/b", 1, 5), 1);
	assert_int_equal(match(t, "a/b", &h), 1);
	sub_trie_free(t);
	hits_release(&h);
}

/* A level too long to store fails the add and drops the nodes it made. */
static void test_failed_add_rolls_back(void **state)
{
	(void)state;
	size_t big = 70000;
	char *f = malloc(big + 16);
	assert_non_null(f);
	memcpy(f, "a/b/", 4);
	memset(f + 4, 'x', big);
	struct sub_trie *t = sub_trie_new();
	assert_int_equal(sub_trie_add(t, f, 4 + big, OWNER(0), 0), -1);
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(add(t, "a", 0, 0), 1);
	assert_int_equal(sub_trie_add(t, f, 4 + big, OWNER(0), 0), -1);
	assert_int_equal(sub_trie_node_count(t), 1);
	assert_int_equal(sub_trie_count(t), 1);
	sub_trie_free(t);
	free(f);
}

static void test_many_owners_one_filter(void **state)
{
	(void)state;
	enum { N = 1000 };
	struct hits h;
	hits_init(&h, N);
	struct sub_trie *t = sub_trie_new();
	for (size_t i = 0; i < N; i++)
		assert_int_equal(add(t, "x/y", i, (uint32_t)i), 1);
	assert_int_equal(match(t, "x/y", &h), N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(h.count[i], 1);
	/* Remove from both ends so every shrink step is taken. */
	for (size_t k = 0; k < N; k++) {
		size_t i = k % 2 ? k / 2 : N - 1 - k / 2;
		assert_int_equal(del(t, "x/y", i), 1);
		assert_int_equal(match(t, "x/y", &h), N - 1 - k);
		assert_int_equal(h.count[i], 0);
	}
	assert_int_equal(sub_trie_node_count(t), 0);
	sub_trie_free(t);
	hits_release(&h);
}

static void test_100k_children(void **state)
{
	(void)state;
	enum { N = 100000 };
	char f[64];
	struct hits h;
	hits_init(&h, N + 1);
	struct sub_trie *t = sub_trie_new();
	size_t empty = sub_trie_bytes(t);
	for (size_t i = 0; i < N; i++) {
		snprintf(f, sizeof(f), "devices/%zu/commands", i);
		assert_int_equal(add(t, f, i, (uint32_t)i), 1);
	}
	assert_int_equal(add(t, "devices/+/commands", N, 0), 1);
	assert_int_equal(sub_trie_count(t), N + 1);
	assert_int_equal(sub_trie_node_count(t), 1 + 2 * N + 2);
	for (size_t i = 0; i < N; i += 7) {
		snprintf(f, sizeof(f), "devices/%zu/commands", i);
		assert_int_equal(match(t, f, &h), 2);
		assert_int_equal(h.count[i], 1);
		assert_int_equal(h.data[i], i);
	}
	assert_int_equal(match(t, "devices/100000/commands", &h), 1);
	for (size_t i = 0; i < N; i += 2) {
		snprintf(f, sizeof(f), "devices/%zu/commands", i);
		assert_int_equal(del(t, f, i), 1);
	}
	for (size_t i = 0; i < N; i++) {
		snprintf(f, sizeof(f), "devices/%zu/commands", i);
		assert_int_equal(match(t, f, &h), i % 2 ? 2 : 1);
	}
	for (size_t i = 1; i < N; i += 2) {
		snprintf(f, sizeof(f), "devices/%zu/commands", i);
		assert_int_equal(del(t, f, i), 1);
	}
	/* The shrunk node still finds what is left. */
	assert_int_equal(add(t, "devices/42/commands", 42, 1), 1);
	assert_int_equal(match(t, "devices/42/commands", &h), 2);
	assert_int_equal(del(t, "devices/42/commands", 42), 1);
	assert_int_equal(del(t, "devices/+/commands", N), 1);
	assert_int_equal(sub_trie_count(t), 0);
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(sub_trie_bytes(t), empty);
	sub_trie_free(t);
	hits_release(&h);
}

/* A filter's last level keeps one entry inline; a second owner, or a
 * wildcard child, moves it to the side record and back when they go. */
static void test_inline_entry_moves(void **state)
{
	(void)state;
	struct hits h;
	hits_init(&h, 4);
	struct sub_trie *t = sub_trie_new();
	size_t empty = sub_trie_bytes(t);
	assert_int_equal(add(t, "a/b", 0, 10), 1);
	size_t one = sub_trie_bytes(t);
	assert_int_equal(add(t, "a/b", 0, 11), 0);
	assert_int_equal(sub_trie_bytes(t), one);
	assert_int_equal(add(t, "a/b", 1, 20), 1);
	assert_true(sub_trie_bytes(t) > one);
	assert_int_equal(match(t, "a/b", &h), 2);
	assert_int_equal(h.data[0], 11);
	assert_int_equal(h.data[1], 20);
	assert_int_equal(del(t, "a/b", 0), 1);
	assert_int_equal(sub_trie_bytes(t), one); /* owner 1 is inline now */
	assert_int_equal(match(t, "a/b", &h), 1);
	assert_int_equal(h.count[1], 1);
	assert_int_equal(h.data[1], 20);

	/* Wildcard children below the inline entry. */
	assert_int_equal(add(t, "a/b/+", 2, 30), 1);
	assert_int_equal(add(t, "a/b/#", 3, 40), 1);
	assert_int_equal(match(t, "a/b", &h), 2);  /* a/b and a/b/# */
	assert_int_equal(match(t, "a/b/c", &h), 2); /* a/b/+ and a/b/# */
	assert_int_equal(h.data[2], 30);
	assert_int_equal(add(t, "a/b", 1, 21), 0);
	assert_int_equal(match(t, "a/b", &h), 2);
	assert_int_equal(h.data[1], 21);
	assert_int_equal(del(t, "a/b/+", 2), 1);
	assert_int_equal(del(t, "a/b/#", 3), 1);
	assert_int_equal(sub_trie_node_count(t), 2);
	assert_int_equal(sub_trie_bytes(t), one);
	assert_int_equal(match(t, "a/b", &h), 1);
	assert_int_equal(h.data[1], 21);

	/* An entry on a node made for a longer filter has no inline slot. */
	assert_int_equal(add(t, "x/y/z", 0, 1), 1);
	assert_int_equal(add(t, "x/y", 1, 2), 1);
	assert_int_equal(add(t, "x/y", 2, 3), 1);
	assert_int_equal(match(t, "x/y", &h), 2);
	assert_int_equal(del(t, "x/y", 1), 1);
	assert_int_equal(match(t, "x/y", &h), 1);
	assert_int_equal(h.data[2], 3);
	assert_int_equal(del(t, "x/y/z", 0), 1);
	assert_int_equal(del(t, "x/y", 2), 1);
	assert_int_equal(sub_trie_foreach(t, hit_cb, &h), 1);
	assert_int_equal(del(t, "a/b", 1), 1);
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(sub_trie_bytes(t), empty);
	sub_trie_free(t);
	hits_release(&h);
}

/* 100,000 filters of every shape in, all out: no node, no byte left. */
static void test_100k_filters_give_memory_back(void **state)
{
	(void)state;
	enum { N = 100000 };
	char f[80];
	struct sub_trie *t = sub_trie_new();
	size_t empty = sub_trie_bytes(t);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < N; i++) {
			switch (i % 8) {
			case 0: snprintf(f, sizeof(f), "devices/d%zu/commands", i); break;
			case 1: snprintf(f, sizeof(f), "devices/+/status/%zu", i % 5000); break;
			case 2: snprintf(f, sizeof(f), "fleet/%zu/+/commands/#", i % 300); break;
			case 3: snprintf(f, sizeof(f), "+/d%zu/#", i); break;
			case 4: snprintf(f, sizeof(f), "$SYS/broker/%zu", i % 64); break;
			case 5: snprintf(f, sizeof(f), "a//%zu///", i); break;
			case 6: snprintf(f, sizeof(f), "#"); break;
			default: snprintf(f, sizeof(f), "devices/d%zu", i - 7); break;
			}
			assert_int_equal(add(t, f, i, (uint32_t)i), 1);
		}
		assert_int_equal(sub_trie_count(t), N);
		assert_true(sub_trie_node_count(t) > N);
		/* Remove in another order than the adds. */
		for (size_t k = 0; k < N; k++) {
			size_t i = (k * 7919) % N;
			switch (i % 8) {
			case 0: snprintf(f, sizeof(f), "devices/d%zu/commands", i); break;
			case 1: snprintf(f, sizeof(f), "devices/+/status/%zu", i % 5000); break;
			case 2: snprintf(f, sizeof(f), "fleet/%zu/+/commands/#", i % 300); break;
			case 3: snprintf(f, sizeof(f), "+/d%zu/#", i); break;
			case 4: snprintf(f, sizeof(f), "$SYS/broker/%zu", i % 64); break;
			case 5: snprintf(f, sizeof(f), "a//%zu///", i); break;
			case 6: snprintf(f, sizeof(f), "#"); break;
			default: snprintf(f, sizeof(f), "devices/d%zu", i - 7); break;
			}
			assert_int_equal(del(t, f, i), 1);
		}
		assert_int_equal(sub_trie_count(t), 0);
		assert_int_equal(sub_trie_node_count(t), 0);
		assert_int_equal(sub_trie_bytes(t), empty);
	}
	sub_trie_free(t);
}

/* --- hostile depth: every walk of a 65,534-level chain on a small stack --- */

struct deep {
	char *chain;       /* "AA" then 65,533 '/': 65,534 levels */
	size_t chain_len;
	char *pluses;      /* "+/+/.../+": 32,768 levels */
	size_t pluses_len;
	size_t got[12];
};

static void count_cb(void *owner, uint32_t data, void *ud)
{
	(void)owner;
	(void)data;
	(*(size_t *)ud)++;
}

static void *deep_walks(void *arg)
{
	struct deep *d = arg;
	size_t *g = d->got, calls = 0;
	struct sub_trie *t = sub_trie_new();
	g[0] = (size_t)sub_trie_add(t, d->chain, d->chain_len, OWNER(0), 0);
	g[1] = (size_t)sub_trie_add(t, d->pluses, d->pluses_len, OWNER(1), 0);
	g[2] = (size_t)sub_trie_add(t, "AA/#", 4, OWNER(2), 0);
	g[3] = sub_trie_match(t, d->chain, d->chain_len, count_cb, &calls);  /* 0 and 2 */
	g[4] = sub_trie_match(t, d->chain, 32768 + 1, count_cb, &calls);    /* 1 and 2 */
	g[5] = sub_trie_foreach(t, count_cb, &calls);
	g[6] = sub_trie_node_count(t);
	g[7] = (size_t)sub_trie_remove(t, d->chain, d->chain_len, OWNER(0));
	g[8] = sub_trie_node_count(t);
	sub_trie_free(t); /* frees the "+" chain */

	/* Keyed by topic names, as the retained store does. */
	t = sub_trie_new();
	sub_trie_add(t, d->chain, d->chain_len, OWNER(0), 0);
	g[9] = sub_trie_match_filter(t, "#", 1, count_cb, &calls);
	g[10] = sub_trie_match_filter(t, "AA/#", 4, count_cb, &calls);
	/* "+/+/.../+" with as many levels as the chain. */
	char *f = malloc(2 * d->chain_len);
	size_t flen = 0;
	for (size_t i = 0; f && i < 65534; i++) {
		if (i)
			f[flen++] = '/';
		f[flen++] = '+';
	}
	g[11] = f ? sub_trie_match_filter(t, f, flen, count_cb, &calls) : 99;
	free(f);
	sub_trie_free(t);
	return NULL;
}

static void test_deep_chain_small_stack(void **state)
{
	(void)state;
	struct deep d = { 0 };
	d.chain_len = 65535;
	d.chain = malloc(d.chain_len);
	assert_non_null(d.chain);
	memset(d.chain, '/', d.chain_len);
	memcpy(d.chain, "AA", 2);
	d.pluses_len = 65535;
	d.pluses = malloc(d.pluses_len);
	assert_non_null(d.pluses);
	for (size_t i = 0; i < d.pluses_len; i++)
		d.pluses[i] = i % 2 ? '/' : '+';

	/* 64 KiB: a walk that recursed once per level would need megabytes. */
	pthread_attr_t attr;
	pthread_t th;
	assert_int_equal(pthread_attr_init(&attr), 0);
	assert_int_equal(pthread_attr_setstacksize(&attr, 64 * 1024), 0);
	assert_int_equal(pthread_create(&th, &attr, deep_walks, &d), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	pthread_attr_destroy(&attr);

	const size_t want[12] = { 1, 1, 1, 2, 2, 3, 65534 + 32768 + 1, 1, 32768 + 2, 1, 1, 1 };
	for (size_t i = 0; i < 12; i++)
		if (d.got[i] != want[i])
			fail_msg("step %zu: got %zu want %zu", i, d.got[i], want[i]);
	free(d.chain);
	free(d.pluses);
}

/* --- randomized cross-check against topic_matches() --- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

struct alphabet {
	const char *const *levels;
	uint32_t nlevels;
	uint32_t max_depth;
};

static const char *const small_levels[] = { "", "a", "b", "$", "$a", "a$" };
static const char *const wide_levels[] = {
	"l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11",
	"l12", "l13", "l14", "l15", "l16", "l17", "l18", "l19", "l20", "l21", "l22",
	"l23", "l24", "l25", "l26", "l27", "l28", "l29", "", "$x",
};

static void random_name(const struct alphabet *a, bool filter, char *out, size_t cap)
{
	uint32_t depth = 1 + rnd(a->max_depth);
	size_t len = 0;
	out[0] = '\0';
	for (uint32_t d = 0; d < depth; d++) {
		const char *lv = a->levels[rnd(a->nlevels)];
		if (filter && rnd(4) == 0)
			lv = "+";
		if (filter && d == depth - 1 && rnd(5) == 0)
			lv = "#";
		len += (size_t)snprintf(out + len, cap - len, "%s%s", d ? "/" : "", lv);
	}
}

static void cross_check(const struct alphabet *a, size_t nfilters, size_t ntopics)
{
	enum { CAP = 64 };
	char (*filters)[CAP] = malloc(nfilters * CAP);
	bool *present = calloc(nfilters, sizeof(*present));
	assert_non_null(filters);
	assert_non_null(present);
	struct hits h;
	hits_init(&h, nfilters);
	struct sub_trie *t = sub_trie_new();
	size_t empty = sub_trie_bytes(t);
	for (size_t i = 0; i < nfilters; i++) {
		random_name(a, true, filters[i], CAP);
		assert_int_equal(add(t, filters[i], i, (uint32_t)i), 1);
		present[i] = true;
	}
	for (int round = 0; round < 3; round++) {
		for (size_t k = 0; k < ntopics; k++) {
			char topic[CAP];
			random_name(a, false, topic, CAP);
			size_t want_total = 0;
			size_t got_total = match(t, topic, &h);
			for (size_t i = 0; i < nfilters; i++) {
				bool want = present[i] && topic_matches(filters[i], strlen(filters[i]),
									topic, strlen(topic));
				want_total += want;
				if (h.count[i] != (want ? 1u : 0u))
					fail_msg("round %d filter '%s' topic '%s': %u calls, want %d",
						 round, filters[i], topic, h.count[i], want);
			}
			assert_int_equal(got_total, want_total);
		}
		/* Remove about half of what is left, then check again. */
		for (size_t i = 0; i < nfilters; i++) {
			if (present[i] && rnd(2) == 0) {
				assert_int_equal(del(t, filters[i], i), 1);
				assert_int_equal(del(t, filters[i], i), 0);
				present[i] = false;
			}
		}
	}
	for (size_t i = 0; i < nfilters; i++)
		if (present[i])
			assert_int_equal(del(t, filters[i], i), 1);
	assert_int_equal(sub_trie_count(t), 0);
	assert_int_equal(sub_trie_node_count(t), 0);
	assert_int_equal(sub_trie_bytes(t), empty);
	sub_trie_free(t);
	hits_release(&h);
	free(present);
	free(filters);
}

static void test_random_small_alphabet(void **state)
{
	(void)state;
	const struct alphabet a = { small_levels, 6, 4 };
	for (int i = 0; i < 20; i++)
		cross_check(&a, 150, 300);
}

/* Many siblings: exercises the hash tables, their growth and deletion. */
static void test_random_wide_alphabet(void **state)
{
	(void)state;
	const struct alphabet a = { wide_levels, 32, 3 };
	for (int i = 0; i < 3; i++)
		cross_check(&a, 3000, 300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_examples),
		cmocka_unit_test(test_add_replace_remove),
		cmocka_unit_test(test_overlap_reports_twice),
		cmocka_unit_test(test_pruning),
		cmocka_unit_test(test_failed_add_rolls_back),
		cmocka_unit_test(test_many_owners_one_filter),
		cmocka_unit_test(test_100k_children),
		cmocka_unit_test(test_inline_entry_moves),
		cmocka_unit_test(test_100k_filters_give_memory_back),
		cmocka_unit_test(test_deep_chain_small_stack),
		cmocka_unit_test(test_random_small_alphabet),
		cmocka_unit_test(test_random_wide_alphabet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
