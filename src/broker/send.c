/* send.c - outgoing packets; see send.h. */
#include "broker/alias_out.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/send.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
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

/* The Maximum Packet Size that admits exactly the packets whose remaining
 * length is at most max (limits.max_packet_size counts the remaining
 * length; MQTT 5 counts the whole packet): a remaining length over max
 * cannot have a shorter length field than max has. */
static uint32_t whole_packet_max(uint32_t max)
{
	uint32_t n = max < 128 ? 1 : max < 16384 ? 2 : max < 2097152 ? 3 : 4;
	return max + 1 + n;
}

/* How much a CONNACK too large for the client's Maximum Packet Size
 * leaves out, in turn (send_connack()). Only properties whose absence
 * cannot let the client go past our limits: the "available" flags (absent
 * means 1, what we send anyway), then Topic Alias Maximum (absent means 0:
 * the client uses no aliases, and c->alias_max becomes 0 to match). Never
 * Receive Maximum, Maximum Packet Size or Server Keep Alive (absent, the
 * client would send more, larger, or less often than we accept), Session
 * Expiry (it would believe its session lives longer) or the Assigned Client
 * Identifier. */
enum connack_trim { TRIM_NONE, TRIM_FLAGS, TRIM_ALIAS, TRIM_LAST = TRIM_ALIAS };

/* The properties of a level 5 CONNACK that accepts (5.0 3.2.2.3): what the
 * server allows and what it changed of the client's request, less what
 * trim leaves out. */
static void connack_props(struct client *c, struct mqtt_pw *w, enum connack_trim trim)
{
	struct broker *br = c->w->br;

	if (c->m5 & CL5_EXPIRY_CAPPED)
		mqtt_pw_int(w, MQTT_P_SESSION_EXPIRY, c->session_expiry);
	mqtt_pw_int(w, MQTT_P_RECEIVE_MAXIMUM, LIM(br, max_inflight));
	/* Maximum QoS and Retain Available: both supported, so absent. */
	mqtt_pw_int(w, MQTT_P_MAXIMUM_PACKET_SIZE, whole_packet_max(LIM(br, max_packet_size)));
	if (c->m5 & CL5_ASSIGNED_ID)
		mqtt_pw_str(w, MQTT_P_ASSIGNED_CLIENT_ID, c->id, c->id_len);
	if (trim >= TRIM_ALIAS)
		c->alias_max = 0; /* as announced: none (5.0 3.2.2.3.8) */
	if (c->alias_max)
		mqtt_pw_int(w, MQTT_P_TOPIC_ALIAS_MAXIMUM, c->alias_max);
	if (trim < TRIM_FLAGS) {
		mqtt_pw_int(w, MQTT_P_WILDCARD_SUB_AVAILABLE, 1);
		mqtt_pw_int(w, MQTT_P_SUB_ID_AVAILABLE, 1);
		mqtt_pw_int(w, MQTT_P_SHARED_SUB_AVAILABLE, 1);
	}
	if (c->m5 & CL5_KEEPALIVE_SET)
		mqtt_pw_int(w, MQTT_P_SERVER_KEEP_ALIVE, c->keepalive);
}

int send_connack(struct client *c, uint8_t rc, bool present)
{
	/* MQTT 3.1 has no session-present flag: the byte is reserved, 0. */
	struct mqtt_connack ca = { .session_present = present && c->level >= 4,
				   .rc = c->level == 5 ? mqtt5_connack_rc(rc) : rc };
	uint8_t pb[128];
	struct mqtt_pw w;
	size_t before = c->obuf.len;
	bool props = c->level == 5 && ca.rc == MQTT_RC_SUCCESS;

	for (enum connack_trim trim = TRIM_NONE;; trim++) {
		mqtt_pw_init(&w, pb, sizeof(pb));
		if (props) {
			connack_props(c, &w, trim);
			ca.props = mqtt_pw_props(&w); /* ids are at most ~30 bytes: no overflow */
		}
		int r = mqtt_encode_connack(&c->obuf, c->level, &ca);
		if (r != MQTT_OK || !c->max_packet || c->obuf.len - before <= c->max_packet)
			return sent(c, MQTT_CONNACK, r);
		/* Never larger than the client allows [MQTT-3.1.2-24]: leave out
		 * what may be left out; if it still does not fit, no CONNACK at
		 * all, only the close. */
		c->obuf.len = before;
		if (!props || trim == TRIM_LAST)
			break;
	}
	client_close(c, "CONNACK larger than the client's Maximum Packet Size", false);
	return -1;
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

int send_puback_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBACK, pid, rc);
}

