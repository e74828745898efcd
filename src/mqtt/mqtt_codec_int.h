/*
 * mqtt_codec_int.h - internals shared by the codec files only (mqtt_codec.c,
 * mqtt_decode.c); everyone else includes mqtt_codec.h.
 *
 * Bounded readers return false when the field does not fit before `end`;
 * the cursor is then unspecified and the caller reports MQTT_ERR_MALFORMED.
 * Pure and reentrant like the rest of the codec.
 */
#ifndef KG_MQTT_CODEC_INT_H
#define KG_MQTT_CODEC_INT_H

#include "mqtt/mqtt_codec.h"

/* A cursor over part of a packet body; never moves past end. */
struct mqtt_rd {
	const uint8_t *p;
	const uint8_t *end;
};

static inline size_t mqtt_rd_left(const struct mqtt_rd *r)
{
	return (size_t)(r->end - r->p);
}

static inline bool mqtt_rd_u8(struct mqtt_rd *r, uint8_t *v)
{
	if (r->p >= r->end)
		return false;
	*v = *r->p++;
	return true;
}

static inline bool mqtt_rd_u16(struct mqtt_rd *r, uint16_t *v)
{
	if (mqtt_rd_left(r) < 2)
		return false;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return true;
}

static inline bool mqtt_rd_u32(struct mqtt_rd *r, uint32_t *v)
{
	if (mqtt_rd_left(r) < 4)
		return false;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
	     (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	return true;
}

/* Two-byte length, then that many bytes (binary data or a string). */
static inline bool mqtt_rd_bin(struct mqtt_rd *r, struct mqtt_str *s)
{
	if (!mqtt_rd_u16(r, &s->len) || mqtt_rd_left(r) < s->len)
		return false;
	s->p = r->p;
	r->p += s->len;
	return true;
}

/* Variable byte integer of at most 4 bytes in its shortest form
 * [MQTT-1.5.5-1]. */
bool mqtt_rd_varint(struct mqtt_rd *r, uint32_t *v);
/* A UTF-8 string: MQTT_OK, MQTT_ERR_MALFORMED (truncated) or MQTT_ERR_UTF8. */
int mqtt_rd_utf8(struct mqtt_rd *r, struct mqtt_str *s);

/* Topic name / filter checks: MQTT_OK, MQTT_ERR_UTF8 or MQTT_ERR_TOPIC. */
int mqtt_topic_name_check(const uint8_t *s, size_t len);
int mqtt_topic_filter_check(const uint8_t *s, size_t len);

/* Where properties are read: bit N for packet type N, MQTT_PROPS_WILL for
 * the will properties of a CONNECT (type 0 is never a packet). */
#define MQTT_PROPS_WILL 1u
#define MQTT_PROPS_IN(type) (1u << (type))

/* Property identifiers the decoder looks at; bits in mqtt_props_read's *seen. */
#define MQTT_PROP_AUTH_METHOD 0x15
#define MQTT_PROP_AUTH_DATA 0x16
#define MQTT_PROP_TOPIC_ALIAS 0x23
#define MQTT_PROP_BIT(id) (1ull << (id))

/* The value layout of a property identifier (PT_NONE: unknown). */
enum mqtt_prop_type { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VARINT, PT_UTF8, PT_BIN, PT_PAIR };
uint8_t mqtt_prop_type(uint8_t id);

/*
 * Reads a property length and the properties it covers, advancing r past
 * them, and points *out at them. Returns MQTT_OK; MQTT_ERR_MALFORMED for a
 * truncated list or value, or an identifier unknown or not allowed in
 * `where` (5.0 section 2.2.2.2); MQTT_ERR_UTF8 for a bad string;
 * MQTT_ERR_PROTOCOL for a repeated single-use property or an illegal value
 * (as each property's own section says). *seen (may be NULL) gets
 * MQTT_PROP_BIT(id) for every identifier present.
 */
int mqtt_props_read(struct mqtt_rd *r, unsigned where, struct mqtt_props *out,
		    uint64_t *seen);

#endif
