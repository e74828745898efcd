/*
 * it_lag.c - operations figures against librdkafka's mock cluster hosted in
 * this process: downlink consumer lag, session queue sizes and the
 * producer's broker connection state, each checked against a view this test
 * computes on its own.
 *
 * Lag is compared with what kcat or kafka-consumer-groups users compute:
 * per partition that has a committed offset for the group, the high
 * watermark (rd_kafka_query_watermark_offsets) minus the committed offset
 * (rd_kafka_committed on a handle that never joins the group). A partition
 * without a committed offset has no lag in either view ("-" in
 * kafka-consumer-groups), so the test first lets one record complete (no
 * device subscribed yet) to give the loaded partition a committed offset.
 * The device is a raw socket that withholds its PUBACKs while the lag is
 * measured, with max_inflight = 1 and a long ack_timeout so that every
 * record stays incomplete; then it acknowledges everything and both views
 * must drain to 0. kcat, when installed, double-checks the watermark.
 *
 *   make build/kafkagate build/tests/it_lag
 *   KG_BIN=build/kafkagate build/tests/it_lag               # ~20 s
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 15000
#define NPART 2
#define M 200

static struct {
	struct itkafka_mock m;
	rd_kafka_t *prod;
	rd_kafka_t *query;            /* watermarks only */
	rd_kafka_t *grp;              /* group.id = lagtest, never subscribed */
} K;

static struct gw G;
static int dev_fd = -1;
static uint16_t last_pid;         /* of the last PUBLISH dev_read() saw */

