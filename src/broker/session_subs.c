/* session_subs.c - a session's filters as a hash set; see session_subs.h. */
#include <stdlib.h>
#include <string.h>

#include "broker/session_subs.h"
#include "core/hash.h"

#define MIN_CAP 8

/* Seeded per process: a client cannot choose filters that collide. */
static uint32_t hash(const char *s, size_t len)
{
	return hash_bytes(hash_process_seed(), s, len);
}

static size_t entry_size(uint16_t len)
{
	return sizeof(struct sub_entry) + (size_t)len + 1;
}

void session_subs_init(struct session_subs *ss)
{
	memset(ss, 0, sizeof(*ss));
}

void session_subs_release(struct session_subs *ss)
{
	for (uint32_t i = 0; i < ss->cap; i++)
		free(ss->slot[i]);
	free(ss->slot);
	memset(ss, 0, sizeof(*ss));
}

/* The slot holding filter, or the free slot where it would go. */
static uint32_t probe(const struct session_subs *ss, uint32_t h, const char *filter, uint16_t len)
{
	uint32_t mask = ss->cap - 1, i = h & mask;

	for (;; i = (i + 1) & mask) {
		const struct sub_entry *e = ss->slot[i];
		if (!e || (e->hash == h && e->len == len && memcmp(e->filter, filter, len) == 0))
			return i;
	}
}

struct sub_entry *session_subs_find(const struct session_subs *ss, const char *filter,
				    uint16_t len)
{
	if (ss->n == 0)
		return NULL;
	return ss->slot[probe(ss, hash(filter, len), filter, len)];
}

/* Moves every entry into a table of cap slots (stored hashes: no rehash of
 * strings). Returns 0 or -1 (ENOMEM, the set unchanged). */
static int resize(struct session_subs *ss, uint32_t cap)
{
	struct sub_entry **slot = calloc(cap, sizeof(*slot));

	if (!slot)
		return -1;
	for (uint32_t i = 0; i < ss->cap; i++) {
		struct sub_entry *e = ss->slot[i];
		if (!e)
			continue;
		uint32_t j = e->hash & (cap - 1);
		while (slot[j])
			j = (j + 1) & (cap - 1);
		slot[j] = e;
	}
	free(ss->slot);
	ss->bytes = ss->bytes - (size_t)ss->cap * sizeof(*slot) + (size_t)cap * sizeof(*slot);
	ss->slot = slot;
	ss->cap = cap;
	return 0;
}

int session_subs_add(struct session_subs *ss, const char *filter, uint16_t len, uint32_t opts)
{
	uint32_t h = hash(filter, len);

	if (ss->n > 0) {
		struct sub_entry *e = ss->slot[probe(ss, h, filter, len)];
		if (e) {
			e->qos = SUBOPT_QOS(opts);
			e->opts = opts;
			return 0;
		}
	}
	/* Keep at least a quarter of the slots free: probe runs stay short. */
	if ((uint64_t)(ss->n + 1) * 4 > (uint64_t)ss->cap * 3 &&
	    resize(ss, ss->cap ? ss->cap * 2 : MIN_CAP) < 0)
		return -1;
	struct sub_entry *e = malloc(entry_size(len));
	if (!e)
		return -1;
	e->hash = h;
	e->len = len;
	e->qos = SUBOPT_QOS(opts);
	e->opts = opts;
	memcpy(e->filter, filter, len);
	e->filter[len] = '\0';
	ss->slot[probe(ss, h, filter, len)] = e;
	ss->n++;
	ss->bytes += entry_size(len);
	return 1;
}

bool session_subs_del(struct session_subs *ss, const char *filter, uint16_t len)
{
	if (ss->n == 0)
		return false;
	uint32_t mask = ss->cap - 1, i = probe(ss, hash(filter, len), filter, len);
	struct sub_entry *e = ss->slot[i];

	if (!e)
		return false;
	ss->bytes -= entry_size(e->len);
	free(e);
	ss->slot[i] = NULL;
	ss->n--;
	/* Backward shift: pull later entries of the run into the hole, so that
	 * lookups never need tombstones. */
	for (uint32_t j = (i + 1) & mask; ss->slot[j]; j = (j + 1) & mask) {
		uint32_t home = ss->slot[j]->hash & mask;
		/* Move it unless its home lies cyclically in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			ss->slot[i] = ss->slot[j];
			ss->slot[j] = NULL;
			i = j;
		}
	}
	if (ss->n == 0) {
		session_subs_release(ss);
	} else if (ss->cap > MIN_CAP && (uint64_t)ss->n * 8 < ss->cap) {
		/* Out of memory only keeps the larger table. */
		(void)resize(ss, ss->cap / 2);
	}
	return true;
}

const struct sub_entry *session_subs_next(const struct session_subs *ss, uint32_t *pos)
{
	while (*pos < ss->cap) {
		const struct sub_entry *e = ss->slot[(*pos)++];
		if (e)
			return e;
	}
	return NULL;
}
