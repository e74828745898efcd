/*
 * state_sessions.c - the sessions view of <prefix>.sessions, claims and
 * epochs, the broker's session hooks, kicks, restores and the wills of
 * sessions whose connection died with an instance (docs/scaling/sessions.md).
 *
 * Threads: the hooks run on broker workers; records, ticks and caught_up on
 * the state reader thread; delivery reports on the producer's poll thread;
 * foreach/adopt on any. One mutex (ss->lock) guards the view, the pending
 * claims and what this instance holds. Records are produced under it: a
 * produce only enqueues (never waits: a full queue is an error), and doing
 * it under the lock keeps the snapshots of one id in the order they were
 * made whichever thread made them (the last one wins after compaction).
 * Broker calls, the bus and logging happen after the lock is dropped (an
 * action list), since the broker may call a hook back.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/prom.h"
#include "mqtt/topic.h"
#include "state/state_int.h"
#include "state/state_rec.h"

/* One client id. The view part is what Kafka says (the last accepted
 * record); `mine` is set while this instance holds the session (claimed or
 * adopted here) and then mine_rec is the snapshot it writes. */
struct sess {
	struct sess *next;        /* hash chain */
	char *id;
	uint16_t id_len;
	uint32_t hash;
	int32_t partition;        /* -1 until a record was read */
	int64_t epoch;            /* current epoch, -1 = none yet */
	bool known;               /* a record was accepted */
	struct state_rec rec;     /* the last accepted record */

	bool mine;
	uint64_t conn_id;         /* our connection's claim (0: adopted) */
	int64_t my_epoch;         /* -1 until our claim's/adopt's offset is known */
	struct state_rec *mine_rec;
	bool dirty;               /* mine_rec waits for my_epoch to be written */
	int64_t will_due_ms;      /* wall: an adopted will waits for its delay; 0 none */
	int64_t busy_until;       /* monotonic: an adopt or will write in flight */
	int64_t ended_mono;       /* monotonic: when it was read ended; 0 = not ended */
	LIST_HEAD(, pend) pends;  /* this id's claims on their way (usually 0 or 1) */
	struct subs_ack *acks;    /* SUBACKs waiting for the deferred (dirty) mine_rec */
};

/* A SUBACK/UNSUBACK the broker holds until Kafka acknowledged the session
 * record carrying its change (broker.h, ops->subs_changed). Waits on its
 * sess while the snapshot is deferred, then rides the record's delivery
 * report (subs_dr) as a list. */
struct subs_ack {
	struct subs_ack *next;
	struct state_sessions *ss;
	uint64_t conn_id;
	uint32_t token;
};

/* A claim written, not yet read back. It is its record's delivery-report
 * context too: freed once both happened (resolved: read back, timed out or
 * failed, and out of the lists; reported: the delivery report came). */
struct pend {
	TAILQ_ENTRY(pend) link;   /* ss->pends: every claim waiting, oldest first */
	LIST_ENTRY(pend) slink;   /* s->pends: this id's */
	struct state_sessions *ss;
	bool resolved, reported;
	uint64_t conn_id;
	char conn[24];            /* conn_id in decimal, as in the record */
	struct sess *s;
	bool wait;                /* the broker waits for the answer */
	int64_t deadline;         /* monotonic */
	int64_t prev_epoch;       /* s->my_epoch before this claim */
};

enum act_kind { ACT_CLAIMED, ACT_KICK, ACT_RESTORE, ACT_QRESTORE, ACT_BUS, ACT_LOG };

struct act {
	enum act_kind k;
	uint64_t conn_id;
	enum broker_claim_result r;
	char *id;
	uint16_t id_len;
	bool has_img;
	struct state_rec img;     /* CLAIMED/RESTORE: the image; BUS: owner + subs */
	bool ended;               /* BUS: the session ended; QRESTORE: our own restart */
	bool drain;               /* QRESTORE: what the session was owed is read back
				     (false: only the will, for a clean claim) */
	char msg[160];            /* LOG */
};

struct acts {
	struct act *v;
	size_t n, cap;
};

struct state_sessions {
	struct state *st;
	pthread_mutex_t lock;
	struct sess **tab;
	size_t nbuckets, n;
	TAILQ_HEAD(, pend) pends; /* in deadline order (one claim timeout for all) */
	int64_t reader_at[256];   /* per partition (the first 256): where the reader is;
	                             kept for diagnostics, claims match by read-back */
	uint64_t seed;
	bool caught_up;
	bool any_due;             /* some will_due_ms is set: the tick looks */
	uint64_t live;            /* ids known and not ended */
	int64_t next_sweep;       /* monotonic: the next pruning of ended ids */
	struct state_sessions_stats stats;
};

/* An ended id is forgotten this long after its end was read: long enough
 * for any record a displaced owner still had on its way (they are ignored
 * by epoch while the id is known); then the table does not grow with every
 * client id ever seen. */
#define ENDED_KEEP_MS (10 * 60 * 1000)
#define SWEEP_EVERY_MS 10000

/* ---- small helpers ---- */

static int64_t claim_timeout(const struct state_sessions *ss)
{
	int t = ss->st->cfg ? ss->st->cfg->state.claim_timeout_ms : 0;
	return t > 0 ? t : 5000;
}

static bool lease_lost(const struct state_sessions *ss)
{
	int lease = ss->st->cfg ? ss->st->cfg->state.lease_ms : 0;
	int64_t heard = atomic_load(&ss->st->last_heard_ms);
	return lease > 0 && heard > 0 && state_now_ms() - heard > lease;
}

static bool is_me(const struct state_sessions *ss, const struct state_rec *r)
{
	return strcmp(r->owner, ss->st->instance_id) == 0 && r->boot == ss->st->started_ms;
}

static struct act *act_add(struct acts *a, enum act_kind k)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4;
		struct act *v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		a->v = v;
		a->cap = cap;
	}
	struct act *x = &a->v[a->n++];
	memset(x, 0, sizeof(*x));
	x->k = k;
	return x;
}

static int act_set_id(struct act *x, const struct sess *s)
{
	x->id = malloc((size_t)s->id_len + 1);
	if (!x->id)
		return -1;
	memcpy(x->id, s->id, s->id_len);
	x->id[s->id_len] = '\0';
	x->id_len = s->id_len;
	return 0;
}

