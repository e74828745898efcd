/*
 * it_downlink.c - Kafka -> devices against librdkafka's mock cluster hosted
 * in this process, so that it outlives gateway restarts and crashes.
 *
 * Records are produced here with a librdkafka producer; devices are paho
 * clients, or raw sockets where a test must withhold a PUBACK. Committed
 * offsets are read back with rd_kafka_committed() for the gateway's group.
 * Each test uses its own topic and group, so the shared cluster carries no
 * state from one test to the next; each test stops its gateways, pass or
 * fail. The gateways use short group timeouts (session 3 s) so that a
 * SIGKILLed member leaves the group quickly.
 *
 * Covered: key template to one device and a wildcard subscriber (QoS,
 * per-record mqtt.qos override), retained downlink with broadcast group id,
 * offline persistent session, unfillable templates skipped and committed,
 * crash safety both ways (unacked record redelivered after SIGKILL, acked one
 * not), a second gateway joining and leaving the group (rebalance), and lag
 * in /api/v1/status and /metrics.
 *
 *   make build/kafkagate build/tests/it_downlink
 *   KG_BIN=build/kafkagate build/tests/it_downlink          # ~40 s
 *   IT_FILTER='*crash*' ...                  # one test
 *   IT_ASSIGNOR=cooperative-sticky ...       # incremental rebalancing
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 15000

static struct itkafka_mock K;
static rd_kafka_t *prod;

static struct gw G, G2;
/* paho clients still open: a failed test leaves some, the teardown closes
 * them (a leaked client could later write to a reused socket number). */
static MQTTClient open_cl[8];

static int group_setup(void **state)
{
	(void)state;
	if (itkafka_mock_init(&K, 1) < 0)
		return -1;
	prod = itkafka_client_new(K.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	return prod ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	if (prod)
		rd_kafka_destroy(prod);
	itkafka_mock_release(&K);
	return 0;
}

static void dev_close(MQTTClient *cl);

static int test_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < 8; i++)
		if (open_cl[i])
			dev_close(&open_cl[i]);
	gw_stop(&G2);
	gw_stop(&G);
	return 0;
}

/* Starts g with these downlink mappings (the inside of "downlink = ( ... );")
 * and `extra` appended. */
static void gw_up(struct gw *g, const char *maps, const char *extra)
{
	char cfg[4096], assignor[128] = "";
	/* IT_ASSIGNOR=cooperative-sticky runs the suite with incremental
	 * rebalancing (the mappings' line numbers stay the same). */
	if (getenv("IT_ASSIGNOR"))
		snprintf(assignor, sizeof(assignor), ", (\"partition.assignment.strategy\", \"%s\")",
			 getenv("IT_ASSIGNOR"));
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 2;\n"
		 "  properties = ( (\"session.timeout.ms\", 3000), (\"heartbeat.interval.ms\", 500),\n"
		 "                 (\"statistics.interval.ms\", 500)%s ); };\n"
		 "downlink = ( %s );\n%s\n", K.bootstrap, assignor, maps, extra ? extra : "");
	assert_int_equal(gw_start(g, cfg), 0);
}

/* Produces one record to topic/partition (-1: by key); kv: header name,
 * value pairs ended by NULL. Waits for the cluster to have it. */
static void produce(const char *topic, int32_t part, const char *key, const char *val,
		    const char *const *kv)
{
	assert_int_equal(itkafka_produce(prod, topic, part, key, val, kv), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* The group's committed offset of topic/partition; < 0 when none. */
static int64_t committed(const char *group, const char *topic, int32_t part)
{
	rd_kafka_t *rk = itkafka_client_new(K.bootstrap, RD_KAFKA_CONSUMER, group, NULL);
	assert_non_null(rk);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, topic, part);
	int64_t off = -1;
	if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && !l->elems[0].err)
		off = l->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return off;
}

