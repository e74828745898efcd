/*
 * itcerts.c - certificates, mock Kafka and gateway for the TLS and
 * WebSocket tests; see itcerts.h.
 */
#include "itcerts.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int itcerts_setup(const char *tag, char *dir, size_t cap, struct itkafka_mock *K,
		  rd_kafka_t **prod)
{
	char cmd[256];
	const char *tmp = getenv("TMPDIR");

	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, cap, "%s/kg-it-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "scripts/gen-test-certs.sh %s", dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "it_%s: scripts/gen-test-certs.sh failed (run from the repository root)\n",
			tag);
		return -1;
	}
	if (itkafka_mock_init(K, 1) < 0)
		return -1;
	*prod = itkafka_client_new(K->bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	return *prod ? 0 : -1;
}

int itcerts_teardown(const char *dir, struct itkafka_mock *K, rd_kafka_t *prod)
{
	char cmd[200];

	if (prod)
		rd_kafka_destroy(prod);
	itkafka_mock_release(K);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int itcerts_gw_start(struct gw *g, const char *tag, const char *dir, const char *bootstrap,
		     const char *groups, int connect_timeout_s, const char *limits)
{
	char cfg[4096];
	int n = snprintf(cfg, sizeof(cfg),
			 "%s"
			 "log = { level = \"debug\"; };\n"
			 "limits = { connect_timeout = %d; %s };\n"
			 "kafka = { brokers = \"%s\"; flush_timeout = 2;\n"
			 "  properties = ( (\"session.timeout.ms\", 3000),"
			 " (\"heartbeat.interval.ms\", 500) ); };\n"
			 "routes = ( { filter = \"%s/#\"; topic = \"it-%s-up\"; key = \"${clientid}\";"
			 " format = \"raw\"; } );\n"
			 "downlink = ( { topic = \"it-%s-cmd\"; group = \"it-%s-dl\";"
			 " mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n",
			 groups, connect_timeout_s, limits, bootstrap, tag, tag, tag, tag);

	if (n < 0 || (size_t)n >= sizeof(cfg)) {
		fprintf(stderr, "itcerts: config for it_%s longer than %zu bytes\n", tag, sizeof(cfg));
		return -1;
	}
	return gw_start_files(g, dir, cfg);
}
