/*
 * kg_mockkafka.c - librdkafka's mock cluster in a process of its own, driven
 * over stdin/stdout, so that shell and Python test drivers and several
 * gateway processes can share one Kafka-protocol endpoint that outlives any
 * of them, and inject faults into it.
 *
 * Usage: kg-mockkafka [--brokers N] [--partitions P]
 *   --brokers N     brokers in the cluster, ids 1..N (default 3)
 *   --partitions P  partitions of `create TOPIC` without a count (default 4,
 *                   the mock's own default for auto-created topics, which
 *                   librdkafka 2.0.2 offers no way to change)
 *
 * On start prints exactly one line, "bootstrap=127.0.0.1:PORT,...", then
 * reads commands, one per line, and answers each with one line, "ok" or
 * "error <reason>" (stdout flushed after every line):
 *   down <broker_id>                 the broker closes its connections and
 *   up <broker_id>                   refuses new ones / accepts them again
 *   rtt <broker_id|all> <ms>         added round-trip time per request
 *   err <ApiKey> <Error> <count>     the next <count> requests of that API
 *                                    (on any broker) fail with that error
 *   leader <topic> <partition> <broker_id>
 *   create <topic> [<partitions> [<replication>]]
 *   quit                             (or EOF on stdin, SIGTERM, SIGINT)
 * ApiKey names are the protocol's (Produce, Fetch, Metadata, OffsetCommit,
 * FindCoordinator, JoinGroup, ...) or a number; Error names are
 * rd_kafka_err2name()'s without a leading underscore (NOT_LEADER_FOR_PARTITION,
 * REQUEST_TIMED_OUT, ...) or a number. Empty lines and lines starting with
 * '#' are ignored (no answer). Exit status 0 after quit/EOF/signal, 1 when
 * the cluster could not start, 2 on bad usage.
 *
 * The brokers listen on 127.0.0.1 only: librdkafka's mock binds each
 * broker's listener to INADDR_LOOPBACK with port 0 (rdkafka_mock.c,
 * rd_kafka_mock_broker_new); the bootstrap list printed says so, and
 * tests/integration/it_mockproc.c checks it.
 *
 * Single-threaded apart from librdkafka's own threads: the main thread
 * polls stdin and a signalfd (SIGTERM/SIGINT are blocked before librdkafka
 * starts its threads, so they inherit the mask and only the signalfd sees
 * them). The mock's API calls are thread-safe requests to its own thread.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define LINE_MAX_LEN 1024
#define ERR_COUNT_MAX 100000

/* Kafka protocol API keys by name (the protocol's names; librdkafka's own
 * rd_kafka_ApiKey2str() is not exported). */
static const struct {
	const char *name;
	int16_t key;
} api_keys[] = {
	{ "Produce", 0 },
	{ "Fetch", 1 },
	{ "ListOffsets", 2 },
	{ "Offset", 2 },
	{ "Metadata", 3 },
	{ "LeaderAndIsr", 4 },
	{ "StopReplica", 5 },
	{ "UpdateMetadata", 6 },
	{ "ControlledShutdown", 7 },
	{ "OffsetCommit", 8 },
	{ "OffsetFetch", 9 },
	{ "FindCoordinator", 10 },
	{ "GroupCoordinator", 10 },
	{ "JoinGroup", 11 },
	{ "Heartbeat", 12 },
	{ "LeaveGroup", 13 },
	{ "SyncGroup", 14 },
	{ "DescribeGroups", 15 },
	{ "ListGroups", 16 },
	{ "SaslHandshake", 17 },
	{ "ApiVersion", 18 },
	{ "ApiVersions", 18 },
	{ "CreateTopics", 19 },
	{ "DeleteTopics", 20 },
	{ "DeleteRecords", 21 },
	{ "InitProducerId", 22 },
	{ "OffsetForLeaderEpoch", 23 },
	{ "AddPartitionsToTxn", 24 },
	{ "AddOffsetsToTxn", 25 },
	{ "EndTxn", 26 },
	{ "WriteTxnMarkers", 27 },
	{ "TxnOffsetCommit", 28 },
	{ "DescribeAcls", 29 },
	{ "CreateAcls", 30 },
	{ "DeleteAcls", 31 },
	{ "DescribeConfigs", 32 },
	{ "AlterConfigs", 33 },
	{ "AlterReplicaLogDirs", 34 },
	{ "DescribeLogDirs", 35 },
	{ "SaslAuthenticate", 36 },
	{ "CreatePartitions", 37 },
	{ "CreateDelegationToken", 38 },
	{ "RenewDelegationToken", 39 },
	{ "ExpireDelegationToken", 40 },
	{ "DescribeDelegationToken", 41 },
	{ "DeleteGroups", 42 },
	{ "ElectLeaders", 43 },
	{ "IncrementalAlterConfigs", 44 },
	{ "AlterPartitionReassignments", 45 },
	{ "ListPartitionReassignments", 46 },
	{ "OffsetDelete", 47 },
	{ "DescribeClientQuotas", 48 },
	{ "AlterClientQuotas", 49 },
	{ "DescribeUserScramCredentials", 50 },
	{ "AlterUserScramCredentials", 51 },
	{ "DescribeCluster", 60 },
	{ "DescribeProducers", 61 },
	{ "DescribeTransactions", 65 },
	{ "ListTransactions", 66 },
};

