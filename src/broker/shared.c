/*
 * shared.c - shared subscriptions; see shared.h and docs/mqtt5/shared.md.
 *
 * Locking: the registry (its trie, its hash of groups by key and every
 * group's member array) changes only under the broker's subs_lock held for
 * writing; publishers read it under the read lock, and only the cursor is
 * written then (an atomic). A member's session state (window, queue) is
 * its owner worker's: the choice reads two counters of it with relaxed
 * atomic loads, a hint that may be a little stale (the worst outcome is a
 * message queued at a busy member while another had room). Deliveries
 * happen outside the lock, through deliver_session(), as for any
 * subscription. Lock order (broker_int.h): dir_lock, session mu, subs_lock;
 * here mu is taken alone, to take an ending session's queue
 * (stash_queue), and subs_lock is never held while delivering, so
 * deliver_session() takes mu without it.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/deliver.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/worker.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

#define PREFIX "$share/"
#define PREFIX_LEN 7

struct shared_member {
	struct session *s;       /* holds a reference */
	uint32_t data;           /* the SUBSCRIBE options as given: granted QoS in
				    bits 0-1, Retain As Published bit 3 (MQTT 5);
				    the rest kept, unread */
};

struct shared_group {
	struct shared_group *next;   /* hash chain */
	uint32_t hash;               /* of key */
	struct shared_member *m;
	uint32_t n, cap;
	atomic_uint cursor;          /* round robin; any reader advances it */
	uint16_t key_len;            /* "$share/NAME/FILTER" */
	uint16_t filter_off;         /* where FILTER starts in key */
	char key[];                  /* key_len bytes and a NUL */
};

struct orphan;
static void orphans_free(struct shared_reg *r);
static void drain_orphans(struct worker *w);

struct shared_reg {
	struct sub_trie *trie;       /* FILTER -> group */
	struct shared_group **b;     /* groups by key */
	size_t nb, n;
	atomic_uint n_groups;        /* read without the lock: skip the match when 0 */
	/* Messages left in the queues of sessions that ended, for their
	 * groups (shared_session_end), delivered by the next publish. */
	struct orphan *orphans, **orphans_tail;
	atomic_uint n_orphans;       /* read without the lock: skip when 0 */
};

bool shared_is(const char *filter, size_t len)
{
	return len >= PREFIX_LEN && memcmp(filter, PREFIX, PREFIX_LEN) == 0;
}

int shared_parse(const char *filter, size_t len, const char **name, size_t *name_len,
		 const char **f, size_t *flen)
{
	if (!shared_is(filter, len))
		return -1;
	const char *nm = filter + PREFIX_LEN, *end = filter + len;
	const char *slash = memchr(nm, '/', (size_t)(end - nm));
	/* [MQTT-4.8.2-1] a name of at least one character; [MQTT-4.8.2-2] no
	 * '+' or '#' in it, then '/' and a filter. */
	if (!slash || slash == nm || slash + 1 == end)
		return -1;
	for (const char *q = nm; q < slash; q++)
		if (*q == '+' || *q == '#')
			return -1;
	if (name)
		*name = nm;
	if (name_len)
		*name_len = (size_t)(slash - nm);
	if (f)
		*f = slash + 1;
	if (flen)
		*flen = (size_t)(end - slash - 1);
	return 0;
}

bool shared_invalid(const char *filter, size_t len)
{
	return shared_is(filter, len) && shared_parse(filter, len, NULL, NULL, NULL, NULL) < 0;
}

bool shared_may_subscribe(struct client *c, const char *filter, size_t len)
{
	const char *f;
	size_t flen;

	if (shared_parse(filter, len, NULL, NULL, &f, &flen) == 0)
		return auth_may_subscribe(c, f, (uint16_t)flen);
	return auth_may_subscribe(c, filter, (uint16_t)len);
}

/* ---- the choice ----------------------------------------------------------- */

/* One scan for both callers: the state of member i comes from st(). Stops
 * at the first READY. */
