/*
 * it_limits.c - the limits group: max_inflight (the QoS 1 window),
 * max_connections, max_packet_size, and slow subscribers under
 * max_output_bytes (QoS 0 dropped, QoS 1 queued up to max_queued_messages;
 * the publisher is never held back and the gateway's memory stays bounded).
 * Then the hardening caps (docs/security.md), each checked on the wire and
 * in /metrics (kafkagate_limit_hits_total and the gauges): topic length and
 * levels, client id length, keepalive, subscriptions per client (and how
 * fast 100,000 of them go in and come out), QoS 2 ids awaiting PUBREL,
 * the retained store, session queue bytes and totals, session expiry.
 *
 * Each test runs its own gateway with the limits it needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 5000
#define QUIET_MS 500     /* "nothing more arrives" */
/* Generous against the 64 kB output limit, yet below the 20 MB a gateway
 * that buffered everything for the slow subscriber would need. */
#define RSS_GROWTH_KB (16 * 1024)

static struct gw g;

static int gw_teardown(void **state)
{
	(void)state;
	return gw_stop(&g) == 0 ? 0 : -1;
}

static int window_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_inflight = 2; };");
}

static int conn_setup(void **state)
{
	(void)state;
	if (gw_start(&g, "limits = { max_connections = 5; };") < 0)
		return -1;
	/* gw_start() probed the port with a connection of its own; let the
	 * gateway see it close so that it does not count against the limit. */
	gw_log_wait(&g, "reason=\"peer closed\"", 2000);
	return 0;
}

static int packet_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_packet_size = 1024; };");
}

static int slow0_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_output_bytes = 65536; };");
}

static int slow1_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_output_bytes = 65536; max_inflight = 10;"
			    " max_queued_messages = 50; };");
}

/* ---- helpers ---------------------------------------------------------------- */

/* Receives a QoS 1 PUBLISH (DUP 0, RETAIN 0) whose payload is the decimal
 * number want. Returns its packet id. */
static uint16_t recv_numbered(int fd, int want)
{
	struct itutil_pkt p;

	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_int_equal(p.first, 0x32);
	assert_int_equal(atoi(p.payload), want);
	return p.pid;
}

/* Peak RSS growth since rss0 is bounded (not checked under ASan). */
static void assert_rss_bounded(long rss0)
{
	long hwm = gw_mem_kb(&g, "VmHWM");

	assert_true(rss0 > 0 && hwm > 0);
	print_message("gateway RSS %ld kB before, peak %ld kB\n", rss0, hwm);
	if (gw_is_asan(&g)) {
		print_message("ASan build: RSS bound not checked\n");
		return;
	}
	assert_true(hwm - rss0 < RSS_GROWTH_KB);
}

/* A subscriber with a tiny receive buffer (set before connect, so the
 * kernel cannot grow it) that will not read: the gateway's output for it
 * backs up at once. */
static int slow_subscriber(const char *filter, uint8_t qos)
{
	struct raw_connect c = { .client_id = "it-lim-slow", .clean = true };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), sz = 4096;

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)g.port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(itutil_handshake(fd, &c, NULL), 0);
	assert_int_equal(itutil_subscribe(fd, 1, filter, qos), 0);
	return fd;
}

/* A publisher whose sends fail after 10 s instead of blocking forever. */
static int publisher(const char *id)
{
	struct timeval tv = { .tv_sec = 10 };
	int fd = itutil_connect(g.port, id, true, 0, NULL);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

/* A fresh publisher/subscriber pair can still exchange a message. */
static void assert_gateway_works(void)
{
	int sub = itutil_connect(g.port, "it-lim-check-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-lim-check-p", true, 0, NULL);

	assert_true(sub >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "it-lim/check", 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "it-lim/check", "7", 1, 1, false, 1), 0);
	assert_int_equal(itutil_send_ack(sub, 0x40, recv_numbered(sub, 7)), 0);
	close(sub);
	close(pub);
}

/* ---- max_inflight ------------------------------------------------------------ */

static void test_inflight_window(void **state)
{
	int sub = itutil_connect(g.port, "it-lim-win-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-lim-win-p", true, 0, NULL);
	uint16_t pid[5];
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "it-lim/win", 1), 0);
	for (int i = 0; i < 5; i++) {
		char num[16];

		snprintf(num, sizeof(num), "%d", i);
		assert_int_equal(raw_mqtt_publish(pub, "it-lim/win", num, 1, 1, false,
						  (uint16_t)(i + 1)), 0);
	}
	/* Window of 2: exactly two are sent while none is acknowledged. */
	pid[0] = recv_numbered(sub, 0);
	pid[1] = recv_numbered(sub, 1);
	assert_true(itutil_quiet(sub, QUIET_MS));
	/* One ack, exactly one more. */
	assert_int_equal(itutil_send_ack(sub, 0x40, pid[0]), 0);
	pid[2] = recv_numbered(sub, 2);
	assert_true(itutil_quiet(sub, QUIET_MS));
	assert_int_equal(itutil_send_ack(sub, 0x40, pid[1]), 0);
	assert_int_equal(itutil_send_ack(sub, 0x40, pid[2]), 0);
	pid[3] = recv_numbered(sub, 3);
	pid[4] = recv_numbered(sub, 4);
	assert_int_equal(itutil_send_ack(sub, 0x40, pid[3]), 0);
	assert_int_equal(itutil_send_ack(sub, 0x40, pid[4]), 0);
	assert_true(itutil_quiet(sub, QUIET_MS));
	close(sub);
	close(pub);
}

/* ---- max_connections ----------------------------------------------------------- */