static void actf(struct acts *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void actf(struct acts *a, const char *fmt, ...)
{
	struct act *x = act_add(a, ACT_LOG);
	if (!x)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
	va_end(ap);
}

/* Image of rec for the broker. */
static void img_of(const struct state_rec *r, struct broker_session_image *img)
{
	*img = (struct broker_session_image){
		.level = r->level,
		.expiry_s = r->expiry_s,
		.parked_at_ms = r->parked_at,
		.subs = r->subs,
		.nsubs = r->nsubs,
	};
}

/* Runs the actions (no lock held) and frees them. */
static void acts_run(struct state_sessions *ss, struct acts *a)
{
	struct broker *br = ss->st->br;
	for (size_t i = 0; i < a->n; i++) {
		struct act *x = &a->v[i];
		struct broker_session_image img;
		switch (x->k) {
		case ACT_CLAIMED:
			img_of(&x->img, &img);
			broker_state_claimed(br, x->conn_id, x->r, x->has_img ? &img : NULL);
			break;
		case ACT_KICK:
			log_info("state: client=%.*s claimed by another instance: closing it here",
				 (int)x->id_len, x->id);
			broker_state_kick(br, x->id, x->id_len);
			break;
		case ACT_RESTORE:
			img_of(&x->img, &img);
			if (broker_state_restore(br, x->id, x->id_len, &img) < 0)
				log_warn("state: client=%.*s: no memory to restore its session",
					 (int)x->id_len, x->id);
			break;
		case ACT_QRESTORE:
			if (ss->st->queue && x->r) {
				struct msg *w = NULL;
				if (x->img.has_will) {
					const struct state_rec_will *wl = &x->img.will;
					w = msg_new_props(wl->topic, wl->topic_len, wl->payload,
							  wl->payload_len, wl->qos, wl->retain,
							  wl->props, wl->props_len);
				}
				state_queue_restore_after(ss->st->queue, x->id, x->id_len,
							  x->img.q_inst, x->img.q_off, x->img.owner,
							  w, x->drain);
			} else if (ss->st->queue) {
				state_queue_restore(ss->st->queue, x->id, x->id_len, x->img.q_inst,
						    x->img.q_off, x->ended ? NULL : x->img.owner);
			}
			break;
		case ACT_BUS:
			if (ss->st->bus)
				state_bus_subs(ss->st->bus, x->id, x->id_len,
					       x->ended ? NULL : x->img.owner, x->img.subs,
					       x->ended ? 0 : x->img.nsubs);
			break;
		case ACT_LOG:
			log_warn("state: %s", x->msg);
			break;
		}
		free(x->id);
		state_rec_clear(&x->img);
	}
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

/* ---- the table ---- */

static struct sess *sess_find(struct state_sessions *ss, const char *id, uint16_t len,
			      uint32_t *hp)
{
	uint32_t h = hash_bytes(ss->seed, id, len);
	if (hp)
		*hp = h;
	for (struct sess *s = ss->tab[h & (ss->nbuckets - 1)]; s; s = s->next)
		if (s->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0)
			return s;
	return NULL;
}

static void tab_grow(struct state_sessions *ss)
{
	size_t nb = ss->nbuckets * 2;
	struct sess **t = calloc(nb, sizeof(*t));
	if (!t)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < ss->nbuckets; i++) {
		for (struct sess *s = ss->tab[i], *nx; s; s = nx) {
			nx = s->next;
			s->next = t[s->hash & (nb - 1)];
			t[s->hash & (nb - 1)] = s;
		}
	}
	free(ss->tab);
	ss->tab = t;
	ss->nbuckets = nb;
}

static struct sess *sess_get(struct state_sessions *ss, const char *id, uint16_t len)
{
	uint32_t h;
	struct sess *s = sess_find(ss, id, len, &h);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = malloc((size_t)len + 1);
	if (!s->id) {
		free(s);
		return NULL;
	}
	memcpy(s->id, id, len);
	s->id[len] = '\0';
	s->id_len = len;
	s->hash = h;
	s->partition = -1;
	s->epoch = -1;
	s->my_epoch = -1;
	s->next = ss->tab[h & (ss->nbuckets - 1)];
	ss->tab[h & (ss->nbuckets - 1)] = s;
	if (++ss->n > ss->nbuckets)
		tab_grow(ss);
	return s;
}

/* Answers the acks of list a and frees them. broker_state_subs_written()
 * only posts to a worker: fine with ss->lock held. */
static void acks_answer(struct subs_ack *a, bool ok)
{
	while (a) {
		struct subs_ack *nx = a->next;
		broker_state_subs_written(a->ss->st->br, a->conn_id, a->token, ok);
		free(a);
		a = nx;
	}
}

static void mine_drop(struct sess *s)
{
	/* The deferred snapshot will not be written: its SUBACKs go now,
	 * unconfirmed. */
	acks_answer(s->acks, false);
	s->acks = NULL;
	if (s->mine_rec) {
		state_rec_clear(s->mine_rec);
		free(s->mine_rec);
		s->mine_rec = NULL;
	}
	s->mine = false;
	s->dirty = false;
	s->conn_id = 0;
	s->my_epoch = -1;
	s->will_due_ms = 0;
}

static bool pend_for(const struct sess *s)
{
	return !LIST_EMPTY(&s->pends);
}

/* Takes p out of the lists: its claim is settled. Lock held. */
static void pend_resolve(struct pend *p)
{
	TAILQ_REMOVE(&p->ss->pends, p, link);
	LIST_REMOVE(p, slink);
	p->resolved = true;
	if (p->reported)
		free(p);
}

/* ---- writing ---- */

struct wctx {                 /* delivery report context of a record */
	struct state_sessions *ss;
	uint64_t conn_id;         /* a claim's connection, else 0 */
	char *id;                 /* will records: the id whose will is published */
	uint16_t id_len;
	struct state_rec_will will;
	bool then_end;            /* after the will: the session ends */
	int64_t epoch;
};

static void claim_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
static void subs_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
static enum state_rec_type snapshot_type(const struct state_rec *r);
static bool resumable(const struct state_rec *r, int64_t at_ms);
static void will_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);

/* Writes r (type t, epoch e) for s. Lock held. Returns 0 or -1. */
static int write_rec(struct state_sessions *ss, struct sess *s, struct state_rec *r,
		     enum state_rec_type t, int64_t e, state_dr_fn done, void *ud)
{
	r->t = t;
	r->epoch = e;
	snprintf(r->owner, sizeof(r->owner), "%s", ss->st->instance_id);
	r->boot = ss->st->started_ms;
	r->at = state_wall_ms();
	char *js;
	size_t jl;
	if (state_rec_encode(r, &js, &jl) < 0) {
		ss->stats.write_failed++;
		return -1;
	}
	int rc = state_produce(ss->st, ss->st->t_sessions, s->id, s->id_len, js, jl, NULL, done,
			       ud);
	free(js);
	if (rc < 0)
		ss->stats.write_failed++;
	else
		ss->stats.written++;
	return rc;
}

/* Writes what this instance holds for s, or keeps it for later while the
 * epoch is unknown (its claim's delivery report has not come). */
