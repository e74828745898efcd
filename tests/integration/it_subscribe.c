/*
 * it_subscribe.c - topic filters on the wire: + and #, '$' topics,
 * overlapping subscriptions, re-subscription, SUBACK codes, UNSUBSCRIBE.
 *
 * Every subscriber also subscribes MARKER; the publisher publishes the
 * marker last, and since one publisher's messages arrive in order, what a
 * subscriber read before the marker is all it was going to get.
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
#define MARKER "it-sub/end"

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

/* A subscriber of filter (QoS qos) and of MARKER. */
static int subscriber(const char *id, const char *filter, uint8_t qos)
{
	int fd = itutil_connect(g.port, id, true, 0, NULL);

	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, filter, qos), 0);
	assert_int_equal(itutil_subscribe(fd, 2, MARKER, 0), 0);
	return fd;
}

static void publish(int fd, const char *topic, uint8_t qos)
{
	static uint16_t pid;

	pid = (uint16_t)(pid % 1000 + 1);
	assert_int_equal(raw_mqtt_publish(fd, topic, topic, strlen(topic), qos, false, pid), 0);
}

/* Reads PUBLISHes up to the marker; checks they are exactly want[0..n) in
 * order (payload = topic, as publish() sends). */
static void expect_topics(int fd, const char *const *want, size_t n)
{
	for (size_t i = 0;; i++) {
		struct itutil_pkt p;

		assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
		if (strcmp(p.topic, MARKER) == 0) {
			if (i != n)
				print_error("marker after %zu messages, wanted %zu\n", i, n);
			assert_int_equal(i, n);
			return;
		}
		if (i >= n || strcmp(p.topic, want[i]) != 0)
			print_error("message %zu: got '%s', wanted '%s'\n", i, p.topic,
				    i < n ? want[i] : "(marker)");
		assert_true(i < n);
		assert_string_equal(p.topic, want[i]);
		assert_string_equal(p.payload, want[i]);
		assert_false(p.retain);
	}
}

/* ---- + and # [MQTT 4.7] ------------------------------------------------- */

static const char *const topics[] = {
	"sport/tennis/player1", "sport/tennis/player2", "sport/tennis", "sport",
	"sport/", "finance/x", "/finance", "a/b/c/d",
};

struct filter_case {
	const char *filter;
	int match[9];   /* indexes into topics[], -1 terminated */
};

static const struct filter_case filters[] = {
	{ "sport/#", { 0, 1, 2, 3, 4, -1 } },   /* includes the parent "sport" */
	{ "sport/tennis/+", { 0, 1, -1 } },
	{ "sport/+", { 2, 4, -1 } },            /* "sport/" has an empty level */
	{ "+/+", { 2, 4, 5, 6, -1 } },
	{ "+", { 3, -1 } },
	{ "/+", { 6, -1 } },
	{ "#", { 0, 1, 2, 3, 4, 5, 6, 7, -1 } },
	{ "+/tennis/#", { 0, 1, 2, -1 } },
	{ "a/+/c/#", { 7, -1 } },
	{ "sport/tennis/player1", { 0, -1 } },
	{ "Sport/#", { -1 } },
};

static void test_wildcards(void **state)
{
	enum { NF = sizeof(filters) / sizeof(filters[0]) };
	int fd[NF], pub;
	(void)state;

	for (size_t i = 0; i < NF; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-sub-w%zu", i);
		fd[i] = subscriber(id, filters[i].filter, 0);
	}
	pub = itutil_connect(g.port, "it-sub-w-pub", true, 0, NULL);
	assert_true(pub >= 0);
	for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++)
		publish(pub, topics[t], 1);
	publish(pub, MARKER, 0);
	for (size_t i = 0; i < NF; i++) {
		const char *want[9];
		size_t n = 0;

		print_message("filter %s\n", filters[i].filter);
		for (const int *m = filters[i].match; *m >= 0; m++)
			want[n++] = topics[*m];
		expect_topics(fd[i], want, n);
		close(fd[i]);
	}
	close(pub);
}

/* ---- '$' topics: not matched by filters starting with a wildcard [MQTT-4.7.2-1] */

static void test_dollar_topics(void **state)
{
	static const char *const dollar[] = { "$test/x" };
	int hash = subscriber("it-sub-d1", "#", 0);
	int plus = subscriber("it-sub-d2", "+/x", 0);
	int dhash = subscriber("it-sub-d3", "$test/#", 0);
	int dplus = subscriber("it-sub-d4", "$test/+", 1);
	int pub = itutil_connect(g.port, "it-sub-d-pub", true, 0, NULL);
	(void)state;

	assert_true(pub >= 0);
	publish(pub, "$test/x", 1);
	publish(pub, MARKER, 0);
	expect_topics(hash, NULL, 0);
	expect_topics(plus, NULL, 0);
	expect_topics(dhash, dollar, 1);
	expect_topics(dplus, dollar, 1);
	close(hash);
	close(plus);
	close(dhash);
	close(dplus);
	close(pub);
}

/* ---- overlapping subscriptions: one copy at the highest granted QoS ------ */

