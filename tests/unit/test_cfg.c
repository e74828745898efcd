/* test_cfg.c - cfg_load(), cfg_reload_diff() and the util helpers. */
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

static int teardown(void **state)
{
	(void)state;
	unlink(tmpfile_path);
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

static void test_defaults(void **state)
{
	struct cfg *c = load_ok("# nothing but a comment\n");

	(void)state;
	assert_string_equal(c->path, tmpfile_path);
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 1883);
	assert_int_equal(c->listeners[0].line, 0);
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->limits.max_connections, 100000);
	assert_int_equal(c->limits.max_packet_size, 1048576);
	assert_int_equal(c->limits.max_inflight, 32);
	assert_int_equal(c->limits.max_queued_messages, 1000);
	assert_int_equal(c->limits.max_output_bytes, 1048576);
	assert_int_equal(c->limits.connect_timeout, 10);
	assert_int_equal(c->log_level, LVL_INFO);
	assert_false(c->log_syslog);
	assert_false(c->has_metrics);
	assert_null(c->metrics.address);
	assert_string_equal(c->kafka.brokers, "embedded");
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
	"  { filter = \"#\"; topic = \"all\"; format = \"json\"; }\n"           /* 22 */
	");\n"
	"downlink = (\n"
	"  { topic = \"device-commands\"; mqtt_topic = \"devices/${key}/commands\"; },\n" /* 25 */
	"  { topics = [\"a\", \"b\"]; group = \"g\"; mqtt_topic = \"x/${key}\";\n"      /* 26 */
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
	assert_int_equal(c->routes[0].line, 21);
	assert_null(c->routes[1].key);
	assert_int_equal(c->routes[1].format, CFG_FORMAT_JSON);
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
		"# workers = 99999999999 in a comment\n"
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

	/* Reloadable: limits, log, routes, flush_timeout, dead_letter_topic. */
	b = load_ok("listeners = ( { address = \"0.0.0.0\"; port = 1884; }, { address = \"::1\"; port = 0; } );\n"
		    "workers = 16; metrics = { address = \"::\"; port = 0; };\n"
		    "kafka = { brokers = \"127.0.0.1:9092\"; properties = ( (\"linger.ms\", \"5\"),\n"
		    "  (\"compression.type\", \"lz4\"), (\"enable.idempotence\", true),\n"
		    "  (\"message.max.bytes\", 5000000000L) ); };\n"
		    "downlink = (\n"
		    "  { topic = \"device-commands\"; mqtt_topic = \"devices/${key}/commands\"; },\n"
		    "  { topics = [\"a\", \"b\"]; group = \"g\"; mqtt_topic = \"x/${key}\";\n"
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
		{ "(\"linger.ms\", 5)", "(\"linger.ms\", 6)", "kafka.properties" },
		{ "[\"a\", \"b\"]", "[\"a\", \"c\"]", "downlink" },
		{ "qos = 2", "qos = 1", "downlink" },
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
	struct cfg *d = load_ok("workers = 3;\nkafka = { flush_timeout = 1; };\n");
	assert_int_equal(cfg_reload_diff(a, d, msg, sizeof(msg)), 6);
	assert_string_equal(msg, "listeners, workers, metrics, downlink, kafka.brokers, kafka.properties");
	assert_int_equal(cfg_reload_diff(a, d, tiny, sizeof(tiny)), 6);
	assert_string_equal(tiny, "listene");
	cfg_free(d);
	cfg_free(b);
	cfg_free(a);
	cfg_free(NULL);
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
		cmocka_unit_test(test_util),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
