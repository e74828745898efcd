/* offsets.c - contiguous commit tracking; see offsets.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/offsets.h"

struct entry {
	int64_t offset;
	int64_t added_ms;
	uint32_t owed;      /* 0: complete */
};

/* Entries sit in a ring ordered by offset; the head is always incomplete
 * (complete heads are popped at once), so it is the commit position. */
struct part {
	char *topic;
	int32_t partition;
	uint32_t gen;       /* 0: slot free */
	struct entry *e;
	size_t head, n, cap;
	int64_t last_added; /* -1: nothing added yet */
	int64_t reported;   /* last position handed out, -1: none */
};

struct offsets {
	struct part *p;
	size_t np, cap;
	uint32_t next_gen;
	size_t in_flight;
	size_t last_hit;    /* records come in runs from one partition */
};

struct offsets *offsets_new(void)
{
	struct offsets *o = calloc(1, sizeof(*o));
	if (o)
		o->next_gen = 1;
	return o;
}

static void part_drop(struct offsets *o, struct part *pt)
{
	o->in_flight -= pt->n;
	free(pt->topic);
	free(pt->e);
	memset(pt, 0, sizeof(*pt));
}

void offsets_free(struct offsets *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->np; i++)
		if (o->p[i].gen)
			part_drop(o, &o->p[i]);
	free(o->p);
	free(o);
}

static struct part *lookup(struct offsets *o, const char *topic, int32_t partition)
{
	struct part *pt = o->last_hit < o->np ? &o->p[o->last_hit] : NULL;
	if (pt && pt->gen && pt->partition == partition && strcmp(pt->topic, topic) == 0)
		return pt;
	for (size_t i = 0; i < o->np; i++) {
		pt = &o->p[i];
		if (pt->gen && pt->partition == partition && strcmp(pt->topic, topic) == 0) {
			o->last_hit = i;
			return pt;
		}
	}
	return NULL;
}

static struct part *by_ref(struct offsets *o, struct offsets_ref ref)
{
	if (ref.slot >= o->np || ref.gen == 0 || o->p[ref.slot].gen != ref.gen)
		return NULL;
	return &o->p[ref.slot];
}

static int64_t position(const struct part *pt)
{
	if (pt->n > 0)
		return pt->e[pt->head].offset;
	return pt->last_added >= 0 ? pt->last_added + 1 : -1;
}

static void pop_complete(struct offsets *o, struct part *pt)
{
	while (pt->n > 0 && pt->e[pt->head].owed == 0) {
		pt->head = (pt->head + 1) % pt->cap;
		pt->n--;
		o->in_flight--;
	}
}

