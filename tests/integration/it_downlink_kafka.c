/*
 * it_downlink_kafka.c - the downlink against a real Apache Kafka broker
 * (scripts/kafka-local):
 *   - 5,000 commands keyed to 50 devices (a 4-partition topic) reach their
 *     50 paho subscribers (devices/<id>/commands, QoS 1), each in the order
 *     produced for its key; the lag in GET /api/v1/status returns to 0 and
 *     the group's committed offsets read back equal the high watermarks;
 *   - crash safety: a record whose PUBACK was withheld is delivered again
 *     after the gateway is SIGKILLed and restarted (this gateway joins as a
 *     dynamic member, so that the record waits for the killed member's
 *     session and the device has long re-subscribed when it comes);
 *   - fast return: with the default static membership, a gateway SIGKILLed
 *     and restarted delivers a command produced after its device
 *     re-subscribed within RESUME_MS of accepting connections again
 *     (without it: the old member's 10 s session first).
 *
 * The broker gets a private KAFKA_RUN_DIR and is stopped at the end. Without
 * java or mvn every test is skipped with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

enum { DEVICES = 50, PER_DEVICE = 100, TOTAL = DEVICES * PER_DEVICE, PARTITIONS = 4 };
#define WAIT_MS 60000
#define RESUME_MS 2000

static struct gw g;
static struct itkafka_local kl;

static rd_kafka_t *client_new(rd_kafka_type_t type, const char *group)
{
	static const char *const producer[] = { "log_level", "3", "enable.idempotence", "true",
						NULL };
	static const char *const consumer[] = { "log_level", "3", NULL };
	rd_kafka_t *rk = itkafka_client_new(kl.bootstrap, type, group,
					    type == RD_KAFKA_PRODUCER ? producer : consumer);
	assert_non_null(rk);
	return rk;
}

/* Creates topic with n partitions (before the gateway subscribes to it). */
static int topic_create(const char *topic, int n)
{
	char e[256];
	rd_kafka_t *rk = client_new(RD_KAFKA_PRODUCER, NULL);
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, n, 1, e, sizeof(e));
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	int rc = -1;
	const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
	if (res) {
		size_t cnt;
		const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
		rc = cnt == 1 && !rd_kafka_topic_result_error(tr[0]) ? 0 : -1;
		if (rc)
			fprintf(stderr, "create %s: %s\n", topic, rd_kafka_topic_result_error_string(tr[0]));
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
	return rc;
}

