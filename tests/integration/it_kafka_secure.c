/*
 * it_kafka_secure.c - the gateway against a real Apache Kafka that takes
 * only TLS and SASL (scripts/kafka-local start --secure):
 *   - QoS 1 publishes through a gateway logged in over SASL_SSL are
 *     acknowledged and land in Kafka, read back by a client with the same
 *     settings;
 *   - a command produced over SASL_SSL reaches an MQTT subscriber;
 *   - a wrong password: no PUBACK, the connection is closed once the record
 *     times out, /readyz says 503, nothing reaches Kafka, the gateway stays
 *     up, and no password is in its log;
 *   - the client settings docs/kafka-security.md shows (SCRAM-SHA-256/512,
 *     PLAIN, mTLS) connect; no client certificate, the wrong CA or no TLS
 *     at all is refused.
 * The gateway reads its password from a file ("@file:" property value).
 *
 * The mechanism: SCRAM-SHA-512 when this process's librdkafka (the gateway
 * loads the same one) is 2.6.1 or later. Older ones answer SCRAM with a
 * nonce that Kafka 4 refuses (librdkafka PR #4895; Debian 12 has 2.0.2): the
 * gateway then logs in with PLAIN over the same TLS listener, and the client
 * test checks that SCRAM is refused, as it must be. The choice is printed.
 *
 * The broker gets a private KAFKA_RUN_DIR (never the plain broker of the
 * other *_kafka tests) and is stopped by its PID file at the end, also after
 * a failed setup or on SIGINT/SIGTERM (then the run dir and its kafka.log
 * are left for a look). Without java or mvn every test is skipped with a
 * message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

enum { MESSAGES = 100, PROPS_MAX = 32 };
#define UP_TOPIC "sec-up"
#define BAD_TOPIC "sec-bad"
#define CMD_TOPIC "sec-cmd"

static struct gw g;
static struct itkafka_local kl;
static struct itkafka_secure sec;
static const char *mech;          /* the gateway's and the test clients' */
static const char *props[PROPS_MAX]; /* SASL_SSL with mech, for the test's clients */
static const char *const log_none[] = { "log_level", "0", NULL };

/* librdkafka 2.6.1 is the first whose SCRAM exchange Kafka 4 accepts. */
static bool scram_works(void)
{
	return rd_kafka_version() >= 0x020601ff;
}

#define SKIP_WITHOUT_KAFKA()                                      \
	do {                                                      \
		if (kl.skip_reason) {                             \
			print_message("%s\n", kl.skip_reason);    \
			skip();                                   \
		}                                                 \
	} while (0)

/* ---- stopping the broker whatever happens --------------------------------- */

static void stop_all(void)
{
	if (g.pid)
		gw_stop(&g);
	itkafka_local_stop(&kl);
}

/* fork and exec are async-signal-safe; the gateways die with this process
 * (gw.h: PR_SET_PDEATHSIG). */
