/*
 * it_connect.c - CONNECT rules, takeover, keepalive, connect timeout, and
 * malformed packets at the socket (each closes only its own connection).
 *
 * One gateway for the file (connect_timeout = 1 so the timeout test is
 * quick; every other test sends its CONNECT at once).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"

#define WAIT_MS 3000

static struct gw g;

static int group_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { connect_timeout = 1; };");
}

static int group_teardown(void **state)
{
	(void)state;
	gw_stop(&g);
	return 0;
}

/* Sends one raw CONNECT and returns the bytes of the first packet back
 * (0 if the server closed first). */
static int send_connect(int fd, const struct raw_connect *c, uint8_t *in, size_t cap)
{
	uint8_t out[256];
	int n = raw_build_connect(out, sizeof(out), c);

	assert_true(n > 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	return raw_recv_packet(fd, in, cap, WAIT_MS);
}

static void test_first_packet_must_be_connect(void **state)
{
	const char *firsts[] = {
		"C0 00",                         /* PINGREQ */
		"30 07 0003 612F62 6869",        /* PUBLISH a/b "hi" */
		"82 08 0001 0003 612F62 00",     /* SUBSCRIBE a/b */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
		int fd = raw_connect_tcp(g.port);

		assert_true(fd >= 0);
		assert_int_equal(raw_send_hex(fd, firsts[i]), 0);
		/* Nothing may come back (no PINGRESP, no SUBACK): just the close. */
		assert_true(itutil_closed_silently(fd, WAIT_MS));
		close(fd);
	}
}

static void test_second_connect_closes(void **state)
{
	struct raw_connect c = { .client_id = "it-conn-twice", .clean = true };
	uint8_t out[64];
	int fd = itutil_connect(g.port, "it-conn-twice", true, 0, NULL);
	int n = raw_build_connect(out, sizeof(out), &c);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_bad_protocol_level_rc1(void **state)
{
	uint8_t levels[] = { 6, 2 };
	(void)state;
	for (size_t i = 0; i < sizeof(levels); i++) {
		struct raw_connect c = { .level = levels[i], .client_id = "it-conn-lvl", .clean = true };
		uint8_t in[16];
		int fd = raw_connect_tcp(g.port);

		assert_true(fd >= 0);
		/* Exactly 20 02 00 01, then the close [MQTT-3.1.2-2]. */
		assert_int_equal(send_connect(fd, &c, in, sizeof(in)), 4);
		assert_int_equal(in[0], 0x20);
		assert_int_equal(in[1], 0x02);
		assert_int_equal(in[2], 0x00);
		assert_int_equal(in[3], 0x01);
		assert_true(raw_closed_within(fd, WAIT_MS));
		close(fd);
	}
}

static void test_mqisdp_name_with_level_4_rc1(void **state)
{
	/* "MQIsdp" is only valid with level 3. */
	uint8_t in[16];
	int fd = raw_connect_tcp(g.port);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(raw_send_hex(fd, "10 13 0006 4D5149736470 04 02 0000 0005 69742D6D71"), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
	assert_int_equal(in[0], 0x20);
	assert_int_equal(in[3], 0x01);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_empty_id_persistent_rc2(void **state)
{
	struct raw_connect c = { .client_id = "", .clean = false };
	uint8_t in[16];
	int fd = raw_connect_tcp(g.port);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(send_connect(fd, &c, in, sizeof(in)), 4);
	assert_int_equal(in[0], 0x20);
	assert_int_equal(in[2], 0x00);
	assert_int_equal(in[3], 0x02);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_empty_id_clean_accepted(void **state)
{
	bool present = true;
	int a = itutil_connect(g.port, "", true, 0, &present);
	int b;

	(void)state;
	assert_true(a >= 0);
	assert_false(present);
	/* Two anonymous clients get distinct identities: neither takes over. */
	b = itutil_connect(g.port, "", true, 0, NULL);
	assert_true(b >= 0);
	assert_int_equal(itutil_ping(a), 0);
	assert_int_equal(itutil_ping(b), 0);
	close(a);
	close(b);
}

/* The server refuses a CONNECT: closes, at most after a CONNACK with a
 * non-zero return code. */
static void assert_refused(int fd)
{
	uint8_t in[16];
	int n;

	errno = 0;
	n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	if (n == 4 && in[0] == 0x20) {
		assert_int_not_equal(in[3], 0);
		assert_true(raw_closed_within(fd, WAIT_MS));
		return;
	}
	if (n > 0)
		print_error("unexpected packet type 0x%02X\n", in[0]);
	assert_int_equal(n > 0 ? n : 0, 0);
	assert_true(n == 0 || errno != ETIMEDOUT);
}

struct bad_case {
	const char *name;
	const char *hex;
};

/* Malformed CONNECTs [MQTT-3.1.2-3, -13..15, -22], [MQTT-1.5.3-1, -2]. */
static const struct bad_case bad_connects[] = {
	{ "reserved-flag", "10 11 0004 4D515454 04 03 0000 0005 69742D7266" },
	{ "password-without-username", "10 15 0004 4D515454 04 42 0000 0005 69742D7077 0002 7077" },
	{ "will-qos-without-will-flag", "10 11 0004 4D515454 04 0A 0000 0005 69742D7771" },
	{ "will-retain-without-will-flag", "10 11 0004 4D515454 04 22 0000 0005 69742D7772" },
	{ "will-qos3", "10 19 0004 4D515454 04 1E 0000 0005 69742D7733 0003 612F62 0001 78" },
	{ "will-topic-wildcard", "10 19 0004 4D515454 04 06 0000 0005 69742D7774 0003 612F23 0001 78" },
	{ "client-id-bad-utf8", "10 10 0004 4D515454 04 02 0000 0004 6974C328" },
	{ "client-id-nul", "10 10 0004 4D515454 04 02 0000 0004 69740078" },
	{ "trailing-byte", "10 12 0004 4D515454 04 02 0000 0005 69742D7467 00" },
};

static void test_malformed_connect_refused(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_connects) / sizeof(bad_connects[0]); i++) {
		int fd = raw_connect_tcp(g.port);

		print_message("CONNECT %s\n", bad_connects[i].name);
		assert_true(fd >= 0);
		assert_int_equal(raw_send_hex(fd, bad_connects[i].hex), 0);
		assert_refused(fd);
		close(fd);
	}
}

static void test_username_password_accepted(void **state)
{
	/* No authentication configured: credentials are accepted. */
	struct raw_connect c = { .client_id = "it-conn-up", .clean = true,
				 .username = "user", .password = "secret" };
	int fd = itutil_connect_with(g.port, &c, NULL);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(itutil_ping(fd), 0);
	close(fd);
}

static void test_mqtt31_accepted(void **state)
{
	struct raw_connect c = { .level = 3, .client_id = "it-conn-31", .clean = true };
	uint8_t out[64], in[64];
	int fd = itutil_connect_with(g.port, &c, NULL), n;

	(void)state;
	assert_true(fd >= 0);
	/* The 3.1 wire format of SUBSCRIBE/PUBLISH is the 3.1.1 one. */
	n = raw_build_subscribe(out, sizeof(out), 3, 5, "it31/t", 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 5);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[4], 0x00);
	n = raw_build_publish(out, sizeof(out), 3, "it31/t", "x", 1, 0, false, false, 0);
	assert_int_equal(raw_send(fd, out, (size_t)n), 0);
	n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_int_equal(n, 11);
	assert_int_equal(in[0], 0x30);
	assert_memory_equal(in + 4, "it31/tx", 7);
	close(fd);
}

static void test_mqtt31_long_id_rc2(void **state)
{
	/* MQTT 3.1: client ids are 1..23 characters, others get CONNACK 2. */
	struct raw_connect c = { .level = 3, .client_id = "it-conn-31-abcdefghijklmnop",
				 .clean = true };
	uint8_t in[16];
	int fd = raw_connect_tcp(g.port);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(send_connect(fd, &c, in, sizeof(in)), 4);
	assert_int_equal(in[0], 0x20);
	assert_int_equal(in[3], 0x02);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
}

static void test_takeover_closes_older(void **state)
{
	/* Several rounds so that the two connections land on the same worker
	 * and on different ones (SO_REUSEPORT spreads them). */
	int old = itutil_connect(g.port, "it-conn-take", false, 0, NULL);
	(void)state;
	assert_true(old >= 0);
	for (int i = 0; i < 8; i++) {
		bool present = false;
		int fd = itutil_connect(g.port, "it-conn-take", false, 0, &present);

		assert_true(fd >= 0);
		assert_true(present);
		assert_true(raw_closed_within(old, WAIT_MS));
		close(old);
		assert_int_equal(itutil_ping(fd), 0);
		old = fd;
	}
	close(old);
}

/* CONNECT, SUBSCRIBE, PUBLISH (to itself) and PINGREQ in one buffer. */
static size_t build_pipeline(uint8_t *out, size_t cap, const char *id, bool clean)
{
	struct raw_connect c = { .client_id = id, .clean = clean };
	int a = raw_build_connect(out, cap, &c), b, d;

	assert_true(a > 0);
	b = raw_build_subscribe(out + a, cap - (size_t)a, 4, 3, "it-conn/pipe", 0);
	assert_true(b > 0);
	d = raw_build_publish(out + a + b, cap - (size_t)(a + b), 4, "it-conn/pipe", "p", 1, 0,
			      false, false, 0);
	assert_true(d > 0 && (size_t)(a + b + d) + 2 <= cap);
	out[a + b + d] = 0xC0;
	out[a + b + d + 1] = 0x00;
	return (size_t)(a + b + d + 2);
}

/* The answers to build_pipeline(), in order. */
static void expect_pipeline_answers(int fd, bool present)
{
	uint8_t in[64];

	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
	assert_int_equal(in[0], 0x20);
	assert_int_equal(in[2], present ? 1 : 0);
	assert_int_equal(in[3], 0);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 5);
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[3], 3);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 17);
	assert_int_equal(in[0], 0x30);
	assert_memory_equal(in + 4, "it-conn/pipep", 13);
	assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 2);
	assert_int_equal(in[0], 0xD0);
}

