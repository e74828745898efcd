/*
 * takeover.c - a session moving between connections and workers.
 *
 * Protocol. A client id has at most one session (the directory, under
 * dir_lock) and a session at most one attached client (s->owner = that
 * client's worker, under s->mu). A new connection for an id that is attached
 * elsewhere, or parked but not yet settled, does not touch the session: its
 * worker posts INBOX_TAKEOVER to the old owner (for a parked session, to the
 * worker that last owned it) and pauses the new connection (CL_WAIT_TAKEOVER).
 *
 *   new worker N                      old worker O
 *   takeover_attach: owner == O  -->  INBOX_TAKEOVER: takeover_request
 *   (paused)                          closes its client: takeover_park parks s
 *                                     and posts INBOX_SETTLE to O itself,
 *                                     behind the deliveries already queued;
 *                                     posts INBOX_FENCE to O itself
 *                                     INBOX_SETTLE: takeover_settle (until no
 *                                     late deliveries arrived: s->settling = 0)
 *                                     INBOX_FENCE: takeover_fence
 *   INBOX_TAKEOVER_DONE  <----------  
 *   takeover_resume: attach again from the start
 *
 * While s is parked and settling, deliver_session() routes new deliveries
 * through O's inbox too (s->late counts them), so the session queue receives
 * everything in publication order, and nobody attaches until it settled.
 * The new connection retries the attach from the start, so concurrent
 * reconnects take turns, and messages to one session keep their order across
 * the move (MQTT-4.6.0-6; it_session.c: test_no_loss_across_takeovers).
 * Takes dir_lock and s->mu (lock order in broker_int.h).
 */
#include <stdlib.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/state_hooks.h"
#include "broker/takeover.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* Takes s out of the directory and discards it. Caller holds dir_lock. */
static void dir_discard(struct broker *br, struct session *s)
{
	session_ref(s); /* s outlives the directory's reference */
	session_dir_del(&br->dir, s);
	broker_discard_session(br, s);
	session_unref(s);
}

void takeover_unlist(struct broker *br, struct session *s)
{
	if (s->parked_listed) {
		TAILQ_REMOVE(&br->parked, s, park_link);
		s->parked_listed = false;
	}
	session_heap_del(&br->timers, s);
	s->expire_ms = 0;
}

/* The will m ready to publish: its Message Expiry Interval, if it had one,
 * counts from now (5.0 3.1.3.2.4). Returns m. */
static struct msg *will_arm(struct msg *m, bool expires, uint32_t expiry_s)
{
	if (expires)
		m->expires_ms = util_wall_ms() + (int64_t)expiry_s * 1000;
	return m;
}

/* Parks the MQTT 5 session s of c (dir_lock held, s in the directory and
 * offline): its own deadline, and the will when it waits for its Will
 * Delay Interval (delay_will: the ACL allowed it, asked before the lock),
 * which ends early when the session does [MQTT-3.1.3-9], 5.0 3.1.3.2.2.
 * Both on the timer heap. Returns 0, or -1 when the heap could not grow:
 * the session then lives until its client comes back, and the will is
 * published at the close instead (the caller logs, outside the lock). */
static int park5(struct broker *br, struct client *c, struct session *s, bool delay_will)
{
	int64_t now = s->parked_ms;
	uint32_t exp = c->session_expiry, will_exp = exp;

	s->expiry_s = exp;
	s->expire_ms = exp == UINT32_MAX ? 0 : now + (int64_t)exp * 1000;
	if (c->m5 & CL5_HANDOVER) {
		/* Taken over by a connection that resumes it [MQTT-3.1.4-4]: the
		 * session goes on even with expiry 0; if that connection never
		 * attaches, it ends after connect_timeout. Its will waits for the
		 * delay alone (the new connection cancels it). */
		if (exp == 0)
			s->expire_ms = now + (int64_t)LIM(br, connect_timeout_ms);
		will_exp = UINT32_MAX;
	}
	if (delay_will) {
		uint32_t d = c->will_delay < will_exp ? c->will_delay : will_exp;
		s->will = c->will;
		s->will_expires = c->m5 & CL5_WILL_EXPIRY;
		s->will_expiry = c->will_expiry;
		s->will_due_ms = now + (int64_t)d * 1000;
		c->will = NULL;
		c->publish_will = false;
	}
	s->due_ms = s->will ? s->will_due_ms : s->expire_ms;
	if (s->will && s->expire_ms && s->expire_ms < s->due_ms)
		s->due_ms = s->expire_ms;
	if (s->due_ms && session_heap_push(&br->timers, s) < 0) {
		s->expire_ms = 0;
		if (s->will) {
			c->will = s->will;
			c->publish_will = true;
			s->will = NULL;
		}
		return -1;
	}
	return 0;
}

