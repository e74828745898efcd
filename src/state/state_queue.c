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

/* A restore job: one session, one queue topic. */
struct job {
	struct job *next;
	struct state_queue *q;
	char inst[STATE_ID_MAX + 1];
	char owner[STATE_ID_MAX + 1]; /* deferred: the owner that may hand over */
	int64_t deadline;        /* deferred: monotonic ms it runs anyway */
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
	while (pend) {
		struct spool *nx = pend->next;
		complete_orig(pend);
		spool_unref(pend);
		pend = nx;
	}
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
	while (pend) {
		struct spool *nx = pend->next;
		complete_orig(pend);
		spool_unref(pend);
		pend = nx;
	}
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
	if (q->jobs_open)
		q->jobs_open--;
	pthread_mutex_unlock(&q->mu);
	if (rewrite && !atomic_load(&q->st->stopping))
		write_q(q, j->id, j->id_len);
	while (pend) {
		struct spool *nx = pend->next;
		complete_orig(pend);
		spool_unref(pend);
		pend = nx;
	}
	free(j);
}

void state_queue_restore(struct state_queue *q, const char *id, uint16_t id_len,
			 const char *inst, int64_t off, bool own)
{
	struct job *j = calloc(1, sizeof(*j) + id_len + 1);
	if (!j)
		return;
	j->q = q;
	snprintf(j->inst, sizeof(j->inst), "%s", inst);
	j->off = off;
	j->id_len = id_len;
	memcpy(j->id, id, id_len);
	pthread_mutex_lock(&q->mu);
	struct qs *s = qs_find(q, id, id_len, true);
	if (!s || q->stop) {
		pthread_mutex_unlock(&q->mu);
		free(j);
		return;
	}
	s->restoring++;
	if (own)
		q->jobs_open++;
	j->next = q->jobs;
	q->jobs = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	atomic_fetch_add_explicit(&q->restore_jobs, 1, memory_order_relaxed);
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
			       const char *inst, int64_t off, const char *owner)
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
			write_q(q, id, id_len);
			return;
		}
	pthread_mutex_unlock(&q->mu);
	struct job *j = calloc(1, sizeof(*j) + id_len + 1);
	if (!j)
		return;
	j->q = q;
	snprintf(j->inst, sizeof(j->inst), "%s", inst);
	snprintf(j->owner, sizeof(j->owner), "%s", owner);
	j->off = off;
	j->id_len = id_len;
	memcpy(j->id, id, id_len);
	int lease = q->st->cfg->state.lease_ms > 0 ? q->st->cfg->state.lease_ms : 10000;
	j->deadline = now + lease + 5000;
	pthread_mutex_lock(&q->mu);
	struct qs *s = qs_find(q, id, id_len, true);
	if (!s || q->stop) {
		pthread_mutex_unlock(&q->mu);
		free(j);
		return;
	}
	s->restoring++;
	j->next = q->deferred;
	q->deferred = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void state_queue_handover_done(struct state_queue *q, const char *id, uint16_t id_len)
{
	bool rewrite = false, found = false;
	pthread_mutex_lock(&q->mu);
	for (struct job **pp = &q->deferred; *pp; pp = &(*pp)->next)
		if ((*pp)->id_len == id_len && memcmp((*pp)->id, id, id_len) == 0) {
			struct job *j = *pp;
			*pp = j->next;
			rewrite = job_cancel_locked(q, j);
			free(j);
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
	if (rewrite && !atomic_load(&q->st->stopping))
		write_q(q, id, id_len);
}

/* Deferred jobs whose owner died (or did not hand over in time) run now.
 * mu held. */
static void deferred_check(struct state_queue *q)
{
	int64_t now = state_now_ms();
	for (struct job **pp = &q->deferred; *pp;) {
		struct job *j = *pp;
		bool dead = !state_instance_alive(q->st, j->owner);
		if (dead || now >= j->deadline) {
			*pp = j->next;
			log_info("state queue: client=%.*s: %s did not hand its queue over (%s): "
				 "reading it back from %s", (int)j->id_len, j->id, j->owner,
				 dead ? "not alive" : "timed out", j->inst);
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

/* Reads <prefix>.queue.<inst> partition 0 from the lowest offset of the
 * jobs (all of that inst) to the end it has now, injecting each record
 * addressed to one of them at or after its offset. */
static void restore_topic(struct state_queue *q, struct job *js)
{
	struct state *st = q->st;
	char topic[STATE_TOPIC_MAX + 1], e[256], gid[STATE_TOPIC_MAX + 16];
	int64_t from = INT64_MAX;
	size_t njobs = 0, injected = 0;

	for (struct job *j = js; j; j = j->next, njobs++)
		if (j->off < from)
			from = j->off;
	snprintf(topic, sizeof(topic), "%s.queue.%s", st->cfg->state.topic_prefix ?
		 st->cfg->state.topic_prefix : "kafkagate", js->inst);
	snprintf(gid, sizeof(gid), "%s.restore", st->t_queue);
	rd_kafka_conf_t *conf = state_consumer_conf(st, e, sizeof(e));
	rd_kafka_t *rk = NULL;
	if (!conf || rd_kafka_conf_set(conf, "group.id", gid, e, sizeof(e)) != RD_KAFKA_CONF_OK ||
	    !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		if (conf)
			rd_kafka_conf_destroy(conf);
		log_error("state queue: restore of %s not started: %s", topic, e);
		return;
	}
	rd_kafka_poll_set_consumer(rk);
	int64_t lo = 0, hi = 0;
	int64_t end = state_now_ms() + RESTORE_READ_MS;
	rd_kafka_resp_err_t err;
	while ((err = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 5000)) &&
	       state_now_ms() < end && !atomic_load(&st->stopping))
		;
	if (err) {
		log_warn("state queue: restore of %s: no end offset (%s): nothing restored", topic,
			 rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return;
	}
	if (from < lo) {
		log_warn("state queue: restore of %s from offset %" PRId64 ": records before %" PRId64
			 " are gone (retention.ms)", topic, from, lo);
		from = lo;
	}
	if (strcmp(js->inst, st->instance_id) == 0) {
		pthread_mutex_lock(&q->mu);
		if (hi > q->next_off)
			q->next_off = hi;
		pthread_mutex_unlock(&q->mu);
	}
	/* The sessions must be able to keep what is injected (their adopt or
	 * claim read back here): else it would stay in memory only. */
	for (struct job *j = js; j; j = j->next)
		while (!state_sessions_spool_ok(st->sessions, j->id, j->id_len) &&
		       state_now_ms() < end - RESTORE_READ_MS / 2 && !atomic_load(&st->stopping)) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = from;
	rd_kafka_assign(rk, tp);
	rd_kafka_topic_partition_list_destroy(tp);
	int64_t at = from;
	while (at < hi && state_now_ms() < end && !atomic_load(&st->stopping)) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, RESTORE_POLL_MS);
		if (!rkm)
			continue;
		if (rkm->err) {
			if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
				at = rkm->offset > at ? rkm->offset : at;
			else
				log_warn_rl("state queue: restore of %s: %s", topic,
					    rd_kafka_message_errstr(rkm));
			rd_kafka_message_destroy(rkm);
			continue;
		}
		at = rkm->offset + 1;
		const void *to;
		size_t to_len;
		const char *why;
		struct msg *m = state_bus_msg_of(rkm, &to, &to_len, &why);
		struct job *j = NULL;
		if (m && to)
			for (j = js; j; j = j->next)
				if (j->id_len == to_len && memcmp(j->id, to, to_len) == 0 &&
				    rkm->offset >= j->off)
					break;
		struct rtrack *rt = j ? malloc(sizeof(*rt)) : NULL;
		if (!rt) {
			msg_unref(m);
			rd_kafka_message_destroy(rkm);
			continue;
		}
		rt->j = j;
		atomic_init(&rt->track.remaining, 1);
		rt->track.kept = false;
		rt->track.done = restore_track_done;
		m->track = &rt->track;
		atomic_fetch_add(&j->out, 1);
		injected++;
		/* To the session here; to its owner's inbox if it moved since
		 * (the track then completes once that record is written). */
		state_bus_deliver_to(st->bus, m, to, to_len);
		rd_kafka_message_destroy(rkm);
	}
	if (at < hi)
		log_warn("state queue: restore of %s stopped at offset %" PRId64 " of %" PRId64
			 ": the sessions keep their old queue", topic, at, hi);
	rd_kafka_destroy(rk);
	atomic_fetch_add_explicit(&q->restored, injected, memory_order_relaxed);
	log_info("state queue: restored %zu messages for %zu sessions from %s offsets %" PRId64
		 "..%" PRId64, injected, njobs, topic, from, hi);
	/* Each job finishes once its messages are written again. A job cut
	 * short keeps its session naming the old queue: it stays running. */
	for (struct job *j = js, *nx; j; j = nx) {
		nx = j->next;
		pthread_mutex_lock(&q->mu);
		j->next = q->running;
		q->running = j;
		pthread_mutex_unlock(&q->mu);
		if (at < hi)
			continue;
		atomic_store(&j->read_done, true);
		/* The count is raised by one while we look, so that the last
		 * message cannot finish the job twice. */
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
		while (!q->jobs && !q->stop) {
			if (q->deferred) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += RESTORE_POLL_MS * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&q->cv, &q->mu, &ts);
				deferred_check(q);
			} else {
				pthread_cond_wait(&q->cv, &q->mu);
			}
		}
		if (q->stop)
			break;
		/* Every waiting job of one queue topic together. */
		struct job *js = NULL, **pp = &q->jobs;
		const char *inst = q->jobs->inst;
		char first[STATE_ID_MAX + 1];
		snprintf(first, sizeof(first), "%s", inst);
		while (*pp) {
			struct job *j = *pp;
			if (strcmp(j->inst, first) == 0) {
				*pp = j->next;
				j->next = js;
				js = j;
			} else {
				pp = &j->next;
			}
		}
		pthread_mutex_unlock(&q->mu);
		/* Give the broker a moment to restore the sessions (the
		 * restore acts run right after the jobs are queued). */
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		restore_topic(q, js);
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
		free(j);
	}
	for (struct job *j = q->deferred, *nx; j; j = nx) {
		nx = j->next;
		free(j);
	}
	for (size_t i = 0; i < q->nmarkers; i++)
		free(q->markers[i].id);
	/* Running jobs may still have messages in the (stopped) broker: their
	 * tracks complete in broker_free() and reach j: leak them on purpose
	 * rather than free what a track points to. */
	for (size_t i = 0; i < q->nbuckets; i++)
		for (struct qs *s = q->tab[i], *nx; s; s = nx) {
			nx = s->next;
			for (struct spool *p = s->pending, *pn; p; p = pn) {
				pn = p->next;
				complete_orig(p);
				spool_unref(p);
			}
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
