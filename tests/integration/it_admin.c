/*
 * it_admin.c - the admin HTTP endpoint of the real binary: /metrics counts
 * what paho publishes through a route into the embedded Kafka, and passes
 * promtool; /healthz and /readyz; the status JSON (bootstrap usable by kcat);
 * /api/v1/clients with paging; robustness: malformed, oversized,
 * incomplete and excess requests get their status (or a close) and the MQTT
 * side keeps working; slow clients: hundreds of half-sent heads from one or
 * many addresses never keep the probes out (per-address and total limits
 * close the oldest idle connection, a 2 s head deadline the rest); and the
 * bearer token of a second gateway (metrics.token_file): what it guards,
 * --check, reload.
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
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* gw_start() returns once the MQTT port takes connections, which it does
 * (into its backlog) before the admin port is bound: wait for that too. */
static int wait_admin(int port)
{
	static struct itkafka_resp r;

	for (long long end = itutil_now_ms() + 10000; itutil_now_ms() < end; itutil_sleep_ms(20))
		if (itkafka_http_get(port, "/healthz", &r, 1000) == 200)
			return 0;
	fprintf(stderr, "admin port %d not answering\n", port);
	return -1;
}

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
	return gw_start(&g, cfg) == 0 ? wait_admin(g.metrics_port) : -1;
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

/* ---- slow clients and limits ------------------------------------------------ */

/* A TCP connection to the admin port from src (any 127/8 address is the
 * loopback interface, and a distinct peer address for the server). */
static int connect_from(const char *src, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	to.sin_port = htons((uint16_t)port);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0)
		fail_msg("connect from %s: %s", src, strerror(errno));
	return fd;
}

/* True when the server closed fd within timeout_ms without answering
 * (EOF, or a reset because our unread half head was still there). */
