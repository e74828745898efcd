/* alias_out.c - topic aliases toward one client; see alias_out.h. */
#include <stdlib.h>
#include <string.h>

#include "broker/alias_out.h"
#include "core/hash.h"

struct alias_slot {
	uint32_t hash;
	uint16_t len;
	char *topic;        /* NULL: unmapped */
	uint64_t used;      /* last use, for the least recently used choice */
};

/* A direct-mapped hint from a topic's hash to the slot that last held it
 * (slot + 1; 0 none). Only a hint, checked against the slot: a wrong or
 * stale one costs the full scan, never a wrong alias. Twice ALIAS_OUT_MAX,
 * so that most topics of a full table hit at once. */
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

uint16_t alias_out_pick(struct alias_out *a, const char *topic, uint16_t len, bool *known)
{
	uint32_t h = hash_bytes(hash_process_seed(), topic, len);
	uint8_t *hint = &a->hint[h & (HINTS - 1)];
	uint16_t victim = 0;

	/* The hint: one compare for a topic seen before (the common case). */
	if (*hint && slot_is(&a->s[*hint - 1], h, topic, len)) {
		a->s[*hint - 1].used = ++a->tick;
		*known = true;
		return *hint;
	}
	/* Else at most ALIAS_OUT_MAX slots: a scan comparing stored hashes
	 * first, choosing the least recently used slot on the way. */
	for (uint16_t i = 0; i < a->cap; i++) {
		struct alias_slot *s = &a->s[i];
		if (slot_is(s, h, topic, len)) {
			s->used = ++a->tick;
			*hint = (uint8_t)(i + 1);
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

void alias_out_commit(struct alias_out *a, uint16_t alias, const char *topic, uint16_t len)
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
	s->hash = hash_bytes(hash_process_seed(), topic, len);
	s->used = ++a->tick;
	a->hint[s->hash & (HINTS - 1)] = (uint8_t)alias;
}
