/* test_template.c - template compile errors and rendering of every variable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "route/template.h"

/* Table checks name the failing case. */
#define CHECK(cond, i, src) \
	do { \
		if (!(cond)) \
			fail_msg("case %zu \"%s\": %s", (size_t)(i), (src), #cond); \
	} while (0)

#define UP TEMPLATE_UPLINK
#define DOWN TEMPLATE_DOWNLINK

static const char json_value[] =
	"{\"device\":{\"id\":\"d7\",\"n\":42,\"neg\":-3,\"r\":1.5,\"ok\":true,\"off\":false,"
	"\"tags\":[\"a\",\"b\"],\"nul\":null,\"obj\":{},\"sp\":\"x y\"},"
	"\"arr\":[{\"x\":\"y\"}],\"0\":\"zero\"}";

struct header { const char *name, *value; };
static const struct header headers[] = { { "device", "d42" }, { "empty", "" } };

static int lookup(void *ud, const char *name, const void **val, size_t *len)
{
	(void)ud;
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		if (strcmp(headers[i].name, name) == 0) {
			*val = headers[i].value;
			*len = strlen(headers[i].value);
			return 0;
		}
	}
	return -1;
}

/* Context variants a case can ask for. */
enum ctx_variant { CTX_FULL, CTX_NO_USER, CTX_NO_KEY, CTX_NO_HEADERS, CTX_NOT_JSON,
		   CTX_NO_VALUE, CTX_EMPTY_LEVEL };

static void ctx_fill(struct template_ctx *c, enum ctx_variant v)
{
	static const char topic[] = "factory/line1/sensors/temp";
	static const char topic2[] = "a//b";
	template_ctx_init(c);
	c->clientid = "dev-1";
	c->clientid_len = 5;
	c->username = v == CTX_NO_USER ? NULL : "alice";
	c->username_len = v == CTX_NO_USER ? 0 : 5;
	c->topic = v == CTX_EMPTY_LEVEL ? topic2 : topic;
	c->topic_len = v == CTX_EMPTY_LEVEL ? strlen(topic2) : strlen(topic);
	c->key = v == CTX_NO_KEY ? NULL : (const uint8_t *)"k1";
	c->key_len = v == CTX_NO_KEY ? 0 : 2;
	c->header = v == CTX_NO_HEADERS ? NULL : lookup;
	c->value = v == CTX_NO_VALUE ? NULL
		 : (const uint8_t *)(v == CTX_NOT_JSON ? "hello" : json_value);
	c->value_len = v == CTX_NO_VALUE ? 0 : v == CTX_NOT_JSON ? 5 : strlen(json_value);
	c->kafka_topic = "commands";
	c->kafka_topic_len = 8;
}

struct render_case {
	const char *src;
	enum template_kind kind;
	enum ctx_variant ctx;
	int rc;
	const char *want; /* when rc == 0 */
};

static const struct render_case render_cases[] = {
	{ "plain/topic", UP, CTX_FULL, 0, "plain/topic" },
	{ "a$b$", UP, CTX_FULL, 0, "a$b$" },
	{ "${clientid}", UP, CTX_FULL, 0, "dev-1" },
	{ "${username}", UP, CTX_FULL, 0, "alice" },
	{ "u.${username}", UP, CTX_NO_USER, TEMPLATE_ERR_USERNAME, NULL },
	{ "${topic}", UP, CTX_FULL, 0, "factory/line1/sensors/temp" },
	{ "${topic[0]}", UP, CTX_FULL, 0, "factory" },
	{ "${topic[3]}", UP, CTX_FULL, 0, "temp" },
	{ "x${topic[4]}", UP, CTX_FULL, TEMPLATE_ERR_LEVEL, NULL },
	{ "${topic[1]}", UP, CTX_EMPTY_LEVEL, 0, "" },
	{ "${topic[2]}", UP, CTX_EMPTY_LEVEL, 0, "b" },
	{ "kafka.${topic[1]}.${clientid}-raw", UP, CTX_FULL, 0, "kafka.line1.dev-1-raw" },
	{ "${topic[0]}${topic[1]}${clientid}", UP, CTX_FULL, 0, "factoryline1dev-1" },
	{ "${key}", DOWN, CTX_FULL, 0, "k1" },
	{ "devices/${key}/cmd", DOWN, CTX_FULL, 0, "devices/k1/cmd" },
	{ "${key}", DOWN, CTX_NO_KEY, TEMPLATE_ERR_KEY, NULL },
	{ "d/${header:device}", DOWN, CTX_FULL, 0, "d/d42" },
	{ "d/${header:empty}/x", DOWN, CTX_FULL, 0, "d//x" },
	{ "${header:missing}", DOWN, CTX_FULL, TEMPLATE_ERR_HEADER, NULL },
	{ "${header:device}", DOWN, CTX_NO_HEADERS, TEMPLATE_ERR_HEADER, NULL },
	{ "${kafka_topic}/${key}", DOWN, CTX_FULL, 0, "commands/k1" },
	{ "d/${json:device.id}", DOWN, CTX_FULL, 0, "d/d7" },
	{ "${json:device.n}", DOWN, CTX_FULL, 0, "42" },
	{ "${json:device.neg}", DOWN, CTX_FULL, 0, "-3" },
	{ "${json:device.r}", DOWN, CTX_FULL, 0, "1.5" },
	{ "${json:device.ok}/${json:device.off}", DOWN, CTX_FULL, 0, "true/false" },
	{ "${json:device.sp}", DOWN, CTX_FULL, 0, "x y" },
	{ "${json:device.tags.1}", DOWN, CTX_FULL, 0, "b" },
	{ "${json:arr.0.x}", DOWN, CTX_FULL, 0, "y" },
	{ "${json:0}", DOWN, CTX_FULL, 0, "zero" },
	{ "${json:device.tags.2}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.tags.x}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.tags}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.obj}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.nul}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.missing}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.id.more}", DOWN, CTX_FULL, TEMPLATE_ERR_JSON_PATH, NULL },
	{ "${json:device.id}", DOWN, CTX_NOT_JSON, TEMPLATE_ERR_NOT_JSON, NULL },
	{ "${json:device.id}", DOWN, CTX_NO_VALUE, TEMPLATE_ERR_NOT_JSON, NULL },
};

