/*
 * it_session.c - clean session 0 and 1: subscriptions and QoS 1 messages
 * kept across a disconnect, session present, redelivery of unacknowledged
 * PUBLISH (DUP set) and PUBREL, and the bounded offline queue.
 *
 * A PINGREQ sent right after CONNACK is a barrier: the server resends the
 * session's in-flight and queued messages before it reads the PINGREQ, so
 * everything before the PINGRESP is what the session held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Reads the next packet (any type), which must arrive. */
static void recv_pkt(int fd, struct itutil_pkt *p)
{
	int n = itutil_recv(fd, p, WAIT_MS);

	if (n < 2)
		print_error("no packet (%d)\n", n);
	assert_true(n >= 2);
}

/* Connects; checks CONNACK 0 and the session present flag. */
static int connect_session(int port, const char *id, bool clean, bool want_present)
{
	bool present = !want_present;
	int fd = itutil_connect(port, id, clean, 0, &present);

	assert_true(fd >= 0);
	if (present != want_present)
		print_error("%s: session present %d, wanted %d\n", id, present, want_present);
	assert_int_equal(present, want_present);
	return fd;
}

/* DISCONNECT and wait for the server's close, so the session is offline. */
static void disconnect(int fd)
{
	assert_int_equal(raw_send_hex(fd, "E0 00"), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void send_ping(int fd)
{
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
}

static void expect_pingresp(int fd)
{
	struct itutil_pkt p;

	recv_pkt(fd, &p);
	if (p.first != 0xD0)
		print_error("expected PINGRESP, got 0x%02X topic '%s'\n", p.first, p.topic);
	assert_int_equal(p.first, 0xD0);
}

static void publish_n(int port, const char *topic, int from, int to)
{
	int fd = itutil_connect(port, "it-ses-pub", true, 0, NULL);

	assert_true(fd >= 0);
	for (int i = from; i < to; i++) {
		char payload[16];

		snprintf(payload, sizeof(payload), "%d", i);
		assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), 1, false,
						  (uint16_t)(i + 1)), 0);
	}
	close(fd);
}

static void test_persistent_session_keeps_subs_and_messages(void **state)
{
	int fd = connect_session(g.port, "it-ses-p", false, false);
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/p", 1), 0);
	disconnect(fd);
	publish_n(g.port, "it-ses/p", 0, 3);

	fd = connect_session(g.port, "it-ses-p", false, true);
	for (int i = 0; i < 3; i++) {
		char want[16];

		snprintf(want, sizeof(want), "%d", i);
		recv_pkt(fd, &p);
		assert_int_equal(p.first & 0xF0, 0x30);
		assert_string_equal(p.topic, "it-ses/p");
		assert_string_equal(p.payload, want);
		assert_int_equal(p.qos, 1);
		assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	}
	/* The subscription is still there without subscribing again. */
	publish_n(g.port, "it-ses/p", 3, 4);
	recv_pkt(fd, &p);
	assert_string_equal(p.payload, "3");
	assert_false(p.dup);
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	disconnect(fd);
	/* Leave nothing behind for reruns: end the session. */
	close(connect_session(g.port, "it-ses-p", true, false));
}

static void test_clean_session_keeps_nothing(void **state)
{
	int fd = connect_session(g.port, "it-ses-c", false, false);
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/c", 1), 0);
	disconnect(fd);
	publish_n(g.port, "it-ses/c", 0, 1); /* queued for the offline session */

	/* Clean session 1 discards the old session: no present flag, no queued
	 * message, no old subscription [MQTT-3.1.2-6]. */
	fd = connect_session(g.port, "it-ses-c", true, false);
	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/c-end", 0), 0);
	publish_n(g.port, "it-ses/c", 1, 2);
	publish_n(g.port, "it-ses/c-end", 2, 3);
	recv_pkt(fd, &p);
	if (strcmp(p.topic, "it-ses/c-end") != 0)
		print_error("got '%s' payload '%s' from a discarded session\n", p.topic, p.payload);
	assert_string_equal(p.topic, "it-ses/c-end");
	disconnect(fd);

	/* ... and a clean session 1 is not kept after it ends either. */
	fd = connect_session(g.port, "it-ses-c", false, false);
	disconnect(fd);
	close(connect_session(g.port, "it-ses-c", true, false));
}

