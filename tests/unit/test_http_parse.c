/*
 * test_http_parse.c - the HTTP request head parser: valid heads (field by
 * field, byte by byte), a table of malformed ones, the size limits, header
 * and query lookup, and a bounded randomized test of the parser's promises
 * on random and mutated input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http_parse.h"

/* The last parsed copy: req borrows from it until the next parse. */
static char *copy;

static int free_copy(void **state)
{
	(void)state;
	free(copy);
	copy = NULL;
	return 0;
}

/* Parses exactly n bytes copied to the heap, so that a read past the end
 * is caught by the sanitizers. */
static int parse_n(const char *s, size_t n, struct http_request *req)
{
	free_copy(NULL);
	copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	return http_parse_request(copy, n, req);
}

static int parse(const char *s, struct http_request *req)
{
	return parse_n(s, strlen(s), req);
}

static void assert_span(const char *p, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
}

/* Every proper prefix needs more; the whole head is consumed exactly. */
static void assert_bytewise(const char *s, size_t head_len)
{
	struct http_request req;
	for (size_t i = 0; i < head_len; i++)
		assert_int_equal(http_parse_request(s, i, &req), 0);
	assert_int_equal(http_parse_request(s, strlen(s), &req), (int)head_len);
}

static void test_simple_get(void **state)
{
	static const char s[] = "GET / HTTP/1.1\r\n\r\n";
	struct http_request req;
	(void)state;

	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_span(req.method, req.method_len, "GET");
	assert_span(req.path, req.path_len, "/");
	assert_null(req.query);
	assert_int_equal(req.minor, 1);
	assert_int_equal(req.n_headers, 0);
	assert_bytewise(s, strlen(s));
}

static void test_fields(void **state)
{
	static const char s[] = "HEAD /api/v1/clients?offset=10&limit=5 HTTP/1.0\r\n"
				"Host: 127.0.0.1:9100\r\n"
				"X-Trim: \t a b \t \r\n"
				"X-Empty:\r\n"
				"Accept: */*\r\n\r\n";
	struct http_request req;
	size_t len;
	(void)state;

	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_span(req.method, req.method_len, "HEAD");
	assert_span(req.path, req.path_len, "/api/v1/clients");
	assert_span(req.query, req.query_len, "offset=10&limit=5");
	assert_int_equal(req.minor, 0);
	assert_int_equal(req.n_headers, 4);
	assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
	assert_span(req.headers[0].value, req.headers[0].value_len, "127.0.0.1:9100");
	const char *v = http_header_get(&req, "x-trim", &len);
	assert_non_null(v);
	assert_span(v, len, "a b");
	v = http_header_get(&req, "X-EMPTY", &len);
	assert_non_null(v);
	assert_int_equal(len, 0);
	assert_null(http_header_get(&req, "Content-Length", &len));
	assert_null(http_header_get(&req, "Host2", &len));
	assert_bytewise(s, strlen(s));
}

static void test_empty_query_and_bare_lf(void **state)
{
	static const char s[] = "GET /metrics? HTTP/1.1\nHost: a\n\n";
	static const char mixed[] = "GET /a?b?c HTTP/1.1\r\nA: 1\n\r\n";
	struct http_request req;
	(void)state;

	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_span(req.path, req.path_len, "/metrics");
	assert_non_null(req.query);
	assert_int_equal(req.query_len, 0);
	assert_bytewise(s, strlen(s));
	assert_int_equal(parse(mixed, &req), (int)strlen(mixed));
	assert_span(req.path, req.path_len, "/a");
	assert_span(req.query, req.query_len, "b?c");
}

