/*
 * route.h - the uplink routing table: MQTT topic filter -> Kafka topic, key
 * and format.
 *
 * A table is built once from the configured routes and never changes: a
 * reload builds a new one and swaps it in whole; readers that still hold the
 * old one keep it alive with a reference. Matching uses the subscription trie
 * (sub_trie.h), so thousands of routes cost about as much as a few. As with
 * subscriptions, '+' and '#' at the first level do not match topics starting
 * with '$'.
 *
 * Routes are numbered 0..n-1 in definition order (route_index()), so that
 * other modules can keep per-route arrays (counters) beside a table.
 *
 * Pure: no I/O, no globals, no logging. A built table is read-only: any
 * thread may match against it and ref/unref it concurrently.
 */
#ifndef KG_ROUTE_H
#define KG_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "route/template.h"

struct route;
struct route_table;

enum route_format {
	ROUTE_FORMAT_RAW = 1,  /* value = payload, MQTT metadata in Kafka headers */
	ROUTE_FORMAT_JSON = 2, /* value = envelope (envelope.h) */
};

/* One configured route, as the config loader read it. Borrowed by
 * route_table_new() (everything it keeps is copied). */
struct route_spec {
	const char *filter; /* MQTT topic filter */
	const char *topic;  /* Kafka topic template (uplink variables) */
	const char *key;    /* record key template; NULL: no key */
	const char *format; /* "raw" or "json"; NULL means "raw" */
	int line;           /* config line, for error messages */
	const char *payload_text; /* json: "utf8" or "base64" (envelope.h: how
				     text that is not JSON is carried); NULL
				     means "utf8"; must be NULL for raw */
};

/*
 * Builds a table from n specs (n may be 0: nothing is routed).
 * Returns a new table with one reference (drop it with route_table_unref()),
 * or NULL with "LINE: what is wrong" in err (truncated to errlen; err may be
 * NULL), LINE being specs[i].line so that the caller can prefix the file name.
 * Checks: filter valid (mqtt_topic_filter_valid()), topic and key templates
 * compile as uplink templates, a literal topic is a legal Kafka topic name,
 * format is raw or json, payload_text is utf8 or base64 and only on a json
 * route. On out of memory, err says so with the line of the
 * route being built.
 */
struct route_table *route_table_new(const struct route_spec *specs, size_t n,
				    char *err, size_t errlen);
/* Takes one more reference; returns rt. Any thread. */
struct route_table *route_table_ref(struct route_table *rt);
/* Drops one reference, freeing the table on the last. NULL ok. Any thread. */
void route_table_unref(struct route_table *rt);

/* Number of routes; route_table_get(rt, i) for i < count, in definition order. */
size_t route_table_count(const struct route_table *rt);
const struct route *route_table_get(const struct route_table *rt, size_t i);

/*
 * Finds the routes whose filter matches topic (len bytes, a valid topic name,
 * no NUL needed). Stores up to max of them in out, in definition order (the
 * first max matching routes), and returns how many matched in all: when that
 * exceeds max, retry with a larger array. Returns 0 when nothing matches.
 * Routes are borrowed from rt. Allocates nothing.
 */
size_t route_table_match(const struct route_table *rt, const char *topic, size_t len,
			 const struct route **out, size_t max);

/* Route accessors. Everything returned is owned by the table. */
const struct template *route_topic(const struct route *r);
const struct template *route_key(const struct route *r); /* NULL: no key */
enum route_format route_format(const struct route *r);
/* json routes: true when text that is not JSON goes as base64
 * (payload_text = "base64"), false for "utf8" (envelope.h). */
bool route_text_base64(const struct route *r);
size_t route_index(const struct route *r);                 /* 0..count-1 */
const char *route_filter(const struct route *r);
int route_line(const struct route *r);

/* True when name is a legal Kafka topic name: 1-249 bytes of [A-Za-z0-9._-],
 * not "." or "..". Lets the caller check a rendered topic template. */
bool route_kafka_topic_valid(const char *name, size_t len);

#endif