static void test_redelivery_qos1_dup(void **state)
{
	int fd = connect_session(g.port, "it-ses-r1", false, false);
	struct itutil_pkt first, p;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/r1", 1), 0);
	publish_n(g.port, "it-ses/r1", 0, 1);
	recv_pkt(fd, &first);
	assert_int_equal(first.first, 0x32); /* QoS 1, DUP 0 */
	close(fd); /* no PUBACK, no DISCONNECT */

	fd = connect_session(g.port, "it-ses-r1", false, true);
	send_ping(fd);
	recv_pkt(fd, &p);
	assert_int_equal(p.first, 0x3A); /* QoS 1, DUP 1 [MQTT-4.4.0-1], [MQTT-3.3.1-1] */
	assert_int_equal(p.pid, first.pid);
	assert_string_equal(p.topic, "it-ses/r1");
	assert_string_equal(p.payload, "0");
	expect_pingresp(fd);
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	disconnect(fd);

	/* Acknowledged: not sent again. */
	fd = connect_session(g.port, "it-ses-r1", false, true);
	send_ping(fd);
	expect_pingresp(fd);
	disconnect(fd);
	close(connect_session(g.port, "it-ses-r1", true, false));
}

static void test_redelivery_qos2_publish_then_pubrel(void **state)
{
	int fd = connect_session(g.port, "it-ses-r2", false, false);
	struct itutil_pkt first, p;
	int pub;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/r2", 2), 0);
	pub = itutil_connect(g.port, "it-ses-pub2", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-ses/r2", "x", 1, 2, false, 9), 0);
	close(pub);
	recv_pkt(fd, &first);
	assert_int_equal(first.first, 0x34); /* QoS 2, DUP 0 */
	close(fd); /* no PUBREC */

	fd = connect_session(g.port, "it-ses-r2", false, true);
	recv_pkt(fd, &p);
	assert_int_equal(p.first, 0x3C); /* QoS 2, DUP 1 */
	assert_int_equal(p.pid, first.pid);
	assert_string_equal(p.payload, "x");
	assert_int_equal(itutil_send_ack(fd, 0x50, p.pid), 0);
	recv_pkt(fd, &p);
	assert_int_equal(p.first, 0x62);
	assert_int_equal(p.pid, first.pid);
	close(fd); /* no PUBCOMP */

	/* The PUBREL is resent, not the PUBLISH. */
	fd = connect_session(g.port, "it-ses-r2", false, true);
	send_ping(fd);
	recv_pkt(fd, &p);
	assert_int_equal(p.first, 0x62);
	assert_int_equal(p.pid, first.pid);
	expect_pingresp(fd);
	assert_int_equal(itutil_send_ack(fd, 0x70, p.pid), 0);
	disconnect(fd);

	fd = connect_session(g.port, "it-ses-r2", false, true);
	send_ping(fd);
	expect_pingresp(fd);
	disconnect(fd);
	close(connect_session(g.port, "it-ses-r2", true, false));
}

/* A clean session 1 connection that takes over a clean session 0 one
 * discards its session, subscriptions included [MQTT-3.1.2-6]. */
static void test_clean_takeover_discards(void **state)
{
	int old = connect_session(g.port, "it-ses-ct", false, false), fd;
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(old, 1, "it-ses/ct", 1), 0);
	fd = connect_session(g.port, "it-ses-ct", true, false);
	assert_true(raw_closed_within(old, WAIT_MS));
	close(old);
	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/ct-end", 0), 0);
	publish_n(g.port, "it-ses/ct", 0, 1);
	publish_n(g.port, "it-ses/ct-end", 1, 2);
	recv_pkt(fd, &p);
	assert_string_equal(p.topic, "it-ses/ct-end");

	/* The other way round: a clean session 1 ends with its connection, so
	 * a clean session 0 taking over starts empty. */
	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/ct", 1), 0);
	old = fd;
	fd = connect_session(g.port, "it-ses-ct", false, false);
	assert_true(raw_closed_within(old, WAIT_MS));
	close(old);
	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/ct-end", 0), 0);
	publish_n(g.port, "it-ses/ct", 2, 3);
	publish_n(g.port, "it-ses/ct-end", 3, 4);
	recv_pkt(fd, &p);
	assert_string_equal(p.topic, "it-ses/ct-end");
	disconnect(fd);
	close(connect_session(g.port, "it-ses-ct", true, false));
}

/* QoS 2 from the client is exactly once across a reconnect: the resent
 * PUBLISH (DUP) of a flow whose PUBREL never came is not delivered again
 * [MQTT-4.3.3-2], session state [MQTT-3.1.2-4]. */
