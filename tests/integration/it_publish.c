/*
 * it_publish.c - QoS 0/1/2 in both directions (paho), delivered QoS =
 * min(published, granted), QoS 2 duplicate suppression, and delivery
 * across workers (completeness and per-publisher order).
 *
 * "Marker" synchronisation: a publisher's messages reach a subscriber in the
 * order they were published, so once a marker published last has arrived,
 * anything that was going to arrive before it has.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itpaho.h"
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

static MQTTClient paho_connect(const char *id)
{
	MQTTClient cl = itpaho_connect(g.port, id, NULL);
	assert_non_null(cl);
	return cl;
}

/* ---- paho: both directions at each QoS ----------------------------------- */

static void paho_roundtrip(int qos, size_t len)
{
	char topic[64];
	uint8_t *payload = malloc(len);
	MQTTClient sub, pub;
	MQTTClient_message m = MQTTClient_message_initializer, *got = NULL;
	MQTTClient_deliveryToken dt;
	char *rtopic = NULL;
	int rtlen = 0;

	assert_non_null(payload);
	for (size_t i = 0; i < len; i++)
		payload[i] = (uint8_t)(i * 7 + (size_t)qos);
	snprintf(topic, sizeof(topic), "it-pub/paho/q%d/%zu", qos, len);
	sub = paho_connect("it-pub-paho-sub");
	pub = paho_connect("it-pub-paho-pub");
	assert_int_equal(MQTTClient_subscribe(sub, topic, qos), MQTTCLIENT_SUCCESS);

	m.payload = payload;
	m.payloadlen = (int)len;
	m.qos = qos;
	assert_int_equal(MQTTClient_publishMessage(pub, topic, &m, &dt), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_waitForCompletion(pub, dt, WAIT_MS), MQTTCLIENT_SUCCESS);

	assert_int_equal(MQTTClient_receive(sub, &rtopic, &rtlen, &got, WAIT_MS),
			 MQTTCLIENT_SUCCESS);
	assert_non_null(got);
	assert_string_equal(rtopic, topic);
	assert_int_equal(got->qos, qos);
	assert_int_equal(got->retained, 0);
	assert_int_equal(got->payloadlen, (int)len);
	assert_memory_equal(got->payload, payload, len);
	MQTTClient_freeMessage(&got);
	MQTTClient_free(rtopic);
	itpaho_close(&pub);
	itpaho_close(&sub);
	free(payload);
}

static void test_paho_qos0(void **state) { (void)state; paho_roundtrip(0, 100); }
static void test_paho_qos1(void **state) { (void)state; paho_roundtrip(1, 100); }
static void test_paho_qos2(void **state) { (void)state; paho_roundtrip(2, 100); }
/* Bigger than the server's read buffer: arrives in many reads. */
static void test_paho_qos1_large(void **state) { (void)state; paho_roundtrip(1, 300000); }

/* ---- the encoder at varint boundaries --------------------------------------- */

/*
 * A QoS 0 PUBLISH without RETAIN is forwarded to a QoS 0 subscriber byte for
 * byte, so the packet out must equal the packet in, with remaining lengths
 * around the 1-, 2- and 3-byte varint boundaries.
 */
static void test_forwarded_bytes_identical(void **state)
{
	static const size_t rls[] = { 11, 126, 127, 128, 129, 16383, 16384, 200000 };
	const char *topic = "it-pub/rl"; /* remaining length = 2 + 9 + payload */
	size_t cap = 200016;
	uint8_t *out = malloc(cap), *in = malloc(cap), *payload = malloc(cap);
	int sub = itutil_connect(g.port, "it-pub-rl-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-pub-rl-p", true, 0, NULL);
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
	assert_non_null(out);
	assert_non_null(in);
	assert_non_null(payload);
	assert_int_equal(itutil_subscribe(sub, 1, topic, 0), 0);
	for (size_t i = 0; i < cap; i++)
		payload[i] = (uint8_t)(i * 31 + 7);
	for (size_t i = 0; i < sizeof(rls) / sizeof(rls[0]); i++) {
		int n = raw_build_publish(out, cap, 4, topic, payload, rls[i] - 11, 0, false, false,
					  0);

		assert_true(n > 0);
		assert_int_equal(raw_send(pub, out, (size_t)n), 0);
		assert_int_equal(raw_recv_packet(sub, in, cap, WAIT_MS), n);
		assert_memory_equal(in, out, (size_t)n);
	}
	close(sub);
	close(pub);
	free(out);
	free(in);
	free(payload);
}

/* ---- delivered QoS = min(published, granted) [MQTT-3.8.4-6] -------------- */

