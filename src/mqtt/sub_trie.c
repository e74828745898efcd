/* sub_trie.c - trie of topic filters; see sub_trie.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "mqtt/sub_trie_int.h"
#include "mqtt/topic.h"

/* What a walk reports to; passed down the recursion as one pointer. */
struct walk {
	const struct sub_trie *t;
	void (*cb)(void *owner, uint32_t data, void *ud);
	void *ud;
};

/* --- nodes --- */

static size_t node_size(size_t len, bool slot)
{
	size_t size = offsetof(struct sub_node, level) + len + (slot ? sizeof(uint32_t) : 0);
	return size < sizeof(struct sub_node) ? sizeof(struct sub_node) : size;
}

/* slot: n is a filter's last level, so give it room for one entry. */
static struct sub_node *node_new(struct sub_trie *t, const char *s, size_t len, bool slot)
{
	struct sub_node *n = calloc(1, node_size(len, slot));
	if (!n)
		return NULL;
	memcpy(n->level, s, len);
	n->len = (uint16_t)len;
	n->flags = slot ? N_SLOT : 0;
	n->hash = hash_bytes(t->seed, s, len);
	t->nodes++;
	t->bytes += node_size(len, slot);
	return n;
}

static void node_free(struct sub_trie *t, struct sub_node *n)
{
	sub_trie_kids_release(t, n);
	t->bytes -= node_size(n->len, n->flags & N_SLOT);
	free(n);
	t->nodes--;
}

static uint32_t child_total(const struct sub_node *n)
{
	const struct sub_more *m = sub_trie_kids_more(n);
	return sub_trie_kids_count(n) + (m && m->plus) + (m && m->pound);
}

static size_t report(const struct walk *w, const struct sub_node *n)
{
	if (n->flags & N_OWNER) {
		w->cb(n->x.owner, sub_trie_kids_slot_data(n), w->ud);
		return 1;
	}
	const struct sub_more *m = n->x.more;
	if (!m)
		return 0;
	const struct sub_entry *e = m->nent <= 1 ? &m->ent.one : m->ent.many;
	for (uint32_t i = 0; i < m->nent; i++)
		w->cb(e[i].owner, e[i].data, w->ud);
	return m->nent;
}

/* --- children: "+" and "#" here, the others in sub_trie_kids.c --- */

static struct sub_node *child_get(const struct sub_trie *t, const struct sub_node *n,
				  const char *s, size_t len)
{
	const struct sub_more *m;
	if (topic_is_plus(s, len))
		return (m = sub_trie_kids_more(n)) ? m->plus : NULL;
	if (topic_is_hash(s, len))
		return (m = sub_trie_kids_more(n)) ? m->pound : NULL;
	return sub_trie_kids_find(t, n, s, len);
}

static int child_link(struct sub_trie *t, struct sub_node *n, struct sub_node *c)
{
	bool plus = topic_is_plus(c->level, c->len);
	if (!plus && !topic_is_hash(c->level, c->len))
		return sub_trie_kids_add(t, n, c);
	struct sub_more *m = sub_trie_kids_more_get(t, n);
	if (!m)
		return -1;
	if (plus)
		m->plus = c;
	else
		m->pound = c;
	return 0;
}

static void child_unlink(struct sub_trie *t, struct sub_node *n, struct sub_node *c)
{
	struct sub_more *m = sub_trie_kids_more(n);
	if (m && m->plus == c)
		m->plus = NULL;
	else if (m && m->pound == c)
		m->pound = NULL;
	else
		sub_trie_kids_del(t, n, c);
	sub_trie_kids_more_tidy(t, n);
}

/* Frees a chain of nodes in which each has at most one child. */
static void chain_free(struct sub_trie *t, struct sub_node *n)
{
	while (n) {
		const struct sub_more *m = sub_trie_kids_more(n);
		struct sub_node *next = m && m->plus ? m->plus : m ? m->pound : NULL;
		if (!next && !(n->flags & N_TAB))
			next = n->kids.one;
		node_free(t, n);
		n = next;
	}
}

/* --- public --- */

struct sub_trie *sub_trie_new(void)
{
	struct sub_trie *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->seed = hash_seed(t);
	t->root = node_new(t, "", 0, false);
	if (!t->root) {
		free(t);
		return NULL;
	}
	t->nodes = 0;
	t->bytes += sizeof(*t);
	return t;
}

