/*
 * it_mqtt5_conf.c - MQTT 5.0 normative statements that no other test
 * checked (docs/conformance.md, "MQTT 5.0 normative statements"), each on
 * raw sockets with the packets written out here byte by byte: a second
 * CONNECT [MQTT-3.1.0-2], malformed level-5 CONNECTs closed without a
 * word [MQTT-3.1.2-3], Clean Start 1 discarding a session [MQTT-3.1.2-4],
 * retained and non-retained wills [MQTT-3.1.2-14] [MQTT-3.1.2-15], the
 * will's user properties in order [MQTT-3.1.3-10], nothing processed after
 * a refused CONNECT [MQTT-3.1.4-6], no Response Information
 * [MQTT-3.1.2-28], no reason strings when Request Problem Information is 0
 * [MQTT-3.1.2-29], U+FEFF kept in a topic [MQTT-1.5.4-3], and a shared
 * subscription's message refused by its member not sent to another
 * [MQTT-4.8.2-6], ill-formed UTF-8 in a User Property, Response Topic or
 * Content Type [MQTT-1.5.7-1] [MQTT-3.3.2-13] [MQTT-3.3.2-19], two copies
 * each with its own Subscription Identifier [MQTT-3.3.4-5], a QoS 1 id
 * reused after its PUBACK [MQTT-4.3.2-5], and a shared member's granted
 * QoS [MQTT-4.8.2-3].
 *
 *   make build/kafkagate build/tests/it_mqtt5_conf
 *   KG_BIN=build/kafkagate build/tests/it_mqtt5_conf      # ~5 s
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"
#include "rawmqtt.h"

#define WAIT_MS 5000
#define QUIET_MS 500

static struct gw g;

static int group_setup(void **state)
{
	(void)state;
	return gw_start(&g, NULL);
}

static int group_teardown(void **state)
{
	(void)state;
	gw_stop(&g);
	return 0;
}

/* ---- building level-5 packets ------------------------------------------ */

struct wb {
	uint8_t b[2048];
	size_t n;
};

static void w_u8(struct wb *w, uint8_t v) { w->b[w->n++] = v; }
static void w_u16(struct wb *w, uint16_t v) { w_u8(w, (uint8_t)(v >> 8)); w_u8(w, (uint8_t)v); }
static void w_u32(struct wb *w, uint32_t v) { w_u16(w, (uint16_t)(v >> 16)); w_u16(w, (uint16_t)v); }
static void w_bytes(struct wb *w, const void *p, size_t n) { memcpy(w->b + w->n, p, n); w->n += n; }
static void w_str(struct wb *w, const char *s) { w_u16(w, (uint16_t)strlen(s)); w_bytes(w, s, strlen(s)); }
static void w_varint(struct wb *w, uint32_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		w_u8(w, v ? (uint8_t)(c | 0x80) : c);
	} while (v);
}
static void w_props(struct wb *w, const struct wb *props)
{
	w_varint(w, (uint32_t)(props ? props->n : 0));
	if (props)
		w_bytes(w, props->b, props->n);
}

/* The whole packet: first byte, remaining length, body. */
static struct wb packet(uint8_t first, const struct wb *body)
{
	struct wb p = { .n = 0 };
	w_u8(&p, first);
	w_varint(&p, (uint32_t)body->n);
	w_bytes(&p, body->b, body->n);
	return p;
}

struct c5 {
	const char *id;
	uint8_t flags;              /* connect flags beyond will and clean start */
	bool clean;
	const struct wb *props;     /* CONNECT properties, may be NULL */
	const char *will_topic;     /* NULL: no will */
	const char *will_payload;
	const struct wb *wprops;    /* will properties, may be NULL */
	uint8_t will_qos;
	bool will_retain;
};

