/* session.c - see session.h. */
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/msg.h"
#include "broker/session.h"

/* Session serials: one atomic step per session created, none per message. */
static atomic_uint_fast64_t next_serial;

struct session *session_new(const char *id, uint16_t id_len, bool clean)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = malloc((size_t)id_len + 1);
	if (!s->id) {
		free(s);
		return NULL;
	}
	memcpy(s->id, id, id_len);
	s->id[id_len] = '\0';
	s->id_len = id_len;
	s->clean = clean;
	s->serial = atomic_fetch_add_explicit(&next_serial, 1, memory_order_relaxed) + 1;
	atomic_init(&s->refs, 1);
	atomic_init(&s->owner, -1);
	s->last_owner = -1;
	atomic_init(&s->discarded, false);
	pthread_spin_init(&s->mu, PTHREAD_PROCESS_PRIVATE);
	session_subs_init(&s->subs);
	atomic_init(&s->limits_logged, 0);
	inflight_init(&s->out);
	mqueue_init(&s->queue);
	pidset_init(&s->qos2_in);
	return s;
}

struct session *session_ref(struct session *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void session_unref(struct session *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	session_subs_release(&s->subs);
	inflight_release(&s->out);
	mqueue_release(&s->queue);
	pidset_release(&s->qos2_in);
	msg_unref(s->will);
	pthread_spin_destroy(&s->mu);
	free(s->id);
	free(s);
}

static size_t hash_id(const char *id, uint16_t len)
{
	/* Seeded: client ids are chosen by the clients. */
	return hash_bytes(hash_process_seed(), id, len);
}

int session_dir_init(struct session_dir *d)
{
	d->nb = 1024;
	atomic_init(&d->n, 0);
	d->b = calloc(d->nb, sizeof(*d->b));
	return d->b ? 0 : -1;
}

void session_dir_release(struct session_dir *d)
{
	for (size_t i = 0; i < d->nb; i++) {
		struct session *s = d->b[i];
		while (s) {
			struct session *next = s->dir_next;
			session_unref(s);
			s = next;
		}
	}
	free(d->b);
	d->b = NULL;
	d->nb = 0;
	atomic_store(&d->n, 0);
}

struct session *session_dir_find(const struct session_dir *d, const char *id, uint16_t len)
{
	for (struct session *s = d->b[hash_id(id, len) & (d->nb - 1)]; s; s = s->dir_next)
		if (s->id_len == len && memcmp(s->id, id, len) == 0)
			return s;
	return NULL;
}

static int dir_grow(struct session_dir *d)
{
	size_t nb = d->nb * 2;
	struct session **b = calloc(nb, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < d->nb; i++) {
		struct session *s = d->b[i];
		while (s) {
			struct session *next = s->dir_next;
			size_t h = hash_id(s->id, s->id_len) & (nb - 1);
			s->dir_next = b[h];
			b[h] = s;
			s = next;
		}
	}
	free(d->b);
	d->b = b;
	d->nb = nb;
	return 0;
}

int session_dir_add(struct session_dir *d, struct session *s)
{
	if (d->n >= d->nb && dir_grow(d) < 0)
		return -1;
	size_t h = hash_id(s->id, s->id_len) & (d->nb - 1);
	s->dir_next = d->b[h];
	d->b[h] = session_ref(s);
	d->n++;
	return 0;
}

void session_dir_del(struct session_dir *d, struct session *s)
{
	struct session **pp = &d->b[hash_id(s->id, s->id_len) & (d->nb - 1)];
	for (; *pp; pp = &(*pp)->dir_next) {
		if (*pp == s) {
			*pp = s->dir_next;
			s->dir_next = NULL;
			d->n--;
			session_unref(s);
			return;
		}
	}
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_set(struct session_heap *h, uint32_t i, struct session *s)
{
	h->v[i] = s;
	s->heap_idx = i + 1;
}

static void heap_up(struct session_heap *h, uint32_t i)
{
	struct session *s = h->v[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (h->v[p]->due_ms <= s->due_ms)
			break;
		heap_set(h, i, h->v[p]);
		i = p;
	}
	heap_set(h, i, s);
}

static void heap_down(struct session_heap *h, uint32_t i)
{
	struct session *s = h->v[i];
	for (;;) {
		uint32_t l = 2 * i + 1, m = i;
		int64_t best = s->due_ms;
		if (l < h->n && h->v[l]->due_ms < best)
			m = l, best = h->v[l]->due_ms;
		if (l + 1 < h->n && h->v[l + 1]->due_ms < best)
			m = l + 1;
		if (m == i)
			break;
		heap_set(h, i, h->v[m]);
		i = m;
	}
	heap_set(h, i, s);
}

int session_heap_push(struct session_heap *h, struct session *s)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct session **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n] = s;
	heap_up(h, h->n++);
	return 0;
}

void session_heap_del(struct session_heap *h, struct session *s)
{
	if (!s->heap_idx)
		return;
	uint32_t i = s->heap_idx - 1;
	s->heap_idx = 0;
	if (i == --h->n)
		return;
	h->v[i] = h->v[h->n];
	heap_up(h, i);
	heap_down(h, h->v[i]->heap_idx - 1);
}

void session_heap_fix(struct session_heap *h, struct session *s)
{
	if (!s->heap_idx)
		return;
	heap_up(h, s->heap_idx - 1);
	heap_down(h, s->heap_idx - 1);
}

void session_heap_release(struct session_heap *h)
{
	for (uint32_t i = 0; i < h->n; i++)
		h->v[i]->heap_idx = 0;
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