int send_pubrec_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBREC, pid, rc);
}

int send_pubcomp_rc(struct client *c, uint16_t pid, uint8_t rc)
{
	return send_ack(c, MQTT_PUBCOMP, pid, rc);
}

int send_unsuback(struct client *c, uint16_t pid, const uint8_t *codes, uint32_t n)
{
	if (c->level != 5)
		return send_ack(c, MQTT_UNSUBACK, pid, MQTT_RC_SUCCESS);
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

/* Room for the per-delivery properties: Message Expiry (5 bytes), Topic
 * Alias (3) and up to SEND_MAX_SUBIDS Subscription Identifiers (5 bytes
 * each at most). */
#define EXTRA_PROPS (5 + 3 + 5 * SEND_MAX_SUBIDS)

/* The Topic Alias for m's topic toward a level-5 c (0: none): only for a client that
 * allows aliases (its Topic Alias Maximum > 0). *known: it has the mapping
 * already, so the topic name can be left out. */
static uint16_t topic_alias(struct client *c, const struct msg *m, bool *known)
{
	if (c->alias_max_out == 0)
		return 0;
	if (!c->alias_out && !(c->alias_out = alias_out_new(c->alias_max_out)))
		return 0; /* out of memory: full topic names */
	return alias_out_pick(c->alias_out, m->topic, m->topic_len, msg_topic_hash(m), known);
}

int send_publish(struct client *c, const struct msg *m, uint8_t qos, bool retain, uint16_t pid,
		 bool dup, const uint32_t *subids, uint16_t n_subids)
{
	uint8_t extra[EXTRA_PROPS];
	struct mqtt_pw pw;
	struct mqtt_publish p = {
		.qos = qos, .dup = dup, .retain = retain, .packet_id = pid,
		.topic = { (const uint8_t *)m->topic, m->topic_len },
		.payload = m->payload, .payload_len = m->payload_len,
	};

	mqtt_pw_init(&pw, extra, sizeof(extra));
	uint32_t left;
	if (m->expires_ms && msg_expiry_left(m, util_wall_ms(), &left)) {
		/* A copy whose onward delivery has started (a resend: dup) is
		 * completed whatever its expiry [MQTT-4.3.3-7, MQTT-4.4.0-1]: only
		 * a copy not yet sent is deleted [MQTT-3.3.2-5]. */
		if (left == 0 && !dup) {
			STAT_INC(c->w, msgs_expired);
			return SEND_DROPPED;
		}
		if (c->level == 5)
			mqtt_pw_int(&pw, MQTT_P_MESSAGE_EXPIRY, left);
	}
	bool known = false;
	uint16_t alias = 0;
	if (c->level == 5) {
		alias = topic_alias(c, m, &known);
		if (n_subids > SEND_MAX_SUBIDS)
			n_subids = SEND_MAX_SUBIDS;
		for (uint16_t i = 0; i < n_subids; i++)
			mqtt_pw_int(&pw, MQTT_P_SUBSCRIPTION_ID, subids[i]);
		if (alias) {
			mqtt_pw_u16(&pw, MQTT_P_TOPIC_ALIAS, alias);
			if (known)
				p.topic.len = 0;
		}
		p.props = (struct mqtt_props){ m->props, m->props_len };
		p.props_more = mqtt_pw_props(&pw);
		if (c->max_packet &&
		    mqtt_publish_size_props(5, p.topic.len, (size_t)m->props_len + pw.len,
					    m->payload_len, qos) > c->max_packet) {
			STAT_INC(c->w, msgs_too_large);
			return SEND_DROPPED;
		}
	}
	int rc = sent(c, MQTT_PUBLISH, mqtt_encode_publish(&c->obuf, c->level, &p));
	/* The client knows the mapping once this PUBLISH is on its way. */
	if (rc == 0 && alias && !known)
		alias_out_commit(c->alias_out, alias, m->topic, m->topic_len, msg_topic_hash(m));
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
