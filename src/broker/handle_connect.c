/*
 * handle_connect.c - CONNECT: protocol level, client id rules, credentials
 * and will; then who the client is (auth_connect.c) and the session is
 * attached (takeover.c).
 */
#include <stdio.h>

#include "broker/auth_connect.h"
#include "broker/client.h"
#include "broker/handle_connect.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"

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
	c->level = k->level;
	c->clean = k->clean;
	c->keepalive = k->keepalive;
	if (limits_check_connect(c, k) < 0)
		return -1;
	if (k->level == 3 && (id_len == 0 || id_len > 23)) {
		send_connack(c, MQTT_CONNACK_ID_REJECTED, false);
		client_close(c, "client id rejected (MQTT 3.1 needs 1..23 bytes)", false);
		return -1;
	}
	if (id_len == 0) {
		if (!k->clean) {
			send_connack(c, MQTT_CONNACK_ID_REJECTED, false);
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
		send_connack(c, MQTT_CONNACK_UNAVAILABLE, false);
		client_close(c, "out of memory", false);
		return -1;
	}
	return auth_connect(c, k);
}