static void mine_write(struct state_sessions *ss, struct sess *s, enum state_rec_type t)
{
	if (!s->mine || !s->mine_rec)
		return;
	s->mine_rec->t = t;
	if (s->my_epoch < 0) {
		s->dirty = true;
		return;
	}
	s->dirty = false;
	/* The SUBACKs waiting for this snapshot go with its delivery report. */
	struct subs_ack *acks = s->acks;
	s->acks = NULL;
	if (write_rec(ss, s, s->mine_rec, t, s->my_epoch, acks ? subs_dr : NULL, acks) < 0)
		acks_answer(acks, false);
	if (t == SREC_END)
		mine_drop(s);
}

/* A snapshot carrying subscription changes is in Kafka (or failed): the
 * SUBACKs that waited for it go. */
static void subs_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)partition;
	(void)offset;
	acks_answer(ud, err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void mine_flush(struct state_sessions *ss, struct sess *s)
{
	if (s->mine && s->dirty && s->my_epoch >= 0)
		mine_write(ss, s, s->mine_rec->t);
}

/* Writes a "will" record for s (its will gone from the snapshot) and, once
 * Kafka has it, publishes the will w (will_dr). then_end: an "end" record
 * follows (the session does not outlive its connection, or expired).
 * Lock held. */
static void will_start(struct state_sessions *ss, struct sess *s, const struct state_rec *base,
		       const struct state_rec_will *w, int64_t epoch, bool then_end)
{
	struct wctx *c = calloc(1, sizeof(*c));
	struct state_rec r;
	if (!c || state_rec_copy(&r, base) < 0) {
		free(c);
		return;
	}
	c->ss = ss;
	c->id = malloc((size_t)s->id_len + 1);
	struct state_rec tmp = { 0 };
	if (!c->id || state_rec_set_will(&tmp, w) < 0) {
		free(c->id);
		free(c);
		state_rec_clear(&r);
		state_rec_clear(&tmp);
		return;
	}
	memcpy(c->id, s->id, s->id_len);
	c->id[s->id_len] = '\0';
	c->id_len = s->id_len;
	c->will = tmp.will; /* moved */
	c->then_end = then_end;
	c->epoch = epoch;
	state_rec_set_will(&r, NULL);
	if (write_rec(ss, s, &r, SREC_WILL, epoch, will_dr, c) < 0) {
		state_rec_will_clear(&c->will);
		free(c->id);
		free(c);
	} else {
		s->busy_until = state_now_ms() + claim_timeout(ss);
		if (s->mine && s->mine_rec)
			state_rec_set_will(s->mine_rec, NULL);
		s->will_due_ms = 0;
	}
	state_rec_clear(&r);
}

/* The will record is in Kafka: publish the will, then maybe the end. */
static void will_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct wctx *c = ud;
	struct state_sessions *ss = c->ss;
	(void)partition;
	(void)offset;
	if (err) {
		/* Not published: the view still has the will, so the next
		 * adoption (restart or the partition's watcher) tries again. */
		log_warn("state: client=%s: will record not written: %s", c->id,
			 rd_kafka_err2str(err));
	} else {
		struct state_rec_will *w = &c->will;
		struct msg *m = msg_new_props(w->topic, w->topic_len, w->payload, w->payload_len,
					      w->qos, w->retain, w->props, w->props_len);
		if (m) {
			m->received_ms = state_wall_ms();
			if (state_publish(ss->st, c->id, c->id_len, m) < 0)
				log_warn("state: client=%s: will not published", c->id);
		}
		pthread_mutex_lock(&ss->lock);
		ss->stats.wills++;
		if (c->then_end) {
			struct sess *s = sess_find(ss, c->id, c->id_len, NULL);
			if (s && !s->mine) {
				struct state_rec r = { 0 };
				r.state = SREC_ENDED;
				r.level = s->known ? s->rec.level : 4;
				write_rec(ss, s, &r, SREC_END, c->epoch, NULL, NULL);
				state_rec_clear(&r);
			}
		}
		pthread_mutex_unlock(&ss->lock);
	}
	state_rec_will_clear(&c->will);
	free(c->id);
	free(c);
}

/* ---- the hooks (broker threads) ---- */

static void will_of(const struct msg *m, uint32_t delay, struct state_rec_will *w)
{
	*w = (struct state_rec_will){
		.topic = (char *)m->topic,
		.topic_len = m->topic_len,
		.payload = (uint8_t *)m->payload,
		.payload_len = m->payload_len,
		.qos = m->qos,
		.retain = m->retain,
		.props = (uint8_t *)m->props,
		.props_len = m->props_len,
		.delay_s = delay,
	};
}

int state_sessions_claim(struct state_sessions *ss, const struct broker_claim *c)
{
	bool wait = c->persistent || !c->clean;
	if (wait && lease_lost(ss)) {
		pthread_mutex_lock(&ss->lock);
		ss->stats.claims_refused++;
		pthread_mutex_unlock(&ss->lock);
		return -1;
	}
	struct state_rec *r = calloc(1, sizeof(*r));
	struct pend *p = calloc(1, sizeof(*p));
	if (!r || !p)
		goto fail;
	r->conn[0] = '\0';
	snprintf(r->conn, sizeof(r->conn), "%" PRIu64, c->conn_id);
	r->resume = !c->clean;
	r->persistent = c->persistent;
	r->state = SREC_ONLINE;
	r->level = c->level;
	r->expiry_s = c->expiry_s;
	if (c->will) {
		struct state_rec_will wl;
		will_of(c->will, c->will_delay_s, &wl);
		if (state_rec_set_will(r, &wl) < 0)
			goto fail;
	}
	p->conn_id = c->conn_id;
	snprintf(p->conn, sizeof(p->conn), "%" PRIu64, c->conn_id);
	p->wait = wait;
	p->deadline = state_now_ms() + claim_timeout(ss);
	p->ss = ss;

	pthread_mutex_lock(&ss->lock);
	struct sess *s = sess_get(ss, c->id, c->id_len);
	if (!s) {
		pthread_mutex_unlock(&ss->lock);
		goto fail;
	}
	p->s = s;
	p->prev_epoch = s->mine ? s->my_epoch : -1;
	/* A resuming claim carries the subscriptions it expects to inherit
	 * (this view's): when that is what readers inherit, the claim alone
	 * keeps them through compaction and no snapshot needs to follow it
	 * (claim_answer). */
	if (r->resume && s->known && resumable(&s->rec, state_wall_ms()) &&
	    state_rec_set_subs(r, s->rec.subs, s->rec.nsubs) < 0)
		goto fail_locked;
	if (write_rec(ss, s, r, SREC_CLAIM, -1, claim_dr, p) < 0) {
		ss->stats.claims_refused += wait;
		pthread_mutex_unlock(&ss->lock);
		free(p);
		state_rec_clear(r);
		free(r);
		if (wait)
			return -1;
		/* Kafka must not stop clean sessions: accepted, not mirrored. */
		broker_state_claimed(ss->st->br, c->conn_id, BROKER_CLAIM_OK, NULL);
		return 0;
	}
	TAILQ_INSERT_TAIL(&ss->pends, p, link);
	LIST_INSERT_HEAD(&s->pends, p, slink);
	/* A deferred snapshot of the connection this one replaces is dropped
	 * with it: its SUBACKs go unconfirmed. */
	acks_answer(s->acks, false);
	s->acks = NULL;
	/* What this instance now holds: later hooks write on top of this
	 * snapshot, once the claim's offset (the epoch) is known. */
	if (s->mine_rec) {
		state_rec_clear(s->mine_rec);
		free(s->mine_rec);
	}
	s->mine = true;
	s->mine_rec = r;
	s->conn_id = c->conn_id;
	s->my_epoch = -1;
	s->dirty = false;
	s->will_due_ms = 0;
	if (!wait)
		ss->stats.claims_ok++;
	pthread_mutex_unlock(&ss->lock);
	if (!wait) /* clean, non-persistent: nothing to inherit, answer now */
		broker_state_claimed(ss->st->br, c->conn_id, BROKER_CLAIM_OK, NULL);
	return 0;
fail_locked:
	pthread_mutex_unlock(&ss->lock);
fail:
	if (r)
		state_rec_clear(r);
	free(r);
	free(p);
	return -1;
}