static struct wb connect_pkt(const struct c5 *c)
{
	struct wb b = { .n = 0 };
	w_str(&b, "MQTT");
	w_u8(&b, 5);
	w_u8(&b, (uint8_t)(c->flags | (c->clean ? 0x02 : 0) |
			   (c->will_topic ? 0x04 | c->will_qos << 3 | (c->will_retain ? 0x20 : 0) : 0)));
	w_u16(&b, 30);
	w_props(&b, c->props);
	w_str(&b, c->id);
	if (c->will_topic) {
		w_props(&b, c->wprops);
		w_str(&b, c->will_topic);
		w_str(&b, c->will_payload);
	}
	return packet(0x10, &b);
}

/* Sends the CONNECT; the next packet must be CONNACK 0x00 with Session
 * Present `present`. Its properties go to *props when props is not NULL. */
static int connect5(const struct c5 *c, bool present, struct wb *props)
{
	uint8_t in[512];
	int fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	struct wb p = connect_pkt(c);
	assert_int_equal(raw_send(fd, p.b, p.n), 0);
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_true(n >= 5);
	assert_int_equal(in[0], 0x20);
	/* 20 rem(1) flags rc props-len(1; short lists here) props */
	assert_int_equal(in[2], present ? 1 : 0);
	assert_int_equal(in[3], 0x00);
	assert_true(in[4] < 0x80 && 5 + (int)in[4] == n);
	if (props) {
		props->n = 0;
		w_bytes(props, in + 5, in[4]);
	}
	return fd;
}

static int connect5_clean(const char *id)
{
	return connect5(&(struct c5){ .id = id, .clean = true }, false, NULL);
}

static struct wb expiry(uint32_t s)
{
	struct wb p = { .n = 0 };
	w_u8(&p, 0x11);
	w_u32(&p, s);
	return p;
}

/* SUBSCRIBE one filter with options opts; the SUBACK must grant opts & 3. */
static void subscribe5(int fd, uint16_t pid, const char *filter, uint8_t opts)
{
	struct wb b = { .n = 0 };
	uint8_t in[64];
	w_u16(&b, pid);
	w_props(&b, NULL);
	w_str(&b, filter);
	w_u8(&b, opts);
	struct wb p = packet(0x82, &b);
	assert_int_equal(raw_send(fd, p.b, p.n), 0);
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_int_equal(n, 6);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[2] << 8 | in[3], pid);
	assert_int_equal(in[4], 0);
	assert_int_equal(in[5], opts & 3);
}

/* A level-5 PUBLISH as received. */
struct pub5 {
	uint8_t first;
	uint16_t pid;
	char topic[256];
	size_t topic_len;
	uint8_t props[512];
	size_t props_len;
	char payload[512];
};

static int recv_pub5(int fd, struct pub5 *o)
{
	uint8_t b[2048];
	int n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
	if (n <= 0 || (b[0] & 0xf0) != 0x30)
		return -1;
	const uint8_t *p = b + 1, *end = b + n;
	while (*p++ & 0x80)
		;
	memset(o, 0, sizeof(*o));
	o->first = b[0];
	o->topic_len = (size_t)(p[0] << 8 | p[1]);
	p += 2;
	assert_true(o->topic_len < sizeof(o->topic));
	memcpy(o->topic, p, o->topic_len);
	p += o->topic_len;
	if (b[0] & 0x06) {
		o->pid = (uint16_t)(p[0] << 8 | p[1]);
		p += 2;
	}
	assert_true(*p < 0x80); /* short property lists only */
	o->props_len = *p++;
	memcpy(o->props, p, o->props_len);
	p += o->props_len;
	assert_true(end >= p && (size_t)(end - p) < sizeof(o->payload));
	memcpy(o->payload, p, (size_t)(end - p));
	return 0;
}

/* The next packet must be exactly these bytes (hex). */
static void expect_hex(int fd, const char *hex)
{
	uint8_t want[256], got[1024];
	char a[800], b[800];
	int wn = raw_hex_decode(hex, want, sizeof(want));
	int n = raw_recv_packet(fd, got, sizeof(got), WAIT_MS);
	assert_true(wn > 0);
	if (n != wn || memcmp(got, want, (size_t)wn) != 0) {
		fprintf(stderr, "expected %s\n     got %s\n", raw_hex_encode(want, (size_t)wn, a, sizeof(a)),
			n > 0 ? raw_hex_encode(got, (size_t)n, b, sizeof(b)) : "nothing");
		fail();
	}
}

