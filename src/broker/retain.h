/*
 * retain.h - retained messages keyed by topic name, matched by filter.
 *
 * At most one message per topic. The store holds one reference on each
 * stored message (msg_ref/msg_unref, msg.h) and drops it when the message
 * is replaced, cleared or the store is freed.
 *
 * Matching walks the topic tree guided by the filter, so "devices/d1/#" only
 * visits the subtree of "devices/d1" however many topics are retained.
 *
 * Not thread safe: the caller locks (readers may share a read lock;
 * retain_match and retain_count do not modify the store). Pure: no logging.
 * Topics and filters are assumed valid (mqtt_codec.h checks them).
 */
#ifndef KG_RETAIN_H
#define KG_RETAIN_H

#include <stddef.h>

struct msg;
struct retain_store;

/* Returns a new empty store, or NULL on allocation failure. */
struct retain_store *retain_new(void);
/* Drops every stored message's reference and frees the store. NULL ok. */
void retain_free(struct retain_store *rs);

/*
 * Stores m under m->topic, replacing (and unreferencing) the message retained
 * there before. A message with payload_len == 0 clears the topic instead and
 * is not stored. Takes its own reference: the caller keeps its own.
 * Returns 0, or -1 on allocation failure (the store is then unchanged).
 */
int retain_set(struct retain_store *rs, struct msg *m);

/* Why retain_set_capped() did not store m. */
enum retain_err {
	RETAIN_FULL_COUNT = -2,  /* a new topic, and max_count topics are stored */
	RETAIN_FULL_BYTES = -3,  /* storing m would pass max_bytes */
};

/*
 * As retain_set(), within max_count messages and max_bytes bytes (topic and
 * payload of every stored message; retain_bytes()). A new topic that does
 * not fit is not stored (RETAIN_FULL_COUNT or RETAIN_FULL_BYTES). A
 * replacement keeps the count; if its bytes do not fit, the topic is
 * cleared instead (the message there before is stale, and a subscriber must
 * not take it for the latest) and RETAIN_FULL_BYTES returned. Clearing
 * always succeeds. Returns 0, -1 (allocation failure, store unchanged) or
 * an enum retain_err.
 */
int retain_set_capped(struct retain_store *rs, struct msg *m, size_t max_count,
		      size_t max_bytes);

/* Removes m if it is the message stored under its topic (a newer one
 * stays). For expired messages (MQTT 5 Message Expiry). */
void retain_del(struct retain_store *rs, struct msg *m);

/*
 * Calls cb(m, ud) for every retained message whose topic matches filter
 * (topic_matches() rules: a filter starting with a wildcard does not match
 * '$' topics). m is borrowed, valid while the caller holds the lock: take a
 * reference to keep it. cb must not modify the store. Order is unspecified.
 * Returns the number of calls.
 */
size_t retain_match(const struct retain_store *rs, const char *filter, size_t len,
		    void (*cb)(struct msg *m, void *ud), void *ud);

/* Number of retained messages. */
size_t retain_count(const struct retain_store *rs);
/* Topic and payload bytes of the retained messages. O(1). */
size_t retain_bytes(const struct retain_store *rs);
/* Number of topic tree nodes (0 when empty: cleared topics are pruned). */
size_t retain_node_count(const struct retain_store *rs);

#endif
