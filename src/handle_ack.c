/*
 * handle_ack.c - PUBACK, PUBREC and PUBCOMP from a client: the outbound QoS
 * 1/2 flows. An ack frees a window slot, which pulls the next queued message.
 * Acks for unknown packet ids are ignored (a resend after reconnect).
 */
#include "client.h"
#include "inflight.h"
#include "mqtt_codec.h"
#include "msg.h"
#include "session.h"
#include "worker.h"

static void send_pubrel(struct client *c, uint16_t pid)
{
	struct mqtt_ack a = { .packet_id = pid };
	mqtt_encode_ack(&c->obuf, c->level, MQTT_PUBREL, &a);
	STAT_INC(c->w, pkts_out[MQTT_PUBREL]);
	client_mark_output(c);
}

int handle_puback(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (e && e->state == INFL_WAIT_PUBACK) {
		inflight_remove(&c->s->out, e);
		client_pump(c);
	}
	return 0;
}

int handle_pubrec(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (e && e->state == INFL_WAIT_PUBREC) {
		/* Keep the message until PUBCOMP: a tracked one completes only then. */
		e->state = INFL_WAIT_PUBCOMP;
	}
	if (e)
		send_pubrel(c, p->u.ack.packet_id);
	return 0;
}

int handle_pubcomp(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (e && e->state == INFL_WAIT_PUBCOMP) {
		inflight_remove(&c->s->out, e);
		client_pump(c);
	}
	return 0;
}
