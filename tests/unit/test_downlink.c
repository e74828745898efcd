/*
 * test_downlink.c - record to MQTT message (downlink_map_build): topic templates
 * from key, headers, JSON and the Kafka topic; qos/retain header overrides;
 * raw and envelope payloads; the 65535-byte topic limit; mapping checks and
 * group ids. MQTT 5 properties and Kafka headers both ways: the uplink's raw
 * record headers (uplink_raw_headers) and the downlink's properties from
 * headers (downlink_props), and a round trip through both.
 *
 * Headers are real librdkafka header lists (rd_kafka_headers_new()), the
 * same type the consumer reads from a record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/cfg.h"
#include "core/msg.h"
#include "kafka/downlink.h"
#include "kafka/uplink_int.h"
#include "mqtt/mqtt5.h"
#include "route/downlink_map.h"
#include "route/envelope.h"
#include "route/template.h"

static char *topics_cmd[] = { "device-commands" };

static struct cfg_downlink mapping(const char *mqtt_topic, int qos, bool retain,
				   enum cfg_format format)
{
	return (struct cfg_downlink){
		.topics = topics_cmd, .ntopics = 1, .group = "kafkagate",
		.mqtt_topic = (char *)mqtt_topic, .qos = qos, .retain = retain,
		.format = format, .mode = CFG_MODE_GROUP, .line = 7,
	};
}

static struct downlink_map *map_new(const char *mqtt_topic, int qos, bool retain,
				    enum cfg_format format)
{
	char err[256] = "";
	struct cfg_downlink cd = mapping(mqtt_topic, qos, retain, format);
	struct downlink_map *m = downlink_map_new(&cd, "kafkagate", err, sizeof(err));
	if (!m)
		fail_msg("map '%s': %s", mqtt_topic, err);
	return m;
}

/* Builds one record through m; the caller checks rc and out. */
struct built {
	int rc;
	struct downlink_map_out out;
	char topic[256];
	char payload[256];
};

static void build(struct built *b, const struct downlink_map *m, const char *key,
		  const char *value, rd_kafka_headers_t *h)
{
	struct downlink_map_record r = {
		.topic = "device-commands", .key = key, .key_len = key ? strlen(key) : 0,
		.value = value, .value_len = value ? strlen(value) : 0, .headers = h,
	};
	struct template_ctx ctx;
	memset(b, 0, sizeof(*b));
	template_ctx_init(&ctx);
	b->rc = downlink_map_build(m, &r, &ctx, &b->out);
	template_ctx_release(&ctx);
	snprintf(b->topic, sizeof(b->topic), "%.*s", (int)buf_used(&b->out.topic),
		 (const char *)buf_head(&b->out.topic));
	snprintf(b->payload, sizeof(b->payload), "%.*s", (int)buf_used(&b->out.payload),
		 (const char *)buf_head(&b->out.payload));
	buf_release(&b->out.topic);
	buf_release(&b->out.payload);
}

static rd_kafka_headers_t *headers(const char *const *kv)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);
	for (size_t i = 0; kv[i]; i += 2)
		rd_kafka_header_add(h, kv[i], -1, kv[i + 1], kv[i + 1] ? -1 : 0);
	return h;
}