static void test_delivered_qos_is_min(void **state)
{
	int sub[3], pub;
	(void)state;

	for (int q = 0; q < 3; q++) {
		char id[32];

		snprintf(id, sizeof(id), "it-pub-min-s%d", q);
		sub[q] = itutil_connect(g.port, id, true, 0, NULL);
		assert_true(sub[q] >= 0);
		assert_int_equal(itutil_subscribe(sub[q], 1, "it-pub/min", (uint8_t)q), 0);
	}
	pub = itutil_connect(g.port, "it-pub-min-p", true, 0, NULL);
	assert_true(pub >= 0);
	for (int pq = 0; pq < 3; pq++) {
		char payload[16];

		snprintf(payload, sizeof(payload), "pq%d", pq);
		assert_int_equal(raw_mqtt_publish(pub, "it-pub/min", payload, 3, (uint8_t)pq, false,
						  (uint16_t)(pq + 1)), 0);
	}
	for (int q = 0; q < 3; q++) {
		for (int pq = 0; pq < 3; pq++) {
			struct itutil_pkt p;
			char payload[16];

			snprintf(payload, sizeof(payload), "pq%d", pq);
			assert_int_equal(itutil_recv_publish(sub[q], &p, WAIT_MS), 0);
			assert_string_equal(p.topic, "it-pub/min");
			assert_int_equal(p.len, 3);
			assert_memory_equal(p.payload, payload, 3);
			assert_int_equal(p.qos, pq < q ? pq : q);
			assert_false(p.dup);
			assert_false(p.retain);
			if (p.qos)
				assert_int_not_equal(p.pid, 0);
			assert_int_equal(itutil_ack_publish(sub[q], &p), 0);
		}
		close(sub[q]);
	}
	close(pub);
}

/* ---- QoS 2 inbound: a resend before PUBREL is not delivered again -------- */

static void test_qos2_duplicate_suppressed(void **state)
{
	int sub = itutil_connect(g.port, "it-pub-q2-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-pub-q2-p", true, 0, NULL);
	struct itutil_pkt p;
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "it-pub/q2/#", 0), 0);
	assert_int_equal(itutil_send_publish(pub, "it-pub/q2/a", "once", 4, 2, false, 7), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 7, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(pub, "it-pub/q2/a", "once", 4, 2, true, 7), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 7, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(pub, 0x62, 7), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x70, 7, WAIT_MS), 0);
	/* Packet id 7 is free again: a new message with it is a new delivery. */
	assert_int_equal(itutil_send_publish(pub, "it-pub/q2/a", "again", 5, 2, false, 7), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 7, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(pub, 0x62, 7), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x70, 7, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(pub, "it-pub/q2/end", "m", 1, 0, false, 0), 0);

	assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-pub/q2/a");
	assert_memory_equal(p.payload, "once", 4);
	assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-pub/q2/a");
	assert_int_equal(p.len, 5);
	assert_memory_equal(p.payload, "again", 5);
	assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-pub/q2/end");
	close(sub);
	close(pub);
}

/* A PUBREL for an id the server does not hold still gets PUBCOMP
 * (the client may be finishing a flow from before a reconnect). */
static void test_pubrel_unknown_id_gets_pubcomp(void **state)
{
	int fd = itutil_connect(g.port, "it-pub-rel", true, 0, NULL);
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(itutil_send_ack(fd, 0x62, 4242), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x70, 4242, WAIT_MS), 0);
	close(fd);
}

/* ---- across workers -------------------------------------------------------- */

enum { PAIRS = 40, PER_PAIR = 5, ORDER_PAIRS = 4, ORDER_N = 1000 };

struct order_reader {
	int fd;
	int got;
	int bad;          /* out-of-sequence, dup flag, wrong topic or QoS */
	char why[128];
};

/* Thread: reads ORDER_N numbered QoS 1 messages, acking each. No cmocka
 * calls here: the main thread checks the result. */
static void *order_read(void *arg)
{
	struct order_reader *r = arg;
	struct itutil_pkt *p = malloc(sizeof(*p));

	while (p && r->got < ORDER_N && !r->bad) {
		int n = itutil_recv(r->fd, p, WAIT_MS);
		char num[16];

		if (n <= 0 || (p->first & 0xF0) != 0x30) {
			snprintf(r->why, sizeof(r->why), "after %d messages: recv %d", r->got, n);
			r->bad = 1;
			break;
		}
		snprintf(num, sizeof(num), "%d", r->got);
		if (p->qos != 1 || p->dup || p->len != strlen(num) ||
		    memcmp(p->payload, num, p->len) != 0) {
			snprintf(r->why, sizeof(r->why), "expected %s, got qos %d dup %d '%.*s'",
				 num, p->qos, p->dup, (int)p->len, (const char *)p->payload);
			r->bad = 1;
			break;
		}
		if (itutil_send_ack(r->fd, 0x40, p->pid) < 0)
			r->bad = 1;
		r->got++;
	}
	free(p);
	return NULL;
}

