/*
 * it_mqtt5_connect.c - the MQTT 5 connection lifecycle over real sockets:
 * CONNACK properties (raw bytes, exact values), Assigned Client Identifier,
 * Session Expiry Interval (capped, per session, changed by DISCONNECT, and
 * the protocol error section 3.14.2.2.2), Will Delay Interval [MQTT-3.1.3-9],
 * DISCONNECT 0x00 / 0x04 and the will, Authentication Method refused
 * (0x8C), AUTH refused (0x82), keepalive timeout (0x8D), takeover (0x8E),
 * Server Keep Alive from limits.max_keepalive [MQTT-3.2.2-21], shutdown
 * (0x8B); the session test uses paho.mqtt.c's MQTT 5 API.
 *
 *   make build/kafkagate build/tests/it_mqtt5_connect
 *   KG_BIN=build/kafkagate build/tests/it_mqtt5_connect      # ~20 s
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
#include "itutil.h"
#include "rawmqtt.h"

#define WAIT_MS 5000
/* The gateway's limits in this file: what CONNACK must say. */
#define MAX_INFLIGHT 20
#define ALIAS_MAX 7
#define MAX_KEEPALIVE 30
#define MAX_SESSION_EXPIRY 100
#define MAX_PACKET 100000
#define CFG "limits = { max_inflight = 20; topic_alias_maximum = 7; max_keepalive = 30; " \
	    "max_session_expiry = 100; max_packet_size = 100000; };"

static struct gw g;

static int group_setup(void **state)
{
	(void)state;
	return gw_start(&g, CFG);
}

static int group_teardown(void **state)
{
	(void)state;
	gw_stop(&g);
	return 0;
}

/* ---- raw MQTT 5 ----------------------------------------------------------- */

struct c5 {
	const char *id;            /* "" for none */
	bool clean;
	uint16_t keepalive;
	const uint8_t *props;      /* encoded CONNECT properties (< 128 bytes) */
	size_t plen;
	const char *will_topic;    /* NULL: no will */
	const char *will_payload;
	const uint8_t *wprops;     /* encoded will properties (< 128 bytes) */
	size_t wplen;
};

static size_t put_str(uint8_t *p, const void *s, size_t n)
{
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return n + 2;
}

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = v ? (uint8_t)(b | 0x80) : b;
	} while (v);
	return n;
}

static int build_connect5(uint8_t *out, const struct c5 *c)
{
	uint8_t body[512];
	size_t n = 0;

	n += put_str(body + n, "MQTT", 4);
	body[n++] = 5;
	body[n++] = (uint8_t)((c->clean ? 0x02 : 0) | (c->will_topic ? 0x04 : 0));
	body[n++] = (uint8_t)(c->keepalive >> 8);
	body[n++] = (uint8_t)c->keepalive;
	n += put_varint(body + n, c->plen);
	if (c->plen)
		memcpy(body + n, c->props, c->plen);
	n += c->plen;
	n += put_str(body + n, c->id, strlen(c->id));
	if (c->will_topic) {
		n += put_varint(body + n, c->wplen);
		if (c->wplen)
			memcpy(body + n, c->wprops, c->wplen);
		n += c->wplen;
		n += put_str(body + n, c->will_topic, strlen(c->will_topic));
		n += put_str(body + n, c->will_payload, strlen(c->will_payload));
	}
	out[0] = 0x10;
	size_t h = 1 + put_varint(out + 1, n);
	memcpy(out + h, body, n);
	return (int)(h + n);
}

/* A parsed CONNACK. */
struct connack {
	int len;                   /* packet length; <= 0: none */
	bool present;
	uint8_t rc;
	const uint8_t *props;
	size_t plen;
	uint8_t buf[512];
};

