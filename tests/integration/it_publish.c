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
#include "rawmqtt.h"

#define WAIT_MS 5000

static struct gw g;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* ---- raw helpers ---------------------------------------------------------- */

struct pub {
	uint8_t qos;
	bool dup, retain;
	uint16_t pid;
	char topic[128];
	const uint8_t *payload;
	size_t len;
	uint8_t buf[8192];
};

/* Parses the PUBLISH in p->buf[0..n). Returns false for anything else. */
static bool parse_publish(struct pub *p, int n)
{
	const uint8_t *b = p->buf, *end = p->buf + n;
	size_t hdr = 1, tlen;

	if (n < 4 || (b[0] & 0xF0) != 0x30)
		return false;
	while (b[hdr++] & 0x80)
		;
	p->qos = (b[0] >> 1) & 3;
	p->dup = b[0] & 0x08;
	p->retain = b[0] & 0x01;
	b += hdr;
	tlen = (size_t)b[0] << 8 | b[1];
	if (tlen >= sizeof(p->topic) || b + 2 + tlen + (p->qos ? 2 : 0) > end)
		return false;
	memcpy(p->topic, b + 2, tlen);
	p->topic[tlen] = '\0';
	b += 2 + tlen;
	p->pid = 0;
	if (p->qos) {
		p->pid = (uint16_t)(b[0] << 8 | b[1]);
		b += 2;
	}
	p->payload = b;
	p->len = (size_t)(end - b);
	return true;
}

/* Receives one packet that must be a PUBLISH. */
static void recv_publish(int fd, struct pub *p)
{
	int n = raw_recv_packet(fd, p->buf, sizeof(p->buf), WAIT_MS);
	bool ok = n > 0 && parse_publish(p, n);

	if (!ok)
		print_error("expected PUBLISH, got %d bytes, type 0x%02X\n", n,
			    n > 0 ? p->buf[0] : 0);
	assert_true(ok);
}

/* Completes the receiver's side of the flow for p (PUBACK, or PUBREC /
 * PUBREL / PUBCOMP). */
static void ack_publish(int fd, const struct pub *p)
{
	uint8_t out[4], in[16];

	if (p->qos == 1) {
		raw_build_ack(out, sizeof(out), 0x40, p->pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
	} else if (p->qos == 2) {
		raw_build_ack(out, sizeof(out), 0x50, p->pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
		assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
		assert_int_equal(in[0], 0x62);
		assert_int_equal(in[2] << 8 | in[3], p->pid);
		raw_build_ack(out, sizeof(out), 0x70, p->pid);
		assert_int_equal(raw_send(fd, out, 4), 0);
	}
}

static int connect_ok(int port, const char *id)
{
	uint8_t rc = 0xff;
	int fd = raw_mqtt_connect(port, id, true, 0, &rc, NULL);

	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	return fd;
}

/* SUBSCRIBE one filter and check the SUBACK grants the asked QoS. */
static void subscribe(int fd, uint16_t pid, const char *filter, uint8_t qos)
{
	uint8_t out[256], in[16];
	int n = raw_build_subscribe(out, sizeof(out), 4, pid, filter, qos);

	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 5);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[2] << 8 | in[3], pid);
	assert_int_equal(in[4], qos);
}