static void test_max_connections(void **state)
{
	int fd[5], extra, again = -1;
	long long deadline;
	(void)state;

	for (int i = 0; i < 5; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-lim-mc%d", i);
		fd[i] = itutil_connect(g.port, id, true, 0, NULL);
		assert_true(fd[i] >= 0);
	}
	/* The 6th TCP connection is accepted by the kernel, then closed by the
	 * gateway without a CONNACK. */
	extra = raw_connect_tcp(g.port);
	assert_true(extra >= 0);
	assert_true(raw_closed_within(extra, 2000));
	close(extra);
	for (int i = 0; i < 5; i++)
		assert_int_equal(itutil_ping(fd[i]), 0);

	/* A closed connection frees its slot (the gateway may take a moment to
	 * see the close). */
	close(fd[0]);
	deadline = itutil_now_ms() + 3000;
	while (again < 0 && itutil_now_ms() < deadline) {
		uint8_t rc = 0xff;

		again = raw_mqtt_connect(g.port, "it-lim-mc-again", true, 0, &rc, NULL);
		if (again >= 0 && rc != 0) {
			close(again);
			again = -1;
		}
		if (again < 0)
			itutil_sleep_ms(50);
	}
	assert_true(again >= 0);
	assert_int_equal(itutil_ping(again), 0);
	close(again);
	for (int i = 1; i < 5; i++)
		close(fd[i]);
}

/* ---- max_packet_size -------------------------------------------------------------- */

static void test_max_packet_size(void **state)
{
	int sub = itutil_connect(g.port, "it-lim-ps-s", true, 0, NULL);
	int pub = itutil_connect(g.port, "it-lim-ps-p", true, 0, NULL);
	static uint8_t payload[2000], out[2100];
	uint8_t buf[1100];
	uint16_t pid;
	int n;
	(void)state;

	assert_true(sub >= 0 && pub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "it-lim/ps", 1), 0);
	/* Remaining length 2 + 9 + 2 + 1000 = 1013: under the limit. */
	memset(payload, '1', 1000);
	n = raw_build_publish(out, sizeof(out), 4, "it-lim/ps", payload, 1000, 1, false, false, 1);
	assert_int_equal(raw_send(pub, out, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(pub, 0x40, 1, WAIT_MS), 0);
	n = raw_recv_packet(sub, buf, sizeof(buf), WAIT_MS);
	assert_int_equal(n, 3 + 2 + 9 + 2 + 1000);
	pid = (uint16_t)(buf[14] << 8 | buf[15]);
	assert_int_equal(itutil_send_ack(sub, 0x40, pid), 0);

	/* 2000 bytes of payload: over the limit, the connection is closed. */
	memset(payload, '2', sizeof(payload));
	n = raw_build_publish(out, sizeof(out), 4, "it-lim/ps", payload, 2000, 1, false, false, 2);
	assert_int_equal(raw_send(pub, out, (size_t)n), 0);
	assert_true(raw_closed_within(pub, WAIT_MS));
	close(pub);
	assert_int_equal(itutil_ping(sub), 0);
	close(sub);
}

/* ---- slow subscribers ---------------------------------------------------------------- */

#define SLOW_MSG 4096
#define SLOW_COUNT 5120   /* x 4 KB = 20 MB */

static void test_slow_subscriber_qos0(void **state)
{
	int slow = slow_subscriber("it-lim/slow", 0);
	int pub = publisher("it-lim-slow-p");
	static uint8_t payload[SLOW_MSG], out[SLOW_MSG + 64];
	long rss0 = gw_mem_kb(&g, "VmRSS");
	long long t0 = itutil_now_ms(), took;
	int n;
	(void)state;

	memset(payload, 'x', sizeof(payload));
	n = raw_build_publish(out, sizeof(out), 4, "it-lim/slow", payload, sizeof(payload), 0,
			      false, false, 0);
	assert_true(n > 0);
	for (int i = 0; i < SLOW_COUNT; i++) {
		if (raw_send(pub, out, (size_t)n) < 0) {
			print_error("publisher blocked or closed after %d messages: %s\n", i,
				    strerror(errno));
			fail();
		}
	}
	/* The publisher's connection is alive and answered promptly. */
	assert_int_equal(itutil_ping(pub), 0);
	took = itutil_now_ms() - t0;
	print_message("20 MB of QoS 0 published in %lld ms\n", took);
	assert_true(took < 30000);
	assert_rss_bounded(rss0);
	assert_gateway_works();

	/* The slow subscriber reads again: it gets what was kept (not all
	 * 20 MB: the rest was dropped) and then new messages again. */
	static uint8_t in[SLOW_MSG + 64];
	int got = 0;

	while ((n = raw_recv_packet(slow, in, sizeof(in), 1000)) > 0) {
		assert_int_equal(in[0], 0x30);
		got++;
	}
	print_message("slow QoS 0 subscriber got %d of %d messages\n", got, SLOW_COUNT);
	assert_true(got < SLOW_COUNT);
	assert_int_equal(raw_mqtt_publish(pub, "it-lim/slow", "end", 3, 0, false, 0), 0);
	n = raw_recv_packet(slow, in, sizeof(in), WAIT_MS);
	assert_int_equal(n, 2 + 2 + 11 + 3);
	assert_memory_equal(in + 4, "it-lim/slowend", 14);
	close(slow);
	close(pub);
}

