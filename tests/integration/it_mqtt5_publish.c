/*
 * it_mqtt5_publish.c - what an MQTT 5 client sends after CONNECT: PUBLISH
 * with properties and Topic Aliases, the Receive Maximum the server
 * enforces, acknowledgements with reason codes both ways, and the truthful
 * PUBACK/PUBREC 0x80 when Kafka refuses a message (a 3.1.1 client is still
 * disconnected instead).
 *
 * Raw bytes for exact wire checks (the packets are built here by hand, not
 * with the gateway's encoder), paho.mqtt.c's MQTT 5 API as the real client
 * that sets properties.
 *
 * Two checks depend on the outbound half of MQTT 5 (properties and the
 * remaining expiry on PUBLISHes the server sends, another part of the
 * work): when the server's PUBLISH carries no properties at all, they skip
 * with a message instead of failing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 5000

static struct gw g;
static struct itkafka_mock km;

/* ---- raw MQTT 5 ------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = v ? (uint8_t)(b | 0x80) : b;
	} while (v);
	return n;
}

/* A level 5 PUBLISH: first byte (0x30 | qos << 1 | retain), topic, packet
 * id (qos > 0), the property bytes as given, payload. */
static int send_pub5(int fd, uint8_t first, const char *topic, uint16_t pid, const void *props,
		     size_t plen, const char *payload)
{
	uint8_t body[4096], pkt[4200];
	size_t n = 0, tl = strlen(topic), pl = strlen(payload);

	body[n++] = (uint8_t)(tl >> 8);
	body[n++] = (uint8_t)tl;
	memcpy(body + n, topic, tl);
	n += tl;
	if (first & 0x06) {
		body[n++] = (uint8_t)(pid >> 8);
		body[n++] = (uint8_t)pid;
	}
	n += put_varint(body + n, (uint32_t)plen);
	memcpy(body + n, props, plen);
	n += plen;
	memcpy(body + n, payload, pl);
	n += pl;
	pkt[0] = first;
	size_t h = 1 + put_varint(pkt + 1, (uint32_t)n);
	memcpy(pkt + h, body, n);
	return raw_send(fd, pkt, h + n);
}

static int connect5(const char *id)
{
	struct raw_connect c = { .level = 5, .client_id = id, .clean = true };
	uint8_t rc = 0xff;
	int fd = raw_connect_tcp(g.port);
	if (fd < 0)
		return -1;
	if (raw_mqtt_handshake(fd, &c, &rc, NULL, WAIT_MS) < 0 || rc != 0) {
		fprintf(stderr, "connect5 %s: CONNACK rc=%u\n", id, rc);
		close(fd);
		return -1;
	}
	return fd;
}

