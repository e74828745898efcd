/*
 * it_state_hooks.c - the broker's side of State in Kafka (broker.h, the
 * state hooks) against a FAKE state layer in this process: the broker runs
 * in-process (cfg_parse_string, broker_new, broker_set_state, broker_start
 * on 127.0.0.1 port 0), the fake records every hook call and answers claims
 * from its own thread, and real MQTT clients (raw bytes over loopback,
 * 3.1.1 and 5) check what the broker does with the answers:
 *
 *   claim fields; CONNACK waits for the answer; an image resumes a session
 *   (session present 1, plain and shared subscriptions delivered); an
 *   unavailable answer or a refused claim is CONNACK 3 / 0x88; a kick closes
 *   the client (0x8E) without hooks and the next CONNECT starts afresh;
 *   subs_changed after SUBSCRIBE/UNSUBSCRIBE; a persistent session's
 *   SUBACK/UNSUBACK waits for broker_state_subs_written() (order kept,
 *   unconfirmed and timed-out answers, a clean session's not held);
 *   parked/ended (clean close,
 *   local takeover, expiry, a connection gone before its answer); the
 *   retained hook; broker_retained_apply; broker_inject_local (all, to_id);
 *   broker_state_restore; broker_close_all.
 *
 *   make build/tests/it_state_hooks && build/tests/it_state_hooks    # ~15 s
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "itutil.h"
#include "rawmqtt.h"

#define WAIT_MS 5000
#define QUIET_MS 400
#define SESSION_EXPIRY 3600
#define CONNECT_TIMEOUT_S 2
#define SUBS_TIMEOUT_MS 800

/* ---- the fake state layer -------------------------------------------------- */

enum mode {
	ANSWER_OK,           /* OK with fake.img (or none) from the answer thread */
	ANSWER_HOLD,         /* the test answers itself (held_conn) */
	ANSWER_UNAVAILABLE,  /* BROKER_CLAIM_UNAVAILABLE from the answer thread */
	ANSWER_REFUSE,       /* claim() returns -1 */
};

#define MAX_EVENTS 512
#define MAX_PENDING 64

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char ev[MAX_EVENTS][600];
	int n;
	enum mode mode;
	const struct broker_session_image *img;   /* answered with ANSWER_OK */
	uint64_t pending[MAX_PENDING];            /* claims for the answer thread */
	int npending;
	uint64_t held[8];                         /* ANSWER_HOLD: claims to answer */
	int nheld;
	bool subs_hold;                           /* subs_changed waits are the test's */
	uint64_t subs_conn[8];                    /* ... held: conn id, token */
	uint32_t subs_token[8];
	int nsubs_held;
	bool stop;
} fake = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static struct broker *br;
static struct cfg *cfg;
static int port;
static pthread_t answerer;

static void record(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&fake.mu);
	if (fake.n < MAX_EVENTS) {
		va_start(ap, fmt);
		vsnprintf(fake.ev[fake.n++], sizeof(fake.ev[0]), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&fake.cv);
	pthread_mutex_unlock(&fake.mu);
}

static int fake_claim(void *ctx, const struct broker_claim *c)
{
	(void)ctx;
	record("claim id=%.*s level=%u clean=%d persistent=%d expiry=%u will=%s delay=%u",
	       (int)c->id_len, c->id, c->level, c->clean, c->persistent, c->expiry_s,
	       c->will ? c->will->topic : "-", c->will_delay_s);
	pthread_mutex_lock(&fake.mu);
	enum mode m = fake.mode;
	if (m == ANSWER_HOLD && fake.nheld < 8)
		fake.held[fake.nheld++] = c->conn_id;
	else if (m != ANSWER_REFUSE && fake.npending < MAX_PENDING)
		fake.pending[fake.npending++] = c->conn_id;
	pthread_cond_broadcast(&fake.cv);
	pthread_mutex_unlock(&fake.mu);
	return m == ANSWER_REFUSE ? -1 : 0;
}

