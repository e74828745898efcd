/*
 * it_state_bus.c - cross-instance delivery (state.store = "kafka",
 * docs/scaling/bus.md): three gateways on one librdkafka mock cluster
 * hosted in this process.
 *
 * Devices are raw level-4 clients (itutil.h) so that a test can withhold
 * a PUBACK. The gateways learn each other's subscriptions from
 * <prefix>.sessions; before a case relies on that it waits until a probe
 * published on one gateway reaches the device on another.
 *
 * Covered:
 *  - pub/sub across instances: QoS 0 and QoS 1 publishes made on gw-1
 *    reach subscribers on gw-2 and gw-3, 500 each, in order per publisher
 *    and topic, at min(publish QoS, granted QoS); the topics have no Kafka
 *    route (unrouted publishes still cross);
 *  - a publish nobody elsewhere subscribed to writes no inbox record;
 *  - QoS 2 across (exactly once to the subscriber on the other gateway);
 *  - MQTT 5 across: properties, the rest of the Message Expiry Interval,
 *    RETAIN as published (Retain As Published);
 *  - a downlink command (one consumer group across the three gateways,
 *    one partition: whichever gateway reads it forwards) reaches devices on
 *    the two other gateways; the inbox offset of a forwarded command is
 *    committed only after its device's PUBACK, the downlink offset of the
 *    reader's own device's command only after that device's PUBACK, and
 *    the downlink offset of a forwarded one once it is in the target's
 *    inbox (the design's hand-over: docs/scaling/bus.md);
 *  - a broadcast-mode downlink is not forwarded (each gateway reads it).
 *
 * On the real Kafka of scripts/kafka-local (skipped without Java, or with
 * KG_SKIP_REAL_KAFKA): cross-instance QoS 1 in order, with the publish ->
 * delivery latency printed.
 *
 *   make build/kafkagate build/tests/it_state_bus
 *   KG_BIN=build/kafkagate build/tests/it_state_bus
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 15000
#define PREFIX "itbus"
#define NMSG 500

static struct itkafka_mock K;
static rd_kafka_t *prod;
static struct gw G[3];
static int open_fd[16];
static MQTTClient open_cl[4];

static void fd_track(int fd)
{
	for (size_t i = 0; i < 16; i++)
		if (open_fd[i] < 0) {
			open_fd[i] = fd;
			return;
		}
}

static void fd_close(int fd)
{
	for (size_t i = 0; i < 16; i++)
		if (open_fd[i] == fd)
			open_fd[i] = -1;
	close(fd);
}

/* The three gateways share the cluster, the state topics and one
 * downlink group; each test uses its own MQTT topics. */
/* Starts gw-1..3 on bootstrap with topic prefix pfx; downlink: the mock
 * cluster's case, with the downlink mapping and short group sessions. */
static int gws_start(const char *bootstrap, const char *pfx, bool downlink)
{
	for (int i = 0; i < 3; i++) {
		char cfg[2048];
		snprintf(cfg, sizeof(cfg),
			 "kafka = { brokers = \"%s\"; flush_timeout = 2; instance_id = \"gw-%d\";\n"
			 "  properties = ( %s(\"statistics.interval.ms\", 500) ); };\n"
			 "state = { store = \"kafka\"; instance_id = \"gw-%d\"; topic_prefix = \"%s\";\n"
			 "  partitions = 3; replication_factor = 1; heartbeat_ms = 500; lease_ms = 5000; };\n"
			 "%s\n",
			 bootstrap, i + 1,
			 /* A real broker refuses sessions under its
			  * group.min.session.timeout.ms (6 s). */
			 downlink ? "(\"session.timeout.ms\", 3000), (\"heartbeat.interval.ms\", 500), "
				  : "",
			 i + 1, pfx,
			 downlink ? "downlink = ( { topic = \"bus-cmd\"; group = \"it-bus-dl\"; "
				    "mode = \"group\";\n  mqtt_topic = \"cmd/${key}\"; qos = 1; },\n"
				    "  { topic = \"bus-bc\"; group = \"it-bus-bc\"; mode = \"broadcast\";\n"
				    "  mqtt_topic = \"bc/${key}\"; qos = 1; } );"
				  : "");
		if (gw_start(&G[i], cfg) < 0)
			return -1;
	}
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < 16; i++)
		open_fd[i] = -1;
	if (itkafka_mock_init(&K, 1) < 0)
		return -1;
	rd_kafka_mock_topic_create(K.mc, "bus-cmd", 1, 1);
	rd_kafka_mock_topic_create(K.mc, "bus-bc", 1, 1);
	if (!(prod = itkafka_client_new(K.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL)))
		return -1;
	return gws_start(K.bootstrap, PREFIX, true);
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 2; i >= 0; i--)
		gw_stop(&G[i]);
	if (prod)
		rd_kafka_destroy(prod);
	itkafka_mock_release(&K);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < 4; i++)
		if (open_cl[i]) {
			MQTTClient_disconnect(open_cl[i], 500);
			MQTTClient_destroy(&open_cl[i]);
		}
	for (size_t i = 0; i < 16; i++)
		if (open_fd[i] >= 0)
			fd_close(open_fd[i]);
	return 0;
}

/* A clean level-4 client on gateway g, subscribed to filter at qos
 * (filter NULL: none). */
