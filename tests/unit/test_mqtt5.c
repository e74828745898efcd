/*
 * test_mqtt5.c - MQTT 5 pieces of the codec: the reason code mapping, the
 * property iterator (every value layout, user property pairs, varint
 * subscription identifiers at each size step, malformed lists), the writer
 * (exact bytes, overflow, raw append) and round trips of every level-5
 * packet type with properties and reason codes, built with the writer,
 * encoded, framed, decoded and walked back with the iterator.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

#define S(lit) ((struct mqtt_str){ (const uint8_t *)(lit), sizeof(lit) - 1 })

/* One expected property: integers in v, strings in s/s2 (NUL-free literals
 * or explicit lengths). */
struct want {
	uint8_t id;
	uint32_t v;
	const char *s;
	uint16_t slen;
	const char *s2;
	uint16_t s2len;
};

#define WI(id, v) { (id), (v), NULL, 0, NULL, 0 }
#define WS(id, lit) { (id), 0, (lit), sizeof(lit) - 1, NULL, 0 }
#define WP(k, v) { MQTT_P_USER_PROPERTY, 0, (k), sizeof(k) - 1, (v), sizeof(v) - 1 }

static bool is_str(uint8_t id)
{
	switch (id) {
	case MQTT_P_CONTENT_TYPE: case MQTT_P_RESPONSE_TOPIC: case MQTT_P_CORRELATION_DATA:
	case MQTT_P_ASSIGNED_CLIENT_ID: case MQTT_P_AUTH_METHOD: case MQTT_P_AUTH_DATA:
	case MQTT_P_RESPONSE_INFO: case MQTT_P_SERVER_REFERENCE: case MQTT_P_REASON_STRING:
	case MQTT_P_USER_PROPERTY:
		return true;
	}
	return false;
}

/* Writes the list w[0..n) with the writer. */
static void write_all(struct mqtt_pw *pw, const struct want *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (w[i].id == MQTT_P_USER_PROPERTY)
			mqtt_pw_pair(pw, w[i].s, w[i].slen, w[i].s2, w[i].s2len);
		else if (is_str(w[i].id))
			mqtt_pw_str(pw, w[i].id, w[i].s, w[i].slen);
		else
			mqtt_pw_int(pw, w[i].id, w[i].v);
	}
}

static void str_is(struct mqtt_str got, const char *s, uint16_t len)
{
	assert_int_equal(got.len, len);
	if (len)
		assert_memory_equal(got.p, s, len);
}

/* Walks pr with the iterator and checks it holds exactly w[0..n), in order. */
static void iter_is(const struct mqtt_props *pr, const struct want *w, size_t n)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	size_t i = 0;

	mqtt_props_begin(pr, &it);
	while (mqtt_props_next(&it, &p)) {
		assert_true(i < n);
		assert_int_equal(p.id, w[i].id);
		if (is_str(w[i].id)) {
			assert_int_equal(p.value, 0);
			str_is(p.str, w[i].s, w[i].slen);
			if (w[i].id == MQTT_P_USER_PROPERTY)
				str_is(p.str2, w[i].s2, w[i].s2len);
			else
				assert_int_equal(p.str2.len, 0);
		} else {
			assert_int_equal(p.value, w[i].v);
			assert_int_equal(p.str.len, 0);
			assert_null(p.str.p);
		}
		i++;
	}
	assert_int_equal(i, n);
	/* an exhausted iterator stays exhausted */
	assert_false(mqtt_props_next(&it, &p));
}

/* Frames b whole and decodes it at level 5. */
static int decode5(const struct buf *b, struct mqtt_packet *pkt)
{
	struct mqtt_frame f;
	int n = mqtt_frame_parse(buf_head(b), buf_used(b), MQTT_MAX_REMAINING, &f);
	assert_int_equal(n, (int)buf_used(b));
	return mqtt_decode(&f, 5, pkt);
}

static void props_eq(struct mqtt_props a, struct mqtt_pw *w)
{
	assert_int_equal(a.len, w->len);
	if (a.len)
		assert_memory_equal(a.p, w->p, a.len);
}

/* ---- reason codes ------------------------------------------------------ */

static void test_connack_rc(void **state)
{
	(void)state;
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_ACCEPTED), MQTT_RC_SUCCESS);
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_BAD_PROTOCOL), MQTT_RC_UNSUPPORTED_VERSION);
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_ID_REJECTED), MQTT_RC_CLIENT_ID_INVALID);
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_UNAVAILABLE), MQTT_RC_SERVER_UNAVAILABLE);
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_BAD_AUTH), MQTT_RC_BAD_USER_OR_PASSWORD);
	assert_int_equal(mqtt5_connack_rc(MQTT_CONNACK_NOT_AUTHORIZED), MQTT_RC_NOT_AUTHORIZED);
	/* level 5 codes pass through */
	static const uint8_t five[] = { 0x80, 0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x88,
					0x89, 0x8a, 0x8c, 0x95, 0x97, 0x9f };
	for (size_t i = 0; i < sizeof five; i++)
		assert_int_equal(mqtt5_connack_rc(five[i]), five[i]);
	assert_int_equal(mqtt5_connack_rc(6), 6);
	assert_int_equal(mqtt5_connack_rc(0xff), 0xff);
}

