/* sub_trie.c - trie of topic filters; see sub_trie.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/sub_trie_int.h"
#include "mqtt/topic.h"

/* What a walk reports to; passed down the recursion as one pointer. */
struct walk {
	const struct sub_trie *t;
	void (*cb)(void *owner, uint32_t data, void *ud);
	void *ud;
};

static struct sub_node *node_new(struct sub_trie *t, const char *s, size_t len)
{
	size_t size = offsetof(struct sub_node, level) + len;
	struct sub_node *n = calloc(1, size < sizeof(*n) ? sizeof(*n) : size);
	if (!n)
		return NULL;
	memcpy(n->level, s, len);
	n->len = (uint16_t)len;
	n->hash = sub_trie_kids_hash(t->seed, s, len);
	t->nodes++;
	return n;
}

static void node_free(struct sub_trie *t, struct sub_node *n)
{
	sub_trie_kids_release(n);
	if (n->nent >= 2)
		free(n->ent.many);
	free(n);
	t->nodes--;
}

static uint32_t child_total(const struct sub_node *n)
{
	return n->nkids + (n->plus != NULL) + (n->pound != NULL);
}

static size_t report(const struct walk *w, const struct sub_node *n)
{
	const struct sub_entry *e = n->nent <= 1 ? &n->ent.one : n->ent.many;
	for (uint32_t i = 0; i < n->nent; i++)
		w->cb(e[i].owner, e[i].data, w->ud);
	return n->nent;
}

/* --- children: "+" and "#" here, the others in sub_trie_kids.c --- */

static struct sub_node *child_get(const struct sub_trie *t, const struct sub_node *n,
				  const char *s, size_t len)
{
	if (topic_is_plus(s, len))
		return n->plus;
	if (topic_is_hash(s, len))
		return n->pound;
	return sub_trie_kids_find(t, n, s, len);
}

static int child_link(struct sub_node *n, struct sub_node *c)
{
	if (topic_is_plus(c->level, c->len))
		n->plus = c;
	else if (topic_is_hash(c->level, c->len))
		n->pound = c;
	else
		return sub_trie_kids_add(n, c);
	return 0;
}

static void child_unlink(struct sub_node *n, struct sub_node *c)
{
	if (n->plus == c)
		n->plus = NULL;
	else if (n->pound == c)
		n->pound = NULL;
	else
		sub_trie_kids_del(n, c);
}

/* Frees a chain of nodes in which each has at most one child. */
static void chain_free(struct sub_trie *t, struct sub_node *n)
{
	while (n) {
		struct sub_node *next = n->plus ? n->plus : n->pound;
		for (uint32_t i = 0; !next && i < n->kcap; i++)
			next = n->kids[i];
		node_free(t, n);
		n = next;
	}
}

/* --- entries --- */

static bool is_pow2(uint32_t x)
{
	return (x & (x - 1)) == 0;
}

static int entry_add(struct sub_node *n, void *owner, uint32_t data)
{
	struct sub_entry *e = n->nent <= 1 ? &n->ent.one : n->ent.many;
	for (uint32_t i = 0; i < n->nent; i++) {
		if (e[i].owner == owner) {
			e[i].data = data;
			return 0;
		}
	}
	struct sub_entry add = { owner, data };
	if (n->nent == 0) {
		n->ent.one = add;
	} else if (n->nent == 1) {
		e = malloc(2 * sizeof(*e));
		if (!e)
			return -1;
		e[0] = n->ent.one;
		e[1] = add;
		n->ent.many = e;
	} else {
		if (is_pow2(n->nent)) {
			e = realloc(n->ent.many, 2 * (size_t)n->nent * sizeof(*e));
			if (!e)
				return -1;
			n->ent.many = e;
		}
		n->ent.many[n->nent] = add;
	}
	n->nent++;
	return 1;
}

static void entry_del(struct sub_node *n, uint32_t i)
{
	if (n->nent == 1) {
		n->ent.one = (struct sub_entry){ NULL, 0 };
	} else if (n->nent == 2) {
		struct sub_entry keep = n->ent.many[1 - i];
		free(n->ent.many);
		n->ent.one = keep;
	} else {
		n->ent.many[i] = n->ent.many[n->nent - 1];
		if (is_pow2(n->nent - 1)) {
			struct sub_entry *e = realloc(n->ent.many, (n->nent - 1) * sizeof(*e));
			if (e) /* else the larger array stays, which is fine */
				n->ent.many = e;
		}
	}
	n->nent--;
}