static void wait_committed(const char *group, const char *topic, int32_t part, int64_t want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	int64_t got = -1;
	while (itutil_now_ms() < end && (got = committed(group, topic, part)) != want)
		itutil_sleep_ms(100);
	if (got != want)
		fail_msg("group %s %s[%d]: committed %lld, want %lld", group, topic, (int)part,
			 (long long)got, (long long)want);
}

/* ---- devices ------------------------------------------------------------- */

static MQTTClient dev_connect(struct gw *g, const char *id, bool clean, const char *filter,
			      int qos)
{
	char uri[64];
	MQTTClient cl;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g->port);
	assert_int_equal(MQTTClient_create(&cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	o.cleansession = clean;
	o.keepAliveInterval = 30;
	assert_int_equal(MQTTClient_connect(cl, &o), MQTTCLIENT_SUCCESS);
	for (size_t i = 0; i < 8; i++) {
		if (!open_cl[i]) {
			open_cl[i] = cl;
			break;
		}
	}
	if (filter)
		assert_int_equal(MQTTClient_subscribe(cl, filter, qos), MQTTCLIENT_SUCCESS);
	return cl;
}

static void dev_close(MQTTClient *cl)
{
	for (size_t i = 0; i < 8; i++)
		if (open_cl[i] == *cl)
			open_cl[i] = NULL;
	MQTTClient_disconnect(*cl, 1000);
	MQTTClient_destroy(cl);
}

struct got {
	char topic[128];
	char payload[128];
	int qos;
	int retained;
};

/* The next message within timeout_ms; false if none came. */
static bool dev_recv(MQTTClient cl, int timeout_ms, struct got *g)
{
	long long end = itutil_now_ms() + timeout_ms;
	do {
		char *t = NULL;
		int tl = 0;
		MQTTClient_message *m = NULL;
		long left = (long)(end - itutil_now_ms());
		int rc = MQTTClient_receive(cl, &t, &tl, &m, left > 0 ? (unsigned long)left : 1);
		if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED)
			return false;
		if (m) {
			snprintf(g->topic, sizeof(g->topic), "%.*s", tl ? tl : (int)strlen(t), t);
			snprintf(g->payload, sizeof(g->payload), "%.*s", m->payloadlen,
				 (const char *)m->payload);
			g->qos = m->qos;
			g->retained = m->retained;
			MQTTClient_freeMessage(&m);
			MQTTClient_free(t);
			return true;
		}
	} while (itutil_now_ms() < end);
	return false;
}

static void expect(MQTTClient cl, const char *topic, const char *payload, int qos)
{
	struct got g;
	if (!dev_recv(cl, WAIT_MS, &g))
		fail_msg("no message, wanted %s '%s'", topic, payload);
	if (strcmp(g.topic, topic) || strcmp(g.payload, payload) || g.qos != qos)
		fail_msg("got %s '%s' qos %d, wanted %s '%s' qos %d", g.topic, g.payload, g.qos,
			 topic, payload, qos);
}

/* A raw level-4 subscriber (it acks only when told to). */
static int raw_sub(struct gw *g, const char *id, const char *filter)
{
	int fd = itutil_connect(g->port, id, true, 0, NULL);

	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, filter, 1), 0);
	return fd;
}

/* ---- admin endpoint ------------------------------------------------------ */

/* The body of GET path (valid until the next call). */
static const char *http_body(int port, const char *path)
{
	static struct itkafka_resp r;

	assert_int_equal(itkafka_http_get(port, path, &r, 5000), 200);
	return r.body;
}

