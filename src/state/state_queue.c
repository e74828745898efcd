/*
 * state_queue.c - the queues of offline sessions, kept in Kafka
 * (docs/scaling/queue.md).
 *
 * A persistent session that is offline here keeps what waits for its
 * client in memory, as always; with state.store = "kafka" each of those
 * messages is also written to this instance's queue topic
 * <prefix>.queue.<instance id> (key and header kg.to = the client id), and
 * the session keeps a copy whose track is "kept" (core/msg.h): it completes
 * only when the client acknowledged it (or the broker dropped it: queue
 * limits, expiry, the session ended or moved). What the message came from
 * (a downlink record, an inbox record) is completed only once Kafka holds
 * the copy, so a record's offset is committed once it is "queued in the
 * device's persistent session, which is itself in Kafka".
 *
 * The session record (state_rec "q") names where its queue is: the
 * records addressed to it in <prefix>.queue.<q_inst> from offset q_off on.
 * A period starts with the first copy written while the session had none
 * (q_off = the next offset of our queue topic, never above that copy's)
 * and ends when every copy was acknowledged (the record is written again
 * without "q"). A copy's origin is completed only once the record naming
 * its period's q_off is acknowledged too: a crash between the two leaves
 * the origin uncommitted, never the copy unfindable.
 *
 * After a restart (this instance's own sessions, restored at catch-up) or
 * an adoption (a dead instance's sessions, state_owner.c), a restore job
 * reads the session's queue topic from q_off to the end it had then and
 * injects every record addressed to the session (broker_inject_local): it
 * is queued and written again, to our own queue, as a new period. While a
 * session is being restored its record keeps naming the old queue; the new
 * period's q is written once the job read to the end and every message it
 * injected was written again (or delivered), so a crash in between reads
 * the old queue again (duplicates, nothing lost).
 *
 * Threads: spool() on broker workers (s->mu may be held: it only
 * produces); delivery reports on the state producer's poll thread; a
 * copy's track on any broker thread; restore jobs on this module's thread.
 * One mutex (q->mu) guards the table; it is taken inside the sessions
 * module's lock (state_queue_current()), never the other way round.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/prom.h"
#include "core/util.h"
#include "state/state_int.h"

/* A restore job reads at most this long (a queue topic that cannot be
 * read: the session keeps its old "q" and the next restart tries again). */
#define RESTORE_READ_MS 60000
#define RESTORE_POLL_MS 200
/* Handover markers that came before their deferred job, remembered this
 * long (a few of them: the race is one Kafka round trip wide). */
#define MARKERS 256
#define MARKER_KEEP_MS 30000

struct spool;

/* One session with copies in Kafka, or being restored. */
struct qs {
	struct qs *next;
	char *id;
	uint16_t id_len;
	uint32_t hash;
	uint32_t live;           /* copies not acknowledged yet */
	bool has_q;              /* a period is open at q_off */
	bool q_durable;          /* the record naming q_off was acknowledged */
	int64_t q_off;
	uint32_t restoring;      /* restore jobs not finished for it */
	struct spool *pending;   /* written copies whose origin waits for q_durable */
};

/* One copy: its track (kept) and the origin's completion. Freed when both
 * the delivery report and the copy's track came (refs). */
struct spool {
	struct msg_track track;
	atomic_int refs;
	struct msg *orig;        /* one reference until completed */
	bool owes;               /* orig's track is owed a completion */
	bool restored;           /* orig was injected by a restore job */
	struct spool *next;      /* qs->pending */
	uint16_t id_len;
	char id[];
};

/* A restore job: one session that was held elsewhere (or by our previous
 * run): its queue in <prefix>.queue.<inst> from off (off < 0: none), and,
 * when `owner` died holding it (not our own restart), what owner's inbox
 * still held past its group's commit. */
struct job {
	struct job *next;
	struct state_queue *q;
	char inst[STATE_ID_MAX + 1];
	char owner[STATE_ID_MAX + 1]; /* the previous owner ("" = our own run) */
	int64_t deadline;        /* deferred: monotonic ms it runs anyway */
	struct msg *will;        /* deferred: the will of the connection the owner
				    held, published if it does not hand over */
	bool nodrain;            /* deferred for the will only: nothing to read */
	int64_t off;
	atomic_uint out;         /* injected messages not yet written again */
	atomic_bool read_done;
	uint16_t id_len;
	char id[];
};

/* The track of a message a restore job injected. */
struct rtrack {
	struct msg_track track;
	struct job *j;
};