/* Does property list p hold property id? */
static bool has_prop(const struct wb *p, uint8_t id)
{
	size_t i = 0;
	while (i < p->n) {
		uint8_t pid = p->b[i++];
		if (pid == id)
			return true;
		switch (pid) {
		case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a:
			i += 1; break;
		case 0x13: case 0x21: case 0x22: case 0x23: i += 2; break;
		case 0x02: case 0x11: case 0x18: case 0x27: i += 4; break;
		case 0x0b: while (p->b[i++] & 0x80) ; break;
		case 0x26: i += 2 + (size_t)(p->b[i] << 8 | p->b[i + 1]); /* fall through */
		default: i += 2 + (size_t)(p->b[i] << 8 | p->b[i + 1]); break;
		}
	}
	assert_int_equal(i, p->n);
	return false;
}

/* ---- tests --------------------------------------------------------------- */

/* A second CONNECT is a Protocol Error [MQTT-3.1.0-2]: DISCONNECT 0x82,
 * not a second CONNACK [MQTT-3.2.0-2], and nothing after the DISCONNECT
 * [MQTT-3.14.4-1]. */
static void test_second_connect(void **state)
{
	(void)state;
	struct c5 c = { .id = "m5c-twice", .clean = true };
	int fd = connect5(&c, false, NULL);
	struct wb p = connect_pkt(&c);
	assert_int_equal(raw_send(fd, p.b, p.n), 0);
	expect_hex(fd, "E0 01 82");
	assert_true(itutil_closed_silently(fd, WAIT_MS));
	close(fd);
}

/* Malformed level-5 CONNECTs are closed with no CONNACK and no DISCONNECT
 * [MQTT-3.1.4-1] [MQTT-3.14.0-1]: the reserved flag [MQTT-3.1.2-3], will
 * QoS or will retain without the will flag [MQTT-3.1.2-11]
 * [MQTT-3.1.2-13], will QoS 3 [MQTT-3.1.2-12], a will without its payload
 * [MQTT-3.1.2-9]. The first case is well-formed, to show the bytes are. */
static void test_malformed_connect(void **state)
{
	static const struct { const char *hex, *what; } cases[] = {
		{ "10 0E 0004 4D515454 05 03 001E 00 0001 70", "reserved flag" },
		{ "10 0E 0004 4D515454 05 0A 001E 00 0001 70", "will QoS 1, no will flag" },
		{ "10 0E 0004 4D515454 05 22 001E 00 0001 70", "will retain, no will flag" },
		{ "10 14 0004 4D515454 05 1E 001E 00 0001 70 00 0001 74 0000", "will QoS 3" },
		{ "10 12 0004 4D515454 05 06 001E 00 0001 70 00 0001 74", "no will payload" },
	};
	(void)state;

	int fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	assert_int_equal(raw_send_hex(fd, "10 14 0004 4D515454 05 06 001E 00 0001 70 00 0001 74 0000"),
			 0);
	uint8_t in[128];
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_true(n >= 5 && in[0] == 0x20 && in[2] == 0 && in[3] == 0); /* CONNACK 0x00 */
	close(fd);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("%s\n", cases[i].what);
		fd = raw_connect_tcp(g.port);
		assert_true(fd >= 0);
		assert_int_equal(raw_send_hex(fd, cases[i].hex), 0);
		assert_true(itutil_closed_silently(fd, WAIT_MS));
		close(fd);
	}
}

/* Clean Start 1 discards the session [MQTT-3.1.2-4]: Session Present 0
 * [MQTT-3.2.2-2] and its subscription is gone, though its expiry (60 s)
 * had not passed; Clean Start 0 before it resumed it. */