/* Sends the CONNECT and reads the next packet as CONNACK. Returns the fd. */
static int connect5(const struct c5 *c, struct connack *ca)
{
	uint8_t pkt[600];
	int fd = raw_connect_tcp(g.port);

	assert_true(fd >= 0);
	int n = build_connect5(pkt, c);
	assert_int_equal(raw_send(fd, pkt, (size_t)n), 0);
	memset(ca, 0, sizeof(*ca));
	ca->len = raw_recv_packet(fd, ca->buf, sizeof(ca->buf), WAIT_MS);
	if (ca->len >= 5 && ca->buf[0] == 0x20) {
		size_t i = 1;
		while (ca->buf[i] & 0x80)
			i++;
		i++;
		ca->present = ca->buf[i] & 1;
		ca->rc = ca->buf[i + 1];
		size_t pl = 0, shift = 0, j = i + 2;
		do {
			pl |= (size_t)(ca->buf[j] & 0x7f) << shift;
			shift += 7;
		} while (ca->buf[j++] & 0x80);
		ca->props = ca->buf + j;
		ca->plen = pl;
	}
	return fd;
}

/* Connects and asserts CONNACK 0x00 with the given session present flag. */
static int connect5_ok(const struct c5 *c, bool present)
{
	struct connack ca;
	int fd = connect5(c, &ca);

	assert_true(ca.len > 0);
	assert_int_equal(ca.buf[0], 0x20);
	assert_int_equal(ca.rc, 0);
	assert_int_equal(ca.present, present);
	return fd;
}

/* Value size of property id: 1, 2, 4, -1 varint, -2 string/binary, -3 pair. */
static int prop_size(uint8_t id)
{
	switch (id) {
	case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a:
		return 1;
	case 0x13: case 0x21: case 0x22: case 0x23:
		return 2;
	case 0x02: case 0x11: case 0x18: case 0x27:
		return 4;
	case 0x0b:
		return -1;
	case 0x26:
		return -3;
	default:
		return -2;
	}
}

/* Finds property id: its integer value or its string. Counts occurrences. */
static int prop_find(const uint8_t *p, size_t len, uint8_t id, uint32_t *val, char *str,
		     size_t cap)
{
	size_t i = 0;
	int found = 0;

	while (i < len) {
		uint8_t pid = p[i++];
		int sz = prop_size(pid);
		uint32_t v = 0;
		if (sz > 0) {
			for (int k = 0; k < sz; k++)
				v = v << 8 | p[i + (size_t)k];
			if (pid == id && val)
				*val = v;
			i += (size_t)sz;
		} else if (sz == -1) {
			unsigned shift = 0;
			do {
				v |= (uint32_t)(p[i] & 0x7f) << shift;
				shift += 7;
			} while (p[i++] & 0x80);
			if (pid == id && val)
				*val = v;
		} else {
			size_t l = (size_t)p[i] << 8 | p[i + 1];
			if (pid == id && str) {
				size_t m = l < cap - 1 ? l : cap - 1;
				memcpy(str, p + i + 2, m);
				str[m] = '\0';
			}
			i += 2 + l;
			if (sz == -3) {
				l = (size_t)p[i] << 8 | p[i + 1];
				i += 2 + l;
			}
		}
		found += pid == id;
	}
	assert_int_equal(i, len);
	return found;
}

/* The next packet must be DISCONNECT with reason rc, then the close. */
static void expect_disconnect(int fd, uint8_t rc, int timeout_ms)
{
	uint8_t buf[64];
	int n = raw_recv_packet(fd, buf, sizeof(buf), timeout_ms);

	assert_true(n >= 3);
	assert_int_equal(buf[0], 0xe0);
	assert_int_equal(buf[2], rc);
	assert_true(raw_closed_within(fd, WAIT_MS));
}

/* DISCONNECT with a reason code and, when expiry >= 0, Session Expiry. */
static void send_disconnect5(int fd, uint8_t rc, long long expiry)
{
	uint8_t p[16] = { 0xe0, 2, rc, 0 };
	size_t n = 4;

	if (expiry >= 0) {
		p[1] = 7;
		p[3] = 5;
		p[4] = 0x11;
		p[5] = (uint8_t)(expiry >> 24);
		p[6] = (uint8_t)(expiry >> 16);
		p[7] = (uint8_t)(expiry >> 8);
		p[8] = (uint8_t)expiry;
		n = 9;
	}
	assert_int_equal(raw_send(fd, p, n), 0);
}

#define EXPIRY(s) 0x11, (uint8_t)((s) >> 24), (uint8_t)((s) >> 16), (uint8_t)((s) >> 8), (uint8_t)(s)
#define WILL_DELAY(s) 0x18, 0, 0, (uint8_t)((s) >> 8), (uint8_t)(s)

