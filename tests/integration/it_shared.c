/*
 * it_shared.c - shared subscriptions "$share/NAME/FILTER" (MQTT 5.0
 * section 4.8.2, also for 3.1.1 clients) over real sockets: raw 3.1.1
 * clients (tests/support/itutil.h) for exact control of acknowledgements,
 * and paho.mqtt.c MQTT 5 clients (MQTTVERSION_5, callbacks: paho
 * acknowledges at once) as members that keep up.
 *
 * A raw member also subscribes MARKER (not shared); the publisher sends the
 * marker last, and since one publisher's messages reach a session in
 * order, what a member read before the marker is all it was going to get.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTClient.h>

#include "gw.h"
#include "itutil.h"

#define WAIT_MS 5000
#define MARKER "it-shared-end"
#define MAXMSG 64

static struct gw g;
/* Started by the tests that need other limits; each stops its own. */
static struct gw g2;

static int group_setup(void **state)
{
	(void)state;
	return gw_start(&g, NULL);
}

static int group_teardown(void **state)
{
	(void)state;
	/* A clean exit: under ASan a leak or an error makes it non-zero. */
	return gw_stop(&g) == 0 ? 0 : -1;
}

/* ---- raw 3.1.1 members -------------------------------------------------- */

static int member(int port, const char *id, const char *filter, uint8_t qos)
{
	int fd = itutil_connect(port, id, true, 0, NULL);

	assert_true(fd >= 0);
	assert_int_equal(itutil_subscribe(fd, 1, filter, qos), 0);
	assert_int_equal(itutil_subscribe(fd, 2, MARKER, 0), 0);
	return fd;
}

/* Which of the n messages "m<i>" a raw member got before the marker,
 * acknowledging each (ack false: none). Checks topic, RETAIN 0 and that no
 * message came twice. Returns how many. */
static int read_until_marker(int fd, bool *got, int n, const char *topic, bool ack)
{
	int count = 0;

	for (;;) {
		struct itutil_pkt p;
		assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
		if (strcmp(p.topic, MARKER) == 0)
			return count;
		assert_string_equal(p.topic, topic);
		assert_false(p.retain);
		int i = atoi(p.payload + 1);
		assert_true(p.payload[0] == 'm' && i >= 0 && i < n);
		if (got[i])
			print_error("message %d twice\n", i);
		assert_false(got[i]);
		got[i] = true;
		count++;
		if (ack)
			assert_int_equal(itutil_ack_publish(fd, &p), 0);
	}
}

static void publish_n(int port, const char *topic, int n, uint8_t qos, int gap_ms)
{
	int fd = itutil_connect(port, "it-shared-pub", true, 0, NULL);
	char pl[16];

	assert_true(fd >= 0);
	for (int i = 0; i < n; i++) {
		snprintf(pl, sizeof(pl), "m%d", i);
		assert_int_equal(raw_mqtt_publish(fd, topic, pl, strlen(pl), qos, false,
						  (uint16_t)(i + 1)), 0);
		if (gap_ms)
			itutil_sleep_ms(gap_ms);
	}
	assert_int_equal(raw_mqtt_publish(fd, MARKER, "end", 3, 0, false, 0), 0);
	close(fd);
}

/* ---- paho MQTT 5 members (acknowledge at once) -------------------------- */

struct v5 {
	MQTTClient cl;
	pthread_mutex_t mu;
	bool got[MAXMSG];
	int count, dups, retained;
	bool marker;
};