static void test_clean_start_discards(void **state)
{
	(void)state;
	struct wb e60 = expiry(60), e0 = expiry(0);
	struct c5 c = { .id = "m5c-clean", .clean = true, .props = &e60 };
	struct pub5 m;

	int fd = connect5(&c, false, NULL);
	subscribe5(fd, 1, "cs/t", 1);
	close(fd);
	c.clean = false;
	fd = connect5(&c, true, NULL); /* resumed: the session was kept */
	close(fd);
	c.clean = true;
	fd = connect5(&c, false, NULL);
	int pub = connect5_clean("m5c-clean-pub");
	assert_int_equal(raw_send_hex(pub, "30 08 0004 63732F74 00 78"), 0); /* cs/t "x" */
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	expect_hex(fd, "D0 00");
	assert_true(itutil_quiet(fd, QUIET_MS));
	/* The same subscription, made again, does receive: the PUBLISH above
	 * was not lost on the way. */
	subscribe5(fd, 2, "cs/t", 1);
	assert_int_equal(raw_send_hex(pub, "30 08 0004 63732F74 00 79"), 0);
	assert_int_equal(recv_pub5(fd, &m), 0);
	assert_string_equal(m.payload, "y");
	close(pub);
	close(fd);
	c.props = &e0;
	close(connect5(&c, false, NULL));
}

/* Wills at level 5: Will Retain 1 is published as a retained message
 * [MQTT-3.1.2-15], Will Retain 0 as a non-retained one [MQTT-3.1.2-14]: a
 * subscriber that comes after both gets the first only, with RETAIN 1. */
static void test_will_retain(void **state)
{
	(void)state;
	struct itutil_pkt p;
	int obs = itutil_connect(g.port, "m5c-wr-obs", true, 0, NULL);
	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "wr/#", 0), 0);

	int a = connect5(&(struct c5){ .id = "m5c-wr-a", .clean = true, .will_topic = "wr/kept",
				       .will_payload = "a", .will_retain = true }, false, NULL);
	int b = connect5(&(struct c5){ .id = "m5c-wr-b", .clean = true, .will_topic = "wr/gone",
				       .will_payload = "b" }, false, NULL);
	close(a);
	assert_int_equal(itutil_recv_publish(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "wr/kept");
	close(b);
	assert_int_equal(itutil_recv_publish(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "wr/gone");
	close(obs);

	int late = itutil_connect(g.port, "m5c-wr-late", true, 0, NULL);
	assert_true(late >= 0);
	assert_int_equal(itutil_subscribe(late, 1, "wr/#", 0), 0);
	assert_int_equal(itutil_recv_publish(late, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "wr/kept");
	assert_string_equal(p.payload, "a");
	assert_true(p.retain);
	assert_true(itutil_quiet(late, QUIET_MS));
	close(late);
	/* Clear the retained will. */
	int clr = itutil_connect(g.port, "m5c-wr-clear", true, 0, NULL);
	assert_true(clr >= 0);
	assert_int_equal(raw_mqtt_publish(clr, "wr/kept", "", 0, 0, true, 0), 0);
	assert_int_equal(itutil_ping(clr), 0);
	close(clr);
}

/* The will's properties reach an MQTT 5 subscriber as the client wrote
 * them, user properties in their order [MQTT-3.1.3-10]. */
static void test_will_properties_in_order(void **state)
{
	(void)state;
	struct wb wp = { .n = 0 };
	struct pub5 m;

	w_u8(&wp, 0x26); w_str(&wp, "k"); w_str(&wp, "v1");
	w_u8(&wp, 0x03); w_str(&wp, "text/plain");
	w_u8(&wp, 0x26); w_str(&wp, "k"); w_str(&wp, "v2");
	w_u8(&wp, 0x26); w_str(&wp, "a"); w_str(&wp, "z");
	int obs = connect5_clean("m5c-wp-obs");
	subscribe5(obs, 1, "wp/#", 0);
	int fd = connect5(&(struct c5){ .id = "m5c-wp", .clean = true, .will_topic = "wp/t",
					.will_payload = "bye", .wprops = &wp }, false, NULL);
	close(fd);
	assert_int_equal(recv_pub5(obs, &m), 0);
	assert_string_equal(m.topic, "wp/t");
	assert_string_equal(m.payload, "bye");
	assert_int_equal(m.props_len, wp.n);
	assert_memory_equal(m.props, wp.b, wp.n);
	close(obs);
}

/* A refused CONNECT (Authentication Method: CONNACK 0x8C) followed in the
 * same write by a PUBLISH, a SUBSCRIBE and a PINGREQ: none of them is
 * processed [MQTT-3.1.4-6]; the CONNACK is all the client gets (no
 * DISCONNECT after a refusing CONNACK [MQTT-3.14.0-1]), and an observer
 * gets neither the PUBLISH nor the will. */
static void test_refused_connect_ignores_rest(void **state)
{
	(void)state;
	struct wb am = { .n = 0 }, all = { .n = 0 }, b = { .n = 0 };
	int obs = itutil_connect(g.port, "m5c-rf-obs", true, 0, NULL);
	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "rf/#", 0), 0);

	w_u8(&am, 0x15);
	w_str(&am, "SCRAM");
	struct wb c = connect_pkt(&(struct c5){ .id = "m5c-rf", .clean = true, .props = &am,
						.will_topic = "rf/will", .will_payload = "w" });
	w_bytes(&all, c.b, c.n);
	w_str(&b, "rf/x");
	w_props(&b, NULL);
	w_bytes(&b, "p", 1);
	struct wb pub = packet(0x30, &b);
	w_bytes(&all, pub.b, pub.n);
	b.n = 0;
	w_u16(&b, 1);
	w_props(&b, NULL);
	w_str(&b, "rf/#");
	w_u8(&b, 0);
	struct wb sub = packet(0x82, &b);
	w_bytes(&all, sub.b, sub.n);
	w_u8(&all, 0xC0);
	w_u8(&all, 0x00);

	int fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, all.b, all.n), 0);
	expect_hex(fd, "20 03 00 8C 00");
	assert_true(itutil_closed_silently(fd, WAIT_MS));
	close(fd);
	assert_true(itutil_quiet(obs, QUIET_MS));
	close(obs);
}

