/*
 * it_state_retained.c - retained messages kept in Kafka (state.store =
 * "kafka"), shared by several gateway processes, and the state layer's
 * readiness, lease and topics.
 *
 * Mock cluster (librdkafka's, hosted in this process so that it outlives
 * gateway restarts and SIGKILLs):
 * - three gateways with distinct instance ids: a retained message set on
 *   gateway 1 reaches new subscribers on gateways 2 and 3 within a second;
 *   cleared on gateway 3 it is gone everywhere; all three stopped (one by
 *   SIGKILL) and started again, the retained message set before is still
 *   delivered by each; /readyz becomes 200 on each, and the state topics
 *   (sessions, retained, instances, one inbox per instance) exist;
 * - the lease: the cluster taken down, a connected device is closed by the
 *   gateway once its own heartbeat was not read back for state.lease_ms,
 *   /readyz says 503; the cluster back, /readyz 200 again;
 * - a gateway whose Kafka is not there never becomes ready;
 * - brokers = "embedded" with store = "kafka": retained set and read back
 *   through the embedded cluster;
 * - MQTT 5: the properties and the expiry of a retained message reach the
 *   other gateway; one that expired while a gateway was down (SIGKILL) is
 *   not delivered once it is back;
 * - store = "kafka" without kafka.brokers fails --check.
 * Real Kafka (scripts/kafka-local; skipped politely without java or mvn):
 * the topics are created compacted (DescribeConfigs from here) with the
 * configured partitions, retained survives a gateway restart, and a topic
 * that exists with cleanup.policy=delete keeps a gateway not ready, saying
 * why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define HTTP_MS 3000
#define READY_MS 20000
#define N_GW 3

static struct itkafka_mock K;
static struct gw G[N_GW];
static struct itkafka_local KL;
static int conn_seq;

static void gw_up(struct gw *g, const char *bootstrap, const char *id, const char *extra)
{
	char cfg[1536];

	g->metrics_port = gw_free_port();
	assert_true(g->metrics_port > 0);
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; flush_timeout = 2;"
		 " properties = ( (\"message.timeout.ms\", 5000) ); };\n"
		 "state = { store = \"kafka\"; instance_id = \"%s\"; heartbeat_ms = 200;"
		 " lease_ms = 2000; %s };\n",
		 g->metrics_port, bootstrap, id, extra ? extra : "");
	assert_int_equal(gw_start(g, cfg), 0);
}

/* Polls /readyz until it answers want; returns the ms it took or -1. */
static long long wait_ready(struct gw *g, int want, int timeout_ms, struct itkafka_resp *r)
{
	long long t0 = itutil_now_ms();
	for (;;) {
		itkafka_http_get(g->metrics_port, "/readyz", r, HTTP_MS);
		if (r->status == want)
			return itutil_now_ms() - t0;
		if (itutil_now_ms() - t0 > timeout_ms)
			return -1;
		itutil_sleep_ms(100);
	}
}

static void assert_ready(struct gw *g)
{
	static struct itkafka_resp r;
	long long ms = wait_ready(g, 200, READY_MS, &r);
	if (ms < 0)
		fail_msg("gateway on port %d not ready within %d ms: %s", g->port, READY_MS, r.raw);
}

/* Sets (payload "" clears) the retained message of topic through port,
 * QoS 1: returns once the gateway acknowledged it. */
static void set_retained(int port, const char *topic, const char *payload)
{
	char id[32];
	uint8_t rc = 0xff;
	snprintf(id, sizeof(id), "it-st-pub-%d", ++conn_seq);
	int fd = raw_mqtt_connect(port, id, true, 0, &rc, NULL);
	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), 1, true, 1), 0);
	close(fd);
}

/* A new subscriber to topic on port: 1 and the payload in out when a
 * retained message arrives within wait_ms, 0 when none does. */