struct state_queue {
	struct state *st;
	pthread_mutex_t mu;
	struct qs **tab;
	size_t nbuckets, n;
	uint64_t seed;
	int64_t next_off;        /* our queue topic's next offset (at least) */
	/* restore jobs */
	pthread_t th;
	bool th_on;
	pthread_cond_t cv;
	struct job *jobs;        /* waiting */
	struct job *deferred;    /* waiting for a handover or the owner's death */
	struct marker { int64_t at; uint16_t len; char *id; } markers[MARKERS];
	size_t nmarkers;
	struct job *running;     /* being read or waiting for their messages */
	uint32_t jobs_open;      /* jobs of our own restart not finished */
	bool stop;
	/* counters */
	atomic_ullong spooled, failed, restored, restore_jobs, periods;
};

static _Atomic(struct state_queue *) g_queue;

static void complete_orig(struct spool *sp);
static void write_q(struct state_queue *q, const char *id, uint16_t id_len);
static void restore_track_done(struct msg_track *tr);

/* ---- table ---- */

static struct qs *qs_find(struct state_queue *q, const char *id, uint16_t len, bool create)
{
	uint32_t h = (uint32_t)hash_bytes(q->seed, id, len);
	if (q->nbuckets) {
		for (struct qs *s = q->tab[h % q->nbuckets]; s; s = s->next)
			if (s->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0)
				return s;
	}
	if (!create)
		return NULL;
	if (q->n >= q->nbuckets) {
		size_t nb = q->nbuckets ? q->nbuckets * 2 : 64;
		struct qs **t = calloc(nb, sizeof(*t));
		if (!t)
			return NULL;
		for (size_t i = 0; i < q->nbuckets; i++)
			for (struct qs *s = q->tab[i], *nx; s; s = nx) {
				nx = s->next;
				s->next = t[s->hash % nb];
				t[s->hash % nb] = s;
			}
		free(q->tab);
		q->tab = t;
		q->nbuckets = nb;
	}
	struct qs *s = calloc(1, sizeof(*s));
	if (!s || !(s->id = malloc((size_t)len + 1))) {
		free(s);
		return NULL;
	}
	memcpy(s->id, id, len);
	s->id[len] = '\0';
	s->id_len = len;
	s->hash = h;
	s->next = q->tab[h % q->nbuckets];
	q->tab[h % q->nbuckets] = s;
	q->n++;
	return s;
}

/* Forgets s when nothing refers to it any more. mu held. */
static void qs_maybe_drop(struct state_queue *q, struct qs *s)
{
	if (s->live || s->has_q || s->restoring || s->pending)
		return;
	struct qs **pp = &q->tab[s->hash % q->nbuckets];
	while (*pp != s)
		pp = &(*pp)->next;
	*pp = s->next;
	q->n--;
	free(s->id);
	free(s);
}

/* ---- the copies ---- */

static void spool_unref(struct spool *sp)
{
	if (atomic_fetch_sub(&sp->refs, 1) == 1)
		free(sp);
}

static void complete_orig(struct spool *sp)
{
	struct msg *m = sp->orig;
	sp->orig = NULL;
	if (!m)
		return;
	if (sp->owes)
		msg_track_done(m);
	msg_unref(m);
}

/* Completes the origins of a list of written copies (qs->pending). */
static void pend_complete(struct spool *pend)
{
	while (pend) {
		struct spool *nx = pend->next;
		complete_orig(pend);
		spool_unref(pend);
		pend = nx;
	}
}

/* The copy was acknowledged by its client, or dropped. */
static void copy_done(struct msg_track *tr)
{
	struct spool *sp = container_of(tr, struct spool, track);
	struct state_queue *q = atomic_load(&g_queue);
	struct spool *pend = NULL;
	bool rewrite = false;

	if (q) {
		pthread_mutex_lock(&q->mu);
		struct qs *s = qs_find(q, sp->id, sp->id_len, false);
		if (s && s->live > 0 && --s->live == 0 && !s->restoring) {
			/* Nothing of this period waits any more: the record
			 * stops naming it; origins still waiting go now. */
			rewrite = s->has_q;
			s->has_q = false;
			s->q_durable = false;
			pend = s->pending;
			s->pending = NULL;
			qs_maybe_drop(q, s);
		}
		pthread_mutex_unlock(&q->mu);
		/* While stopping, the broker releases what sessions hold: the
		 * records must keep naming their queues for the restart. */
		if (rewrite && !atomic_load(&q->st->stopping))
			write_q(q, sp->id, sp->id_len);
	}
	pend_complete(pend);
	spool_unref(sp);
}

