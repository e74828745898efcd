/*
 * it_auth.c - the auth group of the real binary: password files (written by
 * mosquitto_passwd, by hand in the $6$ format, and by `kafkagate passwd`),
 * CONNACK 4/5 refusals and their delay, a brute-force flood from another
 * address that neither delays a right login nor MQTT traffic, the ACL
 * (anonymous, user and pattern rules, deny wins, SUBACK 0x80, wildcard and
 * retained filtering, nothing routed to Kafka for a denied publish), SIGHUP
 * reloads of both files, and a client certificate's CN as the user name.
 *
 * Files live in a temporary directory of this test, named by absolute path
 * in the config. Each test starts the gateway it needs and stops it by PID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define WAIT_MS 5000
#define QUIET_MS 300
#define FLOOD 200
#define FAIL_DELAY_MS 1000
#define FLOOD_DELAY_MS 2000

static struct gw g;
static char D[256];      /* this test's files */

/* ---- files ------------------------------------------------------------------- */

/* D/name, in one of four rotating buffers. */
static const char *fpath(const char *name)
{
	static char buf[4][512];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", D, name);
	return p;
}

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(fpath(name), "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void run(const char *cmd)
{
	int rc = system(cmd);

	if (rc != 0)
		fail_msg("'%s' exited with %d", cmd, rc);
}

/* mosquitto_passwd -b: a $7$ line (PBKDF2-SHA512, 101 rounds). */
static void mosq_passwd(const char *file, bool create, const char *user, const char *pw)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "mosquitto_passwd %s -b '%s' '%s' '%s' >/dev/null 2>&1",
		 create ? "-c" : "", fpath(file), user, pw);
	run(cmd);
}

/* `kafkagate passwd -c --stdin`, with `iterations` rounds. */
static void kg_passwd(const char *file, bool create, const char *user, const char *pw,
		      int iterations)
{
	const char *bin = getenv("KG_BIN") ? getenv("KG_BIN") : "build/kafkagate";
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "echo '%s' | %s passwd %s --stdin --iterations %d '%s' '%s'",
		 pw, bin, create ? "-c" : "", iterations, fpath(file), user);
	run(cmd);
}