static void test_slow_subscriber_qos1(void **state)
{
	int slow = slow_subscriber("it-lim/slow1", 1);
	int pub = publisher("it-lim-slow1-p");
	static uint8_t payload[8192];
	struct itutil_pkt p;
	long rss0 = gw_mem_kb(&g, "VmRSS");
	int count = 0, last = -1, total = 2000;
	(void)state;

	/* 2000 x 8 KB QoS 1 (16 MB): every one acknowledged to the publisher. */
	for (int i = 0; i < total; i++) {
		int len = snprintf((char *)payload, sizeof(payload), "%d", i);

		memset(payload + len, ' ', sizeof(payload) - (size_t)len);
		if (raw_mqtt_publish(pub, "it-lim/slow1", payload, sizeof(payload), 1, false,
				     (uint16_t)(i % 60000 + 1)) < 0) {
			print_error("publish %d not acknowledged\n", i);
			fail();
		}
	}
	assert_rss_bounded(rss0);
	assert_true(gw_log_contains(&g, "queue full"));

	/* Now read: what was sent (window) plus what was queued, in order. */
	for (;;) {
		int n = itutil_recv(slow, &p, 1000);

		if (n < 0 && errno == ETIMEDOUT)
			break;
		assert_true(n > 0);
		assert_int_equal(p.first, 0x32);
		int seq = atoi(p.payload);

		assert_true(seq > last);
		last = seq;
		count++;
		assert_int_equal(itutil_send_ack(slow, 0x40, p.pid), 0);
	}
	print_message("slow QoS 1 subscriber got %d of %d messages\n", count, total);
	assert_true(count >= 50);       /* the queue was kept */
	assert_true(count <= 10 + 50);  /* max_inflight + max_queued_messages */
	assert_gateway_works();
	/* And it receives new messages again. */
	assert_int_equal(raw_mqtt_publish(pub, "it-lim/slow1", "99999", 5, 1, false, 1), 0);
	assert_int_equal(itutil_send_ack(slow, 0x40, recv_numbered(slow, 99999)), 0);
	close(slow);
	close(pub);
}

/* ---- a publisher that does not read its acks ---------------------------------- */

#define NOREAD_MS 2000

/* The most a TCP buffer can grow to (tcp_wmem / tcp_rmem "max"). */
static long tcp_buf_max(const char *path)
{
	long lo, def, max = 0;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%ld %ld %ld", &lo, &def, &max) != 3)
			max = 0;
		fclose(f);
	}
	return max > 0 ? max : 64L << 20;
}

/*
 * QoS 1 publishes whose PUBACKs are not read. The gateway's output to the
 * publisher (PUBACKs, and a 1 kB echo of each publish since it subscribes
 * to its own topic) goes over max_output_bytes after a few thousand
 * publishes, and the gateway must stop reading from it (backpressure)
 * with unparsed input left over; once the publisher reads, every PUBACK
 * must arrive, in order, and the connection go on. Sending stops when the
 * socket stays full for 300 ms or after NOREAD_MS (the kernel keeps taking
 * a trickle); a gateway that never stopped reading would by then have
 * taken more than all the socket buffers between the two could hold.
 */
static void test_unread_pubacks_pause_publisher(void **state)
{
	struct raw_connect c = { .client_id = "it-lim-noread", .clean = true };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), sz = 16384;
	static uint8_t pkt[1100], in[1100], body[1000];
	size_t rest = 0, done = 0;
	int len = 0, sent = 0;
	long rss0 = gw_mem_kb(&g, "VmRSS");
	long long t0 = itutil_now_ms();
	int most = (int)((tcp_buf_max("/proc/sys/net/ipv4/tcp_wmem") +
			  tcp_buf_max("/proc/sys/net/ipv4/tcp_rmem")) / (long)sizeof(body)) + 1000;
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)g.port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(itutil_handshake(fd, &c, NULL), 0);
	assert_int_equal(itutil_subscribe(fd, 1, "it-lim/nr", 0), 0);
	memset(body, 'b', sizeof(body));

	/* Send until the socket stays full for 300 ms, or the bounds. */
	while (sent < most && itutil_now_ms() - t0 < NOREAD_MS) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t w;

		len = raw_build_publish(pkt, sizeof(pkt), 4, "it-lim/nr", body, sizeof(body), 1,
					false, false, (uint16_t)(sent % 65535 + 1));
		if (poll(&pfd, 1, 300) == 0)
			break;
		w = send(fd, pkt, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		assert_true(w > 0);
		sent++;
		if (w < len) {
			rest = (size_t)(len - w);
			done = (size_t)w;
			break;
		}
	}
	print_message("publisher stopped after %d unacknowledged publishes (%lld ms)\n", sent,
		      itutil_now_ms() - t0);
	assert_true(sent < most);
	assert_rss_bounded(rss0);

	/* Read every PUBACK in order (and the echoes, some of which the output
	 * limit dropped), finishing the half-sent packet when the gateway reads
	 * again. */
	for (int acks = 0, echoes = 0; acks < sent;) {
		int n;

		if (rest > 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (poll(&pfd, 1, 0) == 1) {
				ssize_t w = send(fd, pkt + done, rest, MSG_DONTWAIT | MSG_NOSIGNAL);

				if (w > 0) {
					done += (size_t)w;
					rest -= (size_t)w;
				}
			}
		}
		n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
		if (n > 0 && in[0] == 0x30) {
			echoes++;
			continue;
		}
		if (n != 4 || in[0] != 0x40 || (in[2] << 8 | in[3]) != acks % 65535 + 1) {
			print_error("PUBACK %d of %d missing or wrong (%d bytes, 0x%02X)\n", acks,
				    sent, n, n > 0 ? in[0] : 0);
			fail();
		}
		if (++acks == sent)
			print_message("%d PUBACKs, %d of the echoes (%lld ms)\n", acks, echoes,
				      itutil_now_ms() - t0);
	}
	assert_int_equal(rest, 0);
	assert_int_equal(itutil_ping(fd), 0);
	close(fd);
}

/* ---- hardening caps: helpers ----------------------------------------------- */

#define MANY_SUBS 100000
#define SUBS_PER_PACKET 1000
#define MANY_SUBS_MS 5000   /* the list this replaced took 18 s for them */