static void claim_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct pend *p = ud;
	struct state_sessions *ss = p->ss;
	uint64_t conn_id = p->conn_id;
	struct acts a = { 0 };
	pthread_mutex_lock(&ss->lock);
	p->reported = true;
	if (p->resolved) {
		/* Read back (or given up) first: nothing left to do. */
		free(p);
		p = NULL;
	} else if (err) {
		struct sess *s = p->s;
		if (p->wait) {
			ss->stats.claims_refused++;
			struct act *x = act_add(&a, ACT_CLAIMED);
			if (x) {
				x->conn_id = p->conn_id;
				x->r = BROKER_CLAIM_UNAVAILABLE;
			}
		}
		if (s->mine && s->conn_id == p->conn_id) {
			if (p->prev_epoch >= 0 && !p->wait)
				s->my_epoch = p->prev_epoch;
			else if (p->wait)
				mine_drop(s);
		}
		pend_resolve(p);
	} else {
		struct sess *s = p->s;
		if (s->mine && s->conn_id == p->conn_id && s->my_epoch < 0) {
			s->my_epoch = offset;
			if (s->partition < 0)
				s->partition = partition;
			mine_flush(ss, s);
		}
	}
	pthread_mutex_unlock(&ss->lock);
	if (err)
		actf(&a, "claim of connection %" PRIu64 " not written: %s", conn_id,
		     rd_kafka_err2str(err));
	acts_run(ss, &a);
}

static struct sess *mine_get(struct state_sessions *ss, const char *id, uint16_t len)
{
	struct sess *s = sess_find(ss, id, len, NULL);
	return s && s->mine && s->mine_rec ? s : NULL;
}

void state_sessions_subs_changed(struct state_sessions *ss, const char *id, uint16_t id_len,
				 const struct broker_sub *subs, size_t n, uint64_t conn_id,
				 uint32_t token)
{
	/* conn_id: the broker holds a SUBACK until the snapshot carrying
	 * this set is acknowledged by Kafka (written now, or when the claim's
	 * epoch is known: mine_write); at once, unconfirmed, when none will
	 * be (not ours: kicked, or its claim failed). */
	struct subs_ack *ack = NULL;
	if (conn_id) {
		ack = malloc(sizeof(*ack));
		if (!ack)
			broker_state_subs_written(ss->st->br, conn_id, token, false);
		else
			*ack = (struct subs_ack){ .ss = ss, .conn_id = conn_id, .token = token };
	}
	pthread_mutex_lock(&ss->lock);
	struct sess *s = mine_get(ss, id, id_len);
	if (s && state_rec_set_subs(s->mine_rec, subs, n) == 0) {
		s->mine_rec->state = SREC_ONLINE;
		s->mine_rec->parked_at = 0;
		if (ack) {
			ack->next = s->acks;
			s->acks = ack;
			ack = NULL;
		}
		mine_write(ss, s, SREC_SUBS);
	}
	pthread_mutex_unlock(&ss->lock);
	acks_answer(ack, false);
}

void state_sessions_parked(struct state_sessions *ss, const char *id, uint16_t id_len,
			   uint32_t expiry_s, const struct msg *will, uint32_t will_delay_s)
{
	pthread_mutex_lock(&ss->lock);
	struct sess *s = mine_get(ss, id, id_len);
	if (s) {
		struct state_rec *r = s->mine_rec;
		r->state = SREC_PARKED;
		r->parked_at = state_wall_ms();
		r->expiry_s = expiry_s;
		r->persistent = true;
		struct state_rec_will wl;
		if (will)
			will_of(will, will_delay_s, &wl);
		state_rec_set_will(r, will ? &wl : NULL);
		mine_write(ss, s, SREC_PARK);
	}
	pthread_mutex_unlock(&ss->lock);
}

void state_sessions_ended(struct state_sessions *ss, const char *id, uint16_t id_len)
{
	pthread_mutex_lock(&ss->lock);
	struct sess *s = mine_get(ss, id, id_len);
	if (s) {
		struct state_rec *r = s->mine_rec;
		/* An adopted session's delayed will is due at the latest when
		 * the session ends [MQTT-3.1.3-9]. */
		if (s->will_due_ms && r->has_will && s->my_epoch >= 0)
			will_start(ss, s, r, &r->will, s->my_epoch, false);
		r->state = SREC_ENDED;
		r->parked_at = 0;
		state_rec_set_subs(r, NULL, 0);
		state_rec_set_will(r, NULL);
		if (s->my_epoch < 0 && !pend_for(s))
			mine_drop(s); /* its claim never made it: nothing to end */
		else
			mine_write(ss, s, SREC_END);
	}
	pthread_mutex_unlock(&ss->lock);
}

/* ---- the queue in Kafka (state_queue.c) ---- */

bool state_sessions_spool_ok(struct state_sessions *ss, const char *id, uint16_t id_len)
{
	pthread_mutex_lock(&ss->lock);
	struct sess *s = mine_get(ss, id, id_len);
	bool ok = s && s->mine_rec->persistent && s->mine_rec->state != SREC_ENDED &&
		  s->my_epoch >= 0;
	pthread_mutex_unlock(&ss->lock);
	return ok;
}