static void subs_text(char *out, size_t cap, const struct broker_sub *subs, size_t n)
{
	/* Sorted, so that the set's order does not matter. */
	char items[32][128];
	size_t k = n < 32 ? n : 32;
	for (size_t i = 0; i < k; i++)
		snprintf(items[i], sizeof(items[i]), "%.*s:%u", (int)subs[i].len, subs[i].filter,
			 subs[i].opts);
	qsort(items, k, sizeof(items[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (size_t i = 0; i < k; i++) {
		strncat(out, i ? "," : "", cap - strlen(out) - 1);
		strncat(out, items[i], cap - strlen(out) - 1);
	}
}

static void fake_subs(void *ctx, const char *id, uint16_t id_len, const struct broker_sub *subs,
		      size_t n, uint64_t conn_id, uint32_t token)
{
	char t[400];
	(void)ctx;
	subs_text(t, sizeof(t), subs, n);
	record("subs id=%.*s [%s]", (int)id_len, id, t);
	/* A persistent session's SUBACK waits for this: "written" at once
	 * (before the hook returns, which the contract allows), or by the
	 * test (subs_hold). */
	if (!conn_id)
		return;
	pthread_mutex_lock(&fake.mu);
	bool hold = fake.subs_hold && fake.nsubs_held < 8;
	if (hold) {
		fake.subs_conn[fake.nsubs_held] = conn_id;
		fake.subs_token[fake.nsubs_held++] = token;
	}
	pthread_mutex_unlock(&fake.mu);
	if (!hold)
		broker_state_subs_written(br, conn_id, token, true);
}

static void fake_parked(void *ctx, const char *id, uint16_t id_len, uint32_t expiry_s,
			const struct msg *will, uint32_t will_delay_s)
{
	(void)ctx;
	record("parked id=%.*s expiry=%u will=%s delay=%u", (int)id_len, id, expiry_s,
	       will ? will->topic : "-", will_delay_s);
}

static void fake_ended(void *ctx, const char *id, uint16_t id_len)
{
	(void)ctx;
	record("ended id=%.*s", (int)id_len, id);
}

static void fake_retained(void *ctx, struct msg *m)
{
	(void)ctx;
	record("retained topic=%s payload=%.*s", m->topic, (int)m->payload_len,
	       (const char *)m->payload);
}

static void *answer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&fake.mu);
	while (!fake.stop) {
		if (fake.npending == 0) {
			pthread_cond_wait(&fake.cv, &fake.mu);
			continue;
		}
		uint64_t conn = fake.pending[0];
		memmove(fake.pending, fake.pending + 1, (size_t)--fake.npending * sizeof(uint64_t));
		bool ok = fake.mode != ANSWER_UNAVAILABLE;
		const struct broker_session_image *img = fake.img;
		pthread_mutex_unlock(&fake.mu);
		broker_state_claimed(br, conn, ok ? BROKER_CLAIM_OK : BROKER_CLAIM_UNAVAILABLE,
				     ok ? img : NULL);
		pthread_mutex_lock(&fake.mu);
	}
	pthread_mutex_unlock(&fake.mu);
	return NULL;
}

static void fake_reset(enum mode m, const struct broker_session_image *img)
{
	pthread_mutex_lock(&fake.mu);
	fake.n = 0;
	fake.mode = m;
	fake.img = img;
	fake.nheld = 0;
	pthread_mutex_unlock(&fake.mu);
}

/* Index of the first event at or after from starting with prefix, waiting
 * up to timeout_ms; -1 if none. */
static int wait_event(const char *prefix, int from, int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;
	int found = -1;

	pthread_mutex_lock(&fake.mu);
	for (;;) {
		for (int i = from; i < fake.n && found < 0; i++)
			if (strncmp(fake.ev[i], prefix, strlen(prefix)) == 0)
				found = i;
		long long left = end - itutil_now_ms();
		if (found >= 0 || left <= 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (left > 50 ? 50 : left) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fake.cv, &fake.mu, &ts);
	}
	pthread_mutex_unlock(&fake.mu);
	if (found < 0)
		fprintf(stderr, "no event \"%s\"; events:\n", prefix);
	return found;
}

static int count_events(const char *prefix)
{
	int n = 0;
	pthread_mutex_lock(&fake.mu);
	for (int i = 0; i < fake.n; i++)
		n += strncmp(fake.ev[i], prefix, strlen(prefix)) == 0;
	pthread_mutex_unlock(&fake.mu);
	return n;
}

static void dump_events(void)
{
	pthread_mutex_lock(&fake.mu);
	for (int i = 0; i < fake.n; i++)
		fprintf(stderr, "  %s\n", fake.ev[i]);
	pthread_mutex_unlock(&fake.mu);
}

#define EXPECT_EVENT(prefix)                                       \
	do {                                                       \
		if (wait_event(prefix, 0, WAIT_MS) < 0)            \
			dump_events();                             \
		assert_true(count_events(prefix) >= 1);            \
	} while (0)

static uint64_t wait_held(void)
{
	long long end = itutil_now_ms() + WAIT_MS;
	uint64_t c = 0;
	while (itutil_now_ms() < end) {
		pthread_mutex_lock(&fake.mu);
		if (fake.nheld > 0) {
			c = fake.held[0];
			memmove(fake.held, fake.held + 1, (size_t)--fake.nheld * sizeof(uint64_t));
		}
		pthread_mutex_unlock(&fake.mu);
		if (c)
			break;
		itutil_sleep_ms(10);
	}
	return c;
}

/* ---- setup ----------------------------------------------------------------- */

static int group_setup(void **state)
{
	char text[512], err[256];
	(void)state;

	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("KG_DEBUG") ? LVL_DEBUG : LVL_ERROR);
	snprintf(text, sizeof(text),
		 "listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
		 "workers = 2;\n"
		 "limits = { session_expiry = %d; max_session_expiry = 3600; connect_timeout = %d; };\n",
		 SESSION_EXPIRY, CONNECT_TIMEOUT_S);
	if (cfg_parse_string(text, "it_state_hooks.cfg", &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (!(br = broker_new(cfg)))
		return -1;
	struct broker_state_ops ops = {
		.claim = fake_claim, .subs_changed = fake_subs, .parked = fake_parked,
		.ended = fake_ended, .retained = fake_retained,
		.subs_timeout_ms = SUBS_TIMEOUT_MS,
	};
	broker_set_state(br, &ops);
	if (broker_start(br) < 0)
		return -1;
	port = broker_listener_port(br, 0);
	return pthread_create(&answerer, NULL, answer_main, NULL) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	pthread_mutex_lock(&fake.mu);
	fake.stop = true;
	pthread_cond_broadcast(&fake.cv);
	pthread_mutex_unlock(&fake.mu);
	pthread_join(answerer, NULL);
	broker_stop(br);
	broker_free(br);
	cfg_free(cfg);
	return 0;
}

/* ---- raw MQTT 5 -------------------------------------------------------------- */

static size_t put_str(uint8_t *p, const void *s, size_t n)
{
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return n + 2;
}

/* An MQTT 5 CONNECT: Session Expiry Interval expiry (0: none), a will on
 * will_topic (NULL: none) with Will Delay Interval delay. */
static int connect5_send(const char *id, bool clean, uint32_t expiry, const char *will_topic,
			 uint32_t delay)
{
	uint8_t body[256], pkt[300];
	size_t n = 0;
	int fd = raw_connect_tcp(port);

	assert_true(fd >= 0);
	n += put_str(body + n, "MQTT", 4);
	body[n++] = 5;
	body[n++] = (uint8_t)((clean ? 0x02 : 0) | (will_topic ? 0x04 : 0));
	body[n++] = 0;
	body[n++] = 0;
	if (expiry) {
		body[n++] = 5;
		body[n++] = 0x11;
		body[n++] = (uint8_t)(expiry >> 24);
		body[n++] = (uint8_t)(expiry >> 16);
		body[n++] = (uint8_t)(expiry >> 8);
		body[n++] = (uint8_t)expiry;
	} else {
		body[n++] = 0;
	}
	n += put_str(body + n, id, strlen(id));
	if (will_topic) {
		if (delay) {
			body[n++] = 5;
			body[n++] = 0x18;
			body[n++] = (uint8_t)(delay >> 24);
			body[n++] = (uint8_t)(delay >> 16);
			body[n++] = (uint8_t)(delay >> 8);
			body[n++] = (uint8_t)delay;
		} else {
			body[n++] = 0;
		}
		n += put_str(body + n, will_topic, strlen(will_topic));
		n += put_str(body + n, "gone", 4);
	}
	pkt[0] = 0x10;
	pkt[1] = (uint8_t)n; /* < 128 */
	memcpy(pkt + 2, body, n);
	assert_int_equal(raw_send(fd, pkt, n + 2), 0);
	return fd;
}

/* Reads a CONNACK (3.1.1 or 5). Returns its code, -1 if none. */
static int read_connack(int fd, bool *present, int timeout_ms)
{
	uint8_t b[256];
	int n = raw_recv_packet(fd, b, sizeof(b), timeout_ms);
	if (n < 4 || b[0] != 0x20)
		return -1;
	if (present)
		*present = b[2] & 1;
	return b[3];
}

static int connect5_ok(const char *id, bool clean, uint32_t expiry, bool want_present)
{
	bool present = !want_present;
	int fd = connect5_send(id, clean, expiry, NULL, 0);
	assert_int_equal(read_connack(fd, &present, WAIT_MS), 0);
	assert_int_equal(present, want_present);
	return fd;
}

static void subscribe5(int fd, uint16_t pid, const char *filter, uint8_t opts)
{
	uint8_t b[300];
	int n = raw_build_subscribe(b, sizeof(b), 5, pid, filter, opts);
	assert_true(n > 0);
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
	assert_true(n >= 5);
	assert_int_equal(b[0], 0x90);
}

/* The next packet must be DISCONNECT with reason rc, then the close. */
static void expect_disconnect(int fd, uint8_t rc)
{
	uint8_t b[64];
	int n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
	assert_true(n >= 3);
	assert_int_equal(b[0], 0xe0);
	assert_int_equal(b[2], rc);
	assert_true(raw_closed_within(fd, WAIT_MS));
}

/* A 3.1.1 CONNECT sent; the CONNACK is read by the caller. */
static int connect4_send(const char *id, bool clean, const char *will_topic)
{
	struct raw_connect c = { .level = 4, .client_id = id, .clean = clean,
				 .will_topic = will_topic, .will_payload = "gone",
				 .will_payload_len = will_topic ? 4 : 0, .will_retain = true };
	uint8_t b[300];
	int n = raw_build_connect(b, sizeof(b), &c);
	int fd = raw_connect_tcp(port);
	assert_true(fd >= 0 && n > 0);
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	return fd;
}

static int connect4_ok(const char *id, bool clean, bool want_present)
{
	bool present = !want_present;
	int fd = itutil_connect(port, id, clean, 0, &present);
	assert_true(fd >= 0);
	assert_int_equal(present, want_present);
	return fd;
}

/* A clean 3.1.1 DISCONNECT and close. */
static void disconnect4(int fd)
{
	raw_send_hex(fd, "E0 00");
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

/* A publisher's QoS 1 message on topic. */
static void publish_from(const char *id, const char *topic, const char *payload, bool retain)
{
	int fd = connect4_ok(id, true, false);
	assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), 1, retain, 7), 0);
	disconnect4(fd);
}

