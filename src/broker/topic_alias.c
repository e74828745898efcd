/* topic_alias.c - inbound MQTT 5 Topic Aliases; see topic_alias.h. */
#include <stdlib.h>
#include <string.h>

#include "broker/topic_alias.h"

struct alias_slot {
	char *p;         /* NULL: alias not set */
	uint16_t len;
	uint16_t cap;
};

struct topic_aliases {
	struct alias_slot *slots;   /* slots[alias - 1] */
	uint32_t n;                 /* slots allocated */
};

/* Room for alias in the slot array: grown by doubling (a client typically
 * numbers its aliases from 1 up), capped at alias_max. */
static int grow(struct topic_aliases *t, uint16_t alias_max, uint16_t alias)
{
	if (alias <= t->n)
		return 0;
	uint32_t n = t->n ? t->n * 2 : 8;
	if (n < alias)
		n = alias;
	if (n > alias_max)
		n = alias_max;
	struct alias_slot *s = realloc(t->slots, n * sizeof(*s));
	if (!s)
		return -1;
	memset(s + t->n, 0, (n - t->n) * sizeof(*s));
	t->slots = s;
	t->n = n;
	return 0;
}

int topic_alias_set(struct topic_aliases **tp, uint16_t alias_max, uint16_t alias,
		    const char *topic, uint16_t len)
{
	struct topic_aliases *t = *tp;

	if (alias == 0 || alias > alias_max)
		return -1; /* the caller checked; never index out of the table */
	if (!t) {
		if (!(t = calloc(1, sizeof(*t))))
			return -1;
		*tp = t;
	}
	if (grow(t, alias_max, alias) < 0)
		return -1;
	struct alias_slot *s = &t->slots[alias - 1];
	if (!s->p || s->cap < len) {
		char *p = malloc(len ? len : 1);
		if (!p)
			return -1;
		free(s->p);
		s->p = p;
		s->cap = len;
	}
	memcpy(s->p, topic, len);
	s->len = len;
	return 0;
}

const char *topic_alias_get(const struct topic_aliases *t, uint16_t alias, uint16_t *len)
{
	if (!t || alias == 0 || alias > t->n || !t->slots[alias - 1].p)
		return NULL;
	*len = t->slots[alias - 1].len;
	return t->slots[alias - 1].p;
}

void topic_alias_free(struct topic_aliases *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->n; i++)
		free(t->slots[i].p);
	free(t->slots);
	free(t);
}
