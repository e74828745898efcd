/*
 * bench_trie.c - matches per second of the subscription trie, the route
 * trie and the retained store, at the sizes kafkagate is built for:
 *   subscriptions: 100,000 devices/<id>/commands + 1,000 wildcard filters
 *   routes:        10,000 filters (plus a linear topic_matches() scan of
 *                  them, for comparison)
 *   retained:      100,000 topics, matched by devices/<id>/#
 * Usage: bench_trie [seconds per case, default 1]
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static size_t heap_used(void)
{
	return mallinfo2().uordblks;
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

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	if (secs <= 0)
		secs = 1.0;
	bench_subscriptions(secs);
	bench_routes(secs);
	bench_retained(secs);
	return 0;
}
