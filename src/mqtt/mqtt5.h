/*
 * mqtt5.h - MQTT 5.0 vocabulary: property identifiers, reason codes, and
 * the two tools every MQTT 5 packet needs: an iterator over a property list
 * that mqtt_decode() already validated, and a writer that builds one.
 *
 * Pure, no allocation: the writer fills a buffer the caller owns (a stack
 * array sized for the packet at hand) and reports overflow instead of
 * growing. Thread safety: reentrant.
 */
#ifndef KG_MQTT5_H
#define KG_MQTT5_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt/mqtt_codec.h"

/* Property identifiers (5.0 section 2.2.2.2). */
enum mqtt_prop_id {
	MQTT_P_PAYLOAD_FORMAT = 0x01,
	MQTT_P_MESSAGE_EXPIRY = 0x02,
	MQTT_P_CONTENT_TYPE = 0x03,
	MQTT_P_RESPONSE_TOPIC = 0x08,
	MQTT_P_CORRELATION_DATA = 0x09,
	MQTT_P_SUBSCRIPTION_ID = 0x0b,
	MQTT_P_SESSION_EXPIRY = 0x11,
	MQTT_P_ASSIGNED_CLIENT_ID = 0x12,
	MQTT_P_SERVER_KEEP_ALIVE = 0x13,
	MQTT_P_AUTH_METHOD = 0x15,
	MQTT_P_AUTH_DATA = 0x16,
	MQTT_P_REQUEST_PROBLEM_INFO = 0x17,
	MQTT_P_WILL_DELAY = 0x18,
	MQTT_P_REQUEST_RESPONSE_INFO = 0x19,
	MQTT_P_RESPONSE_INFO = 0x1a,
	MQTT_P_SERVER_REFERENCE = 0x1c,
	MQTT_P_REASON_STRING = 0x1f,
	MQTT_P_RECEIVE_MAXIMUM = 0x21,
	MQTT_P_TOPIC_ALIAS_MAXIMUM = 0x22,
	MQTT_P_TOPIC_ALIAS = 0x23,
	MQTT_P_MAXIMUM_QOS = 0x24,
	MQTT_P_RETAIN_AVAILABLE = 0x25,
	MQTT_P_USER_PROPERTY = 0x26,
	MQTT_P_MAXIMUM_PACKET_SIZE = 0x27,
	MQTT_P_WILDCARD_SUB_AVAILABLE = 0x28,
	MQTT_P_SUB_ID_AVAILABLE = 0x29,
	MQTT_P_SHARED_SUB_AVAILABLE = 0x2a,
};

/* Reason codes (5.0 section 2.4). */
enum mqtt_rc {
	MQTT_RC_SUCCESS = 0x00,           /* also Normal disconnection, Granted QoS 0 */
	MQTT_RC_GRANTED_QOS1 = 0x01,
	MQTT_RC_GRANTED_QOS2 = 0x02,
	MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
	MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
	MQTT_RC_CONTINUE_AUTH = 0x18,
	MQTT_RC_REAUTHENTICATE = 0x19,
	MQTT_RC_UNSPECIFIED = 0x80,
	MQTT_RC_MALFORMED = 0x81,
	MQTT_RC_PROTOCOL_ERROR = 0x82,
	MQTT_RC_IMPL_SPECIFIC = 0x83,
	MQTT_RC_UNSUPPORTED_VERSION = 0x84,
	MQTT_RC_CLIENT_ID_INVALID = 0x85,
	MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
	MQTT_RC_NOT_AUTHORIZED = 0x87,
	MQTT_RC_SERVER_UNAVAILABLE = 0x88,
	MQTT_RC_SERVER_BUSY = 0x89,
	MQTT_RC_BANNED = 0x8a,
	MQTT_RC_SERVER_SHUTTING_DOWN = 0x8b,
	MQTT_RC_BAD_AUTH_METHOD = 0x8c,
	MQTT_RC_KEEPALIVE_TIMEOUT = 0x8d,
	MQTT_RC_SESSION_TAKEN_OVER = 0x8e,
	MQTT_RC_TOPIC_FILTER_INVALID = 0x8f,
	MQTT_RC_TOPIC_NAME_INVALID = 0x90,
	MQTT_RC_PACKET_ID_IN_USE = 0x91,
	MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
	MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
	MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
	MQTT_RC_PACKET_TOO_LARGE = 0x95,
	MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
	MQTT_RC_QUOTA_EXCEEDED = 0x97,
	MQTT_RC_ADMIN_ACTION = 0x98,
	MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9a,
	MQTT_RC_QOS_NOT_SUPPORTED = 0x9b,
	MQTT_RC_USE_ANOTHER_SERVER = 0x9c,
	MQTT_RC_SERVER_MOVED = 0x9d,
	MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9e,
	MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9f,
	MQTT_RC_MAX_CONNECT_TIME = 0xa0,
	MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xa1,
	MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xa2,
};

