/* state_hooks.c - the broker's side of State in Kafka; see state_hooks.h
 * and broker.h. Takes dir_lock (and, through broker_subscribe(),
 * subs_lock) in the order broker_int.h gives. */
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/handle_subscribe.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/state_hooks.h"
#include "broker/takeover.h"
#include "broker/worker.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* A claim whose connection closed before the answer (state_hooks.h). */
struct hooks_abandoned {
	uint64_t conn_id;
	char *id;
	uint16_t id_len;
	uint8_t level;
	bool clean;
	bool persistent;
	uint32_t expiry_s;          /* MQTT 5 Session Expiry Interval */
	uint32_t tries;             /* answers deferred while the session settles */
};

/* Bounds the re-posts of a settled claim waiting for a session to settle
 * (each is one pass of the worker's inbox; settling takes a few). */
#define SETTLE_TRIES 10000

/* broker_state_claimed()'s image, copied into one block the inbox item
 * owns: the array of subscriptions, then their filters. */
struct claim_img {
	struct broker_session_image img;  /* img.subs points into subs[] */
	struct broker_sub subs[];
};

void broker_set_state(struct broker *br, const struct broker_state_ops *ops)
{
	if (ops) {
		br->st_ops = *ops;
		br->st = &br->st_ops;
	} else {
		br->st = NULL;
	}
}

void broker_state_stats(const struct broker *br, struct broker_state_stats *out)
{
	out->claims_waiting = atomic_load_explicit(&br->claims_waiting, memory_order_relaxed);
	out->claims_refused = atomic_load_explicit(&br->claims_refused, memory_order_relaxed);
	out->kicks = atomic_load_explicit(&br->kicks, memory_order_relaxed);
	out->subacks_waited = atomic_load_explicit(&br->subacks_waited, memory_order_relaxed);
	out->subacks_unconfirmed =
		atomic_load_explicit(&br->subacks_unconfirmed, memory_order_relaxed);
}

/* ---- sessions from images ------------------------------------------------ */

/* A session for id from img (NULL: empty) in the directory, offline, not
 * parked. dir_lock held; the directory has none for id. Subscriptions go
 * into the session and the trie (shared ones into their groups) as a
 * SUBSCRIBE would put them; a filter that is not valid is skipped (it came
 * from Kafka, written by any version). Returns the session (borrowed: the
 * directory's reference) or NULL (ENOMEM). */
static struct session *session_from_image(struct broker *br, const char *id, uint16_t id_len,
					  const struct broker_session_image *img, uint8_t level)
{
	struct session *s = session_new(id, id_len, false);
	size_t skipped = 0;

	if (!s)
		return NULL;
	s->level = img && img->level ? img->level : level;
	s->expiry_s = img ? img->expiry_s : 0;
	for (size_t i = 0; img && i < img->nsubs; i++) {
		const struct broker_sub *b = &img->subs[i];
		if (!mqtt_topic_filter_valid((const uint8_t *)b->filter, b->len) ||
		    shared_invalid(b->filter, b->len) || SUBOPT_QOS(b->opts) > 2 ||
		    broker_subscribe(br, s, b->filter, b->len, b->opts) < 0)
			skipped++;
	}
	if (session_dir_add(&br->dir, s) < 0) {
		broker_discard_session(br, s);
		session_unref(s);
		return NULL;
	}
	session_unref(s); /* the directory holds it now */
	if (skipped)
		log_warn_rl("session restore skipped subscriptions client=%s skipped=%zu",
			    log_q(s->id), skipped);
	return s;
}

/* Parks s (offline, in the directory, not parked) as takeover_park() would
 * have age_ms ago: 3.1.1 on the parked list for limits.session_expiry (kept
 * in time order: never before the list's last), MQTT 5 on the timer heap
 * for its own expiry_s. dir_lock held. */