int takeover_attach(struct client *c)
{
	struct worker *w = c->w;
	struct broker *br = w->br;
	struct session *s;
	bool present = false;

	for (;;) {
		pthread_mutex_lock(&br->dir_lock);
		s = session_dir_find(&br->dir, c->id, c->id_len);
		if (!s)
			break;
		pthread_spin_lock(&s->mu);
		int owner = atomic_load_explicit(&s->owner, memory_order_acquire);
		int last = s->last_owner;
		bool settling = s->settling;
		pthread_spin_unlock(&s->mu);
		if (owner == w->idx) {
			/* The older connection is ours: close it (which parks the
			 * session) and go round again to fence our own inbox. */
			struct client *old = s->client;
			pthread_mutex_unlock(&br->dir_lock);
			log_info_rl("conn takeover client=%s addr=%s old_addr=%s", log_q(c->id), client_peer(c),
				 client_peer(old));
			if (!c->clean)
				old->m5 |= CL5_HANDOVER;
			old->st |= CLST_QUIET; /* c's claim told the state layer */
			/* [MQTT-3.1.4-3]: DISCONNECT 0x8E to an MQTT 5 client. */
			client_close_rc(old, "session taken over", true, MQTT_RC_SESSION_TAKEN_OVER);
			continue;
		}
		/* Offline and settled, or a clean start that discards it: attach. */
		if (owner < 0 && (!settling || c->clean))
			break;
		struct inbox_item it = { .kind = INBOX_TAKEOVER, .a = (uint8_t)w->idx,
					 .b = !c->clean, .u = c->conn_id, .p1 = session_ref(s) };
		int target = owner >= 0 ? owner : last;
		pthread_mutex_unlock(&br->dir_lock);
		c->state = CL_WAIT_TAKEOVER;
		client_update_read(c);
		if (worker_post(&br->workers[target], &it) < 0) {
			session_unref(s);
			client_close(c, "out of memory", false);
			return -1;
		}
		return 0;
	}

	/* A clean start discards the old session; so does an expired one that
	 * the sweep (takeover_expire) has not reached yet. */
	int64_t ttl = (int64_t)LIM(br, session_expiry) * 1000, now = util_now_ms();
	bool expired = s && ((s->parked_listed && ttl > 0 && now - s->parked_ms >= ttl) ||
			     (s->expire_ms && now >= s->expire_ms));
	struct msg *late_will = NULL;
	if (s && s->will) {
		/* A delayed will: a new connection before its delay passed means
		 * it is never sent [MQTT-3.1.3-9]; one whose time came before the
		 * sweep reached it is still owed. */
		if (now >= s->will_due_ms)
			late_will = will_arm(s->will, s->will_expires, s->will_expiry);
		else
			msg_unref(s->will);
		s->will = NULL;
	}
	if (s && (c->clean || expired)) {
		if (expired)
			atomic_fetch_add_explicit(&br->sessions_expired, 1, memory_order_relaxed);
		dir_discard(br, s);
		s = NULL;
	}
	if (s) {
		present = true;
		takeover_unlist(br, s); /* back before it expired: it lives on */
	} else {
		s = session_new(c->id, c->id_len, c->clean);
		if (!s || session_dir_add(&br->dir, s) < 0) {
			pthread_mutex_unlock(&br->dir_lock);
			session_unref(s);
			if (late_will) {
				hooks_will(w, late_will, c->id, c->id_len);
				msg_unref(late_will);
			}
			send_connack(c, MQTT_CONNACK_UNAVAILABLE, false);
			client_close(c, "out of memory", false);
			return -1;
		}
		session_unref(s); /* the directory holds it now */
	}
	pthread_spin_lock(&s->mu);
	s->client = c;
	s->level = c->level;
	atomic_store_explicit(&s->owner, w->idx, memory_order_release);
	pthread_spin_unlock(&s->mu);
	c->s = session_ref(s);
	pthread_mutex_unlock(&br->dir_lock);
	atomic_fetch_add_explicit(&br->sessions_online, 1, memory_order_relaxed);
	atomic_store_explicit(&s->limits_logged, 0, memory_order_relaxed);
	/* One copy of the id per connection is enough: borrow the session's
	 * while attached (client_detach_session() takes a copy back). */
	free(c->id);
	c->id = s->id;

	c->state = CL_ACTIVE;
	int sent = send_connack(c, MQTT_CONNACK_ACCEPTED, present);
	if (late_will) {
		/* After the CONNACK: c may be subscribed to it [MQTT-3.2.0-2]. */
		hooks_will(w, late_will, c->id, c->id_len);
		msg_unref(late_will);
	}
	if (sent < 0)
		return -1;
	static struct log_limit lim = LOG_LIMIT("conn open", 200, 2000);
	log_limited(&lim, LVL_INFO, false,
		    "conn open client=%s addr=%s proto=%u clean=%d keepalive=%u session_present=%d",
		    log_q(c->id), client_peer(c), c->level, c->clean, c->keepalive, present);
	if (present) {
		deliver_resend(c);
		deliver_pump(c);
	}
	client_update_read(c); /* c may have been paused for a takeover or a password */
	return 0;
}