static int retained_on(int port, const char *topic, char *out, size_t cap, int wait_ms)
{
	static struct itutil_pkt p;
	char id[32];
	snprintf(id, sizeof(id), "it-st-sub-%d", ++conn_seq);
	int fd = itutil_connect(port, id, true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, topic, 1), 0);
	int got = itutil_recv_publish(fd, &p, wait_ms) == 0;
	if (got) {
		assert_true(p.retain);
		assert_string_equal(p.topic, topic);
		size_t n = p.len < cap - 1 ? p.len : cap - 1;
		memcpy(out, p.payload, n);
		out[n] = '\0';
		itutil_ack_publish(fd, &p);
	}
	close(fd);
	return got;
}

/* Retries retained_on() until it sees want ("" = none) or deadline_ms
 * passes; returns the ms it took from t0, or -1. */
static long long wait_retained(int port, const char *topic, const char *want, long long t0,
			       int deadline_ms)
{
	char got[256];
	for (;;) {
		int n = retained_on(port, topic, got, sizeof(got), want[0] ? 50 : 200);
		if ((want[0] && n == 1 && strcmp(got, want) == 0) || (!want[0] && n == 0))
			return itutil_now_ms() - t0;
		if (itutil_now_ms() - t0 > deadline_ms)
			return -1;
	}
}

/* ---- raw MQTT 5 (as in it_mqtt5_publish.c) ------------------------------------ */

static size_t put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = v ? (uint8_t)(b | 0x80) : b;
	} while (v);
	return n;
}

