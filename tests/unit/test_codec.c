/*
 * test_codec.c - MQTT codec: round trips for every packet type and level,
 * byte-at-a-time framing, tables of malformed packets with the error each
 * must produce, and the validation helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mqtt/mqtt_codec.h"

#define S(lit) ((struct mqtt_str){ (const uint8_t *)(lit), sizeof(lit) - 1 })
#define P(arr) ((struct mqtt_props){ (arr), sizeof(arr) })

/* Hex with optional spaces to bytes; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	while (*hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		char two[3] = { hex[0], hex[1], 0 };
		assert_true(n < cap && hex[1] != 0);
		out[n++] = (uint8_t)strtoul(two, NULL, 16);
		hex += 2;
	}
	return n;
}

/* Frames p[0..n) feeding one more byte at a time (need more until the
 * last byte), then decodes it. */
static int parse_whole(const uint8_t *p, size_t n, uint8_t level, struct mqtt_packet *pkt)
{
	struct mqtt_frame f;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mqtt_frame_parse(p, i, MQTT_MAX_REMAINING, &f), 0);
	assert_int_equal(mqtt_frame_parse(p, n, MQTT_MAX_REMAINING, &f), (int)n);
	return mqtt_decode(&f, level, pkt);
}

static int reparse(const struct buf *b, uint8_t level, struct mqtt_packet *pkt)
{
	return parse_whole(buf_head(b), buf_used(b), level, pkt);
}

static void str_eq(struct mqtt_str a, struct mqtt_str b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(a.p, b.p, a.len);
}

static void props_eq(struct mqtt_props a, struct mqtt_props b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(a.p, b.p, a.len);
}

static const uint8_t connect_props[] = { 0x11, 0, 0, 0, 0x78, 0x21, 0, 0x10,
					 0x26, 0, 1, 'k', 0, 1, 'v' };
static const uint8_t will_props[] = { 0x18, 0, 0, 0, 0x0a, 0x03, 0, 4, 't', 'e', 'x', 't' };
static const uint8_t reason_props[] = { 0x1f, 0, 2, 'n', 'o' };

static void test_connect_roundtrip(void **state)
{
	(void)state;
	for (uint8_t level = 3; level <= 5; level++) {
		for (int full = 0; full < 2; full++) {
			struct mqtt_connect c = { .level = level, .clean = !full,
						  .keepalive = 60, .client_id = S("dev-1") };
			if (full) {
				c.will = true;
				c.will_qos = 2;
				c.will_retain = true;
				c.will_topic = S("dev/1/status");
				c.will_payload = S("off\0line");
				c.has_username = true;
				c.username = S("user");
				c.has_password = true;
				c.password = S("p\0ss");
				if (level == 5) {
					c.props = P(connect_props);
					c.will_props = P(will_props);
				}
			}
			struct buf b;
			struct mqtt_packet pkt;
			buf_init(&b);
			assert_int_equal(mqtt_encode_connect(&b, &c), MQTT_OK);
			/* the level argument is ignored for CONNECT */
			assert_int_equal(reparse(&b, 0, &pkt), MQTT_OK);
			assert_int_equal(pkt.type, MQTT_CONNECT);
			const struct mqtt_connect *d = &pkt.u.connect;
			assert_int_equal(d->level, level);
			assert_int_equal(d->clean, c.clean);
			assert_int_equal(d->will, c.will);
			assert_int_equal(d->will_qos, c.will_qos);
			assert_int_equal(d->will_retain, c.will_retain);
			assert_int_equal(d->has_username, c.has_username);
			assert_int_equal(d->has_password, c.has_password);
			assert_int_equal(d->keepalive, 60);
			str_eq(d->client_id, c.client_id);
			str_eq(d->will_topic, c.will_topic);
			str_eq(d->will_payload, c.will_payload);
			str_eq(d->username, c.username);
			str_eq(d->password, c.password);
			props_eq(d->props, c.props);
			props_eq(d->will_props, c.will_props);
			buf_release(&b);
		}
	}
}

static void test_connack_roundtrip(void **state)
{
	static const uint8_t props[] = { 0x24, 1, 0x22, 0, 10, 0x12, 0, 2, 'i', 'd' };
	(void)state;
	for (uint8_t level = 4; level <= 5; level++) {
		struct mqtt_connack ca = { .session_present = true, .rc = 0 };
		if (level == 5)
			ca.props = P(props);
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_connack(&b, level, &ca), MQTT_OK);
		assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, MQTT_CONNACK);
		assert_true(pkt.u.connack.session_present);
		assert_int_equal(pkt.u.connack.rc, 0);
		props_eq(pkt.u.connack.props, ca.props);
		buf_release(&b);
	}
}

static void test_publish_roundtrip(void **state)
{
	static const uint8_t props[] = { 0x23, 0, 5, 0x26, 0, 1, 'a', 0, 1, 'b' };
	static const size_t sizes[] = { 0, 5, 120, 300, 16400, 2100000 };
	uint8_t *payload = malloc(2100000);
	(void)state;
	assert_non_null(payload);
	for (size_t i = 0; i < 2100000; i++)
		payload[i] = (uint8_t)(i * 7);

	for (uint8_t level = 4; level <= 5; level++)
	for (uint8_t qos = 0; qos <= 2; qos++)
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		struct mqtt_publish p = {
			.qos = qos, .dup = qos > 0 && (si & 1), .retain = si & 1,
			.packet_id = qos ? (uint16_t)(1000 + si) : 0,
			.topic = S("plant/7/line/3/temp"),
			.payload = payload, .payload_len = (uint32_t)sizes[si],
		};
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_publish(&b, level, &p), MQTT_OK);
		assert_int_equal(buf_used(&b), mqtt_publish_size(level, p.topic.len,
								  p.payload_len, qos));
		if (level == 5 && si == 2)
			p.props = P(props);
		if (p.props.len) {
			buf_reset(&b);
			assert_int_equal(mqtt_encode_publish(&b, level, &p), MQTT_OK);
		}
		assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
		const struct mqtt_publish *d = &pkt.u.publish;
		assert_int_equal(pkt.type, MQTT_PUBLISH);
		assert_int_equal(d->qos, qos);
		assert_int_equal(d->dup, p.dup);
		assert_int_equal(d->retain, p.retain);
		assert_int_equal(d->packet_id, p.packet_id);
		str_eq(d->topic, p.topic);
		props_eq(d->props, p.props);
		assert_int_equal(d->payload_len, p.payload_len);
		if (p.payload_len)
			assert_memory_equal(d->payload, payload, p.payload_len);
		buf_release(&b);
	}
	free(payload);
}

/* MQTT 5: an empty topic is accepted only together with a topic alias. */
static void test_publish_alias_empty_topic(void **state)
{
	static const uint8_t alias[] = { 0x23, 0, 9 };
	struct mqtt_publish p = { .qos = 1, .packet_id = 3, .topic = { (const uint8_t *)"", 0 },
				  .props = P(alias), .payload = (const uint8_t *)"x",
				  .payload_len = 1 };
	struct buf b;
	struct mqtt_packet pkt;
	(void)state;
	buf_init(&b);
	assert_int_equal(mqtt_encode_publish(&b, 5, &p), MQTT_OK);
	assert_int_equal(reparse(&b, 5, &pkt), MQTT_OK);
	assert_int_equal(pkt.u.publish.topic.len, 0);
	props_eq(pkt.u.publish.props, p.props);
	buf_release(&b);
}