/* Starts a gateway with /metrics on a free port and this limits group body. */
static int start_with_limits(const char *limits)
{
	char cfg[1024];

	g.metrics_port = gw_free_port();
	if (g.metrics_port < 0)
		return -1;
	snprintf(cfg, sizeof(cfg), "metrics = { port = %d; };\nlimits = { %s };\n",
		 g.metrics_port, limits);
	return gw_start(&g, cfg);
}

/* One series from /metrics, or -1 when it is absent. gw_start() waited for
 * the MQTT port only: the admin endpoint gets a few seconds to answer. */
static double metric(const char *series)
{
	static struct itkafka_resp r;
	long long end = itutil_now_ms() + WAIT_MS;

	do {
		if (itkafka_http_get(g.metrics_port, "/metrics", &r, WAIT_MS) == 200)
			return itkafka_metric(r.body, series);
		itutil_sleep_ms(50);
	} while (itutil_now_ms() < end);
	fail_msg("no /metrics on port %d", g.metrics_port);
	return -1;
}

/* Polls series until it equals want (state that follows a close or an
 * inbox hop) or WAIT_MS pass; returns the last value. */
static double metric_wait(const char *series, double want)
{
	long long end = itutil_now_ms() + WAIT_MS;
	double v;

	while ((v = metric(series)) != want && itutil_now_ms() < end)
		itutil_sleep_ms(50);
	return v;
}

static double hits(const char *limit)
{
	char series[128];

	snprintf(series, sizeof(series), "kafkagate_limit_hits_total{limit=\"%s\"}", limit);
	return metric(series);
}

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* SUBSCRIBE (options = qos) or, with qos < 0, UNSUBSCRIBE of n filters in
 * one packet; waits for its SUBACK (codes into codes[n]) or UNSUBACK.
 * Returns 0, or -1 on a wrong or missing answer. */
static int sub_many(int fd, uint16_t pid, const char *const *filters, int n, int qos,
		    uint8_t *codes)
{
	size_t body = 2, off = 0;
	uint8_t *out, in[8 + SUBS_PER_PACKET];
	int got = -1, rc = -1;

	for (int i = 0; i < n; i++)
		body += 2 + strlen(filters[i]) + (qos >= 0);
	out = malloc(body + 5);
	assert_non_null(out);
	out[off++] = qos >= 0 ? 0x82 : 0xA2;
	off += put_varint(out + off, body);
	out[off++] = (uint8_t)(pid >> 8);
	out[off++] = (uint8_t)pid;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(filters[i]);

		out[off++] = (uint8_t)(len >> 8);
		out[off++] = (uint8_t)len;
		memcpy(out + off, filters[i], len);
		off += len;
		if (qos >= 0)
			out[off++] = (uint8_t)qos;
	}
	if (raw_send(fd, out, off) < 0)
		goto out;
	got = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	if (qos < 0) {
		rc = got == 4 && in[0] == 0xB0 && (in[2] << 8 | in[3]) == pid ? 0 : -1;
		goto out;
	}
	/* 0x90, remaining length (1 or 2 bytes here), pid, n codes */
	size_t hdr = n + 2 > 127 ? 3 : 2;
	if (got != (int)(hdr + 2 + (size_t)n) || in[0] != 0x90 ||
	    (in[hdr] << 8 | in[hdr + 1]) != pid)
		goto out;
	memcpy(codes, in + hdr + 2, (size_t)n);
	rc = 0;
out:
	if (rc < 0)
		print_error("no %s for pid %u (got %d bytes)\n", qos >= 0 ? "SUBACK" : "UNSUBACK",
			    pid, got);
	free(out);
	return rc;
}

/* Filters "<prefix><first>" .. "<prefix><first+n-1>", in static storage
 * (valid until the next call). */
static const char *const *filter_range(const char *prefix, int first, int n)
{
	static char names[SUBS_PER_PACKET][32];
	static const char *list[SUBS_PER_PACKET];

	assert_true(n <= SUBS_PER_PACKET);
	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "%s%d", prefix, first + i);
		list[i] = names[i];
	}
	return list;
}

/* DISCONNECT, then waits until the gateway has parked the session (online
 * sessions back to `online`). */
