/*
 * it_uplink.c - MQTT -> Kafka against librdkafka's mock cluster, hosted in
 * this process: the records (topic, key, value, headers, timestamp) for
 * QoS 0/1/2 and both formats, fan-out, templates, unrouted messages, dead
 * letters; and the delivery guarantee: PUBACK only once Kafka has the record
 * (withheld while the broker is down, never sent for a record that timed
 * out), in the order received, with flat memory while Kafka stalls, and at
 * shut-down only for records that are in Kafka.
 *
 * Every test builds its own mock cluster and gateway, because fault
 * injection acts on a whole cluster; the teardown stops both, pass or fail.
 * Records are read back with a consumer that assigns every partition from
 * the beginning; counts are sums of high watermarks; counters come from the
 * gateway's /metrics. KG_TEST_FILTER=glob runs only the matching tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itpaho.h"
#include "itutil.h"

#define WAIT_MS 10000

struct fx {
	struct itkafka_mock k;
	struct gw g;
};

static struct fx F;

static long long wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- fixture: mock cluster + gateway ------------------------------------- */

/* Starts a mock cluster of `brokers` and a gateway producing to it with
 * kafka_extra inside the kafka group and `rest` after it (routes, limits). */
static void fx_up(int brokers, const char *kafka_extra, const char *rest)
{
	char cfg[4096];

	assert_int_equal(itkafka_mock_init(&F.k, brokers), 0);
	F.g.metrics_port = gw_free_port();
	/* A short flush keeps teardown quick when a test leaves Kafka down. */
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; %s %s };\n%s\n", F.g.metrics_port, F.k.bootstrap,
		 kafka_extra ? kafka_extra : "",
		 kafka_extra && strstr(kafka_extra, "flush_timeout") ? "" : "flush_timeout = 2;",
		 rest);
	assert_int_equal(gw_start(&F.g, cfg), 0);
}

static int fx_down(void **state)
{
	(void)state;
	gw_stop(&F.g);
	itkafka_mock_release(&F.k);
	memset(&F, 0, sizeof(F));
	return 0;
}

/* The value of an unlabelled metric from the gateway's /metrics, or -1. */
static long long metric(const char *name)
{
	static struct itkafka_resp r;

	assert_int_equal(itkafka_http_get(F.g.metrics_port, "/metrics", &r, WAIT_MS), 200);
	return (long long)itkafka_metric(r.body, name);
}

/* ---- reading the cluster --------------------------------------------------- */

/* Records in topic (watermarks), or -1 when the topic does not exist. */
static long kcount(const char *topic)
{
	return itkafka_count(F.k.bootstrap, topic, 5000);
}

/* Records in every topic of the cluster. */
static long kcount_all(void)
{
	long n = itkafka_count(F.k.bootstrap, NULL, 5000);

	assert_true(n >= 0);
	return n;
}

/* Reads up to want records of topic within timeout_ms into out. Returns how
 * many were read. */
static int kread(const char *topic, int want, int timeout_ms, struct itkafka_rec *out)
{
	int n = itkafka_read(F.k.bootstrap, topic, want, timeout_ms, out);

	assert_true(n >= 0);
	return n;
}

/* The record whose value is val, or fails the test. */
static const struct itkafka_rec *by_value(const struct itkafka_rec *r, int n, const void *val,
					  size_t len)
{
	for (int i = 0; i < n; i++)
		if (r[i].vlen == len && memcmp(r[i].val, val, len) == 0)
			return &r[i];
	fail_msg("no record with value '%.*s'", (int)len, (const char *)val);
	return NULL;
}

static void assert_header(const struct itkafka_rec *r, const char *name, const char *want)
{
	const void *v = NULL;
	size_t len = 0;

	if (!r->hdrs || rd_kafka_header_get_last(r->hdrs, name, &v, &len))
		fail_msg("record has no header %s", name);
	if (len != strlen(want) || memcmp(v, want, len) != 0)
		fail_msg("header %s = '%.*s', want '%s'", name, (int)len, (const char *)v, want);
}

static bool has_header(const struct itkafka_rec *r, const char *name)
{
	const void *v;
	size_t len;

	return r->hdrs && rd_kafka_header_get_last(r->hdrs, name, &v, &len) == 0;
}

/* ---- MQTT helpers ---------------------------------------------------------- */