static void test_ack_roundtrip(void **state)
{
	static const uint8_t types[] = { MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP };
	(void)state;
	for (uint8_t level = 4; level <= 5; level++)
	for (size_t t = 0; t < 4; t++)
	for (int variant = 0; variant < 3; variant++) {
		bool rel = types[t] == MQTT_PUBREL || types[t] == MQTT_PUBCOMP;
		struct mqtt_ack a = { .packet_id = 0xbeef };
		size_t want = 4; /* 3.1.1, and MQTT 5 with reason 0 and no props */
		if (level == 5 && variant >= 1) {
			a.reason = rel ? 0x92 : 0x10;
			want = 5;
		}
		if (level == 5 && variant == 2) {
			a.props = P(reason_props);
			want = 6 + sizeof reason_props;
		}
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_ack(&b, level, types[t], &a), MQTT_OK);
		assert_int_equal(buf_used(&b), want);
		assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, types[t]);
		assert_int_equal(pkt.u.ack.packet_id, 0xbeef);
		assert_int_equal(pkt.u.ack.reason, a.reason);
		props_eq(pkt.u.ack.props, a.props);
		buf_release(&b);
	}
}

static void test_unsuback_level4_roundtrip(void **state)
{
	struct mqtt_ack a = { .packet_id = 77 };
	struct buf b;
	struct mqtt_packet pkt;
	(void)state;
	buf_init(&b);
	assert_int_equal(mqtt_encode_ack(&b, 4, MQTT_UNSUBACK, &a), MQTT_OK);
	assert_int_equal(reparse(&b, 4, &pkt), MQTT_OK);
	assert_int_equal(pkt.type, MQTT_UNSUBACK);
	assert_int_equal(pkt.u.ack.packet_id, 77);
	/* level 5 UNSUBACK carries reason codes: not an ack */
	assert_int_equal(mqtt_encode_ack(&b, 5, MQTT_UNSUBACK, &a), MQTT_ERR_PROTOCOL);
	buf_release(&b);
}

static void test_subscribe_roundtrip(void **state)
{
	const struct mqtt_str filters[] = { S("a/b"), S("sensors/+/temp"), S("#"),
					    S("$SYS/+/x/#"), S("$share/g/a/#") };
	static const uint8_t opts4[] = { 0, 1, 2, 1, 0 };
	static const uint8_t opts5[] = { 0x00, 0x05, 0x2a, 0x1d, 0x01 };
	(void)state;
	for (uint8_t level = 4; level <= 5; level++)
	for (uint8_t type = MQTT_SUBSCRIBE; type <= MQTT_UNSUBSCRIBE; type += 2) {
		const uint8_t *opts = level == 5 ? opts5 : opts4;
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_subscribe(&b, level, type, 42, filters, opts, 5),
				 MQTT_OK);
		assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, type);
		assert_int_equal(pkt.u.sub.packet_id, 42);
		assert_int_equal(pkt.u.sub.count, 5);
		assert_int_equal(pkt.u.sub.with_options, type == MQTT_SUBSCRIBE);

		struct mqtt_topic_iter it;
		struct mqtt_str f;
		uint8_t o = 0xff;
		unsigned n = 0;
		mqtt_topics_begin(&pkt.u.sub, &it);
		while (mqtt_topics_next(&it, &f, &o)) {
			assert_true(n < 5);
			str_eq(f, filters[n]);
			assert_int_equal(o, type == MQTT_SUBSCRIBE ? opts[n] : 0);
			n++;
		}
		assert_int_equal(n, 5);
		/* exhausted iterators stay exhausted; options may be NULL */
		assert_false(mqtt_topics_next(&it, &f, NULL));
		buf_release(&b);
	}
}