/* ---- iterator ---------------------------------------------------------- */

/* Every value layout, each varint size step of the subscription id, user
 * property pairs (repeated names kept in order), empty strings, binary data
 * with zero bytes. */
static const struct want every[] = {
	WI(MQTT_P_PAYLOAD_FORMAT, 1),
	WI(MQTT_P_MESSAGE_EXPIRY, 0xdeadbeef),
	WS(MQTT_P_CONTENT_TYPE, "text/plain"),
	WS(MQTT_P_RESPONSE_TOPIC, "reply/to/me"),
	{ MQTT_P_CORRELATION_DATA, 0, "\0\1\0\xff", 4, NULL, 0 },
	WI(MQTT_P_SUBSCRIPTION_ID, 1),
	WI(MQTT_P_SUBSCRIPTION_ID, 127),
	WI(MQTT_P_SUBSCRIPTION_ID, 128),
	WI(MQTT_P_SUBSCRIPTION_ID, 16383),
	WI(MQTT_P_SUBSCRIPTION_ID, 16384),
	WI(MQTT_P_SUBSCRIPTION_ID, 2097151),
	WI(MQTT_P_SUBSCRIPTION_ID, 2097152),
	WI(MQTT_P_SUBSCRIPTION_ID, 268435455),
	WI(MQTT_P_SESSION_EXPIRY, 0xffffffff),
	WS(MQTT_P_ASSIGNED_CLIENT_ID, "auto-1"),
	WI(MQTT_P_SERVER_KEEP_ALIVE, 0xffff),
	WS(MQTT_P_AUTH_METHOD, "SCRAM-SHA-1"),
	WS(MQTT_P_AUTH_DATA, ""),
	WI(MQTT_P_REQUEST_PROBLEM_INFO, 0),
	WI(MQTT_P_WILL_DELAY, 30),
	WI(MQTT_P_REQUEST_RESPONSE_INFO, 1),
	WS(MQTT_P_RESPONSE_INFO, "resp"),
	WS(MQTT_P_SERVER_REFERENCE, "other:1883"),
	WS(MQTT_P_REASON_STRING, "because"),
	WI(MQTT_P_RECEIVE_MAXIMUM, 100),
	WI(MQTT_P_TOPIC_ALIAS_MAXIMUM, 10),
	WI(MQTT_P_TOPIC_ALIAS, 7),
	WI(MQTT_P_MAXIMUM_QOS, 1),
	WI(MQTT_P_RETAIN_AVAILABLE, 0),
	WP("k", "v1"),
	WP("", ""),
	WP("k", "v2"),
	WI(MQTT_P_MAXIMUM_PACKET_SIZE, 1 << 20),
	WI(MQTT_P_WILDCARD_SUB_AVAILABLE, 1),
	WI(MQTT_P_SUB_ID_AVAILABLE, 1),
	WI(MQTT_P_SHARED_SUB_AVAILABLE, 0),
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_iter_every_type(void **state)
{
	uint8_t buf[512];
	struct mqtt_pw w;
	(void)state;
	mqtt_pw_init(&w, buf, sizeof buf);
	write_all(&w, every, N(every));
	assert_false(w.overflow);
	struct mqtt_props pr = mqtt_pw_props(&w);
	assert_ptr_equal(pr.p, buf);
	assert_int_equal(pr.len, w.len);
	iter_is(&pr, every, N(every));
}

/* The bytes the writer produces, against the spec's layouts. */
static void test_writer_bytes(void **state)
{
	static const uint8_t want[] = {
		0x01, 0x01,                         /* byte */
		0x21, 0x01, 0x02,                   /* two-byte integer */
		0x02, 0x00, 0x00, 0x01, 0x00,       /* four-byte integer */
		0x0b, 0x7f,                         /* varint, 1 byte */
		0x0b, 0x80, 0x01,                   /* 128 */
		0x0b, 0xff, 0xff, 0xff, 0x7f,       /* 268,435,455 */
		0x03, 0x00, 0x02, 'a', 'b',         /* UTF-8 string */
		0x09, 0x00, 0x00,                   /* empty binary */
		0x26, 0x00, 0x01, 'k', 0x00, 0x02, 'v', 'w', /* pair */
	};
	uint8_t buf[64];
	struct mqtt_pw w;
	(void)state;
	mqtt_pw_init(&w, buf, sizeof buf);
	mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1);
	mqtt_pw_int(&w, MQTT_P_RECEIVE_MAXIMUM, 0x102);
	mqtt_pw_int(&w, MQTT_P_MESSAGE_EXPIRY, 256);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 127);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 128);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 268435455);
	mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, "ab", 2);
	mqtt_pw_str(&w, MQTT_P_CORRELATION_DATA, NULL, 0);
	mqtt_pw_pair(&w, "k", 1, "vw", 2);
	assert_false(w.overflow);
	assert_int_equal(w.len, sizeof want);
	assert_memory_equal(buf, want, sizeof want);
}

