/*
 * handle_publish.c - PUBLISH and PUBREL from a client (the inbound QoS flows).
 *
 * QoS 2 duplicate suppression: a packet id stays in the session's qos2_in
 * set from the first PUBLISH until PUBREL; a PUBLISH whose id is in the set
 * is a resend and is answered with PUBREC without delivering it again.
 */
#include "broker.h"
#include "client.h"
#include "log.h"
#include "mqtt_codec.h"
#include "msg.h"
#include "session.h"
#include "worker.h"

static void send_ack(struct client *c, uint8_t type, uint16_t pid)
{
	struct mqtt_ack a = { .packet_id = pid };
	mqtt_encode_ack(&c->obuf, c->level, type, &a);
	STAT_INC(c->w, pkts_out[type]);
	client_mark_output(c);
}

int handle_publish(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_publish *pub = &p->u.publish;
	struct session *s = c->s;

	if (pub->qos == 2 && pidset_has(&s->qos2_in, pub->packet_id)) {
		send_ack(c, MQTT_PUBREC, pub->packet_id);
		return 0;
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
	msg_unref(m);
	if (pub->qos == 1) {
		send_ack(c, MQTT_PUBACK, pub->packet_id);
	} else if (pub->qos == 2) {
		if (pidset_add(&s->qos2_in, pub->packet_id) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
		send_ack(c, MQTT_PUBREC, pub->packet_id);
	}
	/* A client that does not read its acks must not grow our buffer. */
	if (buf_used(&c->obuf) >= LIM(c->w->br, max_output_bytes)) {
		c->read_paused = true;
		loop_io_mod(c->w->loop, &c->io, EPOLLOUT);
	}
	return 0;
}

int handle_pubrel(struct client *c, const struct mqtt_packet *p)
{
	/* PUBCOMP even for an unknown id: the client may be resending a PUBREL
	 * whose PUBCOMP was lost before a reconnect. */
	pidset_del(&c->s->qos2_in, p->u.ack.packet_id);
	send_ack(c, MQTT_PUBCOMP, p->u.ack.packet_id);
	return 0;
}