static void test_suback_roundtrip(void **state)
{
	static const uint8_t codes4[] = { 0, 1, 2, 0x80 };
	static const uint8_t codes5[] = { 0, 2, 0x87, 0xa2 };
	static const uint8_t ucodes5[] = { 0, 0x11, 0x8f };
	(void)state;
	struct {
		uint8_t level, type;
		const uint8_t *codes;
		uint32_t n;
	} cases[] = {
		{ 4, MQTT_SUBACK, codes4, 4 },
		{ 5, MQTT_SUBACK, codes5, 4 },
		{ 5, MQTT_UNSUBACK, ucodes5, 3 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mqtt_suback s = { .packet_id = 9, .codes = cases[i].codes,
					 .count = cases[i].n };
		if (cases[i].level == 5)
			s.props = P(reason_props);
		struct buf b;
		struct mqtt_packet pkt;
		buf_init(&b);
		assert_int_equal(mqtt_encode_suback(&b, cases[i].level, cases[i].type, &s), MQTT_OK);
		assert_int_equal(reparse(&b, cases[i].level, &pkt), MQTT_OK);
		assert_int_equal(pkt.type, cases[i].type);
		assert_int_equal(pkt.u.suback.packet_id, 9);
		assert_int_equal(pkt.u.suback.count, s.count);
		assert_memory_equal(pkt.u.suback.codes, s.codes, s.count);
		props_eq(pkt.u.suback.props, s.props);
		buf_release(&b);
	}
}

static void test_simple_roundtrip(void **state)
{
	static const uint8_t dprops[] = { 0x11, 0, 0, 0, 0, 0x1c, 0, 1, 'h' };
	(void)state;
	for (uint8_t level = 4; level <= 5; level++) {
		uint8_t types[] = { MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT, MQTT_AUTH };
		for (size_t t = 0; t < (level == 5 ? 4u : 3u); t++) {
			struct buf b;
			struct mqtt_packet pkt;
			buf_init(&b);
			assert_int_equal(mqtt_encode_simple(&b, level, types[t]), MQTT_OK);
			assert_int_equal(buf_used(&b), 2);
			assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
			assert_int_equal(pkt.type, types[t]);
			buf_release(&b);
		}
		for (int variant = 0; variant < 3; variant++) {
			struct mqtt_disconnect d = { 0 };
			if (level == 5 && variant >= 1)
				d.reason = 0x04;
			if (level == 5 && variant == 2)
				d.props = P(dprops);
			struct buf b;
			struct mqtt_packet pkt;
			buf_init(&b);
			assert_int_equal(mqtt_encode_disconnect(&b, level, &d), MQTT_OK);
			assert_int_equal(reparse(&b, level, &pkt), MQTT_OK);
			assert_int_equal(pkt.type, MQTT_DISCONNECT);
			assert_int_equal(pkt.u.disconnect.reason, d.reason);
			props_eq(pkt.u.disconnect.props, d.props);
			buf_release(&b);
		}
	}
}

/* Encoders append: two packets in one buffer frame one after the other. */
static void test_encode_appends(void **state)
{
	struct mqtt_publish p = { .qos = 1, .packet_id = 5, .topic = S("t"),
				  .payload = (const uint8_t *)"hi", .payload_len = 2 };
	struct buf b;
	struct mqtt_frame f;
	(void)state;
	buf_init(&b);
	assert_int_equal(mqtt_encode_publish(&b, 4, &p), MQTT_OK);
	assert_int_equal(mqtt_encode_simple(&b, 4, MQTT_PINGREQ), MQTT_OK);
	int n = mqtt_frame_parse(buf_head(&b), buf_used(&b), 100, &f);
	assert_int_equal(n, 9);
	assert_int_equal(f.type, MQTT_PUBLISH);
	assert_int_equal(f.flags, 0x2);
	buf_consume(&b, (size_t)n);
	assert_int_equal(mqtt_frame_parse(buf_head(&b), buf_used(&b), 100, &f), 2);
	assert_int_equal(f.type, MQTT_PINGREQ);
	buf_release(&b);
}

/* Exact bytes for the forms the spec pins down. */
static void test_encode_bytes(void **state)
{
	uint8_t want[64];
	struct buf b;
	struct mqtt_ack a = { .packet_id = 0x1234 };
	struct mqtt_connack ca = { .session_present = true, .rc = 5 };
	struct mqtt_disconnect d = { .reason = 0x8e };
	const struct mqtt_str f = S("a/+");
	const uint8_t o = 1;
	(void)state;
	buf_init(&b);
	assert_int_equal(mqtt_encode_connack(&b, 4, &ca), MQTT_OK);
	assert_int_equal(mqtt_encode_ack(&b, 5, MQTT_PUBREL, &a), MQTT_OK);
	assert_int_equal(mqtt_encode_disconnect(&b, 5, &d), MQTT_OK);
	assert_int_equal(mqtt_encode_disconnect(&b, 4, &d), MQTT_OK);
	assert_int_equal(mqtt_encode_subscribe(&b, 4, MQTT_SUBSCRIBE, 7, &f, &o, 1), MQTT_OK);
	assert_int_equal(mqtt_encode_subscribe(&b, 5, MQTT_UNSUBSCRIBE, 7, &f, NULL, 1), MQTT_OK);
	size_t n = unhex("20 02 01 05  62 02 1234  E0 01 8E  E0 00  82 08 0007 0003 612F2B 01"
			 "  A2 08 0007 00 0003 612F2B", want, sizeof want);
	assert_int_equal(buf_used(&b), n);
	assert_memory_equal(buf_head(&b), want, n);
	assert_int_equal(mqtt_encode_simple(&b, 4, MQTT_PUBLISH), MQTT_ERR_PROTOCOL);
	assert_int_equal(mqtt_encode_simple(&b, 4, MQTT_AUTH), MQTT_ERR_PROTOCOL);
	assert_int_equal(mqtt_encode_suback(&b, 4, MQTT_UNSUBACK,
					    &(struct mqtt_suback){ .packet_id = 1 }),
			 MQTT_ERR_PROTOCOL);
	assert_int_equal(buf_used(&b), n);
	buf_release(&b);
}

static void test_publish_size(void **state)
{
	/* remaining lengths on both sides of each varint size step */
	static const size_t rems[] = { 127, 128, 16383, 16384, 2097151, 2097152 };
	(void)state;
	for (size_t i = 0; i < sizeof rems / sizeof rems[0]; i++) {
		for (uint8_t level = 4; level <= 5; level++) {
			size_t fixed = 2 + 3 + 2 + (level == 5 ? 1 : 0);
			size_t n = mqtt_publish_size(level, 3, rems[i] - fixed, 1);
			size_t hdr = rems[i] < 128 ? 2 : rems[i] < 16384 ? 3 : rems[i] < 2097152 ? 4 : 5;
			assert_int_equal(n, hdr + rems[i]);
		}
	}
	assert_int_equal(mqtt_publish_size(4, 1, 0, 0), 5);
}

#define MAX MQTT_MAX_REMAINING

static void test_frame(void **state)
{
	uint8_t b[16] = { 0 };
	struct mqtt_frame f;
	(void)state;
	assert_int_equal(mqtt_frame_parse(b, 0, MAX, &f), 0);
	size_t n = unhex("30 80 80 80", b, sizeof b);
	for (size_t i = 1; i <= n; i++)
		assert_int_equal(mqtt_frame_parse(b, i, MAX, &f), 0);
	n = unhex("30 FF FF FF FF 01", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, MAX, &f), MQTT_ERR_MALFORMED);
	n = unhex("30 FF FF FF FF", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, MAX, &f), MQTT_ERR_MALFORMED);
	n = unhex("C0 80 00", b, sizeof b); /* not the shortest form */
	assert_int_equal(mqtt_frame_parse(b, n, MAX, &f), MQTT_ERR_MALFORMED);
	n = unhex("00 00", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, 1, MAX, &f), MQTT_ERR_MALFORMED);
	/* the largest length parses; its body is simply not here yet */
	n = unhex("30 FF FF FF 7F", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, MAX, &f), 0);
	n = unhex("E0 00 C0", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, MAX, &f), 2);
	assert_int_equal(f.type, MQTT_DISCONNECT);
	assert_int_equal(f.body_len, 0);
}

/* The limit applies as soon as the length is known, before the body. */
static void test_max_remaining(void **state)
{
	uint8_t b[16];
	struct mqtt_frame f;
	(void)state;
	size_t n = unhex("30 FF 7F", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, 1000, &f), MQTT_ERR_TOO_LARGE);
	n = unhex("30 0A", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, 9, &f), MQTT_ERR_TOO_LARGE);
	assert_int_equal(mqtt_frame_parse(b, n, 10, &f), 0);
	n = unhex("30 07 0001 61 6869 6A6B", b, sizeof b);
	assert_int_equal(mqtt_frame_parse(b, n, 7, &f), 9);
	assert_int_equal(mqtt_frame_parse(b, n, 6, &f), MQTT_ERR_TOO_LARGE);
	assert_int_equal(mqtt_frame_parse(b, 2, 6, &f), MQTT_ERR_TOO_LARGE);
}

/* ---- tables: the fixed header is built by the runner from byte0 ------ */

struct pcase {
	uint8_t level;
	uint8_t byte0;
	int want;
	const char *body; /* hex */
	const char *what;
};

#define MQTT "0004 4D515454"
#define MQISDP "0006 4D5149736470"
#define TOPIC "0005 746F706963"
#define ID24 "0018 616161616161616161616161616161616161616161616161"

enum { OK = MQTT_OK, BAD = MQTT_ERR_MALFORMED, PROTO = MQTT_ERR_PROTOCOL,
       UTF8 = MQTT_ERR_UTF8, TOPC = MQTT_ERR_TOPIC, VERS = MQTT_ERR_PROTO_VERSION };