bool state_sessions_matches(struct state_sessions *ss, const char *id, uint16_t id_len,
			    const char *topic, size_t tlen)
{
	bool hit = false;
	pthread_mutex_lock(&ss->lock);
	struct sess *s = sess_find(ss, id, id_len, NULL);
	for (size_t i = 0; s && s->known && !hit && i < s->rec.nsubs; i++) {
		const char *f = s->rec.subs[i].filter;
		size_t fl = s->rec.subs[i].len;
		if (fl > 7 && memcmp(f, "$share/", 7) == 0) {
			/* $share/<group>/<filter> */
			const char *sl = memchr(f + 7, '/', fl - 7);
			if (!sl)
				continue;
			fl -= (size_t)(sl + 1 - f);
			f = sl + 1;
		}
		hit = topic_matches(f, fl, topic, tlen);
	}
	pthread_mutex_unlock(&ss->lock);
	return hit;
}

void state_sessions_write_queue(struct state_sessions *ss, const char *id, uint16_t id_len)
{
	pthread_mutex_lock(&ss->lock);
	struct sess *s = mine_get(ss, id, id_len);
	if (s && s->my_epoch >= 0 && s->mine_rec->state != SREC_ENDED) {
		struct state_rec *r = s->mine_rec;
		void *ud = state_queue_current(ss->st->queue, id, id_len, r->q_inst,
					       sizeof(r->q_inst), &r->q_off);
		if (write_rec(ss, s, r, snapshot_type(r), s->my_epoch,
			      ud ? state_queue_written : NULL, ud) < 0)
			free(ud);
		else
			s->dirty = false;
	}
	pthread_mutex_unlock(&ss->lock);
}

/* ---- reading ---- */

/* Same subscriptions, in the same order, with the same options. */
static bool subs_equal(const struct state_rec *a, const struct state_rec *b)
{
	if (a->nsubs != b->nsubs)
		return false;
	for (size_t i = 0; i < a->nsubs; i++)
		if (a->subs[i].len != b->subs[i].len || a->subs[i].opts != b->subs[i].opts ||
		    memcmp(a->subs[i].filter, b->subs[i].filter, a->subs[i].len) != 0)
			return false;
	return true;
}

/* True when the session of rec (the view before a claim made at at_ms) is
 * one a resuming claim inherits. */
static bool resumable(const struct state_rec *r, int64_t at_ms)
{
	if (r->state == SREC_ENDED || !r->persistent)
		return false;
	/* MQTT 5 sessions expire expiry_s after they went offline; 3.1.1's
	 * expiry 0 is "limits.session_expiry", applied by the broker. */
	if (r->state == SREC_PARKED && r->parked_at > 0 && (r->level == 5 || r->expiry_s > 0) &&
	    r->expiry_s != UINT32_MAX && r->parked_at + (int64_t)r->expiry_s * 1000 <= at_ms)
		return false;
	return true;
}

static void bus_act(struct acts *a, const struct sess *s)
{
	struct act *x = act_add(a, ACT_BUS);
	if (!x)
		return;
	if (act_set_id(x, s) < 0 || state_rec_copy(&x->img, &s->rec) < 0) {
		free(x->id);
		a->n--;
		return;
	}
	x->ended = s->rec.state == SREC_ENDED;
}

static void claimed_act(struct acts *a, uint64_t conn_id, const struct state_rec *img)
{
	struct act *x = act_add(a, ACT_CLAIMED);
	if (!x)
		return;
	x->conn_id = conn_id;
	x->r = BROKER_CLAIM_OK;
	if (img && state_rec_copy(&x->img, img) == 0)
		x->has_img = true;
}

static void restore_act(struct acts *a, const struct sess *s, const struct state_rec *img)
{
	struct act *x = act_add(a, ACT_RESTORE);
	if (!x)
		return;
	if (act_set_id(x, s) < 0 || state_rec_copy(&x->img, img) < 0) {
		free(x->id);
		a->n--;
	}
}

/* The session's queue in Kafka (rec names it) is to be read back: before
 * its restore act, so that the queue module knows before the broker can
 * queue anything for the session. */
static struct act *qrestore_act(struct acts *a, const struct sess *s,
				const struct state_rec *rec, bool own)
{
	if (!rec->q_inst[0] && own)
		return NULL;
	struct act *x = act_add(a, ACT_QRESTORE);
	if (!x)
		return NULL;
	if (act_set_id(x, s) < 0) {
		a->n--;
		return NULL;
	}
	memcpy(x->img.q_inst, rec->q_inst, sizeof(x->img.q_inst));
	memcpy(x->img.owner, rec->owner, sizeof(x->img.owner));
	x->img.q_off = rec->q_off;
	x->ended = own;
	x->drain = true;
	x->r = 0;
	return x;
}

/* Our own claim read back: answer it. prev = the view before the claim. */
static void claim_answer(struct state_sessions *ss, struct sess *s, struct pend *p,
			 const struct state_rec *prev, const struct state_rec *r, int64_t off,
			 bool carried, bool carried_any, struct acts *a)
{
	bool inherit = r->resume && prev && resumable(prev, r->at);
	if (s->mine && s->conn_id == p->conn_id) {
		s->my_epoch = off;
		/* What readers applied to a resuming claim: the subscriptions
		 * before it when it inherits, none when it does not (whatever
		 * it carried). Its connection waits for this answer, so nothing
		 * else changed them here. A clean claim is answered at once:
		 * its client may have subscribed already; left alone. */
		if (r->resume && (!carried || !inherit))
			state_rec_set_subs(s->mine_rec, inherit ? prev->subs : NULL,
					   inherit ? prev->nsubs : 0);
		/* Its queue in Kafka: a live owner hands what it holds over
		 * (the kick); one that died cannot, so it is read back from
		 * its queue topic; the records name it until that is done. */
		if (inherit && !is_me(ss, prev)) {
			bool other = strcmp(prev->owner, ss->st->instance_id) != 0;
			if (prev->q_inst[0]) {
				memcpy(s->mine_rec->q_inst, prev->q_inst,
				       sizeof(s->mine_rec->q_inst));
				s->mine_rec->q_off = prev->q_off;
			}
			struct act *x = qrestore_act(a, s, prev, !other);
			/* Another instance may hand over (and publish the will
			 * of the connection it closes): deferred, see
			 * state_queue_restore_after(); the will goes with the
			 * job for when it does not. A previous run of this one
			 * cannot: now. */
			if (x && other) {
				x->r = 1;
				if (prev->state == SREC_ONLINE && prev->has_will &&
				    prev->will.delay_s == 0)
					state_rec_set_will(&x->img, &prev->will);
			}
			if (prev->nsubs == 0 && !s->dirty)
				mine_write(ss, s, SREC_SUBS);
		} else if (!inherit && prev && strcmp(prev->owner, ss->st->instance_id) != 0 &&
			   prev->state == SREC_ONLINE && prev->has_will && prev->will.delay_s == 0) {
			/* A clean start took the id from a connection on another
			 * instance: only its will, if that instance cannot. */
			struct state_rec nq = *prev;
			nq.q_inst[0] = '\0';
			struct act *x = qrestore_act(a, s, &nq, false);
			if (x) {
				x->r = 1;
				x->drain = false;
				state_rec_set_will(&x->img, &prev->will);
			}
		}
		/* The inherited subscriptions again under this epoch, so that
		 * compaction of the records before the claim cannot lose them;
		 * unless the claim carried exactly those. A claim that carried
		 * some but inherits none is corrected the same way. */
		if (((inherit && prev->nsubs > 0 && !carried) || (!inherit && carried_any)) &&
		    !s->dirty)
			mine_write(ss, s, SREC_SUBS);
		mine_flush(ss, s);
	}
	if (p->wait) {
		ss->stats.claims_ok++;
		claimed_act(a, p->conn_id, inherit ? prev : NULL);
	}
}