static int v5_arrived(void *ctx, char *topic, int tlen, MQTTClient_message *m)
{
	struct v5 *v = ctx;
	(void)tlen;
	pthread_mutex_lock(&v->mu);
	if (strcmp(topic, MARKER) == 0) {
		v->marker = true;
	} else if (m->payloadlen > 1 && ((char *)m->payload)[0] == 'm') {
		char buf[16] = { 0 };
		memcpy(buf, m->payload, (size_t)m->payloadlen < 15 ? (size_t)m->payloadlen : 15);
		int i = atoi(buf + 1);
		if (i >= 0 && i < MAXMSG) {
			v->dups += v->got[i];
			v->got[i] = true;
			v->count++;
		}
		v->retained += m->retained;
	}
	pthread_mutex_unlock(&v->mu);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

static void v5_lost(void *ctx, char *cause)
{
	(void)ctx;
	(void)cause;
}

static void v5_start(struct v5 *v, int port, const char *id, const char *filter, int qos)
{
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
	char uri[64];

	memset(v, 0, sizeof(*v));
	pthread_mutex_init(&v->mu, NULL);
	co.MQTTVersion = MQTTVERSION_5;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	assert_int_equal(MQTTClient_createWithOptions(&v->cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE,
						      NULL, &co), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_setCallbacks(v->cl, v, v5_lost, v5_arrived, NULL),
			 MQTTCLIENT_SUCCESS);
	o.cleanstart = 1;
	o.keepAliveInterval = 30;
	o.connectTimeout = 5;
	MQTTResponse r = MQTTClient_connect5(v->cl, &o, NULL, NULL);
	assert_int_equal(r.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(r);
	MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
	r = MQTTClient_subscribe5(v->cl, filter, qos, &so, NULL);
	assert_int_equal(r.reasonCode, qos);
	MQTTResponse_free(r);
	r = MQTTClient_subscribe5(v->cl, MARKER, 0, &so, NULL);
	assert_int_equal(r.reasonCode, 0);
	MQTTResponse_free(r);
}

/* Waits for the marker (or for want messages when want > 0). */
static void v5_wait(struct v5 *v, int want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	for (;;) {
		pthread_mutex_lock(&v->mu);
		bool done = want > 0 ? v->count >= want : v->marker;
		pthread_mutex_unlock(&v->mu);
		if (done || itutil_now_ms() > end)
			break;
		itutil_sleep_ms(10);
	}
}

static void v5_stop(struct v5 *v)
{
	MQTTClient_disconnect5(v->cl, 1000, MQTTREASONCODE_NORMAL_DISCONNECTION, NULL);
	MQTTClient_destroy(&v->cl);
	pthread_mutex_destroy(&v->mu);
}

/* ---- distribution --------------------------------------------------------- */

/* k raw members of one group and a plain subscriber of the same filter: the
 * members' sets are disjoint and together all n messages, the plain
 * subscriber gets every one. With nothing slowing a member down the
 * round robin is exact. */
static void distribute(int k, uint8_t qos)
{
	enum { N = 30 };
	int fd[3], plain;
	bool got[N] = { 0 }, all[N] = { 0 };
	char id[32], topic[32];

	snprintf(topic, sizeof(topic), "it-shared/d%d%u", k, qos);
	for (int i = 0; i < k; i++) {
		snprintf(id, sizeof(id), "it-shared-d%d", i);
		fd[i] = member(g.port, id, "$share/grp/it-shared/+", qos);
	}
	plain = member(g.port, "it-shared-plain", "it-shared/+", qos);
	publish_n(g.port, topic, N, qos, 0);
	int total = 0;
	for (int i = 0; i < k; i++) {
		int c = read_until_marker(fd[i], got, N, topic, true);
		print_message("member %d: %d messages\n", i, c);
		assert_int_equal(c, N / k);
		total += c;
	}
	assert_int_equal(total, N);
	for (int i = 0; i < N; i++)
		assert_true(got[i]);
	assert_int_equal(read_until_marker(plain, all, N, topic, true), N);
	for (int i = 0; i < k; i++)
		close(fd[i]);
	close(plain);
}

static void test_two_members_qos0(void **state)
{
	(void)state;
	distribute(2, 0);
}

static void test_two_members_qos1(void **state)
{
	(void)state;
	distribute(2, 1);
}

static void test_three_members_qos1(void **state)
{
	(void)state;
	distribute(3, 1);
}

/* Two raw 3.1.1 members and one paho MQTT 5 member share a group. */
static void test_mixed_levels(void **state)
{
	enum { N = 30 };
	(void)state;
	struct v5 v;
	bool got[N] = { 0 };

	v5_start(&v, g.port, "it-shared-v5", "$share/mix/it-shared/mix", 1);
	int a = member(g.port, "it-shared-ma", "$share/mix/it-shared/mix", 1);
	int b = member(g.port, "it-shared-mb", "$share/mix/it-shared/mix", 1);
	publish_n(g.port, "it-shared/mix", N, 1, 0);
	int ca = read_until_marker(a, got, N, "it-shared/mix", true);
	int cb = read_until_marker(b, got, N, "it-shared/mix", true);
	v5_wait(&v, 0);
	pthread_mutex_lock(&v.mu);
	int cv = v.count;
	for (int i = 0; i < N; i++) {
		if (v.got[i])
			assert_false(got[i]);   /* disjoint */
		got[i] |= v.got[i];
	}
	assert_int_equal(v.dups, 0);
	assert_int_equal(v.retained, 0);
	pthread_mutex_unlock(&v.mu);
	print_message("3.1.1: %d and %d, 5.0: %d\n", ca, cb, cv);
	assert_int_equal(ca + cb + cv, N);
	assert_true(ca > 0 && cb > 0 && cv > 0);
	for (int i = 0; i < N; i++)
		assert_true(got[i]);
	close(a);
	close(b);
	v5_stop(&v);
}

/* ---- flow control and members leaving --------------------------------------- */

/* max_inflight 2: a member that withholds its PUBACKs has a full window
 * after two messages and is skipped while the other has room. */
static void test_full_window_skipped(void **state)
{
	enum { N = 20 };
	(void)state;
	struct v5 v;
	bool got[N] = { 0 };

	assert_int_equal(gw_start(&g2, "limits = { max_inflight = 2; };"), 0);
	int a = member(g2.port, "it-shared-slow", "$share/w/it-shared/w", 1);
	v5_start(&v, g2.port, "it-shared-fast", "$share/w/it-shared/w", 1);
	/* A gap lets the slow member's window state be seen before the next. */
	publish_n(g2.port, "it-shared/w", N, 1, 20);
	int ca = read_until_marker(a, got, N, "it-shared/w", false);
	v5_wait(&v, N - ca);
	pthread_mutex_lock(&v.mu);
	int cv = v.count;
	for (int i = 0; i < N; i++) {
		assert_false(got[i] && v.got[i]);
		got[i] |= v.got[i];
	}
	pthread_mutex_unlock(&v.mu);
	print_message("slow member: %d, fast member: %d\n", ca, cv);
	assert_int_equal(ca, 2);
	assert_int_equal(cv, N - 2);
	for (int i = 0; i < N; i++)
		assert_true(got[i]);
	close(a);
	v5_stop(&v);
	assert_int_equal(gw_stop(&g2), 0);
}

/* A member that goes away with QoS 1 messages unacknowledged: another
 * member gets them (MQTT 4.8.2 allows it as soon as the connection is
 * lost; the session ends here anyway: clean session). */
static void test_unacked_move_on_disconnect(void **state)
{
	enum { N = 20 };
	(void)state;
	struct v5 v;
	bool got[N] = { 0 };

	int a = member(g.port, "it-shared-leaver", "$share/l/it-shared/l", 1);
	v5_start(&v, g.port, "it-shared-stayer", "$share/l/it-shared/l", 1);
	publish_n(g.port, "it-shared/l", N, 1, 0);
	int ca = read_until_marker(a, got, N, "it-shared/l", false);
	print_message("leaver held %d unacknowledged\n", ca);
	assert_true(ca > 0 && ca < N);
	close(a);
	v5_wait(&v, N);
	pthread_mutex_lock(&v.mu);
	int cv = v.count;
	for (int i = 0; i < N; i++)
		assert_true(v.got[i]);
	assert_int_equal(v.dups, 0);
	pthread_mutex_unlock(&v.mu);
	assert_int_equal(cv, N);
	v5_stop(&v);
}

/* Both members' windows full (max_inflight 2), so messages queue in their
 * sessions; one leaves: what it had in flight and in its queue goes to the
 * other, which then reads everything once. */
static void test_queued_move_on_disconnect(void **state)
{
	enum { N = 12 };
	(void)state;
	bool got[N] = { 0 };

	assert_int_equal(gw_start(&g2, "limits = { max_inflight = 2; };"), 0);
	int a = member(g2.port, "it-shared-qa", "$share/q/it-shared/q", 1);
	int b = member(g2.port, "it-shared-qb", "$share/q/it-shared/q", 1);
	publish_n(g2.port, "it-shared/q", N, 1, 5);
	/* a: its two in flight (the rest of its share waits in its queue). */
	struct itutil_pkt p;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(itutil_recv_publish(a, &p, WAIT_MS), 0);
		assert_string_equal(p.topic, "it-shared/q");
	}
	close(a);
	/* b gets all N, acknowledging as it goes, then nothing more. */
	int count = 0;
	while (count < N) {
		if (itutil_recv_publish(b, &p, WAIT_MS) != 0)
			break;
		if (strcmp(p.topic, MARKER) == 0)
			continue;
		int i = atoi(p.payload + 1);
		assert_true(i >= 0 && i < N);
		if (got[i])
			print_error("message %d twice\n", i);
		assert_false(got[i]);
		got[i] = true;
		count++;
		assert_int_equal(itutil_ack_publish(b, &p), 0);
	}
	print_message("remaining member got %d of %d\n", count, N);
	assert_int_equal(count, N);
	assert_true(itutil_quiet(b, 300));
	close(b);
	assert_int_equal(gw_stop(&g2), 0);
}

/* Read QoS 1 PUBLISHes of topic (acknowledged) until want distinct ones
 * arrived or nothing comes for WAIT_MS. Returns how many were new. */
static int read_some(int fd, bool *got, int n, const char *topic, int want)
{
	int count = 0;
	struct itutil_pkt p;

	while (count < want && itutil_recv_publish(fd, &p, WAIT_MS) == 0) {
		assert_int_equal(itutil_ack_publish(fd, &p), 0);
		if (strcmp(p.topic, topic) != 0)
			continue;
		int i = atoi(p.payload + 1);
		assert_true(i >= 0 && i < n);
		if (got[i])
			print_error("message %d twice\n", i);
		assert_false(got[i]);
		got[i] = true;
		count++;
	}
	return count;
}

/* Two persistent members, both offline: messages queue in their sessions,
 * round robin. One comes back and reads its share; the other's session
 * expires (limits.session_expiry): what waited in it goes to the member
 * that is back, with the next publish. */
static void test_expired_member_queue_moves(void **state)
{
	enum { N = 10 };
	(void)state;
	bool got[N] = { 0 };
	struct raw_connect ca = { .client_id = "it-shared-ea" }, cb = { .client_id = "it-shared-eb" };

	assert_int_equal(gw_start(&g2, "limits = { session_expiry = 2; };"), 0);
	int a = itutil_connect_with(g2.port, &ca, NULL);
	int b = itutil_connect_with(g2.port, &cb, NULL);
	assert_true(a >= 0 && b >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "$share/e/it-shared/e", 1), 0);
	assert_int_equal(itutil_subscribe(b, 1, "$share/e/it-shared/e", 1), 0);
	close(a);
	long long gone = itutil_now_ms();
	close(b);
	itutil_sleep_ms(200);
	publish_n(g2.port, "it-shared/e", N, 1, 0);

	bool present = false;
	b = itutil_connect_with(g2.port, &cb, &present);
	assert_true(b >= 0);
	assert_true(present);
	int first = read_some(b, got, N, "it-shared/e", N / 2);
	assert_true(itutil_quiet(b, 300));
	print_message("back member: %d queued for it\n", first);
	assert_int_equal(first, N / 2);

	/* a's session expires 2 s after it left (checked every 250 ms). */
	long long wait = gone + 3000 - itutil_now_ms();
	if (wait > 0)
		itutil_sleep_ms((int)wait);
	int pub = itutil_connect(g2.port, "it-shared-kick", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-shared/kick", "k", 1, 0, false, 0), 0);
	int rest = read_some(b, got, N, "it-shared/e", N - first);
	print_message("then from the expired one: %d\n", rest);
	assert_int_equal(first + rest, N);
	assert_true(itutil_quiet(b, 300));
	close(pub);
	close(b);
	assert_int_equal(gw_stop(&g2), 0);
}

/* A persistent member that is offline is passed over while another is
 * online, keeps its membership, and shares again once back. */
static void test_offline_member_passed_over(void **state)
{
	enum { N = 10 };
	(void)state;
	bool got[N] = { 0 }, got2[N] = { 0 };
	struct raw_connect cp = { .client_id = "it-shared-op" };

	int a = itutil_connect_with(g.port, &cp, NULL);
	assert_true(a >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "$share/o/it-shared/o", 1), 0);
	assert_int_equal(itutil_subscribe(a, 2, MARKER, 0), 0);
	int b = member(g.port, "it-shared-ob", "$share/o/it-shared/o", 1);
	close(a);
	itutil_sleep_ms(200);
	publish_n(g.port, "it-shared/o", N, 1, 0);
	assert_int_equal(read_until_marker(b, got, N, "it-shared/o", true), N);

	bool present = false;
	a = itutil_connect_with(g.port, &cp, &present);
	assert_true(a >= 0);
	assert_true(present);
	assert_true(itutil_quiet(a, 300)); /* nothing was queued for it */
	publish_n(g.port, "it-shared/o", N, 1, 0);
	int ca = read_until_marker(a, got2, N, "it-shared/o", true);
	int cb = read_until_marker(b, got2, N, "it-shared/o", true);
	print_message("after it came back: %d and %d\n", ca, cb);
	assert_int_equal(ca, N / 2);
	assert_int_equal(cb, N / 2);
	/* Clean up the persistent session. */
	close(a);
	struct raw_connect cc = { .client_id = "it-shared-op", .clean = true };
	a = itutil_connect_with(g.port, &cc, NULL);
	close(a);
	close(b);
}

