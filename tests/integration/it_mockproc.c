/*
 * it_mockproc.c - tests/tools/kg-mockkafka, the mock cluster in a process of
 * its own: it prints a loopback bootstrap list, a record produced through it
 * is read back, every command it takes has an effect a client can see (a
 * broker taken down stops deliveries to the partitions it leads and they
 * resume once it is up; an injected error is the one a produce gets; create
 * makes a topic with that many partitions), bad commands are refused, and it
 * exits 0 on SIGTERM (sent to its PID), on `quit` and on EOF.
 *
 * The binary: $KG_MOCKKAFKA, else tests/kg-mockkafka next to $KG_BIN's
 * directory (build/kafkagate -> build/tests/kg-mockkafka), else
 * build/tests/kg-mockkafka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "itkafka.h"
#include "itutil.h"

struct mockproc {
	pid_t pid;
	int in;                /* its stdin */
	int out;               /* its stdout */
	char bootstrap[512];
};

static struct mockproc mp = { .pid = -1, .in = -1, .out = -1 };

static const char *tool_path(void)
{
	static char path[512];
	const char *p = getenv("KG_MOCKKAFKA");
	const char *bin = getenv("KG_BIN");

	if (p && *p)
		return p;
	if (bin && *bin) {
		char copy[512];

		snprintf(copy, sizeof(copy), "%s", bin);
		snprintf(path, sizeof(path), "%s/tests/kg-mockkafka", dirname(copy));
		return path;
	}
	return "build/tests/kg-mockkafka";
}

/* One line of its stdout into buf (newline dropped) within timeout_ms.
 * Byte by byte: nothing is read past the line, so no buffer is needed
 * between calls. Returns 0, or -1 on EOF/timeout. */
static int read_line(struct mockproc *m, char *buf, size_t cap, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { .fd = m->out, .events = POLLIN };
		long long left = deadline - itutil_now_ms();
		char c;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		if (read(m->out, &c, 1) != 1)
			break;
		if (c == '\n') {
			buf[n] = '\0';
			return 0;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	fprintf(stderr, "kg-mockkafka: no whole line within %d ms (got '%s')\n", timeout_ms, buf);
	return -1;
}

static int mock_start(struct mockproc *m, const char *args)
{
	int in[2], out[2];
	char line[512];

	m->pid = -1;
	if (pipe(in) || pipe(out))
		return -1;
	m->pid = fork();
	if (m->pid < 0)
		return -1;
	if (m->pid == 0) {
		char cmd[768];

		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		snprintf(cmd, sizeof(cmd), "exec '%s' %s", tool_path(), args);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	m->in = in[1];
	m->out = out[0];
	if (read_line(m, line, sizeof(line), 10000) < 0 || strncmp(line, "bootstrap=", 10) != 0) {
		fprintf(stderr, "kg-mockkafka (%s): first line '%s'\n", tool_path(), line);
		return -1;
	}
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s", line + 10);
	return 0;
}

/* Sends one command line and returns its answer line in ans. */
static int mock_cmd(struct mockproc *m, const char *cmd, char *ans, size_t cap)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%s\n", cmd);

	if (write(m->in, line, (size_t)n) != n)
		return -1;
	return read_line(m, ans, cap, 10000);
}

static void mock_ok(const char *cmd)
{
	char ans[256];

	assert_int_equal(mock_cmd(&mp, cmd, ans, sizeof(ans)), 0);
	if (strcmp(ans, "ok") != 0)
		fail_msg("'%s' answered '%s'", cmd, ans);
}

/* Waits up to timeout_ms for the process to exit; returns its wait status,
 * or -1 if it did not (then it is killed). */
static int mock_wait(struct mockproc *m, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;
	int st;

	while (itutil_now_ms() < deadline) {
		pid_t r = waitpid(m->pid, &st, WNOHANG);

		if (r == m->pid) {
			m->pid = -1;
			return st;
		}
		itutil_sleep_ms(20);
	}
	kill(m->pid, SIGKILL);
	waitpid(m->pid, &st, 0);
	m->pid = -1;
	return -1;
}

static void mock_close_fds(struct mockproc *m)
{
	if (m->in >= 0)
		close(m->in);
	if (m->out >= 0)
		close(m->out);
	m->in = m->out = -1;
}

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	return mock_start(&mp, "--brokers 3 --partitions 6");
}

static int group_teardown(void **state)
{
	(void)state;
	if (mp.pid > 0) {
		kill(mp.pid, SIGTERM);
		mock_wait(&mp, 10000);
	}
	mock_close_fds(&mp);
	return 0;
}

