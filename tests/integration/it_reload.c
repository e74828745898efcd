/*
 * it_reload.c - SIGHUP reload of the real binary, producing to librdkafka's
 * mock cluster hosted in this process.
 *
 * A route change takes effect without closing any of 1,000 connections;
 * configs with a syntax error, an unknown key or a bad route template are
 * rejected with FILE:LINE and change nothing (route, log level, limits); the
 * log level and max_inflight change in place; a listener change is reported
 * as needing a restart while the old listener keeps serving.
 *
 * Every reload rewrites the whole config file: the listener, Kafka and
 * metrics lines stay byte-identical to the ones gw_start() wrote unless a
 * test means to change them. Log checks look only at what was written after
 * a mark taken before the action, so one test's lines never satisfy another's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 10000
#define ACK_MS 15000      /* the first record waits for topic auto-creation */
#define N_CLIENTS 1000
#define ROUTE(topic) "routes = ( { filter = \"r/#\"; topic = \"" topic "\"; } );"

struct fx {
	struct itkafka_mock k;
	struct gw g;
	int fds[N_CLIENTS];
	int nfds;
	int pub;                      /* the publishing connection, -1 when none */
};

static struct fx F = { .pub = -1 };

/* ---- config and fixture ---------------------------------------------------- */

/* The whole config file: what gw_start() writes (listener on port, log
 * level), the fixed Kafka and metrics groups, then `more` (routes, limits). */
static void cfg_text(char *out, size_t cap, int port, const char *level, const char *more)
{
	int n = snprintf(out, cap,
			 "listeners = ( { address = \"127.0.0.1\"; port = %d; } );\n"
			 "log = { level = \"%s\"; };\n"
			 "kafka = { brokers = \"%s\"; flush_timeout = 2;"
			 " properties = ( (\"message.timeout.ms\", 10000) ); };\n"
			 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
			 "%s\n",
			 port, level, F.k.bootstrap, F.g.metrics_port, more);

	assert_true(n > 0 && (size_t)n < cap);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int connect_client(const char *id)
{
	int fd = itutil_connect(F.g.port, id, true, 60, NULL);

	if (fd < 0)
		fail_msg("client %s: no CONNACK 0", id);
	return fd;
}

/* Mock cluster, gateway with `more` after the fixed groups, a publisher and
 * `clients` idle connections (keepalive 60). */
static void fx_up(const char *more, int clients)
{
	char cfg[2048];

	raise_fd_limit();
	assert_int_equal(itkafka_mock_init(&F.k, 1), 0);
	F.g.metrics_port = gw_free_port();
	assert_true(F.g.metrics_port > 0);
	cfg_text(cfg, sizeof(cfg), 0, "debug", more);
	/* gw_start() writes the first two lines itself. */
	assert_int_equal(gw_start(&F.g, strchr(strchr(cfg, '\n') + 1, '\n') + 1), 0);
	F.pub = connect_client("it-reload-pub");
	for (int i = 0; i < clients; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-reload-%04d", i);
		F.fds[F.nfds++] = connect_client(id);
	}
}

static int fx_down(void **state)
{
	(void)state;
	for (int i = 0; i < F.nfds; i++)
		close(F.fds[i]);
	if (F.pub >= 0)
		close(F.pub);
	gw_stop(&F.g);
	itkafka_mock_release(&F.k);
	memset(&F, 0, sizeof(F));
	F.pub = -1;
	return 0;
}

/* ---- the log ----------------------------------------------------------------- */

static long log_mark(void)
{
	struct stat st;

	return stat(F.g.log_path, &st) == 0 ? (long)st.st_size : 0;
}

/* The log from byte off on, NUL-terminated; free it. */
static char *log_since(long off)
{
	FILE *f = fopen(F.g.log_path, "rb");
	char *s = NULL;
	long n = 0;

	if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f) - off) >= 0 &&
	    fseek(f, off, SEEK_SET) == 0 && (s = malloc((size_t)n + 1)))
		s[fread(s, 1, (size_t)n, f)] = '\0';
	if (f)
		fclose(f);
	if (!s && (s = malloc(1)))
		s[0] = '\0';
	assert_non_null(s);
	return s;
}

