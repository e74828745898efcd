/*
 * sub_trie_int.h - what sub_trie.c (the trie: add, remove, the walks) and
 * sub_trie_kids.c (the children table of one node) share. Not a public
 * interface: other modules use sub_trie.h.
 *
 * Same rules as sub_trie.h: pure (no logging), not thread safe (the caller
 * of sub_trie_* holds the trie's lock), nothing here fails except where a
 * return value says so.
 */
#ifndef KG_SUB_TRIE_INT_H
#define KG_SUB_TRIE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt/sub_trie.h"

#define KIDS_SMALL     8  /* up to this capacity children are scanned */
#define KIDS_MIN_TABLE 16

struct sub_entry {
	void *owner;
	uint32_t data;
};

struct sub_node {
	/* kcap <= KIDS_SMALL: the first nkids slots hold the children, packed,
	 * the rest are NULL. Otherwise a linear-probing hash table of kcap
	 * slots (a power of two), NULL meaning empty. Wildcard children live
	 * outside it, where a match finds them without hashing. A single child
	 * sits in kid1 (kids == &kid1): most nodes of a big trie have one
	 * child, and this saves them an allocation and a cache miss. Either
	 * way, walking slots 0..kcap-1 and skipping NULLs visits every
	 * non-wildcard child. */
	struct sub_node **kids;
	struct sub_node *kid1;
	struct sub_node *plus;
	struct sub_node *pound;
	/* Most filters have one owner: keep it inline and save an allocation
	 * and a pointer chase. The array's capacity is implicit: it grows when
	 * nent reaches a power of two. */
	union {
		struct sub_entry one;   /* nent <= 1 */
		struct sub_entry *many; /* nent >= 2 */
	} ent;
	uint32_t nent;
	uint32_t nkids;
	uint32_t kcap;
	uint32_t hash;  /* of level, with the trie's seed */
	uint16_t len;
	char level[];   /* len bytes, no NUL */
};

struct sub_trie {
	struct sub_node *root;
	size_t count;
	size_t nodes;
	uint64_t seed;
};

/* A fresh hash seed for a new trie, different per trie (salt: the trie's
 * address) and per run. Never fails. */
uint64_t sub_trie_kids_seed(const void *salt);
/* The hash of a level string under seed; stored in each node (hash) so that
 * the table never rehashes strings when it grows or shrinks. */
uint32_t sub_trie_kids_hash(uint64_t seed, const char *s, size_t len);

/* The non-wildcard child of n whose level is s[0..len), or NULL. Callers
 * handle "+" and "#" themselves (n->plus, n->pound). */
struct sub_node *sub_trie_kids_find(const struct sub_trie *t, const struct sub_node *n,
				    const char *s, size_t len);
/* Adds c, which must not be a wildcard nor already a child, growing the
 * table as needed. Returns 0, or -1 on allocation failure (n unchanged). */
int sub_trie_kids_add(struct sub_node *n, struct sub_node *c);
/* Removes c, which must be a child of n, shrinking the table when it gets
 * sparse. Never fails: a failed shrink keeps the larger table. */
void sub_trie_kids_del(struct sub_node *n, struct sub_node *c);
/* Frees n's table (not the children), before n itself is freed. */
void sub_trie_kids_release(struct sub_node *n);

#endif