/* Parks the session (clean session 0) or discards it (clean session 1). */
void takeover_park(struct client *c)
{
	struct session *s = c->s;
	struct broker *br = c->w->br;

	if (!s) {
		if (c->st & (CLST_WAIT | CLST_CLAIMED))
			hooks_abandon(c); /* closed before its claim was answered or
					     before it attached */
		return;
	}
	c->s = NULL;
	if (c->id == s->id)
		c->id = util_strdup_n(s->id, s->id_len); /* NULL logs as "-" */
	shared_park(c->w, s);
	/* MQTT 5: the session lives for its Session Expiry Interval (0: ends
	 * now); 3.1.1: clean session 0 lives for limits.session_expiry. */
	bool ends = c->level == 5 ? c->session_expiry == 0 && !(c->m5 & CL5_HANDOVER) : c->clean;
	if (c->st & CLST_KICKED)
		hooks_handover(c->w->br, s); /* the new owner gets what s holds */
	else if (!ends)
		hooks_spool_session(c->w->br, s); /* it outlives us: into Kafka too */
	/* Offline now: what waits in the session counts as queued (but a copy
	 * Kafka keeps waits for the client's acknowledgement). */
	inflight_settle(&s->out);
	mqueue_settle(&s->queue);
	/* Deliveries other workers posted to our inbox while we owned s are
	 * still ahead of us: until we reach INBOX_SETTLE (posted behind them),
	 * new deliveries are routed through our inbox too, so that the session
	 * queue receives everything in order. */
	struct inbox_item it = { .kind = INBOX_SETTLE, .p1 = session_ref(s) };
	pthread_spin_lock(&s->mu);
	atomic_store_explicit(&s->owner, -1, memory_order_release);
	s->last_owner = c->w->idx;
	s->client = NULL;
	s->settling = worker_post(c->w, &it) == 0;
	pthread_spin_unlock(&s->mu);
	if (!s->settling)
		session_unref(s);
	atomic_fetch_sub_explicit(&br->sessions_online, 1, memory_order_relaxed);
	bool delay_will = false;
	if (c->st & CLST_KICKED) {
		/* Another instance owns the id: the session goes, and a delayed
		 * will is never sent, as when a new connection comes within the
		 * delay [MQTT-3.1.3-9]; an immediate one goes out at the close. */
		ends = true;
		if (c->level == 5 && c->will_delay > 0)
			c->publish_will = false;
	}
	/* The state layer hears of it unless a newer connection's claim (or
	 * the kick) already said so. */
	bool tell = c->w->br->st && !(c->st & CLST_QUIET);
	bool told_park = false, told_end = false;
	struct msg *park_will = NULL;
	uint32_t park_expiry = 0, park_delay = 0;
	if (!ends && c->level == 5 && c->publish_will && c->will_delay > 0 && c->will) {
		/* The ACL decides now, while the client is at hand, and before
		 * dir_lock (it may log). A denied will is not published later. */
		delay_will = auth_may_publish_will(c);
		if (!delay_will)
			c->publish_will = false;
	}
	int timer_lost = 0;
	if (!ends) {
		/* The expiry counts from now (takeover_expire). Since mu was
		 * released a clean start may have discarded s, or (only if the
		 * settle item could not be posted) a client attached it: the
		 * checks see both. */
		pthread_mutex_lock(&br->dir_lock);
		if (!atomic_load(&s->discarded) && !s->parked_listed && !s->heap_idx &&
		    atomic_load_explicit(&s->owner, memory_order_acquire) < 0 &&
		    session_dir_find(&br->dir, s->id, s->id_len) == s) {
			s->parked_ms = util_now_ms();
			if (c->level == 5)
				timer_lost = park5(br, c, s, delay_will);
			else {
				TAILQ_INSERT_TAIL(&br->parked, s, park_link);
				s->parked_listed = true;
			}
			if (tell) {
				/* Read under the lock: the sweep may take s->will. */
				told_park = true;
				park_expiry = c->level == 5 ? c->session_expiry
							    : LIM(br, session_expiry);
				if (s->will) {
					park_will = msg_ref(s->will);
					park_delay = (uint32_t)((s->will_due_ms - s->parked_ms) / 1000);
				}
			}
		} else if (c->level == 5 && c->will_delay > 0) {
			/* A new connection for this id already took or discarded the
			 * session: within the delay, so the will is never sent
			 * [MQTT-3.1.2-8]. */
			c->publish_will = false;
		}
		pthread_mutex_unlock(&br->dir_lock);
		if (timer_lost)
			log_warn_rl("session timer lost client=%s reason=\"out of memory\"",
				    log_q(s->id));
	} else {
		pthread_mutex_lock(&br->dir_lock);
		if (session_dir_find(&br->dir, s->id, s->id_len) == s) {
			dir_discard(br, s);
			told_end = tell;
		}
		pthread_mutex_unlock(&br->dir_lock);
	}
	if (told_park) {
		hooks_parked(br, s, park_expiry, park_will, park_delay);
		msg_unref(park_will);
	} else if (told_end) {
		hooks_ended(br, s);
	}
	session_unref(s);
}

