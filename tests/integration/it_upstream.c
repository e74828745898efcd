/*
 * it_upstream.c - bridging an existing MQTT broker: a real mosquitto, started
 * here on a free loopback port, is kafkagate's upstream; publishers (paho,
 * one thread each) publish QoS 1 to mosquitto; Kafka is librdkafka's mock
 * cluster hosted in this process (so the test can take it down and read it
 * back whatever happens to the gateway).
 *
 * Covered:
 *   - N QoS 1 messages from 20 publishers land once each per route, with
 *     ${clientid} = the upstream's name, the prefix applied, and local
 *     subscribers served;
 *   - the mock Kafka down for 5 s mid-stream: every message still arrives
 *     (mosquitto holds what kafkagate has not acknowledged);
 *   - mosquitto restarted mid-stream with persistence: kafkagate reconnects,
 *     resumes its session, nothing is missing;
 *   - TLS with a client certificate and user name/password to the upstream
 *     (${username} in the JSON envelope), and the failures a status shows:
 *     unknown CA, bad password; /readyz lists them without failing;
 *   - a downlink command reaches a device connected to mosquitto, and its
 *     offset is committed only once mosquitto acknowledged it (mosquitto
 *     SIGSTOPped in between);
 *   - QoS 2 from the upstream (PUBREC after Kafka, PUBREL, PUBCOMP): once,
 *     with the upstream named by a host name;
 *   - the gateway SIGKILLed mid-stream and restarted: nothing mosquitto
 *     accepted is missing from Kafka (duplicates counted).
 *
 * IT_UPSTREAM_N (default 2000) sets the messages per stream; the issue's
 * full size is IT_UPSTREAM_N=10000. IT_FILTER='*tls*' runs one test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itmosq.h"
#include "itutil.h"

#define WAIT_MS 20000
#define PUBLISHERS 20

static int N = 2000;          /* messages per stream (IT_UPSTREAM_N) */
static struct itkafka_mock K;
static struct itmosq M;
static struct gw G;
static char certs[256];       /* scripts/gen-test-certs.sh output */
static const char *up_address = "127.0.0.1"; /* plant-a's address in gw_up() */

static int group_setup(void **state)
{
	char cmd[600];
	(void)state;
	if (getenv("IT_UPSTREAM_N"))
		N = atoi(getenv("IT_UPSTREAM_N"));
	if (N < PUBLISHERS)
		N = PUBLISHERS;
	N -= N % PUBLISHERS;
	snprintf(certs, sizeof(certs), "%s/kg-it-upstream-certs", getenv("TMPDIR") ? getenv("TMPDIR")
										  : "/tmp");
	snprintf(cmd, sizeof(cmd), "scripts/gen-test-certs.sh %s", certs);
	return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	gw_stop(&G);
	itmosq_release(&M);
	itkafka_mock_release(&K);
	memset(&G, 0, sizeof(G));
	return 0;
}

/* ---- fixture ---------------------------------------------------------------- */

/* The mock cluster with topics up-a (key ${clientid}) and up-b (json). */
static void kafka_up(void)
{
	assert_int_equal(itkafka_mock_init(&K, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(K.mc, "up-a", 4, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(K.mc, "up-b", 2, 1), 0);
}

/* A gateway whose upstream "plant-a" is mosquitto's listener on port (0:
 * the plain one) with `upstream_extra` inside the upstream group and
 * `extra` after it. */
static void gw_up_port(int port, const char *upstream_extra, const char *extra)
{
	char cfg[8192];

	G.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; flush_timeout = 2; };\n"
		 "routes = ( { filter = \"site/plant/+/sensors/#\"; topic = \"up-a\"; key = \"${clientid}\"; },\n"
		 "           { filter = \"site/#\"; topic = \"up-b\"; format = \"json\"; } );\n"
		 "upstreams = ( { name = \"plant-a\"; address = \"%s\"; port = %d;\n"
		 "  reconnect_min_ms = 100; reconnect_max_ms = 1000; prefix = \"site/\";\n"
		 "  subscriptions = ( { filter = \"plant/+/sensors/#\"; qos = 1; },\n"
		 "                    { filter = \"alarms/#\"; qos = 2; } ); %s } );\n%s\n",
		 G.metrics_port, K.bootstrap, up_address, port ? port : M.port,
		 upstream_extra ? upstream_extra : "", extra ? extra : "");
	assert_int_equal(gw_start(&G, cfg), 0);
}