/*
 * The walks below recurse only where a node has two or more children to
 * visit; the loop itself goes on into the last one. A chain of single-child
 * levels (a hostile "a/////...") thus costs no stack: deep recursion needs
 * as many branching nodes on one path, each made by a filter that repeats
 * the whole path up to it.
 */

/* The children of a node: table slots, then "+" and "#" (if wild). */
struct kid_iter {
	struct sub_node *const *slot;
	uint32_t i, cap;
	const struct sub_more *m;
};

static void kid_iter_init(struct kid_iter *it, const struct sub_node *n, bool wild)
{
	it->slot = sub_trie_kids_slots(n, &it->cap);
	it->i = 0;
	it->m = wild ? sub_trie_kids_more(n) : NULL;
}

/* The next child, or NULL when all were seen. */
static struct sub_node *kid_next(struct kid_iter *it)
{
	while (it->i < it->cap) {
		struct sub_node *c = it->slot[it->i++];
		if (c)
			return c;
	}
	while (it->m && it->i < it->cap + 2) {
		struct sub_node *c = it->i++ == it->cap ? it->m->plus : it->m->pound;
		if (c)
			return c;
	}
	return NULL;
}

static bool starts_dollar(const struct sub_node *c)
{
	return c->len > 0 && c->level[0] == '$';
}

static void free_below(struct sub_trie *t, struct sub_node *n)
{
	while (n) {
		struct kid_iter it;
		struct sub_node *c, *next = NULL;
		kid_iter_init(&it, n, true);
		while ((c = kid_next(&it))) {
			if (next)
				free_below(t, next);
			next = c;
		}
		node_free(t, n);
		n = next;
	}
}

void sub_trie_free(struct sub_trie *t)
{
	if (!t)
		return;
	free_below(t, t->root);
	free(t);
}

int sub_trie_add(struct sub_trie *t, const char *filter, size_t len, void *owner,
		 uint32_t data)
{
	struct sub_node *n = t->root, *fresh = NULL, *fresh_parent = NULL;
	for (size_t pos = 0;;) {
		size_t end = topic_level_end(filter, len, pos);
		const char *s = filter + pos;
		size_t l = end - pos;
		struct sub_node *c = child_get(t, n, s, l);
		if (!c) {
			if (l > UINT16_MAX || !(c = node_new(t, s, l, end == len)))
				goto fail;
			if (child_link(t, n, c) < 0) {
				node_free(t, c);
				goto fail;
			}
			if (!fresh) {
				fresh = c;
				fresh_parent = n;
			}
		}
		n = c;
		if (end == len)
			break;
		pos = end + 1;
	}
	int rc = sub_trie_kids_entry_add(t, n, owner, data);
	if (rc < 0)
		goto fail;
	t->count += (size_t)rc;
	return rc;
fail:
	/* Leave the trie as it was: drop the nodes this call created. */
	if (fresh) {
		child_unlink(t, fresh_parent, fresh);
		chain_free(t, fresh);
	}
	return -1;
}

int sub_trie_remove(struct sub_trie *t, const char *filter, size_t len, void *owner)
{
	/* keep is the deepest node on the path that must survive even if the
	 * target empties (root, or it has entries or other children); cut is
	 * its child on the path. Below keep the path is a bare chain. */
	struct sub_node *n = t->root, *keep = NULL, *cut = NULL;
	for (size_t pos = 0;;) {
		size_t end = topic_level_end(filter, len, pos);
		struct sub_node *c = child_get(t, n, filter + pos, end - pos);
		if (!c)
			return 0;
		if (n == t->root || sub_trie_kids_nent(n) > 0 || child_total(n) > 1) {
			keep = n;
			cut = c;
		}
		n = c;
		if (end == len)
			break;
		pos = end + 1;
	}
	uint32_t i = sub_trie_kids_entry_find(n, owner);
	if (i == sub_trie_kids_nent(n))
		return 0;
	sub_trie_kids_entry_del(t, n, i);
	t->count--;
	if (sub_trie_kids_nent(n) == 0 && child_total(n) == 0) {
		child_unlink(t, keep, cut);
		chain_free(t, cut);
	}
	return 1;
}