/* lag of downlink[0]'s first partition in /api/v1/status, -2 if absent. */
static long long status_lag(int port)
{
	json_t *j = json_loads(http_body(port, "/api/v1/status"), 0, NULL);
	json_t *l = json_array_get(json_object_get(json_array_get(json_object_get(j, "downlink"), 0),
						   "lag"), 0);
	long long v = l ? (long long)json_integer_value(json_object_get(l, "lag")) : -2;
	json_decref(j);
	return v;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_key_to_device(void **state)
{
	(void)state;
	char extra[128];
	G.metrics_port = gw_free_port();
	snprintf(extra, sizeof(extra), "metrics = { address = \"127.0.0.1\"; port = %d; };",
		 G.metrics_port);
	rd_kafka_mock_topic_create(K.mc, "dl-cmd", 1, 1);
	gw_up(&G, "{ topic = \"dl-cmd\"; group = \"it-dl-1\"; "
		  "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }", extra);
	MQTTClient d1 = dev_connect(&G, "dev-d1", true, "devices/d1/commands", 1);
	MQTTClient all = dev_connect(&G, "watcher", true, "devices/+/commands", 2);

	produce("dl-cmd", -1, "d1", "cmd-1", NULL);
	produce("dl-cmd", -1, "d2", "cmd-2", NULL);
	const char *const q0[] = { "mqtt.qos", "0", NULL };
	produce("dl-cmd", -1, "d1", "cmd-3", q0);

	/* Order holds per topic (per device), not across topics. */
	struct got w[3];
	int n1 = 0;
	for (int i = 0; i < 3; i++) {
		assert_true(dev_recv(all, WAIT_MS, &w[i]));
		if (strcmp(w[i].topic, "devices/d2/commands") == 0) {
			assert_string_equal(w[i].payload, "cmd-2");
			assert_int_equal(w[i].qos, 1);
		} else {
			assert_string_equal(w[i].topic, "devices/d1/commands");
			assert_string_equal(w[i].payload, n1++ ? "cmd-3" : "cmd-1");
			assert_int_equal(w[i].qos, n1 == 1 ? 1 : 0);
		}
	}
	assert_int_equal(n1, 2);
	expect(d1, "devices/d1/commands", "cmd-1", 1);
	expect(d1, "devices/d1/commands", "cmd-3", 0);
	struct got g;
	assert_false(dev_recv(d1, 300, &g)); /* d2's command is not d1's */
	wait_committed("it-dl-1", "dl-cmd", 0, 3);

	/* Lag returns to 0 once the commit is in the statistics. */
	long long end = itutil_now_ms() + WAIT_MS, lag = -2;
	while (itutil_now_ms() < end && (lag = status_lag(G.metrics_port)) != 0)
		itutil_sleep_ms(200);
	assert_int_equal(lag, 0);
	const char *m = http_body(G.metrics_port, "/metrics");
	assert_non_null(strstr(m, "kafkagate_downlink_consumer_lag{topic=\"dl-cmd\",partition=\"0\","
				  "group=\"it-dl-1\"} 0\n"));
	assert_non_null(strstr(m, "kafkagate_downlink_records_consumed_total{mapping=\"0\","
				  "group=\"it-dl-1\",topics=\"dl-cmd\"} 3\n"));
	dev_close(&d1);
	dev_close(&all);
}

static void test_retained_broadcast_group(void **state)
{
	(void)state;
	char host[256], group[300];
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(group, sizeof(group), "it-dl-2-%s", host);
	rd_kafka_mock_topic_create(K.mc, "dl-state", 1, 1);
	gw_up(&G, "{ topic = \"dl-state\"; group = \"it-dl-2\"; mode = \"broadcast\"; "
		  "mqtt_topic = \"${header:mqtt.topic}\"; qos = 1; retain = true; }", NULL);
	const char *const h[] = { "mqtt.topic", "site/1/state", NULL };
	produce("dl-state", -1, NULL, "on", h);
	/* Nobody subscribed: complete at once, committed under <group>-<host>. */
	wait_committed(group, "dl-state", 0, 1);
	assert_true(committed("it-dl-2", "dl-state", 0) < 0);

	MQTTClient late = dev_connect(&G, "late", true, "site/+/state", 1);
	struct got g;
	assert_true(dev_recv(late, WAIT_MS, &g));
	assert_string_equal(g.topic, "site/1/state");
	assert_string_equal(g.payload, "on");
	assert_int_equal(g.retained, 1);
	dev_close(&late);
}

static void test_offline_persistent_session(void **state)
{
	(void)state;
	rd_kafka_mock_topic_create(K.mc, "dl-off", 1, 1);
	gw_up(&G, "{ topic = \"dl-off\"; group = \"it-dl-3\"; "
		  "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }", NULL);
	MQTTClient c = dev_connect(&G, "dev-off", false, "devices/d9/commands", 1);
	dev_close(&c);
	produce("dl-off", -1, "d9", "while-away", NULL);
	/* Queued in the offline session counts as delivered. */
	wait_committed("it-dl-3", "dl-off", 0, 1);
	c = dev_connect(&G, "dev-off", false, NULL, 0);
	expect(c, "devices/d9/commands", "while-away", 1);
	dev_close(&c);
}

static void test_unfillable_skipped_and_committed(void **state)
{
	(void)state;
	rd_kafka_mock_topic_create(K.mc, "dl-bad", 1, 1);
	gw_up(&G, "{ topic = \"dl-bad\"; group = \"it-dl-4\"; "
		  "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }", NULL);
	MQTTClient w = dev_connect(&G, "watch-bad", true, "devices/#", 1);
	produce("dl-bad", -1, NULL, "no-key", NULL);
	produce("dl-bad", -1, "a+b", "wildcard", NULL);
	produce("dl-bad", -1, "d5", "ok", NULL);
	expect(w, "devices/d5/commands", "ok", 1);
	wait_committed("it-dl-4", "dl-bad", 0, 3);
	assert_true(gw_log_contains(&G, "downlink record skipped group=it-dl-4 topic=dl-bad "
				    "partition=0 offset=0 line=6 reason=\"record has no key\""));
	assert_true(gw_log_contains(&G, "downlink record skipped group=it-dl-4 topic=dl-bad "
				    "partition=0 offset=1 line=6 reason=\"not a valid MQTT topic name\""));
	struct got g;
	assert_false(dev_recv(w, 300, &g));
	dev_close(&w);
}

static void test_crash_redelivers_unacked(void **state)
{
	(void)state;
	struct itutil_pkt p;
	rd_kafka_mock_topic_create(K.mc, "dl-crash", 1, 1);
	gw_up(&G, "{ topic = \"dl-crash\"; group = \"it-dl-5\"; "
		  "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }", NULL);
	int fd = raw_sub(&G, "dev-d7", "devices/d7/commands");
	produce("dl-crash", -1, "d7", "must-arrive", NULL);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_true(p.pid > 0);
	assert_string_equal(p.payload, "must-arrive");
	/* No PUBACK: several commit rounds pass, nothing is committed. */
	itutil_sleep_ms(1000);
	assert_true(committed("it-dl-5", "dl-crash", 0) < 0);

	gw_kill(&G, SIGKILL);
	close(fd);
	assert_int_equal(gw_restart(&G), 0);
	fd = raw_sub(&G, "dev-d7", "devices/d7/commands");
	produce("dl-crash", -1, "d7", "marker", NULL);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "must-arrive"); /* again, before the marker */
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "marker");
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	wait_committed("it-dl-5", "dl-crash", 0, 2);
	close(fd);
}