static void disconnect(int fd, double online)
{
	assert_int_equal(raw_send_hex(fd, "E0 00"), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	assert_true(metric_wait("kafkagate_sessions{state=\"online\"}", online) == online);
}

/* ---- topic caps ---------------------------------------------------------------- */

static int topic_setup(void **state)
{
	(void)state;
	return start_with_limits("max_topic_length = 64; max_topic_levels = 4;");
}

/* A SUBSCRIBE filter over max_topic_length / max_topic_levels gets 0x80
 * (the others in the packet are granted); a PUBLISH over them, or a will
 * topic, closes the connection (3.1.1 has no negative PUBACK, no CONNACK
 * code for a will). */
static void test_topic_caps(void **state)
{
	char long_topic[66], max_topic[65];
	const char *filters[] = { "it-lim/t", long_topic, "a/b/c/d/e", "a/b/c/d", max_topic };
	uint8_t codes[5], pkt[256];
	(void)state;

	memset(long_topic, 'x', 65);
	long_topic[65] = '\0';
	memset(max_topic, 'y', 64);
	max_topic[64] = '\0';
	int sub = itutil_connect(g.port, "it-lim-tc-s", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(sub_many(sub, 1, filters, 5, 1, codes), 0);
	assert_int_equal(codes[0], 1);
	assert_int_equal(codes[1], 0x80);
	assert_int_equal(codes[2], 0x80);
	assert_int_equal(codes[3], 1);
	assert_int_equal(codes[4], 1);

	/* At the caps: delivered. */
	int pub = itutil_connect(g.port, "it-lim-tc-p", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, max_topic, "1", 1, 1, false, 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "a/b/c/d", "2", 1, 1, false, 2), 0);
	struct itutil_pkt p;
	assert_int_equal(itutil_recv_acked(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, max_topic);
	assert_int_equal(itutil_recv_acked(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "a/b/c/d");

	/* One byte over: closed, nothing answered. */
	assert_int_equal(itutil_send_publish(pub, long_topic, "3", 1, 1, false, 3), 0);
	assert_true(itutil_closed_silently(pub, WAIT_MS));
	close(pub);
	/* One level over. */
	pub = itutil_connect(g.port, "it-lim-tc-p", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(itutil_send_publish(pub, "a/b/c/d/e", "4", 1, 0, false, 0), 0);
	assert_true(itutil_closed_silently(pub, WAIT_MS));
	close(pub);

	/* A will topic over the cap: no CONNACK, closed. */
	struct raw_connect wc = { .client_id = "it-lim-tc-w", .clean = true,
				  .will_topic = long_topic, .will_payload = "w",
				  .will_payload_len = 1 };
	int fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	int n = raw_build_connect(pkt, sizeof(pkt), &wc);
	assert_true(n > 0);
	assert_int_equal(raw_send(fd, pkt, (size_t)n), 0);
	assert_true(itutil_closed_silently(fd, WAIT_MS));
	close(fd);

	assert_true(hits("max_topic_length") == 3);  /* filter, publish, will */
	assert_true(hits("max_topic_levels") == 2);  /* filter, publish */
	assert_int_equal(itutil_ping(sub), 0);
	assert_true(itutil_quiet(sub, QUIET_MS));
	close(sub);
}

/* ---- client id length, keepalive ---------------------------------------------- */

static int connect_caps_setup(void **state)
{
	(void)state;
	return start_with_limits("max_client_id_length = 30; max_keepalive = 60;");
}

/* Connects with id and keepalive; returns the CONNACK return code (the
 * connection must close after a refusal). */
static int connack_rc(const char *id, uint16_t keepalive)
{
	uint8_t rc = 0xff;
	int fd = raw_mqtt_connect(g.port, id, true, keepalive, &rc, NULL);

	assert_true(fd >= 0);
	if (rc != 0)
		assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	return rc;
}

static void test_client_id_and_keepalive(void **state)
{
	char id30[31], id31[32];
	(void)state;

	memset(id30, 'i', 30);
	id30[30] = '\0';
	memset(id31, 'j', 31);
	id31[31] = '\0';
	assert_int_equal(connack_rc(id31, 30), 2);
	assert_int_equal(connack_rc(id30, 30), 0);
	/* A 3.1.1 client cannot be told a lower keepalive: refused, as
	 * mosquitto does; 0 (never) exceeds any maximum. */
	assert_int_equal(connack_rc("it-lim-ka", 61), 2);
	assert_int_equal(connack_rc("it-lim-ka", 0), 2);
	assert_int_equal(connack_rc("it-lim-ka", 60), 0);
	assert_true(hits("max_client_id_length") == 1);
	assert_true(hits("max_keepalive") == 2);
}

/* ---- subscriptions per client --------------------------------------------------- */

static int subs_setup(void **state)
{
	(void)state;
	return start_with_limits("max_subscriptions = 100000;");
}

/*
 * 100,000 filters from one client go in quickly (the per-session list was
 * searched linearly: 18 s), the next new ones get 0x80, and every byte of
 * the trie comes back when they are unsubscribed or the clean session ends.
 */
static void test_many_subscriptions(void **state)
{
	const char *more[] = { "it-lim/more/0", "it-lim/more/1", "it-lim/many/5" };
	uint8_t codes[SUBS_PER_PACKET];
	uint16_t pid = 1;
	(void)state;

	double trie0 = metric("kafkagate_subscription_trie_bytes");
	assert_true(trie0 > 0);
	assert_true(metric("kafkagate_subscriptions") == 0);

	int fd = itutil_connect(g.port, "it-lim-many", true, 0, NULL);
	assert_true(fd >= 0);
	long long t0 = itutil_now_ms();
	for (int i = 0; i < MANY_SUBS; i += SUBS_PER_PACKET) {
		assert_int_equal(sub_many(fd, pid++, filter_range("it-lim/many/", i, SUBS_PER_PACKET),
					  SUBS_PER_PACKET, 0, codes), 0);
		for (int k = 0; k < SUBS_PER_PACKET; k++)
			assert_int_equal(codes[k], 0);
	}
	long long took = itutil_now_ms() - t0;
	print_message("%d subscriptions in %lld ms\n", MANY_SUBS, took);
	assert_true(took < MANY_SUBS_MS);
	assert_true(metric("kafkagate_subscriptions") == MANY_SUBS);
	double trie_full = metric("kafkagate_subscription_trie_bytes");
	print_message("trie: %.0f bytes empty, %.0f with %d filters\n", trie0, trie_full, MANY_SUBS);

	/* At the cap: new filters 0x80, an existing one re-granted. */
	assert_int_equal(sub_many(fd, pid++, more, 3, 1, codes), 0);
	assert_int_equal(codes[0], 0x80);
	assert_int_equal(codes[1], 0x80);
	assert_int_equal(codes[2], 1);
	assert_true(hits("max_subscriptions") == 2);
	assert_true(metric("kafkagate_subscriptions") == MANY_SUBS);

	/* Messages still find their way. */
	int pub = itutil_connect(g.port, "it-lim-many-p", true, 0, NULL);
	struct itutil_pkt p;
	assert_true(pub >= 0);
	assert_int_equal(itutil_send_publish(pub, "it-lim/many/77777", "x", 1, 0, false, 0), 0);
	assert_int_equal(itutil_recv_publish(fd, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "it-lim/many/77777");
	close(pub);

	/* Unsubscribing gives the trie's memory back, and is fast too. */
	t0 = itutil_now_ms();
	for (int i = 0; i < MANY_SUBS / 2; i += SUBS_PER_PACKET)
		assert_int_equal(sub_many(fd, pid++, filter_range("it-lim/many/", i, SUBS_PER_PACKET),
					  SUBS_PER_PACKET, -1, NULL), 0);
	print_message("%d unsubscriptions in %lld ms\n", MANY_SUBS / 2, itutil_now_ms() - t0);
	assert_true(metric("kafkagate_subscriptions") == MANY_SUBS / 2);
	double trie_half = metric("kafkagate_subscription_trie_bytes");
	assert_true(trie_half < trie_full);

	/* The clean session ends: the rest goes. */
	close(fd);
	assert_true(metric_wait("kafkagate_subscriptions", 0) == 0);
	assert_true(metric_wait("kafkagate_subscription_trie_bytes", trie0) == trie0);
	assert_true(metric_wait("kafkagate_sessions{state=\"online\"}", 0) == 0);
	assert_true(metric("kafkagate_sessions{state=\"offline\"}") == 0);
}

/* ---- QoS 2 ids awaiting PUBREL --------------------------------------------------- */

static int qos2_setup(void **state)
{
	(void)state;
	return start_with_limits("max_qos2_pending = 10;");
}

static void test_qos2_pending(void **state)
{
	int fd = itutil_connect(g.port, "it-lim-q2", true, 0, NULL);
	(void)state;

	assert_true(fd >= 0);
	for (uint16_t pid = 1; pid <= 10; pid++) {
		assert_int_equal(itutil_send_publish(fd, "it-lim/q2", "x", 1, 2, false, pid), 0);
		assert_int_equal(itutil_expect_ack(fd, 0x50, pid, WAIT_MS), 0);
	}
	/* A resend of a held id is not a new one. */
	assert_int_equal(itutil_send_publish(fd, "it-lim/q2", "x", 1, 2, true, 3), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x50, 3, WAIT_MS), 0);
	/* PUBREL frees a place. */
	assert_int_equal(itutil_send_ack(fd, 0x62, 1), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x70, 1, WAIT_MS), 0);
	assert_int_equal(itutil_send_publish(fd, "it-lim/q2", "x", 1, 2, false, 11), 0);
	assert_int_equal(itutil_expect_ack(fd, 0x50, 11, WAIT_MS), 0);
	/* Ten held again: the next new id closes the connection. */
	assert_int_equal(itutil_send_publish(fd, "it-lim/q2", "x", 1, 2, false, 12), 0);
	assert_true(itutil_closed_silently(fd, WAIT_MS));
	close(fd);
	assert_true(hits("max_qos2_pending") == 1);
}

/* ---- retained store --------------------------------------------------------------- */

static int retained_setup(void **state)
{
	(void)state;
	return start_with_limits("max_retained_messages = 3; max_retained_bytes = 300;");
}

static void assert_retained(double count, double bytes)
{
	assert_true(metric("kafkagate_retained_messages") == count);
	assert_true(metric("kafkagate_retained_bytes") == bytes);
}

/* Three messages, 300 bytes (topic + payload): a new topic beyond either
 * is not stored; a replacement that does not fit clears its topic. */
static void test_retained_caps(void **state)
{
	static char p50[50], p100[100], p200[200];
	int pub = itutil_connect(g.port, "it-lim-rt-p", true, 0, NULL);
	(void)state;

	memset(p50, 'a', sizeof(p50));
	memset(p100, 'b', sizeof(p100));
	memset(p200, 'c', sizeof(p200));
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, "r/1", p50, 50, 1, true, 1), 0);
	assert_int_equal(raw_mqtt_publish(pub, "r/2", p50, 50, 1, true, 2), 0);
	assert_int_equal(raw_mqtt_publish(pub, "r/3", p50, 50, 1, true, 3), 0);
	assert_retained(3, 3 * 53);
	/* A fourth topic: not stored (the publish itself is acknowledged). */
	assert_int_equal(raw_mqtt_publish(pub, "r/4", p50, 50, 1, true, 4), 0);
	assert_retained(3, 3 * 53);
	assert_true(hits("max_retained_messages") == 1);
	/* Replacing within the bytes: stored. */
	assert_int_equal(raw_mqtt_publish(pub, "r/1", p100, 100, 1, true, 5), 0);
	assert_retained(3, 103 + 2 * 53);
	/* Replacing past them: the stale one goes. */
	assert_int_equal(raw_mqtt_publish(pub, "r/2", p200, 200, 1, true, 6), 0);
	assert_retained(2, 103 + 53);
	assert_true(hits("max_retained_bytes") == 1);
	/* A new topic past the bytes. */
	assert_int_equal(raw_mqtt_publish(pub, "r/4", p200, 200, 1, true, 7), 0);
	assert_retained(2, 103 + 53);
	assert_true(hits("max_retained_bytes") == 2);

	/* A subscriber gets exactly what is stored. */
	int sub = itutil_connect(g.port, "it-lim-rt-s", true, 0, NULL);
	struct itutil_pkt p;
	int seen = 0;
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "r/#", 0), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
		assert_true(p.retain);
		if (strcmp(p.topic, "r/1") == 0 && p.len == 100)
			seen |= 1;
		else if (strcmp(p.topic, "r/3") == 0 && p.len == 50)
			seen |= 2;
	}
	assert_int_equal(seen, 3);
	assert_true(itutil_quiet(sub, QUIET_MS));
	/* Clearing always works, and makes room. */
	assert_int_equal(raw_mqtt_publish(pub, "r/1", "", 0, 1, true, 8), 0);
	assert_retained(1, 53);
	assert_int_equal(raw_mqtt_publish(pub, "r/4", p200, 200, 1, true, 9), 0);
	assert_retained(2, 53 + 203);
	close(sub);
	close(pub);
}

