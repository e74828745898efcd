/* sub_trie.c - trie of topic filters; see sub_trie.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "sub_trie.h"
#include "topic.h"

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
	 * child, and this saves them an allocation and a cache miss. */
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

/* What a walk reports to; passed down the recursion as one pointer. */
struct walk {
	const struct sub_trie *t;
	void (*cb)(void *owner, uint32_t data, void *ud);
	void *ud;
};

/* A seeded mix of 8-byte words; not cryptographic, but without the seed a
 * client cannot pick level names that pile up in one probe run. */
static uint32_t level_hash(uint64_t seed, const char *s, size_t len)
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

static uint64_t new_seed(const void *salt)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	/* No entropy yet (early boot): still differs per trie and per run. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)(uintptr_t)salt ^ ((uint64_t)ts.tv_nsec << 21) ^ (uint64_t)ts.tv_sec;
}

static struct sub_node *node_new(struct sub_trie *t, const char *s, size_t len)
{
	size_t size = offsetof(struct sub_node, level) + len;
	struct sub_node *n = calloc(1, size < sizeof(*n) ? sizeof(*n) : size);
	if (!n)
		return NULL;
	memcpy(n->level, s, len);
	n->len = (uint16_t)len;
	n->hash = level_hash(t->seed, s, len);
	t->nodes++;
	return n;
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

static void node_free(struct sub_trie *t, struct sub_node *n)
{
	slots_free(n, n->kids);
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

/* --- children --- */

static struct sub_node *kids_find(const struct sub_trie *t, const struct sub_node *n,
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
	uint32_t h = level_hash(t->seed, s, len), mask = n->kcap - 1;
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

static int kids_add(struct sub_node *n, struct sub_node *c)
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

static void kids_del(struct sub_node *n, struct sub_node *c)
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

static struct sub_node *child_get(const struct sub_trie *t, const struct sub_node *n,
				  const char *s, size_t len)
{
	if (topic_is_plus(s, len))
		return n->plus;
	if (topic_is_hash(s, len))
		return n->pound;
	return kids_find(t, n, s, len);
}

static int child_link(struct sub_node *n, struct sub_node *c)
{
	if (topic_is_plus(c->level, c->len))
		n->plus = c;
	else if (topic_is_hash(c->level, c->len))
		n->pound = c;
	else
		return kids_add(n, c);
	return 0;
}

static void child_unlink(struct sub_node *n, struct sub_node *c)
{
	if (n->plus == c)
		n->plus = NULL;
	else if (n->pound == c)
		n->pound = NULL;
	else
		kids_del(n, c);
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
	t->seed = new_seed(t);
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
		n = kids_find(w->t, n, topic + pos, end - pos);
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
		n = kids_find(w->t, n, s, l);
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
