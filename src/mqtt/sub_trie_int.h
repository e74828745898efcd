/*
 * sub_trie_int.h - what sub_trie.c (the trie: add, remove, the walks) and
 * sub_trie_kids.c (what hangs off one node: its children table and its
 * side record of wildcard children and entries) share. Not a public
 * interface: other modules use sub_trie.h.
 *
 * Same rules as sub_trie.h: pure (no logging), not thread safe (the caller
 * of sub_trie_* holds the trie's lock), nothing here fails except where a
 * return value says so.
 *
 * Memory: a node is one allocation of 23 bytes plus its level (plus 4 for
 * a filter's last level), so a chain of empty levels costs one 32-byte
 * malloc chunk per level. Everything most nodes lack lives elsewhere: two or
 * more children in a struct sub_kids, wildcard children and all but a
 * single inline entry in a struct sub_more.
 */
#ifndef KG_SUB_TRIE_INT_H
#define KG_SUB_TRIE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mqtt/sub_trie.h"

#define KIDS_SMALL     8  /* up to this capacity children are scanned */
#define KIDS_MIN_TABLE 16

struct sub_entry {
	void *owner;
	uint32_t data;
};

/* Two or more non-wildcard children. cap <= KIDS_SMALL: the first n slots
 * hold the children, packed, the rest are NULL. Otherwise a linear-probing
 * hash table of cap slots (a power of two), NULL meaning empty. Either way,
 * walking slots 0..cap-1 and skipping NULLs visits every child. */
struct sub_kids {
	uint32_t n;
	uint32_t cap;
	struct sub_node *slot[];
};

/* The parts of a node that most nodes do not need: wildcard children and
 * entries (unless a single one fits inline, N_OWNER). Allocated on first
 * use, freed as soon as it holds nothing the node cannot hold itself. */
struct sub_more {
	struct sub_node *plus;
	struct sub_node *pound;
	/* The array's capacity is implicit: it grows when nent reaches a power
	 * of two. */
	union {
		struct sub_entry one;   /* nent <= 1 */
		struct sub_entry *many; /* nent >= 2 */
	} ent;
	uint32_t nent;
};

enum {
	N_TAB = 1,   /* kids.tab, else kids.one (which may be NULL) */
	N_SLOT = 2,  /* 4 bytes after level hold an inline entry's data */
	N_OWNER = 4, /* x.owner: the node's only entry (needs N_SLOT); else x.more */
};

struct sub_node {
	/* Most nodes of a big trie have one child: it sits here, saving them
	 * a table, an allocation and a cache miss. */
	union {
		struct sub_node *one;
		struct sub_kids *tab;
	} kids;
	/* A node created for a filter's last level gets room for one entry
	 * (N_SLOT): the owner here, the data after the level. */
	union {
		struct sub_more *more; /* may be NULL */
		void *owner;
	} x;
	uint32_t hash; /* of level, with the trie's seed */
	uint16_t len;
	uint8_t flags;
	char level[];  /* len bytes, no NUL; then the slot's data if N_SLOT */
};

struct sub_trie {
	struct sub_node *root;
	size_t count;
	size_t nodes;
	size_t bytes;
	uint64_t seed;
};

/* The non-wildcard children of n as *cap slots, NULLs to be skipped. */
static inline struct sub_node *const *sub_trie_kids_slots(const struct sub_node *n,
							   uint32_t *cap)
{
	if (n->flags & N_TAB) {
		*cap = n->kids.tab->cap;
		return n->kids.tab->slot;
	}
	*cap = n->kids.one != NULL;
	return &n->kids.one;
}

/* n's side record, or NULL. */
static inline struct sub_more *sub_trie_kids_more(const struct sub_node *n)
{
	return n->flags & N_OWNER ? NULL : n->x.more;
}

/* The data of n's inline entry (N_OWNER). */
static inline uint32_t sub_trie_kids_slot_data(const struct sub_node *n)
{
	uint32_t data;
	memcpy(&data, n->level + n->len, sizeof(data));
	return data;
}

/* Number of entries. */
static inline uint32_t sub_trie_kids_nent(const struct sub_node *n)
{
	if (n->flags & N_OWNER)
		return 1;
	return n->x.more ? n->x.more->nent : 0;
}

/* Number of non-wildcard children. */
static inline uint32_t sub_trie_kids_count(const struct sub_node *n)
{
	return n->flags & N_TAB ? n->kids.tab->n : n->kids.one != NULL;
}

/* Level strings are hashed with core/hash.h (hash_bytes() under the trie's
 * seed, hash_seed(trie) at creation); the hash is stored in each node so that
 * the table never rehashes strings when it grows or shrinks. */

/* The non-wildcard child of n whose level is s[0..len), or NULL. Callers
 * handle "+" and "#" themselves (struct sub_more). */
struct sub_node *sub_trie_kids_find(const struct sub_trie *t, const struct sub_node *n,
				    const char *s, size_t len);
/* Adds c, which must not be a wildcard nor already a child, growing the
 * table as needed (t->bytes follows). Returns 0, or -1 on allocation
 * failure (n unchanged). */
int sub_trie_kids_add(struct sub_trie *t, struct sub_node *n, struct sub_node *c);
/* Removes c, which must be a child of n, shrinking the table when it gets
 * sparse. Never fails: a failed shrink keeps the larger table. */
void sub_trie_kids_del(struct sub_trie *t, struct sub_node *n, struct sub_node *c);
/* Frees n's table and side record (not the children), before n itself is
 * freed. */
void sub_trie_kids_release(struct sub_trie *t, struct sub_node *n);

/* n's side record, made if missing (an inline entry moves into it).
 * Returns NULL on allocation failure, n unchanged. */
struct sub_more *sub_trie_kids_more_get(struct sub_trie *t, struct sub_node *n);
/* Frees n's side record if it holds nothing n cannot hold itself (a
 * single entry moves back inline). Call after taking anything out of it. */
void sub_trie_kids_more_tidy(struct sub_trie *t, struct sub_node *n);

/* Index of owner's entry in n, or sub_trie_kids_nent(n) if none. */
uint32_t sub_trie_kids_entry_find(const struct sub_node *n, const void *owner);
/* Adds (owner, data), or replaces the data of owner's entry. Returns 1
 * when added, 0 when replaced, -1 on allocation failure (n unchanged). */
int sub_trie_kids_entry_add(struct sub_trie *t, struct sub_node *n, void *owner,
			    uint32_t data);
/* Removes entry i (< sub_trie_kids_nent(n)). Never fails. */
void sub_trie_kids_entry_del(struct sub_trie *t, struct sub_node *n, uint32_t i);

#endif