/* QoS 2: a message sent to a member that leaves before its PUBREC is
 * completed with that member when it comes back [MQTT-4.8.2-4] and is
 * never sent to another [MQTT-4.8.2-5]. */
static void test_qos2_stays_with_member(void **state)
{
	enum { N = 4 };
	(void)state;
	bool got[N] = { 0 };
	struct raw_connect cp = { .client_id = "it-shared-q2a" };
	struct itutil_pkt p;
	struct v5 v;

	int a = itutil_connect_with(g.port, &cp, NULL);
	assert_true(a >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "$share/q2/it-shared/q2", 2), 0);
	assert_int_equal(itutil_subscribe(a, 2, MARKER, 0), 0);
	v5_start(&v, g.port, "it-shared-q2b", "$share/q2/it-shared/q2", 2);
	publish_n(g.port, "it-shared/q2", N, 2, 0);
	/* a holds its share without a PUBREC. */
	uint16_t pids[N];
	int ca = 0;
	for (;;) {
		assert_int_equal(itutil_recv_publish(a, &p, WAIT_MS), 0);
		if (strcmp(p.topic, MARKER) == 0)
			break;
		assert_int_equal(p.qos, 2);
		int i = atoi(p.payload + 1);
		assert_true(i >= 0 && i < N && !got[i]);
		got[i] = true;
		pids[ca++] = p.pid;
	}
	v5_wait(&v, 0);
	close(a);
	itutil_sleep_ms(500);
	pthread_mutex_lock(&v.mu);
	int cb = v.count;
	for (int i = 0; i < N; i++)
		assert_false(got[i] && v.got[i]); /* none of a's went to b */
	pthread_mutex_unlock(&v.mu);
	print_message("held by the leaver: %d, the other: %d\n", ca, cb);
	assert_int_equal(ca + cb, N);
	assert_true(ca > 0);

	bool present = false;
	a = itutil_connect_with(g.port, &cp, &present);
	assert_true(a >= 0);
	assert_true(present);
	/* Resent at once, in order, with DUP (MQTT-4.4.0-1); then the flow. */
	for (int k = 0; k < ca; k++) {
		assert_int_equal(itutil_recv_publish(a, &p, WAIT_MS), 0);
		assert_true(p.dup);
		assert_int_equal(p.pid, pids[k]);
	}
	for (int k = 0; k < ca; k++) {
		assert_int_equal(itutil_send_ack(a, 0x50, pids[k]), 0);
		assert_int_equal(itutil_expect_ack(a, 0x62, pids[k], WAIT_MS), 0);
		assert_int_equal(itutil_send_ack(a, 0x70, pids[k]), 0);
	}
	assert_true(itutil_quiet(a, 300));
	close(a);
	struct raw_connect cc = { .client_id = "it-shared-q2a", .clean = true };
	a = itutil_connect_with(g.port, &cc, NULL);
	close(a);
	v5_stop(&v);
}