static void park_image(struct broker *br, struct session *s, int64_t age_ms)
{
	int64_t now = util_now_ms();

	if (age_ms < 0)
		age_ms = 0;
	s->parked_ms = now - age_ms;
	if (s->level == 5) {
		s->expire_ms = s->expiry_s == UINT32_MAX ? 0 : s->parked_ms + (int64_t)s->expiry_s * 1000;
		s->due_ms = s->expire_ms;
		if (s->due_ms && session_heap_push(&br->timers, s) < 0)
			s->expire_ms = 0; /* lives until its client comes back */
		return;
	}
	struct session *last = TAILQ_LAST(&br->parked, session_park_list);
	if (last && last->parked_ms > s->parked_ms)
		s->parked_ms = last->parked_ms;
	TAILQ_INSERT_TAIL(&br->parked, s, park_link);
	s->parked_listed = true;
}

/* Calls fn for every message s still holds for its client, in its order:
 * sent and not acknowledged before PUBREC (after it the client has the
 * message), then queued. */
typedef void (*held_fn)(struct broker *br, struct session *s, struct msg **slot, bool *owes,
			uint8_t qos, bool retain);
static void held_each(struct broker *br, struct session *s, held_fn fn)
{
	for (uint16_t i = 0; i < s->out.n; i++) {
		struct inflight_entry *e = &s->out.e[i];
		if (e->state == INFL_WAIT_PUBACK || e->state == INFL_WAIT_PUBREC)
			fn(br, s, &e->m, &e->owes, e->qos, e->retain);
	}
	for (uint32_t i = 0; i < s->queue.n; i++) {
		struct mqueue_entry *e = &s->queue.e[(s->queue.head + i) % s->queue.cap];
		fn(br, s, &e->m, &e->owes, e->qos, e->retain);
	}
}

static void handover_one(struct broker *br, struct session *s, struct msg **slot, bool *owes,
			 uint8_t qos, bool retain)
{
	(void)owes;
	br->st->handover(br->st->ctx, s->id, s->id_len, *slot, qos, retain);
}

/* Discards offline s without a will (another instance, or Kafka, has the
 * say now). dir_lock held. */
void hooks_handover(struct broker *br, struct session *s)
{
	if (!br->st || !br->st->handover)
		return;
	held_each(br, s, handover_one);
	br->st->handover(br->st->ctx, s->id, s->id_len, NULL, 0, false); /* that was all */
}

bool hooks_spool(struct broker *br, struct session *s, struct msg **slot, bool *owes,
		 uint8_t qos, bool retain)
{
	struct msg *m = *slot;
	if (!br->st || !br->st->spool || (m->track && m->track->kept))
		return false;
	struct msg *c = br->st->spool(br->st->ctx, s->id, s->id_len, m, qos, retain, *owes);
	if (!c)
		return false;
	msg_unref(m);
	*slot = c;
	*owes = true;
	return true;
}

static void spool_one(struct broker *br, struct session *s, struct msg **slot, bool *owes,
		      uint8_t qos, bool retain)
{
	hooks_spool(br, s, slot, owes, qos, retain);
}

void hooks_spool_session(struct broker *br, struct session *s)
{
	if (br->st && br->st->spool)
		held_each(br, s, spool_one);
}

size_t broker_state_persist(struct broker *br)
{
	size_t n = 0;

	if (!br->st || !br->st->handover)
		return 0;
	/* The workers are stopped: nothing else touches a session now; the
	 * locks only keep the rules. */
	pthread_mutex_lock(&br->dir_lock);
	for (size_t i = 0; i < br->dir.nb; i++)
		for (struct session *s = br->dir.b[i]; s; s = s->dir_next) {
			if (atomic_load(&s->discarded))
				continue;
			pthread_spin_lock(&s->mu);
			n += (size_t)s->queue.n + s->out.n;
			hooks_handover(br, s);
			pthread_spin_unlock(&s->mu);
		}
	pthread_mutex_unlock(&br->dir_lock);
	return n;
}

static void discard_offline(struct broker *br, struct session *s)
{
	msg_unref(s->will);
	s->will = NULL;
	session_ref(s);
	session_dir_del(&br->dir, s);
	broker_discard_session(br, s);
	session_unref(s);
}