static int select_scan(uint32_t n, uint32_t start, enum shared_state (*st)(const void *, uint32_t),
		       const void *ud)
{
	int busy = -1, offline = -1;

	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (start + k) % n;
		switch (st(ud, i)) {
		case SHARED_READY:
			return (int)i;
		case SHARED_BUSY:
			if (busy < 0)
				busy = (int)i;
			break;
		case SHARED_OFFLINE:
			if (offline < 0)
				offline = (int)i;
			break;
		default:
			break;
		}
	}
	return busy >= 0 ? busy : offline;
}

static enum shared_state array_state(const void *ud, uint32_t i)
{
	return (enum shared_state)((const uint8_t *)ud)[i];
}

int shared_select(const uint8_t *state, uint32_t n, uint32_t start)
{
	return n ? select_scan(n, start, array_state, state) : -1;
}

struct member_scan {
	const struct shared_group *g;
	const struct session *exclude;
	unsigned max_inflight;
};

static enum shared_state member_state(const void *ud, uint32_t i)
{
	const struct member_scan *ms = ud;
	const struct session *s = ms->g->m[i].s;

	if (s == ms->exclude || atomic_load_explicit(&s->discarded, memory_order_relaxed))
		return SHARED_SKIP;
	/* Offline: its session queues QoS 1/2 (a clean one is discarded as it
	 * parks, and discarded is checked first). */
	if (atomic_load_explicit(&s->owner, memory_order_relaxed) < 0)
		return SHARED_OFFLINE;
	/* The owner writes these plainly; a relaxed read is a hint (see top). */
	if (__atomic_load_n(&s->queue.n, __ATOMIC_RELAXED) > 0 ||
	    __atomic_load_n(&s->out.n, __ATOMIC_RELAXED) >= ms->max_inflight)
		return SHARED_BUSY;
	return SHARED_READY;
}

/* QoS and RETAIN for a member with these options: min(published, granted)
 * [MQTT-4.8.2-3]; RETAIN only with Retain As Published (live messages
 * only: no retained message is sent at SUBSCRIBE [MQTT-4.8.2]). */
static uint8_t member_qos(uint32_t data, const struct msg *m)
{
	return m->qos < SUBOPT_QOS(data) ? m->qos : SUBOPT_QOS(data);
}

static bool member_retain(uint32_t data, const struct msg *m)
{
	return (data & SUBOPT_RAP) && m->retain;
}

/* Under subs_lock (read or write). Returns a new reference to the chosen
 * member's session and its options in *data, or NULL. */
static struct session *pick(struct shared_group *g, const struct session *exclude,
			    unsigned max_inflight, uint32_t *data)
{
	if (g->n == 0)
		return NULL;
	uint32_t start = atomic_fetch_add_explicit(&g->cursor, 1, memory_order_relaxed);
	struct member_scan ms = { g, exclude, max_inflight };
	int i = select_scan(g->n, start % g->n, member_state, &ms);
	if (i < 0)
		return NULL;
	*data = g->m[i].data;
	return session_ref(g->m[i].s);
}

/* ---- the registry --------------------------------------------------------- */

struct shared_reg *shared_new(void)
{
	struct shared_reg *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->nb = 64;
	r->b = calloc(r->nb, sizeof(*r->b));
	r->trie = sub_trie_new();
	atomic_init(&r->n_groups, 0);
	r->orphans_tail = &r->orphans;
	atomic_init(&r->n_orphans, 0);
	if (!r->b || !r->trie) {
		shared_free(r);
		return NULL;
	}
	return r;
}

static void group_free(struct shared_group *g)
{
	for (uint32_t i = 0; i < g->n; i++)
		session_unref(g->m[i].s);
	free(g->m);
	free(g);
}

void shared_free(struct shared_reg *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->b && i < r->nb; i++)
		for (struct shared_group *g = r->b[i], *next; g; g = next) {
			next = g->next;
			group_free(g);
		}
	orphans_free(r);
	free(r->b);
	sub_trie_free(r->trie);
	free(r);
}

