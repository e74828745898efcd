/*
 * it_will.c - the will message: published when the connection ends without
 * DISCONNECT (socket closed, keepalive expired), not after DISCONNECT; its
 * QoS and RETAIN flag are honoured. (Wills after a protocol error are
 * checked by every malformed-packet case in it_connect.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "rawmqtt.h"

#define WAIT_MS 5000

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

struct pub {
	uint8_t qos;
	bool retain;
	char topic[128];
	char payload[128];
};

static int connect_ok(const char *id)
{
	uint8_t rc = 0xff;
	int fd = raw_mqtt_connect(g.port, id, true, 0, &rc, NULL);

	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	return fd;
}

/* A connection whose will is (topic, payload, qos, retain). */
static int connect_with_will(const char *id, const char *topic, const char *payload,
			     uint8_t qos, bool retain, uint16_t keepalive)
{
	struct raw_connect c = {
		.client_id = id, .clean = true, .keepalive = keepalive,
		.will_topic = topic, .will_payload = payload,
		.will_payload_len = (uint16_t)strlen(payload), .will_qos = qos,
		.will_retain = retain,
	};
	uint8_t rc = 0xff;
	int fd = raw_connect_tcp(g.port);

	assert_true(fd >= 0);
	assert_int_equal(raw_mqtt_handshake(fd, &c, &rc, NULL, WAIT_MS), 0);
	assert_int_equal(rc, 0);
	return fd;
}

static void subscribe(int fd, const char *filter, uint8_t qos)
{
	uint8_t out[256], in[16];
	int n = raw_build_subscribe(out, sizeof(out), 4, 1, filter, qos);

	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 5);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[4], qos);
}

