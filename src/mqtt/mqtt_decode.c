/*
 * mqtt_decode.c - decode one framed MQTT packet (levels 3, 4, 5) into a
 * struct mqtt_packet that borrows from the frame. See mqtt_codec.h.
 *
 * Error precedence: a field that cannot be read is MALFORMED before any
 * check of its value, so truncation always reports MALFORMED.
 */
#include <string.h>

#include "mqtt/mqtt_codec_int.h"

/* ---- reason codes (MQTT 5) -------------------------------------------- */

static const uint8_t rc_puback[] = { 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99 };
static const uint8_t rc_pubrel[] = { 0x00, 0x92 };
static const uint8_t rc_suback[] = { 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91,
				     0x97, 0x9e, 0xa1, 0xa2 };
static const uint8_t rc_unsuback[] = { 0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91 };
static const uint8_t rc_auth[] = { 0x00, 0x18, 0x19 };
static const uint8_t rc_connack[] = { 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
				      0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97,
				      0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f };
static const uint8_t rc_disconnect[] = { 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89,
					 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95,
					 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d,
					 0x9e, 0x9f, 0xa0, 0xa1, 0xa2 };
/* 3.1.1 SUBACK return codes [MQTT-3.9.3-2]. */
static const uint8_t rc_suback4[] = { 0x00, 0x01, 0x02, 0x80 };

static inline bool rc_in(const uint8_t *list, size_t n, uint8_t rc)
{
	return rc == 0 || memchr(list, rc, n) != NULL;
}
#define RC_IN(list, rc) rc_in((list), sizeof(list), (rc))

/* Packet Identifier 0 where one is required [MQTT-2.2.1-3]. The field is
 * there and readable, its value is not allowed: at level 5 that is a
 * Protocol Error by the definition in section 1.2 (and mosquitto's choice);
 * 3.1.1 has no such distinction and keeps MALFORMED. */
static inline int bad_packet_id(uint8_t level)
{
	return level == 5 ? MQTT_ERR_PROTOCOL : MQTT_ERR_MALFORMED;
}

/* ---- packets ---------------------------------------------------------- */

static int decode_connect(const struct mqtt_frame *f, struct mqtt_rd *r,
			  struct mqtt_connect *c)
{
	struct mqtt_str name;
	uint8_t flags;
	int rc;

	if (!mqtt_rd_bin(r, &name) || !mqtt_rd_u8(r, &c->level))
		return MQTT_ERR_MALFORMED;
	bool mqisdp = name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0;
	bool mqtt = name.len == 4 && memcmp(name.p, "MQTT", 4) == 0;
	if (!(mqisdp && c->level == 3) && !(mqtt && (c->level == 4 || c->level == 5)))
		return MQTT_ERR_PROTO_VERSION;
	/* MQTT 3.1 gave these header bits no meaning; only 3.1.1 reserved them. */
	if (c->level != 3 && f->flags != 0)
		return MQTT_ERR_MALFORMED;
	if (!mqtt_rd_u8(r, &flags) || !mqtt_rd_u16(r, &c->keepalive))
		return MQTT_ERR_MALFORMED;
	c->clean = flags & 0x02;
	c->will = flags & 0x04;
	c->will_qos = (flags >> 3) & 3;
	c->will_retain = flags & 0x20;
	c->has_password = flags & 0x40;
	c->has_username = flags & 0x80;
	/* [MQTT-3.1.2-3] (3.1 reserved bit 0 without requiring it clear),
	 * [MQTT-3.1.2-11..14], [MQTT-3.1.2-22] */
	if (((flags & 0x01) && c->level != 3) || c->will_qos == 3 ||
	    (!c->will && (c->will_qos || c->will_retain)) ||
	    (c->level != 5 && c->has_password && !c->has_username))
		return MQTT_ERR_MALFORMED;

