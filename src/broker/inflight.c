/* inflight.c - see inflight.h. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "broker/inflight.h"
#include "core/msg.h"

void inflight_init(struct inflight *f)
{
	memset(f, 0, sizeof(*f));
	f->next_pid = 1;
}

static void settle(struct msg *m, bool *owes)
{
	if (*owes) {
		*owes = false;
		msg_track_done(m);
	}
}

void inflight_release(struct inflight *f)
{
	for (uint16_t i = 0; i < f->n; i++) {
		settle(f->e[i].m, &f->e[i].owes);
		msg_unref(f->e[i].m);
	}
	free(f->e);
	inflight_init(f);
}

/* Settling for "queued" (the session went offline). A kept track (msg.h)
 * stands for the client's acknowledgement of a copy Kafka holds: it stays
 * owed. */
static void settle_offline(struct msg *m, bool *owes)
{
	if (!(m->track && m->track->kept))
		settle(m, owes);
}

void inflight_settle(struct inflight *f)
{
	for (uint16_t i = 0; i < f->n; i++)
		settle_offline(f->e[i].m, &f->e[i].owes);
}

struct inflight_entry *inflight_find(struct inflight *f, uint16_t pid)
{
	for (uint16_t i = 0; i < f->n; i++)
		if (f->e[i].pid == pid)
			return &f->e[i];
	return NULL;
}

uint16_t inflight_next_pid(struct inflight *f)
{
	if (f->n == UINT16_MAX)
		return 0;
	for (;;) {
		uint16_t pid = f->next_pid;
		f->next_pid = pid == UINT16_MAX ? 1 : pid + 1;
		if (!inflight_find(f, pid))
			return pid;
	}
}

struct inflight_entry *inflight_add(struct inflight *f, struct msg *m, uint16_t pid,
				    uint8_t qos, bool retain, bool owes)
{
	if (f->n == f->cap) {
		uint32_t cap = f->cap ? (uint32_t)f->cap * 2 : 4;
		if (cap > UINT16_MAX)
			cap = UINT16_MAX;
		if (cap == f->cap)
			return NULL;
		struct inflight_entry *e = realloc(f->e, cap * sizeof(*e));
		if (!e)
			return NULL;
		f->e = e;
		f->cap = (uint16_t)cap;
	}
	struct inflight_entry *e = &f->e[f->n++];
	e->m = m;
	e->pid = pid;
	e->qos = qos;
	e->retain = retain;
	e->owes = owes;
	e->held = false;
	e->subid = 0;
	e->state = qos == 1 ? INFL_WAIT_PUBACK : INFL_WAIT_PUBREC;
	return e;
}

void inflight_remove(struct inflight *f, struct inflight_entry *e)
{
	size_t i = (size_t)(e - f->e);
	settle(e->m, &e->owes);
	msg_unref(e->m);
	if (e->held)
		f->held--;
	memmove(&f->e[i], &f->e[i + 1], (f->n - i - 1) * sizeof(*e));
	f->n--;
}

/* Entries and their bytes in every mqueue of the process; relaxed: gauges
 * and soft caps, not locks. */
static atomic_int_fast64_t mqueue_count;
static atomic_int_fast64_t mqueue_bytes;

int64_t mqueue_total(void)
{
	return atomic_load_explicit(&mqueue_count, memory_order_relaxed);
}

int64_t mqueue_total_bytes(void)
{
	return atomic_load_explicit(&mqueue_bytes, memory_order_relaxed);
}

size_t mqueue_msg_bytes(const struct msg *m)
{
	return (size_t)m->topic_len + m->payload_len;
}

void mqueue_init(struct mqueue *q) { memset(q, 0, sizeof(*q)); }

void mqueue_release(struct mqueue *q)
{
	struct mqueue_entry e;
	while (mqueue_pop(q, &e)) {
		settle(e.m, &e.owes);
		msg_unref(e.m);
	}
	free(q->e);
	mqueue_init(q);
}

void mqueue_settle(struct mqueue *q)
{
	for (uint32_t i = 0; i < q->n; i++) {
		struct mqueue_entry *e = &q->e[(q->head + i) % q->cap];
		settle_offline(e->m, &e->owes);
	}
}

int mqueue_push(struct mqueue *q, struct msg *m, uint8_t qos, bool retain, bool owes,
		uint32_t max)
{
	struct mqueue_caps caps = { max, SIZE_MAX, INT64_MAX, INT64_MAX };
	return mqueue_push_capped(q, m, qos, retain, owes, &caps) < 0 ? -1 : 0;
}

int mqueue_push_capped(struct mqueue *q, struct msg *m, uint8_t qos, bool retain, bool owes,
		       const struct mqueue_caps *caps)
{
	uint32_t max = caps->max;
	size_t b = mqueue_msg_bytes(m);

	if (q->n >= max)
		return MQUEUE_FULL;
	if (b > caps->max_bytes || q->bytes > caps->max_bytes - b)
		return MQUEUE_FULL_BYTES;
	if (mqueue_total() >= caps->max_total)
		return MQUEUE_FULL_TOTAL;
	if ((int64_t)b > caps->max_total_bytes - mqueue_total_bytes())
		return MQUEUE_FULL_TOTAL_BYTES;
	if (q->n == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 8;
		if (cap > max)
			cap = max;
		struct mqueue_entry *e = malloc(cap * sizeof(*e));
		if (!e)
			return MQUEUE_NOMEM;
		/* unwrap the ring into the new array */
		for (uint32_t i = 0; i < q->n; i++)
			e[i] = q->e[(q->head + i) % q->cap];
		free(q->e);
		q->e = e;
		q->cap = cap;
		q->head = 0;
	}
	q->e[(q->head + q->n) % q->cap] = (struct mqueue_entry){ m, qos, retain, owes, 0 };
	q->n++;
	q->bytes += b;
	atomic_fetch_add_explicit(&mqueue_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mqueue_bytes, (int64_t)b, memory_order_relaxed);
	return 0;
}

struct mqueue_entry *mqueue_back(struct mqueue *q)
{
	return q->n ? &q->e[(q->head + q->n - 1) % q->cap] : NULL;
}

bool mqueue_pop(struct mqueue *q, struct mqueue_entry *out)
{
	if (q->n == 0)
		return false;
	*out = q->e[q->head];
	size_t b = mqueue_msg_bytes(out->m);
	q->head = (q->head + 1) % q->cap;
	q->n--;
	q->bytes -= b;
	if (q->n == 0)
		q->head = 0;
	atomic_fetch_sub_explicit(&mqueue_count, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&mqueue_bytes, (int64_t)b, memory_order_relaxed);
	return true;
}

void pidset_init(struct pidset *s) { memset(s, 0, sizeof(*s)); }

void pidset_release(struct pidset *s)
{
	free(s->ids);
	pidset_init(s);
}

bool pidset_has(const struct pidset *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->ids[i] == pid)
			return true;
	return false;
}

int pidset_add(struct pidset *s, uint16_t pid)
{
	if (pidset_has(s, pid))
		return 0;
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 4;
		uint16_t *ids = realloc(s->ids, cap * sizeof(*ids));
		if (!ids)
			return -1;
		s->ids = ids;
		s->cap = cap;
	}
	s->ids[s->n++] = pid;
	return 0;
}

bool pidset_del(struct pidset *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->ids[i] == pid) {
			s->ids[i] = s->ids[--s->n];
			if (s->n == 0) {
				free(s->ids);
				pidset_init(s);
			}
			return true;
		}
	}
	return false;
}
