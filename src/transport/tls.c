/* tls.c - OpenSSL server contexts, reload and non-blocking connections; see tls.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "transport/tls.h"

/* TLS 1.2: forward secrecy and AEAD only (TLS 1.3 suites are all AEAD). */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.2 session-id cache entries: bounded, a session holds the peer's cert. */
#define SESSION_CACHE_SIZE 4096

struct tls_server {
	pthread_mutex_t lock;  /* held to swap ctx, or to load it and take a reference */
	SSL_CTX *ctx;
};

/* Why the last call failed, kept as numbers and turned into words on demand. */
enum why { WHY_NONE, WHY_CLOSE_NOTIFY, WHY_EOF, WHY_SYS, WHY_SSL };

struct tls_conn {
	SSL *ssl;
	unsigned long err;  /* WHY_SSL: the first queued OpenSSL error */
	int sys_errno;      /* WHY_SYS */
	unsigned char why;
	bool failed;        /* a fatal error: no shutdown may be attempted */
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return -1;
}

/* The errno of opening and reading path, so the message names what the
 * system said (OpenSSL's own errors only say "system library"). */
static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f && (getc(f) != EOF || !ferror(f))) {
		fclose(f);
		return 0;
	}
	int e = errno;
	if (f)
		fclose(f);
	snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(e));
	return -1;
}

/* Refuses encrypted keys instead of letting OpenSSL prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return 0;
}

static int load_key(SSL_CTX *ctx, const struct tls_opts *o, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(o->key, "r");
	EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
	BIO_free(bio);
	if (!pkey)
		return fail(err, errlen, "cannot read key %s: no unencrypted PEM private key in it",
			    o->key);
	int ok = X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey) == 1 &&
		 SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
	EVP_PKEY_free(pkey);
	if (!ok)
		return fail(err, errlen, "key %s does not match certificate %s", o->key, o->cert);
	return 0;
}

static int load_ca(SSL_CTX *ctx, const struct tls_opts *o, char *err, size_t errlen)
{
	if (check_readable("CA", o->ca, err, errlen) < 0)
		return -1;
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
	if (!names || SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		return fail(err, errlen, "cannot read CA %s: no PEM certificate in it", o->ca);
	}
	/* Tells clients which CAs we accept, so they pick the right certificate. */
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
			   (o->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	return 0;
}

/* A context for method with what both sides share: TLS 1.2 and 1.3, the
 * ciphers, no renegotiation or compression, partial and moving writes,
 * read-ahead. NULL with err set. */
static SSL_CTX *ctx_base(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS)) {
		SSL_CTX_free(ctx);
		fail(err, errlen, "cannot set up a TLS context: out of memory");
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	return ctx;
}

SSL_CTX *tls_ctx_new(const struct tls_opts *o, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "kafkagate";
	SSL_CTX *ctx = NULL;

	ERR_clear_error();
	if (!o->cert || !o->key) {
		fail(err, errlen, "TLS needs a certificate and a key");
		return NULL;
	}
	if (o->require_client_cert && !o->ca) {
		fail(err, errlen, "requiring client certificates needs a CA file");
		return NULL;
	}
	if (check_readable("certificate", o->cert, err, errlen) < 0 ||
	    check_readable("key", o->key, err, errlen) < 0)
		return NULL;
	if (!(ctx = ctx_base(TLS_server_method(), err, errlen)))
		return NULL;
	if (!SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1)) {
		fail(err, errlen, "cannot set up a TLS context: out of memory");
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
	SSL_CTX_set_num_tickets(ctx, 1); /* one reconnect's worth; each costs bytes */

	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
		fail(err, errlen, "cannot read certificate %s: no PEM certificate in it", o->cert);
		goto fail;
	}
	if (load_key(ctx, o, err, errlen) < 0 || (o->ca && load_ca(ctx, o, err, errlen) < 0))
		goto fail;
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx_new(const struct tls_client_opts *o, char *err, size_t errlen)
{
	struct tls_opts ko = { .cert = o->cert, .key = o->key };
	SSL_CTX *ctx = NULL;

	ERR_clear_error();
	if (!o->cert != !o->key) {
		fail(err, errlen, "a client certificate needs its key, and a key its certificate");
		return NULL;
	}
	if ((o->ca && check_readable("CA", o->ca, err, errlen) < 0) ||
	    (o->cert && (check_readable("certificate", o->cert, err, errlen) < 0 ||
			 check_readable("key", o->key, err, errlen) < 0)))
		return NULL;
	if (!(ctx = ctx_base(TLS_client_method(), err, errlen)))
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1
		  : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		if (o->ca)
			fail(err, errlen, "cannot read CA %s: no PEM certificate in it", o->ca);
		else
			fail(err, errlen, "cannot load the system's CA certificates");
		goto fail;
	}
	if (o->cert && SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
		fail(err, errlen, "cannot read certificate %s: no PEM certificate in it", o->cert);
		goto fail;
	}
	if (o->cert && load_key(ctx, &ko, err, errlen) < 0)
		goto fail;
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_server *tls_server_new(const struct tls_opts *opts, char *err, size_t errlen)
{
	struct tls_server *ts = calloc(1, sizeof(*ts));
	if (!ts) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ts->ctx = tls_ctx_new(opts, err, errlen);
	if (!ts->ctx || pthread_mutex_init(&ts->lock, NULL) != 0) {
		if (ts->ctx)
			snprintf(err, errlen, "cannot create a mutex");
		SSL_CTX_free(ts->ctx);
		free(ts);
		return NULL;
	}
	return ts;
}