	if (c->level == 5) {
		uint64_t seen;
		rc = mqtt_props_read(r, MQTT_PROPS_IN(MQTT_CONNECT), &c->props, &seen);
		if (rc != MQTT_OK)
			return rc;
		/* 5.0 3.1.2.11.10: data without a method is a protocol error. */
		if ((seen & MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA)) &&
		    !(seen & MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD)))
			return MQTT_ERR_PROTOCOL;
	}
	if ((rc = mqtt_rd_utf8(r, &c->client_id)) != MQTT_OK)
		return rc;
	if (c->will) {
		if (c->level == 5 &&
		    (rc = mqtt_props_read(r, MQTT_PROPS_WILL, &c->will_props, NULL)) != MQTT_OK)
			return rc;
		if (!mqtt_rd_bin(r, &c->will_topic))
			return MQTT_ERR_MALFORMED;
		if ((rc = mqtt_topic_name_check(c->will_topic.p, c->will_topic.len)) != MQTT_OK)
			return rc;
		if (!mqtt_rd_bin(r, &c->will_payload))
			return MQTT_ERR_MALFORMED;
	}
	if (c->has_username && (rc = mqtt_rd_utf8(r, &c->username)) != MQTT_OK)
		return rc;
	if (c->has_password && !mqtt_rd_bin(r, &c->password))
		return MQTT_ERR_MALFORMED;
	if (mqtt_rd_left(r) != 0)
		return MQTT_ERR_MALFORMED;
	/* MQTT 3.1 answers client ids outside 1..23 bytes with CONNACK 2
	 * (identifier rejected), so the packet is returned fully decoded. */
	if (c->level == 3 && (c->client_id.len == 0 || c->client_id.len > 23))
		return MQTT_ERR_PROTOCOL;
	return MQTT_OK;
}

static int decode_connack(struct mqtt_rd *r, uint8_t level, struct mqtt_connack *ca)
{
	uint8_t flags;
	int rc;

	if (!mqtt_rd_u8(r, &flags) || !mqtt_rd_u8(r, &ca->rc))
		return MQTT_ERR_MALFORMED;
	if (level == 5 &&
	    (rc = mqtt_props_read(r, MQTT_PROPS_IN(MQTT_CONNACK), &ca->props, NULL)) != MQTT_OK)
		return rc;
	if (mqtt_rd_left(r) != 0 || (flags & 0xfe))
		return MQTT_ERR_MALFORMED;
	ca->session_present = flags & 1;
	if (level == 5 ? !RC_IN(rc_connack, ca->rc) : ca->rc > MQTT_CONNACK_NOT_AUTHORIZED)
		return MQTT_ERR_PROTOCOL;
	return MQTT_OK;
}

static int decode_publish(const struct mqtt_frame *f, struct mqtt_rd *r, uint8_t level,
			  struct mqtt_publish *p)
{
	uint64_t seen = 0;
	int rc;

	p->qos = (f->flags >> 1) & 3;
	p->dup = f->flags & 0x08;
	p->retain = f->flags & 0x01;
	if (p->qos == 3 || !mqtt_rd_bin(r, &p->topic))
		return MQTT_ERR_MALFORMED;
	if (p->qos > 0 && !mqtt_rd_u16(r, &p->packet_id))
		return MQTT_ERR_MALFORMED;
	if (p->qos > 0 && p->packet_id == 0)
		return bad_packet_id(level);
	if (level == 5 &&
	    (rc = mqtt_props_read(r, MQTT_PROPS_IN(MQTT_PUBLISH), &p->props, &seen)) != MQTT_OK)
		return rc;
	/* MQTT 5: a topic alias may stand for the name; the broker maps it. */
	if ((p->topic.len > 0 || !(seen & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS))) &&
	    (rc = mqtt_topic_name_check(p->topic.p, p->topic.len)) != MQTT_OK)
		return rc;
	p->payload = r->p;
	p->payload_len = (uint32_t)mqtt_rd_left(r);
	/* [MQTT-3.3.1-2]: reported with the packet decoded, so a caller may
	 * still log or count it. Below level 5 it is kept apart from
	 * malformed; at level 5 it is a DUP flag invalid for QoS 0, and
	 * invalid fixed-header flags are a Malformed Packet (5.0 section
	 * 2.1.3; mosquitto answers 0x81 too). */
	if (p->qos == 0 && p->dup)
		return level == 5 ? MQTT_ERR_MALFORMED : MQTT_ERR_PROTOCOL;
	return MQTT_OK;
}

/* The end of an ack or DISCONNECT/AUTH: nothing below level 5; at 5 an
 * optional reason code (0 when absent), then optional properties. */
static int decode_reason_tail(uint8_t type, struct mqtt_rd *r, uint8_t level, uint8_t *reason,
			      struct mqtt_props *props)
{
	int rc;

