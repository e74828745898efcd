/* sub_trie_kids.c - what hangs off a trie node: its children table and its
 * side record (wildcard children, entries); see sub_trie_int.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/hash.h"
#include "mqtt/sub_trie_int.h"

static size_t tab_size(uint32_t cap)
{
	return offsetof(struct sub_kids, slot) + (size_t)cap * sizeof(struct sub_node *);
}

static struct sub_kids *tab_new(struct sub_trie *t, uint32_t cap)
{
	struct sub_kids *k = calloc(1, tab_size(cap));
	if (!k)
		return NULL;
	k->cap = cap;
	t->bytes += tab_size(cap);
	return k;
}

static void tab_free(struct sub_trie *t, struct sub_kids *k)
{
	t->bytes -= tab_size(k->cap);
	free(k);
}

struct sub_node *sub_trie_kids_find(const struct sub_trie *t, const struct sub_node *n,
				    const char *s, size_t len)
{
	if (!(n->flags & N_TAB)) {
		struct sub_node *c = n->kids.one;
		return c && c->len == len && memcmp(c->level, s, len) == 0 ? c : NULL;
	}
	const struct sub_kids *k = n->kids.tab;
	if (k->cap <= KIDS_SMALL) {
		for (uint32_t i = 0; i < k->n; i++) {
			struct sub_node *c = k->slot[i];
			if (c->len == len && memcmp(c->level, s, len) == 0)
				return c;
		}
		return NULL;
	}
	uint32_t h = hash_bytes(t->seed, s, len), mask = k->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		struct sub_node *c = k->slot[i];
		if (!c || (c->hash == h && c->len == len && memcmp(c->level, s, len) == 0))
			return c;
	}
}

static void table_put(struct sub_kids *k, struct sub_node *c)
{
	uint32_t mask = k->cap - 1, i = c->hash & mask;
	while (k->slot[i])
		i = (i + 1) & mask;
	k->slot[i] = c;
}

static void tab_put(struct sub_kids *k, struct sub_node *c)
{
	if (k->cap <= KIDS_SMALL)
		k->slot[k->n] = c;
	else
		table_put(k, c);
	k->n++;
}

/* Moves n's children into a new table of cap slots. */
static int kids_resize(struct sub_trie *t, struct sub_node *n, uint32_t cap)
{
	struct sub_kids *old = n->kids.tab, *k = tab_new(t, cap);
	if (!k)
		return -1;
	for (uint32_t i = 0; i < old->cap; i++)
		if (old->slot[i])
			tab_put(k, old->slot[i]);
	tab_free(t, old);
	n->kids.tab = k;
	return 0;
}

int sub_trie_kids_add(struct sub_trie *t, struct sub_node *n, struct sub_node *c)
{
	if (!(n->flags & N_TAB)) {
		if (!n->kids.one) {
			n->kids.one = c;
			return 0;
		}
		struct sub_kids *k = tab_new(t, 2);
		if (!k)
			return -1;
		tab_put(k, n->kids.one);
		tab_put(k, c);
		n->kids.tab = k;
		n->flags |= N_TAB;
		return 0;
	}
	struct sub_kids *k = n->kids.tab;
	if (k->cap <= KIDS_SMALL) {
		if (k->n == k->cap &&
		    kids_resize(t, n, k->cap * 2 > KIDS_SMALL ? KIDS_MIN_TABLE : k->cap * 2) < 0)
			return -1;
	} else if (((uint64_t)k->n + 1) * 4 > (uint64_t)k->cap * 3) {
		if (kids_resize(t, n, k->cap * 2) < 0)
			return -1;
	}
	tab_put(n->kids.tab, c);
	return 0;
}

/* Removes c from table k; never fails. */
static void tab_del(struct sub_kids *k, struct sub_node *c)
{
	if (k->cap <= KIDS_SMALL) {
		uint32_t i = 0;
		while (k->slot[i] != c)
			i++;
		k->slot[i] = k->slot[--k->n];
		k->slot[k->n] = NULL;
		return;
	}
	uint32_t mask = k->cap - 1, i = c->hash & mask;
	while (k->slot[i] != c)
		i = (i + 1) & mask;
	/* Backward-shift deletion: pull later members of the probe run into
	 * the hole, so lookups never need tombstones. */
	for (uint32_t j = i;;) {
		j = (j + 1) & mask;
		struct sub_node *x = k->slot[j];
		if (!x)
			break;
		uint32_t home = x->hash & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			k->slot[i] = x;
			i = j;
		}
	}
	k->slot[i] = NULL;
	k->n--;
}

void sub_trie_kids_del(struct sub_trie *t, struct sub_node *n, struct sub_node *c)
{
	if (!(n->flags & N_TAB)) {
		n->kids.one = NULL;
		return;
	}
	struct sub_kids *k = n->kids.tab;
	tab_del(k, c);
	if (k->n == 1) {
		/* Back to the inline child: the common case stays table-free. */
		uint32_t i = 0;
		while (!k->slot[i])
			i++;
		n->kids.one = k->slot[i];
		n->flags &= (uint8_t)~N_TAB;
		tab_free(t, k);
	} else if (k->cap > KIDS_SMALL && (uint64_t)k->n * 8 <= k->cap) {
		uint32_t cap = k->n <= KIDS_SMALL ? KIDS_SMALL : KIDS_MIN_TABLE;
		while (cap > KIDS_SMALL && k->n * 2 > cap)
			cap *= 2;
		(void)kids_resize(t, n, cap); /* on failure the big table still works */
	}
}