static void paho_pub(MQTTClient cl, const char *topic, const void *p, size_t len, int qos,
		     int retain)
{
	MQTTClient_message m = MQTTClient_message_initializer;
	MQTTClient_deliveryToken dt;

	m.payload = (void *)p;
	m.payloadlen = (int)len;
	m.qos = qos;
	m.retained = retain;
	assert_int_equal(MQTTClient_publishMessage(cl, topic, &m, &dt), MQTTCLIENT_SUCCESS);
	if (qos > 0)
		assert_int_equal(MQTTClient_waitForCompletion(cl, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
}

static MQTTClient paho_connect(const char *id, const char *username)
{
	MQTTClient cl = itpaho_connect(F.g.port, id, username);
	assert_non_null(cl);
	return cl;
}

/* ---- records: raw format, QoS 0/1/2 ------------------------------------------ */

static void test_raw_qos012(void **state)
{
	static const uint8_t bin[] = { 0x00, 0xff, 'b', 0x00, '\n' };
	struct {
		const char *topic;
		const void *p;
		size_t len;
		int qos, retain;
		long long before, after;
	} m[] = {
		{ "factory/f1/sensors/t", "q0", 2, 0, 0 },
		{ "factory/f1/sensors/t", "q1", 2, 1, 0 },
		{ "factory/f2/sensors/h/x", "q2", 2, 2, 0 },
		{ "factory/f1/sensors/t", bin, sizeof(bin), 1, 1 },
	};
	enum { N = sizeof(m) / sizeof(m[0]) };
	struct itkafka_rec r[N + 1];
	char qos[2] = "0";
	(void)state;

	fx_up(1, NULL, "routes = ( { filter = \"factory/+/sensors/#\"; topic = \"sensors\";"
		       " key = \"${clientid}\"; format = \"raw\"; } );");
	MQTTClient cl = paho_connect("it-up-dev42", "alice");
	for (int i = 0; i < N; i++) {
		m[i].before = wall_ms();
		paho_pub(cl, m[i].topic, m[i].p, m[i].len, m[i].qos, m[i].retain);
		m[i].after = wall_ms();
	}
	itpaho_close(&cl);
	memset(r, 0, sizeof(r));
	assert_int_equal(kread("sensors", N, WAIT_MS, r), N);
	long long read_at = wall_ms();
	assert_int_equal(kcount("sensors"), N);
	for (int i = 0; i < N; i++) {
		const struct itkafka_rec *k = by_value(r, N, m[i].p, m[i].len);

		/* One key, one partition: the records are in publish order. */
		assert_ptr_equal(k, &r[i]);
		assert_non_null(k->key);
		assert_string_equal(k->key, "it-up-dev42");
		assert_header(k, "mqtt.topic", m[i].topic);
		assert_header(k, "mqtt.clientid", "it-up-dev42");
		qos[0] = (char)('0' + m[i].qos);
		assert_header(k, "mqtt.qos", qos);
		assert_header(k, "mqtt.retain", m[i].retain ? "true" : "false");
		assert_header(k, "mqtt.username", "alice");
		/* Gateway receive time: after the publish started; before its
		 * acknowledgement, or (QoS 0) before we read it back. */
		assert_int_equal(k->tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
		assert_true(k->ts >= m[i].before);
		assert_true(k->ts <= (m[i].qos ? m[i].after : read_at));
	}
	itkafka_recs_free(r, N);

	/* Without a user name: no mqtt.username header. */
	cl = paho_connect("it-up-anon", NULL);
	paho_pub(cl, "factory/f9/sensors/t", "anon", 4, 1, 0);
	itpaho_close(&cl);
	assert_int_equal(kread("sensors", N + 1, WAIT_MS, r), N + 1);
	const struct itkafka_rec *k = by_value(r, N + 1, "anon", 4);
	assert_string_equal(k->key, "it-up-anon");
	assert_header(k, "mqtt.clientid", "it-up-anon");
	assert_false(has_header(k, "mqtt.username"));
	itkafka_recs_free(r, N + 1);
}

/* ---- records: json format -------------------------------------------------- */

static json_t *envelope_of(const struct itkafka_rec *k)
{
	json_error_t je;
	json_t *j = json_loadb(k->val, k->vlen, 0, &je);

	if (!j || !json_is_object(j))
		fail_msg("record value is not a JSON object: %s (%.*s)", je.text, (int)k->vlen, k->val);
	return j;
}

static const char *jstr(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_string(v))
		fail_msg("envelope member %s is not a string", name);
	return json_string_value(v);
}

static void test_json_envelope(void **state)
{
	static const char doc[] = "{ \"t\" : 21.5,\n \"ok\": [true, null] }";
	static const uint8_t bin[] = { 0xff, 0x00, 'a' };
	struct itkafka_rec r[2];
	(void)state;

	fx_up(1, NULL, "routes = ( { filter = \"json/#\"; topic = \"env\";"
		       " key = \"${topic[1]}\"; format = \"json\"; } );");
	MQTTClient a = paho_connect("it-up-js1", "bob");
	long long t0 = wall_ms();
	paho_pub(a, "json/dev1/state", doc, strlen(doc), 1, 0);
	long long t1 = wall_ms();
	itpaho_close(&a);
	MQTTClient b = paho_connect("it-up-js2", NULL);
	paho_pub(b, "json/dev2/blob", bin, sizeof(bin), 2, 1);
	itpaho_close(&b);

	memset(r, 0, sizeof(r));
	assert_int_equal(kread("env", 2, WAIT_MS, r), 2);
	const struct itkafka_rec *k1 = r[0].key && strcmp(r[0].key, "dev1") == 0 ? &r[0] : &r[1];
	const struct itkafka_rec *k2 = k1 == &r[0] ? &r[1] : &r[0];

	/* A JSON payload is inlined, its insignificant whitespace removed. */
	assert_string_equal(k1->key, "dev1");
	assert_non_null(strstr(k1->val, "\"payload\":{\"t\":21.5,\"ok\":[true,null]}"));
	json_t *j = envelope_of(k1);
	assert_string_equal(jstr(j, "topic"), "json/dev1/state");
	assert_string_equal(jstr(j, "clientid"), "it-up-js1");
	assert_string_equal(jstr(j, "username"), "bob");
	assert_int_equal(json_integer_value(json_object_get(j, "qos")), 1);
	assert_true(json_is_false(json_object_get(j, "retain")));
	json_int_t ts = json_integer_value(json_object_get(j, "timestamp"));
	assert_true(ts >= t0 && ts <= t1);
	assert_int_equal(ts, k1->ts);
	assert_null(json_object_get(j, "payload_encoding"));
	assert_null(json_object_get(j, "error"));
	assert_true(json_is_object(json_object_get(j, "payload")));
	json_decref(j);

	/* Not JSON: base64, and username null without a user name. */
	assert_string_equal(k2->key, "dev2");
	j = envelope_of(k2);
	assert_string_equal(jstr(j, "topic"), "json/dev2/blob");
	assert_string_equal(jstr(j, "clientid"), "it-up-js2");
	assert_true(json_is_null(json_object_get(j, "username")));
	assert_int_equal(json_integer_value(json_object_get(j, "qos")), 2);
	assert_true(json_is_true(json_object_get(j, "retain")));
	assert_string_equal(jstr(j, "payload_encoding"), "base64");
	assert_string_equal(jstr(j, "payload"), "/wBh");
	json_decref(j);
	itkafka_recs_free(r, 2);
}

/* ---- routing: fan-out, templates, unrouted ---------------------------------- */

static void test_fanout_templates_unrouted(void **state)
{
	struct itkafka_rec r[4];
	struct itutil_pkt p;
	(void)state;

	fx_up(1, NULL,
	      "routes = ("
	      " { filter = \"fan/#\"; topic = \"fan-a\"; key = \"${clientid}\"; format = \"raw\"; },"
	      " { filter = \"fan/+/x\"; topic = \"fan-b\"; key = \"${clientid}\"; format = \"json\"; },"
	      " { filter = \"tpl/#\"; topic = \"tpl-${topic[1]}\"; key = \"${topic[2]}\"; } );");
	int fd = itutil_connect(F.g.port, "it-up-fan", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_send_publish(fd, "fan/1/x", "both", 4, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(fd, "fan/1/y", "only-a", 6, 1, false, 2), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 2, WAIT_MS), 0);
	/* PUBACK means every route's record is in Kafka: count at once. */
	assert_int_equal(kcount("fan-a"), 2);
	assert_int_equal(kcount("fan-b"), 1);
	memset(r, 0, sizeof(r));
	assert_int_equal(kread("fan-b", 1, WAIT_MS, r), 1);
	json_t *j = envelope_of(&r[0]);
	assert_string_equal(jstr(j, "topic"), "fan/1/x");
	json_decref(j);
	itkafka_recs_free(r, 1);

	assert_int_equal(itutil_send_publish(fd, "tpl/alpha/k1", "A", 1, 1, false, 3), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 3, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(fd, "tpl/beta/k2/deeper", "B", 1, 1, false, 4), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 4, WAIT_MS), 0);
	assert_int_equal(kread("tpl-alpha", 1, WAIT_MS, r), 1);
	assert_string_equal(r[0].key, "k1");
	assert_string_equal(r[0].val, "A");
	assert_header(&r[0], "mqtt.topic", "tpl/alpha/k1");
	itkafka_recs_free(r, 1);
	assert_int_equal(kread("tpl-beta", 1, WAIT_MS, r), 1);
	assert_string_equal(r[0].key, "k2");
	itkafka_recs_free(r, 1);

	/* Unrouted: acknowledged, delivered to a local subscriber, in no topic. */
	long before = kcount_all();
	int sub = itutil_connect(F.g.port, "it-up-local-sub", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "other/#", 0), 0);
	assert_int_equal(itutil_send_publish(fd, "other/x", "local", 5, 1, false, 5), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 5, WAIT_MS), 0);
	assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "other/x");
	assert_string_equal(p.payload, "local");
	itutil_sleep_ms(500); /* a wrongly produced record would have had time to land */
	assert_int_equal(kcount_all(), before);
	assert_int_equal(metric("kafkagate_uplink_unrouted_total"), 1);
	close(sub);
	close(fd);
}