void tls_server_free(struct tls_server *ts)
{
	if (!ts)
		return;
	SSL_CTX_free(ts->ctx);
	pthread_mutex_destroy(&ts->lock);
	free(ts);
}

int tls_server_reload(struct tls_server *ts, const struct tls_opts *opts, char *err,
		      size_t errlen)
{
	SSL_CTX *fresh = tls_ctx_new(opts, err, errlen);
	if (!fresh)
		return -1;
	pthread_mutex_lock(&ts->lock);
	SSL_CTX *old = ts->ctx;
	ts->ctx = fresh;
	pthread_mutex_unlock(&ts->lock);
	/* Only our reference: each SSL made from it holds its own. */
	SSL_CTX_free(old);
	return 0;
}

SSL_CTX *tls_server_ctx(struct tls_server *ts)
{
	pthread_mutex_lock(&ts->lock);
	SSL_CTX *ctx = ts->ctx;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&ts->lock);
	return ctx;
}

struct tls_conn *tls_conn_new(struct tls_server *ts, int fd)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	SSL_CTX *ctx = tls_server_ctx(ts);

	if (c)
		c->ssl = SSL_new(ctx); /* takes its own reference to ctx */
	SSL_CTX_free(ctx);
	if (!c || !c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		tls_conn_free(c);
		c = NULL;
	} else {
		SSL_set_accept_state(c->ssl);
	}
	ERR_clear_error();
	return c;
}

struct tls_conn *tls_conn_new_client(SSL_CTX *ctx, int fd, const char *name)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	unsigned char ip[16];
	bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;

	if (c)
		c->ssl = SSL_new(ctx);
	if (!c || !c->ssl || SSL_set_fd(c->ssl, fd) != 1 ||
	    (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1
		     : SSL_set1_host(c->ssl, name) != 1 ||
		       SSL_set_tlsext_host_name(c->ssl, name) != 1)) {
		tls_conn_free(c);
		c = NULL;
	} else {
		SSL_set_connect_state(c->ssl);
	}
	ERR_clear_error();
	return c;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

/* Turns a failed SSL call's r into a result and records why. Call it first
 * thing after the call, which runs with errno cleared: it reads errno.
 * Empties the error queue, so the next call finds it empty (tls.h). */
static int settle(struct tls_conn *c, int r)
{
	int e = errno;
	int code = SSL_get_error(c->ssl, r);
	int res = TLS_ERR;

	switch (code) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		c->why = WHY_CLOSE_NOTIFY;
		res = TLS_CLOSED;
		break;
	case SSL_ERROR_SYSCALL:
		c->sys_errno = e;
		c->why = e ? WHY_SYS : WHY_EOF;  /* OpenSSL 1.1 reports EOF this way */
		res = e ? TLS_ERR : TLS_CLOSED;
		break;
	case SSL_ERROR_SSL:
		c->err = ERR_peek_error();
		c->why = WHY_SSL;
		if (ERR_GET_LIB(c->err) == ERR_LIB_SSL &&
		    ERR_GET_REASON(c->err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			c->why = WHY_EOF;
			res = TLS_CLOSED;
		}
		break;
	default:
		c->why = WHY_SSL;
		c->err = 0;
	}
	/* OpenSSL forbids SSL_shutdown() after a fatal error, not after the
	 * peer's close_notify. */
	c->failed = code != SSL_ERROR_ZERO_RETURN;
	ERR_clear_error();
	return res;
}

/* Once per connection, so it also clears around a successful handshake:
 * certificate checks may leave errors behind even when they pass. */
int tls_conn_handshake(struct tls_conn *c)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	if (r != 1)
		return settle(c, r);
	ERR_clear_error();
	return TLS_OK;
}