/* Request Response Information 0 (and 1: kafkagate never sends it): no
 * Response Information in CONNACK [MQTT-3.1.2-28]; no Authentication
 * Method either, the client sent none [MQTT-4.12.0-6]. */
static void test_no_response_information(void **state)
{
	(void)state;
	for (uint8_t v = 0; v <= 1; v++) {
		struct wb rri = { .n = 0 }, ca;
		w_u8(&rri, 0x19);
		w_u8(&rri, v);
		int fd = connect5(&(struct c5){ .id = "m5c-rri", .clean = true, .props = &rri }, false,
				  &ca);
		assert_true(ca.n > 0); /* the server's limits are there */
		assert_false(has_prop(&ca, 0x1A));
		assert_false(has_prop(&ca, 0x15));
		assert_int_equal(itutil_ping(fd), 0);
		close(fd);
	}
}

/* Request Problem Information 0: acknowledgements other than PUBLISH,
 * CONNACK and DISCONNECT carry no Reason String or User Property
 * [MQTT-3.1.2-29], also when their reason code is not success: UNSUBACK
 * 0x11 and PUBCOMP 0x92 come with no properties at all. */
static void test_problem_information_0(void **state)
{
	(void)state;
	struct wb rpi = { .n = 0 };
	w_u8(&rpi, 0x17);
	w_u8(&rpi, 0);
	int fd = connect5(&(struct c5){ .id = "m5c-rpi", .clean = true, .props = &rpi }, false,
			  NULL);
	assert_int_equal(raw_send_hex(fd, "A2 09 0005 00 0004 6E6F2F74"), 0); /* UNSUBSCRIBE no/t */
	expect_hex(fd, "B0 04 0005 00 11");
	assert_int_equal(raw_send_hex(fd, "62 02 0009"), 0);
	expect_hex(fd, "70 03 0009 92");
	assert_int_equal(raw_send_hex(fd, "82 0A 0006 00 0004 6E6F2F74 02"), 0); /* SUBSCRIBE */
	expect_hex(fd, "90 04 0006 00 02");
	close(fd);
}