static void gw_up(const char *upstream_extra, const char *extra)
{
	gw_up_port(0, upstream_extra, extra);
}

/* Waits until upstream i says state (in /api/v1/status). */
static void wait_state(int i, const char *state)
{
	static struct itkafka_resp r;
	char got[64] = "?";
	long long end = itutil_now_ms() + WAIT_MS;

	do {
		if (itkafka_http_get(G.metrics_port, "/api/v1/status", &r, 5000) == 200) {
			json_t *j = json_loads(r.body, 0, NULL);
			json_t *u = json_array_get(json_object_get(j, "upstreams"), (size_t)i);
			snprintf(got, sizeof(got), "%s", json_string_value(json_object_get(u, "state"))
							 ? json_string_value(json_object_get(u, "state")) : "?");
			json_decref(j);
			if (strcmp(got, state) == 0)
				return;
		}
		itutil_sleep_ms(50);
	} while (itutil_now_ms() < end);
	fail_msg("upstream %d is %s, wanted %s", i, got, state);
}

/* upstreams[i].key of /api/v1/status as text (static). */
static const char *status_field(int i, const char *key)
{
	static struct itkafka_resp r;
	static char out[256];
	assert_int_equal(itkafka_http_get(G.metrics_port, "/api/v1/status", &r, 5000), 200);
	json_t *j = json_loads(r.body, 0, NULL);
	json_t *v = json_object_get(json_array_get(json_object_get(j, "upstreams"), (size_t)i), key);
	if (json_is_string(v))
		snprintf(out, sizeof(out), "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, sizeof(out), "%lld", (long long)json_integer_value(v));
	else
		snprintf(out, sizeof(out), "null");
	json_decref(j);
	return out;
}

/* ---- publishers ---------------------------------------------------------------- */

struct pub {
	pthread_t t;
	int id, from, count, pace_ms, port;
	const char *user, *password;
	atomic_int done;         /* messages mosquitto acknowledged */
	int retries;
	pthread_mutex_t mu;      /* delivered, lost: set by paho's thread */
	pthread_cond_t cv;
	MQTTClient_deliveryToken delivered;
	bool lost;
};

/* With callbacks set, paho reads on a thread of its own and
 * waitForCompletion() waits on it (the synchronous mode serialises all
 * clients on one select loop and is slow with 20 threads). */
static int pub_on_message(void *ctx, char *topic, int len, MQTTClient_message *m)
{
	(void)ctx, (void)len;
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

static void pub_on_lost(void *ctx, char *cause)
{
	struct pub *p = ctx;
	(void)cause;
	pthread_mutex_lock(&p->mu);
	p->lost = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* waitForCompletion() polls in 100 ms steps: the callback is prompt. */
static void pub_on_delivered(void *ctx, MQTTClient_deliveryToken dt)
{
	struct pub *p = ctx;
	pthread_mutex_lock(&p->mu);
	p->delivered = dt;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* True once mosquitto acknowledged dt, within 5 s, the connection alive.
 * The callback is the fast path; paho's own bookkeeping is asked too, in
 * case the acknowledgement came before the token was ours to wait for. */
static bool pub_wait(struct pub *p, MQTTClient cl, MQTTClient_deliveryToken dt)
{
	long long end = itutil_now_ms() + 5000;
	bool ok = false, lost = false;

	while (!ok && !lost && itutil_now_ms() < end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&p->mu);
		if (p->delivered != dt && !p->lost)
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		ok = p->delivered == dt;
		lost = p->lost;
		pthread_mutex_unlock(&p->mu);
		if (!ok && !lost)
			ok = MQTTClient_waitForCompletion(cl, dt, 1) == MQTTCLIENT_SUCCESS;
	}
	return ok;
}

static MQTTClient pub_connect(struct pub *p)
{
	char uri[64], id[32];
	MQTTClient cl;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;

	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", p->port);
	snprintf(id, sizeof(id), "pub-%d", p->id);
	if (MQTTClient_create(&cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTCLIENT_SUCCESS)
		return NULL;
	pthread_mutex_lock(&p->mu);
	p->lost = false;
	p->delivered = -1;
	pthread_mutex_unlock(&p->mu);
	if (MQTTClient_setCallbacks(cl, p, pub_on_lost, pub_on_message, pub_on_delivered) !=
	    MQTTCLIENT_SUCCESS) {
		MQTTClient_destroy(&cl);
		return NULL;
	}
	o.keepAliveInterval = 30;
	o.cleansession = 1;
	o.connectTimeout = 2;
	o.username = p->user;
	o.password = p->password;
	if (MQTTClient_connect(cl, &o) != MQTTCLIENT_SUCCESS) {
		MQTTClient_destroy(&cl);
		return NULL;
	}
	return cl;
}

/* Publishes {"p":<id>,"n":<n>} on plant/<id>/sensors/t, each until mosquitto
 * acknowledged it (reconnecting as often as needed, for 60 s at most). */
static void *pub_main(void *arg)
{
	struct pub *p = arg;
	MQTTClient cl = NULL;
	long long end = itutil_now_ms() + 60000;
	char topic[64], payload[32];

	snprintf(topic, sizeof(topic), "plant/%d/sensors/t", p->id);
	for (int n = p->from; n < p->from + p->count && itutil_now_ms() < end;) {
		if (!cl && !(cl = pub_connect(p))) {
			p->retries++;
			itutil_sleep_ms(100);
			continue;
		}
		MQTTClient_message m = MQTTClient_message_initializer;
		MQTTClient_deliveryToken dt;
		int len = snprintf(payload, sizeof(payload), "{\"p\":%d,\"n\":%d}", p->id, n);
		m.payload = payload;
		m.payloadlen = len;
		m.qos = 1;
		int rc = MQTTClient_publishMessage(cl, topic, &m, &dt);
		if (rc != MQTTCLIENT_SUCCESS || !pub_wait(p, cl, dt)) {
			fprintf(stderr, "publisher %d: message %d: %s\n", p->id, n,
				rc != MQTTCLIENT_SUCCESS ? MQTTClient_strerror(rc)
							 : p->lost ? "connection lost" : "no PUBACK in 5 s");
			MQTTClient_disconnect(cl, 0);
			MQTTClient_destroy(&cl);
			cl = NULL;
			p->retries++;
			continue; /* the same message again: a duplicate at worst */
		}
		atomic_fetch_add(&p->done, 1);
		n++;
		if (p->pace_ms)
			itutil_sleep_ms(p->pace_ms);
	}
	if (cl) {
		MQTTClient_disconnect(cl, 1000);
		MQTTClient_destroy(&cl);
	}
	return NULL;
}

static struct pub pubs[PUBLISHERS];
static int pub_retries;       /* resends by the publishers in the last stream */

/* Starts PUBLISHERS threads sending N messages in all, paced so that the
 * stream lasts about stream_ms (0: as fast as they go). */
static void pubs_start(int port, int stream_ms, const char *user, const char *password)
{
	int per = N / PUBLISHERS;
	for (int i = 0; i < PUBLISHERS; i++) {
		pubs[i] = (struct pub){ .id = i, .from = 0, .count = per, .port = port,
					.pace_ms = stream_ms / per, .user = user, .password = password };
		atomic_init(&pubs[i].done, 0);
		pthread_mutex_init(&pubs[i].mu, NULL);
		pthread_cond_init(&pubs[i].cv, NULL);
		assert_int_equal(pthread_create(&pubs[i].t, NULL, pub_main, &pubs[i]), 0);
	}
}

/* Joins them; every message was acknowledged by mosquitto. */
static void pubs_join(void)
{
	int retries = 0;
	for (int i = 0; i < PUBLISHERS; i++) {
		pthread_join(pubs[i].t, NULL);
		retries += pubs[i].retries;
		if (atomic_load(&pubs[i].done) != pubs[i].count)
			fail_msg("publisher %d: %d of %d acknowledged by mosquitto", i,
				 atomic_load(&pubs[i].done), pubs[i].count);
	}
	pub_retries = retries;
	print_message("publishers: %d messages acknowledged by mosquitto, %d retries\n", N, retries);
}

/* Messages acknowledged by mosquitto so far. */
static int pubs_done(void)
{
	int n = 0;
	for (int i = 0; i < PUBLISHERS; i++)
		n += atomic_load(&pubs[i].done);
	return n;
}

static void wait_done(int at_least)
{
	long long end = itutil_now_ms() + WAIT_MS;
	while (pubs_done() < at_least && itutil_now_ms() < end)
		itutil_sleep_ms(10);
	assert_true(pubs_done() >= at_least);
}

/* ---- reading Kafka back -------------------------------------------------------- */

/* Reads every record of topic once at least `want` are there; checks that
 * each of the N messages is present, and that there are no duplicates
 * unless dups_ok. Returns the duplicates. Checks the key when key is set. */
static int check_topic(const char *topic, bool dups_ok, const char *key)
{
	long long end = itutil_now_ms() + 60000;
	long n = 0;
	while ((n = itkafka_count(K.bootstrap, topic, 5000)) < N && itutil_now_ms() < end)
		itutil_sleep_ms(200);
	if (n < N)
		fail_msg("%s: %ld records, want at least %d", topic, n, N);
	itutil_sleep_ms(300); /* stragglers: duplicates still in flight */
	n = itkafka_count(K.bootstrap, topic, 5000);
	struct itkafka_rec *r = calloc((size_t)n, sizeof(*r));
	unsigned char *seen = calloc((size_t)N, 1);
	assert_non_null(r);
	assert_non_null(seen);
	int got = itkafka_read(K.bootstrap, topic, (int)n, WAIT_MS, r);
	assert_int_equal(got, n);
	int dups = 0, per = N / PUBLISHERS;
	for (int i = 0; i < got; i++) {
		const char *v = r[i].val, *pl = strstr(v, "{\"p\":");
		int p = -1, k = -1;
		/* raw: the payload; json: the envelope with it inlined */
		if (pl)
			sscanf(pl, "{\"p\":%d,\"n\":%d}", &p, &k);
		if (p < 0 || p >= PUBLISHERS || k < 0 || k >= per)
			fail_msg("%s: unexpected record '%.*s'", topic, (int)r[i].vlen, v);
		if (key && (!r[i].key || strcmp(r[i].key, key) != 0))
			fail_msg("%s: key '%s', want '%s'", topic, r[i].key ? r[i].key : "(none)", key);
		if (seen[p * per + k]++)
			dups++;
	}
	int missing = 0;
	for (int i = 0; i < N; i++)
		missing += !seen[i];
	print_message("%s: %d records, %d distinct of %d, %d duplicates, %d missing\n", topic, got,
		      N - missing, N, dups, missing);
	itkafka_recs_free(r, got);
	free(r);
	free(seen);
	assert_int_equal(missing, 0);
	if (!dups_ok)
		assert_int_equal(dups, 0);
	return dups;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_exactly_once_per_route(void **state)
{
	struct itutil_pkt pk;
	(void)state;

	kafka_up();
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	gw_up(NULL, NULL);
	wait_state(0, "up");
	/* A local subscriber sees the upstream's messages under the prefix. */
	int sub = itutil_connect(G.port, "local-sub", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "site/plant/0/#", 0), 0);

	pubs_start(M.port, 0, NULL, NULL);
	pubs_join();
	/* Once each, but for what a publisher itself sent twice (a resend
	 * after its own timeout reaches mosquitto as a second message). */
	assert_true(check_topic("up-a", pub_retries > 0, "plant-a") <= pub_retries);
	assert_true(check_topic("up-b", pub_retries > 0, NULL) <= pub_retries);
	assert_int_equal(itutil_recv_publish(sub, &pk, WAIT_MS), 0);
	assert_string_equal(pk.topic, "site/plant/0/sensors/t");
	assert_string_equal(pk.payload, "{\"p\":0,\"n\":0}");
	close(sub);

	/* The JSON envelope carries the upstream's name as clientid. */
	struct itkafka_rec r[1];
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(K.bootstrap, "up-b", 1, WAIT_MS, r), 1);
	assert_non_null(strstr(r[0].val, "\"topic\":\"site/plant/"));
	assert_non_null(strstr(r[0].val, "\"clientid\":\"plant-a\",\"username\":null"));
	itkafka_recs_free(r, 1);
	assert_int_equal(atoll(status_field(0, "messages_in")) >= N, 1);
	assert_string_equal(status_field(0, "last_error"), "null");
}

static void test_kafka_down_5s(void **state)
{
	(void)state;

	kafka_up();
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	gw_up(NULL, NULL);
	wait_state(0, "up");
	pubs_start(M.port, 8000, NULL, NULL); /* still publishing when Kafka returns */
	wait_done(N / 4);
	print_message("kafka down after %d messages\n", pubs_done());
	rd_kafka_mock_broker_set_down(K.mc, 1);
	itutil_sleep_ms(5000);
	rd_kafka_mock_broker_set_up(K.mc, 1);
	print_message("kafka up after %d messages\n", pubs_done());
	pubs_join();
	int d = check_topic("up-a", true, "plant-a");
	d += check_topic("up-b", true, NULL);
	print_message("duplicates after the outage: %d\n", d);
}

static void test_mosquitto_restart(void **state)
{
	(void)state;

	kafka_up();
	assert_int_equal(itmosq_start(&M, true, NULL), 0);
	gw_up(NULL, NULL);
	wait_state(0, "up");
	pubs_start(M.port, 4000, NULL, NULL);
	wait_done(N / 3);
	assert_int_equal(itmosq_restart(&M), 0);
	print_message("mosquitto restarted after %d messages\n", pubs_done());
	pubs_join();
	wait_state(0, "up");
	check_topic("up-a", true, "plant-a");
	check_topic("up-b", true, NULL);
	/* It came back on the session it had: mosquitto kept it. */
	assert_true(gw_log_contains(&G, "upstream up name=plant-a address=127.0.0.1"));
	assert_true(gw_log_contains(&G, "session_present=1"));
	assert_true(atoll(status_field(0, "reconnects")) >= 1);
}

static void test_tls_password_and_failures(void **state)
{
	char up[3072], pwfile[300], badpw[300];
	static struct itkafka_resp r;
	(void)state;

	kafka_up();
	/* mosquitto's directory first (for its password file), then its config:
	 * the plain listener serves the publishers; the TLS one wants a client
	 * certificate; everyone needs a password. */
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	itmosq_stop(&M);
	assert_int_equal(itmosq_passwd(&M, "passwd", "bridge", "s3cret"), 0);
	assert_int_equal(itmosq_passwd(&M, "passwd", "pub", "pubpw"), 0);
	int tls_port = gw_free_port();
	FILE *f = fopen(M.conf, "a");
	assert_non_null(f);
	fprintf(f, "allow_anonymous false\npassword_file %s/passwd\n"
		   "listener %d 127.0.0.1\ncafile %s/ca.crt\ncertfile %s/server.crt\n"
		   "keyfile %s/server.key\nrequire_certificate true\n",
		M.dir, tls_port, certs, certs, certs);
	fclose(f);
	assert_int_equal(itmosq_restart(&M), 0);
	snprintf(pwfile, sizeof(pwfile), "%s/bridge.secret", M.dir);
	snprintf(badpw, sizeof(badpw), "%s/bad.secret", M.dir);
	assert_non_null(f = fopen(pwfile, "w"));
	fputs("s3cret\n", f);
	fclose(f);
	assert_non_null(f = fopen(badpw, "w"));
	fputs("wrong\n", f);
	fclose(f);

	/* plant-a: TLS with a client certificate and a password; then two
	 * that cannot connect: a CA that did not sign the server's
	 * certificate, and a wrong password. */
	snprintf(up, sizeof(up),
		 "username = \"bridge\"; password_file = \"%s\";\n"
		 "  tls = { ca = \"%s/ca.crt\"; cert = \"%s/client.crt\"; key = \"%s/client.key\"; }; },\n"
		 " { name = \"badca\"; address = \"127.0.0.1\"; port = %d;\n"
		 "  reconnect_min_ms = 100; reconnect_max_ms = 1000; username = \"bridge\";\n"
		 "  password_file = \"%s\"; tls = { ca = \"%s/other-ca.crt\"; cert = \"%s/client.crt\";\n"
		 "  key = \"%s/client.key\"; }; subscriptions = ( { filter = \"x\"; } ); },\n"
		 " { name = \"badpw\"; address = \"127.0.0.1\"; port = %d; username = \"bridge\";\n"
		 "  reconnect_min_ms = 100; reconnect_max_ms = 1000; password_file = \"%s\";\n"
		 "  subscriptions = ( { filter = \"x\"; } );",
		 pwfile, certs, certs, certs, tls_port, pwfile, certs, certs, certs, M.port, badpw);
	gw_up_port(tls_port, up, NULL);
	wait_state(0, "up");

	/* One message through it: ${username} is the bridge's. */
	struct pub p = { .id = 3, .count = 1, .port = M.port, .user = "pub", .password = "pubpw" };
	atomic_init(&p.done, 0);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	pub_main(&p);
	assert_int_equal(atomic_load(&p.done), 1);
	struct itkafka_rec rec[1];
	memset(rec, 0, sizeof(rec));
	assert_int_equal(itkafka_read(K.bootstrap, "up-b", 1, WAIT_MS, rec), 1);
	assert_non_null(strstr(rec[0].val, "\"clientid\":\"plant-a\",\"username\":\"bridge\""));
	assert_non_null(strstr(rec[0].val, "\"topic\":\"site/plant/3/sensors/t\""));
	itkafka_recs_free(rec, 1);

	/* The other two say why they are down. */
	long long end = itutil_now_ms() + WAIT_MS;
	while (itutil_now_ms() < end && (!strstr(status_field(1, "last_error"), "certificate") ||
					 !strstr(status_field(2, "last_error"), "CONNACK")))
		itutil_sleep_ms(100);
	print_message("badca: %s\n", status_field(1, "last_error"));
	assert_non_null(strstr(status_field(1, "last_error"), "server certificate rejected"));
	print_message("badpw: %s\n", status_field(2, "last_error"));
	assert_non_null(strstr(status_field(2, "last_error"), "refused by the upstream: CONNACK"));
	assert_string_not_equal(status_field(1, "state"), "up");
	assert_string_not_equal(status_field(2, "state"), "up");

	/* /readyz lists them, and stays ready: they are not required. */
	assert_int_equal(itkafka_http_get(G.metrics_port, "/readyz", &r, 5000), 200);
	print_message("/readyz: %s", r.body);
	assert_int_equal(strncmp(r.body, "ready\n", 6), 0);
	assert_non_null(strstr(r.body, "upstream badca "));
	assert_non_null(strstr(r.body, "upstream badpw "));
	assert_null(strstr(r.body, "upstream plant-a"));
	assert_int_equal(itkafka_http_get(G.metrics_port, "/metrics", &r, 5000), 200);
	assert_true(itkafka_metric(r.body, "kafkagate_upstream_connected{upstream=\"plant-a\"}") == 1);
	assert_true(itkafka_metric(r.body, "kafkagate_upstream_connected{upstream=\"badpw\"}") == 0);
	assert_true(itkafka_metric(r.body, "kafkagate_upstream_reconnects_total{upstream=\"badpw\"}") >= 1);
	assert_true(itkafka_metric(r.body,
				   "kafkagate_upstream_messages_received_total{upstream=\"plant-a\"}") >= 1);
}

/* ---- downlink to a device on the upstream ------------------------------------ */

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

static void wait_committed(const char *group, const char *topic, int64_t want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	int64_t got = -1;
	while (itutil_now_ms() < end && (got = committed(group, topic, 0)) != want)
		itutil_sleep_ms(100);
	if (got != want)
		fail_msg("%s: committed %lld, want %lld", topic, (long long)got, (long long)want);
}

static bool dev_recv(MQTTClient cl, int timeout_ms, char *payload, size_t len)
{
	char *t = NULL;
	int tl = 0;
	MQTTClient_message *m = NULL;
	if (MQTTClient_receive(cl, &t, &tl, &m, (unsigned long)timeout_ms) != MQTTCLIENT_SUCCESS || !m)
		return false;
	snprintf(payload, len, "%.*s", m->payloadlen, (const char *)m->payload);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(t);
	return true;
}

static void test_downlink_to_upstream_device(void **state)
{
	char uri[64], got[64], dl[512];
	MQTTClient dev;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	(void)state;

	kafka_up();
	assert_int_equal(rd_kafka_mock_topic_create(K.mc, "up-cmd", 1, 1), 0);
	rd_kafka_t *prod = itkafka_client_new(K.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	assert_non_null(prod);
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	snprintf(dl, sizeof(dl),
		 "downlink = ( { topic = \"up-cmd\"; group = \"it-up-dl\"; qos = 1;\n"
		 "  mqtt_topic = \"devices/${key}/cmd\"; target = \"upstream:plant-a\"; } );\n");
	gw_up(NULL, dl);
	wait_state(0, "up");

	/* The device is mosquitto's; a local subscriber on kafkagate must not
	 * get the command: the mapping targets the upstream. */
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", M.port);
	assert_int_equal(MQTTClient_create(&dev, uri, "dev-d1", MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	o.cleansession = 1;
	assert_int_equal(MQTTClient_connect(dev, &o), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_subscribe(dev, "devices/d1/cmd", 1), MQTTCLIENT_SUCCESS);
	int local = itutil_connect(G.port, "local-watch", true, 0, NULL);
	assert_true(local >= 0);
	assert_int_equal(itutil_subscribe(local, 1, "devices/#", 1), 0);

	assert_int_equal(itkafka_produce(prod, "up-cmd", 0, "d1", "open-valve", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), 0);
	assert_true(dev_recv(dev, WAIT_MS, got, sizeof(got)));
	assert_string_equal(got, "open-valve");
	wait_committed("it-up-dl", "up-cmd", 1);
	assert_true(itutil_quiet(local, 300));

	/* mosquitto frozen: the command is written to it, never acknowledged,
	 * and the offset stays where it was. */
	itmosq_signal(&M, SIGSTOP);
	assert_int_equal(itkafka_produce(prod, "up-cmd", 0, "d1", "close-valve", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), 0);
	itutil_sleep_ms(2500); /* several commit rounds */
	assert_int_equal(committed("it-up-dl", "up-cmd", 0), 1);
	itmosq_signal(&M, SIGCONT);
	assert_true(dev_recv(dev, WAIT_MS, got, sizeof(got)));
	assert_string_equal(got, "close-valve");
	wait_committed("it-up-dl", "up-cmd", 2);
	assert_true(atoll(status_field(0, "commands_acknowledged")) == 2);

	/* While mosquitto is gone the command waits in the upstream's session,
	 * uncommitted, and goes out after the reconnect. */
	itmosq_stop(&M);
	wait_state(0, "down");
	assert_int_equal(itkafka_produce(prod, "up-cmd", 0, "d1", "later", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), 0);
	itutil_sleep_ms(1500);
	assert_int_equal(committed("it-up-dl", "up-cmd", 0), 2);
	assert_int_equal(atoll(status_field(0, "commands_queued")), 1);
	MQTTClient_destroy(&dev);
	assert_int_equal(itmosq_restart(&M), 0);
	assert_int_equal(MQTTClient_create(&dev, uri, "dev-d1b", MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_connect(dev, &o), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_subscribe(dev, "devices/d1/cmd", 1), MQTTCLIENT_SUCCESS);
	wait_committed("it-up-dl", "up-cmd", 3);
	MQTTClient_disconnect(dev, 500);
	MQTTClient_destroy(&dev);
	close(local);
	rd_kafka_destroy(prod);
}

/* QoS 2 from the upstream: PUBREC after Kafka, PUBREL, PUBCOMP; once in Kafka. */
static void test_qos2_from_upstream(void **state)
{
	char uri[64], payload[32];
	MQTTClient cl;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	enum { Q2 = 20 };
	(void)state;

	kafka_up();
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	/* A host name this time: resolved with getaddrinfo_a(), and where it
	 * also yields ::1, mosquitto (127.0.0.1 only) refuses that one first. */
	up_address = "localhost";
	gw_up(NULL, NULL);
	up_address = "127.0.0.1";
	wait_state(0, "up");
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", M.port);
	assert_int_equal(MQTTClient_create(&cl, uri, "pub-q2", MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_connect(cl, &o), MQTTCLIENT_SUCCESS);
	for (int i = 0; i < Q2; i++) {
		MQTTClient_message m = MQTTClient_message_initializer;
		MQTTClient_deliveryToken dt;
		m.payloadlen = snprintf(payload, sizeof(payload), "alarm-%d", i);
		m.payload = payload;
		m.qos = 2;
		assert_int_equal(MQTTClient_publishMessage(cl, "alarms/boiler", &m, &dt),
				 MQTTCLIENT_SUCCESS);
		assert_int_equal(MQTTClient_waitForCompletion(cl, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
	}
	MQTTClient_disconnect(cl, 500);
	MQTTClient_destroy(&cl);
	long long end = itutil_now_ms() + WAIT_MS;
	while (itkafka_count(K.bootstrap, "up-b", 5000) < Q2 && itutil_now_ms() < end)
		itutil_sleep_ms(100);
	itutil_sleep_ms(500);
	assert_int_equal(itkafka_count(K.bootstrap, "up-b", 5000), Q2);
	struct itkafka_rec r[Q2];
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(K.bootstrap, "up-b", Q2, WAIT_MS, r), Q2);
	for (int i = 0; i < Q2; i++) {
		assert_non_null(strstr(r[i].val, "\"topic\":\"site/alarms/boiler\""));
		assert_non_null(strstr(r[i].val, "\"qos\":2"));
	}
	itkafka_recs_free(r, Q2);
	/* The whole flow ran: PUBREL came back for every PUBREC. */
	assert_true(gw_log_contains(&G, "upstream subscribed name=plant-a filters=2 refused=0"));
}

static void test_gateway_sigkill(void **state)
{
	(void)state;

	kafka_up();
	assert_int_equal(itmosq_start(&M, false, NULL), 0);
	gw_up(NULL, NULL);
	wait_state(0, "up");
	pubs_start(M.port, 4000, NULL, NULL);
	wait_done(N / 3);
	gw_kill(&G, SIGKILL);
	print_message("gateway killed after %d messages\n", pubs_done());
	itutil_sleep_ms(500);
	assert_int_equal(gw_restart(&G), 0);
	pubs_join();
	int d = check_topic("up-a", true, "plant-a");
	d += check_topic("up-b", true, NULL);
	print_message("duplicates after the crash: %d\n", d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_exactly_once_per_route, teardown),
		cmocka_unit_test_teardown(test_kafka_down_5s, teardown),
		cmocka_unit_test_teardown(test_mosquitto_restart, teardown),
		cmocka_unit_test_teardown(test_tls_password_and_failures, teardown),
		cmocka_unit_test_teardown(test_downlink_to_upstream_device, teardown),
		cmocka_unit_test_teardown(test_qos2_from_upstream, teardown),
		cmocka_unit_test_teardown(test_gateway_sigkill, teardown),
	};
	if (getenv("IT_FILTER"))
		cmocka_set_test_filter(getenv("IT_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
