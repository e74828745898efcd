/* mqtt5.c - MQTT 5 property iterator and writer, reason code mapping; see mqtt5.h. */
#include <string.h>

#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec_int.h"

uint8_t mqtt5_connack_rc(uint8_t rc)
{
	static const uint8_t map[] = {
		[MQTT_CONNACK_ACCEPTED] = MQTT_RC_SUCCESS,
		[MQTT_CONNACK_BAD_PROTOCOL] = MQTT_RC_UNSUPPORTED_VERSION,
		[MQTT_CONNACK_ID_REJECTED] = MQTT_RC_CLIENT_ID_INVALID,
		[MQTT_CONNACK_UNAVAILABLE] = MQTT_RC_SERVER_UNAVAILABLE,
		[MQTT_CONNACK_BAD_AUTH] = MQTT_RC_BAD_USER_OR_PASSWORD,
		[MQTT_CONNACK_NOT_AUTHORIZED] = MQTT_RC_NOT_AUTHORIZED,
	};
	return rc < sizeof map ? map[rc] : rc;
}

void mqtt_props_begin(const struct mqtt_props *pr, struct mqtt_prop_iter *it)
{
	it->p = pr->p;
	it->end = pr->p ? pr->p + pr->len : pr->p;
}

bool mqtt_props_next(struct mqtt_prop_iter *it, struct mqtt_prop *out)
{
	struct mqtt_rd r = { it->p, it->end };
	uint8_t id, v8 = 0;
	uint16_t v16 = 0;

	if (!it->p || !mqtt_rd_u8(&r, &id))
		return false;
	out->id = id;
	out->value = 0;
	out->str = out->str2 = (struct mqtt_str){ NULL, 0 };
	bool ok;
	switch (mqtt_prop_type(id)) {
	case PT_BYTE:
		ok = mqtt_rd_u8(&r, &v8);
		out->value = v8;
		break;
	case PT_U16:
		ok = mqtt_rd_u16(&r, &v16);
		out->value = v16;
		break;
	case PT_U32:
		ok = mqtt_rd_u32(&r, &out->value);
		break;
	case PT_VARINT:
		ok = mqtt_rd_varint(&r, &out->value);
		break;
	case PT_UTF8:
	case PT_BIN:
		ok = mqtt_rd_bin(&r, &out->str);
		break;
	case PT_PAIR:
		ok = mqtt_rd_bin(&r, &out->str) && mqtt_rd_bin(&r, &out->str2);
		break;
	default:
		ok = false;
	}
	if (!ok) {
		it->p = it->end;
		return false;
	}
	it->p = r.p;
	return true;
}

bool mqtt_props_find(const struct mqtt_props *pr, uint8_t id, struct mqtt_prop *out)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop p;

	mqtt_props_begin(pr, &it);
	while (mqtt_props_next(&it, &p)) {
		if (p.id == id) {
			if (out)
				*out = p;
			return true;
		}
	}
	return false;
}

void mqtt_pw_init(struct mqtt_pw *w, uint8_t *buf, uint32_t cap)
{
	w->p = buf;
	w->len = 0;
	w->cap = cap;
	w->overflow = false;
}

/* Room for n more bytes, or marks the overflow. */
static uint8_t *room(struct mqtt_pw *w, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return NULL;
	}
	uint8_t *p = w->p + w->len;
	w->len += (uint32_t)n;
	return p;
}

void mqtt_pw_int(struct mqtt_pw *w, uint8_t id, uint32_t v)
{
	uint8_t t = mqtt_prop_type(id), tmp[5];
	size_t n = 0;

	switch (t) {
	case PT_BYTE:
		tmp[n++] = (uint8_t)v;
		break;
	case PT_U16:
		tmp[n++] = (uint8_t)(v >> 8);
		tmp[n++] = (uint8_t)v;
		break;
	case PT_U32:
		tmp[n++] = (uint8_t)(v >> 24);
		tmp[n++] = (uint8_t)(v >> 16);
		tmp[n++] = (uint8_t)(v >> 8);
		tmp[n++] = (uint8_t)v;
		break;
	case PT_VARINT:
		/* Four bytes at most [MQTT-1.5.5-1]: a larger value cannot be
		 * written, and a caller passing one has a bug. */
		if (v > MQTT_MAX_REMAINING) {
			w->overflow = true;
			return;
		}
		do {
			uint8_t c = v & 0x7f;
			v >>= 7;
			tmp[n++] = v ? (uint8_t)(c | 0x80) : c;
		} while (v);
		break;
	default:
		w->overflow = true; /* not an integer property: a caller bug */
		return;
	}
	uint8_t *p = room(w, 1 + n);
	if (p) {
		p[0] = id;
		memcpy(p + 1, tmp, n);
	}
}

static uint8_t *put_bin(uint8_t *p, const void *s, uint16_t len)
{
	p[0] = (uint8_t)(len >> 8);
	p[1] = (uint8_t)len;
	if (len)
		memcpy(p + 2, s, len);
	return p + 2 + len;
}

void mqtt_pw_str(struct mqtt_pw *w, uint8_t id, const void *s, uint16_t len)
{
	uint8_t *p = room(w, 3 + (size_t)len);
	if (p) {
		p[0] = id;
		put_bin(p + 1, s, len);
	}
}

void mqtt_pw_pair(struct mqtt_pw *w, const void *k, uint16_t klen, const void *v,
		  uint16_t vlen)
{
	uint8_t *p = room(w, 5 + (size_t)klen + vlen);
	if (p) {
		p[0] = MQTT_P_USER_PROPERTY;
		put_bin(put_bin(p + 1, k, klen), v, vlen);
	}
}

void mqtt_pw_raw(struct mqtt_pw *w, const uint8_t *s, uint32_t len)
{
	uint8_t *p = room(w, len);
	if (p && len)
		memcpy(p, s, len);
}