/* ---- dead letters ---------------------------------------------------------- */

#define DLQ_ROUTES \
	"routes = (" \
	" { filter = \"short/#\"; topic = \"s-${topic[5]}\"; key = \"${clientid}\"; }," \
	" { filter = \"inv/+\"; topic = \"inv-${topic[1]}\"; } );"

static void test_dead_letter(void **state)
{
	struct itkafka_rec r[3];
	(void)state;

	fx_up(1, "dead_letter_topic = \"dlq\";", DLQ_ROUTES);
	int fd = itutil_connect(F.g.port, "it-up-dlq", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_send_publish(fd, "short/a", "too short", 9, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(fd, "inv/a b", "bad name", 8, 2, false, 2), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x50, 2, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(fd, "short/b", "qos0", 4, 0, false, 0), 0);

	memset(r, 0, sizeof(r));
	assert_int_equal(kread("dlq", 3, WAIT_MS, r), 3);
	const struct itkafka_rec *k = NULL;
	for (int i = 0; i < 3; i++) {
		json_t *j = envelope_of(&r[i]);
		const char *topic = jstr(j, "topic"), *err = jstr(j, "error");

		assert_string_equal(r[i].key, "it-up-dlq");
		assert_string_equal(jstr(j, "clientid"), "it-up-dlq");
		if (strcmp(topic, "inv/a b") == 0) {
			assert_non_null(strstr(err, "invalid Kafka topic name"));
			assert_int_equal(json_integer_value(json_object_get(j, "qos")), 2);
			k = &r[i];
		} else {
			assert_true(strcmp(topic, "short/a") == 0 || strcmp(topic, "short/b") == 0);
			assert_non_null(strstr(err, "route line"));
		}
		assert_non_null(json_object_get(j, "payload"));
		json_decref(j);
	}
	assert_non_null(k);
	assert_true(gw_log_contains(&F.g, "dead letter client=\"it-up-dlq\" topic=\"short/a\""));
	assert_int_equal(kcount_all(), 3); /* nothing but the dead letters */
	assert_int_equal(metric("kafkagate_uplink_dead_letters_total"), 3);
	assert_int_equal(metric("kafkagate_uplink_dropped_total"), 0);
	itkafka_recs_free(r, 3);
	close(fd);
}

static void test_no_dead_letter_topic(void **state)
{
	(void)state;

	fx_up(1, NULL, DLQ_ROUTES);
	int fd = itutil_connect(F.g.port, "it-up-nodlq", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_send_publish(fd, "short/a", "too short", 9, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, WAIT_MS), 0);
	assert_true(gw_log_wait(&F.g, "record dropped client=\"it-up-nodlq\" topic=\"short/a\"", 2000));
	assert_int_equal(kcount_all(), 0);
	assert_int_equal(metric("kafkagate_uplink_dropped_total"), 1);
	close(fd);
}

/* Too large for Kafka: a permanent failure, but its dead letter (the same
 * payload in an envelope) is larger still, so the record is dropped and
 * counted even with a dead-letter topic; the device gets its PUBACK. */
static void test_oversized_record_dropped(void **state)
{
	enum { BIG = 30000 };
	uint8_t *pkt = malloc(BIG + 64);
	char *payload = malloc(BIG);
	(void)state;

	assert_non_null(pkt);
	assert_non_null(payload);
	fx_up(1, "dead_letter_topic = \"dlq\"; properties = ( (\"message.max.bytes\", 20000) );",
	      "routes = ( { filter = \"big/#\"; topic = \"big\"; key = \"${clientid}\"; } );");
	int fd = itutil_connect(F.g.port, "it-up-big", true, 0, NULL);
	assert_true(fd >= 0);
	memset(payload, 'x', BIG);
	int n = raw_build_publish(pkt, BIG + 64, 4, "big/x", payload, BIG, 1, false, false, 1);
	assert_int_equal(raw_send(fd, pkt, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, WAIT_MS), 0);
	assert_true(gw_log_wait(&F.g, "record dropped client=\"it-up-big\" topic=\"big/x\"", 2000));
	assert_int_equal(itutil_send_publish(fd, "big/y", "small", 5, 1, false, 2), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 2, WAIT_MS), 0);
	assert_int_equal(kcount_all(), 1);
	assert_int_equal(kcount("big"), 1);
	assert_int_equal(metric("kafkagate_uplink_dropped_total"), 1);
	assert_int_equal(metric("kafkagate_uplink_dead_letters_total"), 0);
	close(fd);
	free(pkt);
	free(payload);
}

