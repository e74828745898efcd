/*
 * topic_diff.c - differential check of kafkagate's topic validation and
 * matching against libmosquitto's (Debian libmosquitto-dev).
 *
 * Generates random (topic, filter) pairs from a small alphabet with a fixed
 * seed: '$' topics ($SYS/x), empty levels (a//b), leading and trailing '/',
 * '+' and '#' in every position (valid or not), single-level and empty
 * strings, a few non-ASCII, control and malformed UTF-8 levels; a quarter
 * of the topics are instances of their filter, so that matches are
 * frequent. For each pair:
 *   - the validators must agree: mqtt_topic_name_valid() with
 *     mosquitto_pub_topic_check(), mqtt_topic_filter_valid() with
 *     mosquitto_sub_topic_check(), each of mosquitto's preceded by
 *     mosquitto_validate_utf8() as its broker does when it reads a packet
 *     (the two topic checks do not look at UTF-8 themselves);
 *   - when all four accept the pair, mosquitto_topic_matches_sub() is the
 *     oracle for topic_matches(), for a one-filter sub_trie_match() (what
 *     the broker and the routing table do) and for sub_trie_match_filter()
 *     on a trie keyed by the topic (what the retained store does); both
 *     tries must be empty again after the remove.
 *
 * One class is excluded, on purpose: the empty string. MQTT 3.1.1
 * MQTT-4.7.3-1 says topic names and filters are at least one character
 * long, and kafkagate's validators refuse "" (so does the mosquitto
 * broker, in its packet handlers); libmosquitto's pub/sub_topic_check()
 * accept it. Counted apart and printed, never a failure.
 *
 * Usage: topic_diff [pairs, default 1000000] [seed]
 * Prints "topic-diff: N pairs, N compared, N disagreements" and exits 1 on
 * any disagreement (the first few are printed), 2 on bad usage.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mosquitto.h>

#include "mqtt/mqtt_codec.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

#define CAP       96
#define MAX_SHOWN 10

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* Plain levels, then some that are invalid in a topic or filter. */
static const char *const plain[] = { "", "a", "b", "ab", "$", "$SYS", "$a", "a$", "x y",
				     "\xc3\xa9" /* U+00E9 */ };
static const char *const odd[] = {
	"a+", "+a", "#a", "a#", "++", "##", "+#",
	"\x01", "\x7f", "\xc2\x85",      /* C0, DEL, C1: refused by both */
	"\xff", "\xc3", "\xed\xa0\x80", /* not UTF-8: a bad byte, a cut sequence, a surrogate */
};
#define NPLAIN (sizeof(plain) / sizeof(plain[0]))
#define NODD   (sizeof(odd) / sizeof(odd[0]))

static const char *random_level(bool filter)
{
	uint32_t r = rnd(100);
	if (r < 4)
		return odd[rnd(NODD)];
	if (r < (filter ? 34u : 8u))
		return r % 2 ? "+" : "#";
	return plain[rnd(NPLAIN)];
}

/* Appends s to out (len bytes so far, CAP in all); returns the new len. */
static size_t put(char *out, size_t len, const char *s)
{
	size_t n = strlen(s);
	if (len + n >= CAP)
		n = CAP - 1 - len;
	memcpy(out + len, s, n);
	out[len + n] = '\0';
	return len + n;
}

/* 1 to 5 levels joined by '/'. */
static void by_levels(char *out, bool filter)
{
	uint32_t depth = 1 + rnd(5);
	size_t len = put(out, 0, "");
	for (uint32_t d = 0; d < depth; d++) {
		if (d)
			len = put(out, len, "/");
		len = put(out, len, random_level(filter));
	}
}

/* 0 to 7 characters of "ab/$+#": every position of every character. */
static void by_chars(char *out)
{
	static const char alphabet[] = "ab/$+#";
	uint32_t n = rnd(8);
	for (uint32_t i = 0; i < n; i++)
		out[i] = alphabet[rnd(sizeof(alphabet) - 1)];
	out[n] = '\0';
}

/* A topic the filter may match: '+' becomes a plain level, a trailing '#'
 * zero to two levels (zero also drops its '/': "a/#" gives "a"). */
static void instance_of(const char *filter, char *out)
{
	size_t len = put(out, 0, "");
	const char *p = filter;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);
		if (l == 1 && *p == '+') {
			len = put(out, len, plain[rnd(NPLAIN)]);
		} else if (l == 1 && *p == '#') {
			uint32_t k = rnd(3);
			if (k == 0 && len > 0 && out[len - 1] == '/')
				out[--len] = '\0';
			for (uint32_t i = 0; i < k; i++) {
				len = put(out, len, i ? "/" : "");
				len = put(out, len, plain[rnd(NPLAIN)]);
			}
		} else {
			char level[CAP];
			memcpy(level, p, l);
			level[l] = '\0';
			len = put(out, len, level);
		}
		if (!slash)
			return;
		len = put(out, len, "/");
		p = slash + 1;
	}
}

static void count_cb(void *owner, uint32_t data, void *ud)
{
	(void)owner;
	(void)data;
	(*(size_t *)ud)++;
}

struct tally {
	uint64_t pairs, compared, matched, excluded, bad;
};

/* s with bytes outside printable ASCII as \xNN, in out (4 * CAP). */
static const char *shown(const char *s, char *out)
{
	size_t n = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c < 0x7f)
			out[n++] = (char)c;
		else
			n += (size_t)sprintf(out + n, "\\x%02x", c);
	}
	out[n] = '\0';
	return out;
}