/* The copy's record: acknowledged (or failed) by Kafka. */
static void spool_dr(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct spool *sp = ud;
	struct state_queue *q = atomic_load(&g_queue);
	bool now = true;
	(void)partition;

	if (err) {
		/* The copy is only in memory now: as with store = "memory". */
		if (q)
			atomic_fetch_add_explicit(&q->failed, 1, memory_order_relaxed);
		log_warn_rl("state queue: a queued message is not in Kafka client=%s reason=%s",
			    log_qn(sp->id, sp->id_len), rd_kafka_err2str(err));
	} else if (q) {
		pthread_mutex_lock(&q->mu);
		if (offset + 1 > q->next_off)
			q->next_off = offset + 1;
		struct qs *s = qs_find(q, sp->id, sp->id_len, false);
		/* A restore job's message is in the old queue until the new
		 * period's q is written: it goes now. Others wait for the
		 * record that names their period. */
		if (s && !sp->restored && s->has_q && !s->q_durable) {
			sp->next = s->pending;
			s->pending = sp;
			now = false;
		}
		pthread_mutex_unlock(&q->mu);
	}
	if (now) {
		complete_orig(sp);
		spool_unref(sp);
	}
}

struct qw {
	int64_t off;             /* -1: written without "q" */
	uint16_t id_len;
	char id[];
};

void *state_queue_current(struct state_queue *q, const char *id, uint16_t id_len, char *inst,
			  size_t inst_cap, int64_t *off)
{
	struct qw *w = malloc(sizeof(*w) + id_len);
	if (!w)
		return NULL;
	memcpy(w->id, id, id_len);
	w->id_len = id_len;
	w->off = -1;
	pthread_mutex_lock(&q->mu);
	struct qs *s = qs_find(q, id, id_len, false);
	if (s && s->restoring) {
		/* Keep naming the queue being restored (inst/off unchanged). */
		w->off = -2;
	} else if (s && s->has_q) {
		snprintf(inst, inst_cap, "%s", q->st->instance_id);
		*off = s->q_off;
		w->off = s->q_off;
	} else {
		inst[0] = '\0';
		*off = 0;
	}
	pthread_mutex_unlock(&q->mu);
	return w;
}

void state_queue_written(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct qw *w = ud;
	struct state_queue *q = atomic_load(&g_queue);
	struct spool *pend = NULL;
	bool again = false;
	(void)partition;
	(void)offset;

	if (q && w->off >= 0) {
		pthread_mutex_lock(&q->mu);
		struct qs *s = qs_find(q, w->id, w->id_len, false);
		if (s && s->has_q && s->q_off == w->off && !s->restoring) {
			if (!err) {
				s->q_durable = true;
				pend = s->pending;
				s->pending = NULL;
			} else {
				again = true;
			}
		}
		pthread_mutex_unlock(&q->mu);
	}
	if (again && q && !atomic_load(&q->st->stopping)) {
		log_warn_rl("state queue: session record not written client=%s reason=%s "
			    "action=\"again\"", log_qn(w->id, w->id_len), rd_kafka_err2str(err));
		write_q(q, w->id, w->id_len);
	}
	pend_complete(pend);
	free(w);
}

static void write_q(struct state_queue *q, const char *id, uint16_t id_len)
{
	state_sessions_write_queue(q->st->sessions, id, id_len);
}

struct msg *state_queue_spool(struct state_queue *q, const char *id, uint16_t id_len,
			      struct msg *m, uint8_t qos, bool retain, bool owes)
{
	(void)retain;
	if (!q || !state_sessions_spool_ok(q->st->sessions, id, id_len))
		return NULL;
	struct spool *sp = malloc(sizeof(*sp) + id_len);
	struct msg *c = sp ? msg_clone(m, m->qos, m->retain) : NULL;
	if (!c) {
		free(sp);
		return NULL;
	}
	atomic_init(&sp->track.remaining, 1);
	sp->track.kept = true;
	sp->track.done = copy_done;
	atomic_init(&sp->refs, 2);
	sp->orig = msg_ref(m);
	sp->owes = owes;
	sp->restored = m->track && m->track->done == restore_track_done;
	sp->next = NULL;
	sp->id_len = id_len;
	memcpy(sp->id, id, id_len);
	c->track = &sp->track;

	bool first = false;
	pthread_mutex_lock(&q->mu);
	struct qs *s = qs_find(q, id, id_len, true);
	if (s) {
		if (!s->has_q) {
			s->has_q = true;
			s->q_durable = false;
			s->q_off = q->next_off;
			first = !s->restoring;
			atomic_fetch_add_explicit(&q->periods, 1, memory_order_relaxed);
		}
		s->live++;
	}
	pthread_mutex_unlock(&q->mu);
	if (!s) {
		msg_unref(sp->orig);
		free(sp);
		msg_unref(c);
		return NULL;
	}
	rd_kafka_headers_t *h = state_bus_headers(q->st, m, qos, NULL, 0);
	rd_kafka_header_add(h, "kg.to", -1, id, id_len);
	/* Partition 0 always: one offset space for the q_off of the records
	 * (the topic is created with one; an auto-created one may have more). */
	if (state_produce_part(q->st, q->st->t_queue, 0, id, id_len, m->payload, m->payload_len, h,
			       spool_dr, sp) < 0) {
		atomic_fetch_add_explicit(&q->failed, 1, memory_order_relaxed);
		sp->orig = NULL;
		msg_unref(m);
		c->track = NULL;
		msg_unref(c);
		/* Undo the count as if the copy had been acknowledged. */
		atomic_store(&sp->refs, 1);
		copy_done(&sp->track);
		return NULL;
	}
	atomic_fetch_add_explicit(&q->spooled, 1, memory_order_relaxed);
	if (first)
		write_q(q, id, id_len);
	return c;
}

