/* test_envelope.c - JSON envelopes: exact encodings, decoding, round trips. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "route/envelope.h"
#include "route/template.h"

#define META "{\"topic\":\"f/l1/temp\",\"clientid\":\"dev-1\",\"username\":\"alice\"," \
	     "\"qos\":1,\"retain\":false,\"timestamp\":1700000000123"

/* Bytes with a length, so that payloads may hold NUL. */
struct bytes {
	const char *p;
	size_t n;
};
#define B(s) { s, sizeof(s) - 1 }

/* An empty zeroed buf has data == NULL: no arithmetic or memcmp on that. */
static const char *head(const struct buf *b)
{
	return b->data ? (const char *)buf_head(b) : "";
}

static void expect_buf(const struct buf *b, const struct bytes *want, const char *what)
{
	if (buf_used(b) != want->n || memcmp(head(b), want->p, want->n) != 0)
		fail_msg("%s: got \"%.*s\" (%zu bytes), want \"%.*s\"", what, (int)buf_used(b),
			 head(b), buf_used(b), (int)want->n, want->p);
}

static void test_base64_vectors(void **state)
{
	/* RFC 4648 section 10, plus bytes that use every high bit. */
	static const struct { struct bytes raw; const char *b64; } v[] = {
		{ B(""), "" }, { B("f"), "Zg==" }, { B("fo"), "Zm8=" },
		{ B("foo"), "Zm9v" }, { B("foob"), "Zm9vYg==" }, { B("fooba"), "Zm9vYmE=" },
		{ B("foobar"), "Zm9vYmFy" }, { B("\x00\x01\x02\x00\xff"), "AAECAP8=" },
		{ B("\xfb\xff\xbf"), "+/+/" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		struct buf b;
		struct bytes enc = { v[i].b64, strlen(v[i].b64) };
		buf_init(&b);
		assert_int_equal(envelope_base64_encode(&b, (const uint8_t *)v[i].raw.p,
							v[i].raw.n), 0);
		expect_buf(&b, &enc, "encode");
		buf_reset(&b);
		assert_int_equal(envelope_base64_decode(&b, v[i].b64, enc.n), 0);
		expect_buf(&b, &v[i].raw, "decode");
		buf_release(&b);
	}
}

static void test_base64_invalid(void **state)
{
	static const char *bad[] = { "Zg=", "Zg", "Zg=a", "Z===", "====", "Zh==", "Zm9=",
				     "Zm9v!A==", "=Zg=", "Zm=v", "Zm9v Zm9v", "Zg==Zg==" };
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct buf b;
		buf_init(&b);
		assert_int_equal(buf_append(&b, "keep", 4), 0);
		if (envelope_base64_decode(&b, bad[i], strlen(bad[i])) != ENVELOPE_ERR_INVALID)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_int_equal(buf_used(&b), 4);
		buf_release(&b);
	}
}

struct encode_case {
	const char *name;
	struct bytes payload;
	const char *username; /* "-" for absent */
	const char *error;
	const char *want;
};