/* Seeded: share names and filters are the clients'. */
static uint32_t key_hash(const char *key, size_t len)
{
	return hash_bytes(hash_process_seed(), key, len);
}

static struct shared_group *group_find(const struct shared_reg *r, const char *key, size_t len,
				       uint32_t h)
{
	for (struct shared_group *g = r->b[h & (r->nb - 1)]; g; g = g->next)
		if (g->hash == h && g->key_len == len && memcmp(g->key, key, len) == 0)
			return g;
	return NULL;
}

/* Doubles the bucket array at load 1; out of memory keeps longer chains. */
static void reg_grow(struct shared_reg *r)
{
	size_t nb = r->nb * 2;
	struct shared_group **b = calloc(nb, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < r->nb; i++)
		for (struct shared_group *g = r->b[i], *next; g; g = next) {
			next = g->next;
			g->next = b[g->hash & (nb - 1)];
			b[g->hash & (nb - 1)] = g;
		}
	free(r->b);
	r->b = b;
	r->nb = nb;
}

/* Write lock held. A new group, in the trie and the hash, or NULL. */
static struct shared_group *group_add(struct shared_reg *r, const char *key, uint16_t len,
				      uint32_t h, size_t filter_off)
{
	struct shared_group *g = calloc(1, sizeof(*g) + (size_t)len + 1);
	if (!g)
		return NULL;
	memcpy(g->key, key, len);
	g->key_len = len;
	g->filter_off = (uint16_t)filter_off;
	g->hash = h;
	atomic_init(&g->cursor, 0);
	if (sub_trie_add(r->trie, g->key + filter_off, len - filter_off, g, 0) < 0) {
		free(g);
		return NULL;
	}
	if (r->n >= r->nb)
		reg_grow(r);
	g->next = r->b[h & (r->nb - 1)];
	r->b[h & (r->nb - 1)] = g;
	r->n++;
	atomic_fetch_add_explicit(&r->n_groups, 1, memory_order_relaxed);
	return g;
}

