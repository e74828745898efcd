/*
 * it_state_owner.c - wills and sessions of a dead instance (state.store =
 * "kafka", src/state/state_owner.c).
 *
 * Three gateways on one librdkafka mock cluster hosted in this process (it
 * outlives the SIGKILL), then the same on the real Kafka of
 * scripts/kafka-local (skipped without java). 20 devices with persistent sessions and wills on
 * gateway 1, three on each of gateways 2 and 3; a subscriber to the will
 * topics on gateway 2 and a Kafka route for them. Gateway 1 is SIGKILLed:
 * - every will of gateway 1's devices is published exactly once, in Kafka
 *   and to the subscriber on gateway 2, within lease_ms plus the owners
 *   group's session timeout (max(lease_ms, 6 s)) plus a margin;
 * - no will of a device on gateways 2 or 3 is published;
 * - the devices reconnecting (Clean Session 0) to gateway 2 or 3 find their
 *   sessions (session present 1) and their subscriptions (a command
 *   published on gateway 3 reaches each of them).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"
#include "rawmqtt.h"

#define DEV1 20         /* devices on gateway 1 */
#define DEV23 3         /* devices on each of gateways 2 and 3 */
#define LEASE_MS 3000
#define OWNERS_SESSION_MS 6000
#define WILL_TOPIC "itown-wills"
static struct itkafka_mock mock;
static struct itkafka_local kl;
static const char *boot;       /* the cluster of the running group */
static char prefix[32];        /* state.topic_prefix, fresh per group */
static struct gw gws[3];
static struct itkafka_resp resp;
/* Failed checks: each printed, the test fails at its end, so that one run
 * shows every part (wills at the subscriber, in Kafka, sessions, subs). */
static int fails;
#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "it_state_owner: FAILED: " __VA_ARGS__); \
		fputc('\n', stderr); \
		fails++; \
	} \
} while (0)

static int start_gw(int i)
{
	char cfg[2048];
	gws[i].metrics_port = gw_free_port();
	gws[i].wait_metrics = true;
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5; };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "state = { store = \"kafka\"; instance_id = \"gw-%d\"; topic_prefix = \"%s\";\n"
		 "  partitions = 6; replication_factor = 1; heartbeat_ms = 300; lease_ms = %d;\n"
		 "  claim_timeout_ms = 5000; };\n"
		 "routes = ( { filter = \"wills/#\"; topic = \"" WILL_TOPIC "\"; key = \"${clientid}\";\n"
		 "  format = \"raw\"; } );\n",
		 boot, gws[i].metrics_port, i + 1, prefix, LEASE_MS);
	return gw_start(&gws[i], cfg);
}

static bool ready(int i, int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;
	while (itutil_now_ms() < end) {
		if (itkafka_http_get(gws[i].metrics_port, "/readyz", &resp, 2000) == 200)
			return true;
		itutil_sleep_ms(100);
	}
	return false;
}

static int start_all(void)
{
	for (int i = 0; i < 3; i++)
		if (start_gw(i) < 0)
			return -1;
	for (int i = 0; i < 3; i++)
		if (!ready(i, 20000)) {
			fprintf(stderr, "gateway %d not ready: %s\n", i + 1, resp.body);
			return -1;
		}
	return 0;
}

static void stop_all(void)
{
	/* Also the SIGKILLed one: gw_stop() removes its directory. */
	for (int i = 0; i < 3; i++)
		if (gws[i].pid || gws[i].dir[0])
			gw_stop(&gws[i]);
	memset(gws, 0, sizeof(gws));
}

static int mock_setup(void **state)
{
	(void)state;
	if (itkafka_mock_init(&mock, 1) < 0)
		return -1;
	boot = mock.bootstrap;
	snprintf(prefix, sizeof(prefix), "itown%d", (int)getpid());
	return start_all();
}

static int mock_teardown(void **state)
{
	(void)state;
	stop_all();
	itkafka_mock_release(&mock);
	return 0;
}

static int real_setup(void **state)
{
	(void)state;
	if (itkafka_local_start(&kl) < 0)
		return -1;
	if (kl.skip_reason)
		return 0;
	boot = kl.bootstrap;
	snprintf(prefix, sizeof(prefix), "itownr%d", (int)getpid());
	return start_all();
}

static int real_teardown(void **state)
{
	(void)state;
	stop_all();
	itkafka_local_stop(&kl);
	return 0;
}

/* A device: persistent session, a will on wills/<id>, subscribed to
 * cmd/<id> at QoS 1. Returns the fd. */
static int device(int port, const char *id, bool *present)
{
	char wt[64];
	snprintf(wt, sizeof(wt), "wills/%s", id);
	struct raw_connect c = {
		.level = 4, .client_id = id, .clean = false, .keepalive = 60,
		.will_topic = wt, .will_payload = id, .will_payload_len = (uint16_t)strlen(id),
		.will_qos = 1,
	};
	return itutil_connect_with(port, &c, present);
}

