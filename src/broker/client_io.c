/*
 * client_io.c - TLS and WebSocket under an MQTT connection; see client_io.h.
 *
 * Layers, bottom up: the socket; TLS when the listener has it (every raw
 * read and write goes through tls_conn_read/write); WebSocket when the
 * listener speaks it: first the HTTP upgrade (its head gathered in `hs`,
 * bounded by WS_MAX_HEAD), then frames. Client frames are unmasked and
 * compacted in place in the caller's buffer, so the MQTT framing above sees
 * one byte stream whatever the frame boundaries. Output: MQTT bytes collect
 * in c->obuf as for any client; at flush they become one binary frame in
 * `wire`, behind whatever the transport queued itself (the 101 answer, pongs,
 * a close frame), and `wire` goes to the socket. Without WebSocket, c->obuf
 * goes to the socket (through TLS) directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/client.h"
#include "broker/client_io.h"
#include "broker/listener.h"
#include "core/buf.h"
#include "core/loop.h"
#include "transport/tls.h"
#include "transport/ws.h"

struct client_io {
	struct tls_conn *tls;        /* NULL: plain socket under the WebSocket */
	int identity;                /* enum tls_identity of the listener */
	bool tls_done;               /* handshake finished */
	bool tls_wants_write;        /* the last TLS call asked for EPOLLOUT */
	bool ws;                     /* a WebSocket listener */
	bool ws_open;                /* 101 queued: frames from now on */
	bool ws_closed;              /* a close frame was received or sent */
	const char *path;            /* upgrade path (the listener's) */
	struct ws_decoder dec;
	struct buf hs;               /* upgrade request gathered so far */
	struct buf wire;             /* WebSocket: bytes for the socket, in order */
	char why[128];
};

int client_io_new(struct client *c, const struct broker_listener *l)
{
	struct client_io *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	if (l->tls && !(x->tls = tls_conn_new(l->tls, c->io.fd))) {
		free(x);
		return -1;
	}
	x->identity = l->identity;
	x->ws = l->kind == LIS_WS || l->kind == LIS_WSS;
	x->path = l->path;
	ws_decoder_init(&x->dec, 0);
	c->x = x;
	return 0;
}

int client_io_new_tls_client(struct client *c, SSL_CTX *ctx, const char *name)
{
	struct client_io *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	if (!(x->tls = tls_conn_new_client(ctx, c->io.fd, name))) {
		free(x);
		return -1;
	}
	x->identity = TLS_ID_NONE;
	ws_decoder_init(&x->dec, 0);
	c->x = x;
	return 0;
}

void client_io_free(struct client *c)
{
	struct client_io *x = c->x;
	if (!x)
		return;
	tls_conn_free(x->tls);
	buf_release(&x->hs);
	buf_release(&x->wire);
	free(x);
	c->x = NULL;
}

static ssize_t fail(struct client_io *x, const char *why)
{
	snprintf(x->why, sizeof(x->why), "%s", why);
	return CLIO_ERROR;
}

static ssize_t tls_result(struct client_io *x, ssize_t r)
{
	char e[100];
	x->tls_wants_write = r == TLS_WANT_WRITE;
	if (r > 0)
		return r;
	switch (r) {
	case TLS_WANT_READ:
	case TLS_WANT_WRITE:
		return CLIO_AGAIN;
	case TLS_CLOSED:
		return CLIO_CLOSED;
	default:
		snprintf(x->why, sizeof(x->why), "tls: %s", tls_conn_error(x->tls, e, sizeof(e)));
		return CLIO_ERROR;
	}
}

/* Drives the TLS handshake. Returns 1 when done, or a CLIO_ result. */
static ssize_t handshake(struct client *c)
{
	struct client_io *x = c->x;
	if (!x->tls || x->tls_done)
		return 1;
	int h = tls_conn_handshake(x->tls);
	ssize_t r = h == TLS_OK ? 1 : tls_result(x, h);
	if (r < 0 && r != CLIO_AGAIN && r != CLIO_CLOSED)
		return r;
	if (r == CLIO_CLOSED)
		return fail(x, "tls: peer left during the handshake");
	if (r == CLIO_AGAIN)
		return CLIO_AGAIN;
	x->tls_done = true;
	char id[256];
	if (x->identity != TLS_ID_NONE &&
	    tls_conn_identity(x->tls, (enum tls_identity)x->identity, id, sizeof(id)) > 0)
		c->cert_user = strdup(id); /* NULL on ENOMEM: no identity, as without a cert */
	return 1;
}

