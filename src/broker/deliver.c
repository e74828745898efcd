/*
 * deliver.c - a published message to its subscribers; see deliver.h.
 *
 * Order: a session attached to this worker gets the message at once; one
 * attached elsewhere through that worker's inbox; one parked but still
 * settling (takeover.c) through the inbox of the worker that parked it, so
 * that it lands in the session queue behind what that inbox still holds.
 *
 * Read access (ACL) is checked where a message leaves for a client:
 * deliver_client, deliver_pump and deliver_resend, on the owner worker.
 */
#include <stdlib.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/sub_trie.h"

static void collect_match(void *owner, uint32_t qos, void *ud)
{
	struct worker *w = ud;
	if (w->n_matches == w->cap_matches) {
		size_t cap = w->cap_matches ? w->cap_matches * 2 : 64;
		struct match *m = realloc(w->matches, cap * sizeof(*m));
		if (!m)
			return;
		w->matches = m;
		w->cap_matches = cap;
	}
	w->matches[w->n_matches++] = (struct match){ session_ref(owner), (uint8_t)qos };
}

static int cmp_match(const void *a, const void *b)
{
	const struct match *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

void deliver_publish(struct worker *w, struct msg *m)
{
	struct broker *br = w->br;

	if (m->retain)
		broker_retain(br, m);

	w->n_matches = 0;
	pthread_rwlock_rdlock(&br->subs_lock);
	sub_trie_match(br->subs, m->topic, m->topic_len, collect_match, w);
	pthread_rwlock_unlock(&br->subs_lock);

	size_t n = w->n_matches;
	/* Overlapping subscriptions: one copy per session at the highest QoS. */
	if (n > 1) {
		qsort(w->matches, n, sizeof(*w->matches), cmp_match);
		size_t k = 0;
		for (size_t i = 1; i < n; i++) {
			if (w->matches[i].s == w->matches[k].s) {
				if (w->matches[i].qos > w->matches[k].qos)
					w->matches[k].qos = w->matches[i].qos;
				session_unref(w->matches[i].s);
			} else {
				w->matches[++k] = w->matches[i];
			}
		}
		n = k + 1;
	}
	if (m->track)
		atomic_fetch_add(&m->track->remaining, (int)n);
	for (size_t i = 0; i < n; i++) {
		struct match *mt = &w->matches[i];
		deliver_session(w, mt->s, m, m->qos < mt->qos ? m->qos : mt->qos, false);
		session_unref(mt->s);
	}
	w->n_matches = 0;
	shared_publish(w, m);
}

void deliver_session(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		     bool retain)
{
	struct broker *br = w->br;

	/* Only this worker can move a session away from itself: no lock. */
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx) {
		deliver_client(s->client, m, qos, retain);
		return;
	}
	/* Reading the owner and posting to its inbox happen under mu, so a
	 * takeover (which parks under mu, then fences that inbox) sees every
	 * delivery posted before it: messages to one session keep their order. */
	pthread_spin_lock(&s->mu);
	int owner = atomic_load_explicit(&s->owner, memory_order_acquire);
	/* Parked but not settled: queue behind what the old owner still holds. */
	if (owner < 0 && s->settling && s->last_owner != w->idx) {
		owner = s->last_owner;
		s->late++;
	}
	if (owner >= 0) {
		struct inbox *ib = &br->workers[owner].inbox;
		bool drop = false;
		if (inbox_depth(ib) > INBOX_SOFT_CAP) {
			/* The owner is behind: slow our publishers down. */
			w->backlogged = true;
			drop = qos == 0;
		}
		struct inbox_item it = { .kind = INBOX_DELIVER, .a = qos, .b = retain,
					 .p1 = session_ref(s), .p2 = msg_ref(m) };
		if (drop || worker_post(&br->workers[owner], &it) < 0) {
			pthread_spin_unlock(&s->mu);
			session_unref(s);
			msg_unref(m);
			STAT_INC(w, qos0_dropped);
			msg_track_done(m);
			return;
		}
		pthread_spin_unlock(&s->mu);
		return;
	}
	/* Offline: QoS 0 is not kept for absent clients (MQTT-3.1.2-5 allows either).
	 * A tracked message counts as delivered once queued here. */
	uint64_t dropped = 0;
	int why = 0;
	if (qos > 0 && !atomic_load(&s->discarded) &&
	    (why = limits_queue_push(w, s, msg_ref(m), qos, retain, false)) != 0) {
		msg_unref(m);
		dropped = ++s->queue_dropped;
		STAT_INC(w, queue_dropped);
	}
	pthread_spin_unlock(&s->mu);
	/* Logged outside the lock (no I/O under it), at 1, 2, 4, 8... drops;
	 * s->id never changes, so reading it unlocked is safe. */
	if (dropped && (dropped & (dropped - 1)) == 0)
		log_warn_rl("offline queue full client=%s topic=%s dropped=%llu limit=%s",
			    log_q(s->id), log_q(m->topic), (unsigned long long)dropped,
			    why > 0 ? limits_name(why) : "out of memory");
	msg_track_done(m);
}