static void test_dead_instance(void **state)
{
	(void)state;
	fails = 0;
	char id[32], filter[64];
	int fds1[DEV1], fds23[2][DEV23];
	bool present;

	/* The watcher of the wills, on gateway 2. */
	int sub = itutil_connect(gws[1].port, "will-watcher", true, 60, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "wills/#", 1), 0);

	for (int i = 0; i < DEV1; i++) {
		snprintf(id, sizeof(id), "own-d%d", i);
		fds1[i] = device(gws[0].port, id, &present);
		assert_true(fds1[i] >= 0);
		snprintf(filter, sizeof(filter), "cmd/%s", id);
		assert_int_equal(itutil_subscribe(fds1[i], 1, filter, 1), 0);
	}
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < DEV23; i++) {
			snprintf(id, sizeof(id), "own-g%d-d%d", g + 2, i);
			fds23[g][i] = device(gws[g + 1].port, id, &present);
			assert_true(fds23[g][i] >= 0);
		}
	/* The subs records are written asynchronously (SUBACK does not wait):
	 * give them a Kafka round trip or two. */
	itutil_sleep_ms(1000);

	long long t0 = itutil_now_ms();
	gw_kill(&gws[0], SIGKILL);
	assert_true(gw_wait_exit(&gws[0], 5000) >= 0);
	for (int i = 0; i < DEV1; i++)
		close(fds1[i]);

	/* Every will of gateway 1's devices reaches the watcher once. */
	int got[DEV1] = { 0 }, n = 0, others = 0;
	long long deadline = t0 + LEASE_MS + OWNERS_SESSION_MS + 10000;
	struct itutil_pkt p;
	while (n < DEV1 && itutil_now_ms() < deadline) {
		int left = (int)(deadline - itutil_now_ms());
		if (itutil_recv_acked(sub, &p, left > 0 ? left : 1) < 0)
			break;
		int k;
		if (sscanf(p.topic, "wills/own-d%d", &k) == 1 && k >= 0 && k < DEV1) {
			if (got[k]++ == 0)
				n++;
		} else {
			others++;
		}
	}
	long long took = itutil_now_ms() - t0;
	fprintf(stderr, "wills at the watcher: %d of %d in %lld ms\n", n, DEV1, took);
	CHECK(n == DEV1, "%d of %d wills reached the subscriber on gateway 2", n, DEV1);
	/* Then nothing more: no second will, none of a live instance's device. */
	while (itutil_recv_acked(sub, &p, 3000) == 0)
		others++;
	for (int i = 0; i < DEV1; i++)
		CHECK(got[i] <= 1, "the will of own-d%d reached the subscriber %d times", i, got[i]);
	CHECK(others == 0, "%d other messages reached the subscriber", others);

	/* In Kafka, through the route: the same, once each. */
	static struct itkafka_rec recs[64];
	int nr = itkafka_read(boot, WILL_TOPIC, 64, 5000, recs);
	int inkafka[DEV1] = { 0 }, bad = 0;
	for (int i = 0; i < nr; i++) {
		int k;
		if (recs[i].val && sscanf(recs[i].val, "own-d%d", &k) == 1 && k >= 0 && k < DEV1 &&
		    strncmp(recs[i].val, "own-d", 5) == 0)
			inkafka[k]++;
		else
			bad++;
	}
	itkafka_recs_free(recs, nr > 0 ? nr : 0);
	fprintf(stderr, "wills in Kafka: %d records\n", nr);
	for (int i = 0; i < DEV1; i++)
		CHECK(inkafka[i] == 1, "the will of own-d%d is %d times in Kafka", i, inkafka[i]);
	CHECK(bad == 0, "%d other records in Kafka", bad);

	/* The devices come back on gateways 2 and 3: their sessions are there. */
	int back[DEV1];
	for (int i = 0; i < DEV1; i++) {
		snprintf(id, sizeof(id), "own-d%d", i);
		present = false;
		back[i] = device(gws[1 + i % 2].port, id, &present);
		assert_true(back[i] >= 0);
		CHECK(present, "own-d%d reconnected to gateway %d: session present 0", i, 2 + i % 2);
	}
	/* And their subscriptions: a command from gateway 3 reaches each. */
	int pub = itutil_connect(gws[2].port, "commander", true, 60, NULL);
	assert_true(pub >= 0);
	for (int i = 0; i < DEV1; i++) {
		snprintf(filter, sizeof(filter), "cmd/own-d%d", i);
		assert_int_equal(itutil_send_publish(pub, filter, "go", 2, 1, false, (uint16_t)(i + 1)), 0);
		assert_int_equal(itutil_expect_ack(pub, 0x40, (uint16_t)(i + 1), 5000), 0);
	}
	for (int i = 0; i < DEV1; i++) {
		snprintf(filter, sizeof(filter), "cmd/own-d%d", i);
		int rc = itutil_recv_acked(back[i], &p, 5000);
		CHECK(rc == 0 && strcmp(p.topic, filter) == 0, "own-d%d: no command after reconnecting", i);
		close(back[i]);
	}
	close(pub);
	for (int g = 0; g < 2; g++)
		for (int i = 0; i < DEV23; i++)
			close(fds23[g][i]);
	close(sub);
	assert_int_equal(fails, 0);
}

static void test_dead_instance_real(void **state)
{
	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	test_dead_instance(state);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest mock_tests[] = {
		cmocka_unit_test(test_dead_instance),
	};
	const struct CMUnitTest real_tests[] = {
		cmocka_unit_test(test_dead_instance_real),
	};
	int nf = cmocka_run_group_tests_name("mock", mock_tests, mock_setup, mock_teardown);
	nf += cmocka_run_group_tests_name("real", real_tests, real_setup, real_teardown);
	return nf;
}
