/*
 * it_ws.c - MQTT over WebSocket (RFC 6455) against the real binary, with a
 * WebSocket client written here over a raw socket: the upgrade request and
 * every masked frame are built by hand, the server's frames parsed by hand
 * (not with src/transport/ws.c, which is what is checked).
 *
 * - the upgrade: 101 with the RFC 6455 Sec-WebSocket-Accept and the mqtt
 *   subprotocol; 404 for another path, 400 without a key, 426 for another
 *   version, 431 (or a close) for an oversized head; a client that sends
 *   nothing, or half a head, is closed within connect_timeout + 1 s;
 * - MQTT in frames: CONNECT split over three frames (one cut inside the
 *   fixed header), CONNECT + SUBSCRIBE + PUBLISH in one frame, a fragmented
 *   message with a PING between its fragments (PONG with the same payload),
 *   the server's PUBLISH as binary frames carrying exactly the expected
 *   bytes (up to 100 kB);
 * - protocol errors: an unmasked frame gets close 1002, so do RSV bits, an
 *   unknown opcode, oversized or fragmented control frames, a stray or
 *   interleaved continuation, bad close codes and a 64-bit length with its
 *   top bit set; a bad close reason 1007, a text frame 1003; a client close
 *   gets a close back and the will is published (no DISCONNECT); each
 *   connection then ends;
 * - a WebSocket subscriber that stalls (4 kB receive buffer) while 80 MB of
 *   QoS 0 is published for it costs the gateway less than 16 MB: messages
 *   past max_output_bytes are dropped, as for a plain TCP subscriber;
 * - Kafka (librdkafka's mock cluster in this process): a QoS 1 publish over
 *   WebSocket lands in Kafka, a Kafka command reaches a WebSocket subscriber;
 * - tests/integration/ws_paho.py: Python paho-mqtt over ws:// and wss://
 *   (the test CA), a round trip and a 200 kB payload. Skipped, loudly, only
 *   when python3 or paho-mqtt is missing (scripts/deps.sh installs it).
 * KG_TEST_FILTER=glob runs some.
 *
 * Run from the repository root:
 *   make build/kafkagate build/tests/it_ws && KG_BIN=build/kafkagate build/tests/it_ws
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "gw.h"
#include "itcerts.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 10000
#define CONNECT_TIMEOUT_S 2
/* RFC 6455 section 1.3: this key must be answered with this accept value. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static char certs[128];
static struct itkafka_mock K;
static rd_kafka_t *prod;
static struct gw G;

/* Listener indexes in the gateway's config. */
enum { L_MQTT, L_WS, L_WSS };

/* ---- fixture ---------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	return itcerts_setup("ws", certs, sizeof(certs), &K, &prod);
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

/* Plain MQTT, WebSocket and WebSocket over TLS, all on ports the gateway
 * picks; Kafka with one uplink route and one downlink (itcerts_gw_start()). */
static void gw_up_limits(const char *limits)
{
	assert_int_equal(itcerts_gw_start(&G, "ws", certs, K.bootstrap,
		 "listeners = (\n"
		 "  { address = \"127.0.0.1\"; port = 0; },\n"
		 "  { address = \"127.0.0.1\"; port = 0; protocol = \"websocket\"; path = \"/mqtt\"; },\n"
		 "  { address = \"127.0.0.1\"; port = 0; protocol = \"websocket\"; path = \"/mqtt\";\n"
		 "    tls = { cert = \"server.crt\"; key = \"server.key\"; }; }\n"
		 ");\n",
		 CONNECT_TIMEOUT_S, limits), 0);
	for (int i = L_MQTT; i <= L_WSS; i++)
		assert_true(gw_listener_port(&G, i) > 0);
}

static void gw_up(void)
{
	gw_up_limits("");
}

/* ---- WebSocket client ------------------------------------------------------- */

#define WC_BUF (16u << 20) /* the largest server frame the tests take */

struct wc {
	int fd;
	size_t in_len;             /* raw bytes read, not yet parsed */
	size_t mq_len;             /* MQTT stream from data frames, not yet parsed */
	unsigned data_frames;      /* binary/continuation frames received */
	unsigned other_data;       /* data frames with another opcode (text...) */
	int pong_len;              /* last PONG payload length, -1: none */
	uint8_t pong[125];
	int close_code;            /* code of the close frame received, -1: none,
				    * 1005: one without a code */
	char head[8192];           /* the 101 (or refusal) head, NUL-terminated */
	uint8_t *in;               /* WC_BUF bytes each */
	uint8_t *mq;
	uint8_t *frame;            /* payload of the last frame read */
};

struct wframe {
	bool fin;
	uint8_t op;
	size_t len;
	const uint8_t *data;       /* in w->frame */
};

/* Connects over TCP, with a receive buffer of rcvbuf bytes unless 0 (set
 * before connect, so that the kernel cannot grow it). */