static void test_overlapping_once(void **state)
{
	int fd = subscriber("it-sub-ov", "it-sub/ov/#", 0);
	int pub = itutil_connect(g.port, "it-sub-ov-pub", true, 0, NULL);
	const char *want[] = { "it-sub/ov/a", "it-sub/ov/b", "it-sub/ov/b/c" };
	const uint8_t qos[] = { 2, 1, 0 };
	(void)state;

	assert_true(pub >= 0);
	assert_int_equal(itutil_subscribe(fd, 3, "it-sub/ov/a", 2), 0);
	assert_int_equal(itutil_subscribe(fd, 4, "it-sub/ov/+", 1), 0);
	/* One at a time: a second copy would show up as the next packet. */
	for (int i = 0; i < 3; i++) {
		struct itutil_pkt p;

		publish(pub, want[i], 2);
		assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, want[i]);
		assert_int_equal(p.qos, qos[i]);
	}
	publish(pub, MARKER, 0);
	expect_topics(fd, NULL, 0);
	close(fd);
	close(pub);
}

/* Subscribing again to the same filter replaces its QoS [MQTT-3.8.4-3]. */
static void test_resubscribe_replaces(void **state)
{
	int fd = subscriber("it-sub-rs", "it-sub/rs", 0);
	int pub = itutil_connect(g.port, "it-sub-rs-pub", true, 0, NULL);
	struct itutil_pkt p;
	(void)state;

	assert_true(pub >= 0);
	assert_int_equal(itutil_subscribe(fd, 3, "it-sub/rs", 1), 0);
	publish(pub, "it-sub/rs", 1);
	publish(pub, MARKER, 0);
	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-sub/rs");
	assert_int_equal(p.qos, 1);
	expect_topics(fd, NULL, 0);
	close(fd);
	close(pub);
}

/* One SUBSCRIBE, three filters: one SUBACK code each, in order [MQTT-3.8.4-5]. */
static void test_suback_codes_in_order(void **state)
{
	int fd = itutil_connect(g.port, "it-sub-multi", true, 0, NULL);
	uint8_t in[16];
	(void)state;

	assert_true(fd >= 0);
	/* pid 0x0A0B; it-sub/m0 QoS 2, it-sub/m1 QoS 0, it-sub/m2 QoS 1 */
	assert_int_equal(raw_send_hex(fd, "82 26 0A0B"
				      " 0009 69742D7375622F6D30 02"
				      " 0009 69742D7375622F6D31 00"
				      " 0009 69742D7375622F6D32 01"), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 7);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[1], 5);
	assert_int_equal(in[2], 0x0A);
	assert_int_equal(in[3], 0x0B);
	assert_int_equal(in[4], 2);
	assert_int_equal(in[5], 0);
	assert_int_equal(in[6], 1);
	close(fd);
}

/* An invalid filter is never granted: the server answers 0x80 for it or
 * closes the connection [MQTT-4.7.1-2], [MQTT-4.7.1-3]. */
static void test_invalid_filter_not_granted(void **state)
{
	static const char *const bad[] = { "a/#/b", "a/b#", "a+", "+a/b", "#/" };
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[64], in[16];
		int fd = itutil_connect(g.port, "it-sub-bad", true, 0, NULL), n;

		print_message("filter %s\n", bad[i]);
		assert_true(fd >= 0);
		n = raw_build_subscribe(out, sizeof(out), 4, 5, bad[i], 0);
		assert_int_equal(raw_send(fd, out, (size_t)n), 0);
		n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
		if (n == 5 && in[0] == 0x90)
			assert_int_equal(in[4], 0x80);
		else
			assert_true(n == 0 || (n < 0 && raw_closed_within(fd, 100)));
		close(fd);
	}
}

/* ---- UNSUBSCRIBE ----------------------------------------------------------- */

static void test_unsubscribe(void **state)
{
	int fd = subscriber("it-sub-un", "it-sub/un/a", 1);
	int pub = itutil_connect(g.port, "it-sub-un-pub", true, 0, NULL);
	static const char *const first[] = { "it-sub/un/a" };
	uint8_t out[64], in[16];
	int n;
	(void)state;

	assert_true(pub >= 0);
	publish(pub, "it-sub/un/a", 1);
	publish(pub, MARKER, 0);
	expect_topics(fd, first, 1);

	n = raw_build_unsubscribe(out, sizeof(out), 4, 0x1234, "it-sub/un/a");
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
	assert_int_equal(in[0], 0xB0);
	assert_int_equal(in[1], 0x02);
	assert_int_equal(in[2], 0x12);
	assert_int_equal(in[3], 0x34);

	/* A filter that was never subscribed still gets its UNSUBACK [MQTT-3.10.4-5]. */
	n = raw_build_unsubscribe(out, sizeof(out), 4, 0x0777, "it-sub/never/#");
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
	assert_int_equal(in[0], 0xB0);
	assert_int_equal(in[2] << 8 | in[3], 0x0777);

	publish(pub, "it-sub/un/a", 1);
	publish(pub, MARKER, 0);
	expect_topics(fd, NULL, 0);
	close(fd);
	close(pub);
}