/* Write lock held. Takes an empty group out of the trie and the hash. */
static void group_del(struct shared_reg *r, struct shared_group *g)
{
	sub_trie_remove(r->trie, g->key + g->filter_off, g->key_len - g->filter_off, g);
	for (struct shared_group **pp = &r->b[g->hash & (r->nb - 1)]; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	r->n--;
	atomic_fetch_sub_explicit(&r->n_groups, 1, memory_order_relaxed);
	group_free(g);
}

/* Write lock held. Makes room for one more member: 0 or -1 (ENOMEM). */
static int member_room(struct shared_group *g)
{
	if (g->n < g->cap)
		return 0;
	if (g->cap >= UINT32_MAX / 2)
		return -1;
	uint32_t cap = g->cap ? g->cap * 2 : 4;
	struct shared_member *m = realloc(g->m, cap * sizeof(*m));
	if (!m)
		return -1;
	g->m = m;
	g->cap = cap;
	return 0;
}

static int member_find(const struct shared_group *g, const struct session *s)
{
	for (uint32_t i = 0; i < g->n; i++)
		if (g->m[i].s == s)
			return (int)i;
	return -1;
}

/* Write lock held. Removes s from the group of key (and the group when it
 * empties). Returns true when s was a member: the caller drops the
 * membership's session reference after unlocking. */
static bool member_del(struct shared_reg *r, const char *key, size_t len, struct session *s)
{
	struct shared_group *g = group_find(r, key, len, key_hash(key, len));
	int i = g ? member_find(g, s) : -1;

	if (i < 0)
		return false;
	/* Order among members does not matter: the last fills the hole. */
	g->m[i] = g->m[--g->n];
	if (g->n == 0)
		group_del(r, g);
	return true;
}

int shared_subscribe(struct broker *br, struct session *s, const char *filter, uint16_t len,
		     uint32_t data)
{
	struct shared_reg *r = br->shared;
	const char *f;
	size_t flen;
	bool added = false;
	int rc = -1;

	if (shared_parse(filter, len, NULL, NULL, &f, &flen) < 0)
		return -1;
	uint32_t h = key_hash(filter, len);
	pthread_rwlock_wrlock(&br->subs_lock);
	struct shared_group *g = group_find(r, filter, len, h);
	if (!g)
		g = group_add(r, filter, len, h, (size_t)(f - filter));
	if (g) {
		int i = member_find(g, s);
		if (i >= 0) {
			g->m[i].data = data; /* a repeated SUBSCRIBE replaces the options */
			rc = 0;
		} else if (member_room(g) == 0) {
			g->m[g->n++] = (struct shared_member){ session_ref(s), data };
			added = true;
			rc = 0;
		} else if (g->n == 0) {
			group_del(r, g);
		}
	}
	pthread_rwlock_unlock(&br->subs_lock);
	if (rc < 0)
		return -1;
	if (session_subs_add(&s->subs, filter, len, data) < 0) {
		if (added) {
			pthread_rwlock_wrlock(&br->subs_lock);
			bool was = member_del(r, filter, len, s);
			pthread_rwlock_unlock(&br->subs_lock);
			if (was)
				session_unref(s);
		}
		return -1;
	}
	return added ? 1 : 0;
}

bool shared_unsubscribe(struct broker *br, struct session *s, const char *filter, uint16_t len)
{
	/* The session's set mirrors its memberships: no lock for a filter it
	 * does not hold. */
	if (!session_subs_del(&s->subs, filter, len))
		return false;
	pthread_rwlock_wrlock(&br->subs_lock);
	bool was = member_del(br->shared, filter, len, s);
	pthread_rwlock_unlock(&br->subs_lock);
	if (was)
		session_unref(s); /* never the last: the caller holds one */
	return true;
}

size_t shared_orphans(const struct shared_reg *r)
{
	return r ? atomic_load_explicit(&r->n_orphans, memory_order_relaxed) : 0;
}

/* ---- publishing ----------------------------------------------------------- */

struct pick_one {
	struct session *s;
	uint32_t data;           /* the member's options */
};

#define PICKS_INLINE 16

struct pick_ctx {
	struct pick_one *p;      /* inline[] until more are needed */
	size_t n, cap;
	bool oom;                /* a match was lost for want of memory */
	unsigned max_inflight;
	struct pick_one inline_p[PICKS_INLINE];
};

static void pick_cb(void *owner, uint32_t data, void *ud)
{
	struct pick_ctx *x = ud;
	uint32_t opts = 0;
	(void)data;

	if (x->n == x->cap) {
		/* More groups than PICKS_INLINE match one topic: rare, so the
		 * heap is fine here. */
		size_t cap = x->cap * 2;
		struct pick_one *p = x->p == x->inline_p ? malloc(cap * sizeof(*p))
							 : realloc(x->p, cap * sizeof(*p));
		if (!p) {
			x->oom = true;
			return;
		}
		if (x->p == x->inline_p)
			memcpy(p, x->inline_p, sizeof(x->inline_p));
		x->p = p;
		x->cap = cap;
	}
	struct session *s = pick(owner, NULL, x->max_inflight, &opts);
	if (s)
		x->p[x->n++] = (struct pick_one){ s, opts };
}

size_t shared_publish(struct worker *w, struct msg *m)
{
	struct broker *br = w->br;
	struct shared_reg *r = br->shared;

	if (!r)
		return 0;
	/* What ended sessions left goes first: it is older. */
	if (atomic_load_explicit(&r->n_orphans, memory_order_relaxed) > 0)
		drain_orphans(w);
	if (atomic_load_explicit(&r->n_groups, memory_order_relaxed) == 0)
		return 0;
	struct pick_ctx x = { .cap = PICKS_INLINE, .max_inflight = LIM(br, max_inflight) };
	x.p = x.inline_p;
	pthread_rwlock_rdlock(&br->subs_lock);
	sub_trie_match(r->trie, m->topic, m->topic_len, pick_cb, &x);
	pthread_rwlock_unlock(&br->subs_lock);
	if (x.oom)
		log_warn_rl("shared subscription skipped topic=%s reason=\"out of memory\"",
			    log_q(m->topic));
	if (x.n == 0)
		return 0;
	/* The caller still holds the message (and any track's hold): adding
	 * before the first delivery cannot race the track's end. */
	if (m->track)
		atomic_fetch_add(&m->track->remaining, (int)x.n);
	for (size_t i = 0; i < x.n; i++) {
		deliver_session(w, x.p[i].s, m, member_qos(x.p[i].data, m),
				    member_retain(x.p[i].data, m), SUBOPT_ID(x.p[i].data));
		session_unref(x.p[i].s);
	}
	if (x.p != x.inline_p)
		free(x.p);
	return x.n;
}

/* Groups of one topic that have the session as a member (under subs_lock). */
struct to_ctx {
	const struct session *s;
	uint32_t n;
	uint32_t data[PICKS_INLINE];  /* the member's options in each */
};

static void to_cb(void *owner, uint32_t data, void *ud)
{
	struct to_ctx *x = ud;
	struct shared_group *g = owner;
	(void)data;

	int i = member_find(g, x->s);
	/* More than PICKS_INLINE groups of one session matching one topic:
	 * the rest are not delivered (one copy per group is what is owed;
	 * this many overlapping groups is not a real setup). */
	if (i >= 0 && x->n < PICKS_INLINE)
		x->data[x->n++] = g->m[i].data;
}

size_t shared_publish_to(struct worker *w, struct msg *m, const struct session *s)
{
	struct broker *br = w->br;
	struct shared_reg *r = br->shared;

	if (!r || atomic_load_explicit(&r->n_groups, memory_order_relaxed) == 0)
		return 0;
	struct to_ctx x = { .s = s };
	pthread_rwlock_rdlock(&br->subs_lock);
	sub_trie_match(r->trie, m->topic, m->topic_len, to_cb, &x);
	pthread_rwlock_unlock(&br->subs_lock);
	if (x.n == 0)
		return 0;
	if (m->track)
		atomic_fetch_add(&m->track->remaining, (int)x.n);
	for (uint32_t i = 0; i < x.n; i++)
		deliver_session(w, (struct session *)s, m, member_qos(x.data[i], m),
				member_retain(x.data[i], m), SUBOPT_ID(x.data[i]));
	return x.n;
}

/* ---- a member leaving ----------------------------------------------------- */

/* A membership of the session leaving: a filter of its set. */
struct ship {
	const char *key;          /* "$share/NAME/FILTER", in s->subs (stable meanwhile) */
	uint16_t key_len;
	const char *f;            /* FILTER */
	uint16_t flen;
};

struct moved {
	struct msg *m;            /* one reference */
	uint8_t qos;
	bool owes;                /* a msg_track_done() is due */
	uint32_t k;               /* index into the ships */
};

/* Pointers seen once, for messages that both a shared and a non-shared
 * filter of the session match: open addressing, sized for every entry. */
struct seen {
	const void **slot;
	uint32_t mask;
};

static bool seen_add(struct seen *t, const void *p)
{
	uint32_t i = (uint32_t)(((uintptr_t)p >> 4) * 2654435761u) & t->mask;
	for (; t->slot[i]; i = (i + 1) & t->mask)
		if (t->slot[i] == p)
			return false;
	t->slot[i] = p;
	return true;
}

struct leave_ctx {
	struct ship *ship;
	uint32_t n_ship;
	const struct sub_entry **own; /* the session's non-shared filters */
	uint32_t n_own;
	struct seen seen;
	uint32_t entries;             /* in the window and queue: sizes seen */
	bool oom;
};

static void leave_release(struct leave_ctx *x)
{
	free(x->seen.slot);
	free(x->own);
	free(x->ship);
}

/* The memberships of s whose group has another member (only those hand
 * messages on), and s's other filters. Returns 0, or -1 (ENOMEM). Takes
 * subs_lock for reading. */
static int leave_collect(struct broker *br, struct session *s, struct leave_ctx *x)
{
	uint32_t pos = 0;

	x->ship = malloc(s->subs.n * sizeof(*x->ship));
	x->own = malloc(s->subs.n * sizeof(*x->own));
	if (!x->ship || !x->own)
		return -1;
	pthread_rwlock_rdlock(&br->subs_lock);
	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));) {
		const char *f;
		size_t flen;
		if (shared_parse(e->filter, e->len, NULL, NULL, &f, &flen) == 0) {
			struct shared_group *g = group_find(br->shared, e->filter, e->len,
							    key_hash(e->filter, e->len));
			if (g && g->n > 1)
				x->ship[x->n_ship++] = (struct ship){ e->filter, e->len, f,
								      (uint16_t)flen };
		} else if (!shared_is(e->filter, e->len)) {
			x->own[x->n_own++] = e;
		}
	}
	pthread_rwlock_unlock(&br->subs_lock);
	return 0;
}

