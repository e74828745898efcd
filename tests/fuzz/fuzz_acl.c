/*
 * fuzz_acl.c - libFuzzer target for the acl_file parser and the checks.
 *
 * A failure must name a line. Whatever parses is expanded for a few
 * clients (anonymous, fixed names, names with wildcards and slashes, and a
 * name and client id taken from the input), then the words of the input
 * that are valid topics and filters are checked against each other:
 *  - topic_filter_covers(f, t) and topic_filters_overlap(f, t) equal
 *    topic_matches(f, t) for a topic t (a filter matching only itself);
 *  - overlaps is symmetric, covers implies overlaps, a filter covers itself;
 *  - a SUBSCRIBE verdict agrees with acl_client_can(): GRANT means every
 *    matching topic is readable, DENY that none is;
 *  - a client whose one rule is "topic read F" may read exactly the topics
 *    topic_matches(F, t) (acl_client_can's shortcuts for names and trees).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/topic.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define MAXW 12

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct words {
	const char *topic[MAXW], *filter[MAXW];
	size_t tlen[MAXW], flen[MAXW], nt, nf;
};

/* Collects up to MAXW valid topic names and filters among the words. */
static void find_words(const char *s, size_t size, struct words *w)
{
	for (size_t i = 0; i < size;) {
		while (i < size && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t'))
			i++;
		size_t start = i;
		while (i < size && s[i] != ' ' && s[i] != '\n' && s[i] != '\t')
			i++;
		const uint8_t *p = (const uint8_t *)s + start;
		size_t n = i - start;
		if (n == 0)
			continue;
		if (w->nf < MAXW && mqtt_topic_filter_valid(p, n)) {
			w->filter[w->nf] = s + start;
			w->flen[w->nf++] = n;
		}
		if (w->nt < MAXW && mqtt_topic_name_valid(p, n)) {
			w->topic[w->nt] = s + start;
			w->tlen[w->nt++] = n;
		}
	}
}

static void check_relations(const struct words *w)
{
	for (size_t i = 0; i < w->nf; i++) {
		const char *f = w->filter[i];
		size_t fl = w->flen[i];
		CHECK(topic_filter_covers(f, fl, f, fl));
		for (size_t k = 0; k < w->nt; k++) {
			bool m = topic_matches(f, fl, w->topic[k], w->tlen[k]);
			CHECK(topic_filter_covers(f, fl, w->topic[k], w->tlen[k]) == m);
			CHECK(topic_filters_overlap(f, fl, w->topic[k], w->tlen[k]) == m);
		}
		for (size_t j = 0; j < w->nf; j++) {
			bool o = topic_filters_overlap(f, fl, w->filter[j], w->flen[j]);
			CHECK(o == topic_filters_overlap(w->filter[j], w->flen[j], f, fl));
			CHECK(!topic_filter_covers(f, fl, w->filter[j], w->flen[j]) || o);
		}
	}
}

/* One rule "topic read f": readable exactly where f matches. */
static void check_one_rule(const char *f, size_t fl, const struct words *w)
{
	char text[128];

	if (fl > 100)
		return;
	for (size_t i = 0; i < fl; i++)
		if ((unsigned char)f[i] <= ' ' || f[i] == 0x7f)
			return; /* blanks would be cut or split by the line parser */
	int n = snprintf(text, sizeof(text), "topic read %.*s\n", (int)fl, f);
	struct acl *acl = acl_parse(text, (size_t)n, NULL, 0);
	CHECK(acl);
	struct acl_client *c = acl_client_new(acl, NULL, NULL);
	if (c) {
		for (size_t k = 0; k < w->nt; k++)
			CHECK(acl_client_can(c, w->topic[k], w->tlen[k], ACL_READ) ==
			      topic_matches(f, fl, w->topic[k], w->tlen[k]));
		acl_client_free(c);
	}
	acl_free(acl);
}

static void check_client(const struct acl *acl, const char *user, const char *cid,
			 const struct words *w)
{
	struct acl_client *c = acl_client_new(acl, user, cid);

	if (!c)
		return;
	for (size_t i = 0; i < w->nf; i++) {
		enum acl_sub v = acl_client_subscribe(c, w->filter[i], w->flen[i]);
		CHECK(v == ACL_SUB_DENY || v == ACL_SUB_GRANT || v == ACL_SUB_FILTER);
		for (size_t k = 0; k < w->nt; k++) {
			if (!topic_matches(w->filter[i], w->flen[i], w->topic[k], w->tlen[k]))
				continue;
			bool r = acl_client_can(c, w->topic[k], w->tlen[k], ACL_READ);
			CHECK(v != ACL_SUB_GRANT || r);
			CHECK(v != ACL_SUB_DENY || !r);
		}
	}
	for (size_t k = 0; k < w->nt; k++) {
		bool r = acl_client_can(c, w->topic[k], w->tlen[k], ACL_READ);
		bool wr = acl_client_can(c, w->topic[k], w->tlen[k], ACL_WRITE);
		CHECK(acl_client_can(c, w->topic[k], w->tlen[k], ACL_READ | ACL_WRITE) == (r && wr));
	}
	acl_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char err[128], name[33];
	struct words w = { .nt = 0 };

	memset(err, 'x', sizeof(err));
	struct acl *acl = acl_parse(s, size, err, sizeof(err));
	if (!acl) {
		CHECK(memchr(err, '\0', sizeof(err)));
		CHECK(err[0] >= '1' && err[0] <= '9' && strstr(err, ": "));
		return 0;
	}
	find_words(s, size, &w);
	check_relations(&w);
	for (size_t i = 0; i < w.nf; i++)
		check_one_rule(w.filter[i], w.flen[i], &w);
	/* A name from the input: its last word (NUL-free, at most 32 bytes). */
	size_t n = 0;
	if (w.nt > 0) {
		n = w.tlen[w.nt - 1] < 32 ? w.tlen[w.nt - 1] : 32;
		memcpy(name, w.topic[w.nt - 1], n);
	}
	name[n] = '\0';
	static const char *const users[] = { NULL, "alice", "+", "#", "a/b", "" };
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		check_client(acl, users[i], "c1", &w);
	check_client(acl, name, name, &w);
	check_client(acl, "alice", NULL, &w);
	check_client(acl, NULL, "x/+", &w);
	acl_free(acl);
	return 0;
}
