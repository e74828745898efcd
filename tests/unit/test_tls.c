/*
 * test_tls.c - the TLS layer against an OpenSSL client over a socketpair,
 * both ends non-blocking and driven by one poll loop in this thread: context
 * errors (missing, unreadable and wrong files, a key of another
 * certificate), handshakes and data both ways (partial writes, moved write
 * buffers, bytes pending inside OpenSSL), refused protocol versions and
 * ciphers, client certificates (missing, unknown CA, CN and SAN identities),
 * close_notify and plain EOF, and reload under live connections.
 * Certificates come from scripts/gen-test-certs.sh, run into a temp dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "transport/tls.h"

static char dir[64];

/* DIR/name in one of a few rotating buffers, so that a call can take two. */
static const char *path(const char *name)
{
	static char bufs[4][128];
	static int next;
	char *p = bufs[next++ % 4];
	snprintf(p, sizeof(bufs[0]), "%s/%s", dir, name);
	return p;
}

static int setup(void **state)
{
	char cmd[256];
	(void)state;
	signal(SIGPIPE, SIG_IGN); /* as the daemon does: OpenSSL writes with write(2) */
	snprintf(dir, sizeof(dir), "%s/kg-tls.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "scripts/gen-test-certs.sh %s", dir);
	if (system(cmd) != 0)
		return -1;
	/* Files for the error cases. */
	FILE *f = fopen(path("garbage.pem"), "w");
	if (!f)
		return -1;
	fputs("not a certificate\n", f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct tls_opts server_opts(const char *cert, const char *key, const char *ca, bool require)
{
	return (struct tls_opts){ .cert = path(cert), .key = path(key), .ca = ca ? path(ca) : NULL,
				  .require_client_cert = require };
}

static void assert_ctx_error(struct tls_opts o, const char *want)
{
	char err[512] = "";
	SSL_CTX *ctx = tls_ctx_new(&o, err, sizeof(err));
	if (ctx || strcmp(err, want) != 0)
		fail_msg("got \"%s\", want \"%s\"", err, want);
	assert_int_equal(ERR_peek_error(), 0); /* nothing left in the error queue */
	assert_null(tls_server_new(&o, err, sizeof(err)));
	assert_string_equal(err, want);
}

static void test_ctx_errors(void **state)
{
	char want[512];
	(void)state;

	snprintf(want, sizeof(want), "cannot read certificate %s: No such file or directory", path("x.crt"));
	assert_ctx_error(server_opts("x.crt", "server.key", NULL, false), want);
	snprintf(want, sizeof(want), "cannot read certificate %s/: Is a directory", dir);
	assert_ctx_error(server_opts("", "server.key", NULL, false), want);
	snprintf(want, sizeof(want), "cannot read certificate %s: no PEM certificate in it",
		 path("garbage.pem"));
	assert_ctx_error(server_opts("garbage.pem", "server.key", NULL, false), want);
	snprintf(want, sizeof(want), "cannot read key %s: No such file or directory", path("x.key"));
	assert_ctx_error(server_opts("server.crt", "x.key", NULL, false), want);
	snprintf(want, sizeof(want), "cannot read key %s: no unencrypted PEM private key in it",
		 path("server.crt"));
	assert_ctx_error(server_opts("server.crt", "server.crt", NULL, false), want);
	snprintf(want, sizeof(want), "key %s does not match certificate %s", path("mismatch.key"),
		 path("server.crt"));
	assert_ctx_error(server_opts("server.crt", "mismatch.key", NULL, false), want);
	snprintf(want, sizeof(want), "key %s does not match certificate %s", path("client.key"),
		 path("server.crt"));
	assert_ctx_error(server_opts("server.crt", "client.key", NULL, false), want);
	snprintf(want, sizeof(want), "cannot read CA %s: No such file or directory", path("x.crt"));
	assert_ctx_error(server_opts("server.crt", "server.key", "x.crt", true), want);
	snprintf(want, sizeof(want), "cannot read CA %s: no PEM certificate in it", path("garbage.pem"));
	assert_ctx_error(server_opts("server.crt", "server.key", "garbage.pem", false), want);
	snprintf(want, sizeof(want), "cannot read CA %s: no PEM certificate in it", path("ca.key"));
	assert_ctx_error(server_opts("server.crt", "server.key", "ca.key", false), want);

	struct tls_opts o = server_opts("server.crt", "server.key", NULL, true);
	assert_ctx_error(o, "requiring client certificates needs a CA file");
	o.cert = NULL;
	assert_ctx_error(o, "TLS needs a certificate and a key");
}

/* ---- A server tls_conn and an OpenSSL client on a socketpair ---- */

struct pair {
	int fd[2];  /* [0] server, [1] client */
	struct tls_conn *s;
	SSL *c;
	int s_res;  /* tls_conn_handshake()'s last result */
	bool c_ok;  /* the client finished its handshake */
};

static SSL_CTX *client_ctx(const char *cert, int max_version, const char *ciphers)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, path("ca.crt"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (cert) {
		char key[64];
		snprintf(key, sizeof(key), "%.*s.key", (int)(strlen(cert) - 4), cert);
		assert_int_equal(SSL_CTX_use_certificate_file(ctx, path(cert), SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path(key), SSL_FILETYPE_PEM), 1);
	}
	if (max_version) {
		SSL_CTX_set_min_proto_version(ctx, 0);
		SSL_CTX_set_max_proto_version(ctx, max_version);
	}
	if (ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
	return ctx;
}

/* Waits until either end is ready for the poll events given for it. */
static void wait_for(struct pair *p, short ev0, short ev1)
{
	struct pollfd pf[2] = { { p->fd[0], ev0, 0 }, { p->fd[1], ev1, 0 } };
	assert_true(poll(pf, 2, 5000) > 0); /* else both ends wait: a deadlock */
}

static short s_events(int res) { return res == TLS_WANT_WRITE ? POLLOUT : POLLIN; }
static short c_events(int err) { return err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN; }

/* Opens a pair and runs both handshakes to their end. */
static void pair_open(struct pair *p, struct tls_server *ts, SSL_CTX *cctx)
{
	int c_err = SSL_ERROR_WANT_READ;
	bool c_done = false;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd), 0);
	p->s = tls_conn_new(ts, p->fd[0]);
	p->c = SSL_new(cctx);
	assert_non_null(p->s);
	assert_non_null(p->c);
	SSL_set_fd(p->c, p->fd[1]);
	SSL_set_connect_state(p->c);
	SSL_set1_host(p->c, "localhost");
	assert_string_equal(tls_conn_version(p->s), "");
	p->s_res = TLS_WANT_READ;
	p->c_ok = false;
	for (;;) {
		if (p->s_res == TLS_WANT_READ || p->s_res == TLS_WANT_WRITE)
			p->s_res = tls_conn_handshake(p->s);
		if (!c_done) {
			int r = SSL_do_handshake(p->c);
			c_err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(p->c, r);
			c_done = c_err != SSL_ERROR_WANT_READ && c_err != SSL_ERROR_WANT_WRITE;
			p->c_ok = r == 1;
		}
		bool s_done = p->s_res == TLS_OK || p->s_res == TLS_ERR;
		if (s_done && c_done)
			break;
		/* TLS 1.3: a client may finish before the server refuses its cert. */
		if (s_done && p->s_res == TLS_ERR && p->c_ok)
			break;
		wait_for(p, s_done ? 0 : s_events(p->s_res), c_done ? 0 : c_events(c_err));
	}
	ERR_clear_error();
}

static void pair_close(struct pair *p)
{
	tls_conn_free(p->s);
	SSL_free(p->c);
	close(p->fd[0]);
	close(p->fd[1]);
}

static const char *server_error(const struct pair *p)
{
	static char err[256];
	return tls_conn_error(p->s, err, sizeof(err));
}

/* Sends n bytes server to client: the server offers its bytes again from
 * another copy after each TLS_WANT_* (the buffer moved), the client reads. */
static void to_client(struct pair *p, size_t n)
{
	uint8_t *src[2] = { malloc(n), malloc(n) }, *dst = malloc(n);
	size_t sent = 0, got = 0;
	int which = 0, blocked = 0;

	assert_true(src[0] && src[1] && dst);
	for (size_t i = 0; i < n; i++)
		src[0][i] = src[1][i] = (uint8_t)(i * 31 + (i >> 10));
	while (got < n) {
		int s_res = 0;
		ssize_t w = 1;
		/* Write until the socket is full, then read until it is empty. */
		while (sent < n && (w = tls_conn_write(p->s, src[which] + sent, n - sent)) > 0)
			sent += (size_t)w;
		if (w <= 0) {
			assert_true(w == TLS_WANT_WRITE || w == TLS_WANT_READ);
			s_res = (int)w;
			which ^= 1;
			blocked++;
		}
		int r, progress = 0;
		while ((r = SSL_read(p->c, dst + got, (int)(n - got))) > 0) {
			got += (size_t)r;
			progress = 1;
		}
		assert_int_equal(SSL_get_error(p->c, r), SSL_ERROR_WANT_READ);
		if (s_res && !progress)
			wait_for(p, s_events(s_res), POLLIN);
	}
	assert_memory_equal(dst, src[0], n);
	if (n > 1 << 20)
		assert_true(blocked > 0); /* the socket filled up: the retry path ran */
	free(src[0]);
	free(src[1]);
	free(dst);
}

/* Sends n bytes client to server; the server reads in small pieces and
 * drains what OpenSSL holds before it waits. */
static void to_server(struct pair *p, size_t n)
{
	uint8_t *src = malloc(n), *dst = malloc(n);
	size_t sent = 0, got = 0;
	int pending_seen = 0;

	assert_true(src && dst);
	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 17 + 3);
	while (got < n) {
		int c_err = SSL_ERROR_NONE;
		if (sent < n) {
			int w = SSL_write(p->c, src + sent, (int)(n - sent));
			if (w > 0)
				sent += (size_t)w;
			else
				c_err = SSL_get_error(p->c, w);
			assert_true(w > 0 || c_err == SSL_ERROR_WANT_WRITE);
		}
		ssize_t r;
		while ((r = tls_conn_read(p->s, dst + got, n - got < 1000 ? n - got : 1000)) > 0) {
			got += (size_t)r;
			pending_seen += tls_conn_pending(p->s) > 0;
		}
		assert_int_equal(r, TLS_WANT_READ);
		assert_int_equal(tls_conn_pending(p->s), 0);
		if (c_err)
			wait_for(p, POLLIN, POLLOUT);
	}
	assert_memory_equal(dst, src, n);
	if (n > 1000)
		assert_true(pending_seen > 0);
	free(src);
	free(dst);
}

static long peer_serial(const struct pair *p)
{
	X509 *cert = SSL_get0_peer_certificate(p->c);
	assert_non_null(cert);
	return ASN1_INTEGER_get(X509_get0_serialNumber(cert));
}

static struct tls_server *server(struct tls_opts o)
{
	char err[256];
	struct tls_server *ts = tls_server_new(&o, err, sizeof(err));
	if (!ts)
		fail_msg("%s", err);
	return ts;
}

static void test_handshake_and_data(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	SSL_CTX *cctx = client_ctx(NULL, 0, NULL);
	struct pair p;
	char id[64];
	(void)state;

	pair_open(&p, ts, cctx);
	assert_int_equal(p.s_res, TLS_OK);
	assert_true(p.c_ok);
	assert_string_equal(tls_conn_version(p.s), "TLSv1.3");
	assert_string_equal(tls_conn_cipher(p.s), SSL_get_cipher_name(p.c));
	assert_int_equal(peer_serial(&p), 0x1001);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_CN, id, sizeof(id)), -1);
	to_client(&p, 10);
	to_server(&p, 10);
	to_client(&p, 4 << 20);
	to_server(&p, 3 << 20);
	to_client(&p, 1);

	/* The server closes cleanly; the client sees close_notify. */
	assert_int_equal(tls_conn_shutdown(p.s), TLS_OK);
	char b[8];
	assert_int_equal(SSL_read(p.c, b, sizeof(b)), 0);
	assert_int_equal(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
	/* And the client's close_notify reaches the server. */
	SSL_shutdown(p.c);
	assert_int_equal(tls_conn_read(p.s, b, sizeof(b)), TLS_CLOSED);
	assert_string_equal(server_error(&p), "closed by peer");
	pair_close(&p);

	/* A client that goes away with our session ticket unread: a reset. */
	pair_open(&p, ts, cctx);
	to_server(&p, 100);
	close(p.fd[1]);
	p.fd[1] = -1;
	assert_int_equal(tls_conn_read(p.s, b, sizeof(b)), TLS_ERR);
	assert_string_equal(server_error(&p), "Connection reset by peer");
	pair_close(&p);

	/* A client that just goes away. */
	pair_open(&p, ts, cctx);
	to_client(&p, 100);
	to_server(&p, 100);
	close(p.fd[1]);
	p.fd[1] = -1;
	assert_int_equal(tls_conn_read(p.s, b, sizeof(b)), TLS_CLOSED);
	assert_string_equal(server_error(&p), "peer closed without close_notify");
	assert_int_equal(tls_conn_shutdown(p.s), TLS_ERR);
	pair_close(&p);

	/* Writing to a reset connection fails with the system's word for it. */
	pair_open(&p, ts, cctx);
	close(p.fd[1]);
	p.fd[1] = -1;
	static uint8_t big[64 << 10];
	ssize_t w;
	while ((w = tls_conn_write(p.s, big, sizeof(big))) > 0)
		;
	assert_int_equal(w, TLS_ERR);
	assert_string_equal(server_error(&p), "Broken pipe");
	pair_close(&p);

	SSL_CTX_free(cctx);
	tls_server_free(ts);
}