static struct msg *mk(const char *topic, const char *payload, uint8_t qos, bool retain)
{
	struct msg *m = msg_new(topic, strlen(topic), payload, strlen(payload), qos, retain);
	assert_non_null(m);
	return m;
}

/* ---- tests -------------------------------------------------------------------- */

/* The claim carries what the CONNECT asked; CONNACK waits for the answer. */
static void test_claim_waits(void **state)
{
	bool present = true;
	(void)state;

	fake_reset(ANSWER_HOLD, NULL);
	int fd = connect4_send("cw-1", false, "w/cw-1");
	uint64_t conn = wait_held();
	assert_true(conn != 0);
	EXPECT_EVENT("claim id=cw-1 level=4 clean=0 persistent=1 expiry=0 will=w/cw-1 delay=0");
	/* No CONNACK before the answer; a PINGREQ sent meanwhile waits. */
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	assert_true(itutil_quiet(fd, QUIET_MS));
	broker_state_claimed(br, conn, BROKER_CLAIM_OK, NULL);
	assert_int_equal(read_connack(fd, &present, WAIT_MS), 0);
	assert_false(present);
	struct itutil_pkt p;
	assert_int_equal(itutil_recv(fd, &p, WAIT_MS), 2);
	assert_int_equal(p.first, 0xd0);
	close(fd);

	/* MQTT 5: expiry and will delay; clean start with expiry 0 is not
	 * persistent. */
	fd = connect5_send("cw-5", false, 120, "w/cw-5", 30);
	conn = wait_held();
	assert_true(conn != 0);
	EXPECT_EVENT("claim id=cw-5 level=5 clean=0 persistent=1 expiry=120 will=w/cw-5 delay=30");
	assert_true(itutil_quiet(fd, QUIET_MS));
	broker_state_claimed(br, conn, BROKER_CLAIM_OK, NULL);
	assert_int_equal(read_connack(fd, &present, WAIT_MS), 0);
	assert_false(present);
	close(fd);
	fd = connect5_send("cw-6", true, 0, NULL, 0);
	conn = wait_held();
	EXPECT_EVENT("claim id=cw-6 level=5 clean=1 persistent=0 expiry=0 will=- delay=0");
	broker_state_claimed(br, conn, BROKER_CLAIM_OK, NULL);
	assert_int_equal(read_connack(fd, NULL, WAIT_MS), 0);
	close(fd);
}