int broker_state_restore(struct broker *br, const char *id, uint16_t id_len,
			 const struct broker_session_image *img)
{
	int64_t age = img && img->parked_at_ms > 0 ? util_wall_ms() - img->parked_at_ms : 0;
	int r = 0;

	pthread_mutex_lock(&br->dir_lock);
	if (session_dir_find(&br->dir, id, id_len)) {
		r = 1;
	} else {
		struct session *s = session_from_image(br, id, id_len, img, img ? img->level : 4);
		if (s)
			park_image(br, s, age);
		else
			r = -1;
	}
	pthread_mutex_unlock(&br->dir_lock);
	if (r < 0)
		log_warn_rl("session restore failed client=%s reason=\"out of memory\"",
			    log_qn(id, id_len));
	return r;
}

/* ---- claims --------------------------------------------------------------- */

static void refuse(struct client *c, const char *why)
{
	atomic_fetch_add_explicit(&c->w->br->claims_refused, 1, memory_order_relaxed);
	log_warn_rl("conn refused client=%s addr=%s reason=\"%s\"", log_q(c->id), client_peer(c),
		    why);
	/* 3 for 3.1/3.1.1, 0x88 Server unavailable for MQTT 5 (send_connack). */
	if (send_connack(c, MQTT_CONNACK_UNAVAILABLE, false) == 0)
		client_close(c, why, false);
}

int hooks_connect(struct client *c)
{
	struct broker *br = c->w->br;

	if (!br->st || !br->st->claim)
		return takeover_attach(c);
	bool v5 = c->level == 5;
	struct broker_claim k = {
		.conn_id = c->conn_id, .worker = c->w->idx, .id = c->id, .id_len = c->id_len,
		.level = c->level, .clean = c->clean,
		.persistent = v5 ? c->session_expiry > 0 : !c->clean,
		.expiry_s = v5 ? c->session_expiry : 0,
		.will = c->will, .will_delay_s = v5 ? c->will_delay : 0,
	};
	if (br->st->claim(br->st->ctx, &k) < 0) {
		refuse(c, "state store unavailable");
		return -1;
	}
	/* The answer comes through our inbox, never before this returns. */
	c->state = CL_WAIT_CLAIM;
	c->st |= CLST_WAIT;
	atomic_fetch_add_explicit(&br->claims_waiting, 1, memory_order_relaxed);
	client_update_read(c);
	return 0;
}

void hooks_claim_timeout(struct client *c)
{
	/* The claim stays pending (CLST_WAIT): its answer, when it comes, is
	 * settled as an abandoned one. */
	refuse(c, "state store did not answer the claim in time");
}

void broker_state_claimed(struct broker *br, uint64_t conn_id, enum broker_claim_result r,
			  const struct broker_session_image *img)
{
	struct claim_img *ci = NULL;
	int w = conn_worker(conn_id);

	if (w >= br->n_workers)
		return;
	if (r == BROKER_CLAIM_OK && img) {
		size_t bytes = sizeof(*ci) + img->nsubs * sizeof(struct broker_sub);
		for (size_t i = 0; i < img->nsubs; i++)
			bytes += img->subs[i].len;
		ci = malloc(bytes);
		if (!ci) {
			/* Without the image the session cannot be resumed as Kafka
			 * has it: refuse rather than start it empty. */
			log_error_rl("claim answer lost conn=%llx reason=\"out of memory\"",
				     (unsigned long long)conn_id);
			r = BROKER_CLAIM_UNAVAILABLE;
		} else {
			char *f = (char *)&ci->subs[img->nsubs];
			ci->img = *img;
			ci->img.subs = ci->subs;
			for (size_t i = 0; i < img->nsubs; i++) {
				memcpy(f, img->subs[i].filter, img->subs[i].len);
				ci->subs[i] = (struct broker_sub){ f, img->subs[i].len, img->subs[i].opts };
				f += img->subs[i].len;
			}
		}
	}
	struct inbox_item it = { .kind = INBOX_CLAIMED, .a = (uint8_t)r, .u = conn_id, .p1 = ci };
	if (worker_post(&br->workers[w], &it) < 0) {
		/* The connection then meets its connect timeout (CONNACK 3). */
		log_error_rl("claim answer lost conn=%llx reason=\"out of memory\"",
			     (unsigned long long)conn_id);
		free(ci);
	}
}