static void test_find(void **state)
{
	uint8_t buf[512];
	struct mqtt_pw w;
	struct mqtt_prop p;
	(void)state;
	mqtt_pw_init(&w, buf, sizeof buf);
	write_all(&w, every, N(every));
	struct mqtt_props pr = mqtt_pw_props(&w);

	/* the first of a repeated id */
	assert_true(mqtt_props_find(&pr, MQTT_P_SUBSCRIPTION_ID, &p));
	assert_int_equal(p.value, 1);
	assert_true(mqtt_props_find(&pr, MQTT_P_USER_PROPERTY, &p));
	str_is(p.str, "k", 1);
	str_is(p.str2, "v1", 2);
	/* the last entry, and a NULL out */
	assert_true(mqtt_props_find(&pr, MQTT_P_SHARED_SUB_AVAILABLE, &p));
	assert_int_equal(p.value, 0);
	assert_true(mqtt_props_find(&pr, MQTT_P_CORRELATION_DATA, NULL));
	/* absent ids, including ones the spec does not define */
	assert_false(mqtt_props_find(&pr, 0x04, &p));
	assert_false(mqtt_props_find(&pr, 0x7f, NULL));

	/* an empty list: len 0, with or without a pointer */
	struct mqtt_props none = { NULL, 0 }, empty = { buf, 0 };
	assert_false(mqtt_props_find(&none, MQTT_P_PAYLOAD_FORMAT, &p));
	assert_false(mqtt_props_find(&empty, MQTT_P_PAYLOAD_FORMAT, &p));
	struct mqtt_prop_iter it;
	mqtt_props_begin(&none, &it);
	assert_false(mqtt_props_next(&it, &p));
}

/* The iterator never reads past the list and stops for good at a bad entry,
 * whatever follows in memory. */
static void test_iter_malformed(void **state)
{
	static const struct {
		uint8_t bytes[12];
		uint32_t len;     /* the list's length; bytes past it are bait */
		unsigned good;    /* entries read before the stop */
	} cases[] = {
		{ { 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x05 }, 6, 1 },   /* u32 cut by len */
		{ { 0x21, 0x00, 0x05 }, 2, 0 },                            /* u16 cut */
		{ { 0x01 }, 1, 0 },                                        /* byte missing */
		{ { 0x0b, 0x80, 0x80, 0x80, 0x80, 0x01 }, 6, 0 },          /* varint 5 bytes */
		{ { 0x0b, 0x80, 0x00 }, 3, 0 },                            /* varint not shortest */
		{ { 0x0b, 0x81 }, 2, 0 },                                  /* varint cut */
		{ { 0x03, 0x00, 0x03, 'a', 'b', 'c' }, 5, 0 },             /* string cut */
		{ { 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v' }, 6, 0 },      /* pair value cut */
		{ { 0x26, 0x00, 0x01, 'k' }, 4, 0 },                       /* pair without value */
		{ { 0x01, 0x00, 0x04, 0x01 }, 4, 1 },                      /* unknown id 0x04 */
		{ { 0x00, 0x01 }, 2, 0 },                                  /* id 0 */
		{ { 0x80, 0x01, 0x01 }, 3, 0 },                            /* two-byte id */
	};
	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct mqtt_props pr = { cases[i].bytes, cases[i].len };
		struct mqtt_prop_iter it;
		struct mqtt_prop p;
		unsigned n = 0;
		mqtt_props_begin(&pr, &it);
		while (mqtt_props_next(&it, &p))
			n++;
		if (n != cases[i].good)
			print_error("case %zu: %u entries, want %u\n", i, n, cases[i].good);
		assert_int_equal(n, cases[i].good);
		assert_false(mqtt_props_next(&it, &p));
		assert_ptr_equal(it.p, it.end);
		assert_ptr_equal(it.end, cases[i].bytes + cases[i].len);
	}
}

/* ---- writer overflow --------------------------------------------------- */

static void test_writer_overflow(void **state)
{
	uint8_t buf[16];
	struct mqtt_pw w;
	(void)state;

	/* exactly full is not an overflow */
	memset(buf, 0xee, sizeof buf);
	mqtt_pw_init(&w, buf, 8);
	mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, "abcde", 5);  /* 8 bytes */
	assert_false(w.overflow);
	assert_int_equal(w.len, 8);
	/* one byte more overflows, writes nothing and keeps len */
	mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1);
	assert_true(w.overflow);
	assert_int_equal(w.len, 8);
	assert_int_equal(buf[8], 0xee);
	/* once overflowed, even what would fit is refused */
	mqtt_pw_raw(&w, (const uint8_t *)"", 0);
	mqtt_pw_init(&w, buf, 8);
	mqtt_pw_int(&w, MQTT_P_MESSAGE_EXPIRY, 5);        /* 5 bytes */
	mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, "ab", 2);    /* 5 more: no room */
	assert_true(w.overflow);
	assert_int_equal(w.len, 5);
	mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1);        /* 2 would fit */
	mqtt_pw_pair(&w, "", 0, "", 0);
	mqtt_pw_raw(&w, (const uint8_t *)"\x01\x01", 2);
	assert_int_equal(w.len, 5);
	assert_true(w.overflow);
	/* the list written before the overflow is still whole */
	struct mqtt_props pr = mqtt_pw_props(&w);
	const struct want first[] = { WI(MQTT_P_MESSAGE_EXPIRY, 5) };
	iter_is(&pr, first, 1);

	/* each kind of entry one byte short */
	struct { int kind; uint32_t cap; } shorts[] = {
		{ 0, 1 }, { 1, 2 }, { 2, 4 }, { 3, 2 }, { 4, 4 }, { 5, 6 }, { 6, 1 },
	};
	for (size_t i = 0; i < N(shorts); i++) {
		mqtt_pw_init(&w, buf, shorts[i].cap);
		switch (shorts[i].kind) {
		case 0: mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1); break;       /* needs 2 */
		case 1: mqtt_pw_int(&w, MQTT_P_RECEIVE_MAXIMUM, 1); break;      /* needs 3 */
		case 2: mqtt_pw_int(&w, MQTT_P_SESSION_EXPIRY, 1); break;       /* needs 5 */
		case 3: mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 128); break;    /* needs 3 */
		case 4: mqtt_pw_str(&w, MQTT_P_REASON_STRING, "ab", 2); break;  /* needs 5 */
		case 5: mqtt_pw_pair(&w, "a", 1, "b", 1); break;                /* needs 7 */
		case 6: mqtt_pw_raw(&w, (const uint8_t *)"\x01\x01", 2); break; /* needs 2 */
		}
		assert_true(w.overflow);
		assert_int_equal(w.len, 0);
	}

	/* caller bugs: a string id as an integer, a varint over 4 bytes */
	mqtt_pw_init(&w, buf, sizeof buf);
	mqtt_pw_int(&w, MQTT_P_CONTENT_TYPE, 1);
	assert_true(w.overflow);
	assert_int_equal(w.len, 0);
	mqtt_pw_init(&w, buf, sizeof buf);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 268435456);
	assert_true(w.overflow);
	assert_int_equal(w.len, 0);
	mqtt_pw_init(&w, buf, sizeof buf);
	mqtt_pw_int(&w, 0x04, 1);
	assert_true(w.overflow);

	/* a zero-capacity writer accepts only nothing */
	mqtt_pw_init(&w, buf, 0);
	mqtt_pw_raw(&w, NULL, 0);
	assert_false(w.overflow);
	assert_int_equal(w.len, 0);
	mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 0);
	assert_true(w.overflow);
}

