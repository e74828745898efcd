/*
 * bench_trie.c - matches per second of the subscription trie, the route
 * trie and the retained store, at the sizes kafkagate is built for:
 *   subscriptions: 100,000 devices/<id>/commands + 1,000 wildcard filters
 *   routes:        10,000 filters (plus a linear topic_matches() scan of
 *                  them, for comparison)
 *   retained:      100,000 topics, matched by devices/<id>/#
 * Usage: bench_trie [seconds per case, default 1]
 *        bench_trie mem   heap bytes per trie level (glibc malloc, chunk
 *                         overhead included) for a chain of empty levels,
 *                         the subscription set above and retained-style
 *                         keys; then removes everything and prints what
 *                         the heap kept (a few KB sit in glibc's thread
 *                         cache: GLIBC_TUNABLES=glibc.malloc.tcache_count=0
 *                         makes it exact).
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "core/msg.h"
#include "broker/retain.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

#define NDEV    100000
#define NWILD   1000
#define NROUTE  10000
#define NTOPICS 65536 /* precomputed, so formatting stays out of the timing */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* In-use heap bytes, chunk headers and padding included; big blocks are
 * mmapped and counted in hblkhd, not uordblks. */
static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static uint64_t rng = 88172645463325252u;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void sink(void *owner, uint32_t data, void *ud)
{
	(void)owner;
	(void)data;
	(*(size_t *)ud)++;
}

static void msg_sink(struct msg *m, void *ud)
{
	(void)m;
	(*(size_t *)ud)++;
}

enum topic_kind { T_COMMANDS, T_OTHER, T_FACTORY, T_RETAIN_FILTER };

/* NTOPICS random names of one kind, formatted ahead of the timing. */
static char (*make_topics(enum topic_kind kind))[64]
{
	char (*topics)[64] = malloc(NTOPICS * sizeof(*topics));
	if (!topics)
		abort();
	for (size_t i = 0; i < NTOPICS; i++) {
		char *s = topics[i];
		switch (kind) {
		case T_COMMANDS:
			snprintf(s, 64, "devices/d%u/commands", rnd(NDEV));
			break;
		case T_OTHER:
			snprintf(s, 64, "other/d%u/x%u", rnd(NDEV), rnd(10));
			break;
		case T_FACTORY:
			snprintf(s, 64, "factory/f%u/line/l%u/sensor/temp", rnd(NROUTE / 2), rnd(8));
			break;
		case T_RETAIN_FILTER:
			snprintf(s, 64, "devices/d%u/#", rnd(NDEV));
			break;
		}
	}
	return topics;
}

/* Runs sub_trie_match over the topics for about `secs`; prints the rate. */
static void bench_match(const char *name, const struct sub_trie *t, char (*topics)[64],
			double secs)
{
	size_t calls = 0, n = 0;
	double start = now(), end;
	do {
		for (size_t i = 0; i < NTOPICS; i++)
			sub_trie_match(t, topics[i], strlen(topics[i]), sink, &calls);
		n += NTOPICS;
		end = now();
	} while (end - start < secs);
	printf("%-38s %10.0f matches/s  %5.2f callbacks/match\n", name,
	       (double)n / (end - start), (double)calls / (double)n);
}

static void bench_subscriptions(double secs)
{
	char f[64];
	size_t before = heap_used();
	struct sub_trie *t = sub_trie_new();
	for (uint32_t i = 0; i < NDEV; i++) {
		snprintf(f, sizeof(f), "devices/d%u/commands", i);
		if (sub_trie_add(t, f, strlen(f), (void *)(uintptr_t)(i + 1), 1) != 1)
			abort();
	}
	for (uint32_t i = 0; i < NWILD; i++) {
		uint32_t k = (i * 97) % NDEV;
		switch (i % 4) {
		case 0: snprintf(f, sizeof(f), "devices/d%u/#", k); break;
		case 1: snprintf(f, sizeof(f), "devices/+/status/%u", k); break;
		case 2: snprintf(f, sizeof(f), "fleet/%u/+/commands", k); break;
		default: snprintf(f, sizeof(f), "+/d%u/commands", k); break;
		}
		if (sub_trie_add(t, f, strlen(f), (void *)(uintptr_t)(NDEV + i + 1), 2) != 1)
			abort();
	}
	printf("subscriptions: %zu entries, %zu nodes, %.1f MiB heap (%.0f B/entry)\n",
	       sub_trie_count(t), sub_trie_node_count(t),
	       (double)(heap_used() - before) / 1048576.0,
	       (double)(heap_used() - before) / (double)sub_trie_count(t));
	char (*topics)[64] = make_topics(T_COMMANDS);
	bench_match("sub_trie_match devices/<id>/commands", t, topics, secs);
	free(topics);
	topics = make_topics(T_OTHER);
	bench_match("sub_trie_match (no match)", t, topics, secs);
	free(topics);
	sub_trie_free(t);
}