static void send_publish(int fd, const char *topic, const char *payload, uint8_t qos,
			 bool dup, uint16_t pid)
{
	uint8_t out[512];
	int n = raw_build_publish(out, sizeof(out), 4, topic, payload, strlen(payload), qos,
				  false, dup, pid);

	assert_true(n > 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
}

static void expect_ack(int fd, uint8_t first, uint16_t pid)
{
	uint8_t in[16];

	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
	assert_int_equal(in[0], first);
	assert_int_equal(in[2] << 8 | in[3], pid);
}

/* ---- paho: both directions at each QoS ----------------------------------- */

static MQTTClient paho_connect(const char *id)
{
	MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
	MQTTClient cl;
	char uri[64];

	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	assert_int_equal(MQTTClient_create(&cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	opts.keepAliveInterval = 30;
	opts.cleansession = 1;
	opts.connectTimeout = 5;
	assert_int_equal(MQTTClient_connect(cl, &opts), MQTTCLIENT_SUCCESS);
	return cl;
}

static void paho_close(MQTTClient *cl)
{
	MQTTClient_disconnect(*cl, 1000);
	MQTTClient_destroy(cl);
}

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
	paho_close(&pub);
	paho_close(&sub);
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
	int sub = connect_ok(g.port, "it-pub-rl-s"), pub = connect_ok(g.port, "it-pub-rl-p");
	(void)state;

	assert_non_null(out);
	assert_non_null(in);
	assert_non_null(payload);
	subscribe(sub, 1, topic, 0);
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
		sub[q] = connect_ok(g.port, id);
		subscribe(sub[q], 1, "it-pub/min", (uint8_t)q);
	}
	pub = connect_ok(g.port, "it-pub-min-p");
	for (int pq = 0; pq < 3; pq++) {
		char payload[16];

		snprintf(payload, sizeof(payload), "pq%d", pq);
		assert_int_equal(raw_mqtt_publish(pub, "it-pub/min", payload, 3, (uint8_t)pq, false,
						  (uint16_t)(pq + 1)), 0);
	}
	for (int q = 0; q < 3; q++) {
		for (int pq = 0; pq < 3; pq++) {
			struct pub p;
			char payload[16];

			snprintf(payload, sizeof(payload), "pq%d", pq);
			recv_publish(sub[q], &p);
			assert_string_equal(p.topic, "it-pub/min");
			assert_int_equal(p.len, 3);
			assert_memory_equal(p.payload, payload, 3);
			assert_int_equal(p.qos, pq < q ? pq : q);
			assert_false(p.dup);
			assert_false(p.retain);
			if (p.qos)
				assert_int_not_equal(p.pid, 0);
			ack_publish(sub[q], &p);
		}
		close(sub[q]);
	}
	close(pub);
}

/* ---- QoS 2 inbound: a resend before PUBREL is not delivered again -------- */

static void test_qos2_duplicate_suppressed(void **state)
{
	int sub = connect_ok(g.port, "it-pub-q2-s");
	int pub = connect_ok(g.port, "it-pub-q2-p");
	uint8_t rel[4];
	struct pub p;
	(void)state;

	subscribe(sub, 1, "it-pub/q2/#", 0);
	send_publish(pub, "it-pub/q2/a", "once", 2, false, 7);
	expect_ack(pub, 0x50, 7);
	send_publish(pub, "it-pub/q2/a", "once", 2, true, 7);
	expect_ack(pub, 0x50, 7);
	raw_build_ack(rel, sizeof(rel), 0x62, 7);
	assert_int_equal(raw_send(pub, rel, 4), 0);
	expect_ack(pub, 0x70, 7);
	/* Packet id 7 is free again: a new message with it is a new delivery. */
	send_publish(pub, "it-pub/q2/a", "again", 2, false, 7);
	expect_ack(pub, 0x50, 7);
	assert_int_equal(raw_send(pub, rel, 4), 0);
	expect_ack(pub, 0x70, 7);
	send_publish(pub, "it-pub/q2/end", "m", 0, false, 0);

	recv_publish(sub, &p);
	assert_string_equal(p.topic, "it-pub/q2/a");
	assert_memory_equal(p.payload, "once", 4);
	recv_publish(sub, &p);
	assert_string_equal(p.topic, "it-pub/q2/a");
	assert_int_equal(p.len, 5);
	assert_memory_equal(p.payload, "again", 5);
	recv_publish(sub, &p);
	assert_string_equal(p.topic, "it-pub/q2/end");
	close(sub);
	close(pub);
}

/* A PUBREL for an id the server does not hold still gets PUBCOMP
 * (the client may be finishing a flow from before a reconnect). */
static void test_pubrel_unknown_id_gets_pubcomp(void **state)
{
	int fd = connect_ok(g.port, "it-pub-rel");
	uint8_t rel[4];
	(void)state;

	raw_build_ack(rel, sizeof(rel), 0x62, 4242);
	assert_int_equal(raw_send(fd, rel, 4), 0);
	expect_ack(fd, 0x70, 4242);
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
	struct pub *p = malloc(sizeof(*p));

	while (p && r->got < ORDER_N && !r->bad) {
		int n = raw_recv_packet(r->fd, p->buf, sizeof(p->buf), WAIT_MS);
		uint8_t ack[4];
		char num[16];

		if (n <= 0 || !parse_publish(p, n)) {
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
		raw_build_ack(ack, sizeof(ack), 0x40, p->pid);
		if (raw_send(r->fd, ack, 4) < 0)
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
	long long t0 = now_ms();
	(void)state;

	for (int i = 0; i < PAIRS; i++) {
		char id[32], topic[32];

		snprintf(id, sizeof(id), "it-xw-s%d", i);
		snprintf(topic, sizeof(topic), "it-xw/%d", i);
		sub[i] = connect_ok(gx.port, id);
		subscribe(sub[i], 1, topic, 1);
		snprintf(id, sizeof(id), "it-xw-p%d", i);
		pub[i] = connect_ok(gx.port, id);
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
			struct pub p;
			char topic[32], payload[32];

			snprintf(topic, sizeof(topic), "it-xw/%d", i);
			snprintf(payload, sizeof(payload), "%d:%d", i, k);
			recv_publish(sub[i], &p);
			assert_string_equal(p.topic, topic);
			assert_int_equal(p.len, strlen(payload));
			assert_memory_equal(p.payload, payload, p.len);
			ack_publish(sub[i], &p);
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
	print_message("cross-worker test took %lld ms\n", now_ms() - t0);
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
		cmocka_unit_test_setup_teardown(test_cross_worker, xw_setup, xw_teardown),
	};

	return cmocka_run_group_tests_name("it_publish", tests, group_setup, group_teardown);
}