/* SUBSCRIBE (level 5, no properties) and its SUBACK granting qos. */
static int subscribe5(int fd, const char *filter, uint8_t qos)
{
	uint8_t b[512];
	int n = raw_build_subscribe(b, sizeof(b), 5, 1, filter, qos);
	if (n < 0 || raw_send(fd, b, (size_t)n) < 0)
		return -1;
	n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
	/* 90 04 0001 00 qos */
	return n == 6 && b[0] == 0x90 && b[4] == 0 && b[5] == qos ? 0 : -1;
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

static void expect_open(int fd)
{
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	expect_hex(fd, "D0 00");
}

/* One received level 5 PUBLISH. */
struct pub5 {
	uint8_t first;
	char topic[256];
	uint16_t pid;
	uint8_t props[1024];
	uint32_t plen;
	char payload[1024];
};

static uint32_t get_varint(const uint8_t **p)
{
	uint32_t v = 0;
	for (int s = 0; s < 28; s += 7) {
		uint8_t b = *(*p)++;
		v |= (uint32_t)(b & 0x7f) << s;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static int recv_pub5(int fd, struct pub5 *o, int timeout_ms)
{
	uint8_t b[4096];
	int n = raw_recv_packet(fd, b, sizeof(b), timeout_ms);
	if (n <= 0 || (b[0] & 0xf0) != 0x30)
		return -1;
	const uint8_t *p = b + 1, *end = b + n;
	get_varint(&p);
	uint16_t tl = (uint16_t)(p[0] << 8 | p[1]);
	p += 2;
	memset(o, 0, sizeof(*o));
	o->first = b[0];
	memcpy(o->topic, p, tl);
	p += tl;
	if (b[0] & 0x06) {
		o->pid = (uint16_t)(p[0] << 8 | p[1]);
		p += 2;
	}
	o->plen = get_varint(&p);
	memcpy(o->props, p, o->plen);
	p += o->plen;
	memcpy(o->payload, p, (size_t)(end - p));
	return 0;
}

/* ---- fixtures ------------------------------------------------------------ */

static int gw_plain(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_inflight = 2; topic_alias_maximum = 10; };");
}

static int gw_down(void **state)
{
	(void)state;
	gw_stop(&g);
	itkafka_mock_release(&km);
	return 0;
}

/* ---- Topic Alias ------------------------------------------------------------ */

/* A topic with an alias sets it, an empty topic with the alias uses it, a
 * topic with a known alias redefines it [MQTT-3.3.2-12]; subscribers (3.1.1
 * here) see the topic names. */
static void test_alias_set_use_redefine(void **state)
{
	struct itutil_pkt p;
	(void)state;
	int sub = itutil_connect(g.port, "m5p-alias-sub", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "al/#", 1), 0);
	int fd = connect5("m5p-alias-pub");
	assert_true(fd >= 0);
	static const uint8_t a1[] = { 0x23, 0x00, 0x01 };
	assert_int_equal(send_pub5(fd, 0x32, "al/one", 1, a1, 3, "p1"), 0);
	expect_hex(fd, "40 02 0001");
	assert_int_equal(send_pub5(fd, 0x32, "", 2, a1, 3, "p2"), 0);
	expect_hex(fd, "40 02 0002");
	assert_int_equal(send_pub5(fd, 0x30, "al/two", 0, a1, 3, "p3"), 0);
	assert_int_equal(send_pub5(fd, 0x30, "", 0, a1, 3, "p4"), 0);
	static const char *const want[][2] = {
		{ "al/one", "p1" }, { "al/one", "p2" }, { "al/two", "p3" }, { "al/two", "p4" } };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, want[i][0]);
		assert_string_equal(p.payload, want[i][1]);
		if (p.qos)
			assert_int_equal(itutil_ack_publish(sub, &p), 0);
	}
	expect_open(fd);
	close(fd);
	close(sub);
}

/* Alias over the announced maximum: DISCONNECT 0x94 [MQTT-3.3.2-9/-10]. */
static void test_alias_over_maximum(void **state)
{
	(void)state;
	int fd = connect5("m5p-alias-big");
	assert_true(fd >= 0);
	static const uint8_t a11[] = { 0x23, 0x00, 0x0b };
	assert_int_equal(send_pub5(fd, 0x30, "al/x", 0, a11, 3, "x"), 0);
	expect_hex(fd, "E0 01 94");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

/* An empty topic with an alias never set: protocol error 0x82. */
static void test_alias_unknown(void **state)
{
	(void)state;
	int fd = connect5("m5p-alias-unknown");
	assert_true(fd >= 0);
	static const uint8_t a3[] = { 0x23, 0x00, 0x03 };
	assert_int_equal(send_pub5(fd, 0x30, "", 0, a3, 3, "x"), 0);
	expect_hex(fd, "E0 01 82");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

/* Aliases belong to the connection [MQTT-3.3.2-7]: a new one starts empty. */
static void test_alias_per_connection(void **state)
{
	(void)state;
	static const uint8_t a1[] = { 0x23, 0x00, 0x01 };
	int fd = connect5("m5p-alias-conn");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "al/c", 1, a1, 3, "x"), 0);
	expect_hex(fd, "40 02 0001");
	close(fd);
	fd = connect5("m5p-alias-conn");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x30, "", 0, a1, 3, "x"), 0);
	expect_hex(fd, "E0 01 82");
	close(fd);
}

/* A client must not send a Subscription Identifier [MQTT-3.3.4-6]. */
static void test_subscription_id_refused(void **state)
{
	(void)state;
	int fd = connect5("m5p-subid");
	assert_true(fd >= 0);
	static const uint8_t sid[] = { 0x0b, 0x01 };
	assert_int_equal(send_pub5(fd, 0x32, "s/x", 1, sid, 2, "x"), 0);
	expect_hex(fd, "E0 01 82");
	close(fd);
}