/* ---- restore jobs ---- */

static void job_finish(struct job *j);

static void job_free(struct job *j)
{
	msg_unref(j->will);
	free(j);
}

static void restore_track_done(struct msg_track *tr)
{
	struct rtrack *rt = container_of(tr, struct rtrack, track);
	struct job *j = rt->j;
	free(rt);
	if (!atomic_load(&g_queue))
		return; /* after state_free(): the job is left as it is */
	if (atomic_fetch_sub(&j->out, 1) == 1 && atomic_load(&j->read_done))
		job_finish(j);
}

/* Every record was read and every message it injected written again (or
 * delivered): the session's record may name its new period. */
static void job_finish(struct job *j)
{
	struct state_queue *q = j->q;
	bool rewrite = false;
	struct spool *pend = NULL;

	pthread_mutex_lock(&q->mu);
	struct job **pp = &q->running;
	while (*pp && *pp != j)
		pp = &(*pp)->next;
	if (!*pp) {
		pthread_mutex_unlock(&q->mu);
		return; /* finished already */
	}
	*pp = j->next;
	struct qs *s = qs_find(q, j->id, j->id_len, false);
	if (s && s->restoring && --s->restoring == 0) {
		rewrite = true;
		if (!s->live) {
			s->has_q = false;
			pend = s->pending;
			s->pending = NULL;
		}
		qs_maybe_drop(q, s);
	}
	if (!j->owner[0] && q->jobs_open)
		q->jobs_open--;
	pthread_mutex_unlock(&q->mu);
	if (rewrite && !atomic_load(&q->st->stopping))
		write_q(q, j->id, j->id_len);
	pend_complete(pend);
	job_free(j);
}

static struct job *job_new(struct state_queue *q, const char *id, uint16_t id_len,
			   const char *inst, int64_t off, const char *owner)
{
	struct job *j = calloc(1, sizeof(*j) + id_len + 1);
	if (!j)
		return NULL;
	j->q = q;
	snprintf(j->inst, sizeof(j->inst), "%s", inst ? inst : "");
	snprintf(j->owner, sizeof(j->owner), "%s", owner ? owner : "");
	j->off = inst && inst[0] ? off : -1;
	j->id_len = id_len;
	memcpy(j->id, id, id_len);
	return j;
}

/* Queues j (its session counted as restoring). false: dropped. */
static bool job_add(struct state_queue *q, struct job *j, bool deferred)
{
	pthread_mutex_lock(&q->mu);
	struct qs *s = qs_find(q, j->id, j->id_len, true);
	if (!s || q->stop) {
		pthread_mutex_unlock(&q->mu);
		job_free(j);
		return false;
	}
	s->restoring++;
	if (!j->owner[0])
		q->jobs_open++;
	struct job **list = deferred ? &q->deferred : &q->jobs;
	j->next = *list;
	*list = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	atomic_fetch_add_explicit(&q->restore_jobs, 1, memory_order_relaxed);
	return true;
}

void state_queue_restore(struct state_queue *q, const char *id, uint16_t id_len,
			 const char *inst, int64_t off, const char *owner)
{
	struct job *j = job_new(q, id, id_len, inst, off, owner);
	if (j)
		job_add(q, j, false);
}

/* A deferred job is dropped: the session's record may name its own
 * queue again. mu held; returns true when a write is due. */
static bool job_cancel_locked(struct state_queue *q, struct job *j)
{
	struct qs *s = qs_find(q, j->id, j->id_len, false);
	bool rewrite = false;
	if (s && s->restoring && --s->restoring == 0) {
		rewrite = true;
		qs_maybe_drop(q, s);
	}
	return rewrite;
}

