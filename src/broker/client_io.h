/*
 * client_io.h - the bytes of a connection that is not plain TCP: TLS
 * (transport/tls.h) and WebSocket framing (transport/ws.h), both driven
 * from the worker's event loop without ever blocking.
 *
 * A plain connection has no struct client_io (c->x == NULL) and client.c
 * reads and writes its socket directly. Otherwise client.c calls these:
 * reads return MQTT stream bytes (decrypted, deframed), flushes take the
 * MQTT bytes in c->obuf (framed, encrypted). The TLS and WebSocket
 * handshakes happen inside them, before the first MQTT byte, and count
 * against connect_timeout like a slow CONNECT (the client is CL_NEW).
 *
 * Thread: the owning worker's only.
 */
#ifndef KG_CLIENT_IO_H
#define KG_CLIENT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct broker_listener;
struct client;

enum client_io_result {
	CLIO_AGAIN = -1,   /* nothing now: wait for the events client_io_events() asks */
	CLIO_CLOSED = -2,  /* the peer closed (TCP, TLS close_notify or WebSocket close) */
	CLIO_ERROR = -3,   /* fatal; client_io_reason() says why */
};

/* Sets up c for listener l (TLS state, WebSocket decoder). Returns 0 or -1
 * (ENOMEM). A plain TCP listener needs no call. */
int client_io_new(struct client *c, const struct broker_listener *l);
/* Sets up c, an outbound connection (upstream.h), as the TLS client of ctx
 * (a tls_client_ctx_new() one), verifying the server's certificate for name.
 * The handshake runs inside the first reads and flushes. Returns 0 or -1
 * (ENOMEM). */
int client_io_new_tls_client(struct client *c, SSL_CTX *ctx, const char *name);
/* Frees the transport state (no bytes sent). NULL-safe on c->x. */
void client_io_free(struct client *c);

/* Reads MQTT stream bytes into buf (at most cap). Returns > 0, or an enum
 * client_io_result. Bytes read from the socket count in *raw. */
ssize_t client_io_read(struct client *c, uint8_t *buf, size_t cap, size_t *raw);
/* Sends what it can of c->obuf (and of the transport's own output:
 * handshake answers, pongs, close frames). Returns 0 when all is out, 1 when
 * some waits for the socket, CLIO_ERROR on a write error. Bytes written to
 * the socket count in *raw. */
int client_io_flush(struct client *c, size_t *raw);
/* Bytes waiting for the socket that are not in c->obuf any more. */
size_t client_io_queued(const struct client *c);
/* epoll events the transport itself waits for (EPOLLOUT during a TLS
 * handshake or a write that wants it). */
uint32_t client_io_events(const struct client *c);
/* True when the transport holds input the socket will not report again
 * (TLS read-ahead): read again without waiting. */
bool client_io_pending(const struct client *c);
/* At close: frames and sends what is left and a close (WebSocket close
 * frame, TLS close_notify), best effort, never waiting. */
void client_io_final(struct client *c, uint16_t ws_code);
/* Why the last CLIO_ERROR happened, for the log. */
const char *client_io_reason(const struct client *c);
/* "TLSv1.3" etc. for /api/v1/clients; "" when not TLS or not yet. */
const char *client_io_tls_version(const struct client *c);

#endif
