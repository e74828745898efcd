/*
 * it_tls.c - MQTT over TLS (mqtts) against the real binary, with an OpenSSL
 * client written here (non-blocking socket, every wait bounded by poll):
 *
 * - a QoS 1 publish over TLS lands in Kafka (librdkafka's mock cluster in
 *   this process), and a Kafka command reaches a TLS subscriber;
 * - the MQTT stream ignores TLS record borders (a CONNECT one byte per
 *   record, two packets in one); a subscriber with a 4 kB receive buffer
 *   that stalls while 8 MB are sent to it gets every message whole and in
 *   order (the gateway's partial TLS writes, retried from a moved buffer);
 * - refusals: plain MQTT on the TLS port (no CONNACK, closed at once), a
 *   silent TCP or TLS client (closed within connect_timeout + 1 s), TLS 1.0
 *   and 1.1 clients and a TLS 1.2 client offering only CBC ciphers (the
 *   server's alert, not the client's own refusal), while TLS 1.2 with
 *   AES-GCM is accepted;
 * - mutual TLS: no certificate and a certificate of another CA refused at
 *   the handshake, client.crt accepted, and /api/v1/clients showing the
 *   listener, the TLS version and the certificate's CN as user name;
 * - certificate reload: new files and SIGHUP, a new client sees the new
 *   certificate (serial), a client connected before keeps working;
 * - `--check` on configs naming a missing certificate, a key of another
 *   certificate and a missing CA: non-zero exit, "FILE:LINE: ..." naming the
 *   line of that setting.
 * KG_TEST_FILTER=glob runs the matching tests only.
 *
 * Certificates come from scripts/gen-test-certs.sh, run into a temporary
 * directory once; each gateway gets its own copies (gw_start_files()).
 * Run from the repository root:
 *   make build/kafkagate build/tests/it_tls && KG_BIN=build/kafkagate build/tests/it_tls
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gw.h"
#include "itcerts.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 10000
#define CONNECT_TIMEOUT_S 2

static char certs[128];          /* scripts/gen-test-certs.sh output */
static struct itkafka_mock K;
static rd_kafka_t *prod;
static struct gw G;

/* ---- fixture ---------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	return itcerts_setup("tls", certs, sizeof(certs), &K, &prod);
}

static int group_teardown(void **state)
{
	(void)state;
	return itcerts_teardown(certs, &K, prod);
}

static int test_teardown(void **state)
{
	(void)state;
	gw_stop(&G);
	return 0;
}

/* The gateway: listener 0 mqtts (server certificate only), listener 1 mqtts
 * requiring a client certificate of ca.crt (user name = its CN), metrics on
 * a port of its choice, Kafka with one uplink route and one downlink
 * (itcerts_gw_start()). */
static void gw_up_limits(const char *limits)
{
	assert_int_equal(itcerts_gw_start(&G, "tls", certs, K.bootstrap,
		 "listeners = (\n"
		 "  { address = \"127.0.0.1\"; port = 0;\n"
		 "    tls = { cert = \"server.crt\"; key = \"server.key\"; }; },\n"
		 "  { address = \"127.0.0.1\"; port = 0;\n"
		 "    tls = { cert = \"server.crt\"; key = \"server.key\"; ca = \"ca.crt\";\n"
		 "            require_client_cert = true; identity = \"cn\"; }; }\n"
		 ");\n"
		 "metrics = { address = \"127.0.0.1\"; port = 0; };\n",
		 CONNECT_TIMEOUT_S, limits), 0);
	assert_true(gw_listener_port(&G, 0) > 0 && gw_listener_port(&G, 1) > 0);
	assert_true(G.metrics_port > 0);
}

static void gw_up(void)
{
	gw_up_limits("");
}

/* ---- OpenSSL client ------------------------------------------------------- */

/* A client context that verifies the server against ca.crt for "localhost".
 * cert/key: file names in certs/ (NULL: no client certificate); max_version
 * 0: any; ciphers: TLS 1.2 cipher list (NULL: OpenSSL's default); seclevel
 * < 0: OpenSSL's default. */