/* ---- Receive Maximum and QoS 2 ids ------------------------------------------ */

/* limits.max_inflight = 2 is the server's Receive Maximum: QoS 2 messages
 * are unacknowledged until PUBCOMP, so a third one before a PUBREL is
 * DISCONNECT 0x93 [MQTT-3.3.4-9]; a PUBREL gives the quota back. */
static void test_receive_maximum(void **state)
{
	(void)state;
	int fd = connect5("m5p-rmax");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x34, "rm/x", 1, "", 0, "a"), 0);
	expect_hex(fd, "50 02 0001");
	assert_int_equal(send_pub5(fd, 0x34, "rm/x", 2, "", 0, "b"), 0);
	expect_hex(fd, "50 02 0002");
	/* A resend of an id in flight is not a new message. */
	assert_int_equal(send_pub5(fd, 0x3c, "rm/x", 2, "", 0, "b"), 0);
	expect_hex(fd, "50 02 0002");
	assert_int_equal(raw_send_hex(fd, "62 02 0001"), 0);
	expect_hex(fd, "70 02 0001");
	assert_int_equal(send_pub5(fd, 0x34, "rm/x", 3, "", 0, "c"), 0);
	expect_hex(fd, "50 02 0003");
	assert_int_equal(send_pub5(fd, 0x32, "rm/x", 4, "", 0, "d"), 0);
	expect_hex(fd, "E0 01 93");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);

	/* 3.1.1 has no Receive Maximum: the same is fine. */
	fd = itutil_connect(g.port, "m5p-rmax-311", true, 0, NULL);
	assert_true(fd >= 0);
	for (uint16_t i = 1; i <= 4; i++) {
		assert_int_equal(itutil_send_publish(fd, "rm/y", "z", 1, 2, false, i), 0);
		assert_int_equal(itutil_expect_ack(fd, 0x50, i, WAIT_MS), 0);
	}
	assert_int_equal(itutil_ping(fd), 0);
	close(fd);
}

/* PUBREL for an id the server does not hold: PUBCOMP 0x92 (5.0 3.7.2.1),
 * also when the PUBREL itself says 0x92; a known one gets success. */
static void test_pubrel_unknown(void **state)
{
	(void)state;
	int fd = connect5("m5p-pubrel");
	assert_true(fd >= 0);
	assert_int_equal(raw_send_hex(fd, "62 02 0009"), 0);
	expect_hex(fd, "70 03 0009 92");
	assert_int_equal(raw_send_hex(fd, "62 03 000A 92"), 0);
	expect_hex(fd, "70 03 000A 92");
	assert_int_equal(send_pub5(fd, 0x34, "pr/x", 7, "", 0, "a"), 0);
	expect_hex(fd, "50 02 0007");
	assert_int_equal(raw_send_hex(fd, "62 02 0007"), 0);
	expect_hex(fd, "70 02 0007");
	expect_open(fd);
	close(fd);
}

/* Outbound QoS 2 refused by the subscriber with PUBREC 0x80: no PUBREL, the
 * flow is over, the window slot is free (max_inflight = 2: two refusals
 * then two more messages still get through). A PUBACK for a QoS 2 message
 * is a protocol error: DISCONNECT 0x82. */