/* A will is a publish on the client's behalf: it lands in Kafka through
 * the routes like the client's own publishes, keyed by its client id. */
static void test_will_to_kafka(void **state)
{
	(void)state;
	fx_up(1, NULL, "routes = ( { filter = \"status/#\"; topic = \"status\"; key = \"${clientid}\"; } );");
	struct raw_connect rc = { .level = 4, .client_id = "it-up-will", .clean = true,
				  .keepalive = 60, .will_topic = "status/it-up-will",
				  .will_payload = "offline", .will_payload_len = 7, .will_qos = 1 };
	int fd = itutil_connect_with(F.g.port, &rc, NULL);
	assert_true(fd >= 0);
	close(fd); /* no DISCONNECT: the will is due */
	struct itkafka_rec r[2];
	int n = itkafka_read(F.k.bootstrap, "status", 1, WAIT_MS, r);
	assert_int_equal(n, 1);
	assert_string_equal(r[0].key, "it-up-will");
	assert_int_equal(r[0].vlen, 7);
	assert_memory_equal(r[0].val, "offline", 7);
	itkafka_recs_free(r, n);
	/* A clean DISCONNECT: no will. */
	struct raw_connect rc2 = rc;
	rc2.client_id = "it-up-will2";
	rc2.will_topic = "status/it-up-will2";
	fd = itutil_connect_with(F.g.port, &rc2, NULL);
	assert_true(fd >= 0);
	const uint8_t disc[2] = { 0xE0, 0x00 };
	assert_int_equal(write(fd, disc, 2), 2);
	close(fd);
	usleep(500 * 1000);
	assert_int_equal(kcount("status"), 1);
}

/* ---- the delivery guarantee ---------------------------------------------------- */

