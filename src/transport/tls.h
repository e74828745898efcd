/*
 * tls.h - TLS for the MQTT listeners (OpenSSL): a server context that can be
 * reloaded while connections live, and a non-blocking connection wrapper
 * that knows nothing of the event loop.
 *
 * The wrapper works on an fd it borrows (the caller accepted it, set it
 * non-blocking and closes it after tls_conn_free()); it never logs and never
 * waits. Every call answers what to wait for next, and the caller arms
 * EPOLLIN or EPOLLOUT accordingly. OpenSSL writes with write(2): the process
 * must ignore SIGPIPE (main.c does).
 *
 * Policy, fixed here rather than configurable: TLS 1.2 and 1.3 only; for 1.2
 * only ECDHE with AES-GCM or CHACHA20-POLY1305; no renegotiation; session
 * tickets and a server-side session cache (both per context: a reload starts
 * fresh ones, so clients resume only with a full handshake once); OpenSSL's
 * buffers released while a connection is idle (~34 KiB saved per idle
 * client), and read-ahead on so that many small records cost one read(2).
 *
 * Threads: struct tls_server may be shared: tls_conn_new() from any thread
 * while one thread (the main one) calls tls_server_reload(). A struct
 * tls_conn belongs to one thread at a time.
 *
 * OpenSSL's error queue (one per thread) must be empty when
 * tls_conn_read() and tls_conn_write() start, or an old error would be
 * taken for theirs: they do not clear it on the way in (per record, that
 * cost ~4% of CPU at QoS 1). Every function here leaves it empty on
 * return, successful or not, and so must any other OpenSSL user on a thread
 * that drives a tls_conn (ws_accept_key() does).
 */
#ifndef KG_TLS_H
#define KG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

enum tls_identity {
	TLS_ID_NONE,  /* the certificate names nobody (auth by password only) */
	TLS_ID_CN,    /* the subject's commonName (exactly one must be present) */
	TLS_ID_SAN,   /* the first DNS or email subjectAltName, in their order */
};

/* Borrowed: the strings need to live only during the call they are passed to. */
struct tls_opts {
	const char *cert;          /* PEM: the server certificate, then its chain */
	const char *key;           /* PEM private key, unencrypted */
	const char *ca;            /* PEM CAs for client certificates; NULL: none */
	bool require_client_cert;  /* needs ca; without it a cert is optional */
	enum tls_identity identity;/* read by the caller for tls_conn_identity() */
};

/* Results; tls_conn_read() and tls_conn_write() return the negative ones
 * where they would return a byte count. */
enum tls_result {
	TLS_OK = 0,
	TLS_WANT_READ = -1,   /* call again once the fd is readable */
	TLS_WANT_WRITE = -2,  /* call again once the fd is writable */
	TLS_CLOSED = -3,      /* the peer closed (close_notify or plain EOF) */
	TLS_ERR = -4,         /* fatal: tls_conn_error() says why; free it */
};

struct tls_server;
struct tls_conn;

/*
 * Returns a new server context for opts (free with SSL_CTX_free()), or NULL
 * with a one-line reason in err naming the file, e.g. "cannot read
 * certificate /x/server.crt: No such file or directory", "key /x/server.key
 * does not match certificate /x/server.crt", "cannot read CA /x/ca.crt: no
 * PEM certificate in it". With require_client_cert the handshake fails
 * without a client certificate signed by ca; with ca alone one is asked for
 * but optional (one that does not verify still fails the handshake).
 * Any thread.
 */
SSL_CTX *tls_ctx_new(const struct tls_opts *opts, char *err, size_t errlen);

/* The client side (kafkagate connecting to an upstream MQTT broker).
 * Borrowed, like struct tls_opts. */
struct tls_client_opts {
	const char *ca;    /* PEM CAs that sign the server certificate; NULL: the
	                      system's default store */
	const char *cert;  /* PEM client certificate chain to present; NULL: none */
	const char *key;   /* its unencrypted PEM key (with cert) */
};

/*
 * Returns a new client context (free with SSL_CTX_free()) that verifies the
 * server's certificate (same protocol versions and ciphers as the server
 * side), or NULL with a one-line reason in err naming the file, as
 * tls_ctx_new(). Any thread.
 */
SSL_CTX *tls_client_ctx_new(const struct tls_client_opts *opts, char *err, size_t errlen);

/* Returns a new server for opts (free with tls_server_free()), or NULL with
 * err set as for tls_ctx_new(). */
struct tls_server *tls_server_new(const struct tls_opts *opts, char *err, size_t errlen);
/* Frees ts; connections made from it keep working (each holds a reference
 * to its context). Call once no thread can call tls_conn_new(ts). NULL ok. */