static void test_pubrec_failure_from_client(void **state)
{
	struct pub5 m;
	(void)state;
	int sub = connect5("m5p-rec-sub");
	assert_true(sub >= 0);
	assert_int_equal(subscribe5(sub, "rc/#", 2), 0);
	int pub = itutil_connect(g.port, "m5p-rec-pub", true, 0, NULL);
	assert_true(pub >= 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(raw_mqtt_publish(pub, "rc/x", "m", 1, 2, false, (uint16_t)(i + 1)), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(recv_pub5(sub, &m, WAIT_MS), 0);
		assert_int_equal(m.first & 0x06, 0x04);
		char ack[32];
		snprintf(ack, sizeof(ack), "50 04 %04X 80 00", m.pid);
		assert_int_equal(raw_send_hex(sub, ack), 0);
	}
	assert_true(itutil_quiet(sub, 300));
	expect_open(sub);
	assert_int_equal(raw_mqtt_publish(pub, "rc/x", "n", 1, 2, false, 9), 0);
	assert_int_equal(recv_pub5(sub, &m, WAIT_MS), 0);
	char ack[32];
	snprintf(ack, sizeof(ack), "40 02 %04X", m.pid);
	assert_int_equal(raw_send_hex(sub, ack), 0);
	expect_hex(sub, "E0 01 82");
	close(sub);
	close(pub);
}

/* ---- properties ------------------------------------------------------------ */

/* The forwardable properties of a received PUBLISH, in order, as
 * "id:hex;..." (Message Expiry and Subscription Identifier left out: they
 * are per delivery). */
static void fwd_props(const struct pub5 *m, char *out, size_t cap)
{
	const uint8_t *p = m->props, *end = m->props + m->plen;
	size_t n = 0;
	out[0] = '\0';
	while (p < end) {
		const uint8_t *at = p;
		uint8_t id = *p++;
		switch (id) {
		case 0x01: p += 1; break;
		case 0x02: p += 4; break;
		case 0x03: case 0x08: case 0x09: p += 2 + (p[0] << 8 | p[1]); break;
		case 0x0b: get_varint(&p); break;
		case 0x23: p += 2; break;
		case 0x26: p += 2 + (p[0] << 8 | p[1]); p += 2 + (p[0] << 8 | p[1]); break;
		default: fail_msg("unexpected property 0x%02x", id);
		}
		if (id == 0x02 || id == 0x0b)
			continue;
		char hex[600];
		raw_hex_encode(at, (size_t)(p - at), hex, sizeof(hex));
		n += (size_t)snprintf(out + n, cap - n, "%s;", hex);
	}
}

static void add_str(MQTTProperties *ps, int id, const char *v)
{
	MQTTProperty p = { .identifier = id };
	p.value.data.data = (char *)v;
	p.value.data.len = (int)strlen(v);
	assert_int_equal(MQTTProperties_add(ps, &p), 0);
}

static void add_pair(MQTTProperties *ps, const char *k, const char *v)
{
	MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_USER_PROPERTY };
	p.value.data.data = (char *)k;
	p.value.data.len = (int)strlen(k);
	p.value.value.data = (char *)v;
	p.value.value.len = (int)strlen(v);
	assert_int_equal(MQTTProperties_add(ps, &p), 0);
}

/* paho MQTT 5 publishes with user properties (a repeated name, in order),
 * content type, response topic, correlation data, payload format, a topic
 * alias and an expiry: an MQTT 5 subscriber gets the forwardable ones as
 * sent, without the alias; a 3.1.1 subscriber gets the message plain. */