static int dev(int g, const char *id, const char *filter, uint8_t qos)
{
	int fd = itutil_connect(G[g].port, id, true, 0, NULL);
	assert_true(fd >= 0);
	fd_track(fd);
	if (filter)
		assert_int_equal(itutil_subscribe(fd, 1, filter, qos), 0);
	return fd;
}

/* The next packet if one starts within ms: waits for the first byte
 * only, then reads the whole packet with a generous timeout, so that a
 * short wait never leaves a packet half read (the stream would be out of
 * step). Returns itutil_recv()'s result, or -1 when none started. */
static int recv_within(int fd, struct itutil_pkt *p, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	return itutil_recv(fd, p, WAIT_MS);
}

/* Publishes probe on gateway `from` (QoS 0) every 200 ms until the device
 * fd (on another gateway) gets it: the other gateway's subscriptions are
 * known there. Other publishes that arrive meanwhile fail the test. */
static void wait_routed(int from, int fd, const char *probe)
{
	/* A fresh client id each time: one id on two gateways in a row would
	 * be a cross-instance takeover, not what this waits for. */
	static int seq;
	char id[32];
	snprintf(id, sizeof(id), "bus-prober-%d", ++seq);
	int pub = dev(from, id, NULL, 0);
	long long end = itutil_now_ms() + WAIT_MS;
	bool got = false;
	while (!got && itutil_now_ms() < end) {
		assert_int_equal(itutil_send_publish(pub, probe, "p", 1, 0, false, 0), 0);
		struct itutil_pkt p;
		long long until = itutil_now_ms() + 200;
		while (!got && itutil_now_ms() < until) {
			if (recv_within(fd, &p, 50) <= 0)
				continue;
			assert_int_equal(p.first & 0xF0, 0x30);
			assert_string_equal(p.topic, probe);
			assert_int_equal(itutil_ack_publish(fd, &p), 0);
			got = true;
		}
	}
	fd_close(pub);
	if (!got)
		fail_msg("%s never reached the other gateway", probe);
	/* Probes still on their way. */
	struct itutil_pkt p;
	while (recv_within(fd, &p, 500) > 0) {
		assert_string_equal(p.topic, probe);
		assert_int_equal(itutil_ack_publish(fd, &p), 0);
	}
}

static long inbox_count(int g)
{
	char t[64];
	snprintf(t, sizeof(t), PREFIX ".inbox.gw-%d", g + 1);
	long n = itkafka_count(K.bootstrap, t, 5000);
	return n == -1 ? 0 : n; /* -1: the topic does not exist: nothing sent */
}

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

/* The inbox group's committed offsets of gateway g summed over the
 * partitions of its inbox (the mock cluster auto-creates it with several;
 * a partition without a commit counts 0): equal to inbox_count(g) when
 * every record was delivered. */
static long inbox_committed(int g)
{
	char t[64];
	snprintf(t, sizeof(t), PREFIX ".inbox.gw-%d", g + 1);
	rd_kafka_t *rk = itkafka_client_new(K.bootstrap, RD_KAFKA_CONSUMER, t, NULL);
	assert_non_null(rk);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
	const struct rd_kafka_metadata *md = NULL;
	long sum = -1;
	if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    md->topic_cnt == 1 && !md->topics[0].err) {
		int np = md->topics[0].partition_cnt;
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
		for (int i = 0; i < np; i++)
			rd_kafka_topic_partition_list_add(l, t, i);
		if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			sum = 0;
			for (int i = 0; i < np; i++)
				if (!l->elems[i].err && l->elems[i].offset > 0)
					sum += (long)l->elems[i].offset;
		}
		rd_kafka_topic_partition_list_destroy(l);
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return sum;
}

static void wait_inbox_committed(int g, long want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	long got = -1;
	while (itutil_now_ms() < end && (got = inbox_committed(g)) != want)
		itutil_sleep_ms(100);
	if (got != want)
		fail_msg("inbox of gw-%d: committed %ld in all, want %ld", g + 1, got, want);
}

