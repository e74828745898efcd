/*
 * it_partitioner.c - records that kafkagate produces land in the partition
 * that the Java client would choose for the same key, so that Java (and
 * Kafka Streams) consumers of the state topics and a Java producer writing
 * the same keys agree with the gateway.
 *
 * 1000 keys (client-id-like strings, random printable and random binary
 * bytes of every length mod 4, UTF-8) are produced through a producer made
 * by kafka_conf_new() - the gateway's own defaults, partitioner
 * murmur2_random - to librdkafka's mock cluster, to topics of 12 and of 7
 * partitions; the delivery reports say where each went. The Java side runs
 * org.apache.kafka.clients.producer.internals.BuiltInPartitioner
 * .partitionForKey (what KafkaProducer calls for a keyed record:
 * toPositive(murmur2(key)) % partitions) from the kafka-clients jar that
 * scripts/kafka-local caches, through `java File.java`. Every key must agree.
 *
 * The empty key (a zero-length, non-NULL key) is checked too: Java hashes
 * it (partition 9 of 12, 2 of 7); see test_empty_key.
 *
 * Skipped, with a message, without java or without the jar
 * ($KAFKA_CACHE/libs, default .cache/kafka/libs; `scripts/kafka-local
 * fetch` makes it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/cfg.h"
#include "itkafka.h"
#include "itutil.h"
#include "kafka/kafka_conf.h"

enum { NKEYS = 1000, KEYMAX = 64 };
static const int counts[] = { 12, 7 };
#define NCOUNTS ((int)(sizeof(counts) / sizeof(counts[0])))

struct key {
	unsigned char b[KEYMAX];
	size_t len;
};

static struct key keys[NKEYS];
static int java_part[NKEYS][NCOUNTS];   /* the Java client's choice */
static int rdk_part[NKEYS][NCOUNTS];    /* where librdkafka put it */
static int java_empty[NCOUNTS];         /* Java's partition of the empty key */
static char tmpdir[64];
static char jar[512];
static const char *skip_reason;
static struct itkafka_mock mock;

/* ---- keys ----------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	/* xorshift64*: deterministic, so a failure names the same key again. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 2685821657736338717ULL) >> 32);
}

static void make_keys(void)
{
	static const char *const utf8[] = { "gerät/ü", "温度計", "капля", "🌡️sensor", "ÅÄÖ" };

	for (int i = 0; i < NKEYS; i++) {
		struct key *k = &keys[i];

		if (i < 400) {          /* what client ids look like */
			k->len = (size_t)snprintf((char *)k->b, KEYMAX, "%s-%d",
						  i % 2 ? "client" : "sensor/rack7/dev", i);
		} else if (i < 600) {   /* printable, lengths 1..40 */
			k->len = 1 + rnd() % 40;
			for (size_t j = 0; j < k->len; j++)
				k->b[j] = (unsigned char)(' ' + rnd() % 95);
		} else if (i < 900) {   /* any byte (NUL and >= 0x80 too), 1..33 */
			k->len = 1 + (size_t)(i - 600) % 33;
			for (size_t j = 0; j < k->len; j++)
				k->b[j] = (unsigned char)rnd();
		} else {                /* UTF-8 */
			k->len = (size_t)snprintf((char *)k->b, KEYMAX, "%s-%d", utf8[i % 5], i);
		}
	}
}

/* ---- the Java side ------------------------------------------------------------------ */

static const char java_src[] =
	"import java.io.*;\n"
	"import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;\n"
	"// One line of hex per key on stdin (an empty line: the empty key); for\n"
	"// each, the partitions KafkaProducer picks for a keyed record with each\n"
	"// partition count given as an argument, space-separated.\n"
	"public class Partitions {\n"
	"  public static void main(String[] a) throws IOException {\n"
	"    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));\n"
	"    StringBuilder out = new StringBuilder();\n"
	"    for (String l; (l = in.readLine()) != null; ) {\n"
	"      byte[] k = new byte[l.length() / 2];\n"
	"      for (int i = 0; i < k.length; i++)\n"
	"        k[i] = (byte) Integer.parseInt(l.substring(2 * i, 2 * i + 2), 16);\n"
	"      for (int j = 0; j < a.length; j++)\n"
	"        out.append(j > 0 ? \" \" : \"\")\n"
	"           .append(BuiltInPartitioner.partitionForKey(k, Integer.parseInt(a[j])));\n"
	"      out.append('\\n');\n"
	"    }\n"
	"    System.out.print(out);\n"
	"  }\n"
	"}\n";

