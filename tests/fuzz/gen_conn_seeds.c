/*
 * gen_conn_seeds.c - writes the seed corpus of fuzz_conn (conn_ops.h) into
 * the directory given: valid flows, from CONNECT and the QoS 0/1/2 publishes
 * with their acknowledgements to takeovers on one worker and across two,
 * late and failed deliveries, a busy sink and the timeouts. The raw seeds
 * hold packets built with the project's encoder.
 *
 *   build-fuzz/gen_conn_seeds tests/fuzz/corpus_conn   (make fuzz-seeds-conn)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_ops.h"
#include "mqtt/mqtt_codec.h"

struct seed {
	unsigned char b[4096];
	size_t n;
};

static void put(struct seed *s, unsigned char c)
{
	if (s->n < sizeof(s->b))
		s->b[s->n++] = c;
}

static void op(struct seed *s, int o, int k, int x) { put(s, CONN_OP(o, k, x)); }

/* CONNECT on k: id 0 "A", 2 "B", 3 empty; clean; keepalive index; will. */
static void connect(struct seed *s, int k, int id, int clean, int ka, int will)
{
	op(s, OP_CONNECT, k, 0);
	put(s, (unsigned char)(id | (clean ? 4 : 0) | ka << 3 | (will ? 32 : 0)));
	put(s, (unsigned char)(1 | 2 << 3)); /* will QoS 1 on "a/c" */
}

/* A level-5 CONNECT; props is the properties byte (conn_ops.h): expiry
 * index (props & 3), Receive Maximum 2 (4), user property (8), Request
 * Problem Information 0 (16), will delay (32), Maximum Packet Size 64 (64),
 * Topic Alias Maximum 3 (128). */
static void connect5(struct seed *s, int k, int id, int clean, int ka, int will, int props)
{
	op(s, OP_CONNECT, k, 0);
	put(s, (unsigned char)(id | (clean ? 4 : 0) | ka << 3 | (will ? 32 : 0) | 3 << 6));
	put(s, (unsigned char)(1 | 2 << 3));
	put(s, (unsigned char)props);
}

/* x = 1: at level 5, with a Topic Alias (and the topic left out when the
 * alias already stands for it). */
static void publish_x(struct seed *s, int k, int qos, int topic, int pid, const char *payload,
		      int x)
{
	size_t n = strlen(payload);
	op(s, OP_PUBLISH, k, x);
	put(s, (unsigned char)(qos | topic << 4));
	put(s, (unsigned char)(pid | n << 3));
	for (size_t i = 0; i < n; i++)
		put(s, (unsigned char)payload[i]);
}

static void publish(struct seed *s, int k, int qos, int topic, int pid, const char *payload)
{
	size_t n = strlen(payload);
	op(s, OP_PUBLISH, k, 0);
	put(s, (unsigned char)(qos | topic << 4));
	put(s, (unsigned char)(pid | n << 3));
	for (size_t i = 0; i < n; i++)
		put(s, (unsigned char)payload[i]);
}

static void subscribe(struct seed *s, int k, int pid, int filter, int qos)
{
	op(s, OP_SUBSCRIBE, k, 0);
	put(s, (unsigned char)pid);
	put(s, (unsigned char)(filter | qos << 3));
}

static void ack(struct seed *s, int k, int type, int pid)
{
	op(s, OP_ACK, k, 0);
	put(s, (unsigned char)(type | pid << 2));
}

static void settle(struct seed *s) { op(s, OP_SETTLE, 0, 0); }
static void complete(struct seed *s, int i, bool ok)
{
	op(s, OP_COMPLETE, 0, ok ? 0 : 3);
	put(s, (unsigned char)i);
}

/* A raw write of packets built with the encoder. */
static void raw(struct seed *s, int k, const struct buf *b)
{
	op(s, OP_RAW, k, 0);
	put(s, (unsigned char)buf_used(b));
	for (size_t i = 0; i < buf_used(b); i++)
		put(s, buf_head(b)[i]);
}

static int save(const char *dir, const char *name, const struct seed *s)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