static SSL_CTX *cctx_new(const char *cert, const char *key, int max_version, const char *ciphers,
			 int seclevel)
{
	char p[300];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	snprintf(p, sizeof(p), "%s/ca.crt", certs);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, p, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert) {
		snprintf(p, sizeof(p), "%s/%s", certs, cert);
		assert_int_equal(SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM), 1);
		snprintf(p, sizeof(p), "%s/%s", certs, key);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM), 1);
	}
	if (seclevel >= 0)
		SSL_CTX_set_security_level(ctx, seclevel);
	if (max_version) {
		/* Below the system default minimum on purpose: the server must be
		 * the one that refuses. */
		assert_int_equal(SSL_CTX_set_min_proto_version(ctx, 0), 1);
		assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
	}
	if (ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
	return ctx;
}

struct tc {
	int fd;
	SSL *ssl;
	unsigned long err;     /* first OpenSSL error of the last failure, 0: none */
	size_t len;            /* bytes in buf */
	uint8_t buf[1 << 18];
};

/* Connects over TCP, with a receive buffer of rcvbuf bytes unless 0; NULL
 * if that failed. No TLS yet. */
static struct tc *tc_tcp_rcvbuf(int port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct tc *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(t->fd >= 0);
	if (rcvbuf)
		assert_int_equal(setsockopt(t->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	if (connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(t->fd);
		free(t);
		return NULL;
	}
	assert_int_equal(fcntl(t->fd, F_SETFL, fcntl(t->fd, F_GETFL) | O_NONBLOCK), 0);
	return t;
}

static struct tc *tc_tcp(int port)
{
	return tc_tcp_rcvbuf(port, 0);
}

static void tc_close(struct tc **tp)
{
	struct tc *t = *tp;

	if (!t)
		return;
	SSL_free(t->ssl);
	close(t->fd);
	free(t);
	*tp = NULL;
}

/* Waits for what SSL_get_error() e asks until end. Returns > 0 when ready,
 * 0 on timeout. */
static int tc_wait(struct tc *t, int e, long long end)
{
	struct pollfd p = { t->fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, 0 };
	long long left = end - itutil_now_ms();

	if (left <= 0)
		return 0;
	int r;
	while ((r = poll(&p, 1, (int)left)) < 0 && errno == EINTR)
		;
	return r > 0 ? r : 0;
}

static void tc_note_error(struct tc *t)
{
	unsigned long e = ERR_peek_error();

	if (e && !t->err)
		t->err = e;
	ERR_clear_error();
}

/* TLS handshake with SNI and host name check "localhost". Returns 0, or -1
 * (t->err says why when OpenSSL knows). */
static int tc_handshake(struct tc *t, SSL_CTX *ctx)
{
	long long end = itutil_now_ms() + WAIT_MS;

	t->ssl = SSL_new(ctx);
	assert_non_null(t->ssl);
	SSL_set_fd(t->ssl, t->fd);
	SSL_set_tlsext_host_name(t->ssl, "localhost");
	SSL_set1_host(t->ssl, "localhost");
	ERR_clear_error();
	t->err = 0;
	for (;;) {
		int r = SSL_connect(t->ssl), e;

		if (r == 1)
			return 0;
		e = SSL_get_error(t->ssl, r);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && tc_wait(t, e, end))
			continue;
		tc_note_error(t);
		return -1;
	}
}

/* TCP connect and TLS handshake; fails the test unless both succeed. */
static struct tc *tc_open(int port, SSL_CTX *ctx)
{
	struct tc *t = tc_tcp(port);

	assert_non_null(t);
	if (tc_handshake(t, ctx) < 0) {
		char e[256];

		ERR_error_string_n(t->err, e, sizeof(e));
		fail_msg("TLS handshake with port %d failed: %s", port, e);
	}
	return t;
}

static int tc_send(struct tc *t, const void *p, size_t n)
{
	long long end = itutil_now_ms() + WAIT_MS;

	for (;;) {
		int r = SSL_write(t->ssl, p, (int)n), e;

		if (r > 0)
			return 0; /* no partial writes: the whole buffer went */
		e = SSL_get_error(t->ssl, r);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && tc_wait(t, e, end))
			continue;
		tc_note_error(t);
		return -1;
	}
}

/* Reads more into t->buf. Returns the count, 0 if the peer closed (EOF,
 * close_notify or an alert: t->err), -1 on timeout. */
static int tc_fill(struct tc *t, long long end)
{
	for (;;) {
		int r = SSL_read(t->ssl, t->buf + t->len, (int)(sizeof(t->buf) - t->len)), e;

		if (r > 0) {
			t->len += (size_t)r;
			return r;
		}
		e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (!tc_wait(t, e, end))
				return -1;
			continue;
		}
		tc_note_error(t);
		return 0;
	}
}