static void test_properties_forwarded(void **state)
{
	struct pub5 m;
	struct itutil_pkt p;
	(void)state;
	int s5 = connect5("m5p-props-sub5");
	assert_true(s5 >= 0);
	assert_int_equal(subscribe5(s5, "pp/#", 1), 0);
	int s4 = itutil_connect(g.port, "m5p-props-sub4", true, 0, NULL);
	assert_true(s4 >= 0);
	assert_int_equal(itutil_subscribe(s4, 1, "pp/#", 1), 0);

	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	MQTTClient cl;
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
	co.MQTTVersion = MQTTVERSION_5;
	assert_int_equal(MQTTClient_createWithOptions(&cl, uri, "m5p-props-pub",
						      MQTTCLIENT_PERSISTENCE_NONE, NULL, &co),
			 MQTTCLIENT_SUCCESS);
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
	o.cleanstart = 1;
	MQTTResponse r = MQTTClient_connect5(cl, &o, NULL, NULL);
	assert_int_equal(r.reasonCode, MQTTCLIENT_SUCCESS);
	MQTTResponse_free(r);

	MQTTProperties ps = MQTTProperties_initializer;
	MQTTProperty pf = { .identifier = MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR };
	pf.value.byte = 1;
	assert_int_equal(MQTTProperties_add(&ps, &pf), 0);
	add_pair(&ps, "k", "v1");
	add_str(&ps, MQTTPROPERTY_CODE_CONTENT_TYPE, "text/plain");
	MQTTProperty ex = { .identifier = MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL };
	ex.value.integer4 = 600;
	assert_int_equal(MQTTProperties_add(&ps, &ex), 0);
	add_str(&ps, MQTTPROPERTY_CODE_RESPONSE_TOPIC, "pp/reply");
	add_str(&ps, MQTTPROPERTY_CODE_CORRELATION_DATA, "\x01" "abc");
	MQTTProperty al = { .identifier = MQTTPROPERTY_CODE_TOPIC_ALIAS };
	al.value.integer2 = 1;
	assert_int_equal(MQTTProperties_add(&ps, &al), 0);
	add_pair(&ps, "k", "v2");
	add_pair(&ps, "other", "x");

	MQTTClient_message msg = MQTTClient_message_initializer;
	msg.payload = "hello";
	msg.payloadlen = 5;
	msg.qos = 1;
	msg.properties = ps;
	MQTTClient_deliveryToken dt;
	r = MQTTClient_publishMessage5(cl, "pp/t", &msg, &dt);
	assert_int_equal(r.reasonCode, MQTTCLIENT_SUCCESS);
	MQTTResponse_free(r);
	assert_int_equal(MQTTClient_waitForCompletion(cl, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
	MQTTProperties_free(&ps);
	MQTTClient_disconnect(cl, 1000);
	MQTTClient_destroy(&cl);

	assert_int_equal(itutil_recv_publish(s4, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "pp/t");
	assert_string_equal(p.payload, "hello");
	assert_int_equal(itutil_ack_publish(s4, &p), 0);

	assert_int_equal(recv_pub5(s5, &m, WAIT_MS), 0);
	assert_string_equal(m.topic, "pp/t");
	assert_string_equal(m.payload, "hello");
	if (m.plen == 0)
		skip(); /* outbound properties not in this build (PUBLISH out) */
	char got[2048];
	fwd_props(&m, got, sizeof(got));
	assert_string_equal(got, "01 01;"
				 "26 00 01 6B 00 02 76 31;"
				 "03 00 0A 74 65 78 74 2F 70 6C 61 69 6E;"
				 "08 00 08 70 70 2F 72 65 70 6C 79;"
				 "09 00 04 01 61 62 63;"
				 "26 00 01 6B 00 02 76 32;"
				 "26 00 05 6F 74 68 65 72 00 01 78;");
	close(s5);
	close(s4);
}

/* Message Expiry: a message queued for an offline session whose interval
 * passed is not delivered; one whose interval has not passed is, with the
 * remaining interval. Needs the delivery side (skips without it). */
static void test_message_expiry_in_queue(void **state)
{
	struct pub5 m;
	(void)state;
	struct raw_connect rc = { .level = 4, .client_id = "m5p-exp-sub", .clean = false };
	int sub = itutil_connect_with(g.port, &rc, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "ex/#", 1), 0);
	close(sub);
	itutil_sleep_ms(200);

	int fd = connect5("m5p-exp-pub");
	assert_true(fd >= 0);
	static const uint8_t e1[] = { 0x02, 0, 0, 0, 1 }, e600[] = { 0x02, 0, 0, 0x02, 0x58 };
	assert_int_equal(send_pub5(fd, 0x32, "ex/short", 1, e1, 5, "short"), 0);
	expect_hex(fd, "40 02 0001");
	assert_int_equal(send_pub5(fd, 0x32, "ex/long", 2, e600, 5, "long"), 0);
	expect_hex(fd, "40 02 0002");
	close(fd);
	itutil_sleep_ms(2200);

	/* Back as MQTT 5 to see the remaining interval. */
	struct raw_connect r5 = { .level = 5, .client_id = "m5p-exp-sub", .clean = false };
	uint8_t crc = 0xff;
	sub = raw_connect_tcp(g.port);
	assert_true(sub >= 0);
	assert_int_equal(raw_mqtt_handshake(sub, &r5, &crc, NULL, WAIT_MS), 0);
	assert_int_equal(crc, 0);
	assert_int_equal(recv_pub5(sub, &m, WAIT_MS), 0);
	if (strcmp(m.topic, "ex/short") == 0 && m.plen == 0)
		skip(); /* expiry on the delivery side not in this build */
	assert_string_equal(m.topic, "ex/long");
	/* 02 + four bytes: at most 600, at least 590 left. */
	const uint8_t *x = memchr(m.props, 0x02, m.plen);
	assert_non_null(x);
	uint32_t left = (uint32_t)x[1] << 24 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 8 | x[4];
	assert_true(left <= 600 && left >= 590);
	close(sub);
}

/* ---- Kafka refuses ------------------------------------------------------------ */

static void kafka_up(const char *props, const char *extra)
{
	char cfg[1024];
	assert_int_equal(itkafka_mock_init(&km, 1), 0);
	rd_kafka_mock_topic_create(km.mc, "kf", 1, 1);
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 1; properties = ( %s ); };\n"
		 "routes = ( { filter = \"kf/#\"; topic = \"kf\"; } );\n%s\n",
		 km.bootstrap, props, extra);
	assert_int_equal(gw_start(&g, cfg), 0);
}