/* Our own claim read back after it was given up (timed out): the client was
 * refused, so nothing holds the session here. Keep a persistent one parked
 * here (restored), end a clean one. */
static void claim_orphan(struct state_sessions *ss, struct sess *s, const struct state_rec *r,
			 int64_t off, struct acts *a)
{
	if (s->mine)
		return; /* a newer claim here: it writes over this one */
	if (!r->persistent) {
		struct state_rec e = { 0 };
		e.state = SREC_ENDED;
		e.level = r->level;
		write_rec(ss, s, &e, SREC_END, off, NULL, NULL);
		state_rec_clear(&e);
		return;
	}
	struct state_rec *m = calloc(1, sizeof(*m));
	if (!m || state_rec_copy(m, &s->rec) < 0) {
		free(m);
		return;
	}
	m->state = SREC_PARKED;
	m->parked_at = state_wall_ms();
	s->mine = true;
	s->mine_rec = m;
	s->conn_id = 0;
	s->my_epoch = off;
	restore_act(a, s, m);
	mine_write(ss, s, SREC_PARK);
}

/* Our own adopt read back: restore the session, publish its will once.
 * take false: a claim of ours for the id is on its way (the client came
 * back meanwhile): that claim holds the session; only an immediate will of
 * the connection that died goes out. */
static void adopt_done(struct state_sessions *ss, struct sess *s, const struct state_rec *prev,
		       int64_t off, bool take, struct acts *a)
{
	ss->stats.adopted++;
	s->busy_until = 0;
	/* The will the session had before this adopt (a "will" record read
	 * since the adopt was written means it went out already). */
	const struct state_rec_will *w = prev && prev->has_will ? &prev->will : NULL;
	int64_t due = w ? s->rec.parked_at + (int64_t)w->delay_s * 1000 : 0;
	if (!take) {
		if (w && due <= state_wall_ms())
			will_start(ss, s, &s->rec, w, off, false);
		return;
	}
	struct state_rec *m = calloc(1, sizeof(*m));
	if (!m || state_rec_copy(m, &s->rec) < 0) {
		free(m);
		return;
	}
	m->t = SREC_PARK; /* what a re-write of it is */
	acks_answer(s->acks, false); /* their snapshot is replaced, never written */
	s->acks = NULL;
	if (s->mine_rec) {
		state_rec_clear(s->mine_rec);
		free(s->mine_rec);
	}
	s->mine = true;
	s->mine_rec = m;
	s->conn_id = 0;
	s->my_epoch = off;
	s->dirty = false;
	state_rec_set_will(m, w);
	/* A dead instance's session: its queue is read back from there (our
	 * own restart's were at catch-up). */
	if (prev && strcmp(prev->owner, ss->st->instance_id) != 0)
		qrestore_act(a, s, prev, false);
	restore_act(a, s, m);
	if (w && due <= state_wall_ms()) {
		will_start(ss, s, m, w, off, false);
	} else if (w) {
		s->will_due_ms = due;
		ss->any_due = true;
	}
}

/* The type a re-write of what we hold goes as. */
static enum state_rec_type snapshot_type(const struct state_rec *r)
{
	return r->state == SREC_PARKED ? SREC_PARK : r->state == SREC_ENDED ? SREC_END : SREC_SUBS;
}

void state_sessions_record(struct state_sessions *ss, const rd_kafka_message_t *rec)
{
	if (!rec->key || rec->key_len == 0 || rec->key_len > UINT16_MAX)
		return;
	const char *id = rec->key;
	uint16_t id_len = (uint16_t)rec->key_len;
	struct state_rec r;
	char err[96];
	if (state_rec_decode(&r, rec->payload, rec->len, err, sizeof(err)) < 0) {
		state_rec_clear(&r);
		pthread_mutex_lock(&ss->lock);
		ss->stats.malformed++;
		pthread_mutex_unlock(&ss->lock);
		/* A tombstone (no value) is an id an operator deleted: as "end". */
		if (rec->len == 0)
			r = (struct state_rec){ .t = SREC_END, .state = SREC_ENDED, .level = 4 };
		else {
			log_debug("state: sessions record at %" PRId32 "/%" PRId64 " ignored: %s",
				  rec->partition, rec->offset, err);
			return;
		}
		snprintf(r.owner, sizeof(r.owner), "?");
		r.epoch = INT64_MAX;
	}
	int64_t off = rec->offset;
	int64_t e = (r.t == SREC_CLAIM || r.t == SREC_ADOPT) ? off : r.epoch;
	struct acts a = { 0 };

	pthread_mutex_lock(&ss->lock);
	struct sess *s = sess_get(ss, id, id_len);
	if (!s) {
		pthread_mutex_unlock(&ss->lock);
		state_rec_clear(&r);
		return;
	}
	s->partition = rec->partition;
	if (e < s->epoch) {
		/* A displaced owner wrote late: ignored. If we own the id, our
		 * snapshot goes again so compaction cannot keep the stale one
		 * last (min.compaction.lag.ms leaves the time). */
		ss->stats.stale++;
		if (s->mine && s->my_epoch == s->epoch && !s->dirty && s->mine_rec)
			mine_write(ss, s, snapshot_type(s->mine_rec));
		pthread_mutex_unlock(&ss->lock);
		state_rec_clear(&r);
		return;
	}
	struct state_rec prev = s->rec;   /* moved out: freed below */
	bool had = s->known;
	ss->live -= had && prev.state != SREC_ENDED;
	ss->live += r.state != SREC_ENDED;
	s->rec = r;
	s->known = true;
	s->epoch = e == INT64_MAX ? s->epoch : e;
	/* What a claim carried (claims carry the subscriptions their
	 * instance expected to inherit): for its owner's claim_answer. */
	bool carried_any = r.t == SREC_CLAIM && r.nsubs > 0;
	bool carried = carried_any && had && subs_equal(&r, &prev);
	if (r.t == SREC_CLAIM && r.resume && !(had && resumable(&prev, r.at)))
		state_rec_set_subs(&s->rec, NULL, 0); /* inherits none */
	if (r.t == SREC_CLAIM && r.resume && had && resumable(&prev, r.at)) {
		/* Every reader applies the same rule: a resuming claim inherits
		 * the subscriptions before it (the snapshot its owner writes
		 * next may land after another instance's next claim). */
		if (!carried)
			state_rec_set_subs(&s->rec, prev.subs, prev.nsubs);
		/* And the queue it names, for the same reason. */
		if (!s->rec.q_inst[0] && prev.q_inst[0]) {
			memcpy(s->rec.q_inst, prev.q_inst, sizeof(s->rec.q_inst));
			s->rec.q_off = prev.q_off;
		}
	}
	s->ended_mono = s->rec.state == SREC_ENDED ? state_now_ms() : 0;
	/* r now belongs to s->rec (its subscriptions may have been replaced):
	 * read it through cur only. */
	const struct state_rec *cur = &s->rec;
	bool own = is_me(ss, cur);
	if (cur->t == SREC_CLAIM || cur->t == SREC_ADOPT) {
		s->will_due_ms = s->mine ? s->will_due_ms : 0;
		struct pend *p = NULL;
		if (own && cur->t == SREC_CLAIM)
			LIST_FOREACH(p, &s->pends, slink)
				if (strcmp(p->conn, cur->conn) == 0)
					break;
		if (p) {
			claim_answer(ss, s, p, had ? &prev : NULL, cur, off, carried,
				     carried_any, &a);
			pend_resolve(p);
		} else if (own && cur->t == SREC_ADOPT) {
			adopt_done(ss, s, had ? &prev : NULL, off, !pend_for(s), &a);
		} else if (own) {
			claim_orphan(ss, s, cur, off, &a);
		} else if (s->mine && !pend_for(s) &&
			   (strcmp(cur->owner, ss->st->instance_id) != 0 ||
			    cur->boot != ss->st->started_ms)) {
			/* Another instance (or a previous life of this one)
			 * owns the id now. A claim of ours still on its way
			 * will take it back: no kick then. */
			struct act *x = act_add(&a, ACT_KICK);
			if (x && act_set_id(x, s) < 0)
				a.n--;
			ss->stats.kicks++;
			mine_drop(s);
		}
	}
	bus_act(&a, s);
	pthread_mutex_unlock(&ss->lock);
	state_rec_clear(&prev);
	acts_run(ss, &a);
}

