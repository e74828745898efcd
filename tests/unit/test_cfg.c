/* test_cfg.c - cfg_load(), cfg_reload_diff(), the Kafka properties built
 * from them (kafka_conf.c) and the util helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/util.h"
#include "kafka/kafka_conf.h"

static char tmpdir[64];
static char tmpfile_path[128];
static char root[512];  /* repository root, from where this file was compiled */

static int setup(void **state)
{
	const char *self = __FILE__, *tail = strstr(self, "tests/unit/test_cfg.c");

	(void)state;
	snprintf(root, sizeof(root), "%.*s", tail ? (int)(tail - self) : 0, self);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_cfg.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/t.cfg", tmpdir);
	return 0;
}

/* Files the tests write into tmpdir besides t.cfg. */
static const char *const extra_files[] = { "secret", "big.secret", "empty.secret" };

static int teardown(void **state)
{
	char path[200];

	(void)state;
	unlink(tmpfile_path);
	for (size_t i = 0; i < sizeof(extra_files) / sizeof(extra_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, extra_files[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

static const char *write_cfg(const char *text)
{
	FILE *f = fopen(tmpfile_path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return tmpfile_path;
}

static struct cfg *load_ok(const char *text)
{
	struct cfg *c = NULL;
	char err[256] = "";

	if (cfg_load(write_cfg(text), &c, err, sizeof(err)) != 0)
		fail_msg("unexpected error: %s", err);
	assert_non_null(c);
	return c;
}

/* Loads text, which must fail; returns the error after "FILE" (static). */
static const char *load_err(const char *text)
{
	static char err[512];
	struct cfg *c = NULL;
	size_t n = strlen(tmpfile_path);

	memset(err, 0, sizeof(err));
	if (cfg_load(write_cfg(text), &c, err, sizeof(err)) != -1)
		fail_msg("loaded, wanted an error: %.200s", text);
	assert_null(c);
	assert_int_equal(strncmp(err, tmpfile_path, n), 0);
	return err + n;
}

/* "<tmpdir>/name": where a relative name in t.cfg resolves to (static). */
static const char *in_tmp(const char *name)
{
	static char buf[2][200];
	static int k;

	k ^= 1;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

/* A string of n copies of ch (free it). */
static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* The smallest valid config: one listener, everything else default. */
static void test_defaults(void **state)
{
	struct cfg *c = load_ok("\nlisteners = ( { } );\n");
	const struct cfg_limits *lim = &c->limits;

	(void)state;
	assert_string_equal(c->path, tmpfile_path);
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 1883);
	assert_int_equal(c->listeners[0].line, 2);
	assert_int_equal(c->listeners[0].protocol, CFG_PROTO_MQTT);
	assert_null(c->listeners[0].path);
	assert_false(c->listeners[0].has_tls);
	assert_null(c->listeners[0].tls.cert.path);
	assert_int_equal(c->workers, 0);
	assert_int_equal(lim->max_connections, 100000);
	assert_int_equal(lim->max_packet_size, 1048576);
	assert_int_equal(lim->max_inflight, 32);
	assert_int_equal(lim->max_queued_messages, 1000);
	assert_int_equal(lim->max_output_bytes, 1048576);
	assert_int_equal(lim->connect_timeout, 10);
	assert_int_equal(lim->max_connect_size, 65536);
	assert_int_equal(lim->max_topic_length, 4096);
	assert_int_equal(lim->max_topic_levels, 128);
	assert_int_equal(lim->max_client_id_length, 256);
	assert_int_equal(lim->max_subscriptions, 1000);
	assert_int_equal(lim->max_qos2_pending, 1000);
	assert_int_equal(lim->packet_timeout, 30);
	assert_int_equal(lim->max_partial_bytes, 256 << 20);
	assert_int_equal(lim->max_retained_messages, 100000);
	assert_int_equal(lim->max_retained_bytes, 256 << 20);
	assert_int_equal(lim->max_queued_bytes, 16 << 20);
	assert_int_equal(lim->max_queued_total_messages, 10000000);
	assert_int_equal(lim->max_queued_total_bytes, 1 << 30);
	assert_int_equal(lim->session_expiry, 7 * 86400);
	assert_int_equal(lim->max_connections_per_address, 1000);
	assert_int_equal(lim->max_connect_rate, 5000);
	assert_int_equal(lim->max_keepalive, 0);
	assert_true(lim->max_session_expiry == UINT32_MAX);
	assert_int_equal(lim->topic_alias_maximum, 10);
	assert_true(c->auth.allow_anonymous);
	assert_int_equal(c->auth.allow_anonymous_line, 0);
	assert_null(c->auth.password_file.path);
	assert_null(c->auth.acl_file.path);
	assert_int_equal(c->auth.fail_delay_ms, 1000);
	assert_int_equal(c->auth.verify_threads, 2);
	assert_int_equal(c->auth.line, 0);
	assert_int_equal(c->log_level, LVL_INFO);
	assert_false(c->log_syslog);
	assert_false(c->has_metrics);
	assert_null(c->metrics.address);
	assert_null(c->metrics.token_file.path);
	assert_string_equal(c->kafka.brokers, "embedded");
	assert_int_equal(c->kafka.brokers_line, 0);
	assert_int_equal(c->kafka.nprops, 0);
	assert_null(c->kafka.dead_letter_topic);
	assert_int_equal(c->kafka.flush_timeout, 10);
	assert_int_equal(c->kafka.line, 0);
	assert_int_equal(c->nroutes, 0);
	assert_int_equal(c->ndownlinks, 0);
	cfg_free(c);
}

static const char full_cfg[] =
	"listeners = (\n"                                                       /* 1 */
	"  { address = \"0.0.0.0\"; port = 1884; },\n"                          /* 2 */
	"  { address = \"::1\"; port = 0; }\n"                                  /* 3 */
	");\n"                                                                  /* 4 */
	"workers = 16;\n"                                                       /* 5 */
	"limits = { max_connections = 5; max_packet_size = 16; max_inflight = 65535;\n"
	"  max_queued_messages = 0; max_output_bytes = 4096; connect_timeout = 3600; };\n"
	"log = { level = \"debug\"; syslog = true; };\n"                        /* 8 */
	"metrics = { address = \"::\"; port = 0; };\n"                          /* 9 */
	"kafka = {\n"                                                           /* 10 */
	"  brokers = \"127.0.0.1:9092\";\n"
	"  properties = (\n"
	"    (\"linger.ms\", 5),\n"                                             /* 13 */
	"    [\"compression.type\", \"lz4\"],\n"                                /* 14 */
	"    (\"enable.idempotence\", true),\n"
	"    (\"message.max.bytes\", 5000000000L)\n"                            /* 16 */
	"  );\n"
	"  dead_letter_topic = \"dlq\"; flush_timeout = 0;\n"
	"};\n"
	"routes = (\n"                                                          /* 20 */
	"  { filter = \"factory/+/sensors/#\"; topic = \"sensors\"; key = \"${clientid}\"; },\n"
	"  { filter = \"#\"; topic = \"all\"; format = \"json\"; payload_text = \"base64\"; }\n" /* 22 */
	");\n"
	"downlink = (\n"
	"  { topic = \"device-commands\"; mqtt_topic = \"devices/${key}/commands\"; user_properties = \"*\"; },\n" /* 25 */
	"  { topics = [\"a\", \"b\"]; group = \"g\"; mqtt_topic = \"x/${key}\"; user_properties = [\"cmd-id\", \"trace-id\"];\n" /* 26 */
	"    qos = 2; retain = true; format = \"json\"; mode = \"broadcast\"; ack_timeout = 90; }\n"
	");\n";

static void test_full(void **state)
{
	struct cfg *c = load_ok(full_cfg);

	(void)state;
	assert_int_equal(c->nlisteners, 2);
	assert_string_equal(c->listeners[0].address, "0.0.0.0");
	assert_int_equal(c->listeners[0].port, 1884);
	assert_int_equal(c->listeners[0].line, 2);
	assert_string_equal(c->listeners[1].address, "::1");
	assert_int_equal(c->listeners[1].port, 0);
	assert_int_equal(c->listeners[1].line, 3);
	assert_int_equal(c->workers, 16);
	assert_int_equal(c->limits.max_connections, 5);
	assert_int_equal(c->limits.max_packet_size, 16);
	assert_int_equal(c->limits.max_inflight, 65535);
	assert_int_equal(c->limits.max_queued_messages, 0);
	assert_int_equal(c->limits.max_output_bytes, 4096);
	assert_int_equal(c->limits.connect_timeout, 3600);
	assert_int_equal(c->log_level, LVL_DEBUG);
	assert_true(c->log_syslog);
	assert_true(c->has_metrics);
	assert_string_equal(c->metrics.address, "::");
	assert_int_equal(c->metrics.port, 0);
	assert_int_equal(c->metrics.line, 9);

	assert_string_equal(c->kafka.brokers, "127.0.0.1:9092");
	assert_int_equal(c->kafka.brokers_line, 11);
	assert_int_equal(c->kafka.line, 10);
	assert_int_equal(c->kafka.nprops, 4);
	assert_string_equal(c->kafka.props[0].name, "linger.ms");
	assert_string_equal(c->kafka.props[0].value, "5");
	assert_int_equal(c->kafka.props[0].line, 13);
	assert_string_equal(c->kafka.props[1].name, "compression.type");
	assert_string_equal(c->kafka.props[1].value, "lz4");
	assert_int_equal(c->kafka.props[1].line, 14);
	assert_string_equal(c->kafka.props[2].value, "true");
	assert_string_equal(c->kafka.props[3].value, "5000000000");
	assert_int_equal(c->kafka.props[3].line, 16);
	assert_string_equal(c->kafka.dead_letter_topic, "dlq");
	assert_int_equal(c->kafka.flush_timeout, 0);

	assert_int_equal(c->nroutes, 2);
	assert_string_equal(c->routes[0].filter, "factory/+/sensors/#");
	assert_string_equal(c->routes[0].topic, "sensors");
	assert_string_equal(c->routes[0].key, "${clientid}");
	assert_int_equal(c->routes[0].format, CFG_FORMAT_RAW);
	assert_int_equal(c->routes[0].payload_text, CFG_TEXT_UTF8);
	assert_int_equal(c->routes[0].line, 21);
	assert_null(c->routes[1].key);
	assert_int_equal(c->routes[1].format, CFG_FORMAT_JSON);
	assert_int_equal(c->routes[1].payload_text, CFG_TEXT_BASE64);
	assert_int_equal(c->routes[1].line, 22);

	assert_int_equal(c->ndownlinks, 2);
	assert_int_equal(c->downlinks[0].ntopics, 1);
	assert_string_equal(c->downlinks[0].topics[0], "device-commands");
	assert_string_equal(c->downlinks[0].group, "kafkagate");
	assert_string_equal(c->downlinks[0].mqtt_topic, "devices/${key}/commands");
	assert_int_equal(c->downlinks[0].qos, 0);
	assert_false(c->downlinks[0].retain);
	assert_int_equal(c->downlinks[0].format, CFG_FORMAT_RAW);
	assert_int_equal(c->downlinks[0].mode, CFG_MODE_GROUP);
	assert_int_equal(c->downlinks[0].ack_timeout, 30);
	assert_int_equal(c->downlinks[0].line, 25);
	assert_true(c->downlinks[0].user_props_all);
	assert_int_equal(c->downlinks[0].nuser_props, 0);
	assert_false(c->downlinks[1].user_props_all);
	assert_int_equal(c->downlinks[1].nuser_props, 2);
	assert_string_equal(c->downlinks[1].user_props[0], "cmd-id");
	assert_string_equal(c->downlinks[1].user_props[1], "trace-id");
	assert_int_equal(c->downlinks[1].ntopics, 2);
	assert_string_equal(c->downlinks[1].topics[0], "a");
	assert_string_equal(c->downlinks[1].topics[1], "b");
	assert_string_equal(c->downlinks[1].group, "g");
	assert_int_equal(c->downlinks[1].qos, 2);
	assert_true(c->downlinks[1].retain);
	assert_int_equal(c->downlinks[1].format, CFG_FORMAT_JSON);
	assert_int_equal(c->downlinks[1].mode, CFG_MODE_BROADCAST);
	assert_int_equal(c->downlinks[1].ack_timeout, 90);
	assert_int_equal(c->downlinks[1].line, 26);
	cfg_free(c);
}

/* What the integer-overflow check must leave alone. */
static void test_literals_not_flagged(void **state)
{
	struct cfg *c = load_ok(
		"listeners = ( { } ); # workers = 99999999999 in a comment\n"
		"/* 88888888888\n   77777777777 */ workers = 0x10; // 66666666666\n"
		"kafka = { properties = ( (\"a.b\", \"55555555555\"), (\"x-99999999999\", -2147483648),\n"
		"  (\"big\", 9999999999L), (\"hex\", 0xFFFFFFFF) ); };\n"
		"routes = [];\n");

	(void)state;
	assert_int_equal(c->workers, 16);
	assert_string_equal(c->kafka.props[0].value, "55555555555");
	assert_string_equal(c->kafka.props[1].value, "-2147483648");
	assert_string_equal(c->kafka.props[2].value, "9999999999");
	assert_int_equal(c->nroutes, 0);
	cfg_free(c);
}

static void test_dev_cfg(void **state)
{
	char path[600], err[256] = "";
	struct cfg *c = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%sconfig/dev.cfg", root);
	if (cfg_load(path, &c, err, sizeof(err)) != 0)
		fail_msg("config/dev.cfg: %s", err);
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 1883);
	assert_int_equal(c->workers, 0);
	assert_true(c->has_metrics);
	assert_string_equal(c->metrics.address, "127.0.0.1");
	assert_int_equal(c->metrics.port, 9100);
	assert_string_equal(c->kafka.brokers, "embedded");
	assert_int_equal(c->log_level, LVL_INFO);
	assert_int_equal(c->nroutes, 1);
	assert_string_equal(c->routes[0].filter, "#");
	assert_string_equal(c->routes[0].topic, "mqtt");
	assert_string_equal(c->routes[0].key, "${clientid}");
	assert_int_equal(c->routes[0].format, CFG_FORMAT_RAW);
	cfg_free(c);
}

struct bad {
	const char *text;
	const char *expect;  /* substring of the error, after the file name */
};

static const struct bad bad_cfgs[] = {
	{ "wokers = 1;\n", ":1: unknown setting 'wokers'" },
	{ "limits = {\n  max_conections = 5;\n};\n", ":2: unknown setting 'limits.max_conections'" },
	{ "log = { level = \"info\";\n color = true; };\n", ":2: unknown setting 'log.color'" },
	{ "listeners = ( { address = \"127.0.0.1\"; prot = 1; } );", ":1: unknown setting 'listeners[0].prot'" },
	{ "kafka = {\n  broker = \"x\";\n};\n", ":2: unknown setting 'kafka.broker'" },
	{ "metrics = { port = 1; path = \"/m\"; };\n", ":1: unknown setting 'metrics.path'" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\";\n qso = 1; } );\n", ":2: unknown setting 'downlink[0].qso'" },
	{ "routes = ( { filter = \"#\"; topic = \"t\"; limits = { a = 1; }; } );\n",
	  ":1: unknown setting 'routes[0].limits'" },
	{ "\n\nworkers = \"4\";\n", ":3: 'workers' must be an integer" },
	{ "workers = 1.5;\n", ":1: 'workers' must be an integer" },
	{ "log = { syslog = 1; };\n", ":1: 'log.syslog' must be a boolean" },
	{ "log = { level = 3; };\n", ":1: 'log.level' must be a string" },
	{ "limits = 5;\n", ":1: 'limits' must be a group" },
	{ "listeners = { port = 1; };\n", ":1: 'listeners' must be a list" },
	{ "routes = ( \"#\" );\n", ":1: 'routes[0]' must be a group" },
	{ "routes = ( { filter = \"#\"; topic = 5; } );\n", ":1: 'routes[0].topic' must be a string" },
	{ "workers = 257;\n", ":1: 'workers' must be in 0..256 (got 257)" },
	{ "limits = { max_inflight = 0; };\n", ":1: 'limits.max_inflight' must be in 1..65535 (got 0)" },
	{ "limits = { max_packet_size = 15; };\n", "'limits.max_packet_size' must be in 16..268435455" },
	{ "limits = { max_packet_size = 268435456; };\n", "'limits.max_packet_size' must be in 16..268435455" },
	{ "limits = { max_output_bytes = 4095; };\n", "'limits.max_output_bytes' must be in 4096..1073741824" },
	{ "limits = { connect_timeout = 3601; };\n", "'limits.connect_timeout' must be in 1..3600" },
	{ "limits = { max_queued_messages = -1; };\n", "'limits.max_queued_messages' must be in 0..10000000" },
	{ "kafka = { flush_timeout = 601; };\n", "'kafka.flush_timeout' must be in 0..600" },
	{ "listeners = ( { port = -1; } );\n", ":1: 'listeners[0].port' must be in 0..65535 (got -1)" },
	{ "metrics = { port = 65536; };\n", "'metrics.port' must be in 0..65535" },
	{ "workers = 5000000000L;\n", "'workers' must be in 0..256 (got 5000000000)" },
	{ "workers = 4294967297;\n", ":1: integer 4294967297 is out of range" },
	{ "\nlimits = { max_connections = -99999999999; };\n", ":2: integer -99999999999 is out of range" },
	{ "workers = 0x100000001;\n", ":1: integer 0x100000001 is out of range" },
	{ "log = { level = \"verbose\"; };\n",
	  ":1: 'log.level' must be one of error, warn, info, debug (got \"verbose\")" },
	{ "routes = ( { filter = \"#\"; topic = \"t\";\n format = \"avro\"; } );\n",
	  ":2: 'routes[0].format' must be one of raw, json" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\"; mode = \"multicast\"; } );\n",
	  "'downlink[0].mode' must be one of group, broadcast" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\"; qos = 3; } );\n", "'downlink[0].qos' must be in 0..2" },
	{ "routes = (\n  { filter = \"a\"; topic = \"a\"; },\n  { topic = \"b\"; }\n);\n",
	  ":3: missing required setting 'routes[1].filter'" },
	{ "routes = ( { filter = \"#\"; } );\n", ":1: missing required setting 'routes[0].topic'" },
	{ "routes = ( { filter = \"#\"; topic = \"\"; } );\n", "'routes[0].topic' must not be empty" },
	{ "downlink = (\n { topic = \"t\"; } );\n", ":2: missing required setting 'downlink[0].mqtt_topic'" },
	{ "downlink = (\n { mqtt_topic = \"m\"; } );\n", ":2: missing required setting 'downlink[0].topic'" },
	{ "downlink = ( { topic = \"t\";\n topics = [\"u\"]; mqtt_topic = \"m\"; } );\n",
	  ":2: 'downlink[0]' has both 'topic' and 'topics'" },
	{ "downlink = ( { topics = []; mqtt_topic = \"m\"; } );\n", "'downlink[0].topics' must be a non-empty array" },
	{ "downlink = ( { topics = [\"a\", \"\"]; mqtt_topic = \"m\"; } );\n",
	  "'downlink[0].topics' must be a non-empty array of non-empty strings" },
	{ "downlink = ( { topic = [\"a\"]; mqtt_topic = \"m\"; } );\n", "'downlink[0].topic' must be a non-empty string" },
	{ "routes = ( { filter = \"#\"; topic = \"t\";\n payload_text = \"base64\"; } );\n",
	  ":2: 'routes[0].payload_text' applies to format = \"json\" only" },
	{ "routes = ( { filter = \"#\"; topic = \"t\"; format = \"json\";\n payload_text = \"hex\"; } );\n",
	  ":2: 'routes[0].payload_text' must be one of utf8, base64 (got \"hex\")" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\";\n user_properties = \"all\"; } );\n",
	  ":2: 'downlink[0].user_properties' must be \"*\" or an array of Kafka header names (got \"all\")" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\"; user_properties = 5; } );\n",
	  "'downlink[0].user_properties' must be \"*\" or an array" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\"; user_properties = [\"a\", \"\"]; } );\n",
	  "'downlink[0].user_properties' must be \"*\" or an array of Kafka header names (non-empty" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\";\n user_properties = [\"a\", \"*\"]; } );\n",
	  ":2: 'downlink[0].user_properties': \"*\" stands alone" },
	{ "downlink = ( { topic = \"t\"; mqtt_topic = \"m\"; user_properties = [\"mqtt.qos\"]; } );\n",
	  "'downlink[0].user_properties': \"mqtt.qos\": the mqtt.* headers are the gateway's" },
	{ "listeners = ();\n", ":1: 'listeners' must not be empty" },
	{ "listeners = ( { address = \"localhost\"; } );\n",
	  "'listeners[0].address' must be a numeric IPv4 or IPv6 address (got \"localhost\")" },
	{ "listeners = ( { address = \"1.2.3\"; } );\n", "'listeners[0].address' must be a numeric IPv4" },
	{ "listeners = ( { port = 1; },\n { address = \"127.0.0.1\"; port = 1; } );\n",
	  ":2: 'listeners[1]' repeats listeners[0]" },
	{ "kafka = { properties = { linger_ms = 5; }; };\n",
	  ":1: 'kafka.properties' must be a list ( ... ) of (\"name\", value) pairs" },
	{ "kafka = { properties = (\n (\"a\", \"1\", \"2\") ); };\n", ":2: 'kafka.properties[0]' must be a (\"name\", value) pair" },
	{ "kafka = { properties = ( \"linger.ms\" ); };\n", "'kafka.properties[0]' must be a (\"name\", value) pair" },
	{ "kafka = { properties = ( (\"\", \"1\") ); };\n", "'kafka.properties[0]' must be a (\"name\", value) pair" },
	{ "kafka = { properties = ( (\"linger.ms\", 0.5) ); };\n",
	  "Kafka property 'linger.ms' must be a string, integer or boolean" },
	{ "kafka = { properties = (\n (\"acks\", \"all\"),\n (\"acks\", 1) ); };\n",
	  ":3: Kafka property 'acks' repeats line 2" },
	{ "kafka = { dead_letter_topic = \"\"; };\n", "'kafka.dead_letter_topic' must not be empty" },
	{ "workers = 1;\nlog = { level = info; };\n", ":2: syntax error" },
	{ "workers = 1;\nworkers = 2;\n", ":2: duplicate setting name" },
	{ "workers = 4294967297;\n", "out of range (-2147483648..2147483647; write 4294967297L for a 64-bit" },
	/* libconfig 1.5 loads these as if the tail were not there */
	{ "listeners = ( { } );\n\"abc\n", ":2: unterminated string (is the file truncated?)" },
	{ "listeners = ( { } );\n/* a\n comment", ":2: unterminated /* comment (is the file truncated?)" },

	/* listeners: protocol, path, tls */
	{ "listeners = ( { protocol = \"ws\"; } );\n", "'listeners[0].protocol' must be one of mqtt, websocket" },
	{ "listeners = ( {\n path = \"/mqtt\"; } );\n",
	  ":2: 'listeners[0].path' is only for protocol = \"websocket\"" },
	{ "listeners = ( { protocol = \"websocket\";\n path = \"mqtt\"; } );\n",
	  ":2: 'listeners[0].path' must be an HTTP path such as \"/mqtt\"" },
	{ "listeners = ( { protocol = \"websocket\"; path = \"/a b\"; } );\n", "'listeners[0].path' must be an HTTP path" },
	{ "listeners = ( { protocol = \"websocket\"; path = \"/a?b\"; } );\n", "'listeners[0].path' must be an HTTP path" },
	{ "listeners = ( { protocol = \"websocket\"; path = \"\"; } );\n", "'listeners[0].path' must not be empty" },
	{ "listeners = ( { tls = 1; } );\n", ":1: 'listeners[0].tls' must be a group" },
	{ "listeners = ( { port = 1; },\n { tls = {\n cert = \"c\"; }; } );\n",
	  ":2: missing required setting 'listeners[1].tls.key'" },
	{ "listeners = ( { tls = { key = \"k\"; }; } );\n", "missing required setting 'listeners[0].tls.cert'" },
	{ "listeners = ( { tls = { cert = \"c\"; key = \"k\";\n crt = \"x\"; }; } );\n",
	  ":2: unknown setting 'listeners[0].tls.crt'" },
	{ "listeners = ( { tls = { cert = \"\"; key = \"k\"; }; } );\n", "'listeners[0].tls.cert' must not be empty" },
	{ "listeners = ( { tls = { cert = 5; key = \"k\"; }; } );\n", "'listeners[0].tls.cert' must be a string" },
	{ "listeners = ( { tls = { cert = \"c\"; key = \"k\";\n require_client_cert = true; }; } );\n",
	  ":2: 'listeners[0].tls.require_client_cert' needs 'listeners[0].tls.ca'" },
	{ "listeners = ( { tls = { cert = \"c\"; key = \"k\";\n identity = \"cn\"; }; } );\n",
	  ":2: 'listeners[0].tls.identity' = \"cn\" needs client certificates: set 'listeners[0].tls.ca'" },
	{ "listeners = ( { tls = { cert = \"c\"; key = \"k\"; ca = \"a\"; identity = \"dn\"; }; } );\n",
	  "'listeners[0].tls.identity' must be one of none, cn, san (got \"dn\")" },
	{ "listeners = ( { tls = { cert = \"c\"; key = \"k\"; ca = \"a\"; require_client_cert = 1; }; } );\n",
	  "'listeners[0].tls.require_client_cert' must be a boolean" },

	/* auth */
	{ "auth = {\n passwd_file = \"p\"; };\n", ":2: unknown setting 'auth.passwd_file'" },
	{ "auth = ( );\n", ":1: 'auth' must be a group" },
	{ "auth = { allow_anonymous = \"no\"; };\n", "'auth.allow_anonymous' must be a boolean" },
	{ "auth = { password_file = \"\"; };\n", "'auth.password_file' must not be empty" },
	{ "auth = { acl_file = true; };\n", "'auth.acl_file' must be a string" },
	{ "auth = { fail_delay_ms = 60001; };\n", "'auth.fail_delay_ms' must be in 0..60000 (got 60001)" },
	{ "auth = { verify_threads = 0; };\n", "'auth.verify_threads' must be in 1..64 (got 0)" },

	/* metrics */
	{ "metrics = {\n protect_metrics = true; };\n", ":2: 'metrics.protect_metrics' needs 'metrics.token_file'" },
	{ "metrics = { token_file = \"\"; };\n", "'metrics.token_file' must not be empty" },

	/* limits: the hardening ones */
	{ "limits = { max_connect_size = 15; };\n", "'limits.max_connect_size' must be in 16..268435455" },
	{ "limits = { max_topic_length = 0; };\n", "'limits.max_topic_length' must be in 1..65535 (got 0)" },
	{ "limits = { max_topic_length = 65536; };\n", "'limits.max_topic_length' must be in 1..65535 (got 65536)" },
	{ "limits = { max_topic_levels = 0; };\n", "'limits.max_topic_levels' must be in 1..65535" },
	{ "limits = { max_client_id_length = 22; };\n", "'limits.max_client_id_length' must be in 23..65535" },
	{ "limits = { max_subscriptions = 0; };\n", "'limits.max_subscriptions' must be in 1..1000000" },
	{ "limits = { max_qos2_pending = 65536; };\n", "'limits.max_qos2_pending' must be in 1..65535" },
	{ "limits = { packet_timeout = 0; };\n", "'limits.packet_timeout' must be in 1..3600" },
	{ "limits = { max_partial_bytes = 4095; };\n", "'limits.max_partial_bytes' must be in 4096..2147483647" },
	{ "limits = { max_retained_messages = -1; };\n", "'limits.max_retained_messages' must be in 0..100000000" },
	{ "limits = { max_retained_bytes = -1; };\n", "'limits.max_retained_bytes' must be in 0..2147483647" },
	{ "limits = { max_queued_bytes = 2147483648L; };\n", "'limits.max_queued_bytes' must be in 0..2147483647" },
	{ "limits = { max_queued_total_messages = -1; };\n", "'limits.max_queued_total_messages' must be in 0..2147483647" },
	{ "limits = { max_queued_total_bytes = 2147483648L; };\n", "'limits.max_queued_total_bytes' must be in 0..2147483647" },
	{ "limits = { session_expiry = -1; };\n", "'limits.session_expiry' must be in 0..2147483647" },
	{ "limits = { max_connections_per_address = -1; };\n", "'limits.max_connections_per_address' must be in 0..10000000" },
	{ "limits = { max_connect_rate = 1000001; };\n", "'limits.max_connect_rate' must be in 0..1000000" },
	{ "limits = { max_keepalive = 65536; };\n", "'limits.max_keepalive' must be in 0..65535" },
	{ "limits = { max_session_expiry = -1; };\n", "'limits.max_session_expiry' must be in 0..4294967295 (got -1)" },
	{ "limits = { max_session_expiry = 0xFFFFFFFF; };\n",
	  "(got -1); a hex value above 0x7FFFFFFF needs an L suffix" },
	{ "limits = { max_session_expiry = 4294967296L; };\n", "'limits.max_session_expiry' must be in 0..4294967295" },
	{ "limits = { topic_alias_maximum = 65536; };\n", "'limits.topic_alias_maximum' must be in 0..65535" },
	{ "limits = { max_session_expiry = \"7d\"; };\n", "'limits.max_session_expiry' must be an integer" },
	{ "listeners = ( { } );\nlimits = { max_packet_size = 8192;\n max_partial_bytes = 4096; };\n",
	  ":3: 'limits.max_partial_bytes' (4096) must be at least 'limits.max_packet_size' (8192)" },
	{ "listeners = ( { } );\nlimits = {\n max_partial_bytes = 1048575; };\n",
	  ":3: 'limits.max_partial_bytes' (1048575) must be at least 'limits.max_packet_size' (1048576)" },

	/* Kafka property names and "@file:" */
	{ "kafka = { properties = (\n (\"sasl.password\", \"@file:\") ); };\n",
	  ":2: Kafka property 'sasl.password': \"@file:\" needs a file name" },
};

static void test_bad(void **state)
{
	char err[256], want[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_cfgs) / sizeof(bad_cfgs[0]); i++) {
		struct cfg *c = (struct cfg *)&err;  /* must stay untouched */
		memset(err, 0, sizeof(err));
		int rc = cfg_load(write_cfg(bad_cfgs[i].text), &c, err, sizeof(err));
		if (rc != -1 || !strstr(err, bad_cfgs[i].expect) ||
		    strncmp(err, tmpfile_path, strlen(tmpfile_path)) != 0)
			fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err, bad_cfgs[i].expect);
		assert_ptr_equal(c, (struct cfg *)&err);
	}
	/* One in full: the file name, the line, the message and nothing else. */
	struct cfg *c = NULL;
	assert_int_equal(cfg_load(write_cfg("\nworkers = true;\n"), &c, err, sizeof(err)), -1);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:2: 'workers' must be an integer", tmpfile_path);
	assert_string_equal(err, want);
}

static void test_missing_file_and_short_buffer(void **state)
{
	char err[256], tiny[12];
	struct cfg *c = NULL;

	(void)state;
	assert_int_equal(cfg_load("/nonexistent/kafkagate.cfg", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/kafkagate.cfg: cannot read: No such file or directory");
	assert_null(c);
	memset(tiny, 'x', sizeof(tiny));
	assert_int_equal(cfg_load(write_cfg("wokers = 1;\n"), &c, tiny, sizeof(tiny) - 1), -1);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 2);
	assert_int_equal(tiny[sizeof(tiny) - 1], 'x');
}

/* Every file in config/test-bad/ fails with the line and text its first
 * line announces ("# expect: 7: unknown setting"). */
static void test_bad_files(void **state)
{
	char dirpath[600], path[900], first[256], err[1400], want[1200];
	struct dirent *de;
	int files = 0;

	(void)state;
	snprintf(dirpath, sizeof(dirpath), "%sconfig/test-bad", root);
	DIR *d = opendir(dirpath);
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 4 || strcmp(de->d_name + n - 4, ".cfg") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		assert_non_null(fgets(first, sizeof(first), f));
		fclose(f);
		first[strcspn(first, "\n")] = '\0';
		assert_int_equal(strncmp(first, "# expect: ", 10), 0);
		snprintf(want, sizeof(want), "%s:%s", path, first + 10);
		struct cfg *c = NULL;
		if (cfg_load(path, &c, err, sizeof(err)) != -1 || strncmp(err, want, strlen(want)) != 0)
			fail_msg("%s: got \"%s\", want \"%s...\"", de->d_name, err, want);
		files++;
	}
	closedir(d);
	assert_true(files >= 10);
}

static void test_reload_diff(void **state)
{
	struct cfg *a = load_ok(full_cfg), *b;
	char msg[256], tiny[8];

	(void)state;
	b = load_ok(full_cfg);
	assert_int_equal(cfg_reload_diff(a, b, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");
	cfg_free(b);

	/* Reloadable: limits, log, routes, flush_timeout. */
	b = load_ok("listeners = ( { address = \"0.0.0.0\"; port = 1884; }, { address = \"::1\"; port = 0; } );\n"
		    "workers = 16; metrics = { address = \"::\"; port = 0; };\n"
		    "kafka = { brokers = \"127.0.0.1:9092\"; dead_letter_topic = \"dlq\"; properties = ( (\"linger.ms\", \"5\"),\n"
		    "  (\"compression.type\", \"lz4\"), (\"enable.idempotence\", true),\n"
		    "  (\"message.max.bytes\", 5000000000L) ); };\n"
		    "downlink = (\n"
		    "  { topic = \"device-commands\"; mqtt_topic = \"devices/${key}/commands\"; user_properties = \"*\"; },\n"
		    "  { topics = [\"a\", \"b\"]; group = \"g\"; mqtt_topic = \"x/${key}\"; user_properties = [\"cmd-id\", \"trace-id\"];\n"
		    "    qos = 2; retain = true; format = \"json\"; mode = \"broadcast\"; ack_timeout = 90; } );\n");
	assert_int_equal(cfg_reload_diff(a, b, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");

	/* Each restart-only change, alone. */
	static const struct { const char *from, *to, *name; } changes[] = {
		{ "port = 1884", "port = 1885", "listeners" },
		{ "{ address = \"::1\"; port = 0; }", "{ address = \"::1\"; port = 0; }, { port = 7; }", "listeners" },
		{ "workers = 16", "workers = 15", "workers" },
		{ "metrics = { address = \"::\"; port = 0; };", "", "metrics" },
		{ "brokers = \"127.0.0.1:9092\"", "brokers = \"embedded\"", "kafka.brokers" },
		/* The producer took it at start (docs/uplink.md): restart-only. */
		{ "dead_letter_topic = \"dlq\"", "dead_letter_topic = \"dlq2\"", "kafka.dead_letter_topic" },
		{ "(\"linger.ms\", 5)", "(\"linger.ms\", 6)", "kafka.properties" },
		{ "[\"a\", \"b\"]", "[\"a\", \"c\"]", "downlink" },
		{ "qos = 2", "qos = 1", "downlink" },
		{ "user_properties = \"*\"", "user_properties = [\"x\"]", "downlink" },
		{ "\"trace-id\"]", "\"trace\"]", "downlink" },
		{ "\"trace-id\"]", "\"trace-id\", \"x\"]", "downlink" },
	};
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		char text[2048];
		const char *at = strstr(full_cfg, changes[i].from);
		assert_non_null(at);
		snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - full_cfg), full_cfg, changes[i].to,
			 at + strlen(changes[i].from));
		struct cfg *n = load_ok(text);
		if (cfg_reload_diff(a, n, msg, sizeof(msg)) != 1 || strcmp(msg, changes[i].name) != 0)
			fail_msg("change %zu: got \"%s\", want \"%s\"", i, msg, changes[i].name);
		cfg_free(n);
	}

	/* All at once, also into a buffer too small for the list. */
	struct cfg *d = load_ok("listeners = ( { } );\nworkers = 3;\nkafka = { flush_timeout = 1; };\n");
	assert_int_equal(cfg_reload_diff(a, d, msg, sizeof(msg)), 7);
	assert_string_equal(msg, "listeners, workers, metrics, downlink, kafka.brokers, kafka.properties, "
				 "kafka.dead_letter_topic");
	assert_int_equal(cfg_reload_diff(a, d, tiny, sizeof(tiny)), 7);
	assert_string_equal(tiny, "listene");
	cfg_free(d);
	cfg_free(b);
	cfg_free(a);
	cfg_free(NULL);
}

/* An empty or truncated file used to start the embedded mock cluster on
 * 127.0.0.1:1883 and pass --check. */
static void test_no_listeners(void **state)
{
	static const char *const texts[] = {
		"", "# nothing but a comment\n", "workers = 2;\nlog = { level = \"debug\"; };\n",
		"kafka = { brokers = \"k:9092\"; };\nroutes = ( { filter = \"#\"; topic = \"t\"; } );\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		assert_string_equal(load_err(texts[i]), ": no listeners: add listeners = ( { port = 1883; } );");
}

/* "embedded" keeps nothing: it is a choice, never a fallback for data. */
static void test_brokers_required(void **state)
{
	struct cfg *c;

	(void)state;
	assert_string_equal(load_err("listeners = ( { } );\n\nroutes = ( { filter = \"#\"; topic = \"t\"; } );\n"),
			    ":3: routes need kafka.brokers: set it to the Kafka bootstrap servers "
			    "(\"host:port,...\"), or to \"embedded\" for the in-process mock cluster, "
			    "which keeps nothing");
	assert_non_null(strstr(load_err("listeners = ( { } );\nkafka = { flush_timeout = 1; };\n"
					"routes = (\n { filter = \"#\"; topic = \"t\"; } );\n"),
			       ":3: routes need kafka.brokers"));
	assert_non_null(strstr(load_err("listeners = ( { } );\ndownlink = (\n"
					" { topic = \"t\"; mqtt_topic = \"m\"; } );\n"),
			       ":2: downlink mappings need kafka.brokers"));

	c = load_ok("listeners = ( { } );\nkafka = {\n brokers = \"embedded\"; };\n"
		    "routes = ( { filter = \"#\"; topic = \"t\"; } );\n");
	assert_string_equal(c->kafka.brokers, "embedded");
	assert_int_equal(c->kafka.brokers_line, 3);
	cfg_free(c);
	/* Nothing goes to Kafka: no brokers needed. */
	c = load_ok("listeners = ( { } );\nroutes = ();\nkafka = { flush_timeout = 1; };\n");
	assert_string_equal(c->kafka.brokers, "embedded");
	assert_int_equal(c->kafka.brokers_line, 0);
	cfg_free(c);
}

/* A filter over 65535 bytes was reported as "out of memory" by the routing
 * table; other strings are capped too. */
static void test_long_strings(void **state)
{
	char *big = repeat('a', 65536), *text = malloc(70000 + 65536);
	struct cfg *c;

	(void)state;
	assert_non_null(text);
	sprintf(text, "listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		"routes = (\n { filter = \"%s\"; topic = \"t\"; } );\n", big);
	assert_string_equal(load_err(text), ":4: 'routes[0].filter' is too long (65536 bytes; at most 65535)");
	sprintf(text, "listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		"routes = (\n { filter = \"%s\"; topic = \"t\"; } );\n", big + 1);
	c = load_ok(text);
	assert_int_equal(strlen(c->routes[0].filter), 65535);
	cfg_free(c);
	sprintf(text, "listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		"downlink = (\n { topic = \"%s\"; mqtt_topic = \"m\"; } );\n", big);
	assert_string_equal(load_err(text), ":4: 'downlink[0].topic' is too long (65536 bytes; at most 65535)");
	sprintf(text, "listeners = ( { protocol = \"websocket\";\n path = \"/%s\"; } );\n", big + 65536 - 1024);
	assert_string_equal(load_err(text), ":2: 'listeners[0].path' is too long (1025 bytes; at most 1024)");
	free(text);
	free(big);
}

/* A 1 MB property value passed --check and made librdkafka allocate ~100 GB
 * at start-up (the client.id goes into every request). */
static void test_kafka_property_caps(void **state)
{
	char *v = repeat('x', 1 << 20), *text = malloc((1 << 20) + 200), err[256];
	struct cfg *c;
	const char *e;

	(void)state;
	assert_non_null(text);
	sprintf(text, "listeners = ( { } );\nkafka = { properties = (\n (\"client.id\", \"%s\") ); };\n", v);
	e = load_err(text);
	assert_string_equal(e, ":3: Kafka property 'client.id': the value is too long (1048576 bytes; at most 4096)");
	sprintf(text, "listeners = ( { } );\nkafka = { properties = ( (\"sasl.password\", \"%s\") ); };\n",
		v + (1 << 20) - 4097);
	e = load_err(text);
	assert_non_null(strstr(e, "Kafka property 'sasl.password': the value is too long (4097 bytes; at most 4096)"));
	assert_null(strstr(e, "xxxx")); /* values are never shown */
	sprintf(text, "listeners = ( { } );\nkafka = { properties = ( (\"client.id\", \"%s\") ); };\n",
		v + (1 << 20) - 4096);
	c = load_ok(text);
	assert_int_equal(strlen(c->kafka.props[0].value), 4096);
	if (kafka_conf_check(c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	cfg_free(c);
	/* PEM documents may be longer */
	sprintf(text, "listeners = ( { } );\nkafka = { properties = ( (\"ssl.ca.pem\", \"%s\") ); };\n",
		v + (1 << 20) - 65536);
	c = load_ok(text);
	cfg_free(c);
	sprintf(text, "listeners = ( { } );\nkafka = { properties = ( (\"ssl.ca.pem\", \"%s\") ); };\n",
		v + (1 << 20) - 65537);
	assert_non_null(strstr(load_err(text), "the value is too long (65537 bytes; at most 65536)"));
	sprintf(text, "listeners = ( { } );\nkafka = { properties = (\n (\"%s\", 1) ); };\n", v + (1 << 20) - 257);
	assert_string_equal(load_err(text),
			    ":3: 'kafka.properties[0]': the property name is too long (257 bytes; at most 256)");
	assert_int_equal(cfg_kafka_value_max("ssl.key.pem"), CFG_KAFKA_PEM_MAX);
	assert_int_equal(cfg_kafka_value_max("pem"), CFG_KAFKA_VALUE_MAX);
	assert_int_equal(cfg_kafka_value_max("sasl.password"), CFG_KAFKA_VALUE_MAX);
	free(text);
	free(v);
}

/* The example of the security issue, with relative and absolute paths. */
static void test_listeners_tls_ws(void **state)
{
	struct cfg *c = load_ok(
		"listeners = (\n"                                                        /* 1 */
		"  { address = \"0.0.0.0\"; port = 8883;\n"                              /* 2 */
		"    tls = {\n"                                                          /* 3 */
		"      cert = \"server.crt\";\n"                                         /* 4 */
		"      key = \"keys/server.key\";\n"                                     /* 5 */
		"      ca = \"/etc/kafkagate/ca.crt\";\n"                                /* 6 */
		"      require_client_cert = false; identity = \"cn\"; }; },\n"          /* 7 */
		"  { port = 8083; protocol = \"websocket\"; path = \"/mqtt\"; },\n"      /* 8 */
		"  { port = 8084; protocol = \"websocket\"; },\n"                        /* 9 */
		"  { port = 8443; protocol = \"websocket\"; path = \"/ws/v1\";\n"        /* 10 */
		"    tls = { cert = \"c.pem\"; key = \"k.pem\"; ca = \"ca.pem\"; require_client_cert = true;\n"
		"            identity = \"san\"; }; },\n"
		"  { port = 1883; protocol = \"mqtt\"; }\n"                              /* 13 */
		");\n");
	const struct cfg_listener *l = c->listeners;

	(void)state;
	assert_int_equal(c->nlisteners, 5);
	assert_string_equal(l[0].address, "0.0.0.0");
	assert_int_equal(l[0].port, 8883);
	assert_int_equal(l[0].line, 2);
	assert_int_equal(l[0].protocol, CFG_PROTO_MQTT);
	assert_null(l[0].path);
	assert_true(l[0].has_tls);
	assert_int_equal(l[0].tls.line, 3);
	assert_string_equal(l[0].tls.cert.path, in_tmp("server.crt"));
	assert_int_equal(l[0].tls.cert.line, 4);
	assert_string_equal(l[0].tls.key.path, in_tmp("keys/server.key"));
	assert_int_equal(l[0].tls.key.line, 5);
	assert_string_equal(l[0].tls.ca.path, "/etc/kafkagate/ca.crt");
	assert_int_equal(l[0].tls.ca.line, 6);
	assert_false(l[0].tls.require_client_cert);
	assert_int_equal(l[0].tls.identity, CFG_IDENTITY_CN);

	assert_string_equal(l[1].address, "127.0.0.1");
	assert_int_equal(l[1].protocol, CFG_PROTO_WEBSOCKET);
	assert_string_equal(l[1].path, "/mqtt");
	assert_false(l[1].has_tls);
	assert_null(l[1].tls.cert.path);
	assert_int_equal(l[2].protocol, CFG_PROTO_WEBSOCKET);
	assert_string_equal(l[2].path, "/mqtt");
	assert_string_equal(l[3].path, "/ws/v1");
	assert_true(l[3].has_tls);
	assert_true(l[3].tls.require_client_cert);
	assert_int_equal(l[3].tls.identity, CFG_IDENTITY_SAN);
	assert_string_equal(l[3].tls.ca.path, in_tmp("ca.pem"));
	assert_int_equal(l[4].protocol, CFG_PROTO_MQTT);
	assert_null(l[4].path);
	cfg_free(c);
}

/* Relative names follow the config file, wherever it is and however it was
 * named; cfg_parse_string() uses its name the same way. */
static void test_relative_paths(void **state)
{
	static const char text[] = "listeners = ( { } );\nauth = { password_file = \"passwd\";\n"
				   " acl_file = \"../acl\"; };\n";
	char cwd[512], want[700], err[256];
	struct cfg *c = NULL;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(cfg_parse_string(text, "conf/kafkagate.cfg", &c, err, sizeof(err)), 0);
	assert_string_equal(c->path, "conf/kafkagate.cfg");
	snprintf(want, sizeof(want), "%s/conf/passwd", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(c->auth.password_file.path, want);
	assert_int_equal(c->auth.password_file.line, 2);
	snprintf(want, sizeof(want), "%s/conf/../acl", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(c->auth.acl_file.path, want);
	assert_int_equal(c->auth.acl_file.line, 3);
	cfg_free(c);
	assert_int_equal(cfg_parse_string(text, "kafkagate.cfg", &c, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/passwd", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(c->auth.password_file.path, want);
	cfg_free(c);
	assert_int_equal(cfg_parse_string(text, "/kafkagate.cfg", &c, err, sizeof(err)), 0);
	assert_string_equal(c->auth.password_file.path, "/passwd");
	cfg_free(c);
	assert_int_equal(cfg_parse_string("workers = x;", "mem.cfg", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "mem.cfg:1: syntax error");
	assert_int_equal(cfg_parse_string("", "mem.cfg", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "mem.cfg: no listeners: add listeners = ( { port = 1883; } );");
}

static void test_auth(void **state)
{
	struct cfg *c = load_ok("listeners = ( { } );\nauth = {\n password_file = \"passwd\";\n"
				" acl_file = \"/etc/kafkagate/acl\"; fail_delay_ms = 0; verify_threads = 64; };\n");

	(void)state;
	assert_int_equal(c->auth.line, 2);
	assert_false(c->auth.allow_anonymous);  /* a password file makes it default to false */
	assert_int_equal(c->auth.allow_anonymous_line, 0);
	assert_string_equal(c->auth.password_file.path, in_tmp("passwd"));
	assert_int_equal(c->auth.password_file.line, 3);
	assert_string_equal(c->auth.acl_file.path, "/etc/kafkagate/acl");
	assert_int_equal(c->auth.fail_delay_ms, 0);
	assert_int_equal(c->auth.verify_threads, 64);
	cfg_free(c);
	c = load_ok("listeners = ( { } );\nauth = { password_file = \"p\";\n allow_anonymous = true; };\n");
	assert_true(c->auth.allow_anonymous);
	assert_int_equal(c->auth.allow_anonymous_line, 3);
	cfg_free(c);
	c = load_ok("listeners = ( { } );\nauth = { acl_file = \"a\"; };\n");
	assert_true(c->auth.allow_anonymous);
	assert_int_equal(c->auth.allow_anonymous_line, 0);
	cfg_free(c);
	c = load_ok("listeners = ( { } );\nauth = { allow_anonymous = false; };\n");
	assert_false(c->auth.allow_anonymous);
	assert_int_equal(c->auth.allow_anonymous_line, 2);
	cfg_free(c);
}

static void test_metrics_token(void **state)
{
	struct cfg *c = load_ok("listeners = ( { } );\nmetrics = { address = \"127.0.0.1\"; port = 9090;\n"
				" token_file = \"metrics.token\"; protect_metrics = true; };\n");

	(void)state;
	assert_true(c->has_metrics);
	assert_string_equal(c->metrics.address, "127.0.0.1");
	assert_int_equal(c->metrics.port, 9090);
	assert_int_equal(c->metrics.line, 2);
	assert_string_equal(c->metrics.token_file.path, in_tmp("metrics.token"));
	assert_int_equal(c->metrics.token_file.line, 3);
	assert_true(c->metrics.protect_metrics);
	cfg_free(c);
	c = load_ok("listeners = ( { } );\nmetrics = { };\n");
	assert_string_equal(c->metrics.address, "127.0.0.1");
	assert_int_equal(c->metrics.port, 9100);
	assert_null(c->metrics.token_file.path);
	assert_false(c->metrics.protect_metrics);
	cfg_free(c);
}

/* What a reload applies (TLS files, auth, limits, the token) and what needs
 * a restart (listener sockets and protocols, verify_threads). */
static void test_reload_diff_security(void **state)
{
	static const char base[] =
		"listeners = ( { port = 8883; tls = { cert = \"a.crt\"; key = \"a.key\"; }; },\n"
		"  { port = 8083; protocol = \"websocket\"; } );\n"
		"auth = { password_file = \"p\"; acl_file = \"acl\"; fail_delay_ms = 10; verify_threads = 2; };\n"
		"metrics = { port = 9090; token_file = \"t\"; };\n"
		"limits = { max_topic_length = 100; max_session_expiry = 60; };\n";
	static const struct { const char *from, *to, *name; } changes[] = {
		{ "cert = \"a.crt\"", "cert = \"b.crt\"", "" },
		{ "key = \"a.key\";", "key = \"b.key\"; ca = \"ca\"; require_client_cert = true;", "" },
		{ "password_file = \"p\"", "password_file = \"q\"", "" },
		{ "acl_file = \"acl\"; ", "", "" },
		{ "fail_delay_ms = 10", "fail_delay_ms = 11", "" },
		{ "verify_threads = 2", "verify_threads = 3", "auth.verify_threads" },
		{ "token_file = \"t\";", "token_file = \"u\"; protect_metrics = true;", "" },
		{ "port = 9090", "port = 9091", "metrics" },
		{ "max_topic_length = 100", "max_topic_length = 101", "" },
		{ "max_session_expiry = 60", "max_session_expiry = 61", "" },
		{ "port = 8883; tls = { cert = \"a.crt\"; key = \"a.key\"; };", "port = 8883;", "listeners" },
		{ "port = 8083; protocol = \"websocket\";", "port = 8083; protocol = \"mqtt\";", "listeners" },
		{ "protocol = \"websocket\";", "protocol = \"websocket\"; path = \"/x\";", "listeners" },
	};
	struct cfg *a = load_ok(base);
	char msg[256];

	(void)state;
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		char text[2048];
		const char *at = strstr(base, changes[i].from);
		assert_non_null(at);
		snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - base), base, changes[i].to,
			 at + strlen(changes[i].from));
		struct cfg *n = load_ok(text);
		int want = *changes[i].name ? 1 : 0;
		if (cfg_reload_diff(a, n, msg, sizeof(msg)) != want || strcmp(msg, changes[i].name) != 0)
			fail_msg("change %zu: got \"%s\", want \"%s\"", i, msg, changes[i].name);
		cfg_free(n);
	}
	cfg_free(a);
}

/* kafka_conf.c: "@file:" values and which names are secret. */
static void test_kafka_secret_file(void **state)
{
	static const char *const secret[] = {
		"sasl.password", "ssl.key.password", "ssl.keystore.password", "SASL.PASSWORD",
		"sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key",
		"sasl.oauthbearer.assertion.private.key.passphrase",
	};
	static const char *const plain[] = {
		"sasl.username", "ssl.key.location", "ssl.ca.location", "client.id", "linger.ms",
		"security.protocol", "sasl.mechanisms", "ssl.certificate.pem",
	};
	char text[600], err[600], want[600], got[64];
	size_t len = sizeof(got);
	struct cfg *c;
	FILE *f;

	(void)state;
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		if (!kafka_conf_is_secret(secret[i]))
			fail_msg("%s should be secret", secret[i]);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (kafka_conf_is_secret(plain[i]))
			fail_msg("%s should not be secret", plain[i]);

	assert_non_null(f = fopen(in_tmp("secret"), "w"));
	fputs("kafkagate-42\r\n", f);
	fclose(f);
	c = load_ok("listeners = ( { } );\nkafka = { properties = ( (\"sasl.mechanisms\", \"PLAIN\"),\n"
		    " (\"client.id\", \"@file:secret\"),\n (\"sasl.password\", \"@file:nope.secret\") ); };\n");
	snprintf(want, sizeof(want), "@file:%s", in_tmp("secret"));
	assert_string_equal(c->kafka.props[1].value, want);
	/* The missing file is named, with the line; --check sees it too. */
	assert_null(kafka_conf_new(c, KAFKA_PRODUCER, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:4: kafka property 'sasl.password': cannot read %s: No such file or directory",
		 tmpfile_path, in_tmp("nope.secret"));
	assert_string_equal(err, want);
	assert_int_equal(kafka_conf_check(c, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	cfg_free(c);

	c = load_ok("listeners = ( { } );\nkafka = { properties = ( (\"client.id\", \"@file:secret\") ); };\n");
	rd_kafka_conf_t *conf = kafka_conf_new(c, KAFKA_CONSUMER, NULL, err, sizeof(err));
	if (!conf)
		fail_msg("%s", err);
	assert_int_equal(rd_kafka_conf_get(conf, "client.id", got, &len), RD_KAFKA_CONF_OK);
	assert_string_equal(got, "kafkagate-42");  /* one trailing CRLF stripped */
	rd_kafka_conf_destroy(conf);
	cfg_free(c);

	char *big = repeat('s', 4097);
	assert_non_null(f = fopen(in_tmp("big.secret"), "w"));
	fputs(big, f);
	fclose(f);
	free(big);
	assert_non_null(f = fopen(in_tmp("empty.secret"), "w"));
	fputs("\n", f);
	fclose(f);
	snprintf(text, sizeof(text), "listeners = ( { } );\nkafka = { properties = (\n"
		 " (\"sasl.password\", \"@file:%s\") ); };\n", in_tmp("big.secret"));
	c = load_ok(text);
	assert_int_equal(kafka_conf_check(c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:3: kafka property 'sasl.password': %s is larger than 4096 bytes",
		 tmpfile_path, in_tmp("big.secret"));
	assert_string_equal(err, want);
	cfg_free(c);
	c = load_ok("listeners = ( { } );\nkafka = { properties = (\n (\"sasl.password\", \"@file:empty.secret\") ); };\n");
	assert_int_equal(kafka_conf_check(c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:3: kafka property 'sasl.password': %s is empty", tmpfile_path,
		 in_tmp("empty.secret"));
	assert_string_equal(err, want);
	cfg_free(c);
}

/* upstreams: values, defaults that depend on other keys, downlink targets,
 * the errors with their lines, and the reload diff. */
static void test_upstreams(void **state)
{
	static const char *const ok =
		"listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		"upstreams = (\n"
		" { name = \"plant-a\"; address = \"mqtt.plant-a.example\"; port = 8884;\n"
		"   username = \"bridge\"; password_file = \"plant-a.secret\";\n"
		"   tls = { ca = \"plant-ca.crt\"; cert = \"bridge.crt\"; key = \"bridge.key\";\n"
		"           server_name = \"broker.plant-a\"; };\n"
		"   clean_session = true; keepalive = 10; protocol = 4; prefix = \"plant-a/\";\n"
		"   subscriptions = ( { filter = \"plant/+/sensors/#\"; qos = 1; },\n"
		"                     { filter = \"alarms/#\"; qos = 2; } );\n"
		"   required = true; reconnect_min_ms = 100; reconnect_max_ms = 1000; },\n"
		" { name = \"b\"; address = \"127.0.0.1\"; subscriptions = ( { filter = \"#\"; } ); },\n"
		" { name = \"c_1\"; address = \"::1\"; tls = { }; }\n"
		");\n"
		"downlink = ( { topic = \"cmd\"; mqtt_topic = \"x/${key}\"; target = \"upstream:b\"; },\n"
		"  { topic = \"cmd2\"; mqtt_topic = \"y\"; target = \"local\"; } );\n";
	struct cfg *c = load_ok(ok), *d;
	char msg[256];

	(void)state;
	assert_int_equal(c->nupstreams, 3);
	const struct cfg_upstream *u = &c->upstreams[0];
	assert_string_equal(u->name, "plant-a");
	assert_string_equal(u->address, "mqtt.plant-a.example");
	assert_int_equal(u->port, 8884);
	assert_string_equal(u->client_id, "kafkagate-plant-a");
	assert_string_equal(u->username, "bridge");
	assert_string_equal(u->password_file.path, in_tmp("plant-a.secret"));
	assert_true(u->has_tls);
	assert_string_equal(u->tls.ca.path, in_tmp("plant-ca.crt"));
	assert_string_equal(u->tls.cert.path, in_tmp("bridge.crt"));
	assert_string_equal(u->tls.server_name, "broker.plant-a");
	assert_true(u->clean_session);
	assert_int_equal(u->keepalive, 10);
	assert_string_equal(u->prefix, "plant-a/");
	assert_int_equal(u->nsubs, 2);
	assert_string_equal(u->subs[1].filter, "alarms/#");
	assert_int_equal(u->subs[1].qos, 2);
	assert_int_equal(u->subs[1].line, 10);
	assert_true(u->required);
	assert_int_equal(u->reconnect_max_ms, 1000);
	assert_int_equal(u->line, 4);
	u = &c->upstreams[1];
	assert_int_equal(u->port, 1883);
	assert_false(u->clean_session);
	assert_int_equal(u->keepalive, 30);
	assert_string_equal(u->prefix, "");
	assert_int_equal(u->subs[0].qos, 1);
	assert_false(u->has_tls);
	assert_false(u->required);
	assert_int_equal(u->reconnect_min_ms, 500);
	assert_int_equal(u->reconnect_max_ms, 30000);
	assert_int_equal(c->upstreams[2].port, 8883);
	assert_true(c->upstreams[2].has_tls);
	assert_null(c->upstreams[2].tls.ca.path);
	assert_int_equal(c->upstreams[2].nsubs, 0);
	assert_string_equal(c->downlinks[0].target, "b");
	assert_null(c->downlinks[1].target);

	/* Every upstream setting needs a restart. */
	d = load_ok(ok);
	assert_int_equal(cfg_reload_diff(c, d, msg, sizeof(msg)), 0);
	cfg_free(d);
	char *text = strdup(ok), *at = strstr(text, "qos = 2");
	at[6] = '1';
	d = load_ok(text);
	assert_int_equal(cfg_reload_diff(c, d, msg, sizeof(msg)), 1);
	assert_string_equal(msg, "upstreams");
	cfg_free(d);
	free(text);
	cfg_free(c);

	static const struct { const char *text, *expect; } bad[] = {
		{ "listeners = ( { } );\nupstreams = (\n { address = \"h\"; } );\n",
		  ":3: missing required setting 'upstreams[0].name'" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a b\";\n address = \"h\"; } );\n",
		  ":2: 'upstreams[0].name' may hold only letters, digits" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\"; },\n"
		  " { name = \"a\"; address = \"h\"; } );\n",
		  ":3: 'upstreams[1]' repeats the name \"a\" of upstreams[0] (line 2)" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n protocol = 5; } );\n",
		  ":3: 'upstreams[0].protocol' = 5 is not served" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n"
		  " password_file = \"p\"; } );\n",
		  ":3: 'upstreams[0].password_file' needs 'upstreams[0].username'" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n"
		  " tls = { cert = \"c\"; }; } );\n",
		  ":3: 'upstreams[0].tls' needs both 'cert' and 'key'" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n"
		  " subscriptions = ( { qos = 1; } ); } );\n",
		  ":3: missing required setting 'upstreams[0].subscriptions[0].filter'" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\"; subscriptions = (\n"
		  " { filter = \"x\"; }, { filter = \"x\"; } ); } );\n",
		  ":3: 'upstreams[0].subscriptions[1]' repeats the filter of line 3" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n"
		  " subscriptions = ( { filter = \"x\"; qos = 3; } ); } );\n",
		  ":3: 'upstreams[0].subscriptions[0].qos' must be in 0..2" },
		{ "listeners = ( { } );\nupstreams = ( { name = \"a\"; address = \"h\";\n"
		  " reconnect_min_ms = 900; reconnect_max_ms = 800; } );\n",
		  ":3: 'upstreams[0].reconnect_max_ms' (800) must be at least" },
		{ "listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		  "downlink = ( { topic = \"t\"; mqtt_topic = \"m\";\n target = \"upstream:nope\"; } );\n",
		  ":4: 'downlink[0].target' names no upstream (\"nope\"; the upstreams list has 0)" },
		{ "listeners = ( { } );\nkafka = { brokers = \"embedded\"; };\n"
		  "downlink = ( { topic = \"t\"; mqtt_topic = \"m\";\n target = \"plant-a\"; } );\n",
		  ":4: 'downlink[0].target' must be \"local\" or \"upstream:NAME\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *e = load_err(bad[i].text);
		if (!strstr(e, bad[i].expect))
			fail_msg("case %zu: \"%s\", want \"%s\"", i, e, bad[i].expect);
	}
}

static void test_util(void **state)
{
	char *s = util_strdup_n("topic/with/tail", 5);
	int64_t t0 = util_now_ms();

	(void)state;
	assert_string_equal(s, "topic");
	free(s);
	usleep(20 * 1000);
	assert_in_range(util_now_ms() - t0, 15, 5000);
	assert_true(util_wall_ms() > INT64_C(1577836800000));  /* after 2020-01-01 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_literals_not_flagged),
		cmocka_unit_test(test_dev_cfg),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_missing_file_and_short_buffer),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_reload_diff),
		cmocka_unit_test(test_no_listeners),
		cmocka_unit_test(test_brokers_required),
		cmocka_unit_test(test_long_strings),
		cmocka_unit_test(test_kafka_property_caps),
		cmocka_unit_test(test_listeners_tls_ws),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_metrics_token),
		cmocka_unit_test(test_reload_diff_security),
		cmocka_unit_test(test_kafka_secret_file),
		cmocka_unit_test(test_upstreams),
		cmocka_unit_test(test_util),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