void state_queue_restore_after(struct state_queue *q, const char *id, uint16_t id_len,
			       const char *inst, int64_t off, const char *owner,
			       struct msg *will, bool drain)
{
	pthread_mutex_lock(&q->mu);
	int64_t now = state_now_ms();
	for (size_t i = 0; i < q->nmarkers; i++)
		if (q->markers[i].len == id_len && memcmp(q->markers[i].id, id, id_len) == 0 &&
		    now - q->markers[i].at < MARKER_KEEP_MS) {
			/* The old owner handed everything over already. */
			free(q->markers[i].id);
			q->markers[i] = q->markers[--q->nmarkers];
			q->markers[q->nmarkers] = (struct marker){ 0 };
			pthread_mutex_unlock(&q->mu);
			msg_unref(will);
			write_q(q, id, id_len);
			return;
		}
	pthread_mutex_unlock(&q->mu);
	struct job *j = job_new(q, id, id_len, inst, off, owner);
	if (!j) {
		msg_unref(will);
		return;
	}
	j->will = will;
	j->nodrain = !drain;
	int lease = q->st->cfg->state.lease_ms > 0 ? q->st->cfg->state.lease_ms : 10000;
	j->deadline = now + lease + 5000;
	job_add(q, j, true);
}

void state_queue_handover_done(struct state_queue *q, const char *id, uint16_t id_len)
{
	bool rewrite = false, found = false;
	struct job *gone = NULL;
	pthread_mutex_lock(&q->mu);
	for (struct job **pp = &q->deferred; *pp; pp = &(*pp)->next)
		if ((*pp)->id_len == id_len && memcmp((*pp)->id, id, id_len) == 0) {
			gone = *pp;
			*pp = gone->next;
			rewrite = job_cancel_locked(q, gone);
			found = true;
			break;
		}
	if (!found) {
		/* Before its job: remembered (an expired or, when full, the
		 * first slot is reused). */
		int64_t now = state_now_ms();
		size_t k = 0;
		while (k < q->nmarkers && now - q->markers[k].at < MARKER_KEEP_MS)
			k++;
		if (k == q->nmarkers && q->nmarkers == MARKERS)
			k = 0;
		char *c = malloc(id_len ? id_len : 1);
		if (c) {
			memcpy(c, id, id_len);
			if (k == q->nmarkers)
				q->nmarkers++;
			else
				free(q->markers[k].id);
			q->markers[k] = (struct marker){ now, id_len, c };
		}
	}
	pthread_mutex_unlock(&q->mu);
	if (gone)
		job_free(gone); /* its will went out with the handover */
	if (rewrite && !atomic_load(&q->st->stopping))
		write_q(q, id, id_len);
}

/* Deferred jobs whose owner died (or did not hand over in time) run now;
 * the wills of the connections it held go out (publish outside mu: the
 * caller collects them in *wills). mu held. */
static void deferred_check(struct state_queue *q, struct job **wills)
{
	int64_t now = state_now_ms();
	for (struct job **pp = &q->deferred; *pp;) {
		struct job *j = *pp;
		bool dead = !state_instance_alive(q->st, j->owner);
		if (dead || now >= j->deadline) {
			*pp = j->next;
			log_info("state queue: client=%.*s: %s did not hand the session over (%s): "
				 "reading back what it held%s", (int)j->id_len, j->id, j->owner,
				 dead ? "not alive" : "timed out", j->will ? ", publishing its will" : "");
			if (j->will) {
				/* A copy of the job's will, published by the caller. */
				struct job *w = job_new(q, j->id, j->id_len, NULL, -1, NULL);
				if (w) {
					w->will = j->will;
					w->next = *wills;
					*wills = w;
				} else {
					msg_unref(j->will);
				}
				j->will = NULL;
			}
			j->next = q->jobs;
			q->jobs = j;
		} else {
			pp = &j->next;
		}
	}
}

bool state_queue_restoring(struct state_queue *q)
{
	pthread_mutex_lock(&q->mu);
	bool r = q->jobs_open > 0;
	pthread_mutex_unlock(&q->mu);
	return r;
}

/* Injects m (one reference, untracked) for job j: tracked so that j
 * finishes once it was written again or delivered. */
static void job_inject(struct state_queue *q, struct job *j, struct msg *m)
{
	struct rtrack *rt = malloc(sizeof(*rt));
	if (!rt) {
		msg_unref(m);
		return;
	}
	rt->j = j;
	atomic_init(&rt->track.remaining, 1);
	rt->track.kept = false;
	rt->track.done = restore_track_done;
	m->track = &rt->track;
	atomic_fetch_add(&j->out, 1);
	atomic_fetch_add_explicit(&q->restored, 1, memory_order_relaxed);
	/* To the session here; to its owner's inbox if it moved since (the
	 * track then completes once that record is written). */
	state_bus_deliver_to(q->st->bus, m, j->id, j->id_len);
}

/* One reader of topic (every partition, from[p] or, from NULL, the
 * group's committed offsets) up to the ends it has now. fn gets every
 * record. Returns the number of partitions not read to their end, or -1
 * when nothing could be read. */
