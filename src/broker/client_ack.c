/* client_ack.c - the acknowledgement ring; see client_ack.h. */
#include <assert.h>
#include <stdlib.h>

#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/send.h"
#include "broker/session.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"

static struct client_acks *acks_get(struct client *c)
{
	if (!c->acks)
		c->acks = calloc(1, sizeof(*c->acks));
	return c->acks;
}

static struct ack_slot *slot_at(const struct client_acks *a, uint32_t i)
{
	return &a->slots[(a->head + i) % a->cap];
}

uint32_t client_ack_push(struct client *c, uint16_t pid, uint8_t qos)
{
	struct client_acks *a = acks_get(c);
	if (!a)
		return 0;
	if (a->n == a->cap) {
		uint32_t cap = a->cap ? a->cap * 2 : 8;
		struct ack_slot *s = malloc(cap * sizeof(*s));
		if (!s)
			return 0;
		for (uint32_t i = 0; i < a->n; i++)
			s[i] = *slot_at(a, i);
		free(a->slots);
		a->slots = s;
		a->cap = cap;
		a->head = 0;
	}
	if (++a->seq == 0)
		a->seq = 1;
	a->slots[(a->head + a->n) % a->cap] =
		(struct ack_slot){ .seq = a->seq, .pid = pid, .qos = qos, .state = ACK_PENDING };
	a->n++;
	return a->seq;
}

bool client_ack_pending(const struct client *c, uint16_t pid)
{
	const struct client_acks *a = c->acks;
	if (!a)
		return false;
	for (uint32_t i = 0; i < a->n; i++) {
		const struct ack_slot *s = slot_at(a, i);
		if (s->pid == pid && s->qos == 2)
			return true;
	}
	return false;
}

uint32_t client_ack_count(const struct client *c)
{
	return c->acks ? c->acks->n : 0;
}

uint32_t client_ack_qos2_count(const struct client *c)
{
	const struct client_acks *a = c->acks;
	uint32_t n = 0;

	for (uint32_t i = 0; a && i < a->n; i++)
		n += slot_at(a, i)->qos == 2;
	return n;
}

int client_ack_qos2_accepted(struct client *c, uint16_t pid)
{
	if (c->s && pidset_add(&c->s->qos2_in, pid) < 0)
		goto oom;
	/* Only MQTT 5 has a quota to count this id against. */
	if (c->level == 5) {
		struct client_acks *a = acks_get(c);
		if (!a || pidset_add(&a->qos2_here, pid) < 0)
			goto oom;
	}
	return 0;
oom:
	client_close(c, "out of memory", true);
	return -1;
}

bool client_ack_qos2_released(struct client *c, uint16_t pid)
{
	if (c->acks)
		pidset_del(&c->acks->qos2_here, pid);
	return c->s && pidset_del(&c->s->qos2_in, pid);
}

uint32_t client_ack_quota_used(const struct client *c)
{
	return c->acks ? c->acks->n + c->acks->qos2_here.n : 0;
}

bool client_ack_window_full(const struct client *c, uint32_t max_inflight)
{
	return c->level != 5 && client_ack_count(c) >= max_inflight;
}

void client_ack_complete(struct client *c, uint32_t seq, bool ok)
{
	client_ack_complete_rc(c, seq, ok ? MQTT_RC_SUCCESS : MQTT_RC_UNSPECIFIED);
}

void client_ack_complete_rc(struct client *c, uint32_t seq, uint8_t rc)
{
	struct client_acks *a = c->acks;
	bool failed = false;

	/* A sequence number is only handed out by client_ack_push(). */
	assert(a != NULL);
	if (!a)
		return;
	for (uint32_t i = 0; i < a->n; i++) {
		struct ack_slot *s = slot_at(a, i);
		if (s->seq == seq) {
			s->state = ACK_DONE;
			s->rc = rc;
			break;
		}
	}
	while (a->n > 0) {
		struct ack_slot *s = slot_at(a, 0);
		if (s->state == ACK_PENDING)
			break;
		bool bad = s->rc >= 0x80;
		if (bad && c->level != 5) {
			failed = true;
			break;
		}
		/* QoS 2: the id is remembered until PUBREL (duplicate
		 * suppression); a failed one ends its flow here (5.0 4.3.3). */
		if (s->qos == 2 && !bad && client_ack_qos2_accepted(c, s->pid) < 0)
			return;
		if ((s->qos == 1 ? send_puback_rc(c, s->pid, s->rc)
				 : send_pubrec_rc(c, s->pid, s->rc)) < 0)
			return;
		a->head = (a->head + 1) % a->cap;
		a->n--;
	}
	if (failed) {
		/* Not acknowledged: the device keeps the message and resends it. */
		client_close(c, "delivery failed, not acknowledged", true);
		return;
	}
	client_update_read(c);
}

int client_ack_block(struct client *c, struct msg *m, uint32_t seq)
{
	struct client_acks *a = acks_get(c);
	if (!a)
		return -1;
	assert(a->blocked == NULL);
	a->blocked = msg_ref(m);
	a->blocked_seq = seq;
	return 0;
}

void client_acks_free(struct client_acks *a)
{
	if (!a)
		return;
	free(a->slots);
	msg_unref(a->blocked);
	pidset_release(&a->qos2_here);
	free(a);
}