/* Posts OK for conn_id to w itself: a claim accepted whose connection is
 * gone (settled by hooks_claimed()). Returns 0 or -1. */
static int post_settle(struct worker *w, uint64_t conn_id)
{
	struct inbox_item it = { .kind = INBOX_CLAIMED, .a = BROKER_CLAIM_OK, .u = conn_id };
	return worker_post(w, &it);
}

/* The answer to a claim whose connection is gone: settle the session as if
 * it had attached and closed at once (state_hooks.h). Returns false when
 * the session is still settling from an older connection's close: the
 * caller asks again later. */
static bool settle_abandoned(struct worker *w, struct hooks_abandoned *a, int result,
			     const struct broker_session_image *img)
{
	struct broker *br = w->br;
	enum { NOTHING, PARKED, ENDED } tell = NOTHING;
	uint32_t expiry = 0;

	if (result != BROKER_CLAIM_OK)
		return true;
	pthread_mutex_lock(&br->dir_lock);
	struct session *s = session_dir_find(&br->dir, a->id, a->id_len);
	bool online = false, settling = false;
	if (s) {
		pthread_spin_lock(&s->mu);
		online = atomic_load_explicit(&s->owner, memory_order_acquire) >= 0;
		settling = s->settling;
		pthread_spin_unlock(&s->mu);
	}
	if (online || settling) {
		/* Online: another connection has it here, and its close tells
		 * Kafka. Settling: an older connection's close (a takeover for
		 * ours) is not finished; whether s parks or ends is not known. */
		pthread_mutex_unlock(&br->dir_lock);
		return online;
	}
	if (s && (a->clean || !a->persistent)) {
		discard_offline(br, s);
		s = NULL;
	}
	if (a->persistent) {
		if (!s) {
			s = session_from_image(br, a->id, a->id_len, a->clean ? NULL : img, a->level);
			if (s) {
				s->level = a->level;
				s->expiry_s = a->level == 5 ? a->expiry_s : 0;
				park_image(br, s, 0);
			}
		}
		if (s) {
			tell = PARKED;
			expiry = s->level == 5 ? s->expiry_s : LIM(br, session_expiry);
		}
	} else {
		tell = ENDED;
	}
	pthread_mutex_unlock(&br->dir_lock);
	if (tell == PARKED && br->st->parked)
		br->st->parked(br->st->ctx, a->id, a->id_len, expiry, NULL, 0);
	else if (tell == ENDED && br->st->ended)
		br->st->ended(br->st->ctx, a->id, a->id_len);
	return true;
}

void hooks_claimed(struct worker *w, uint64_t conn_id, int result, void *img)
{
	struct broker *br = w->br;
	struct claim_img *ci = img;
	struct client *c = worker_client(w, conn_id);

	if (!c || c->state != CL_WAIT_CLAIM || !(c->st & CLST_WAIT)) {
		for (size_t i = 0; i < w->n_st_gone; i++) {
			struct hooks_abandoned *a = &w->st_gone[i];
			if (a->conn_id != conn_id)
				continue;
			if (!settle_abandoned(w, a, result, ci ? &ci->img : NULL) &&
			    ++a->tries < SETTLE_TRIES && post_settle(w, conn_id) == 0)
				break; /* again after this pass of the inbox */
			free(a->id);
			w->st_gone[i] = w->st_gone[--w->n_st_gone];
			break;
		}
		free(ci);
		return;
	}
	c->st &= (uint8_t)~CLST_WAIT;
	atomic_fetch_sub_explicit(&br->claims_waiting, 1, memory_order_relaxed);
	if (result != BROKER_CLAIM_OK) {
		free(ci);
		refuse(c, "state store unavailable");
		return;
	}
	if (ci && !c->clean) {
		/* Kafka's session, unless we have one: ours is newer then (this
		 * instance owned the id last). */
		pthread_mutex_lock(&br->dir_lock);
		if (!session_dir_find(&br->dir, c->id, c->id_len) &&
		    !session_from_image(br, c->id, c->id_len, &ci->img, c->level))
			log_warn_rl("session resume failed client=%s reason=\"out of memory\"",
				    log_q(c->id));
		pthread_mutex_unlock(&br->dir_lock);
	}
	free(ci);
	c->st |= CLST_CLAIMED;
	c->state = CL_NEW;
	takeover_attach(c);
}

