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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define HTTP_MS 5000
#define N_BROKERS 1

struct fx {
	struct itkafka_mock k;
	struct gw g;
};

static struct fx F;

/* GET path on the metrics port. */
static void http_get(const char *path, struct itkafka_resp *r)
{
	itkafka_http_get(F.g.metrics_port, path, r, HTTP_MS);
}

/* Polls path every 100 ms until it answers want or timeout_ms passes; checks
 * /healthz on every round. Returns the milliseconds it took, or -1 (the last
 * answer stays in *r). */
static long long wait_status(const char *path, int want, int timeout_ms, struct itkafka_resp *r)
{
	static struct itkafka_resp h;
	long long start = itutil_now_ms();

	for (;;) {
		http_get(path, r);
		if (r->status == want)
			return itutil_now_ms() - start;
		http_get("/healthz", &h);
		if (h.status != 200)
			fail_msg("/healthz answered %d while waiting for %s: %s", h.status, path, h.raw);
		if (itutil_now_ms() - start >= timeout_ms)
			return -1;
		itutil_sleep_ms(100);
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
	itkafka_mock_release(&F.k);
	memset(&F, 0, sizeof(F));
	return 0;
}

static void set_brokers(bool up)
{
	for (int32_t id = 1; id <= N_BROKERS; id++)
		assert_int_equal(up ? rd_kafka_mock_broker_set_up(F.k.mc, id)
				    : rd_kafka_mock_broker_set_down(F.k.mc, id),
				 RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void test_ready_follows_kafka(void **state)
{
	static struct itkafka_resp r, h;
	char kafka[512];
	long long ms;
	(void)state;

	assert_int_equal(itkafka_mock_init(&F.k, N_BROKERS), 0);
	snprintf(kafka, sizeof(kafka),
		 "kafka = { brokers = \"%s\"; flush_timeout = 1;"
		 " properties = ( (\"message.timeout.ms\", 10000) ); };",
		 F.k.bootstrap);
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
		itutil_sleep_ms(700);
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
	static struct itkafka_resp r;
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