static void test_key_template(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("devices/${key}/commands", 1, false, CFG_FORMAT_RAW);
	struct built b;
	build(&b, m, "d1", "reboot", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_string_equal(b.topic, "devices/d1/commands");
	assert_string_equal(b.payload, "reboot");
	assert_int_equal(b.out.qos, 1);
	assert_false(b.out.retain);
	/* No key: the template cannot be filled. */
	build(&b, m, NULL, "reboot", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TEMPLATE);
	assert_int_equal(b.out.detail, TEMPLATE_ERR_KEY);
	/* A key with a wildcard makes an invalid topic name. */
	build(&b, m, "a+b", "x", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TOPIC);
	assert_string_equal(downlink_map_err_str(b.rc, b.out.detail),
			    "not a valid MQTT topic name");
	downlink_map_free(m);
}

static void test_header_template(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("${header:mqtt.topic}", 0, false, CFG_FORMAT_RAW);
	const char *const kv[] = { "mqtt.topic", "old/topic", "mqtt.topic", "site/7/all", NULL };
	rd_kafka_headers_t *h = headers(kv);
	struct built b;
	build(&b, m, NULL, "hello", h);
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_string_equal(b.topic, "site/7/all"); /* the last one wins */
	assert_int_equal(b.out.qos, 0);
	rd_kafka_headers_destroy(h);

	build(&b, m, NULL, "hello", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TEMPLATE);
	assert_int_equal(b.out.detail, TEMPLATE_ERR_HEADER);

	/* An empty header gives an empty topic: not a valid name. */
	const char *const empty[] = { "mqtt.topic", "", NULL };
	h = headers(empty);
	build(&b, m, NULL, "hello", h);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TOPIC);
	rd_kafka_headers_destroy(h);
	downlink_map_free(m);
}