static void test_puback_withheld_while_down(void **state)
{
	struct itkafka_rec r[3];
	(void)state;

	fx_up(1, NULL, "routes = ( { filter = \"held/#\"; topic = \"held\"; key = \"${clientid}\"; } );");
	rd_kafka_mock_topic_create(F.k.mc, "held", 1, 1);
	int fd = itutil_connect(F.g.port, "it-up-held", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_send_publish(fd, "held/a", "first", 5, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, WAIT_MS), 0);

	rd_kafka_mock_broker_set_down(F.k.mc, 1);
	assert_int_equal(itutil_send_publish(fd, "held/a", "second", 6, 1, false, 2), 0);
	assert_int_equal(itutil_send_publish(fd, "held/a", "third", 5, 2, false, 3), 0);
	/* A QoS 2 resend while Kafka has not answered. */
	assert_int_equal(itutil_send_publish(fd, "held/a", "third", 5, 2, true, 3), 0);
	assert_true(itutil_quiet(fd, 2000)); /* nothing came, and still connected */
	rd_kafka_mock_broker_set_up(F.k.mc, 1);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 2, 25000), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x50, 3, WAIT_MS), 0);
	assert_true(itutil_quiet(fd, 300)); /* one PUBREC only */
	/* A resend after PUBREC: PUBREC, no record. */
	assert_int_equal(itutil_send_publish(fd, "held/a", "third", 5, 2, true, 3), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x50, 3, WAIT_MS), 0);
	assert_int_equal(itutil_send_ack(fd, 0x62, 3), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x70, 3, WAIT_MS), 0);
	assert_int_equal(kcount("held"), 3);

	memset(r, 0, sizeof(r));
	assert_int_equal(kread("held", 3, WAIT_MS, r), 3);
	assert_string_equal(r[0].val, "first");
	assert_string_equal(r[1].val, "second");
	assert_string_equal(r[2].val, "third");
	itkafka_recs_free(r, 3);
	close(fd);
}

/* A device whose ack window is full while Kafka is down is not read (its
 * PINGREQs wait with its PUBLISHes): that silence is the gateway's, so the
 * keepalive must not close it; the PUBACK comes once Kafka is back. */
static void test_keepalive_while_held(void **state)
{
	struct raw_connect rc = { .level = 4, .client_id = "it-up-ka", .clean = true,
				  .keepalive = 1 };
	(void)state;

	fx_up(1, NULL, "limits = { max_inflight = 1; };\n"
	      "routes = ( { filter = \"ka/#\"; topic = \"ka\"; } );");
	rd_kafka_mock_topic_create(F.k.mc, "ka", 1, 1);
	int fd = itutil_connect_with(F.g.port, &rc, NULL);
	assert_true(fd >= 0);
	rd_kafka_mock_broker_set_down(F.k.mc, 1);
	assert_int_equal(itutil_send_publish(fd, "ka/a", "held", 4, 1, false, 1), 0);
	/* The window (1) is full: the gateway stops reading this device. */
	for (int i = 0; i < 4; i++) {
		itutil_sleep_ms(800);
		assert_int_equal(raw_send_hex(fd, "C0 00"), 0); /* PINGREQ, unread */
	}
	assert_true(itutil_quiet(fd, 100)); /* 3.3 s > 1.5 keepalives: still open */
	rd_kafka_mock_broker_set_up(F.k.mc, 1);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 1, 25000), 0);
	close(fd);
}