/* One whole MQTT packet into out (cap bytes). Returns its length, 0 if the
 * peer closed first, -1 on timeout or a packet too large. */
static int tc_recv_packet(struct tc *t, uint8_t *out, size_t cap, int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;

	for (;;) {
		size_t rl = 0, mul = 1, i = 1;
		bool whole_len = false;

		while (i < t->len && i <= 4) {
			rl += (t->buf[i] & 127u) * mul;
			mul *= 128;
			if (!(t->buf[i++] & 128u)) {
				whole_len = true;
				break;
			}
		}
		if (whole_len && t->len >= i + rl) {
			size_t n = i + rl;

			if (n > cap)
				return -1;
			memcpy(out, t->buf, n);
			memmove(t->buf, t->buf + n, t->len - n);
			t->len -= n;
			return (int)n;
		}
		if (t->len == sizeof(t->buf))
			return -1;
		int r = tc_fill(t, end);
		if (r <= 0)
			return r;
	}
}

/* True if the peer closes within timeout_ms without sending a packet. */
static bool tc_closed_silently(struct tc *t, int timeout_ms)
{
	uint8_t p[256];
	int n = tc_recv_packet(t, p, sizeof(p), timeout_ms);

	if (n > 0)
		print_error("expected a close, got packet type 0x%02x\n", p[0]);
	return n == 0;
}

/* ---- MQTT over a struct tc ------------------------------------------------ */

static void tc_expect(struct tc *t, const char *want_hex, const char *what)
{
	uint8_t want[16], got[64];
	int wn = raw_hex_decode(want_hex, want, sizeof(want));
	int n = tc_recv_packet(t, got, sizeof(got), WAIT_MS);
	char h[200];

	if (n != wn || memcmp(got, want, (size_t)wn) != 0)
		fail_msg("%s: wanted %s, got %s (%d)", what, want_hex,
			 n > 0 ? raw_hex_encode(got, (size_t)n, h, sizeof(h)) : "nothing", n);
}

static void tc_mqtt_connect(struct tc *t, const char *id)
{
	uint8_t b[256];
	struct raw_connect c = { .client_id = id, .clean = true, .keepalive = 30 };
	int n = raw_build_connect(b, sizeof(b), &c);

	assert_int_equal(tc_send(t, b, (size_t)n), 0);
	tc_expect(t, "20 02 00 00", "CONNACK");
}

static void tc_subscribe(struct tc *t, uint16_t pid, const char *filter, uint8_t qos)
{
	uint8_t b[300];
	char want[32];
	int n = raw_build_subscribe(b, sizeof(b), 4, pid, filter, qos);

	assert_int_equal(tc_send(t, b, (size_t)n), 0);
	snprintf(want, sizeof(want), "90 03 %02x %02x %02x", pid >> 8, pid & 255, qos);
	tc_expect(t, want, "SUBACK");
}

/* PUBLISH; at QoS 1 waits for its PUBACK. */
static void tc_publish(struct tc *t, const char *topic, const char *payload, uint8_t qos,
		       uint16_t pid)
{
	uint8_t b[1024];
	char want[32];
	int n = raw_build_publish(b, sizeof(b), 4, topic, payload, strlen(payload), qos, false,
				  false, pid);

	assert_true(n > 0);
	assert_int_equal(tc_send(t, b, (size_t)n), 0);
	if (qos == 1) {
		snprintf(want, sizeof(want), "40 02 %02x %02x", pid >> 8, pid & 255);
		tc_expect(t, want, "PUBACK");
	}
}

static void tc_ping(struct tc *t)
{
	static const uint8_t req[] = { 0xc0, 0x00 };

	assert_int_equal(tc_send(t, req, sizeof(req)), 0);
	tc_expect(t, "D0 00", "PINGRESP");
}

/* The next packet must be a PUBLISH of topic with payload at qos; QoS 1 is
 * acknowledged. */