static void disagree(struct tally *t, const char *what, const char *filter, const char *topic,
		     int ours, int theirs)
{
	char f[4 * CAP], tp[4 * CAP];
	if (t->bad++ < MAX_SHOWN)
		printf("  %s: filter '%s' topic '%s': kafkagate %d, mosquitto %d\n", what,
		       shown(filter, f), shown(topic, tp), ours, theirs);
}

/* Our validator against theirs on one string; the empty string is the
 * excluded class (see the top of the file). */
static bool same_verdict(struct tally *t, const char *what, const char *filter,
			 const char *topic, const char *s, bool ours, bool theirs)
{
	if (ours == theirs)
		return true;
	if (s[0] == '\0' && !ours)
		t->excluded++;
	else
		disagree(t, what, filter, topic, ours, theirs);
	return false;
}

static void check_pair(struct tally *t, struct sub_trie *by_filter, struct sub_trie *by_topic,
		       const char *filter, const char *topic)
{
	size_t flen = strlen(filter), tlen = strlen(topic);
	bool tok = mqtt_topic_name_valid((const uint8_t *)topic, tlen);
	bool fok = mqtt_topic_filter_valid((const uint8_t *)filter, flen);
	bool mtok = mosquitto_validate_utf8(topic, (int)tlen) == MOSQ_ERR_SUCCESS &&
		    mosquitto_pub_topic_check(topic) == MOSQ_ERR_SUCCESS;
	bool mfok = mosquitto_validate_utf8(filter, (int)flen) == MOSQ_ERR_SUCCESS &&
		    mosquitto_sub_topic_check(filter) == MOSQ_ERR_SUCCESS;
	t->pairs++;
	bool same_t = same_verdict(t, "topic validity", filter, topic, topic, tok, mtok);
	bool same_f = same_verdict(t, "filter validity", filter, topic, filter, fok, mfok);
	if (!same_t || !same_f || !tok || !fok)
		return;

	bool want = false;
	if (mosquitto_topic_matches_sub(filter, topic, &want) != MOSQ_ERR_SUCCESS) {
		disagree(t, "mosquitto_topic_matches_sub failed", filter, topic, 1, 0);
		return;
	}
	t->compared++;
	t->matched += want;

	bool got = topic_matches(filter, flen, topic, tlen);
	if (got != want)
		disagree(t, "topic_matches", filter, topic, got, want);

	size_t calls = 0;
	if (sub_trie_add(by_filter, filter, flen, t, 0) != 1)
		disagree(t, "sub_trie_add failed", filter, topic, 0, 1);
	size_t n = sub_trie_match(by_filter, topic, tlen, count_cb, &calls);
	if (n != want || calls != n)
		disagree(t, "sub_trie_match", filter, topic, (int)n, want);
	if (sub_trie_remove(by_filter, filter, flen, t) != 1 || sub_trie_node_count(by_filter))
		disagree(t, "sub_trie_remove left nodes", filter, topic, 1, 0);

	calls = 0;
	if (sub_trie_add(by_topic, topic, tlen, t, 0) != 1)
		disagree(t, "sub_trie_add (topic) failed", filter, topic, 0, 1);
	n = sub_trie_match_filter(by_topic, filter, flen, count_cb, &calls);
	if (n != want || calls != n)
		disagree(t, "sub_trie_match_filter", filter, topic, (int)n, want);
	if (sub_trie_remove(by_topic, topic, tlen, t) != 1 || sub_trie_node_count(by_topic))
		disagree(t, "sub_trie_remove (topic) left nodes", filter, topic, 1, 0);
}

int main(int argc, char **argv)
{
	char *end;
	uint64_t pairs = 1000000;
	rng = 0x6b61666b61676174u; /* "kafkagat" */
	if (argc > 1 && ((pairs = strtoull(argv[1], &end, 10)) == 0 || *end)) {
		fprintf(stderr, "usage: topic_diff [pairs, default 1000000] [seed]\n");
		return 2;
	}
	if (argc > 2 && ((rng = strtoull(argv[2], &end, 0)) == 0 || *end)) {
		fprintf(stderr, "topic_diff: the seed must be a non-zero number\n");
		return 2;
	}
	struct sub_trie *by_filter = sub_trie_new(), *by_topic = sub_trie_new();
	if (!by_filter || !by_topic) {
		fprintf(stderr, "topic_diff: out of memory\n");
		return 2;
	}
	struct tally t = { 0 };
	char filter[CAP], topic[CAP];
	for (uint64_t i = 0; i < pairs; i++) {
		if (rnd(2))
			by_levels(filter, true);
		else
			by_chars(filter);
		uint32_t how = rnd(4);
		if (how == 0)
			instance_of(filter, topic);
		else if (how == 1)
			by_chars(topic);
		else
			by_levels(topic, false);
		check_pair(&t, by_filter, by_topic, filter, topic);
	}
	sub_trie_free(by_filter);
	sub_trie_free(by_topic);
	printf("topic-diff: %" PRIu64 " pairs, %" PRIu64 " compared, %" PRIu64 " disagreements"
	       " (%" PRIu64 " matches; %" PRIu64 " empty strings excluded)\n",
	       t.pairs, t.compared, t.bad, t.matched, t.excluded);
	return t.bad ? 1 : 0;
}