/* Kafka down: the MQTT 5 client gets PUBACK/PUBREC 0x80 in publish order
 * and stays connected; the failed QoS 2 id is free again (a resend is a new
 * message). The 3.1.1 client is disconnected without an ack, as before.
 * When Kafka is back, the same client's next message gets a plain PUBACK. */
static void test_kafka_failure_reason_code(void **state)
{
	(void)state;
	kafka_up("(\"message.timeout.ms\", 1500)", "");
	int v4 = itutil_connect(g.port, "m5p-kf-v4", true, 0, NULL);
	assert_true(v4 >= 0);
	int fd = connect5("m5p-kf-v5");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "kf/a", 1, "", 0, "up"), 0);
	expect_hex(fd, "40 02 0001");

	rd_kafka_mock_broker_set_down(km.mc, 1);
	assert_int_equal(itutil_send_publish(v4, "kf/b", "x", 1, 1, false, 1), 0);
	assert_int_equal(send_pub5(fd, 0x32, "kf/a", 2, "", 0, "one"), 0);
	assert_int_equal(send_pub5(fd, 0x34, "kf/a", 3, "", 0, "two"), 0);
	assert_int_equal(send_pub5(fd, 0x32, "kf/a", 4, "", 0, "three"), 0);
	expect_hex(fd, "40 03 0002 80");
	expect_hex(fd, "50 03 0003 80");
	expect_hex(fd, "40 03 0004 80");
	expect_open(fd);
	/* No PUBREL is expected for 3: the same id is a new message. */
	assert_int_equal(send_pub5(fd, 0x34, "kf/a", 3, "", 0, "two again"), 0);
	expect_hex(fd, "50 03 0003 80");
	assert_true(itutil_closed_silently(v4, 10000));
	assert_true(gw_log_contains(&g, "reason=\"delivery failed, not acknowledged\""));
	close(v4);

	rd_kafka_mock_broker_set_up(km.mc, 1);
	uint8_t b[16];
	int n = -1;
	for (uint16_t pid = 10; pid < 40; pid++) {
		assert_int_equal(send_pub5(fd, 0x32, "kf/a", pid, "", 0, "after"), 0);
		n = raw_recv_packet(fd, b, sizeof(b), 10000);
		if (n == 4)
			break; /* 40 02: Kafka has it (the producer may need a retry to reconnect) */
		assert_int_equal(n, 5);
		assert_int_equal(b[4], 0x80);
	}
	assert_int_equal(n, 4);
	assert_int_equal(b[0], 0x40);
	close(fd);
}

/* Receive Maximum with QoS 1 waiting for Kafka: an MQTT 5 client is not
 * paused when max_inflight publishes wait for their PUBACK; the one over
 * is read at once and answered DISCONNECT 0x93, before Kafka's timeout
 * could have freed a place. (A paused client would get 0x80, 0x80 after
 * the timeout instead.) */
static void test_receive_maximum_waiting_for_kafka(void **state)
{
	uint8_t b[16];
	(void)state;
	kafka_up("(\"message.timeout.ms\", 4000)", "limits = { max_inflight = 2; };");
	int fd = connect5("m5p-rmax-kafka");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "kf/w", 1, "", 0, "warm"), 0);
	expect_hex(fd, "40 02 0001");
	rd_kafka_mock_broker_set_down(km.mc, 1);
	long long t0 = itutil_now_ms();
	for (uint16_t pid = 2; pid <= 4; pid++)
		assert_int_equal(send_pub5(fd, 0x32, "kf/r", pid, "", 0, "m"), 0);
	int n = raw_recv_packet(fd, b, sizeof(b), 3000);
	assert_int_equal(n, 3);
	assert_memory_equal(b, "\xe0\x01\x93", 3);
	assert_true(itutil_now_ms() - t0 < 3000);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

