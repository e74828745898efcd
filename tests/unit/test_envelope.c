/* test_envelope.c - JSON envelopes: exact encodings, decoding, round trips. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "mqtt/mqtt5.h"
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
	bool text_base64;     /* payload_text = "base64" (the old behaviour) */
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
	/* Text that is not JSON: a JSON string (the default) ... */
	{ "text", B("hello"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"hello\"}" },
	{ "text with a unit", B("21.5 C"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"21.5 C\"}" },
	{ "text non-ASCII kept as is", B("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}" },
	{ "text escapes", B("a\"b\\c/\b\f\n\r\t\x01\x1f\x7f"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"}" },
	{ "bare word true-ish", B("True"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"True\"}" },
	{ "trailing data", B("{\"a\":1} x"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"{\\\"a\\\":1} x\"}" },
	{ "two values", B("1 2"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"1 2\"}" },
	{ "unterminated JSON", B("{\"a\":"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"{\\\"a\\\":\"}" },
	{ "NaN is not JSON", B("NaN"), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"NaN\"}" },
	{ "empty", B(""), "alice", NULL,
	  META ",\"payload_encoding\":\"utf8\",\"payload\":\"\"}" },
	/* ... binary stays base64 ... */
	{ "binary with NUL", B("\x00\x01\x02\x00\xff"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"AAECAP8=\"}" },
	{ "ASCII with NUL", B("ab\x00" "c"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"YWIAYw==\"}" },
	{ "invalid UTF-8 in a JSON string", B("\"\xc3\x28\""), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"IsMoIg==\"}" },
	{ "overlong", B("\xc0\xaf"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"wK8=\"}" },
	{ "surrogate", B("\xed\xa0\x80"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"7aCA\"}" },
	{ "above U+10FFFF", B("\xf4\x90\x80\x80"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"9JCAgA==\"}" },
	{ "truncated sequence", B("ab\xe2\x82"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"YWLigg==\"}" },
	/* ... and with payload_text = "base64" text goes as base64 as before. */
	{ "text, base64 route", B("hello"), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"aGVsbG8=\"}", true },
	{ "empty, base64 route", B(""), "alice", NULL,
	  META ",\"payload_encoding\":\"base64\",\"payload\":\"\"}", true },
	{ "JSON, base64 route", B("{\"a\": 1}"), "alice", NULL,
	  META ",\"payload\":{\"a\":1}}", true },
	{ "no username", B("1"), "-", NULL,
	  "{\"topic\":\"f/l1/temp\",\"clientid\":\"dev-1\",\"username\":null,\"qos\":1,"
	  "\"retain\":false,\"timestamp\":1700000000123,\"payload\":1}" },
	{ "empty username", B("1"), "", NULL,
	  "{\"topic\":\"f/l1/temp\",\"clientid\":\"dev-1\",\"username\":\"\",\"qos\":1,"
	  "\"retain\":false,\"timestamp\":1700000000123,\"payload\":1}" },
	{ "dead letter", B("x"), "alice", "kafka: \"t\" unknown",
	  META ",\"error\":\"kafka: \\\"t\\\" unknown\",\"payload_encoding\":\"utf8\","
	  "\"payload\":\"x\"}" },
	{ "dead letter, binary", B("\xff"), "alice", "e",
	  META ",\"error\":\"e\",\"payload_encoding\":\"base64\",\"payload\":\"/w==\"}" },
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
			.error = tc->error, .text_base64 = tc->text_base64,
		};
		struct bytes want = { tc->want, strlen(tc->want) };
		struct buf b;
		json_error_t jerr;

		buf_init(&b);
		if (envelope_encode(&b, &in) != 0)
			fail_msg("%s: encode failed", tc->name);
		expect_buf(&b, &want, tc->name);
		/* Whatever was spliced in, the whole is valid JSON ... */
		json_t *j = json_loadb((const char *)buf_head(&b), buf_used(&b),
				       JSON_DECODE_INT_AS_REAL, &jerr);
		if (!j)
			fail_msg("%s: not JSON: %s", tc->name, jerr.text);
		/* ... and a utf8 payload is the very text. */
		const char *enc = json_string_value(json_object_get(j, "payload_encoding"));
		if (enc && strcmp(enc, "utf8") == 0) {
			json_t *pl = json_object_get(j, "payload");
			if (json_string_length(pl) != tc->payload.n ||
			    memcmp(json_string_value(pl), tc->payload.p, tc->payload.n) != 0)
				fail_msg("%s: utf8 payload differs", tc->name);
		}
		json_decref(j);
		buf_release(&b);
	}
}

static void test_text_valid(void **state)
{
	static const struct { struct bytes s; bool ok; } v[] = {
		{ B(""), true }, { B("plain"), true }, { B("\t\r\n\x01\x7f"), true },
		{ B("\xc2\x80\xdf\xbf"), true },                  /* 2-byte bounds */
		{ B("\xe0\xa0\x80\xef\xbf\xbf"), true },          /* 3-byte bounds */
		{ B("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"), true },  /* 4-byte bounds */
		{ B("\xed\x9f\xbf\xee\x80\x80"), true },          /* around the surrogates */
		{ B("a\x00"), false }, { B("\x80"), false }, { B("\xc1\xbf"), false },
		{ B("\xe0\x9f\xbf"), false }, { B("\xed\xbf\xbf"), false },
		{ B("\xf0\x8f\xbf\xbf"), false }, { B("\xf5\x80\x80\x80"), false },
		{ B("\xff"), false }, { B("\xc3"), false }, { B("\xe2\x28\xa1"), false },
		{ B("\xf0\x9f\x98"), false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		if (envelope_text_valid((const uint8_t *)v[i].s.p, v[i].s.n) != v[i].ok)
			fail_msg("case %zu: want %d", i, v[i].ok);
	assert_true(envelope_text_valid(NULL, 0));

	/* An empty payload may come as NULL (a zeroed buf): empty text. */
	struct envelope_in in = { .topic = "t", .topic_len = 1, .clientid = "c", .clientid_len = 1 };
	struct buf b;
	buf_init(&b);
	assert_int_equal(envelope_encode(&b, &in), 0);
	struct bytes want = B("{\"topic\":\"t\",\"clientid\":\"c\",\"username\":null,\"qos\":0,"
			      "\"retain\":false,\"timestamp\":0,\"payload_encoding\":\"utf8\","
			      "\"payload\":\"\"}");
	expect_buf(&b, &want, "NULL payload");
	buf_release(&b);
}

/* A property list as struct msg carries it, built with the writer. */
static uint32_t build_props(uint8_t *buf, uint32_t cap, bool with_all)
{
	struct mqtt_pw w;
	mqtt_pw_init(&w, buf, cap);
	if (with_all) {
		mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1);
		mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, "text/plain; charset=\"utf-8\"", 27);
		mqtt_pw_str(&w, MQTT_P_RESPONSE_TOPIC, "reply/dev-1", 11);
		mqtt_pw_str(&w, MQTT_P_CORRELATION_DATA, "\x00\x01\xff", 3);
	}
	mqtt_pw_pair(&w, "k", 1, "v1", 2);
	mqtt_pw_pair(&w, "trace", 5, "t\n1", 3);
	mqtt_pw_pair(&w, "k", 1, "v2", 2);
	mqtt_pw_pair(&w, "", 0, "", 0);
	assert_false(w.overflow);
	return w.len;
}

static void test_encode_properties(void **state)
{
	uint8_t pb[256];
	struct envelope_in in = {
		.topic = "t", .topic_len = 1, .clientid = "c", .clientid_len = 1,
		.qos = 1, .timestamp_ms = 5,
		.payload = (const uint8_t *)"on", .payload_len = 2,
		.props = pb, .props_len = build_props(pb, sizeof pb, true),
		.has_expiry = true, .expiry_s = 60,
	};
	struct bytes want = B("{\"topic\":\"t\",\"clientid\":\"c\",\"username\":null,\"qos\":1,"
		"\"retain\":false,\"timestamp\":5,\"properties\":{\"payload_format\":1,"
		"\"content_type\":\"text/plain; charset=\\\"utf-8\\\"\","
		"\"response_topic\":\"reply/dev-1\",\"correlation_data\":\"AAH/\","
		"\"message_expiry\":60,\"user_properties\":[[\"k\",\"v1\"],[\"trace\",\"t\\n1\"],"
		"[\"k\",\"v2\"],[\"\",\"\"]]},\"payload_encoding\":\"utf8\",\"payload\":\"on\"}");
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(envelope_encode(&b, &in), 0);
	expect_buf(&b, &want, "all properties");

	/* Only user properties, no expiry; a JSON payload; an error member. */
	buf_reset(&b);
	in.props_len = build_props(pb, sizeof pb, false);
	in.has_expiry = false;
	in.payload = (const uint8_t *)"[1]";
	in.payload_len = 3;
	in.error = "x";
	struct bytes want2 = B("{\"topic\":\"t\",\"clientid\":\"c\",\"username\":null,\"qos\":1,"
		"\"retain\":false,\"timestamp\":5,\"error\":\"x\",\"properties\":{\"user_properties\":"
		"[[\"k\",\"v1\"],[\"trace\",\"t\\n1\"],[\"k\",\"v2\"],[\"\",\"\"]]},\"payload\":[1]}");
	assert_int_equal(envelope_encode(&b, &in), 0);
	expect_buf(&b, &want2, "user properties only");

	/* Expiry alone makes a properties object; payload format 0 is kept. */
	uint8_t one[2] = { MQTT_P_PAYLOAD_FORMAT, 0 };
	in.props = one;
	in.props_len = 2;
	in.error = NULL;
	in.has_expiry = true;
	in.expiry_s = 4294967295u;
	buf_reset(&b);
	assert_int_equal(envelope_encode(&b, &in), 0);
	struct bytes want3 = B("{\"topic\":\"t\",\"clientid\":\"c\",\"username\":null,\"qos\":1,"
		"\"retain\":false,\"timestamp\":5,\"properties\":{\"payload_format\":0,"
		"\"message_expiry\":4294967295},\"payload\":[1]}");
	expect_buf(&b, &want3, "format 0 and expiry");

	/* A string property that is not UTF-8 (not from the decoder) fails
	 * and leaves the buffer as it was. */
	uint8_t bad[] = { MQTT_P_CONTENT_TYPE, 0, 1, 0xff };
	in.props = bad;
	in.props_len = sizeof bad;
	buf_reset(&b);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	assert_int_equal(envelope_encode(&b, &in), ENVELOPE_ERR_UTF8);
	assert_int_equal(buf_used(&b), 4);

	/* The envelope decodes back to the payload with properties present. */
	buf_reset(&b);
	in.props = pb;
	in.props_len = build_props(pb, sizeof pb, true);
	in.payload = (const uint8_t *)"21.5 C";
	in.payload_len = 6;
	assert_int_equal(envelope_encode(&b, &in), 0);
	struct buf back;
	buf_init(&back);
	assert_int_equal(envelope_decode_payload(buf_head(&b), buf_used(&b), &back), 0);
	struct bytes want4 = B("21.5 C");
	expect_buf(&back, &want4, "decoded");
	buf_release(&back);
	buf_release(&b);
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
	{ "utf8", B("{\"payload_encoding\":\"utf8\",\"payload\":\"21.5 C\\n\\u0000\"}"), 0,
	  B("21.5 C\n\0") },
	{ "utf8 not a string", B("{\"payload_encoding\":\"utf8\",\"payload\":215}"),
	  ENVELOPE_ERR_INVALID, B("") },
	{ "properties ignored", B("{\"properties\":{\"user_properties\":[[\"a\",\"b\"]]},"
	  "\"payload\":\"x\"}"), 0, B("x") },
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
		{ B("line 1\r\nline \"2\"\t\\ \x01\x7f caf\xc3\xa9"),
		  B("line 1\r\nline \"2\"\t\\ \x01\x7f caf\xc3\xa9") },
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct envelope_in in = {
			.topic = "t", .topic_len = 1, .clientid = "c", .clientid_len = 1,
			.payload = (const uint8_t *)cases[i].payload.p,
			.payload_len = cases[i].payload.n, .error = i % 2 ? "e" : NULL,
			.text_base64 = i % 3 == 0,
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
		cmocka_unit_test(test_text_valid),
		cmocka_unit_test(test_encode_properties),
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_parsed_shares_template_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
