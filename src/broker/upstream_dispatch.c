/*
 * upstream_dispatch.c - the packets an upstream broker sends us, as the
 * server of our connection: CONNACK (the session attached, SUBSCRIBE,
 * resends), SUBACK, PINGRESP; PUBLISH with the prefix into handle_publish();
 * acks of our commands into handle_ack.c. See upstream.h.
 */
#include <stdio.h>
#include <string.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/deliver.h"
#include "broker/handle_ack.h"
#include "broker/handle_publish.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/topic.h"

/* Static: it becomes the close reason, and the status's last error. */
static const char *connack_words(uint8_t rc)
{
	switch (rc) {
	case MQTT_CONNACK_BAD_PROTOCOL: return "refused by the upstream: CONNACK 1, unacceptable protocol version";
	case MQTT_CONNACK_ID_REJECTED: return "refused by the upstream: CONNACK 2, client id rejected";
	case MQTT_CONNACK_UNAVAILABLE: return "refused by the upstream: CONNACK 3, server unavailable";
	case MQTT_CONNACK_BAD_AUTH: return "refused by the upstream: CONNACK 4, bad user name or password";
	case MQTT_CONNACK_NOT_AUTHORIZED: return "refused by the upstream: CONNACK 5, not authorized";
	}
	return "refused by the upstream";
}

static int subscribe(struct client *c)
{
	struct upstream *up = c->up;
	struct mqtt_str f[up->nsubs ? up->nsubs : 1];

	if (up->nsubs == 0)
		return 0;
	for (int i = 0; i < up->nsubs; i++)
		f[i] = (struct mqtt_str){ (const uint8_t *)up->filters[i],
					  (uint16_t)strlen(up->filters[i]) };
	/* Ours alone: the outbound window's ids are the session's. */
	up->sub_pid = inflight_next_pid(&up->s->out);
	if (up->sub_pid == 0)
		up->sub_pid = 1;
	return send_subscribe(c, up->sub_pid, f, up->qos, up->nsubs);
}

static int on_connack(struct client *c, const struct mqtt_connack *ca)
{
	struct upstream *up = c->up;
	struct session *s = up->s;
	struct worker *w = c->w;

	if (ca->rc != MQTT_CONNACK_ACCEPTED) {
		client_close(c, connack_words(ca->rc), false);
		return -1;
	}
	/* No session on the server: the QoS 2 ids it had sent us mean nothing
	 * now, and a new message may reuse one. */
	if (!ca->session_present) {
		pidset_release(&s->qos2_in);
		pidset_init(&s->qos2_in);
	}
	pthread_spin_lock(&s->mu);
	s->client = c;
	s->level = c->level;
	atomic_store_explicit(&s->owner, w->idx, memory_order_release);
	pthread_spin_unlock(&s->mu);
	c->s = session_ref(s);
	c->state = CL_ACTIVE;
	up->up_ms = up->ping_ms = w->now_ms;
	upstream_set_state(up, UPSTREAM_UP);
	UP_INC(up, connects);
	log_info("upstream up name=%s address=%s port=%d client_id=%s session_present=%d tls=%s",
		 up->name, up->address, up->port, log_q(up->client_id), ca->session_present,
		 up->tls ? "yes" : "no");
	/* The server keeps a persistent session's subscriptions; they are sent
	 * again when it has none, and once per start (the config may have
	 * changed). */
	if ((!ca->session_present || !up->subscribed) && subscribe(c) < 0)
		return -1;
	deliver_resend(c);
	deliver_pump(c);
	client_update_read(c);
	return c->state == CL_CLOSING ? -1 : 0;
}

static int on_suback(struct client *c, const struct mqtt_suback *sa)
{
	struct upstream *up = c->up;
	int refused = 0;

	if (sa->packet_id != up->sub_pid || sa->count != up->nsubs) {
		client_close(c, "SUBACK that answers no SUBSCRIBE of ours", true);
		return -1;
	}
	up->sub_pid = 0;
	up->subscribed = true;
	for (uint32_t i = 0; i < sa->count; i++) {
		if (sa->codes[i] != MQTT_SUBACK_FAILURE)
			continue;
		refused++;
		log_warn("upstream subscription refused name=%s filter=%s", up->name,
			 log_q(up->filters[i]));
		upstream_set_error(up, "subscription refused: %s", up->filters[i]);
	}
	log_info("upstream subscribed name=%s filters=%u refused=%d", up->name, sa->count, refused);
	return 0;
}