/* Binary search over the ring: offsets increase from the head. */
static struct entry *find_entry(struct part *pt, int64_t offset)
{
	size_t lo = 0, hi = pt->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct entry *e = &pt->e[(pt->head + mid) % pt->cap];
		if (e->offset == offset)
			return e;
		if (e->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int offsets_assign(struct offsets *o, const char *topic, int32_t partition,
		   struct offsets_ref *ref)
{
	struct part *pt = lookup(o, topic, partition);
	if (pt)
		part_drop(o, pt);
	size_t slot = 0;
	while (slot < o->np && o->p[slot].gen)
		slot++;
	if (slot == o->np) {
		if (o->np == o->cap) {
			size_t cap = o->cap ? o->cap * 2 : 16;
			struct part *np = realloc(o->p, cap * sizeof(*np));
			if (!np)
				return -1;
			o->p = np;
			o->cap = cap;
		}
		memset(&o->p[o->np], 0, sizeof(o->p[0]));
		o->np++;
	}
	pt = &o->p[slot];
	if (!(pt->topic = strdup(topic)))
		return -1;
	pt->partition = partition;
	pt->last_added = -1;
	pt->reported = -1;
	if (o->next_gen == 0)
		o->next_gen = 1;
	pt->gen = o->next_gen++;
	*ref = (struct offsets_ref){ (uint32_t)slot, pt->gen };
	o->last_hit = slot;
	return 0;
}

int offsets_find(struct offsets *o, const char *topic, int32_t partition,
		 struct offsets_ref *ref)
{
	struct part *pt = lookup(o, topic, partition);
	if (!pt)
		return -1;
	*ref = (struct offsets_ref){ (uint32_t)(pt - o->p), pt->gen };
	return 0;
}

static int grow(struct part *pt)
{
	size_t cap = pt->cap ? pt->cap * 2 : 64;
	struct entry *e = malloc(cap * sizeof(*e));
	if (!e)
		return -1;
	for (size_t i = 0; i < pt->n; i++)
		e[i] = pt->e[(pt->head + i) % pt->cap];
	free(pt->e);
	pt->e = e;
	pt->cap = cap;
	pt->head = 0;
	return 0;
}

int offsets_add(struct offsets *o, struct offsets_ref ref, int64_t offset, int64_t now_ms)
{
	struct part *pt = by_ref(o, ref);
	if (!pt || offset < 0 || offset <= pt->last_added)
		return -1;
	if (pt->n == pt->cap && grow(pt) < 0)
		return -1;
	pt->e[(pt->head + pt->n) % pt->cap] = (struct entry){ offset, now_ms, 1 };
	pt->n++;
	/* The group's position before this assignment's first record is where
	 * it already stood: reporting it again would commit nothing new. */
	if (pt->last_added < 0 && pt->reported < 0)
		pt->reported = offset;
	pt->last_added = offset;
	o->in_flight++;
	return 0;
}

int offsets_owe(struct offsets *o, struct offsets_ref ref, int64_t offset, unsigned n)
{
	struct part *pt = by_ref(o, ref);
	struct entry *e = pt ? find_entry(pt, offset) : NULL;
	if (!e || e->owed == 0)
		return -1;
	e->owed += n;
	return 0;
}

int offsets_complete(struct offsets *o, struct offsets_ref ref, int64_t offset)
{
	struct part *pt = by_ref(o, ref);
	struct entry *e = pt ? find_entry(pt, offset) : NULL;
	if (!e || e->owed == 0)
		return -1;
	if (--e->owed > 0)
		return 0;
	pop_complete(o, pt);
	return 1;
}

size_t offsets_expire(struct offsets *o, int64_t now_ms, int64_t timeout_ms,
		      offsets_fn fn, void *ud)
{
	int64_t cutoff = now_ms - timeout_ms;
	size_t count = 0;

	for (size_t i = 0; i < o->np; i++) {
		struct part *pt = &o->p[i];
		if (!pt->gen)
			continue;
		/* Records were added in time order, so the oldest sit at the head. */
		while (pt->n > 0) {
			struct entry *e = &pt->e[pt->head];
			if (e->owed > 0) {
				if (e->added_ms > cutoff)
					break;
				e->owed = 0;
				count++;
				if (fn)
					fn(ud, pt->topic, pt->partition, e->offset);
			}
			pop_complete(o, pt);
		}
	}
	return count;
}

size_t offsets_commit_due(struct offsets *o, offsets_fn fn, void *ud)
{
	size_t count = 0;

	for (size_t i = 0; i < o->np; i++) {
		struct part *pt = &o->p[i];
		int64_t pos = pt->gen ? position(pt) : -1;
		if (pos >= 0 && pos != pt->reported) {
			pt->reported = pos;
			fn(ud, pt->topic, pt->partition, pos);
			count++;
		}
	}
	return count;
}

void offsets_commit_failed(struct offsets *o, const char *topic, int32_t partition)
{
	struct part *pt = lookup(o, topic, partition);
	if (pt)
		pt->reported = -1;
}

int offsets_revoke(struct offsets *o, const char *topic, int32_t partition, int64_t *position_out)
{
	struct part *pt = lookup(o, topic, partition);
	if (!pt)
		return -1;
	int64_t pos = position(pt);
	bool moved = pos >= 0 && pos != pt->reported;
	if (moved)
		*position_out = pos;
	part_drop(o, pt);
	return moved ? 1 : 0;
}

size_t offsets_in_flight(const struct offsets *o)
{
	return o->in_flight;
}