/* jar = the kafka-clients jar and the slf4j-api jar it logs through, as a
 * class path. */
static int find_jar(void)
{
	const char *cache = getenv("KAFKA_CACHE");
	const char *names[] = { "kafka-clients-*.jar", "slf4j-api-*.jar" };
	size_t n = 0;

	jar[0] = '\0';
	for (int i = 0; i < 2; i++) {
		char pat[256];
		glob_t g;

		snprintf(pat, sizeof(pat), "%s/libs/%s", cache && *cache ? cache : ".cache/kafka",
			 names[i]);
		if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0)
			return -1;
		n += (size_t)snprintf(jar + n, sizeof(jar) - n, "%s%s", i ? ":" : "",
				      g.gl_pathv[g.gl_pathc - 1]);
		globfree(&g);
		if (n >= sizeof(jar))
			return -1;
	}
	return 0;
}

static int write_file(const char *name, const char *text, size_t len)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len) {
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	return fclose(f);
}

/* Runs the Java program over every key, then the empty key. */
static int run_java(void)
{
	static char hex[NKEYS * (2 * KEYMAX + 1) + 2];
	char cmd[1024], line[128];
	size_t n = 0;
	FILE *p;
	int row = 0;
	long long t0 = itutil_now_ms();

	for (int i = 0; i < NKEYS; i++) {
		for (size_t j = 0; j < keys[i].len; j++)
			n += (size_t)sprintf(hex + n, "%02x", keys[i].b[j]);
		hex[n++] = '\n';
	}
	hex[n++] = '\n'; /* the empty key */
	if (write_file("Partitions.java", java_src, sizeof(java_src) - 1) < 0 ||
	    write_file("keys.hex", hex, n) < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "java -Xmx128m -XX:TieredStopAtLevel=1 -cp '%s' '%s/Partitions.java'"
		 " %d %d < '%s/keys.hex' 2>'%s/java.err'", jar, tmpdir, counts[0], counts[1], tmpdir,
		 tmpdir);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		int a, b;

		if (sscanf(line, "%d %d", &a, &b) != 2 || row > NKEYS)
			break;
		if (row < NKEYS) {
			java_part[row][0] = a;
			java_part[row][1] = b;
		} else {
			java_empty[0] = a;
			java_empty[1] = b;
		}
		row++;
	}
	if (pclose(p) != 0 || row != NKEYS + 1) {
		fprintf(stderr, "java: %d of %d lines (%s)\n", row, NKEYS + 1, cmd);
		snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/java.err' >&2", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "(no java.err)\n");
		return -1;
	}
	printf("java: %d keys in %lld ms (%s)\n", NKEYS, itutil_now_ms() - t0, jar);
	return 0;
}

/* ---- the librdkafka side ------------------------------------------------------------ */

static int reports;
static int report_errs;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	int *slot = m->_private; /* the msg_opaque: where to write the partition */
	(void)rk;
	(void)opaque;
	reports++;
	if (m->err) {
		report_errs++;
		fprintf(stderr, "delivery: %s\n", rd_kafka_err2str(m->err));
		return;
	}
	*slot = m->partition;
}

/* The gateway's producer: kafka_conf_new() from a minimal config. */
static rd_kafka_t *gateway_producer(void)
{
	struct cfg *c = NULL;
	char err[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	size_t len = sizeof(err);

	assert_int_equal(cfg_parse_string("listeners = ( { } );\n", "it_partitioner.cfg", &c, err,
					  sizeof(err)), 0);
	conf = kafka_conf_new(c, KAFKA_PRODUCER, mock.bootstrap, err, sizeof(err));
	cfg_free(c);
	if (!conf)
		fail_msg("kafka_conf_new: %s", err);
	/* What this test is about: the gateway's default, not set here. */
	assert_int_equal(rd_kafka_conf_get(conf, "partitioner", err, &len), RD_KAFKA_CONF_OK);
	assert_string_equal(err, "murmur2_random");
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk)
		fail_msg("rd_kafka_new: %s", err);
	return rk;
}