	if (level == 5 && mqtt_rd_left(r) > 0) {
		mqtt_rd_u8(r, reason);
		if (mqtt_rd_left(r) > 0 &&
		    (rc = mqtt_props_read(r, MQTT_PROPS_IN(type), props, NULL)) != MQTT_OK)
			return rc;
	}
	return mqtt_rd_left(r) == 0 ? MQTT_OK : MQTT_ERR_MALFORMED;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP; UNSUBACK below level 5. */
static int decode_ack(uint8_t type, struct mqtt_rd *r, uint8_t level, struct mqtt_ack *a)
{
	int rc;

	if (!mqtt_rd_u16(r, &a->packet_id))
		return MQTT_ERR_MALFORMED;
	if (a->packet_id == 0)
		return bad_packet_id(level);
	if ((rc = decode_reason_tail(type, r, level, &a->reason, &a->props)) != MQTT_OK)
		return rc;
	bool rel = type == MQTT_PUBREL || type == MQTT_PUBCOMP;
	if (rel ? !RC_IN(rc_pubrel, a->reason) : !RC_IN(rc_puback, a->reason))
		return MQTT_ERR_PROTOCOL;
	return MQTT_OK;
}

/* [MQTT-4.8.2-1], [MQTT-4.8.2-2], [MQTT-3.8.3-4]: "$share/NAME/filter". */
static int shared_check(const struct mqtt_str *t, uint8_t opt)
{
	if (t->len < 7 || memcmp(t->p, "$share/", 7) != 0)
		return MQTT_OK;
	const uint8_t *name = t->p + 7, *end = t->p + t->len;
	const uint8_t *slash = memchr(name, '/', (size_t)(end - name));
	if (!slash || slash == name || slash + 1 == end || (opt & 0x04))
		return MQTT_ERR_PROTOCOL;
	for (const uint8_t *q = name; q < slash; q++)
		if (*q == '+' || *q == '#')
			return MQTT_ERR_PROTOCOL;
	return MQTT_OK;
}

static int sub_options_check(uint8_t level, uint8_t opt, const struct mqtt_str *t)
{
	/* 3.1.1 uses bits 0-1 (QoS); 5 adds no-local, retain-as-published
	 * and retain handling 0..2 in bits 2-5 [MQTT-3-8.3-4], [MQTT-3.8.3-5]. */
	uint8_t reserved = level == 5 ? 0xc0 : 0xfc;
	if ((opt & reserved) || (opt & 0x03) == 3 || (opt & 0x30) == 0x30)
		return MQTT_ERR_MALFORMED;
	return level == 5 ? shared_check(t, opt) : MQTT_OK;
}

static int decode_sub(uint8_t type, struct mqtt_rd *r, uint8_t level, struct mqtt_subscribe *s)
{
	bool sub = type == MQTT_SUBSCRIBE;
	uint32_t count = 0;
	int rc;

	if (!mqtt_rd_u16(r, &s->packet_id))
		return MQTT_ERR_MALFORMED;
	if (s->packet_id == 0)
		return bad_packet_id(level);
	if (level == 5 &&
	    (rc = mqtt_props_read(r, MQTT_PROPS_IN(type), &s->props, NULL)) != MQTT_OK)
		return rc;
	s->list = r->p;
	s->list_len = (uint32_t)mqtt_rd_left(r);
	s->with_options = sub;
	while (mqtt_rd_left(r) > 0) {
		struct mqtt_str t;
		uint8_t opt = 0;
		if (!mqtt_rd_bin(r, &t) || (sub && !mqtt_rd_u8(r, &opt)))
			return MQTT_ERR_MALFORMED;
		if ((rc = mqtt_topic_filter_check(t.p, t.len)) != MQTT_OK)
			return rc;
		if (sub && (rc = sub_options_check(level, opt, &t)) != MQTT_OK)
			return rc;
		/* Only a limit this API sets (count is 16 bits). */
		if (++count > UINT16_MAX)
			return MQTT_ERR_TOO_LARGE;
	}
	/* [MQTT-3.8.3-3], [MQTT-3.10.3-2]: at least one filter. */
	if (count == 0)
		return MQTT_ERR_MALFORMED;
	s->count = (uint16_t)count;
	return MQTT_OK;
}

/* SUBACK; UNSUBACK at level 5. */
static int decode_suback(uint8_t type, struct mqtt_rd *r, uint8_t level, struct mqtt_suback *s)
{
	int rc;

	if (!mqtt_rd_u16(r, &s->packet_id))
		return MQTT_ERR_MALFORMED;
	if (s->packet_id == 0)
		return bad_packet_id(level);
	if (level == 5 &&
	    (rc = mqtt_props_read(r, MQTT_PROPS_IN(type), &s->props, NULL)) != MQTT_OK)
		return rc;
	s->codes = r->p;
	s->count = (uint32_t)mqtt_rd_left(r);
	if (s->count == 0)
		return MQTT_ERR_MALFORMED;
	for (uint32_t i = 0; i < s->count; i++) {
		uint8_t c = s->codes[i];
		bool ok = level != 5 ? RC_IN(rc_suback4, c) :
			  type == MQTT_SUBACK ? RC_IN(rc_suback, c) : RC_IN(rc_unsuback, c);
		if (!ok)
			return MQTT_ERR_PROTOCOL;
	}
	return MQTT_OK;
}

/* DISCONNECT and AUTH: empty below level 5; at 5 an optional reason code
 * then optional properties. */
static int decode_reason(uint8_t type, struct mqtt_rd *r, uint8_t level,
			 struct mqtt_disconnect *d)
{
	int rc;