/* Packets that arrive with the CONNECT, or one byte per segment. */
static void test_pipelined_and_split_packets(void **state)
{
	uint8_t out[256];
	size_t n = build_pipeline(out, sizeof(out), "it-conn-pipe", true);
	int fd = raw_connect_tcp(g.port);
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, out, n), 0);
	expect_pipeline_answers(fd, false);
	close(fd);

	fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(raw_send(fd, out + i, 1), 0);
		itutil_sleep_ms(1);
	}
	expect_pipeline_answers(fd, false);
	close(fd);
}

/* A takeover makes the new connection wait for the old one to close; the
 * packets that came with its CONNECT must still be handled, in order. */
static void test_takeover_with_pipelined_packets(void **state)
{
	uint8_t out[256];
	size_t n = build_pipeline(out, sizeof(out), "it-conn-tpipe", false);
	int old = itutil_connect(g.port, "it-conn-tpipe", false, 0, NULL);
	(void)state;
	assert_true(old >= 0);

	for (int i = 0; i < 8; i++) {
		int fd = raw_connect_tcp(g.port);

		assert_true(fd >= 0);
		assert_int_equal(raw_send(fd, out, n), 0);
		expect_pipeline_answers(fd, true);
		assert_true(raw_closed_within(old, WAIT_MS));
		close(old);
		old = fd;
	}
	close(old);
}