static void test_tls12_and_ciphers(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	SSL_CTX *cctx = client_ctx(NULL, TLS1_2_VERSION, NULL);
	struct pair p;
	(void)state;

	pair_open(&p, ts, cctx);
	assert_int_equal(p.s_res, TLS_OK);
	assert_string_equal(tls_conn_version(p.s), "TLSv1.2");
	assert_non_null(strstr(tls_conn_cipher(p.s), "ECDHE-ECDSA-"));
	assert_true(strstr(tls_conn_cipher(p.s), "GCM") || strstr(tls_conn_cipher(p.s), "CHACHA20"));
	to_client(&p, 100000);
	to_server(&p, 100000);
	pair_close(&p);
	SSL_CTX_free(cctx);

	/* CBC suites are not offered. */
	cctx = client_ctx(NULL, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA");
	pair_open(&p, ts, cctx);
	assert_int_equal(p.s_res, TLS_ERR);
	assert_false(p.c_ok);
	assert_string_equal(server_error(&p), "no shared cipher");
	pair_close(&p);
	SSL_CTX_free(cctx);
	tls_server_free(ts);
}

/* TLS 1.0 and 1.1 clients, allowed on their side by security level 0, so
 * that the refusal is the server's. */
static void test_old_versions_refused(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	static const int versions[] = { TLS1_VERSION, TLS1_1_VERSION };
	(void)state;

	for (size_t i = 0; i < 2; i++) {
		SSL_CTX *cctx = client_ctx(NULL, versions[i], "ALL:@SECLEVEL=0");
		struct pair p;
		pair_open(&p, ts, cctx);
		assert_int_equal(p.s_res, TLS_ERR);
		assert_false(p.c_ok);
		assert_string_equal(server_error(&p),
				    "protocol version (client offers neither TLS 1.2 nor 1.3)");
		pair_close(&p);
		SSL_CTX_free(cctx);
	}
	tls_server_free(ts);
}

static void test_not_tls(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	static const char *const hello[] = {
		"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test",
	};
	(void)state;

	for (size_t i = 0; i < 2; i++) {
		int fd[2];
		char err[128];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
		struct tls_conn *c = tls_conn_new(ts, fd[0]);
		assert_int_equal(tls_conn_handshake(c), TLS_WANT_READ);
		assert_true(write(fd[1], hello[i], strlen(hello[i]) + 1) > 0);
		shutdown(fd[1], SHUT_WR);
		/* HTTP is recognised at once; MQTT reads as a record header
		 * announcing 1101 bytes, so only the EOF ends it (or the
		 * caller's handshake timeout). */
		assert_int_equal(tls_conn_handshake(c), i == 0 ? TLS_ERR : TLS_CLOSED);
		assert_string_equal(tls_conn_error(c, err, sizeof(err)),
				    i == 0 ? "plain HTTP on a TLS port" : "peer closed without close_notify");
		tls_conn_free(c);
		close(fd[0]);
		close(fd[1]);
	}
	tls_server_free(ts);
}

static void test_client_certs(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", "ca.crt", true));
	SSL_CTX *none = client_ctx(NULL, 0, NULL), *good = client_ctx("client.crt", 0, NULL);
	SSL_CTX *stranger = client_ctx("other-client.crt", 0, NULL);
	SSL_CTX *none12 = client_ctx(NULL, TLS1_2_VERSION, NULL);
	struct pair p;
	char id[64];
	(void)state;

	pair_open(&p, ts, none);
	assert_int_equal(p.s_res, TLS_ERR);
	assert_string_equal(server_error(&p), "no client certificate");
	pair_close(&p);
	pair_open(&p, ts, none12);
	assert_int_equal(p.s_res, TLS_ERR);
	assert_false(p.c_ok);
	assert_string_equal(server_error(&p), "no client certificate");
	pair_close(&p);

	pair_open(&p, ts, stranger);
	assert_int_equal(p.s_res, TLS_ERR);
	assert_string_equal(server_error(&p), "unknown CA");
	pair_close(&p);

	pair_open(&p, ts, good);
	assert_int_equal(p.s_res, TLS_OK);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_CN, id, sizeof(id)), 9);
	assert_string_equal(id, "client-cn");
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_SAN, id, sizeof(id)), 18);
	assert_string_equal(id, "client-san.example");
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_NONE, id, sizeof(id)), -1);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_CN, id, 10), 9);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_CN, id, 9), -1);
	to_server(&p, 5000);
	pair_close(&p);
	tls_server_free(ts);

	/* A CA without requiring: a certificate is optional, a bad one refused. */
	ts = server(server_opts("server.crt", "server.key", "ca.crt", false));
	pair_open(&p, ts, none);
	assert_int_equal(p.s_res, TLS_OK);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_CN, id, sizeof(id)), -1);
	to_server(&p, 10);
	pair_close(&p);
	pair_open(&p, ts, good);
	assert_int_equal(p.s_res, TLS_OK);
	assert_int_equal(tls_conn_identity(p.s, TLS_ID_SAN, id, sizeof(id)), 18);
	pair_close(&p);
	pair_open(&p, ts, stranger);
	assert_int_equal(p.s_res, TLS_ERR);
	assert_string_equal(server_error(&p), "unknown CA");
	pair_close(&p);

	SSL_CTX_free(none);
	SSL_CTX_free(good);
	SSL_CTX_free(stranger);
	SSL_CTX_free(none12);
	tls_server_free(ts);
}