/* A 3.1.1 observer subscribed to filter at QoS 1. */
static int observer(const char *id, const char *filter)
{
	int fd = itutil_connect(g.port, id, true, 20, NULL);

	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, filter, 1), 0);
	return fd;
}

/* ---- tests ---------------------------------------------------------------- */

/* A client's Maximum Packet Size smaller than the full CONNACK (22 bytes
 * here) [MQTT-3.1.2-24]: the "available" flags go first (absent means 1),
 * then Topic Alias Maximum (absent means 0, and an alias is then refused,
 * 0x94); Receive Maximum and Maximum Packet Size always stay. Below that,
 * no CONNACK: the connection is closed. */
static void test_connack_trimmed(void **state)
{
	struct connack ca;
	uint32_t v = 0;
	uint8_t b[16];
	(void)state;
	const uint8_t p20[] = { 0x27, 0, 0, 0, 20 }, p13[] = { 0x27, 0, 0, 0, 13 },
		      p12[] = { 0x27, 0, 0, 0, 12 }, p22[] = { 0x27, 0, 0, 0, 22 };

	int fd = connect5(&(struct c5){ .id = "m5-trim22", .clean = true, .keepalive = 10,
					.props = p22, .plen = 5 }, &ca);
	assert_int_equal(ca.len, 22); /* exactly fits: all of it */
	assert_int_equal(prop_find(ca.props, ca.plen, 0x28, &v, NULL, 0), 1);
	close(fd);

	fd = connect5(&(struct c5){ .id = "m5-trim20", .clean = true, .keepalive = 10,
				    .props = p20, .plen = 5 }, &ca);
	assert_int_equal(ca.len, 16);
	assert_int_equal(ca.rc, 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x21, &v, NULL, 0), 1);
	assert_int_equal(v, MAX_INFLIGHT);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x27, &v, NULL, 0), 1);
	assert_int_equal(v, MAX_PACKET + 4);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x22, &v, NULL, 0), 1);
	assert_int_equal(v, ALIAS_MAX);
	for (uint8_t id = 0x28; id <= 0x2a; id++)
		assert_int_equal(prop_find(ca.props, ca.plen, id, NULL, NULL, 0), 0);
	close(fd);

	fd = connect5(&(struct c5){ .id = "m5-trim13", .clean = true, .keepalive = 10,
				    .props = p13, .plen = 5 }, &ca);
	assert_int_equal(ca.len, 13);
	assert_int_equal(ca.rc, 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x21, &v, NULL, 0), 1);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x27, &v, NULL, 0), 1);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x22, NULL, NULL, 0), 0);
	/* No aliases announced, none accepted: PUBLISH "t" with Topic Alias 1. */
	assert_int_equal(raw_send_hex(fd, "30 08 0001 74 03 230001 78"), 0);
	assert_int_equal(raw_recv_packet(fd, b, sizeof(b), WAIT_MS), 3);
	assert_memory_equal(b, "\xe0\x01\x94", 3);
	close(fd);

	fd = connect5(&(struct c5){ .id = "m5-trim12", .clean = true, .keepalive = 10,
				    .props = p12, .plen = 5 }, &ca);
	assert_true(ca.len <= 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_connack_properties(void **state)
{
	struct connack ca;
	uint32_t v = 0;
	(void)state;

	int fd = connect5(&(struct c5){ .id = "m5-props", .clean = true, .keepalive = 10 }, &ca);
	assert_int_equal(ca.rc, 0);
	assert_false(ca.present);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x21, &v, NULL, 0), 1);
	assert_int_equal(v, MAX_INFLIGHT); /* Receive Maximum = max_inflight */
	assert_int_equal(prop_find(ca.props, ca.plen, 0x22, &v, NULL, 0), 1);
	assert_int_equal(v, ALIAS_MAX);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x27, &v, NULL, 0), 1);
	/* The whole packet: remaining length max_packet_size + header (1 + 3). */
	assert_int_equal(v, MAX_PACKET + 4);
	for (uint8_t id = 0x28; id <= 0x2a; id++) {
		assert_int_equal(prop_find(ca.props, ca.plen, id, &v, NULL, 0), 1);
		assert_int_equal(v, 1);
	}
	/* Supported, hence absent: Maximum QoS, Retain Available; nothing was
	 * capped or assigned. */
	assert_int_equal(prop_find(ca.props, ca.plen, 0x24, NULL, NULL, 0), 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x25, NULL, NULL, 0), 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x11, NULL, NULL, 0), 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x12, NULL, NULL, 0), 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x13, NULL, NULL, 0), 0);
	assert_int_equal(itutil_ping(fd), 0);
	close(fd);
}