static void test_render_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof render_cases / sizeof render_cases[0]; i++) {
		const struct render_case *tc = &render_cases[i];
		struct template *t;
		struct template_ctx ctx;
		struct buf out;
		char err[128];

		CHECK(template_compile(&t, tc->src, tc->kind, err, sizeof err) == 0, i, tc->src);
		ctx_fill(&ctx, tc->ctx);
		/* Output is appended after what the buffer holds, and a failed
		 * render leaves that untouched. */
		buf_init(&out);
		assert_int_equal(buf_append(&out, "pre:", 4), 0);
		buf_consume(&out, 1);
		int rc = template_render(t, &ctx, &out);
		CHECK(rc == tc->rc, i, tc->src);
		size_t want = tc->rc == 0 ? strlen(tc->want) : 0;
		CHECK(buf_used(&out) == 3 + want, i, tc->src);
		CHECK(memcmp(buf_head(&out), "re:", 3) == 0, i, tc->src);
		if (tc->rc == 0)
			CHECK(memcmp(buf_head(&out) + 3, tc->want, want) == 0, i, tc->src);
		else
			CHECK(strcmp(template_err_str(rc), "unknown template error") != 0, i, tc->src);
		assert_string_equal(template_source(t), tc->src);
		assert_int_equal(template_kind(t), tc->kind);
		template_ctx_release(&ctx);
		buf_release(&out);
		template_free(t);
	}
}

struct compile_case {
	const char *src;
	enum template_kind kind;
	const char *msg; /* substring of the error; NULL: compiles */
};

static const struct compile_case compile_cases[] = {
	{ "", UP, "empty template" },
	{ "", DOWN, "empty template" },
	{ "a/${clientid", UP, "unterminated \"${\" at column 3" },
	{ "${", UP, "unterminated" },
	{ "${foo}", UP, "unknown variable \"${foo}\"" },
	{ "${}", UP, "unknown variable \"${}\"" },
	{ "${ clientid}", UP, "unknown variable" },
	{ "${Topic}", UP, "unknown variable" },
	{ "${topicx}", UP, "unknown variable" },
	{ "${topic[x]}", UP, "bad level index in \"${topic[x]}\"" },
	{ "${topic[]}", UP, "bad level index" },
	{ "${topic[-1]}", UP, "bad level index" },
	{ "${topic[1}", UP, "bad level index" },
	{ "${topic[1]x}", UP, "bad level index" },
	{ "${topic[99999]}", UP, "level index too large" },
	{ "${topic[65535]}", UP, NULL },
	{ "${key}", UP, "\"${key}\" is a downlink variable" },
	{ "t.${header:x}", UP, "is a downlink variable" },
	{ "${json:a}", UP, "is a downlink variable" },
	{ "${kafka_topic}", UP, "is a downlink variable" },
	{ "${clientid}", DOWN, "\"${clientid}\" is an uplink variable" },
	{ "${topic[0]}", DOWN, "is an uplink variable" },
	{ "${username}", DOWN, "is an uplink variable" },
	{ "${header:}", DOWN, "empty header name" },
	{ "${json:}", DOWN, "empty JSON path" },
	{ "${json:a..b}", DOWN, "empty element in JSON path" },
	{ "${json:.a}", DOWN, "empty element" },
	{ "${json:a.}", DOWN, "empty element" },
	{ "ok/${clientid}/${foo", UP, "unterminated \"${\" at column 16" },
	{ "$", UP, NULL },
	{ "}", DOWN, NULL },
};