static ssize_t raw_read(struct client *c, uint8_t *buf, size_t cap)
{
	struct client_io *x = c->x;
	if (x->tls)
		return tls_result(x, tls_conn_read(x->tls, buf, cap));
	for (;;) {
		ssize_t n = read(c->io.fd, buf, cap);
		if (n > 0)
			return n;
		if (n == 0)
			return CLIO_CLOSED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CLIO_AGAIN;
		return fail(x, strerror(errno));
	}
}

static ssize_t raw_write(struct client *c, const uint8_t *p, size_t n)
{
	struct client_io *x = c->x;
	if (x->tls)
		return tls_result(x, tls_conn_write(x->tls, p, n));
	for (;;) {
		ssize_t w = send(c->io.fd, p, n, MSG_NOSIGNAL);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CLIO_AGAIN;
		return fail(x, strerror(errno));
	}
}

/* Gathers the upgrade request and answers it. Returns 1 when the socket
 * speaks frames now (leftover bytes, if any, moved to buf: *n), or a CLIO_
 * result. */
static ssize_t ws_upgrade(struct client *c, uint8_t *buf, size_t cap, size_t *n, size_t *raw)
{
	struct client_io *x = c->x;
	struct ws_handshake h;

	for (;;) {
		if (buf_reserve(&x->hs, 1024) < 0)
			return fail(x, "out of memory");
		size_t room = WS_MAX_HEAD + 1 - buf_used(&x->hs);
		if (room > x->hs.cap - x->hs.len)
			room = x->hs.cap - x->hs.len;
		ssize_t r = raw_read(c, x->hs.data + x->hs.len, room);
		if (r < 0)
			return r;
		*raw += (size_t)r;
		x->hs.len += (size_t)r;
		int p = ws_handshake_parse(buf_head(&x->hs), buf_used(&x->hs), x->path, &h);
		if (p == 0 && buf_used(&x->hs) <= WS_MAX_HEAD)
			continue;
		if (p <= 0) {
			int status = p == 0 ? 431 : -p;
			ws_handshake_error(status, &x->wire);
			x->ws_closed = true;
			snprintf(x->why, sizeof(x->why), "websocket upgrade refused (HTTP %d)", status);
			client_mark_output(c);
			return CLIO_ERROR;
		}
		if (ws_handshake_response(&h, &x->wire) < 0)
			return fail(x, "out of memory");
		x->ws_open = true;
		client_mark_output(c);
		/* Frames sent right behind the request (not expected, harmless). */
		size_t left = buf_used(&x->hs) - (size_t)p;
		if (left > cap)
			return fail(x, "websocket: too many bytes before the upgrade");
		memcpy(buf, buf_head(&x->hs) + p, left);
		*n = left;
		buf_release(&x->hs);
		return 1;
	}
}

/* Unmasks and compacts the data of buf[0..n) in place; answers control
 * frames. Returns the MQTT bytes left at the front, or a CLIO_ result. */
static ssize_t ws_deframe(struct client *c, uint8_t *buf, size_t n)
{
	struct client_io *x = c->x;
	size_t in = 0, out = 0;

	while (in < n) {
		struct ws_event ev;
		size_t used = 0;
		int t = ws_decode(&x->dec, buf + in, n - in, &used, &ev);
		in += used;
		switch (t) {
		case WS_EV_DATA:
			memmove(buf + out, ev.data, ev.len);
			out += ev.len;
			break;
		case WS_EV_PING:
			if (ws_encode_frame(&x->wire, WS_OP_PONG, ev.data, ev.len) < 0)
				return fail(x, "out of memory");
			client_mark_output(c);
			break;
		case WS_EV_CLOSE:
			if (!x->ws_closed) {
				ws_encode_close(&x->wire, ev.code == WS_CLOSE_NO_STATUS
								 ? WS_CLOSE_NORMAL : ev.code, NULL, 0);
				x->ws_closed = true;
				client_mark_output(c);
			}
			/* Bytes before the close still count; the next read ends it. */
			return out > 0 ? (ssize_t)out : CLIO_CLOSED;
		case WS_EV_ERROR:
			if (!x->ws_closed) {
				ws_encode_close(&x->wire, ev.code, NULL, 0);
				x->ws_closed = true;
				client_mark_output(c);
			}
			snprintf(x->why, sizeof(x->why), "websocket protocol error (close %u)",
				 ev.code);
			return CLIO_ERROR;
		default:
			break;
		}
		if (t == WS_EV_NONE)
			break;
	}
	return (ssize_t)out;
}