/* ---- subscribe and unsubscribe --------------------------------------------- */

/* No retained message on a shared subscription [MQTT-4.8.2]; a plain one
 * gets it. */
static void test_no_retained(void **state)
{
	(void)state;
	int pub = itutil_connect(g.port, "it-shared-rpub", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-shared/r", "kept", 4, 1, true, 1), 0);
	/* Even one stored under the subscription's literal string is not sent. */
	assert_int_equal(raw_mqtt_publish(pub, "$share/r/it-shared/r", "odd", 3, 1, true, 4), 0);

	int a = itutil_connect(g.port, "it-shared-ra", true, 0, NULL);
	assert_true(a >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "$share/r/it-shared/r", 1), 0);
	assert_true(itutil_quiet(a, 500));
	int plain = itutil_connect(g.port, "it-shared-rp", true, 0, NULL);
	assert_int_equal(itutil_subscribe(plain, 1, "it-shared/r", 1), 0);
	struct itutil_pkt p;
	assert_int_equal(itutil_recv_acked(plain, &p, WAIT_MS), 0);
	assert_true(p.retain);
	/* A live retained publish reaches the member with RETAIN 0. */
	assert_int_equal(raw_mqtt_publish(pub, "it-shared/r", "live", 4, 1, true, 2), 0);
	assert_int_equal(itutil_recv_acked(a, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "live");
	assert_false(p.retain);
	/* Clear it for the other tests. */
	assert_int_equal(raw_mqtt_publish(pub, "it-shared/r", "", 0, 1, true, 3), 0);
	assert_int_equal(raw_mqtt_publish(pub, "$share/r/it-shared/r", "", 0, 1, true, 5), 0);
	close(a);
	close(plain);
	close(pub);
}

/* 3.1.1: a share name that is empty or holds a wildcard, or no filter after
 * it, gets SUBACK 0x80 [MQTT-4.8.2-1], [MQTT-4.8.2-2]; the connection lives. */
static void test_invalid_names_311(void **state)
{
	(void)state;
	static const char *const bad[] = { "$share//it-shared/x", "$share/+/it-shared/x",
					   "$share/g", "$share/g/", "$share/#" };
	int fd = itutil_connect(g.port, "it-shared-bad", true, 0, NULL);
	uint8_t buf[256];

	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = raw_build_subscribe(buf, sizeof(buf), 4, (uint16_t)(i + 1), bad[i], 1);
		assert_true(n > 0);
		assert_int_equal(raw_send(fd, buf, (size_t)n), 0);
		n = raw_recv_packet(fd, buf, sizeof(buf), WAIT_MS);
		assert_int_equal(n, 5);
		assert_int_equal(buf[0], 0x90);
		assert_int_equal(buf[4], 0x80);
	}
	assert_int_equal(itutil_ping(fd), 0);
	close(fd);
}