void state_sessions_reader_at(struct state_sessions *ss, int32_t p, int64_t next_offset)
{
	if (p < 0 || p >= 256)
		return;
	pthread_mutex_lock(&ss->lock);
	ss->reader_at[p] = next_offset;
	pthread_mutex_unlock(&ss->lock);
}

/* ---- adoption ---- */

/* Lock held. */
static int adopt_locked(struct state_sessions *ss, struct sess *s)
{
	if (!s->known || s->rec.state == SREC_ENDED || s->mine || pend_for(s))
		return 1;
	if (s->busy_until > state_now_ms())
		return 1;
	const struct state_rec *v = &s->rec;
	int64_t now = state_wall_ms();
	int64_t parked_at = v->parked_at > 0 ? v->parked_at : now;
	bool expired = !v->persistent || !resumable(v, now);
	if (expired) {
		/* Its connection died with its instance and nothing outlives
		 * it: the will (if any) once, then the end. */
		if (v->has_will) {
			will_start(ss, s, v, &v->will, s->epoch, true);
		} else {
			struct state_rec e = { 0 };
			e.state = SREC_ENDED;
			e.level = v->level;
			write_rec(ss, s, &e, SREC_END, s->epoch, NULL, NULL);
			state_rec_clear(&e);
			s->busy_until = state_now_ms() + claim_timeout(ss);
		}
		return 0;
	}
	struct state_rec r;
	if (state_rec_copy(&r, v) < 0)
		return -1;
	r.state = SREC_PARKED;
	r.parked_at = parked_at;
	r.conn[0] = '\0';
	int rc = write_rec(ss, s, &r, SREC_ADOPT, -1, NULL, NULL);
	state_rec_clear(&r);
	if (rc == 0)
		s->busy_until = state_now_ms() + claim_timeout(ss);
	return rc;
}

int state_sessions_owner(struct state_sessions *ss, const char *id, uint16_t id_len, char *out,
			 size_t cap)
{
	int rc = -1;
	pthread_mutex_lock(&ss->lock);
	struct sess *s = sess_find(ss, id, id_len, NULL);
	if (s && s->known && s->rec.state != SREC_ENDED && strlen(s->rec.owner) < cap) {
		memcpy(out, s->rec.owner, strlen(s->rec.owner) + 1);
		rc = 0;
	}
	pthread_mutex_unlock(&ss->lock);
	return rc;
}

int state_sessions_adopt(struct state_sessions *ss, const char *id, uint16_t id_len)
{
	pthread_mutex_lock(&ss->lock);
	struct sess *s = sess_find(ss, id, id_len, NULL);
	int rc = s ? adopt_locked(ss, s) : 1;
	pthread_mutex_unlock(&ss->lock);
	return rc;
}

void state_sessions_caught_up(struct state_sessions *ss)
{
	size_t n = 0;
	struct acts a = { 0 };
	pthread_mutex_lock(&ss->lock);
	ss->caught_up = true;
	/* The sessions this instance held before a restart: same instance
	 * id, another boot. Their connections died with the process. They
	 * are restored here at once (the adopt's read-back finds them there),
	 * before the inbox is read: what a clean stop wrote to the inbox for
	 * them (broker_state_persist()) finds its session. A claim made
	 * elsewhere meanwhile kicks them as any. */
	for (size_t i = 0; i < ss->nbuckets; i++)
		for (struct sess *s = ss->tab[i]; s; s = s->next)
			if (s->known && s->rec.state != SREC_ENDED &&
			    strcmp(s->rec.owner, ss->st->instance_id) == 0 &&
			    s->rec.boot != ss->st->started_ms && adopt_locked(ss, s) == 0) {
				if (s->rec.persistent) {
					qrestore_act(&a, s, &s->rec, true);
					restore_act(&a, s, &s->rec);
				}
				n++;
			}
	pthread_mutex_unlock(&ss->lock);
	acts_run(ss, &a);
	if (n)
		log_info("state: %zu sessions of this instance's previous run taken back", n);
}

/* ---- tick ---- */