static void test_qos2_inbound_survives_reconnect(void **state)
{
	int sub = connect_session(g.port, "it-ses-q2s", true, false);
	int pub = connect_session(g.port, "it-ses-q2p", false, false);
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(sub, 1, "it-ses/q2/#", 0), 0);
	assert_int_equal(itutil_send_publish(pub, "it-ses/q2/a", "once", 4, 2, false, 9), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 9, WAIT_MS), 0);
	close(pub); /* before PUBREL */

	pub = connect_session(g.port, "it-ses-q2p", false, true);
	assert_int_equal(itutil_send_publish(pub, "it-ses/q2/a", "once", 4, 2, true, 9), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 9, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(pub, 0x62, 9), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x70, 9, WAIT_MS), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-ses/q2/end", "e", 1, 1, false, 10), 0);

	recv_pkt(sub, &p);
	assert_string_equal(p.topic, "it-ses/q2/a");
	recv_pkt(sub, &p);
	if (strcmp(p.topic, "it-ses/q2/end") != 0)
		print_error("second copy: '%s' '%s'\n", p.topic, p.payload);
	assert_string_equal(p.topic, "it-ses/q2/end");
	disconnect(pub);
	close(connect_session(g.port, "it-ses-q2p", true, false));
	disconnect(sub);
}

/* ---- at least once, in order, across takeovers ----------------------------- */

enum { TK_N = 6000, TK_EVERY = 10 };

static struct gw gt;

struct tk_pub {
	int port;
	int failed_at;     /* -1, or the message whose publish failed */
};

