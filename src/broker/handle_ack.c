/*
 * handle_ack.c - PUBACK, PUBREC and PUBCOMP from a client: the outbound QoS
 * 1/2 flows. An ack frees a window slot, which pulls the next queued message.
 * Acks for unknown packet ids are ignored (a resend after reconnect).
 *
 * MQTT 5 reason codes (decoded and range-checked by the codec):
 *  - PUBACK with any reason ends the QoS 1 flow: a failure code is the
 *    client's answer, not a reason to send the message again.
 *  - PUBREC with a reason >= 0x80 ends the QoS 2 flow (PUBREL only below
 *    0x80 [MQTT-4.3.3-4]): the window slot is freed and nothing is sent
 *    back, also for an unknown id.
 *  - PUBCOMP 0x92 (the client did not know the id) ends the flow like a
 *    success.
 * Their properties (reason string, user properties) are not used.
 */
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/handle_ack.h"
#include "broker/inflight.h"
#include "broker/send.h"
#include "broker/session.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* An ack of the wrong kind for a packet id in flight (PUBREC for a QoS 1
 * PUBLISH, PUBACK for QoS 2, ...) is a protocol violation: MQTT 5 clients
 * are told so with DISCONNECT 0x82. */
static int wrong_ack(struct client *c, const char *what)
{
	client_close_rc(c, what, true, MQTT_RC_PROTOCOL_ERROR);
	return -1;
}

int handle_puback(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (!e)
		return 0;
	if (e->state != INFL_WAIT_PUBACK)
		return wrong_ack(c, "PUBACK for a QoS 2 message");
	inflight_remove(&c->s->out, e);
	deliver_pump(c);
	return 0;
}

int handle_pubrec(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (e && e->state == INFL_WAIT_PUBACK)
		return wrong_ack(c, "PUBREC for a QoS 1 message");
	if (p->u.ack.reason >= 0x80) {
		/* The client refused it: the flow ends here, nothing to release. */
		if (e) {
			inflight_remove(&c->s->out, e);
			deliver_pump(c);
		}
		return 0;
	}
	/* Keep the message until PUBCOMP: a tracked one completes only then. */
	if (e)
		e->state = INFL_WAIT_PUBCOMP;
	/* PUBREL also for an unknown id: the client may repeat a PUBREC whose
	 * PUBREL was lost across a reconnect, and must get to PUBCOMP. */
	return send_pubrel(c, p->u.ack.packet_id);
}

int handle_pubcomp(struct client *c, const struct mqtt_packet *p)
{
	struct inflight_entry *e = inflight_find(&c->s->out, p->u.ack.packet_id);
	if (!e)
		return 0;
	if (e->state != INFL_WAIT_PUBCOMP)
		return wrong_ack(c, "PUBCOMP before PUBREC");
	inflight_remove(&c->s->out, e);
	deliver_pump(c);
	return 0;
}