static void test_server_keepalive_and_expiry_cap(void **state)
{
	struct connack ca;
	uint32_t v = 0;
	(void)state;

	/* Keepalive 0 and 100 are over max_keepalive 30: capped, not refused. */
	uint16_t asks[] = { 0, 100 };
	for (size_t i = 0; i < 2; i++) {
		int fd = connect5(&(struct c5){ .id = "m5-ska", .clean = true,
						 .keepalive = asks[i] }, &ca);
		assert_int_equal(ca.rc, 0);
		assert_int_equal(prop_find(ca.props, ca.plen, 0x13, &v, NULL, 0), 1);
		assert_int_equal(v, MAX_KEEPALIVE); /* [MQTT-3.2.2-21] */
		close(fd);
	}
	/* Session Expiry over max_session_expiry: CONNACK says what it got. */
	uint8_t pr[] = { EXPIRY(100000) };
	int fd = connect5(&(struct c5){ .id = "m5-cap", .clean = true, .keepalive = 10,
					 .props = pr, .plen = sizeof(pr) }, &ca);
	assert_int_equal(ca.rc, 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x11, &v, NULL, 0), 1);
	assert_int_equal(v, MAX_SESSION_EXPIRY);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x13, NULL, NULL, 0), 0);
	close(fd);
	/* 3.1.1 keeps its refusal: CONNACK 2. */
	uint8_t rc = 0xff;
	fd = raw_mqtt_connect(g.port, "m5-ska311", true, 0, &rc, NULL);
	assert_int_equal(rc, 2);
	if (fd >= 0)
		close(fd);
}

static void test_assigned_client_id(void **state)
{
	struct connack ca;
	char id[128] = "";
	uint8_t pr[] = { EXPIRY(60) };
	(void)state;

	/* Empty id with Clean Start 0 is allowed at level 5 [MQTT-3.1.3-6]. */
	int fd = connect5(&(struct c5){ .id = "", .clean = false, .keepalive = 10, .props = pr,
					 .plen = sizeof(pr) }, &ca);
	assert_int_equal(ca.rc, 0);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x12, NULL, id, sizeof(id)), 1);
	assert_true(strncmp(id, "kg-", 3) == 0);
	assert_true(strlen(id) > 10);
	send_disconnect5(fd, 0, -1);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	/* The id names the session it kept (expiry 60). */
	fd = connect5_ok(&(struct c5){ .id = id, .clean = false, .keepalive = 10, .props = pr,
				       .plen = sizeof(pr) }, true);
	send_disconnect5(fd, 0, 0); /* and ends it */
	close(fd);
	/* A second empty id gets another one. */
	char id2[128] = "";
	fd = connect5(&(struct c5){ .id = "", .clean = true, .keepalive = 10 }, &ca);
	assert_int_equal(prop_find(ca.props, ca.plen, 0x12, NULL, id2, sizeof(id2)), 1);
	assert_string_not_equal(id, id2);
	close(fd);
}

/* paho.mqtt.c MQTT 5: a session with expiry 2 s keeps its subscription and
 * queued message across a reconnect inside it, and is gone after it. */
static MQTTClient paho5(const char *id)
{
	char uri[64];
	MQTTClient cl;
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;

	co.MQTTVersion = MQTTVERSION_5;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	assert_int_equal(MQTTClient_createWithOptions(&cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE,
						      NULL, &co), MQTTCLIENT_SUCCESS);
	return cl;
}

/* (This paho fills options.returned.sessionPresent for 3.1.1 only: the
 * flag itself is checked on raw connections; here the behaviour is.) */
static void paho5_connect(MQTTClient cl, bool clean, int expiry)
{
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL };

	p.value.integer4 = (unsigned)expiry;
	MQTTProperties_add(&props, &p);
	o.keepAliveInterval = 20;
	o.cleanstart = clean;
	MQTTResponse r = MQTTClient_connect5(cl, &o, &props, NULL);
	MQTTProperties_free(&props);
	assert_int_equal(r.reasonCode, 0);
	MQTTResponse_free(r);
}

