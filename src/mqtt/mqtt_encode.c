/*
 * mqtt_encode.c - MQTT packet encoders. See mqtt_codec.h.
 *
 * Each encoder computes the remaining length first, reserves the whole
 * packet in the buffer once, then writes it with unchecked stores: one
 * possible allocation per packet and no per-field bounds tests.
 */
#include <string.h>

#include "mqtt/mqtt_codec.h"

static size_t varint_size(size_t v)
{
	return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static inline uint8_t *put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		*p++ = v ? (uint8_t)(c | 0x80) : c;
	} while (v);
	return p;
}

static inline uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
	/* memcpy with a NULL source is undefined even for n == 0. */
	if (n)
		memcpy(p, s, n);
	return p + n;
}

static inline uint8_t *put_str(uint8_t *p, const struct mqtt_str *s)
{
	return put_bytes(put_u16(p, s->len), s->p, s->len);
}

static inline size_t props_size(const struct mqtt_props *pr)
{
	return varint_size(pr->len) + pr->len;
}

static inline uint8_t *put_props(uint8_t *p, const struct mqtt_props *pr)
{
	return put_bytes(put_varint(p, pr->len), pr->p, pr->len);
}

/* Reserves room for a whole packet with `rem` remaining bytes and writes
 * its fixed header. Returns where the body goes, or NULL with *err set. */
static uint8_t *begin(struct buf *b, uint8_t byte0, size_t rem, int *err)
{
	if (rem > MQTT_MAX_REMAINING) {
		*err = MQTT_ERR_TOO_LARGE;
		return NULL;
	}
	if (buf_reserve(b, 1 + varint_size(rem) + rem) < 0) {
		*err = MQTT_ERR_NOSPACE;
		return NULL;
	}
	uint8_t *p = b->data + b->len;
	*p++ = byte0;
	return put_varint(p, (uint32_t)rem);
}

static inline int finish(struct buf *b, const uint8_t *end)
{
	b->len = (size_t)(end - b->data);
	return MQTT_OK;
}

int mqtt_encode_connect(struct buf *b, const struct mqtt_connect *c)
{
	bool v5 = c->level == 5;
	const char *name = c->level == 3 ? "MQIsdp" : "MQTT";
	uint16_t name_len = (uint16_t)strlen(name);
	int err;

	size_t rem = 2 + name_len + 4 + 2 + (size_t)c->client_id.len;
	if (v5)
		rem += props_size(&c->props);
	if (c->will) {
		rem += 4 + (size_t)c->will_topic.len + c->will_payload.len;
		if (v5)
			rem += props_size(&c->will_props);
	}
	if (c->has_username)
		rem += 2 + (size_t)c->username.len;
	if (c->has_password)
		rem += 2 + (size_t)c->password.len;

	uint8_t flags = (uint8_t)(c->clean << 1 | c->has_password << 6 | c->has_username << 7);
	if (c->will)
		flags |= (uint8_t)(1 << 2 | (c->will_qos & 3) << 3 | c->will_retain << 5);

	uint8_t *p = begin(b, MQTT_CONNECT << 4, rem, &err);
	if (!p)
		return err;
	p = put_bytes(put_u16(p, name_len), name, name_len);
	*p++ = c->level;
	*p++ = flags;
	p = put_u16(p, c->keepalive);
	if (v5)
		p = put_props(p, &c->props);
	p = put_str(p, &c->client_id);
	if (c->will) {
		if (v5)
			p = put_props(p, &c->will_props);
		p = put_str(p, &c->will_topic);
		p = put_str(p, &c->will_payload);
	}
	if (c->has_username)
		p = put_str(p, &c->username);
	if (c->has_password)
		p = put_str(p, &c->password);
	return finish(b, p);
}

int mqtt_encode_connack(struct buf *b, uint8_t level, const struct mqtt_connack *ca)
{
	size_t rem = 2 + (level == 5 ? props_size(&ca->props) : 0);
	int err;

	uint8_t *p = begin(b, MQTT_CONNACK << 4, rem, &err);
	if (!p)
		return err;
	*p++ = ca->session_present ? 1 : 0;
	*p++ = ca->rc;
	if (level == 5)
		p = put_props(p, &ca->props);
	return finish(b, p);
}

int mqtt_encode_publish(struct buf *b, uint8_t level, const struct mqtt_publish *pub)
{
	size_t rem = 2 + (size_t)pub->topic.len + (pub->qos ? 2 : 0) + pub->payload_len;
	int err;

	size_t plen = (size_t)pub->props.len + pub->props_more.len;
	if (level == 5)
		rem += varint_size(plen) + plen;
	uint8_t byte0 = (uint8_t)(MQTT_PUBLISH << 4 | pub->dup << 3 | (pub->qos & 3) << 1 |
				  pub->retain);
	uint8_t *p = begin(b, byte0, rem, &err);
	if (!p)
		return err;
	p = put_str(p, &pub->topic);
	if (pub->qos)
		p = put_u16(p, pub->packet_id);
	if (level == 5) {
		p = put_varint(p, (uint32_t)plen);
		p = put_bytes(p, pub->props.p, pub->props.len);
		p = put_bytes(p, pub->props_more.p, pub->props_more.len);
	}
	p = put_bytes(p, pub->payload, pub->payload_len);
	return finish(b, p);
}