void hooks_abandon(struct client *c)
{
	struct worker *w = c->w;
	/* Accepted, but closed in a local takeover's wait: the answer is ours
	 * to give, once the older connection's session settled. */
	bool accepted = !(c->st & CLST_WAIT);

	if (!accepted)
		atomic_fetch_sub_explicit(&w->br->claims_waiting, 1, memory_order_relaxed);
	c->st &= (uint8_t)~(CLST_WAIT | CLST_CLAIMED);
	if (w->n_st_gone == w->cap_st_gone) {
		size_t cap = w->cap_st_gone ? w->cap_st_gone * 2 : 16;
		struct hooks_abandoned *v = realloc(w->st_gone, cap * sizeof(*v));
		if (!v)
			goto lost;
		w->st_gone = v;
		w->cap_st_gone = cap;
	}
	char *id = util_strdup_n(c->id, c->id_len);
	if (!id)
		goto lost;
	w->st_gone[w->n_st_gone++] = (struct hooks_abandoned){
		.conn_id = c->conn_id, .id = id, .id_len = c->id_len, .level = c->level,
		.clean = c->clean,
		.persistent = c->level == 5 ? c->session_expiry > 0 : !c->clean,
		.expiry_s = c->session_expiry,
	};
	if (accepted && post_settle(w, c->conn_id) < 0) {
		free(id);
		w->n_st_gone--;
		goto lost;
	}
	return;
lost:
	log_warn_rl("claim left unsettled client=%s reason=\"out of memory\"", log_q(c->id));
}

/* ---- hooks ---------------------------------------------------------------- */

/* A SUBACK/UNSUBACK waiting for Kafka (client->subwait): the answer of one
 * packet and, for a SUBSCRIBE, a copy of its filter list (the packet's bytes
 * are gone once it returns) for the retained messages after the SUBACK.
 * One block; at most one per connection (it reads nothing meanwhile). */
struct hooks_subwait {
	int64_t since_ms;
	uint32_t token;
	uint32_t n;
	uint32_t subid;
	bool unsub;
	struct mqtt_subscribe sub;   /* sub.list points into data */
	uint8_t *codes;              /* n, in data */
	bool *added;                 /* n, in data; NULL for UNSUBSCRIBE */
	uint8_t data[];
};

static bool client_persistent(const struct client *c)
{
	return c->level == 5 ? c->session_expiry > 0 : !c->clean;
}

static struct hooks_subwait *subwait_new(const struct mqtt_subscribe *sub, const uint8_t *codes,
					 const bool *added, uint32_t n, uint32_t subid, bool unsub,
					 int64_t now)
{
	size_t list = unsub ? 0 : sub->list_len;
	size_t nadded = added ? n : 0;
	struct hooks_subwait *sw = malloc(sizeof(*sw) + n + nadded * sizeof(bool) + list);

	if (!sw)
		return NULL;
	*sw = (struct hooks_subwait){ .since_ms = now, .n = n, .subid = subid, .unsub = unsub };
	sw->codes = sw->data;
	memcpy(sw->codes, codes, n);
	if (added) {
		sw->added = (bool *)(sw->data + n);
		memcpy(sw->added, added, n * sizeof(bool));
	}
	sw->sub = (struct mqtt_subscribe){
		.packet_id = sub->packet_id, .count = sub->count,
		.with_options = sub->with_options,
	};
	if (list) {
		uint8_t *l = sw->data + n + nadded * sizeof(bool);
		memcpy(l, sub->list, list);
		sw->sub.list = l;
		sw->sub.list_len = sub->list_len;
	}
	return sw;
}