static void tc_expect_publish(struct tc *t, const char *topic, const char *payload, uint8_t qos)
{
	uint8_t b[2048];
	int n = tc_recv_packet(t, b, sizeof(b), WAIT_MS);
	size_t i = 1, tl;

	if (n <= 0)
		fail_msg("no PUBLISH of %s (%d)", topic, n);
	assert_int_equal(b[0] & 0xf0, 0x30);
	assert_int_equal((b[0] >> 1) & 3, qos);
	while (b[i++] & 128)
		;
	tl = (size_t)b[i] << 8 | b[i + 1];
	i += 2;
	if (tl != strlen(topic) || memcmp(b + i, topic, tl) != 0)
		fail_msg("PUBLISH topic '%.*s', want '%s'", (int)tl, (const char *)b + i, topic);
	i += tl;
	uint16_t pid = 0;
	if (qos) {
		pid = (uint16_t)(b[i] << 8 | b[i + 1]);
		i += 2;
	}
	if ((size_t)n - i != strlen(payload) || memcmp(b + i, payload, (size_t)n - i) != 0)
		fail_msg("PUBLISH payload '%.*s', want '%s'", (int)((size_t)n - i),
			 (const char *)b + i, payload);
	if (qos == 1) {
		uint8_t ack[4];

		assert_int_equal(raw_build_ack(ack, sizeof(ack), 0x40, pid), 4);
		assert_int_equal(tc_send(t, ack, sizeof(ack)), 0);
	}
}

/* Serial number of the server certificate t got, as a long. */
static long tc_peer_serial(struct tc *t)
{
	X509 *x = SSL_get0_peer_certificate(t->ssl);

	assert_non_null(x);
	return ASN1_INTEGER_get(X509_get0_serialNumber(x));
}

/* The OpenSSL reason of t's last failure ("" when none). */
static const char *tc_reason(const struct tc *t)
{
	static char s[256];

	s[0] = '\0';
	if (t->err)
		ERR_error_string_n(t->err, s, sizeof(s));
	return s;
}

/* ---- Kafka round trips --------------------------------------------------------- */

static void test_uplink_qos1_to_kafka(void **state)
{
	struct itkafka_rec r[1];
	(void)state;

	gw_up();
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	struct tc *t = tc_open(gw_listener_port(&G, 0), ctx);

	assert_string_equal(SSL_get_version(t->ssl), "TLSv1.3");
	tc_mqtt_connect(t, "tls-dev-1");
	/* PUBACK comes once Kafka has the record: read it back at once. */
	tc_publish(t, "tls/dev-1/temp", "21.5 over TLS", 1, 7);
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(K.bootstrap, "it-tls-up", 1, WAIT_MS, r), 1);
	assert_non_null(r[0].key);
	assert_string_equal(r[0].key, "tls-dev-1");
	assert_int_equal(r[0].vlen, strlen("21.5 over TLS"));
	assert_memory_equal(r[0].val, "21.5 over TLS", r[0].vlen);
	const void *v;
	size_t vl;
	assert_int_equal(rd_kafka_header_get_last(r[0].hdrs, "mqtt.topic", &v, &vl), 0);
	assert_int_equal(vl, strlen("tls/dev-1/temp"));
	assert_memory_equal(v, "tls/dev-1/temp", vl);
	itkafka_recs_free(r, 1);
	tc_close(&t);
	SSL_CTX_free(ctx);
}