static rd_kafka_mock_cluster_t *mc;
static int nbrokers = 3;
static int default_parts = 4;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* A whole decimal number in [lo, hi]; -1 with *ok = 0 otherwise. */
static long num(const char *s, long lo, long hi, int *ok)
{
	char *end;
	long v;

	*ok = 0;
	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*ok = 1;
	return v;
}

static int api_key(const char *s)
{
	int ok;
	long v = num(s, 0, 1000, &ok);

	if (ok)
		return (int)v;
	for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++)
		if (strcasecmp(s, api_keys[i].name) == 0)
			return api_keys[i].key;
	return -1;
}

/* Error code by name: broker errors first (they are the ones a mock request
 * answers with), then librdkafka's local "_NAME" errors. */
static int err_code(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *d;
	size_t n;
	int ok;
	long v = num(s, -200, 1000, &ok);

	if (ok) {
		*out = (rd_kafka_resp_err_t)v;
		return 0;
	}
	if (*s == '_')
		s++;
	rd_kafka_get_err_descs(&d, &n);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++) {
			const char *name = d[i].name;

			if (!name || (pass == 0) != (d[i].code >= 0))
				continue;
			if (*name == '_')
				name++;
			if (strcasecmp(name, s) == 0) {
				*out = d[i].code;
				return 0;
			}
		}
	return -1;
}

static void answer(rd_kafka_resp_err_t err)
{
	if (err)
		say("error %s", rd_kafka_err2str(err));
	else
		say("ok");
}

static int broker_arg(const char *s)
{
	int ok;
	long v = num(s, 1, nbrokers, &ok);

	return ok ? (int)v : -1;
}

