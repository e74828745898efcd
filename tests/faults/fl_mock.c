/*
 * fl_mock.c - mock: a librdkafka mock cluster in its own process, speaking
 * the protocol of build/tests/kg-mockkafka (branch s13-mock), for when that
 * tool is not built: prints "bootstrap=HOST:PORT,..." on stdout, then
 * answers each command on stdin with "ok" or "error ...":
 *   down <id> | up <id> | rtt <id|all> <ms> | err <ApiKeyName> <ErrorName> <count>
 *   leader <topic> <partition> <id> | create <topic> <partitions> <replication> | quit
 * run.sh prefers kg-mockkafka when it exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "faults.h"

static const struct {
	const char *name;
	int16_t key;
} apis[] = {
	{ "Produce", 0 },	   { "Fetch", 1 },	 { "ListOffsets", 2 },
	{ "Metadata", 3 },	   { "OffsetCommit", 8 }, { "OffsetFetch", 9 },
	{ "FindCoordinator", 10 }, { "JoinGroup", 11 },	 { "Heartbeat", 12 },
	{ "SyncGroup", 14 },	   { "InitProducerId", 22 },
};

static int api_key(const char *name)
{
	for (size_t i = 0; i < sizeof(apis) / sizeof(apis[0]); i++)
		if (strcasecmp(apis[i].name, name) == 0)
			return apis[i].key;
	return -1;
}

/* "NOT_ENOUGH_REPLICAS" (or with the "ERR_" prefix) to its code. */
static int err_code(const char *name, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *d;
	size_t n;

	if (strncmp(name, "ERR_", 4) == 0)
		name += 4;
	rd_kafka_get_err_descs(&d, &n);
	for (size_t i = 0; i < n; i++)
		if (d[i].name && strcmp(d[i].name, name) == 0 && d[i].code > 0) {
			*out = d[i].code;
			return 0;
		}
	return -1;
}

static void mock_apply(rd_kafka_mock_cluster_t *mc, int brokers, char *line)
{
	char a[256], b[128];
	int x, y, z;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

	line[strcspn(line, "\r\n")] = 0;
	if (sscanf(line, "down %d", &x) == 1) {
		err = rd_kafka_mock_broker_set_down(mc, x);
	} else if (sscanf(line, "up %d", &x) == 1) {
		err = rd_kafka_mock_broker_set_up(mc, x);
	} else if (sscanf(line, "rtt all %d", &y) == 1) {
		for (int i = 1; i <= brokers && !err; i++)
			err = rd_kafka_mock_broker_set_rtt(mc, i, y);
	} else if (sscanf(line, "rtt %d %d", &x, &y) == 2) {
		err = rd_kafka_mock_broker_set_rtt(mc, x, y);
	} else if (sscanf(line, "err %127s %255s %d", b, a, &x) == 3) {
		int k = api_key(b);
		rd_kafka_resp_err_t code;

		if (k < 0 || err_code(a, &code) < 0 || x <= 0) {
			printf("error unknown api, error name or count\n");
			return;
		}
		for (int i = 0; i < x; i++)
			rd_kafka_mock_push_request_errors(mc, (int16_t)k, 1, code);
	} else if (sscanf(line, "leader %255s %d %d", a, &x, &y) == 3) {
		err = rd_kafka_mock_partition_set_leader(mc, a, x, y);
	} else if (sscanf(line, "create %255s %d %d", a, &x, &z) == 3) {
		err = rd_kafka_mock_topic_create(mc, a, x, z);
	} else if (strcmp(line, "quit") == 0) {
		printf("ok\n");
		fl_stop = 1;
		return;
	} else if (line[0] == 0) {
		return;
	} else {
		printf("error unknown command\n");
		return;
	}
	if (err)
		printf("error %s\n", rd_kafka_err2str(err));
	else
		printf("ok\n");
}

int fl_mock_main(int argc, char **argv)
{
	int brokers = (int)fl_opt_l(argc, argv, "--brokers", 3);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_t *rk;
	char e[256], line[1024];

	rd_kafka_conf_set(conf, "log_level", "2", e, sizeof(e));
	if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e))) ||
	    !(mc = rd_kafka_mock_cluster_new(rk, brokers))) {
		fprintf(stderr, "faults mock: cannot start a mock cluster: %s\n", e);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	while (!fl_stop && fgets(line, sizeof(line), stdin))
		mock_apply(mc, brokers, line);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