static const struct pcase cases[] = {
	/* CONNECT */
	{ 4, 0x10, OK, MQTT " 04 02 003C 0001 61", "minimal 3.1.1" },
	{ 4, 0x10, OK, MQTT " 04 02 003C 0000", "empty client id at 4" },
	{ 5, 0x10, OK, MQTT " 05 02 003C 00 0000", "empty client id at 5" },
	{ 3, 0x10, OK, MQISDP " 03 02 003C 0001 61", "minimal 3.1" },
	{ 3, 0x14, OK, MQISDP " 03 03 003C 0001 61", "3.1 has no reserved bits" },
	{ 5, 0x10, OK, MQTT " 05 42 003C 00 0001 61 0002 7077", "password alone at 5" },
	{ 4, 0x10, OK, MQTT " 04 C2 003C 0001 61 0001 75 0000", "empty password" },
	{ 4, 0x10, OK, MQTT " 04 36 003C 0001 61 0001 74 0000", "will qos 2 retain" },
	{ 5, 0x10, OK, MQTT " 05 06 003C 05 1100000078 0001 61 00 0001 74 0000", "5.0 will" },
	{ 5, 0x10, OK, MQTT " 05 02 003C 0A 150003616263 16000178 0001 61", "auth method+data" },
	{ 4, 0x11, BAD, MQTT " 04 02 003C 0001 61", "CONNECT header flags 1" },
	{ 4, 0x12, BAD, MQTT " 04 02 003C 0001 61", "CONNECT header flags 2" },
	{ 5, 0x18, BAD, MQTT " 05 02 003C 00 0001 61", "CONNECT header flags 8" },
	{ 4, 0x10, VERS, "0004 4D515455 04 02 003C 0001 61", "protocol name MQTU" },
	{ 4, 0x10, VERS, MQTT " 06 02 003C 0001 61", "level 6" },
	{ 4, 0x10, VERS, MQTT " 03 02 003C 0001 61", "MQTT with level 3" },
	{ 4, 0x10, VERS, MQISDP " 04 02 003C 0001 61", "MQIsdp with level 4" },
	{ 4, 0x10, BAD, "0004 4D51", "truncated protocol name" },
	{ 4, 0x10, BAD, MQTT, "no level" },
	{ 4, 0x10, BAD, MQTT " 04 02 00", "truncated keepalive" },
	{ 4, 0x10, BAD, MQTT " 04 03 003C 0001 61", "reserved connect flag" },
	{ 4, 0x10, BAD, MQTT " 04 1E 003C 0001 61 0001 74 0001 70", "will qos 3" },
	{ 4, 0x10, BAD, MQTT " 04 0A 003C 0001 61", "will qos without will" },
	{ 4, 0x10, BAD, MQTT " 04 22 003C 0001 61", "will retain without will" },
	{ 4, 0x10, BAD, MQTT " 04 42 003C 0001 61 0001 70", "password without username" },
	{ 3, 0x10, PROTO, MQISDP " 03 02 003C 0000", "3.1 empty client id" },
	{ 3, 0x10, PROTO, MQISDP " 03 02 003C " ID24, "3.1 client id of 24" },
	{ 4, 0x10, OK, MQTT " 04 02 003C " ID24, "3.1.1 client id of 24" },
	{ 4, 0x10, BAD, MQTT " 04 02 003C 0001 61 00", "trailing byte" },
	{ 4, 0x10, BAD, MQTT " 04 02 003C 0005 6161", "truncated client id" },
	{ 4, 0x10, BAD, MQTT " 04 06 003C 0001 61", "missing will topic" },
	{ 4, 0x10, BAD, MQTT " 04 06 003C 0001 61 0001 74", "missing will payload" },
	{ 4, 0x10, TOPC, MQTT " 04 06 003C 0001 61 0001 23 0000", "will topic #" },
	{ 4, 0x10, TOPC, MQTT " 04 06 003C 0001 61 0000 0000", "empty will topic" },
	{ 4, 0x10, UTF8, MQTT " 04 06 003C 0001 61 0002 EDA0 0000", "will topic bad UTF-8" },
	{ 4, 0x10, BAD, MQTT " 04 82 003C 0001 61", "missing username" },
	{ 4, 0x10, UTF8, MQTT " 04 82 003C 0001 61 0002 C0AF", "username overlong" },
	{ 4, 0x10, UTF8, MQTT " 04 02 003C 0002 6100", "client id U+0000" },
	{ 5, 0x10, BAD, MQTT " 05 02 003C", "missing property length" },
	{ 5, 0x10, BAD, MQTT " 05 02 003C 09 1100000001 0001 61", "props past end" },
	{ 5, 0x10, PROTO, MQTT " 05 02 003C 04 16000178 0001 61", "auth data, no method" },
	{ 5, 0x10, BAD, MQTT " 05 02 003C 05 1800000001 0001 61", "will delay in CONNECT" },
	{ 5, 0x10, BAD, MQTT " 05 06 003C 00 0001 61 05 1100000001 0001 74 0000",
	  "session expiry in will props" },
	{ 5, 0x10, PROTO, MQTT " 05 02 003C 03 210000 0001 61", "receive maximum 0" },
	{ 5, 0x10, PROTO, MQTT " 05 02 003C 02 1702 0001 61", "request problem info 2" },
	{ 5, 0x10, PROTO, MQTT " 05 02 003C 0A 1100000001 1100000002 0001 61",
	  "session expiry twice" },
	/* CONNACK */
	{ 4, 0x20, OK, "01 00", "session present" },
	{ 4, 0x20, BAD, "02 00", "reserved ack flag" },
	{ 4, 0x20, PROTO, "00 06", "3.1.1 return code 6" },
	{ 4, 0x20, BAD, "00", "truncated" },
	{ 4, 0x20, BAD, "00 00 00", "trailing byte" },
	{ 4, 0x21, BAD, "00 00", "CONNACK header flags" },
	{ 5, 0x20, BAD, "00 00", "no property length" },
	{ 5, 0x20, OK, "00 87 00", "not authorized" },
	{ 5, 0x20, PROTO, "00 01 00", "5.0 reason code 1" },
	{ 5, 0x20, PROTO, "00 00 02 2402", "maximum qos 2" },
	{ 5, 0x20, OK, "00 00 05 2401 130005", "max qos, server keepalive" },
	/* PUBLISH */
	{ 4, 0x30, OK, TOPIC " 7061796C6F6164", "qos 0" },
	{ 4, 0x31, OK, TOPIC, "retained, empty payload" },
	{ 4, 0x3D, OK, TOPIC " 0001 70", "qos 2 dup retain" },
	{ 4, 0x30, OK, "0005 41F0AA9B94", "U+2A6D4 in topic" },
	{ 4, 0x36, BAD, TOPIC " 0001 70", "qos 3" },
	{ 5, 0x36, BAD, TOPIC " 0001 00 70", "qos 3 at 5" },
	{ 4, 0x38, PROTO, TOPIC " 70", "dup on qos 0" },
	{ 5, 0x38, BAD, TOPIC " 00 70", "dup on qos 0 at 5 [MQTT-3.3.1-2], 2.1.3" },
	{ 4, 0x30, TOPC, "0005 2B6F706963", "+ in topic" },
	{ 4, 0x30, TOPC, "0005 236F706963", "# in topic" },
	{ 4, 0x30, TOPC, "0005 612F2B2F62", "a/+/b" },
	{ 4, 0x30, TOPC, "0000 70", "empty topic" },
	{ 5, 0x30, TOPC, "0000 00 70", "empty topic, no alias" },
	{ 5, 0x30, OK, "0000 03 230001 70", "empty topic with alias" },
	{ 4, 0x30, UTF8, "0002 C0AF", "overlong 2 bytes" },
	{ 4, 0x30, UTF8, "0003 E080AF", "overlong 3 bytes" },
	{ 4, 0x30, UTF8, "0004 F08082AF", "overlong 4 bytes" },
	{ 4, 0x30, UTF8, "0003 EDA080", "surrogate D800" },
	{ 4, 0x30, UTF8, "0003 EDBFBF", "surrogate DFFF" },
	{ 4, 0x30, UTF8, "0004 F4908080", "above U+10FFFF" },
	{ 4, 0x30, UTF8, "0002 6100", "U+0000" },
	{ 4, 0x30, UTF8, "0002 61FF", "byte FF" },
	{ 4, 0x30, UTF8, "0002 E282", "truncated sequence" },
	{ 4, 0x30, UTF8, "0001 80", "lone continuation" },
	{ 4, 0x32, BAD, TOPIC " 0000 70", "qos 1 packet id 0" },
	{ 4, 0x34, BAD, TOPIC " 0000 70", "qos 2 packet id 0" },
	{ 5, 0x32, PROTO, TOPIC " 0000 00 70", "qos 1 packet id 0 at 5 [MQTT-2.2.1-3]" },
	{ 5, 0x34, PROTO, TOPIC " 0000 00 70", "qos 2 packet id 0 at 5" },
	{ 5, 0x32, BAD, TOPIC " 00", "half packet id at 5" },
	{ 4, 0x30, BAD, "0005 7461", "topic past end" },
	{ 4, 0x30, BAD, "00", "half topic length" },
	{ 4, 0x32, BAD, TOPIC, "no packet id" },
	{ 4, 0x32, BAD, TOPIC " 00", "half packet id" },
	{ 5, 0x30, BAD, TOPIC, "no property length" },
	{ 5, 0x30, BAD, TOPIC " 05 0200", "props past end" },
	{ 5, 0x30, OK, TOPIC " 02 0100 70", "payload format 0" },
	{ 5, 0x30, PROTO, TOPIC " 02 0102", "payload format 2" },
	{ 5, 0x30, PROTO, TOPIC " 04 0101 0101", "payload format twice" },
	{ 5, 0x30, BAD, TOPIC " 01 01", "payload format value missing" },
	{ 5, 0x30, BAD, TOPIC " 02 0001", "property 0" },
	{ 5, 0x30, BAD, TOPIC " 02 0401", "unknown property 4" },
	{ 5, 0x30, BAD, TOPIC " 03 800101", "two-byte property id" },
	{ 5, 0x30, BAD, TOPIC " 05 1100000001", "session expiry in PUBLISH" },
	{ 5, 0x30, BAD, TOPIC " 04 02000000", "truncated expiry" },
	{ 5, 0x30, PROTO, TOPIC " 03 230000", "topic alias 0" },
	{ 5, 0x30, PROTO, TOPIC " 04 08000123", "response topic #" },
	{ 5, 0x30, PROTO, TOPIC " 02 0B00", "subscription id 0" },
	{ 5, 0x30, BAD, TOPIC " 03 0B8000", "subscription id not shortest" },
	{ 5, 0x30, BAD, TOPIC " 06 0B8080808001", "subscription id 5 bytes" },
	{ 5, 0x30, OK, TOPIC " 05 0B01 0BFF7F", "subscription ids repeat" },
	{ 5, 0x30, BAD, TOPIC " 04 26000170", "user property without value" },
	{ 5, 0x30, OK, TOPIC " 0E 26000170000171 26000170000171", "user property twice" },
	{ 5, 0x30, UTF8, TOPIC " 04 030001FF", "content type bad UTF-8" },
	/* PUBACK PUBREC PUBREL PUBCOMP */
	{ 4, 0x40, OK, "0001", "puback" },
	{ 4, 0x40, BAD, "0000", "puback id 0" },
	{ 4, 0x50, BAD, "0000", "pubrec id 0" },
	{ 4, 0x62, BAD, "0000", "pubrel id 0" },
	{ 4, 0x70, BAD, "0000", "pubcomp id 0" },
	{ 5, 0x40, PROTO, "0000 00", "puback id 0 at 5" },
	{ 5, 0x50, PROTO, "0000", "pubrec id 0 at 5" },
	{ 5, 0x62, PROTO, "0000 00", "pubrel id 0 at 5" },
	{ 5, 0x70, PROTO, "0000", "pubcomp id 0 at 5" },
	{ 5, 0x40, BAD, "00", "half packet id in PUBACK at 5" },
	{ 4, 0x40, BAD, "0001 00", "3.1.1 ack with a reason" },
	{ 4, 0x40, BAD, "01", "truncated id" },
	{ 4, 0x40, BAD, "", "empty ack" },
	{ 4, 0x41, BAD, "0001", "PUBACK flags 1" },
	{ 4, 0x58, BAD, "0001", "PUBREC flags 8" },
	{ 4, 0x60, BAD, "0001", "PUBREL flags 0" },
	{ 4, 0x6A, BAD, "0001", "PUBREL flags A" },
	{ 5, 0x72, BAD, "0001", "PUBCOMP flags 2" },
	{ 3, 0x6A, OK, "0001", "3.1 PUBREL retry with DUP" },
	{ 5, 0x40, OK, "0001", "5.0 ack, reason omitted" },
	{ 5, 0x50, OK, "0001 10", "5.0 ack, reason only" },
	{ 5, 0x40, OK, "0001 00 04 1F000170", "reason string" },
	{ 5, 0x40, PROTO, "0001 FF 00", "unknown reason" },
	{ 5, 0x62, PROTO, "0001 10", "PUBACK code in PUBREL" },
	{ 5, 0x70, OK, "0001 92", "packet id not found" },
	{ 5, 0x40, BAD, "0001 00 01", "props past end" },
	{ 5, 0x40, BAD, "0001 00 00 00", "trailing byte" },
	{ 5, 0x40, BAD, "0001 00 02 0100", "payload format in PUBACK" },
	{ 5, 0x40, PROTO, "0001 00 08 1F000170 1F000170", "reason string twice" },
	/* SUBSCRIBE */
	{ 4, 0x82, OK, "1234 0001 70 00", "one filter" },
	{ 4, 0x82, OK, "1234 0001 70 02 0003 612F23 01 0003 2B2F23 00 0001 2B 01", "several" },
	{ 4, 0x80, BAD, "1234 0001 70 00", "SUBSCRIBE flags 0" },
	{ 4, 0x83, BAD, "1234 0001 70 00", "SUBSCRIBE flags 3" },
	{ 4, 0x8A, BAD, "1234 0001 70 00", "SUBSCRIBE flags A" },
	{ 5, 0x86, BAD, "1234 00 0001 70 00", "SUBSCRIBE flags 6" },
	{ 3, 0x8A, OK, "1234 0001 70 01", "3.1 SUBSCRIBE retry with DUP" },
	{ 4, 0x82, BAD, "1234", "no filters" },
	{ 5, 0x82, BAD, "1234 00", "no filters at 5" },
	{ 4, 0x82, BAD, "12", "truncated id" },
	{ 4, 0x82, BAD, "0000 0001 70 00", "packet id 0" },
	{ 5, 0x82, PROTO, "0000 00 0001 70 00", "packet id 0 at 5" },
	{ 4, 0x82, BAD, "1234 0001 70 03", "qos 3" },
	{ 4, 0x82, BAD, "1234 0001 70 04", "reserved option bit at 4" },
	{ 4, 0x82, BAD, "1234 0001 70 80", "option bit 7 at 4" },
	{ 5, 0x82, OK, "1234 00 0001 70 2E", "every 5.0 option" },
	{ 5, 0x82, BAD, "1234 00 0001 70 30", "retain handling 3" },
	{ 5, 0x82, BAD, "1234 00 0001 70 40", "option bit 6" },
	{ 5, 0x82, BAD, "1234 00 0001 70 83", "option bit 7, qos 3" },
	{ 4, 0x82, TOPC, "1234 0005 612F232F62 00", "a/#/b" },
	{ 4, 0x82, TOPC, "1234 0002 6123 00", "a#" },
	{ 4, 0x82, TOPC, "1234 0004 612B2F62 00", "a+/b" },
	{ 4, 0x82, TOPC, "1234 0002 2B61 00", "+a" },
	{ 4, 0x82, TOPC, "1234 0001 70 00 0000 00", "empty second filter" },
	{ 4, 0x82, UTF8, "1234 0002 C0AF 00", "filter overlong" },
	{ 4, 0x82, BAD, "1234 0001 70", "options byte missing" },
	{ 4, 0x82, BAD, "1234 0001 70 00 00", "trailing byte" },
	{ 4, 0x82, BAD, "1234 0005 70", "filter past end" },
	{ 4, 0x82, OK, "1234 0009 2473686172652F702F 00", "$share/p/ at 4 is plain" },
	{ 5, 0x82, PROTO, "1234 00 0009 2473686172652F702F 00", "$share/p/" },
	{ 5, 0x82, PROTO, "1234 00 0008 2473686172652F70 00", "$share/p" },
	{ 5, 0x82, PROTO, "1234 00 000A 2473686172652F2B2F61 00", "$share/+/a" },
	{ 5, 0x82, PROTO, "1234 00 000A 2473686172652F672F61 04", "shared with no-local" },
	{ 5, 0x82, OK, "1234 00 000A 2473686172652F672F61 01", "$share/g/a" },
	{ 5, 0x82, OK, "1234 02 0B01 0001 70 00", "subscription id" },
	{ 5, 0x82, PROTO, "1234 04 0B01 0B02 0001 70 00", "two subscription ids" },
	{ 5, 0x82, BAD, "1234 03 230001 0001 70 00", "topic alias in SUBSCRIBE" },
	/* UNSUBSCRIBE */
	{ 4, 0xA2, OK, "1234 0001 70", "one filter" },
	{ 5, 0xA2, OK, "1234 00 0001 70 0003 612F23", "two filters at 5" },
	{ 4, 0xA2, BAD, "1234", "no filters" },
	{ 4, 0xA2, BAD, "0000 0001 70", "packet id 0" },
	{ 5, 0xA2, PROTO, "0000 00 0001 70", "packet id 0 at 5" },
	{ 4, 0xA2, TOPC, "1234 0001 71 0000", "empty second filter" },
	{ 4, 0xA2, TOPC, "1234 0002 2361", "#a" },
	{ 4, 0xA2, BAD, "1234 0001", "truncated filter" },
	{ 4, 0xA0, BAD, "1234 0001 70", "UNSUBSCRIBE flags 0" },
	/* SUBACK, UNSUBACK */
	{ 4, 0x90, OK, "0001 00 01 02 80", "3.1.1 codes" },
	{ 4, 0x90, BAD, "0001", "no codes" },
	{ 4, 0x90, PROTO, "0001 03", "code 3" },
	{ 4, 0x90, BAD, "0000 00", "packet id 0" },
	{ 5, 0x90, OK, "0001 00 00 A2", "5.0 codes" },
	{ 5, 0x90, PROTO, "0001 00 11", "UNSUBACK code in SUBACK" },
	{ 5, 0x91, BAD, "0001 00 00", "SUBACK flags 1" },
	{ 4, 0xB0, OK, "0001", "3.1.1 UNSUBACK" },
	{ 4, 0xB0, BAD, "0001 00", "3.1.1 UNSUBACK with a code" },
	{ 5, 0xB0, OK, "0001 00 11 00", "5.0 UNSUBACK" },
	{ 5, 0xB0, BAD, "0001 00", "5.0 UNSUBACK without codes" },
	{ 5, 0xB0, PROTO, "0001 00 01", "granted qos 1 in UNSUBACK" },
	/* PINGREQ, PINGRESP, DISCONNECT, AUTH */
	{ 4, 0xC0, OK, "", "pingreq" },
	{ 4, 0xC0, BAD, "00", "pingreq with a body" },
	{ 4, 0xC1, BAD, "", "PINGREQ flags 1" },
	{ 5, 0xD0, OK, "", "pingresp" },
	{ 5, 0xD2, BAD, "", "PINGRESP flags 2" },
	{ 4, 0xE0, OK, "", "disconnect" },
	{ 4, 0xE0, BAD, "00", "3.1.1 disconnect with a body" },
	{ 4, 0xE2, BAD, "", "DISCONNECT flags 2" },
	{ 5, 0xE0, OK, "04", "with will" },
	{ 5, 0xE0, PROTO, "05", "reason 5" },
	{ 5, 0xE0, OK, "00 00", "empty props" },
	{ 5, 0xE0, OK, "00 05 1100000000", "session expiry" },
	{ 5, 0xE0, BAD, "00 01 11", "truncated session expiry" },
	{ 5, 0xE0, BAD, "00 02 0100", "payload format in DISCONNECT" },
	{ 5, 0xE0, BAD, "00 00 00", "trailing byte" },
	{ 4, 0xF0, BAD, "", "AUTH before 5" },
	{ 5, 0xF0, OK, "", "auth" },
	{ 5, 0xF0, OK, "18 04 15000161", "continue authentication" },
	{ 5, 0xF0, PROTO, "05", "auth reason 5" },
	{ 5, 0xF1, BAD, "", "AUTH flags 1" },
	{ 5, 0xF0, BAD, "18 05 1100000000", "session expiry in AUTH" },
};