static void test_timeout_never_acked(void **state)
{
	uint8_t in[256];
	struct itutil_pkt p;
	(void)state;

	fx_up(1, "properties = ( (\"message.timeout.ms\", 3000) );",
	      "routes = ( { filter = \"to/#\"; topic = \"to\"; key = \"${clientid}\"; } );");
	rd_kafka_mock_topic_create(F.k.mc, "to", 1, 1);
	int a = itutil_connect(F.g.port, "it-up-to-a", true, 0, NULL);
	assert_true(a >= 0);
	assert_int_equal(itutil_send_publish(a, "to/a", "first", 5, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(a, 0x40, 1, WAIT_MS), 0);
	int b = itutil_connect(F.g.port, "it-up-to-b", true, 0, NULL);
	assert_true(b >= 0);
	assert_int_equal(itutil_subscribe(b, 1, "local/#", 0), 0);

	rd_kafka_mock_broker_set_down(F.k.mc, 1);
	long long t0 = itutil_now_ms();
	assert_int_equal(itutil_send_publish(a, "to/a", "lost", 4, 1, false, 2), 0);
	assert_true(itutil_closed_silently(a, 20000));
	long long waited = itutil_now_ms() - t0;
	print_message("connection closed %lld ms after the publish\n", waited);
	assert_true(waited >= 2500);
	assert_true(gw_log_wait(&F.g, "kafka delivery failed client=\"it-up-to-a\"", 2000));
	assert_true(gw_log_contains(&F.g, "reason=\"delivery failed, not acknowledged\""));
	assert_true(metric("kafkagate_uplink_failed_total") >= 1);
	assert_true(metric("kafkagate_uplink_connections_closed_total") >= 1);
	close(a);

	/* Everyone else is still served: local delivery, then Kafka again. */
	int c = itutil_connect(F.g.port, "it-up-to-c", true, 0, NULL);
	assert_true(c >= 0);
	assert_int_equal(itutil_send_publish(c, "local/x", "hi", 2, 1, false, 1), 0);
	assert_int_equal(itutil_expect_ack(c, 0x40, 1, WAIT_MS), 0);
	assert_int_equal(itutil_recv_publish(b, &p, WAIT_MS), 0);
	rd_kafka_mock_broker_set_up(F.k.mc, 1);
	close(c);
	/* The producer reconnects with backoff, so a record right after the
	 * outage may time out too: resend until acknowledged, like a device. */
	int n = -1, tries = 0;
	for (long long end = itutil_now_ms() + 30000; itutil_now_ms() < end; tries++) {
		c = itutil_connect(F.g.port, "it-up-to-c", true, 0, NULL);
		assert_true(c >= 0);
		assert_int_equal(itutil_send_publish(c, "to/c", "after", 5, 1, false, 2), 0);
		n = raw_recv_packet(c, in, sizeof(in), WAIT_MS);
		close(c);
		if (n > 0)
			break;
	}
	print_message("publish after the outage acknowledged after %d attempt(s)\n", tries + 1);
	assert_int_equal(n, 4);
	assert_int_equal(in[0], 0x40);
	struct itkafka_rec r[3];
	memset(r, 0, sizeof(r));
	n = kread("to", 3, 3000, r);
	assert_true(n >= 2);
	by_value(r, n, "first", 5);
	by_value(r, n, "after", 5);
	itkafka_recs_free(r, n);
	close(b);
}

/* Partitions led by brokers with different round trips, so that Kafka
 * answers out of order; the PUBACKs still follow the publishes. */
static void test_ack_order(void **state)
{
	enum { N = 20 };
	(void)state;

	fx_up(3, NULL, "routes = ( { filter = \"ord/#\"; topic = \"ord\"; key = \"${topic[1]}\"; } );");
	rd_kafka_mock_topic_create(F.k.mc, "ord", 6, 1);
	for (int p = 0; p < 6; p++)
		rd_kafka_mock_partition_set_leader(F.k.mc, "ord", p, p % 3 + 1);
	int fd = itutil_connect(F.g.port, "it-up-ord", true, 0, NULL);
	assert_true(fd >= 0);
	for (int i = 0; i < 6; i++) { /* warm up a connection to every leader */
		char topic[32];

		snprintf(topic, sizeof(topic), "ord/w%d", i);
		assert_int_equal(itutil_send_publish(fd, topic, "w", 1, 1, false, (uint16_t)(1000 + i)),
				 0);
		assert_int_equal(itutil_expect_ack(fd, 0x40, (uint16_t)(1000 + i), WAIT_MS), 0);
	}
	rd_kafka_mock_broker_set_rtt(F.k.mc, 2, 400);
	rd_kafka_mock_broker_set_rtt(F.k.mc, 3, 150);
	for (int i = 0; i < N; i++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "ord/k%d", i);
		assert_int_equal(itutil_send_publish(fd, topic, topic, strlen(topic), 1, false,
						     (uint16_t)(i + 1)), 0);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(itutil_expect_ack(fd, 0x40, (uint16_t)(i + 1), WAIT_MS), 0);
	assert_int_equal(kcount("ord"), N + 6);
	close(fd);
}

/* ---- backpressure ---------------------------------------------------------- */

enum { BP_PUBS = 50, BP_SIZE = 16384, BP_MSGS = 128, BP_INFLIGHT = 16 };

struct bp {
	int fd;
	uint8_t pkt[BP_SIZE + 64];
	int len, off;                 /* packet being written */
	int sent, acked;              /* whole PUBLISHes written; PUBACKs read */
	long bytes;                   /* written in all */
	uint8_t in[4];
	int inlen;
	const char *bad;
};

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Bytes sent to 127.0.0.1:port that the process listening there has not
 * read: its sockets' receive queues plus the peers' send queues. */
static long unread_bytes(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	long total = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, rport, st;
		unsigned long tx, rx;

		if (sscanf(line, " %*d: %*x:%x %*x:%x %x %lx:%lx", &lport, &rport, &st, &tx, &rx) != 5 ||
		    st != 1 /* ESTABLISHED */)
			continue;
		if ((int)lport == port)
			total += (long)rx;
		else if ((int)rport == port)
			total += (long)tx;
	}
	fclose(f);
	return total;
}

static void bp_next(struct bp *p, int i)
{
	static char body[BP_SIZE];
	char topic[32];

	memset(body, 'a' + i % 26, sizeof(body));
	snprintf(topic, sizeof(topic), "bp/%d", i);
	p->len = raw_build_publish(p->pkt, sizeof(p->pkt), 4, topic, body, sizeof(body), 1,
				   false, false, (uint16_t)(p->sent + 1));
	p->off = 0;
}

/* Writes and reads for ms; new PUBLISHes only while `more` (one being
 * written is finished). Returns the PUBACKs read. */