/* An image resumes a session: present 1, its plain and shared
 * subscriptions deliver. */
static void test_image_resumes(void **state)
{
	struct broker_sub subs[] = {
		{ "img/+/t", 7, 1 },
		{ "$share/g/img/s", 14, 1 },
	};
	struct broker_session_image img = { .level = 4, .expiry_s = 0, .subs = subs, .nsubs = 2 };
	struct itutil_pkt p;
	(void)state;

	fake_reset(ANSWER_OK, &img);
	int fd = connect4_ok("im-1", false, true);
	fake_reset(ANSWER_OK, NULL);
	publish_from("im-pub", "img/a/t", "one", false);
	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "img/a/t");
	assert_string_equal(p.payload, "one");
	assert_int_equal(p.qos, 1);
	publish_from("im-pub", "img/s", "two", false);
	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "img/s");
	disconnect4(fd);
	/* Clean session 1 ignores the image: nothing resumed. */
	fake_reset(ANSWER_OK, &img);
	fd = connect4_ok("im-2", true, false);
	fake_reset(ANSWER_OK, NULL);
	publish_from("im-pub", "img/b/t", "three", false);
	assert_true(itutil_quiet(fd, QUIET_MS));
	disconnect4(fd);
}

/* Unavailable: CONNACK 3 (3.1.1) / 0x88 (5) and the close; a refused
 * claim the same at once. */
static void test_unavailable(void **state)
{
	(void)state;

	fake_reset(ANSWER_UNAVAILABLE, NULL);
	int fd = connect4_send("un-1", false, NULL);
	assert_int_equal(read_connack(fd, NULL, WAIT_MS), 3);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	fd = connect5_send("un-5", false, 60, NULL, 0);
	assert_int_equal(read_connack(fd, NULL, WAIT_MS), 0x88);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	fake_reset(ANSWER_REFUSE, NULL);
	fd = connect4_send("un-2", true, NULL);
	assert_int_equal(read_connack(fd, NULL, WAIT_MS), 3);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	EXPECT_EVENT("claim id=un-2");
	struct broker_state_stats st;
	broker_state_stats(br, &st);
	assert_true(st.claims_refused >= 3);
	/* No session was made for any of them: nothing parked or ended. */
	assert_int_equal(count_events("parked"), 0);
	assert_int_equal(count_events("ended"), 0);
}

