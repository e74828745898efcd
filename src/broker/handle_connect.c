/*
 * handle_connect.c - CONNECT: protocol level, client id rules, credentials
 * and will; then who the client is (auth_connect.c) and the session is
 * attached (takeover.c).
 *
 * MQTT 5 (level 5): the CONNECT properties set the connection's limits
 * toward the client (Receive Maximum, Maximum Packet Size, Topic Alias
 * Maximum), its Session Expiry Interval (capped by
 * limits.max_session_expiry) and Request Problem Information; the will
 * properties its Will Delay Interval and the properties the will carries.
 * kafkagate starts no enhanced authentication: an Authentication Method
 * is refused with CONNACK 0x8C (docs/mqtt5/connection.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth_connect.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/handle_connect.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/worker.h"
#include "core/hash.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* CONNECT's properties (validated by the decoder: each at most once, values
 * in range). Returns 0, or -1 after answering and closing. */
static int connect_props(struct client *c, const struct mqtt_connect *k)
{
	struct broker *br = c->w->br;
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	uint32_t expiry = 0;

	mqtt_props_begin(&k->props, &it);
	while (mqtt_props_next(&it, &p)) {
		switch (p.id) {
		case MQTT_P_SESSION_EXPIRY:
			expiry = p.value;
			break;
		case MQTT_P_RECEIVE_MAXIMUM:
			c->recv_max = (uint16_t)p.value;
			break;
		case MQTT_P_MAXIMUM_PACKET_SIZE:
			c->max_packet = p.value;
			break;
		case MQTT_P_TOPIC_ALIAS_MAXIMUM:
			c->alias_max_out = (uint16_t)p.value;
			break;
		case MQTT_P_REQUEST_PROBLEM_INFO:
			c->problem_info = p.value != 0;
			break;
		case MQTT_P_AUTH_METHOD:
			/* No enhanced authentication is offered: any method is one we
			 * do not support (5.0 3.1.2.11.9; CONNACK 0x8C). */
			send_connack(c, MQTT_RC_BAD_AUTH_METHOD, false);
			client_close(c, "authentication method not supported", false);
			return -1;
		default:
			break; /* Request Response Information: never answered (allowed);
			          user properties: not used */
		}
	}
	if (expiry == 0)
		c->m5 |= CL5_EXPIRY_ZERO;
	uint32_t cap = LIM(br, max_session_expiry);
	if (expiry > cap) {
		expiry = cap; /* CONNACK then says what was granted (5.0 3.2.2.3.2) */
		c->m5 |= CL5_EXPIRY_CAPPED;
	}
	c->session_expiry = expiry;
	c->alias_max = (uint16_t)LIM(br, topic_alias_maximum);
	return 0;
}

/* The will of a level 5 CONNECT: its delay and expiry are kept aside, the
 * properties a will carries to its subscribers (payload format, content
 * type, response topic, correlation data, user properties) go into the
 * message in the order received. NULL on ENOMEM. */
static struct msg *will_new5(struct client *c, const struct mqtt_connect *k)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	uint8_t *fwd = k->will_props.len ? malloc(k->will_props.len) : NULL;
	uint32_t n = 0;

	if (k->will_props.len && !fwd)
		return NULL;
	mqtt_props_begin(&k->will_props, &it);
	for (const uint8_t *start = it.p; mqtt_props_next(&it, &p); start = it.p) {
		if (mqtt_prop_forwarded(p.id)) {
			memcpy(fwd + n, start, (size_t)(it.p - start)); /* the entry as it came */
			n += (uint32_t)(it.p - start);
		} else if (p.id == MQTT_P_WILL_DELAY) {
			c->will_delay = p.value;
		} else if (p.id == MQTT_P_MESSAGE_EXPIRY) {
			c->will_expiry = p.value;
			c->m5 |= CL5_WILL_EXPIRY;
		}
	}
	struct msg *m = msg_new_props((const char *)k->will_topic.p, k->will_topic.len,
				      k->will_payload.p, k->will_payload.len, k->will_qos,
				      k->will_retain, n ? fwd : NULL, n);
	free(fwd);
	return m;
}

int handle_connect(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_connect *k = &p->u.connect;
	char idbuf[40];
	const char *id = (const char *)k->client_id.p;
	uint16_t id_len = k->client_id.len;

	if (c->state != CL_NEW) {
		/* [MQTT-3.1.0-2]: a second CONNECT is a protocol error. */
		client_close_rc(c, "second CONNECT", true, MQTT_RC_PROTOCOL_ERROR);
		return -1;
	}
	c->level = k->level;
	c->clean = k->clean;
	c->keepalive = k->keepalive;
	if (k->level == 5 && connect_props(c, k) < 0)
		return -1;
	if (limits_check_connect(c, k) < 0)
		return -1;
	if (k->level == 3 && (id_len == 0 || id_len > 23)) {
		send_connack(c, MQTT_CONNACK_ID_REJECTED, false);
		client_close(c, "client id rejected (MQTT 3.1 needs 1..23 bytes)", false);
		return -1;
	}
	if (id_len == 0) {
		/* 3.1.1 needs clean session 1 for an empty id [MQTT-3.1.3-8]; MQTT 5
		 * assigns one either way and says which [MQTT-3.2.2-16]. */
		if (!k->clean && k->level != 5) {
			send_connack(c, MQTT_CONNACK_ID_REJECTED, false);
			client_close(c, "empty client id with clean session 0", false);
			return -1;
		}
		id_len = (uint16_t)snprintf(idbuf, sizeof(idbuf), "kg-%016llx",
					    (unsigned long long)c->conn_id);
		if (k->level == 5) {
			/* Unique among live connections (conn_id); the random part
			 * keeps a session that outlives the connection from being
			 * guessed by another client. */
			id_len += (uint16_t)snprintf(idbuf + id_len, sizeof(idbuf) - id_len, "-%08x",
						     (unsigned)hash_seed(c));
			c->m5 |= CL5_ASSIGNED_ID;
		}
		id = idbuf;
	}
	c->id = util_strdup_n(id, id_len);
	c->id_len = id_len;
	if (k->has_username)
		c->username = util_strdup_n((const char *)k->username.p, k->username.len);
	if (k->will && k->level == 5) {
		c->will = will_new5(c, k);
	} else if (k->will) {
		c->will = msg_new((const char *)k->will_topic.p, k->will_topic.len,
				  k->will_payload.p, k->will_payload.len, k->will_qos, k->will_retain);
	}
	if (!c->id || (k->has_username && !c->username) || (k->will && !c->will)) {
		send_connack(c, MQTT_CONNACK_UNAVAILABLE, false);
		client_close(c, "out of memory", false);
		return -1;
	}
	return auth_connect(c, k);
}
