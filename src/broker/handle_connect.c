/*
 * handle_connect.c - CONNECT: client id rules, will, session attach and
 * takeover of an older connection with the same client id.
 *
 * Takeover across workers is message passing: the new connection's worker
 * posts INBOX_TAKEOVER to the old owner (or, for a parked session, to the
 * worker that last owned it) and pauses the new connection; that worker
 * closes its client if still attached (which parks or discards the session
 * at once). Parking posts INBOX_SETTLE behind the deliveries already in the
 * old owner's inbox, and until it is reached new deliveries go through that
 * inbox too; the old owner then answers INBOX_TAKEOVER_DONE through a fence
 * in its own inbox, i.e. after the session settled. The new connection
 * retries the attach from the start, so concurrent reconnects take turns and
 * messages to one session keep their order across the move (MQTT-4.6.0-6).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/client.h"
#include "core/log.h"
#include "mqtt/mqtt_codec.h"
#include "core/msg.h"
#include "broker/session.h"
#include "core/util.h"
#include "broker/worker.h"

static int connack(struct client *c, uint8_t rc, bool present)
{
	/* MQTT 3.1 has no session-present flag: the byte is reserved, 0. */
	struct mqtt_connack ca = { .session_present = present && c->level >= 4, .rc = rc };
	mqtt_encode_connack(&c->obuf, c->level, &ca);
	STAT_INC(c->w, pkts_out[MQTT_CONNACK]);
	client_mark_output(c);
	return 0;
}

/* Attaches c to its session, creating, resuming or taking it over.
 * Returns 0 (CONNACK sent, or waiting for a takeover) or -1 (closed). */
static int connect_attach(struct client *c)
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
			log_info("conn takeover client=%s addr=%s old_addr=%s", c->id, c->peer,
				 old->peer);
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

	if (s && c->clean) {
		session_ref(s);
		session_dir_del(&br->dir, s);
		broker_discard_session(br, s);
		session_unref(s);
		s = NULL;
	}
	if (s) {
		present = true;
	} else {
		s = session_new(c->id, c->id_len, c->clean);
		if (!s || session_dir_add(&br->dir, s) < 0) {
			pthread_mutex_unlock(&br->dir_lock);
			session_unref(s);
			connack(c, MQTT_CONNACK_UNAVAILABLE, false);
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
	/* One copy of the id per connection is enough: borrow the session's
	 * while attached (client_detach_session() takes a copy back). */
	free(c->id);
	c->id = s->id;

	c->state = CL_ACTIVE;
	connack(c, MQTT_CONNACK_ACCEPTED, present);
	log_info("conn open client=%s addr=%s level=%u clean=%d keepalive=%u session_present=%d",
		 c->id, c->peer, c->level, c->clean, c->keepalive, present);
	if (present) {
		client_resend_inflight(c);
		client_pump(c);
	}
	return 0;
}

int handle_connect(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_connect *k = &p->u.connect;
	char idbuf[32];
	const char *id = (const char *)k->client_id.p;
	uint16_t id_len = k->client_id.len;

	if (c->state != CL_NEW) {
		client_close(c, "second CONNECT", true);
		return -1;
	}
	if (k->level == 5) {
		/* MQTT 5 is not served yet: answer as a 3.1.1 server must
		 * (MQTT-3.1.2-2), return code 1, then close. */
		c->level = 4;
		connack(c, MQTT_CONNACK_BAD_PROTOCOL, false);
		client_close(c, "MQTT 5 not supported", false);
		return -1;
	}
	c->level = k->level;
	c->clean = k->clean;
	c->keepalive = k->keepalive;
	if (k->level == 3 && (id_len == 0 || id_len > 23)) {
		connack(c, MQTT_CONNACK_ID_REJECTED, false);
		client_close(c, "client id rejected (MQTT 3.1 needs 1..23 bytes)", false);
		return -1;
	}
	if (id_len == 0) {
		if (!k->clean) {
			connack(c, MQTT_CONNACK_ID_REJECTED, false);
			client_close(c, "empty client id with clean session 0", false);
			return -1;
		}
		id_len = (uint16_t)snprintf(idbuf, sizeof(idbuf), "kg-%016llx",
					    (unsigned long long)c->conn_id);
		id = idbuf;
	}
	c->id = util_strdup_n(id, id_len);
	c->id_len = id_len;
	if (k->has_username)
		c->username = util_strdup_n((const char *)k->username.p, k->username.len);
	if (k->will) {
		c->will = msg_new((const char *)k->will_topic.p, k->will_topic.len,
				  k->will_payload.p, k->will_payload.len, k->will_qos, k->will_retain);
	}
	if (!c->id || (k->has_username && !c->username) || (k->will && !c->will)) {
		connack(c, MQTT_CONNACK_UNAVAILABLE, false);
		client_close(c, "out of memory", false);
		return -1;
	}
	return connect_attach(c);
}

void handle_connect_resume(struct worker *w, uint64_t conn_id)
{
	struct client *c = worker_client(w, conn_id);

	if (!c || c->state != CL_WAIT_TAKEOVER)
		return;
	c->state = CL_NEW;
	if (connect_attach(c) == 0 && c->state == CL_ACTIVE)
		client_update_read(c);
}

void handle_takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id)
{
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx && s->client) {
		struct client *old = s->client;
		log_info("conn takeover client=%s old_addr=%s", s->id, old->peer);
		client_close(old, "session taken over", true);
	}
	/* Closing parked s and queued INBOX_SETTLE behind the deliveries still
	 * in our inbox; a fence posted to ourselves now comes after that, so the
	 * answer leaves once s is settled. */
	struct inbox_item it = { .kind = INBOX_FENCE, .a = (uint8_t)from, .u = conn_id };
	if (worker_post(w, &it) < 0) {
		struct inbox_item done = { .kind = INBOX_TAKEOVER_DONE, .u = conn_id };
		worker_post(&w->br->workers[from], &done);
	}
}

void handle_fence(struct worker *w, int from, uint64_t conn_id)
{
	struct inbox_item it = { .kind = INBOX_TAKEOVER_DONE, .u = conn_id };
	worker_post(&w->br->workers[from], &it);
}

void handle_settle(struct worker *w, struct session *s)
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