static void test_acked_not_redelivered(void **state)
{
	(void)state;
	struct itutil_pkt p;
	rd_kafka_mock_topic_create(K.mc, "dl-acked", 1, 1);
	gw_up(&G, "{ topic = \"dl-acked\"; group = \"it-dl-6\"; "
		  "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }", NULL);
	int fd = raw_sub(&G, "dev-d8", "devices/d8/commands");
	produce("dl-acked", -1, "d8", "first", NULL);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "first");
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	wait_committed("it-dl-6", "dl-acked", 0, 1);

	gw_kill(&G, SIGKILL); /* the commit, not a clean close, must protect it */
	close(fd);
	assert_int_equal(gw_restart(&G), 0);
	fd = raw_sub(&G, "dev-d8", "devices/d8/commands");
	produce("dl-acked", -1, "d8", "marker", NULL);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "marker");
	assert_int_equal(itutil_send_ack(fd, 0x40, p.pid), 0);
	wait_committed("it-dl-6", "dl-acked", 0, 2);
	close(fd);
}

/* Collects payloads "r<N>" from a and b into seen[] until all of [from, to)
 * came or the deadline passes. */
static void collect(MQTTClient a, MQTTClient b, bool *seen, int from, int to)
{
	long long end = itutil_now_ms() + WAIT_MS * 2;
	int missing = 0;
	do {
		struct got g;
		while (dev_recv(a, 20, &g))
			seen[atoi(g.payload + 1)] = true;
		while (b && dev_recv(b, 20, &g))
			seen[atoi(g.payload + 1)] = true;
		missing = 0;
		for (int i = from; i < to; i++)
			missing += !seen[i];
	} while (missing && itutil_now_ms() < end);
	if (missing)
		fail_msg("%d of records %d..%d never arrived", missing, from, to - 1);
}

