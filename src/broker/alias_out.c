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

struct alias_out {
	uint16_t cap;
	uint64_t tick;
	struct alias_slot s[];  /* alias i + 1 */
};

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
	uint16_t victim = 0;

	/* At most ALIAS_OUT_MAX slots: a scan comparing stored hashes first. */
	for (uint16_t i = 0; i < a->cap; i++) {
		struct alias_slot *s = &a->s[i];
		if (s->topic && s->hash == h && s->len == len && memcmp(s->topic, topic, len) == 0) {
			s->used = ++a->tick;
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
}