/* mqtt_pw_raw appends encoded properties as they are (forwarding a
 * message's stored properties after new ones). */
static void test_writer_raw(void **state)
{
	uint8_t stored[64], out[128];
	struct mqtt_pw a, w;
	(void)state;
	mqtt_pw_init(&a, stored, sizeof stored);
	mqtt_pw_int(&a, MQTT_P_PAYLOAD_FORMAT, 1);
	mqtt_pw_pair(&a, "trace", 5, "42", 2);
	mqtt_pw_str(&a, MQTT_P_CORRELATION_DATA, "\x00\x07", 2);
	assert_false(a.overflow);

	mqtt_pw_init(&w, out, sizeof out);
	mqtt_pw_int(&w, MQTT_P_TOPIC_ALIAS, 3);
	mqtt_pw_int(&w, MQTT_P_MESSAGE_EXPIRY, 59);
	mqtt_pw_raw(&w, a.p, a.len);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 9);
	assert_false(w.overflow);
	assert_int_equal(w.len, 3 + 5 + a.len + 2);
	assert_memory_equal(out + 8, stored, a.len);

	const struct want all[] = {
		WI(MQTT_P_TOPIC_ALIAS, 3), WI(MQTT_P_MESSAGE_EXPIRY, 59),
		WI(MQTT_P_PAYLOAD_FORMAT, 1), WP("trace", "42"),
		{ MQTT_P_CORRELATION_DATA, 0, "\x00\x07", 2, NULL, 0 },
		WI(MQTT_P_SUBSCRIPTION_ID, 9),
	};
	struct mqtt_props pr = mqtt_pw_props(&w);
	iter_is(&pr, all, N(all));
}

/* ---- level-5 round trips ------------------------------------------------ */

