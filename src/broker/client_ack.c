/*
 * client_ack.c - the uplink acknowledgement ring of a publishing connection.
 *
 * QoS 1/2 publishes that wait for Kafka take a slot in arrival order; when
 * their delivery reports are in, PUBACK/PUBREC leave for every leading
 * completed slot, so acks keep the order of the publishes (MQTT-4.6.0-2/3)
 * even though Kafka partitions answer out of order. Owner thread only.
 */
#include <stdlib.h>

#include "broker/broker.h"
#include "broker/client.h"
#include "mqtt/mqtt_codec.h"
#include "core/msg.h"
#include "broker/session.h"
#include "broker/worker.h"

struct client_uplink *client_uplink(struct client *c)
{
	if (!c->up)
		c->up = calloc(1, sizeof(*c->up));
	return c->up;
}

uint32_t client_ack_push(struct client *c, uint16_t pid, uint8_t qos)
{
	struct client_uplink *u = client_uplink(c);
	if (!u)
		return 0;
	if (u->ack_n == u->ack_cap) {
		uint32_t cap = u->ack_cap ? u->ack_cap * 2 : 8;
		struct ack_slot *a = malloc(cap * sizeof(*a));
		if (!a)
			return 0;
		for (uint32_t i = 0; i < u->ack_n; i++)
			a[i] = u->acks[(u->ack_head + i) % u->ack_cap];
		free(u->acks);
		u->acks = a;
		u->ack_cap = cap;
		u->ack_head = 0;
	}
	if (++u->ack_seq == 0)
		u->ack_seq = 1;
	u->acks[(u->ack_head + u->ack_n) % u->ack_cap] =
		(struct ack_slot){ .seq = u->ack_seq, .pid = pid, .qos = qos, .state = ACK_PENDING };
	u->ack_n++;
	return u->ack_seq;
}

bool client_ack_pending(const struct client *c, uint16_t pid)
{
	const struct client_uplink *u = c->up;
	if (!u)
		return false;
	for (uint32_t i = 0; i < u->ack_n; i++) {
		const struct ack_slot *a = &u->acks[(u->ack_head + i) % u->ack_cap];
		if (a->pid == pid && a->qos == 2)
			return true;
	}
	return false;
}

void client_ack_complete(struct client *c, uint32_t seq, bool ok)
{
	struct client_uplink *u = c->up;
	bool failed = false;

	for (uint32_t i = 0; i < u->ack_n; i++) {
		struct ack_slot *a = &u->acks[(u->ack_head + i) % u->ack_cap];
		if (a->seq == seq) {
			a->state = ok ? ACK_DONE : ACK_FAILED;
			break;
		}
	}
	while (u->ack_n > 0) {
		struct ack_slot *a = &u->acks[u->ack_head];
		if (a->state == ACK_PENDING)
			break;
		if (a->state == ACK_FAILED) {
			failed = true;
			break;
		}
		struct mqtt_ack ack = { .packet_id = a->pid };
		if (a->qos == 2 && c->s && pidset_add(&c->s->qos2_in, a->pid) < 0) {
			failed = true;
			break;
		}
		uint8_t type = a->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
		mqtt_encode_ack(&c->obuf, c->level, type, &ack);
		STAT_INC(c->w, pkts_out[type]);
		client_mark_output(c);
		u->ack_head = (u->ack_head + 1) % u->ack_cap;
		u->ack_n--;
	}
	if (failed) {
		/* Not acknowledged: the device keeps the message and resends it. */
		client_close(c, "kafka delivery failed", true);
		return;
	}
	client_update_read(c);
}
