/*
 * it_downlink_kafka.c - the downlink against a real Apache Kafka broker
 * (scripts/kafka-local):
 *   - 5,000 commands keyed to 50 devices (a 4-partition topic) reach their
 *     50 paho subscribers (devices/<id>/commands, QoS 1), each in the order
 *     produced for its key; the lag in GET /api/v1/status returns to 0 and
 *     the group's committed offsets read back equal the high watermarks;
 *   - crash safety: a record whose PUBACK was withheld is delivered again
 *     after the gateway is SIGKILLed and restarted.
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
#include <errno.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "rawmqtt.h"

enum { DEVICES = 50, PER_DEVICE = 100, TOTAL = DEVICES * PER_DEVICE, PARTITIONS = 4 };
#define WAIT_MS 60000

static struct gw g;
static char bootstrap[128];
static char run_dir[64];
static const char *skip_reason;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Runs scripts/kafka-local CMD; the first line of its stdout goes to out. */
static int kafka_local(const char *cmd, char *out, size_t cap)
{
	char line[256] = "", sh[128];
	snprintf(sh, sizeof(sh), "scripts/kafka-local %s", cmd);
	FILE *p = popen(sh, "r");
	if (!p)
		return -1;
	if (!fgets(line, sizeof(line), p))
		line[0] = '\0';
	while (fgetc(p) != EOF)
		;
	int st = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if (out)
		snprintf(out, cap, "%s", line);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static rd_kafka_t *client_new(rd_kafka_type_t type, const char *group)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e));
	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	if (type == RD_KAFKA_PRODUCER)
		rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e));
	if (group)
		rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e));
	rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof(e));
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
	if (system("command -v java >/dev/null 2>&1") != 0) {
		skip_reason = "java not found: real-Kafka downlink tests skipped";
		return 0;
	}
	if (system("command -v mvn >/dev/null 2>&1") != 0) {
		skip_reason = "mvn not found (scripts/kafka-local fetches Kafka with it): skipped";
		return 0;
	}
	snprintf(run_dir, sizeof(run_dir), "/tmp/kg-it-kafka-XXXXXX");
	if (!mkdtemp(run_dir))
		return -1;
	setenv("KAFKA_RUN_DIR", run_dir, 1);
	long long t0 = now_ms();
	if (kafka_local("start", bootstrap, sizeof(bootstrap)) != 0 || !bootstrap[0]) {
		fprintf(stderr, "scripts/kafka-local start failed (log in %s)\n", run_dir);
		return -1;
	}
	print_message("kafka-local serves on %s after %lld ms\n", bootstrap, now_ms() - t0);
	if (topic_create("dlk-cmd", PARTITIONS) < 0 || topic_create("dlk-crash", 1) < 0)
		return -1;
	g.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5;\n"
		 "  properties = ( (\"session.timeout.ms\", 6000), (\"heartbeat.interval.ms\", 1000),\n"
		 "                 (\"statistics.interval.ms\", 1000) ); };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "downlink = ( { topics = [\"dlk-cmd\", \"dlk-crash\"]; group = \"it-dlk\";\n"
		 "  mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n",
		 bootstrap, g.metrics_port);
	return gw_start(&g, cfg);
}

static int group_teardown(void **state)
{
	char cmd[128];
	(void)state;
	if (skip_reason)
		return 0;
	gw_stop(&g);
	kafka_local("stop", NULL, 0);
	if (!getenv("KG_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", run_dir);
	}
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

static char *http_get(int port, const char *path)
{
	static char resp[1 << 16];
	char req[256];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	resp[0] = '\0';
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		int n = snprintf(req, sizeof(req),
				 "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
		size_t len = 0;
		ssize_t r;
		if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n)
			while (len < sizeof(resp) - 1 &&
			       (r = recv(fd, resp + len, sizeof(resp) - 1 - len, 0)) > 0)
				len += (size_t)r;
		resp[len] = '\0';
	}
	close(fd);
	char *body = strstr(resp, "\r\n\r\n");
	return body ? body + 4 : resp;
}

/* Sum of the lags of dlk-cmd's partitions in /api/v1/status; -1 unless all
 * PARTITIONS are listed with a known lag. */
static long long status_lag_sum(void)
{
	json_t *j = json_loads(http_get(g.metrics_port, "/api/v1/status"), 0, NULL);
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

static void produce(rd_kafka_t *rk, const char *topic, const char *key, const char *val)
{
	rd_kafka_resp_err_t err;
	while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_KEY(key, strlen(key)),
					RD_KAFKA_V_VALUE((void *)val, strlen(val)),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
	       RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 10);
	assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_5000_commands_to_50_devices(void **state)
{
	(void)state;
	if (skip_reason) {
		print_message("%s\n", skip_reason);
		skip();
	}
	devices_up();
	rd_kafka_t *prod = client_new(RD_KAFKA_PRODUCER, NULL);
	long long t0 = now_ms();
	for (int i = 0; i < TOTAL; i++) {
		char key[16], val[16];
		snprintf(key, sizeof(key), "dev%d", i % DEVICES);
		snprintf(val, sizeof(val), "%d", i / DEVICES);
		produce(prod, "dlk-cmd", key, val);
	}
	assert_int_equal(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(prod);

	long long end = now_ms() + WAIT_MS;
	int done = 0, bad = 0;
	while (now_ms() < end) {
		done = bad = 0;
		for (int i = 0; i < DEVICES; i++) {
			done += atomic_load(&dev[i].next);
			bad += atomic_load(&dev[i].bad);
		}
		if (done == TOTAL || bad)
			break;
		sleep_ms(50);
	}
	print_message("%d of %d commands in order after %lld ms, %d bad\n", done, TOTAL,
		      now_ms() - t0, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(done, TOTAL);

	/* Lag from the status API returns to 0 (statistics every second). */
	long long lag = -1;
	end = now_ms() + 30000;
	while (now_ms() < end && (lag = status_lag_sum()) != 0)
		sleep_ms(250);
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
	char p[128];
	uint8_t b[512], rc = 0xff;
	if (skip_reason) {
		print_message("%s\n", skip_reason);
		skip();
	}
	int fd = raw_mqtt_connect(g.port, "dlk-raw", true, 0, &rc, NULL);
	assert_true(fd >= 0);
	int n = raw_build_subscribe(b, sizeof(b), 4, 1, "devices/raw/commands", 1);
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	assert_true(raw_recv_packet(fd, b, sizeof(b), 10000) > 0 && b[0] == 0x90);
	rd_kafka_t *prod = client_new(RD_KAFKA_PRODUCER, NULL);
	produce(prod, "dlk-crash", "raw", "must-arrive");
	rd_kafka_flush(prod, 10000);
	n = raw_recv_packet(fd, b, sizeof(b), 20000);
	assert_true(n > 0 && (b[0] & 0xF0) == 0x30); /* and no PUBACK */
	assert_non_null(memmem(b, (size_t)n, "must-arrive", 11));
	sleep_ms(1000);

	gw_kill(&g, SIGKILL);
	close(fd);
	assert_int_equal(gw_restart(&g), 0);
	fd = raw_mqtt_connect(g.port, "dlk-raw", true, 0, &rc, NULL);
	assert_true(fd >= 0);
	n = raw_build_subscribe(b, sizeof(b), 4, 1, "devices/raw/commands", 1);
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	assert_true(raw_recv_packet(fd, b, sizeof(b), 10000) > 0 && b[0] == 0x90);
	/* The killed member leaves the group after its 6 s session. */
	n = raw_recv_packet(fd, b, sizeof(b), 40000);
	assert_true(n > 0 && (b[0] & 0xF0) == 0x30);
	snprintf(p, sizeof(p), "%.*s", 11, (const char *)b + n - 11);
	assert_string_equal(p, "must-arrive");
	close(fd);
	rd_kafka_destroy(prod);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_5000_commands_to_50_devices),
		cmocka_unit_test(test_crash_redelivers_unacked),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