/* ---- delivery reports ---------------------------------------------------------- */

static rd_kafka_resp_err_t last_err;
static int delivered;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	last_err = m->err;
	delivered++;
}

static rd_kafka_t *producer(const char *timeout_ms, int idempotent)
{
	const char *props[] = { "acks", "all", "message.timeout.ms", timeout_ms,
				"enable.idempotence", idempotent ? "true" : "false",
				"reconnect.backoff.max.ms", "500", "retry.backoff.ms", "50", NULL };
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[256];
	rd_kafka_t *rk;

	rd_kafka_conf_set(conf, "bootstrap.servers", mp.bootstrap, e, sizeof(e));
	rd_kafka_conf_set(conf, "log_level", "2", e, sizeof(e));
	for (int i = 0; props[i]; i += 2)
		assert_int_equal(rd_kafka_conf_set(conf, props[i], props[i + 1], e, sizeof(e)), 0);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	assert_non_null(rk);
	return rk;
}

/* Produces one record and waits for its report; returns its error. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, const char *topic, int32_t part,
				       const char *key, const char *val, int wait_ms)
{
	long long deadline = itutil_now_ms() + wait_ms;

	delivered = 0;
	last_err = RD_KAFKA_RESP_ERR__FAIL;
	assert_int_equal(itkafka_produce(rk, topic, part, key, val, NULL), 0);
	while (!delivered && itutil_now_ms() < deadline)
		rd_kafka_poll(rk, 50);
	assert_int_equal(delivered, 1);
	return last_err;
}

/* ---- tests ---------------------------------------------------------------------- */

/* The local address of the IPv4 listening socket on port, from
 * /proc/net/tcp ("0100007F" is 127.0.0.1), or "" when there is none. */
static void listen_addr(int port, char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/net/tcp", "r");

	snprintf(out, cap, "%s", "");
	while (f && fgets(line, sizeof(line), f)) {
		char local[64], remote[64], st[8];
		unsigned int addr, p;

		if (sscanf(line, " %*d: %63s %63s %7s", local, remote, st) != 3 ||
		    sscanf(local, "%8X:%4X", &addr, &p) != 2)
			continue;
		if ((int)p == port && strcmp(st, "0A") == 0) /* TCP_LISTEN */
			snprintf(out, cap, "%.8s", local);
	}
	if (f)
		fclose(f);
}

/* Three brokers, every address on the loopback interface: advertised so,
 * and the listening sockets bound to 127.0.0.1 (not 0.0.0.0). */
static void test_bootstrap(void **state)
{
	char copy[sizeof(mp.bootstrap)], *save = NULL, addr[16];
	int n = 0;
	(void)state;

	snprintf(copy, sizeof(copy), "%s", mp.bootstrap);
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
		if (strncmp(t, "127.0.0.1:", 10) != 0)
			fail_msg("broker address '%s' is not on 127.0.0.1", t);
		listen_addr(atoi(t + 10), addr, sizeof(addr));
		if (strcmp(addr, "0100007F") != 0)
			fail_msg("port %s: listening on '%s' (hex), not 127.0.0.1", t + 10, addr);
	}
	assert_int_equal(n, 3);
}

static void test_produce_consume(void **state)
{
	rd_kafka_t *rk = producer("10000", 1);
	struct itkafka_rec r[2];
	(void)state;

	assert_int_equal(produce_one(rk, "mp-a", -1, "k1", "hello", 15000), 0);
	rd_kafka_destroy(rk);
	assert_int_equal(itkafka_read(mp.bootstrap, "mp-a", 1, 15000, r), 1);
	assert_string_equal(r[0].key, "k1");
	assert_string_equal(r[0].val, "hello");
	itkafka_recs_free(r, 1);
}

/* create: that many partitions; again: refused; without a count: the
 * --partitions default. */
