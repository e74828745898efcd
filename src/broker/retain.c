/*
 * retain.c - retained messages; see retain.h.
 *
 * The store is a sub_trie keyed by topic names with the message as the
 * entry's owner: the trie already gives O(1) child lookup, pruning and the
 * filter-guided walk (sub_trie_match_filter). Since keys hold no wildcards,
 * sub_trie_match() on a topic finds exactly the entry stored under it.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/msg.h"
#include "broker/retain.h"
#include "mqtt/sub_trie.h"

struct retain_store {
	struct sub_trie *t;
	size_t bytes;    /* msg_bytes() of every stored message */
};

static size_t msg_bytes(const struct msg *m)
{
	return (size_t)m->topic_len + m->payload_len;
}

/* Adapts a struct msg callback to the trie's (owner, data) callback. */
struct retain_visit {
	void (*cb)(struct msg *m, void *ud);
	void *ud;
};

struct retain_store *retain_new(void)
{
	struct retain_store *rs = malloc(sizeof(*rs));
	if (!rs)
		return NULL;
	rs->t = sub_trie_new();
	rs->bytes = 0;
	if (!rs->t) {
		free(rs);
		return NULL;
	}
	return rs;
}

static void unref_cb(void *owner, uint32_t data, void *ud)
{
	(void)data;
	(void)ud;
	msg_unref(owner);
}

void retain_free(struct retain_store *rs)
{
	if (!rs)
		return;
	sub_trie_foreach(rs->t, unref_cb, NULL);
	sub_trie_free(rs->t);
	free(rs);
}

static void find_cb(void *owner, uint32_t data, void *ud)
{
	(void)data;
	*(struct msg **)ud = owner;
}

int retain_set(struct retain_store *rs, struct msg *m)
{
	return retain_set_capped(rs, m, SIZE_MAX, SIZE_MAX);
}

int retain_set_capped(struct retain_store *rs, struct msg *m, size_t max_count,
		      size_t max_bytes)
{
	struct msg *old = NULL;
	int rc = 0;

	sub_trie_match(rs->t, m->topic, m->topic_len, find_cb, &old);
	if (old == m)
		return 0;
	if (m->payload_len > 0) {
		size_t others = rs->bytes - (old ? msg_bytes(old) : 0);
		if (!old && sub_trie_count(rs->t) >= max_count)
			return RETAIN_FULL_COUNT;
		if (msg_bytes(m) > max_bytes || others > max_bytes - msg_bytes(m)) {
			if (!old)
				return RETAIN_FULL_BYTES;
			rc = RETAIN_FULL_BYTES; /* clear the stale one below */
		} else {
			/* Add before removing so that a failure leaves the old one. */
			if (sub_trie_add(rs->t, m->topic, m->topic_len, m, 0) < 0)
				return -1;
			msg_ref(m);
			rs->bytes += msg_bytes(m);
		}
	}
	if (old) {
		sub_trie_remove(rs->t, old->topic, old->topic_len, old);
		rs->bytes -= msg_bytes(old);
		msg_unref(old);
	}
	return rc;
}

void retain_del(struct retain_store *rs, struct msg *m)
{
	struct msg *old = NULL;

	sub_trie_match(rs->t, m->topic, m->topic_len, find_cb, &old);
	if (old != m)
		return;
	sub_trie_remove(rs->t, m->topic, m->topic_len, m);
	rs->bytes -= msg_bytes(m);
	msg_unref(m);
}

static void visit_cb(void *owner, uint32_t data, void *ud)
{
	const struct retain_visit *v = ud;
	(void)data;
	v->cb(owner, v->ud);
}

size_t retain_match(const struct retain_store *rs, const char *filter, size_t len,
		    void (*cb)(struct msg *m, void *ud), void *ud)
{
	struct retain_visit v = { cb, ud };
	return sub_trie_match_filter(rs->t, filter, len, visit_cb, &v);
}

size_t retain_count(const struct retain_store *rs)
{
	return sub_trie_count(rs->t);
}

size_t retain_bytes(const struct retain_store *rs)
{
	return rs->bytes;
}

size_t retain_node_count(const struct retain_store *rs)
{
	return sub_trie_node_count(rs->t);
}
