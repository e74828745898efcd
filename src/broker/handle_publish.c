/*
 * handle_publish.c - PUBLISH and PUBREL from a client (the inbound QoS flows).
 *
 * QoS 2 duplicate suppression: a packet id stays in the session's qos2_in
 * set from the first PUBLISH until PUBREL; a PUBLISH whose id is in the set
 * is a resend and is answered with PUBREC without delivering it again.
 */
#include "broker/broker.h"
#include "broker/client.h"
#include "core/log.h"
#include "mqtt/mqtt_codec.h"
#include "core/msg.h"
#include "broker/session.h"
#include "kafka/uplink.h"
#include "broker/worker.h"

static void send_ack(struct client *c, uint8_t type, uint16_t pid)
{
	struct mqtt_ack a = { .packet_id = pid };
	mqtt_encode_ack(&c->obuf, c->level, type, &a);
	STAT_INC(c->w, pkts_out[type]);
	client_mark_output(c);
}

/* Local acknowledgement when no Kafka is configured. */
static int ack_now(struct client *c, const struct mqtt_publish *pub)
{
	if (pub->qos == 1) {
		send_ack(c, MQTT_PUBACK, pub->packet_id);
	} else if (pub->qos == 2) {
		if (pidset_add(&c->s->qos2_in, pub->packet_id) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
		send_ack(c, MQTT_PUBREC, pub->packet_id);
	}
	return 0;
}

/* Hands m to Kafka; the acknowledgement follows the delivery reports. */
static int ack_after_kafka(struct client *c, const struct mqtt_publish *pub, struct msg *m)
{
	struct worker *w = c->w;
	uint32_t seq = 0;

	if (pub->qos > 0 && (seq = client_ack_push(c, pub->packet_id, pub->qos)) == 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	enum uplink_result r = uplink_publish(w, c, m, seq);
	if (r == UPLINK_BUSY) {
		/* Producer full: hold this one message and stop reading. */
		struct client_uplink *u = client_uplink(c);
		if (!u) {
			client_close(c, "out of memory", true);
			return -1;
		}
		u->blocked = msg_ref(m);
		u->blocked_seq = seq;
		u->next_blocked = w->blocked;
		w->blocked = c;
		STAT_INC(w, up_blocked);
	} else if (r == UPLINK_DONE && seq) {
		client_ack_complete(c, seq, true);
	}
	return c->state == CL_CLOSING ? -1 : 0;
}

int handle_publish(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_publish *pub = &p->u.publish;
	struct session *s = c->s;
	int rc;

	if (pub->qos == 2) {
		if (pidset_has(&s->qos2_in, pub->packet_id)) {
			send_ack(c, MQTT_PUBREC, pub->packet_id);
			return 0;
		}
		if (client_ack_pending(c, pub->packet_id))
			return 0; /* a resend while Kafka has not answered: PUBREC will follow */
	}
	struct msg *m = msg_new((const char *)pub->topic.p, pub->topic.len, pub->payload,
				pub->payload_len, pub->qos, pub->retain);
	if (!m) {
		client_close(c, "out of memory", true);
		return -1;
	}
	STAT_INC(c->w, msgs_in[pub->qos]);
	log_debug("publish client=%s topic=%s qos=%u retain=%d bytes=%u", c->id, m->topic,
		  pub->qos, pub->retain, pub->payload_len);
	broker_publish(c->w, m);
	if (c->w->backlogged && !c->backlog_paused) {
		c->backlog_paused = true;
		c->next_backlog = c->w->backlog;
		c->w->backlog = c;
	}
	rc = c->w->up ? ack_after_kafka(c, pub, m) : ack_now(c, pub);
	msg_unref(m);
	if (rc == 0)
		client_update_read(c);
	return rc;
}

int handle_pubrel(struct client *c, const struct mqtt_packet *p)
{
	/* PUBCOMP even for an unknown id: the client may be resending a PUBREL
	 * whose PUBCOMP was lost before a reconnect. */
	pidset_del(&c->s->qos2_in, p->u.ack.packet_id);
	send_ack(c, MQTT_PUBCOMP, p->u.ack.packet_id);
	return 0;
}