static void test_session_expiry_paho(void **state)
{
	MQTTClient cl = paho5("m5-sess");
	char *topic = NULL;
	int tlen = 0;
	MQTTClient_message *m = NULL;
	(void)state;

	paho5_connect(cl, true, 2);
	MQTTResponse r = MQTTClient_subscribe5(cl, "m5/sess/t", 1, NULL, NULL);
	assert_int_equal(r.reasonCode, 1);
	MQTTResponse_free(r);
	assert_int_equal(MQTTClient_disconnect5(cl, 1000, MQTTREASONCODE_NORMAL_DISCONNECTION, NULL),
			 MQTTCLIENT_SUCCESS);
	/* Offline: a QoS 1 message waits in the session. */
	int pub = itutil_connect(g.port, "m5-sess-pub", true, 20, NULL);
	assert_true(pub >= 0);
	assert_int_equal(itutil_send_publish(pub, "m5/sess/t", "kept", 4, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x40, 1, WAIT_MS), 0);
	/* Back inside the interval: subscription and queued message kept. */
	paho5_connect(cl, false, 2);
	assert_int_equal(MQTTClient_receive(cl, &topic, &tlen, &m, WAIT_MS), MQTTCLIENT_SUCCESS);
	assert_non_null(m);
	assert_int_equal(m->payloadlen, 4);
	assert_memory_equal(m->payload, "kept", 4);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	assert_int_equal(MQTTClient_disconnect5(cl, 1000, MQTTREASONCODE_NORMAL_DISCONNECTION, NULL),
			 MQTTCLIENT_SUCCESS);
	/* After it (2 s + the 250 ms sweep): gone. */
	itutil_sleep_ms(3000);
	paho5_connect(cl, false, 0);
	assert_int_equal(itutil_send_publish(pub, "m5/sess/t", "lost", 4, 1, false, 2), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x40, 2, WAIT_MS), 0);
	topic = NULL;
	m = NULL;
	MQTTClient_receive(cl, &topic, &tlen, &m, 500);
	assert_null(m); /* no subscription survived */
	MQTTClient_disconnect5(cl, 1000, MQTTREASONCODE_NORMAL_DISCONNECTION, NULL);
	MQTTClient_destroy(&cl);
	/* Session Expiry 0 (absent): nothing is kept at all. */
	int fd = connect5_ok(&(struct c5){ .id = "m5-sess0", .clean = true, .keepalive = 10 }, false);
	send_disconnect5(fd, 0, -1);
	close(fd);
	fd = connect5_ok(&(struct c5){ .id = "m5-sess0", .clean = false, .keepalive = 10 }, false);
	close(fd);
	close(pub);
}