static int bp_pump(struct bp *ps, int ms, bool more, long *rss_max)
{
	struct pollfd pfd[BP_PUBS];
	long long end = itutil_now_ms() + ms, next_rss = 0;
	int acks = 0;

	while (itutil_now_ms() < end) {
		int open = 0;

		for (int i = 0; i < BP_PUBS; i++) {
			struct bp *p = &ps[i];

			pfd[i] = (struct pollfd){ .fd = p->bad ? -1 : p->fd, .events = POLLIN };
			if (p->off < p->len)
				pfd[i].events |= POLLOUT;
			open += !p->bad && (p->off < p->len || p->acked < p->sent);
		}
		if (!more && open == 0)
			break;
		if (rss_max && itutil_now_ms() >= next_rss) {
			long r = rss_kib(F.g.pid);
			if (r > *rss_max)
				*rss_max = r;
			next_rss = itutil_now_ms() + 100;
		}
		if (poll(pfd, BP_PUBS, 50) <= 0)
			continue;
		for (int i = 0; i < BP_PUBS; i++) {
			struct bp *p = &ps[i];

			if (pfd[i].revents & POLLOUT) {
				ssize_t w = send(p->fd, p->pkt + p->off, (size_t)(p->len - p->off),
						 MSG_NOSIGNAL);
				if (w > 0)
					p->bytes += (long)w;
				if (w > 0 && (p->off += (int)w) == p->len) {
					p->sent++;
					if (more && p->sent < BP_MSGS)
						bp_next(p, i);
				} else if (w < 0 && errno != EAGAIN) {
					p->bad = "send failed";
				}
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t r = recv(p->fd, p->in + p->inlen, (size_t)(4 - p->inlen), 0);
				if (r <= 0 && !(r < 0 && errno == EAGAIN)) {
					p->bad = "closed";
				} else if (r > 0 && (p->inlen += (int)r) == 4) {
					p->inlen = 0;
					if (p->in[0] != 0x40 || p->in[1] != 2 ||
					    (p->in[2] << 8 | p->in[3]) != p->acked + 1)
						p->bad = "not the next PUBACK";
					p->acked++;
					acks++;
				}
			}
		}
	}
	return acks;
}

static void test_backpressure_memory(void **state)
{
	char rest[512];
	struct bp *ps = calloc(BP_PUBS, sizeof(*ps));
	long sent = 0, acked = 0;
	(void)state;

	assert_non_null(ps);
	snprintf(rest, sizeof(rest),
		 "limits = { max_inflight = %d; };\n"
		 "routes = ( { filter = \"bp/#\"; topic = \"bp\"; key = \"${clientid}\"; } );",
		 BP_INFLIGHT);
	fx_up(1, NULL, rest);
	rd_kafka_mock_topic_create(F.k.mc, "bp", 4, 1);
	for (int i = 0; i < BP_PUBS; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-up-bp%d", i);
		ps[i].fd = itutil_connect(F.g.port, id, true, 0, NULL);
		assert_true(ps[i].fd >= 0);
	}
	assert_int_equal(itutil_send_publish(ps[0].fd, "bp/warm", "w", 1, 1, false, 60000), 0);
	assert_int_equal(itutil_expect_ack(ps[0].fd, 0x40, 60000, WAIT_MS), 0);
	for (int i = 0; i < BP_PUBS; i++) {
		fcntl(ps[i].fd, F_SETFL, fcntl(ps[i].fd, F_GETFL) | O_NONBLOCK);
		bp_next(&ps[i], i);
	}

	rd_kafka_mock_broker_set_down(F.k.mc, 1);
	itutil_sleep_ms(200);
	long rss0 = rss_kib(F.g.pid), rss_max = rss0;
	assert_int_equal(bp_pump(ps, 5000, true, &rss_max), 0);
	long written = 0;
	for (int i = 0; i < BP_PUBS; i++) {
		sent += ps[i].sent;
		written += ps[i].bytes;
	}
	/* The kernel buffers much of it; what the gateway itself took in is
	 * what was written less what still waits in socket queues. */
	long taken = written - unread_bytes(F.g.port);
	long cap = (long)BP_PUBS * (BP_INFLIGHT + 8) * BP_SIZE;
	print_message("Kafka down: %ld of %d PUBLISHes (%ld of %d MiB) written, %ld MiB read by "
		      "the gateway; VmRSS %ld -> max %ld KiB\n", sent, BP_PUBS * BP_MSGS,
		      written >> 20, BP_PUBS * BP_MSGS * BP_SIZE >> 20, taken >> 20, rss0, rss_max);
	assert_true(written > 2 * cap);     /* the publishers pushed hard */
	assert_true(taken < cap);           /* about max_inflight each, then no more */
	assert_true(rss_max - rss0 < 50 * 1024);

	rd_kafka_mock_broker_set_up(F.k.mc, 1);
	bp_pump(ps, 60000, false, NULL);
	sent = 0;
	for (int i = 0; i < BP_PUBS; i++) {
		if (ps[i].bad)
			fail_msg("publisher %d: %s", i, ps[i].bad);
		assert_int_equal(ps[i].acked, ps[i].sent);
		sent += ps[i].sent;
		acked += ps[i].acked;
		close(ps[i].fd);
	}
	print_message("Kafka up: %ld acknowledged\n", acked);
	assert_int_equal(kcount("bp"), acked + 1);
	free(ps);
}

/* ---- shut-down ------------------------------------------------------------- */

enum { SD_CLIENTS = 5, SD_MSGS = 10 };