static void test_compile_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof compile_cases / sizeof compile_cases[0]; i++) {
		const struct compile_case *tc = &compile_cases[i];
		struct template *t = (struct template *)&t; /* must be reset */
		char err[128] = "";

		int rc = template_compile(&t, tc->src, tc->kind, err, sizeof err);
		if (!tc->msg) {
			CHECK(rc == 0 && t != NULL, i, tc->src);
			template_free(t);
			continue;
		}
		CHECK(rc == -1 && t == NULL, i, tc->src);
		if (!strstr(err, tc->msg))
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, tc->msg);
	}
}

static void test_error_buffer_bounds(void **state)
{
	struct template *t;
	char err[8];

	(void)state;
	memset(err, 'X', sizeof err);
	assert_int_equal(template_compile(&t, "${a_rather_long_unknown_name}", UP, err, 8), -1);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(template_compile(&t, "${nope}", UP, NULL, 0), -1);
	assert_null(t);
}

static void test_is_literal(void **state)
{
	static const struct { const char *src; enum template_kind kind; bool lit; } cases[] = {
		{ "telemetry", UP, true },
		{ "a$b", UP, true },
		{ "t.${clientid}", UP, false },
		{ "${topic[2]}", UP, false },
		{ "cmd/${key}", DOWN, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct template *t;
		assert_int_equal(template_compile(&t, cases[i].src, cases[i].kind, NULL, 0), 0);
		assert_int_equal(template_is_literal(t), cases[i].lit);
		template_free(t);
	}
}

/* The value is parsed once per ctx, and the parse is shared with others. */
static void test_json_parsed_once(void **state)
{
	struct template *a, *b;
	struct template_ctx ctx;
	struct buf out;

	(void)state;
	assert_int_equal(template_compile(&a, "${json:device.id}", DOWN, NULL, 0), 0);
	assert_int_equal(template_compile(&b, "/${json:device.n}", DOWN, NULL, 0), 0);
	ctx_fill(&ctx, CTX_FULL);
	buf_init(&out);
	assert_null(ctx.json);
	assert_int_equal(template_render(a, &ctx, &out), 0);
	const struct json_t *first = ctx.json;
	assert_non_null(first);
	assert_int_equal(template_render(b, &ctx, &out), 0);
	assert_ptr_equal(ctx.json, first);
	assert_ptr_equal(template_ctx_json(&ctx), first);
	assert_true(json_is_object((const json_t *)first));
	assert_int_equal(buf_used(&out), 5);
	assert_memory_equal(buf_head(&out), "d7/42", 5);

	/* Released and refilled for the next record: parsed afresh. */
	template_ctx_release(&ctx);
	assert_null(ctx.json);
	ctx_fill(&ctx, CTX_NOT_JSON);
	assert_null(template_ctx_json(&ctx));
	assert_int_equal(template_render(a, &ctx, &out), TEMPLATE_ERR_NOT_JSON);
	assert_int_equal(buf_used(&out), 5);
	template_ctx_release(&ctx);
	template_ctx_release(NULL);
	buf_release(&out);
	template_free(a);
	template_free(b);
	template_free(NULL);
}

/* Many renders into one buffer: the output grows past its first allocation
 * and each rendering lands intact. */
static void test_render_many(void **state)
{
	struct template *t;
	struct template_ctx ctx;
	struct buf out;

	(void)state;
	assert_int_equal(template_compile(&t, "${topic[1]}:${clientid};", UP, NULL, 0), 0);
	ctx_fill(&ctx, CTX_FULL);
	buf_init(&out);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(template_render(t, &ctx, &out), 0);
	assert_int_equal(buf_used(&out), 1000 * strlen("line1:dev-1;"));
	assert_memory_equal(buf_head(&out) + 999 * 12, "line1:dev-1;", 12);
	buf_release(&out);
	template_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_table),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_error_buffer_bounds),
		cmocka_unit_test(test_is_literal),
		cmocka_unit_test(test_json_parsed_once),
		cmocka_unit_test(test_render_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