/* A message we take no further (its topic with the prefix is over the
 * limits): acknowledged in order like any other, so that the upstream does
 * not send it again and again. */
static int ack_dropped(struct client *c, const struct mqtt_publish *pub)
{
	UP_INC(c->up, dropped);
	if (pub->qos == 0)
		return 0;
	if (pub->qos == 2 && pidset_has(&c->s->qos2_in, pub->packet_id))
		return send_pubrec(c, pub->packet_id);
	if (pub->qos == 2 && client_ack_pending(c, pub->packet_id))
		return 0;
	uint32_t seq = client_ack_push(c, pub->packet_id, pub->qos);
	if (seq == 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	client_ack_complete(c, seq, true);
	return c->state == CL_CLOSING ? -1 : 0;
}

static int on_publish(struct client *c, const struct mqtt_packet *p)
{
	struct upstream *up = c->up;
	const struct mqtt_publish *pub = &p->u.publish;
	struct mqtt_packet q;
	size_t len = (size_t)up->prefix_len + pub->topic.len;

	UP_INC(up, msgs_in);
	if (up->prefix_len) {
		buf_reset(&up->topic);
		if (len > UINT16_MAX) {
			log_warn_rl("upstream message dropped name=%s topic=%s reason=\"topic too long "
				    "with the prefix\"", up->name,
				    log_qn((const char *)pub->topic.p, pub->topic.len));
			return ack_dropped(c, pub);
		}
		if (buf_append(&up->topic, up->prefix, up->prefix_len) < 0 ||
		    buf_append(&up->topic, pub->topic.p, pub->topic.len) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
		q = *p;
		q.u.publish.topic = (struct mqtt_str){ buf_head(&up->topic), (uint16_t)len };
		p = &q;
		pub = &q.u.publish;
	}
	int r = topic_check_limits((const char *)pub->topic.p, pub->topic.len,
				   LIM(up->br, max_topic_length), LIM(up->br, max_topic_levels));
	if (r != TOPIC_OK) {
		limits_hit(c->w, NULL, r == TOPIC_ERR_TOO_LONG ? LIMIT_TOPIC_LENGTH
							      : LIMIT_TOPIC_LEVELS);
		log_warn_rl("upstream message dropped name=%s topic=%s reason=%s", up->name,
			    log_qn((const char *)pub->topic.p, pub->topic.len), log_q(topic_err_str(r)));
		return ack_dropped(c, pub);
	}
	return handle_publish(c, p);
}

/* True if pid is in the window in state st: the ack completes a command. */
static bool owed(struct client *c, uint16_t pid, uint8_t st)
{
	const struct inflight_entry *e = inflight_find(&c->s->out, pid);
	return e && e->state == st;
}

int upstream_dispatch(struct client *c, const struct mqtt_packet *p)
{
	struct upstream *up = c->up;

	if (p->type == MQTT_CONNACK) {
		if (c->state != CL_NEW) {
			client_close(c, "second CONNACK", true);
			return -1;
		}
		return on_connack(c, &p->u.connack);
	}
	if (c->state == CL_NEW) {
		client_close(c, "packet before CONNACK", false);
		return -1;
	}
	switch (p->type) {
	case MQTT_PUBLISH:
		return on_publish(c, p);
	case MQTT_PUBACK:
		if (owed(c, p->u.ack.packet_id, INFL_WAIT_PUBACK))
			UP_INC(up, acked_out);
		return handle_puback(c, p);
	case MQTT_PUBREC:
		return handle_pubrec(c, p);
	case MQTT_PUBREL:
		return handle_pubrel(c, p);
	case MQTT_PUBCOMP:
		if (owed(c, p->u.ack.packet_id, INFL_WAIT_PUBCOMP))
			UP_INC(up, acked_out);
		return handle_pubcomp(c, p);
	case MQTT_SUBACK:
		return on_suback(c, &p->u.suback);
	case MQTT_UNSUBACK:
	case MQTT_PINGRESP:
		return 0;
	default:
		/* CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT (3.1.1), AUTH: a client's. */
		client_close(c, "packet type not allowed from a server", true);
		return -1;
	}
}
