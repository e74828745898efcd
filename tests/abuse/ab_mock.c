/*
 * ab_mock.c - the mock Kafka cluster host (abuse mock): a librdkafka mock
 * cluster of 3 brokers in its own process, so that it outlives the gateways
 * run.sh starts; "storm" has 4 partitions led by brokers 2 and 3, "legit"
 * one led by broker 1 (the legitimate client is not slowed by the storm's
 * faults). Commands, one a line, on a FIFO:
 *   rtt B MS | down B | up B | delay B N MS (the next N Produce requests
 *   to B answered MS late) | quit        (B = -1: every broker)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abuse.h"
#include "itkafka.h"

int ab_mock_cmd(const struct ab_opts *o, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n > (int)sizeof(line) - 2)
		return -1;
	line[n++] = '\n';
	if ((fd = open(o->mock_ctl, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
		return -1;
	n = write(fd, line, (size_t)n) == n ? 0 : -1;
	close(fd);
	return n;
}

static volatile sig_atomic_t mock_stop;

static void mock_on_signal(int sig)
{
	(void)sig;
	mock_stop = 1;
}

static void mock_apply(rd_kafka_mock_cluster_t *mc, char *line)
{
	int b, n, ms;

	if (sscanf(line, "rtt %d %d", &b, &ms) == 2) {
		rd_kafka_mock_broker_set_rtt(mc, b, ms);
	} else if (sscanf(line, "down %d", &b) == 1) {
		rd_kafka_mock_broker_set_down(mc, b);
	} else if (sscanf(line, "up %d", &b) == 1) {
		rd_kafka_mock_broker_set_up(mc, b);
	} else if (sscanf(line, "delay %d %d %d", &b, &n, &ms) == 3) {
		for (int i = 0; i < n; i++)
			rd_kafka_mock_broker_push_request_error_rtts(mc, b, 0 /* Produce */, 1,
								     RD_KAFKA_RESP_ERR_NO_ERROR, ms);
	} else if (strncmp(line, "quit", 4) == 0) {
		mock_stop = 1;
	} else {
		fprintf(stderr, "abuse mock: unknown command %s\n", line);
	}
}

int ab_mock_main(int argc, char **argv)
{
	const char *ctl = NULL, *out = NULL;
	struct itkafka_mock m;
	char tmp[512], buf[1024];
	size_t used = 0;
	FILE *f;
	int fd;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--ctl") == 0)
			ctl = argv[i + 1];
		else if (strcmp(argv[i], "--out") == 0)
			out = argv[i + 1];
	}
	if (!ctl || !out) {
		fprintf(stderr, "usage: abuse mock --ctl FIFO --out FILE\n");
		return 2;
	}
	signal(SIGTERM, mock_on_signal);
	signal(SIGINT, mock_on_signal);
	if (itkafka_mock_init(&m, 3) < 0)
		return 1;
	rd_kafka_mock_topic_create(m.mc, "storm", 4, 1);
	for (int p = 0; p < 4; p++)
		rd_kafka_mock_partition_set_leader(m.mc, "storm", p, p % 2 ? 3 : 2);
	rd_kafka_mock_topic_create(m.mc, "legit", 1, 1);
	rd_kafka_mock_partition_set_leader(m.mc, "legit", 0, 1);
	if ((mkfifo(ctl, 0600) < 0 && errno != EEXIST) || (fd = open(ctl, O_RDWR | O_CLOEXEC)) < 0) {
		perror("abuse mock: control fifo");
		itkafka_mock_release(&m);
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	if (!(f = fopen(tmp, "w")) || fprintf(f, "%s\n", m.bootstrap) < 0 || fclose(f) != 0 ||
	    rename(tmp, out) < 0) {
		perror("abuse mock: bootstrap file");
		itkafka_mock_release(&m);
		return 1;
	}
	while (!mock_stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			continue;
		used += (size_t)n;
		buf[used] = 0;
		char *nl, *p = buf;
		while ((nl = strchr(p, '\n'))) {
			*nl = 0;
			mock_apply(m.mc, p);
			p = nl + 1;
		}
		used = (size_t)(buf + used - p);
		memmove(buf, p, used);
		if (used == sizeof(buf) - 1)
			used = 0;
	}
	close(fd);
	itkafka_mock_release(&m);
	return 0;
}