/*
 * Which of the session's shared subscriptions a copy of m in its window or
 * queue came through, or -1 when it came through a non-shared one. Nothing
 * in an entry says so, but deliver_publish() gives a session one copy for
 * all its non-shared filters, and shared_publish() runs after it: when a
 * non-shared filter matches too, the first copy of m is that one and any
 * later copy a shared one.
 */
static int64_t attribute(struct leave_ctx *x, const struct msg *m)
{
	int64_t k = -1;

	for (uint32_t i = 0; i < x->n_ship && k < 0; i++)
		if (topic_matches(x->ship[i].f, x->ship[i].flen, m->topic, m->topic_len))
			k = i;
	if (k < 0)
		return -1;
	bool own = false;
	for (uint32_t i = 0; i < x->n_own && !own; i++)
		own = topic_matches(x->own[i]->filter, x->own[i]->len, m->topic, m->topic_len);
	if (!own)
		return k;
	if (!x->seen.slot) {
		uint32_t cap = 16;
		while (cap < 2 * x->entries + 2)
			cap *= 2;
		x->seen.slot = calloc(cap, sizeof(*x->seen.slot));
		x->seen.mask = cap - 1;
		if (!x->seen.slot) {
			x->oom = true;
			return -1; /* keep it where it is */
		}
	}
	return seen_add(&x->seen, m) ? -1 : k;
}