static uint32_t get_varint(const uint8_t **p)
{
	uint32_t v = 0;
	for (int s = 0; s < 28; s += 7) {
		uint8_t b = *(*p)++;
		v |= (uint32_t)(b & 0x7f) << s;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static int connect5(int port, const char *id)
{
	struct raw_connect c = { .level = 5, .client_id = id, .clean = true };
	uint8_t rc = 0xff;
	int fd = raw_connect_tcp(port);
	if (fd < 0)
		return -1;
	if (raw_mqtt_handshake(fd, &c, &rc, NULL, HTTP_MS) < 0 || rc != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A level 5 QoS 1 retained PUBLISH with these property bytes; waits for
 * its PUBACK. */
static void pub5_retained(int fd, const char *topic, uint16_t pid, const uint8_t *props,
			  size_t plen, const char *payload)
{
	uint8_t body[1024], pkt[1100];
	size_t n = 0, tl = strlen(topic), pl = strlen(payload);
	body[n++] = (uint8_t)(tl >> 8);
	body[n++] = (uint8_t)tl;
	memcpy(body + n, topic, tl);
	n += tl;
	body[n++] = (uint8_t)(pid >> 8);
	body[n++] = (uint8_t)pid;
	n += put_varint(body + n, (uint32_t)plen);
	memcpy(body + n, props, plen);
	n += plen;
	memcpy(body + n, payload, pl);
	n += pl;
	pkt[0] = 0x33;
	size_t h = 1 + put_varint(pkt + 1, (uint32_t)n);
	memcpy(pkt + h, body, n);
	assert_int_equal(raw_send(fd, pkt, h + n), 0);
	uint8_t ack[16];
	int an = raw_recv_packet(fd, ack, sizeof(ack), HTTP_MS);
	assert_true(an >= 4 && ack[0] == 0x40);
}

struct pub5 {
	uint8_t first;
	char topic[256];
	uint8_t props[512];
	uint32_t plen;
	char payload[512];
};

/* A new level 5 subscriber to topic on port: 0 and the retained PUBLISH in
 * *o when one arrives within wait_ms, -1 otherwise. */
static int retained5_on(int port, const char *topic, struct pub5 *o, int wait_ms)
{
	char id[32];
	uint8_t b[2048];
	snprintf(id, sizeof(id), "it-st5-sub-%d", ++conn_seq);
	int fd = connect5(port, id);
	assert_true(fd >= 0);
	int n = raw_build_subscribe(b, sizeof(b), 5, 1, topic, 1);
	assert_true(n > 0 && raw_send(fd, b, (size_t)n) == 0);
	n = raw_recv_packet(fd, b, sizeof(b), HTTP_MS);
	assert_true(n > 0 && b[0] == 0x90);
	n = raw_recv_packet(fd, b, sizeof(b), wait_ms);
	close(fd);
	if (n <= 0 || (b[0] & 0xf0) != 0x30)
		return -1;
	const uint8_t *p = b + 1, *end = b + n;
	get_varint(&p);
	uint16_t tl = (uint16_t)(p[0] << 8 | p[1]);
	p += 2;
	memset(o, 0, sizeof(*o));
	o->first = b[0];
	memcpy(o->topic, p, tl);
	p += tl;
	if (b[0] & 0x06)
		p += 2;
	o->plen = get_varint(&p);
	memcpy(o->props, p, o->plen);
	p += o->plen;
	memcpy(o->payload, p, (size_t)(end - p));
	return 0;
}

/* MQTT 5: the properties and the expiry travel with the retained message
 * (kg.props, kg.expires); one that expired while the gateway was away is
 * not delivered after a restart. */
static void test_mqtt5_properties(void **state)
{
	struct pub5 m;
	(void)state;

	gw_up(&G[0], K.bootstrap, "gw-5a", NULL);
	gw_up(&G[1], K.bootstrap, "gw-5b", NULL);
	assert_ready(&G[0]);
	assert_ready(&G[1]);
	/* User Property ("k", "v"), Content Type "t/x", Message Expiry 600 s. */
	static const uint8_t props[] = { 0x26, 0, 1, 'k', 0, 1, 'v', 0x03, 0, 3, 't', '/', 'x',
					 0x02, 0, 0, 0x02, 0x58 };
	static const uint8_t short_exp[] = { 0x02, 0, 0, 0, 2 };
	int fd = connect5(G[0].port, "it-st5-pub");
	assert_true(fd >= 0);
	pub5_retained(fd, "st5/p", 1, props, sizeof(props), "with-props");
	pub5_retained(fd, "st5/short", 2, short_exp, sizeof(short_exp), "brief");
	close(fd);

	long long t0 = itutil_now_ms();
	int r = -1;
	while (r < 0 && itutil_now_ms() - t0 < 2000)
		r = retained5_on(G[1].port, "st5/p", &m, 300);
	assert_int_equal(r, 0);
	assert_true(m.first & 1); /* retain */
	assert_string_equal(m.payload, "with-props");
	assert_non_null(memmem(m.props, m.plen, props, 13)); /* user property, content type */
	const uint8_t *x = memchr(m.props, 0x02, m.plen);
	assert_non_null(x);
	uint32_t left = (uint32_t)x[1] << 24 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 8 | x[4];
	assert_true(left <= 600 && left >= 590);

	/* Gateway b away while st5/short expires: not delivered when back. */
	gw_kill(&G[1], SIGKILL);
	itutil_sleep_ms(2500);
	assert_int_equal(gw_restart(&G[1]), 0);
	assert_ready(&G[1]);
	assert_int_equal(retained5_on(G[1].port, "st5/p", &m, 1000), 0);
	assert_string_equal(m.payload, "with-props");
	assert_int_equal(retained5_on(G[1].port, "st5/short", &m, 500), -1);
}

/* The gateway's log (both runs after a restart) declares itself ready only
 * after the state reader caught up, and the last run read records that
 * were there at its start (at least want). */
static void assert_ready_after_catchup(struct gw *g, long want)
{
	static char text[1 << 20];
	const char *last_start = NULL, *last_caught = NULL, *last_ready = NULL, *p;
	/* main logs "ready" on its next round (500 ms) after /readyz said 200. */
	for (int tries = 0; tries < 30; tries++) {
		FILE *f = fopen(g->log_path, "r");
		assert_non_null(f);
		size_t n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[n] = '\0';
		last_start = last_caught = last_ready = NULL;
		for (p = text; (p = strstr(p, "state catching up ")); p++)
			last_start = p;
		for (p = text; (p = strstr(p, "state caught up ")); p++)
			last_caught = p;
		for (p = text; (p = strstr(p, "thread=main ready\n")); p++)
			last_ready = p;
		if (last_ready && last_caught && last_ready > last_caught)
			break;
		itutil_sleep_ms(100);
	}
	assert_non_null(last_start);
	assert_non_null(last_caught);
	assert_non_null(last_ready);
	assert_true(last_start < last_caught && last_caught < last_ready);
	const char *r = strstr(last_start, "records=");
	assert_non_null(r);
	assert_true(atol(r + 8) >= want);
}

/* Partitions of topic (0: absent), from a metadata request of every topic
 * (one naming it could auto-create it). */
static int partitions_of(const char *bootstrap, const char *topic)
{
	rd_kafka_t *rk = itkafka_client_new(bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	const struct rd_kafka_metadata *md = NULL;
	int n = -1;
	assert_non_null(rk);
	if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		n = 0;
		for (int i = 0; i < md->topic_cnt; i++)
			if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
				n = md->topics[i].partition_cnt;
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_destroy(rk);
	return n;
}

static int teardown_all(void **state)
{
	(void)state;
	for (int i = 0; i < N_GW; i++)
		if (G[i].pid)
			gw_stop(&G[i]);
	memset(G, 0, sizeof(G));
	return 0;
}

/* ---- mock cluster ---------------------------------------------------------- */

static void test_three_gateways(void **state)
{
	char id[16], topic[64], got[64];
	long long t0, ms;
	(void)state;

	for (int i = 0; i < N_GW; i++) {
		snprintf(id, sizeof(id), "gw-%d", i + 1);
		gw_up(&G[i], K.bootstrap, id, NULL);
	}
	for (int i = 0; i < N_GW; i++)
		assert_ready(&G[i]);
	/* The topics: each instance's inbox too. */
	assert_true(partitions_of(K.bootstrap, "kafkagate.sessions") > 0);
	assert_true(partitions_of(K.bootstrap, "kafkagate.retained") > 0);
	assert_true(partitions_of(K.bootstrap, "kafkagate.instances") > 0);
	for (int i = 0; i < N_GW; i++) {
		snprintf(topic, sizeof(topic), "kafkagate.inbox.gw-%d", i + 1);
		assert_true(partitions_of(K.bootstrap, topic) > 0);
	}

	/* Set on 1: new subscribers on 2 and 3 within a second. */
	t0 = itutil_now_ms();
	set_retained(G[0].port, "st/lamp", "on");
	for (int i = 1; i < N_GW; i++) {
		ms = wait_retained(G[i].port, "st/lamp", "on", t0, 1000);
		if (ms < 0)
			fail_msg("retained set on gateway 1 not on gateway %d within 1 s", i + 1);
		print_message("retained on gateway %d after %lld ms\n", i + 1, ms);
	}
	assert_int_equal(retained_on(G[0].port, "st/lamp", got, sizeof(got), 1000), 1);
	assert_string_equal(got, "on");

	/* Cleared on 3: gone everywhere. */
	t0 = itutil_now_ms();
	set_retained(G[2].port, "st/lamp", "");
	for (int i = 0; i < N_GW; i++) {
		ms = wait_retained(G[i].port, "st/lamp", "", t0, 1000);
		if (ms < 0)
			fail_msg("retained cleared on gateway 3 still on gateway %d after 1 s", i + 1);
	}

	/* Set again, then every gateway stops (1 by SIGKILL) and starts again. */
	t0 = itutil_now_ms();
	set_retained(G[1].port, "st/door", "closed");
	set_retained(G[1].port, "st/window", "open");
	for (int i = 0; i < N_GW; i++)
		assert_true(wait_retained(G[i].port, "st/door", "closed", t0, 1000) >= 0);
	gw_kill(&G[0], SIGKILL);
	for (int i = 0; i < N_GW; i++)
		assert_int_equal(gw_restart(&G[i]), 0);
	for (int i = 0; i < N_GW; i++)
		assert_ready(&G[i]);
	/* Each read what was there (3 retained records at least, heartbeats)
	 * before it said ready. */
	for (int i = 0; i < N_GW; i++)
		assert_ready_after_catchup(&G[i], 4);
	for (int i = 0; i < N_GW; i++) {
		assert_int_equal(retained_on(G[i].port, "st/door", got, sizeof(got), 1000), 1);
		assert_string_equal(got, "closed");
		assert_int_equal(retained_on(G[i].port, "st/window", got, sizeof(got), 1000), 1);
		assert_string_equal(got, "open");
		assert_int_equal(retained_on(G[i].port, "st/lamp", got, sizeof(got), 300), 0);
	}

	/* The metrics say what happened. */
	static struct itkafka_resp r;
	assert_int_equal(itkafka_http_get(G[2].metrics_port, "/metrics", &r, HTTP_MS), 200);
	assert_true(itkafka_metric(r.body, "kafkagate_state_ready") == 1);
	assert_true(itkafka_metric(r.body, "kafkagate_state_info{instance_id=\"gw-3\","
					   "sessions_topic=\"kafkagate.sessions\"}") == 1);
	assert_true(itkafka_metric(r.body, "kafkagate_state_records_read_total{topic=\"retained\"}") >= 3);
	assert_true(itkafka_metric(r.body, "kafkagate_state_instances_alive") == N_GW);
	assert_true(itkafka_metric(r.body, "kafkagate_state_claims_refused_total") == 0);
	assert_true(itkafka_metric(r.body, "kafkagate_state_kicks_total") == 0);
}

/* The lease: Kafka gone for longer than state.lease_ms closes the devices. */
static void test_lease(void **state)
{
	static struct itkafka_resp r;
	(void)state;

	gw_up(&G[0], K.bootstrap, "gw-lease", NULL);
	assert_ready(&G[0]);
	int fd = itutil_connect(G[0].port, "it-st-lease", true, 0, NULL);
	assert_true(fd >= 0);
	assert_int_equal(rd_kafka_mock_broker_set_down(K.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
	long long t0 = itutil_now_ms();
	/* lease_ms 2000 after the last heartbeat read (every 200 ms), then the
	 * next 100 ms tick; MQTT 3.1.1 has no DISCONNECT from the server. */
	bool closed = itutil_closed_silently(fd, 6000);
	long long ms = itutil_now_ms() - t0;
	close(fd);
	assert_int_equal(rd_kafka_mock_broker_set_up(K.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
	if (!closed)
		fail_msg("the device was not closed within 6 s of Kafka going away");
	print_message("device closed %lld ms after Kafka went down\n", ms);
	assert_true(ms >= 1500);
	assert_true(gw_log_contains(&G[0], "state lease lost"));
	assert_true(wait_ready(&G[0], 200, READY_MS, &r) >= 0);
	assert_true(gw_log_contains(&G[0], "state lease regained"));
	assert_int_equal(itkafka_http_get(G[0].metrics_port, "/metrics", &r, HTTP_MS), 200);
	assert_true(itkafka_metric(r.body, "kafkagate_state_lease_lost_total") == 1);
}

/* Nothing listens where its Kafka should be: never ready. */
static void test_no_kafka_never_ready(void **state)
{
	static struct itkafka_resp r;
	char bs[64];
	(void)state;

	int port = gw_free_port();
	assert_true(port > 0);
	snprintf(bs, sizeof(bs), "127.0.0.1:%d", port);
	gw_up(&G[0], bs, "gw-nokafka", NULL);
	for (int i = 0; i < 8; i++) {
		itkafka_http_get(G[0].metrics_port, "/readyz", &r, HTTP_MS);
		assert_int_equal(r.status, 503);
		itutil_sleep_ms(400);
	}
	assert_non_null(strstr(r.body, "not ready: "));
	itkafka_http_get(G[0].metrics_port, "/metrics", &r, HTTP_MS);
	assert_true(itkafka_metric(r.body, "kafkagate_state_ready") == 0);
	assert_true(itkafka_metric(r.body, "kafkagate_state_caught_up") == 0);
	/* A clean device still gets in: the state lacks Kafka, MQTT does not. */
	int fd = itutil_connect(G[0].port, "it-st-nok", true, 0, NULL);
	assert_true(fd >= 0);
	close(fd);
}

/* brokers = "embedded" and store = "kafka": one process, its own cluster. */
static void test_embedded(void **state)
{
	static struct itkafka_resp r;
	char got[64];
	(void)state;

	gw_up(&G[0], "embedded", "gw-emb", NULL);
	assert_ready(&G[0]);
	long long t0 = itutil_now_ms();
	set_retained(G[0].port, "st/emb", "x1");
	assert_true(wait_retained(G[0].port, "st/emb", "x1", t0, 2000) >= 0);
	assert_int_equal(retained_on(G[0].port, "st/emb", got, sizeof(got), 1000), 1);
	assert_string_equal(got, "x1");
	/* It went through Kafka and came back. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(itkafka_http_get(G[0].metrics_port, "/metrics", &r, HTTP_MS), 200);
		if (itkafka_metric(r.body, "kafkagate_state_retained_applied_total") >= 1)
			break;
		itutil_sleep_ms(100);
	}
	assert_true(itkafka_metric(r.body, "kafkagate_state_retained_written_total") >= 1);
	assert_true(itkafka_metric(r.body, "kafkagate_state_retained_applied_total") >= 1);
}

/* store = "kafka" without kafka.brokers is refused (the embedded cluster
 * keeps nothing: it is used only when written). */
static void test_needs_brokers(void **state)
{
	char path[] = "/tmp/it-st-cfg-XXXXXX", cmd[512], out[1024] = "";
	(void)state;

	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char cfg[] = "listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
				  "state = { store = \"kafka\"; };\n";
	assert_int_equal(write(fd, cfg, sizeof(cfg) - 1), (ssize_t)(sizeof(cfg) - 1));
	close(fd);
	const char *bin = getenv("KG_BIN") ? getenv("KG_BIN") : "build/kafkagate";
	snprintf(cmd, sizeof(cmd), "%s --check --config %s 2>&1", bin, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int rc = pclose(p);
	unlink(path);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	assert_non_null(strstr(out, ":2: state.store = \"kafka\" needs kafka.brokers"));
}

static int mock_setup(void **state)
{
	(void)state;
	return itkafka_mock_init(&K, 1);
}

static int mock_teardown(void **state)
{
	(void)state;
	teardown_all(NULL);
	itkafka_mock_release(&K);
	return 0;
}

/* ---- real Kafka -------------------------------------------------------------- */

/* cleanup.policy of topic by DescribeConfigs, into out ("" if unknown). */
static void policy_of(const char *bootstrap, const char *topic, char *out, size_t cap)
{
	char e[256];
	rd_kafka_t *rk = itkafka_client_new(bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	assert_non_null(rk);
	rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_AdminOptions_set_request_timeout(o, 10000, e, sizeof(e));
	rd_kafka_DescribeConfigs(rk, &cr, 1, o, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
	out[0] = '\0';
	if (ev && !rd_kafka_event_error(ev)) {
		size_t n, ne;
		const rd_kafka_ConfigResource_t **res = rd_kafka_DescribeConfigs_result_resources(
			rd_kafka_event_DescribeConfigs_result(ev), &n);
		for (size_t i = 0; i < n; i++) {
			const rd_kafka_ConfigEntry_t **ent = rd_kafka_ConfigResource_configs(res[i], &ne);
			for (size_t j = 0; j < ne; j++)
				if (strcmp(rd_kafka_ConfigEntry_name(ent[j]), "cleanup.policy") == 0)
					snprintf(out, cap, "%s", rd_kafka_ConfigEntry_value(ent[j]));
		}
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	rd_kafka_ConfigResource_destroy(cr);
	rd_kafka_destroy(rk);
}

/* Creates topic with cleanup.policy=delete from here. */
static void create_delete_topic(const char *bootstrap, const char *topic)
{
	char e[256];
	rd_kafka_t *rk = itkafka_client_new(bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	assert_non_null(rk);
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, 1, e, sizeof(e));
	assert_non_null(nt);
	rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "delete");
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
	assert_non_null(ev);
	assert_int_equal(rd_kafka_event_error(ev), 0);
	rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
}

static void test_real_kafka(void **state)
{
	static struct itkafka_resp r;
	char pfx[32], extra[128], t[96], pol[64], got[64];
	(void)state;

	if (KL.skip_reason)
		skip();
	snprintf(pfx, sizeof(pfx), "itst%d", (int)getpid());
	snprintf(extra, sizeof(extra), "topic_prefix = \"%s\"; partitions = 3; replication_factor = 1;",
		 pfx);
	gw_up(&G[0], KL.bootstrap, "gw-real", extra);
	assert_ready(&G[0]);
	static const char *const kinds[] = { "sessions", "retained", "instances", "inbox.gw-real" };
	static const char *const want[] = { "compact", "compact", "compact", "delete" };
	static const int parts[] = { 3, 3, 1, 1 };
	for (int i = 0; i < 4; i++) {
		snprintf(t, sizeof(t), "%s.%s", pfx, kinds[i]);
		policy_of(KL.bootstrap, t, pol, sizeof(pol));
		assert_string_equal(pol, want[i]);
		assert_int_equal(partitions_of(KL.bootstrap, t), parts[i]);
	}
	long long t0 = itutil_now_ms();
	set_retained(G[0].port, "st/real", "kept");
	assert_true(wait_retained(G[0].port, "st/real", "kept", t0, 2000) >= 0);
	assert_int_equal(gw_restart(&G[0]), 0);
	assert_ready(&G[0]);
	assert_int_equal(retained_on(G[0].port, "st/real", got, sizeof(got), 1000), 1);
	assert_string_equal(got, "kept");
	gw_stop(&G[0]);

	/* A retained topic made by hand with cleanup.policy=delete: never
	 * ready, and /readyz says why. */
	snprintf(pfx, sizeof(pfx), "itsx%d", (int)getpid());
	snprintf(t, sizeof(t), "%s.retained", pfx);
	create_delete_topic(KL.bootstrap, t);
	snprintf(extra, sizeof(extra), "topic_prefix = \"%s\"; replication_factor = 1;", pfx);
	gw_up(&G[0], KL.bootstrap, "gw-wrong", extra);
	bool said = false;
	for (int i = 0; i < 100 && !said; i++) {
		itkafka_http_get(G[0].metrics_port, "/readyz", &r, HTTP_MS);
		assert_int_equal(r.status, 503);
		said = strstr(r.body, "cleanup.policy=delete") != NULL;
		if (!said)
			itutil_sleep_ms(100);
	}
	if (!said)
		fail_msg("/readyz does not name the wrong cleanup.policy: %s", r.body);
	itutil_sleep_ms(1000);
	itkafka_http_get(G[0].metrics_port, "/readyz", &r, HTTP_MS);
	assert_int_equal(r.status, 503);
	assert_true(gw_log_contains(&G[0], "state topic misconfigured"));
}

static int real_setup(void **state)
{
	(void)state;
	if (itkafka_local_start(&KL) < 0)
		return -1;
	if (KL.skip_reason)
		printf("skipping the real-Kafka case: %s\n", KL.skip_reason);
	return 0;
}

static int real_teardown(void **state)
{
	(void)state;
	teardown_all(NULL);
	itkafka_local_stop(&KL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest mock[] = {
		cmocka_unit_test_teardown(test_three_gateways, teardown_all),
		cmocka_unit_test_teardown(test_lease, teardown_all),
		cmocka_unit_test_teardown(test_no_kafka_never_ready, teardown_all),
		cmocka_unit_test_teardown(test_embedded, teardown_all),
		cmocka_unit_test_teardown(test_mqtt5_properties, teardown_all),
		cmocka_unit_test(test_needs_brokers),
	};
	const struct CMUnitTest real[] = {
		cmocka_unit_test_teardown(test_real_kafka, teardown_all),
	};
	int rc;

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	rc = cmocka_run_group_tests_name("it_state_retained (mock cluster)", mock, mock_setup,
					 mock_teardown);
	if (!getenv("KG_SKIP_REAL_KAFKA"))
		rc |= cmocka_run_group_tests_name("it_state_retained (real Kafka)", real, real_setup,
						  real_teardown);
	return rc;
}