static size_t match_from(const struct walk *w, const struct sub_node *n, const char *topic,
			 size_t len, size_t pos, bool done)
{
	size_t calls = 0;
	/* MQTT-4.7.2-1: a first-level wildcard does not match a '$' topic. */
	bool wild = !(n == w->t->root && len > 0 && topic[0] == '$');
	for (;;) {
		const struct sub_more *m = wild ? sub_trie_kids_more(n) : NULL;
		if (done) {
			calls += report(w, n);
			if (m && m->pound) /* "a/#" also matches "a" */
				calls += report(w, m->pound);
			return calls;
		}
		size_t end = topic_level_end(topic, len, pos);
		const struct sub_node *c = sub_trie_kids_find(w->t, n, topic + pos, end - pos);
		if (m) {
			if (m->pound)
				calls += report(w, m->pound);
			if (m->plus && c)
				calls += match_from(w, m->plus, topic, len, end + 1, end == len);
			else if (m->plus)
				c = m->plus;
		}
		if (!c)
			return calls;
		n = c;
		wild = true;
		pos = end + 1;
		done = end == len;
	}
}

size_t sub_trie_match(const struct sub_trie *t, const char *topic, size_t len,
		      void (*cb)(void *owner, uint32_t data, void *ud), void *ud)
{
	const struct walk w = { t, cb, ud };
	return match_from(&w, t->root, topic, len, 0, false);
}

/* Reports every entry strictly below n under non-wildcard levels. */
static size_t report_below(const struct walk *w, const struct sub_node *n)
{
	size_t calls = 0;
	while (n) {
		bool root = n == w->t->root;
		struct kid_iter it;
		const struct sub_node *c, *next = NULL;
		kid_iter_init(&it, n, false);
		while ((c = kid_next(&it))) {
			if (root && starts_dollar(c))
				continue;
			calls += report(w, c);
			if (next)
				calls += report_below(w, next);
			next = c;
		}
		n = next;
	}
	return calls;
}

static size_t filter_from(const struct walk *w, const struct sub_node *n, const char *filter,
			  size_t len, size_t pos)
{
	size_t calls = 0;
	for (;;) {
		size_t end = topic_level_end(filter, len, pos);
		bool last = end == len;
		const char *s = filter + pos;
		size_t l = end - pos;
		if (topic_is_hash(s, l)) /* includes n itself: "a/#" matches "a" */
			return calls + report(w, n) + report_below(w, n);
		if (topic_is_plus(s, l)) {
			bool root = n == w->t->root;
			struct kid_iter it;
			const struct sub_node *c, *next = NULL;
			kid_iter_init(&it, n, false);
			while ((c = kid_next(&it))) {
				if (root && starts_dollar(c))
					continue;
				if (last) {
					calls += report(w, c);
					continue;
				}
				if (next)
					calls += filter_from(w, next, filter, len, end + 1);
				next = c;
			}
			n = next;
		} else {
			n = sub_trie_kids_find(w->t, n, s, l);
			if (n && last)
				return calls + report(w, n);
		}
		if (!n)
			return calls;
		pos = end + 1;
	}
}

size_t sub_trie_match_filter(const struct sub_trie *t, const char *filter, size_t len,
			     void (*cb)(void *owner, uint32_t data, void *ud), void *ud)
{
	const struct walk w = { t, cb, ud };
	return filter_from(&w, t->root, filter, len, 0);
}

static size_t all_from(const struct walk *w, const struct sub_node *n)
{
	size_t calls = 0;
	while (n) {
		struct kid_iter it;
		const struct sub_node *c, *next = NULL;
		calls += report(w, n);
		kid_iter_init(&it, n, true);
		while ((c = kid_next(&it))) {
			if (next)
				calls += all_from(w, next);
			next = c;
		}
		n = next;
	}
	return calls;
}

size_t sub_trie_foreach(const struct sub_trie *t,
			void (*cb)(void *owner, uint32_t data, void *ud), void *ud)
{
	const struct walk w = { t, cb, ud };
	return all_from(&w, t->root);
}

size_t sub_trie_count(const struct sub_trie *t)
{
	return t->count;
}

size_t sub_trie_node_count(const struct sub_trie *t)
{
	return t->nodes;
}

size_t sub_trie_bytes(const struct sub_trie *t)
{
	return t->bytes;
}