/* Per record, so no ERR_clear_error() here: the queue is empty on entry
 * (tls.h) and a successful call leaves it so; settle() empties it after a
 * failure. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
	size_t n = 0;
	errno = 0;
	int r = SSL_read_ex(c->ssl, buf, len < INT_MAX ? len : INT_MAX, &n);
	return r == 1 ? (ssize_t)n : settle(c, r);
}

ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	errno = 0;
	int r = SSL_write_ex(c->ssl, buf, len < INT_MAX ? len : INT_MAX, &n);
	return r == 1 ? (ssize_t)n : settle(c, r);
}

size_t tls_conn_pending(const struct tls_conn *c)
{
	int n = SSL_pending(c->ssl);
	if (n > 0)
		return (size_t)n;
	return SSL_has_pending(c->ssl) ? 1 : 0;
}

int tls_conn_shutdown(struct tls_conn *c)
{
	if (c->failed || !SSL_is_init_finished(c->ssl))
		return TLS_ERR;
	ERR_clear_error();
	int r = SSL_shutdown(c->ssl); /* 0: sent, the peer's is not awaited */
	ERR_clear_error();
	return r >= 0 ? TLS_OK : TLS_ERR;
}

/* Copies an identity that is safe to log and to use as a name. */
static int copy_name(const unsigned char *p, int len, char *out, size_t outlen)
{
	if (len <= 0 || (size_t)len >= outlen)
		return -1;
	for (int i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return -1;
	memcpy(out, p, (size_t)len);
	out[len] = '\0';
	return len;
}

static int identity_cn(X509 *cert, char *out, size_t outlen)
{
	X509_NAME *name = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;

	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return -1; /* none, or ambiguous */
	int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	int r = n < 0 ? -1 : copy_name(utf8, n, out, outlen);
	OPENSSL_free(utf8);
	return r;
}

static int identity_san(X509 *cert, char *out, size_t outlen)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int r = -1;

	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		if (g->type == GEN_DNS || g->type == GEN_EMAIL) {
			r = copy_name(ASN1_STRING_get0_data(g->d.ia5), ASN1_STRING_length(g->d.ia5),
				      out, outlen);
			break;
		}
	}
	GENERAL_NAMES_free(names);
	return r;
}

int tls_conn_identity(const struct tls_conn *c, enum tls_identity mode, char *out,
		      size_t outlen)
{
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	int r = -1;

	if (!cert || SSL_get_verify_result(c->ssl) != X509_V_OK || outlen == 0)
		return -1;
	if (mode == TLS_ID_CN)
		r = identity_cn(cert, out, outlen);
	else if (mode == TLS_ID_SAN)
		r = identity_san(cert, out, outlen);
	ERR_clear_error();
	return r;
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_is_init_finished(c->ssl) ? SSL_get_version(c->ssl) : "";
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
	return ci ? SSL_CIPHER_get_name(ci) : "";
}

/* Words for what a log reader meets most; the rest gets OpenSSL's own. */
static const char *reason_words(int reason, long verify)
{
	switch (reason) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return "no client certificate";
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
		return "protocol version (client offers neither TLS 1.2 nor 1.3)";
	case SSL_R_HTTP_REQUEST:
		return "plain HTTP on a TLS port";
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		break;
	default:
		return NULL;
	}
	switch (verify) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "unknown CA";
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "client certificate expired";
	}
	return NULL;
}

const char *tls_conn_error(const struct tls_conn *c, char *out, size_t outlen)
{
	static const char *const fixed[] = { "no error", "closed by peer",
					     "peer closed without close_notify" };
	/* Only the SSL library's reasons are ours to name; 0 for the others. */
	int reason = ERR_GET_LIB(c->err) == ERR_LIB_SSL ? ERR_GET_REASON(c->err) : 0;
	long verify = SSL_get_verify_result(c->ssl);
	const char *s;

	if (c->why == WHY_SYS)
		snprintf(out, outlen, "%s", strerror(c->sys_errno));
	else if (c->why != WHY_SSL)
		snprintf(out, outlen, "%s", fixed[c->why]);
	else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && !SSL_is_server(c->ssl))
		snprintf(out, outlen, "server certificate rejected: %s",
			 X509_verify_cert_error_string(verify));
	else if ((s = reason_words(reason, verify)))
		snprintf(out, outlen, "%s", s);
	else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
		snprintf(out, outlen, "client certificate rejected: %s",
			 X509_verify_cert_error_string(verify));
	else if ((s = ERR_reason_error_string(c->err)))
		/* Alerts from the peer have reasons of their own, past this offset. */
		snprintf(out, outlen, "%s%s", reason >= SSL_AD_REASON_OFFSET ? "peer sent alert: " : "",
			 s);
	else
		snprintf(out, outlen, "TLS error %lx", c->err);
	return out;
}