static void test_downlink_to_tls_subscriber(void **state)
{
	(void)state;

	gw_up();
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	struct tc *t = tc_open(gw_listener_port(&G, 0), ctx);

	tc_mqtt_connect(t, "tls-dev-2");
	tc_subscribe(t, 1, "devices/tls-dev-2/commands", 1);
	assert_int_equal(itkafka_produce(prod, "it-tls-cmd", -1, "tls-dev-2", "reboot", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	/* The consumer joins its group first: allow for it. */
	tc_expect_publish(t, "devices/tls-dev-2/commands", "reboot", 1);
	tc_ping(t);
	tc_close(&t);
	SSL_CTX_free(ctx);
}

/* ---- records and backpressure ------------------------------------------------------- */

/* CONNECT one byte per TLS record, then a PUBLISH in the same record as
 * the PINGREQ behind it: the MQTT stream does not follow record borders. */
static void test_packets_across_records(void **state)
{
	uint8_t b[512];
	struct raw_connect c = { .client_id = "tls-records", .clean = true };
	(void)state;

	gw_up();
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	struct tc *t = tc_open(gw_listener_port(&G, 0), ctx);
	int n = raw_build_connect(b, sizeof(b), &c);
	for (int i = 0; i < n; i++)
		assert_int_equal(tc_send(t, b + i, 1), 0);
	tc_expect(t, "20 02 00 00", "CONNACK");
	tc_subscribe(t, 1, "rec/#", 0);
	n = raw_build_publish(b, sizeof(b), 4, "rec/a", "one record", 10, 0, false, false, 0);
	b[n++] = 0xc0;
	b[n++] = 0x00;
	assert_int_equal(tc_send(t, b, (size_t)n), 0);
	tc_expect_publish(t, "rec/a", "one record", 0);
	tc_expect(t, "D0 00", "PINGRESP");
	tc_close(&t);
	SSL_CTX_free(ctx);
}

/* A subscriber with a 4 kB socket receive buffer that reads nothing for a
 * while: the gateway's TLS writes stall (partial writes, retried with a
 * buffer that grows and moves). Then every message arrives whole, in
 * order. */
static void test_slow_tls_subscriber(void **state)
{
	enum { N = 80, SIZE = 100000 };
	uint8_t *payload = malloc(SIZE), *pkt = malloc(SIZE + 64);
	(void)state;

	assert_non_null(payload);
	assert_non_null(pkt);
	/* Every message goes out at once (8 MB, more than the socket buffers
	 * hold), rather than max_inflight's default 32 at a time. */
	gw_up_limits("max_inflight = 1000;");
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	struct tc *s = tc_tcp_rcvbuf(gw_listener_port(&G, 0), 4096);
	assert_non_null(s);
	assert_int_equal(tc_handshake(s, ctx), 0);
	tc_mqtt_connect(s, "bulk-sub");
	tc_subscribe(s, 1, "bulk/t", 1);
	struct tc *p = tc_open(gw_listener_port(&G, 0), ctx);
	tc_mqtt_connect(p, "bulk-pub");
	for (int i = 0; i < N; i++) {
		char want[32];

		for (int k = 0; k < SIZE; k++)
			payload[k] = (uint8_t)(i * 31 + k);
		int n = raw_build_publish(pkt, SIZE + 64, 4, "bulk/t", payload, SIZE, 1, false, false,
					  (uint16_t)(i + 1));
		assert_int_equal(tc_send(p, pkt, (size_t)n), 0);
		snprintf(want, sizeof(want), "40 02 00 %02x", i + 1);
		tc_expect(p, want, "PUBACK");
	}
	itutil_sleep_ms(300);
	for (int i = 0; i < N; i++) {
		int n = tc_recv_packet(s, pkt, SIZE + 64, WAIT_MS);

		/* type, 3-byte remaining length, topic, packet id, payload */
		if (n != 1 + 3 + 2 + 6 + 2 + SIZE)
			fail_msg("message %d: %d bytes", i, n);
		assert_int_equal(pkt[0] & 0xf6, 0x32);
		assert_memory_equal(pkt + 4, "\0\6bulk/t", 8);
		uint16_t pid = (uint16_t)(pkt[12] << 8 | pkt[13]);
		for (int k = 0; k < SIZE; k++)
			if (pkt[14 + k] != (uint8_t)(i * 31 + k))
				fail_msg("message %d: byte %d is %u", i, k, pkt[14 + k]);
		uint8_t ack[4];
		assert_int_equal(raw_build_ack(ack, sizeof(ack), 0x40, pid), 4);
		assert_int_equal(tc_send(s, ack, sizeof(ack)), 0);
	}
	tc_ping(s);
	tc_ping(p);
	tc_close(&s);
	tc_close(&p);
	SSL_CTX_free(ctx);
	free(payload);
	free(pkt);
}

/* ---- refusals on the TLS port -------------------------------------------------- */

static void test_plain_mqtt_refused(void **state)
{
	uint8_t b[256], got[64];
	struct raw_connect c = { .client_id = "plain-on-tls", .clean = true };
	int n;
	(void)state;

	gw_up();
	/* A plain CONNECT is no ClientHello: closed at once, never a CONNACK
	 * (what comes back, if anything, is a TLS alert record). */
	int fd = raw_connect_tcp(gw_listener_port(&G, 0));
	assert_true(fd >= 0);
	n = raw_build_connect(b, sizeof(b), &c);
	long long t0 = itutil_now_ms();
	assert_int_equal(raw_send(fd, b, (size_t)n), 0);
	n = raw_recv_exact(fd, got, 1, (CONNECT_TIMEOUT_S + 1) * 1000);
	if (n == 1) {
		assert_int_not_equal(got[0], 0x20);
		assert_int_equal(got[0], 0x15); /* TLS alert */
	}
	assert_true(raw_closed_within(fd, (CONNECT_TIMEOUT_S + 1) * 1000));
	long long dt = itutil_now_ms() - t0;
	print_message("plain CONNECT on the TLS port: closed after %lld ms\n", dt);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	close(fd);

	/* Nothing at all: closed by connect_timeout. */
	fd = raw_connect_tcp(gw_listener_port(&G, 0));
	assert_true(fd >= 0);
	t0 = itutil_now_ms();
	assert_true(raw_closed_within(fd, (CONNECT_TIMEOUT_S + 2) * 1000));
	dt = itutil_now_ms() - t0;
	print_message("silent TCP client on the TLS port: closed after %lld ms\n", dt);
	assert_true(dt >= CONNECT_TIMEOUT_S * 1000 - 300);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	close(fd);

	/* A TLS handshake but no CONNECT: the same timeout. */
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	t0 = itutil_now_ms();
	struct tc *t = tc_open(gw_listener_port(&G, 0), ctx);
	assert_true(tc_closed_silently(t, (CONNECT_TIMEOUT_S + 2) * 1000));
	dt = itutil_now_ms() - t0;
	print_message("TLS client without CONNECT: closed after %lld ms\n", dt);
	assert_true(dt >= CONNECT_TIMEOUT_S * 1000 - 300);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	tc_close(&t);
	SSL_CTX_free(ctx);
}

/* A handshake with ctx must fail because the server sent alert `reason`. */
static void assert_refused_by_server(SSL_CTX *ctx, int reason, const char *what)
{
	struct tc *t = tc_tcp(gw_listener_port(&G, 0));

	assert_non_null(t);
	if (tc_handshake(t, ctx) == 0)
		fail_msg("%s: handshake succeeded (%s)", what, SSL_get_version(t->ssl));
	print_message("%s: refused: %s\n", what, tc_reason(t));
	if (ERR_GET_REASON(t->err) != reason)
		fail_msg("%s: wanted the server's alert (reason %d), got '%s'", what, reason,
			 tc_reason(t));
	tc_close(&t);
}

static void test_old_versions_and_cbc_refused(void **state)
{
	(void)state;

	gw_up();
	/* Security level 0 and no lower bound: this client would speak TLS 1.0
	 * or 1.1, so a refusal is the server's (protocol_version alert). */
	SSL_CTX *ctx = cctx_new(NULL, NULL, TLS1_VERSION, NULL, 0);
	assert_refused_by_server(ctx, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, "TLS 1.0");
	SSL_CTX_free(ctx);
	ctx = cctx_new(NULL, NULL, TLS1_1_VERSION, NULL, 0);
	assert_refused_by_server(ctx, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, "TLS 1.1");
	SSL_CTX_free(ctx);

	/* TLS 1.2 offering only CBC suites: handshake_failure from the server. */
	ctx = cctx_new(NULL, NULL, TLS1_2_VERSION,
		       "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
		       "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384", -1);
	assert_refused_by_server(ctx, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE, "TLS 1.2 CBC only");
	SSL_CTX_free(ctx);

	/* The same client with an AEAD suite gets in: the refusal was the cipher. */
	ctx = cctx_new(NULL, NULL, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", -1);
	struct tc *t = tc_open(gw_listener_port(&G, 0), ctx);
	assert_string_equal(SSL_get_version(t->ssl), "TLSv1.2");
	assert_string_equal(SSL_get_cipher_name(t->ssl), "ECDHE-ECDSA-AES128-GCM-SHA256");
	tc_mqtt_connect(t, "tls12-gcm");
	tc_ping(t);
	tc_close(&t);
	SSL_CTX_free(ctx);

	/* Every refused handshake was logged with its reason. */
	assert_true(gw_log_wait(&G, "protocol version", WAIT_MS));
}

/* ---- mutual TLS ------------------------------------------------------------------- */

/* A client of ctx on the mTLS port must not get in: either the handshake
 * fails, or (TLS 1.3, where the client finishes first) the server's alert
 * and close come instead of a CONNACK. */
static void assert_mtls_refused(SSL_CTX *ctx, const char *id)
{
	struct tc *t = tc_tcp(gw_listener_port(&G, 1));
	uint8_t b[256];
	struct raw_connect c = { .client_id = id, .clean = true };

	assert_non_null(t);
	if (tc_handshake(t, ctx) == 0) {
		int n = raw_build_connect(b, sizeof(b), &c);

		tc_send(t, b, (size_t)n); /* may fail: the alert may be there already */
		assert_true(tc_closed_silently(t, WAIT_MS));
	}
	print_message("%s: refused: %s\n", id, tc_reason(t));
	/* An alert from the server, not a quiet close. */
	assert_int_not_equal(t->err, 0);
	tc_close(&t);
}

static bool client_row(const char *id, json_t **out)
{
	static struct itkafka_resp r;
	json_t *j, *c;
	size_t i;

	assert_int_equal(itkafka_http_get(G.metrics_port, "/api/v1/clients", &r, WAIT_MS), 200);
	j = json_loads(r.body, 0, NULL);
	assert_non_null(j);
	json_array_foreach(json_object_get(j, "clients"), i, c) {
		if (strcmp(json_string_value(json_object_get(c, "client_id")), id) == 0) {
			*out = json_incref(c);
			json_decref(j);
			return true;
		}
	}
	json_decref(j);
	return false;
}

static void test_mtls(void **state)
{
	char want[32];
	json_t *row = NULL;
	(void)state;

	gw_up();
	SSL_CTX *none = cctx_new(NULL, NULL, 0, NULL, -1);
	assert_mtls_refused(none, "mtls-no-cert");
	assert_true(gw_log_wait(&G, "no client certificate", WAIT_MS));
	SSL_CTX_free(none);

	SSL_CTX *other = cctx_new("other-client.crt", "other-client.key", 0, NULL, -1);
	assert_mtls_refused(other, "mtls-other-ca");
	assert_true(gw_log_wait(&G, "unknown CA", WAIT_MS));
	SSL_CTX_free(other);

	SSL_CTX *good = cctx_new("client.crt", "client.key", 0, NULL, -1);
	struct tc *t = tc_open(gw_listener_port(&G, 1), good);
	tc_mqtt_connect(t, "mtls-good");
	tc_ping(t);
	assert_true(client_row("mtls-good", &row));
	snprintf(want, sizeof(want), "mqtts:%d", gw_listener_port(&G, 1));
	assert_string_equal(json_string_value(json_object_get(row, "listener")), want);
	assert_string_equal(json_string_value(json_object_get(row, "tls")), "TLSv1.3");
	char user[64];
	snprintf(user, sizeof(user), "%s",
		 json_string_value(json_object_get(row, "username")) ?: "(none)");
	json_decref(row);
	/* Refused clients never became clients. */
	assert_false(client_row("mtls-no-cert", &row));
	assert_false(client_row("mtls-other-ca", &row));
	tc_close(&t);
	SSL_CTX_free(good);

	/* identity = "cn": the user name is the certificate's CN. */
	assert_string_equal(user, "client-cn");
}

/* ---- certificate reload ---------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
	char tmp[320], buf[8192];
	FILE *in = fopen(from, "rb"), *out;
	size_t n;

	/* Write a temporary and rename, as a deployment tool would. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	out = fopen(tmp, "wb");
	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
	assert_int_equal(rename(tmp, to), 0);
}

static void test_cert_reload(void **state)
{
	char from[300], to[300];
	(void)state;

	gw_up();
	SSL_CTX *ctx = cctx_new(NULL, NULL, 0, NULL, -1);
	struct tc *a = tc_open(gw_listener_port(&G, 0), ctx);
	assert_int_equal(tc_peer_serial(a), 0x1001);
	tc_mqtt_connect(a, "reload-a");
	tc_subscribe(a, 1, "reload/#", 1);

	snprintf(from, sizeof(from), "%s/server2.crt", certs);
	snprintf(to, sizeof(to), "%s/server.crt", G.dir);
	copy_file(from, to);
	snprintf(from, sizeof(from), "%s/server2.key", certs);
	snprintf(to, sizeof(to), "%s/server.key", G.dir);
	copy_file(from, to);
	gw_kill(&G, SIGHUP);
	assert_true(gw_log_wait(&G, "reload applied", WAIT_MS));
	assert_false(gw_log_contains(&G, "kept its old certificate"));

	/* A new client gets the new certificate on both TLS listeners... */
	struct tc *b = tc_open(gw_listener_port(&G, 0), ctx);
	assert_int_equal(tc_peer_serial(b), 0x1002);
	SSL_CTX *mctx = cctx_new("client.crt", "client.key", 0, NULL, -1);
	struct tc *m = tc_open(gw_listener_port(&G, 1), mctx);
	assert_int_equal(tc_peer_serial(m), 0x1002);
	tc_close(&m);
	SSL_CTX_free(mctx);

	/* ...and the old connection keeps working with its own. */
	tc_mqtt_connect(b, "reload-b");
	tc_ping(a);
	tc_publish(b, "reload/x", "after-reload", 1, 3);
	tc_expect_publish(a, "reload/x", "after-reload", 1);
	tc_publish(a, "reload/y", "from-a", 0, 0);
	tc_expect_publish(a, "reload/y", "from-a", 0);
	assert_int_equal(tc_peer_serial(a), 0x1001);
	tc_close(&a);
	tc_close(&b);

	/* A key that does not match: the reload is refused, naming the line,
	 * and the current certificate stays. */
	snprintf(from, sizeof(from), "%s/mismatch.key", certs);
	copy_file(from, to);
	gw_kill(&G, SIGHUP);
	char want[1024];
	snprintf(want, sizeof(want), "reload rejected config=%s reason=\"%s:3: key %s does not match",
		 G.cfg_path, G.cfg_path, to);
	assert_true(gw_log_wait(&G, want, WAIT_MS));
	b = tc_open(gw_listener_port(&G, 0), ctx);
	assert_int_equal(tc_peer_serial(b), 0x1002);
	tc_mqtt_connect(b, "reload-c");
	tc_close(&b);
	SSL_CTX_free(ctx);
}

/* ---- --check on bad files ---------------------------------------------------------- */

/* Runs `kafkagate --check --config path`; returns its exit status and its
 * stderr (stdout after it) in out. */
static int run_check(const char *path, char *out, size_t cap)
{
	const char *bin = getenv("KG_BIN");
	char cmd[600];
	size_t n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "timeout 10 '%s' --check --config '%s' 2>&1",
		 bin && *bin ? bin : "build/kafkagate", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (n + 1 < cap) {
		size_t r = fread(out + n, 1, cap - 1 - n, p);

		if (r == 0)
			break;
		n += r;
	}
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_check_bad_files(void **state)
{
	static const struct {
		const char *tls;   /* the tls group, one setting per line */
		int line;          /* of the setting at fault */
		const char *msg;
	} cases[] = {
		{ "    cert = \"no-such.crt\";\n    key = \"server.key\";\n", 4, "no-such.crt" },
		{ "    cert = \"server.crt\";\n    key = \"mismatch.key\";\n", 5, "does not match" },
		{ "    cert = \"server.crt\";\n    key = \"server.key\";\n    ca = \"no-such-ca.crt\";\n",
		  6, "no-such-ca.crt" },
	};
	char path[300], prefix[320], out[4096];
	(void)state;

	snprintf(path, sizeof(path), "%s/check.cfg", certs);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		/* Line numbers: 1 listeners, 2 {, 3 tls = {, 4.. the settings. */
		fprintf(f, "listeners = (\n  { address = \"127.0.0.1\"; port = 0;\n  tls = {\n%s"
			   "  }; }\n);\n", cases[i].tls);
		assert_int_equal(fclose(f), 0);
		int st = run_check(path, out, sizeof(out));
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, cases[i].line);
		print_message("--check: exit %d: %s", st, out);
		assert_int_not_equal(st, 0);
		assert_true(st < 124); /* an error exit, not a crash or the timeout */
		if (strncmp(out, prefix, strlen(prefix)) != 0 || !strstr(out, cases[i].msg))
			fail_msg("wanted '%s...%s...', got '%s'", prefix, cases[i].msg, out);
	}
	/* The same files, right: exit 0. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "listeners = ( { address = \"127.0.0.1\"; port = 0; tls = { cert = \"server.crt\";"
		   " key = \"server.key\"; ca = \"ca.crt\"; require_client_cert = true; }; } );\n");
	assert_int_equal(fclose(f), 0);
	assert_int_equal(run_check(path, out, sizeof(out)), 0);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_uplink_qos1_to_kafka, test_teardown),
		cmocka_unit_test_teardown(test_downlink_to_tls_subscriber, test_teardown),
		cmocka_unit_test_teardown(test_packets_across_records, test_teardown),
		cmocka_unit_test_teardown(test_slow_tls_subscriber, test_teardown),
		cmocka_unit_test_teardown(test_plain_mqtt_refused, test_teardown),
		cmocka_unit_test_teardown(test_old_versions_and_cbc_refused, test_teardown),
		cmocka_unit_test_teardown(test_mtls, test_teardown),
		cmocka_unit_test_teardown(test_cert_reload, test_teardown),
		cmocka_unit_test(test_check_bad_files),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_tls", tests, group_setup, group_teardown);
}
