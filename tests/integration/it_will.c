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

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"

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
	int fd = itutil_connect_with(g.port, &c, NULL);

	assert_true(fd >= 0);
	return fd;
}

static void test_will_on_abnormal_close(void **state)
{
	int obs = itutil_connect(g.port, "it-will-obs1", true, 0, NULL);
	int victim;
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-will/abn", 1), 0);
	victim = connect_with_will("it-will-v1", "it-will/abn", "gone", 1, false, 0);
	close(victim); /* no DISCONNECT */
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-will/abn");
	assert_string_equal(p.payload, "gone");
	assert_int_equal(p.qos, 1);
	assert_false(p.retain);
	close(obs);
}

static void test_no_will_after_disconnect(void **state)
{
	int obs = itutil_connect(g.port, "it-will-obs2", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-will-pub2", true, 0, NULL);
	int victim;
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-will/dis/#", 1), 0);
	victim = connect_with_will("it-will-v2", "it-will/dis/will", "gone", 1, false, 0);
	assert_int_equal(raw_send_hex(victim, "E0 00"), 0);
	/* The server's close: the will, if any, was handed over before it. */
	assert_true(raw_closed_within(victim, WAIT_MS));
	close(victim);
	assert_int_equal(raw_mqtt_publish(pub, "it-will/dis/marker", "m", 1, 1, false, 1), 0);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-will/dis/marker");
	assert_true(itutil_quiet(obs, 300));
	close(obs);
	close(pub);
}

static void test_will_on_keepalive_timeout(void **state)
{
	int obs = itutil_connect(g.port, "it-will-obs3", true, 0, NULL);
	int victim;
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-will/ka", 0), 0);
	victim = connect_with_will("it-will-v3", "it-will/ka", "silent", 0, false, 1);
	/* Keepalive 1 s of silence: closed after 1.5 s, will published. */
	assert_int_equal(itutil_recv_acked(obs, &p, 4000), 0);
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
	int obs = itutil_connect(g.port, "it-will-obs4", true, 0, NULL);
	int victim, late, clr;
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-will/ret", 1), 0);
	victim = connect_with_will("it-will-v4", "it-will/ret", "kept", 1, true, 0);
	close(victim);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "kept");
	assert_false(p.retain);
	close(obs);

	late = itutil_connect(g.port, "it-will-late", true, 0, NULL);
	assert_true(late >= 0);
	assert_int_equal(itutil_subscribe(late, 1, "it-will/ret", 1), 0);
	assert_int_equal(itutil_recv_acked(late, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-will/ret");
	assert_string_equal(p.payload, "kept");
	assert_int_equal(p.qos, 1);
	assert_true(p.retain);
	close(late);

	/* Clear it so that reruns against the same gateway start empty. */
	clr = itutil_connect(g.port, "it-will-clr", true, 0, NULL);
	assert_true(clr >= 0);
	assert_int_equal(raw_mqtt_publish(clr, "it-will/ret", "", 0, 1, true, 1), 0);
	assert_int_equal(itutil_ping(clr), 0);
	close(clr);
}

/* The will goes out at its own QoS (subscriber granted 2). */
static void test_will_qos(void **state)
{
	int obs = itutil_connect(g.port, "it-will-obs5", true, 0, NULL);
	(void)state;

	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-will/q/#", 2), 0);
	for (uint8_t q = 0; q < 3; q++) {
		char id[32], topic[32];
		struct itutil_pkt p;
		int victim;

		snprintf(id, sizeof(id), "it-will-q%u", q);
		snprintf(topic, sizeof(topic), "it-will/q/%u", q);
		victim = connect_with_will(id, topic, "q", q, false, 0);
		close(victim);
		assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, topic);
		assert_int_equal(p.qos, q);
	}
	close(obs);
}

/*
 * Connections without a will end abnormally three ways (socket closed, a
 * malformed packet, keepalive expired): nothing is published for them
 * [MQTT-3.1.2-12]. The observer watches '#'; once the server has logged
 * every close, 500 ms of silence and then a marker as the next packet show
 * that nothing was on its way.
 */
static void test_no_will_without_flag(void **state)
{
	static const char *const ids[] = { "it-will-none-ka", "it-will-none-eof",
					   "it-will-none-bad" };
	int obs = itutil_connect(g.port, "it-will-obs6", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-will-pub6", true, 0, NULL);
	int fd[3];
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "#", 1), 0);
	/* The store is empty: the PINGRESP is the next packet. */
	assert_int_equal(itutil_ping(obs), 0);
	for (int i = 0; i < 3; i++) {
		fd[i] = itutil_connect(g.port, ids[i], true, i == 0 ? 1 : 0, NULL);
		assert_true(fd[i] >= 0);
	}
	close(fd[1]); /* no DISCONNECT */
	assert_int_equal(raw_send_hex(fd[2], "30 07 0003 612F2B 6869"), 0); /* topic "a/+" */
	assert_true(raw_closed_within(fd[2], WAIT_MS));
	assert_true(raw_closed_within(fd[0], WAIT_MS)); /* keepalive 1 s, no packet */
	for (int i = 0; i < 3; i++) {
		char needle[64];

		snprintf(needle, sizeof(needle), "conn close client=\"%s\" addr=", ids[i]);
		assert_true(gw_log_wait(&g, needle, WAIT_MS));
		if (i != 1)
			close(fd[i]);
	}
	assert_true(itutil_quiet(obs, 500));
	assert_int_equal(raw_mqtt_publish(pub, "it-will/none/marker", "m", 1, 1, false, 1), 0);
	assert_int_equal(itutil_recv_acked(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-will/none/marker");
	close(obs);
	close(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_will_on_abnormal_close),
		cmocka_unit_test(test_no_will_after_disconnect),
		cmocka_unit_test(test_will_on_keepalive_timeout),
		cmocka_unit_test(test_will_retain),
		cmocka_unit_test(test_will_qos),
		cmocka_unit_test(test_no_will_without_flag),
	};

	return cmocka_run_group_tests_name("it_will", tests, group_setup, group_teardown);
}
