/* send.c - outgoing packets; see send.h. */
#include "broker/client.h"
#include "broker/send.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* The one place an encoder's result is looked at. */
static int sent(struct client *c, uint8_t type, int rc)
{
	if (rc != MQTT_OK) {
		log_warn_rl("encode failed client=%s addr=%s type=%s err=%s", log_q(c->id),
			 client_peer(c), mqtt_type_name(type), mqtt_err_str(rc));
		client_close(c, "out of memory encoding a packet", true);
		return -1;
	}
	STAT_INC(c->w, pkts_out[type]);
	client_mark_output(c);
	return 0;
}

int send_connack(struct client *c, uint8_t rc, bool present)
{
	/* MQTT 3.1 has no session-present flag: the byte is reserved, 0. */
	struct mqtt_connack ca = { .session_present = present && c->level >= 4,
				   .rc = c->level == 5 ? mqtt5_connack_rc(rc) : rc };
	return sent(c, MQTT_CONNACK, mqtt_encode_connack(&c->obuf, c->level, &ca));
}

/* PUBACK..PUBCOMP (and 3.1.1 UNSUBACK). A reason code goes out only at
 * level 5; below it, the packet is the same whatever rc says (callers keep
 * the 3.1.1 behaviour themselves). */
static int send_ack(struct client *c, uint8_t type, uint16_t pid, uint8_t rc)
{
	struct mqtt_ack a = { .packet_id = pid, .reason = c->level == 5 ? rc : 0 };
	return sent(c, type, mqtt_encode_ack(&c->obuf, c->level, type, &a));
}

int send_puback(struct client *c, uint16_t pid)
{
	return send_ack(c, MQTT_PUBACK, pid, MQTT_RC_SUCCESS);
}

int send_pubrec(struct client *c, uint16_t pid)
{
	return send_ack(c, MQTT_PUBREC, pid, MQTT_RC_SUCCESS);
}

int send_pubrel(struct client *c, uint16_t pid)
{
	return send_ack(c, MQTT_PUBREL, pid, MQTT_RC_SUCCESS);
}

int send_pubcomp(struct client *c, uint16_t pid)
{
	return send_ack(c, MQTT_PUBCOMP, pid, MQTT_RC_SUCCESS);
}

int send_puback_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBACK, pid, rc);
}

int send_pubrec_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBREC, pid, rc);
}

int send_pubrel_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBREL, pid, rc);
}

int send_pubcomp_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBCOMP, pid, rc);
}

int send_unsuback(struct client *c, uint16_t pid)
{
	return send_ack(c, MQTT_UNSUBACK, pid, MQTT_RC_SUCCESS);
}

int send_unsuback_rc(struct client *c, uint16_t pid, const uint8_t *codes, uint32_t n)
{
	if (c->level != 5)
		return send_unsuback(c, pid);
	struct mqtt_suback sa = { .packet_id = pid, .codes = codes, .count = n };
	return sent(c, MQTT_UNSUBACK, mqtt_encode_suback(&c->obuf, 5, MQTT_UNSUBACK, &sa));
}

int send_suback(struct client *c, uint16_t pid, const uint8_t *codes, uint32_t n)
{
	struct mqtt_suback sa = { .packet_id = pid, .codes = codes, .count = n };
	return sent(c, MQTT_SUBACK, mqtt_encode_suback(&c->obuf, c->level, MQTT_SUBACK, &sa));
}

int send_pingresp(struct client *c)
{
	return sent(c, MQTT_PINGRESP, mqtt_encode_simple(&c->obuf, c->level, MQTT_PINGRESP));
}

int send_publish(struct client *c, const struct msg *m, uint8_t qos, bool retain, uint16_t pid,
		 bool dup)
{
	struct mqtt_publish p = {
		.qos = qos, .dup = dup, .retain = retain, .packet_id = pid,
		.topic = { (const uint8_t *)m->topic, m->topic_len },
		.payload = m->payload, .payload_len = m->payload_len,
	};
	int rc = sent(c, MQTT_PUBLISH, mqtt_encode_publish(&c->obuf, c->level, &p));
	if (rc == 0 && c->up)
		atomic_fetch_add_explicit(&c->up->st.msgs_out, 1, memory_order_relaxed);
	return rc;
}

int send_connect(struct client *c, const struct mqtt_connect *k)
{
	return sent(c, MQTT_CONNECT, mqtt_encode_connect(&c->obuf, k));
}

int send_subscribe(struct client *c, uint16_t pid, const struct mqtt_str *filters,
		   const uint8_t *qos, uint16_t n)
{
	return sent(c, MQTT_SUBSCRIBE, mqtt_encode_subscribe(&c->obuf, c->level, MQTT_SUBSCRIBE, pid,
							     filters, qos, n));
}

int send_pingreq(struct client *c)
{
	return sent(c, MQTT_PINGREQ, mqtt_encode_simple(&c->obuf, c->level, MQTT_PINGREQ));
}

int send_disconnect(struct client *c)
{
	return sent(c, MQTT_DISCONNECT, mqtt_encode_simple(&c->obuf, c->level, MQTT_DISCONNECT));
}
