/*
 * it_retain.c - retained messages: set, replace, clear with an empty
 * payload, the RETAIN flag on delivery, QoS of stored messages, wildcard
 * and '$' matching of the store.
 *
 * Retained messages are sent right after the SUBACK, before anything the
 * connection asks next, so a PINGREQ sent after the SUBSCRIBE ends them:
 * what arrives before the PINGRESP is everything the store matched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
	size_t len;
};

static int connect_ok(const char *id)
{
	uint8_t rc = 0xff;
	int fd = raw_mqtt_connect(g.port, id, true, 0, &rc, NULL);

	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	return fd;
}

/* Reads one packet: returns 1 for a PUBLISH (filled in *p, QoS 1/2 acked),
 * 0 for a PINGRESP; fails the test on anything else. */
static int recv_publish_or_pingresp(int fd, struct pub *p)
{
	uint8_t b[512], out[4];
	int n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
	size_t tlen, off;
	uint16_t pid = 0;

	if (n == 2 && b[0] == 0xD0)
		return 0;
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
	p->len = (size_t)n - off;
	assert_true(p->len < sizeof(p->payload));
	memcpy(p->payload, b + off, p->len);
	p->payload[p->len] = '\0';
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
	return 1;
}

/* Subscribes to filter at qos and collects what the store sends, up to the
 * PINGRESP that follows. Returns how many PUBLISHes arrived (at most max). */
static size_t subscribe_collect(int fd, const char *filter, uint8_t qos, struct pub *got,
				size_t max)
{
	uint8_t out[256], in[16];
	int n = raw_build_subscribe(out, sizeof(out), 4, 1, filter, qos);
	size_t k = 0;

	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 5);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[4], qos);
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	for (;;) {
		struct pub p;

		if (recv_publish_or_pingresp(fd, &p) == 0)
			return k;
		assert_true(k < max);
		got[k++] = p;
	}
}

/* A fresh connection that subscribes and returns what the store holds. */
static size_t fresh_collect(const char *filter, uint8_t qos, struct pub *got, size_t max)
{
	int fd = connect_ok("it-ret-reader");
	size_t n = subscribe_collect(fd, filter, qos, got, max);

	close(fd);
	return n;
}

/* Publishes with RETAIN 1; returns once the server has handled it (the
 * PINGRESP behind it came back), so a reader on another connection sees it. */
static void publish_retained(int fd, const char *topic, const char *payload, uint8_t qos)
{
	static uint16_t pid;
	uint8_t in[8];

	pid = (uint16_t)(pid % 1000 + 1);
	assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), qos, true, pid), 0);
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 2);
	assert_int_equal(in[0], 0xD0);
}

static void test_set_replace_clear(void **state)
{
	int pub = connect_ok("it-ret-pub");
	struct pub got[4];
	(void)state;

	assert_int_equal(fresh_collect("it-ret/a", 0, got, 4), 0);

	publish_retained(pub, "it-ret/a", "v1", 1);
	assert_int_equal(fresh_collect("it-ret/a", 1, got, 4), 1);
	assert_string_equal(got[0].topic, "it-ret/a");
	assert_string_equal(got[0].payload, "v1");
	assert_true(got[0].retain);
	assert_int_equal(got[0].qos, 1);

	publish_retained(pub, "it-ret/a", "v2", 1);
	assert_int_equal(fresh_collect("it-ret/a", 1, got, 4), 1);
	assert_string_equal(got[0].payload, "v2");
	assert_true(got[0].retain);

	/* An empty retained message clears the topic [MQTT-3.3.1-10]. */
	publish_retained(pub, "it-ret/a", "", 1);
	assert_int_equal(fresh_collect("it-ret/a", 1, got, 4), 0);
	assert_int_equal(fresh_collect("it-ret/#", 1, got, 4), 0);
	close(pub);
}

/* RETAIN 1 only when sent from the store; 0 to an existing subscriber
 * [MQTT-3.3.1-8], [MQTT-3.3.1-9]. */