void takeover_resume(struct worker *w, uint64_t conn_id)
{
	struct client *c = worker_client(w, conn_id);

	if (!c || c->state != CL_WAIT_TAKEOVER)
		return;
	c->state = CL_NEW;
	takeover_attach(c);
}

void takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id,
		      bool resume)
{
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx && s->client) {
		struct client *old = s->client;
		if (resume)
			old->m5 |= CL5_HANDOVER;
		old->st |= CLST_QUIET; /* the new connection's claim told the state layer */
		log_info_rl("conn takeover client=%s old_addr=%s", log_q(s->id), client_peer(old));
		client_close_rc(old, "session taken over", true, MQTT_RC_SESSION_TAKEN_OVER);
	}
	/* Closing parked s and queued INBOX_SETTLE behind the deliveries still
	 * in our inbox; a fence posted to ourselves now comes after that, so the
	 * answer leaves once s is settled. */
	struct inbox_item it = { .kind = INBOX_FENCE, .a = (uint8_t)from, .u = conn_id };
	if (worker_post(w, &it) < 0)
		takeover_fence(w, from, conn_id); /* answer now rather than never */
}

void takeover_fence(struct worker *w, int from, uint64_t conn_id)
{
	struct inbox_item it = { .kind = INBOX_TAKEOVER_DONE, .u = conn_id };
	worker_post(&w->br->workers[from], &it);
}

