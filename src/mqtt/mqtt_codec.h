/*
 * mqtt_codec.h - MQTT wire format: framing, decoding and encoding.
 *
 * Pure: no I/O, no globals, no logging. Framing and decoding never allocate;
 * the encoders append to a struct buf, which grows (and may fail with
 * MQTT_ERR_NOSPACE). Every reader is bounded by the buffer it is given;
 * nothing is ever read past `len`.
 *
 * Decoded packets BORROW from the frame's buffer: every pointer in a struct
 * mqtt_packet is valid only while the bytes passed to mqtt_frame_parse() are.
 *
 * Protocol levels: 3 (MQTT 3.1, "MQIsdp"), 4 (3.1.1), 5 (5.0). Level 5 fields
 * (properties, reason codes) are present in the structs now so that MQTT 5
 * support adds behaviour, not a new shape. For levels 3 and 4 properties are
 * always empty and reason codes carry the 3.1.1 return codes.
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef KG_MQTT_CODEC_H
#define KG_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum mqtt_type {
	MQTT_CONNECT = 1,
	MQTT_CONNACK = 2,
	MQTT_PUBLISH = 3,
	MQTT_PUBACK = 4,
	MQTT_PUBREC = 5,
	MQTT_PUBREL = 6,
	MQTT_PUBCOMP = 7,
	MQTT_SUBSCRIBE = 8,
	MQTT_SUBACK = 9,
	MQTT_UNSUBSCRIBE = 10,
	MQTT_UNSUBACK = 11,
	MQTT_PINGREQ = 12,
	MQTT_PINGRESP = 13,
	MQTT_DISCONNECT = 14,
	MQTT_AUTH = 15, /* MQTT 5 only */
};

/* Error codes: small negative integers returned by the parsers. */
enum mqtt_err {
	MQTT_OK = 0,
	MQTT_ERR_MALFORMED = -1,     /* violates the spec's packet format */
	MQTT_ERR_TOO_LARGE = -2,     /* remaining length over the configured max */
	MQTT_ERR_PROTOCOL = -3,      /* well formed but not allowed (e.g. bad flags) */
	MQTT_ERR_UTF8 = -4,          /* invalid UTF-8 or U+0000 in a string */
	MQTT_ERR_TOPIC = -5,         /* invalid topic name or filter */
	MQTT_ERR_PROTO_VERSION = -6, /* CONNECT with an unsupported protocol level */
	MQTT_ERR_NOSPACE = -7,       /* encoder: output buffer too small */
};

