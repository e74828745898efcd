/*
 * test_ws.c - WebSocket: the opening handshake (valid requests, every refusal
 * with its status, limits, byte by byte), the accept key from RFC 6455's own
 * example, the frame decoder (lengths, masks, one byte at a time,
 * fragmentation with control frames between, every protocol error with its
 * close code, close frames) and encoder round trips through a masking
 * encoder written here, independently of ws.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ws.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define HEAD(extra) "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n" \
	"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" extra "\r\n"

/* Parses exactly n heap bytes, so that a read past the end is caught. */
static int hs_parse_n(const char *s, size_t n, struct ws_handshake *hs)
{
	uint8_t *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	int r = ws_handshake_parse(copy, n, "/mqtt", hs);
	free(copy);
	return r;
}

static int hs_parse(const char *s, struct ws_handshake *hs)
{
	return hs_parse_n(s, strlen(s), hs);
}

static void test_accept_key(void **state)
{
	char acc[29];
	(void)state;
	assert_int_equal(ws_accept_key(KEY, acc), 0);
	/* RFC 6455 section 1.3, computed independently with Python hashlib too. */
	assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_handshake_valid(void **state)
{
	static const struct { const char *req; enum ws_proto proto; } t[] = {
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\n"), WS_PROTO_NONE },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: mqtt\r\n"), WS_PROTO_MQTT },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: mqttv3.1\r\n"),
		  WS_PROTO_MQTTV31 },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt\r\n"),
		  WS_PROTO_MQTT },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: chat,,  mqtt \r\n"),
		  WS_PROTO_MQTT },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: chat\r\n"
		       "Sec-WebSocket-Protocol: mqtt\r\n"), WS_PROTO_MQTT },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol:\r\n"), WS_PROTO_NONE },
		{ "GET /mqtt?token=1 HTTP/1.1\nHost: h\nupgrade: WebSocket\n"
		  "connection: keep-alive, UPGRADE\nsec-websocket-version: 13\n"
		  "sec-websocket-key: " KEY "\n\n", WS_PROTO_NONE },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
		  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY
		  "\r\nOrigin: http://x\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
		  WS_PROTO_NONE },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct ws_handshake hs;
		size_t n = strlen(t[i].req);
		assert_int_equal(hs_parse(t[i].req, &hs), (int)n);
		assert_string_equal(hs.key, KEY);
		assert_int_equal(hs.proto, t[i].proto);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(hs_parse_n(t[i].req, k, &hs), 0);
	}
	/* Bytes after the head are not ours. */
	struct ws_handshake hs;
	const char *r = HEAD("Sec-WebSocket-Key: " KEY "\r\n") "\x82\x80";
	assert_int_equal(hs_parse(r, &hs), (int)strlen(r) - 2);
}