/* The bytes EF BB BF in a topic are U+FEFF, kept: the subscriber gets the
 * topic name byte for byte [MQTT-1.5.4-3]. */
static void test_bom_kept(void **state)
{
	(void)state;
	struct pub5 m;
	int sub = connect5_clean("m5c-bom-sub");
	subscribe5(sub, 1, "bom/#", 0);
	int pub = connect5_clean("m5c-bom-pub");
	/* "bom/" EF BB BF "x", payload "b" */
	assert_int_equal(raw_send_hex(pub, "30 0C 0008 626F6D2F EFBBBF 78 00 62"), 0);
	assert_int_equal(recv_pub5(sub, &m), 0);
	assert_int_equal(m.topic_len, 8);
	assert_memory_equal(m.topic, "bom/\xEF\xBB\xBFx", 8);
	assert_string_equal(m.payload, "b");
	close(pub);
	close(sub);
}


/* Shared subscription: the member that gets a message refuses it with
 * PUBACK 0x80 and leaves; the message is discarded, not sent to the other
 * member [MQTT-4.8.2-6]. The member's Subscription Identifier comes with
 * the message [MQTT-3.3.4-3]. */
static void test_shared_refused_not_redelivered(void **state)
{
	(void)state;
	struct pub5 m;
	int fd[2];
	for (int i = 0; i < 2; i++) {
		fd[i] = connect5_clean(i ? "m5c-sh-b" : "m5c-sh-a");
		/* SUBSCRIBE $share/g/sh/t QoS 1, Subscription Identifier 9 */
		assert_int_equal(raw_send_hex(fd[i], "82 15 0001 02 0B09 000D "
					      "2473686172652F672F73682F74 01"), 0);
		expect_hex(fd[i], "90 04 0001 00 01");
	}
	int pub = connect5_clean("m5c-sh-pub");
	assert_int_equal(raw_send_hex(pub, "32 0A 0004 73682F74 0001 00 78"), 0); /* sh/t "x" */
	expect_hex(pub, "40 02 0001");
	/* One member has it; which one is the server's choice. */
	int got = recv_pub5(fd[0], &m) == 0 ? 0 : 1;
	if (got == 1)
		assert_int_equal(recv_pub5(fd[1], &m), 0);
	assert_string_equal(m.topic, "sh/t");
	assert_string_equal(m.payload, "x");
	assert_int_equal(m.props_len, 2);
	assert_memory_equal(m.props, "\x0b\x09", 2);
	char ack[32];
	snprintf(ack, sizeof(ack), "40 03 %04X 80", m.pid);
	assert_int_equal(raw_send_hex(fd[got], ack), 0);
	assert_int_equal(raw_send_hex(fd[got], "C0 00"), 0);
	expect_hex(fd[got], "D0 00");
	close(fd[got]);
	assert_true(itutil_quiet(fd[1 - got], 1000));
	close(fd[1 - got]);
	close(pub);
}

/* A PUBLISH on "u/t" (QoS 0, payload "x") with property list props. */
static struct wb publish_with(const struct wb *props)
{
	struct wb b = { .n = 0 };
	w_str(&b, "u/t");
	w_props(&b, props);
	w_u8(&b, 'x');
	return packet(0x30, &b);
}

/* The next packet must be DISCONNECT 0x81 (its properties, a Reason
 * String, are the server's business), then the close. */
static void expect_disconnect_81(int fd)
{
	uint8_t in[512];
	char h[200];
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	if (n < 3 || in[0] != 0xE0 || in[2] != 0x81) {
		fprintf(stderr, "expected DISCONNECT 0x81, got %s\n",
			n > 0 ? raw_hex_encode(in, (size_t)n, h, sizeof(h)) : "nothing");
		fail();
	}
	assert_true(raw_closed_within(fd, WAIT_MS));
}

/* Ill-formed UTF-8 in either string of a User Property [MQTT-1.5.7-1], in
 * a Response Topic [MQTT-3.3.2-13] or in a Content Type [MQTT-3.3.2-19]:
 * the PUBLISH is malformed, DISCONNECT 0x81 (docs/mqtt5/errors.md), and the
 * message goes nowhere. A well-formed one of each passes first. */