/* ---- UNSUBSCRIBE completes the deliveries under way [MQTT-3.10.4-3] ------ */

/* UNSUBSCRIBE filter; the next packet must be its UNSUBACK. */
static void unsubscribe(int fd, uint16_t pid, const char *filter)
{
	uint8_t out[64];
	int n = raw_build_unsubscribe(out, sizeof(out), 4, pid, filter);

	assert_true(n > 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(fd, 0xB0, pid, WAIT_MS), 0);
}

/* Reconnects a clean session 0 client; its session must still be there. */
static int reconnect(const char *id)
{
	bool present = false;
	int fd = itutil_connect(g.port, id, false, 0, &present);

	assert_true(fd >= 0);
	assert_true(present);
	return fd;
}

/*
 * Two QoS 1 messages are under way when the subscription goes. The PUBACK
 * for the first is taken on the same connection; the second, never
 * acknowledged, is still owed after a reconnect (sent again with DUP 1),
 * and once acknowledged it is not sent again.
 */
static void test_unsubscribe_completes_qos1(void **state)
{
	int fd = itutil_connect(g.port, "it-sub-uq1", false, 0, NULL);
	int pub = itutil_connect(g.port, "it-sub-uq1-pub", true, 0, NULL);
	struct itutil_pkt m1, m2, p;
	(void)state;

	assert_true(fd >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "it-sub/uq1", 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-sub/uq1", "one", 3, 1, false, 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-sub/uq1", "two", 3, 1, false, 2), 0);
	assert_int_equal(itutil_recv_publish(fd, &m1, WAIT_MS), 0);
	assert_int_equal(itutil_recv_publish(fd, &m2, WAIT_MS), 0);
	assert_string_equal(m1.payload, "one");
	assert_string_equal(m2.payload, "two");
	assert_int_equal(m1.qos, 1);
	assert_int_equal(m2.qos, 1);

	unsubscribe(fd, 3, "it-sub/uq1");
	assert_int_equal(itutil_send_ack(fd, 0x40, m1.pid), 0);
	assert_int_equal(itutil_ping(fd), 0);
	close(fd); /* "two" unacknowledged */

	fd = reconnect("it-sub-uq1");
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_int_equal(p.first, 0x3A); /* QoS 1, DUP 1 */
	assert_int_equal(p.pid, m2.pid);
	assert_string_equal(p.topic, "it-sub/uq1");
	assert_string_equal(p.payload, "two");
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	assert_int_equal(itutil_ping(fd), 0);
	assert_int_equal(raw_send_hex(fd, "E0 00"), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);

	fd = reconnect("it-sub-uq1");
	assert_int_equal(itutil_ping(fd), 0); /* nothing left to resend */
	close(fd);
	close(itutil_connect(g.port, "it-sub-uq1", true, 0, NULL)); /* drop the session */
	close(pub);
}

/*
 * A QoS 2 message is under way when the subscription goes: the PUBREC
 * still gets its PUBREL, the flow state survives a reconnect (the PUBREL
 * is sent again) and the PUBCOMP ends it.
 */
static void test_unsubscribe_completes_qos2(void **state)
{
	int fd = itutil_connect(g.port, "it-sub-uq2", false, 0, NULL);
	int pub = itutil_connect(g.port, "it-sub-uq2-pub", true, 0, NULL);
	struct itutil_pkt m;
	(void)state;

	assert_true(fd >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "it-sub/uq2", 2), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-sub/uq2", "q2", 2, 2, false, 1), 0);
	assert_int_equal(itutil_recv_publish(fd, &m, WAIT_MS), 0);
	assert_int_equal(m.first, 0x34); /* QoS 2, DUP 0 */
	assert_string_equal(m.payload, "q2");

	unsubscribe(fd, 2, "it-sub/uq2");
	assert_int_equal(itutil_send_ack(fd, 0x50, m.pid), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x62, m.pid, WAIT_MS), 0);
	close(fd); /* no PUBCOMP */

	fd = reconnect("it-sub-uq2");
	assert_int_equal(itutil_expect_ack(fd, 0x62, m.pid, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(fd, 0x70, m.pid), 0);
	assert_int_equal(itutil_ping(fd), 0);
	assert_int_equal(raw_send_hex(fd, "E0 00"), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);

	fd = reconnect("it-sub-uq2");
	assert_int_equal(itutil_ping(fd), 0); /* the flow is complete */
	close(fd);
	close(itutil_connect(g.port, "it-sub-uq2", true, 0, NULL));
	close(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wildcards),
		cmocka_unit_test(test_dollar_topics),
		cmocka_unit_test(test_overlapping_once),
		cmocka_unit_test(test_resubscribe_replaces),
		cmocka_unit_test(test_suback_codes_in_order),
		cmocka_unit_test(test_invalid_filter_not_granted),
		cmocka_unit_test(test_unsubscribe),
		cmocka_unit_test(test_unsubscribe_completes_qos1),
		cmocka_unit_test(test_unsubscribe_completes_qos2),
	};

	return cmocka_run_group_tests_name("it_subscribe", tests, group_setup, group_teardown);
}