/* Bytes after the head (a body, another request) are left alone. */
static void test_pipelined(void **state)
{
	static const char one[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	char two[256];
	struct http_request req;
	(void)state;

	snprintf(two, sizeof(two), "%sGET /metrics HTTP/1.1\r\n\r\n", one);
	assert_int_equal(parse(two, &req), (int)strlen(one));
	assert_span(req.path, req.path_len, "/healthz");
	snprintf(two, sizeof(two), "%s\x01\x02garbage", one);
	assert_int_equal(parse(two, &req), (int)strlen(one));
	assert_bytewise(two, strlen(one));
}

static void test_obs_text_value(void **state)
{
	static const char s[] = "GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n";
	struct http_request req;
	size_t len;
	(void)state;

	assert_int_equal(parse(s, &req), (int)strlen(s));
	const char *v = http_header_get(&req, "x-name", &len);
	assert_non_null(v);
	assert_span(v, len, "caf\xc3\xa9");
}

struct bad {
	const char *s;
	size_t len;   /* 0: strlen(s) */
	const char *why;
};

#define BAD(s, why) { s, sizeof(s) - 1, why }

static const struct bad bad_heads[] = {
	BAD(" GET / HTTP/1.1\r\n\r\n", "leading space"),
	BAD("\r\nGET / HTTP/1.1\r\n\r\n", "leading empty line"),
	BAD("GET  / HTTP/1.1\r\n\r\n", "two spaces"),
	BAD("GET\t/ HTTP/1.1\r\n\r\n", "tab separator"),
	BAD("G(T / HTTP/1.1\r\n\r\n", "bad method token"),
	BAD("GET x HTTP/1.1\r\n\r\n", "target without slash"),
	BAD("GET * HTTP/1.1\r\n\r\n", "asterisk form"),
	BAD("GET http://a/ HTTP/1.1\r\n\r\n", "absolute form"),
	BAD("GET /a\x01 HTTP/1.1\r\n\r\n", "control byte in target"),
	BAD("GET /\x80 HTTP/1.1\r\n\r\n", "non-ASCII target"),
	BAD("GET /\r\n\r\n", "missing version (HTTP/0.9)"),
	BAD("GET / \r\n\r\n", "empty version"),
	BAD("GET / HTTP/2.0\r\n\r\n", "HTTP/2.0"),
	BAD("GET / HTTP/1.2\r\n\r\n", "HTTP/1.2"),
	BAD("GET / HTTP/1.10\r\n\r\n", "HTTP/1.10"),
	BAD("GET / http/1.1\r\n\r\n", "lower-case version"),
	BAD("GET / HTTP/1.1 \r\n\r\n", "space after version"),
	BAD("GET / HTTP/1.1\rX\n\r\n", "CR without LF"),
	BAD("GET / HTTP/1.1\r\nNoColon\r\n\r\n", "header without colon"),
	BAD("GET / HTTP/1.1\r\nName : v\r\n\r\n", "space before colon"),
	BAD("GET / HTTP/1.1\r\n: v\r\n\r\n", "empty header name"),
	BAD("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", "folded header"),
	BAD("GET / HTTP/1.1\r\nA: b\x00" "c\r\n\r\n", "NUL in value"),
	BAD("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", "DEL in value"),
	BAD("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", "CR in value"),
	BAD("GET / HTTP/1.1\r\nA\x01: b\r\n\r\n", "control in name"),
	BAD("GET / HTTP/1.1\r\n\r\r\n", "CR CR"),
	BAD("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS client hello"),
	BAD("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", "MQTT CONNECT"),
	BAD("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", "method over 16 bytes"),
};

static void test_malformed_table(void **state)
{
	struct http_request req;
	(void)state;

	for (size_t i = 0; i < sizeof(bad_heads) / sizeof(bad_heads[0]); i++) {
		const struct bad *b = &bad_heads[i];
		int r = parse_n(b->s, b->len, &req);
		if (r != -1)
			fail_msg("case %zu (%s): got %d, want -1", i, b->why, r);
	}
}

/* Garbage is refused as soon as it can no longer be a request: no waiting
 * for a size limit or a timeout. */
static void test_malformed_early(void **state)
{
	struct http_request req;
	(void)state;

	assert_int_equal(parse_n("\x16", 1, &req), -1);
	assert_int_equal(parse_n("\x00", 1, &req), -1);
	assert_int_equal(parse("GET /\x7f", &req), -1);
	assert_int_equal(parse("GET / HTTP/3", &req), -1);
	assert_int_equal(parse("GET / HTTP/1.1\r\nbad header", &req), -1);
	/* ... but a valid prefix still needs more. */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n\r", &req), 0);
	assert_int_equal(parse("GET", &req), 0);
	assert_int_equal(parse_n("", 0, &req), 0);
}

static void test_header_count_limit(void **state)
{
	char s[2048];
	struct http_request req;
	(void)state;

	size_t n = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "H%d: %d\r\n", i, i);
	snprintf(s + n, sizeof(s) - n, "\r\n");
	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_int_equal(req.n_headers, HTTP_MAX_HEADERS);
	snprintf(s + n, sizeof(s) - n, "One-More: x\r\n\r\n");
	assert_int_equal(parse(s, &req), -1);
}

