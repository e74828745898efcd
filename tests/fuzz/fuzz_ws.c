/*
 * fuzz_ws.c - libFuzzer target for the WebSocket handshake parser and the
 * frame decoder.
 *
 * The handshake must answer only its documented results, claim no more than
 * it was given and agree with itself one byte short. The decoder must stay
 * inside the input (ASan watches the exact-size heap copies), never consume
 * more than it was given, point data events inside the chunk it just read,
 * report only the documented close codes, and decode the same stream into
 * the same bytes and events whether fed whole or cut at points derived from
 * the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ws.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

struct trace {
	uint8_t *data;    /* data bytes, concatenated */
	size_t n;
	uint8_t *events;  /* event types, then the control payload lengths and codes */
	size_t n_events;
};

static void record(struct trace *t, int type, uint16_t code, size_t len)
{
	t->events[t->n_events++] = (uint8_t)type;
	t->events[t->n_events++] = (uint8_t)(code >> 8);
	t->events[t->n_events++] = (uint8_t)code;
	t->events[t->n_events++] = (uint8_t)len;
}

/* Decodes in[0..size) in chunks from the generator seeded with seed (0: in
 * one piece), into t. */
static void decode(const uint8_t *src, size_t size, uint64_t max_frame, uint32_t seed,
		   struct trace *t)
{
	struct ws_decoder d;
	uint32_t r = seed;
	int last = WS_EV_NONE;

	ws_decoder_init(&d, max_frame);
	for (size_t off = 0; off < size && last != WS_EV_ERROR;) {
		size_t chunk = size - off;
		if (seed) {
			r = r * 1664525u + 1013904223u;
			size_t want = 1 + (r >> 16) % (seed & 0x100 ? 3 : 300);
			chunk = want < chunk ? want : chunk;
		}
		/* An exact-size copy, so that any read past the chunk is caught. */
		uint8_t *in = malloc(chunk);
		CHECK(in);
		memcpy(in, src + off, chunk);
		size_t used = 0;
		while (used < chunk) {
			struct ws_event ev;
			size_t c = 0;
			last = ws_decode(&d, in + used, chunk - used, &c, &ev);
			CHECK(last == (int)ev.type && c <= chunk - used);
			if (last == WS_EV_DATA) {
				CHECK(ev.len > 0 && ev.data == in + used + c - ev.len);
				memcpy(t->data + t->n, ev.data, ev.len);
				t->n += ev.len;
			} else if (last == WS_EV_PING || last == WS_EV_PONG || last == WS_EV_CLOSE) {
				CHECK(ev.len <= WS_MAX_CONTROL && (ev.len == 0) == (ev.data == NULL));
				record(t, last, ev.code, ev.len);
			} else if (last == WS_EV_ERROR) {
				CHECK(ev.code == 1002 || ev.code == 1003 || ev.code == 1007 ||
				      ev.code == 1009);
				record(t, last, ev.code, 0);
				break;
			} else {
				CHECK(c == chunk - used);
			}
			used += c;
		}
		free(in);
		off += chunk;
	}
}

static void handshake(const uint8_t *data, size_t size)
{
	struct ws_handshake hs;
	uint8_t *in = malloc(size ? size : 1);
	CHECK(in);
	memcpy(in, data, size);
	int r = ws_handshake_parse(in, size, "/mqtt", &hs);
	CHECK(r == 0 || r == WS_HS_BAD_REQUEST || r == WS_HS_NOT_FOUND ||
	      r == WS_HS_UPGRADE_REQUIRED || r == WS_HS_TOO_LARGE || (r > 0 && (size_t)r <= size));
	if (r > 0) {
		struct buf b = { 0 };
		CHECK(strlen(hs.key) == WS_KEY_LEN);
		CHECK(ws_handshake_parse(in, (size_t)r - 1, "/mqtt", &hs) == 0);
		CHECK(ws_handshake_response(&hs, &b) == 0);
		buf_release(&b);
	}
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	handshake(data, size);
	if (size < 4)
		return 0;

	/* The first four bytes choose the limit and the cuts; the rest is the stream. */
	uint32_t seed = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
			(uint32_t)data[2] << 8 | data[3];
	uint64_t max_frame = data[0] & 0x80 ? 0 : (uint64_t)(data[1] | 1) << (data[2] & 15);
	const uint8_t *stream = data + 4;
	size_t n = size - 4;
	struct trace whole = { malloc(n + 1), 0, malloc(4 * n + 4), 0 };
	struct trace cut = { malloc(n + 1), 0, malloc(4 * n + 4), 0 };
	CHECK(whole.data && whole.events && cut.data && cut.events);

	decode(stream, n, max_frame, 0, &whole);
	decode(stream, n, max_frame, seed | 1, &cut);
	CHECK(whole.n == cut.n && memcmp(whole.data, cut.data, whole.n) == 0);
	CHECK(whole.n_events == cut.n_events &&
	      memcmp(whole.events, cut.events, whole.n_events) == 0);

	free(whole.data);
	free(whole.events);
	free(cut.data);
	free(cut.events);
	return 0;
}