/* Hands one message to another member (not `exclude`) of the group of
 * key; dropped (counted) when there is none. Takes mv->m's reference. */
static void move_one(struct worker *w, const struct session *exclude, const char *key,
		     uint16_t key_len, struct moved *mv)
{
	struct broker *br = w->br;
	uint32_t opts = 0;
	struct session *to = NULL;

	pthread_rwlock_rdlock(&br->subs_lock);
	struct shared_group *g = group_find(br->shared, key, key_len, key_hash(key, key_len));
	if (g)
		to = pick(g, exclude, LIM(br, max_inflight), &opts);
	pthread_rwlock_unlock(&br->subs_lock);

	struct msg *m = mv->m;
	if (to && m->track && !mv->owes) {
		/* Its delivery was accounted for already: the new one must not
		 * count against the track again. */
		m = msg_clone(mv->m, mv->m->qos, mv->m->retain);
		msg_unref(mv->m);
	}
	if (!to || !m) {
		if (m && mv->owes)
			msg_track_done(m);
		msg_unref(m);
		session_unref(to);
		STAT_INC(w, queue_dropped);
		return;
	}
	/* An owed completion passes to the new delivery, which settles it. */
	deliver_session(w, to, m, member_qos(opts, m), member_retain(opts, m),
			    SUBOPT_ID(opts));
	session_unref(to);
	msg_unref(m);
}