void tls_server_free(struct tls_server *ts);
/*
 * Builds a context from opts and swaps it in: handshakes started afterwards
 * use it, established and handshaking connections keep theirs. Returns 0, or
 * -1 with err set and the current context kept. Any thread; reloads are
 * serialized against each other and against tls_conn_new().
 */
int tls_server_reload(struct tls_server *ts, const struct tls_opts *opts, char *err,
		      size_t errlen);
/* The current context with one more reference (free with SSL_CTX_free()).
 * Any thread. */
SSL_CTX *tls_server_ctx(struct tls_server *ts);

/*
 * Returns a new server-side connection on fd (borrowed: not closed by
 * tls_conn_free()) using the current context, or NULL when out of memory.
 * Any thread; the connection then belongs to that thread.
 */
struct tls_conn *tls_conn_new(struct tls_server *ts, int fd);
/*
 * Returns a new client-side connection on fd (borrowed, as for
 * tls_conn_new()) from ctx (a tls_client_ctx_new() one; the connection
 * takes its own reference), or NULL when out of memory. The handshake fails
 * unless the server's certificate is valid for name: a DNS name (also sent
 * as SNI) or an IP literal. Any thread; the connection then belongs to it.
 */
struct tls_conn *tls_conn_new_client(SSL_CTX *ctx, int fd, const char *name);
/* Frees c without sending anything (see tls_conn_shutdown()). NULL ok. */
void tls_conn_free(struct tls_conn *c);

/* Advances the handshake: TLS_OK when done (then read and write), else
 * TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED (the peer left midway) or
 * TLS_ERR. The caller bounds its duration with a timer. */
int tls_conn_handshake(struct tls_conn *c);

/*
 * Reads up to len (> 0) bytes of application data. Returns the count (> 0)
 * or one of TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED, TLS_ERR (all < 0).
 * TLS_WANT_WRITE (rare: OpenSSL must answer the peer, e.g. a TLS 1.3
 * key update, and the socket is full) means wait for EPOLLOUT and then call
 * tls_conn_read() again, not tls_conn_write(). Read until TLS_WANT_READ with
 * an edge-triggered fd; see tls_conn_pending() for a level-triggered one.
 */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len);
/*
 * Writes up to len (> 0) bytes. Returns how many were taken (> 0; possibly
 * fewer than len: one or more whole records were written) or one of
 * TLS_WANT_WRITE, TLS_WANT_READ (wait for EPOLLIN, then call tls_conn_write()
 * again; with renegotiation off this cannot happen after the handshake),
 * TLS_CLOSED, TLS_ERR. After a TLS_WANT_*, the next tls_conn_write() must
 * offer the same bytes again, at least as many; they may have moved in
 * memory (the caller's buffer may have been compacted or grown). Reads may
 * go on while a write waits.
 */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);
/*
 * Bytes OpenSSL holds for c: the decrypted bytes tls_conn_read() returns
 * at once, or 1 when it holds only raw bytes read ahead (a whole record may
 * be among them, or only part of one: the read may still answer
 * TLS_WANT_READ). 0: nothing, wait for the fd. Reading until TLS_WANT_READ
 * leaves 0; a caller that stops earlier (its input buffer is full) must
 * check this before it waits, as epoll will not report these bytes.
 */
size_t tls_conn_pending(const struct tls_conn *c);
/* Sends close_notify once, best effort (never waits): TLS_OK or TLS_ERR. */
int tls_conn_shutdown(struct tls_conn *c);

/*
 * Writes the verified client certificate's identity for mode into out
 * (NUL-terminated). Returns its length (> 0), or -1 when there is none: no
 * certificate, mode TLS_ID_NONE, no such field, none or several CNs, a
 * control character (NUL included), or longer than outlen - 1. Call it once
 * the handshake is done; the value is fixed for the connection's life.
 */
int tls_conn_identity(const struct tls_conn *c, enum tls_identity mode, char *out,
		      size_t outlen);
/* "TLSv1.3", "TLSv1.2"; static strings, "" before the handshake. */
const char *tls_conn_version(const struct tls_conn *c);
/* The negotiated cipher, e.g. "TLS_AES_128_GCM_SHA256"; static, "" if none. */
const char *tls_conn_cipher(const struct tls_conn *c);
/*
 * Writes why the last call returning TLS_ERR (or TLS_CLOSED) failed, for the
 * caller's log line: "no client certificate", "unknown CA", "protocol version
 * (client offers neither TLS 1.2 nor 1.3)", "peer closed without
 * close_notify", "Connection reset by peer", on a client connection "server
 * certificate rejected: hostname mismatch"... Returns out.
 */
const char *tls_conn_error(const struct tls_conn *c, char *out, size_t outlen);

#endif