static void on_signal(int sig)
{
	pid_t pid = kl.run_dir[0] ? fork() : -1;

	if (pid == 0) {
		execl("scripts/kafka-local", "kafka-local", "stop", (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	_exit(128 + sig);
}

/* ---- helpers -------------------------------------------------------------- */

/* Creates topic with one partition over SASL_SSL (before the gateway's
 * consumer subscribes to it). */
static int topic_create(const char *topic)
{
	char e[256];
	rd_kafka_t *rk = itkafka_client_new(sec.bootstrap, RD_KAFKA_PRODUCER, NULL, props);
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, 1, e, sizeof(e));
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	const rd_kafka_CreateTopics_result_t *res;
	int rc = -1;

	if (!rk || !nt) {
		fprintf(stderr, "create %s: %s\n", topic, rk ? e : "no client");
		goto out;
	}
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 20000);
	res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
	if (res) {
		size_t cnt;
		const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);

		rc = cnt == 1 && !rd_kafka_topic_result_error(tr[0]) ? 0 : -1;
		if (rc)
			fprintf(stderr, "create %s: %s\n", topic,
				cnt == 1 ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
	} else {
		fprintf(stderr, "create %s: %s\n", topic,
			ev ? rd_kafka_event_error_string(ev) : "no answer in 20 s");
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
out:
	if (nt)
		rd_kafka_NewTopic_destroy(nt);
	if (rk)
		rd_kafka_destroy(rk);
	return rc;
}

/* The gateway's config: kafka.properties for SASL_SSL with the password
 * read from password_file, uplink to topic, a metrics port, and the
 * downlink when asked. */
static void gateway_cfg(char *cfg, size_t cap, const char *password_file, const char *topic,
			int timeout_ms, int metrics_port, bool downlink)
{
	snprintf(cfg, cap,
		 "kafka = { brokers = \"%s\"; flush_timeout = 5;\n"
		 "  properties = (\n"
		 "    (\"security.protocol\", \"SASL_SSL\"),\n"
		 "    (\"sasl.mechanisms\", \"%s\"),\n"
		 "    (\"sasl.username\", \"%s\"),\n"
		 "    (\"sasl.password\", \"@file:%s\"),\n"
		 "    (\"ssl.ca.location\", \"%s\"),\n"
		 "    (\"message.timeout.ms\", %d),\n"
		 "    (\"session.timeout.ms\", 6000), (\"heartbeat.interval.ms\", 1000) ); };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "routes = ( { filter = \"sec/#\"; topic = \"%s\"; key = \"${clientid}\";"
		 " format = \"raw\"; } );\n"
		 "%s",
		 sec.bootstrap, mech, sec.username, password_file, sec.ca, timeout_ms, metrics_port,
		 topic,
		 downlink ? "downlink = ( { topic = \"" CMD_TOPIC "\"; group = \"it-sec\";\n"
			    "  mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n"
			  : "");
}

/* Polls GET path until it answers want or timeout_ms passes; returns the
 * last status and leaves the answer in *r. */
static int http_until(int port, const char *path, int want, struct itkafka_resp *r,
		      int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;
	int st;

	while ((st = itkafka_http_get(port, path, r, 2000)) != want && itutil_now_ms() < end)
		itutil_sleep_ms(200);
	return st;
}

/* rd_kafka_metadata() of a client with these properties: 0 when it
 * connected (TLS, and SASL when asked) and got an answer, else the error. */
static rd_kafka_resp_err_t try_metadata(const char *bootstrap, const char *const *p,
					int timeout_ms)
{
	rd_kafka_t *rk = itkafka_client_new(bootstrap, RD_KAFKA_PRODUCER, NULL, p);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;

	if (!rk)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
	return err;
}

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
	char cfg[4096];
	struct sigaction sa = { .sa_handler = on_signal };
	(void)state;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atexit(stop_all);
	if (itkafka_local_start_secure(&kl, &sec) < 0)
		return -1;
	if (kl.skip_reason)
		return 0;
	mech = scram_works() ? "SCRAM-SHA-512" : "PLAIN";
	printf("librdkafka %s: the gateway logs in with %s over TLS%s\n", rd_kafka_version_str(),
	       mech,
	       scram_works() ? ""
			     : " (SCRAM needs librdkafka >= 2.6.1 against Kafka 4: PR #4895)");
	if (itkafka_secure_props(&sec, mech, NULL, NULL, props, PROPS_MAX) < 0 ||
	    topic_create(CMD_TOPIC) < 0)
		return -1;
	g.metrics_port = gw_free_port();
	gateway_cfg(cfg, sizeof(cfg), sec.password_file, UP_TOPIC, 10000, g.metrics_port, true);
	return gw_start(&g, cfg);
}

static int group_teardown(void **state)
{
	(void)state;
	stop_all();
	return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_uplink_qos1_over_sasl_ssl(void **state)
{
	static struct itkafka_rec recs[MESSAGES];
	static struct itkafka_resp r;
	char p[32];
	(void)state;

	SKIP_WITHOUT_KAFKA();
	int fd = itutil_connect(g.port, "sec-pub", true, 60, NULL);
	assert_true(fd >= 0);
	long long t0 = itutil_now_ms();
	/* Pipelined: the PUBACKs come back in order (at most max_inflight wait). */
	for (int i = 0; i < MESSAGES; i++) {
		snprintf(p, sizeof(p), "sec-%d", i);
		assert_int_equal(itutil_send_publish(fd, "sec/dev1/data", p, strlen(p), 1, false,
						     (uint16_t)(i + 1)), 0);
	}
	for (int i = 0; i < MESSAGES; i++)
		if (itutil_expect_ack(fd, 0x40, (uint16_t)(i + 1), 20000) < 0)
			fail_msg("no PUBACK for message %d of %d", i + 1, MESSAGES);
	print_message("%d QoS 1 messages acknowledged over SASL_SSL/%s in %lld ms\n", MESSAGES,
		      mech, itutil_now_ms() - t0);
	close(fd);

	int n = itkafka_read_props(sec.bootstrap, props, UP_TOPIC, MESSAGES, 20000, recs);
	assert_int_equal(n, MESSAGES);
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "sec-%d", i);
		assert_non_null(recs[i].key);
		assert_string_equal(recs[i].key, "sec-pub");
		assert_string_equal(recs[i].val, p);
	}
	itkafka_recs_free(recs, n);

	assert_int_equal(http_until(g.metrics_port, "/readyz", 200, &r, 10000), 200);
}

static void test_downlink_over_sasl_ssl(void **state)
{
	struct itutil_pkt pkt;
	(void)state;

	SKIP_WITHOUT_KAFKA();
	int fd = itutil_connect(g.port, "sec-dev7", true, 60, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, "devices/dev7/commands", 1), 0);
	rd_kafka_t *rk = itkafka_client_new(sec.bootstrap, RD_KAFKA_PRODUCER, NULL, props);
	assert_non_null(rk);
	long long t0 = itutil_now_ms();
	assert_int_equal(itkafka_produce(rk, CMD_TOPIC, -1, "dev7", "open-valve", NULL), 0);
	assert_int_equal(rd_kafka_flush(rk, 15000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(rk);
	/* The gateway's consumer may still be joining its group. */
	assert_int_equal(itutil_recv_publish(fd, &pkt, 30000), 0);
	print_message("command delivered %lld ms after it was produced\n", itutil_now_ms() - t0);
	assert_string_equal(pkt.topic, "devices/dev7/commands");
	assert_string_equal(pkt.payload, "open-valve");
	assert_int_equal(pkt.qos, 1);
	assert_int_equal(itutil_ack_publish(fd, &pkt), 0);
	close(fd);
}

static void test_wrong_password_never_acknowledges(void **state)
{
	static struct itkafka_resp r;
	struct itkafka_rec rec;
	struct gw b = { 0 };
	char cfg[4096], wrong[300];
	FILE *f;
	(void)state;

	SKIP_WITHOUT_KAFKA();
	snprintf(wrong, sizeof(wrong), "%s/wrong.password", kl.run_dir);
	f = fopen(wrong, "w");
	assert_non_null(f);
	fprintf(f, "not-%s\n", sec.password);
	fclose(f);
	b.metrics_port = gw_free_port();
	/* Records give up after TIMEOUT_MS instead of 30 s. */
	enum { TIMEOUT_MS = 6000 };
	gateway_cfg(cfg, sizeof(cfg), wrong, BAD_TOPIC, TIMEOUT_MS, b.metrics_port, false);
	assert_int_equal(gw_start(&b, cfg), 0);

	int fd = itutil_connect(b.port, "sec-bad", true, 60, NULL);
	assert_true(fd >= 0);
	long long t0 = itutil_now_ms();
	assert_int_equal(itutil_send_publish(fd, "sec/dev2/data", "lost?", 5, 1, false, 1), 0);
	assert_true(gw_log_wait(&b, "Authentication failed", 5000));
	assert_int_equal(http_until(b.metrics_port, "/readyz", 503, &r, 5000), 503);
	print_message("/readyz: %s", r.body);
	long long left = t0 + 4000 - itutil_now_ms();
	if (!itutil_quiet(fd, left > 0 ? (int)left : 1))
		fail_msg("the gateway answered or closed within 4 s of a QoS 1 publish it "
			 "cannot deliver");
	/* Once librdkafka gives the record up: no PUBACK, the connection is
	 * closed so that the device sends it again (docs/uplink.md). */
	bool closed = itutil_closed_silently(fd, TIMEOUT_MS + 15000);
	long long took = itutil_now_ms() - t0;
	print_message("connection closed without PUBACK: %s, %lld ms after the publish\n",
		      closed ? "yes" : "no", took);
	assert_true(closed);
	assert_true(took >= TIMEOUT_MS - 100);
	close(fd);

	assert_int_equal(http_until(b.metrics_port, "/healthz", 200, &r, 2000), 200);
	assert_int_equal(itkafka_read_props(sec.bootstrap, props, BAD_TOPIC, 1, 3000, &rec), 0);
	/* Neither password is logged (the wrong one holds the right one). */
	assert_false(gw_log_contains(&b, sec.password));
	assert_false(gw_log_contains(&g, sec.password));
	assert_int_equal(gw_stop(&b), 0);
}

static void test_documented_client_settings(void **state)
{
	const char *p[PROPS_MAX];
	rd_kafka_resp_err_t err;
	(void)state;

	SKIP_WITHOUT_KAFKA();
	/* SASL_SSL with each mechanism the broker enables. */
	const char *mechs[] = { "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" };
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		bool scram = strncmp(mechs[i], "SCRAM", 5) == 0;

		assert_int_equal(itkafka_secure_props(&sec, mechs[i], NULL, log_none, p, PROPS_MAX), 0);
		err = try_metadata(sec.bootstrap, p, scram && !scram_works() ? 2500 : 10000);
		print_message("SASL_SSL %s: %s\n", mechs[i], rd_kafka_err2str(err));
		if (!scram || scram_works())
			assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
		else
			assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
	}

	/* mTLS: the SSL listener requires a certificate signed by the CA. */
	const char *mtls[] = { "security.protocol", "SSL", "ssl.ca.location", sec.ca,
			       "ssl.certificate.location", sec.mtls_cert,
			       "ssl.key.location", sec.mtls_key, "log_level", "0", NULL };
	err = try_metadata(sec.mtls_bootstrap, mtls, 10000);
	print_message("SSL with a client certificate: %s\n", rd_kafka_err2str(err));
	assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
	mtls[4] = NULL; /* no certificate */
	err = try_metadata(sec.mtls_bootstrap, mtls, 2500);
	print_message("SSL without a client certificate: %s\n", rd_kafka_err2str(err));
	assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);

	/* A CA that did not sign the broker's certificate (the client's own
	 * certificate stands in for one), and no TLS at all. */
	const char *other_ca[] = { "ssl.ca.location", sec.mtls_cert, "log_level", "0", NULL };
	assert_int_equal(itkafka_secure_props(&sec, "PLAIN", NULL, other_ca, p, PROPS_MAX), 0);
	err = try_metadata(sec.bootstrap, p, 2500);
	print_message("SASL_SSL, another CA: %s\n", rd_kafka_err2str(err));
	assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
	err = try_metadata(sec.bootstrap, log_none, 2500);
	print_message("PLAINTEXT to the SASL_SSL listener: %s\n", rd_kafka_err2str(err));
	assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uplink_qos1_over_sasl_ssl),
		cmocka_unit_test(test_downlink_over_sasl_ssl),
		cmocka_unit_test(test_wrong_password_never_acknowledges),
		cmocka_unit_test(test_documented_client_settings),
	};

	return cmocka_run_group_tests_name("it_kafka_secure", tests, group_setup, group_teardown);
}