void state_sessions_tick(struct state_sessions *ss)
{
	struct acts a = { 0 };
	int64_t now = state_now_ms(), wall = state_wall_ms();
	bool lost = lease_lost(ss);
	pthread_mutex_lock(&ss->lock);
	/* Oldest first: the first one not due ends the walk (the whole list
	 * only while the lease is lost). */
	for (struct pend *p = TAILQ_FIRST(&ss->pends), *nx; p; p = nx) {
		nx = TAILQ_NEXT(p, link);
		if (p->deadline > now) {
			if (!lost)
				break;
			if (!p->wait)
				continue;
		}
		if (p->wait) {
			ss->stats.claims_timed_out++;
			struct act *x = act_add(&a, ACT_CLAIMED);
			if (x) {
				x->conn_id = p->conn_id;
				x->r = BROKER_CLAIM_UNAVAILABLE;
			}
			if (p->s->mine && p->s->conn_id == p->conn_id)
				mine_drop(p->s);
		}
		pend_resolve(p);
	}
	bool sweep = now >= ss->next_sweep;
	if (ss->any_due || sweep) {
		bool due = false;
		if (sweep)
			ss->next_sweep = now + SWEEP_EVERY_MS;
		for (size_t i = 0; i < ss->nbuckets; i++) {
			for (struct sess **sp = &ss->tab[i]; *sp;) {
				struct sess *s = *sp;
				if (s->mine && s->will_due_ms && s->will_due_ms <= wall && s->mine_rec &&
				    s->mine_rec->has_will && s->my_epoch >= 0)
					will_start(ss, s, s->mine_rec, &s->mine_rec->will, s->my_epoch,
						   false);
				due |= s->will_due_ms != 0;
				if (sweep && s->ended_mono && now - s->ended_mono > ENDED_KEEP_MS &&
				    !s->mine && s->busy_until <= now && !pend_for(s)) {
					*sp = s->next;
					state_rec_clear(&s->rec);
					free(s->id);
					free(s);
					ss->n--;
					continue;
				}
				sp = &s->next;
			}
		}
		ss->any_due = due;
	}
	pthread_mutex_unlock(&ss->lock);
	acts_run(ss, &a);
}

/* ---- foreach, stats ---- */

void state_sessions_foreach(struct state_sessions *ss, int32_t partition, state_sessions_cb cb,
			    void *ud)
{
	struct state_session_info *v = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&ss->lock);
	for (size_t i = 0; i < ss->nbuckets; i++) {
		for (struct sess *s = ss->tab[i]; s; s = s->next) {
			if (!s->known || s->rec.state == SREC_ENDED ||
			    (partition >= 0 && s->partition != partition))
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct state_session_info *nv = realloc(v, nc * sizeof(*nv));
				if (!nv)
					goto out;
				v = nv;
				cap = nc;
			}
			char *blob = malloc((size_t)s->id_len + 1 + strlen(s->rec.owner) + 1);
			if (!blob)
				goto out;
			memcpy(blob, s->id, (size_t)s->id_len + 1);
			strcpy(blob + s->id_len + 1, s->rec.owner);
			v[n++] = (struct state_session_info){
				.id = blob, .id_len = s->id_len, .partition = s->partition,
				.owner = blob + s->id_len + 1, .boot = s->rec.boot,
				.state = (int)s->rec.state, .persistent = s->rec.persistent,
				.level = s->rec.level, .expiry_s = s->rec.expiry_s,
				.parked_at = s->rec.parked_at, .at = s->rec.at,
				.has_will = s->rec.has_will, .will_delay_s = s->rec.will.delay_s,
			};
		}
	}
out:
	pthread_mutex_unlock(&ss->lock);
	for (size_t i = 0; i < n; i++) {
		cb(ud, &v[i]);
		free((char *)v[i].id);
	}
	free(v);
}

void state_sessions_stats(struct state_sessions *ss, struct state_sessions_stats *out)
{
	pthread_mutex_lock(&ss->lock);
	*out = ss->stats;
	out->known = ss->live;
	pthread_mutex_unlock(&ss->lock);
}

int state_sessions_metrics_render(struct buf *out, struct state_sessions *ss)
{
	struct state_sessions_stats s;
	state_sessions_stats(ss, &s);
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} f[] = {
#define F(n, t, h, m) { "kafkagate_state_" n, t, h, offsetof(struct state_sessions_stats, m) }
		F("sessions_known", "gauge", "Client ids the sessions topic knows, not ended.", known),
		F("claims_ok_total", "counter", "Claims answered: this instance owns the id.",
		  claims_ok),
		F("claims_refused_total", "counter",
		  "Persistent claims refused: lease lost or the claim not written.", claims_refused),
		F("claims_timed_out_total", "counter",
		  "Persistent claims not read back within state.claim_timeout_ms.", claims_timed_out),
		F("kicks_total", "counter", "Sessions here closed because another instance claimed them.",
		  kicks),
		F("session_records_written_total", "counter", "Session records handed to the producer.",
		  written),
		F("session_records_failed_total", "counter",
		  "Session records not handed to the producer.", write_failed),
		F("session_records_stale_total", "counter",
		  "Session records ignored for an epoch below the current one.", stale),
		F("session_records_malformed_total", "counter",
		  "Session records that did not decode.", malformed),
		F("sessions_adopted_total", "counter",
		  "Sessions taken over after a restart or from a dead instance.", adopted),
		F("wills_published_total", "counter",
		  "Wills of connections that died with an instance, published once.", wills),
#undef F
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		rc |= prom_family(out, f[i].name, f[i].type, f[i].help);
		rc |= prom_u64(out, f[i].name, NULL, *(const uint64_t *)((const char *)&s + f[i].off));
	}
	return rc ? -1 : 0;
}

/* ---- life ---- */

struct state_sessions *state_sessions_new(struct state *st)
{
	struct state_sessions *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	ss->st = st;
	ss->nbuckets = 1024;
	TAILQ_INIT(&ss->pends);
	ss->tab = calloc(ss->nbuckets, sizeof(*ss->tab));
	if (!ss->tab || pthread_mutex_init(&ss->lock, NULL) != 0) {
		free(ss->tab);
		free(ss);
		return NULL;
	}
	ss->seed = hash_seed(ss);
	return ss;
}

void state_sessions_free(struct state_sessions *ss)
{
	if (!ss)
		return;
	for (size_t i = 0; i < ss->nbuckets; i++) {
		for (struct sess *s = ss->tab[i], *nx; s; s = nx) {
			nx = s->next;
			/* The broker is gone: nobody to answer. */
			for (struct subs_ack *a = s->acks, *an; a; a = an) {
				an = a->next;
				free(a);
			}
			s->acks = NULL;
			mine_drop(s);
			state_rec_clear(&s->rec);
			free(s->id);
			free(s);
		}
	}
	/* The producer is gone (every delivery report ran): what is left
	 * was never read back. */
	for (struct pend *p; (p = TAILQ_FIRST(&ss->pends));) {
		TAILQ_REMOVE(&ss->pends, p, link);
		free(p);
	}
	free(ss->tab);
	pthread_mutex_destroy(&ss->lock);
	free(ss);
}