static bool closed_unanswered(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, timeout_ms) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static bool still_open(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/* n probes in a row from 127.0.0.1, every_ms apart: each must be answered
 * 200 within 200 ms. */
static void probes_pass(int n, int every_ms)
{
	static struct itkafka_resp r;

	for (int i = 0; i < n; i++) {
		const char *path = i % 2 ? "/readyz" : "/healthz";
		long long t0 = itutil_now_ms();
		itkafka_http_get(g.metrics_port, path, &r, 1000);
		long long took = itutil_now_ms() - t0;
		if (r.status != 200 || took > 200)
			fail_msg("probe %d of %d (%s): status %d after %lld ms", i + 1, n, path, r.status,
				 took);
		itutil_sleep_ms(every_ms);
	}
}

#define HALF_HEAD "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag"

/* 200 slowloris connections from one address, then 320 from 40: the probes
 * keep getting in, and every slow one is closed unanswered, at the latest
 * by the 2 s head deadline. */
static void test_slow_clients_do_not_starve_probes(void **state)
{
	enum { N1 = 200, N2 = 320, ADDRS = 40 };
	static int fds[N1 + N2];
	static long long opened[N1 + N2];
	char src[32];
	(void)state;

	for (int i = 0; i < N1; i++) {
		fds[i] = connect_from("127.0.0.2", g.metrics_port);
		opened[i] = itutil_now_ms();
		assert_int_equal(send(fds[i], HALF_HEAD, strlen(HALF_HEAD), MSG_NOSIGNAL),
				 (ssize_t)strlen(HALF_HEAD));
	}
	probes_pass(80, 10);

	/* Spread over many addresses, past the server's total, while probing. */
	for (int i = 0; i < N2; i++) {
		snprintf(src, sizeof(src), "127.0.1.%d", 1 + i % ADDRS);
		fds[N1 + i] = connect_from(src, g.metrics_port);
		opened[N1 + i] = itutil_now_ms();
		assert_int_equal(send(fds[N1 + i], HALF_HEAD, 10, MSG_NOSIGNAL), 10);
		if (i % 4 == 3)
			probes_pass(1, 0);
	}
	probes_pass(80, 10);

	for (int i = 0; i < N1 + N2; i++) {
		int left = (int)(opened[i] + 3000 - itutil_now_ms());
		if (!closed_unanswered(fds[i], left > 0 ? left : 0))
			fail_msg("slow connection %d still open (or answered) %lld ms after connect", i,
				 itutil_now_ms() - opened[i]);
		close(fds[i]);
	}
}

/* A head must be complete 2 s after accept; a trickle does not extend it. */
static void test_head_deadline(void **state)
{
	static const char head[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	int fd = connect_from("127.0.0.4", g.metrics_port);
	long long t0 = itutil_now_ms();
	(void)state;

	for (size_t i = 0; i < sizeof(head) - 1 && still_open(fd); i++) {
		if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1)
			break;
		itutil_sleep_ms(100);
	}
	assert_true(closed_unanswered(fd, 4000));
	long long waited = itutil_now_ms() - t0;
	close(fd);
	if (waited < 1800 || waited > 2800)
		fail_msg("closed after %lld ms, want about 2000", waited);
}

/* Eight connections per address: the ninth from the same address closes
 * that address's oldest one that has not sent a request, and is served;
 * other addresses are not touched. */
static void test_per_address_limit(void **state)
{
	enum { PER = 8 };
	static struct itkafka_resp r;
	int mine[PER + 2], other;
	(void)state;

	other = connect_from("127.0.0.6", g.metrics_port);
	for (int i = 0; i < PER; i++)
		mine[i] = connect_from("127.0.0.5", g.metrics_port);
	itutil_sleep_ms(100);
	for (int i = 0; i < PER; i++)
		assert_true(still_open(mine[i]));

	/* The ninth: the oldest of 127.0.0.5 goes at once, long before its
	 * deadline, and the ninth gets its answer. */
	mine[PER] = connect_from("127.0.0.5", g.metrics_port);
	if (!closed_unanswered(mine[0], 500))
		fail_msg("the oldest connection of the address was not closed for the ninth");
	const char *req = "GET /healthz HTTP/1.1\r\n\r\n";
	assert_int_equal(send(mine[PER], req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	struct pollfd p = { .fd = mine[PER], .events = POLLIN };
	char buf[64] = "";
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_true(recv(mine[PER], buf, sizeof(buf) - 1, 0) > 12);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);

	/* The tenth takes the next oldest; the others stay. */
	mine[PER + 1] = connect_from("127.0.0.5", g.metrics_port);
	assert_true(closed_unanswered(mine[1], 500));
	for (int i = 2; i < PER; i++)
		assert_true(still_open(mine[i]));
	assert_true(still_open(other));

	/* Another address is served meanwhile. */
	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
	for (int i = 0; i < PER + 2; i++)
		close(mine[i]);
	close(other);
}

/* At most 128 connections in all: the 129th closes the oldest idle one. */
static void test_total_limit(void **state)
{
	enum { MAX = 128, PER = 8 };
	static struct itkafka_resp r;
	int fds[MAX];
	char src[32];
	(void)state;

	itutil_sleep_ms(200);   /* connections of earlier tests are gone */
	for (int i = 0; i < MAX; i++) {
		snprintf(src, sizeof(src), "127.0.2.%d", 1 + i / PER);
		fds[i] = connect_from(src, g.metrics_port);
	}
	itutil_sleep_ms(100);
	for (int i = 0; i < MAX; i++)
		assert_true(still_open(fds[i]));

	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
	if (!closed_unanswered(fds[0], 500))
		fail_msg("the oldest idle connection was not closed for the 129th");
	for (int i = 1; i < MAX; i++)
		assert_true(still_open(fds[i]));
	for (int i = 0; i < MAX; i++)
		close(fds[i]);
}

/* ---- the bearer token ------------------------------------------------------------ */

#define TOKEN_A "tA-4f1c9b0e2d7a8c5e"
#define TOKEN_B "tB-93e7d2a1b8c6f054"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/* Runs KG_BIN with args, output (stdout and stderr) into out. Returns the
 * exit status. */
static int run_bin(const char *args, char *out, size_t cap)
{
	const char *bin = getenv("KG_BIN") ? getenv("KG_BIN") : "build/kafkagate";
	char cmd[1024];
	size_t n = 0;

	snprintf(cmd, sizeof(cmd), "timeout 10 %s %s 2>&1", bin, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	while (n + 1 < cap && fgets(out + n, (int)(cap - n), p))
		n += strlen(out + n);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* GET path on port, with "Authorization: <auth>" unless auth is NULL. */
static int get_auth(int port, const char *method, const char *path, const char *auth,
		    struct itkafka_resp *r)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", method,
			 path, auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");

	return itkafka_http(port, req, (size_t)n, r, WAIT_MS);
}

/* A whole small file, NUL-terminated (free it), or NULL. */
static char *read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *text = f ? calloc(1, 1 << 20) : NULL;

	if (text)
		*len = fread(text, 1, (1 << 20) - 1, f);
	if (f)
		fclose(f);
	return text;
}

static int count_in_file(const char *path, const char *needle)
{
	size_t len;
	char *text = read_text(path, &len);
	int n = 0;

	assert_non_null(text);
	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	free(text);
	return n;
}

/* SIGHUP, then waits for one more "reload applied" (true) or "reload
 * rejected" (false) line. */
static bool reload_gw(struct gw *gw)
{
	int ok = count_in_file(gw->log_path, "reload applied");
	int bad = count_in_file(gw->log_path, "reload rejected");

	gw_kill(gw, SIGHUP);
	for (long long end = itutil_now_ms() + WAIT_MS; itutil_now_ms() < end; itutil_sleep_ms(20)) {
		if (count_in_file(gw->log_path, "reload applied") > ok)
			return true;
		if (count_in_file(gw->log_path, "reload rejected") > bad)
			return false;
	}
	fail_msg("no reload outcome logged");
	return false;
}

/* The endpoints a token file guards and those it never does. */
static void expect_guarded(int port, const char *good, const char *old, bool metrics_guarded)
{
	static struct itkafka_resp r;
	static const char *const api[] = { "/api/v1/status", "/api/v1/clients" };

	for (int i = 0; i < 2; i++) {
		get_auth(port, "GET", api[i], NULL, &r);
		if (r.status != 401)
			fail_msg("%s without a token: %d", api[i], r.status);
		assert_true(header_is(&r, "\r\nWWW-Authenticate: Bearer\r\n"));
		assert_int_equal(content_length(&r), (long)r.body_len);
		get_auth(port, "GET", api[i], "Bearer wrong-token", &r);
		assert_int_equal(r.status, 401);
		get_auth(port, "GET", api[i], old, &r);
		assert_int_equal(r.status, 401);
		get_auth(port, "GET", api[i], good, &r);
		if (r.status != 200)
			fail_msg("%s with the token: %d %s", api[i], r.status, r.body);
	}
	get_auth(port, "HEAD", "/api/v1/status", NULL, &r);
	assert_int_equal(r.status, 401);
	assert_int_equal(r.body_len, 0);
	get_auth(port, "GET", "/api/v1/status", "Basic dXNlcjpwYXNz", &r);
	assert_int_equal(r.status, 401);

	get_auth(port, "GET", "/metrics", NULL, &r);
	assert_int_equal(r.status, metrics_guarded ? 401 : 200);
	get_auth(port, "GET", "/metrics", good, &r);
	assert_int_equal(r.status, 200);
	get_auth(port, "GET", "/metrics", "Bearer wrong-token", &r);
	assert_int_equal(r.status, metrics_guarded ? 401 : 200);

	/* The probes never ask, and ignore a wrong token. */
	const char *probes[] = { "/healthz", "/readyz" };
	for (int i = 0; i < 2; i++) {
		get_auth(port, "GET", probes[i], NULL, &r);
		assert_int_equal(r.status, 200);
		get_auth(port, "GET", probes[i], "Bearer wrong-token", &r);
		assert_int_equal(r.status, 200);
	}
}

static void test_token(void **state)
{
	static struct gw g2;
	static struct itkafka_resp r;
	char dir[] = "/tmp/it-admin-token-XXXXXX", tok[300], bad_cfg[300], cfg[700], out[2048];
	char args[700], want[400];
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(tok, sizeof(tok), "%s/token", dir);
	snprintf(bad_cfg, sizeof(bad_cfg), "%s/bad.cfg", dir);

	/* --check and start-up refuse an empty, blank or missing token file,
	 * naming the config line of metrics.token_file. */
	snprintf(cfg, sizeof(cfg),
		 "listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
		 "metrics = { address = \"127.0.0.1\"; port = 0;\n"
		 "  token_file = \"%s\"; };\n", tok);
	write_file(bad_cfg, cfg);
	snprintf(want, sizeof(want), "%s:3: metrics.token_file: ", bad_cfg);
	const char *bad_tokens[] = { "", "\n", "  \t\r\n" TOKEN_A "\n", "two words\n", NULL };
	for (int i = 0; bad_tokens[i]; i++) {
		write_file(tok, bad_tokens[i]);
		snprintf(args, sizeof(args), "--check --config %s", bad_cfg);
		assert_int_equal(run_bin(args, out, sizeof(out)), 1);
		if (!strstr(out, want))
			fail_msg("--check with token file %d: %s", i, out);
		snprintf(args, sizeof(args), "--config %s", bad_cfg);
		assert_int_equal(run_bin(args, out, sizeof(out)), 1);
		assert_non_null(strstr(out, want));
	}
	unlink(tok);
	snprintf(args, sizeof(args), "--check --config %s", bad_cfg);
	assert_int_equal(run_bin(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "cannot read"));

	/* First line, trailing blanks and CR stripped; what follows is ignored. */
	write_file(tok, TOKEN_A " \r\nsecond line\n");
	assert_int_equal(run_bin(args, out, sizeof(out)), 0);

	g2.metrics_port = gw_free_port();
	assert_true(g2.metrics_port > 0);
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; token_file = \"%s\";\n"
		 "            protect_metrics = false; };\n",
		 g2.metrics_port, tok);
	assert_int_equal(gw_start(&g2, cfg), 0);
	assert_int_equal(wait_admin(g2.metrics_port), 0);
	expect_guarded(g2.metrics_port, "Bearer " TOKEN_A, "Bearer " TOKEN_B, false);
	get_auth(g2.metrics_port, "GET", "/api/v1/status", "bearer   " TOKEN_A, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.raw, TOKEN_A));

	/* SIGHUP: a new token, and /metrics guarded too. */
	write_file(tok, TOKEN_B "\n");
	size_t len;
	char *text = read_text(g2.cfg_path, &len);
	assert_non_null(text);
	char *at = strstr(text, "protect_metrics = false");
	assert_non_null(at);
	memcpy(at, "protect_metrics = true; ", 24);
	write_file(g2.cfg_path, text);
	free(text);
	assert_true(reload_gw(&g2));
	expect_guarded(g2.metrics_port, "Bearer " TOKEN_B, "Bearer " TOKEN_A, true);

	/* A token file gone bad: the reload is refused, the token stays. */
	write_file(tok, "\n");
	assert_false(reload_gw(&g2));
	assert_true(gw_log_contains(&g2, "metrics.token_file"));
	expect_guarded(g2.metrics_port, "Bearer " TOKEN_B, "Bearer " TOKEN_A, true);

	/* Neither token was ever logged (the log is at debug level). */
	assert_false(gw_log_contains(&g2, TOKEN_A));
	assert_false(gw_log_contains(&g2, TOKEN_B));
	assert_true(gw_log_contains(&g2, "http unauthorized"));
	assert_int_equal(gw_stop(&g2), 0);
	unlink(tok);
	unlink(bad_cfg);
	rmdir(dir);
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
		cmocka_unit_test(test_slow_clients_do_not_starve_probes),
		cmocka_unit_test(test_head_deadline),
		cmocka_unit_test(test_per_address_limit),
		cmocka_unit_test(test_total_limit),
		cmocka_unit_test(test_token),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