/* The MQTT 5 CONNACK reason code for a 3.1.1 CONNACK return code
 * (1 -> 0x84, 2 -> 0x85, 3 -> 0x88, 4 -> 0x86, 5 -> 0x87; 0 -> 0). Other
 * values pass through (already level 5 codes). */
uint8_t mqtt5_connack_rc(uint8_t rc311);

/* The properties an application message carries unchanged from its
 * publisher (or will) to its receivers (5.0 3.3.2.3): Payload Format
 * Indicator, Content Type, Response Topic, Correlation Data, User Property;
 * what struct msg's props hold. Not Message Expiry (rewritten on the way),
 * Topic Alias (per connection) or Subscription Identifier (per
 * subscription). */
static inline bool mqtt_prop_forwarded(uint8_t id)
{
	return id == MQTT_P_PAYLOAD_FORMAT || id == MQTT_P_CONTENT_TYPE ||
	       id == MQTT_P_RESPONSE_TOPIC || id == MQTT_P_CORRELATION_DATA ||
	       id == MQTT_P_USER_PROPERTY;
}

/* One property. Integers (byte, two/four-byte, varint) are in value;
 * strings and binary data in str; a user property is str = name,
 * str2 = value. Borrowed from the list. */
struct mqtt_prop {
	uint8_t id;
	uint32_t value;
	struct mqtt_str str;
	struct mqtt_str str2;
};

struct mqtt_prop_iter {
	const uint8_t *p;
	const uint8_t *end;
};

/* Walks a property list validated by mqtt_decode() (or built by
 * mqtt_pw). mqtt_props_next() returns false at the end, and also at a
 * malformed entry (it never reads past the list). */
void mqtt_props_begin(const struct mqtt_props *pr, struct mqtt_prop_iter *it);
bool mqtt_props_next(struct mqtt_prop_iter *it, struct mqtt_prop *out);
/* The first property id in pr into *out (may be NULL); false if absent. */
bool mqtt_props_find(const struct mqtt_props *pr, uint8_t id, struct mqtt_prop *out);

/* Writes a property list (without its length prefix: the encoders add it)
 * into buf[0..cap). After an overflow every call is a no-op and
 * w->overflow stays true. The identifier decides the value's layout. */
struct mqtt_pw {
	uint8_t *p;
	uint32_t len;
	uint32_t cap;
	bool overflow;
};

void mqtt_pw_init(struct mqtt_pw *w, uint8_t *buf, uint32_t cap);
/* Byte, two-byte, four-byte and varint properties: the layout is the id's.
 * An id that is not an integer property, or a varint value above
 * 268,435,455, sets overflow (a caller bug; nothing is written). */
void mqtt_pw_int(struct mqtt_pw *w, uint8_t id, uint32_t value);
/* UTF-8 string or binary data property. */
void mqtt_pw_str(struct mqtt_pw *w, uint8_t id, const void *s, uint16_t len);
/* User property (name, value). */
void mqtt_pw_pair(struct mqtt_pw *w, const void *k, uint16_t klen, const void *v,
		  uint16_t vlen);
/* Already-encoded properties appended as they are. */
void mqtt_pw_raw(struct mqtt_pw *w, const uint8_t *p, uint32_t len);

/* A two-byte integer property (Topic Alias, Receive Maximum, Server Keep
 * Alive, Topic Alias Maximum) without mqtt_pw_int()'s lookup of the
 * layout: written once per delivery for an aliased topic. */
static inline void mqtt_pw_u16(struct mqtt_pw *w, uint8_t id, uint16_t v)
{
	if (w->overflow || w->cap - w->len < 3) {
		w->overflow = true;
		return;
	}
	uint8_t *p = w->p + w->len;
	p[0] = id;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)v;
	w->len += 3;
}

static inline struct mqtt_props mqtt_pw_props(const struct mqtt_pw *w)
{
	struct mqtt_props pr = { w->p, w->len };
	return pr;
}

#endif