/* The jobs a topic is read for: those of all whose inst (queue) or owner
 * (inbox) is `inst`. */
struct rctx {
	struct job *all;
	const char *inst;
};
typedef void (*rec_fn)(struct state_queue *q, const struct rctx *x, const rd_kafka_message_t *rkm);
static int read_topic(struct state_queue *q, const char *topic, const char *group, int64_t from0,
		      const struct rctx *x, rec_fn fn)
{
	struct state *st = q->st;
	char e[256];
	int64_t end = state_now_ms() + RESTORE_READ_MS;
	rd_kafka_conf_t *conf = state_consumer_conf(st, e, sizeof(e));
	rd_kafka_t *rk = NULL;
	if (!conf || rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e)) != RD_KAFKA_CONF_OK ||
	    !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		if (conf)
			rd_kafka_conf_destroy(conf);
		log_error("state queue: reading %s back: %s", topic, e);
		return -1;
	}
	rd_kafka_poll_set_consumer(rk);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	int np = 0;
	if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    md->topic_cnt == 1 && !md->topics[0].err)
		np = md->topics[0].partition_cnt;
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (np <= 0) {
		log_warn("state queue: %s: no such topic: nothing to read back", topic);
		rd_kafka_destroy(rk);
		return -1;
	}
	if (np > 64)
		np = 64;
	int64_t hi[64], at[64];
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(np);
	for (int p = 0; p < np; p++)
		rd_kafka_topic_partition_list_add(tp, topic, p);
	if (from0 < 0 && rd_kafka_committed(rk, tp, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("state queue: %s: committed offsets of group %s unknown: not read", topic,
			 group);
		rd_kafka_topic_partition_list_destroy(tp);
		rd_kafka_destroy(rk);
		return -1;
	}
	int left = 0;
	for (int p = 0; p < np; p++) {
		int64_t lo = 0;
		hi[p] = 0;
		if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 5000))
			hi[p] = 0;
		int64_t f = from0 >= 0 ? (p == 0 ? from0 : hi[p]) : tp->elems[p].offset;
		if (f < 0) /* no commit: the group never got that far; nothing owed */
			f = hi[p];
		if (f < lo)
			f = lo;
		tp->elems[p].offset = f;
		at[p] = f;
		left += at[p] < hi[p];
	}
	if (strcmp(topic, st->t_queue) == 0) {
		pthread_mutex_lock(&q->mu);
		if (hi[0] > q->next_off)
			q->next_off = hi[0];
		pthread_mutex_unlock(&q->mu);
	}
	rd_kafka_assign(rk, tp);
	rd_kafka_topic_partition_list_destroy(tp);
	while (left > 0 && state_now_ms() < end && !atomic_load(&st->stopping)) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, RESTORE_POLL_MS);
		if (!rkm)
			continue;
		int p = rkm->partition;
		if (p < 0 || p >= np) {
			rd_kafka_message_destroy(rkm);
			continue;
		}
		int64_t next = at[p];
		if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			next = rkm->offset > next ? rkm->offset : next;
		else if (rkm->err)
			log_warn_rl("state queue: reading %s back: %s", topic,
				    rd_kafka_message_errstr(rkm));
		else {
			next = rkm->offset + 1;
			if (rkm->offset < hi[p])
				fn(q, x, rkm);
		}
		if (at[p] < hi[p] && next >= hi[p])
			left--;
		at[p] = next;
		rd_kafka_message_destroy(rkm);
	}
	rd_kafka_destroy(rk);
	if (left)
		log_warn("state queue: reading %s back stopped with %d partitions short of their "
			 "end", topic, left);
	return left;
}

/* A queue record: to its session, when at or after the job's offset. */
static void queue_rec(struct state_queue *q, const struct rctx *x, const rd_kafka_message_t *rkm)
{
	const void *to;
	size_t to_len;
	const char *why;
	struct msg *m = state_bus_msg_of(rkm, &to, &to_len, &why);
	if (!m)
		return;
	for (struct job *j = x->all; to && j; j = j->next)
		if (j->off >= 0 && strcmp(j->inst, x->inst) == 0 && j->id_len == to_len &&
		    memcmp(j->id, to, to_len) == 0 && rkm->offset >= j->off) {
			job_inject(q, j, m);
			return;
		}
	msg_unref(m);
}

/* A record of a dead owner's inbox past its commit: a kg.to one to its
 * session; any other to every job's session whose subscriptions match
 * it, as the dead owner would have delivered it. */