static void wait_committed(const char *group, const char *topic, int32_t part, int64_t want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	int64_t got = -1;
	while (itutil_now_ms() < end && (got = committed(group, topic, part)) != want)
		itutil_sleep_ms(100);
	if (got != want)
		fail_msg("group %s %s[%d]: committed %lld, want %lld", group, topic, (int)part,
			 (long long)got, (long long)want);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_pubsub_across(void **state)
{
	(void)state;
	int s1 = dev(1, "bus-s1", "bus/#", 1);    /* gw-2: QoS 1 granted */
	int s2 = dev(2, "bus-s2", "bus/q1", 0);   /* gw-3: QoS 0 granted */
	wait_routed(0, s1, "bus/probe");
	/* s2's filter is not the probe's: its own probe topic is bus/q1 itself,
	 * so its probes are skipped below by payload. */
	int p1 = dev(0, "bus-p1", NULL, 0);       /* QoS 1 publisher */
	int p0 = dev(0, "bus-p0", NULL, 0);       /* QoS 0 publisher */
	{
		/* gw-1 knows s2 once a QoS 0 probe on bus/q1 reaches it. */
		long long end = itutil_now_ms() + WAIT_MS;
		bool got = false;
		while (!got && itutil_now_ms() < end) {
			assert_int_equal(itutil_send_publish(p0, "bus/q1", "probe", 5, 0, false, 0), 0);
			struct itutil_pkt p;
			if (recv_within(s2, &p, 200) > 0)
				got = true;
		}
		assert_true(got);
	}
	long before2 = inbox_count(1), before3 = inbox_count(2);

	char pl[32];
	for (int i = 0; i < NMSG; i++) {
		int n = snprintf(pl, sizeof(pl), "q0-%d", i);
		assert_int_equal(itutil_send_publish(p0, "bus/q0", pl, (size_t)n, 0, false, 0), 0);
		n = snprintf(pl, sizeof(pl), "q1-%d", i);
		assert_int_equal(itutil_send_publish(p1, "bus/q1", pl, (size_t)n, 1, false,
						     (uint16_t)(i % 20 + 1)), 0);
		/* Windows of 20 (limits.max_inflight is 32): the PUBACKs, in order,
		 * come once the inbox records are in Kafka. */
		if (i % 20 == 19)
			for (int k = 0; k < 20; k++)
				assert_int_equal(itutil_expect_ack(p1, 0x40, (uint16_t)(k + 1), WAIT_MS),
						 0);
	}

	/* s1 (bus/#, QoS 1): every QoS 1 at 1, every QoS 0 at 0, in order. */
	int n0 = 0, n1 = 0;
	long long end = itutil_now_ms() + 30000;
	while ((n0 < NMSG || n1 < NMSG) && itutil_now_ms() < end) {
		struct itutil_pkt p;
		if (recv_within(s1, &p, 1000) <= 0)
			continue;
		assert_int_equal(p.first & 0xF0, 0x30);
		assert_int_equal(itutil_ack_publish(s1, &p), 0);
		if (strcmp(p.topic, "bus/probe") == 0 || strcmp(p.payload, "probe") == 0)
			continue;
		if (strcmp(p.topic, "bus/q0") == 0) {
			snprintf(pl, sizeof(pl), "q0-%d", n0++);
			assert_string_equal(p.payload, pl);
			assert_int_equal(p.qos, 0);
		} else {
			assert_string_equal(p.topic, "bus/q1");
			snprintf(pl, sizeof(pl), "q1-%d", n1++);
			assert_string_equal(p.payload, pl);
			assert_int_equal(p.qos, 1);
		}
	}
	assert_int_equal(n0, NMSG);
	assert_int_equal(n1, NMSG);
	/* s2 (bus/q1 granted QoS 0): the QoS 1 messages at 0, in order. */
	n1 = 0;
	end = itutil_now_ms() + 30000;
	while (n1 < NMSG && itutil_now_ms() < end) {
		struct itutil_pkt p;
		if (recv_within(s2, &p, 1000) <= 0)
			continue;
		if (strcmp(p.payload, "probe") == 0)
			continue;
		snprintf(pl, sizeof(pl), "q1-%d", n1++);
		assert_string_equal(p.payload, pl);
		assert_int_equal(p.qos, 0);
	}
	assert_int_equal(n1, NMSG);
	/* One record per message per target instance: gw-2 got both topics,
	 * gw-3 the QoS 1 one only. */
	assert_int_equal(inbox_count(1) - before2, 2 * NMSG);
	assert_int_equal(inbox_count(2) - before3, NMSG);
}

static void test_no_remote_no_inbox(void **state)
{
	(void)state;
	int s = dev(1, "bus-s3", "only/here", 1);
	wait_routed(0, s, "only/here");
	long c1 = inbox_count(0), c2 = inbox_count(1), c3 = inbox_count(2);
	int p = dev(0, "bus-p3", NULL, 0);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(itutil_send_publish(p, "nobody/else", "x", 1, 1, false,
						     (uint16_t)(i + 1)), 0);
		assert_int_equal(itutil_expect_ack(p, 0x40, (uint16_t)(i + 1), WAIT_MS), 0);
	}
	/* A local subscriber on gw-1 is the local broker's: no inbox either. */
	int l = dev(0, "bus-l3", "local/only", 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(itutil_send_publish(p, "local/only", "y", 1, 0, false, 0), 0);
	struct itutil_pkt pk;
	for (int i = 0; i < 10; i++)
		assert_int_equal(itutil_recv_acked(l, &pk, WAIT_MS), 0);
	itutil_sleep_ms(500);
	assert_int_equal(inbox_count(0), c1);
	assert_int_equal(inbox_count(1), c2);
	assert_int_equal(inbox_count(2), c3);
}

/* QoS 2 across: the PUBREC waits for the inbox record, the subscriber on
 * gw-3 gets it at QoS 2 exactly once; a QoS 2 subscriber gets a QoS 1
 * publish at 1. */
static void test_qos2_across(void **state)
{
	(void)state;
	int s = dev(2, "bus-s4", "q2/#", 2);
	wait_routed(0, s, "q2/probe");
	int p = dev(0, "bus-p4", NULL, 0);
	assert_int_equal(raw_mqtt_publish(p, "q2/a", "two", 3, 2, false, 7), 0);
	struct itutil_pkt pk;
	assert_int_equal(itutil_recv_acked(s, &pk, WAIT_MS), 0);
	assert_string_equal(pk.topic, "q2/a");
	assert_string_equal(pk.payload, "two");
	assert_int_equal(pk.qos, 2);
	/* After the QoS 2 flow: the helper wants nothing else in flight. */
	assert_int_equal(raw_mqtt_publish(p, "q2/a", "one", 3, 1, false, 8), 0);
	assert_int_equal(itutil_recv_acked(s, &pk, WAIT_MS), 0);
	assert_string_equal(pk.payload, "one");
	assert_int_equal(pk.qos, 1);
	assert_true(itutil_quiet(s, 500));
}

/* A will published by gateway 1 when its device's connection drops
 * without DISCONNECT reaches a subscriber on gateway 3 (the will goes to the
 * sink, and its fan-out to the inboxes), once. */
static void test_will_across(void **state)
{
	(void)state;
	int s = dev(2, "bus-w-sub", "wills/#", 1);
	wait_routed(0, s, "wills/probe");
	struct raw_connect rc = { .level = 4, .client_id = "bus-w-dev", .clean = true,
				  .keepalive = 60, .will_topic = "wills/bus-w-dev",
				  .will_payload = "gone", .will_payload_len = 4, .will_qos = 1 };
	int d = itutil_connect_with(G[0].port, &rc, NULL);
	assert_true(d >= 0);
	/* Dropped without DISCONNECT: the will is due. */
	close(d);
	struct itutil_pkt pk;
	assert_int_equal(itutil_recv_acked(s, &pk, WAIT_MS), 0);
	assert_string_equal(pk.topic, "wills/bus-w-dev");
	assert_string_equal(pk.payload, "gone");
	assert_int_equal(pk.qos, 1);
	assert_true(itutil_quiet(s, 500));
}

/* A persistent session parked on gateway 1 holds three QoS 1 messages
 * published on gateway 2 (they reached gateway 1 through its inbox); the
 * device comes back on gateway 3: session present, and the three messages
 * in order, carried over by gateway 1 when gateway 3's claim took the
 * session (the broker's handover hook, state_bus_send_to()). */
static void test_queued_move_with_session(void **state)
{
	(void)state;
	bool present = true;
	int d = itutil_connect(G[0].port, "bus-q-dev", false, 60, &present);
	assert_true(d >= 0);
	assert_false(present);
	assert_int_equal(itutil_subscribe(d, 1, "hq/bus-q-dev/#", 1), 0);
	/* Seen by gateway 2 while online, then parked there (DISCONNECT). */
	wait_routed(1, d, "hq/bus-q-dev/probe");
	const uint8_t disc[2] = { 0xE0, 0x00 };
	assert_int_equal(write(d, disc, 2), 2);
	close(d);
	usleep(500 * 1000); /* the park record is read everywhere */
	int p = dev(1, "bus-q-pub", NULL, 0);
	for (int i = 0; i < 3; i++) {
		char pl[16];
		snprintf(pl, sizeof(pl), "c%d", i);
		assert_int_equal(itutil_send_publish(p, "hq/bus-q-dev/cmd", pl, 2, 1, false,
						     (uint16_t)(10 + i)),
				 0);
		assert_int_equal(itutil_expect_ack(p, 0x40, (uint16_t)(10 + i), WAIT_MS), 0);
	}
	usleep(1000 * 1000); /* queued in the parked session on gateway 1 */
	d = itutil_connect(G[2].port, "bus-q-dev", false, 60, &present);
	assert_true(d >= 0);
	fd_track(d);
	assert_true(present);
	for (int i = 0; i < 3; i++) {
		struct itutil_pkt pk;
		char want[16];
		snprintf(want, sizeof(want), "c%d", i);
		assert_int_equal(itutil_recv_acked(d, &pk, WAIT_MS), 0);
		assert_string_equal(pk.topic, "hq/bus-q-dev/cmd");
		assert_string_equal(pk.payload, want);
	}
	assert_true(itutil_quiet(d, 500));
}

/* A persistent session parked on gateway 1 holds two QoS 1 messages
 * published on gateway 2; gateway 1 is stopped cleanly (SIGTERM) and
 * started again: the device reconnects there and gets them, in order (the
 * clean stop wrote them to gateway 1's own inbox, broker_state_persist();
 * the restart restored the session before reading the inbox). */
static void test_queued_survive_clean_restart(void **state)
{
	(void)state;
	bool present = true;
	int d = itutil_connect(G[0].port, "bus-r-dev", false, 60, &present);
	assert_true(d >= 0);
	assert_int_equal(itutil_subscribe(d, 1, "hq/bus-r-dev/#", 1), 0);
	wait_routed(1, d, "hq/bus-r-dev/probe");
	const uint8_t disc[2] = { 0xE0, 0x00 };
	assert_int_equal(write(d, disc, 2), 2);
	close(d);
	usleep(500 * 1000);
	int p = dev(1, "bus-r-pub", NULL, 0);
	for (int i = 0; i < 2; i++) {
		char pl[16];
		snprintf(pl, sizeof(pl), "r%d", i);
		assert_int_equal(itutil_send_publish(p, "hq/bus-r-dev/cmd", pl, 2, 1, false,
						     (uint16_t)(20 + i)),
				 0);
		assert_int_equal(itutil_expect_ack(p, 0x40, (uint16_t)(20 + i), WAIT_MS), 0);
	}
	usleep(1000 * 1000); /* queued in the parked session on gateway 1 */
	assert_int_equal(gw_restart(&G[0]), 0);
	assert_true(gw_log_contains(&G[0], "queued messages written to the inbox for the restart"));
	assert_true(gw_log_wait(&G[0], "level=info thread=main ready", WAIT_MS));
	d = itutil_connect(G[0].port, "bus-r-dev", false, 60, &present);
	assert_true(d >= 0);
	fd_track(d);
	assert_true(present);
	for (int i = 0; i < 2; i++) {
		struct itutil_pkt pk;
		char want[16];
		snprintf(want, sizeof(want), "r%d", i);
		assert_int_equal(itutil_recv_acked(d, &pk, WAIT_MS), 0);
		assert_string_equal(pk.topic, "hq/bus-r-dev/cmd");
		assert_string_equal(pk.payload, want);
	}
	assert_true(itutil_quiet(d, 500));
}

/* ---- the queue of an offline session in Kafka (docs/scaling/queue.md) ---- */

/* Parks persistent device id on gateway g, subscribed to hq/<id>/# and
 * cmd/<id> (the downlink's topic for records keyed <id>), after gateway
 * `probe_from` routes to it. */
static void park_device(int g, const char *id, int probe_from)
{
	bool present = true;
	char f[64];
	int d = itutil_connect(G[g].port, id, false, 60, &present);
	assert_true(d >= 0);
	snprintf(f, sizeof(f), "hq/%s/#", id);
	assert_int_equal(itutil_subscribe(d, 1, f, 1), 0);
	snprintf(f, sizeof(f), "cmd/%s", id);
	assert_int_equal(itutil_subscribe(d, 2, f, 1), 0);
	snprintf(f, sizeof(f), "hq/%s/probe", id);
	wait_routed(probe_from, d, f);
	const uint8_t disc[2] = { 0xE0, 0x00 };
	assert_int_equal(write(d, disc, 2), 2);
	close(d);
	usleep(500 * 1000); /* the park record is read everywhere */
}

/* Queues four messages for parked device id: two QoS 1 publishes on
 * gateway `remote` (through the inbox), one on gateway `local` (the
 * device's own), one downlink command (whichever gateway reads it). */
static void queue_four(const char *id, int remote, int local, const char *tag)
{
	char t[64], pl[32], pid[32];
	snprintf(pid, sizeof(pid), "%s-rp", id);
	int p = dev(remote, pid, NULL, 0);
	snprintf(t, sizeof(t), "hq/%s/cmd", id);
	for (int i = 0; i < 2; i++) {
		snprintf(pl, sizeof(pl), "%s-r%d", tag, i);
		assert_int_equal(itutil_send_publish(p, t, pl, strlen(pl), 1, false, (uint16_t)(30 + i)),
				 0);
		assert_int_equal(itutil_expect_ack(p, 0x40, (uint16_t)(30 + i), WAIT_MS), 0);
	}
	snprintf(pid, sizeof(pid), "%s-lp", id);
	int l = dev(local, pid, NULL, 0);
	snprintf(t, sizeof(t), "hq/%s/local", id);
	snprintf(pl, sizeof(pl), "%s-l", tag);
	assert_int_equal(itutil_send_publish(l, t, pl, strlen(pl), 1, false, 40), 0);
	assert_int_equal(itutil_expect_ack(l, 0x40, 40, WAIT_MS), 0);
	snprintf(pl, sizeof(pl), "%s-c", tag);
	assert_int_equal(itkafka_produce(prod, "bus-cmd", 0, id, pl, NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	usleep(1500 * 1000); /* queued (and written to the queue topic) */
}

/* The device comes back on gateway g: session present, and the four
 * messages of queue_four(), each once (order: per topic), then quiet. */
static void expect_four(int g, const char *id, const char *tag)
{
	bool present = false;
	int d = itutil_connect(G[g].port, id, false, 60, &present);
	assert_true(d >= 0);
	fd_track(d);
	assert_true(present);
	const char *want[4] = { "r0", "r1", "l", "c" };
	bool got[4] = { false };
	int next_r = 0;
	for (int n = 0; n < 4; n++) {
		struct itutil_pkt pk;
		if (itutil_recv_acked(d, &pk, WAIT_MS + 10000) != 0)
			fail_msg("%s: %d of 4 queued messages came back", id, n);
		size_t tl = strlen(tag);
		assert_true(strncmp(pk.payload, tag, tl) == 0 && pk.payload[tl] == '-');
		const char *w = pk.payload + tl + 1;
		int k = 0;
		while (k < 4 && strcmp(w, want[k]) != 0)
			k++;
		assert_true(k < 4);
		if (got[k])
			fail_msg("%s: %s twice", id, pk.payload);
		got[k] = true;
		if (k < 2)
			assert_int_equal(k, next_r++); /* in order on their topic */
	}
	assert_true(itutil_quiet(d, 1000));
}

/* SIGKILL of the gateway holding a parked session with four queued
 * messages (cross-instance, local, downlink): after the restart the
 * device finds them all. Without the queue in Kafka they died with the
 * process (the clean stop's persist never ran). */
static void test_queued_survive_kill(void **state)
{
	(void)state;
	park_device(0, "bus-k-dev", 1);
	queue_four("bus-k-dev", 1, 0, "k");
	gw_kill(&G[0], SIGKILL);
	assert_true(gw_wait_exit(&G[0], 5000) >= 0);
	assert_int_equal(gw_restart(&G[0]), 0);
	assert_true(gw_log_wait(&G[0], "level=info thread=main ready", WAIT_MS));
	expect_four(0, "bus-k-dev", "k");
}

/* SIGKILL of the gateway holding two parked sessions with queued
 * messages, not restarted. One device comes back on another gateway at
 * once (before anyone knows the gateway is dead: that gateway's claim
 * waits for a handover that never comes, then reads the dead gateway's
 * queue topic); the other after its session was adopted by a survivor.
 * Both get all four messages. gw-1 is started again at the end. */
static void test_queued_dead_instance(void **state)
{
	(void)state;
	park_device(0, "bus-x-dev", 1);
	park_device(0, "bus-y-dev", 1);
	queue_four("bus-x-dev", 1, 0, "x");
	queue_four("bus-y-dev", 2, 0, "y");
	gw_kill(&G[0], SIGKILL);
	assert_true(gw_wait_exit(&G[0], 5000) >= 0);
	expect_four(2, "bus-x-dev", "x");
	/* Adopted by gw-2 or gw-3 once gw-1's lease ran out. */
	long long end = itutil_now_ms() + 30000;
	const char *adopting = "state owner adopting session client=\"bus-y-dev\"";
	while (itutil_now_ms() < end && !gw_log_contains(&G[1], adopting) &&
	       !gw_log_contains(&G[2], adopting))
		itutil_sleep_ms(200);
	assert_true(gw_log_contains(&G[1], adopting) || gw_log_contains(&G[2], adopting));
	itutil_sleep_ms(1000); /* the adopt read back, the queue restored there */
	expect_four(1, "bus-y-dev", "y");
	assert_int_equal(gw_restart(&G[0]), 0);
	assert_true(gw_log_wait(&G[0], "level=info thread=main ready", WAIT_MS));
}

/* ---- MQTT 5 (paho) ---- */

static MQTTClient c5_connect(int g, int slot, const char *id)
{
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
	char uri[64];
	co.MQTTVersion = MQTTVERSION_5;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", G[g].port);
	assert_int_equal(MQTTClient_createWithOptions(&open_cl[slot], uri, id,
						      MQTTCLIENT_PERSISTENCE_NONE, NULL, &co),
			 MQTTCLIENT_SUCCESS);
	o.cleanstart = 1;
	o.keepAliveInterval = 30;
	o.connectTimeout = 5;
	MQTTResponse r = MQTTClient_connect5(open_cl[slot], &o, NULL, NULL);
	assert_int_equal(r.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(r);
	return open_cl[slot];
}

/* The next message on cl that is not a probe, within timeout_ms (NULL if
 * none came); free with MQTTClient_freeMessage. */
static MQTTClient_message *c5_recv(MQTTClient cl, int timeout_ms, char *topic, size_t cap)
{
	long long end = itutil_now_ms() + timeout_ms;
	while (itutil_now_ms() < end) {
		char *t = NULL;
		int tl = 0;
		MQTTClient_message *m = NULL;
		int rc = MQTTClient_receive(cl, &t, &tl, &m, 200);
		if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED)
			return NULL;
		if (!m)
			continue;
		snprintf(topic, cap, "%.*s", tl ? tl : (int)strlen(t), t);
		MQTTClient_free(t);
		if (strstr(topic, "probe")) {
			MQTTClient_freeMessage(&m);
			continue;
		}
		return m;
	}
	return NULL;
}

/* MQTT 5 across: properties (content type, user properties, correlation
 * data), what is left of the Message Expiry Interval, and RETAIN as
 * published for a Retain As Published subscription. */
static void test_mqtt5_across(void **state)
{
	(void)state;
	MQTTClient s = c5_connect(1, 0, "bus-m5s");
	MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
	so.retainAsPublished = 1;
	MQTTResponse r = MQTTClient_subscribe5(s, "m5/#", 1, &so, NULL);
	assert_int_equal(r.reasonCode, 1);
	MQTTResponse_free(r);
	/* Known on gw-1 once a probe gets through. */
	int pr = dev(0, "bus-m5-prober", NULL, 0);
	long long end = itutil_now_ms() + WAIT_MS;
	bool got = false;
	while (!got && itutil_now_ms() < end) {
		assert_int_equal(itutil_send_publish(pr, "m5/probe", "p", 1, 0, false, 0), 0);
		char *t = NULL;
		int tl = 0;
		MQTTClient_message *m = NULL;
		if (MQTTClient_receive(s, &t, &tl, &m, 200) == MQTTCLIENT_SUCCESS && m) {
			got = true;
			MQTTClient_freeMessage(&m);
			MQTTClient_free(t);
		}
	}
	assert_true(got);

	MQTTClient p = c5_connect(0, 1, "bus-m5p");
	MQTTProperties ps = MQTTProperties_initializer;
	MQTTProperty pp = { .identifier = MQTTPROPERTY_CODE_CONTENT_TYPE };
	pp.value.data.data = "text/plain";
	pp.value.data.len = 10;
	assert_int_equal(MQTTProperties_add(&ps, &pp), 0);
	pp = (MQTTProperty){ .identifier = MQTTPROPERTY_CODE_CORRELATION_DATA };
	pp.value.data.data = "\x00\x01";
	pp.value.data.len = 2;
	assert_int_equal(MQTTProperties_add(&ps, &pp), 0);
	pp = (MQTTProperty){ .identifier = MQTTPROPERTY_CODE_USER_PROPERTY };
	pp.value.data.data = "k";
	pp.value.data.len = 1;
	pp.value.value.data = "v";
	pp.value.value.len = 1;
	assert_int_equal(MQTTProperties_add(&ps, &pp), 0);
	pp = (MQTTProperty){ .identifier = MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL };
	pp.value.integer4 = 120;
	assert_int_equal(MQTTProperties_add(&ps, &pp), 0);
	MQTTClient_message m = MQTTClient_message_initializer;
	MQTTClient_deliveryToken dt;
	m.payload = "hello";
	m.payloadlen = 5;
	m.qos = 1;
	m.retained = 1;
	m.properties = ps;
	r = MQTTClient_publishMessage5(p, "m5/x", &m, &dt);
	assert_int_equal(r.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(r);
	assert_int_equal(MQTTClient_waitForCompletion(p, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
	MQTTProperties_free(&ps);

	char topic[64];
	MQTTClient_message *g = c5_recv(s, WAIT_MS, topic, sizeof(topic));
	assert_non_null(g);
	assert_string_equal(topic, "m5/x");
	assert_int_equal(g->payloadlen, 5);
	assert_memory_equal(g->payload, "hello", 5);
	assert_int_equal(g->qos, 1);
	assert_int_equal(g->retained, 1);
	MQTTProperty *x = MQTTProperties_getProperty(&g->properties, MQTTPROPERTY_CODE_CONTENT_TYPE);
	assert_non_null(x);
	assert_int_equal(x->value.data.len, 10);
	assert_memory_equal(x->value.data.data, "text/plain", 10);
	x = MQTTProperties_getProperty(&g->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
	assert_non_null(x);
	assert_int_equal(x->value.data.len, 2);
	assert_memory_equal(x->value.data.data, "\x00\x01", 2);
	x = MQTTProperties_getProperty(&g->properties, MQTTPROPERTY_CODE_USER_PROPERTY);
	assert_non_null(x);
	assert_memory_equal(x->value.data.data, "k", 1);
	assert_memory_equal(x->value.value.data, "v", 1);
	x = MQTTProperties_getProperty(&g->properties, MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL);
	assert_non_null(x);
	assert_true(x->value.integer4 > 100 && x->value.integer4 <= 120);
	MQTTClient_freeMessage(&g);

	/* Clear the retained message again (it is <prefix>.retained's, not
	 * the bus's: nothing of it stays here). */
	m = (MQTTClient_message)MQTTClient_message_initializer;
	m.payload = "";
	m.payloadlen = 0;
	m.qos = 1;
	m.retained = 1;
	r = MQTTClient_publishMessage5(p, "m5/x", &m, &dt);
	MQTTResponse_free(r);
	assert_int_equal(MQTTClient_waitForCompletion(p, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
	g = c5_recv(s, WAIT_MS, topic, sizeof(topic));
	assert_non_null(g);
	assert_int_equal(g->payloadlen, 0);
	MQTTClient_freeMessage(&g);
}

static void test_downlink_forwarded(void **state)
{
	(void)state;
	char t[64], f[32];
	int d[3];
	for (int i = 0; i < 3; i++) {
		snprintf(t, sizeof(t), "bus-d%d", i + 1);
		snprintf(f, sizeof(f), "cmd/d%d", i + 1);
		d[i] = dev(i, t, f, 1);
	}
	/* Every gateway knows the two other devices. */
	for (int i = 0; i < 3; i++) {
		snprintf(f, sizeof(f), "probe/d%d", i + 1);
		assert_int_equal(itutil_subscribe(d[i], 2, f, 1), 0);
		wait_routed((i + 1) % 3, d[i], f);
		wait_routed((i + 2) % 3, d[i], f);
	}
	long in0[3];
	for (int i = 0; i < 3; i++)
		in0[i] = inbox_count(i);

	for (int i = 0; i < 3; i++) {
		char key[16], val[24];
		snprintf(key, sizeof(key), "d%d", i + 1);
		snprintf(val, sizeof(val), "go-%d", i + 1);
		assert_int_equal(itkafka_produce(prod, "bus-cmd", 0, key, val, NULL), 0);
	}
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);

	/* Every device gets its command, whichever gateway read the partition;
	 * nobody acknowledges yet. */
	struct itutil_pkt p[3];
	for (int i = 0; i < 3; i++) {
		assert_int_equal(itutil_recv_publish(d[i], &p[i], WAIT_MS), 0);
		snprintf(f, sizeof(f), "cmd/d%d", i + 1);
		assert_string_equal(p[i].topic, f);
		assert_int_equal(p[i].qos, 1);
	}
	/* The reader forwarded to the two others: one record in each of their
	 * inboxes, none in its own. */
	int reader = -1;
	for (int i = 0; i < 3; i++) {
		long n = inbox_count(i) - in0[i];
		assert_true(n == 0 || n == 1);
		if (n == 0) {
			assert_int_equal(reader, -1);
			reader = i;
		}
	}
	assert_true(reader >= 0);
	/* Forwarded commands completed on the reader once in the inboxes; its
	 * own device's command (offset `reader`) holds the downlink commit. */
	itutil_sleep_ms(1000);
	int64_t c = committed("it-bus-dl", "bus-cmd", 0);
	assert_true(c <= reader);
	if (reader > 0)
		assert_int_equal(c, reader);
	for (int i = 0; i < 3; i++) {
		if (i == reader)
			continue;
		/* Not past the unacknowledged command. */
		assert_true(inbox_committed(i) <= in0[i]);
	}

	for (int i = 0; i < 3; i++)
		assert_int_equal(itutil_ack_publish(d[i], &p[i]), 0);
	wait_committed("it-bus-dl", "bus-cmd", 0, 3);
	for (int i = 0; i < 3; i++)
		if (i != reader)
			wait_inbox_committed(i, in0[i] + 1);
}

/* ---- the real Kafka (scripts/kafka-local) ---- */

static struct itkafka_local KL;

static int real_setup(void **state)
{
	(void)state;
	char pfx[32];
	for (size_t i = 0; i < 16; i++)
		open_fd[i] = -1;
	if (itkafka_local_start(&KL) < 0)
		return -1;
	if (KL.skip_reason) {
		printf("skipping the real-Kafka case: %s\n", KL.skip_reason);
		return 0;
	}
	snprintf(pfx, sizeof(pfx), "itbusr%d", (int)getpid());
	return gws_start(KL.bootstrap, pfx, false);
}

static int real_teardown(void **state)
{
	(void)state;
	for (int i = 2; i >= 0; i--)
		gw_stop(&G[i]);
	itkafka_local_stop(&KL);
	return 0;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

/* On a real broker: 200 QoS 1 publishes on gw-1, one at a time, to a
 * subscriber on gw-2: all in order; the publish -> delivery latency across
 * instances is printed (p50/p99/max) and bounded loosely. */
static void test_real_latency(void **state)
{
	(void)state;
	if (KL.skip_reason)
		skip();
	enum { N = 200 };
	static long long lat[N];
	int s = dev(1, "bus-r-s", "lat/#", 1);
	wait_routed(0, s, "lat/probe");
	char inbox[64];
	snprintf(inbox, sizeof(inbox), "itbusr%d.inbox.gw-2", (int)getpid());
	long before = itkafka_count(KL.bootstrap, inbox, 5000);
	assert_true(before >= 0);
	int p = dev(0, "bus-r-p", NULL, 0);
	char pl[16];
	for (int i = 0; i < N; i++) {
		int n = snprintf(pl, sizeof(pl), "%d", i);
		long long t0 = itutil_now_ms();
		assert_int_equal(itutil_send_publish(p, "lat/a", pl, (size_t)n, 1, false,
						     (uint16_t)(i + 1)), 0);
		struct itutil_pkt pk;
		assert_int_equal(itutil_recv_acked(s, &pk, WAIT_MS), 0);
		lat[i] = itutil_now_ms() - t0;
		assert_string_equal(pk.payload, pl);
		assert_int_equal(pk.qos, 1);
		assert_int_equal(itutil_expect_ack(p, 0x40, (uint16_t)(i + 1), WAIT_MS), 0);
	}
	/* Each went through gw-2's inbox (the real topic, one partition). */
	assert_int_equal(itkafka_count(KL.bootstrap, inbox, 5000) - before, N);
	qsort(lat, N, sizeof(lat[0]), cmp_ll);
	printf("cross-instance publish -> delivery on the real Kafka: p50 %lld ms, p99 %lld ms, "
	       "max %lld ms (%d QoS 1 messages, one at a time)\n", lat[N / 2], lat[N * 99 / 100],
	       lat[N - 1], N);
	assert_true(lat[N * 99 / 100] < 1000);
}

/* mode = "broadcast": every gateway reads every record and delivers to
 * its own devices; nothing is forwarded (a device would get it once per
 * gateway otherwise). */
static void test_downlink_broadcast_not_forwarded(void **state)
{
	(void)state;
	int d = dev(1, "bus-bc-d", "bc/d", 1);
	/* gw-1 and gw-3 know the device (a forward would be possible). */
	assert_int_equal(itutil_subscribe(d, 2, "probe/bc", 1), 0);
	wait_routed(0, d, "probe/bc");
	wait_routed(2, d, "probe/bc");
	long in0[3];
	for (int i = 0; i < 3; i++)
		in0[i] = inbox_count(i);
	assert_int_equal(itkafka_produce(prod, "bus-bc", 0, "d", "bcast", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	struct itutil_pkt p;
	assert_int_equal(itutil_recv_acked(d, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "bc/d");
	assert_string_equal(p.payload, "bcast");
	assert_true(itutil_quiet(d, 1500)); /* once */
	for (int i = 0; i < 3; i++)
		assert_int_equal(inbox_count(i), in0[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_pubsub_across, test_teardown),
		cmocka_unit_test_teardown(test_no_remote_no_inbox, test_teardown),
		cmocka_unit_test_teardown(test_qos2_across, test_teardown),
		cmocka_unit_test_teardown(test_will_across, test_teardown),
		cmocka_unit_test_teardown(test_queued_move_with_session, test_teardown),
		cmocka_unit_test_teardown(test_queued_survive_clean_restart, test_teardown),
		cmocka_unit_test_teardown(test_mqtt5_across, test_teardown),
		cmocka_unit_test_teardown(test_downlink_forwarded, test_teardown),
		cmocka_unit_test_teardown(test_downlink_broadcast_not_forwarded, test_teardown),
		/* Last: they kill gw-1. */
		cmocka_unit_test_teardown(test_queued_survive_kill, test_teardown),
		cmocka_unit_test_teardown(test_queued_dead_instance, test_teardown),
	};
	const struct CMUnitTest real[] = {
		cmocka_unit_test_teardown(test_real_latency, test_teardown),
	};
	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	int rc = cmocka_run_group_tests_name("it_state_bus (mock cluster)", tests, group_setup,
					     group_teardown);
	if (!getenv("KG_SKIP_REAL_KAFKA"))
		rc |= cmocka_run_group_tests_name("it_state_bus (real Kafka)", real, real_setup,
						  real_teardown);
	return rc;
}