/* Thread: publishes TK_N numbered QoS 1 messages (no cmocka calls here). */
static void *tk_publish(void *arg)
{
	struct tk_pub *tp = arg;
	int fd = itutil_connect(tp->port, "it-ses-tk-p", true, 0, NULL);

	tp->failed_at = fd < 0 ? 0 : -1;
	for (int i = 0; fd >= 0 && i < TK_N; i++) {
		char payload[16];

		snprintf(payload, sizeof(payload), "%d", i);
		if (raw_mqtt_publish(fd, "it-ses/tk", payload, strlen(payload), 1, false,
				     (uint16_t)(i % 60000 + 1)) < 0) {
			tp->failed_at = i;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/*
 * A clean session 0 subscriber is taken over by a new connection every
 * TK_EVERY messages while a publisher sends TK_N QoS 1 messages: every
 * message arrives at least once, first sightings come in publish order,
 * and a message seen before comes again only as a resend (DUP 1)
 * [MQTT-4.4.0-1], [MQTT-4.6.0-2].
 */
/* The subscriber falls behind while it reconnects: a queue that cannot
 * overflow, so that any loss is a bug. */
static int takeover_setup(void **state)
{
	(void)state;
	return gw_start(&gt, "workers = 4; limits = { max_queued_messages = 100000; };");
}

static int takeover_teardown(void **state)
{
	(void)state;
	return gw_stop(&gt) == 0 ? 0 : -1;
}

static void test_no_loss_across_takeovers(void **state)
{
	static char seen[TK_N];
	struct tk_pub tp = { .port = gt.port };
	int fd = connect_session(gt.port, "it-ses-tk", false, false);
	int nseen = 0, dups = 0, got = 0, last_new = -1, takeovers = 0;
	int misordered = 0, dup_without_flag = 0;
	pthread_t th;
	(void)state;

	memset(seen, 0, sizeof(seen));
	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/tk", 1), 0);
	assert_int_equal(pthread_create(&th, NULL, tk_publish, &tp), 0);
	while (nseen < TK_N) {
		struct itutil_pkt p;
		int v;

		recv_pkt(fd, &p);
		assert_int_equal(p.first & 0xF1, 0x30); /* PUBLISH, RETAIN 0 */
		assert_int_equal(p.qos, 1);
		v = atoi(p.payload);
		assert_true(v >= 0 && v < TK_N);
		if (seen[v]) {
			dups++;
			dup_without_flag += !p.dup;
		} else {
			if (v < last_new && misordered++ == 0)
				print_error("first out-of-order message: %d after %d (DUP %d, "
					    "takeover %d)\n", v, last_new, p.dup, takeovers);
			if (v > last_new)
				last_new = v;
			seen[v] = 1;
			nseen++;
		}
		assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
		if (++got % TK_EVERY == 0) {
			int nfd = connect_session(gt.port, "it-ses-tk", false, true);

			close(fd);
			fd = nfd;
			takeovers++;
		}
	}
	pthread_join(th, NULL);
	print_message("%d messages, %d resent duplicates (%d without DUP), %d out of order, "
		      "%d takeovers\n", nseen, dups, dup_without_flag, misordered, takeovers);
	disconnect(fd);
	assert_int_equal(tp.failed_at, -1);
	assert_int_equal(dup_without_flag, 0);
	assert_int_equal(misordered, 0);
}

/* ---- bounded offline queue ----------------------------------------------- */

static struct gw gq;

static int queue_setup(void **state)
{
	(void)state;
	return gw_start(&gq, "limits = { max_queued_messages = 5; };");
}

static int queue_teardown(void **state)
{
	(void)state;
	return gw_stop(&gq) == 0 ? 0 : -1;
}

static void test_offline_queue_bounded(void **state)
{
	int fd = connect_session(gq.port, "it-ses-q", false, false);
	int count = 0, last = -1;
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/q", 1), 0);
	disconnect(fd);
	publish_n(gq.port, "it-ses/q", 0, 20);

	fd = connect_session(gq.port, "it-ses-q", false, true);
	send_ping(fd);
	for (;;) {
		int seq;

		recv_pkt(fd, &p);
		if (p.first == 0xD0)
			break;
		assert_int_equal(p.first & 0xF0, 0x30);
		assert_int_equal(p.qos, 1);
		seq = atoi(p.payload);
		print_message("queued message %s\n", p.payload);
		assert_true(seq > last); /* in order, no duplicates */
		last = seq;
		count++;
		assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	}
	assert_int_equal(count, 5);
	assert_true(gw_log_contains(&gq, "queue full"));

	/* Still healthy: live delivery on the same session works. */
	publish_n(gq.port, "it-ses/q", 100, 101);
	recv_pkt(fd, &p);
	assert_string_equal(p.payload, "100");
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	send_ping(fd);
	expect_pingresp(fd);
	disconnect(fd);
}

/* ---- resume order: the in-flight window again (DUP), then the queue ---------- */

static int window_setup(void **state)
{
	(void)state;
	return gw_start(&gq, "limits = { max_inflight = 2; };");
}

static void test_resume_order(void **state)
{
	int fd = connect_session(gq.port, "it-ses-o", false, false);
	uint16_t pid[2];
	struct itutil_pkt p;
	(void)state;

	assert_int_equal(itutil_subscribe(fd, 1, "it-ses/o", 1), 0);
	publish_n(gq.port, "it-ses/o", 0, 5);  /* 0, 1 sent; 2..4 wait for the window */
	for (int i = 0; i < 2; i++) {
		recv_pkt(fd, &p);
		assert_int_equal(p.first, 0x32);
		assert_int_equal(atoi(p.payload), i);
		pid[i] = p.pid;
	}
	close(fd); /* no acks */
	publish_n(gq.port, "it-ses/o", 5, 7);

	fd = connect_session(gq.port, "it-ses-o", false, true);
	for (int i = 0; i < 7; i++) {
		recv_pkt(fd, &p);
		assert_int_equal(p.first & 0xF0, 0x30);
		if (atoi(p.payload) != i)
			print_error("message %d: got '%s'\n", i, p.payload);
		assert_int_equal(atoi(p.payload), i);
		assert_int_equal(p.dup, i < 2);
		if (i < 2)
			assert_int_equal(p.pid, pid[i]);
		assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	}
	send_ping(fd);
	expect_pingresp(fd);
	disconnect(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_persistent_session_keeps_subs_and_messages),
		cmocka_unit_test(test_clean_session_keeps_nothing),
		cmocka_unit_test(test_redelivery_qos1_dup),
		cmocka_unit_test(test_redelivery_qos2_publish_then_pubrel),
		cmocka_unit_test(test_clean_takeover_discards),
		cmocka_unit_test(test_qos2_inbound_survives_reconnect),
		cmocka_unit_test_setup_teardown(test_no_loss_across_takeovers, takeover_setup,
						takeover_teardown),
		cmocka_unit_test_setup_teardown(test_offline_queue_bounded, queue_setup,
						queue_teardown),
		cmocka_unit_test_setup_teardown(test_resume_order, window_setup, queue_teardown),
	};

	return cmocka_run_group_tests_name("it_session", tests, group_setup, group_teardown);
}