static void bench_routes(double secs)
{
	char f[64];
	char (*filters)[64] = malloc(NROUTE * sizeof(*filters));
	if (!filters)
		abort();
	struct sub_trie *t = sub_trie_new();
	for (uint32_t i = 0; i < NROUTE; i++) {
		if (i % 2 == 0)
			snprintf(f, sizeof(f), "factory/f%u/line/+/sensor/#", i / 2);
		else
			snprintf(f, sizeof(f), "factory/f%u/line/l%u/alarm", i / 2, i % 7);
		strcpy(filters[i], f);
		if (sub_trie_add(t, f, strlen(f), (void *)(uintptr_t)(i + 1), i) != 1)
			abort();
	}
	char (*topics)[64] = make_topics(T_FACTORY);
	bench_match("route trie (10k routes)", t, topics, secs);

	/* The naive alternative, for scale: every route against every topic. */
	size_t hits = 0, n = 0;
	double start = now(), end;
	do {
		for (size_t k = 0; k < 64; k++, n++) {
			const char *topic = topics[rnd(NTOPICS)];
			size_t tlen = strlen(topic);
			for (size_t i = 0; i < NROUTE; i++)
				hits += topic_matches(filters[i], strlen(filters[i]), topic, tlen);
		}
		end = now();
	} while (end - start < secs);
	printf("%-38s %10.0f matches/s  %5.2f callbacks/match\n", "linear topic_matches (10k routes)",
	       (double)n / (end - start), (double)hits / (double)n);
	free(topics);
	free(filters);
	sub_trie_free(t);
}

static void bench_retained(double secs)
{
	char topic[64];
	size_t before = heap_used();
	struct retain_store *rs = retain_new();
	for (uint32_t i = 0; i < NDEV; i++) {
		snprintf(topic, sizeof(topic), "devices/d%u/state", i);
		struct msg *m = msg_new(topic, strlen(topic), "on", 2, 1, true);
		if (!m || retain_set(rs, m) != 0)
			abort();
		msg_unref(m);
	}
	printf("retained: %zu messages, %.1f MiB heap incl. messages\n", retain_count(rs),
	       (double)(heap_used() - before) / 1048576.0);
	char (*filters)[64] = make_topics(T_RETAIN_FILTER);
	size_t calls = 0, n = 0;
	double start = now(), end;
	do {
		for (size_t i = 0; i < NTOPICS; i++, n++)
			retain_match(rs, filters[i], strlen(filters[i]), msg_sink, &calls);
		end = now();
	} while (end - start < secs);
	printf("%-38s %10.0f matches/s  %5.2f callbacks/match\n", "retain_match devices/<id>/#",
	       (double)n / (end - start), (double)calls / (double)n);
	calls = 0;
	start = now();
	size_t got = retain_match(rs, "devices/+/state", 15, msg_sink, &calls);
	printf("%-38s %10.3f ms for %zu messages\n", "retain_match devices/+/state",
	       (now() - start) * 1e3, got);
	free(filters);
	retain_free(rs);
}

/* --- memory per level --- */

static char fleet_filter[64];

/* Filter number i of the subscription set of bench_subscriptions(). */
static const char *fleet_name(uint32_t i)
{
	char *f = fleet_filter;
	if (i < NDEV) {
		snprintf(f, 64, "devices/d%u/commands", i);
		return f;
	}
	i -= NDEV;
	uint32_t k = (i * 97) % NDEV;
	switch (i % 4) {
	case 0: snprintf(f, 64, "devices/d%u/#", k); break;
	case 1: snprintf(f, 64, "devices/+/status/%u", k); break;
	case 2: snprintf(f, 64, "fleet/%u/+/commands", k); break;
	default: snprintf(f, 64, "+/d%u/commands", k); break;
	}
	return f;
}

static const char *retained_name(uint32_t i)
{
	snprintf(fleet_filter, 64, "devices/d%u/state", i);
	return fleet_filter;
}

/* Adds n keys from name() to a fresh trie, prints heap bytes per node,
 * per level added and per key, removes them all and prints the heap left
 * over (0 when the trie gives everything back). */
static void mem_case(const char *label, uint32_t n, const char *(*name)(uint32_t))
{
	struct sub_trie *t = sub_trie_new();
	if (!t)
		abort();
	size_t levels = 0, before = heap_used();
	for (uint32_t i = 0; i < n; i++) {
		const char *f = name(i);
		size_t len = strlen(f);
		if (sub_trie_add(t, f, len, (void *)(uintptr_t)(i + 1), 1) != 1)
			abort();
		levels += 1;
		for (const char *p = f; (p = memchr(p, '/', len - (size_t)(p - f))); p++)
			levels++;
	}
	size_t used = heap_used() - before, nodes = sub_trie_node_count(t);
	for (uint32_t i = 0; i < n; i++) {
		const char *f = name(i);
		if (sub_trie_remove(t, f, strlen(f), (void *)(uintptr_t)(i + 1)) != 1)
			abort();
	}
	printf("%-26s %7zu nodes %7zu levels %6.1f B/node %6.1f B/level %7.1f B/key; "
	       "after removing all: %zd B, %zu nodes\n",
	       label, nodes, levels, (double)used / (double)nodes, (double)used / (double)levels,
	       (double)used / (double)n, (ssize_t)(heap_used() - before), sub_trie_node_count(t));
	sub_trie_free(t);
}

static char *chain;

/* "AA" then 65,533 '/': one filter of 65,534 levels, all but one empty. */
static const char *chain_name(uint32_t i)
{
	(void)i;
	return chain;
}

static void bench_memory(void)
{
	size_t len = 65535;
	chain = malloc(len + 1);
	if (!chain)
		abort();
	memset(chain, '/', len);
	memcpy(chain, "AA", 2);
	chain[len] = '\0';
	mem_case("chain AA/////... (64 KiB)", 1, chain_name);
	mem_case("fleet filters (101k)", NDEV + NWILD, fleet_name);
	mem_case("retained keys (100k)", NDEV, retained_name);
	free(chain);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "mem") == 0) {
		bench_memory();
		return 0;
	}
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	if (secs <= 0)
		secs = 1.0;
	bench_subscriptions(secs);
	bench_routes(secs);
	bench_retained(secs);
	return 0;
}