/* A mosquitto 1.x line written here: USER:$6$base64(salt)$base64(SHA512(pw || salt)). */
static void append_sha512_line(const char *file, const char *user, const char *pw)
{
	const unsigned char salt[12] = "kafkagate-12";
	unsigned char md[64];
	char s64[32], h64[100], line[256];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha512(), NULL), 1);
	assert_int_equal(EVP_DigestUpdate(ctx, pw, strlen(pw)), 1);
	assert_int_equal(EVP_DigestUpdate(ctx, salt, sizeof(salt)), 1);
	assert_int_equal(EVP_DigestFinal_ex(ctx, md, &mdlen), 1);
	EVP_MD_CTX_free(ctx);
	EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
	EVP_EncodeBlock((unsigned char *)h64, md, (int)mdlen);
	snprintf(line, sizeof(line), "%s:$6$%s$%s\n", user, s64, h64);
	FILE *f = fopen(fpath(file), "a");
	assert_non_null(f);
	assert_true(fputs(line, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/* ---- gateway ------------------------------------------------------------------- */

/* Starts the gateway with metrics and `more` (the auth group, ...). */
static void up(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void up(const char *fmt, ...)
{
	char more[2048], extra[2560];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(more, sizeof(more), fmt, ap);
	va_end(ap);
	g.metrics_port = gw_free_port();
	assert_true(g.metrics_port > 0);
	snprintf(extra, sizeof(extra), "metrics = { address = \"127.0.0.1\"; port = %d; };\n%s",
		 g.metrics_port, more);
	assert_int_equal(gw_start(&g, extra), 0);
}

static int down(void **state)
{
	(void)state;
	return gw_stop(&g) == 0 ? 0 : -1;
}

static double metric(const char *series)
{
	static struct itkafka_resp r;

	assert_int_equal(itkafka_http_get(g.metrics_port, "/metrics", &r, WAIT_MS), 200);
	return itkafka_metric(r.body, series);
}

/* Occurrences of needle in the gateway's log. */
static int log_count(const char *needle)
{
	FILE *f = fopen(g.log_path, "rb");
	char line[4096];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* SIGHUP, then waits for one more needle line than before. */
static void reload_wait(const char *needle)
{
	int before = log_count(needle);
	long long end = itutil_now_ms() + WAIT_MS;

	gw_kill(&g, SIGHUP);
	while (log_count(needle) <= before) {
		if (itutil_now_ms() > end)
			fail_msg("no new \"%s\" in the log after SIGHUP", needle);
		itutil_sleep_ms(20);
	}
}

/* ---- MQTT ------------------------------------------------------------------- */

/* CONNECT from 127.0.0.1; the return code goes to *rc. Returns the fd when
 * it is 0, else -1 (closed). */
static int login(const char *id, const char *user, const char *pw, uint8_t *rc)
{
	struct raw_connect c = { .client_id = id, .clean = true, .keepalive = 60,
				 .username = user, .password = pw };
	int fd = raw_connect_tcp(g.port);

	assert_true(fd >= 0);
	*rc = 0xff;
	if (raw_mqtt_handshake(fd, &c, rc, NULL, WAIT_MS) < 0 || *rc != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int login_ok(const char *id, const char *user, const char *pw)
{
	uint8_t rc;
	int fd = login(id, user, pw, &rc);

	if (fd < 0)
		fail_msg("login id=%s user=%s: CONNACK %u, wanted 0", id, user ? user : "-", rc);
	return fd;
}

static void login_refused(const char *user, const char *pw, uint8_t want)
{
	uint8_t rc;

	assert_int_equal(login("it-auth-refused", user, pw, &rc), -1);
	if (rc != want)
		fail_msg("login user=%s: CONNACK %u, wanted %u", user ? user : "-", rc, want);
}

/* SUBSCRIBE to n filters at QoS 1 in one packet; the SUBACK's codes go to out. */
static void subscribe_n(int fd, uint16_t pid, const char *const *filters, int n, uint8_t *out)
{
	uint8_t pkt[1024], in[256];
	size_t len = 0, body = 2;

	for (int i = 0; i < n; i++)
		body += 2 + strlen(filters[i]) + 1;
	assert_true(body < 128);
	pkt[len++] = 0x82;
	pkt[len++] = (uint8_t)body;
	pkt[len++] = (uint8_t)(pid >> 8);
	pkt[len++] = (uint8_t)pid;
	for (int i = 0; i < n; i++) {
		size_t fl = strlen(filters[i]);
		pkt[len++] = (uint8_t)(fl >> 8);
		pkt[len++] = (uint8_t)fl;
		memcpy(pkt + len, filters[i], fl);
		len += fl;
		pkt[len++] = 1;
	}
	assert_int_equal(raw_send(fd, pkt, len), 0);
	int r = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_int_equal(r, 4 + n);
	assert_int_equal(in[0], 0x90);
	assert_int_equal((in[2] << 8) | in[3], pid);
	memcpy(out, in + 4, (size_t)n);
}

/* One filter; returns its SUBACK code. */
static uint8_t subscribe1(int fd, uint16_t pid, const char *filter)
{
	uint8_t code;

	subscribe_n(fd, pid, &filter, 1, &code);
	return code;
}

static void publish(int fd, const char *topic, const char *payload, uint8_t qos, bool retain)
{
	static uint16_t pid = 1;

	if (++pid == 0)
		pid = 1;
	assert_int_equal(raw_mqtt_publish(fd, topic, payload, strlen(payload), qos, retain, pid), 0);
}

/* The next packet on fd is a PUBLISH on topic (acknowledged); a ping then
 * proves nothing else was queued in between. */
static void expect_topic(int fd, const char *topic)
{
	struct itutil_pkt p;

	assert_int_equal(itutil_recv_acked(fd, &p, WAIT_MS), 0);
	if (strcmp(p.topic, topic) != 0)
		fail_msg("received topic \"%s\", wanted \"%s\"", p.topic, topic);
}

static void expect_nothing_more(int fd)
{
	assert_int_equal(itutil_ping(fd), 0);
	assert_true(itutil_quiet(fd, QUIET_MS));
}

/* ---- passwords ------------------------------------------------------------------ */

static void test_password_formats(void **state)
{
	(void)state;
	mosq_passwd("passwd", true, "alice", "alice-pw");
	append_sha512_line("passwd", "bob", "bob-pw");
	up("auth = { password_file = \"%s\"; fail_delay_ms = 100; };", fpath("passwd"));

	close(login_ok("it-auth-a", "alice", "alice-pw"));       /* $7$, mosquitto_passwd */
	close(login_ok("it-auth-b", "bob", "bob-pw"));           /* $6$, by hand */
	login_refused("alice", "wrong", 4);
	login_refused("bob", "alice-pw", 4);
	login_refused("carol", "alice-pw", 5);                   /* no such user */
	login_refused(NULL, NULL, 5);                            /* anonymous: default false */
	assert_true(gw_log_contains(&g, "reason=wrong_password"));
	assert_false(gw_log_contains(&g, "alice-pw"));           /* passwords never logged */
	assert_int_equal(metric("kafkagate_auth_success_total"), 2);
	assert_int_equal(metric("kafkagate_auth_failures_total{reason=\"wrong_password\"}"), 2);
	assert_int_equal(metric("kafkagate_auth_failures_total{reason=\"unknown_user\"}"), 1);
	assert_int_equal(metric("kafkagate_auth_failures_total{reason=\"anonymous\"}"), 1);
	gw_stop(&g);

	/* A file made by `kafkagate passwd` works the same way. */
	kg_passwd("passwd2", true, "dave", "dave-pw", 1000);
	up("auth = { password_file = \"%s\"; fail_delay_ms = 0; };", fpath("passwd2"));
	close(login_ok("it-auth-d", "dave", "dave-pw"));
	login_refused("dave", "dave-pw2", 4);
}

/* A CONNECT with a wrong password from 127.0.0.2, not read back yet. */
struct guess {
	int fd;
	long long sent_ms;
};

static void guess_send(struct guess *q)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	struct raw_connect c = { .client_id = "", .clean = true, .username = "alice",
				 .password = "guess" };
	uint8_t out[128];
	int one = 1, n = raw_build_connect(out, sizeof(out), &c);

	q->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(q->fd >= 0);
	src.sin_addr.s_addr = htonl(0x7f000002);
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dst.sin_port = htons((uint16_t)g.port);
	assert_int_equal(bind(q->fd, (struct sockaddr *)&src, sizeof(src)), 0);
	assert_int_equal(connect(q->fd, (struct sockaddr *)&dst, sizeof(dst)), 0);
	setsockopt(q->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	q->sent_ms = itutil_now_ms();
	assert_int_equal(raw_send(q->fd, out, (size_t)n), 0);
}

/* Round trip of one QoS 0 message through the gateway, in ms. */
static long long round_trip(int pub, int sub, int i)
{
	struct itutil_pkt p;
	char payload[32];
	long long t0 = itutil_now_ms();

	snprintf(payload, sizeof(payload), "%d", i);
	assert_int_equal(itutil_send_publish(pub, "rt/x", payload, strlen(payload), 0, false, 0), 0);
	assert_int_equal(itutil_recv_publish(sub, &p, WAIT_MS), 0);
	assert_string_equal(p.payload, payload);
	return itutil_now_ms() - t0;
}

static void test_brute_force(void **state)
{
	static struct guess q[FLOOD];
	static struct pollfd pf[FLOOD];
	long long worst_rt = 0, first = -1, last = 0, t0;
	int left = FLOOD;

	(void)state;
	/* 10,000 rounds: ~10 ms a check, so the flood keeps the pool busy for
	 * seconds while the right login and the round trips are measured. The
	 * refusals are due FLOOD_DELAY_MS after each verdict, once the round
	 * trips are done, so that their arrival is seen as it happens. */
	kg_passwd("passwd", true, "alice", "alice-pw", 10000);
	up("auth = { password_file = \"%s\"; fail_delay_ms = %d; };\n"
	   "limits = { connect_timeout = 30; };", fpath("passwd"), FLOOD_DELAY_MS);
	int sub = login_ok("it-auth-rt-sub", "alice", "alice-pw");
	int pub = login_ok("it-auth-rt-pub", "alice", "alice-pw");
	assert_int_equal(itutil_subscribe(sub, 1, "rt/#", 0), 0);

	for (int i = 0; i < FLOOD; i++)
		guess_send(&q[i]);
	t0 = itutil_now_ms();
	close(login_ok("it-auth-right", "alice", "alice-pw"));
	long long right_ms = itutil_now_ms() - t0;
	for (int i = 0; i < 15; i++) {
		long long rt = round_trip(pub, sub, i);
		if (rt > worst_rt)
			worst_rt = rt;
		itutil_sleep_ms(40);
	}
	print_message("right login during the flood: %lld ms; worst round trip: %lld ms\n",
		      right_ms, worst_rt);
	assert_true(right_ms < 1000);
	assert_true(worst_rt < 250);

	/* Every guess is refused with CONNACK 4, no sooner than the delay. */
	long long end = itutil_now_ms() + 30000;
	while (left > 0 && itutil_now_ms() < end) {
		for (int i = 0; i < FLOOD; i++) {
			pf[i].fd = q[i].fd;
			pf[i].events = POLLIN;
			pf[i].revents = 0;
		}
		assert_true(poll(pf, FLOOD, 100) >= 0);
		long long now = itutil_now_ms();
		for (int i = 0; i < FLOOD; i++) {
			uint8_t in[8];
			if (q[i].fd < 0 || !pf[i].revents)
				continue;
			assert_int_equal(raw_recv_packet(q[i].fd, in, sizeof(in), WAIT_MS), 4);
			assert_int_equal(in[0], 0x20);
			assert_int_equal(in[3], 4);
			long long waited = now - q[i].sent_ms;
			if (waited < FLOOD_DELAY_MS)
				fail_msg("guess %d refused after %lld ms, before fail_delay_ms", i, waited);
			if (first < 0 || waited < first)
				first = waited;
			if (waited > last)
				last = waited;
			close(q[i].fd);
			q[i].fd = -1;
			left--;
		}
	}
	print_message("%d guesses refused after %lld to %lld ms\n", FLOOD - left, first, last);
	assert_int_equal(left, 0);
	assert_int_equal(metric("kafkagate_auth_failures_total{reason=\"wrong_password\"}"), FLOOD);
	assert_int_equal(metric("kafkagate_auth_success_total"), 3);
	assert_int_equal(metric("kafkagate_auth_unavailable_total"), 0);
	close(sub);
	close(pub);
}

/* The delay itself, measured on a single guess. */
static void test_refusal_delayed(void **state)
{
	struct guess q;
	uint8_t in[8];

	(void)state;
	mosq_passwd("passwd", true, "alice", "alice-pw");
	up("auth = { password_file = \"%s\"; fail_delay_ms = %d; };", fpath("passwd"),
	   FAIL_DELAY_MS);
	guess_send(&q);
	assert_int_equal(raw_recv_packet(q.fd, in, sizeof(in), 3 * FAIL_DELAY_MS), 4);
	long long waited = itutil_now_ms() - q.sent_ms;
	print_message("refusal after %lld ms (fail_delay_ms = %d)\n", waited, FAIL_DELAY_MS);
	assert_int_equal(in[3], 4);
	assert_true(waited >= FAIL_DELAY_MS);
	assert_true(waited < FAIL_DELAY_MS + 1000);
	close(q.fd);
	/* Right after, a right login from elsewhere is not delayed. */
	long long t0 = itutil_now_ms();
	close(login_ok("it-auth-ok", "alice", "alice-pw"));
	assert_true(itutil_now_ms() - t0 < 500);
}

/* ---- ACL ----------------------------------------------------------------------- */

static const char acl_text[] =
	"# anonymous clients\n"
	"topic read public/#\n"
	"topic write anon/out\n"
	"\n"
	"user alice\n"
	"topic readwrite a/#\n"
	"topic deny a/secret/#\n"
	"topic read shared/#\n"
	"topic deny shared/private\n"
	"topic read anon/#\n"
	"topic deny dev/alice/locked\n"
	"\n"
	"user admin\n"
	"topic readwrite #\n"
	"\n"
	"pattern readwrite dev/%u/#\n"
	"pattern read cid/%c/#\n";

static int acl_start(bool kafka)
{
	char extra[2048];

	mosq_passwd("passwd", true, "alice", "alice-pw");
	mosq_passwd("passwd", false, "admin", "admin-pw");
	write_file("acl", acl_text);
	g.metrics_port = gw_free_port();
	snprintf(extra, sizeof(extra),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "auth = { password_file = \"%s\"; acl_file = \"%s\"; allow_anonymous = true;"
		 " fail_delay_ms = 0; };\n%s",
		 g.metrics_port, fpath("passwd"), fpath("acl"),
		 kafka ? "kafka = { brokers = \"embedded\"; };\n"
			 "routes = ( { filter = \"#\"; topic = \"mqtt-in\"; } );\n" : "");
	return gw_start(&g, extra);
}

static int acl_setup(void **state)
{
	(void)state;
	return acl_start(false);
}

/* With the uplink: QoS 1/2 acks would wait for Kafka, so the publishes
 * that reach it here are QoS 0. */
static int acl_kafka_setup(void **state)
{
	(void)state;
	return acl_start(true);
}

static void test_acl_anonymous(void **state)
{
	(void)state;
	int alice = login_ok("it-acl-alice", "alice", "alice-pw");
	int anon = login_ok("it-acl-anon", NULL, NULL);

	assert_int_equal(subscribe1(alice, 1, "anon/#"), 1);
	assert_int_equal(subscribe1(anon, 1, "public/#"), 1);
	assert_int_equal(subscribe1(anon, 2, "a/#"), 0x80);
	publish(anon, "a/x", "denied", 1, false);              /* PUBACK all the same */
	publish(anon, "anon/out", "ok", 1, false);
	expect_topic(alice, "anon/out");
	expect_nothing_more(alice);
	close(anon);
	close(alice);
}

static void test_acl_denied_publish(void **state)
{
	(void)state;
	int admin = login_ok("it-acl-admin", "admin", "admin-pw");
	int alice = login_ok("it-acl-alice", "alice", "alice-pw");
	double routed0 = metric("kafkagate_uplink_routed_total");
	double denied0 = metric("kafkagate_acl_denied_total{access=\"write\"}");

	assert_int_equal(subscribe1(admin, 1, "#"), 1);
	publish(alice, "x/y", "no rule", 1, false);            /* PUBACK */
	publish(alice, "a/secret/s", "deny rule", 2, false);   /* PUBREC, PUBREL, PUBCOMP */
	publish(alice, "a/secret/t", "deny rule", 0, true);    /* not retained either */
	publish(alice, "a/ok", "granted", 0, false);
	expect_topic(admin, "a/ok");
	expect_nothing_more(admin);
	/* Only a/ok reached the sink: the denied ones came first on this
	 * connection, so they would have been counted before it. */
	long long end = itutil_now_ms() + WAIT_MS;
	while (metric("kafkagate_uplink_routed_total") < routed0 + 1 && itutil_now_ms() < end)
		itutil_sleep_ms(20);
	assert_int_equal(metric("kafkagate_uplink_routed_total"), routed0 + 1);
	assert_int_equal(metric("kafkagate_acl_denied_total{access=\"write\"}"), denied0 + 3);
	assert_true(gw_log_contains(&g, "acl denied client=\"it-acl-alice\" user=\"alice\""));
	/* Logged once per client and topic. */
	publish(alice, "x/y", "again", 0, false);
	assert_int_equal(itutil_ping(alice), 0);
	assert_int_equal(log_count("access=write topic=\"x/y\""), 1);
	close(alice);
	close(admin);
}

static void test_acl_patterns(void **state)
{
	static const char *const filters[] = { "cid/c1/#", "cid/c2/#", "a/#", "b/#", "dev/alice/#" };
	uint8_t codes[5];

	(void)state;
	int admin = login_ok("it-acl-admin", "admin", "admin-pw");
	int alice = login_ok("c1", "alice", "alice-pw");

	assert_int_equal(subscribe1(admin, 1, "dev/#"), 1);
	publish(alice, "dev/bob/t", "not hers", 1, false);
	publish(alice, "dev/alice/locked", "deny wins over the pattern", 1, false);
	publish(alice, "dev/alice/t", "%u", 1, false);
	expect_topic(admin, "dev/alice/t");
	expect_nothing_more(admin);

	/* One SUBSCRIBE: the denied filters get 0x80, the others their QoS. */
	subscribe_n(alice, 7, filters, 5, codes);
	assert_int_equal(codes[0], 1);      /* %c */
	assert_int_equal(codes[1], 0x80);
	assert_int_equal(codes[2], 1);
	assert_int_equal(codes[3], 0x80);
	assert_int_equal(codes[4], 1);      /* %u */
	publish(admin, "cid/c2/x", "not c1's", 1, false);
	publish(admin, "cid/c1/x", "c1's", 1, false);
	expect_topic(alice, "cid/c1/x");
	expect_nothing_more(alice);
	close(alice);
	close(admin);
}

static void test_acl_wildcard_filtered(void **state)
{
	(void)state;
	int admin = login_ok("it-acl-admin", "admin", "admin-pw");
	int alice = login_ok("it-acl-alice", "alice", "alice-pw");
	double read0 = metric("kafkagate_acl_denied_total{access=\"read\"}");

	assert_int_equal(subscribe1(alice, 1, "shared/private"), 0x80);   /* deny wins */
	assert_int_equal(subscribe1(alice, 2, "#"), 1);   /* partly readable: filtered */
	publish(admin, "a/secret/x", "denied", 1, false);
	publish(admin, "shared/private", "denied", 1, false);
	publish(admin, "b/x", "no rule", 1, false);
	publish(admin, "shared/ok", "granted", 1, false);
	publish(admin, "a/ok", "granted", 1, false);
	expect_topic(alice, "shared/ok");
	expect_topic(alice, "a/ok");
	expect_nothing_more(alice);
	assert_true(metric("kafkagate_acl_denied_total{access=\"read\"}") >= read0 + 3);
	close(alice);
	close(admin);
}

static void test_acl_retained(void **state)
{
	(void)state;
	int admin = login_ok("it-acl-admin", "admin", "admin-pw");

	publish(admin, "a/secret/r", "retained, denied", 1, true);
	publish(admin, "a/r", "retained, granted", 1, true);
	int alice = login_ok("it-acl-alice", "alice", "alice-pw");
	struct itutil_pkt p;
	assert_int_equal(subscribe1(alice, 1, "a/#"), 1);
	assert_int_equal(itutil_recv_acked(alice, &p, WAIT_MS), 0);
	assert_string_equal(p.topic, "a/r");
	assert_true(p.retain);
	expect_nothing_more(alice);
	/* The admin sees both: the store kept the denied one for those who may. */
	assert_int_equal(subscribe1(admin, 2, "a/#"), 1);
	assert_int_equal(itutil_recv_acked(admin, &p, WAIT_MS), 0);
	assert_int_equal(itutil_recv_acked(admin, &p, WAIT_MS), 0);
	expect_nothing_more(admin);
	close(alice);
	close(admin);
}

/* ---- reload ------------------------------------------------------------------- */

static void test_reload(void **state)
{
	(void)state;
	mosq_passwd("passwd", true, "alice", "old-pw");
	mosq_passwd("passwd", false, "admin", "admin-pw");
	write_file("acl", "user alice\ntopic readwrite a/#\nuser admin\ntopic readwrite #\n");
	up("auth = { password_file = \"%s\"; acl_file = \"%s\"; fail_delay_ms = 0; };",
	   fpath("passwd"), fpath("acl"));
	int admin = login_ok("it-rl-admin", "admin", "admin-pw");
	int alice = login_ok("it-rl-alice", "alice", "old-pw");
	assert_int_equal(subscribe1(admin, 1, "#"), 1);
	publish(alice, "a/1", "before", 1, false);
	expect_topic(admin, "a/1");

	mosq_passwd("passwd", false, "alice", "new-pw");
	write_file("acl", "user alice\ntopic readwrite b/#\nuser admin\ntopic readwrite #\n");
	reload_wait("auth reloaded");
	login_refused("alice", "old-pw", 4);
	close(login_ok("it-rl-alice2", "alice", "new-pw"));
	/* The connection made before the reload follows the new ACL. */
	publish(alice, "a/2", "now denied", 1, false);
	publish(alice, "b/2", "now granted", 1, false);
	expect_topic(admin, "b/2");
	expect_nothing_more(admin);

	/* A bad ACL file: the reload is refused with FILE:LINE, the old rules stay. */
	write_file("acl", "user alice\ntopic readwrite c/#\ntopc read x\n");
	reload_wait("reload rejected");
	char want[600];
	snprintf(want, sizeof(want), "%s:3: ", fpath("acl"));
	assert_true(gw_log_contains(&g, want));
	publish(alice, "c/3", "still denied", 1, false);
	publish(alice, "b/3", "still granted", 1, false);
	expect_topic(admin, "b/3");
	expect_nothing_more(admin);
	close(login_ok("it-rl-alice3", "alice", "new-pw"));
	close(alice);
	close(admin);
}

/* ---- TLS client certificates ------------------------------------------------------ */

struct tlsc {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
};

static void tlsc_close(struct tlsc *t)
{
	if (t->ssl)
		SSL_free(t->ssl);
	if (t->ctx)
		SSL_CTX_free(t->ctx);
	if (t->fd >= 0)
		close(t->fd);
	t->ssl = NULL;
	t->ctx = NULL;
	t->fd = -1;
}

/* TLS to 127.0.0.1:port with the client certificate `name` (.crt/.key).
 * Returns 0 once the handshake is done, -1 if it failed. */
static int tlsc_open(struct tlsc *t, int port, const char *name)
{
	char crt[600], key[600];
	struct timeval tv = { 5, 0 };

	snprintf(crt, sizeof(crt), "%s/certs/%s.crt", D, name);
	snprintf(key, sizeof(key), "%s/certs/%s.key", D, name);
	t->ssl = NULL;
	t->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(t->ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, fpath("certs/ca.crt"), NULL), 1);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	assert_int_equal(SSL_CTX_use_certificate_file(t->ctx, crt, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
	t->fd = raw_connect_tcp(port);
	assert_true(t->fd >= 0);
	setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	t->ssl = SSL_new(t->ctx);
	assert_non_null(t->ssl);
	SSL_set_fd(t->ssl, t->fd);
	SSL_set_tlsext_host_name(t->ssl, "localhost");
	int r = SSL_connect(t->ssl);
	ERR_clear_error();
	return r == 1 ? 0 : -1;
}

static int tlsc_send(struct tlsc *t, const void *p, size_t n)
{
	return SSL_write(t->ssl, p, (int)n) == (int)n ? 0 : -1;
}

static int tlsc_read(struct tlsc *t, uint8_t *p, size_t n)
{
	for (size_t got = 0; got < n;) {
		int r = SSL_read(t->ssl, p + got, (int)(n - got));
		if (r <= 0) {
			ERR_clear_error();
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/* One MQTT packet into buf; returns its length or -1 (closed, timeout). */
static int tlsc_packet(struct tlsc *t, uint8_t *buf, size_t cap)
{
	size_t len = 0, h = 1;
	int mul = 1;

	if (tlsc_read(t, buf, 1) < 0)
		return -1;
	do {
		if (h > 4 || tlsc_read(t, buf + h, 1) < 0)
			return -1;
		len += (size_t)(buf[h] & 0x7f) * (size_t)mul;
		mul *= 128;
	} while (buf[h++] & 0x80);
	if (h + len > cap || tlsc_read(t, buf + h, len) < 0)
		return -1;
	return (int)(h + len);
}

/* CONNECT over TLS; returns the CONNACK code, or -1 when none came. */
static int tlsc_connect(struct tlsc *t, const char *id, const char *user, const char *pw)
{
	struct raw_connect c = { .client_id = id, .clean = true, .keepalive = 60,
				 .username = user, .password = pw };
	uint8_t out[256], in[16];
	int n = raw_build_connect(out, sizeof(out), &c);

	if (tlsc_send(t, out, (size_t)n) < 0 || tlsc_packet(t, in, sizeof(in)) != 4 ||
	    in[0] != 0x20)
		return -1;
	return in[3];
}

static void tlsc_publish1(struct tlsc *t, const char *topic, uint16_t pid)
{
	uint8_t out[256], in[16];
	int n = raw_build_publish(out, sizeof(out), 4, topic, "x", 1, 1, false, false, pid);

	assert_int_equal(tlsc_send(t, out, (size_t)n), 0);
	assert_int_equal(tlsc_packet(t, in, sizeof(in)), 4);
	assert_int_equal(in[0], 0x40);       /* PUBACK, denied or not */
}

static uint8_t tlsc_subscribe1(struct tlsc *t, const char *filter, uint16_t pid)
{
	uint8_t out[256], in[16];
	int n = raw_build_subscribe(out, sizeof(out), 4, pid, filter, 1);

	assert_int_equal(tlsc_send(t, out, (size_t)n), 0);
	assert_int_equal(tlsc_packet(t, in, sizeof(in)), 5);
	assert_int_equal(in[0], 0x90);
	return in[4];
}

static void test_tls_identity(void **state)
{
	struct tlsc t = { .fd = -1 };
	char cmd[600], cfg[4096];
	int tls_port = gw_free_port();

	(void)state;
	snprintf(cmd, sizeof(cmd), "scripts/gen-test-certs.sh '%s/certs'", D);
	run(cmd);
	mosq_passwd("passwd", true, "admin", "admin-pw");
	write_file("acl", "user client-cn\ntopic readwrite certs/#\nuser admin\ntopic readwrite #\n");
	up("auth = { password_file = \"%s\"; acl_file = \"%s\"; fail_delay_ms = 0; };",
	   fpath("passwd"), fpath("acl"));
	/* gw_start() writes one plain listener: add the TLS one and restart. */
	snprintf(cfg, sizeof(cfg),
		 "listeners = ( { address = \"127.0.0.1\"; port = %d; },\n"
		 "  { address = \"127.0.0.1\"; port = %d; tls = { cert = \"%s/certs/server.crt\";"
		 " key = \"%s/certs/server.key\"; ca = \"%s/certs/ca.crt\";"
		 " require_client_cert = true; identity = \"cn\"; }; } );\n"
		 "log = { level = \"debug\"; };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "auth = { password_file = \"%s\"; acl_file = \"%s\"; fail_delay_ms = 0; };\n",
		 g.port, tls_port, D, D, D, g.metrics_port, fpath("passwd"), fpath("acl"));
	FILE *f = fopen(g.cfg_path, "w");
	assert_non_null(f);
	assert_true(fputs(cfg, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(gw_restart(&g), 0);

	int admin = login_ok("it-tls-admin", "admin", "admin-pw");
	assert_int_equal(subscribe1(admin, 1, "#"), 1);

	/* No user name: the certificate's CN is the user, and its ACL applies. */
	assert_int_equal(tlsc_open(&t, tls_port, "client"), 0);
	assert_int_equal(tlsc_connect(&t, "it-tls-1", NULL, NULL), 0);
	assert_int_equal(tlsc_subscribe1(&t, "certs/in/#", 1), 1);
	assert_int_equal(tlsc_subscribe1(&t, "other/#", 2), 0x80);
	tlsc_publish1(&t, "other/x", 3);
	tlsc_publish1(&t, "certs/x", 4);
	expect_topic(admin, "certs/x");
	expect_nothing_more(admin);
	tlsc_close(&t);

	/* A user name and a wrong password change nothing: the certificate
	 * decides, the password is not checked (use_identity_as_username). */
	assert_int_equal(tlsc_open(&t, tls_port, "client"), 0);
	assert_int_equal(tlsc_connect(&t, "it-tls-2", "admin", "wrong"), 0);
	tlsc_publish1(&t, "other/y", 5);
	tlsc_publish1(&t, "certs/y", 6);
	expect_topic(admin, "certs/y");
	expect_nothing_more(admin);
	tlsc_close(&t);
	assert_true(gw_log_contains(&g, "user=\"client-cn\" "));

	/* A certificate from another CA never gets as far as CONNECT. */
	int r = tlsc_open(&t, tls_port, "other-client");
	if (r == 0)
		assert_int_equal(tlsc_connect(&t, "it-tls-3", NULL, NULL), -1);
	tlsc_close(&t);
	assert_int_equal(metric("kafkagate_auth_success_total"), 3);
	close(admin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_password_formats, down),
		cmocka_unit_test_teardown(test_refusal_delayed, down),
		cmocka_unit_test_teardown(test_brute_force, down),
		cmocka_unit_test_setup_teardown(test_acl_anonymous, acl_setup, down),
		cmocka_unit_test_setup_teardown(test_acl_denied_publish, acl_kafka_setup, down),
		cmocka_unit_test_setup_teardown(test_acl_patterns, acl_setup, down),
		cmocka_unit_test_setup_teardown(test_acl_wildcard_filtered, acl_setup, down),
		cmocka_unit_test_setup_teardown(test_acl_retained, acl_setup, down),
		cmocka_unit_test_teardown(test_reload, down),
		cmocka_unit_test_teardown(test_tls_identity, down),
	};
	char tmpl[] = "/tmp/it_auth.XXXXXX";

	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(D, sizeof(D), "%s", tmpl);
	int rc = cmocka_run_group_tests_name("it_auth", tests, NULL, NULL);
	if (!getenv("KG_KEEP")) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", D);
		if (system(cmd) != 0)
			fprintf(stderr, "it_auth: could not remove %s\n", D);
	}
	return rc;
}