/* ---- session queues: bytes per session, messages in total ------------------------ */

static int queued_setup(void **state)
{
	(void)state;
	return start_with_limits("max_queued_bytes = 10000;");
}

static void test_queued_bytes(void **state)
{
	static char p1000[1000];
	int sub = itutil_connect(g.port, "it-lim-qb", false, 0, NULL);
	struct itutil_pkt p;
	bool present = false;
	(void)state;

	memset(p1000, 'q', sizeof(p1000));
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "q/b", 1), 0);
	disconnect(sub, 0);
	int pub = itutil_connect(g.port, "it-lim-qb-p", true, 0, NULL);
	assert_true(pub >= 0);
	/* 20 x 1003 bytes for a queue of 10000: 9 kept, 11 dropped. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(raw_mqtt_publish(pub, "q/b", p1000, sizeof(p1000), 1, false,
						  (uint16_t)(i + 1)), 0);
	close(pub);
	assert_true(metric_wait("kafkagate_session_queued_bytes", 9 * 1003) == 9 * 1003);
	assert_true(metric("kafkagate_session_queued_messages") == 9);
	assert_true(hits("max_queued_bytes") == 11);
	assert_true(metric("kafkagate_queue_dropped_total") == 11);

	sub = itutil_connect(g.port, "it-lim-qb", false, 0, &present);
	assert_true(sub >= 0);
	assert_true(present);
	for (int i = 0; i < 9; i++)
		assert_int_equal(itutil_recv_acked(sub, &p, WAIT_MS), 0);
	assert_true(itutil_quiet(sub, QUIET_MS));
	assert_true(metric_wait("kafkagate_session_queued_bytes", 0) == 0);
	close(sub);
}

static int queued_total_setup(void **state)
{
	(void)state;
	return start_with_limits("max_queued_total_messages = 5;");
}

/* Every offline session has room of its own, but all of them together
 * hold five messages. */