static void test_ill_formed_utf8_properties(void **state)
{
	(void)state;
	/* C3 28: a lead byte without its continuation; ED A0 80: a surrogate
	 * (U+D800); C0 AF: an overlong "/". */
	static const struct {
		uint8_t id;
		const char *name, *value; /* value NULL: a single string */
	} bad[] = {
		{ 0x26, "k\xC3\x28", "v" },
		{ 0x26, "k", "\xED\xA0\x80" },
		{ 0x08, "r\xC0\xAF" "t", NULL },
		{ 0x03, "text\xC3\x28", NULL },
	};
	struct pub5 m;
	int sub = connect5_clean("m5c-utf-sub");
	subscribe5(sub, 1, "u/t", 0);
	int pub = connect5_clean("m5c-utf-ok");
	struct wb good = { .n = 0 };
	w_u8(&good, 0x26); w_str(&good, "k"); w_str(&good, "\xC3\xA9");
	w_u8(&good, 0x08); w_str(&good, "r/t");
	w_u8(&good, 0x03); w_str(&good, "text/plain");
	struct wb p = publish_with(&good);
	assert_int_equal(raw_send(pub, p.b, p.n), 0);
	assert_int_equal(recv_pub5(sub, &m), 0);
	assert_string_equal(m.topic, "u/t");
	assert_int_equal(m.props_len, good.n);
	close(pub);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct wb props = { .n = 0 };
		w_u8(&props, bad[i].id);
		w_str(&props, bad[i].name);
		if (bad[i].value)
			w_str(&props, bad[i].value);
		pub = connect5_clean("m5c-utf-bad");
		p = publish_with(&props);
		assert_int_equal(raw_send(pub, p.b, p.n), 0);
		expect_disconnect_81(pub);
		close(pub);
	}
	assert_true(itutil_quiet(sub, QUIET_MS));
	close(sub);
}

/* SUBSCRIBE filter at QoS 1 with Subscription Identifier id; SUBACK 1. */
static void subscribe5_id(int fd, uint16_t pid, const char *filter, uint8_t id)
{
	struct wb b = { .n = 0 }, props = { .n = 0 };
	uint8_t in[64];
	w_u8(&props, 0x0B);
	w_u8(&props, id);
	w_u16(&b, pid);
	w_props(&b, &props);
	w_str(&b, filter);
	w_u8(&b, 1);
	struct wb p = packet(0x82, &b);
	assert_int_equal(raw_send(fd, p.b, p.n), 0);
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_int_equal(n, 6);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[5], 1);
}

/* A session with an ordinary subscription and a $share membership that
 * both match gets two copies (MQTT 5.0 section 4.8.2 allows it), each with
 * the identifier of the subscription it came through [MQTT-3.3.4-5]: one
 * with 3 only, one with 7 only. */
static void test_two_copies_own_identifiers(void **state)
{
	(void)state;
	struct pub5 m[2];
	int sub = connect5_clean("m5c-2c-sub");
	subscribe5_id(sub, 1, "tc/t", 3);
	subscribe5_id(sub, 2, "$share/g/tc/t", 7);
	int pub = connect5_clean("m5c-2c-pub");
	assert_int_equal(raw_send_hex(pub, "32 0A 0004 74632F74 0001 00 79"), 0); /* tc/t "y" */
	expect_hex(pub, "40 02 0001");
	bool seen3 = false, seen7 = false;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recv_pub5(sub, &m[i]), 0);
		assert_int_equal(m[i].first & 0x06, 0x02);
		assert_string_equal(m[i].topic, "tc/t");
		assert_string_equal(m[i].payload, "y");
		assert_int_equal(m[i].props_len, 2);
		assert_int_equal(m[i].props[0], 0x0B);
		seen3 |= m[i].props[1] == 3;
		seen7 |= m[i].props[1] == 7;
		char ack[32];
		snprintf(ack, sizeof(ack), "40 02 %04X", m[i].pid);
		assert_int_equal(raw_send_hex(sub, ack), 0);
	}
	assert_true(seen3 && seen7);
	assert_int_not_equal(m[0].pid, m[1].pid);
	assert_true(itutil_quiet(sub, QUIET_MS));
	close(pub);
	close(sub);
}