static int count_in(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Waits until the log after off holds one of the needles; copies the line
 * holding it into line. Returns the needle's index, or -1 on timeout. */
static int log_wait_line(long off, const char *const *needles, int n, int timeout_ms,
			 char *line, size_t cap)
{
	long long deadline = itutil_now_ms() + timeout_ms;

	for (;;) {
		char *s = log_since(off);

		for (int i = 0; i < n; i++) {
			char *p = strstr(s, needles[i]);

			if (!p)
				continue;
			while (p > s && p[-1] != '\n')
				p--;
			snprintf(line, cap, "%.*s", (int)strcspn(p, "\n"), p);
			free(s);
			return i;
		}
		free(s);
		if (itutil_now_ms() >= deadline)
			return -1;
		itutil_sleep_ms(20);
	}
}

static bool log_wait_since(long off, const char *needle, int timeout_ms)
{
	char line[1024];

	return log_wait_line(off, &needle, 1, timeout_ms, line, sizeof(line)) == 0;
}

/* ---- reloading --------------------------------------------------------------- */

static void write_cfg(const char *text)
{
	FILE *f = fopen(F.g.cfg_path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Writes text as the config file, sends SIGHUP and waits for the outcome.
 * Returns true when "reload applied" was logged, false for "reload
 * rejected"; its log line goes into line. */
static bool reload(const char *text, char *line, size_t cap)
{
	static const char *const outcome[] = { "reload applied", "reload rejected" };
	long off = log_mark();

	write_cfg(text);
	gw_kill(&F.g, SIGHUP);
	int i = log_wait_line(off, outcome, 2, WAIT_MS, line, cap);
	if (i < 0)
		fail_msg("neither \"reload applied\" nor \"reload rejected\" logged within %d ms",
			 WAIT_MS);
	return i == 0;
}

static void reload_ok(int port, const char *level, const char *more)
{
	char cfg[2048], line[1024];

	cfg_text(cfg, sizeof(cfg), port, level, more);
	if (!reload(cfg, line, sizeof(line)))
		fail_msg("valid config rejected: %s", line);
}

/* ---- MQTT ------------------------------------------------------------------- */

/* QoS 1 from the publisher; returns once PUBACK arrived (the record is in Kafka). */
static void publish(const char *topic, const char *payload)
{
	static uint16_t pid;

	pid = (uint16_t)(pid % 60000 + 1);
	assert_int_equal(itutil_send_publish(F.pub, topic, payload, strlen(payload), 1, false, pid), 0);
	assert_int_equal(itutil_expect_ack(F.pub, 0x40, pid, ACK_MS), 0);
}

/* Every idle connection still answers PINGREQ: none was closed. */
static void assert_all_alive(void)
{
	static const uint8_t ping[2] = { 0xC0, 0x00 };
	int dead = 0, first = -1;

	for (int i = 0; i < F.nfds; i++)
		if (raw_send(F.fds[i], ping, sizeof(ping)) < 0 && first < 0)
			first = i;
	for (int i = 0; i < F.nfds; i++) {
		uint8_t in[16];
		int n = raw_recv_packet(F.fds[i], in, sizeof(in), 5000);

		if (n != 2 || in[0] != 0xD0) {
			dead++;
			if (first < 0)
				first = i;
		}
	}
	if (dead)
		fail_msg("%d of %d connections gave no PINGRESP (first: #%d)", dead, F.nfds, first);
}

/* Reads one QoS 1 PUBLISH within timeout_ms; returns its packet id, or -1
 * when nothing arrived. Fails on any other packet. */
static int recv_publish(int fd, int timeout_ms)
{
	struct itutil_pkt p;
	int n = itutil_recv(fd, &p, timeout_ms);

	if (n < 0 && errno == ETIMEDOUT)
		return -1;
	if (n <= 0 || (p.first & 0xF6) != 0x32)
		fail_msg("expected a QoS 1 PUBLISH, got %d bytes (first 0x%02X)", n, n > 0 ? p.first : 0);
	return p.pid;
}

/* ---- Kafka ------------------------------------------------------------------ */

/* topic holds exactly the records want[0..n-1], in any order: every record
 * its watermarks count is read back (none when the topic does not exist). */
static void assert_topic_holds(const char *topic, const char *const *want, int n)
{
	struct itkafka_rec r[16];
	long total = itkafka_count(F.k.bootstrap, topic, 5000);
	int got = 0;

	assert_true(total >= -1); /* -1: no such topic */
	assert_true(total <= 16);
	memset(r, 0, sizeof(r));
	if (total > 0)
		got = itkafka_read(F.k.bootstrap, topic, (int)total, WAIT_MS, r);
	if (total > 0 && got < total)
		fail_msg("topic %s: read %d of %ld records", topic, got, total);
	for (int i = 0; i < got; i++)
		print_message("  %s[%d] = %s\n", topic, i, r[i].val);
	assert_int_equal(got, n);
	for (int i = 0; i < n; i++) {
		int j = 0;

		while (j < got && strcmp(r[j].val, want[i]) != 0)
			j++;
		if (j == got)
			fail_msg("topic %s lacks record '%s'", topic, want[i]);
	}
	itkafka_recs_free(r, got);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_route_change_keeps_connections(void **state)
{
	static struct itkafka_resp r;
	const char *before[] = { "m1-before" }, *after[] = { "m2-after" };
	(void)state;

	fx_up(ROUTE("before"), N_CLIENTS);
	publish("r/1", "m1-before");
	assert_topic_holds("before", before, 1);

	long off = log_mark();
	reload_ok(F.g.port, "debug", ROUTE("after"));
	assert_all_alive();
	publish("r/2", "m2-after");
	assert_topic_holds("after", after, 1);
	assert_topic_holds("before", before, 1);

	char *log = log_since(off);
	assert_int_equal(count_in(log, "reload applied"), 1);
	assert_int_equal(count_in(log, "need a restart"), 0);
	free(log);

	/* A reload counter in /metrics is wanted but not required. */
	assert_int_equal(itkafka_http_get(F.g.metrics_port, "/metrics", &r, WAIT_MS), 200);
	bool found = false;
	for (const char *p = strstr(r.raw, "\nkafkagate_"); p; p = strstr(p + 1, "\nkafkagate_")) {
		size_t nl = strcspn(p + 1, " {");

		if (!memmem(p + 1, nl, "reload", 6) || memmem(p + 1, nl, "fail", 4) ||
		    memmem(p + 1, nl, "reject", 6))
			continue;
		found = true;
		const char *eol = p + 1 + strcspn(p + 1, "\n"), *v = eol;

		while (v > p && v[-1] != ' ')
			v--;
		print_message("metrics: %.*s\n", (int)(eol - p - 1), p + 1);
		assert_true(strtod(v, NULL) >= 1.0);
	}
	if (!found)
		print_message("NOTE: /metrics has no reload counter; only the log counts reloads\n");
}

static void test_invalid_config_changes_nothing(void **state)
{
	/* Each bad config also asks for log level error and max_inflight 1:
	 * neither may take effect. */
	static const struct {
		const char *what, *good, *bad; /* good precedes bad in the file */
	} cases[] = {
		{ "syntax error", "limits = { max_inflight = 1; };",
		  "routes = ( { filter = \"r/#\"; topic = ; } );" },
		{ "unknown key", ROUTE("other"), "limits = { max_inflight = 1; bogus_key = 1; };" },
		{ "bad template", "limits = { max_inflight = 1; };",
		  "routes = ( { filter = \"r/#\"; topic = \"${nope}\"; } );" },
	};
	const char *after[] = { "m-before-bad", "m-after-bad" };
	char cfg[2048], line[1024], at[400];
	(void)state;

	fx_up(ROUTE("before"), N_CLIENTS);
	reload_ok(F.g.port, "debug", ROUTE("after"));
	publish("r/1", "m-before-bad");

	long off = log_mark();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char more[512];

		snprintf(more, sizeof(more), "%s\n%s", cases[i].good, cases[i].bad);
		cfg_text(cfg, sizeof(cfg), F.g.port, "error", more);
		/* The bad line's number in the file. */
		int lineno = 1;
		for (const char *p = cfg; p < strstr(cfg, cases[i].bad); p++)
			lineno += *p == '\n';
		snprintf(at, sizeof(at), "%s:%d:", F.g.cfg_path, lineno);
		if (reload(cfg, line, sizeof(line)))
			fail_msg("%s: config applied: %s", cases[i].what, line);
		if (!strstr(line, at))
			fail_msg("%s: rejection does not name %s: %s", cases[i].what, at, line);
		print_message("%s: %s\n", cases[i].what, line);
	}

	/* Route, log level and connections as before. */
	assert_all_alive();
	long pub_off = log_mark();
	publish("r/2", "m-after-bad");
	assert_topic_holds("after", after, 2);
	assert_topic_holds("before", NULL, 0);
	assert_true(log_wait_since(pub_off, "publish client=\"it-reload-pub\" topic=\"r/2\"", 2000));

	/* max_inflight is still 32: a subscriber that does not ack gets all 3. */
	int sub = F.fds[0];
	assert_int_equal(itutil_subscribe(sub, 1, "inv/t", 1), 0);
	for (int i = 0; i < 3; i++)
		publish("inv/t", "x");
	for (int i = 0; i < 3; i++)
		if (recv_publish(sub, 2000) < 0)
			fail_msg("only %d of 3 QoS 1 messages delivered: max_inflight changed", i);

	char *log = log_since(off);
	assert_int_equal(count_in(log, "reload rejected"), 3);
	assert_int_equal(count_in(log, "reload applied"), 0);
	free(log);
}

static void test_log_level_in_place(void **state)
{
	(void)state;

	fx_up(ROUTE("before"), 0);
	reload_ok(F.g.port, "info", ROUTE("before"));
	long off = log_mark();
	publish("r/quiet", "q");
	itutil_sleep_ms(300);
	char *log = log_since(off);
	if (strstr(log, "publish client="))
		fail_msg("debug line logged at level info:\n%s", log);
	free(log);

	reload_ok(F.g.port, "debug", ROUTE("before"));
	off = log_mark();
	publish("r/loud", "l");
	assert_true(log_wait_since(off, "publish client=\"it-reload-pub\" topic=\"r/loud\"", 2000));
}

static void test_max_inflight_in_place(void **state)
{
	(void)state;

	fx_up(ROUTE("before"), 2);
	/* Control: at the default (32) a subscriber that does not ack gets all 3. */
	assert_int_equal(itutil_subscribe(F.fds[0], 1, "lim/a", 1), 0);
	for (int i = 0; i < 3; i++)
		publish("lim/a", "a");
	for (int i = 0; i < 3; i++)
		if (recv_publish(F.fds[0], 2000) < 0)
			fail_msg("control: only %d of 3 delivered before the reload", i);

	reload_ok(F.g.port, "debug", ROUTE("before") "\nlimits = { max_inflight = 1; };");
	assert_int_equal(itutil_subscribe(F.fds[1], 1, "lim/b", 1), 0);
	for (int i = 0; i < 3; i++)
		publish("lim/b", "b");
	for (int i = 0; i < 3; i++) {
		int pid = recv_publish(F.fds[1], 2000);

		if (pid < 0)
			fail_msg("message %d of 3 not delivered after acking the previous one", i + 1);
		if (recv_publish(F.fds[1], 500) >= 0)
			fail_msg("a second unacknowledged message arrived with max_inflight = 1");
		assert_int_equal(itutil_send_ack(F.fds[1], 0x40, (uint16_t)pid), 0);
	}
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Reloads with the listener moved to a new port: "need a restart" naming
 * the listeners; the old port keeps serving, the new one is not bound. */
static int move_listener(void)
{
	int p2 = gw_free_port();
	long off = log_mark();

	assert_true(p2 > 0 && p2 != F.g.port);
	reload_ok(p2, "debug", ROUTE("before"));
	char line[1024];
	const char *needle = "need a restart";
	if (log_wait_line(off, &needle, 1, 1000, line, sizeof(line)) != 0)
		fail_msg("listener change: no \"need a restart\" in the log");
	print_message("%s\n", line);
	assert_non_null(strstr(line, "listeners"));
	return p2;
}

static void test_listener_change_needs_restart(void **state)
{
	(void)state;

	fx_up(ROUTE("before"), 1);
	int p2 = move_listener();
	assert_all_alive();
	int fd = connect_client("it-reload-late");
	close(fd);
	publish("r/x", "still-here");
	assert_false(port_accepts(p2));
}

/* The pending listener change is still not in force on the next reload:
 * the log must say so again rather than fall silent. */
static void test_pending_restart_reported_again(void **state)
{
	(void)state;

	fx_up(ROUTE("before"), 0);
	int p2 = move_listener();
	long off = log_mark();
	reload_ok(p2, "debug", ROUTE("after"));
	itutil_sleep_ms(200);
	char *log = log_since(off);
	int n = count_in(log, "need a restart");
	free(log);
	if (n != 1)
		fail_msg("second reload with the listener still moved (port %d, running on %d): "
			 "\"need a restart\" logged %d times, want 1", p2, F.g.port, n);
}

/* Moving the listener back to the port in use needs no restart: the log
 * must not claim one. */
static void test_reverted_listener_not_reported(void **state)
{
	(void)state;

	fx_up(ROUTE("before"), 0);
	move_listener();
	long off = log_mark();
	reload_ok(F.g.port, "debug", ROUTE("before"));
	itutil_sleep_ms(200);
	char *log = log_since(off);
	int n = count_in(log, "need a restart");
	free(log);
	if (n != 0)
		fail_msg("reload back to the running listener (port %d): \"need a restart\" "
			 "logged %d times, want 0", F.g.port, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_route_change_keeps_connections, fx_down),
		cmocka_unit_test_teardown(test_invalid_config_changes_nothing, fx_down),
		cmocka_unit_test_teardown(test_log_level_in_place, fx_down),
		cmocka_unit_test_teardown(test_max_inflight_in_place, fx_down),
		cmocka_unit_test_teardown(test_listener_change_needs_restart, fx_down),
		cmocka_unit_test_teardown(test_pending_restart_reported_again, fx_down),
		cmocka_unit_test_teardown(test_reverted_listener_not_reported, fx_down),
	};

	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests_name("it_reload", tests, NULL, NULL);
}
