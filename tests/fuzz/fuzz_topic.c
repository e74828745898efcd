/*
 * fuzz_topic.c - libFuzzer target for topic validation, matching and the
 * topic trie.
 *
 * The input is up to MAX_PARTS strings separated by NUL bytes: every one is
 * a filter, the last is also the topic (one string: it is both). Level
 * counts and limits must agree with a plain count of '/'. A naive matcher
 * written here from MQTT 3.1.1 section 4.7 (split into levels, compare
 * level by level) is the oracle for topic_matches(), for sub_trie_match()
 * of the topic on a trie holding every valid filter (as subscriptions and
 * routes), and for sub_trie_match_filter() of the first filter on a trie
 * keyed by every valid topic name (as the retained store). Half of the
 * entries are removed and everything checked again; after the rest go,
 * both tries must be empty, their byte count back where it started.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt_codec.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

#define MAX_PARTS 64
#define OWNER(i)  ((void *)(uintptr_t)((i) + 1))

struct level {
	const char *p;
	size_t len;
};

/* Splits s at every '/' into a new array; *n gets the count (>= 1). */
static struct level *split(const char *s, size_t len, size_t *n)
{
	size_t count = 1;
	for (size_t i = 0; i < len; i++)
		count += s[i] == '/';
	struct level *lv = malloc(count * sizeof(*lv));
	CHECK(lv);
	size_t k = 0, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '/') {
			lv[k++] = (struct level){ s + start, i - start };
			start = i + 1;
		}
	}
	*n = count;
	return lv;
}

static bool is(const struct level *l, const char *w)
{
	return l->len == 1 && l->p[0] == w[0];
}

/* Section 4.7: '#' matches the rest, including no level at all; '+' one
 * level; the rest byte for byte; no first-level wildcard on a '$' topic. */
static bool naive_matches(const char *f, size_t flen, const char *t, size_t tlen)
{
	size_t nf, nt;
	struct level *fl = split(f, flen, &nf), *tl = split(t, tlen, &nt);
	bool match;
	if (tlen > 0 && t[0] == '$' && (is(&fl[0], "+") || is(&fl[0], "#"))) {
		match = false;
		goto out;
	}
	for (size_t i = 0; i < nf; i++) {
		if (is(&fl[i], "#")) {
			match = true;
			goto out;
		}
		if (i >= nt) {
			match = false;
			goto out;
		}
		if (!is(&fl[i], "+") &&
		    (fl[i].len != tl[i].len || memcmp(fl[i].p, tl[i].p, fl[i].len) != 0)) {
			match = false;
			goto out;
		}
	}
	match = nf == nt;
out:
	free(fl);
	free(tl);
	return match;
}

static void check_levels(const char *s, size_t len)
{
	size_t slashes = 0;
	for (size_t i = 0; i < len; i++)
		slashes += s[i] == '/';
	unsigned levels = (unsigned)slashes + 1, ulen = (unsigned)len;
	CHECK(topic_levels(s, len) == (int)levels);
	CHECK(topic_check_limits(s, len, 0, 0) == TOPIC_OK);
	CHECK(topic_check_limits(s, len, ulen ? ulen : 1, levels) == TOPIC_OK);
	if (len > 1) /* a limit of 0 is no limit */
		CHECK(topic_check_limits(s, len, ulen - 1, levels) == TOPIC_ERR_TOO_LONG);
	if (levels > 1)
		CHECK(topic_check_limits(s, len, 0, levels - 1) == TOPIC_ERR_TOO_DEEP);
}

struct input {
	size_t n;
	struct level part[MAX_PARTS];
	bool filter_ok[MAX_PARTS];
	bool name_ok[MAX_PARTS];
	bool in[MAX_PARTS];   /* still in the tries */
	unsigned hits[MAX_PARTS];
};

static void hit_cb(void *owner, uint32_t data, void *ud)
{
	struct input *in = ud;
	size_t i = (size_t)(uintptr_t)owner - 1;
	CHECK(i < in->n && data == i);
	in->hits[i]++;
}

/* The topic (last part) against every filter still in subs, and the first
 * filter against every name still in kept. */