bool hooks_subs_changed(struct client *c, const struct mqtt_subscribe *sub,
			const uint8_t *codes, const bool *added, uint32_t n, uint32_t subid,
			bool unsub)
{
	struct worker *w = c->w;
	struct broker *br = w->br;
	struct session *s = c->s;

	if (!br->st || !br->st->subs_changed || !s)
		return false;
	if (s->subs.n > w->st_subs_cap) {
		size_t cap = w->st_subs_cap ? w->st_subs_cap : 16;
		while (cap < s->subs.n)
			cap *= 2;
		struct broker_sub *v = realloc(w->st_subs, cap * sizeof(*v));
		if (!v) {
			log_error_rl("subscriptions not recorded client=%s reason=\"out of memory\"",
				     log_q(s->id));
			return false;
		}
		w->st_subs = v;
		w->st_subs_cap = cap;
	}
	size_t ns = 0;
	uint32_t pos = 0;
	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));)
		w->st_subs[ns++] = (struct broker_sub){ e->filter, e->len, e->opts };
	/* A persistent session's change is kept by Kafka before it is
	 * acknowledged (a restart, even SIGKILL, then keeps it); a clean
	 * session's only routes, and is answered at once as before. */
	struct hooks_subwait *sw = NULL;
	if (client_persistent(c) && c->state == CL_ACTIVE && !c->subwait) {
		sw = subwait_new(sub, codes, added, n, subid, unsub, w->now_ms);
		if (!sw)
			log_warn_rl("subscription answered before Kafka has it client=%s "
				    "reason=\"out of memory\"", log_q(c->id));
	}
	if (sw) {
		sw->token = ++c->subs_token;
		c->subwait = sw;
		atomic_fetch_add_explicit(&br->subacks_waited, 1, memory_order_relaxed);
	}
	br->st->subs_changed(br->st->ctx, s->id, s->id_len, w->st_subs, ns, sw ? c->conn_id : 0,
			     sw ? sw->token : 0);
	/* A large list is not kept for the next small one. */
	if (w->st_subs_cap > 1024 && ns < w->st_subs_cap / 8) {
		free(w->st_subs);
		w->st_subs = NULL;
		w->st_subs_cap = 0;
	}
	if (!sw)
		return false;
	client_update_read(c); /* paused until the answer (never before this returns) */
	return true;
}

/* Sends c's waiting answer (why: not confirmed by Kafka, NULL: confirmed)
 * and lets c read again. */
static void subs_answer(struct client *c, const char *why)
{
	struct hooks_subwait *sw = c->subwait;
	int r = 0;

	c->subwait = NULL;
	if (why) {
		/* The subscription is in force here all the same: the client
		 * is answered, not disconnected; a crash before a later write
		 * of its session record may lose it (docs/scaling/sessions.md). */
		atomic_fetch_add_explicit(&c->w->br->subacks_unconfirmed, 1, memory_order_relaxed);
		log_warn_rl("%s not confirmed by Kafka client=%s packet_id=%u reason=\"%s\"",
			    sw->unsub ? "unsubscribe" : "subscribe", log_q(c->id),
			    sw->sub.packet_id, why);
	}
	if (c->state == CL_ACTIVE)
		r = sw->unsub ? send_unsuback(c, sw->sub.packet_id, sw->codes, sw->n)
			      : handle_subscribe_answer(c, &sw->sub, sw->codes, sw->added, sw->n,
							sw->subid);
	free(sw);
	if (r == 0)
		client_update_read(c); /* and parses what arrived meanwhile */
}

void broker_state_subs_written(struct broker *br, uint64_t conn_id, uint32_t token, bool ok)
{
	int w = conn_worker(conn_id);

	if (w >= br->n_workers)
		return;
	struct inbox_item it = { .kind = INBOX_SUBS_WRITTEN, .a = ok, .c = token, .u = conn_id };
	if (worker_post(&br->workers[w], &it) < 0)
		log_error_rl("subscribe answer lost conn=%llx reason=\"out of memory\" "
			     "(the wait times out)", (unsigned long long)conn_id);
}

void hooks_subs_written(struct worker *w, uint64_t conn_id, uint32_t token, bool ok)
{
	struct client *c = worker_client(w, conn_id);

	/* Gone, or the answer to a wait already timed out: nothing to do. */
	if (!c || !c->subwait || c->subwait->token != token)
		return;
	subs_answer(c, ok ? NULL : "session record not written");
}