static void test_roundtrip_connect(void **state)
{
	static const struct want props[] = {
		WI(MQTT_P_SESSION_EXPIRY, 3600), WI(MQTT_P_RECEIVE_MAXIMUM, 20),
		WI(MQTT_P_MAXIMUM_PACKET_SIZE, 4096), WI(MQTT_P_TOPIC_ALIAS_MAXIMUM, 5),
		WI(MQTT_P_REQUEST_RESPONSE_INFO, 1), WI(MQTT_P_REQUEST_PROBLEM_INFO, 0),
		WP("site", "north"), WS(MQTT_P_AUTH_METHOD, "X"), WS(MQTT_P_AUTH_DATA, "\1\2"),
	};
	static const struct want wprops[] = {
		WI(MQTT_P_WILL_DELAY, 10), WI(MQTT_P_PAYLOAD_FORMAT, 1),
		WI(MQTT_P_MESSAGE_EXPIRY, 60), WS(MQTT_P_CONTENT_TYPE, "text/plain"),
		WS(MQTT_P_RESPONSE_TOPIC, "r/t"), WS(MQTT_P_CORRELATION_DATA, "c"),
		WP("a", "b"),
	};
	uint8_t b1[128], b2[128];
	struct mqtt_pw w1, w2;
	(void)state;
	mqtt_pw_init(&w1, b1, sizeof b1);
	write_all(&w1, props, N(props));
	mqtt_pw_init(&w2, b2, sizeof b2);
	write_all(&w2, wprops, N(wprops));
	struct mqtt_connect c = {
		.level = 5, .clean = true, .will = true, .will_qos = 1, .will_retain = true,
		.has_username = true, .has_password = true, .keepalive = 30,
		.client_id = S("dev-1"), .will_topic = S("status/dev-1"),
		.will_payload = S("offline"), .username = S("u"), .password = S("p\0w"),
		.props = mqtt_pw_props(&w1), .will_props = mqtt_pw_props(&w2),
	};
	struct buf b;
	struct mqtt_packet pkt;
	buf_init(&b);
	assert_int_equal(mqtt_encode_connect(&b, &c), MQTT_OK);
	assert_int_equal(decode5(&b, &pkt), MQTT_OK);
	const struct mqtt_connect *d = &pkt.u.connect;
	assert_int_equal(d->level, 5);
	assert_true(d->clean && d->will && d->will_retain);
	assert_int_equal(d->will_qos, 1);
	assert_int_equal(d->keepalive, 30);
	str_is(d->client_id, "dev-1", 5);
	str_is(d->password, "p\0w", 3);
	props_eq(d->props, &w1);
	props_eq(d->will_props, &w2);
	iter_is(&d->props, props, N(props));
	iter_is(&d->will_props, wprops, N(wprops));
	buf_release(&b);
}

static void test_roundtrip_connack(void **state)
{
	static const struct want props[] = {
		WI(MQTT_P_SESSION_EXPIRY, 0), WI(MQTT_P_RECEIVE_MAXIMUM, 1000),
		WI(MQTT_P_MAXIMUM_QOS, 1), WI(MQTT_P_RETAIN_AVAILABLE, 1),
		WI(MQTT_P_MAXIMUM_PACKET_SIZE, 1 << 20), WS(MQTT_P_ASSIGNED_CLIENT_ID, "kg-x"),
		WI(MQTT_P_TOPIC_ALIAS_MAXIMUM, 10), WS(MQTT_P_REASON_STRING, "ok"),
		WP("k", "v"), WI(MQTT_P_WILDCARD_SUB_AVAILABLE, 1),
		WI(MQTT_P_SUB_ID_AVAILABLE, 1), WI(MQTT_P_SHARED_SUB_AVAILABLE, 1),
		WI(MQTT_P_SERVER_KEEP_ALIVE, 60), WS(MQTT_P_RESPONSE_INFO, "ri"),
		WS(MQTT_P_SERVER_REFERENCE, "h:1"), WS(MQTT_P_AUTH_METHOD, "m"),
		WS(MQTT_P_AUTH_DATA, "d"),
	};
	static const uint8_t rcs[] = { 0x00, 0x80, 0x84, 0x8c, 0x95, 0x9f };
	uint8_t pb[256];
	struct mqtt_pw w;
	(void)state;
	for (size_t i = 0; i < sizeof rcs; i++) {
		mqtt_pw_init(&w, pb, sizeof pb);
		if (i & 1)
			write_all(&w, props, N(props));
		struct mqtt_connack ca = { .session_present = rcs[i] == 0, .rc = rcs[i],
					   .props = mqtt_pw_props(&w) };
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_connack(&b, 5, &ca), MQTT_OK);
		/* a CONNACK always carries its property length */
		assert_int_equal(buf_used(&b), 2 + 2 + 1 + w.len + (w.len > 127));
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.u.connack.rc, rcs[i]);
		assert_int_equal(pkt.u.connack.session_present, rcs[i] == 0);
		props_eq(pkt.u.connack.props, &w);
		iter_is(&pkt.u.connack.props, props, (i & 1) ? N(props) : 0);
		buf_release(&b);
	}
}