/* Reads PUBACKs until the gateway closes fd; marks acked[pid - 1]. */
static int read_acks_until_close(int fd, bool *acked, int timeout_ms)
{
	uint8_t in[16];
	int n, count = 0;

	while ((n = raw_recv_packet(fd, in, sizeof(in), timeout_ms)) == 4 && in[0] == 0x40) {
		int pid = in[2] << 8 | in[3];

		assert_true(pid >= 1 && pid <= SD_MSGS);
		acked[pid - 1] = true;
		count++;
	}
	assert_true(n <= 0);
	return count;
}

static void shutdown_case(int rtt_ms, bool down)
{
	int fd[SD_CLIENTS];
	bool acked[SD_CLIENTS][SD_MSGS];
	char payload[32];
	int nacked = 0;

	fx_up(1, "flush_timeout = 5;",
	      "routes = ( { filter = \"sd/#\"; topic = \"sd\"; key = \"${clientid}\"; } );");
	rd_kafka_mock_topic_create(F.k.mc, "sd", 2, 1);
	for (int c = 0; c < SD_CLIENTS; c++) {
		snprintf(payload, sizeof(payload), "it-up-sd%d", c);
		fd[c] = itutil_connect(F.g.port, payload, true, 0, NULL);
		assert_true(fd[c] >= 0);
		assert_int_equal(itutil_send_publish(fd[c], "sd/warm", "warm", 4, 1, false, 100), 0);
		assert_int_equal(itutil_expect_ack(fd[c], 0x40, 100, WAIT_MS), 0);
	}
	if (down)
		rd_kafka_mock_broker_set_down(F.k.mc, 1);
	else
		rd_kafka_mock_broker_set_rtt(F.k.mc, 1, rtt_ms);
	for (int c = 0; c < SD_CLIENTS; c++)
		for (int i = 0; i < SD_MSGS; i++) {
			snprintf(payload, sizeof(payload), "sd-%d-%d", c, i);
			assert_int_equal(itutil_send_publish(fd[c], "sd/x", payload, strlen(payload), 1,
							     false, (uint16_t)(i + 1)), 0);
		}
	itutil_sleep_ms(50);
	long long t0 = itutil_now_ms();
	gw_kill(&F.g, SIGTERM);
	memset(acked, 0, sizeof(acked));
	for (int c = 0; c < SD_CLIENTS; c++) {
		nacked += read_acks_until_close(fd[c], acked[c], 15000);
		close(fd[c]);
	}
	int rc = gw_wait_exit(&F.g, 15000);
	long long took = itutil_now_ms() - t0;
	print_message("SIGTERM to exit %lld ms, %d of %d acknowledged\n", took, nacked,
		      SD_CLIENTS * SD_MSGS);
	assert_int_equal(rc, 0);
	assert_true(took < 5000 + 2500);

	if (down) {
		/* Nothing reached Kafka: nothing may have been acknowledged. */
		assert_int_equal(nacked, 0);
		assert_true(gw_log_contains(&F.g, "kafka flush timed out"));
		rd_kafka_mock_broker_set_up(F.k.mc, 1);
		assert_int_equal(kcount("sd"), SD_CLIENTS);
		return;
	}
	/* Every PUBACK stands for a record in Kafka; and with Kafka merely
	 * slow, the flush lets every in-flight record be acknowledged. */
	rd_kafka_mock_broker_set_rtt(F.k.mc, 1, 0);
	struct itkafka_rec *r = calloc(SD_CLIENTS * (SD_MSGS + 1) + 1, sizeof(*r));
	int n = kread("sd", SD_CLIENTS * (SD_MSGS + 1), WAIT_MS, r);
	for (int c = 0; c < SD_CLIENTS; c++)
		for (int i = 0; i < SD_MSGS; i++)
			if (acked[c][i]) {
				snprintf(payload, sizeof(payload), "sd-%d-%d", c, i);
				by_value(r, n, payload, strlen(payload));
			}
	itkafka_recs_free(r, n);
	free(r);
	assert_int_equal(nacked, SD_CLIENTS * SD_MSGS);
}

static void test_shutdown_flushes(void **state)
{
	(void)state;
	shutdown_case(500, false);
}

static void test_shutdown_flush_timeout(void **state)
{
	(void)state;
	shutdown_case(0, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_raw_qos012, fx_down),
		cmocka_unit_test_teardown(test_json_envelope, fx_down),
		cmocka_unit_test_teardown(test_fanout_templates_unrouted, fx_down),
		cmocka_unit_test_teardown(test_dead_letter, fx_down),
		cmocka_unit_test_teardown(test_no_dead_letter_topic, fx_down),
		cmocka_unit_test_teardown(test_oversized_record_dropped, fx_down),
		cmocka_unit_test_teardown(test_will_to_kafka, fx_down),
		cmocka_unit_test_teardown(test_puback_withheld_while_down, fx_down),
		cmocka_unit_test_teardown(test_keepalive_while_held, fx_down),
		cmocka_unit_test_teardown(test_timeout_never_acked, fx_down),
		cmocka_unit_test_teardown(test_ack_order, fx_down),
		cmocka_unit_test_teardown(test_backpressure_memory, fx_down),
		cmocka_unit_test_teardown(test_shutdown_flushes, fx_down),
		cmocka_unit_test_teardown(test_shutdown_flush_timeout, fx_down),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_uplink", tests, NULL, NULL);
}