ssize_t client_io_read(struct client *c, uint8_t *buf, size_t cap, size_t *raw)
{
	struct client_io *x = c->x;
	ssize_t r;

	*raw = 0;
	if ((r = handshake(c)) < 0)
		return r;
	if (!x->ws) {
		r = raw_read(c, buf, cap);
		if (r > 0)
			*raw = (size_t)r;
		return r;
	}
	if (x->ws_closed)
		return CLIO_CLOSED;
	for (;;) {
		size_t n = 0;
		if (!x->ws_open) {
			if ((r = ws_upgrade(c, buf, cap, &n, raw)) < 0)
				return r;
		} else {
			if ((r = raw_read(c, buf, cap)) < 0)
				return r;
			*raw += (size_t)r;
			n = (size_t)r;
		}
		if (n == 0)
			continue;
		r = ws_deframe(c, buf, n);
		if (r != 0)
			return r;
		/* Only control frames or headers: read on. */
	}
}

/* Writes the front of b. Returns 0 (all out), 1 (socket full), CLIO_ERROR. */
static int write_buf(struct client *c, struct buf *b, size_t *raw)
{
	while (buf_used(b) > 0) {
		ssize_t w = raw_write(c, buf_head(b), buf_used(b));
		if (w == CLIO_AGAIN)
			return 1;
		if (w < 0) {
			if (w == CLIO_CLOSED)
				fail(c->x, "peer closed");
			return CLIO_ERROR;
		}
		*raw += (size_t)w;
		buf_consume(b, (size_t)w);
	}
	return 0;
}

int client_io_flush(struct client *c, size_t *raw)
{
	struct client_io *x = c->x;
	ssize_t r;

	*raw = 0;
	if ((r = handshake(c)) < 0)
		return r == CLIO_AGAIN ? 1 : CLIO_ERROR;
	if (!x->ws)
		return write_buf(c, &c->obuf, raw);
	/* Frame c->obuf only once the previous frames are out: while the socket
	 * is full the output stays in c->obuf, where max_output_bytes sees it. */
	for (;;) {
		int rc = write_buf(c, &x->wire, raw);
		if (rc != 0)
			return rc;
		buf_shrink(&x->wire, 16384);
		if (!x->ws_open || x->ws_closed || buf_used(&c->obuf) == 0)
			return 0;
		if (ws_encode_frame(&x->wire, WS_OP_BINARY, buf_head(&c->obuf),
				    buf_used(&c->obuf)) < 0)
			return (int)fail(x, "out of memory");
		buf_reset(&c->obuf);
	}
}

size_t client_io_queued(const struct client *c)
{
	return c->x ? buf_used(&c->x->wire) : 0;
}

uint32_t client_io_events(const struct client *c)
{
	const struct client_io *x = c->x;
	if (!x)
		return 0;
	return x->tls_wants_write || buf_used(&x->wire) > 0 ? EPOLLOUT : 0;
}

bool client_io_pending(const struct client *c)
{
	return c->x && c->x->tls && c->x->tls_done && tls_conn_pending(c->x->tls) > 0;
}

void client_io_final(struct client *c, uint16_t ws_code)
{
	struct client_io *x = c->x;
	size_t raw = 0;

	if (!x || (x->tls && !x->tls_done))
		return;
	if (x->ws && x->ws_open && !x->ws_closed) {
		if (buf_used(&c->obuf) > 0)
			ws_encode_frame(&x->wire, WS_OP_BINARY, buf_head(&c->obuf),
					buf_used(&c->obuf));
		buf_reset(&c->obuf);
		ws_encode_close(&x->wire, ws_code, NULL, 0);
		x->ws_closed = true;
	}
	if (x->ws)
		write_buf(c, &x->wire, &raw);
	else
		write_buf(c, &c->obuf, &raw);
	if (x->tls)
		tls_conn_shutdown(x->tls);
}

const char *client_io_reason(const struct client *c)
{
	return c->x && c->x->why[0] ? c->x->why : "transport error";
}

const char *client_io_tls_version(const struct client *c)
{
	return c->x && c->x->tls ? tls_conn_version(c->x->tls) : "";
}