static void test_disconnect_session_expiry(void **state)
{
	uint8_t pr0[] = { EXPIRY(0) }, pr1[] = { EXPIRY(1) }, pr30[] = { EXPIRY(30) };
	(void)state;

	/* CONNECT said 0: a DISCONNECT that sets it is a protocol error. */
	int fd = connect5_ok(&(struct c5){ .id = "m5-dse", .clean = true, .keepalive = 10,
					   .props = pr0, .plen = sizeof(pr0) }, false);
	send_disconnect5(fd, 0, 5);
	expect_disconnect(fd, 0x82, WAIT_MS); /* 5.0 section 3.14.2.2.2 (unnumbered) */
	close(fd);
	/* 1 s at CONNECT, 60 at DISCONNECT: alive after 2 s. */
	fd = connect5_ok(&(struct c5){ .id = "m5-dse", .clean = true, .keepalive = 10,
				       .props = pr1, .plen = sizeof(pr1) }, false);
	send_disconnect5(fd, 0, 60);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	itutil_sleep_ms(2000);
	fd = connect5_ok(&(struct c5){ .id = "m5-dse", .clean = false, .keepalive = 10,
				       .props = pr30, .plen = sizeof(pr30) }, true);
	/* 30 at CONNECT, 0 at DISCONNECT: ends at once. */
	send_disconnect5(fd, 0, 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	fd = connect5_ok(&(struct c5){ .id = "m5-dse", .clean = false, .keepalive = 10,
				       .props = pr30, .plen = sizeof(pr30) }, false);
	send_disconnect5(fd, 0, 0);
	close(fd);
}

static void test_will_delay(void **state)
{
	struct itutil_pkt p;
	uint8_t pr[] = { EXPIRY(60) }, wd[] = { WILL_DELAY(2) };
	struct c5 v = { .id = "m5-wd", .clean = true, .keepalive = 10, .props = pr,
			.plen = sizeof(pr), .will_topic = "m5/will/wd", .will_payload = "gone",
			.wprops = wd, .wplen = sizeof(wd) };
	(void)state;

	int obs = observer("m5-wd-obs", "m5/will/#");
	/* Dropped, back within the delay: the will is never sent [MQTT-3.1.3-9]. */
	int fd = connect5_ok(&v, false);
	close(fd);
	itutil_sleep_ms(700);
	v.clean = false;
	fd = connect5_ok(&v, true);
	assert_true(itutil_quiet(obs, 2500));
	/* Dropped for good: the will arrives after the delay, once. */
	long long t0 = itutil_now_ms();
	close(fd);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	long long dt = itutil_now_ms() - t0;
	assert_string_equal(p.topic, "m5/will/wd");
	assert_string_equal(p.payload, "gone");
	assert_true(dt >= 1800);
	assert_true(itutil_quiet(obs, 1000));
	/* The session ends before the delay: the will goes then (3.1.3.2.2). */
	uint8_t pr1[] = { EXPIRY(1) }, wd30[] = { WILL_DELAY(30) };
	struct c5 v2 = { .id = "m5-wd2", .clean = true, .keepalive = 10, .props = pr1,
			 .plen = sizeof(pr1), .will_topic = "m5/will/wd2", .will_payload = "ended",
			 .wprops = wd30, .wplen = sizeof(wd30) };
	fd = connect5_ok(&v2, false);
	t0 = itutil_now_ms();
	close(fd);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	dt = itutil_now_ms() - t0;
	assert_string_equal(p.topic, "m5/will/wd2");
	assert_true(dt >= 800 && dt < 4000);
	/* The session of m5-wd is still there (expiry 60): clear it. */
	v.clean = true;
	v.will_topic = NULL;
	fd = connect5_ok(&v, false);
	send_disconnect5(fd, 0, 0);
	close(fd);
	close(obs);
}

static void test_disconnect_reason_and_will(void **state)
{
	struct itutil_pkt p;
	/* Will properties of every kind a will may carry, to be taken apart:
	 * payload format, message expiry, content type, response topic,
	 * correlation data, a user property. */
	static const uint8_t wp[] = { 0x01, 1, 0x02, 0, 0, 0, 60, 0x03, 0, 1, 't',
				      0x08, 0, 3, 'r', '/', 't', 0x09, 0, 2, 0xc0, 0xde,
				      0x26, 0, 1, 'k', 0, 1, 'v' };
	struct c5 v = { .id = "m5-dw", .clean = true, .keepalive = 10,
			.will_topic = "m5/dwill/a", .will_payload = "w", .wprops = wp,
			.wplen = sizeof(wp) };
	(void)state;

	int obs = observer("m5-dw-obs", "m5/dwill/#");
	/* 0x00: the will is discarded [MQTT-3.14.4-3]. */
	int fd = connect5_ok(&v, false);
	send_disconnect5(fd, 0x00, -1);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	assert_true(itutil_quiet(obs, 800));
	/* 0x04 Disconnect with Will Message: published. */
	fd = connect5_ok(&v, false);
	send_disconnect5(fd, 0x04, -1);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "m5/dwill/a");
	close(obs);
}