static void test_roundtrip_publish(void **state)
{
	/* as a server sends it: several subscription identifiers */
	static const struct want props[] = {
		WI(MQTT_P_PAYLOAD_FORMAT, 1), WI(MQTT_P_MESSAGE_EXPIRY, 120),
		WI(MQTT_P_TOPIC_ALIAS, 2), WS(MQTT_P_RESPONSE_TOPIC, "reply/1"),
		WS(MQTT_P_CORRELATION_DATA, "\x01\x00\x02"), WP("cmd-id", "7"),
		WP("cmd-id", "8"), WI(MQTT_P_SUBSCRIPTION_ID, 1),
		WI(MQTT_P_SUBSCRIPTION_ID, 268435455), WS(MQTT_P_CONTENT_TYPE, "json"),
	};
	uint8_t pb[128];
	struct mqtt_pw w;
	(void)state;
	mqtt_pw_init(&w, pb, sizeof pb);
	write_all(&w, props, N(props));
	assert_false(w.overflow);
	for (uint8_t qos = 0; qos <= 2; qos++) {
		struct mqtt_publish p = {
			.qos = qos, .dup = qos == 2, .retain = qos == 1,
			.packet_id = qos ? 0x4242 : 0, .topic = S("cmd/dev-1"),
			.props = mqtt_pw_props(&w), .payload = (const uint8_t *)"{\"on\":1}",
			.payload_len = 8,
		};
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_publish(&b, 5, &p), MQTT_OK);
		assert_int_equal(buf_used(&b), mqtt_publish_size_props(5, p.topic.len, w.len,
									p.payload_len, qos));
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		const struct mqtt_publish *d = &pkt.u.publish;
		assert_int_equal(d->qos, qos);
		assert_int_equal(d->dup, p.dup);
		assert_int_equal(d->retain, p.retain);
		assert_int_equal(d->packet_id, p.packet_id);
		str_is(d->topic, "cmd/dev-1", 9);
		assert_int_equal(d->payload_len, 8);
		assert_memory_equal(d->payload, p.payload, 8);
		props_eq(d->props, &w);
		iter_is(&d->props, props, N(props));
		buf_release(&b);
	}
}

/* A broker's PUBLISH: the message's stored properties in props, the
 * per-delivery ones (Message Expiry left, Subscription Identifiers) in
 * props_more; the receiver sees one list, in that order. */
static void test_roundtrip_publish_more(void **state)
{
	static const struct want stored[] = { WI(MQTT_P_PAYLOAD_FORMAT, 1), WP("k", "v"),
					      WS(MQTT_P_RESPONSE_TOPIC, "r") };
	static const struct want more[] = { WI(MQTT_P_MESSAGE_EXPIRY, 9),
					    WI(MQTT_P_SUBSCRIPTION_ID, 5),
					    WI(MQTT_P_SUBSCRIPTION_ID, 70000) };
	uint8_t b1[64], b2[64];
	struct mqtt_pw w1, w2;
	(void)state;
	mqtt_pw_init(&w1, b1, sizeof b1);
	write_all(&w1, stored, N(stored));
	mqtt_pw_init(&w2, b2, sizeof b2);
	write_all(&w2, more, N(more));
	for (int variant = 0; variant < 3; variant++) {
		struct mqtt_publish p = { .qos = 1, .packet_id = 3, .topic = S("t"),
					  .payload = (const uint8_t *)"x", .payload_len = 1 };
		if (variant != 1)
			p.props = mqtt_pw_props(&w1);
		if (variant != 2)
			p.props_more = mqtt_pw_props(&w2);
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_publish(&b, 5, &p), MQTT_OK);
		assert_int_equal(buf_used(&b),
				 mqtt_publish_size_props(5, 1, p.props.len + p.props_more.len, 1, 1));
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.u.publish.props_more.len, 0);
		struct want all[N(stored) + N(more)];
		size_t n = 0;
		for (size_t i = 0; variant != 1 && i < N(stored); i++)
			all[n++] = stored[i];
		for (size_t i = 0; variant != 2 && i < N(more); i++)
			all[n++] = more[i];
		iter_is(&pkt.u.publish.props, all, n);
		/* level 4 writes neither */
		buf_reset(&b);
		assert_int_equal(mqtt_encode_publish(&b, 4, &p), MQTT_OK);
		assert_int_equal(buf_used(&b), mqtt_publish_size(4, 1, 1, 1));
		buf_release(&b);
	}
}

/* PUBACK..PUBCOMP in each form: success without anything (remaining length
 * 2), a reason alone (3), a reason with properties. */
static void test_roundtrip_acks(void **state)
{
	static const struct want props[] = { WS(MQTT_P_REASON_STRING, "kafka down"),
					     WP("broker", "b1") };
	static const uint8_t types[] = { MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP };
	uint8_t pb[64];
	struct mqtt_pw w;
	(void)state;
	mqtt_pw_init(&w, pb, sizeof pb);
	write_all(&w, props, N(props));
	for (size_t t = 0; t < 4; t++)
	for (int form = 0; form < 4; form++) {
		bool rel = types[t] == MQTT_PUBREL || types[t] == MQTT_PUBCOMP;
		struct mqtt_ack a = { .packet_id = 9 };
		size_t rem = 2;
		if (form == 1 || form == 2) {
			a.reason = rel ? MQTT_RC_PACKET_ID_NOT_FOUND :
			           form == 1 ? MQTT_RC_NO_MATCHING_SUBSCRIBERS : MQTT_RC_QUOTA_EXCEEDED;
			rem = 3;
		}
		if (form >= 2) {
			/* form 3: success with properties still writes the code */
			a.props = mqtt_pw_props(&w);
			rem = 3 + 1 + w.len;
		}
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_ack(&b, 5, types[t], &a), MQTT_OK);
		assert_int_equal(buf_used(&b), 2 + rem);
		assert_int_equal(buf_head(&b)[1], rem);
		assert_int_equal(buf_head(&b)[0] & 0x0f, types[t] == MQTT_PUBREL ? 2 : 0);
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, types[t]);
		assert_int_equal(pkt.u.ack.packet_id, 9);
		assert_int_equal(pkt.u.ack.reason, a.reason);
		iter_is(&pkt.u.ack.props, props, form >= 2 ? N(props) : 0);
		buf_release(&b);
	}
}