/* Receives one PUBLISH within timeout_ms and completes its QoS flow. */
static void recv_publish(int fd, struct pub *p, int timeout_ms)
{
	uint8_t b[512], out[4];
	int n = raw_recv_packet(fd, b, sizeof(b), timeout_ms);
	size_t tlen, off;
	uint16_t pid = 0;

	if (n <= 0 || (b[0] & 0xF0) != 0x30)
		print_error("expected PUBLISH, got %d bytes, type 0x%02X\n", n, n > 0 ? b[0] : 0);
	assert_true(n > 4 && (b[0] & 0xF0) == 0x30 && b[1] < 0x80);
	p->qos = (b[0] >> 1) & 3;
	p->retain = b[0] & 1;
	tlen = (size_t)b[2] << 8 | b[3];
	assert_true(tlen < sizeof(p->topic) && 4 + tlen <= (size_t)n);
	memcpy(p->topic, b + 4, tlen);
	p->topic[tlen] = '\0';
	off = 4 + tlen;
	if (p->qos) {
		pid = (uint16_t)(b[off] << 8 | b[off + 1]);
		off += 2;
	}
	assert_true((size_t)n - off < sizeof(p->payload));
	memcpy(p->payload, b + off, (size_t)n - off);
	p->payload[(size_t)n - off] = '\0';
	if (p->qos == 1) {
		raw_build_ack(out, sizeof(out), 0x40, pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
	} else if (p->qos == 2) {
		raw_build_ack(out, sizeof(out), 0x50, pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
		assert_int_equal(raw_recv_packet(fd, b, sizeof(b), WAIT_MS), 4);
		assert_int_equal(b[0], 0x62);
		raw_build_ack(out, sizeof(out), 0x70, pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
	}
}

static void test_will_on_abnormal_close(void **state)
{
	int obs = connect_ok("it-will-obs1");
	int victim;
	struct pub p;
	(void)state;

	subscribe(obs, "it-will/abn", 1);
	victim = connect_with_will("it-will-v1", "it-will/abn", "gone", 1, false, 0);
	close(victim); /* no DISCONNECT */
	recv_publish(obs, &p, WAIT_MS);
	assert_string_equal(p.topic, "it-will/abn");
	assert_string_equal(p.payload, "gone");
	assert_int_equal(p.qos, 1);
	assert_false(p.retain);
	close(obs);
}

static void test_no_will_after_disconnect(void **state)
{
	int obs = connect_ok("it-will-obs2");
	int pub = connect_ok("it-will-pub2");
	int victim;
	struct pub p;
	uint8_t b[64];
	(void)state;

	subscribe(obs, "it-will/dis/#", 1);
	victim = connect_with_will("it-will-v2", "it-will/dis/will", "gone", 1, false, 0);
	assert_int_equal(raw_send_hex(victim, "E0 00"), 0);
	/* The server's close: the will, if any, was handed over before it. */
	assert_true(raw_closed_within(victim, WAIT_MS));
	close(victim);
	assert_int_equal(raw_mqtt_publish(pub, "it-will/dis/marker", "m", 1, 1, false, 1), 0);
	recv_publish(obs, &p, WAIT_MS);
	assert_string_equal(p.topic, "it-will/dis/marker");
	errno = 0;
	assert_int_equal(raw_recv_packet(obs, b, sizeof(b), 300), -1);
	assert_int_equal(errno, ETIMEDOUT);
	close(obs);
	close(pub);
}

static void test_will_on_keepalive_timeout(void **state)
{
	int obs = connect_ok("it-will-obs3");
	int victim;
	struct pub p;
	(void)state;

	subscribe(obs, "it-will/ka", 0);
	victim = connect_with_will("it-will-v3", "it-will/ka", "silent", 0, false, 1);
	/* Keepalive 1 s of silence: closed after 1.5 s, will published. */
	recv_publish(obs, &p, 4000);
	assert_string_equal(p.topic, "it-will/ka");
	assert_string_equal(p.payload, "silent");
	assert_true(raw_closed_within(victim, WAIT_MS));
	close(victim);
	close(obs);
}

/* A will with RETAIN 1 is stored: live subscribers get RETAIN 0, later
 * subscribers get it from the store with RETAIN 1. */
static void test_will_retain(void **state)
{
	int obs = connect_ok("it-will-obs4");
	int victim, late, clr;
	struct pub p;
	uint8_t b[16];
	(void)state;

	subscribe(obs, "it-will/ret", 1);
	victim = connect_with_will("it-will-v4", "it-will/ret", "kept", 1, true, 0);
	close(victim);
	recv_publish(obs, &p, WAIT_MS);
	assert_string_equal(p.payload, "kept");
	assert_false(p.retain);
	close(obs);

	late = connect_ok("it-will-late");
	subscribe(late, "it-will/ret", 1);
	recv_publish(late, &p, WAIT_MS);
	assert_string_equal(p.topic, "it-will/ret");
	assert_string_equal(p.payload, "kept");
	assert_int_equal(p.qos, 1);
	assert_true(p.retain);
	close(late);

	/* Clear it so that reruns against the same gateway start empty. */
	clr = connect_ok("it-will-clr");
	assert_int_equal(raw_mqtt_publish(clr, "it-will/ret", "", 0, 1, true, 1), 0);
	assert_int_equal(raw_send_hex(clr, "C0 00"), 0);
	assert_int_equal(raw_recv_packet(clr, b, sizeof(b), WAIT_MS), 2);
	close(clr);
}

/* The will goes out at its own QoS (subscriber granted 2). */
static void test_will_qos(void **state)
{
	int obs = connect_ok("it-will-obs5");
	(void)state;

	subscribe(obs, "it-will/q/#", 2);
	for (uint8_t q = 0; q < 3; q++) {
		char id[32], topic[32];
		struct pub p;
		int victim;

		snprintf(id, sizeof(id), "it-will-q%u", q);
		snprintf(topic, sizeof(topic), "it-will/q/%u", q);
		victim = connect_with_will(id, topic, "q", q, false, 0);
		close(victim);
		recv_publish(obs, &p, WAIT_MS);
		assert_string_equal(p.topic, topic);
		assert_int_equal(p.qos, q);
	}
	close(obs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_will_on_abnormal_close),
		cmocka_unit_test(test_no_will_after_disconnect),
		cmocka_unit_test(test_will_on_keepalive_timeout),
		cmocka_unit_test(test_will_retain),
		cmocka_unit_test(test_will_qos),
	};

	return cmocka_run_group_tests_name("it_will", tests, group_setup, group_teardown);
}