static void test_cases(void **state)
{
	uint8_t pkt_bytes[512];
	unsigned failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct pcase *c = &cases[i];
		uint8_t body[500];
		size_t n = unhex(c->body, body, sizeof body);
		assert_true(n < 128);
		pkt_bytes[0] = c->byte0;
		pkt_bytes[1] = (uint8_t)n;
		memcpy(pkt_bytes + 2, body, n);

		struct mqtt_packet pkt;
		int rc = parse_whole(pkt_bytes, n + 2, c->level, &pkt);
		if (rc != c->want) {
			print_error("case %zu \"%s\" (level %u, %02X %s): got %s, want %s\n", i,
				    c->what, c->level, c->byte0, c->body, mqtt_err_str(rc),
				    mqtt_err_str(c->want));
			failed++;
		}
		assert_int_equal(pkt.type, c->byte0 >> 4);
	}
	assert_int_equal(failed, 0);
}

/* DUP on QoS 0 is reported apart, with the packet decoded. */
static void test_dup_qos0_decoded(void **state)
{
	uint8_t b[32];
	struct mqtt_packet pkt;
	(void)state;
	size_t n = unhex("38 09 " TOPIC " 7071", b, sizeof b);
	assert_int_equal(parse_whole(b, n, 4, &pkt), MQTT_ERR_PROTOCOL);
	str_eq(pkt.u.publish.topic, S("topic"));
	assert_true(pkt.u.publish.dup);
	assert_int_equal(pkt.u.publish.payload_len, 2);
	assert_memory_equal(pkt.u.publish.payload, "pq", 2);
}