/* A kick closes the client (MQTT 5: 0x8E), publishes its will as a
 * takeover does, calls no hook; the next CONNECT has no session. */
static void test_kick(void **state)
{
	struct itutil_pkt p;
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	int watcher = connect4_ok("kk-watch", true, false);
	assert_int_equal(itutil_subscribe(watcher, 1, "w/kk-4", 1), 0);
	int fd5 = connect5_ok("kk-5", false, 600, false);
	subscribe5(fd5, 1, "kk/t", 1);
	int fd4 = connect4_send("kk-4", false, "w/kk-4");
	assert_int_equal(read_connack(fd4, NULL, WAIT_MS), 0);
	broker_state_kick(br, "kk-5", 4);
	expect_disconnect(fd5, 0x8e);
	close(fd5);
	broker_state_kick(br, "kk-4", 4);
	assert_true(raw_closed_within(fd4, WAIT_MS));
	close(fd4);
	assert_int_equal(itutil_recv_acked(watcher, &p, WAIT_MS), 0); /* kk-4's will */
	assert_string_equal(p.topic, "w/kk-4");
	itutil_sleep_ms(200);
	assert_int_equal(count_events("parked id=kk"), 0);
	assert_int_equal(count_events("ended id=kk"), 0);
	/* Sessions gone: clean 0 again finds nothing, and kk/t reaches nobody. */
	fd5 = connect5_ok("kk-5", false, 600, false);
	close(fd5);
	fd4 = connect4_ok("kk-4", false, false);
	/* An offline session is discarded too. */
	disconnect4(fd4);
	EXPECT_EVENT("parked id=kk-4");
	broker_state_kick(br, "kk-4", 4);
	fd4 = connect4_ok("kk-4", false, false);
	disconnect4(fd4);
	disconnect4(watcher);
	/* A kick right behind the answer to a claim of ours (another instance
	 * claimed just after us): the connection attaches, then is closed. */
	fake_reset(ANSWER_HOLD, NULL);
	for (int i = 0; i < 20; i++) {
		fd4 = connect4_send("kk-r", false, NULL);
		uint64_t conn = wait_held();
		assert_true(conn != 0);
		broker_state_claimed(br, conn, BROKER_CLAIM_OK, NULL);
		broker_state_kick(br, "kk-r", 4);
		assert_int_equal(read_connack(fd4, NULL, WAIT_MS), 0);
		assert_true(raw_closed_within(fd4, WAIT_MS));
		close(fd4);
	}
	assert_int_equal(count_events("parked id=kk-r"), 0);
	struct broker_state_stats st;
	broker_state_stats(br, &st);
	assert_true(st.kicks >= 23);
	assert_int_equal(st.claims_waiting, 0);
}

/* subs_changed lists the whole set after SUBSCRIBE and UNSUBSCRIBE. */
static void test_subs_changed(void **state)
{
	uint8_t b[128];
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	int fd = connect4_ok("sc-1", true, false);
	assert_int_equal(itutil_subscribe(fd, 1, "a/b", 1), 0);
	EXPECT_EVENT("subs id=sc-1 [a/b:1]");
	assert_int_equal(itutil_subscribe(fd, 2, "c/#", 0), 0);
	EXPECT_EVENT("subs id=sc-1 [a/b:1,c/#:0]");
	int n = raw_build_unsubscribe(b, sizeof(b), 4, 3, "a/b");
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(fd, 0xb0, 3, WAIT_MS), 0);
	EXPECT_EVENT("subs id=sc-1 [c/#:0]");
	/* Nothing removed: no call. */
	int before = count_events("subs id=sc-1");
	n = raw_build_unsubscribe(b, sizeof(b), 4, 4, "x/y");
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(fd, 0xb0, 4, WAIT_MS), 0);
	assert_int_equal(itutil_ping(fd), 0);
	assert_int_equal(count_events("subs id=sc-1"), before);
	/* MQTT 5 options packed: QoS 1, No Local, RAP. */
	int fd5 = connect5_ok("sc-5", true, 0, false);
	subscribe5(fd5, 1, "o/t", 0x01 | 0x04 | 0x08);
	EXPECT_EVENT("subs id=sc-5 [o/t:13]");
	close(fd5);
	disconnect4(fd);
}