/* mqtt5.reject_when_busy: with the producer queue full (Kafka down, room
 * for 9 records) the 10th QoS 1 publish is answered 0x97 Quota exceeded,
 * in its turn behind the 9 that wait for Kafka (which fail: 0x80), and
 * the client is not paused: it is answered at once when it asks again. */
static void test_reject_when_busy(void **state)
{
	(void)state;
	kafka_up("(\"message.timeout.ms\", 3000), (\"queue.buffering.max.messages\", 10)",
		 "mqtt5 = { reject_when_busy = true; };");
	int fd = connect5("m5p-busy");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "kf/w", 1, "", 0, "warm"), 0);
	expect_hex(fd, "40 02 0001");
	rd_kafka_mock_broker_set_down(km.mc, 1);
	for (uint16_t pid = 2; pid <= 11; pid++)
		assert_int_equal(send_pub5(fd, 0x32, "kf/b", pid, "", 0, "m"), 0);
	for (uint16_t pid = 2; pid <= 10; pid++) {
		char want[32];
		snprintf(want, sizeof(want), "40 03 %04X 80", pid);
		expect_hex(fd, want);
	}
	expect_hex(fd, "40 03 000B 97");
	expect_open(fd);
	close(fd);
}

/* mqtt5.no_match_reason: a QoS 1/2 publish that no route and no subscriber
 * took gets 0x10 No matching subscribers (QoS 2: a success, the exchange
 * goes on with PUBREL/PUBCOMP); one a subscriber took, or Kafka took, gets
 * 0x00; a 3.1.1 client gets its plain PUBACK. (Default off: the other
 * tests and the vectors see 0x00.) */
static void test_no_match_reason(void **state)
{
	(void)state;
	kafka_up("(\"message.timeout.ms\", 3000)", "mqtt5 = { no_match_reason = true; };");
	int fd = connect5("m5p-nomatch");
	assert_true(fd >= 0);
	int sub = connect5("m5p-nomatch-sub");
	assert_true(sub >= 0);
	assert_int_equal(subscribe5(sub, "taken/#", 0), 0);

	assert_int_equal(send_pub5(fd, 0x32, "none/a", 1, "", 0, "x"), 0);
	expect_hex(fd, "40 03 0001 10");
	assert_int_equal(send_pub5(fd, 0x34, "none/a", 2, "", 0, "x"), 0);
	expect_hex(fd, "50 03 0002 10");
	assert_int_equal(raw_send_hex(fd, "62 02 0002"), 0);
	expect_hex(fd, "70 02 0002");
	assert_int_equal(send_pub5(fd, 0x32, "taken/a", 3, "", 0, "x"), 0);
	expect_hex(fd, "40 02 0003");
	assert_int_equal(send_pub5(fd, 0x32, "kf/a", 4, "", 0, "x"), 0);
	expect_hex(fd, "40 02 0004");
	expect_open(fd);

	int v4 = itutil_connect(g.port, "m5p-nomatch-v4", true, 0, NULL);
	assert_true(v4 >= 0);
	assert_int_equal(itutil_send_publish(v4, "none/a", "x", 1, 1, false, 7), 0);
	expect_hex(v4, "40 02 0007");
	close(v4);
	close(sub);
	close(fd);
}

/* ---- topic limits -------------------------------------------------------------- */

/* A PUBLISH topic over limits.max_topic_levels or max_topic_length: MQTT 5
 * gets DISCONNECT 0x90 Topic Name invalid ("not malformed, but not
 * accepted by this Server"; docs/mqtt5/errors.md), whatever its QoS; a
 * topic within the caps is acknowledged. 3.1.1 is closed without a word. */