static void seed_connect(struct seed *s)
{
	connect(s, 0, 0, 1, 0, 0);
	settle(s);
	op(s, OP_PING, 0, 0);
	settle(s);
	op(s, OP_PING, 0, 1);
}

static void seed_qos0_sub(struct seed *s)
{
	connect(s, 0, 0, 1, 0, 0);
	subscribe(s, 0, 1, 0, 2);
	connect(s, 1, 2, 1, 0, 0);
	settle(s);
	publish(s, 1, 0, 1, 0, "hello");
	settle(s);
}

static void seed_qos1_pending_ok(struct seed *s)
{
	connect(s, 0, 0, 1, 0, 0);
	settle(s);
	publish(s, 0, 1, 1, 1, "one");
	publish(s, 0, 1, 2, 2, "two");
	settle(s);
	complete(s, 1, true);
	settle(s);
	complete(s, 0, true);
	settle(s);
}

static void seed_qos1_fail(struct seed *s)
{
	connect(s, 0, 2, 0, 0, 1);
	settle(s);
	publish(s, 0, 1, 1, 1, "one");
	publish(s, 0, 1, 1, 2, "two");
	settle(s);
	complete(s, 1, true);
	complete(s, 0, false);
	settle(s);
}

static void seed_qos2_flow(struct seed *s)
{
	connect(s, 0, 0, 0, 0, 0);
	settle(s);
	publish(s, 0, 2, 0, 3, "q2");
	publish(s, 0, 2, 0, 3, "q2"); /* resend while pending */
	settle(s);
	complete(s, 0, true);
	settle(s);
	publish(s, 0, 2, 0, 3, "q2"); /* resend after PUBREC */
	settle(s);
	ack(s, 0, 2, 3); /* PUBREL */
	settle(s);
}

static void seed_sink_done_busy(struct seed *s)
{
	connect(s, 0, 0, 1, 0, 0);
	op(s, OP_SINK, 1, 0);
	publish(s, 0, 1, 3, 1, "done");
	settle(s);
	op(s, OP_SINK, 2, 0);
	publish(s, 0, 2, 3, 2, "busy");
	publish(s, 0, 1, 3, 3, "after");
	settle(s);
	op(s, OP_SINK, 0, 0);
	op(s, OP_CLOCK, 0, 0);
	put(s, 5);
	settle(s);
	complete(s, 0, true);
	complete(s, 0, true);
	settle(s);
}

static void seed_takeover_same_worker(struct seed *s)
{
	connect(s, 0, 0, 0, 0, 1);
	subscribe(s, 0, 1, 1, 1);
	settle(s);
	publish(s, 0, 1, 1, 1, "before");
	op(s, OP_OPEN, 2, 0);
	connect(s, 2, 0, 0, 0, 0);
	settle(s);
	complete(s, 0, true);
	settle(s);
	publish(s, 2, 1, 1, 2, "after");
	settle(s);
}

static void seed_takeover_cross_worker(struct seed *s)
{
	connect(s, 0, 0, 0, 0, 1);
	subscribe(s, 0, 1, 0, 2);
	connect(s, 3, 2, 1, 0, 0);
	settle(s);
	publish(s, 3, 2, 1, 1, "queued");
	publish(s, 3, 1, 1, 2, "queued1");
	op(s, OP_STEP, 3, 0);
	connect(s, 1, 0, 0, 0, 0);
	op(s, OP_STEP, 1, 0);
	publish(s, 3, 1, 2, 3, "racing");
	settle(s);
	op(s, OP_ACK, 1, 1);
	op(s, OP_ACK, 1, 1);
	op(s, OP_ACK, 1, 1);
	settle(s);
	op(s, OP_ACK, 1, 1);
	settle(s);
}

static void seed_takeover_clean(struct seed *s)
{
	connect(s, 0, 0, 0, 0, 0);
	settle(s);
	publish(s, 0, 2, 0, 4, "x");
	settle(s);
	complete(s, 0, true);
	op(s, OP_CLOSE, 0, 0);
	connect(s, 1, 0, 1, 0, 0);
	op(s, OP_STEP, 0, 0);
	connect(s, 2, 0, 0, 0, 0);
	settle(s);
	publish(s, 2, 2, 0, 4, "x");
	settle(s);
}

