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

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/takeover.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"

/* Takes s out of the directory and discards it. Caller holds dir_lock. */
static void dir_discard(struct broker *br, struct session *s)
{
	session_ref(s); /* s outlives the directory's reference */
	session_dir_del(&br->dir, s);
	broker_discard_session(br, s);
	session_unref(s);
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
			client_close(old, "session taken over", true);
			continue;
		}
		/* Offline and settled, or a clean start that discards it: attach. */
		if (owner < 0 && (!settling || c->clean))
			break;
		struct inbox_item it = { .kind = INBOX_TAKEOVER, .a = (uint8_t)w->idx,
					 .u = c->conn_id, .p1 = session_ref(s) };
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
	int64_t ttl = (int64_t)LIM(br, session_expiry) * 1000;
	bool expired = s && s->parked_listed && ttl > 0 && util_now_ms() - s->parked_ms >= ttl;
	if (s && (c->clean || expired)) {
		if (expired)
			atomic_fetch_add_explicit(&br->sessions_expired, 1, memory_order_relaxed);
		dir_discard(br, s);
		s = NULL;
	}
	if (s) {
		present = true;
		if (s->parked_listed) {
			/* Back before session_expiry: it lives on. */
			TAILQ_REMOVE(&br->parked, s, park_link);
			s->parked_listed = false;
		}
	} else {
		s = session_new(c->id, c->id_len, c->clean);
		if (!s || session_dir_add(&br->dir, s) < 0) {
			pthread_mutex_unlock(&br->dir_lock);
			session_unref(s);
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
	send_connack(c, MQTT_CONNACK_ACCEPTED, present);
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

	if (!s)
		return;
	c->s = NULL;
	if (c->id == s->id)
		c->id = util_strdup_n(s->id, s->id_len); /* NULL logs as "-" */
	shared_park(c->w, s);
	/* Offline now: what waits in the session counts as queued. */
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
	if (!s->clean) {
		/* session_expiry counts from now (takeover_expire). Since mu was
		 * released a clean start may have discarded s, or (only if the
		 * settle item could not be posted) a client attached it: the
		 * checks see both. */
		pthread_mutex_lock(&br->dir_lock);
		if (!atomic_load(&s->discarded) && !s->parked_listed &&
		    atomic_load_explicit(&s->owner, memory_order_acquire) < 0 &&
		    session_dir_find(&br->dir, s->id, s->id_len) == s) {
			s->parked_ms = util_now_ms();
			TAILQ_INSERT_TAIL(&br->parked, s, park_link);
			s->parked_listed = true;
		}
		pthread_mutex_unlock(&br->dir_lock);
	} else {
		pthread_mutex_lock(&br->dir_lock);
		if (session_dir_find(&br->dir, s->id, s->id_len) == s)
			dir_discard(br, s);
		pthread_mutex_unlock(&br->dir_lock);
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

void takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id)
{
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx && s->client) {
		struct client *old = s->client;
		log_info_rl("conn takeover client=%s old_addr=%s", log_q(s->id), client_peer(old));
		client_close(old, "session taken over", true);
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

void takeover_expire(struct worker *w)
{
	struct broker *br = w->br;
	int64_t ttl = (int64_t)LIM(br, session_expiry) * 1000, now = util_now_ms();
	struct session *gone[EXPIRE_BATCH], *s;
	int64_t offline_ms[EXPIRE_BATCH];
	size_t n = 0;

	if (w->idx != 0 || ttl == 0)
		return;
	/* The list is in park order, which is time order (parked_ms is read
	 * under dir_lock): the expired ones are at its head. */
	pthread_mutex_lock(&br->dir_lock);
	while (n < EXPIRE_BATCH && (s = TAILQ_FIRST(&br->parked)) && now - s->parked_ms >= ttl) {
		offline_ms[n] = now - s->parked_ms;
		gone[n++] = session_ref(s);
		session_dir_del(&br->dir, s);
		broker_discard_session(br, s); /* takes it off the list */
	}
	pthread_mutex_unlock(&br->dir_lock);
	if (n == 0)
		return;
	atomic_fetch_add_explicit(&br->sessions_expired, n, memory_order_relaxed);
	for (size_t i = 0; i < n; i++) {
		log_info_rl("session expired client=%s offline_s=%lld", log_q(gone[i]->id),
			    (long long)(offline_ms[i] / 1000));
		session_unref(gone[i]);
	}
}