	if ((rc = decode_reason_tail(type, r, level, &d->reason, &d->props)) != MQTT_OK)
		return rc;
	bool ok = type == MQTT_AUTH ? RC_IN(rc_auth, d->reason) : RC_IN(rc_disconnect, d->reason);
	return ok ? MQTT_OK : MQTT_ERR_PROTOCOL;
}

/* Fixed-header flags each type must carry [MQTT-2.2.2-1]; PUBLISH has its
 * own and CONNECT is checked once its level is known. */
static const uint8_t header_flags[16] = {
	[MQTT_PUBREL] = 0x2, [MQTT_SUBSCRIBE] = 0x2, [MQTT_UNSUBSCRIBE] = 0x2,
};

int mqtt_decode(const struct mqtt_frame *f, uint8_t level, struct mqtt_packet *pkt)
{
	return mqtt_decode_refusing(f, level, 0, pkt);
}

int mqtt_decode_refusing(const struct mqtt_frame *f, uint8_t level, unsigned refused,
			 struct mqtt_packet *pkt)
{
	struct mqtt_rd r = { f->body, f->body + f->body_len };
	uint8_t type = f->type & 0x0f;

	memset(pkt, 0, sizeof *pkt);
	pkt->type = type;
	/* A packet the receiver never accepts in its state is a Protocol
	 * Error whatever its header flags and body hold (section 1.2: "data
	 * ... inconsistent with the state of the Client or Server"). Checked
	 * first: section 4.13.2 lets a receiver check a packet with several
	 * errors in any order, and mosquitto does the same for CONNACK,
	 * PINGRESP and AUTH (not for SUBACK/UNSUBACK: see
	 * tests/vectors/overrides.txt). */
	if (level == 5 && (refused & MQTT_TYPE_BIT(type)))
		return MQTT_ERR_PROTOCOL;
	/* MQTT 3.1 set DUP and QoS on PUBREL/SUBSCRIBE/UNSUBSCRIBE retries
	 * and reserved nothing, so level 3 skips this check. */
	if (type != MQTT_PUBLISH && type != MQTT_CONNECT && level != 3 &&
	    f->flags != header_flags[type])
		return MQTT_ERR_MALFORMED;

	switch (type) {
	case MQTT_CONNECT:
		return decode_connect(f, &r, &pkt->u.connect);
	case MQTT_CONNACK:
		return decode_connack(&r, level, &pkt->u.connack);
	case MQTT_PUBLISH:
		return decode_publish(f, &r, level, &pkt->u.publish);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		return decode_ack(type, &r, level, &pkt->u.ack);
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		return decode_sub(type, &r, level, &pkt->u.sub);
	case MQTT_SUBACK:
		return decode_suback(type, &r, level, &pkt->u.suback);
	case MQTT_UNSUBACK:
		if (level == 5)
			return decode_suback(type, &r, level, &pkt->u.suback);
		return decode_ack(type, &r, level, &pkt->u.ack);
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		return mqtt_rd_left(&r) == 0 ? MQTT_OK : MQTT_ERR_MALFORMED;
	case MQTT_DISCONNECT:
		return decode_reason(type, &r, level, &pkt->u.disconnect);
	case MQTT_AUTH:
		/* AUTH is reserved before MQTT 5. Decoded into u.disconnect,
		 * which has the same shape (reason, props). */
		if (level != 5)
			return MQTT_ERR_MALFORMED;
		return decode_reason(type, &r, level, &pkt->u.disconnect);
	}
	return MQTT_ERR_MALFORMED;
}