/* MQTT 5: the same names, and No Local on a shared subscription
 * [MQTT-3.8.3-4], are protocol errors: DISCONNECT 0x82, then the close. */
static void test_invalid_names_v5(void **state)
{
	(void)state;
	static const struct { const char *f; uint8_t opts; } bad[] = {
		{ "$share//it-shared/x", 1 }, { "$share/+/it-shared/x", 1 },
		{ "$share/g", 1 }, { "$share/g/it-shared/x", 1 | 0x04 },
	};
	uint8_t buf[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct raw_connect rc = { .level = 5, .client_id = "it-shared-bad5", .clean = true };
		int fd = raw_connect_tcp(g.port);
		assert_true(fd >= 0);
		uint8_t code = 0xff;
		assert_int_equal(raw_mqtt_handshake(fd, &rc, &code, NULL, WAIT_MS), 0);
		assert_int_equal(code, 0);
		int n = raw_build_subscribe(buf, sizeof(buf), 5, 1, bad[i].f, bad[i].opts);
		assert_int_equal(raw_send(fd, buf, (size_t)n), 0);
		n = raw_recv_packet(fd, buf, sizeof(buf), WAIT_MS);
		assert_true(n >= 3);
		assert_int_equal(buf[0], 0xe0);   /* DISCONNECT */
		assert_int_equal(buf[2], 0x82);   /* protocol error */
		assert_true(raw_closed_within(fd, WAIT_MS));
		close(fd);
	}
	/* A valid one is granted. */
	struct raw_connect rc = { .level = 5, .client_id = "it-shared-ok5", .clean = true };
	int fd = raw_connect_tcp(g.port);
	assert_int_equal(raw_mqtt_handshake(fd, &rc, NULL, NULL, WAIT_MS), 0);
	int n = raw_build_subscribe(buf, sizeof(buf), 5, 7, "$share/g/it-shared/x", 2);
	assert_int_equal(raw_send(fd, buf, (size_t)n), 0);
	n = raw_recv_packet(fd, buf, sizeof(buf), WAIT_MS);
	assert_int_equal(n, 6);                       /* 90 04 0007 00(props) 02 */
	assert_int_equal(buf[0], 0x90);
	assert_int_equal(buf[5], 2);
	close(fd);
}