/* --- the side record: wildcard children, entries --- */

static bool is_pow2(uint32_t x)
{
	return (x & (x - 1)) == 0;
}

/* Bytes of the entry array of a side record with nent entries: none up to
 * one (inline), else the next power of two of them. */
static size_t ent_bytes(uint32_t nent)
{
	if (nent < 2)
		return 0;
	uint32_t cap = 2;
	while (cap < nent)
		cap *= 2;
	return (size_t)cap * sizeof(struct sub_entry);
}

static void slot_set(struct sub_node *n, void *owner, uint32_t data)
{
	n->x.owner = owner;
	memcpy(n->level + n->len, &data, sizeof(data));
	n->flags |= N_OWNER;
}

static void more_free(struct sub_trie *t, struct sub_node *n)
{
	struct sub_more *m = n->x.more;
	if (m->nent >= 2)
		free(m->ent.many);
	t->bytes -= sizeof(*m) + ent_bytes(m->nent);
	free(m);
	n->x.more = NULL;
}

struct sub_more *sub_trie_kids_more_get(struct sub_trie *t, struct sub_node *n)
{
	struct sub_more *m = sub_trie_kids_more(n);
	if (m)
		return m;
	if (!(m = calloc(1, sizeof(*m))))
		return NULL;
	t->bytes += sizeof(*m);
	if (n->flags & N_OWNER) {
		m->ent.one = (struct sub_entry){ n->x.owner, sub_trie_kids_slot_data(n) };
		m->nent = 1;
		n->flags &= (uint8_t)~N_OWNER;
	}
	n->x.more = m;
	return m;
}

void sub_trie_kids_more_tidy(struct sub_trie *t, struct sub_node *n)
{
	struct sub_more *m = sub_trie_kids_more(n);
	if (!m || m->plus || m->pound || m->nent > 1 || (m->nent == 1 && !(n->flags & N_SLOT)))
		return;
	struct sub_entry e = m->ent.one;
	uint32_t nent = m->nent;
	more_free(t, n);
	if (nent == 1)
		slot_set(n, e.owner, e.data);
}

uint32_t sub_trie_kids_entry_find(const struct sub_node *n, const void *owner)
{
	if (n->flags & N_OWNER)
		return n->x.owner == owner ? 0 : 1;
	const struct sub_more *m = n->x.more;
	if (!m)
		return 0;
	const struct sub_entry *e = m->nent <= 1 ? &m->ent.one : m->ent.many;
	uint32_t i = 0;
	while (i < m->nent && e[i].owner != owner)
		i++;
	return i;
}

int sub_trie_kids_entry_add(struct sub_trie *t, struct sub_node *n, void *owner, uint32_t data)
{
	uint32_t nent = sub_trie_kids_nent(n), i = sub_trie_kids_entry_find(n, owner);
	if (i < nent) {
		if (n->flags & N_OWNER)
			slot_set(n, owner, data);
		else
			(nent == 1 ? &n->x.more->ent.one : n->x.more->ent.many)[i].data = data;
		return 0;
	}
	if (nent == 0 && !sub_trie_kids_more(n) && (n->flags & N_SLOT)) {
		slot_set(n, owner, data);
		return 1;
	}
	struct sub_more *m = sub_trie_kids_more_get(t, n);
	if (!m)
		return -1;
	struct sub_entry add = { owner, data };
	if (m->nent == 0) {
		m->ent.one = add;
	} else if (m->nent == 1) {
		struct sub_entry *e = malloc(2 * sizeof(*e));
		if (!e) {
			sub_trie_kids_more_tidy(t, n); /* the inline entry goes back */
			return -1;
		}
		e[0] = m->ent.one;
		e[1] = add;
		m->ent.many = e;
	} else {
		if (is_pow2(m->nent)) {
			struct sub_entry *e = realloc(m->ent.many, 2 * (size_t)m->nent * sizeof(*e));
			if (!e)
				return -1;
			m->ent.many = e;
		}
		m->ent.many[m->nent] = add;
	}
	t->bytes += ent_bytes(m->nent + 1) - ent_bytes(m->nent);
	m->nent++;
	return 1;
}

void sub_trie_kids_entry_del(struct sub_trie *t, struct sub_node *n, uint32_t i)
{
	if (n->flags & N_OWNER) {
		n->x.more = NULL;
		n->flags &= (uint8_t)~N_OWNER;
		return;
	}
	struct sub_more *m = n->x.more;
	if (m->nent == 1) {
		m->ent.one = (struct sub_entry){ NULL, 0 };
	} else if (m->nent == 2) {
		struct sub_entry keep = m->ent.many[1 - i];
		free(m->ent.many);
		m->ent.one = keep;
	} else {
		m->ent.many[i] = m->ent.many[m->nent - 1];
		if (is_pow2(m->nent - 1)) {
			struct sub_entry *e = realloc(m->ent.many, ent_bytes(m->nent - 1));
			if (e) /* else the larger array stays, which is fine */
				m->ent.many = e;
		}
	}
	t->bytes -= ent_bytes(m->nent) - ent_bytes(m->nent - 1);
	m->nent--;
	sub_trie_kids_more_tidy(t, n);
}

void sub_trie_kids_release(struct sub_trie *t, struct sub_node *n)
{
	if (sub_trie_kids_more(n))
		more_free(t, n);
	if (n->flags & N_TAB)
		tab_free(t, n->kids.tab);
	n->kids.one = NULL;
	n->flags &= (uint8_t)~N_TAB;
}