static struct gw gx;

static int xw_setup(void **state)
{
	(void)state;
	return gw_start(&gx, "workers = 4;");
}

/* A gateway that does not exit 0 on SIGTERM fails the test here. */
static int xw_teardown(void **state)
{
	(void)state;
	return gw_stop(&gx) == 0 ? 0 : -1;
}

static void test_cross_worker(void **state)
{
	int sub[PAIRS], pub[PAIRS], workers = 0;
	long long t0 = itutil_now_ms();
	(void)state;

	for (int i = 0; i < PAIRS; i++) {
		char id[32], topic[32];

		snprintf(id, sizeof(id), "it-xw-s%d", i);
		snprintf(topic, sizeof(topic), "it-xw/%d", i);
		sub[i] = itutil_connect(gx.port, id, true, 0, NULL);
		assert_true(sub[i] >= 0);
		assert_int_equal(itutil_subscribe(sub[i], 1, topic, 1), 0);
		snprintf(id, sizeof(id), "it-xw-p%d", i);
		pub[i] = itutil_connect(gx.port, id, true, 0, NULL);
		assert_true(pub[i] >= 0);
	}
	/* Every pair: PER_PAIR messages, interleaved across pairs. */
	for (int k = 0; k < PER_PAIR; k++) {
		for (int i = 0; i < PAIRS; i++) {
			char topic[32], payload[32];

			snprintf(topic, sizeof(topic), "it-xw/%d", i);
			snprintf(payload, sizeof(payload), "%d:%d", i, k);
			assert_int_equal(raw_mqtt_publish(pub[i], topic, payload, strlen(payload), 1,
							  false, (uint16_t)(k + 1)), 0);
		}
	}
	for (int i = 0; i < PAIRS; i++) {
		for (int k = 0; k < PER_PAIR; k++) {
			struct itutil_pkt p;
			char topic[32], payload[32];

			snprintf(topic, sizeof(topic), "it-xw/%d", i);
			snprintf(payload, sizeof(payload), "%d:%d", i, k);
			assert_int_equal(itutil_recv_publish(sub[i], &p, WAIT_MS), 0);
			assert_string_equal(p.topic, topic);
			assert_int_equal(p.len, strlen(payload));
			assert_memory_equal(p.payload, payload, p.len);
			assert_int_equal(itutil_ack_publish(sub[i], &p), 0);
		}
	}
	/* Order: ORDER_N numbered QoS 1 messages per pair, read concurrently. */
	struct order_reader rd[ORDER_PAIRS];
	pthread_t th[ORDER_PAIRS];

	for (int i = 0; i < ORDER_PAIRS; i++) {
		rd[i] = (struct order_reader){ .fd = sub[i] };
		assert_int_equal(pthread_create(&th[i], NULL, order_read, &rd[i]), 0);
	}
	for (int k = 0; k < ORDER_N; k++) {
		for (int i = 0; i < ORDER_PAIRS; i++) {
			char topic[32], payload[16];

			snprintf(topic, sizeof(topic), "it-xw/%d", i);
			snprintf(payload, sizeof(payload), "%d", k);
			if (raw_mqtt_publish(pub[i], topic, payload, strlen(payload), 1, false,
					     (uint16_t)(k % 60000 + 1)) < 0) {
				print_error("publish %d on pair %d failed\n", k, i);
				k = ORDER_N;
				break;
			}
		}
	}
	for (int i = 0; i < ORDER_PAIRS; i++) {
		pthread_join(th[i], NULL);
		if (rd[i].bad)
			print_error("pair %d: %s\n", i, rd[i].why);
		assert_false(rd[i].bad);
		assert_int_equal(rd[i].got, ORDER_N);
	}
	/* The test only means something if the pairs were spread over workers. */
	for (int w = 0; w < 4; w++) {
		char needle[32];

		snprintf(needle, sizeof(needle), "thread=w%d conn open", w);
		workers += gw_log_contains(&gx, needle);
	}
	print_message("connections spread over %d workers\n", workers);
	assert_true(workers >= 2);

	for (int i = 0; i < PAIRS; i++) {
		close(sub[i]);
		close(pub[i]);
	}
	print_message("cross-worker test took %lld ms\n", itutil_now_ms() - t0);
}

/* ---- the server's DUP is its own [MQTT-3.3.1-3] ---------------------------- */