static struct wc *wc_tcp_rcvbuf(int port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct wc *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	w->in = malloc(WC_BUF);
	w->mq = malloc(WC_BUF);
	w->frame = malloc(WC_BUF);
	assert_true(w->in && w->mq && w->frame);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(w->fd >= 0);
	if (rcvbuf)
		assert_int_equal(setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	assert_int_equal(connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	w->pong_len = -1;
	w->close_code = -1;
	return w;
}

static struct wc *wc_tcp(int port)
{
	return wc_tcp_rcvbuf(port, 0);
}

static void wc_close(struct wc **wp)
{
	struct wc *w = *wp;

	if (!w)
		return;
	close(w->fd);
	free(w->in);
	free(w->mq);
	free(w->frame);
	free(w);
	*wp = NULL;
}

/* Reads more raw bytes. Returns the count, 0 on EOF (or reset), -1 on
 * timeout. */
static int wc_read(struct wc *w, long long end)
{
	for (;;) {
		struct pollfd p = { w->fd, POLLIN, 0 };
		long long left = end - itutil_now_ms();
		int r;

		if (w->in_len == WC_BUF)
			return -1;
		if (left <= 0)
			return -1;
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		ssize_t n = read(w->fd, w->in + w->in_len, WC_BUF - w->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		w->in_len += (size_t)n;
		return (int)n;
	}
}

/* The request head for path with key (NULL: no key header) and protocols
 * (NULL: none), then extra header lines (each ending in \r\n; may be NULL). */
static void ws_request(char *out, size_t cap, const char *path, const char *key, const char *proto,
		       const char *extra)
{
	char k[64] = "", p[128] = "";

	if (key)
		snprintf(k, sizeof(k), "Sec-WebSocket-Key: %s\r\n", key);
	if (proto)
		snprintf(p, sizeof(p), "Sec-WebSocket-Protocol: %s\r\n", proto);
	snprintf(out, cap,
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\n%sSec-WebSocket-Version: 13\r\n%s%s\r\n",
		 path, k, p, extra ? extra : "");
}

/* Sends req and reads the answer's head into w->head. Returns the HTTP
 * status, 0 if the server closed without a whole head, -1 on timeout. */
static int wc_upgrade_raw(struct wc *w, const char *req)
{
	long long end = itutil_now_ms() + WAIT_MS;
	uint8_t *eoh;

	assert_int_equal(raw_send(w->fd, req, strlen(req)), 0);
	while (!(eoh = memmem(w->in, w->in_len, "\r\n\r\n", 4))) {
		int r = wc_read(w, end);
		if (r <= 0)
			return r;
	}
	size_t n = (size_t)(eoh - w->in) + 4;
	assert_true(n < sizeof(w->head));
	memcpy(w->head, w->in, n);
	w->head[n] = '\0';
	memmove(w->in, w->in + n, w->in_len - n);
	w->in_len -= n;
	if (strncmp(w->head, "HTTP/1.1 ", 9) != 0)
		fail_msg("not an HTTP/1.1 answer: %s", w->head);
	return atoi(w->head + 9);
}

/* The value of header name in w->head (case-insensitive name), trimmed,
 * into out; false if absent. */
static bool wc_header(const struct wc *w, const char *name, char *out, size_t cap)
{
	const char *p = strstr(w->head, "\r\n");
	size_t nl = strlen(name);

	while (p && p[2] != '\r') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			size_t vl = (size_t)(eol - v);
			while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			snprintf(out, cap, "%.*s", (int)vl, v);
			return true;
		}
		p = eol;
	}
	return false;
}

/* Connects to the WebSocket listener (receive buffer rcvbuf unless 0) and
 * upgrades with subprotocol mqtt; fails the test unless the answer is 101. */
static struct wc *wc_open_rcvbuf(int rcvbuf)
{
	char req[512];
	struct wc *w = wc_tcp_rcvbuf(gw_listener_port(&G, L_WS), rcvbuf);

	ws_request(req, sizeof(req), "/mqtt", RFC_KEY, "mqtt", NULL);
	int st = wc_upgrade_raw(w, req);
	if (st != 101)
		fail_msg("upgrade answered %d: %s", st, w->head);
	return w;
}

static struct wc *wc_open(void)
{
	return wc_open_rcvbuf(0);
}

/* Sends one frame whose first byte (FIN, RSV, opcode) is b0, then the
 * payload; masked with a fresh key unless masked is false (which breaks
 * RFC 6455 on purpose). */
static void wc_send_frame_b0(struct wc *w, uint8_t b0, const void *data, size_t len, bool masked)
{
	static uint32_t seed = 0x2545f491;
	uint8_t *f = malloc(len + 14), mask[4];
	size_t h = 0;

	assert_non_null(f);
	f[h++] = b0;
	uint8_t m = masked ? 0x80 : 0;
	if (len < 126) {
		f[h++] = (uint8_t)(m | len);
	} else if (len < 65536) {
		f[h++] = m | 126;
		f[h++] = (uint8_t)(len >> 8);
		f[h++] = (uint8_t)len;
	} else {
		f[h++] = m | 127;
		for (int i = 7; i >= 0; i--)
			f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	seed = seed * 1103515245u + 12345u;
	memcpy(mask, &seed, 4);
	if (masked) {
		memcpy(f + h, mask, 4);
		h += 4;
	}
	for (size_t i = 0; i < len; i++)
		f[h + i] = ((const uint8_t *)data)[i] ^ (masked ? mask[i % 4] : 0);
	assert_int_equal(raw_send(w->fd, f, h + len), 0);
	free(f);
}

static void wc_send_frame(struct wc *w, bool fin, uint8_t op, const void *data, size_t len,
			  bool masked)
{
	wc_send_frame_b0(w, (uint8_t)((fin ? 0x80 : 0) | op), data, len, masked);
}

/* MQTT bytes as one binary frame. */
static void wc_send_mqtt(struct wc *w, const void *p, size_t n)
{
	wc_send_frame(w, true, 0x2, p, n, true);
}

/* Reads one server frame. Returns 1, 0 on EOF before a whole frame, -1 on
 * timeout. Server frames must not be masked (RFC 6455 5.1). */
static int wc_frame(struct wc *w, struct wframe *f, long long end)
{
	for (;;) {
		if (w->in_len >= 2) {
			size_t hl = 2;
			uint64_t len = w->in[1] & 127u;

			if (w->in[1] & 0x80)
				fail_msg("the server sent a masked frame");
			if (w->in[0] & 0x70)
				fail_msg("the server set RSV bits: 0x%02x", w->in[0]);
			if (len == 126 && w->in_len >= 4) {
				hl = 4;
				len = (uint64_t)w->in[2] << 8 | w->in[3];
			} else if (len == 127 && w->in_len >= 10) {
				hl = 10;
				len = 0;
				for (int i = 2; i < 10; i++)
					len = len << 8 | w->in[i];
			} else if (len >= 126) {
				hl = 0; /* length not here yet */
			}
			if (hl && len > WC_BUF - 16)
				fail_msg("server frame of %llu bytes", (unsigned long long)len);
			if (hl && w->in_len >= hl + len) {
				f->fin = w->in[0] & 0x80;
				f->op = w->in[0] & 0x0f;
				f->len = (size_t)len;
				memcpy(w->frame, w->in + hl, f->len);
				f->data = w->frame;
				memmove(w->in, w->in + hl + len, w->in_len - hl - len);
				w->in_len -= hl + (size_t)len;
				return 1;
			}
		}
		int r = wc_read(w, end);
		if (r <= 0)
			return r;
	}
}

/* Handles one frame: data into the MQTT stream, PONG and close noted.
 * Returns 1, or 0 for a close frame. */
static int wc_take(struct wc *w, const struct wframe *f)
{
	switch (f->op) {
	case 0x0:
	case 0x2:
		assert_true(w->mq_len + f->len <= WC_BUF);
		memcpy(w->mq + w->mq_len, f->data, f->len);
		w->mq_len += f->len;
		w->data_frames++;
		return 1;
	case 0x8:
		w->close_code = f->len >= 2 ? (f->data[0] << 8 | f->data[1]) : 1005;
		return 0;
	case 0xa:
		assert_true(f->len <= sizeof(w->pong));
		memcpy(w->pong, f->data, f->len);
		w->pong_len = (int)f->len;
		return 1;
	default:
		w->other_data++;
		print_error("unexpected frame opcode 0x%x from the server\n", f->op);
		return 1;
	}
}

/* One whole MQTT packet from the frames' stream. Returns its length, 0 if
 * the server closed (a close frame or EOF), -1 on timeout. */
static int wc_recv_mqtt(struct wc *w, uint8_t *out, size_t cap, int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;

	for (;;) {
		size_t rl = 0, mul = 1, i = 1;
		bool whole_len = false;

		while (i < w->mq_len && i <= 4) {
			rl += (w->mq[i] & 127u) * mul;
			mul *= 128;
			if (!(w->mq[i++] & 128u)) {
				whole_len = true;
				break;
			}
		}
		if (whole_len && w->mq_len >= i + rl) {
			size_t n = i + rl;

			assert_true(n <= cap);
			memcpy(out, w->mq, n);
			memmove(w->mq, w->mq + n, w->mq_len - n);
			w->mq_len -= n;
			return (int)n;
		}
		struct wframe f;
		int r = wc_frame(w, &f, end);
		if (r <= 0)
			return r;
		if (wc_take(w, &f) == 0)
			return 0;
	}
}

static void wc_expect(struct wc *w, const char *want_hex, const char *what)
{
	uint8_t want[16], got[64];
	int wn = raw_hex_decode(want_hex, want, sizeof(want));
	int n = wc_recv_mqtt(w, got, sizeof(got), WAIT_MS);
	char h[200];

	if (n != wn || memcmp(got, want, (size_t)wn) != 0)
		fail_msg("%s: wanted %s, got %s (%d)", what, want_hex,
			 n > 0 ? raw_hex_encode(got, (size_t)n, h, sizeof(h)) : "nothing", n);
}

static int build_connect(uint8_t *b, size_t cap, const char *id)
{
	struct raw_connect c = { .client_id = id, .clean = true, .keepalive = 30 };

	return raw_build_connect(b, cap, &c);
}

static void wc_mqtt_connect(struct wc *w, const char *id)
{
	uint8_t b[256];
	int n = build_connect(b, sizeof(b), id);

	wc_send_mqtt(w, b, (size_t)n);
	wc_expect(w, "20 02 00 00", "CONNACK");
}

static void wc_subscribe(struct wc *w, uint16_t pid, const char *filter, uint8_t qos)
{
	uint8_t b[300];
	char want[32];
	int n = raw_build_subscribe(b, sizeof(b), 4, pid, filter, qos);

	wc_send_mqtt(w, b, (size_t)n);
	snprintf(want, sizeof(want), "90 03 %02x %02x %02x", pid >> 8, pid & 255, qos);
	wc_expect(w, want, "SUBACK");
}

static void wc_ping(struct wc *w)
{
	static const uint8_t req[] = { 0xc0, 0x00 };

	wc_send_mqtt(w, req, sizeof(req));
	wc_expect(w, "D0 00", "PINGRESP");
}

/* The server must send a close frame with code, then end the connection. */
static void wc_expect_close(struct wc *w, int code)
{
	long long end = itutil_now_ms() + WAIT_MS;
	struct wframe f;
	int r;

	while ((r = wc_frame(w, &f, end)) == 1 && wc_take(w, &f) == 1)
		;
	if (r != 1)
		fail_msg("no close frame (%s)", r == 0 ? "EOF first" : "timeout");
	assert_int_equal(w->close_code, code);
	/* Nothing after the close frame, and the TCP connection ends. */
	r = wc_read(w, itutil_now_ms() + 3000);
	if (r != 0)
		fail_msg("after the close frame: %s", r < 0 ? "still open after 3 s" : "more bytes");
}

/* base64(SHA-1(key + GUID)), computed here with OpenSSL's primitives. */
static void accept_of(const char *key, char out[64])
{
	char cat[128];
	unsigned char md[SHA_DIGEST_LENGTH];

	snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	SHA1((const unsigned char *)cat, strlen(cat), md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* ---- the upgrade ------------------------------------------------------------ */

static void test_upgrade_101(void **state)
{
	char req[512], v[128];
	(void)state;

	gw_up();
	struct wc *w = wc_tcp(gw_listener_port(&G, L_WS));
	ws_request(req, sizeof(req), "/mqtt", RFC_KEY, "mqtt", NULL);
	assert_int_equal(wc_upgrade_raw(w, req), 101);
	assert_true(wc_header(w, "Sec-WebSocket-Accept", v, sizeof(v)));
	assert_string_equal(v, RFC_ACCEPT);
	assert_true(wc_header(w, "Sec-WebSocket-Protocol", v, sizeof(v)));
	assert_string_equal(v, "mqtt");
	assert_true(wc_header(w, "Upgrade", v, sizeof(v)));
	assert_int_equal(strcasecmp(v, "websocket"), 0);
	assert_true(wc_header(w, "Connection", v, sizeof(v)));
	assert_int_equal(strcasecmp(v, "Upgrade"), 0);
	assert_false(wc_header(w, "Sec-WebSocket-Extensions", v, sizeof(v)));
	wc_mqtt_connect(w, "ws-upgrade-1");
	wc_ping(w);
	wc_close(&w);

	/* Another key, several protocols offered (mqtt chosen), a query string. */
	static const char key[] = "x3JJHMbDL1EzLkh9GBhXDw==";
	char want[64];
	accept_of(key, want);
	w = wc_tcp(gw_listener_port(&G, L_WS));
	ws_request(req, sizeof(req), "/mqtt?token=abc", key, "mqttv3.1, mqtt", NULL);
	assert_int_equal(wc_upgrade_raw(w, req), 101);
	assert_true(wc_header(w, "Sec-WebSocket-Accept", v, sizeof(v)));
	assert_string_equal(v, want);
	assert_true(wc_header(w, "Sec-WebSocket-Protocol", v, sizeof(v)));
	assert_string_equal(v, "mqtt");
	wc_mqtt_connect(w, "ws-upgrade-2");
	wc_close(&w);
}

/* req must be refused with one of the statuses (0 = a close without an
 * answer is fine too), and the connection must end. */
static void assert_refused(const char *req, const int *ok, size_t nok, const char *what)
{
	struct wc *w = wc_tcp(gw_listener_port(&G, L_WS));
	int st = wc_upgrade_raw(w, req);
	bool good = false;

	print_message("%s: %d\n", what, st);
	for (size_t i = 0; i < nok; i++)
		good |= st == ok[i];
	if (!good)
		fail_msg("%s: answered %d: %s", what, st, w->head);
	assert_true(raw_closed_within(w->fd, 3000));
	wc_close(&w);
}

static void test_upgrade_refused(void **state)
{
	static const int s404[] = { 404 }, s400[] = { 400, 426 }, s426[] = { 426 },
			 s431[] = { 431, 0 };
	char req[512];
	(void)state;

	gw_up();
	ws_request(req, sizeof(req), "/other", RFC_KEY, "mqtt", NULL);
	assert_refused(req, s404, 1, "wrong path");
	ws_request(req, sizeof(req), "/mqtt", NULL, "mqtt", NULL);
	assert_refused(req, s400, 2, "no Sec-WebSocket-Key");
	snprintf(req, sizeof(req),
		 "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
		 "Sec-WebSocket-Version: 8\r\n\r\n");
	assert_refused(req, s426, 1, "version 8");

	/* A 10 kB head (the limit is 8 kB). */
	size_t cap = 12000;
	char *big = malloc(cap), *pad = malloc(10001);
	assert_non_null(big);
	assert_non_null(pad);
	memset(pad, 'a', 10000);
	pad[10000] = '\0';
	snprintf(big, cap,
		 "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
		 "Sec-WebSocket-Version: 13\r\n\r\n", pad);
	assert_refused(big, s431, 2, "oversized head");
	free(big);
	free(pad);

	/* The listener still upgrades. */
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-after-refusals");
	wc_close(&w);
}

static void test_slow_handshake_closed(void **state)
{
	(void)state;

	gw_up();
	/* Nothing at all. */
	int fd = raw_connect_tcp(gw_listener_port(&G, L_WS));
	assert_true(fd >= 0);
	long long t0 = itutil_now_ms();
	assert_true(raw_closed_within(fd, (CONNECT_TIMEOUT_S + 2) * 1000));
	long long dt = itutil_now_ms() - t0;
	print_message("silent WebSocket client: closed after %lld ms\n", dt);
	assert_true(dt >= CONNECT_TIMEOUT_S * 1000 - 300);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	close(fd);

	/* Half a head, then nothing. */
	fd = raw_connect_tcp(gw_listener_port(&G, L_WS));
	assert_true(fd >= 0);
	t0 = itutil_now_ms();
	static const char half[] = "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
	assert_int_equal(raw_send(fd, half, strlen(half)), 0);
	assert_true(raw_closed_within(fd, (CONNECT_TIMEOUT_S + 2) * 1000));
	dt = itutil_now_ms() - t0;
	print_message("half a head: closed after %lld ms\n", dt);
	assert_true(dt >= CONNECT_TIMEOUT_S * 1000 - 300);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	close(fd);

	/* Upgraded, but no CONNECT. */
	struct wc *w = wc_open();
	t0 = itutil_now_ms();
	uint8_t b[64];
	assert_int_equal(wc_recv_mqtt(w, b, sizeof(b), (CONNECT_TIMEOUT_S + 2) * 1000), 0);
	dt = itutil_now_ms() - t0;
	print_message("upgraded, no CONNECT: closed after %lld ms (close code %d)\n", dt,
		      w->close_code);
	assert_true(dt <= (CONNECT_TIMEOUT_S + 1) * 1000);
	wc_close(&w);
}

/* ---- MQTT in frames ---------------------------------------------------------- */

static void test_connect_split_over_three_frames(void **state)
{
	uint8_t b[256];
	(void)state;

	gw_up();
	struct wc *w = wc_open();
	int n = build_connect(b, sizeof(b), "ws-split");
	assert_true(n > 8);
	/* 1 byte (the packet type: the fixed header is cut after it), then the
	 * remaining length and part of the variable header, then the rest. */
	wc_send_frame(w, true, 0x2, b, 1, true);
	itutil_sleep_ms(50);
	wc_send_frame(w, true, 0x2, b + 1, 5, true);
	itutil_sleep_ms(50);
	wc_send_frame(w, true, 0x2, b + 6, (size_t)n - 6, true);
	wc_expect(w, "20 02 00 00", "CONNACK");
	wc_ping(w);
	assert_int_equal(w->other_data, 0);
	wc_close(&w);
}

static void test_three_packets_in_one_frame(void **state)
{
	uint8_t b[512];
	int n;
	(void)state;

	gw_up();
	struct wc *w = wc_open();
	n = build_connect(b, sizeof(b), "ws-batch");
	n += raw_build_subscribe(b + n, sizeof(b) - (size_t)n, 4, 9, "batch/#", 0);
	n += raw_build_publish(b + n, sizeof(b) - (size_t)n, 4, "batch/one", "in one frame", 12, 0,
			       false, false, 0);
	wc_send_mqtt(w, b, (size_t)n);
	wc_expect(w, "20 02 00 00", "CONNACK");
	wc_expect(w, "90 03 00 09 00", "SUBACK");
	uint8_t want[64], got[64];
	int wn = raw_build_publish(want, sizeof(want), 4, "batch/one", "in one frame", 12, 0, false,
				   false, 0);
	assert_int_equal(wc_recv_mqtt(w, got, sizeof(got), WAIT_MS), wn);
	assert_memory_equal(got, want, (size_t)wn);
	wc_close(&w);
}

static void test_fragmented_message_with_ping(void **state)
{
	uint8_t b[256];
	struct itutil_pkt p;
	(void)state;

	gw_up();
	int sub = itutil_connect(gw_listener_port(&G, L_MQTT), "ws-frag-sub", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "frag/#", 1), 0);
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-frag");

	/* One QoS 1 PUBLISH as a fragmented binary message: FIN=0 binary, a
	 * PING, FIN=0 continuation, FIN=1 continuation. */
	int n = raw_build_publish(b, sizeof(b), 4, "frag/x", "fragmented payload", 18, 1, false,
				  false, 33);
	assert_true(n > 12);
	wc_send_frame(w, false, 0x2, b, 3, true);
	wc_send_frame(w, true, 0x9, "hb-123", 6, true);
	wc_send_frame(w, false, 0x0, b + 3, 7, true);
	wc_send_frame(w, true, 0x0, b + 10, (size_t)n - 10, true);
	wc_expect(w, "40 02 00 21", "PUBACK");
	assert_int_equal(w->pong_len, 6);
	assert_memory_equal(w->pong, "hb-123", 6);
	assert_int_equal(itutil_recv_acked(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "frag/x");
	assert_string_equal(p.payload, "fragmented payload");

	/* An empty PING and an empty fragment; MQTT goes on. */
	w->pong_len = -1;
	wc_send_frame(w, false, 0x2, b, 0, true);
	wc_send_frame(w, true, 0x9, NULL, 0, true);
	wc_send_frame(w, true, 0x0, NULL, 0, true);
	wc_ping(w);
	assert_int_equal(w->pong_len, 0);
	wc_close(&w);
	close(sub);
}

static void test_unmasked_frame_closes_1002(void **state)
{
	static const uint8_t ping[] = { 0xc0, 0x00 };
	(void)state;

	gw_up();
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-unmasked");
	wc_send_frame(w, true, 0x2, ping, sizeof(ping), false);
	wc_expect_close(w, 1002);
	wc_close(&w);
}

/* Frames RFC 6455 forbids, each on a fresh connection after CONNECT: the
 * close code the server must answer with, then the connection ends. */
static void test_bad_frames_closed(void **state)
{
	static const uint8_t big[126] = { 0 };
	static const struct {
		const char *what;
		uint8_t b0[2];            /* first byte of up to two frames, 0: none */
		const void *data[2];
		size_t len[2];
		int code;
	} cases[] = {
		{ "RSV1 set", { 0xc2 }, { "x" }, { 1 }, 1002 },
		{ "opcode 3", { 0x83 }, { "x" }, { 1 }, 1002 },
		{ "126-byte PING", { 0x89 }, { big }, { 126 }, 1002 },
		{ "fragmented PING", { 0x09 }, { "a" }, { 1 }, 1002 },
		{ "continuation first", { 0x80 }, { "x" }, { 1 }, 1002 },
		{ "new message inside one", { 0x02, 0x82 }, { "a", "b" }, { 1, 1 }, 1002 },
		{ "close with 1 byte", { 0x88 }, { "\x03" }, { 1 }, 1002 },
		{ "close code 999", { 0x88 }, { "\x03\xe7" }, { 2 }, 1002 },
		{ "close code 1005", { 0x88 }, { "\x03\xed" }, { 2 }, 1002 },
		{ "close reason not UTF-8", { 0x88 }, { "\x03\xe8\xff" }, { 3 }, 1007 },
	};
	(void)state;

	gw_up();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char id[32];

		print_message("%s\n", cases[i].what);
		struct wc *w = wc_open();
		snprintf(id, sizeof(id), "ws-bad-%zu", i);
		wc_mqtt_connect(w, id);
		for (int k = 0; k < 2 && cases[i].b0[k]; k++)
			wc_send_frame_b0(w, cases[i].b0[k], cases[i].data[k], cases[i].len[k], true);
		wc_expect_close(w, cases[i].code);
		wc_close(&w);
	}
	/* A 64-bit length with its top bit set: refused from the header alone. */
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-bad-len");
	static const uint8_t hdr[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4 };
	assert_int_equal(raw_send(w->fd, hdr, sizeof(hdr)), 0);
	wc_expect_close(w, 1002);
	wc_close(&w);
}

static void test_text_frame_closes_1003(void **state)
{
	(void)state;

	gw_up();
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-text");
	wc_send_frame(w, true, 0x1, "hello", 5, true);
	wc_expect_close(w, 1003);
	wc_close(&w);
	/* Before CONNECT too. */
	w = wc_open();
	wc_send_frame(w, true, 0x1, "{}", 2, true);
	wc_expect_close(w, 1003);
	wc_close(&w);
}

static void test_client_close_answered(void **state)
{
	static const uint8_t bye[] = { 0x03, 0xe8, 'b', 'y', 'e' }; /* 1000 "bye" */
	struct raw_connect c = { .client_id = "ws-closer", .clean = true, .keepalive = 30,
				 .will_topic = "wills/ws-closer", .will_payload = "gone",
				 .will_payload_len = 4, .will_qos = 1 };
	struct itutil_pkt p;
	uint8_t b[256];
	(void)state;

	gw_up();
	int sub = itutil_connect(gw_listener_port(&G, L_MQTT), "ws-will-watch", true, 0, NULL);
	assert_true(sub >= 0);
	assert_int_equal(itutil_subscribe(sub, 1, "wills/#", 1), 0);
	struct wc *w = wc_open();
	int n = raw_build_connect(b, sizeof(b), &c);
	wc_send_mqtt(w, b, (size_t)n);
	wc_expect(w, "20 02 00 00", "CONNACK");
	wc_send_frame(w, true, 0x8, bye, sizeof(bye), true);
	wc_expect_close(w, 1000);
	wc_close(&w);
	/* A WebSocket close is no MQTT DISCONNECT: the will goes. */
	assert_int_equal(itutil_recv_acked(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "wills/ws-closer");
	assert_string_equal(p.payload, "gone");

	/* DISCONNECT: the server closes (close frame, then the connection
	 * ends), and no will. */
	c.client_id = "ws-polite";
	c.will_topic = "wills/ws-polite";
	w = wc_open();
	n = raw_build_connect(b, sizeof(b), &c);
	b[n++] = 0xe0; /* DISCONNECT in the same frame */
	b[n++] = 0x00;
	wc_send_mqtt(w, b, (size_t)n);
	wc_expect(w, "20 02 00 00", "CONNACK");
	wc_expect_close(w, 1000);
	wc_close(&w);
	assert_true(itutil_quiet(sub, 500));
	close(sub);
}

static void test_publish_arrives_as_binary_frames(void **state)
{
	static const size_t sizes[] = { 1, 125, 126, 65535, 100000 };
	uint8_t *want = malloc(WC_BUF), *got = malloc(WC_BUF), *payload = malloc(100000);
	(void)state;

	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(payload);
	for (size_t i = 0; i < 100000; i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	gw_up();
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-sink");
	wc_subscribe(w, 1, "down/#", 0);
	int pub = itutil_connect(gw_listener_port(&G, L_MQTT), "ws-source", true, 0, NULL);
	assert_true(pub >= 0);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		unsigned before = w->data_frames;
		int wn = raw_build_publish(want, WC_BUF, 4, "down/x", payload, sizes[k], 0, false,
					   false, 0);

		assert_true(wn > 0);
		assert_int_equal(raw_send(pub, want, (size_t)wn), 0);
		/* Byte for byte what a plain MQTT subscriber would get. */
		assert_int_equal(wc_recv_mqtt(w, got, WC_BUF, WAIT_MS), wn);
		assert_memory_equal(got, want, (size_t)wn);
		print_message("%zu-byte payload: %u data frame(s)\n", sizes[k],
			      w->data_frames - before);
	}
	assert_int_equal(w->other_data, 0);
	assert_int_equal(w->mq_len, 0);
	close(pub);
	wc_close(&w);
	free(want);
	free(got);
	free(payload);
}

/* ---- slow WebSocket subscribers ------------------------------------------------------ */

#define SLOW_MSG 4096
#define SLOW_COUNT 20480  /* x 4 kB = 80 MB */
#define RSS_GROWTH_KB (16 * 1024)

/* As it_limits' test_slow_subscriber_qos0, with the subscriber on
 * WebSocket: with max_output_bytes = 64 kB, 80 MB of QoS 0 for a
 * subscriber that does not read must be dropped past the limit, not
 * buffered: the gateway's peak RSS grows by less than 16 MB (a plain TCP
 * subscriber costs it under 1 MB). */
static void test_slow_ws_subscriber_qos0_bounded(void **state)
{
	static uint8_t payload[SLOW_MSG], out[SLOW_MSG + 64], in[SLOW_MSG + 64];
	(void)state;

	gw_up_limits("max_output_bytes = 65536;");
	struct wc *w = wc_open_rcvbuf(4096);
	wc_mqtt_connect(w, "ws-slow0");
	wc_subscribe(w, 1, "slow/0", 0);
	int pub = itutil_connect(gw_listener_port(&G, L_MQTT), "ws-slow0-pub", true, 0, NULL);
	assert_true(pub >= 0);
	long rss0 = gw_mem_kb(&G, "VmRSS");
	memset(payload, 'x', sizeof(payload));
	int n = raw_build_publish(out, sizeof(out), 4, "slow/0", payload, sizeof(payload), 0, false,
				  false, 0);
	/* In bursts of 32 kB, so that each reaches the subscriber's output
	 * alone, well under the limit: only what is held in all counts. */
	for (int i = 0; i < SLOW_COUNT; i++) {
		assert_int_equal(raw_send(pub, out, (size_t)n), 0);
		if (i % 8 == 7)
			itutil_sleep_ms(1);
	}
	assert_int_equal(itutil_ping(pub), 0);
	long hwm = gw_mem_kb(&G, "VmHWM");
	assert_true(rss0 > 0 && hwm > 0);
	print_message("gateway RSS %ld kB before, peak %ld kB after 80 MB for a stalled "
		      "WebSocket subscriber\n", rss0, hwm);
	int got = 0;
	while ((n = wc_recv_mqtt(w, in, sizeof(in), 1000)) > 0)
		got++;
	print_message("slow WebSocket QoS 0 subscriber got %d of %d messages\n", got, SLOW_COUNT);
	close(pub);
	wc_close(&w);
	if (gw_is_asan(&G)) {
		print_message("ASan build: RSS bound not checked\n");
		return;
	}
	assert_true(got < SLOW_COUNT);
	/* max_output_bytes counts the framed bytes waiting for the socket too. */
	assert_true(hwm - rss0 < RSS_GROWTH_KB);
}

/* ---- Kafka ---------------------------------------------------------------------- */

static void test_kafka_uplink_and_downlink(void **state)
{
	struct itkafka_rec r[1];
	uint8_t b[256];
	(void)state;

	gw_up();
	struct wc *w = wc_open();
	wc_mqtt_connect(w, "ws-dev-1");
	int n = raw_build_publish(b, sizeof(b), 4, "ws/ws-dev-1/t", "over websocket", 14, 1, false,
				  false, 5);
	wc_send_mqtt(w, b, (size_t)n);
	wc_expect(w, "40 02 00 05", "PUBACK");
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(K.bootstrap, "it-ws-up", 1, WAIT_MS, r), 1);
	assert_non_null(r[0].key);
	assert_string_equal(r[0].key, "ws-dev-1");
	assert_int_equal(r[0].vlen, 14);
	assert_memory_equal(r[0].val, "over websocket", 14);
	itkafka_recs_free(r, 1);

	/* A command from Kafka to the WebSocket device. */
	wc_subscribe(w, 2, "devices/ws-dev-1/commands", 1);
	assert_int_equal(itkafka_produce(prod, "it-ws-cmd", -1, "ws-dev-1", "open-valve", NULL), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	uint8_t got[256], want[256];
	n = wc_recv_mqtt(w, got, sizeof(got), 15000);
	assert_true(n > 4);
	assert_int_equal(got[0] & 0xf6, 0x32); /* PUBLISH QoS 1 */
	uint16_t pid = (uint16_t)(got[2 + 2 + 25] << 8 | got[2 + 2 + 25 + 1]);
	int wn = raw_build_publish(want, sizeof(want), 4, "devices/ws-dev-1/commands", "open-valve",
				   10, 1, false, false, pid);
	assert_int_equal(n, wn);
	assert_memory_equal(got, want, (size_t)wn);
	assert_int_equal(raw_build_ack(b, sizeof(b), 0x40, pid), 4);
	wc_send_mqtt(w, b, 4);
	wc_ping(w);
	wc_close(&w);
}

/* ---- Python paho-mqtt over ws:// and wss:// ---------------------------------------- */

static void test_paho_python(void **state)
{
	char cmd[600], line[512];
	(void)state;

	if (system("python3 -c 'import paho.mqtt.client' >/dev/null 2>&1") != 0) {
		print_error("\n*** it_ws: SKIPPING test_paho_python: python3 or its paho-mqtt module "
			    "is missing. scripts/deps.sh installs it (make deps). ***\n\n");
		skip();
	}
	gw_up();
	snprintf(cmd, sizeof(cmd),
		 "timeout 60 python3 tests/integration/ws_paho.py --ws-port %d --wss-port %d "
		 "--ca '%s/ca.crt' 2>&1",
		 gw_listener_port(&G, L_WS), gw_listener_port(&G, L_WSS), certs);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p))
		print_message("ws_paho.py: %s", line);
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_upgrade_101, test_teardown),
		cmocka_unit_test_teardown(test_upgrade_refused, test_teardown),
		cmocka_unit_test_teardown(test_slow_handshake_closed, test_teardown),
		cmocka_unit_test_teardown(test_connect_split_over_three_frames, test_teardown),
		cmocka_unit_test_teardown(test_three_packets_in_one_frame, test_teardown),
		cmocka_unit_test_teardown(test_fragmented_message_with_ping, test_teardown),
		cmocka_unit_test_teardown(test_unmasked_frame_closes_1002, test_teardown),
		cmocka_unit_test_teardown(test_bad_frames_closed, test_teardown),
		cmocka_unit_test_teardown(test_text_frame_closes_1003, test_teardown),
		cmocka_unit_test_teardown(test_client_close_answered, test_teardown),
		cmocka_unit_test_teardown(test_publish_arrives_as_binary_frames, test_teardown),
		cmocka_unit_test_teardown(test_slow_ws_subscriber_qos0_bounded, test_teardown),
		cmocka_unit_test_teardown(test_kafka_uplink_and_downlink, test_teardown),
		cmocka_unit_test_teardown(test_paho_python, test_teardown),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_ws", tests, group_setup, group_teardown);
}
