/*
 * fuzz_http.c - libFuzzer target for the HTTP request head parser.
 *
 * The parser must never read past the input, never claim more bytes than it
 * was given, return only borrowed pointers inside the head it reported, and
 * agree with itself on prefixes: a complete head is "need more" one byte
 * short. Lookups on whatever parsed must stay inside it too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/http_parse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_inside(const char *p, size_t len, const char *lo, const char *hi)
{
	CHECK(p >= lo && p + len <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_request req, again;
	const char *v;
	size_t len;

	int r = http_parse_request(buf, size, &req);
	CHECK(r >= -1 && (r < 0 || (size_t)r <= size));
	if (r <= 0)
		return 0;

	const char *end = buf + r;
	CHECK(req.method == buf && req.method_len > 0 && req.method_len <= HTTP_MAX_METHOD);
	check_inside(req.path, req.path_len, buf, end);
	CHECK(req.path_len > 0 && req.path[0] == '/');
	if (req.query)
		check_inside(req.query, req.query_len, req.path + req.path_len, end);
	CHECK(req.minor == 0 || req.minor == 1);
	CHECK(req.n_headers <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < req.n_headers; i++) {
		const struct http_header *h = &req.headers[i];
		check_inside(h->name, h->name_len, buf, end);
		check_inside(h->value, h->value_len, h->name + h->name_len, end);
		CHECK(h->name_len > 0);
		CHECK(!memchr(h->value, '\n', h->value_len) && !memchr(h->value, '\r', h->value_len));
		CHECK(http_header_get(&req, "Host", &len) == NULL || len <= (size_t)r);
	}
	if (http_query_get(req.query, req.query_len, "offset", &v, &len))
		check_inside(v, len, req.query, req.query + req.query_len);

	CHECK(http_parse_request(buf, (size_t)r - 1, &again) == 0);
	CHECK(http_parse_request(buf, (size_t)r, &again) == r);
	return 0;
}