/* mqtt_decode_refusing: at level 5 a refused type is a protocol error
 * before anything else is looked at; other types, other levels and an empty
 * set decode exactly as mqtt_decode() does. */
static void test_decode_refusing(void **state)
{
	static const struct {
		const char *hex;
		int plain4, plain5; /* mqtt_decode() at level 4 and 5 */
	} pkts[] = {
		{ "20 03 00 00 00", BAD, OK },     /* CONNACK, well formed at 5 */
		{ "20 00", BAD, BAD },             /* CONNACK, short */
		{ "21 03 00 00 00", BAD, BAD },    /* CONNACK, header flags */
		{ "90 04 0001 00 00", OK, OK },    /* SUBACK */
		{ "91 04 0001 00 00", BAD, BAD },  /* SUBACK, header flags */
		{ "B0 04 0001 00 00", BAD, OK },   /* UNSUBACK */
		{ "B0 02 0000", BAD, PROTO },      /* UNSUBACK, id 0 */
		{ "D0 00", OK, OK },               /* PINGRESP */
		{ "D8 00", BAD, BAD },             /* PINGRESP, header flags */
		{ "D0 01 00", BAD, BAD },          /* PINGRESP, long */
		{ "F0 00", BAD, OK },              /* AUTH */
		{ "F1 00", BAD, BAD },             /* AUTH, header flags */
	};
	const unsigned refused = MQTT_SERVER_ONLY_TYPES | MQTT_TYPE_BIT(MQTT_AUTH);
	(void)state;
	for (size_t i = 0; i < sizeof pkts / sizeof pkts[0]; i++) {
		uint8_t b[16];
		struct mqtt_frame f;
		struct mqtt_packet pkt;
		size_t n = unhex(pkts[i].hex, b, sizeof b);
		assert_int_equal(mqtt_frame_parse(b, n, MQTT_MAX_REMAINING, &f), (int)n);
		assert_int_equal(mqtt_decode_refusing(&f, 5, refused, &pkt), PROTO);
		assert_int_equal(pkt.type, b[0] >> 4);
		assert_int_equal(mqtt_decode_refusing(&f, 4, refused, &pkt), pkts[i].plain4);
		assert_int_equal(mqtt_decode(&f, 4, &pkt), pkts[i].plain4);
		assert_int_equal(mqtt_decode_refusing(&f, 5, 0, &pkt), pkts[i].plain5);
		assert_int_equal(mqtt_decode(&f, 5, &pkt), pkts[i].plain5);
	}

	/* types a server accepts are not touched by the set */
	static const char *const client_pkts[] = {
		"30 06 0001 74 00 6869", "40 02 0001", "62 02 0001", "82 07 0001 00 0001 74 00",
		"A2 06 0001 00 0001 74", "C0 00", "E0 00", "C1 00", "40 02 0000",
	};
	for (size_t i = 0; i < sizeof client_pkts / sizeof client_pkts[0]; i++) {
		uint8_t b[32];
		struct mqtt_frame f;
		struct mqtt_packet p1, p2;
		size_t n = unhex(client_pkts[i], b, sizeof b);
		assert_int_equal(mqtt_frame_parse(b, n, MQTT_MAX_REMAINING, &f), (int)n);
		assert_int_equal(mqtt_decode_refusing(&f, 5, refused, &p1), mqtt_decode(&f, 5, &p2));
		assert_int_equal(p1.type, p2.type);
	}
	assert_int_equal(MQTT_SERVER_ONLY_TYPES,
			 1u << 2 | 1u << 9 | 1u << 11 | 1u << 13);
}