bool hooks_subs_overdue(const struct client *c, int64_t now)
{
	const struct broker *br = c->w->br;
	uint32_t t = br->st && br->st->subs_timeout_ms ? br->st->subs_timeout_ms : 5000;
	return c->subwait && now - c->subwait->since_ms > (int64_t)t;
}

void hooks_subs_timeout(struct client *c)
{
	if (c->subwait)
		subs_answer(c, "no delivery report in time");
}

void hooks_parked(struct broker *br, const struct session *s, uint32_t expiry_s,
		  const struct msg *will, uint32_t will_delay_s)
{
	if (br->st && br->st->parked)
		br->st->parked(br->st->ctx, s->id, s->id_len, expiry_s, will, will_delay_s);
}

void hooks_ended(struct broker *br, const struct session *s)
{
	if (br->st && br->st->ended)
		br->st->ended(br->st->ctx, s->id, s->id_len);
}

void hooks_worker_release(struct worker *w)
{
	for (size_t i = 0; i < w->n_st_gone; i++)
		free(w->st_gone[i].id);
	free(w->st_gone);
	free(w->st_subs);
	w->st_gone = NULL;
	w->st_subs = NULL;
	w->n_st_gone = w->cap_st_gone = w->st_subs_cap = 0;
}

/* ---- kicks ---------------------------------------------------------------- */

/*
 * A kick goes to every worker's inbox, behind what the state layer posted
 * there before it: a claim it answered OK just before (INBOX_CLAIMED, on
 * the worker of that connection) is attached by the time the kick is
 * handled there, and then closed, rather than attached after the kick
 * looked. Each worker closes the client if it owns the session, discards
 * the session if it is offline (the first to look), and forwards the kick
 * once to the owner if another worker owns it (the session moved between
 * the two looks).
 */
static void kick_post(struct broker *br, int w, const char *id, uint16_t id_len, bool forwarded)
{
	char *copy = malloc((size_t)id_len + 1);
	struct inbox_item it = { .kind = INBOX_KICK, .a = forwarded, .b = id_len, .p1 = copy };

	if (copy) {
		memcpy(copy, id, id_len);
		copy[id_len] = '\0';
	}
	if (!copy || worker_post(&br->workers[w], &it) < 0) {
		log_error_rl("kick lost client=%s reason=\"out of memory\"", log_qn(id, id_len));
		free(copy);
	}
}

void broker_state_kick(struct broker *br, const char *id, uint16_t id_len)
{
	atomic_fetch_add_explicit(&br->kicks, 1, memory_order_relaxed);
	for (int i = 0; i < br->n_workers; i++)
		kick_post(br, i, id, id_len, false);
}

void hooks_kick(struct worker *w, char *id, uint16_t id_len, bool forwarded)
{
	struct broker *br = w->br;

	pthread_mutex_lock(&br->dir_lock);
	struct session *s = session_dir_find(&br->dir, id, id_len);
	int owner = s ? atomic_load_explicit(&s->owner, memory_order_acquire) : -1;
	if (s && owner < 0) {
		/* Offline enqueues hold s->mu (deliver.c); the hook only
		 * produces (no I/O, no broker lock). */
		pthread_spin_lock(&s->mu);
		hooks_handover(br, s);
		pthread_spin_unlock(&s->mu);
		discard_offline(br, s);
		log_info_rl("session discarded client=%s reason=\"another instance owns it\"",
			    log_qn(id, id_len));
	} else if (s && owner == w->idx) {
		struct client *c = s->client;
		pthread_mutex_unlock(&br->dir_lock);
		c->st |= CLST_KICKED | CLST_QUIET;
		log_info_rl("conn takeover client=%s addr=%s reason=\"another instance owns it\"",
			    log_q(c->id), client_peer(c));
		/* MQTT 5: DISCONNECT 0x8E; its will as in any takeover. */
		client_close_rc(c, "session taken over by another instance", true,
				MQTT_RC_SESSION_TAKEN_OVER);
		free(id);
		return;
	} else if (s && !forwarded) {
		pthread_mutex_unlock(&br->dir_lock);
		kick_post(br, owner, id, id_len, true);
		free(id);
		return;
	}
	pthread_mutex_unlock(&br->dir_lock);
	free(id);
}