static void check_matches(struct input *in, const struct sub_trie *subs,
			  const struct sub_trie *kept)
{
	const struct level *t = &in->part[in->n - 1], *f = &in->part[0];
	size_t want = 0;
	if (in->name_ok[in->n - 1]) {
		memset(in->hits, 0, sizeof(in->hits));
		size_t got = sub_trie_match(subs, t->p, t->len, hit_cb, in);
		for (size_t i = 0; i < in->n; i++) {
			bool m = in->in[i] && in->filter_ok[i] &&
				 naive_matches(in->part[i].p, in->part[i].len, t->p, t->len);
			CHECK(in->hits[i] == m);
			want += m;
		}
		CHECK(got == want);
	}
	if (in->filter_ok[0]) {
		want = 0;
		memset(in->hits, 0, sizeof(in->hits));
		size_t got = sub_trie_match_filter(kept, f->p, f->len, hit_cb, in);
		for (size_t i = 0; i < in->n; i++) {
			bool m = in->in[i] && in->name_ok[i] &&
				 naive_matches(f->p, f->len, in->part[i].p, in->part[i].len);
			CHECK(in->hits[i] == m);
			want += m;
		}
		CHECK(got == want);
	}
}

static void remove_part(struct input *in, size_t i, struct sub_trie *subs, struct sub_trie *kept)
{
	const struct level *p = &in->part[i];
	CHECK(sub_trie_remove(subs, p->p, p->len, OWNER(i)) == in->filter_ok[i]);
	CHECK(sub_trie_remove(kept, p->p, p->len, OWNER(i)) == in->name_ok[i]);
	CHECK(sub_trie_remove(subs, p->p, p->len, OWNER(i)) == 0);
	in->in[i] = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct input in;
	const char *s = (const char *)data, *end = s + size;
	memset(&in, 0, sizeof(in));
	for (;;) {
		const char *nul = in.n + 1 < MAX_PARTS ? memchr(s, 0, (size_t)(end - s)) : NULL;
		in.part[in.n++] = (struct level){ s, nul ? (size_t)(nul - s) : (size_t)(end - s) };
		if (!nul)
			break;
		s = nul + 1;
	}

	struct sub_trie *subs = sub_trie_new(), *kept = sub_trie_new();
	CHECK(subs && kept);
	size_t empty = sub_trie_bytes(subs), nf = 0, nn = 0;
	for (size_t i = 0; i < in.n; i++) {
		const struct level *p = &in.part[i];
		check_levels(p->p, p->len);
		in.filter_ok[i] = mqtt_topic_filter_valid((const uint8_t *)p->p, p->len);
		in.name_ok[i] = mqtt_topic_name_valid((const uint8_t *)p->p, p->len);
		if (in.name_ok[i]) { /* a valid name is a valid filter, matching itself */
			CHECK(in.filter_ok[i]);
			CHECK(topic_matches(p->p, p->len, p->p, p->len));
		}
		if (in.filter_ok[i]) {
			CHECK(sub_trie_add(subs, p->p, p->len, OWNER(i), 7) == 1);
			CHECK(sub_trie_add(subs, p->p, p->len, OWNER(i), (uint32_t)i) == 0);
			nf++;
		}
		if (in.name_ok[i]) {
			CHECK(sub_trie_add(kept, p->p, p->len, OWNER(i), (uint32_t)i) == 1);
			nn++;
		}
		in.in[i] = true;
	}
	CHECK(sub_trie_count(subs) == nf && sub_trie_count(kept) == nn);
	const struct level *t = &in.part[in.n - 1];
	if (in.name_ok[in.n - 1])
		for (size_t i = 0; i < in.n; i++)
			if (in.filter_ok[i])
				CHECK(topic_matches(in.part[i].p, in.part[i].len, t->p, t->len) ==
				      naive_matches(in.part[i].p, in.part[i].len, t->p, t->len));
	check_matches(&in, subs, kept);
	CHECK(sub_trie_foreach(subs, hit_cb, &in) == nf);

	/* Every other entry out, then the rest, in reverse. */
	for (size_t i = 1; i < in.n; i += 2)
		remove_part(&in, i, subs, kept);
	check_matches(&in, subs, kept);
	for (size_t i = in.n; i-- > 0;)
		if (in.in[i])
			remove_part(&in, i, subs, kept);
	CHECK(sub_trie_count(subs) == 0 && sub_trie_node_count(subs) == 0);
	CHECK(sub_trie_count(kept) == 0 && sub_trie_node_count(kept) == 0);
	CHECK(sub_trie_bytes(subs) == empty && sub_trie_bytes(kept) == empty);
	sub_trie_free(subs);
	sub_trie_free(kept);
	return 0;
}