static void seed_offline_queue(struct seed *s)
{
	connect(s, 0, 0, 0, 0, 0);
	subscribe(s, 0, 1, 0, 1);
	settle(s);
	op(s, OP_CLOSE, 0, 0);
	connect(s, 1, 2, 1, 0, 0);
	settle(s);
	for (int i = 0; i < 6; i++)
		publish(s, 1, 1, i & 3, 1 + (i & 3), "q");
	settle(s);
	op(s, OP_OPEN, 0, 1);
	connect(s, 0, 0, 0, 0, 0);
	settle(s);
	for (int i = 0; i < 6; i++)
		op(s, OP_ACK, 0, 1);
	settle(s);
}

static void seed_timeouts(struct seed *s)
{
	connect(s, 0, 0, 1, 1, 1);
	subscribe(s, 1, 1, 2, 0);
	op(s, OP_RAW, 2, 0);
	put(s, 2);
	put(s, 0x10);
	put(s, 0x20);
	settle(s);
	op(s, OP_CLOCK, 0, 0);
	put(s, 25);
	settle(s);
	op(s, OP_CLOCK, 0, 1);
	put(s, 9);
	settle(s);
}

static void seed_raw_flow(struct seed *s)
{
	struct buf b;
	struct mqtt_connect c = { .level = 4, .clean = true, .keepalive = 30,
				  .client_id = { (const uint8_t *)"B", 1 } };
	struct mqtt_publish p = { .qos = 1, .packet_id = 7,
				  .topic = { (const uint8_t *)"b/a", 3 },
				  .payload = (const uint8_t *)"raw", .payload_len = 3 };
	struct mqtt_str f = { (const uint8_t *)"b/#", 3 };
	uint8_t o = 1;
	buf_init(&b);
	mqtt_encode_connect(&b, &c);
	mqtt_encode_subscribe(&b, 4, MQTT_SUBSCRIBE, 9, &f, &o, 1);
	mqtt_encode_publish(&b, 4, &p);
	raw(s, 0, &b);
	settle(s);
	complete(s, 0, true);
	settle(s);
	buf_reset(&b);
	struct mqtt_ack a = { .packet_id = 1 };
	mqtt_encode_ack(&b, 4, MQTT_PUBACK, &a);
	mqtt_encode_simple(&b, 4, MQTT_PINGREQ);
	mqtt_encode_simple(&b, 4, MQTT_DISCONNECT);
	raw(s, 0, &b);
	settle(s);
	buf_release(&b);
}

static void seed_split_and_big(struct seed *s)
{
	op(s, OP_CONNECT, 0, 2);
	put(s, 0x04);
	put(s, 0);
	op(s, OP_STEP, 0, 0);
	op(s, OP_SUBSCRIBE, 0, 2);
	put(s, 1);
	put(s, 0 | 1 << 3);
	op(s, OP_STEP, 0, 0);
	op(s, OP_BIG, 0, 0);
	put(s, 1 | 1 << 4);
	put(s, 100);
	settle(s);
	complete(s, 0, true);
	op(s, OP_BIG, 0, 0);
	put(s, 0);
	put(s, 200);
	settle(s);
}

/* Level 5: an empty id gets an assigned one; properties on CONNECT. */
static void seed_v5_connect(struct seed *s)
{
	connect5(s, 0, 3, 0, 3, 1, 1 | 4 | 8 | 32);
	settle(s);
	op(s, OP_PING, 0, 0);
	subscribe(s, 0, 2, 0, 1);
	settle(s);
	op(s, OP_PING, 0, 1);
	settle(s);
}

/* Level 5: a failed delivery is PUBACK/PUBREC 0x80 in its turn, the
 * connection stays; a failed PUBREC frees the id (PUBREL gets 0x92). */