static int group_setup(void **state)
{
	char cfg[1024];
	(void)state;
	if (itkafka_local_start(&kl) < 0)
		return -1;
	if (kl.skip_reason)
		return 0;
	if (topic_create("dlk-cmd", PARTITIONS) < 0 || topic_create("dlk-crash", 1) < 0 ||
	    topic_create("dlk-back", PARTITIONS) < 0)
		return -1;
	g.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5;\n"
		 "  properties = ( (\"session.timeout.ms\", 6000), (\"heartbeat.interval.ms\", 1000),\n"
		 "                 (\"statistics.interval.ms\", 1000), (\"group.instance.id\", \"\") ); };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "downlink = ( { topics = [\"dlk-cmd\", \"dlk-crash\"]; group = \"it-dlk\";\n"
		 "  mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n",
		 kl.bootstrap, g.metrics_port);
	return gw_start(&g, cfg);
}

static int group_teardown(void **state)
{
	(void)state;
	if (!kl.skip_reason)
		gw_stop(&g);
	itkafka_local_stop(&kl);
	return 0;
}

/* ---- devices: paho clients with an arrival callback ---------------------- */

struct device {
	MQTTClient cl;
	int id;
	atomic_int next;      /* next sequence number expected */
	atomic_int bad;       /* out of order, wrong topic or duplicate */
};

static struct device dev[DEVICES];

static int on_message(void *ctx, char *topic, int tlen, MQTTClient_message *m)
{
	struct device *d = ctx;
	char want[64], payload[32];
	snprintf(want, sizeof(want), "devices/dev%d/commands", d->id);
	snprintf(payload, sizeof(payload), "%.*s", m->payloadlen, (const char *)m->payload);
	int seq = atoi(payload);
	if ((tlen ? (size_t)tlen : strlen(topic)) != strlen(want) || strncmp(topic, want, strlen(want)) ||
	    seq != atomic_load(&d->next))
		atomic_fetch_add(&d->bad, 1);
	else
		atomic_fetch_add(&d->next, 1);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

static void on_lost(void *ctx, char *cause)
{
	(void)cause;
	atomic_fetch_add(&((struct device *)ctx)->bad, 1000);
}

static void devices_up(void)
{
	char uri[64], id[32], filter[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	for (int i = 0; i < DEVICES; i++) {
		MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
		struct device *d = &dev[i];
		d->id = i;
		snprintf(id, sizeof(id), "dlk-dev%d", i);
		snprintf(filter, sizeof(filter), "devices/dev%d/commands", i);
		assert_int_equal(MQTTClient_create(&d->cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
				 MQTTCLIENT_SUCCESS);
		assert_int_equal(MQTTClient_setCallbacks(d->cl, d, on_lost, on_message, NULL),
				 MQTTCLIENT_SUCCESS);
		o.keepAliveInterval = 60;
		assert_int_equal(MQTTClient_connect(d->cl, &o), MQTTCLIENT_SUCCESS);
		assert_int_equal(MQTTClient_subscribe(d->cl, filter, 1), MQTTCLIENT_SUCCESS);
	}
}

static void devices_down(void)
{
	for (int i = 0; i < DEVICES; i++) {
		if (!dev[i].cl)
			continue;
		MQTTClient_disconnect(dev[i].cl, 1000);
		MQTTClient_destroy(&dev[i].cl);
	}
}

/* ---- reading back --------------------------------------------------------- */

/* Sum of the lags of dlk-cmd's partitions in /api/v1/status; -1 unless all
 * PARTITIONS are listed with a known lag. */
static long long status_lag_sum(void)
{
	static struct itkafka_resp r;
	json_t *j = NULL;

	if (itkafka_http_get(g.metrics_port, "/api/v1/status", &r, 5000) == 200)
		j = json_loads(r.body, 0, NULL);
	json_t *lag = json_object_get(json_array_get(json_object_get(j, "downlink"), 0), "lag");
	long long sum = 0;
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(lag, i, e) {
		const char *t = json_string_value(json_object_get(e, "topic"));
		if (!t || strcmp(t, "dlk-cmd") != 0)
			continue;
		long long v = json_integer_value(json_object_get(e, "lag"));
		if (v < 0)
			sum = -1000000;
		sum += v;
		n++;
	}
	json_decref(j);
	return n == PARTITIONS && sum >= 0 ? sum : -1;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_5000_commands_to_50_devices(void **state)
{
	(void)state;
	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	devices_up();
	rd_kafka_t *prod = client_new(RD_KAFKA_PRODUCER, NULL);
	long long t0 = itutil_now_ms();
	for (int i = 0; i < TOTAL; i++) {
		char key[16], val[16];
		snprintf(key, sizeof(key), "dev%d", i % DEVICES);
		snprintf(val, sizeof(val), "%d", i / DEVICES);
		assert_int_equal(itkafka_produce(prod, "dlk-cmd", -1, key, val, NULL), 0);
	}
	assert_int_equal(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(prod);

	long long end = itutil_now_ms() + WAIT_MS;
	int done = 0, bad = 0;
	while (itutil_now_ms() < end) {
		done = bad = 0;
		for (int i = 0; i < DEVICES; i++) {
			done += atomic_load(&dev[i].next);
			bad += atomic_load(&dev[i].bad);
		}
		if (done == TOTAL || bad)
			break;
		itutil_sleep_ms(50);
	}
	print_message("%d of %d commands in order after %lld ms, %d bad\n", done, TOTAL,
		      itutil_now_ms() - t0, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(done, TOTAL);

	/* Lag from the status API returns to 0 (statistics every second). */
	long long lag = -1;
	end = itutil_now_ms() + 30000;
	while (itutil_now_ms() < end && (lag = status_lag_sum()) != 0)
		itutil_sleep_ms(250);
	assert_int_equal(lag, 0);

	/* Committed offsets, read back, equal the high watermarks. */
	rd_kafka_t *rk = client_new(RD_KAFKA_CONSUMER, "it-dlk");
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
	for (int p = 0; p < PARTITIONS; p++)
		rd_kafka_topic_partition_list_add(l, "dlk-cmd", p);
	assert_int_equal(rd_kafka_committed(rk, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
	int64_t sum = 0;
	for (int p = 0; p < PARTITIONS; p++) {
		int64_t lo, hi;
		assert_int_equal(rd_kafka_query_watermark_offsets(rk, "dlk-cmd", p, &lo, &hi, 10000), 0);
		assert_int_equal(l->elems[p].offset, hi);
		sum += hi;
	}
	assert_int_equal(sum, TOTAL);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	devices_down();
}

static void test_crash_redelivers_unacked(void **state)
{
	(void)state;
	struct itutil_pkt p;
	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	int fd = itutil_connect(g.port, "dlk-raw", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "devices/raw/commands", 1), 0);
	rd_kafka_t *prod = client_new(RD_KAFKA_PRODUCER, NULL);
	assert_int_equal(itkafka_produce(prod, "dlk-crash", -1, "raw", "must-arrive", NULL), 0);
	rd_kafka_flush(prod, 10000);
	assert_int_equal(itutil_recv_publish(fd, &p, 20000), 0); /* and no PUBACK */
	assert_string_equal(p.payload, "must-arrive");
	itutil_sleep_ms(1000);

	gw_kill(&g, SIGKILL);
	close(fd);
	assert_int_equal(gw_restart(&g), 0);
	fd = itutil_connect(g.port, "dlk-raw", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "devices/raw/commands", 1), 0);
	/* The killed member leaves the group after its 6 s session. */
	assert_int_equal(itutil_recv_publish(fd, &p, 40000), 0);
	assert_string_equal(p.payload, "must-arrive");
	close(fd);
	rd_kafka_destroy(prod);
}

/* The device of test_restart_is_fast: connected, subscribed, and payload
 * arriving proves its gateway's consumer has the partitions ("before" may
 * come again first: its offset may not have been committed before a kill). */
static int back_device(struct gw *h, rd_kafka_t *prod, const char *payload)
{
	struct itutil_pkt p;
	int fd = itutil_connect(h->port, "dlk-back", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "devices/back/commands", 1), 0);
	assert_int_equal(itkafka_produce(prod, "dlk-back", -1, "back", payload, NULL), 0);
	rd_kafka_flush(prod, 10000);
	do
		assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	while (strcmp(p.payload, payload) != 0 && strcmp(p.payload, "before") == 0);
	assert_string_equal(p.payload, payload);
	return fd;
}

static void test_restart_is_fast(void **state)
{
	struct gw h = { 0 };
	char cfg[512];
	(void)state;
	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	/* kafkagate's consumer defaults: a static member, 10 s sessions. */
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 2; };\n"
		 "downlink = ( { topic = \"dlk-back\"; group = \"it-dlk-back\";\n"
		 "  mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n", kl.bootstrap);
	assert_int_equal(gw_start(&h, cfg), 0);
	rd_kafka_t *prod = client_new(RD_KAFKA_PRODUCER, NULL);
	int fd = back_device(&h, prod, "before");
	assert_true(gw_log_contains(&h, "instance_id=\""));

	gw_kill(&h, SIGKILL);
	close(fd);
	long long t0 = itutil_now_ms();
	assert_int_equal(gw_restart(&h), 0);
	long long t_ready = itutil_now_ms();
	fd = back_device(&h, prod, "after");
	long long t_first = itutil_now_ms();
	print_message("restarted in %lld ms; a command produced once the device was back "
		      "arrived %lld ms after the gateway accepted connections\n", t_ready - t0,
		      t_first - t_ready);
	assert_true(t_first - t_ready <= RESUME_MS);
	close(fd);
	rd_kafka_destroy(prod);
	assert_int_equal(gw_stop(&h), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_5000_commands_to_50_devices),
		cmocka_unit_test(test_crash_redelivers_unacked),
		cmocka_unit_test(test_restart_is_fast),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