/* The oldest SUBACK wait the fake holds, waiting up to WAIT_MS: 0 if none. */
static uint64_t wait_subs_held(uint32_t *token)
{
	long long end = itutil_now_ms() + WAIT_MS;
	uint64_t c = 0;
	while (!c && itutil_now_ms() < end) {
		pthread_mutex_lock(&fake.mu);
		if (fake.nsubs_held > 0) {
			c = fake.subs_conn[0];
			*token = fake.subs_token[0];
			fake.nsubs_held--;
			memmove(fake.subs_conn, fake.subs_conn + 1,
				(size_t)fake.nsubs_held * sizeof(fake.subs_conn[0]));
			memmove(fake.subs_token, fake.subs_token + 1,
				(size_t)fake.nsubs_held * sizeof(fake.subs_token[0]));
		}
		pthread_mutex_unlock(&fake.mu);
		if (!c)
			itutil_sleep_ms(10);
	}
	return c;
}

/* Next packet is the SUBACK for pid with one code. */
static void expect_suback(int fd, uint16_t pid, uint8_t code, int timeout_ms)
{
	uint8_t b[16];
	int n = raw_recv_packet(fd, b, sizeof(b), timeout_ms);
	assert_int_equal(n, 5);
	assert_int_equal(b[0], 0x90);
	assert_int_equal((b[2] << 8) | b[3], pid);
	assert_int_equal(b[4], code);
}

/* A persistent session's SUBACK waits for broker_state_subs_written()
 * (from any thread): nothing else of that connection is read meanwhile, so
 * the answers keep the order of the packets (SUBACK 1, PINGRESP, SUBACK 2
 * for one write of SUBSCRIBE 1, PINGREQ, SUBSCRIBE 2); ok false, or no
 * answer within subs_timeout_ms, still sends it, counted unconfirmed; a
 * late answer is ignored; a clean session's SUBACK does not wait. */
static void test_suback_waits(void **state)
{
	uint8_t b[256];
	uint32_t tok = 0;
	struct broker_state_stats s0, s1;
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	broker_state_stats(br, &s0);
	int cl = connect4_ok("sw-clean", true, false);
	assert_int_equal(itutil_subscribe(cl, 1, "sw/c", 1), 0);
	broker_state_stats(br, &s1);
	assert_int_equal(s1.subacks_waited, s0.subacks_waited);
	disconnect4(cl);

	int fd = connect4_ok("sw-1", false, false);
	pthread_mutex_lock(&fake.mu);
	fake.subs_hold = true;
	fake.nsubs_held = 0;
	pthread_mutex_unlock(&fake.mu);
	size_t n = 0;
	int k = raw_build_subscribe(b, sizeof(b), 4, 1, "sw/1", 1);
	assert_true(k > 0);
	n += (size_t)k;
	b[n++] = 0xC0; /* PINGREQ */
	b[n++] = 0x00;
	k = raw_build_subscribe(b + n, sizeof(b) - n, 4, 2, "sw/2", 0);
	assert_true(k > 0);
	n += (size_t)k;
	assert_int_equal(raw_send(fd, b, n), 0);
	uint64_t conn = wait_subs_held(&tok);
	assert_true(conn != 0);
	assert_true(itutil_quiet(fd, 300)); /* no SUBACK, no PINGRESP yet */
	broker_state_subs_written(br, conn, tok, true);
	expect_suback(fd, 1, 1, WAIT_MS);
	assert_int_equal(raw_recv_packet(fd, b, sizeof(b), WAIT_MS), 2);
	assert_int_equal(b[0], 0xD0); /* PINGRESP, before the second SUBACK */
	uint32_t tok2 = 0;
	assert_int_equal(wait_subs_held(&tok2), conn);
	assert_true(tok2 != tok);
	broker_state_subs_written(br, conn, tok, true); /* stale: ignored */
	assert_true(itutil_quiet(fd, 200));
	broker_state_subs_written(br, conn, tok2, false); /* not written */
	expect_suback(fd, 2, 0, WAIT_MS);

	/* No answer at all: the SUBACK after subs_timeout_ms (the worker's
	 * 250 ms tick), then a late answer changes nothing. */
	long long t0 = itutil_now_ms();
	k = raw_build_subscribe(b, sizeof(b), 4, 3, "sw/3", 1);
	assert_int_equal(raw_send(fd, b, (size_t)k), 0);
	uint32_t tok3 = 0;
	assert_int_equal(wait_subs_held(&tok3), conn);
	expect_suback(fd, 3, 1, SUBS_TIMEOUT_MS + 2000);
	long long took = itutil_now_ms() - t0;
	assert_true(took >= SUBS_TIMEOUT_MS - 50);
	broker_state_subs_written(br, conn, tok3, true);
	assert_int_equal(itutil_ping(fd), 0);
	broker_state_stats(br, &s1);
	assert_int_equal(s1.subacks_waited, s0.subacks_waited + 3);
	assert_int_equal(s1.subacks_unconfirmed, s0.subacks_unconfirmed + 2);

	/* UNSUBACK waits the same way. */
	n = (size_t)raw_build_unsubscribe(b, sizeof(b), 4, 4, "sw/1");
	assert_int_equal(raw_send(fd, b, n), 0);
	uint32_t tok4 = 0;
	assert_int_equal(wait_subs_held(&tok4), conn);
	assert_true(itutil_quiet(fd, 200));
	broker_state_subs_written(br, conn, tok4, true);
	assert_int_equal(itutil_expect_ack(fd, 0xb0, 4, WAIT_MS), 0);
	EXPECT_EVENT("subs id=sw-1 [sw/2:0,sw/3:1]");

	pthread_mutex_lock(&fake.mu);
	fake.subs_hold = false;
	pthread_mutex_unlock(&fake.mu);
	disconnect4(fd);
}

