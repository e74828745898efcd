/*
 * it_admin.c - the admin HTTP endpoint of the real binary: /metrics counts
 * what paho publishes through a route into the embedded Kafka, and passes
 * promtool; /healthz and /readyz; the status JSON (bootstrap usable by kcat);
 * /api/v1/clients with paging; and robustness: malformed, oversized,
 * incomplete and excess requests get their status (or a close) and the MQTT
 * side keeps working.
 *
 * One gateway for the file (2 workers, embedded Kafka, one route). Requests
 * go through the tiny blocking socket client of itkafka.h, so that the test
 * does not check the server with a parser of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itpaho.h"
#include "itutil.h"

#define WAIT_MS 5000
#define N_PUBLISH 20

static struct gw g;

/* ---- a tiny HTTP client ---------------------------------------------------- */

static int admin_connect(void)
{
	int fd = raw_connect_tcp(g.metrics_port);

	assert_true(fd >= 0);
	return fd;
}

static void http_raw(const void *req, size_t len, struct itkafka_resp *r)
{
	itkafka_http(g.metrics_port, req, len, r, WAIT_MS);
}

static void http_raw_str(const char *req, struct itkafka_resp *r)
{
	http_raw(req, strlen(req), r);
}

/* Content-Length of an answer; -1 when it has none. */
static long content_length(const struct itkafka_resp *r)
{
	const char *end = strstr(r->raw, "\r\n\r\n");
	const char *cl = strcasestr(r->raw, "\r\nContent-Length: ");

	return cl && end && cl < end ? atol(cl + 18) : -1;
}

/* GET path; asserts a well-formed answer (Content-Length = body). */
static void http_get(const char *path, struct itkafka_resp *r)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);

	http_raw(req, (size_t)n, r);
	assert_true(r->status > 0);
	assert_int_equal(content_length(r), (long)r->body_len);
}

static bool header_is(const struct itkafka_resp *r, const char *line)
{
	const char *end = strstr(r->raw, "\r\n\r\n");
	const char *p = strstr(r->raw, line);
	return p && end && p < end;
}

static double scrape(const char *series)
{
	struct itkafka_resp *r = malloc(sizeof(*r));
	assert_non_null(r);
	http_get("/metrics", r);
	assert_int_equal(r->status, 200);
	double v = itkafka_metric(r->body, series);
	free(r);
	return v;
}

static json_t *get_json(const char *path)
{
	struct itkafka_resp *r = malloc(sizeof(*r));
	json_error_t je;

	assert_non_null(r);
	http_get(path, r);
	assert_int_equal(r->status, 200);
	assert_true(header_is(r, "\r\nContent-Type: application/json\r\n"));
	json_t *j = json_loadb(r->body, r->body_len, 0, &je);
	if (!j)
		fail_msg("%s: bad JSON (%s): %.200s", path, je.text, r->body);
	free(r);
	return j;
}

/* ---- MQTT ------------------------------------------------------------------ */

