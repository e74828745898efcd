/*
 * it_uplink_kafka.c - the uplink against a real Apache Kafka broker
 * (scripts/kafka-local): 10,000 QoS 1 messages from 20 paho clients arrive
 * exactly as sent; then the same while the broker is stopped and started
 * again a third of the way through: every message that got a PUBACK is in
 * Kafka. Clients behave as devices do: a publish that fails or is not
 * acknowledged makes them reconnect and send it again; the test prints how
 * many records that duplicated. The gateway's message.timeout.ms (2 s) is
 * shorter than the outage, so that the records in flight during it fail and
 * that path (no PUBACK, connection closed, device resends) is exercised.
 *
 * Then acknowledgements resume quickly after a broker restart: one device
 * publishing QoS 1 one message at a time through a gateway with the default
 * producer settings gets its first PUBACK within RESUME_MS of
 * `scripts/kafka-local restart` returning (the broker serves metadata
 * again). With librdkafka's reconnect backoff (up to 10 s) that took 3-8 s;
 * kafkagate's reconnect.backoff.max.ms of 1 s makes it well under a second
 * (bench/recovery.sh measures it at full size; the test allows a loaded
 * machine twice that).
 *
 * The broker gets a private KAFKA_RUN_DIR, so a broker another suite runs
 * is left alone, and is stopped at the end. Without java or mvn every test
 * is skipped with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

enum { CLIENTS = 20, PER_CLIENT = 500, TOTAL = CLIENTS * PER_CLIENT, PAYLOAD = 100 };
#define PUBLISH_DEADLINE_MS 90000
#define RESUME_MS 2000

static struct gw g;
static struct itkafka_local kl;

static int group_setup(void **state)
{
	char cfg[1024];
	(void)state;

	if (itkafka_local_start(&kl) < 0)
		return -1;
	if (kl.skip_reason)
		return 0;
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5;\n"
		 "  properties = ( (\"message.timeout.ms\", 2000) ); };\n"
		 "routes = ( { filter = \"kt/+/#\"; topic = \"kt-${topic[1]}\";"
		 " key = \"${clientid}\"; format = \"raw\"; } );\n",
		 kl.bootstrap);
	return gw_start(&g, cfg);
}

static int group_teardown(void **state)
{
	(void)state;
	if (!kl.skip_reason)
		gw_stop(&g);
	itkafka_local_stop(&kl);
	return 0;
}

/* ---- publishers: paho clients acting like devices ----------------------- */

/*
 * With callbacks set, paho's own thread reads every client's socket and
 * reports each PUBACK through deliveryComplete; MQTTClient_waitForCompletion
 * would only notice it at its next 100 ms poll, so each publisher waits on
 * its own condition variable for the delivery token instead.
 */
struct publisher {
	pthread_t th;
	const char *scenario;         /* MQTT topic level 1 = Kafka topic suffix */
	char id[32];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	MQTTClient_deliveryToken done; /* last token acknowledged */
	bool lost;                     /* connection lost */
	bool acked[PER_CLIENT];
	int attempts, reconnects;
	char err[160];
};

static atomic_int acked_total;

static void payload_of(const char *id, int seq, char *p)
{
	int n = snprintf(p, PAYLOAD + 1, "%s:%d:", id, seq);

	for (int i = n; i < PAYLOAD; i++)
		p[i] = (char)('a' + (seq + i) % 26);
	p[PAYLOAD] = '\0';
}

static void on_lost(void *ctx, char *cause)
{
	struct publisher *pb = ctx;
	(void)cause;

	pthread_mutex_lock(&pb->mu);
	pb->lost = true;
	pthread_cond_signal(&pb->cv);
	pthread_mutex_unlock(&pb->mu);
}