/* One command line (NUL-terminated, no newline). Returns 1 on quit. */
static int command(char *line)
{
	char *argv[8];
	int argc = 0, ok, b;
	char *save = NULL;

	for (char *t = strtok_r(line, " \t\r", &save); t && argc < 8; t = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = t;
	if (argc == 0 || argv[0][0] == '#')
		return 0;
	if (strcmp(argv[0], "quit") == 0 && argc == 1) {
		say("ok");
		return 1;
	}
	if ((strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0) && argc == 2) {
		b = broker_arg(argv[1]);
		if (b < 0)
			say("error no broker %s (ids 1..%d)", argv[1], nbrokers);
		else
			answer(argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mc, b)
						 : rd_kafka_mock_broker_set_up(mc, b));
		return 0;
	}
	if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
		long ms = num(argv[2], 0, INT_MAX, &ok);
		int all = strcmp(argv[1], "all") == 0;
		rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

		b = all ? 0 : broker_arg(argv[1]);
		if (!ok) {
			say("error bad milliseconds '%s'", argv[2]);
		} else if (b < 0) {
			say("error no broker %s (ids 1..%d)", argv[1], nbrokers);
		} else {
			for (int i = all ? 1 : b; i <= (all ? nbrokers : b) && !err; i++)
				err = rd_kafka_mock_broker_set_rtt(mc, i, (int)ms);
			answer(err);
		}
		return 0;
	}
	if (strcmp(argv[0], "err") == 0 && argc == 4) {
		int key = api_key(argv[1]);
		rd_kafka_resp_err_t code;
		long cnt = num(argv[3], 1, ERR_COUNT_MAX, &ok);
		rd_kafka_resp_err_t *errs;

		if (key < 0) {
			say("error unknown ApiKey '%s'", argv[1]);
		} else if (err_code(argv[2], &code) < 0) {
			say("error unknown error name '%s'", argv[2]);
		} else if (!ok) {
			say("error bad count '%s' (1..%d)", argv[3], ERR_COUNT_MAX);
		} else if (!(errs = malloc((size_t)cnt * sizeof(*errs)))) {
			say("error out of memory");
		} else {
			for (long i = 0; i < cnt; i++)
				errs[i] = code;
			rd_kafka_mock_push_request_errors_array(mc, (int16_t)key, (size_t)cnt, errs);
			free(errs);
			say("ok");
		}
		return 0;
	}
	if (strcmp(argv[0], "leader") == 0 && argc == 4) {
		long part = num(argv[2], 0, INT32_MAX, &ok);

		b = broker_arg(argv[3]);
		if (!ok)
			say("error bad partition '%s'", argv[2]);
		else if (b < 0)
			say("error no broker %s (ids 1..%d)", argv[3], nbrokers);
		else
			answer(rd_kafka_mock_partition_set_leader(mc, argv[1], (int32_t)part, b));
		return 0;
	}
	if (strcmp(argv[0], "create") == 0 && argc >= 2 && argc <= 4) {
		int ok2 = 1;
		long parts = argc > 2 ? num(argv[2], 1, 100000, &ok) : default_parts;
		long rf = argc > 3 ? num(argv[3], 1, nbrokers, &ok2)
				   : (nbrokers < 3 ? nbrokers : 3);

		if (argc > 2 && !ok)
			say("error bad partition count '%s'", argv[2]);
		else if (!ok2)
			say("error bad replication factor '%s' (1..%d)", argv[3], nbrokers);
		else
			answer(rd_kafka_mock_topic_create(mc, argv[1], (int)parts, (int)rf));
		return 0;
	}
	say("error unknown command or wrong arguments: %s", argv[0]);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: kg-mockkafka [--brokers N] [--partitions P]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	char e[256], line[LINE_MAX_LEN];
	size_t len = 0;
	int sfd, ok, done = 0, discard = 0;
	sigset_t mask;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
			nbrokers = (int)num(argv[++i], 1, 64, &ok);
			if (!ok)
				usage();
		} else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
			default_parts = (int)num(argv[++i], 1, 100000, &ok);
			if (!ok)
				usage();
		} else {
			usage();
		}
	}

	/* Before librdkafka's threads exist, so that they inherit the mask. A
	 * reader that went away must not kill us mid-answer: SIGPIPE ignored,
	 * the write fails, and EOF on stdin follows. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		perror("kg-mockkafka: signalfd");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk) {
		fprintf(stderr, "kg-mockkafka: rd_kafka_new: %s\n", e);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, nbrokers);
	if (!mc) {
		fprintf(stderr, "kg-mockkafka: cannot start a mock cluster of %d brokers\n", nbrokers);
		rd_kafka_destroy(rk);
		return 1;
	}
	say("bootstrap=%s", rd_kafka_mock_cluster_bootstraps(mc));

	while (!done) {
		struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("kg-mockkafka: poll");
			break;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) > 0)
				fprintf(stderr, "kg-mockkafka: signal %u: stopping\n", si.ssi_signo);
			break;
		}
		if (!p[0].revents)
			continue;
		n = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EOF (the driver went away) or a read error */
		len += (size_t)n;
		for (;;) {
			char *nl = memchr(line, '\n', len);
			size_t used;

			if (!nl) {
				if (len == sizeof(line) - 1) { /* too long: answer once, drop */
					say("error line too long");
					len = 0;
					discard = 1;
				}
				break;
			}
			*nl = '\0';
			used = (size_t)(nl - line) + 1;
			if (!discard)
				done = command(line);
			discard = 0;
			memmove(line, line + used, len - used);
			len -= used;
			if (done)
				break;
		}
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	close(sfd);
	return 0;
}