static void test_request_line_limit(void **state)
{
	static const char tail[] = " HTTP/1.1\r\n\r\n";
	char s[HTTP_MAX_REQUEST_LINE + 64];
	struct http_request req;
	(void)state;

	/* "GET " + target + " HTTP/1.1" is exactly the limit. */
	size_t target = HTTP_MAX_REQUEST_LINE - 4 - 9;
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', target - 1);
	strcpy(s + 4 + target, tail);
	assert_int_equal(parse(s, &req), (int)strlen(s));
	assert_int_equal(req.path_len, target);

	memset(s + 5, 'a', target);
	strcpy(s + 4 + target + 1, tail);
	assert_int_equal(parse(s, &req), -1);
	/* Refused without waiting for the line end. */
	assert_int_equal(parse_n(s, HTTP_MAX_REQUEST_LINE + 1, &req), -1);
}

static void test_query_get(void **state)
{
	static const char q[] = "offset=10&limit=&flag&x=1=2&offset=99";
	const char *v;
	size_t len;
	(void)state;

	assert_true(http_query_get(q, strlen(q), "offset", &v, &len));
	assert_span(v, len, "10");
	assert_true(http_query_get(q, strlen(q), "limit", &v, &len));
	assert_int_equal(len, 0);
	assert_true(http_query_get(q, strlen(q), "flag", &v, &len));
	assert_int_equal(len, 0);
	assert_true(http_query_get(q, strlen(q), "x", &v, &len));
	assert_span(v, len, "1=2");
	assert_false(http_query_get(q, strlen(q), "off", &v, &len));
	assert_false(http_query_get(q, strlen(q), "imit", &v, &len));
	assert_false(http_query_get(NULL, 0, "offset", &v, &len));
	assert_false(http_query_get("", 0, "offset", &v, &len));
}

static void test_query_count(void **state)
{
	static const char q[] = "a=0&b=123456789&c=1234567890&d=-1&e=&f=1x&g=007";
	size_t n = strlen(q);
	(void)state;

	assert_int_equal(http_query_count(q, n, "a", 5), 0);
	assert_int_equal(http_query_count(q, n, "b", 5), 123456789);
	assert_int_equal(http_query_count(q, n, "c", 5), -1);
	assert_int_equal(http_query_count(q, n, "d", 5), -1);
	assert_int_equal(http_query_count(q, n, "e", 5), -1);
	assert_int_equal(http_query_count(q, n, "f", 5), -1);
	assert_int_equal(http_query_count(q, n, "g", 5), 7);
	assert_int_equal(http_query_count(q, n, "missing", 5), 5);
	assert_int_equal(http_query_count(NULL, 0, "a", 100), 100);
}

/* ---- randomized ----------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	/* xorshift64*: reproducible from the printed seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32) % n;
}

static const char *const seeds[] = {
	"GET / HTTP/1.1\r\n\r\n",
	"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
	"HEAD /api/v1/clients?offset=1&limit=2 HTTP/1.0\nUser-Agent: t\n\n",
	"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
};

/* Builds a random input in buf (cap bytes); returns its length. */
static size_t random_input(char *buf, size_t cap)
{
	static const char alphabet[] = "GETHPOS /?&=:-_aZ09\r\n\t\r\n.HTTP/1.01";
	size_t n = 0;

	if (rnd(4) == 0) {
		/* Random bytes, biased towards the characters HTTP uses. */
		n = rnd((uint32_t)cap);
		for (size_t i = 0; i < n; i++)
			buf[i] = rnd(3) ? alphabet[rnd(sizeof(alphabet) - 1)] : (char)rnd(256);
		return n;
	}
	const char *s = seeds[rnd(sizeof(seeds) / sizeof(seeds[0]))];
	n = strlen(s);
	memcpy(buf, s, n);
	for (uint32_t k = rnd(4); k > 0; k--) {
		size_t at = n ? rnd((uint32_t)n) : 0;
		switch (rnd(5)) {
		case 0: /* flip a byte */
			if (n)
				buf[at] = (char)rnd(256);
			break;
		case 1: /* insert a byte */
			if (n < cap) {
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = rnd(2) ? alphabet[rnd(sizeof(alphabet) - 1)] : (char)rnd(256);
				n++;
			}
			break;
		case 2: /* delete a byte */
			if (n) {
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
			}
			break;
		case 3: /* truncate */
			n = at;
			break;
		default: { /* append a copy of a chunk (long lines, many headers) */
			size_t len = rnd(64);
			if (at + len <= n && n + len <= cap) {
				memcpy(buf + n, buf + at, len);
				n += len;
			}
			break;
		}
		}
	}
	return n;
}