static void seed_v5_fail(struct seed *s)
{
	connect5(s, 0, 0, 1, 0, 0, 0);
	settle(s);
	publish(s, 0, 1, 1, 1, "one");
	publish(s, 0, 2, 1, 2, "two");
	publish(s, 0, 1, 2, 3, "three");
	settle(s);
	complete(s, 2, true);
	complete(s, 0, false);
	settle(s);
	complete(s, 0, false);
	settle(s);
	ack(s, 0, 2, 2); /* PUBREL for the failed QoS 2 id */
	publish(s, 0, 2, 1, 2, "two");
	settle(s);
	complete(s, 0, true);
	settle(s);
	ack(s, 0, 2, 2);
	settle(s);
}

/* Level 5: Session Expiry 10 keeps the session and its queue; 0 ends it. */
static void seed_v5_expiry(struct seed *s)
{
	connect5(s, 0, 0, 0, 0, 0, 2);
	subscribe(s, 0, 1, 0, 1);
	connect5(s, 1, 2, 1, 0, 0, 128);
	subscribe(s, 1, 1, 1, 2);
	settle(s);
	op(s, OP_CLOSE, 0, 0);
	settle(s);
	op(s, OP_SINK, 1, 0);
	publish_x(s, 1, 1, 1, 1, "q1", 1);
	publish_x(s, 1, 1, 1, 2, "q2", 1);
	publish_x(s, 1, 0, 6, 0, "q3", 1);
	settle(s);
	op(s, OP_OPEN, 0, 0);
	connect5(s, 0, 0, 0, 0, 0, 0);
	settle(s);
	op(s, OP_ACK, 0, 1);
	op(s, OP_ACK, 0, 1);
	op(s, OP_ACK, 1, 1);
	op(s, OP_ACK, 1, 1);
	op(s, OP_CLOSE, 0, 0);
	settle(s);
	op(s, OP_OPEN, 0, 0);
	connect5(s, 0, 0, 0, 0, 0, 0);
	settle(s);
}

/* Level 5: taken over (DISCONNECT 0x8E), then a keep-alive timeout (0x8D)
 * and Receive Maximum exceeded (0x93). */
static void seed_v5_disconnects(struct seed *s)
{
	connect5(s, 0, 0, 0, 1, 1, 0);
	settle(s);
	op(s, OP_OPEN, 2, 0);
	connect(s, 2, 0, 0, 0, 0);
	settle(s);
	connect5(s, 1, 2, 1, 1, 0, 0);
	settle(s);
	op(s, OP_CLOCK, 0, 0);
	put(s, 40);
	settle(s);
	op(s, OP_OPEN, 3, 1);
	connect5(s, 3, 2, 1, 0, 0, 0);
	for (int i = 0; i < 5; i++)
		publish(s, 3, 1 + (i & 1), 3, 1 + i, "rm");
	settle(s);
}

static const struct {
	const char *name;
	void (*fn)(struct seed *s);
} seeds[] = {
	{ "connect", seed_connect },
	{ "qos0_sub", seed_qos0_sub },
	{ "qos1_pending_ok", seed_qos1_pending_ok },
	{ "qos1_fail", seed_qos1_fail },
	{ "qos2_flow", seed_qos2_flow },
	{ "sink_done_busy", seed_sink_done_busy },
	{ "takeover_same_worker", seed_takeover_same_worker },
	{ "takeover_cross_worker", seed_takeover_cross_worker },
	{ "takeover_clean", seed_takeover_clean },
	{ "offline_queue", seed_offline_queue },
	{ "timeouts", seed_timeouts },
	{ "raw_flow", seed_raw_flow },
	{ "split_and_big", seed_split_and_big },
	{ "v5_connect", seed_v5_connect },
	{ "v5_fail", seed_v5_fail },
	{ "v5_expiry", seed_v5_expiry },
	{ "v5_disconnects", seed_v5_disconnects },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct seed s = { .n = 0 };
		seeds[i].fn(&s);
		if (save(argv[1], seeds[i].name, &s) < 0)
			return 1;
	}
	return 0;
}