static void test_handshake_refused(void **state)
{
	static const struct { const char *req; int want; } t[] = {
		{ "POST /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_BAD_REQUEST },
		{ "GET /mqtt HTTP/1.0\r\nHost: h\r\n\r\n", WS_HS_BAD_REQUEST },
		{ "get /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_BAD_REQUEST },
		{ "GET mqtt HTTP/1.1\r\n\r\n", WS_HS_BAD_REQUEST },
		{ "\x16\x03\x01\x02\x00", WS_HS_BAD_REQUEST },
		{ "GET / HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_NOT_FOUND },
		{ "GET /mqtt/ HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_NOT_FOUND },
		{ "GET /mqttx HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_NOT_FOUND },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgradex\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Key: " KEY "\r\n\r\n", WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_UPGRADE_REQUIRED },
		{ "GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		  WS_HS_BAD_REQUEST },
		{ HEAD(""), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: \r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXh4eA==\r\n"), WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: chat\r\n"),
		  WS_HS_BAD_REQUEST },
		{ HEAD("Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Protocol: MQTT, mqttv3\r\n"),
		  WS_HS_BAD_REQUEST },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct ws_handshake hs;
		if (hs_parse(t[i].req, &hs) != t[i].want)
			fail_msg("case %zu: got %d, want %d", i, hs_parse(t[i].req, &hs), t[i].want);
	}
}

static void test_handshake_limits(void **state)
{
	struct ws_handshake hs;
	char *big = malloc(WS_MAX_HEAD + 64);
	(void)state;
	assert_non_null(big);

	/* Incomplete, short of the limit: need more; at the limit: 431. */
	int n = snprintf(big, WS_MAX_HEAD + 64, "GET /mqtt HTTP/1.1\r\nX-Pad: ");
	memset(big + n, 'a', WS_MAX_HEAD + 64 - (size_t)n);
	assert_int_equal(hs_parse_n(big, WS_MAX_HEAD - 1, &hs), 0);
	assert_int_equal(hs_parse_n(big, WS_MAX_HEAD, &hs), WS_HS_TOO_LARGE);
	assert_int_equal(hs_parse_n(big, WS_MAX_HEAD + 64, &hs), WS_HS_TOO_LARGE);
	/* A complete head one byte over the limit. */
	memcpy(big + WS_MAX_HEAD - 3, "\r\n\r\n", 4);
	assert_int_equal(hs_parse_n(big, WS_MAX_HEAD + 1, &hs), WS_HS_TOO_LARGE);
	free(big);
}

static void assert_buf(const struct buf *b, const char *want)
{
	assert_int_equal(buf_used(b), strlen(want));
	assert_memory_equal(buf_head(b), want, strlen(want));
}

static void test_handshake_answers(void **state)
{
	struct ws_handshake hs = { .key = KEY, .proto = WS_PROTO_MQTT };
	struct buf b = { 0 };
	(void)state;

	assert_int_equal(ws_handshake_response(&hs, &b), 0);
	assert_buf(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		   "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
		   "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
	buf_reset(&b);
	hs.proto = WS_PROTO_MQTTV31;
	assert_int_equal(ws_handshake_response(&hs, &b), 0);
	assert_non_null(strstr((const char *)buf_head(&b), "Sec-WebSocket-Protocol: mqttv3.1\r\n\r\n"));
	buf_reset(&b);
	hs.proto = WS_PROTO_NONE;
	assert_int_equal(ws_handshake_response(&hs, &b), 0);
	assert_null(memmem(buf_head(&b), buf_used(&b), "Sec-WebSocket-Protocol", 22));

	buf_reset(&b);
	assert_int_equal(ws_handshake_error(404, &b), 0);
	assert_buf(&b, "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
	buf_reset(&b);
	assert_int_equal(ws_handshake_error(426, &b), 0);
	assert_buf(&b, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
		   "Sec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n"
		   "Content-Length: 0\r\n\r\n");
	buf_reset(&b);
	assert_int_equal(ws_handshake_error(-WS_HS_TOO_LARGE, &b), 0);
	assert_int_equal(ws_handshake_error(-WS_HS_BAD_REQUEST, &b), 0);
	assert_int_equal(ws_handshake_error(500, &b), -1);
	buf_release(&b);
}

/* ---- Frames: a client-side encoder written independently of ws.c ---- */

/* Writes a client frame: first byte b0, the length in the given form
 * (7, 16 or 64 bits; 0 picks the shortest), masked with mask unless
 * masked is false. Returns its size. */
static size_t client_frame(uint8_t *out, uint8_t b0, const void *payload, uint64_t len,
			   int form, bool masked, uint32_t mask)
{
	const uint8_t *p = payload;
	uint8_t m[4] = { (uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
			 (uint8_t)mask };
	size_t o = 0;

	if (!form)
		form = len < 126 ? 7 : len < 65536 ? 16 : 64;
	out[o++] = b0;
	uint8_t mbit = masked ? 0x80 : 0;
	if (form == 7) {
		out[o++] = (uint8_t)(mbit | len);
	} else if (form == 16) {
		out[o++] = mbit | 126;
		out[o++] = (uint8_t)(len >> 8);
		out[o++] = (uint8_t)len;
	} else {
		out[o++] = mbit | 127;
		for (int s = 56; s >= 0; s -= 8)
			out[o++] = (uint8_t)(len >> s);
	}
	if (masked) {
		memcpy(out + o, m, 4);
		o += 4;
	}
	for (uint64_t i = 0; payload && i < len; i++)
		out[o++] = masked ? p[i] ^ m[i % 4] : p[i];
	return o;
}

/* What a stream of frames decoded to: data bytes concatenated, and the
 * events in order as letters (D data, P ping, O pong, C close, E error). */
struct outcome {
	uint8_t data[200000];
	size_t n;
	char events[64];
	size_t n_events;
	uint16_t code;
	uint8_t ctl[WS_MAX_CONTROL];
	size_t ctl_len;
};

static struct outcome got;

static void note(char letter)
{
	if (got.n_events < sizeof(got.events) - 1 &&
	    !(letter == 'D' && got.n_events && got.events[got.n_events - 1] == 'D'))
		got.events[got.n_events++] = letter;
}

/* Feeds in[0..len) in chunks of step bytes (0: all at once) into d. */
static void feed(struct ws_decoder *d, uint8_t *in, size_t len, size_t step)
{
	memset(&got, 0, sizeof(got));
	for (size_t off = 0; off < len;) {
		size_t chunk = step && len - off > step ? step : len - off;
		size_t used = 0;
		while (used < chunk) {
			struct ws_event ev;
			size_t c;
			int t = ws_decode(d, in + off + used, chunk - used, &c, &ev);
			assert_true(c <= chunk - used);
			assert_int_equal(t, ev.type);
			if (t == WS_EV_DATA) {
				assert_ptr_equal(ev.data, in + off + used + c - ev.len);
				assert_true(got.n + ev.len <= sizeof(got.data));
				memcpy(got.data + got.n, ev.data, ev.len);
				got.n += ev.len;
			} else if (t == WS_EV_PING || t == WS_EV_PONG || t == WS_EV_CLOSE) {
				assert_true(ev.len <= WS_MAX_CONTROL);
				if (ev.len)
					memcpy(got.ctl, ev.data, ev.len);
				got.ctl_len = ev.len;
				got.code = ev.code;
			} else if (t == WS_EV_ERROR) {
				got.code = ev.code;
				note('E');
				return;
			}
			if (t != WS_EV_NONE)
				note(" DPOC"[t]);
			used += c;
			if (t == WS_EV_NONE)
				assert_int_equal(used, chunk);
		}
		off += chunk;
	}
}

static void test_decode_lengths(void **state)
{
	static const struct { uint64_t len; int form; } t[] = {
		{ 0, 7 }, { 1, 7 }, { 5, 7 }, { 125, 7 }, { 126, 16 }, { 1000, 16 },
		{ 65535, 16 }, { 65536, 64 }, { 100003, 64 },
		{ 5, 16 }, { 5, 64 }, /* lengths not in their shortest form are accepted */
	};
	static uint8_t payload[100003], frame[100003 + 14];
	static const uint32_t masks[] = { 0, 0x37fa213d, 0xffffffff, 0x01020304 };
	(void)state;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + (i >> 8));
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		for (size_t m = 0; m < 4; m++) {
			struct ws_decoder d;
			ws_decoder_init(&d, 0);
			size_t n = client_frame(frame, 0x82, payload, t[i].len, t[i].form, true, masks[m]);
			size_t steps[] = { 0, 1, 3, 4096 };
			for (size_t s = 0; s < 4; s++) {
				client_frame(frame, 0x82, payload, t[i].len, t[i].form, true, masks[m]);
				feed(&d, frame, n, steps[s]);
				assert_int_equal(got.n, t[i].len);
				assert_memory_equal(got.data, payload, t[i].len);
				assert_string_equal(got.events, t[i].len ? "D" : "");
			}
		}
	}
}

static void test_fragments_with_control(void **state)
{
	uint8_t in[256];
	size_t n = 0;
	(void)state;

	n += client_frame(in + n, 0x02, "abc", 3, 0, true, 0x11223344);        /* start */
	n += client_frame(in + n, 0x89, "ping!", 5, 0, true, 0xa1b2c3d4);      /* ping */
	n += client_frame(in + n, 0x00, "", 0, 0, true, 0x55667788);           /* empty cont */
	n += client_frame(in + n, 0x00, "defg", 4, 0, true, 0x99aabbcc);       /* cont */
	n += client_frame(in + n, 0x8a, NULL, 0, 0, true, 0x01010101);         /* empty pong */
	n += client_frame(in + n, 0x80, "h", 1, 0, true, 0xdeadbeef);          /* last */
	n += client_frame(in + n, 0x82, "ij", 2, 0, true, 0xcafebabe);         /* whole */
	for (size_t step = 0; step <= 7; step++) {
		uint8_t copy[256];
		struct ws_decoder d;
		memcpy(copy, in, n);
		ws_decoder_init(&d, 16);
		feed(&d, copy, n, step);
		assert_int_equal(got.n, 10);
		assert_memory_equal(got.data, "abcdefghij", 10);
		assert_string_equal(got.events, "DPDOD");
	}
	/* The ping's payload, as the pong must echo it. */
	struct ws_decoder d;
	uint8_t ping[32];
	ws_decoder_init(&d, 0);
	size_t pn = client_frame(ping, 0x89, "ping!", 5, 0, true, 0xa1b2c3d4);
	feed(&d, ping, pn, 1);
	assert_int_equal(got.ctl_len, 5);
	assert_memory_equal(got.ctl, "ping!", 5);
}

/* Frame bytes as a literal: masked with a zero mask unless said otherwise,
 * so that payload bytes read as themselves. */
#define M0 "\x00\x00\x00\x00"

static void test_protocol_errors(void **state)
{
	static const struct { const char *in; size_t len; uint64_t max; uint16_t code; } t[] = {
#define E(s, max, code) { s, sizeof(s) - 1, max, code }
		E("\x82\x03" "abc", 0, 1002),                 /* unmasked */
		E("\xc2\x80" M0, 0, 1002),                    /* RSV1 */
		E("\xa2\x80" M0, 0, 1002),                    /* RSV2 */
		E("\x92\x80" M0, 0, 1002),                    /* RSV3 */
		E("\x83\x80" M0, 0, 1002),                    /* opcode 3 */
		E("\x87\x80" M0, 0, 1002),                    /* opcode 7 */
		E("\x8b\x80" M0, 0, 1002),                    /* opcode 0xb */
		E("\x8f\x80" M0, 0, 1002),                    /* opcode 0xf */
		E("\x09\x80" M0, 0, 1002),                    /* fragmented ping */
		E("\x08\x80" M0, 0, 1002),                    /* fragmented close */
		E("\x89\xfe\x00\x7e" M0, 0, 1002),            /* ping of 126 bytes */
		E("\x8a\xff\x00\x00\x00\x00\x00\x00\x00\x01" M0, 0, 1002),
		E("\x80\x80" M0, 0, 1002),                    /* continuation first */
		E("\x00\x80" M0, 0, 1002),
		E("\x82\x80" M0 "\x80\x80" M0 "\x80\x80" M0, 0, 1002), /* after the end */
		E("\x02\x80" M0 "\x82\x80" M0, 0, 1002),      /* new message inside one */
		E("\x02\x80" M0 "\x81\x80" M0, 0, 1002),      /* text inside one */
		E("\x81\x80" M0, 0, 1003),                    /* text */
		E("\x01\x80" M0, 0, 1003),
		E("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00" M0, 0, 1002), /* top bit */
		E("\x82\x91" M0 "0123456789abcdefg", 16, 1009),
		E("\x82\xfe\x01\x00" M0, 255, 1009),
		E("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00" M0, 1u << 20, 1009),
		E("\x02\x88" M0 "01234567" "\x80\x89" M0, 8, 1009), /* per frame */
		E("\x88\x81" M0 "\x03", 0, 1002),             /* 1-byte close body */
		E("\x88\x82" M0 "\x03\xe7", 0, 1002),         /* 999 */
		E("\x88\x82" M0 "\x03\xec", 0, 1002),         /* 1004 */
		E("\x88\x82" M0 "\x03\xed", 0, 1002),         /* 1005 */
		E("\x88\x82" M0 "\x03\xee", 0, 1002),         /* 1006 */
		E("\x88\x82" M0 "\x03\xf7", 0, 1002),         /* 1015 */
		E("\x88\x82" M0 "\x0b\xb7", 0, 1002),         /* 2999 */
		E("\x88\x82" M0 "\x13\x88", 0, 1002),         /* 5000 */
		E("\x88\x83" M0 "\x03\xe8\xff", 0, 1007),     /* reason not UTF-8 */
		E("\x88\x84" M0 "\x03\xe8\xc0\xaf", 0, 1007), /* overlong */
		E("\x88\x85" M0 "\x03\xe8\xed\xa0\x80", 0, 1007), /* surrogate */
		E("\x88\x86" M0 "\x03\xe8\xf4\x90\x80\x80", 0, 1007), /* > U+10FFFF */
		E("\x88\x84" M0 "\x03\xe8\xe2\x82", 0, 1007), /* cut sequence */
#undef E
	};
	(void)state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		for (size_t step = 0; step <= 1; step++) {
			uint8_t in[64];
			struct ws_decoder d;
			struct ws_event ev;
			size_t c;
			memcpy(in, t[i].in, t[i].len);
			ws_decoder_init(&d, t[i].max);
			feed(&d, in, t[i].len, step);
			if (got.code != t[i].code || got.events[got.n_events - 1] != 'E')
				fail_msg("case %zu step %zu: events %s code %u, want %u", i, step,
					 got.events, got.code, t[i].code);
			/* Stuck in the error, consuming nothing. */
			assert_int_equal(ws_decode(&d, in, t[i].len, &c, &ev), WS_EV_ERROR);
			assert_int_equal(c, 0);
			assert_int_equal(ev.code, t[i].code);
		}
	}
}

static void test_close(void **state)
{
	static const struct { const char *in; size_t len; uint16_t code; const char *reason; } t[] = {
		{ "\x88\x80" M0, 6, 1005, "" },
		{ "\x88\x82" M0 "\x03\xe8", 8, 1000, "" },
		{ "\x88\x85" "\x01\x02\x03\x04" "\x02\xeb\x61\x7d\x64", 11, 1001, "bye" },
		{ "\x88\x88" M0 "\x0f\xa0" "h\xc3\xa9\xe2\x82\xac", 14, 4000, "h\xc3\xa9\xe2\x82\xac" },
		{ "\x88\x84" M0 "\x03\xf4" "ok", 10, 1012, "ok" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint8_t in[64];
		struct ws_decoder d;
		memcpy(in, t[i].in, t[i].len);
		/* Whatever follows a close is ignored, even garbage. */
		memcpy(in + t[i].len, "\x81\x00garbage", 9);
		ws_decoder_init(&d, 0);
		feed(&d, in, t[i].len + 9, i % 2);
		assert_string_equal(got.events, "C");
		assert_int_equal(got.code, t[i].code);
		assert_int_equal(got.ctl_len, strlen(t[i].reason));
		assert_memory_equal(got.ctl, t[i].reason, got.ctl_len);
	}
}

static void test_encode(void **state)
{
	static const struct { uint64_t len; size_t hlen; const char *hdr; } t[] = {
		{ 0, 2, "\x82\x00" }, { 125, 2, "\x82\x7d" }, { 126, 4, "\x82\x7e\x00\x7e" },
		{ 65535, 4, "\x82\x7e\xff\xff" },
		{ 65536, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" },
		{ 0x0102030405060708ull, 10, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08" },
	};
	uint8_t hdr[WS_MAX_FRAME_HEADER];
	struct buf b = { 0 };
	(void)state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(ws_frame_header(hdr, WS_OP_BINARY, t[i].len), t[i].hlen);
		assert_memory_equal(hdr, t[i].hdr, t[i].hlen);
	}
	assert_int_equal(ws_encode_frame(&b, WS_OP_PONG, "abc", 3), 0);
	assert_int_equal(ws_encode_close(&b, 1002, "x", 1), 0);
	assert_int_equal(ws_encode_close(&b, WS_CLOSE_NO_STATUS, NULL, 0), 0);
	assert_int_equal(buf_used(&b), 5 + 5 + 2);
	assert_memory_equal(buf_head(&b), "\x8a\x03" "abc" "\x88\x03\x03\xea" "x" "\x88\x00", 12);

	static const char big[200];
	assert_int_equal(ws_encode_frame(&b, WS_OP_PING, big, 126), -1);
	assert_int_equal(ws_encode_close(&b, 1000, big, 124), -1);
	assert_int_equal(ws_encode_close(&b, 1000, big, 123), 0);
	buf_release(&b);
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

/* Random messages split into random frames with pings between, encoded by
 * the server encoder, masked here, decoded in random chunks. */
static void test_roundtrip_random(void **state)
{
	static uint8_t want[100000], frames[400000];
	(void)state;

	for (int round = 0; round < 200; round++) {
		size_t n_want = 0, n = 0, pings = 0;
		while (n_want < 60000 && rnd(20) != 0) {
			size_t msg = rnd(8) ? rnd(300) : rnd(70000);
			if (n_want + msg > sizeof(want))
				break;
			for (size_t i = 0; i < msg; i++)
				want[n_want + i] = (uint8_t)rnd(256);
			/* Cut the message into frames, some empty. */
			size_t done = 0;
			bool first = true;
			do {
				size_t part = msg - done ? rnd((uint32_t)(msg - done) + 1) : 0;
				if (rnd(3) == 0)
					part = msg - done;
				bool fin = done + part == msg;
				assert_true(n + part + 30 < sizeof(frames));
				struct buf b = { 0 };
				assert_int_equal(ws_encode_frame(&b, first ? WS_OP_BINARY : WS_OP_CONT,
								 want + n_want + done, part), 0);
				uint8_t *f = b.data;
				if (!fin)
					f[0] &= 0x7f;
				/* Mask the server frame as a client would: insert a key. */
				size_t hl = (f[1] & 0x7f) == 126 ? 4 : (f[1] & 0x7f) == 127 ? 10 : 2;
				uint32_t key = rnd(0xffffff) << 8 | rnd(256);
				n += client_frame(frames + n, f[0], f + hl, part, (int)(hl == 2 ? 7 : hl == 4 ? 16 : 64),
						  true, key);
				buf_release(&b);
				done += part;
				first = false;
				if (rnd(4) == 0) {
					n += client_frame(frames + n, 0x89, "pp", 2, 0, true, key);
					pings++;
				}
			} while (done < msg);
			n_want += msg;
		}
		struct ws_decoder d;
		ws_decoder_init(&d, 0);
		size_t step = rnd(3) == 0 ? 1 : rnd(5000);
		feed(&d, frames, n, step);
		assert_int_equal(got.n, n_want);
		assert_memory_equal(got.data, want, n_want);
		assert_null(strchr(got.events, 'E'));
		(void)pings;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_handshake_valid),
		cmocka_unit_test(test_handshake_refused),
		cmocka_unit_test(test_handshake_limits),
		cmocka_unit_test(test_handshake_answers),
		cmocka_unit_test(test_decode_lengths),
		cmocka_unit_test(test_fragments_with_control),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_roundtrip_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