/*
 * A publisher's resends (DUP 1, ids the server has not seen) are first
 * deliveries for the subscribers: their copies carry DUP 0, at QoS 1 and 2
 * and at QoS 0 (where DUP must be 0 anyway).
 */
static void test_dup_not_forwarded(void **state)
{
	int sub2 = itutil_connect(g.port, "it-pub-dup-s2", true, 0, NULL);
	int sub0 = itutil_connect(g.port, "it-pub-dup-s0", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-pub-dup-p", true, 0, NULL);
	struct itutil_pkt p;
	(void)state;

	assert_true(sub2 >= 0 && sub0 >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub2, 1, "it-pub/dup/#", 2), 0);
	assert_int_equal(itutil_subscribe(sub0, 1, "it-pub/dup/#", 0), 0);
	assert_int_equal(itutil_send_publish(pub, "it-pub/dup/1", "r1", 2, 1, true, 11), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x40, 11, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(pub, "it-pub/dup/2", "r2", 2, 2, true, 12), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x50, 12, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(pub, 0x62, 12), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x70, 12, WAIT_MS), 0);

	for (uint8_t q = 1; q <= 2; q++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "it-pub/dup/%u", q);
		assert_int_equal(itutil_recv_acked(sub2, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, topic);
		assert_int_equal(p.first, 0x30 | q << 1); /* DUP 0, QoS q, RETAIN 0 */
		assert_int_equal(itutil_recv_publish(sub0, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, topic);
		assert_int_equal(p.first, 0x30);
	}
	close(sub2);
	close(sub0);
	close(pub);
}

/* ---- PUBRELs follow the PUBRECs [MQTT-4.6.0-4] ------------------------------- */

/* Sends PUBREC for a then b in one write; the PUBRELs must come back in
 * that order, then PUBCOMP ends both flows. */
static void pubrecs_then_pubrels(int fd, uint16_t a, uint16_t b)
{
	uint8_t out[8];

	assert_int_equal(raw_build_ack(out, 4, 0x50, a), 4);
	assert_int_equal(raw_build_ack(out + 4, 4, 0x50, b), 4);
	assert_int_equal(raw_send(fd, out, sizeof(out)), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x62, a, WAIT_MS), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x62, b, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(fd, 0x70, a), 0);
	assert_int_equal(itutil_send_ack(fd, 0x70, b), 0);
	assert_int_equal(itutil_ping(fd), 0);
}

/*
 * Two outgoing QoS 2 flows at once, twice: the subscriber acknowledges the
 * second message first, then (next round) the first message first. Either
 * way the PUBRELs follow the PUBRECs, not the publication or id order.
 */
static void test_pubrel_order_follows_pubrec(void **state)
{
	int sub = itutil_connect(g.port, "it-pub-rel-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-pub-rel-p", true, 0, NULL);
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "it-pub/relorder", 2), 0);
	for (int round = 0; round < 2; round++) {
		struct itutil_pkt m1, m2;

		assert_int_equal(raw_mqtt_publish(pub, "it-pub/relorder", "one", 3, 2, false, 1), 0);
		assert_int_equal(raw_mqtt_publish(pub, "it-pub/relorder", "two", 3, 2, false, 2), 0);
		assert_int_equal(itutil_recv_publish(sub, &m1, WAIT_MS), 0);
		assert_int_equal(itutil_recv_publish(sub, &m2, WAIT_MS), 0);
		assert_string_equal(m1.payload, "one");
		assert_string_equal(m2.payload, "two");
		assert_int_equal(m1.qos, 2);
		assert_int_equal(m2.qos, 2);
		assert_int_not_equal(m1.pid, m2.pid);
		if (round == 0)
			pubrecs_then_pubrels(sub, m2.pid, m1.pid);
		else
			pubrecs_then_pubrels(sub, m1.pid, m2.pid);
	}
	close(sub);
	close(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paho_qos0),
		cmocka_unit_test(test_paho_qos1),
		cmocka_unit_test(test_paho_qos2),
		cmocka_unit_test(test_paho_qos1_large),
		cmocka_unit_test(test_forwarded_bytes_identical),
		cmocka_unit_test(test_delivered_qos_is_min),
		cmocka_unit_test(test_qos2_duplicate_suppressed),
		cmocka_unit_test(test_pubrel_unknown_id_gets_pubcomp),
		cmocka_unit_test(test_dup_not_forwarded),
		cmocka_unit_test(test_pubrel_order_follows_pubrec),
		cmocka_unit_test_setup_teardown(test_cross_worker, xw_setup, xw_teardown),
	};

	return cmocka_run_group_tests_name("it_publish", tests, group_setup, group_teardown);
}