static void inbox_rec(struct state_queue *q, const struct rctx *x, const rd_kafka_message_t *rkm)
{
	const void *to;
	size_t to_len;
	const char *why;
	struct msg *m = state_bus_msg_of(rkm, &to, &to_len, &why);
	if (!m)
		return;
	for (struct job *j = x->all; j; j = j->next) {
		if (strcmp(j->owner, x->inst) != 0 || j->nodrain ||
		    (to && (j->id_len != to_len || memcmp(j->id, to, to_len) != 0)))
			continue;
		/* Only where it can be delivered: no copy for sessions whose
		 * subscriptions do not match (a dead instance may have held
		 * thousands). */
		if (!to && !state_sessions_matches(q->st->sessions, j->id, j->id_len, m->topic,
						   m->topic_len))
			continue;
		struct msg *c = msg_clone(m, m->qos, m->retain);
		if (c)
			job_inject(q, j, c);
	}
	msg_unref(m);
}

/* Reads back what the jobs' sessions were owed: their queue topics from
 * their offsets, and, for sessions a dead instance held, that instance's
 * inbox past its commit. Then each job finishes once what it injected
 * was written again (a job whose topics could not be read to the end
 * keeps its session naming the old queue: it stays running). */
static void restore_jobs(struct state_queue *q, struct job *all)
{
	struct state *st = q->st;
	const char *pfx = st->cfg->state.topic_prefix ? st->cfg->state.topic_prefix : "kafkagate";
	char topic[STATE_TOPIC_MAX + 1], group[STATE_TOPIC_MAX + 16];
	int64_t end = state_now_ms() + 5000;
	bool short_read = false;

	/* The sessions must be able to keep what is injected (their adopt or
	 * claim read back here): else it would stay in memory only. A few
	 * seconds at most (a session that moved on meanwhile never will). */
	for (struct job *j = all; j; j = j->next)
		while ((j->off >= 0 || !j->nodrain) &&
		       !state_sessions_spool_ok(st->sessions, j->id, j->id_len) &&
		       state_now_ms() < end && !atomic_load(&st->stopping)) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	/* Queue topics: the jobs of one instance's queue together. */
	for (struct job *a = all; a; a = a->next) {
		if (a->off < 0)
			continue;
		bool seen = false;
		for (struct job *b = all; b != a && !seen; b = b->next)
			seen = b->off >= 0 && strcmp(b->inst, a->inst) == 0;
		if (seen)
			continue;
		int64_t from = INT64_MAX;
		size_t n = 0;
		for (struct job *b = all; b; b = b->next)
			if (b->off >= 0 && strcmp(b->inst, a->inst) == 0) {
				from = b->off < from ? b->off : from;
				n++;
			}
		snprintf(topic, sizeof(topic), "%s.queue.%s", pfx, a->inst);
		snprintf(group, sizeof(group), "%s.restore", st->t_queue);
		uint64_t before = atomic_load(&q->restored);
		struct rctx x = { all, a->inst };
		short_read |= read_topic(q, topic, group, from, &x, queue_rec) != 0;
		log_info("state queue: %llu messages of %zu sessions read back from %s (from offset "
			 "%" PRId64 ")", (unsigned long long)(atomic_load(&q->restored) - before), n,
			 topic, from);
	}
	/* Dead owners' inboxes, likewise per owner. */
	for (struct job *a = all; a; a = a->next) {
		if (!a->owner[0] || strcmp(a->owner, st->instance_id) == 0 || a->nodrain)
			continue;
		bool seen = false;
		for (struct job *b = all; b != a && !seen; b = b->next)
			seen = strcmp(b->owner, a->owner) == 0 && !b->nodrain;
		if (seen)
			continue;
		snprintf(topic, sizeof(topic), "%s.inbox.%s", pfx, a->owner);
		uint64_t before = atomic_load(&q->restored);
		/* Its own group: its commit is where it stood. Never joined,
		 * never committed to. */
		struct rctx x = { all, a->owner };
		read_topic(q, topic, topic, -1, &x, inbox_rec);
		log_info("state queue: %llu messages read back from %s past its commit for the "
			 "sessions it held", (unsigned long long)(atomic_load(&q->restored) - before),
			 topic);
	}
	for (struct job *j = all, *nx; j; j = nx) {
		nx = j->next;
		pthread_mutex_lock(&q->mu);
		j->next = q->running;
		q->running = j;
		pthread_mutex_unlock(&q->mu);
		if (short_read && j->off >= 0)
			continue;
		atomic_store(&j->read_done, true);
		/* Raised by one while we look, so that the last message cannot
		 * finish the job twice. */
		atomic_fetch_add(&j->out, 1);
		if (atomic_fetch_sub(&j->out, 1) == 1)
			job_finish(j);
	}
}