/*
 * Keepalive 1 s: the server closes between 1.5 s and ~2.5 s after the last
 * packet it received [MQTT-3.1.2-24]. Ten connections send their last
 * PINGREQ 25 ms apart, so timer-phase effects in the server show up.
 */
static void test_keepalive_closes_after_1_5x(void **state)
{
	enum { N = 10 };
	int fd[N];
	long long sent[N], closed[N];
	(void)state;

	for (int i = 0; i < N; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-conn-ka-%d", i);
		fd[i] = itutil_connect(g.port, id, true, 1, NULL);
		assert_true(fd[i] >= 0);
	}
	for (int i = 0; i < N; i++) {
		sent[i] = itutil_now_ms();
		assert_int_equal(itutil_ping(fd[i]), 0);
		closed[i] = 0;
		itutil_sleep_ms(25);
	}
	for (int left = N; left > 0;) {
		struct pollfd pfd[N];

		assert_true(itutil_now_ms() - sent[0] < 4000);
		for (int i = 0; i < N; i++)
			pfd[i] = (struct pollfd){ .fd = closed[i] ? -1 : fd[i], .events = POLLIN };
		if (poll(pfd, N, 10) <= 0)
			continue;
		for (int i = 0; i < N; i++) {
			uint8_t sink[64];

			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			/* Anything but a close (a stray packet) would be a bug too. */
			assert_true(recv(fd[i], sink, sizeof(sink), 0) <= 0);
			closed[i] = itutil_now_ms();
			left--;
		}
	}
	for (int i = 0; i < N; i++) {
		long long t = closed[i] - sent[i];

		print_message("keepalive conn %d closed after %lld ms\n", i, t);
		assert_true(t >= 1480);
		assert_true(t <= 2600);
		close(fd[i]);
	}
}