static int group_setup(void **state)
{
	(void)state;
	if (itkafka_mock_init(&K.m, 1) < 0 ||
	    rd_kafka_mock_topic_create(K.m.mc, "cmds", NPART, 1) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	K.prod = itkafka_client_new(K.m.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	K.query = itkafka_client_new(K.m.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	K.grp = itkafka_client_new(K.m.bootstrap, RD_KAFKA_CONSUMER, "lagtest", NULL);
	return K.prod && K.query && K.grp ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	rd_kafka_destroy(K.grp);
	rd_kafka_destroy(K.query);
	rd_kafka_destroy(K.prod);
	itkafka_mock_release(&K.m);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	if (dev_fd >= 0)
		close(dev_fd);
	dev_fd = -1;
	rd_kafka_mock_broker_set_up(K.m.mc, 1); /* a failed broker test must not leak */
	gw_stop(&G);
	return 0;
}

static void produce(const char *key, const char *val)
{
	assert_int_equal(itkafka_produce(K.prod, "cmds", -1, key, val, NULL), 0);
}

/* ---- the independent view ----------------------------------------------- */

static int64_t high_watermark(int32_t part)
{
	int64_t lo = -1, hi = -1;
	assert_int_equal(rd_kafka_query_watermark_offsets(K.query, "cmds", part, &lo, &hi, 5000),
			 RD_KAFKA_RESP_ERR_NO_ERROR);
	return hi;
}

/* The group's committed offsets of cmds' partitions (< 0: none). */
static void committed(int64_t off[NPART])
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPART);
	for (int p = 0; p < NPART; p++)
		rd_kafka_topic_partition_list_add(l, "cmds", p);
	assert_int_equal(rd_kafka_committed(K.grp, l, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	for (int p = 0; p < NPART; p++) {
		rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(l, "cmds", p);
		off[p] = e && !e->err ? e->offset : -1;
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* Sum over partitions with a committed offset of (high watermark -
 * committed); -1 when no partition has one. */
static long long kafka_lag(void)
{
	int64_t off[NPART];
	long long sum = -1;
	committed(off);
	for (int p = 0; p < NPART; p++)
		if (off[p] >= 0)
			sum = (sum < 0 ? 0 : sum) + (high_watermark(p) - off[p]);
	return sum;
}

/* kcat's answer for the end offset of cmds[part], or -1 (not installed,
 * no answer). */
static long long kcat_end_offset(int32_t part)
{
	char cmd[512], line[256];
	long long v = -1;
	if (system("command -v kcat >/dev/null 2>&1") != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "timeout 10 kcat -b '%s' -Q -t cmds:%d:-1 2>/dev/null",
		 K.m.bootstrap, (int)part);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *o = strstr(line, " offset ");
		if (o)
			v = atoll(o + 8);
	}
	pclose(f);
	return v;
}

/* ---- the gateway's view -------------------------------------------------- */

/* GET path on the admin port: the body, malloc'd (the caller frees). */
static char *http_get(const char *path)
{
	static struct itkafka_resp r;
	char *body;

	assert_true(itkafka_http_get(G.metrics_port, path, &r, 5000) > 0);
	body = strdup(r.body);
	assert_non_null(body);
	return body;
}

static double scrape(const char *series)
{
	char *m = http_get("/metrics");
	double v = itkafka_metric(m, series);
	free(m);
	return v;
}

/* Sum of kafkagate_downlink_consumer_lag over cmds' partitions; -1 when no
 * partition has a sample. */
static long long gw_lag(const char *text)
{
	long long sum = -1;
	for (int p = 0; p < NPART; p++) {
		char series[160];
		snprintf(series, sizeof(series), "kafkagate_downlink_consumer_lag{topic=\"cmds\","
			 "partition=\"%d\",group=\"lagtest\"}", p);
		double v = itkafka_metric(text, series);
		if (v >= 0)
			sum = (sum < 0 ? 0 : sum) + (long long)v;
	}
	return sum;
}

static long long status_int(const char *key)
{
	char *s = http_get("/api/v1/status");
	json_t *j = json_loads(s, 0, NULL);
	json_t *v = json_object_get(j, key);
	long long r = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
	json_decref(j);
	free(s);
	return r;
}

static void wait_series(const char *series, double want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	double got = -1;
	while ((got = scrape(series)) != want && itutil_now_ms() < end)
		itutil_sleep_ms(200);
	if (got != want)
		fail_msg("%s: %g, want %g", series, got, want);
}

static void promtool_check(const char *text)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		print_message("promtool not installed: not checking the scrape\n");
		return;
	}
	FILE *f = popen("promtool check metrics >/dev/null", "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(pclose(f), 0);
}

/* ---- the slow device ----------------------------------------------------- */

/* Reads PUBLISHes for up to ms, acknowledging them when ack. Returns how
 * many arrived. */
static int dev_read(int ms, bool ack)
{
	struct itutil_pkt p;
	int n = 0;
	long long end = itutil_now_ms() + ms;
	while (itutil_now_ms() < end) {
		if (itutil_recv(dev_fd, &p, (int)(end - itutil_now_ms())) <= 0)
			break;
		assert_int_equal(p.first & 0xF6, 0x32); /* PUBLISH QoS 1 (DUP may be set) */
		assert_string_equal(p.topic, "devices/d1/commands");
		last_pid = p.pid;
		n++;
		if (ack)
			assert_int_equal(itutil_send_ack(dev_fd, 0x40, last_pid), 0);
	}
	return n;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_lag_matches_kafka_and_drains(void **state)
{
	(void)state;
	char cfg[1024];
	G.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "limits = { max_inflight = 1; max_queued_messages = 100000; };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; properties = ( (\"statistics.interval.ms\", 1000) ); };\n"
		 "downlink = ( { topic = \"cmds\"; group = \"lagtest\"; "
		 "mqtt_topic = \"devices/${key}/commands\"; qos = 1; ack_timeout = 600; } );\n",
		 G.metrics_port, K.m.bootstrap);
	assert_int_equal(gw_start(&G, cfg), 0);

	/* Nobody subscribed: the first record completes at once and commits. */
	produce("d1", "warm-up");
	assert_int_equal(rd_kafka_flush(K.prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	int32_t part = high_watermark(0) == 1 ? 0 : 1;
	assert_int_equal(high_watermark(part), 1);
	int64_t off[NPART] = { -1, -1 };
	long long end = itutil_now_ms() + WAIT_MS;
	while (committed(off), off[part] != 1 && itutil_now_ms() < end)
		itutil_sleep_ms(100);
	assert_int_equal(off[part], 1);

	dev_fd = itutil_connect(G.port, "d1", true, 0, NULL);
	assert_true(dev_fd >= 0);
	assert_int_equal(itutil_subscribe(dev_fd, 1, "devices/d1/commands", 1), 0);

	for (int i = 0; i < M; i++) {
		char v[16];
		snprintf(v, sizeof(v), "cmd-%d", i);
		produce("d1", v);
	}
	assert_int_equal(rd_kafka_flush(K.prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(high_watermark(part), M + 1);
	long long kc = kcat_end_offset(part);
	if (kc >= 0)
		assert_int_equal(kc, M + 1);
	else
		print_message("kcat not installed or silent: watermark not double-checked\n");

	/* One in flight, the rest queued, none acknowledged: all M lag. */
	long long gl = -1, kl = -1;
	double queued = -1;
	char *m = NULL;
	end = itutil_now_ms() + WAIT_MS;
	do {
		free(m);
		itutil_sleep_ms(200);
		m = http_get("/metrics");
		gl = gw_lag(m);
		kl = kafka_lag();
		queued = itkafka_metric(m, "kafkagate_session_queued_messages");
	} while ((gl != kl || kl <= 0 || queued != M - 1) && itutil_now_ms() < end);
	print_message("lag: gateway %lld, kafka %lld; queued %g\n", gl, kl, queued);
	assert_int_equal(gl, kl);
	assert_int_equal(kl, M);
	assert_true(queued == M - 1);
	assert_int_equal(status_int("queued_messages"), M - 1);
	promtool_check(m);
	free(m);
	assert_int_equal(dev_read(300, false), 1);

	/* The device catches up: every record delivered, both views drain. */
	int got = 1;
	end = itutil_now_ms() + WAIT_MS;
	assert_int_equal(itutil_send_ack(dev_fd, 0x40, last_pid), 0);
	while (got < M && itutil_now_ms() < end)
		got += dev_read(500, true);
	assert_int_equal(got, M);
	end = itutil_now_ms() + WAIT_MS;
	do {
		itutil_sleep_ms(200);
		m = http_get("/metrics");
		gl = gw_lag(m);
		free(m);
		kl = kafka_lag();
	} while ((gl != 0 || kl != 0) && itutil_now_ms() < end);
	assert_int_equal(kl, 0);
	assert_int_equal(gl, 0);
	assert_true(scrape("kafkagate_session_queued_messages") == 0);
	assert_int_equal(status_int("queued_messages"), 0);
}

static void test_broker_up_follows_mock(void **state)
{
	(void)state;
	char cfg[512], series[400], name[300];
	G.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; properties = ( (\"statistics.interval.ms\", 1000) ); };\n",
		 G.metrics_port, K.m.bootstrap);
	assert_int_equal(gw_start(&G, cfg), 0);
	snprintf(name, sizeof(name), "%s/1", K.m.bootstrap);
	snprintf(series, sizeof(series), "kafkagate_kafka_broker_up{broker=\"%s\"}", name);
	wait_series(series, 1);

	char *s = http_get("/api/v1/status");
	json_t *j = json_loads(s, 0, NULL);
	json_t *b = json_array_get(json_object_get(json_object_get(j, "kafka"), "brokers"), 0);
	assert_string_equal(json_string_value(json_object_get(b, "name")), name);
	assert_int_equal(json_integer_value(json_object_get(b, "nodeid")), 1);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "UP");
	json_decref(j);
	free(s);

	rd_kafka_mock_broker_set_down(K.m.mc, 1);
	wait_series(series, 0);
	rd_kafka_mock_broker_set_up(K.m.mc, 1);
	wait_series(series, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_lag_matches_kafka_and_drains, test_teardown),
		cmocka_unit_test_teardown(test_broker_up_follows_mock, test_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