static void test_json_and_kafka_topic(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("${kafka_topic}/${json:device.id}/${json:seq}", 2, true,
					 CFG_FORMAT_RAW);
	struct built b;
	const char *v = "{\"device\":{\"id\":\"x7\"},\"seq\":42}";
	build(&b, m, NULL, v, NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_string_equal(b.topic, "device-commands/x7/42");
	assert_string_equal(b.payload, v); /* raw: the value as it is */
	assert_int_equal(b.out.qos, 2);
	assert_true(b.out.retain);
	build(&b, m, NULL, "{\"device\":{}}", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TEMPLATE);
	assert_int_equal(b.out.detail, TEMPLATE_ERR_JSON_PATH);
	build(&b, m, NULL, "not json", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_TEMPLATE);
	assert_int_equal(b.out.detail, TEMPLATE_ERR_NOT_JSON);
	downlink_map_free(m);
}

static void test_overrides(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("devices/${key}/commands", 1, false, CFG_FORMAT_RAW);
	static const struct {
		const char *qos, *retain;
		int want_qos;
		bool want_retain;
	} cases[] = {
		{ "0", "true", 0, true },
		{ "2", "1", 2, true },
		{ "1", "false", 1, false },
		{ "2", "0", 2, false },
		{ "3", "yes", 1, false },    /* not allowed: the mapping's values */
		{ "01", "TRUE", 1, false },  /* exact words only */
		{ "", "", 1, false },
		{ NULL, NULL, 1, false },    /* null header values */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *const kv[] = { "mqtt.qos", cases[i].qos, "mqtt.retain", cases[i].retain,
					   NULL };
		rd_kafka_headers_t *h = headers(kv);
		struct built b;
		build(&b, m, "d1", "x", h);
		rd_kafka_headers_destroy(h);
		assert_int_equal(b.rc, DOWNLINK_MAP_OK);
		if (b.out.qos != cases[i].want_qos || b.out.retain != cases[i].want_retain)
			fail_msg("case %zu: qos %d retain %d", i, b.out.qos, b.out.retain);
	}
	/* A retain mapping overridden to false. */
	struct downlink_map *r = map_new("devices/${key}/state", 0, true, CFG_FORMAT_RAW);
	const char *const kv[] = { "mqtt.retain", "false", NULL };
	rd_kafka_headers_t *h = headers(kv);
	struct built b;
	build(&b, r, "d1", "x", h);
	assert_false(b.out.retain);
	build(&b, r, "d1", NULL, NULL); /* null value: empty payload, retained */
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_true(b.out.retain);
	assert_string_equal(b.payload, "");
	rd_kafka_headers_destroy(h);
	downlink_map_free(r);
	downlink_map_free(m);
}

static void test_envelope(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("devices/${json:device}/commands", 1, false,
					 CFG_FORMAT_JSON);
	struct built b;
	build(&b, m, NULL, "{\"device\":\"d3\",\"payload\":\"reboot\"}", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_string_equal(b.topic, "devices/d3/commands");
	assert_string_equal(b.payload, "reboot");
	build(&b, m, NULL, "{\"device\":\"d3\",\"payload\":{\"a\": [1, 2]}}", NULL);
	assert_string_equal(b.payload, "{\"a\":[1,2]}");
	/* base64 of "hi!" */
	build(&b, m, NULL,
	      "{\"device\":\"d3\",\"payload_encoding\":\"base64\",\"payload\":\"aGkh\"}", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_OK);
	assert_string_equal(b.payload, "hi!");
	/* JSON but not an envelope: skipped. */
	build(&b, m, NULL, "{\"device\":\"d3\",\"cmd\":\"reboot\"}", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_ENVELOPE);
	assert_int_equal(b.out.detail, ENVELOPE_ERR_NOT_ENVELOPE);
	assert_string_equal(downlink_map_err_str(b.rc, b.out.detail),
			    "value is not a JSON envelope");
	/* Bad base64. */
	build(&b, m, NULL,
	      "{\"device\":\"d3\",\"payload_encoding\":\"base64\",\"payload\":\"a\"}", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_ENVELOPE);
	assert_int_equal(b.out.detail, ENVELOPE_ERR_INVALID);
	downlink_map_free(m);

	/* A literal topic: a non-JSON value is not an envelope either. */
	m = map_new("broadcast/all", 0, false, CFG_FORMAT_JSON);
	build(&b, m, NULL, "plain text", NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_ENVELOPE);
	build(&b, m, NULL, NULL, NULL);
	assert_int_equal(b.rc, DOWNLINK_MAP_ERR_ENVELOPE);
	downlink_map_free(m);
}

/* Two maps over one record share one ctx (one JSON parse) and both build. */
static void test_shared_ctx(void **state)
{
	(void)state;
	struct downlink_map *a = map_new("a/${json:id}", 0, false, CFG_FORMAT_RAW);
	struct downlink_map *j = map_new("b/${json:id}", 1, false, CFG_FORMAT_JSON);
	const char *v = "{\"id\":\"q\",\"payload\":\"p\"}";
	struct downlink_map_record r = { .topic = "device-commands", .value = v,
					 .value_len = strlen(v) };
	struct downlink_map_out out = { 0 };
	struct template_ctx ctx;
	template_ctx_init(&ctx);
	assert_int_equal(downlink_map_build(a, &r, &ctx, &out), DOWNLINK_MAP_OK);
	assert_int_equal(buf_used(&out.payload), strlen(v));
	assert_int_equal(downlink_map_build(j, &r, &ctx, &out), DOWNLINK_MAP_OK);
	assert_memory_equal(buf_head(&out.topic), "b/q", 3);
	assert_int_equal(buf_used(&out.payload), 1);
	template_ctx_release(&ctx);
	buf_release(&out.topic);
	buf_release(&out.payload);
	assert_true(downlink_map_has_topic(a, "device-commands"));
	assert_false(downlink_map_has_topic(a, "device-command"));
	downlink_map_free(a);
	downlink_map_free(j);
}

/* [MQTT-4.7.3-3] A topic name is at most 65535 bytes: a record whose
 * rendered topic would be longer is skipped (DOWNLINK_MAP_ERR_TOPIC, which
 * downlink.c counts as skipped); 65535 bytes exactly still builds. */
static void test_topic_length_limit(void **state)
{
	(void)state;
	struct downlink_map *m = map_new("${key}", 1, false, CFG_FORMAT_RAW);
	static const struct {
		size_t key_len;
		int want;
	} cases[] = {
		{ 65535, DOWNLINK_MAP_OK },
		{ 65536, DOWNLINK_MAP_ERR_TOPIC },
		{ 70000, DOWNLINK_MAP_ERR_TOPIC },
	};
	static char key[70000];
	memset(key, 'k', sizeof(key));
	struct downlink_map_out out = { 0 };
	struct template_ctx ctx;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct downlink_map_record r = { .topic = "device-commands", .key = key,
						 .key_len = cases[i].key_len, .value = "x",
						 .value_len = 1 };
		template_ctx_init(&ctx);
		int rc = downlink_map_build(m, &r, &ctx, &out);
		template_ctx_release(&ctx);
		if (rc != cases[i].want)
			fail_msg("key of %zu bytes: rc %d, want %d", cases[i].key_len, rc,
				 cases[i].want);
		if (rc == DOWNLINK_MAP_OK)
			assert_int_equal(buf_used(&out.topic), cases[i].key_len);
	}
	assert_string_equal(downlink_map_err_str(DOWNLINK_MAP_ERR_TOPIC, 0),
			    "not a valid MQTT topic name");
	buf_release(&out.topic);
	buf_release(&out.payload);
	downlink_map_free(m);
}

static void test_map_errors_and_check(void **state)
{
	(void)state;
	char err[256];
	static const char *const bad[] = { "${nope}", "devices/+/x", "x/#", "${clientid}", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cfg_downlink cd = mapping(bad[i], 0, false, CFG_FORMAT_RAW);
		assert_null(downlink_map_new(&cd, "g", err, sizeof(err)));
		assert_non_null(strstr(err, "mqtt_topic"));
	}
	char *badtopic[] = { "bad topic" };
	struct cfg_downlink cd = mapping("x", 0, false, CFG_FORMAT_RAW);
	cd.topics = badtopic;
	assert_null(downlink_map_new(&cd, "g", err, sizeof(err)));
	assert_string_equal(err, "topic: 'bad topic' is not a valid Kafka topic name");

	struct cfg_downlink list[2] = { mapping("devices/${key}/c", 1, false, CFG_FORMAT_RAW),
					mapping("d/${header:}", 0, false, CFG_FORMAT_RAW) };
	list[1].line = 12;
	struct cfg c = { .path = "gw.cfg", .downlinks = list, .ndownlinks = 1 };
	assert_int_equal(downlink_check(&c, err, sizeof(err)), 0);
	c.ndownlinks = 2;
	assert_int_equal(downlink_check(&c, err, sizeof(err)), -1);
	assert_memory_equal(err, "gw.cfg:12: downlink[1]: mqtt_topic: ", 36);
	downlink_map_free(NULL);
}

static void test_group_id(void **state)
{
	(void)state;
	char out[64];
	struct cfg_downlink cd = mapping("x", 0, false, CFG_FORMAT_RAW);
	assert_int_equal(downlink_group_id(&cd, "host-a", out, sizeof(out)), 0);
	assert_string_equal(out, "kafkagate");
	cd.mode = CFG_MODE_BROADCAST;
	assert_int_equal(downlink_group_id(&cd, "host-a", out, sizeof(out)), 0);
	assert_string_equal(out, "kafkagate-host-a");
	assert_int_equal(downlink_group_id(&cd, "host-a", out, 10), -1);
}

/* Static membership: kafka.instance_id, else host name and first port; none
 * without a stable port; kafka.properties' own group.instance.id wins. */
static void test_member_id(void **state)
{
	(void)state;
	char out[64], err[256];
	struct cfg_listener lis[2] = { { .port = 1883 }, { .port = 8883 } };
	struct cfg_kafka_prop props[2] = { { .name = "linger.ms", .value = "0" },
					   { .name = "group.instance.id", .value = "" } };
	struct cfg c = { .path = "gw.cfg", .listeners = lis, .nlisteners = 2 };

	assert_int_equal(downlink_member_id(&c, "gw1.example", out, sizeof(out)), 0);
	assert_string_equal(out, "gw1.example-1883");
	assert_int_equal(downlink_member_id(&c, "odd host:name", out, sizeof(out)), 0);
	assert_string_equal(out, "odd_host_name-1883");
	assert_int_equal(downlink_member_id(&c, "gw1", out, 6), -1);
	lis[0].port = 0; /* any free port: nothing stable to name the instance by */
	assert_int_equal(downlink_member_id(&c, "gw1", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	c.kafka.instance_id = "gw-a";
	assert_int_equal(downlink_member_id(&c, "gw1", out, sizeof(out)), 0);
	assert_string_equal(out, "gw-a");
	c.kafka.props = props;
	c.kafka.nprops = 1;
	assert_int_equal(downlink_member_id(&c, "gw1", out, sizeof(out)), 0);
	assert_string_equal(out, "gw-a");
	c.kafka.nprops = 2;
	assert_int_equal(downlink_member_id(&c, "gw1", out, sizeof(out)), 0);
	assert_string_equal(out, "");

	c.kafka.line = 40;
	assert_int_equal(downlink_check(&c, err, sizeof(err)), 0);
	static const char *const bad[] = { "a b", "..", "gw/1", "ü" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c.kafka.instance_id = (char *)bad[i];
		assert_int_equal(downlink_check(&c, err, sizeof(err)), -1);
		assert_memory_equal(err, "gw.cfg:40: kafka.instance_id: ", 30);
	}
}


/* ---- MQTT 5 properties <-> Kafka headers ------------------------------------ */

/* A property list as struct msg carries it (msg.h order). */
static uint32_t props_all(uint8_t *buf, uint32_t cap)
{
	struct mqtt_pw w;
	mqtt_pw_init(&w, buf, cap);
	mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, 1);
	mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, "application/x-cmd", 17);
	mqtt_pw_str(&w, MQTT_P_RESPONSE_TOPIC, "reply/dev-1", 11);
	mqtt_pw_str(&w, MQTT_P_CORRELATION_DATA, "\x00\x01\xff", 3);
	mqtt_pw_pair(&w, "k", 1, "v1", 2);
	mqtt_pw_pair(&w, "trace", 5, "t-9", 3);
	mqtt_pw_pair(&w, "k", 1, "v2", 2);
	mqtt_pw_pair(&w, "empty", 5, "", 0);
	assert_false(w.overflow);
	return w.len;
}

static void expect_hdr(rd_kafka_headers_t *h, size_t i, const char *name, const void *val,
		       size_t len)
{
	const char *n;
	const void *v;
	size_t l;
	if (rd_kafka_header_get_all(h, i, &n, &v, &l))
		fail_msg("no header %zu (want %s)", i, name);
	if (strcmp(n, name) != 0 || l != len || (len && memcmp(v, val, len) != 0))
		fail_msg("header %zu: %s = '%.*s', want %s = '%.*s'", i, n, (int)l,
			 v ? (const char *)v : "", name, (int)len, (const char *)val);
}

static void test_uplink_headers(void **state)
{
	uint8_t pb[256];
	uint32_t n = props_all(pb, sizeof pb);
	struct msg *m = msg_new_props("a/b", 3, "on", 2, 1, true, pb, n);
	(void)state;
	assert_non_null(m);

	rd_kafka_headers_t *h = uplink_raw_headers(m, "dev-1", 5, "alice", 5, true, 60);
	expect_hdr(h, 0, "mqtt.topic", "a/b", 3);
	expect_hdr(h, 1, "mqtt.clientid", "dev-1", 5);
	expect_hdr(h, 2, "mqtt.qos", "1", 1);
	expect_hdr(h, 3, "mqtt.retain", "true", 4);
	expect_hdr(h, 4, "mqtt.username", "alice", 5);
	expect_hdr(h, 5, "mqtt.message_expiry", "60", 2);
	expect_hdr(h, 6, "mqtt.payload_format", "1", 1);
	expect_hdr(h, 7, "mqtt.content_type", "application/x-cmd", 17);
	expect_hdr(h, 8, "mqtt.response_topic", "reply/dev-1", 11);
	expect_hdr(h, 9, "mqtt.correlation_data", "\x00\x01\xff", 3);
	/* User properties: their own names, in order, repeats kept. */
	expect_hdr(h, 10, "k", "v1", 2);
	expect_hdr(h, 11, "trace", "t-9", 3);
	expect_hdr(h, 12, "k", "v2", 2);
	expect_hdr(h, 13, "empty", "", 0);
	assert_int_equal(rd_kafka_header_cnt(h), 14);
	rd_kafka_headers_destroy(h);

	/* A 3.1.1 message: the five headers of before, nothing more. */
	struct msg *plain = msg_new("a/b", 3, "x", 1, 0, false);
	h = uplink_raw_headers(plain, "dev-1", 5, NULL, 0, false, 0);
	assert_int_equal(rd_kafka_header_cnt(h), 4);
	expect_hdr(h, 3, "mqtt.retain", "false", 5);
	rd_kafka_headers_destroy(h);

	/* Expiry: seconds left rounded up; 0 once passed; none without one. */
	uint32_t secs = 7;
	assert_false(msg_expiry_left(plain, 1000, &secs));
	plain->expires_ms = 100000;
	assert_true(msg_expiry_left(plain, 40001, &secs));
	assert_int_equal(secs, 60);
	assert_true(msg_expiry_left(plain, 99999, &secs));
	assert_int_equal(secs, 1);
	assert_true(msg_expiry_left(plain, 100000, &secs));
	assert_int_equal(secs, 0);
	assert_true(msg_expiry_left(plain, 200000, &secs));
	assert_int_equal(secs, 0);
	msg_unref(plain);
	msg_unref(m);
}

/* The property list in b, as (id, str, str2, value) lines. */
static void props_text(const struct buf *b, char *out, size_t cap)
{
	struct mqtt_props pr = { b->data ? buf_head(b) : NULL, (uint32_t)buf_used(b) };
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	size_t used = 0;
	out[0] = '\0';
	mqtt_props_begin(&pr, &it);
	while (mqtt_props_next(&it, &p) && used < cap)
		used += (size_t)snprintf(out + used, cap - used, "%02x:%.*s=%.*s:%u;", p.id,
					 (int)p.str.len, (const char *)p.str.p, (int)p.str2.len,
					 (const char *)p.str2.p, (unsigned)p.value);
}

static void test_downlink_props(void **state)
{
	char *names[] = { "cmd-id", "trace" };
	struct downlink_uprops listed = { false, names, 2 }, all = { true, NULL, 0 }, none = { 0 };
	rd_kafka_headers_t *h = rd_kafka_headers_new(12);
	struct buf b;
	char txt[512];
	int64_t exp = -1;
	(void)state;

	rd_kafka_header_add(h, "trace", -1, "t1", 2);
	rd_kafka_header_add(h, "mqtt.correlation_data", -1, "\x01\x02", 2);
	rd_kafka_header_add(h, "cmd-id", -1, "42", 2);
	rd_kafka_header_add(h, "mqtt.response_topic", -1, "reply/x", 7);
	rd_kafka_header_add(h, "other", -1, "o", 1);
	rd_kafka_header_add(h, "mqtt.payload_format", -1, "1", 1);
	rd_kafka_header_add(h, "mqtt.content_type", -1, "text/plain", 10);
	rd_kafka_header_add(h, "trace", -1, NULL, 0);     /* null value: "" */
	rd_kafka_header_add(h, "mqtt.message_expiry", -1, "30", 2);
	rd_kafka_header_add(h, "mqtt.qos", -1, "1", 1);
	rd_kafka_header_add(h, "bad\xff", -1, "x", 1);     /* not UTF-8: left out */
	rd_kafka_header_add(h, "ctl", -1, "a\x01", 2);     /* control char: left out */
	buf_init(&b);

	/* The listed names, in record order, after the mqtt.* ones in msg.h order. */
	assert_int_equal(downlink_props(&listed, h, 1000000, "go", 2, &b, &exp), 0);
	props_text(&b, txt, sizeof txt);
	assert_string_equal(txt, "01:=:1;03:text/plain=:0;08:reply/x=:0;09:\x01\x02=:0;"
				 "26:trace=t1:0;26:cmd-id=42:0;26:trace=:0;");
	assert_int_equal(exp, 1000000 + 30000);

	/* "*": every header not named mqtt.*, valid ones only. */
	buf_reset(&b);
	assert_int_equal(downlink_props(&all, h, 5, "go", 2, &b, &exp), 0);
	props_text(&b, txt, sizeof txt);
	assert_string_equal(txt, "01:=:1;03:text/plain=:0;08:reply/x=:0;09:\x01\x02=:0;"
				 "26:trace=t1:0;26:cmd-id=42:0;26:other=o:0;26:trace=:0;");

	/* No user properties configured: the mqtt.* ones still map. Payload
	 * format 1 is dropped for a payload that is not UTF-8 text. */
	buf_reset(&b);
	assert_int_equal(downlink_props(&none, h, 5, "\xff", 1, &b, &exp), 0);
	props_text(&b, txt, sizeof txt);
	assert_string_equal(txt, "03:text/plain=:0;08:reply/x=:0;09:\x01\x02=:0;");
	rd_kafka_headers_destroy(h);

	/* Values that do not fit their property are left out. */
	h = rd_kafka_headers_new(8);
	rd_kafka_header_add(h, "mqtt.response_topic", -1, "reply/#", 7); /* wildcard */
	rd_kafka_header_add(h, "mqtt.payload_format", -1, "2", 1);
	rd_kafka_header_add(h, "mqtt.content_type", -1, "a\0b", 3);
	rd_kafka_header_add(h, "mqtt.message_expiry", -1, "-1", 2);
	buf_reset(&b);
	assert_int_equal(downlink_props(&all, h, 5, "go", 2, &b, &exp), 0);
	assert_int_equal(buf_used(&b), 0);
	assert_int_equal(exp, 0);
	rd_kafka_headers_destroy(h);
	h = rd_kafka_headers_new(2);
	rd_kafka_header_add(h, "mqtt.message_expiry", -1, "4294967296", 10);
	rd_kafka_header_add(h, "mqtt.payload_format", -1, "0", 1);
	assert_int_equal(downlink_props(&all, h, 5, "\xff", 1, &b, &exp), 0);
	assert_int_equal(exp, 0);
	props_text(&b, txt, sizeof txt);
	assert_string_equal(txt, "01:=:0;");
	rd_kafka_headers_destroy(h);
	buf_reset(&b);
	assert_int_equal(downlink_props(&all, NULL, 5, "x", 1, &b, &exp), 0);
	assert_int_equal(buf_used(&b), 0);
	buf_release(&b);
}

/* A message's properties survive MQTT -> Kafka headers -> MQTT unchanged
 * (the request/response round trip through Kafka). */
static void test_props_round_trip(void **state)
{
	uint8_t pb[256];
	uint32_t n = props_all(pb, sizeof pb);
	struct msg *m = msg_new_props("a/b", 3, "on", 2, 1, false, pb, n);
	struct downlink_uprops all = { true, NULL, 0 };
	struct buf b;
	int64_t exp;
	(void)state;

	rd_kafka_headers_t *h = uplink_raw_headers(m, "dev-1", 5, NULL, 0, true, 90);
	buf_init(&b);
	assert_int_equal(downlink_props(&all, h, 7000, m->payload, m->payload_len, &b, &exp), 0);
	assert_int_equal(buf_used(&b), n);
	assert_memory_equal(buf_head(&b), pb, n);
	assert_int_equal(exp, 7000 + 90000);
	buf_release(&b);
	rd_kafka_headers_destroy(h);
	msg_unref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_template),
		cmocka_unit_test(test_header_template),
		cmocka_unit_test(test_json_and_kafka_topic),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_shared_ctx),
		cmocka_unit_test(test_topic_length_limit),
		cmocka_unit_test(test_map_errors_and_check),
		cmocka_unit_test(test_group_id),
		cmocka_unit_test(test_member_id),
		cmocka_unit_test(test_uplink_headers),
		cmocka_unit_test(test_downlink_props),
		cmocka_unit_test(test_props_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