static void test_reload(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	SSL_CTX *cctx = client_ctx(NULL, 0, NULL), *good = client_ctx("client.crt", 0, NULL);
	struct tls_opts o;
	struct pair old, fresh;
	char err[256];
	(void)state;

	pair_open(&old, ts, cctx);
	assert_int_equal(peer_serial(&old), 0x1001);

	o = server_opts("server2.crt", "server2.key", NULL, false);
	assert_int_equal(tls_server_reload(ts, &o, err, sizeof(err)), 0);
	pair_open(&fresh, ts, cctx);
	assert_int_equal(fresh.s_res, TLS_OK);
	assert_int_equal(peer_serial(&fresh), 0x1002);
	to_client(&old, 2 << 20); /* the old connection lives on its old context */
	to_server(&old, 1 << 20);
	to_client(&fresh, 1000);
	pair_close(&fresh);

	/* A failed reload keeps what was there. */
	o = server_opts("server2.crt", "server.key", NULL, false);
	assert_int_equal(tls_server_reload(ts, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not match"));
	pair_open(&fresh, ts, cctx);
	assert_int_equal(peer_serial(&fresh), 0x1002);
	pair_close(&fresh);

	/* Now requiring client certificates: new handshakes only. */
	o = server_opts("server.crt", "server.key", "ca.crt", true);
	assert_int_equal(tls_server_reload(ts, &o, err, sizeof(err)), 0);
	pair_open(&fresh, ts, cctx);
	assert_int_equal(fresh.s_res, TLS_ERR);
	pair_close(&fresh);
	pair_open(&fresh, ts, good);
	assert_int_equal(fresh.s_res, TLS_OK);
	assert_int_equal(peer_serial(&fresh), 0x1001);
	pair_close(&fresh);
	to_server(&old, 1000);
	to_client(&old, 1000);

	tls_server_free(ts); /* connections outlive their server */
	to_client(&old, 1000);
	pair_close(&old);
	SSL_CTX_free(cctx);
	SSL_CTX_free(good);
}

/* Workers make connections while the main thread reloads. */
struct churn {
	struct tls_server *ts;
	int made;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	for (int i = 0; i < 3000; i++) {
		struct tls_conn *c = tls_conn_new(ch->ts, 0);
		ch->made += c != NULL;
		tls_conn_free(c);
	}
	return NULL;
}

static void test_reload_threads(void **state)
{
	struct tls_server *ts = server(server_opts("server.crt", "server.key", NULL, false));
	struct churn ch[4];
	pthread_t th[4];
	char err[256];
	(void)state;

	for (int i = 0; i < 4; i++) {
		ch[i] = (struct churn){ ts, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, churn_main, &ch[i]), 0);
	}
	for (int i = 0; i < 30; i++) {
		struct tls_opts o = server_opts(i % 2 ? "server.crt" : "server2.crt",
						i % 2 ? "server.key" : "server2.key", NULL, false);
		assert_int_equal(tls_server_reload(ts, &o, err, sizeof(err)), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ch[i].made, 3000);
	}
	tls_server_free(ts);
}

/* ---- The client side (upstream brokers): both ends ours ---- */

/* Runs a tls_conn_new_client() handshake for name against server ts. Returns
 * the client's result (TLS_OK or TLS_ERR) and its error text in err. */
static int client_handshake(struct tls_server *ts, SSL_CTX *cctx, const char *name, char *err,
			    size_t errlen)
{
	int fd[2], s_res = TLS_WANT_READ, c_res = TLS_WANT_READ;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0);
	struct tls_conn *s = tls_conn_new(ts, fd[0]), *c = tls_conn_new_client(cctx, fd[1], name);
	assert_non_null(s);
	assert_non_null(c);
	for (int i = 0; i < 1000; i++) {
		bool s_done = s_res == TLS_OK || s_res == TLS_ERR || s_res == TLS_CLOSED;
		bool c_done = c_res == TLS_OK || c_res == TLS_ERR || c_res == TLS_CLOSED;
		if (c_done && (s_done || c_res != TLS_OK))
			break;
		if (!s_done)
			s_res = tls_conn_handshake(s);
		if (!c_done)
			c_res = tls_conn_handshake(c);
		if (!(s_res == TLS_OK || s_res == TLS_ERR) || !(c_res == TLS_OK || c_res == TLS_ERR)) {
			struct pollfd pf[2] = { { fd[0], s_events(s_res), 0 }, { fd[1], s_events(c_res), 0 } };
			poll(pf, 2, 100);
		}
	}
	tls_conn_error(c, err, errlen);
	tls_conn_free(s);
	tls_conn_free(c);
	close(fd[0]);
	close(fd[1]);
	return c_res;
}