static void *restore_main(void *arg)
{
	struct state_queue *q = arg;
	log_set_thread("state-queue");
	/* Where our queue topic ends now: a period starting before any of
	 * our own records was acknowledged names that, not offset 0 (which
	 * is right too, but a restore would read the whole topic). */
	int64_t lo = 0, hi = 0;
	if (rd_kafka_query_watermark_offsets(q->st->prod, q->st->t_queue, 0, &lo, &hi, 5000) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		pthread_mutex_lock(&q->mu);
		if (hi > q->next_off)
			q->next_off = hi;
		pthread_mutex_unlock(&q->mu);
	}
	pthread_mutex_lock(&q->mu);
	for (;;) {
		struct job *wills = NULL;
		while (!q->jobs && !q->stop && !wills) {
			if (q->deferred) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += RESTORE_POLL_MS * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&q->cv, &q->mu, &ts);
				deferred_check(q, &wills);
			} else {
				pthread_cond_wait(&q->cv, &q->mu);
			}
		}
		if (q->stop) {
			for (struct job *w = wills, *nx; w; w = nx) {
				nx = w->next;
				job_free(w);
			}
			break;
		}
		struct job *js = q->jobs;
		q->jobs = NULL;
		pthread_mutex_unlock(&q->mu);
		/* The wills of connections that died with their instance while
		 * their devices were already back elsewhere (here): once, as
		 * the dead owner's takeover would have. */
		for (struct job *w = wills, *nx; w; w = nx) {
			nx = w->next;
			state_publish(q->st, w->id, w->id_len, w->will); /* takes it */
			w->will = NULL;
			job_free(w);
		}
		if (js) {
			/* Give the broker a moment to restore the sessions (the
			 * restore acts run right after the jobs are queued). */
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
			restore_jobs(q, js);
		}
		pthread_mutex_lock(&q->mu);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* ---- lifecycle, metrics ---- */

struct state_queue *state_queue_new(struct state *st)
{
	struct state_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->st = st;
	q->seed = hash_process_seed();
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	atomic_store(&g_queue, q);
	return q;
}

int state_queue_start(struct state_queue *q)
{
	if (pthread_create(&q->th, NULL, restore_main, q) != 0)
		return -1;
	q->th_on = true;
	return 0;
}

void state_queue_stop(struct state_queue *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (q->th_on) {
		pthread_join(q->th, NULL);
		q->th_on = false;
	}
}

void state_queue_free(struct state_queue *q)
{
	if (!q)
		return;
	state_queue_stop(q);
	struct state_queue *me = q;
	atomic_compare_exchange_strong(&g_queue, &me, NULL);
	for (struct job *j = q->jobs, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	for (struct job *j = q->deferred, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < q->nmarkers; i++)
		free(q->markers[i].id);
	/* Running jobs may still have messages in the (stopped) broker: their
	 * tracks complete in broker_free() and reach j: leak them on purpose
	 * rather than free what a track points to. */
	for (size_t i = 0; i < q->nbuckets; i++)
		for (struct qs *s = q->tab[i], *nx; s; s = nx) {
			nx = s->next;
			pend_complete(s->pending);
			free(s->id);
			free(s);
		}
	free(q->tab);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

int state_queue_metrics_render(struct buf *out, struct state_queue *q)
{
	size_t sessions;
	pthread_mutex_lock(&q->mu);
	sessions = q->n;
	pthread_mutex_unlock(&q->mu);
	int rc = 0;
	rc |= prom_family(out, "kafkagate_state_queue_sessions", "gauge",
			  "Offline sessions here whose queue is also in Kafka");
	rc |= prom_u64(out, "kafkagate_state_queue_sessions", NULL, sessions);
	rc |= prom_family(out, "kafkagate_state_queue_messages_written_total", "counter",
			  "Queued messages written to this instance's queue topic");
	rc |= prom_u64(out, "kafkagate_state_queue_messages_written_total", NULL,
			      atomic_load(&q->spooled));
	rc |= prom_family(out, "kafkagate_state_queue_write_failed_total", "counter",
			  "Queued messages that could not be written (kept in memory only)");
	rc |= prom_u64(out, "kafkagate_state_queue_write_failed_total", NULL,
			      atomic_load(&q->failed));
	rc |= prom_family(out, "kafkagate_state_queue_restored_total", "counter",
			  "Messages read back from a queue topic after a restart or adoption");
	rc |= prom_u64(out, "kafkagate_state_queue_restored_total", NULL,
			      atomic_load(&q->restored));
	rc |= prom_family(out, "kafkagate_state_queue_restore_jobs_total", "counter",
			  "Sessions whose queue was read back");
	rc |= prom_u64(out, "kafkagate_state_queue_restore_jobs_total", NULL,
			      atomic_load(&q->restore_jobs));
	return rc;
}
