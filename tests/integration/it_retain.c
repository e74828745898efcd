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

/* Reads one packet: returns 1 for a PUBLISH (filled in *p, QoS 1/2 acked),
 * 0 for a PINGRESP; fails the test on anything else. */
static int recv_publish_or_pingresp(int fd, struct itutil_pkt *p)
{
	int n = itutil_recv(fd, p, WAIT_MS);

	if (n == 2 && p->first == 0xD0)
		return 0;
	if (n <= 0 || (p->first & 0xF0) != 0x30)
		print_error("expected PUBLISH, got %d bytes, type 0x%02X\n", n, n > 0 ? p->first : 0);
	assert_true(n > 4 && (p->first & 0xF0) == 0x30);
	assert_int_equal(itutil_ack_publish(fd, p), 0);
	return 1;
}

/* Subscribes to filter at qos and collects what the store sends, up to the
 * PINGRESP that follows. Returns how many PUBLISHes arrived (at most max). */
static size_t subscribe_collect(int fd, const char *filter, uint8_t qos, struct itutil_pkt *got,
				size_t max)
{
	size_t k = 0;

	assert_int_equal(itutil_subscribe(fd, 1, filter, qos), 0);
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	for (;;) {
		struct itutil_pkt p;

		if (recv_publish_or_pingresp(fd, &p) == 0)
			return k;
		assert_true(k < max);
		got[k++] = p;
	}
}

/* A fresh connection that subscribes and returns what the store holds. */
static size_t fresh_collect(const char *filter, uint8_t qos, struct itutil_pkt *got, size_t max)
{
	int fd = itutil_connect(g.port, "it-ret-reader", true, 0, NULL);
	size_t n;

	assert_true(fd >= 0);
	n = subscribe_collect(fd, filter, qos, got, max);

	close(fd);
	return n;
}

/* Publishes with RETAIN 1; returns once the server has handled it (the
 * PINGRESP behind it came back), so a reader on another connection sees it. */
static void publish_retained(int fd, const char *topic, const char *payload, uint8_t qos)
{
	static uint16_t pid;

	pid = (uint16_t)(pid % 1000 + 1);
	assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), qos, true, pid), 0);
	assert_int_equal(itutil_ping(fd), 0);
}

static void test_set_replace_clear(void **state)
{
	int pub = itutil_connect(g.port, "it-ret-pub", true, 0, NULL);
	struct itutil_pkt got[4];
	(void)state;

	assert_true(pub >= 0);
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
	int sub = itutil_connect(g.port, "it-ret-live", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-ret-pub2", true, 0, NULL);
	struct itutil_pkt got[2], p;
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
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
	int pub = itutil_connect(g.port, "it-ret-pub5", true, 0, NULL), fd;
	struct itutil_pkt got[2];
	(void)state;

	assert_true(pub >= 0);
	publish_retained(pub, "it-ret/again", "r", 0);
	fd = itutil_connect(g.port, "it-ret-again", true, 0, NULL);
	assert_true(fd >= 0);
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
	int pub = itutil_connect(g.port, "it-ret-pub3", true, 0, NULL);
	struct itutil_pkt got[2];
	(void)state;

	assert_true(pub >= 0);
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
	int pub = itutil_connect(g.port, "it-ret-pub4", true, 0, NULL);
	struct itutil_pkt got[8];
	bool seen[3] = { false };
	size_t n;
	(void)state;

	assert_true(pub >= 0);
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

/*
 * RETAIN 0 leaves the store alone [MQTT-3.3.1-12]: it neither replaces
 * nor clears (not even with an empty payload) the message retained for its
 * topic, and stores nothing for a topic that has none.
 */
static void test_retain0_not_stored(void **state)
{
	int pub = itutil_connect(g.port, "it-ret-pub6", true, 0, NULL);
	struct itutil_pkt got[2];
	(void)state;

	assert_true(pub >= 0);
	publish_retained(pub, "it-ret/r0", "orig", 1);
	assert_int_equal(raw_mqtt_publish(pub, "it-ret/r0", "other", 5, 1, false, 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-ret/r0", "", 0, 0, false, 0), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-ret/r0-none", "u", 1, 1, false, 2), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-ret/r0-none", "u", 1, 2, false, 3), 0);
	assert_int_equal(itutil_ping(pub), 0);

	assert_int_equal(fresh_collect("it-ret/r0", 1, got, 2), 1);
	assert_string_equal(got[0].topic, "it-ret/r0");
	assert_string_equal(got[0].payload, "orig");
	assert_int_equal(got[0].qos, 1);
	assert_true(got[0].retain);
	assert_int_equal(fresh_collect("it-ret/r0-none", 2, got, 2), 0);
	publish_retained(pub, "it-ret/r0", "", 0);
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
		cmocka_unit_test(test_retain0_not_stored),
	};

	return cmocka_run_group_tests_name("it_retain", tests, group_setup, group_teardown);
}