static void test_queued_total(void **state)
{
	int a = itutil_connect(g.port, "it-lim-qt-a", false, 0, NULL);
	int b = itutil_connect(g.port, "it-lim-qt-b", false, 0, NULL);
	(void)state;

	assert_true(a >= 0 && b >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "q/t", 1), 0);
	assert_int_equal(itutil_subscribe(b, 1, "q/t", 1), 0);
	disconnect(a, 1);
	disconnect(b, 0);
	int pub = itutil_connect(g.port, "it-lim-qt-p", true, 0, NULL);
	assert_true(pub >= 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(raw_mqtt_publish(pub, "q/t", "m", 1, 1, false, (uint16_t)(i + 1)), 0);
	close(pub);
	assert_true(metric_wait("kafkagate_session_queued_messages", 5) == 5);
	assert_true(hits("max_queued_total_messages") == 3);
	assert_true(hits("max_queued_messages") == 0);
}

/* ---- session expiry ------------------------------------------------------------------ */

static int expiry_setup(void **state)
{
	(void)state;
	return start_with_limits("session_expiry = 2;");
}

/*
 * A persistent session whose client stays away for session_expiry (2 s) is
 * discarded with its queue; one whose client came back meanwhile lives on,
 * its clock restarting when it leaves again.
 */
static void test_session_expiry(void **state)
{
	int a = itutil_connect(g.port, "it-lim-exp-a", false, 0, NULL);
	int b = itutil_connect(g.port, "it-lim-exp-b", false, 0, NULL);
	struct itutil_pkt p;
	bool present = false;
	(void)state;

	assert_true(a >= 0 && b >= 0);
	assert_int_equal(itutil_subscribe(a, 1, "e/#", 1), 0);
	assert_int_equal(itutil_subscribe(b, 1, "e/#", 1), 0);
	disconnect(a, 1);
	long long parked_a = itutil_now_ms();
	disconnect(b, 0);
	int pub = itutil_connect(g.port, "it-lim-exp-p", true, 0, NULL);
	assert_true(pub >= 0);
	assert_int_equal(raw_mqtt_publish(pub, "e/1", "1", 1, 1, false, 1), 0);
	close(pub);
	assert_true(metric_wait("kafkagate_session_queued_messages", 2) == 2);
	assert_true(metric_wait("kafkagate_sessions{state=\"offline\"}", 2) == 2);

	/* b comes back after a second, takes its message and leaves again. */
	itutil_sleep_ms(1000);
	b = itutil_connect(g.port, "it-lim-exp-b", false, 0, &present);
	assert_true(b >= 0);
	assert_true(present);
	assert_int_equal(itutil_recv_acked(b, &p, WAIT_MS), 0);
	disconnect(b, 0);

	/* a goes once it has been away 2 s (swept every 250 ms), not before. */
	assert_true(metric_wait("kafkagate_sessions_expired_total", 1) == 1);
	long long away = itutil_now_ms() - parked_a;
	print_message("session expired after %lld ms offline\n", away);
	assert_true(away >= 1900);
	assert_true(metric("kafkagate_sessions{state=\"offline\"}") == 1);
	assert_true(metric("kafkagate_session_queued_messages") == 0);

	/* b, away about a second, is still there; a starts afresh. */
	b = itutil_connect(g.port, "it-lim-exp-b", false, 0, &present);
	assert_true(b >= 0);
	assert_true(present);
	a = itutil_connect(g.port, "it-lim-exp-a", false, 0, &present);
	assert_true(a >= 0);
	assert_false(present);
	assert_true(itutil_quiet(a, QUIET_MS));
	close(a);
	close(b);
}

/* ---- Bytes held before a packet is whole ---- */