static void test_publish_size_props(void **state)
{
	static const size_t plens[] = { 0, 1, 126, 127, 128, 16383, 16384 };
	uint8_t *props = calloc(1, 16384);
	(void)state;
	assert_non_null(props);
	/* the encoder copies the list as given: any bytes of that length do
	 * for sizes (the list is not decoded here) */
	for (size_t i = 0; i < 16384; i++)
		props[i] = (uint8_t)(i * 13);
	for (size_t i = 0; i < sizeof plens / sizeof plens[0]; i++) {
		size_t len = plens[i];
		for (uint8_t level = 4; level <= 5; level++)
		for (uint8_t qos = 0; qos <= 1; qos++) {
			struct mqtt_publish p = { .qos = qos, .packet_id = qos, .topic = S("a/b"),
						  .props = { props, (uint32_t)len },
						  .payload = (const uint8_t *)"xyz", .payload_len = 3 };
			struct buf b;
			buf_init(&b);
			assert_int_equal(mqtt_encode_publish(&b, level, &p), MQTT_OK);
			assert_int_equal(buf_used(&b),
					 mqtt_publish_size_props(level, 3, len, 3, qos));
			if (len == 0)
				assert_int_equal(buf_used(&b), mqtt_publish_size(level, 3, 3, qos));
			/* the same list split between props and props_more */
			size_t cut = len / 3;
			p.props.len = (uint32_t)cut;
			p.props_more = (struct mqtt_props){ props + cut, (uint32_t)(len - cut) };
			struct buf b2;
			buf_init(&b2);
			assert_int_equal(mqtt_encode_publish(&b2, level, &p), MQTT_OK);
			assert_int_equal(buf_used(&b2), buf_used(&b));
			assert_memory_equal(buf_head(&b2), buf_head(&b), buf_used(&b));
			buf_release(&b2);
			buf_release(&b);
		}
	}
	free(props);
}