size_t mqtt_publish_size(uint8_t level, size_t topic_len, size_t payload_len, uint8_t qos)
{
	/* Level 5 is counted with an empty property list (one length byte). */
	return mqtt_publish_size_props(level, topic_len, 0, payload_len, qos);
}

size_t mqtt_publish_size_props(uint8_t level, size_t topic_len, size_t props_len,
			       size_t payload_len, uint8_t qos)
{
	size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len +
		     (level == 5 ? varint_size(props_len) + props_len : 0);
	return 1 + varint_size(rem) + rem;
}

int mqtt_encode_ack(struct buf *b, uint8_t level, uint8_t type, const struct mqtt_ack *a)
{
	bool v5 = level == 5;
	int err;

	if (type < MQTT_PUBACK || (type > MQTT_PUBCOMP && (type != MQTT_UNSUBACK || v5)))
		return MQTT_ERR_PROTOCOL;
	/* MQTT 5 omits a success reason code, and then empty properties. */
	size_t rem = 2;
	if (v5 && (a->reason != 0 || a->props.len > 0))
		rem += 1 + (a->props.len > 0 ? props_size(&a->props) : 0);

	uint8_t *p = begin(b, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0)), rem, &err);
	if (!p)
		return err;
	p = put_u16(p, a->packet_id);
	if (rem > 2)
		*p++ = a->reason;
	if (rem > 3)
		p = put_props(p, &a->props);
	return finish(b, p);
}

int mqtt_encode_subscribe(struct buf *b, uint8_t level, uint8_t type, uint16_t packet_id,
			  const struct mqtt_str *filters, const uint8_t *options,
			  uint16_t count)
{
	return mqtt_encode_subscribe_props(b, level, type, packet_id, NULL, filters, options,
					   count);
}

int mqtt_encode_subscribe_props(struct buf *b, uint8_t level, uint8_t type, uint16_t packet_id,
				const struct mqtt_props *props, const struct mqtt_str *filters,
				const uint8_t *options, uint16_t count)
{
	static const struct mqtt_props none = { NULL, 0 };
	bool sub = type == MQTT_SUBSCRIBE;
	int err;

	if (!sub && type != MQTT_UNSUBSCRIBE)
		return MQTT_ERR_PROTOCOL;
	if (!props)
		props = &none;
	size_t rem = 2 + (level == 5 ? props_size(props) : 0);
	for (uint16_t i = 0; i < count; i++)
		rem += 2 + (size_t)filters[i].len + (sub ? 1 : 0);

	uint8_t *p = begin(b, (uint8_t)(type << 4 | 2), rem, &err);
	if (!p)
		return err;
	p = put_u16(p, packet_id);
	if (level == 5)
		p = put_props(p, props);
	for (uint16_t i = 0; i < count; i++) {
		p = put_str(p, &filters[i]);
		if (sub)
			*p++ = options[i];
	}
	return finish(b, p);
}

int mqtt_encode_suback(struct buf *b, uint8_t level, uint8_t type, const struct mqtt_suback *s)
{
	int err;

	if (type != MQTT_SUBACK && (type != MQTT_UNSUBACK || level != 5))
		return MQTT_ERR_PROTOCOL;
	size_t rem = 2 + (size_t)s->count + (level == 5 ? props_size(&s->props) : 0);
	uint8_t *p = begin(b, (uint8_t)(type << 4), rem, &err);
	if (!p)
		return err;
	p = put_u16(p, s->packet_id);
	if (level == 5)
		p = put_props(p, &s->props);
	p = put_bytes(p, s->codes, s->count);
	return finish(b, p);
}

int mqtt_encode_simple(struct buf *b, uint8_t level, uint8_t type)
{
	int err;

	/* AUTH with no body means "success, no properties" at level 5. */
	if (type != MQTT_PINGREQ && type != MQTT_PINGRESP && type != MQTT_DISCONNECT &&
	    (type != MQTT_AUTH || level != 5))
		return MQTT_ERR_PROTOCOL;
	uint8_t *p = begin(b, (uint8_t)(type << 4), 0, &err);
	if (!p)
		return err;
	return finish(b, p);
}

/* DISCONNECT and AUTH: level 5 omits a success reason code, and then empty
 * properties (3.14.2.1, 3.15.2.1). A DISCONNECT reason alone needs no
 * property length (3.14.2.2.1); AUTH states no such default, so it always
 * carries one after its reason. */
static int encode_reason(struct buf *b, uint8_t type, uint8_t level,
			 const struct mqtt_disconnect *d)
{
	int err;

	size_t rem = 0;
	if (level == 5 && (d->reason != 0 || d->props.len > 0))
		rem = 1 + (d->props.len > 0 || type == MQTT_AUTH ? props_size(&d->props) : 0);
	uint8_t *p = begin(b, (uint8_t)(type << 4), rem, &err);
	if (!p)
		return err;
	if (rem > 0)
		*p++ = d->reason;
	if (rem > 1)
		p = put_props(p, &d->props);
	return finish(b, p);
}

int mqtt_encode_disconnect(struct buf *b, uint8_t level, const struct mqtt_disconnect *d)
{
	return encode_reason(b, MQTT_DISCONNECT, level, d);
}

int mqtt_encode_auth(struct buf *b, const struct mqtt_disconnect *d)
{
	return encode_reason(b, MQTT_AUTH, 5, d);
}
