/* route.c - the immutable uplink routing table; see route.h. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt_codec.h"
#include "route/route.h"
#include "mqtt/sub_trie.h"

#define KAFKA_TOPIC_MAX 249

struct route {
	size_t index;
	int line;
	enum route_format format;
	bool text_base64;
	char *filter;
	struct template *topic;
	struct template *key;
};

struct route_table {
	atomic_uint refs;
	size_t n;
	struct route *routes; /* never reallocated: the trie points into it */
	struct sub_trie *trie;
};

/* Collects matches into the caller's array, kept sorted by route index. */
struct match_acc {
	const struct route **out;
	size_t max;
	size_t count;
};

bool route_kafka_topic_valid(const char *name, size_t len)
{
	if (len == 0 || len > KAFKA_TOPIC_MAX)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int parse_format(const char *s, enum route_format *f)
{
	if (!s || strcmp(s, "raw") == 0)
		*f = ROUTE_FORMAT_RAW;
	else if (strcmp(s, "json") == 0)
		*f = ROUTE_FORMAT_JSON;
	else
		return -1;
	return 0;
}

/* Fills r from spec. Returns 0, or -1 with the message (no line) in err. */
static int route_build(struct route *r, const struct route_spec *spec,
		       char *err, size_t errlen)
{
	char why[200];

	r->line = spec->line;
	if (!spec->filter || !mqtt_topic_filter_valid((const uint8_t *)spec->filter,
						      strlen(spec->filter))) {
		snprintf(err, errlen, "invalid topic filter \"%s\"",
			 spec->filter ? spec->filter : "");
		return -1;
	}
	if (!spec->topic) {
		snprintf(err, errlen, "route has no Kafka topic");
		return -1;
	}
	if (template_compile(&r->topic, spec->topic, TEMPLATE_UPLINK, why, sizeof why) < 0) {
		snprintf(err, errlen, "topic: %s", why);
		return -1;
	}
	if (template_is_literal(r->topic) &&
	    !route_kafka_topic_valid(spec->topic, strlen(spec->topic))) {
		snprintf(err, errlen, "topic: \"%s\" is not a valid Kafka topic name",
			 spec->topic);
		return -1;
	}
	if (spec->key &&
	    template_compile(&r->key, spec->key, TEMPLATE_UPLINK, why, sizeof why) < 0) {
		snprintf(err, errlen, "key: %s", why);
		return -1;
	}
	if (parse_format(spec->format, &r->format) < 0) {
		snprintf(err, errlen, "unknown format \"%s\" (expected raw or json)",
			 spec->format);
		return -1;
	}
	if (spec->payload_text && r->format != ROUTE_FORMAT_JSON) {
		snprintf(err, errlen, "payload_text applies to format \"json\" only");
		return -1;
	}
	if (spec->payload_text && strcmp(spec->payload_text, "utf8") != 0 &&
	    strcmp(spec->payload_text, "base64") != 0) {
		snprintf(err, errlen, "unknown payload_text \"%s\" (expected utf8 or base64)",
			 spec->payload_text);
		return -1;
	}
	r->text_base64 = spec->payload_text && strcmp(spec->payload_text, "base64") == 0;
	r->filter = strdup(spec->filter);
	if (!r->filter) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

struct route_table *route_table_new(const struct route_spec *specs, size_t n,
				    char *err, size_t errlen)
{
	char dummy[1];
	char why[300];
	size_t i = 0;
	struct route_table *rt;

	if (!err) {
		err = dummy;
		errlen = sizeof dummy;
	}
	rt = calloc(1, sizeof *rt);
	if (!rt) {
		snprintf(err, errlen, "%d: out of memory", n ? specs[0].line : 0);
		return NULL;
	}
	atomic_init(&rt->refs, 1);
	rt->routes = calloc(n ? n : 1, sizeof *rt->routes);
	rt->trie = sub_trie_new();
	if (!rt->routes || !rt->trie) {
		snprintf(why, sizeof why, "out of memory");
		goto fail;
	}
	for (i = 0; i < n; i++) {
		struct route *r = &rt->routes[i];
		r->index = i;
		rt->n = i + 1; /* so that a failure frees what was built */
		if (route_build(r, &specs[i], why, sizeof why) < 0)
			goto fail;
		if (i > UINT32_MAX ||
		    sub_trie_add(rt->trie, r->filter, strlen(r->filter), r, (uint32_t)i) < 0) {
			snprintf(why, sizeof why, "out of memory");
			goto fail;
		}
	}
	return rt;
fail:
	snprintf(err, errlen, "%d: %s", i < n ? specs[i].line : 0, why);
	route_table_unref(rt);
	return NULL;
}

struct route_table *route_table_ref(struct route_table *rt)
{
	atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
	return rt;
}

void route_table_unref(struct route_table *rt)
{
	if (!rt)
		return;
	/* acq_rel: the freeing thread must see every other holder's reads done. */
	if (atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) != 1)
		return;
	sub_trie_free(rt->trie);
	for (size_t i = 0; i < rt->n; i++) {
		free(rt->routes[i].filter);
		template_free(rt->routes[i].topic);
		template_free(rt->routes[i].key);
	}
	free(rt->routes);
	free(rt);
}

size_t route_table_count(const struct route_table *rt)
{
	return rt->n;
}

const struct route *route_table_get(const struct route_table *rt, size_t i)
{
	return i < rt->n ? &rt->routes[i] : NULL;
}

/* Insertion into a short sorted array: matches are few, so this beats sorting
 * afterwards and keeps the first max routes when more than max match. */
static void match_cb(void *owner, uint32_t data, void *ud)
{
	struct match_acc *acc = ud;
	const struct route *r = owner;
	size_t n = acc->count < acc->max ? acc->count : acc->max;

	(void)data;
	acc->count++;
	if (n == acc->max && (n == 0 || acc->out[n - 1]->index < r->index))
		return;
	size_t j = n < acc->max ? n : n - 1;
	while (j > 0 && acc->out[j - 1]->index > r->index) {
		acc->out[j] = acc->out[j - 1];
		j--;
	}
	acc->out[j] = r;
}

size_t route_table_match(const struct route_table *rt, const char *topic, size_t len,
			 const struct route **out, size_t max)
{
	struct match_acc acc = { .out = out, .max = max, .count = 0 };

	sub_trie_match(rt->trie, topic, len, match_cb, &acc);
	return acc.count;
}

const struct template *route_topic(const struct route *r)
{
	return r->topic;
}

const struct template *route_key(const struct route *r)
{
	return r->key;
}

enum route_format route_format(const struct route *r)
{
	return r->format;
}

bool route_text_base64(const struct route *r)
{
	return r->text_base64;
}

size_t route_index(const struct route *r)
{
	return r->index;
}

const char *route_filter(const struct route *r)
{
	return r->filter;
}

int route_line(const struct route *r)
{
	return r->line;
}