/* parked and ended at the right times, and not for a local takeover. */
static void test_parked_ended(void **state)
{
	char want[128];
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	int fd = connect4_ok("pe-1", false, false);
	disconnect4(fd);
	snprintf(want, sizeof(want), "parked id=pe-1 expiry=%d will=- delay=0", SESSION_EXPIRY);
	EXPECT_EVENT(want);
	fd = connect4_ok("pe-2", true, false);
	disconnect4(fd);
	EXPECT_EVENT("ended id=pe-2");
	/* MQTT 5 dropped without DISCONNECT: its delayed will rides along. */
	fd = connect5_send("pe-5", false, 60, "w/pe-5", 30);
	assert_int_equal(read_connack(fd, NULL, WAIT_MS), 0);
	close(fd);
	EXPECT_EVENT("parked id=pe-5 expiry=60 will=w/pe-5 delay=30");
	/* Local takeover: the older connection's session ends without a call;
	 * the newer one's end is told once. */
	int a = connect4_ok("pe-3", true, false);
	int b = connect4_ok("pe-3", true, false);
	assert_true(raw_closed_within(a, WAIT_MS));
	close(a);
	itutil_sleep_ms(200);
	assert_int_equal(count_events("ended id=pe-3"), 0);
	disconnect4(b);
	EXPECT_EVENT("ended id=pe-3");
	itutil_sleep_ms(100);
	assert_int_equal(count_events("ended id=pe-3"), 1);
	/* Expiry: an MQTT 5 session of 1 s ends through the sweep. */
	fd = connect5_ok("pe-x", false, 1, false);
	close(fd);
	EXPECT_EVENT("parked id=pe-x expiry=1");
	assert_true(wait_event("ended id=pe-x", 0, WAIT_MS) >= 0);
	/* No answer within the connect timeout: CONNACK 3. The answer that
	 * comes later settles the session as attached-and-closed. */
	fake_reset(ANSWER_HOLD, NULL);
	fd = connect4_send("pe-g", false, NULL);
	int fd2 = connect4_send("pe-h", true, NULL);
	uint64_t cg = wait_held(), ch = wait_held();
	assert_true(cg && ch);
	assert_int_equal(read_connack(fd, NULL, CONNECT_TIMEOUT_S * 1000 + WAIT_MS), 3);
	assert_int_equal(read_connack(fd2, NULL, WAIT_MS), 3);
	close(fd);
	close(fd2);
	assert_int_equal(count_events("parked id=pe-g"), 0);
	broker_state_claimed(br, cg, BROKER_CLAIM_OK, NULL);
	broker_state_claimed(br, ch, BROKER_CLAIM_OK, NULL);
	EXPECT_EVENT("parked id=pe-g");
	EXPECT_EVENT("ended id=pe-h");
	fake_reset(ANSWER_OK, NULL);
	fd = connect4_ok("pe-g", false, true); /* the parked one is here */
	disconnect4(fd);
}

/* The retained hook: client publishes (set and clear) and broker_inject. */
static void test_retained_hook(void **state)
{
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	publish_from("rh-pub", "rh/x", "kept", true);
	EXPECT_EVENT("retained topic=rh/x payload=kept");
	publish_from("rh-pub", "rh/x", "", true);
	EXPECT_EVENT("retained topic=rh/x payload=");
	assert_int_equal(broker_inject(br, mk("rh/down", "cmd", 1, true)), 0);
	EXPECT_EVENT("retained topic=rh/down payload=cmd");
	/* Not retained: no call. */
	publish_from("rh-pub", "rh/y", "live", false);
	itutil_sleep_ms(100);
	assert_int_equal(count_events("retained topic=rh/y"), 0);
}

/* broker_retained_apply stores for new subscribers, with no hook call. */
static void test_retained_apply(void **state)
{
	struct itutil_pkt p;
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	struct msg *m = mk("ra/x", "from-afar", 1, true);
	assert_int_equal(broker_retained_apply(br, m), 0);
	msg_unref(m);
	int fd = connect4_ok("ra-1", true, false);
	assert_int_equal(itutil_subscribe(fd, 1, "ra/#", 1), 0);
	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "ra/x");
	assert_string_equal(p.payload, "from-afar");
	assert_true(p.retain);
	/* A clear (empty payload). */
	m = mk("ra/x", "", 0, true);
	assert_int_equal(broker_retained_apply(br, m), 0);
	msg_unref(m);
	int fd2 = connect4_ok("ra-2", true, false);
	assert_int_equal(itutil_subscribe(fd2, 1, "ra/#", 1), 0);
	assert_true(itutil_quiet(fd2, QUIET_MS));
	assert_int_equal(count_events("retained"), 0);
	disconnect4(fd2);
	disconnect4(fd);
}