/* After its PUBACK, a QoS 1 Packet Identifier used again is a new message,
 * DUP set or not [MQTT-4.3.2-5]: all three are delivered, in order. */
static void test_qos1_id_reused_after_puback(void **state)
{
	(void)state;
	struct pub5 m;
	int sub = connect5_clean("m5c-reuse-sub");
	subscribe5(sub, 1, "ru/t", 0);
	int pub = connect5_clean("m5c-reuse-pub");
	assert_int_equal(raw_send_hex(pub, "32 0A 0004 72752F74 0005 00 61"), 0); /* "a" */
	expect_hex(pub, "40 02 0005");
	assert_int_equal(raw_send_hex(pub, "3A 0A 0004 72752F74 0005 00 62"), 0); /* DUP, "b" */
	expect_hex(pub, "40 02 0005");
	assert_int_equal(raw_send_hex(pub, "3A 0A 0004 72752F74 0005 00 61"), 0); /* DUP, "a" */
	expect_hex(pub, "40 02 0005");
	static const char *const want[] = { "a", "b", "a" };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(recv_pub5(sub, &m), 0);
		assert_int_equal(m.first, 0x30);
		assert_string_equal(m.payload, want[i]);
	}
	assert_true(itutil_quiet(sub, QUIET_MS));
	close(pub);
	close(sub);
}

/* A QoS 2 message to shared members granted QoS 0 and QoS 1 (two groups):
 * each gets it at its granted QoS [MQTT-4.8.2-3]. */
static void test_shared_member_granted_qos(void **state)
{
	(void)state;
	struct pub5 m;
	int m0 = connect5_clean("m5c-gq-0");
	subscribe5(m0, 1, "$share/g0/gq/t", 0);
	int m1 = connect5_clean("m5c-gq-1");
	subscribe5(m1, 1, "$share/g1/gq/t", 1);
	int pub = connect5_clean("m5c-gq-pub");
	assert_int_equal(raw_send_hex(pub, "34 0A 0004 67712F74 0002 00 71"), 0); /* gq/t "q" */
	expect_hex(pub, "50 02 0002");
	assert_int_equal(raw_send_hex(pub, "62 02 0002"), 0);
	expect_hex(pub, "70 02 0002");
	assert_int_equal(recv_pub5(m0, &m), 0);
	assert_int_equal(m.first, 0x30);
	assert_string_equal(m.payload, "q");
	assert_int_equal(recv_pub5(m1, &m), 0);
	assert_int_equal(m.first, 0x32);
	assert_string_equal(m.payload, "q");
	char ack[32];
	snprintf(ack, sizeof(ack), "40 02 %04X", m.pid);
	assert_int_equal(raw_send_hex(m1, ack), 0);
	assert_int_equal(itutil_ping(m1), 0);
	assert_true(itutil_quiet(m0, QUIET_MS));
	close(pub);
	close(m0);
	close(m1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_connect),
		cmocka_unit_test(test_malformed_connect),
		cmocka_unit_test(test_clean_start_discards),
		cmocka_unit_test(test_will_retain),
		cmocka_unit_test(test_will_properties_in_order),
		cmocka_unit_test(test_refused_connect_ignores_rest),
		cmocka_unit_test(test_no_response_information),
		cmocka_unit_test(test_problem_information_0),
		cmocka_unit_test(test_bom_kept),
		cmocka_unit_test(test_shared_refused_not_redelivered),
		cmocka_unit_test(test_ill_formed_utf8_properties),
		cmocka_unit_test(test_two_copies_own_identifiers),
		cmocka_unit_test(test_qos1_id_reused_after_puback),
		cmocka_unit_test(test_shared_member_granted_qos),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_mqtt5_conf", tests, group_setup, group_teardown);
}