static void test_auth_method_refused(void **state)
{
	uint8_t pr[] = { 0x15, 0, 5, 'S', 'C', 'R', 'A', 'M' };
	struct connack ca;
	(void)state;

	int fd = connect5(&(struct c5){ .id = "m5-am", .clean = true, .keepalive = 10,
					 .props = pr, .plen = sizeof(pr) }, &ca);
	assert_int_equal(ca.len, 5);
	assert_memory_equal(ca.buf, "\x20\x03\x00\x8c\x00", 5); /* Bad authentication method */
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_auth_packet_refused(void **state)
{
	(void)state;
	int fd = connect5_ok(&(struct c5){ .id = "m5-auth", .clean = true, .keepalive = 10 }, false);
	assert_int_equal(raw_send_hex(fd, "F0 02 18 00"), 0); /* Continue authentication */
	expect_disconnect(fd, 0x82, WAIT_MS);
	close(fd);
}

/* Packets only a server sends: a protocol error whatever their body; with
 * invalid header flags, malformed (5.0 2.1.3); type 0 is forbidden. */
static void test_server_only_packets(void **state)
{
	static const struct { const char *hex; uint8_t rc; } cases[] = {
		{ "20 03 00 00 00", 0x82 },    /* CONNACK */
		{ "20 01 00", 0x82 },          /* CONNACK, too short to decode */
		{ "90 04 00 01 00 00", 0x82 }, /* SUBACK */
		{ "B0 04 00 01 00 00", 0x82 }, /* UNSUBACK */
		{ "D0 00", 0x82 },             /* PINGRESP */
		{ "D1 00", 0x82 },             /* PINGRESP, reserved flag set: the type is
		                                  refused first (docs/mqtt5/errors.md) */
		{ "00 00", 0x82 },             /* reserved type 0 */
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("%s\n", cases[i].hex);
		int fd = connect5_ok(&(struct c5){ .id = "m5-srv", .clean = true, .keepalive = 10 },
				     false);
		assert_int_equal(raw_send_hex(fd, cases[i].hex), 0);
		expect_disconnect(fd, cases[i].rc, WAIT_MS);
		close(fd);
	}
}

static void test_keepalive_timeout(void **state)
{
	(void)state;
	long long t0 = itutil_now_ms();
	int fd = connect5_ok(&(struct c5){ .id = "m5-ka", .clean = true, .keepalive = 1 }, false);
	expect_disconnect(fd, 0x8d, 4000); /* after 1.5 s of silence */
	assert_true(itutil_now_ms() - t0 >= 1400);
	close(fd);
}

static void test_takeover(void **state)
{
	(void)state;
	int a = connect5_ok(&(struct c5){ .id = "m5-to", .clean = true, .keepalive = 10 }, false);
	int b = connect5_ok(&(struct c5){ .id = "m5-to", .clean = true, .keepalive = 10 }, false);
	expect_disconnect(a, 0x8e, WAIT_MS); /* [MQTT-3.1.4-3] */
	assert_int_equal(itutil_ping(b), 0);
	close(a);
	/* Taken over with Clean Start 0: the session is resumed even though
	 * the old connection's expiry was 0 [MQTT-3.1.4-4]. */
	int c = connect5_ok(&(struct c5){ .id = "m5-to", .clean = false, .keepalive = 10 }, true);
	expect_disconnect(b, 0x8e, WAIT_MS);
	close(b);
	close(c);
}

static void test_shutdown(void **state)
{
	struct gw g2;
	(void)state;

	assert_int_equal(gw_start(&g2, NULL), 0);
	int port = g.port;
	g.port = g2.port;
	int fd = connect5_ok(&(struct c5){ .id = "m5-sd", .clean = true, .keepalive = 10 }, false);
	g.port = port;
	gw_stop(&g2);
	expect_disconnect(fd, 0x8b, WAIT_MS); /* Server shutting down */
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connack_properties),
		cmocka_unit_test(test_connack_trimmed),
		cmocka_unit_test(test_server_keepalive_and_expiry_cap),
		cmocka_unit_test(test_assigned_client_id),
		cmocka_unit_test(test_session_expiry_paho),
		cmocka_unit_test(test_disconnect_session_expiry),
		cmocka_unit_test(test_will_delay),
		cmocka_unit_test(test_disconnect_reason_and_will),
		cmocka_unit_test(test_auth_method_refused),
		cmocka_unit_test(test_auth_packet_refused),
		cmocka_unit_test(test_server_only_packets),
		cmocka_unit_test(test_keepalive_timeout),
		cmocka_unit_test(test_takeover),
		cmocka_unit_test(test_shutdown),
	};

	return cmocka_run_group_tests_name("it_mqtt5_connect", tests, group_setup, group_teardown);
}
