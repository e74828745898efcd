/*
 * mqtt_codec.c - wire-level pieces shared by the decoder: bounded readers,
 * UTF-8 and topic validation, the SUBSCRIBE list iterator and MQTT 5
 * property validation. See mqtt_codec.h and mqtt_codec_int.h.
 */
#include <string.h>

#include "mqtt/mqtt_codec_int.h"

bool mqtt_rd_varint(struct mqtt_rd *r, uint32_t *v)
{
	uint32_t x = 0;
	for (unsigned i = 0; i < 4; i++) {
		uint8_t c;
		if (!mqtt_rd_u8(r, &c))
			return false;
		x |= (uint32_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80)) {
			*v = x;
			return c != 0 || i == 0;
		}
	}
	return false;
}

int mqtt_rd_utf8(struct mqtt_rd *r, struct mqtt_str *s)
{
	if (!mqtt_rd_bin(r, s))
		return MQTT_ERR_MALFORMED;
	return mqtt_utf8_valid(s->p, s->len) ? MQTT_OK : MQTT_ERR_UTF8;
}

int mqtt_topic_name_check(const uint8_t *s, size_t len)
{
	if (len == 0)
		return MQTT_ERR_TOPIC;
	if (!mqtt_utf8_valid(s, len))
		return MQTT_ERR_UTF8;
	if (memchr(s, '+', len) || memchr(s, '#', len))
		return MQTT_ERR_TOPIC;
	return MQTT_OK;
}

int mqtt_topic_filter_check(const uint8_t *s, size_t len)
{
	if (len == 0)
		return MQTT_ERR_TOPIC;
	if (!mqtt_utf8_valid(s, len))
		return MQTT_ERR_UTF8;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '+' && s[i] != '#')
			continue;
		/* A wildcard fills its whole level; '#' must also be last. */
		if (i > 0 && s[i - 1] != '/')
			return MQTT_ERR_TOPIC;
		if (s[i] == '+' ? (i + 1 < len && s[i + 1] != '/') : i + 1 != len)
			return MQTT_ERR_TOPIC;
	}
	return MQTT_OK;
}