/* QoS 1 publish that returns once PUBACK came (so Kafka has the record). */
static void publish_q1(MQTTClient cl, const char *topic)
{
	MQTTClient_message m = MQTTClient_message_initializer;
	MQTTClient_deliveryToken dt;

	m.payload = (void *)"hello";
	m.payloadlen = 5;
	m.qos = 1;
	assert_int_equal(MQTTClient_publishMessage(cl, topic, &m, &dt), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_waitForCompletion(cl, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
}

/* ---- fixture ----------------------------------------------------------------- */

static int group_setup(void **state)
{
	char cfg[512];
	(void)state;

	g.metrics_port = gw_free_port();
	if (g.metrics_port < 0)
		return -1;
	snprintf(cfg, sizeof(cfg),
		 "workers = 2;\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"embedded\"; };\n"
		 "routes = ( { filter = \"t/#\"; topic = \"t\"; key = \"${clientid}\"; } );\n",
		 g.metrics_port);
	return gw_start(&g, cfg);
}

static int group_teardown(void **state)
{
	(void)state;
	return gw_stop(&g) == 0 ? 0 : -1;
}

/* ---- tests --------------------------------------------------------------------- */

static void test_healthz_readyz(void **state)
{
	static struct itkafka_resp r;
	(void)state;

	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok\n");
	assert_true(header_is(&r, "\r\nConnection: close\r\n"));
	http_get("/readyz", &r);
	if (r.status != 200)
		fail_msg("readyz: %d %s", r.status, r.body);
}

#define ROUTE_LABELS "{route=\"0\",filter=\"t/#\",topic=\"t\"}"

static MQTTClient paho_connect(const char *id)
{
	MQTTClient cl = itpaho_connect(g.port, id, NULL);
	assert_non_null(cl);
	return cl;
}

static void test_metrics_count_publishes(void **state)
{
	static const char *const series[] = {
		"kafkagate_route_delivered_total" ROUTE_LABELS,
		"kafkagate_route_routed_total" ROUTE_LABELS,
		"kafkagate_messages_received_total{qos=\"1\"}",
		"kafkagate_kafka_delivery_seconds_count",
		"kafkagate_uplink_delivered_total",
	};
	enum { NS = sizeof(series) / sizeof(series[0]) };
	double before[NS], after[NS];
	(void)state;

	for (int i = 0; i < NS; i++) {
		before[i] = scrape(series[i]);
		if (before[i] < 0)
			fail_msg("series missing: %s", series[i]);
	}
	MQTTClient cl = paho_connect("it-admin-pub");
	for (int i = 0; i < N_PUBLISH; i++)
		publish_q1(cl, "t/metrics");
	itpaho_close(&cl);

	/* PUBACK follows the delivery report, which counted first; poll a
	 * little anyway, the counters are relaxed atomics of another thread. */
	long long deadline = itutil_now_ms() + WAIT_MS;
	for (int i = 0; i < NS; i++) {
		while ((after[i] = scrape(series[i])) < before[i] + N_PUBLISH && itutil_now_ms() < deadline)
			itutil_sleep_ms(50);
		if (after[i] - before[i] != N_PUBLISH)
			fail_msg("%s rose by %g, want %d", series[i], after[i] - before[i], N_PUBLISH);
	}
	assert_true(scrape("kafkagate_route_in_flight" ROUTE_LABELS) == 0);
	assert_true(scrape("kafkagate_connections_total{listener=\"all\"}") >= 1);
	assert_true(scrape("kafkagate_kafka_delivery_seconds_bucket{le=\"+Inf\"}") >= N_PUBLISH);
}

static void test_metrics_format(void **state)
{
	static struct itkafka_resp r;
	(void)state;

	http_get("/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_true(header_is(&r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	assert_non_null(strstr(r.body, "# TYPE kafkagate_kafka_delivery_seconds histogram\n"));
	assert_non_null(strstr(r.body, "kafkagate_build_info{version=\""));
	assert_true(itkafka_metric(r.body, "kafkagate_start_time_seconds") > 1.6e9);
	assert_int_equal(r.body[r.body_len - 1], '\n');

	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		print_message("promtool not installed: skipping `promtool check metrics`\n");
		skip();
	}
	char path[] = "/tmp/it-admin-metrics-XXXXXX", cmd[256];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, r.body, r.body_len), (ssize_t)r.body_len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
}

static void test_status_json(void **state)
{
	(void)state;
	json_t *j = get_json("/api/v1/status");

	assert_true(json_is_string(json_object_get(j, "version")));
	assert_true(json_string_length(json_object_get(j, "version")) > 0);
	assert_true(json_integer_value(json_object_get(j, "uptime_s")) >= 0);
	assert_true(json_is_integer(json_object_get(j, "connections")));
	assert_int_equal(json_integer_value(json_object_get(j, "workers")), 2);
	json_t *lis = json_array_get(json_object_get(j, "listeners"), 0);
	assert_string_equal(json_string_value(json_object_get(lis, "address")), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(lis, "port")), g.port);
	assert_true(json_is_array(json_object_get(j, "downlink")));

	json_t *route = json_array_get(json_object_get(j, "routes"), 0);
	assert_string_equal(json_string_value(json_object_get(route, "filter")), "t/#");
	assert_string_equal(json_string_value(json_object_get(route, "topic")), "t");
	assert_string_equal(json_string_value(json_object_get(route, "key")), "${clientid}");
	assert_string_equal(json_string_value(json_object_get(route, "format")), "raw");
	assert_true(json_is_integer(json_object_get(route, "delivered")));

	json_t *kafka = json_object_get(j, "kafka");
	assert_true(json_is_object(kafka));
	assert_true(json_is_integer(json_object_get(kafka, "queue_depth")));
	const char *bootstrap = json_string_value(json_object_get(kafka, "bootstrap"));
	char host[128];
	int port = 0;
	assert_non_null(bootstrap);
	assert_int_equal(sscanf(bootstrap, "%127[^:]:%d", host, &port), 2);
	assert_true(port > 0 && port < 65536);

	if (system("command -v kcat >/dev/null 2>&1") == 0) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "kcat -L -b '%s' -m 5 >/dev/null 2>&1", bootstrap);
		assert_int_equal(system(cmd), 0);
	} else {
		print_message("kcat not installed: not listing %s\n", bootstrap);
	}
	json_decref(j);
}