static void test_topic_limits(void **state)
{
	(void)state;
	assert_int_equal(gw_start(&g, "limits = { max_topic_levels = 3; max_topic_length = 20; };"), 0);
	int fd = connect5("m5p-tl-levels");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "a/b/c", 1, "", 0, "ok"), 0);
	expect_hex(fd, "40 02 0001");
	assert_int_equal(send_pub5(fd, 0x32, "a/b/c/d", 2, "", 0, "deep"), 0);
	expect_hex(fd, "E0 01 90");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);

	fd = connect5("m5p-tl-length");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x30, "abcdefghijklmnopqrstu", 0, "", 0, "long"), 0);
	expect_hex(fd, "E0 01 90");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);

	int v4 = itutil_connect(g.port, "m5p-tl-v4", true, 0, NULL);
	assert_true(v4 >= 0);
	assert_int_equal(itutil_send_publish(v4, "a/b/c/d", "x", 1, 1, false, 1), 0);
	assert_true(itutil_closed_silently(v4, WAIT_MS));
	close(v4);
}

/* ---- ACL ---------------------------------------------------------------------- */

/* An ACL-denied QoS 1/2 PUBLISH: MQTT 5 gets PUBACK/PUBREC 0x87 Not
 * authorized in its turn and stays connected; the refused QoS 2 id is not
 * kept (a PUBREC >= 0x80 ends the flow, 5.0 4.3.3), so the same id again is
 * refused again, with no PUBREL expected. 3.1.1 gets its plain PUBACK, as
 * before. An allowed topic is acknowledged with success. */
static void test_acl_denied_not_authorized(void **state)
{
	(void)state;
	char dir[] = "/tmp/it-m5pub-XXXXXX", acl[300], cfg[600];
	assert_non_null(mkdtemp(dir));
	snprintf(acl, sizeof(acl), "%s/acl", dir);
	FILE *f = fopen(acl, "w");
	assert_non_null(f);
	fputs("topic readwrite ok/#\ntopic read ro/#\n", f);
	fclose(f);
	snprintf(cfg, sizeof(cfg), "auth = { acl_file = \"%s\"; allow_anonymous = true; };\n", acl);
	assert_int_equal(gw_start(&g, cfg), 0);

	int fd = connect5("m5p-acl");
	assert_true(fd >= 0);
	assert_int_equal(send_pub5(fd, 0x32, "ro/a", 1, "", 0, "no"), 0);
	assert_int_equal(send_pub5(fd, 0x34, "ro/a", 2, "", 0, "no"), 0);
	assert_int_equal(send_pub5(fd, 0x32, "ok/a", 3, "", 0, "yes"), 0);
	assert_int_equal(send_pub5(fd, 0x30, "ro/a", 0, "", 0, "qos0"), 0);
	expect_hex(fd, "40 03 0001 87");
	expect_hex(fd, "50 03 0002 87");
	expect_hex(fd, "40 02 0003");
	assert_int_equal(send_pub5(fd, 0x34, "ro/a", 2, "", 0, "again"), 0);
	expect_hex(fd, "50 03 0002 87");
	expect_open(fd);
	close(fd);

	int v4 = itutil_connect(g.port, "m5p-acl-v4", true, 0, NULL);
	assert_true(v4 >= 0);
	assert_int_equal(itutil_send_publish(v4, "ro/a", "x", 1, 1, false, 7), 0);
	expect_hex(v4, "40 02 0007");
	close(v4);
	unlink(acl);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alias_set_use_redefine, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_alias_over_maximum, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_alias_unknown, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_alias_per_connection, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_subscription_id_refused, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_receive_maximum, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_pubrel_unknown, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_pubrec_failure_from_client, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_properties_forwarded, gw_plain, gw_down),
		cmocka_unit_test_setup_teardown(test_message_expiry_in_queue, gw_plain, gw_down),
		cmocka_unit_test_teardown(test_kafka_failure_reason_code, gw_down),
		cmocka_unit_test_teardown(test_receive_maximum_waiting_for_kafka, gw_down),
		cmocka_unit_test_teardown(test_reject_when_busy, gw_down),
		cmocka_unit_test_teardown(test_no_match_reason, gw_down),
		cmocka_unit_test_teardown(test_acl_denied_not_authorized, gw_down),
		cmocka_unit_test_teardown(test_topic_limits, gw_down),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_mqtt5_publish", tests, NULL, NULL);
}