static void test_client_side(void **state)
{
	char err[256];
	(void)state;

	struct tls_server *ts = server(server_opts("server.crt", "server.key", "ca.crt", false));
	struct tls_client_opts co = { .ca = path("ca.crt"), .cert = path("client.crt"),
				      .key = path("client.key") };
	SSL_CTX *cctx = tls_client_ctx_new(&co, err, sizeof(err));
	assert_non_null(cctx);
	/* The certificate names localhost and 127.0.0.1. */
	assert_int_equal(client_handshake(ts, cctx, "localhost", err, sizeof(err)), TLS_OK);
	assert_int_equal(client_handshake(ts, cctx, "127.0.0.1", err, sizeof(err)), TLS_OK);
	assert_int_equal(client_handshake(ts, cctx, "plant-a.example", err, sizeof(err)), TLS_ERR);
	assert_non_null(strstr(err, "server certificate rejected: "));
	assert_int_equal(client_handshake(ts, cctx, "10.0.0.1", err, sizeof(err)), TLS_ERR);
	assert_non_null(strstr(err, "server certificate rejected: "));
	SSL_CTX_free(cctx);
	/* A CA that did not sign the server's certificate. */
	co = (struct tls_client_opts){ .ca = path("other-ca.crt") };
	assert_non_null(cctx = tls_client_ctx_new(&co, err, sizeof(err)));
	assert_int_equal(client_handshake(ts, cctx, "localhost", err, sizeof(err)), TLS_ERR);
	assert_non_null(strstr(err, "server certificate rejected: "));
	SSL_CTX_free(cctx);
	/* Errors name the file. */
	co = (struct tls_client_opts){ .ca = path("missing.crt") };
	assert_null(tls_client_ctx_new(&co, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot read CA "));
	co = (struct tls_client_opts){ .ca = path("garbage.pem") };
	assert_null(tls_client_ctx_new(&co, err, sizeof(err)));
	assert_non_null(strstr(err, "no PEM certificate"));
	co = (struct tls_client_opts){ .cert = path("client.crt") };
	assert_null(tls_client_ctx_new(&co, err, sizeof(err)));
	assert_non_null(strstr(err, "needs its key"));
	co = (struct tls_client_opts){ .cert = path("client.crt"), .key = path("mismatch.key") };
	assert_null(tls_client_ctx_new(&co, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));
	tls_server_free(ts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_tls12_and_ciphers),
		cmocka_unit_test(test_old_versions_refused),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_client_certs),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_reload_threads),
		cmocka_unit_test(test_client_side),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