void shared_park(struct worker *w, struct session *s)
{
	struct broker *br = w->br;
	struct shared_reg *r = br->shared;
	struct leave_ctx x = { 0 };
	struct moved *mv = NULL;
	uint32_t n_mv = 0;

	if (!r || atomic_load_explicit(&r->n_groups, memory_order_relaxed) == 0 || s->subs.n == 0 ||
	    (s->out.n == 0 && s->queue.n == 0))
		return;
	if (leave_collect(br, s, &x) < 0)
		goto out;
	if (x.n_ship == 0)
		goto out;
	x.entries = (uint32_t)s->out.n + s->queue.n;
	mv = malloc(x.entries * sizeof(*mv));
	if (!mv)
		goto out;

	/* QoS 1 sent and not acknowledged: another member may have it
	 * (MQTT 4.8.2 allows this as soon as the connection is lost). A QoS 2
	 * message already sent stays: it must be completed with this client
	 * [MQTT-4.8.2-4] and never go to another [MQTT-4.8.2-5]. */
	for (uint16_t i = 0; i < s->out.n;) {
		struct inflight_entry *e = &s->out.e[i];
		int64_t k;
		if (e->qos == 1 && e->state == INFL_WAIT_PUBACK && (k = attribute(&x, e->m)) >= 0) {
			mv[n_mv++] = (struct moved){ msg_ref(e->m), 1, e->owes, (uint32_t)k };
			e->owes = false; /* passes to the moved copy */
			inflight_remove(&s->out, e);
			continue;
		}
		i++;
	}
	/* Queued, never sent: QoS 1 and 2 alike. The rest goes back in order. */
	for (uint32_t i = 0, n = s->queue.n; i < n; i++) {
		struct mqueue_entry e;
		int64_t k;
		if (!mqueue_pop(&s->queue, &e))
			break;
		if (e.qos > 0 && (k = attribute(&x, e.m)) >= 0) {
			mv[n_mv++] = (struct moved){ e.m, e.qos, e.owes, (uint32_t)k };
		} else if (mqueue_push(&s->queue, e.m, e.qos, e.retain, e.owes, UINT32_MAX) < 0) {
			/* Cannot happen (a pop made room); never leak a track. */
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
		} else {
			mqueue_back(&s->queue)->subid = e.subid;
		}
	}
	for (uint32_t i = 0; i < n_mv; i++)
		move_one(w, s, x.ship[mv[i].k].key, x.ship[mv[i].k].key_len, &mv[i]);
	if (n_mv)
		log_debug("shared subscription messages moved client=%s count=%u", log_q(s->id),
			  n_mv);
out:
	if (!x.ship || !x.own || (x.n_ship && !mv) || x.oom)
		log_warn_rl("shared subscription messages kept client=%s reason=\"out of memory\"",
			    log_q(s->id));
	free(mv);
	leave_release(&x);
}

/* ---- a session ending: its queue waits in the registry -------------------- */

/* A message from the queue of a session that ended, for its group. */
struct orphan {
	struct orphan *next;
	struct msg *m;            /* one reference */
	uint8_t qos;
	bool owes;
	uint16_t key_len;
	char key[];
};

static void orphan_free(struct orphan *o)
{
	if (o->owes)
		msg_track_done(o->m);
	msg_unref(o->m);
	free(o);
}

static void orphans_free(struct shared_reg *r)
{
	for (struct orphan *o = r->orphans, *next; o; o = next) {
		next = o->next;
		orphan_free(o);
	}
	r->orphans = NULL;
	r->orphans_tail = &r->orphans;
	atomic_store(&r->n_orphans, 0);
}