static void produce_key(rd_kafka_t *rk, const char *topic, const void *key, size_t len, int *slot)
{
	rd_kafka_resp_err_t err;

	while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, len),
					RD_KAFKA_V_VALUE("v", 1), RD_KAFKA_V_OPAQUE(slot),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
	       RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 10);
	assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	if (system("command -v java >/dev/null 2>&1") != 0) {
		skip_reason = "java not found: the Java partitioner comparison is skipped";
		return 0;
	}
	if (find_jar() < 0) {
		skip_reason = "no kafka-clients or slf4j-api jar in $KAFKA_CACHE/libs (scripts/kafka-local fetch): "
			      "the Java partitioner comparison is skipped";
		return 0;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kg-it-part-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		tmpdir[0] = '\0';
		return -1;
	}
	make_keys();
	if (run_java() < 0)
		return -1;
	if (itkafka_mock_init(&mock, 3) < 0)
		return -1;
	for (int c = 0; c < NCOUNTS; c++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "part-%d", counts[c]);
		if (rd_kafka_mock_topic_create(mock.mc, topic, counts[c], 3)) {
			fprintf(stderr, "cannot create %s\n", topic);
			return -1;
		}
	}
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];
	(void)state;

	itkafka_mock_release(&mock);
	if (tmpdir[0] && !getenv("KG_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_same_partitions(void **state)
{
	rd_kafka_t *rk;
	int bad = 0, used[12] = { 0 };
	(void)state;

	if (skip_reason) {
		print_message("%s\n", skip_reason);
		skip();
	}
	rk = gateway_producer();
	reports = report_errs = 0;
	for (int c = 0; c < NCOUNTS; c++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "part-%d", counts[c]);
		for (int i = 0; i < NKEYS; i++) {
			rdk_part[i][c] = -1;
			produce_key(rk, topic, keys[i].b, keys[i].len, &rdk_part[i][c]);
		}
	}
	assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(rk);
	assert_int_equal(reports, NKEYS * NCOUNTS);
	assert_int_equal(report_errs, 0);
	for (int c = 0; c < NCOUNTS; c++)
		for (int i = 0; i < NKEYS; i++) {
			if (c == 0 && rdk_part[i][c] >= 0 && rdk_part[i][c] < 12)
				used[rdk_part[i][c]]++;
			if (rdk_part[i][c] == java_part[i][c])
				continue;
			if (bad++ < 10)
				print_message("key %d (%zu bytes), %d partitions: librdkafka %d, Java %d\n",
					      i, keys[i].len, counts[c], rdk_part[i][c], java_part[i][c]);
		}
	printf("%d keys x %d partition counts: %d disagree; with 12 partitions:", NKEYS, NCOUNTS, bad);
	for (int p = 0; p < 12; p++)
		printf(" %d", used[p]);
	printf(" keys per partition\n");
	assert_int_equal(bad, 0);
	/* Not trivially true: the keys spread over every partition. */
	for (int p = 0; p < 12; p++)
		assert_true(used[p] > 0);
}

/* A zero-length key: Java hashes it like any other (it is not null);
 * librdkafka's murmur2_random must too, or a client id "" would be spread
 * at random by the gateway and not by a Java producer. */
static void test_empty_key(void **state)
{
	rd_kafka_t *rk;
	int got[NCOUNTS][4];
	static const char nothing[1] = "";
	(void)state;

	if (skip_reason) {
		print_message("%s\n", skip_reason);
		skip();
	}
	rk = gateway_producer();
	reports = report_errs = 0;
	for (int c = 0; c < NCOUNTS; c++) {
		char topic[32];

		snprintf(topic, sizeof(topic), "part-%d", counts[c]);
		for (int r = 0; r < 4; r++) {
			got[c][r] = -1;
			produce_key(rk, topic, nothing, 0, &got[c][r]);
		}
	}
	assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(rk);
	assert_int_equal(report_errs, 0);
	for (int c = 0; c < NCOUNTS; c++) {
		printf("empty key, %d partitions: Java %d, librdkafka %d %d %d %d\n", counts[c],
		       java_empty[c], got[c][0], got[c][1], got[c][2], got[c][3]);
		for (int r = 0; r < 4; r++)
			assert_int_equal(got[c][r], java_empty[c]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_partitions),
		cmocka_unit_test(test_empty_key),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
