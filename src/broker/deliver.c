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
#include "broker/state_hooks.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

struct collect {
	struct worker *w;
	uint64_t origin;       /* the publishing session's serial, for No Local */
	const struct session *only; /* NULL, or the one session to deliver to */
};

static void collect_match(void *owner, uint32_t opts, void *ud)
{
	struct collect *k = ud;
	struct worker *w = k->w;

	if (k->only && owner != k->only)
		return;

	/* No Local: never back to the session that published it [MQTT-3.8.3-3].
	 * Dropped before the merge below: an overlapping subscription without
	 * No Local still delivers, with its own options only. */
	if ((opts & SUBOPT_NO_LOCAL) && k->origin &&
	    ((const struct session *)owner)->serial == k->origin)
		return;
	if (w->n_matches == w->cap_matches) {
		size_t cap = w->cap_matches ? w->cap_matches * 2 : 64;
		struct match *m = realloc(w->matches, cap * sizeof(*m));
		if (!m)
			return;
		w->matches = m;
		w->cap_matches = cap;
	}
	w->matches[w->n_matches++] = (struct match){ session_ref(owner), SUBOPT_QOS(opts),
						     (opts & SUBOPT_RAP) != 0, SUBOPT_ID(opts) };
}

static int cmp_match(const void *a, const void *b)
{
	const struct match *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

/* Folds the overlapping subscription b of the same session into a: one
 * copy at the highest QoS, RETAIN as published if either asks for it, and
 * every identifier (several, equal ones too, as 5.0 section 3.3.4 shows:
 * looked up when sent). */
static void merge_match(struct match *a, const struct match *b)
{
	if (b->qos > a->qos)
		a->qos = b->qos;
	a->rap |= b->rap;
	if (!a->subid)
		a->subid = b->subid;
	else if (b->subid)
		a->subid = DELIVER_SUBIDS_MANY;
}

/* deliver_publish() without the retained store: to every matching
 * subscription, or only to those of session only. */
static size_t publish_to(struct worker *w, struct msg *m, const struct session *only)
{
	struct broker *br = w->br;
	struct collect ck = { w, m->origin, only };

	w->n_matches = 0;
	pthread_rwlock_rdlock(&br->subs_lock);
	sub_trie_match(br->subs, m->topic, m->topic_len, collect_match, &ck);
	pthread_rwlock_unlock(&br->subs_lock);

	size_t n = w->n_matches;
	/* Overlapping subscriptions: one copy per session at the highest QoS. */
	if (n > 1) {
		qsort(w->matches, n, sizeof(*w->matches), cmp_match);
		size_t k = 0;
		for (size_t i = 1; i < n; i++) {
			if (w->matches[i].s == w->matches[k].s) {
				merge_match(&w->matches[k], &w->matches[i]);
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
		/* The one place a match becomes a delivery. RETAIN: as published
		 * with Retain As Published, else 0 [MQTT-3.3.1-12, MQTT-3.3.1-13]. */
		deliver_session(w, mt->s, m, m->qos < mt->qos ? m->qos : mt->qos,
				    mt->rap && m->retain, mt->subid);
		session_unref(mt->s);
	}
	w->n_matches = 0;
	return n + (only ? shared_publish_to(w, m, only) : shared_publish(w, m));
}

size_t deliver_publish(struct worker *w, struct msg *m)
{
	if (m->retain)
		broker_retain(w->br, m, true);
	return publish_to(w, m, NULL);
}

size_t deliver_publish_local(struct worker *w, struct msg *m, const struct session *only)
{
	return publish_to(w, m, only);
}

void deliver_session(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		     bool retain, uint32_t subid)
{
	struct broker *br = w->br;

	/* Only this worker can move a session away from itself: no lock. */
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx) {
		deliver_client(s->client, m, qos, retain, subid);
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
		struct inbox_item it = { .kind = INBOX_DELIVER, .a = qos, .b = retain, .c = subid,
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
	bool spooled = false;
	if (qos > 0 && !atomic_load(&s->discarded) &&
	    (why = limits_queue_push(w, s, msg_ref(m), qos, retain, false)) != 0) {
		msg_unref(m);
		dropped = ++s->queue_dropped;
		STAT_INC(w, queue_dropped);
	} else if (qos > 0 && !atomic_load(&s->discarded)) {
		struct mqueue_entry *e = mqueue_back(&s->queue);
		if (subid)
			e->subid = subid;
		/* With the state in Kafka the queue is kept there too; then the
		 * state layer completes m's track once Kafka has it. */
		bool owes = true;
		spooled = hooks_spool(br, s, &e->m, &owes, qos, retain);
		e->owes = spooled;
	}
	pthread_spin_unlock(&s->mu);
	/* Logged outside the lock (no I/O under it), at 1, 2, 4, 8... drops;
	 * s->id never changes, so reading it unlocked is safe. */
	if (dropped && (dropped & (dropped - 1)) == 0)
		log_warn_rl("offline queue full client=%s topic=%s dropped=%llu limit=%s",
			    log_q(s->id), log_q(m->topic), (unsigned long long)dropped,
			    why > 0 ? limits_name(why) : "out of memory");
	if (!spooled)
		msg_track_done(m);
}

/* The window toward c: limits.max_inflight, and never more unacknowledged
 * QoS 1/2 PUBLISHes than the client's Receive Maximum [MQTT-3.3.4-9]
 * (65535 for 3.1/3.1.1: the limit alone, as before MQTT 5). */
static uint32_t recv_max(const struct client *c)
{
	return c->recv_max ? c->recv_max : UINT16_MAX; /* 0 is refused at CONNECT */
}

static uint32_t window(const struct client *c)
{
	uint32_t lim = LIM(c->w->br, max_inflight);
	return recv_max(c) < lim ? recv_max(c) : lim;
}

/* The identifiers of every subscription of c's session that m matches:
 * the rare case of several (DELIVER_SUBIDS_MANY), read from the session's
 * set when the PUBLISH is written. No Local ones of the publisher left out,
 * as when matching. */
static uint16_t lookup_subids(const struct client *c, const struct msg *m, uint32_t *ids)
{
	const struct session *s = c->s;
	uint32_t pos = 0;
	uint16_t n = 0;

	for (const struct sub_entry *e; n < SEND_MAX_SUBIDS && (e = session_subs_next(&s->subs, &pos));) {
		if (!SUBOPT_ID(e->opts) || ((e->opts & SUBOPT_NO_LOCAL) && m->origin &&
							   m->origin == s->serial))
			continue;
		if (topic_matches(e->filter, e->len, m->topic, m->topic_len))
			ids[n++] = SUBOPT_ID(e->opts);
	}
	return n;
}

/* send_publish() with the identifiers the word subid stands for. */
static int publish(struct client *c, const struct msg *m, uint8_t qos, bool retain, uint16_t pid,
		   bool dup, uint32_t subid)
{
	uint32_t ids[SEND_MAX_SUBIDS];
	uint16_t n = 0;

	if (c->level == 5 && subid) {
		if (subid == DELIVER_SUBIDS_MANY) {
			n = lookup_subids(c, m, ids);
		} else {
			ids[0] = subid;
			n = 1;
		}
	}
	return send_publish(c, m, qos, retain, pid, dup, ids, n);
}

/* Takes the reference on m. */
static void send_window(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes,
			uint32_t subid)
{
	struct session *s = c->s;
	struct inflight_entry *e = NULL;
	uint16_t pid = inflight_next_pid(&s->out);
	if (pid == 0 || !(e = inflight_add(&s->out, m, pid, qos, retain, owes))) {
		if (owes)
			msg_track_done(m);
		msg_unref(m);
		STAT_INC(c->w, queue_dropped);
		return;
	}
	e->subid = subid;
	/* Expired, or too large for the client: never sent, and settled as
	 * delivered so that a downlink commit is not held by it
	 * [MQTT-3.1.2-25]. */
	if (publish(c, m, qos, retain, pid, false, subid) == SEND_DROPPED)
		inflight_remove(&s->out, e);
}

static void queue_or_drop(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes,
			  uint32_t subid)
{
	struct session *s = c->s;
	int why = limits_queue_push(c->w, s, msg_ref(m), qos, retain, owes);
	if (why == 0) {
		mqueue_back(&s->queue)->subid = subid;
		return;
	}
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

void deliver_client(struct client *c, struct msg *m, uint8_t qos, bool retain, uint32_t subid)
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
			publish(c, m, 0, retain, 0, false, subid);
		if (owes)
			msg_track_done(m);
		return;
	}
	if (over || s->queue.n > 0 || s->out.n >= window(c)) {
		queue_or_drop(c, m, qos, retain, owes, subid);
		return;
	}
	send_window(c, msg_ref(m), qos, retain, owes, subid);
}

/* Sends the in-flight entries deliver_resend() held back, oldest first,
 * while the client's Receive Maximum has room. */
static void send_held(struct client *c)
{
	struct inflight *f = &c->s->out;

	for (uint16_t i = 0; f->held > 0 && i < f->n && c->state == CL_ACTIVE; i++) {
		struct inflight_entry *e = &f->e[i];
		if (!e->held)
			continue;
		if ((uint32_t)(f->n - f->held) >= recv_max(c))
			return;
		e->held = false;
		f->held--;
		/* Its PUBREC came meanwhile: the PUBREL answered it. */
		if (e->state == INFL_WAIT_PUBCOMP)
			continue;
		int rc = publish(c, e->m, e->qos, e->retain, e->pid, true, e->subid);
		if (rc < 0)
			return;
		if (rc == SEND_DROPPED) {
			inflight_remove(f, e);
			i--;
		}
	}
}

void deliver_pump(struct client *c)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	struct mqueue_entry e;

	if (c->state != CL_ACTIVE || !s)
		return;
	if (s->out.held)
		send_held(c);
	while (c->state == CL_ACTIVE && s->queue.n > 0 && s->out.n < window(c) &&
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
			publish(c, e.m, 0, e.retain, 0, false, e.subid);
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
		} else {
			send_window(c, e.m, e.qos, e.retain, e.owes, e.subid);
		}
	}
}

void deliver_resend(struct client *c)
{
	struct session *s = c->s;
	struct inflight *f = &s->out;
	uint32_t sent = 0;

	/* Held marks are per connection: this one decides them anew. */
	for (uint16_t i = 0; i < f->n; i++)
		f->e[i].held = false;
	f->held = 0;
	for (uint16_t i = 0; i < f->n; i++) {
		struct inflight_entry *e = &f->e[i];
		/* The session may have been someone else's: resend only what this
		 * identity may read (a PUBREL carries no message: always). */
		if (e->state != INFL_WAIT_PUBCOMP && auth_acl_on(c->w->br->auth) &&
		    !auth_may_read(c, e->m)) {
			inflight_remove(f, e);
			i--;
			continue;
		}
		int rc;
		if (e->state == INFL_WAIT_PUBCOMP) {
			rc = send_pubrel(c, e->pid);
		} else if (sent >= recv_max(c)) {
			/* A client that now allows fewer than we have in flight
			 * [MQTT-3.3.4-9]: the rest waits for its acknowledgements. */
			e->held = true;
			f->held++;
			continue;
		} else {
			rc = publish(c, e->m, e->qos, e->retain, e->pid, true, e->subid);
			if (rc == SEND_DROPPED) { /* too large for the client now [MQTT-3.1.2-24] */
				inflight_remove(f, e);
				i--;
				continue;
			}
		}
		if (rc < 0)
			return;
		sent++;
	}
}