static void test_roundtrip_subscribe(void **state)
{
	static const struct want sprops[] = { WI(MQTT_P_SUBSCRIPTION_ID, 300), WP("x", "y") };
	static const struct want uprops[] = { WP("why", "done") };
	const struct mqtt_str filters[] = { S("a/+"), S("$share/g/b/#") };
	static const uint8_t opts[] = { 0x2e, 0x01 };
	uint8_t pb[64];
	struct mqtt_pw w;
	(void)state;
	for (uint8_t type = MQTT_SUBSCRIBE; type <= MQTT_UNSUBSCRIBE; type += 2) {
		bool sub = type == MQTT_SUBSCRIBE;
		mqtt_pw_init(&w, pb, sizeof pb);
		if (sub)
			write_all(&w, sprops, N(sprops));
		else
			write_all(&w, uprops, N(uprops));
		struct mqtt_props pr = mqtt_pw_props(&w);
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_subscribe_props(&b, 5, type, 77, &pr, filters, opts, 2),
				 MQTT_OK);
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, type);
		assert_int_equal(pkt.u.sub.packet_id, 77);
		assert_int_equal(pkt.u.sub.count, 2);
		props_eq(pkt.u.sub.props, &w);
		if (sub)
			iter_is(&pkt.u.sub.props, sprops, N(sprops));
		else
			iter_is(&pkt.u.sub.props, uprops, N(uprops));
		struct mqtt_topic_iter it;
		struct mqtt_str f;
		uint8_t o;
		mqtt_topics_begin(&pkt.u.sub, &it);
		for (int i = 0; i < 2; i++) {
			assert_true(mqtt_topics_next(&it, &f, &o));
			str_is(f, (const char *)filters[i].p, filters[i].len);
			assert_int_equal(o, sub ? opts[i] : 0);
		}
		assert_false(mqtt_topics_next(&it, &f, &o));

		/* NULL props is the empty list; level 4 writes none */
		buf_reset(&b);
		assert_int_equal(mqtt_encode_subscribe_props(&b, 5, type, 1, NULL, filters, opts, 1),
				 MQTT_OK);
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.u.sub.props.len, 0);
		buf_reset(&b);
		assert_int_equal(mqtt_encode_subscribe_props(&b, 4, type, 1, &pr, filters, opts, 1),
				 MQTT_OK);
		assert_int_equal(buf_used(&b), 2 + 2 + 5 + (sub ? 1 : 0));
		buf_release(&b);
	}
}

static void test_roundtrip_suback_unsuback(void **state)
{
	static const struct want props[] = { WS(MQTT_P_REASON_STRING, "no"), WP("k", "v") };
	static const uint8_t scodes[] = { 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91,
					  0x97, 0x9e, 0xa1, 0xa2 };
	static const uint8_t ucodes[] = { 0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91 };
	uint8_t pb[64];
	struct mqtt_pw w;
	(void)state;
	for (int with = 0; with < 2; with++)
	for (uint8_t type = MQTT_SUBACK; type <= MQTT_UNSUBACK; type += 2) {
		mqtt_pw_init(&w, pb, sizeof pb);
		if (with)
			write_all(&w, props, N(props));
		struct mqtt_suback s = { .packet_id = 5, .props = mqtt_pw_props(&w),
					 .codes = type == MQTT_SUBACK ? scodes : ucodes,
					 .count = type == MQTT_SUBACK ? sizeof scodes : sizeof ucodes };
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_suback(&b, 5, type, &s), MQTT_OK);
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, type);
		assert_int_equal(pkt.u.suback.packet_id, 5);
		assert_int_equal(pkt.u.suback.count, s.count);
		assert_memory_equal(pkt.u.suback.codes, s.codes, s.count);
		iter_is(&pkt.u.suback.props, props, with ? N(props) : 0);
		buf_release(&b);
	}
}

/* DISCONNECT and AUTH: empty (success, no properties), a reason alone, a
 * reason with properties. */