/*
 * Takes the shared subscriptions' messages out of the queue of s, which is
 * ending (offline, or owned by the caller), into a list for the caller to
 * hand to the registry. Worker-less (the caller may hold dir_lock), so they
 * cannot be delivered here: shared_publish() delivers them with the next
 * message any client publishes. The rest of the queue is released, as the
 * session's end would. At most `room` are kept; the others are counted.
 */
static uint32_t stash_queue(struct broker *br, struct session *s, struct orphan **list,
			    uint32_t room, uint32_t *dropped)
{
	struct leave_ctx x = { 0 };
	struct orphan **tail = list;
	struct mqueue q;
	struct mqueue_entry e;
	uint32_t n = 0;

	if (s->queue.n == 0 || leave_collect(br, s, &x) < 0 || x.n_ship == 0) {
		leave_release(&x);
		return 0;
	}
	/* Offline, other workers append under mu: take the whole queue. */
	pthread_spin_lock(&s->mu);
	q = s->queue;
	mqueue_init(&s->queue);
	pthread_spin_unlock(&s->mu);
	x.entries = q.n;
	while (mqueue_pop(&q, &e)) {
		int64_t k = e.qos > 0 ? attribute(&x, e.m) : -1;
		struct orphan *o = NULL;
		if (k >= 0 && n < room)
			o = malloc(sizeof(*o) + x.ship[k].key_len);
		if (!o) {
			*dropped += k >= 0;
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
			continue;
		}
		*o = (struct orphan){ NULL, e.m, e.qos, e.owes, x.ship[k].key_len };
		memcpy(o->key, x.ship[k].key, x.ship[k].key_len);
		*tail = o;
		tail = &o->next;
		n++;
	}
	mqueue_release(&q);
	leave_release(&x);
	return n;
}

void shared_session_end(struct broker *br, struct session *s)
{
	struct shared_reg *r = br->shared;
	struct orphan *list = NULL;
	uint32_t pos = 0, unrefs = 0, dropped = 0, n = 0;
	bool any = false;

	if (!r || atomic_load_explicit(&r->n_groups, memory_order_relaxed) == 0)
		return;
	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));)
		if (shared_is(e->filter, e->len))
			any = true;
	if (!any)
		return;
	/* Bounded like any queue: what all sessions may hold together. */
	uint32_t held = atomic_load_explicit(&r->n_orphans, memory_order_relaxed);
	uint32_t cap = LIM(br, max_queued_total_messages);
	n = stash_queue(br, s, &list, held < cap ? cap - held : 0, &dropped);
	pos = 0;
	pthread_rwlock_wrlock(&br->subs_lock);
	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));)
		if (shared_is(e->filter, e->len))
			unrefs += member_del(r, e->filter, e->len, s);
	if (list) {
		*r->orphans_tail = list;
		while (*r->orphans_tail)
			r->orphans_tail = &(*r->orphans_tail)->next;
		atomic_fetch_add_explicit(&r->n_orphans, n, memory_order_relaxed);
	}
	pthread_rwlock_unlock(&br->subs_lock);
	while (unrefs--)
		session_unref(s);
	if (dropped)
		atomic_fetch_add_explicit(&br->limit_hits[LIMIT_QUEUED_TOTAL_MESSAGES], dropped,
					  memory_order_relaxed);
}

/* Delivers what ended sessions left (shared_session_end), from worker w. */
static void drain_orphans(struct worker *w)
{
	struct broker *br = w->br;
	struct shared_reg *r = br->shared;

	pthread_rwlock_wrlock(&br->subs_lock);
	struct orphan *list = r->orphans;
	r->orphans = NULL;
	r->orphans_tail = &r->orphans;
	atomic_store_explicit(&r->n_orphans, 0, memory_order_relaxed);
	pthread_rwlock_unlock(&br->subs_lock);
	for (struct orphan *o = list, *next; o; o = next) {
		next = o->next;
		struct moved mv = { o->m, o->qos, o->owes, 0 };
		move_one(w, NULL, o->key, o->key_len, &mv);
		free(o);
	}
}
