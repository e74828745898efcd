/*
 * it_ready.c - /readyz and /healthz of the real binary.
 *
 * With Kafka (librdkafka's mock cluster hosted in this process): ready while
 * the cluster is up, 503 with a reason within ~5 s of every broker going
 * down (the gateway caches its answer for 1 s and waits 500 ms for
 * metadata), ready again within ~10 s of the brokers coming back; /healthz
 * says 200 throughout. Without Kafka: ready as soon as the listener is bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

#define HTTP_MS 5000
#define N_BROKERS 1

struct fx {
	rd_kafka_t *mrk;              /* owns the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	struct gw g;
};

static struct fx F;

struct resp {
	int status;                   /* -1: no well-formed answer */
	char raw[4096];
	const char *body;             /* into raw, "" when none */
};

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

/* GET path on the metrics port (HTTP/1.0: the server closes after answering). */
static void http_get(const char *path, struct resp *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)F.g.metrics_port) };
	char req[256];
	size_t len = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	for (long long deadline = now_ms() + HTTP_MS; len + 1 < sizeof(r->raw);) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - now_ms());
		ssize_t got;

		if (left <= 0 || poll(&p, 1, left) <= 0 ||
		    (got = recv(fd, r->raw + len, sizeof(r->raw) - 1 - len, 0)) <= 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	r->raw[len] = '\0';
	const char *end = strstr(r->raw, "\r\n\r\n");
	r->status = strncmp(r->raw, "HTTP/1.", 7) == 0 && end ? atoi(r->raw + 9) : -1;
	r->body = end ? end + 4 : "";
}

/* Polls path every 100 ms until it answers want or timeout_ms passes; checks
 * /healthz on every round. Returns the milliseconds it took, or -1 (the last
 * answer stays in *r). */
static long long wait_status(const char *path, int want, int timeout_ms, struct resp *r)
{
	long long start = now_ms();

	for (;;) {
		struct resp h;

		http_get(path, r);
		if (r->status == want)
			return now_ms() - start;
		http_get("/healthz", &h);
		if (h.status != 200)
			fail_msg("/healthz answered %d while waiting for %s: %s", h.status, path, h.raw);
		if (now_ms() - start >= timeout_ms)
			return -1;
		sleep_ms(100);
	}
}

static void gw_up(const char *kafka)
{
	char cfg[1024];

	F.g.metrics_port = gw_free_port();
	assert_true(F.g.metrics_port > 0);
	snprintf(cfg, sizeof(cfg), "metrics = { address = \"127.0.0.1\"; port = %d; };\n%s",
		 F.g.metrics_port, kafka);
	assert_int_equal(gw_start(&F.g, cfg), 0);
}

static int fx_down(void **state)
{
	(void)state;
	gw_stop(&F.g);
	if (F.mc)
		rd_kafka_mock_cluster_destroy(F.mc);
	if (F.mrk)
		rd_kafka_destroy(F.mrk);
	memset(&F, 0, sizeof(F));
	return 0;
}

static void set_brokers(bool up)
{
	for (int32_t id = 1; id <= N_BROKERS; id++)
		assert_int_equal(up ? rd_kafka_mock_broker_set_up(F.mc, id)
				    : rd_kafka_mock_broker_set_down(F.mc, id),
				 RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void test_ready_follows_kafka(void **state)
{
	char e[256], kafka[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	struct resp r, h;
	long long ms;
	(void)state;

	rd_kafka_conf_set(conf, "log_level", "2", e, sizeof(e));
	F.mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	assert_non_null(F.mrk);
	F.mc = rd_kafka_mock_cluster_new(F.mrk, N_BROKERS);
	assert_non_null(F.mc);
	snprintf(kafka, sizeof(kafka),
		 "kafka = { brokers = \"%s\"; flush_timeout = 1;"
		 " properties = ( (\"message.timeout.ms\", 10000) ); };",
		 rd_kafka_mock_cluster_bootstraps(F.mc));
	gw_up(kafka);

	if ((ms = wait_status("/readyz", 200, 10000, &r)) < 0)
		fail_msg("/readyz not 200 within 10 s with the cluster up: %s", r.raw);
	assert_string_equal(r.body, "ready\n");

	set_brokers(false);
	if ((ms = wait_status("/readyz", 503, 5000, &r)) < 0)
		fail_msg("/readyz still %d 5 s after every broker went down: %s", r.status, r.raw);
	print_message("503 after %lld ms: %s", ms, r.body);
	if (strncmp(r.body, "not ready: ", 11) != 0 || strlen(r.body) <= 12)
		fail_msg("503 without a reason: '%s'", r.body);
	/* It stays not ready while the brokers are down. */
	for (int i = 0; i < 3; i++) {
		sleep_ms(700);
		http_get("/readyz", &r);
		assert_int_equal(r.status, 503);
	}
	http_get("/healthz", &h);
	assert_int_equal(h.status, 200);

	set_brokers(true);
	if ((ms = wait_status("/readyz", 200, 10000, &r)) < 0)
		fail_msg("/readyz still %d 10 s after the brokers came back: %s", r.status, r.raw);
	print_message("200 again after %lld ms\n", ms);
	assert_string_equal(r.body, "ready\n");
	http_get("/healthz", &h);
	assert_int_equal(h.status, 200);
	assert_string_equal(h.body, "ok\n");
}

static void test_ready_without_kafka(void **state)
{
	struct resp r;
	(void)state;

	gw_up("");
	/* gw_start() returned once the MQTT port accepted: no polling. */
	http_get("/readyz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ready\n");
	http_get("/healthz", &r);
	assert_int_equal(r.status, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ready_follows_kafka, fx_down),
		cmocka_unit_test_teardown(test_ready_without_kafka, fx_down),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_ready", tests, NULL, NULL);
}