static void test_roundtrip_disconnect_auth(void **state)
{
	static const struct want dprops[] = {
		WI(MQTT_P_SESSION_EXPIRY, 0), WS(MQTT_P_REASON_STRING, "bye"),
		WS(MQTT_P_SERVER_REFERENCE, "other"), WP("k", "v"),
	};
	static const struct want aprops[] = {
		WS(MQTT_P_AUTH_METHOD, "SCRAM-SHA-1"), WS(MQTT_P_AUTH_DATA, "\0\1"),
		WS(MQTT_P_REASON_STRING, "more"), WP("k", "v"),
	};
	uint8_t pb[64];
	struct mqtt_pw w;
	(void)state;
	for (int auth = 0; auth < 2; auth++)
	for (int form = 0; form < 3; form++) {
		struct mqtt_disconnect d = { 0 };
		mqtt_pw_init(&w, pb, sizeof pb);
		size_t rem = 0;
		if (form >= 1) {
			d.reason = auth ? MQTT_RC_CONTINUE_AUTH : MQTT_RC_SERVER_SHUTTING_DOWN;
			/* a DISCONNECT reason may stand alone; AUTH writes a length */
			rem = auth ? 2 : 1;
		}
		if (form == 2) {
			if (auth)
				write_all(&w, aprops, N(aprops));
			else
				write_all(&w, dprops, N(dprops));
			d.props = mqtt_pw_props(&w);
			rem = 2 + w.len;
		}
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		if (auth)
			assert_int_equal(mqtt_encode_auth(&b, &d), MQTT_OK);
		else
			assert_int_equal(mqtt_encode_disconnect(&b, 5, &d), MQTT_OK);
		assert_int_equal(buf_used(&b), 2 + rem);
		assert_int_equal(buf_head(&b)[0], auth ? 0xf0 : 0xe0);
		assert_int_equal(decode5(&b, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, auth ? MQTT_AUTH : MQTT_DISCONNECT);
		assert_int_equal(pkt.u.disconnect.reason, d.reason);
		props_eq(pkt.u.disconnect.props, &w);
		if (auth)
			iter_is(&pkt.u.disconnect.props, aprops, form == 2 ? N(aprops) : 0);
		else
			iter_is(&pkt.u.disconnect.props, dprops, form == 2 ? N(dprops) : 0);
		buf_release(&b);
	}
}

/* What the writer may build but the decoder must refuse where it appears:
 * the decoder, not the writer, knows which packet allows which property. */
static void test_writer_output_validated(void **state)
{
	uint8_t pb[32];
	struct mqtt_pw w;
	struct buf b;
	struct mqtt_packet pkt;
	(void)state;
	buf_init(&b);

	/* Session Expiry in a PUBLISH: not valid for the type: malformed (2.2.2.2) */
	mqtt_pw_init(&w, pb, sizeof pb);
	mqtt_pw_int(&w, MQTT_P_SESSION_EXPIRY, 1);
	struct mqtt_publish p = { .topic = S("t"), .props = mqtt_pw_props(&w) };
	assert_int_equal(mqtt_encode_publish(&b, 5, &p), MQTT_OK);
	assert_int_equal(decode5(&b, &pkt), MQTT_ERR_MALFORMED);

	/* a repeated Reason String: protocol error */
	buf_reset(&b);
	mqtt_pw_init(&w, pb, sizeof pb);
	mqtt_pw_str(&w, MQTT_P_REASON_STRING, "a", 1);
	mqtt_pw_str(&w, MQTT_P_REASON_STRING, "b", 1);
	struct mqtt_ack a = { .packet_id = 1, .props = mqtt_pw_props(&w) };
	assert_int_equal(mqtt_encode_ack(&b, 5, MQTT_PUBACK, &a), MQTT_OK);
	assert_int_equal(decode5(&b, &pkt), MQTT_ERR_PROTOCOL);

	/* two Subscription Identifiers in a SUBSCRIBE: protocol error (3.8.2.1.2) */
	buf_reset(&b);
	mqtt_pw_init(&w, pb, sizeof pb);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 1);
	mqtt_pw_int(&w, MQTT_P_SUBSCRIPTION_ID, 2);
	struct mqtt_props pr = mqtt_pw_props(&w);
	const struct mqtt_str f = S("a");
	const uint8_t o = 0;
	assert_int_equal(mqtt_encode_subscribe_props(&b, 5, MQTT_SUBSCRIBE, 1, &pr, &f, &o, 1),
			 MQTT_OK);
	assert_int_equal(decode5(&b, &pkt), MQTT_ERR_PROTOCOL);
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connack_rc),
		cmocka_unit_test(test_iter_every_type),
		cmocka_unit_test(test_writer_bytes),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_iter_malformed),
		cmocka_unit_test(test_writer_overflow),
		cmocka_unit_test(test_writer_raw),
		cmocka_unit_test(test_roundtrip_connect),
		cmocka_unit_test(test_roundtrip_connack),
		cmocka_unit_test(test_roundtrip_publish),
		cmocka_unit_test(test_roundtrip_publish_more),
		cmocka_unit_test(test_roundtrip_acks),
		cmocka_unit_test(test_roundtrip_subscribe),
		cmocka_unit_test(test_roundtrip_suback_unsuback),
		cmocka_unit_test(test_roundtrip_disconnect_auth),
		cmocka_unit_test(test_writer_output_validated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
