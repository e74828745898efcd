/* alias_out.c - topic aliases toward one client; see alias_out.h. */
#include <stdlib.h>
#include <string.h>

#include "broker/alias_out.h"

struct alias_slot {
	uint32_t hash;
	uint16_t len;
	char *topic;        /* NULL: unmapped */
	uint64_t used;      /* last use, for the least recently used choice */
};

/* Hints from a topic's hash to the slot that holds it (slot + 1; 0 none),
 * two places per hash (its low bits and bits 16..22) so that two topics
 * sharing one place do not evict each other on every delivery. Only hints,
 * checked against the slot: a wrong or stale one costs the full scan,
 * never a wrong alias. Twice ALIAS_OUT_MAX places. */
#define HINTS (2 * ALIAS_OUT_MAX)
_Static_assert((HINTS & (HINTS - 1)) == 0 && ALIAS_OUT_MAX < 256, "hint table layout");

struct alias_out {
	uint16_t cap;
	uint64_t tick;
	uint8_t hint[HINTS];
	struct alias_slot s[];  /* alias i + 1 */
};

static bool slot_is(const struct alias_slot *s, uint32_t h, const char *topic, uint16_t len)
{
	return s->topic && s->hash == h && s->len == len && memcmp(s->topic, topic, len) == 0;
}

#define HINT1(h) ((h) & (HINTS - 1))
#define HINT2(h) (((h) >> 16) & (HINTS - 1))

/* Points a hint of h at slot i: the first place unless it holds a live
 * hint of its own (a slot whose topic hashes there), else the second. */
static void hint_set(struct alias_out *a, uint32_t h, uint16_t i)
{
	uint8_t *p = &a->hint[HINT1(h)];
	if (*p && *p != i + 1) {
		const struct alias_slot *o = &a->s[*p - 1];
		if (o->topic && HINT1(o->hash) == HINT1(h))
			p = &a->hint[HINT2(h)];
	}
	*p = (uint8_t)(i + 1);
}

struct alias_out *alias_out_new(uint16_t cap)
{
	if (cap > ALIAS_OUT_MAX)
		cap = ALIAS_OUT_MAX;
	if (cap == 0)
		return NULL;
	struct alias_out *a = calloc(1, sizeof(*a) + cap * sizeof(a->s[0]));
	if (a)
		a->cap = cap;
	return a;
}

void alias_out_free(struct alias_out *a)
{
	if (!a)
		return;
	for (uint16_t i = 0; i < a->cap; i++)
		free(a->s[i].topic);
	free(a);
}

uint16_t alias_out_pick(struct alias_out *a, const char *topic, uint16_t len, uint32_t h,
			bool *known)
{
	uint16_t victim = 0;

	/* The hints: one or two compares for a topic seen before (the common
	 * case). */
	uint8_t k = a->hint[HINT1(h)];
	if (!k || !slot_is(&a->s[k - 1], h, topic, len)) {
		k = a->hint[HINT2(h)];
		if (k && !slot_is(&a->s[k - 1], h, topic, len))
			k = 0;
	}
	if (k) {
		a->s[k - 1].used = ++a->tick;
		*known = true;
		return k;
	}
	/* Else at most ALIAS_OUT_MAX slots: a scan comparing stored hashes
	 * first, choosing the least recently used slot on the way. */
	for (uint16_t i = 0; i < a->cap; i++) {
		struct alias_slot *s = &a->s[i];
		if (slot_is(s, h, topic, len)) {
			s->used = ++a->tick;
			hint_set(a, h, i);
			*known = true;
			return (uint16_t)(i + 1);
		}
		if (!a->s[victim].topic)
			continue; /* a free one stays the choice */
		if (!s->topic || s->used < a->s[victim].used)
			victim = i;
	}
	*known = false;
	return (uint16_t)(victim + 1);
}

void alias_out_commit(struct alias_out *a, uint16_t alias, const char *topic, uint16_t len,
		      uint32_t h)
{
	struct alias_slot *s = &a->s[alias - 1];
	char *t = malloc((size_t)len + 1);

	free(s->topic);
	s->topic = t;
	if (!t)
		return;
	memcpy(t, topic, len);
	t[len] = '\0';
	s->len = len;
	s->hash = h;
	s->used = ++a->tick;
	hint_set(a, h, (uint16_t)(alias - 1));
}