static int on_message(void *ctx, char *topic, int len, MQTTClient_message *m)
{
	(void)ctx;
	(void)len;
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

static void on_delivered(void *ctx, MQTTClient_deliveryToken dt)
{
	struct publisher *pb = ctx;

	pthread_mutex_lock(&pb->mu);
	pb->done = dt;
	pthread_cond_signal(&pb->cv);
	pthread_mutex_unlock(&pb->mu);
}

/* Waits for dt's PUBACK. Returns 0, or -1 on a lost connection or after
 * timeout_ms. */
static int wait_delivered(struct publisher *pb, MQTTClient_deliveryToken dt, int timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	pthread_mutex_lock(&pb->mu);
	while (pb->done != dt && !pb->lost && rc == 0)
		rc = pthread_cond_timedwait(&pb->cv, &pb->mu, &ts);
	rc = pb->done == dt ? 0 : -1;
	pthread_mutex_unlock(&pb->mu);
	return rc;
}

static bool connect_until(struct publisher *pb, MQTTClient *cl, long long deadline)
{
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	char uri[64];
	int rc = 0;

	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	o.keepAliveInterval = 60;
	o.cleansession = 1;
	o.connectTimeout = 5;
	while (itutil_now_ms() < deadline) {
		pthread_mutex_lock(&pb->mu);
		pb->done = 0;
		pb->lost = false;
		pthread_mutex_unlock(&pb->mu);
		rc = MQTTClient_create(cl, uri, pb->id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
		if (rc == MQTTCLIENT_SUCCESS) {
			rc = MQTTClient_setCallbacks(*cl, pb, on_lost, on_message, on_delivered);
			if (rc == MQTTCLIENT_SUCCESS && (rc = MQTTClient_connect(*cl, &o)) == 0)
				return true;
			MQTTClient_destroy(cl);
		}
		itutil_sleep_ms(200);
	}
	snprintf(pb->err, sizeof(pb->err), "%s: cannot connect (rc %d)", pb->id, rc);
	return false;
}

static void *publisher_main(void *arg)
{
	struct publisher *pb = arg;
	long long deadline = itutil_now_ms() + PUBLISH_DEADLINE_MS;
	char topic[64], p[PAYLOAD + 1];
	MQTTClient cl;

	snprintf(topic, sizeof(topic), "kt/%s/%s", pb->scenario, pb->id);
	if (!connect_until(pb, &cl, deadline))
		return NULL;
	for (int seq = 0; seq < PER_CLIENT; seq++) {
		payload_of(pb->id, seq, p);
		for (;;) {
			MQTTClient_message m = MQTTClient_message_initializer;
			MQTTClient_deliveryToken dt = 0;
			int rc;

			m.payload = p;
			m.payloadlen = PAYLOAD;
			m.qos = 1;
			pb->attempts++;
			rc = MQTTClient_publishMessage(cl, topic, &m, &dt);
			if (rc == MQTTCLIENT_SUCCESS)
				rc = wait_delivered(pb, dt, 40000);
			if (rc == MQTTCLIENT_SUCCESS) {
				pb->acked[seq] = true;
				atomic_fetch_add(&acked_total, 1);
				break;
			}
			/* Not acknowledged: a device reconnects and sends it again. */
			MQTTClient_disconnect(cl, 0);
			MQTTClient_destroy(&cl);
			pb->reconnects++;
			if (!connect_until(pb, &cl, deadline)) {
				snprintf(pb->err + strlen(pb->err), sizeof(pb->err) - strlen(pb->err),
					 "; message %d not acknowledged (rc %d)", seq, rc);
				return NULL;
			}
		}
	}
	MQTTClient_disconnect(cl, 1000);
	MQTTClient_destroy(&cl);
	return NULL;
}

/* ---- reading Kafka ---------------------------------------------------------- */

struct tally {
	int seen[CLIENTS][PER_CLIENT];
	long records, bad, out_of_order;
	char first_bad[160];
};

/* Reads every record of topic (its watermarks say how many) into t. */
static void read_all(const char *topic, struct tally *t, int timeout_ms)
{
	long total = itkafka_count(kl.bootstrap, topic, 10000);
	struct itkafka_rec *recs;
	char want[PAYLOAD + 1];
	int last[CLIENTS], n;

	assert_true(total >= 0); /* the topic exists */
	recs = calloc((size_t)total + 1, sizeof(*recs));
	assert_non_null(recs);
	n = itkafka_read(kl.bootstrap, topic, (int)total, timeout_ms, recs);
	assert_true(n >= 0);
	for (int c = 0; c < CLIENTS; c++)
		last[c] = -1;
	for (int i = 0; i < n; i++) {
		const struct itkafka_rec *m = &recs[i];
		int c = -1, seq = -1;

		t->records++;
		if (m->key && sscanf(m->val, "it-ukc%d:%d:", &c, &seq) == 2 &&
		    c >= 0 && c < CLIENTS && seq >= 0 && seq < PER_CLIENT) {
			char id[32];

			snprintf(id, sizeof(id), "it-ukc%d", c);
			payload_of(id, seq, want);
			if (m->klen != strlen(id) || memcmp(m->key, id, m->klen) != 0 ||
			    m->vlen != PAYLOAD || memcmp(m->val, want, PAYLOAD) != 0)
				c = -1;
		} else {
			c = -1;
		}
		if (c < 0) {
			if (!t->bad++)
				snprintf(t->first_bad, sizeof(t->first_bad), "key '%s' value '%.*s'",
					 m->key ? m->key : "", (int)(m->vlen < 60 ? m->vlen : 60), m->val);
		} else {
			/* One partition per key: a client's records in its order. */
			if (seq <= last[c])
				t->out_of_order++;
			last[c] = seq;
			t->seen[c][seq]++;
		}
	}
	itkafka_recs_free(recs, n);
	free(recs);
	print_message("%s: %ld records by the watermarks, %ld read\n", topic, total, t->records);
	assert_int_equal(t->records, total);
}

static struct publisher *run_publishers(const char *scenario)
{
	struct publisher *pbs = calloc(CLIENTS, sizeof(*pbs));

	assert_non_null(pbs);
	atomic_store(&acked_total, 0);
	for (int i = 0; i < CLIENTS; i++) {
		pthread_mutex_init(&pbs[i].mu, NULL);
		pthread_cond_init(&pbs[i].cv, NULL);
		pbs[i].scenario = scenario;
		snprintf(pbs[i].id, sizeof(pbs[i].id), "it-ukc%d", i);
		assert_int_equal(pthread_create(&pbs[i].th, NULL, publisher_main, &pbs[i]), 0);
	}
	return pbs;
}

static void join_publishers(struct publisher *pbs, int *attempts, int *reconnects)
{
	*attempts = *reconnects = 0;
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(pbs[i].th, NULL);
		*attempts += pbs[i].attempts;
		*reconnects += pbs[i].reconnects;
	}
	for (int i = 0; i < CLIENTS; i++)
		if (pbs[i].err[0])
			fail_msg("%s", pbs[i].err);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_exactly_as_sent(void **state)
{
	struct tally *t = calloc(1, sizeof(*t));
	int attempts, reconnects;
	(void)state;

	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	assert_non_null(t);
	long long t0 = itutil_now_ms();
	struct publisher *pbs = run_publishers("exact");
	join_publishers(pbs, &attempts, &reconnects);
	print_message("%d QoS 1 messages acknowledged in %lld ms (%d attempts)\n", TOTAL,
		      itutil_now_ms() - t0, attempts);
	assert_int_equal(reconnects, 0);
	assert_int_equal(atomic_load(&acked_total), TOTAL);

	read_all("kt-exact", t, 30000);
	if (t->bad)
		fail_msg("%ld records not as sent, first: %s", t->bad, t->first_bad);
	assert_int_equal(t->records, TOTAL);
	assert_int_equal(t->out_of_order, 0);
	for (int c = 0; c < CLIENTS; c++)
		for (int s = 0; s < PER_CLIENT; s++)
			if (t->seen[c][s] != 1)
				fail_msg("it-ukc%d:%d is in Kafka %d times", c, s, t->seen[c][s]);
	free(pbs);
	free(t);
}

struct restarter {
	int rc;
	long long at_ms, took_ms;
	int acked_at_start;
};

static void *restart_main(void *arg)
{
	struct restarter *r = arg;
	long long deadline = itutil_now_ms() + PUBLISH_DEADLINE_MS;

	while (atomic_load(&acked_total) < TOTAL / 3 && itutil_now_ms() < deadline)
		itutil_sleep_ms(20);
	r->acked_at_start = atomic_load(&acked_total);
	r->at_ms = itutil_now_ms();
	r->rc = itkafka_local_run("restart", NULL, 0);
	r->took_ms = itutil_now_ms() - r->at_ms;
	return NULL;
}

static void test_broker_restart(void **state)
{
	struct tally *t = calloc(1, sizeof(*t));
	struct restarter r = { .rc = -1 };
	int attempts, reconnects;
	pthread_t th;
	(void)state;

	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	assert_non_null(t);
	long long t0 = itutil_now_ms();
	struct publisher *pbs = run_publishers("restart");
	assert_int_equal(pthread_create(&th, NULL, restart_main, &r), 0);
	pthread_join(th, NULL);
	join_publishers(pbs, &attempts, &reconnects);
	print_message("broker restarted after %d acks, in %lld ms (exit %d); %d messages "
		      "acknowledged in %lld ms, %d attempts, %d reconnects\n",
		      r.acked_at_start, r.took_ms, r.rc, TOTAL, itutil_now_ms() - t0, attempts, reconnects);
	assert_int_equal(r.rc, 0);
	assert_true(r.acked_at_start >= TOTAL / 3 && r.acked_at_start < TOTAL);

	read_all("kt-restart", t, 60000);
	if (t->bad)
		fail_msg("%ld records not as sent, first: %s", t->bad, t->first_bad);
	long dups = 0, missing = 0;
	for (int c = 0; c < CLIENTS; c++)
		for (int s = 0; s < PER_CLIENT; s++) {
			if (pbs[c].acked[s] && t->seen[c][s] == 0) {
				if (!missing)
					print_error("acknowledged but not in Kafka: it-ukc%d:%d\n", c, s);
				missing++;
			}
			if (t->seen[c][s] > 1)
				dups += t->seen[c][s] - 1;
		}
	print_message("%ld records for %d messages: %ld duplicated, %ld acknowledged but "
		      "missing, %ld out of order\n", t->records, TOTAL, dups, missing,
		      t->out_of_order);
	assert_int_equal(missing, 0);
	assert_int_equal(t->records, TOTAL + dups);
	free(pbs);
	free(t);
}

/* ---- acknowledgements resume after a restart -------------------------------- */

#define MAX_ACKS 200000

/* A device publishing QoS 1 one message at a time; each PUBACK's time. */
struct seq_device {
	int port;
	atomic_bool stop;
	atomic_int acks;
	long long at[MAX_ACKS];        /* written before acks is raised */
	char err[96];
};

static void *seq_main(void *arg)
{
	struct seq_device *d = arg;
	int fd = itutil_connect(d->port, "it-ukc-seq", true, 0, NULL);
	uint16_t pid = 1;

	if (fd < 0) {
		snprintf(d->err, sizeof(d->err), "cannot connect");
		return NULL;
	}
	while (!atomic_load(&d->stop) && atomic_load(&d->acks) < MAX_ACKS) {
		if (itutil_send_publish(fd, "kr/dev", "reading", 7, 1, false, pid) < 0 ||
		    itutil_expect_ack(fd, 0x40, pid, 60000) < 0) {
			snprintf(d->err, sizeof(d->err), "no PUBACK for packet id %u", pid);
			break;
		}
		d->at[atomic_load(&d->acks)] = itutil_now_ms();
		atomic_fetch_add(&d->acks, 1);
		pid = (uint16_t)(pid % 65535 + 1);
	}
	close(fd);
	return NULL;
}

static void test_acks_resume_after_restart(void **state)
{
	struct gw g2 = { 0 };
	struct seq_device *d = calloc(1, sizeof(*d));
	char cfg[512];
	pthread_t th;
	(void)state;

	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	assert_non_null(d);
	/* kafkagate's producer defaults: nothing times out during the outage. */
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5; };\n"
		 "routes = ( { filter = \"kr/#\"; topic = \"kt-resume\"; format = \"raw\"; } );\n",
		 kl.bootstrap);
	assert_int_equal(gw_start(&g2, cfg), 0);
	d->port = g2.port;
	assert_int_equal(pthread_create(&th, NULL, seq_main, d), 0);
	for (int i = 0; i < 300 && atomic_load(&d->acks) < 50 && !d->err[0]; i++)
		itutil_sleep_ms(100);
	assert_true(atomic_load(&d->acks) >= 50);

	long long t_down = itutil_now_ms();
	assert_int_equal(itkafka_local_run("restart", NULL, 0), 0);
	long long t_up = itutil_now_ms();
	int before = atomic_load(&d->acks), k = -1;
	for (int i = 0; i < 3000 && k < 0 && !d->err[0]; i++) {
		int n = atomic_load(&d->acks);
		for (int j = before; j < n && k < 0; j++)
			if (d->at[j] >= t_up)
				k = j;
		if (k < 0)
			itutil_sleep_ms(10);
	}
	atomic_store(&d->stop, true);
	pthread_join(th, NULL);
	assert_true(k >= 0);
	/* The last ack before the outage, for the record. */
	long long last = 0;
	for (int j = 0; j < k; j++)
		if (d->at[j] < t_up)
			last = d->at[j];
	print_message("broker down and up again in %lld ms; acks stopped %lld ms after the "
		      "restart began and resumed %lld ms after the broker served again\n",
		      t_up - t_down, last - t_down, d->at[k] - t_up);
	assert_true(d->at[k] - t_up <= RESUME_MS);
	assert_string_equal(d->err, "");
	gw_stop(&g2);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exactly_as_sent),
		cmocka_unit_test(test_broker_restart),
		cmocka_unit_test(test_acks_resume_after_restart),
	};

	return cmocka_run_group_tests_name("it_uplink_kafka", tests, group_setup, group_teardown);
}