static void check_result(const char *buf, size_t n, int r, const struct http_request *req)
{
	assert_true(r >= -1);
	assert_true(r <= (int)n);
	if (r <= 0)
		return;
	const char *end = buf + r;
	assert_true(req->method == buf && req->method_len > 0);
	assert_true(req->path > buf && req->path + req->path_len <= end);
	assert_int_equal(req->path[0], '/');
	if (req->query)
		assert_true(req->query > req->path && req->query + req->query_len <= end);
	assert_true(req->minor == 0 || req->minor == 1);
	assert_true(req->n_headers <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_header *h = &req->headers[i];
		assert_true(h->name > buf && h->name_len > 0 && h->name + h->name_len <= end);
		assert_true(h->value >= h->name + h->name_len + 1);
		assert_true(h->value + h->value_len <= end);
		assert_null(memchr(h->value, '\n', h->value_len));
		assert_null(memchr(h->value, '\r', h->value_len));
	}
}

/*
 * For random and mutated inputs: never crashes or reads past the end
 * (heap copies of exact size, run under ASan by `make sanitize`), never
 * claims more bytes than given, and answers consistently with prefixes:
 * a complete head stays complete with the same length when bytes follow,
 * and is "need more" one byte short; malformed stays malformed when bytes
 * follow; "need more" never follows a shorter "malformed".
 */
static void test_randomized(void **state)
{
	enum { ITERATIONS = 50000, CAP = 600 };
	const char *env = getenv("HTTP_PARSE_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : 0x6b61666b61676174ULL;
	char buf[CAP], *heap;
	struct http_request req, req2;
	int complete = 0, malformed = 0;
	(void)state;

	rng_state = seed ? seed : 1;
	print_message("seed 0x%llx (HTTP_PARSE_SEED)\n", (unsigned long long)seed);
	for (int it = 0; it < ITERATIONS; it++) {
		size_t n = random_input(buf, CAP);
		heap = malloc(n + 8);
		assert_non_null(heap);
		memcpy(heap, buf, n);
		int r = http_parse_request(heap, n, &req);
		check_result(heap, n, r, &req);

		/* The same bytes followed by more bytes. */
		for (size_t k = 0; k < 8; k++)
			heap[n + k] = (char)rnd(256);
		int r2 = http_parse_request(heap, n + 8, &req2);
		check_result(heap, n + 8, r2, &req2);
		if (r > 0) {
			complete++;
			assert_int_equal(r2, r);
			assert_int_equal(http_parse_request(heap, (size_t)r - 1, &req2), 0);
		} else if (r < 0) {
			malformed++;
			assert_int_equal(r2, -1);
		} else {
			for (int k = 0; n > 0 && k < 16; k++)
				assert_int_equal(http_parse_request(heap, rnd((uint32_t)n), &req2), 0);
		}
		free(heap);
	}
	/* The generator must exercise every outcome, or the test proves little. */
	assert_true(complete > ITERATIONS / 20);
	assert_true(malformed > ITERATIONS / 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_simple_get, free_copy),
		cmocka_unit_test_teardown(test_fields, free_copy),
		cmocka_unit_test_teardown(test_empty_query_and_bare_lf, free_copy),
		cmocka_unit_test_teardown(test_pipelined, free_copy),
		cmocka_unit_test_teardown(test_obs_text_value, free_copy),
		cmocka_unit_test_teardown(test_malformed_table, free_copy),
		cmocka_unit_test_teardown(test_malformed_early, free_copy),
		cmocka_unit_test_teardown(test_header_count_limit, free_copy),
		cmocka_unit_test_teardown(test_request_line_limit, free_copy),
		cmocka_unit_test_teardown(test_query_get, free_copy),
		cmocka_unit_test_teardown(test_query_count, free_copy),
		cmocka_unit_test_teardown(test_randomized, free_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