static void test_create(void **state)
{
	char ans[256];
	rd_kafka_t *rk = itkafka_client_new(mp.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	const char *topics[] = { "mp-c12", "mp-cdef" };
	const int want[] = { 12, 6 };
	(void)state;

	mock_ok("create mp-c12 12 3");
	mock_ok("create mp-cdef");
	assert_int_equal(mock_cmd(&mp, "create mp-c12 12 3", ans, sizeof(ans)), 0);
	assert_true(strncmp(ans, "error ", 6) == 0);
	assert_non_null(rk);
	for (int i = 0; i < 2; i++) {
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
		const struct rd_kafka_metadata *md;

		assert_int_equal(rd_kafka_metadata(rk, 0, rkt, &md, 10000), 0);
		assert_int_equal(md->topic_cnt, 1);
		assert_int_equal(md->topics[0].partition_cnt, want[i]);
		rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(rkt);
	}
	rd_kafka_destroy(rk);
}

/* A partition led by a broker that is down takes no records (they time
 * out); once it is up again they are delivered. */
static void test_down_up(void **state)
{
	rd_kafka_t *rk;
	long long t0;
	rd_kafka_resp_err_t err;
	(void)state;

	mock_ok("create mp-b 1 3");
	mock_ok("leader mp-b 0 2");
	rk = producer("3000", 0);
	assert_int_equal(produce_one(rk, "mp-b", 0, "k", "before", 10000), 0);
	mock_ok("down 2");
	t0 = itutil_now_ms();
	err = produce_one(rk, "mp-b", 0, "k", "while-down", 10000);
	printf("while broker 2 is down: %s after %lld ms\n", rd_kafka_err2name(err),
	       itutil_now_ms() - t0);
	assert_int_equal(err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
	mock_ok("up 2");
	assert_int_equal(produce_one(rk, "mp-b", 0, "k", "after", 10000), 0);
	rd_kafka_destroy(rk);
	assert_int_equal(itkafka_count(mp.bootstrap, "mp-b", 10000), 2);
}

/* An injected non-retriable error is what the produce reports; retriable
 * ones are retried through; rtt slows requests down by that much. */
static void test_err_rtt(void **state)
{
	rd_kafka_t *rk = producer("10000", 0);
	long long t0;
	(void)state;

	mock_ok("create mp-e 1 3");
	assert_int_equal(produce_one(rk, "mp-e", 0, NULL, "warm", 10000), 0);
	mock_ok("err Produce TOPIC_AUTHORIZATION_FAILED 1");
	assert_int_equal(produce_one(rk, "mp-e", 0, NULL, "x", 10000),
			 RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	/* The producer now refuses the topic itself: a fresh one goes on. */
	rd_kafka_destroy(rk);
	rk = producer("10000", 0);
	mock_ok("err Produce NOT_LEADER_FOR_PARTITION 2");
	assert_int_equal(produce_one(rk, "mp-e", 0, NULL, "y", 10000), 0);
	mock_ok("rtt all 400");
	t0 = itutil_now_ms();
	assert_int_equal(produce_one(rk, "mp-e", 0, NULL, "z", 10000), 0);
	assert_true(itutil_now_ms() - t0 >= 350);
	mock_ok("rtt all 0");
	rd_kafka_destroy(rk);
}

static void test_bad_commands(void **state)
{
	const char *bad[] = { "down 0", "down 4", "up x", "rtt 9 10", "rtt all -1",
			      "err Bogus REQUEST_TIMED_OUT 1", "err Produce NO_SUCH_ERROR 1",
			      "err Produce REQUEST_TIMED_OUT 0", "leader mp-a 0 7",
			      "create t 0", "create t 1 4", "frobnicate", "quit now" };
	char ans[256];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mock_cmd(&mp, bad[i], ans, sizeof(ans)), 0);
		if (strncmp(ans, "error ", 6) != 0)
			fail_msg("'%s' answered '%s'", bad[i], ans);
	}
	/* Still serving. */
	mock_ok("rtt 1 0");
}

/* Exit 0 on SIGTERM by PID, on quit, and on EOF, each within a few
 * seconds. */
static void test_stop(void **state)
{
	struct mockproc m;
	char ans[64];
	int st;
	(void)state;

	assert_int_equal(mock_start(&m, "--brokers 1"), 0);
	assert_int_equal(kill(m.pid, SIGTERM), 0);
	st = mock_wait(&m, 10000);
	mock_close_fds(&m);
	assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

	assert_int_equal(mock_start(&m, "--brokers 1"), 0);
	assert_int_equal(mock_cmd(&m, "quit", ans, sizeof(ans)), 0);
	assert_string_equal(ans, "ok");
	st = mock_wait(&m, 10000);
	mock_close_fds(&m);
	assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

	assert_int_equal(mock_start(&m, ""), 0);
	close(m.in);
	m.in = -1;
	st = mock_wait(&m, 10000);
	mock_close_fds(&m);
	assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bootstrap),
		cmocka_unit_test(test_produce_consume),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_down_up),
		cmocka_unit_test(test_err_rtt),
		cmocka_unit_test(test_bad_commands),
		cmocka_unit_test(test_stop),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