static int connect_size_setup(void **state)
{
	(void)state;
	return start_with_limits("max_connect_size = 1024; max_packet_size = 65536;");
}

/* The first packet is capped by max_connect_size as soon as its fixed
 * header says how long it is; after CONNECT, max_packet_size applies. */
static void test_connect_size(void **state)
{
	uint8_t big[] = { 0x10, 0x80, 0x10 }; /* CONNECT, remaining length 2048 */
	(void)state;

	double before = hits("max_connect_size");
	int fd = raw_connect_tcp(g.port);
	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, big, sizeof(big)), 0);
	assert_true(raw_closed_within(fd, WAIT_MS));
	close(fd);
	assert_true(metric_wait("kafkagate_limit_hits_total{limit=\"max_connect_size\"}",
				before + 1) == before + 1);

	/* After CONNECT a 4 KiB PUBLISH is fine. */
	uint8_t rc = 0xff;
	fd = raw_mqtt_connect(g.port, "it-lim-cs", true, 0, &rc, NULL);
	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	static char payload[4096];
	assert_int_equal(raw_mqtt_publish(fd, "cs/a", payload, sizeof(payload), 0, false, 0), 0);
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0); /* PINGREQ */
	uint8_t buf[8];
	assert_int_equal(raw_recv_packet(fd, buf, sizeof(buf), WAIT_MS), 2);
	assert_int_equal(buf[0], 0xD0);
	close(fd);
}

static int packet_timeout_setup(void **state)
{
	(void)state;
	return start_with_limits("packet_timeout = 1;");
}

/* keepalive 0 disables the idle check; a packet started and never finished
 * is still closed once packet_timeout passes, even while bytes trickle. */
static void test_packet_timeout(void **state)
{
	uint8_t rc = 0xff;
	(void)state;

	double before = metric("kafkagate_packet_timeouts_total");
	int fd = raw_mqtt_connect(g.port, "it-lim-pt", true, 0, &rc, NULL);
	assert_true(fd >= 0);
	assert_int_equal(rc, 0);
	/* PUBLISH of remaining length 1000; send a byte every 300 ms. */
	assert_int_equal(raw_send_hex(fd, "30 E8 07 00 04 70 74 2F 61"), 0);
	long long t0 = itutil_now_ms();
	bool closed = false;
	while (!closed && itutil_now_ms() - t0 < 4000) {
		if (raw_send_hex(fd, "78") < 0)
			break;
		closed = raw_closed_within(fd, 300);
	}
	long long waited = itutil_now_ms() - t0;
	assert_true(closed || raw_closed_within(fd, WAIT_MS));
	print_message("trickled packet closed after %lld ms\n", waited);
	assert_true(waited < 2600); /* 1 s plus a 250 ms tick and slack */
	close(fd);
	assert_true(metric_wait("kafkagate_packet_timeouts_total", before + 1) == before + 1);
	assert_gateway_works();
}

static int partial_setup(void **state)
{
	(void)state;
	return start_with_limits("max_packet_size = 1048576; max_partial_bytes = 1048576;");
}

/* Unfinished packets from all connections together are capped: the
 * connection that crosses max_partial_bytes is closed, the others stay. */
static void test_partial_bytes(void **state)
{
	static uint8_t chunk[300 * 1024];
	int fd[4];
	uint8_t rc;
	(void)state;

	for (int i = 0; i < 4; i++) {
		char id[32];
		snprintf(id, sizeof(id), "it-lim-pb-%d", i);
		rc = 0xff;
		fd[i] = raw_mqtt_connect(g.port, id, true, 0, &rc, NULL);
		assert_true(fd[i] >= 0);
		assert_int_equal(rc, 0);
	}
	/* Each announces a 1,000,000-byte PUBLISH and sends 300 KiB of it:
	 * three fit under 1 MiB, the fourth crosses it. */
	memset(chunk, 'x', sizeof(chunk));
	chunk[0] = 0x00;
	chunk[1] = 0x03;
	memcpy(chunk + 2, "p/b", 3);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(raw_send_hex(fd[i], "30 C0 84 3D"), 0); /* 1,000,000 */
		assert_int_equal(raw_send(fd[i], chunk, sizeof(chunk)), 0);
		itutil_sleep_ms(100);
	}
	assert_true(raw_closed_within(fd[3], WAIT_MS));
	assert_true(metric_wait("kafkagate_partial_refused_total", 1) == 1);
	double held = metric("kafkagate_partial_bytes");
	print_message("partial bytes held by the three others: %.0f\n", held);
	assert_true(held >= 3.0 * sizeof(chunk) && held <= 1048576);
	for (int i = 0; i < 3; i++)
		assert_false(raw_closed_within(fd[i], 100));
	for (int i = 0; i < 4; i++)
		close(fd[i]);
	/* Closing gives the bytes back. */
	assert_true(metric_wait("kafkagate_partial_bytes", 0) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inflight_window, window_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_connect_size, connect_size_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_packet_timeout, packet_timeout_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_partial_bytes, partial_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_max_connections, conn_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_max_packet_size, packet_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_slow_subscriber_qos0, slow0_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_slow_subscriber_qos1, slow1_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_unread_pubacks_pause_publisher, slow0_setup,
						gw_teardown),
		cmocka_unit_test_setup_teardown(test_topic_caps, topic_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_client_id_and_keepalive, connect_caps_setup,
						gw_teardown),
		cmocka_unit_test_setup_teardown(test_many_subscriptions, subs_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_qos2_pending, qos2_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_retained_caps, retained_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_queued_bytes, queued_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_queued_total, queued_total_setup, gw_teardown),
		cmocka_unit_test_setup_teardown(test_session_expiry, expiry_setup, gw_teardown),
	};

	return cmocka_run_group_tests_name("it_limits", tests, NULL, NULL);
}