/* 3.1.1 CONNACK return codes (level 3/4). */
enum mqtt_connack_rc {
	MQTT_CONNACK_ACCEPTED = 0,
	MQTT_CONNACK_BAD_PROTOCOL = 1,
	MQTT_CONNACK_ID_REJECTED = 2,
	MQTT_CONNACK_UNAVAILABLE = 3,
	MQTT_CONNACK_BAD_AUTH = 4,
	MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

#define MQTT_SUBACK_FAILURE 0x80
#define MQTT_MAX_REMAINING 268435455u /* 4-byte varint maximum */

/* A length-prefixed string or binary field, borrowed from the packet buffer.
 * Not NUL-terminated. */
struct mqtt_str {
	const uint8_t *p;
	uint16_t len;
};

/* MQTT 5 properties, kept as the raw validated bytes. len == 0 for levels 3/4. */
struct mqtt_props {
	const uint8_t *p;
	uint32_t len;
};

/* One whole packet located in a byte buffer. */
struct mqtt_frame {
	uint8_t type;          /* enum mqtt_type */
	uint8_t flags;         /* low nibble of the fixed header */
	const uint8_t *body;   /* variable header + payload */
	uint32_t body_len;     /* remaining length */
};

struct mqtt_connect {
	uint8_t level;          /* 3, 4 or 5 */
	bool clean;             /* clean session (3.1.1) / clean start (5) */
	bool will;
	uint8_t will_qos;
	bool will_retain;
	bool has_username;
	bool has_password;
	uint16_t keepalive;
	struct mqtt_str client_id;
	struct mqtt_str will_topic;
	struct mqtt_str will_payload;
	struct mqtt_str username;
	struct mqtt_str password;
	struct mqtt_props props;
	struct mqtt_props will_props;
};

struct mqtt_connack {
	bool session_present;
	uint8_t rc;             /* 3.1.1 return code or MQTT 5 reason code */
	struct mqtt_props props;
};

struct mqtt_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	uint16_t packet_id;     /* 0 when qos == 0 */
	struct mqtt_str topic;
	struct mqtt_props props;
	const uint8_t *payload;
	uint32_t payload_len;
	/* Encoder only (level 5): properties written after props in the same
	 * list, so that a broker adds per-delivery ones (Message Expiry,
	 * Subscription Identifiers) to a message's stored list without copying
	 * it. The decoder leaves it empty. */
	struct mqtt_props props_more;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP; also UNSUBACK in 3.1.1 (no payload). */
struct mqtt_ack {
	uint16_t packet_id;
	uint8_t reason;         /* 0 unless MQTT 5 sends one */
	struct mqtt_props props;
};

/* SUBSCRIBE / UNSUBSCRIBE: the topic list is validated by the decoder and
 * walked with mqtt_topics_next(). */
struct mqtt_subscribe {
	uint16_t packet_id;
	uint16_t count;         /* number of topic filters, >= 1 */
	struct mqtt_props props;
	const uint8_t *list;    /* the payload */
	uint32_t list_len;
	bool with_options;      /* SUBSCRIBE: each filter is followed by an options byte */
};

/* SUBACK, and UNSUBACK in MQTT 5: one return/reason code per filter. */
struct mqtt_suback {
	uint16_t packet_id;
	struct mqtt_props props;
	const uint8_t *codes;
	uint32_t count;
};

struct mqtt_disconnect {
	uint8_t reason;
	struct mqtt_props props;
};

struct mqtt_packet {
	uint8_t type;
	union {
		struct mqtt_connect connect;
		struct mqtt_connack connack;
		struct mqtt_publish publish;
		struct mqtt_ack ack;          /* PUBACK..PUBCOMP, UNSUBACK (level 3/4) */
		struct mqtt_subscribe sub;    /* SUBSCRIBE, UNSUBSCRIBE */
		struct mqtt_suback suback;    /* SUBACK, UNSUBACK (level 5) */
		struct mqtt_disconnect disconnect;
	} u;
};

/* Iterator over a decoded SUBSCRIBE/UNSUBSCRIBE list. */
struct mqtt_topic_iter {
	const uint8_t *p;
	const uint8_t *end;
	bool with_options;
};

/*
 * Locates one packet at the start of buf.
 * Returns the number of bytes the whole packet occupies (> 0) and fills *f;
 * 0 when more bytes are needed; MQTT_ERR_MALFORMED for a remaining length
 * encoded in more than 4 bytes; MQTT_ERR_TOO_LARGE when the remaining length
 * exceeds max_remaining (checked as soon as the length is known, before the
 * body arrives). Packet type 0 is MQTT_ERR_MALFORMED.
 */
int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_remaining,
		     struct mqtt_frame *f);

/*
 * Decodes a framed packet for protocol `level` (3, 4 or 5; for CONNECT the
 * level is read from the packet itself and `level` is ignored).
 * Checks the fixed-header flags, field bounds, UTF-8 (no U+0000, no
 * surrogates, no overlong forms), QoS 3, packet id 0 where one is required,
 * topic names (non-empty, no wildcards) in PUBLISH and will topics, topic
 * filters in SUBSCRIBE/UNSUBSCRIBE, empty subscription lists, and trailing
 * garbage. Returns MQTT_OK or a negative enum mqtt_err.
 * CONNECT with an unknown protocol name/level returns MQTT_ERR_PROTO_VERSION
 * with pkt->u.connect.level filled so the caller can answer with CONNACK 1.
 */
int mqtt_decode(const struct mqtt_frame *f, uint8_t level, struct mqtt_packet *pkt);

/* A set of packet types: bit N for type N. */
#define MQTT_TYPE_BIT(type) (1u << (type))
/* The types only a server sends: a server never accepts them from a client. */
#define MQTT_SERVER_ONLY_TYPES                                                        \
	(MQTT_TYPE_BIT(MQTT_CONNACK) | MQTT_TYPE_BIT(MQTT_SUBACK) |                   \
	 MQTT_TYPE_BIT(MQTT_UNSUBACK) | MQTT_TYPE_BIT(MQTT_PINGRESP))

/*
 * mqtt_decode() for a receiver that accepts none of the packet types in
 * `refused` (a set of MQTT_TYPE_BIT()s) in its current state. At level 5 such
 * a packet is MQTT_ERR_PROTOCOL whatever its fixed-header flags and body hold
 * (the type is checked first; 5.0 section 4.13.2 allows any order); pkt->type
 * is set. Below level 5 `refused` is ignored: 3.1.1 has one answer
 * (close) for both classes, and decoding stays as it was.
 * mqtt_decode(f, level, pkt) is mqtt_decode_refusing(f, level, 0, pkt).
 */