static const struct encode_case encode_cases[] = {
	{ "object", B("{\"t\": 21.5,\n \"ok\" : true}"), "alice", NULL,
	  META ",\"payload\":{\"t\":21.5,\"ok\":true}}" },
	{ "array with spaces in strings", B(" [1, \"a b\\\" c\", {}] \n"), "alice", NULL,
	  META ",\"payload\":[1,\"a b\\\" c\",{}]}" },
	{ "numbers kept as written", B("{\"r\":0.1,\"e\":1E5,\"z\":-0,\"big\":123456789012345678901234567890}"),
	  "alice", NULL,
	  META ",\"payload\":{\"r\":0.1,\"e\":1E5,\"z\":-0,\"big\":123456789012345678901234567890}}" },
	{ "string", B("\"hi \\u00e9\""), "alice", NULL,
	  META ",\"payload_encoding\":\"json\",\"payload\":\"hi \\u00e9\"}" },
	{ "number", B("42"), "alice", NULL, META ",\"payload\":42}" },
	{ "null", B("null"), "alice", NULL, META ",\"payload\":null}" },
	{ "false", B("false"), "alice", NULL, META ",\"payload\":false}" },
	{ "text", B("hello"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"aGVsbG8=\"}" },
	{ "trailing data", B("{\"a\":1} x"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"eyJhIjoxfSB4\"}" },
	{ "two values", B("1 2"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"MSAy\"}" },
	{ "binary with NUL", B("\x00\x01\x02\x00\xff"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"AAECAP8=\"}" },
	{ "invalid UTF-8 in a JSON string", B("\"\xc3\x28\""), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"IsMoIg==\"}" },
	{ "empty", B(""), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"\"}" },
	{ "no username", B("1"), "-", NULL,
	  "{\"topic\":\"f/l1/temp\",\"clientid\":\"dev-1\",\"username\":null,\"qos\":1,"
	  "\"retain\":false,\"timestamp\":1700000000123,\"payload\":1}" },
	{ "empty username", B("1"), "", NULL,
	  "{\"topic\":\"f/l1/temp\",\"clientid\":\"dev-1\",\"username\":\"\",\"qos\":1,"
	  "\"retain\":false,\"timestamp\":1700000000123,\"payload\":1}" },
	{ "dead letter", B("x"), "alice", "kafka: \"t\" unknown",
	  META ",\"error\":\"kafka: \\\"t\\\" unknown\",\"payload_encoding\":\"base64\","
	  "\"payload\":\"eA==\"}" },
};

static void test_encode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof encode_cases / sizeof encode_cases[0]; i++) {
		const struct encode_case *tc = &encode_cases[i];
		bool anon = strcmp(tc->username, "-") == 0;
		struct envelope_in in = {
			.topic = "f/l1/temp", .topic_len = 9,
			.clientid = "dev-1", .clientid_len = 5,
			.username = anon ? NULL : tc->username,
			.username_len = anon ? 0 : strlen(tc->username),
			.qos = 1, .retain = false, .timestamp_ms = 1700000000123,
			.payload = (const uint8_t *)tc->payload.p, .payload_len = tc->payload.n,
			.error = tc->error,
		};
		struct bytes want = { tc->want, strlen(tc->want) };
		struct buf b;
		json_error_t jerr;

		buf_init(&b);
		if (envelope_encode(&b, &in) != 0)
			fail_msg("%s: encode failed", tc->name);
		expect_buf(&b, &want, tc->name);
		/* Whatever was spliced in, the whole is valid JSON. */
		json_t *j = json_loadb((const char *)buf_head(&b), buf_used(&b),
				       JSON_DECODE_INT_AS_REAL, &jerr);
		if (!j)
			fail_msg("%s: not JSON: %s", tc->name, jerr.text);
		json_decref(j);
		buf_release(&b);
	}
}

static void test_encode_flags_and_errors(void **state)
{
	struct envelope_in in = {
		.topic = "a", .topic_len = 1, .clientid = "", .clientid_len = 0,
		.qos = 2, .retain = true, .timestamp_ms = -5,
		.payload = (const uint8_t *)"[]", .payload_len = 2,
	};
	struct bytes want = B("{\"topic\":\"a\",\"clientid\":\"\",\"username\":null,\"qos\":2,"
			      "\"retain\":true,\"timestamp\":-5,\"payload\":[]}");
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(envelope_encode(&b, &in), 0);
	expect_buf(&b, &want, "qos 2 retained");

	/* A field that is not UTF-8 fails and leaves the buffer as it was. */
	buf_reset(&b);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	in.topic = "bad\xff";
	in.topic_len = 4;
	assert_int_equal(envelope_encode(&b, &in), ENVELOPE_ERR_UTF8);
	assert_int_equal(buf_used(&b), 4);
	in.topic = "a";
	in.topic_len = 1;
	in.username = "\xc0\x80";
	in.username_len = 2;
	assert_int_equal(envelope_encode(&b, &in), ENVELOPE_ERR_UTF8);
	assert_int_equal(buf_used(&b), 4);
	assert_string_equal(envelope_err_str(ENVELOPE_ERR_UTF8), "string field is not valid UTF-8");
	buf_release(&b);
}

struct decode_case {
	const char *name;
	struct bytes value;
	int rc;
	struct bytes want;
};

static const struct decode_case decode_cases[] = {
	{ "string means its bytes", B("{\"payload\":\"reboot\"}"), 0, B("reboot") },
	{ "escaped string", B("{\"payload\":\"a\\u0000b\\n\"}"), 0, B("a\0b\n") },
	{ "object compact", B("{\"qos\":1, \"payload\" : { \"a\" : [1, 2] } }"), 0,
	  B("{\"a\":[1,2]}") },
	{ "number as written", B("{\"payload\":0.1}"), 0, B("0.1") },
	{ "big integer", B("{\"payload\":123456789012345678901234567890}"), 0,
	  B("123456789012345678901234567890") },
	{ "null", B("{\"payload\":null}"), 0, B("null") },
	{ "true, last member", B("{\"x\":\"\\\"payload\\\":1\",\"payload\":true}"), 0, B("true") },
	{ "nested payload ignored", B("{\"meta\":{\"payload\":9},\"payload\":[3]}"), 0, B("[3]") },
	{ "duplicate: last wins", B("{\"payload\":1,\"payload\":[2]}"), 0, B("[2]") },
	{ "escaped key", B("{\"payl\\u006fad\":[1, 2]}"), 0, B("[1,2]") },
	{ "json encoding keeps quotes", B("{\"payload_encoding\":\"json\",\"payload\":\"hi\"}"),
	  0, B("\"hi\"") },
	{ "json encoding, object", B("{\"payload\":{},\"payload_encoding\":\"json\"}"), 0, B("{}") },
	{ "base64", B("{\"payload\":\"AAECAP8=\",\"payload_encoding\":\"base64\"}"), 0,
	  B("\x00\x01\x02\x00\xff") },
	{ "base64 empty", B("{\"payload\":\"\",\"payload_encoding\":\"base64\"}"), 0, B("") },
	{ "null encoding is none", B("{\"payload\":\"x\",\"payload_encoding\":null}"), 0, B("x") },
	{ "bad base64", B("{\"payload\":\"!!!!\",\"payload_encoding\":\"base64\"}"),
	  ENVELOPE_ERR_INVALID, B("") },
	{ "base64 not a string", B("{\"payload\":5,\"payload_encoding\":\"base64\"}"),
	  ENVELOPE_ERR_INVALID, B("") },
	{ "unknown encoding", B("{\"payload\":\"x\",\"payload_encoding\":\"hex\"}"),
	  ENVELOPE_ERR_INVALID, B("") },
	{ "encoding not a string", B("{\"payload\":\"x\",\"payload_encoding\":1}"),
	  ENVELOPE_ERR_INVALID, B("") },
	{ "no payload", B("{\"x\":1}"), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
	{ "array", B("[{\"payload\":1}]"), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
	{ "JSON string", B("\"payload\""), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
	{ "not JSON", B("payload"), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
	{ "trailing data", B("{\"payload\":1} {}"), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
	{ "empty", B(""), ENVELOPE_ERR_NOT_ENVELOPE, B("") },
};

static void test_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
		const struct decode_case *tc = &decode_cases[i];
		struct buf b;
		buf_init(&b);
		assert_int_equal(buf_append(&b, "pre", 3), 0);
		int rc = envelope_decode_payload((const uint8_t *)tc->value.p, tc->value.n, &b);
		if (rc != tc->rc)
			fail_msg("%s: rc %d, want %d", tc->name, rc, tc->rc);
		/* Appended after what was there; untouched on error. */
		assert_memory_equal(buf_head(&b), "pre", 3);
		buf_consume(&b, 3);
		expect_buf(&b, &tc->want, tc->name);
		buf_release(&b);
	}
	assert_int_equal(envelope_decode_payload(NULL, 0, NULL), ENVELOPE_ERR_NOT_ENVELOPE);
}

/* encode then decode gives the payload back: exactly, or for inlined JSON in
 * compact form. */
static void test_round_trip(void **state)
{
	static const struct { struct bytes payload; struct bytes back; } cases[] = {
		{ B("{\"a\":{\"b\":[1,2.50,\"x\"]}}"), B("{\"a\":{\"b\":[1,2.50,\"x\"]}}") },
		{ B("{ \"a\" : 1 }\n"), B("{\"a\":1}") },
		{ B("\"quoted text\""), B("\"quoted text\"") },
		{ B("\"esc \\\" \\u00e9\""), B("\"esc \\\" \\u00e9\"") },
		{ B("-1.5e-7"), B("-1.5e-7") },
		{ B("true"), B("true") },
		{ B("null"), B("null") },
		{ B("plain text"), B("plain text") },
		{ B("\x00\x01\xfe\xff\x00"), B("\x00\x01\xfe\xff\x00") },
		{ B(""), B("") },
		{ B("{\"unterminated\":"), B("{\"unterminated\":") },
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct envelope_in in = {
			.topic = "t", .topic_len = 1, .clientid = "c", .clientid_len = 1,
			.payload = (const uint8_t *)cases[i].payload.p,
			.payload_len = cases[i].payload.n, .error = i % 2 ? "e" : NULL,
		};
		struct buf env, back;
		buf_init(&env);
		buf_init(&back);
		assert_int_equal(envelope_encode(&env, &in), 0);
		assert_int_equal(envelope_decode_payload(buf_head(&env), buf_used(&env), &back), 0);
		expect_buf(&back, &cases[i].back, cases[i].payload.p);
		buf_release(&env);
		buf_release(&back);
	}
}

/* One parse per record: the template ctx's parse decodes the envelope too. */
static void test_decode_parsed_shares_template_parse(void **state)
{
	static const char value[] = "{\"device\":\"d1\",\"payload\":{\"cmd\": \"open\"}}";
	struct template_ctx ctx;
	struct buf b;

	(void)state;
	template_ctx_init(&ctx);
	ctx.value = (const uint8_t *)value;
	ctx.value_len = strlen(value);
	const struct json_t *root = template_ctx_json(&ctx);
	assert_non_null(root);
	buf_init(&b);
	assert_int_equal(envelope_decode_parsed(root, ctx.value, ctx.value_len, &b), 0);
	struct bytes want = B("{\"cmd\":\"open\"}");
	expect_buf(&b, &want, "parsed");
	template_ctx_release(&ctx);
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_invalid),
		cmocka_unit_test(test_encode_table),
		cmocka_unit_test(test_encode_flags_and_errors),
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_parsed_shares_template_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