/* The client with this id in a clients page, or NULL. */
static json_t *find_client(json_t *page, const char *id)
{
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(page, "clients"), i, c)
		if (strcmp(json_string_value(json_object_get(c, "client_id")), id) == 0)
			return c;
	return NULL;
}

static void test_clients(void **state)
{
	MQTTClient sub = paho_connect("it-admin-sub"), more[3];
	char id[32];
	(void)state;

	assert_int_equal(MQTTClient_subscribe(sub, "a/b", 1), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_subscribe(sub, "c/#", 0), MQTTCLIENT_SUCCESS);
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "it-admin-more-%d", i);
		more[i] = paho_connect(id);
	}

	/* Clients of earlier tests may take a moment to be gone. */
	json_t *page = get_json("/api/v1/clients?limit=1000");
	for (long long end = itutil_now_ms() + WAIT_MS;
	     json_integer_value(json_object_get(page, "total")) != 4 && itutil_now_ms() < end;) {
		json_decref(page);
		itutil_sleep_ms(50);
		page = get_json("/api/v1/clients?limit=1000");
	}
	assert_int_equal(json_integer_value(json_object_get(page, "total")), 4);
	assert_int_equal(json_integer_value(json_object_get(page, "offset")), 0);
	assert_int_equal(json_array_size(json_object_get(page, "clients")), 4);
	json_t *c = find_client(page, "it-admin-sub");
	assert_non_null(c);
	json_t *subs = json_object_get(c, "subscriptions");
	assert_int_equal(json_array_size(subs), 2);
	assert_string_equal(json_string_value(json_array_get(subs, 0)), "a/b");
	assert_string_equal(json_string_value(json_array_get(subs, 1)), "c/#");
	assert_true(json_is_null(json_object_get(c, "username")));
	assert_int_equal(strncmp(json_string_value(json_object_get(c, "address")), "127.0.0.1:", 10), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "inflight")), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "queued")), 0);

	/* connected_since: ISO 8601 UTC, within a minute of now. */
	struct tm tm = { 0 };
	const char *since = json_string_value(json_object_get(c, "connected_since"));
	const char *rest = strptime(since, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(rest);
	assert_true(rest[0] == '.' && rest[strlen(rest) - 1] == 'Z');
	long long age = (long long)time(NULL) - (long long)timegm(&tm);
	if (age < -2 || age > 60)
		fail_msg("connected_since %s is %lld s from now", since, age);
	json_decref(page);

	/* Paging across both workers: every client exactly once. */
	int seen[4] = { 0 };
	for (int off = 0; off < 4; off++) {
		char path[64];
		snprintf(path, sizeof(path), "/api/v1/clients?offset=%d&limit=1", off);
		page = get_json(path);
		assert_int_equal(json_array_size(json_object_get(page, "clients")), 1);
		seen[0] += find_client(page, "it-admin-sub") != NULL;
		for (int i = 0; i < 3; i++) {
			snprintf(id, sizeof(id), "it-admin-more-%d", i);
			seen[i + 1] += find_client(page, id) != NULL;
		}
		json_decref(page);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(seen[i], 1);
	page = get_json("/api/v1/clients?offset=4");
	assert_int_equal(json_array_size(json_object_get(page, "clients")), 0);
	assert_int_equal(json_integer_value(json_object_get(page, "limit")), 100);
	json_decref(page);
	page = get_json("/api/v1/clients?limit=5000");
	assert_int_equal(json_integer_value(json_object_get(page, "limit")), 1000);
	json_decref(page);

	static struct itkafka_resp r;
	http_raw_str("GET /api/v1/clients?offset=-1 HTTP/1.1\r\n\r\n", &r);
	assert_int_equal(r.status, 400);

	for (int i = 0; i < 3; i++)
		itpaho_close(&more[i]);
	itpaho_close(&sub);
}

struct bad_req {
	const char *req;
	size_t len;
	int status;
};

#define BADREQ(s, st) { s, sizeof(s) - 1, st }

static void test_bad_requests_leave_mqtt_alone(void **state)
{
	static const struct bad_req bad[] = {
		BADREQ("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
		BADREQ("\x00\xff garbage\r\n\r\n", 400),
		BADREQ("GET /metrics\r\n\r\n", 400),
		BADREQ("GET /metrics HTTP/2.0\r\n\r\n", 400),
		BADREQ("GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
		BADREQ("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
		BADREQ("POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405),
		BADREQ("DELETE /api/v1/clients HTTP/1.1\r\n\r\n", 405),
		BADREQ("GET /nope HTTP/1.1\r\n\r\n", 404),
		BADREQ("GET /metrics/ HTTP/1.0\r\n\r\n", 404),
	};
	static struct itkafka_resp r;
	static char big[12000];
	(void)state;

	MQTTClient cl = paho_connect("it-admin-bystander");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		http_raw(bad[i].req, bad[i].len, &r);
		if (r.status != bad[i].status)
			fail_msg("request %zu: status %d, want %d", i, r.status, bad[i].status);
		assert_int_equal(content_length(&r), (long)r.body_len);
	}

	/* A head over 8 KiB: 431, even though the client is still sending. */
	size_t n = (size_t)snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nX-Big: ");
	memset(big + n, 'a', sizeof(big) - n - 4);
	memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
	http_raw(big, sizeof(big), &r);
	assert_int_equal(r.status, 431);

	/* HEAD: the headers of GET, no body. */
	http_raw_str("HEAD /healthz HTTP/1.1\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(content_length(&r), 3);
	assert_int_equal(r.body_len, 0);

	/* The MQTT side did not notice. */
	publish_q1(cl, "t/after-bad-requests");
	itpaho_close(&cl);
	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
}

/* At most 64 admin connections; a head must arrive within 5 s. */
static void test_connection_limit_and_timeout(void **state)
{
	enum { MAX = 64 };
	int fds[MAX + 1];
	char c;
	(void)state;

	for (int i = 0; i < MAX; i++)
		fds[i] = admin_connect();
	assert_int_equal(send(fds[0], "GET /healthz HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 23);
	itutil_sleep_ms(200);
	/* The 65th is closed at once, unanswered. */
	fds[MAX] = admin_connect();
	struct pollfd p = { .fd = fds[MAX], .events = POLLIN };
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_true(recv(fds[MAX], &c, 1, 0) <= 0);
	close(fds[MAX]);

	/* The incomplete head is dropped after the 5 s timeout, unanswered. */
	long long t0 = itutil_now_ms();
	p.fd = fds[0];
	assert_int_equal(poll(&p, 1, 8000), 1);
	assert_true(recv(fds[0], &c, 1, 0) <= 0);
	long long waited = itutil_now_ms() - t0;
	if (waited < 4000 || waited > 7000)
		fail_msg("closed after %lld ms, want about 5000", waited);
	for (int i = 0; i < MAX; i++)
		close(fds[i]);

	static struct itkafka_resp r;
	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz_readyz),
		cmocka_unit_test(test_metrics_count_publishes),
		cmocka_unit_test(test_metrics_format),
		cmocka_unit_test(test_status_json),
		cmocka_unit_test(test_clients),
		cmocka_unit_test(test_bad_requests_leave_mqtt_alone),
		cmocka_unit_test(test_connection_limit_and_timeout),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