/*
 * The 1.5 x keepalive runs from the last packet received, whatever the phase
 * of the server's periodic timer. With one worker, the moment a silent
 * connection is closed shows when that worker's timer fires; the measured
 * connection then sends its last PINGREQ 10 ms before the timer's next
 * firings, where a server that stamps packets with the time of its last
 * timer tick (not the time of the read) closes it about 250 ms early.
 */
static struct gw g1;

static int one_worker_setup(void **state)
{
	(void)state;
	return gw_start(&g1, "workers = 1;");
}

static int one_worker_teardown(void **state)
{
	(void)state;
	return gw_stop(&g1) == 0 ? 0 : -1;
}

static void test_keepalive_timer_phase(void **state)
{
	enum { N = 3 };
	static const int offsets[N] = { 235, 240, 245 };
	int fd[N], probe;
	long long last = itutil_now_ms(), tick = 0, sent[N];
	(void)state;

	probe = itutil_connect(g1.port, "it-conn-kp-probe", true, 1, NULL);
	assert_true(probe >= 0);
	for (int i = 0; i < N; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-conn-kp-%d", i);
		fd[i] = itutil_connect(g1.port, id, true, 1, NULL);
		assert_true(fd[i] >= 0);
	}
	while (tick == 0) {
		assert_true(itutil_now_ms() - last < 3000);
		if (raw_closed_within(probe, 20)) {
			tick = itutil_now_ms();
		} else if (itutil_now_ms() - last >= 200) {
			for (int i = 0; i < N; i++)
				assert_int_equal(itutil_ping(fd[i]), 0);
			last = itutil_now_ms();
		}
	}
	close(probe);
	for (int i = 0; i < N; i++) {
		while (itutil_now_ms() < tick + offsets[i])
			itutil_sleep_ms(1);
		sent[i] = itutil_now_ms();
		assert_int_equal(itutil_ping(fd[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		long long t;

		assert_true(raw_closed_within(fd[i], 4000));
		t = itutil_now_ms() - sent[i];
		print_message("last PINGREQ %d ms after a timer tick: closed after %lld ms\n",
			      offsets[i], t);
		assert_true(t >= 1480);
		close(fd[i]);
	}
}

static void test_keepalive_kept_by_pings(void **state)
{
	int fd = itutil_connect(g.port, "it-conn-ka-ping", true, 1, NULL);
	(void)state;

	assert_true(fd >= 0);
	/* 3 s of PINGREQ every 0.5 s: never silent for 1.5 s, never closed. */
	for (int i = 0; i < 6; i++) {
		itutil_sleep_ms(500);
		assert_int_equal(itutil_ping(fd), 0);
	}
	close(fd);
}

static void test_no_connect_within_timeout_closes(void **state)
{
	long long t0 = itutil_now_ms();
	int quiet = raw_connect_tcp(g.port);
	int partial = raw_connect_tcp(g.port);
	(void)state;

	assert_true(quiet >= 0 && partial >= 0);
	/* Half a CONNECT is not a CONNECT either. */
	assert_int_equal(raw_send_hex(partial, "10 11 0004 4D51"), 0);
	assert_false(raw_closed_within(quiet, 500));
	assert_true(raw_closed_within(quiet, 3000));
	print_message("no-CONNECT connection closed after %lld ms\n", itutil_now_ms() - t0);
	assert_true(itutil_now_ms() - t0 >= 900);
	assert_true(raw_closed_within(partial, 1000));
	close(quiet);
	close(partial);
}

/*
 * A refused CONNECT ends the connection: packets that came in the same
 * write (a will, a PUBLISH and a SUBSCRIBE to the observer's topics, a
 * PINGREQ) are not processed [MQTT-3.1.4-5]. The victim gets its CONNACK
 * and the close, nothing else; the observer gets nothing but the marker.
 */
static void test_refused_connect_ignores_rest(void **state)
{
	static const struct { uint8_t level; const char *id; bool clean; uint8_t rc; } cases[] = {
		{ 6, "it-conn-ref6", true, 1 },
		{ 4, "", false, 2 },
		{ 3, "it-conn-ref3-abcdefghijklmnop", true, 2 },
	};
	int obs = itutil_connect(g.port, "it-conn-ref-obs", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-conn-ref-pub", true, 0, NULL);
	struct itutil_pkt p;
	(void)state;

	assert_true(obs >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, "it-conn/ref/#", 0), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t level = cases[i].level == 6 ? 4 : cases[i].level;
		struct raw_connect c = { .level = cases[i].level, .client_id = cases[i].id,
					 .clean = cases[i].clean, .will_topic = "it-conn/ref/will",
					 .will_payload = "w", .will_payload_len = 1 };
		uint8_t out[256], in[16];
		int a = raw_build_connect(out, sizeof(out), &c), b, d, fd;

		print_message("level %u, client id \"%s\", clean %d\n", cases[i].level,
			      cases[i].id, cases[i].clean);
		assert_true(a > 0);
		b = raw_build_publish(out + a, sizeof(out) - (size_t)a, level, "it-conn/ref/pub",
				      "p", 1, 0, false, false, 0);
		assert_true(b > 0);
		d = raw_build_subscribe(out + a + b, sizeof(out) - (size_t)(a + b), level, 3,
					"it-conn/ref/#", 0);
		assert_true(d > 0 && (size_t)(a + b + d) + 2 <= sizeof(out));
		out[a + b + d] = 0xC0;
		out[a + b + d + 1] = 0x00;
		fd = raw_connect_tcp(g.port);
		assert_true(fd >= 0);
		assert_int_equal(raw_send(fd, out, (size_t)(a + b + d) + 2), 0);
		assert_int_equal(raw_recv_packet(fd, in, sizeof(in), WAIT_MS), 4);
		assert_int_equal(in[0], 0x20);
		assert_int_equal(in[1], 0x02);
		assert_int_equal(in[3], cases[i].rc);
		assert_true(itutil_closed_silently(fd, WAIT_MS));
		close(fd);
	}
	assert_true(itutil_quiet(obs, 500));
	assert_int_equal(itutil_send_publish(pub, "it-conn/ref/marker", "m", 1, 0, false, 0), 0);
	assert_int_equal(itutil_recv_publish(obs, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-conn/ref/marker");
	close(obs);
	close(pub);
}

/* ---- malformed packets after a good CONNECT ---------------------------- */

static const struct bad_case bad_cases[] = {
	{ "remaining-length-5-bytes", "30 FF FF FF FF 01" },
	{ "pingreq-reserved-flags", "C1 00" },
	{ "subscribe-reserved-flags", "80 08 0001 0003 612F62 00" },
	{ "pubrel-reserved-flags", "60 02 0001" },
	{ "publish-qos3", "36 09 0003 612F62 0001 6869" },
	{ "publish-topic-plus", "30 07 0003 612F2B 6869" },
	{ "publish-topic-hash", "30 07 0003 612F23 6869" },
	{ "publish-topic-bad-utf8", "30 07 0003 61C328 6869" },
	{ "publish-topic-surrogate", "30 07 0003 EDA080 6869" },
	{ "publish-topic-nul", "30 07 0003 610062 6869" },
	{ "publish-topic-empty", "30 04 0000 6869" },
	{ "publish-qos1-packet-id-0", "32 09 0003 612F62 0000 6869" },
	{ "subscribe-no-topics", "82 02 0001" },
	{ "subscribe-qos3", "82 08 0001 0003 612F62 03" },
	{ "subscribe-options-reserved", "82 08 0001 0003 612F62 04" },
	{ "unsubscribe-no-topics", "A2 02 0001" },
	{ "connack-from-client", "20 02 0000" },
	{ "second-connect", "10 11 0004 4D515454 04 02 0000 0005 69742D6263" },
};

/*
 * The victim has a will; after its bad bytes it must be closed, its will
 * must reach the observer, and the observer's own connection must still
 * answer PINGREQ.
 */
static void test_malformed(void **state)
{
	const struct bad_case *bc = *state;
	char will_topic[96], id[96];
	struct raw_connect vc = { .clean = true };
	uint8_t in[256];
	int obs, victim, n;

	snprintf(will_topic, sizeof(will_topic), "it-bad/%s", bc->name);
	snprintf(id, sizeof(id), "bad-%s", bc->name);
	obs = itutil_connect(g.port, "it-bad-observer", true, 0, NULL);
	assert_true(obs >= 0);
	assert_int_equal(itutil_subscribe(obs, 1, will_topic, 0), 0);

	vc.client_id = id;
	vc.will_topic = will_topic;
	vc.will_payload = "lost";
	vc.will_payload_len = 4;
	victim = itutil_connect_with(g.port, &vc, NULL);
	assert_true(victim >= 0);

	assert_int_equal(raw_send_hex(victim, bc->hex), 0);
	assert_true(raw_closed_within(victim, WAIT_MS));
	close(victim);

	n = raw_recv_packet(obs, in, sizeof(in), WAIT_MS);
	assert_int_equal(n, 4 + (int)strlen(will_topic) + 4);
	assert_int_equal(in[0], 0x30);
	assert_memory_equal(in + 4, will_topic, strlen(will_topic));
	assert_memory_equal(in + 4 + strlen(will_topic), "lost", 4);
	assert_int_equal(itutil_ping(obs), 0);
	close(obs);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_first_packet_must_be_connect),
		cmocka_unit_test(test_second_connect_closes),
		cmocka_unit_test(test_bad_protocol_level_rc1),
		cmocka_unit_test(test_mqisdp_name_with_level_4_rc1),
		cmocka_unit_test(test_empty_id_persistent_rc2),
		cmocka_unit_test(test_empty_id_clean_accepted),
		cmocka_unit_test(test_malformed_connect_refused),
		cmocka_unit_test(test_username_password_accepted),
		cmocka_unit_test(test_mqtt31_accepted),
		cmocka_unit_test(test_mqtt31_long_id_rc2),
		cmocka_unit_test(test_takeover_closes_older),
		cmocka_unit_test(test_pipelined_and_split_packets),
		cmocka_unit_test(test_takeover_with_pipelined_packets),
		cmocka_unit_test(test_keepalive_closes_after_1_5x),
		cmocka_unit_test_setup_teardown(test_keepalive_timer_phase, one_worker_setup,
						one_worker_teardown),
		cmocka_unit_test(test_keepalive_kept_by_pings),
		cmocka_unit_test(test_no_connect_within_timeout_closes),
		cmocka_unit_test(test_refused_connect_ignores_rest),
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]),
	       NBAD = sizeof(bad_cases) / sizeof(bad_cases[0]) };
	struct CMUnitTest tests[NFIXED + NBAD];
	char names[NBAD][64];

	memcpy(tests, fixed, sizeof(fixed));
	for (size_t i = 0; i < NBAD; i++) {
		snprintf(names[i], sizeof(names[i]), "malformed_%s", bad_cases[i].name);
		tests[NFIXED + i] = (struct CMUnitTest){
			.name = names[i], .test_func = test_malformed,
			.initial_state = (void *)&bad_cases[i],
		};
	}
	return _cmocka_run_group_tests("it_connect", tests, NFIXED + NBAD, group_setup,
				       group_teardown);
}