/* AUTH and level-5 SUBSCRIBE with properties: the exact bytes. */
static void test_encode_bytes5(void **state)
{
	static const uint8_t sid[] = { 0x0b, 0x80, 0x01 };
	static const uint8_t am[] = { 0x15, 0x00, 0x01, 'm' };
	uint8_t want[64];
	struct buf b;
	const struct mqtt_str f = S("a");
	const uint8_t o = 2;
	const struct mqtt_props pr = P(sid);
	(void)state;
	buf_init(&b);
	assert_int_equal(mqtt_encode_auth(&b, &(struct mqtt_disconnect){ 0 }), MQTT_OK);
	assert_int_equal(mqtt_encode_auth(&b, &(struct mqtt_disconnect){ .reason = 0x19 }),
			 MQTT_OK);
	assert_int_equal(mqtt_encode_auth(&b, &(struct mqtt_disconnect){ .reason = 0x18,
									 .props = P(am) }),
			 MQTT_OK);
	assert_int_equal(mqtt_encode_subscribe_props(&b, 5, MQTT_SUBSCRIBE, 2, &pr, &f, &o, 1),
			 MQTT_OK);
	assert_int_equal(mqtt_encode_disconnect(&b, 5, &(struct mqtt_disconnect){ .props = P(am) }),
			 MQTT_OK);
	size_t n = unhex("F0 00  F0 02 19 00  F0 06 18 04 15 0001 6D"
			 "  82 0A 0002 03 0B8001 0001 61 02  E0 06 00 04 15 0001 6D", want, sizeof want);
	assert_int_equal(buf_used(&b), n);
	assert_memory_equal(buf_head(&b), want, n);
	buf_release(&b);
}

static void test_connect_errors_fill(void **state)
{
	uint8_t b[64];
	struct mqtt_packet pkt;
	(void)state;
	size_t n = unhex("10 0D " MQTT " 06 02 003C 0001 61", b, sizeof b);
	assert_int_equal(parse_whole(b, n, 4, &pkt), MQTT_ERR_PROTO_VERSION);
	assert_int_equal(pkt.u.connect.level, 6);
	n = unhex("10 0F " MQISDP " 02 02 003C 0001 61", b, sizeof b);
	assert_int_equal(parse_whole(b, n, 4, &pkt), MQTT_ERR_PROTO_VERSION);
	assert_int_equal(pkt.u.connect.level, 2);
	/* 3.1 id out of range: decoded so the caller can answer CONNACK 2 */
	n = unhex("10 0E " MQISDP " 03 02 003C 0000", b, sizeof b);
	assert_int_equal(parse_whole(b, n, 4, &pkt), MQTT_ERR_PROTOCOL);
	assert_int_equal(pkt.u.connect.level, 3);
	assert_true(pkt.u.connect.clean);
	assert_int_equal(pkt.u.connect.keepalive, 60);
}

struct vcase {
	const char *hex;
	bool ok;
};

static void test_utf8(void **state)
{
	static const struct vcase v[] = {
		{ "", true }, { "61", true }, { "7E", true }, { "C2A0", true },
		{ "DFBF", true }, { "E0A080", true }, { "ED9FBF", true }, { "EE8080", true },
		{ "EFBFBF", true }, { "F0908080", true }, { "F48FBFBF", true },
		{ "EFBBBF 61", true },
		/* control characters: refused by kafkagate's choice (section 1.5.3, SHOULD NOT) */
		{ "01", false }, { "1F", false }, { "7F", false }, { "C280", false },
		{ "C29F", false }, { "6161616161616161 1F 61616161616161", false },
		{ "6161616161616161 7F 61616161616161", false },
		{ "00", false }, { "C080", false }, { "C1BF", false }, { "E09FBF", false },
		{ "EDA080", false }, { "EDBFBF", false }, { "F08FBFBF", false },
		{ "F4908080", false }, { "F5808080", false }, { "FF", false }, { "FE", false },
		{ "80", false }, { "BF", false }, { "E282", false }, { "E228A1", false },
		{ "C261", false }, { "F09080", false },
		/* long ASCII runs with the bad byte at each offset of the fast path */
		{ "61616161616161616161616161616161 C3A9", true },
		{ "616161616161616161616161616161 00", false },
		{ "6161616161616161 00 61616161616161", false },
		{ "61616161616161 00 6161616161616161", false },
		{ "6161616161616161 61616161616161 80", false },
		{ "6161616161616161 C3 6161616161616161", false },
	};
	uint8_t b[64];
	(void)state;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		size_t n = unhex(v[i].hex, b, sizeof b);
		if (mqtt_utf8_valid(b, n) != v[i].ok)
			fail_msg("utf8 case %zu (%s): want %d", i, v[i].hex, v[i].ok);
	}
}

static void test_topic_helpers(void **state)
{
	static const struct { const char *s; bool name, filter; } t[] = {
		{ "a", true, true }, { "a/b/c", true, true }, { "/", true, true },
		{ "//", true, true }, { "$SYS/x", true, true }, { "a b", true, true },
		{ "", false, false }, { "+", false, true }, { "#", false, true },
		{ "a/+", false, true }, { "+/+/#", false, true }, { "a/#", false, true },
		{ "/#", false, true }, { "a/#/b", false, false }, { "a#", false, false },
		{ "#/", false, false }, { "a+", false, false }, { "+a/b", false, false },
		{ "a/b+/c", false, false }, { "++", false, false }, { "##", false, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		const uint8_t *s = (const uint8_t *)t[i].s;
		size_t n = strlen(t[i].s);
		if (mqtt_topic_name_valid(s, n) != t[i].name ||
		    mqtt_topic_filter_valid(s, n) != t[i].filter)
			fail_msg("topic case \"%s\"", t[i].s);
	}
	assert_false(mqtt_topic_name_valid((const uint8_t *)"a\xed\xa0\x80", 4));
	assert_false(mqtt_topic_filter_valid((const uint8_t *)"a\0", 2));
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(mqtt_type_name(MQTT_PUBLISH), "PUBLISH");
	assert_string_equal(mqtt_type_name(MQTT_AUTH), "AUTH");
	assert_non_null(mqtt_type_name(0));
	assert_non_null(mqtt_type_name(200));
	assert_string_equal(mqtt_err_str(MQTT_ERR_TOPIC), "invalid topic");
	for (int e = MQTT_ERR_NOSPACE; e <= MQTT_OK; e++)
		assert_non_null(mqtt_err_str(e));
	assert_string_equal(mqtt_err_str(-99), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_roundtrip),
		cmocka_unit_test(test_connack_roundtrip),
		cmocka_unit_test(test_publish_roundtrip),
		cmocka_unit_test(test_publish_alias_empty_topic),
		cmocka_unit_test(test_ack_roundtrip),
		cmocka_unit_test(test_unsuback_level4_roundtrip),
		cmocka_unit_test(test_subscribe_roundtrip),
		cmocka_unit_test(test_suback_roundtrip),
		cmocka_unit_test(test_simple_roundtrip),
		cmocka_unit_test(test_encode_appends),
		cmocka_unit_test(test_encode_bytes),
		cmocka_unit_test(test_publish_size),
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_max_remaining),
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_dup_qos0_decoded),
		cmocka_unit_test(test_connect_errors_fill),
		cmocka_unit_test(test_decode_refusing),
		cmocka_unit_test(test_publish_size_props),
		cmocka_unit_test(test_encode_bytes5),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_topic_helpers),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