/* broker_inject_local: to every local subscriber, or to_id alone; nothing
 * stored, no hook. */
static void test_inject_local(void **state)
{
	struct itutil_pkt p;
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	int a = connect4_ok("il-a", true, false);
	int b = connect4_ok("il-b", true, false);
	assert_int_equal(itutil_subscribe(a, 1, "il/#", 1), 0);
	assert_int_equal(itutil_subscribe(b, 1, "il/t", 1), 0);
	assert_int_equal(broker_inject_local(br, mk("il/t", "all", 1, true), NULL, 0), 0);
	assert_int_equal(itutil_recv_acked(a, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "all");
	assert_false(p.retain); /* no Retain As Published */
	assert_int_equal(itutil_recv_acked(b, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "all");
	assert_int_equal(broker_inject_local(br, mk("il/t", "only-b", 1, false), "il-b", 4), 0);
	assert_int_equal(itutil_recv_acked(b, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "only-b");
	assert_true(itutil_quiet(a, QUIET_MS));
	/* A session with no matching filter, or none at all: nothing. */
	assert_int_equal(broker_inject_local(br, mk("il/u", "x", 1, false), "il-b", 4), 0);
	assert_int_equal(broker_inject_local(br, mk("il/t", "x", 1, false), "nobody", 6), 0);
	assert_true(itutil_quiet(b, QUIET_MS));
	assert_true(itutil_quiet(a, 1));
	/* Not stored as retained, no hook. */
	int c = connect4_ok("il-c", true, false);
	assert_int_equal(itutil_subscribe(c, 1, "il/#", 1), 0);
	assert_true(itutil_quiet(c, QUIET_MS));
	assert_int_equal(count_events("retained"), 0);
	disconnect4(c);
	disconnect4(b);
	disconnect4(a);
}

/* broker_state_restore: an offline session queues, the next CONNECT with
 * clean 0 resumes it. */
static void test_restore(void **state)
{
	struct broker_sub subs[] = { { "rs/t", 4, 1 } };
	struct broker_session_image img = { .level = 4, .parked_at_ms = 0, .subs = subs,
					    .nsubs = 1 };
	struct itutil_pkt p;
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	assert_int_equal(broker_state_restore(br, "rs-1", 4, &img), 0);
	assert_int_equal(broker_state_restore(br, "rs-1", 4, &img), 1);
	publish_from("rs-pub", "rs/t", "queued", false);
	int fd = connect4_ok("rs-1", false, true);
	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, "queued");
	disconnect4(fd);
	/* MQTT 5 image whose expiry has passed: the sweep ends it. */
	struct broker_session_image old = { .level = 5, .expiry_s = 1,
					    .parked_at_ms = 1, .subs = subs, .nsubs = 1 };
	assert_int_equal(broker_state_restore(br, "rs-5", 4, &old), 0);
	assert_true(wait_event("ended id=rs-5", 0, WAIT_MS) >= 0);
}

/* broker_close_all: everybody closed (MQTT 5: 0x88), no will, sessions
 * parked. */
static void test_close_all(void **state)
{
	(void)state;

	fake_reset(ANSWER_OK, NULL);
	int fd4 = connect4_send("ca-4", false, "ca/will");
	assert_int_equal(read_connack(fd4, NULL, WAIT_MS), 0);
	int fd5 = connect5_ok("ca-5", false, 60, false);
	broker_close_all(br, "test");
	expect_disconnect(fd5, 0x88);
	assert_true(raw_closed_within(fd4, WAIT_MS));
	close(fd4);
	close(fd5);
	EXPECT_EVENT("parked id=ca-4");
	EXPECT_EVENT("parked id=ca-5");
	/* The will (retained) was not published. */
	int fd = connect4_ok("ca-check", true, false);
	assert_int_equal(itutil_subscribe(fd, 1, "ca/#", 1), 0);
	assert_true(itutil_quiet(fd, QUIET_MS));
	disconnect4(fd);
	assert_int_equal(count_events("retained topic=ca/will"), 0);
	fd4 = connect4_ok("ca-4", false, true);
	disconnect4(fd4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim_waits),
		cmocka_unit_test(test_image_resumes),
		cmocka_unit_test(test_unavailable),
		cmocka_unit_test(test_kick),
		cmocka_unit_test(test_subs_changed),
		cmocka_unit_test(test_suback_waits),
		cmocka_unit_test(test_parked_ended),
		cmocka_unit_test(test_retained_hook),
		cmocka_unit_test(test_retained_apply),
		cmocka_unit_test(test_inject_local),
		cmocka_unit_test(test_restore),
		cmocka_unit_test(test_close_all),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