/* Takes the reference on m. */
static void send_window(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes)
{
	struct session *s = c->s;
	uint16_t pid = inflight_next_pid(&s->out);
	if (pid == 0 || !inflight_add(&s->out, m, pid, qos, retain, owes)) {
		if (owes)
			msg_track_done(m);
		msg_unref(m);
		STAT_INC(c->w, queue_dropped);
		return;
	}
	send_publish(c, m, qos, retain, pid, false);
}

static void queue_or_drop(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes)
{
	struct session *s = c->s;
	int why = limits_queue_push(c->w, s, msg_ref(m), qos, retain, owes);
	if (why != 0) {
		if (owes)
			msg_track_done(m);
		msg_unref(m);
		s->queue_dropped++;
		STAT_INC(c->w, queue_dropped);
		if ((s->queue_dropped & (s->queue_dropped - 1)) == 0) /* log 1, 2, 4, 8... */
			log_warn_rl("queue full client=%s topic=%s dropped=%llu limit=%s", log_q(s->id),
				    log_q(m->topic), (unsigned long long)s->queue_dropped,
				    why > 0 ? limits_name(why) : "out of memory");
	}
}

void deliver_client(struct client *c, struct msg *m, uint8_t qos, bool retain)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	bool owes = m->track != NULL;

	if (c->state != CL_ACTIVE || !s ||
	    (auth_acl_on(br->auth) && !auth_may_read(c, m))) {
		if (owes)
			msg_track_done(m);
		return;
	}
	bool over = client_outq(c) >= LIM(br, max_output_bytes);
	if (qos == 0) {
		if (over)
			STAT_INC(c->w, qos0_dropped);
		else
			send_publish(c, m, 0, retain, 0, false);
		if (owes)
			msg_track_done(m);
		return;
	}
	if (over || s->queue.n > 0 || s->out.n >= LIM(br, max_inflight)) {
		queue_or_drop(c, m, qos, retain, owes);
		return;
	}
	send_window(c, msg_ref(m), qos, retain, owes);
}

void deliver_pump(struct client *c)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	struct mqueue_entry e;

	if (c->state != CL_ACTIVE || !s)
		return;
	while (c->state == CL_ACTIVE && s->queue.n > 0 && s->out.n < LIM(br, max_inflight) &&
	       client_outq(c) < LIM(br, max_output_bytes)) {
		mqueue_pop(&s->queue, &e);
		/* Queued under another identity or ACL, maybe: checked as it leaves. */
		if (auth_acl_on(br->auth) && !auth_may_read(c, e.m)) {
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
			continue;
		}
		if (e.qos == 0) {
			send_publish(c, e.m, 0, e.retain, 0, false);
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
		} else {
			send_window(c, e.m, e.qos, e.retain, e.owes);
		}
	}
}

void deliver_resend(struct client *c)
{
	struct session *s = c->s;

	for (uint16_t i = 0; i < s->out.n; i++) {
		struct inflight_entry *e = &s->out.e[i];
		/* The session may have been someone else's: resend only what this
		 * identity may read (a PUBREL carries no message: always). */
		if (e->state != INFL_WAIT_PUBCOMP && auth_acl_on(c->w->br->auth) &&
		    !auth_may_read(c, e->m)) {
			inflight_remove(&s->out, e);
			i--;
			continue;
		}
		int rc = e->state == INFL_WAIT_PUBCOMP
				 ? send_pubrel(c, e->pid)
				 : send_publish(c, e->m, e->qos, e->retain, e->pid, true);
		if (rc < 0)
			return;
	}
}
