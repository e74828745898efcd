/* sub_trie_kids.c - the children table of a trie node; see sub_trie_int.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "mqtt/sub_trie_int.h"

/* A seeded mix of 8-byte words; not cryptographic, but without the seed a
 * client cannot pick level names that pile up in one probe run. */
uint32_t sub_trie_kids_hash(uint64_t seed, const char *s, size_t len)
{
	uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15u);
	uint64_t w;
	for (; len >= 8; s += 8, len -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, s, len);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 29;
	return (uint32_t)h;
}

uint64_t sub_trie_kids_seed(const void *salt)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	/* No entropy yet (early boot): still differs per trie and per run. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)(uintptr_t)salt ^ ((uint64_t)ts.tv_nsec << 21) ^ (uint64_t)ts.tv_sec;
}

static struct sub_node **slots_new(struct sub_node *n, uint32_t cap)
{
	if (cap > 1)
		return calloc(cap, sizeof(struct sub_node *));
	n->kid1 = NULL;
	return &n->kid1;
}

static void slots_free(struct sub_node *n, struct sub_node **slots)
{
	if (slots != &n->kid1)
		free(slots);
}

struct sub_node *sub_trie_kids_find(const struct sub_trie *t, const struct sub_node *n,
				    const char *s, size_t len)
{
	if (n->kcap <= KIDS_SMALL) {
		for (uint32_t i = 0; i < n->nkids; i++) {
			struct sub_node *c = n->kids[i];
			if (c->len == len && memcmp(c->level, s, len) == 0)
				return c;
		}
		return NULL;
	}
	uint32_t h = sub_trie_kids_hash(t->seed, s, len), mask = n->kcap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		struct sub_node *c = n->kids[i];
		if (!c || (c->hash == h && c->len == len && memcmp(c->level, s, len) == 0))
			return c;
	}
}

static void table_put(struct sub_node **slots, uint32_t cap, struct sub_node *c)
{
	uint32_t mask = cap - 1, i = c->hash & mask;
	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = c;
}

static int kids_resize(struct sub_node *n, uint32_t cap)
{
	struct sub_node **slots = slots_new(n, cap);
	if (!slots)
		return -1;
	uint32_t k = 0;
	for (uint32_t i = 0; i < n->kcap; i++) {
		struct sub_node *c = n->kids[i];
		if (!c)
			continue;
		if (cap <= KIDS_SMALL)
			slots[k++] = c;
		else
			table_put(slots, cap, c);
	}
	slots_free(n, n->kids);
	n->kids = slots;
	n->kcap = cap;
	return 0;
}

int sub_trie_kids_add(struct sub_node *n, struct sub_node *c)
{
	if (n->kcap <= KIDS_SMALL) {
		if (n->nkids == n->kcap) {
			uint32_t cap = n->kcap ? n->kcap * 2 : 1;
			if (kids_resize(n, cap > KIDS_SMALL ? KIDS_MIN_TABLE : cap) < 0)
				return -1;
		}
	} else if (((uint64_t)n->nkids + 1) * 4 > (uint64_t)n->kcap * 3) {
		if (kids_resize(n, n->kcap * 2) < 0)
			return -1;
	}
	if (n->kcap <= KIDS_SMALL)
		n->kids[n->nkids] = c;
	else
		table_put(n->kids, n->kcap, c);
	n->nkids++;
	return 0;
}

void sub_trie_kids_del(struct sub_node *n, struct sub_node *c)
{
	if (n->kcap <= KIDS_SMALL) {
		uint32_t i = 0;
		while (n->kids[i] != c)
			i++;
		n->kids[i] = n->kids[--n->nkids];
		n->kids[n->nkids] = NULL;
	} else {
		uint32_t mask = n->kcap - 1, i = c->hash & mask;
		while (n->kids[i] != c)
			i = (i + 1) & mask;
		/* Backward-shift deletion: pull later members of the probe run
		 * into the hole, so lookups never need tombstones. */
		for (uint32_t j = i;;) {
			j = (j + 1) & mask;
			struct sub_node *x = n->kids[j];
			if (!x)
				break;
			uint32_t home = x->hash & mask;
			bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
			if (!stays) {
				n->kids[i] = x;
				i = j;
			}
		}
		n->kids[i] = NULL;
		n->nkids--;
		if (n->nkids > 0 && (uint64_t)n->nkids * 8 <= n->kcap) {
			uint32_t cap = n->nkids <= KIDS_SMALL ? KIDS_SMALL : KIDS_MIN_TABLE;
			while (cap > KIDS_SMALL && n->nkids * 2 > cap)
				cap *= 2;
			(void)kids_resize(n, cap); /* on failure the big table still works */
		}
	}
	if (n->nkids == 0) {
		slots_free(n, n->kids);
		n->kids = NULL;
		n->kcap = 0;
	}
}

void sub_trie_kids_release(struct sub_node *n)
{
	slots_free(n, n->kids);
}