void takeover_settle(struct worker *w, struct session *s)
{
	pthread_spin_lock(&s->mu);
	if (s->late == 0) {
		s->settling = false;
	} else {
		/* Deliveries routed here after the settle item are behind it: go
		 * round once more behind them. Each round is one inbox pass. */
		struct inbox_item it = { .kind = INBOX_SETTLE, .p1 = session_ref(s) };
		s->late = 0;
		if (worker_post(w, &it) < 0) {
			s->settling = false; /* out of memory: order over liveness loses */
			session_unref(s);
		}
	}
	pthread_spin_unlock(&s->mu);
}

/* Sessions discarded per call: bounds how long dir_lock is held (each
 * discard removes up to max_subscriptions trie entries). */
#define EXPIRE_BATCH 128

/* One session due on the heap (dir_lock held, s at the top): its delayed
 * will goes out (*will, to publish outside the lock) and/or it expires
 * (*gone, with a reference). */
static void heap_due(struct broker *br, struct session *s, int64_t now, struct msg **will,
		     struct session **gone)
{
	if (s->will && now >= s->will_due_ms) {
		*will = will_arm(s->will, s->will_expires, s->will_expiry);
		s->will = NULL;
	}
	if (s->expire_ms && now >= s->expire_ms) {
		if (s->will) { /* the session ends first: its will goes now (3.1.3.2.2) */
			*will = will_arm(s->will, s->will_expires, s->will_expiry);
			s->will = NULL;
		}
		*gone = session_ref(s);
		session_dir_del(&br->dir, s);
		broker_discard_session(br, s); /* takes it off the heap */
		return;
	}
	s->due_ms = s->expire_ms; /* only the expiry is left, if any */
	if (s->due_ms)
		session_heap_fix(&br->timers, s);
	else
		session_heap_del(&br->timers, s);
}

void takeover_expire(struct worker *w)
{
	struct broker *br = w->br;
	int64_t ttl = (int64_t)LIM(br, session_expiry) * 1000, now = util_now_ms();
	struct session *gone[EXPIRE_BATCH], *s;
	struct msg *wills[EXPIRE_BATCH];
	int64_t offline_ms[EXPIRE_BATCH];
	size_t n = 0, nw = 0;

	if (w->idx != 0)
		return;
	pthread_mutex_lock(&br->dir_lock);
	/* 3.1.1: the list is in park order, which is time order (parked_ms is
	 * read under dir_lock): the expired ones are at its head. */
	while (ttl > 0 && n < EXPIRE_BATCH && (s = TAILQ_FIRST(&br->parked)) &&
	       now - s->parked_ms >= ttl) {
		offline_ms[n] = now - s->parked_ms;
		gone[n++] = session_ref(s);
		session_dir_del(&br->dir, s);
		broker_discard_session(br, s); /* takes it off the list */
	}
	/* MQTT 5: each session has its deadline; the heap's top is the nearest. */
	while (n < EXPIRE_BATCH && nw < EXPIRE_BATCH && (s = session_heap_top(&br->timers)) &&
	       now >= s->due_ms) {
		struct msg *m = NULL;
		struct session *g = NULL;
		heap_due(br, s, now, &m, &g);
		if (m)
			wills[nw++] = m;
		if (g) {
			offline_ms[n] = now - g->parked_ms;
			gone[n++] = g;
		}
	}
	pthread_mutex_unlock(&br->dir_lock);
	for (size_t i = 0; i < nw; i++) {
		hooks_will(w, wills[i], NULL, 0); /* outside every lock, as at a close */
		msg_unref(wills[i]);
	}
	if (n == 0)
		return;
	atomic_fetch_add_explicit(&br->sessions_expired, n, memory_order_relaxed);
	for (size_t i = 0; i < n; i++) {
		log_info_rl("session expired client=%s offline_s=%lld", log_q(gone[i]->id),
			    (long long)(offline_ms[i] / 1000));
		hooks_ended(br, gone[i]);
		session_unref(gone[i]);
	}
}