static void produce_range(int from, int to)
{
	for (int i = from; i < to; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "r%d", i);
		produce("dl-reb", i % 2, k, v, NULL);
	}
}

static void test_rebalance_two_gateways(void **state)
{
	(void)state;
	static bool seen[200];
	const char *maps = "{ topic = \"dl-reb\"; group = \"it-dl-7\"; "
			   "mqtt_topic = \"devices/${key}/commands\"; qos = 1; }";
	memset(seen, 0, sizeof(seen));
	rd_kafka_mock_topic_create(K.mc, "dl-reb", 2, 1);
	gw_up(&G, maps, NULL);
	MQTTClient s1 = dev_connect(&G, "reb-1", true, "devices/#", 1);
	produce_range(0, 40);
	collect(s1, NULL, seen, 0, 40);

	/* A second gateway joins: the partitions are split, nothing is lost. */
	gw_up(&G2, maps, NULL);
	MQTTClient s2 = dev_connect(&G2, "reb-2", true, "devices/#", 1);
	assert_true(gw_log_wait(&G2, "downlink partitions assigned group=it-dl-7 count=1 ", WAIT_MS));
	produce_range(40, 80);
	collect(s1, s2, seen, 40, 80);
	wait_committed("it-dl-7", "dl-reb", 0, 40);
	wait_committed("it-dl-7", "dl-reb", 1, 40);

	/* It leaves: the first takes both partitions back. */
	dev_close(&s2);
	assert_int_equal(gw_stop(&G2), 0);
	/* Records 80..99 reach s1 only once its gateway has both partitions. */
	produce_range(80, 100);
	collect(s1, NULL, seen, 80, 100);
	wait_committed("it-dl-7", "dl-reb", 0, 50);
	wait_committed("it-dl-7", "dl-reb", 1, 50);
	dev_close(&s1);
	assert_int_equal(gw_stop(&G), 0); /* and it never crashed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_key_to_device, test_teardown),
		cmocka_unit_test_teardown(test_retained_broadcast_group, test_teardown),
		cmocka_unit_test_teardown(test_offline_persistent_session, test_teardown),
		cmocka_unit_test_teardown(test_unfillable_skipped_and_committed, test_teardown),
		cmocka_unit_test_teardown(test_crash_redelivers_unacked, test_teardown),
		cmocka_unit_test_teardown(test_acked_not_redelivered, test_teardown),
		cmocka_unit_test_teardown(test_rebalance_two_gateways, test_teardown),
	};
	if (getenv("IT_FILTER")) /* e.g. IT_FILTER='*crash*' runs one test */
		cmocka_set_test_filter(getenv("IT_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