/* ---- messages from other instances ---------------------------------------- */

int broker_retained_apply(struct broker *br, struct msg *m)
{
	return broker_retain(br, m, false);
}

int broker_inject_local(struct broker *br, struct msg *m, const char *to_id, uint16_t to_len)
{
	char *to = NULL;

	if (to_id && !(to = util_strdup_n(to_id, to_len))) {
		msg_track_done(m);
		msg_unref(m);
		return -1;
	}
	/* The worker of the topic, as broker_inject(): one topic keeps its order. */
	uint32_t h = hash_bytes(hash_process_seed(), m->topic, m->topic_len);
	struct inbox_item it = { .kind = INBOX_INJECT_LOCAL, .p1 = m, .p2 = to, .b = to_len };
	if (worker_post(&br->workers[h % (uint32_t)br->n_workers], &it) < 0) {
		free(to);
		msg_track_done(m);
		msg_unref(m);
		return -1;
	}
	return 0;
}

void hooks_inject_local(struct worker *w, struct msg *m, char *to_id, uint16_t to_len)
{
	struct broker *br = w->br;

	if (to_id) {
		pthread_mutex_lock(&br->dir_lock);
		struct session *s = session_dir_find(&br->dir, to_id, to_len);
		if (s)
			session_ref(s);
		pthread_mutex_unlock(&br->dir_lock);
		if (s) {
			deliver_publish_local(w, m, s);
			session_unref(s);
		}
		free(to_id);
	} else {
		deliver_publish_local(w, m, NULL);
	}
	msg_track_done(m); /* the injector's hold */
	msg_unref(m);
}

/* ---- the lease ------------------------------------------------------------ */

static void close_all_worker(void *arg, struct worker *w)
{
	struct client *c;
	(void)arg;

	/* As INBOX_STOP: client_close() leaves c on the list until the safe
	 * point. Our own connections to upstream brokers stay. */
	LIST_FOREACH(c, &w->clients, link)
		if (!c->up)
			client_close_rc(c, "state store lease lost", false,
					MQTT_RC_SERVER_UNAVAILABLE);
}

void broker_close_all(struct broker *br, const char *reason)
{
	struct inbox_item it = { .kind = INBOX_CALL, .p1 = (void *)close_all_worker };

	log_warn("closing every connection reason=%s", log_q(reason ? reason : "-"));
	for (int i = 0; i < br->n_workers; i++)
		if (worker_post(&br->workers[i], &it) < 0)
			log_error("close_all lost worker=%d reason=\"out of memory\"", i);
}

void hooks_will(struct worker *w, struct msg *m, const char *id, uint16_t id_len)
{
	struct broker *br = w->br;

	deliver_publish(w, m);
	if (br->sink.publish) {
		/* A will is a publish on the client's behalf: it goes where the
		 * client's own publishes go, the Kafka routes (and, with the
		 * state in Kafka, the other instances' subscribers through the
		 * sink's fan-out). Nobody waits for its answer (seq 0); the
		 * ticket goes home to this worker (a conn id of w's). */
		struct sink_publish p = { .conn_id = (uint64_t)w->idx << 56, .worker = w->idx,
					  .clientid = id ? id : "", .clientid_len = id ? id_len : 0,
					  .m = m, .seq = 0 };
		if (br->sink.publish(br->sink.ctx, &p) == SINK_BUSY)
			log_warn_rl("will not sent to Kafka client=%s topic=%s reason=\"producer queue full\"",
				    id ? log_qn(id, id_len) : "-", log_q(m->topic));
	}
}

int broker_publish_will(struct broker *br, struct msg *m, const char *id, uint16_t id_len)
{
	char *cid = NULL;

	if (id && !(cid = util_strdup_n(id, id_len)))
		return -1;
	uint32_t h = hash_bytes(hash_process_seed(), m->topic, m->topic_len);
	struct inbox_item it = { .kind = INBOX_WILL, .p1 = msg_ref(m), .p2 = cid, .b = id_len };
	if (worker_post(&br->workers[h % (uint32_t)br->n_workers], &it) < 0) {
		msg_unref(m);
		free(cid);
		return -1;
	}
	return 0;
}