size_t mqtt_utf8_seq_len(const uint8_t *s, const uint8_t *end)
{
	/* RFC 3629 section 4: the second byte's range excludes overlong
	 * forms, surrogates (ED A0..BF) and values over U+10FFFF. */
	uint8_t c = *s, lo = 0x80, hi = 0xbf;
	size_t n;
	if (c < 0xc2) {
		return 0;
	} else if (c < 0xe0) {
		n = 1;
	} else if (c < 0xf0) {
		n = 2;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		n = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if ((size_t)(end - s) <= n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n + 1;
}

bool mqtt_utf8_valid(const uint8_t *s, size_t len)
{
	const uint8_t *end = s + len;

	while (s < end) {
		/* Topics are nearly always printable ASCII: skip 8 bytes at a
		 * time while every byte is in 0x20..0x7e (the test may stop
		 * early on a false positive; the byte loop then decides). */
		while (end - s >= 8) {
			const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
			uint64_t w, x;
			memcpy(&w, s, 8);
			x = w ^ (ones * 0x7f);
			if ((w & high) | ((w - ones * 0x20) & ~w & high) | ((x - ones) & ~x & high))
				break;
			s += 8;
		}
		if (s == end)
			break;
		uint8_t c = *s;
		if (c < 0x80) {
			/* U+0000 is forbidden [MQTT-1.5.3-2]; the other C0 controls and
			 * DEL are "SHOULD NOT" (section 1.5.3, unnumbered): kafkagate refuses them. */
			if (c < 0x20 || c == 0x7f)
				return false;
			s++;
			continue;
		}
		/* C1 controls U+0080..U+009F (C2 80..C2 9F): refused likewise. */
		if (c == 0xc2 && end - s >= 2 && s[1] < 0xa0)
			return false;
		size_t n = mqtt_utf8_seq_len(s, end);
		if (n == 0)
			return false;
		s += n;
	}
	return true;
}

bool mqtt_topic_name_valid(const uint8_t *s, size_t len)
{
	return mqtt_topic_name_check(s, len) == MQTT_OK;
}

bool mqtt_topic_filter_valid(const uint8_t *s, size_t len)
{
	return mqtt_topic_filter_check(s, len) == MQTT_OK;
}

void mqtt_topics_begin(const struct mqtt_subscribe *s, struct mqtt_topic_iter *it)
{
	it->p = s->list;
	it->end = s->list + s->list_len;
	it->with_options = s->with_options;
}

bool mqtt_topics_next(struct mqtt_topic_iter *it, struct mqtt_str *filter,
		      uint8_t *options)
{
	struct mqtt_rd r = { it->p, it->end };
	uint8_t opt = 0;

	/* Bounded even though mqtt_decode() validated the list, so a
	 * misused iterator stops instead of reading past the packet. */
	if (!mqtt_rd_bin(&r, filter) || (it->with_options && !mqtt_rd_u8(&r, &opt)))
		return false;
	if (options)
		*options = opt;
	it->p = r.p;
	return true;
}

/* ---- MQTT 5 properties ------------------------------------------------ */

enum prop_rule { PR_ANY, PR_BOOL, PR_NONZERO, PR_TOPIC };

/* Where a property may appear (see MQTT_PROPS_IN). */
#define CX_WILL MQTT_PROPS_WILL
#define CX(t) MQTT_PROPS_IN(MQTT_##t)
#define CX_ACKS (CX(PUBACK) | CX(PUBREC) | CX(PUBREL) | CX(PUBCOMP))
#define CX_MSG (CX_WILL | CX(PUBLISH))

struct prop_def {
	uint8_t type;
	uint8_t rule;  /* value check; violating it is a protocol error */
	uint16_t where;
};

static const struct prop_def prop_defs[] = {
	[0x01] = { PT_BYTE, PR_BOOL, CX_MSG },       /* payload format indicator */
	[0x02] = { PT_U32, PR_ANY, CX_MSG },         /* message expiry interval */
	[0x03] = { PT_UTF8, PR_ANY, CX_MSG },        /* content type */
	[0x08] = { PT_UTF8, PR_TOPIC, CX_MSG },      /* response topic */
	[0x09] = { PT_BIN, PR_ANY, CX_MSG },         /* correlation data */
	[0x0b] = { PT_VARINT, PR_NONZERO, CX(PUBLISH) | CX(SUBSCRIBE) }, /* subscription id */
	[0x11] = { PT_U32, PR_ANY, CX(CONNECT) | CX(CONNACK) | CX(DISCONNECT) }, /* session expiry */
	[0x12] = { PT_UTF8, PR_ANY, CX(CONNACK) },   /* assigned client id */
	[0x13] = { PT_U16, PR_ANY, CX(CONNACK) },    /* server keep alive */
	[0x15] = { PT_UTF8, PR_ANY, CX(CONNECT) | CX(CONNACK) | CX(AUTH) }, /* auth method */
	[0x16] = { PT_BIN, PR_ANY, CX(CONNECT) | CX(CONNACK) | CX(AUTH) },  /* auth data */
	[0x17] = { PT_BYTE, PR_BOOL, CX(CONNECT) },  /* request problem information */
	[0x18] = { PT_U32, PR_ANY, CX_WILL },        /* will delay interval */
	[0x19] = { PT_BYTE, PR_BOOL, CX(CONNECT) },  /* request response information */
	[0x1a] = { PT_UTF8, PR_ANY, CX(CONNACK) },   /* response information */
	[0x1c] = { PT_UTF8, PR_ANY, CX(CONNACK) | CX(DISCONNECT) }, /* server reference */
	[0x1f] = { PT_UTF8, PR_ANY, CX(CONNACK) | CX_ACKS | CX(SUBACK) | CX(UNSUBACK) |
				    CX(DISCONNECT) | CX(AUTH) }, /* reason string */
	[0x21] = { PT_U16, PR_NONZERO, CX(CONNECT) | CX(CONNACK) }, /* receive maximum */
	[0x22] = { PT_U16, PR_ANY, CX(CONNECT) | CX(CONNACK) },     /* topic alias maximum */
	[0x23] = { PT_U16, PR_NONZERO, CX(PUBLISH) },              /* topic alias */
	[0x24] = { PT_BYTE, PR_BOOL, CX(CONNACK) },  /* maximum qos */
	[0x25] = { PT_BYTE, PR_BOOL, CX(CONNACK) },  /* retain available */
	[0x26] = { PT_PAIR, PR_ANY, 0xffff },        /* user property */
	[0x27] = { PT_U32, PR_NONZERO, CX(CONNECT) | CX(CONNACK) }, /* maximum packet size */
	[0x28] = { PT_BYTE, PR_BOOL, CX(CONNACK) },  /* wildcard subscription available */
	[0x29] = { PT_BYTE, PR_BOOL, CX(CONNACK) },  /* subscription ids available */
	[0x2a] = { PT_BYTE, PR_BOOL, CX(CONNACK) },  /* shared subscription available */
};

uint8_t mqtt_prop_type(uint8_t id)
{
	return id < sizeof prop_defs / sizeof prop_defs[0] ? prop_defs[id].type : PT_NONE;
}

/* See mqtt_codec_int.h. */
int mqtt_props_read(struct mqtt_rd *r, unsigned where, struct mqtt_props *out,
		    uint64_t *seen)
{
	uint32_t len;
	if (!mqtt_rd_varint(r, &len) || len > mqtt_rd_left(r))
		return MQTT_ERR_MALFORMED;
	out->p = r->p;
	out->len = len;
	struct mqtt_rd pr = { r->p, r->p + len };
	r->p += len;

	uint64_t mask = 0;
	int rc;
	while (pr.p < pr.end) {
		uint8_t id = *pr.p++;
		/* Every identifier fits in one byte; a varint-encoded one
		 * starts at 0x80 and is unknown. */
		if (id >= sizeof prop_defs / sizeof prop_defs[0])
			return MQTT_ERR_MALFORMED;
		const struct prop_def *d = &prop_defs[id];
		if (d->type == PT_NONE || !(d->where & where))
			return MQTT_ERR_MALFORMED;

		uint32_t v = 0;
		uint16_t v16;
		uint8_t v8;
		struct mqtt_str s = { NULL, 0 };
		switch (d->type) {
		case PT_BYTE:
			if (!mqtt_rd_u8(&pr, &v8))
				return MQTT_ERR_MALFORMED;
			v = v8;
			break;
		case PT_U16:
			if (!mqtt_rd_u16(&pr, &v16))
				return MQTT_ERR_MALFORMED;
			v = v16;
			break;
		case PT_U32:
			if (!mqtt_rd_u32(&pr, &v))
				return MQTT_ERR_MALFORMED;
			break;
		case PT_VARINT:
			if (!mqtt_rd_varint(&pr, &v))
				return MQTT_ERR_MALFORMED;
			break;
		case PT_BIN:
			if (!mqtt_rd_bin(&pr, &s))
				return MQTT_ERR_MALFORMED;
			break;
		case PT_UTF8:
			if ((rc = mqtt_rd_utf8(&pr, &s)) != MQTT_OK)
				return rc;
			break;
		case PT_PAIR:
			if ((rc = mqtt_rd_utf8(&pr, &s)) != MQTT_OK ||
			    (rc = mqtt_rd_utf8(&pr, &s)) != MQTT_OK)
				return rc;
			break;
		}

		bool multi = id == 0x26 || (id == 0x0b && where == CX(PUBLISH));
		if ((mask & MQTT_PROP_BIT(id)) && !multi)
			return MQTT_ERR_PROTOCOL;
		mask |= MQTT_PROP_BIT(id);
		if ((d->rule == PR_BOOL && v > 1) || (d->rule == PR_NONZERO && v == 0) ||
		    (d->rule == PR_TOPIC && mqtt_topic_name_check(s.p, s.len) != MQTT_OK))
			return MQTT_ERR_PROTOCOL;
	}
	if (seen)
		*seen = mask;
	return MQTT_OK;
}