/* UNSUBSCRIBE $share/g/f ends that membership only: the session keeps its
 * other group and its plain subscription of the same filter, and the other
 * member of g now gets all of g's messages. */
static void test_unsubscribe_one_membership(void **state)
{
	enum { N = 10 };
	(void)state;
	uint8_t buf[256];
	bool got_b[N] = { 0 };

	int a = member(g.port, "it-shared-ua", "$share/g/it-shared/u", 1);
	assert_int_equal(itutil_subscribe(a, 3, "$share/h/it-shared/u", 1), 0);
	assert_int_equal(itutil_subscribe(a, 4, "it-shared/u", 1), 0);
	int b = member(g.port, "it-shared-ub", "$share/g/it-shared/u", 1);
	int n = raw_build_unsubscribe(buf, sizeof(buf), 4, 5, "$share/g/it-shared/u");
	assert_int_equal(raw_send(a, buf, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(a, 0xb0, 5, WAIT_MS), 0);

	publish_n(g.port, "it-shared/u", N, 1, 0);
	/* a: every message twice (group h, of which it is the only member, and
	 * its plain subscription), none through g. */
	int seen[N] = { 0 }, count = 0;
	for (;;) {
		struct itutil_pkt p;
		assert_int_equal(itutil_recv_acked(a, &p, WAIT_MS), 0);
		if (strcmp(p.topic, MARKER) == 0)
			break;
		int i = atoi(p.payload + 1);
		assert_true(i >= 0 && i < N);
		seen[i]++;
		count++;
	}
	assert_int_equal(count, 2 * N);
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], 2);
	assert_int_equal(read_until_marker(b, got_b, N, "it-shared/u", true), N);
	close(a);
	close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_members_qos0),
		cmocka_unit_test(test_two_members_qos1),
		cmocka_unit_test(test_three_members_qos1),
		cmocka_unit_test(test_mixed_levels),
		cmocka_unit_test(test_full_window_skipped),
		cmocka_unit_test(test_unacked_move_on_disconnect),
		cmocka_unit_test(test_queued_move_on_disconnect),
		cmocka_unit_test(test_expired_member_queue_moves),
		cmocka_unit_test(test_offline_member_passed_over),
		cmocka_unit_test(test_qos2_stays_with_member),
		cmocka_unit_test(test_no_retained),
		cmocka_unit_test(test_invalid_names_311),
		cmocka_unit_test(test_invalid_names_v5),
		cmocka_unit_test(test_unsubscribe_one_membership),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