static void test_retain_flag_live_vs_stored(void **state)
{
	int sub = connect_ok("it-ret-live");
	int pub = connect_ok("it-ret-pub2");
	struct pub got[2], p;
	(void)state;

	assert_int_equal(subscribe_collect(sub, "it-ret/live", 1, got, 2), 0);
	publish_retained(pub, "it-ret/live", "hello", 1);
	assert_int_equal(recv_publish_or_pingresp(sub, &p), 1);
	assert_string_equal(p.topic, "it-ret/live");
	assert_string_equal(p.payload, "hello");
	assert_false(p.retain);

	assert_int_equal(fresh_collect("it-ret/live", 1, got, 2), 1);
	assert_string_equal(got[0].payload, "hello");
	assert_true(got[0].retain);

	/* The clearing message itself is delivered live, with RETAIN 0. */
	publish_retained(pub, "it-ret/live", "", 0);
	assert_int_equal(recv_publish_or_pingresp(sub, &p), 1);
	assert_int_equal(p.len, 0);
	assert_false(p.retain);
	close(sub);
	close(pub);
}

/* Subscribing again to the same filter sends the retained messages again
 * [MQTT-3.8.4-3]. */
static void test_resubscribe_resends(void **state)
{
	int pub = connect_ok("it-ret-pub5"), fd;
	struct pub got[2];
	(void)state;

	publish_retained(pub, "it-ret/again", "r", 0);
	fd = connect_ok("it-ret-again");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(subscribe_collect(fd, "it-ret/again", 0, got, 2), 1);
		assert_string_equal(got[0].payload, "r");
		assert_true(got[0].retain);
	}
	close(fd);
	publish_retained(pub, "it-ret/again", "", 0);
	close(pub);
}

/* A stored message goes out at min(its QoS, granted QoS). */
static void test_stored_qos(void **state)
{
	int pub = connect_ok("it-ret-pub3");
	struct pub got[2];
	(void)state;

	publish_retained(pub, "it-ret/q1", "q", 1);
	assert_int_equal(fresh_collect("it-ret/q1", 0, got, 2), 1);
	assert_int_equal(got[0].qos, 0);
	assert_true(got[0].retain);
	assert_int_equal(fresh_collect("it-ret/q1", 2, got, 2), 1);
	assert_int_equal(got[0].qos, 1);
	assert_true(got[0].retain);
	publish_retained(pub, "it-ret/q1", "", 0);
	close(pub);
}

static void test_wildcard_and_dollar(void **state)
{
	int pub = connect_ok("it-ret-pub4");
	struct pub got[8];
	bool seen[3] = { false };
	size_t n;
	(void)state;

	publish_retained(pub, "it-ret/w/1", "1", 0);
	publish_retained(pub, "it-ret/w/2", "2", 0);
	publish_retained(pub, "it-ret/w/3/x", "3", 0);
	n = fresh_collect("it-ret/w/+", 0, got, 8);
	assert_int_equal(n, 2);
	n = fresh_collect("it-ret/w/#", 0, got, 8);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		int k = got[i].payload[0] - '1';

		assert_true(k >= 0 && k < 3 && !seen[k]);
		assert_true(got[i].retain);
		seen[k] = true;
	}

	/* '$' topics are not sent to "+/..." or "#" filters [MQTT-4.7.2-1]. */
	publish_retained(pub, "$it-ret/rtx", "dollar", 0);
	publish_retained(pub, "it-ret-norm/rtx", "norm", 0);
	n = fresh_collect("+/rtx", 0, got, 8);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].topic, "it-ret-norm/rtx");
	n = fresh_collect("$it-ret/#", 0, got, 8);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].payload, "dollar");
	close(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_replace_clear),
		cmocka_unit_test(test_retain_flag_live_vs_stored),
		cmocka_unit_test(test_resubscribe_resends),
		cmocka_unit_test(test_stored_qos),
		cmocka_unit_test(test_wildcard_and_dollar),
	};

	return cmocka_run_group_tests_name("it_retain", tests, group_setup, group_teardown);
}