int mqtt_decode_refusing(const struct mqtt_frame *f, uint8_t level, unsigned refused,
			 struct mqtt_packet *pkt);

/* Next filter of a SUBSCRIBE/UNSUBSCRIBE. Returns true and fills *filter and
 * *options (0 for UNSUBSCRIBE) while entries remain. The list was validated
 * by mqtt_decode(). */
void mqtt_topics_begin(const struct mqtt_subscribe *s, struct mqtt_topic_iter *it);
bool mqtt_topics_next(struct mqtt_topic_iter *it, struct mqtt_str *filter,
		      uint8_t *options);

/* Validation helpers (also used by config and routing). */
/* Well-formed UTF-8 (RFC 3629) without U+0000 and, by kafkagate's choice
 * where section 1.5.3 says SHOULD NOT (unnumbered), without the control characters
 * U+0001..U+001F and U+007F..U+009F. */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);
/* The length (2..4) of the well-formed RFC 3629 sequence starting at s (a
 * byte >= 0x80; s < end), or 0 when it is not one: overlong, a surrogate,
 * above U+10FFFF or truncated. The one UTF-8 decoder step of the tree. */
size_t mqtt_utf8_seq_len(const uint8_t *s, const uint8_t *end);
bool mqtt_topic_name_valid(const uint8_t *s, size_t len);   /* PUBLISH topic */
bool mqtt_topic_filter_valid(const uint8_t *s, size_t len); /* SUBSCRIBE filter */

/*
 * Encoders append one whole packet to *b (struct buf grows as needed) and
 * return MQTT_OK, or MQTT_ERR_NOSPACE if the buffer cannot grow.
 * `level` selects the 3.1.1 or 5.0 layout; props may be NULL.
 * The encoders do not validate: the caller passes legal values.
 */
int mqtt_encode_connect(struct buf *b, const struct mqtt_connect *c);
int mqtt_encode_connack(struct buf *b, uint8_t level, const struct mqtt_connack *ca);
int mqtt_encode_publish(struct buf *b, uint8_t level, const struct mqtt_publish *p);
/* type is MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP or (level 3/4) MQTT_UNSUBACK */
int mqtt_encode_ack(struct buf *b, uint8_t level, uint8_t type, const struct mqtt_ack *a);
/* type is MQTT_SUBSCRIBE or MQTT_UNSUBSCRIBE; filters[i] with options[i]
 * (options ignored for UNSUBSCRIBE) */
int mqtt_encode_subscribe(struct buf *b, uint8_t level, uint8_t type, uint16_t packet_id,
			  const struct mqtt_str *filters, const uint8_t *options,
			  uint16_t count);
/* The same with a property list at level 5 (props may be NULL: none; below
 * level 5 props are not written). */
int mqtt_encode_subscribe_props(struct buf *b, uint8_t level, uint8_t type, uint16_t packet_id,
				const struct mqtt_props *props, const struct mqtt_str *filters,
				const uint8_t *options, uint16_t count);
/* type is MQTT_SUBACK or (level 5) MQTT_UNSUBACK */
int mqtt_encode_suback(struct buf *b, uint8_t level, uint8_t type, const struct mqtt_suback *s);
/* type is MQTT_PINGREQ, MQTT_PINGRESP or MQTT_DISCONNECT (level 3/4: 2 bytes) */
int mqtt_encode_simple(struct buf *b, uint8_t level, uint8_t type);
int mqtt_encode_disconnect(struct buf *b, uint8_t level, const struct mqtt_disconnect *d);
/* AUTH (level 5 only): reason code and properties in a struct mqtt_disconnect,
 * the shape mqtt_decode() gives an AUTH. Reason 0 with no properties is the
 * empty short form, like DISCONNECT. */
int mqtt_encode_auth(struct buf *b, const struct mqtt_disconnect *d);

/* Size of the fixed header + remaining length of a PUBLISH with these fields
 * (used to enforce output limits before encoding). Level 5 is counted with
 * an empty property list; mqtt_publish_size_props() with props_len bytes of
 * properties (props and props_more together). */
size_t mqtt_publish_size(uint8_t level, size_t topic_len, size_t payload_len, uint8_t qos);
size_t mqtt_publish_size_props(uint8_t level, size_t topic_len, size_t props_len,
			       size_t payload_len, uint8_t qos);

/* Human-readable name of a packet type / error, for logs. Never NULL. */
const char *mqtt_type_name(uint8_t type);
const char *mqtt_err_str(int err);

#endif