/* --- public --- */

struct sub_trie *sub_trie_new(void)
{
	struct sub_trie *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->seed = sub_trie_kids_seed(t);
	t->root = node_new(t, "", 0);
	if (!t->root) {
		free(t);
		return NULL;
	}
	t->nodes = 0;
	return t;
}

static void free_below(struct sub_trie *t, struct sub_node *n)
{
	for (uint32_t i = 0; i < n->kcap; i++)
		if (n->kids[i])
			free_below(t, n->kids[i]);
	if (n->plus)
		free_below(t, n->plus);
	if (n->pound)
		free_below(t, n->pound);
	node_free(t, n);
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
			if (l > UINT16_MAX || !(c = node_new(t, s, l)))
				goto fail;
			if (child_link(n, c) < 0) {
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
	int rc = entry_add(n, owner, data);
	if (rc < 0)
		goto fail;
	t->count += (size_t)rc;
	return rc;
fail:
	/* Leave the trie as it was: drop the nodes this call created. */
	if (fresh) {
		child_unlink(fresh_parent, fresh);
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
		if (n == t->root || n->nent > 0 || child_total(n) > 1) {
			keep = n;
			cut = c;
		}
		n = c;
		if (end == len)
			break;
		pos = end + 1;
	}
	const struct sub_entry *e = n->nent <= 1 ? &n->ent.one : n->ent.many;
	uint32_t i = 0;
	while (i < n->nent && e[i].owner != owner)
		i++;
	if (i == n->nent)
		return 0;
	entry_del(n, i);
	t->count--;
	if (n->nent == 0 && child_total(n) == 0) {
		child_unlink(keep, cut);
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
		if (done) {
			calls += report(w, n);
			if (n->pound) /* "a/#" also matches "a" */
				calls += report(w, n->pound);
			return calls;
		}
		size_t end = topic_level_end(topic, len, pos);
		bool last = end == len;
		if (wild) {
			if (n->pound)
				calls += report(w, n->pound);
			if (n->plus)
				calls += match_from(w, n->plus, topic, len, end + 1, last);
		}
		n = sub_trie_kids_find(w->t, n, topic + pos, end - pos);
		if (!n)
			return calls;
		wild = true;
		pos = end + 1;
		done = last;
	}
}

size_t sub_trie_match(const struct sub_trie *t, const char *topic, size_t len,
		      void (*cb)(void *owner, uint32_t data, void *ud), void *ud)
{
	const struct walk w = { t, cb, ud };
	return match_from(&w, t->root, topic, len, 0, false);
}

static bool starts_dollar(const struct sub_node *c)
{
	return c->len > 0 && c->level[0] == '$';
}

static size_t report_below(const struct walk *w, const struct sub_node *n)
{
	size_t calls = 0;
	bool root = n == w->t->root;
	for (uint32_t i = 0; i < n->kcap; i++) {
		const struct sub_node *c = n->kids[i];
		if (c && !(root && starts_dollar(c)))
			calls += report(w, c) + report_below(w, c);
	}
	return calls;
}

static size_t filter_from(const struct walk *w, const struct sub_node *n, const char *filter,
			  size_t len, size_t pos)
{
	for (;;) {
		size_t end = topic_level_end(filter, len, pos);
		bool last = end == len;
		const char *s = filter + pos;
		size_t l = end - pos;
		if (topic_is_hash(s, l)) /* includes n itself: "a/#" matches "a" */
			return report(w, n) + report_below(w, n);
		if (topic_is_plus(s, l)) {
			size_t calls = 0;
			bool root = n == w->t->root;
			for (uint32_t i = 0; i < n->kcap; i++) {
				const struct sub_node *c = n->kids[i];
				if (!c || (root && starts_dollar(c)))
					continue;
				calls += last ? report(w, c) : filter_from(w, c, filter, len, end + 1);
			}
			return calls;
		}
		n = sub_trie_kids_find(w->t, n, s, l);
		if (!n)
			return 0;
		if (last)
			return report(w, n);
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
	size_t calls = report(w, n);
	for (uint32_t i = 0; i < n->kcap; i++)
		if (n->kids[i])
			calls += all_from(w, n->kids[i]);
	if (n->plus)
		calls += all_from(w, n->plus);
	if (n->pound)
		calls += all_from(w, n->pound);
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
