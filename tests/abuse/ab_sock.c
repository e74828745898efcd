/*
 * ab_sock.c - one attacker connection of the engine: its transport (plain;
 * TLS through OpenSSL without verification, the attackers do not care who
 * answers; WebSocket: the upgrade, then frames masked with a zero key,
 * which RFC 6455 allows, and the server's frames unwrapped) and its
 * behaviour (abuse.h: enum ab_behaviour), driven by epoll events and
 * recording what happened in its record.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ab_engine_int.h"

#define R ab_rec_of
#define S ab_spec_of

/* ---- setup -------------------------------------------------------------------- */

static SSL_CTX *tls_client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/* The first flight of a TLS client, made against memory BIOs. */
static int make_hello(struct eng *e)
{
	SSL *s = SSL_new(e->tls);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	char *p;
	long n;

	if (!s || !rb || !wb)
		return -1;
	SSL_set_bio(s, rb, wb);
	SSL_set_connect_state(s);
	SSL_do_handshake(s);
	n = BIO_get_mem_data(wb, &p);
	if (n > 0 && (e->hello = malloc((size_t)n))) {
		memcpy(e->hello, p, (size_t)n);
		e->hello_len = (size_t)n;
	}
	SSL_free(s);
	return e->hello ? 0 : -1;
}

/* A copy of bytes, framed as one masked binary frame (zero key) for WS. */
static uint8_t *frame_copy(enum ab_transport tr, const uint8_t *b, size_t n, size_t *len)
{
	size_t h = tr != TR_WS ? 0 : n < 126 ? 6 : n < 65536 ? 8 : 14;
	uint8_t *p = malloc(h + n + 1);

	*len = 0;
	if (!p)
		return NULL;
	if (h) {
		p[0] = 0x82;
		if (n < 126) {
			p[1] = (uint8_t)(0x80 | n);
		} else if (n < 65536) {
			p[1] = 0x80 | 126;
			p[2] = (uint8_t)(n >> 8);
			p[3] = (uint8_t)n;
		} else {
			p[1] = 0x80 | 127;
			for (int i = 0; i < 8; i++)
				p[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		}
		memset(p + h - 4, 0, 4);
	}
	memcpy(p + h, b, n);
	*len = h + n;
	return p;
}

/* ---- events --------------------------------------------------------------------- */

static void set_events(struct eng *e, struct aconn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = c->idx };

	if (out == c->want_out)
		return;
	c->want_out = out;
	epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void ab_sock_finish(struct eng *e, struct aconn *c, enum ab_end how, int err)
{
	struct ab_rec *r = R(e, c);

	if (c->st == S_DONE)
		return;
	r->t_end = ab_now_ms();
	r->end = (uint8_t)how;
	r->err = (int16_t)err;
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->own)
		free((void *)c->out);
	c->out = NULL;
	buf_release(&c->raw);
	buf_release(&c->mq);
	c->st = S_DONE;
	e->live--;
	e->progress = r->t_end;
}

/* Queues bytes to send (taking ownership of b): raw on the socket or
 * through the transport. */
static void queue_out(struct eng *e, struct aconn *c, uint8_t *b, size_t n, bool inner)
{
	(void)e;
	if (c->own)
		free((void *)c->out);
	c->out = b;
	c->own = true;
	c->out_len = n;
	c->out_off = 0;
	c->inner = inner;
}

/* Queues a copy of b, framed for tr (one WebSocket frame on TR_WS). */
static void queue_framed(struct eng *e, struct aconn *c, enum ab_transport tr, const uint8_t *b,
			 size_t n, bool inner)
{
	size_t len;
	uint8_t *p = frame_copy(tr, b, n, &len);

	queue_out(e, c, p, len, inner);
}

/* Queues the spec's bytes: borrowed unless WebSocket must frame them. */
static void queue_spec(struct eng *e, struct aconn *c)
{
	const struct ab_spec *s = S(e, c);

	if (s->tr == TR_WS) {
		queue_framed(e, c, s->tr, s->bytes, s->nbytes, true);
		return;
	}
	queue_out(e, c, NULL, 0, true);
	c->own = false;
	c->out = s->bytes;
	c->out_len = s->nbytes;
}

int ab_sock_push(struct eng *e, struct aconn *c, size_t max)
{
	struct ab_rec *r = R(e, c);

	while (c->out_off < c->out_len && max > 0) {
		size_t n = c->out_len - c->out_off;
		ssize_t w;

		if (n > max)
			n = max;
		if (c->ssl && c->inner) {
			int k = SSL_write(c->ssl, c->out + c->out_off, (int)(n > 1 << 20 ? 1 << 20 : n));
			if (k <= 0) {
				int se = SSL_get_error(c->ssl, k);
				ERR_clear_error();
				if (se == SSL_ERROR_WANT_WRITE || se == SSL_ERROR_WANT_READ) {
					set_events(e, c, true);
					return 0;
				}
				ab_sock_finish(e, c, END_PEER, EPIPE);
				return -1;
			}
			w = k;
		} else {
			w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					set_events(e, c, true);
					return 0;
				}
				ab_sock_finish(e, c, END_PEER, errno);
				return -1;
			}
		}
		if (!r->t_first && c->st == S_TRICKLE)
			r->t_first = ab_now_ms();
		c->out_off += (size_t)w;
		max -= (size_t)w;
	}
	if (c->out_off < c->out_len)
		return 0;
	set_events(e, c, false);
	return 1;
}

static void after_ready(struct eng *e, struct aconn *c);

/* The CONNECT (or the trickle) once the transport is up. */
static void transport_ready(struct eng *e, struct aconn *c)
{
	const struct ab_spec *s = S(e, c);
	struct ab_rec *r = R(e, c);
	struct buf b = { 0 };
	char id[48];

	snprintf(id, sizeof(id), "ab%d-%u", (int)getpid(), c->idx);
	switch (s->bh) {
	case BH_TRICKLE_IN:
		r->t_ready = ab_now_ms();
		/* On WebSocket the frame is trickled too (its header first). */
		ab_enc_connect(&b, id, true, 0);
		queue_framed(e, c, s->tr, buf_head(&b), buf_used(&b), true);
		c->st = S_TRICKLE;
		c->next_tr = ab_now_ms();
		break;
	case BH_SEND:
		r->t_ready = r->t_first = ab_now_ms();
		queue_spec(e, c);
		c->st = S_SENDING;
		if (ab_sock_push(e, c, SIZE_MAX) == 1) {
			r->t_sent = ab_now_ms();
			c->st = S_WAIT_CLOSE;
		}
		break;
	default: /* BH_CONNECT_* */
		ab_enc_connect(&b, id, true, 0);
		queue_framed(e, c, s->tr, buf_head(&b), buf_used(&b), true);
		c->st = S_CONNACK;
		ab_sock_push(e, c, SIZE_MAX);
		break;
	}
	buf_release(&b);
}

static void after_ready(struct eng *e, struct aconn *c)
{
	const struct ab_spec *s = S(e, c);
	struct ab_rec *r = R(e, c);

	r->t_ready = ab_now_ms();
	switch (s->bh) {
	case BH_CONNECT_SEND:
		r->t_first = ab_now_ms();
		queue_spec(e, c);
		c->st = S_SENDING;
		if (ab_sock_push(e, c, SIZE_MAX) == 1) {
			r->t_sent = ab_now_ms();
			c->st = S_WAIT_CLOSE;
		}
		break;
	case BH_CONNECT_HOLD:
		c->st = S_HELD;
		e->progress = r->t_ready;
		break;
	default: { /* BH_CONNECT_QUIT */
		struct buf b = { 0 };
		mqtt_encode_simple(&b, 4, MQTT_DISCONNECT);
		queue_framed(e, c, s->tr, buf_head(&b), buf_used(&b), true);
		buf_release(&b);
		ab_sock_push(e, c, SIZE_MAX);
		ab_sock_finish(e, c, END_SELF, 0);
		break;
	}
	}
}

static void tcp_up(struct eng *e, struct aconn *c)
{
	const struct ab_spec *s = S(e, c);
	struct ab_rec *r = R(e, c);

	r->t_conn = ab_now_ms();
	set_events(e, c, false);
	if (s->bh == BH_IDLE) {
		c->st = S_WAIT_CLOSE;
		return;
	}
	if (s->bh == BH_TRICKLE_PRE) {
		struct buf b = { 0 };
		if (s->tr == TR_TLS) {
			queue_framed(e, c, TR_PLAIN, e->hello, e->hello_len, false);
		} else if (s->tr == TR_WS) {
			queue_framed(e, c, TR_PLAIN, (const uint8_t *)e->upgrade,
						   strlen(e->upgrade), false);
		} else {
			ab_enc_connect(&b, "ab-trickle", true, 0);
			queue_framed(e, c, TR_PLAIN, buf_head(&b), buf_used(&b), false);
		}
		buf_release(&b);
		c->st = S_TRICKLE;
		c->next_tr = ab_now_ms();
		return;
	}
	if (s->tr == TR_TLS) {
		if (!(c->ssl = SSL_new(e->tls)) || !SSL_set_fd(c->ssl, c->fd)) {
			ab_sock_finish(e, c, END_ERROR, ENOMEM);
			return;
		}
		SSL_set_connect_state(c->ssl);
		c->st = S_TLS_HS;
		return;
	}
	if (s->tr == TR_WS) {
		queue_framed(e, c, TR_PLAIN, (const uint8_t *)e->upgrade, strlen(e->upgrade), false);
		c->st = S_WS_UP;
		ab_sock_push(e, c, SIZE_MAX);
		return;
	}
	transport_ready(e, c);
}

static void tls_step(struct eng *e, struct aconn *c)
{
	int k = SSL_do_handshake(c->ssl);

	if (k == 1) {
		set_events(e, c, false);
		transport_ready(e, c);
		return;
	}
	int se = SSL_get_error(c->ssl, k);
	ERR_clear_error();
	if (se == SSL_ERROR_WANT_READ)
		set_events(e, c, false);
	else if (se == SSL_ERROR_WANT_WRITE)
		set_events(e, c, true);
	else
		ab_sock_finish(e, c, END_PEER, EPROTO);
}

/* Unwraps the server's WebSocket frames from c->raw into c->mq. */
static void ws_unframe(struct aconn *c)
{
	for (;;) {
		const uint8_t *p = buf_head(&c->raw);
		size_t n = buf_used(&c->raw), h = 2;
		uint64_t len;

		if (n < 2)
			return;
		len = p[1] & 0x7f;
		if (len == 126)
			h = 4;
		else if (len == 127)
			h = 10;
		if (n < h)
			return;
		if (h == 4)
			len = (uint64_t)p[2] << 8 | p[3];
		else if (h == 10)
			for (int i = 0, j = 2; i < 8; i++, j++)
				len = i ? len << 8 | p[j] : p[j];
		if (n < h + len)
			return;
		if ((p[0] & 0x0f) == 0x2 || (p[0] & 0x0f) == 0x0)
			buf_append(&c->mq, p + h, (size_t)len);
		buf_consume(&c->raw, h + (size_t)len);
	}
}

/* Reads what is there. Returns 0, or -1 after finishing c. */
static int read_in(struct eng *e, struct aconn *c)
{
	const struct ab_spec *s = S(e, c);
	bool keep = c->st == S_WS_UP || c->st == S_CONNACK;

	for (int turns = 0; turns < 16; turns++) {
		ssize_t n;

		if (c->ssl && c->st != S_TLS_HS) {
			int k = SSL_read(c->ssl, e->scratch, AB_SCRATCH);
			if (k <= 0) {
				int se = SSL_get_error(c->ssl, k);
				ERR_clear_error();
				if (se == SSL_ERROR_WANT_READ)
					return 0;
				if (se == SSL_ERROR_WANT_WRITE) {
					set_events(e, c, true);
					return 0;
				}
				ab_sock_finish(e, c, END_PEER, 0);
				return -1;
			}
			n = k;
		} else {
			n = recv(c->fd, e->scratch, AB_SCRATCH, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				ab_sock_finish(e, c, END_PEER, n == 0 ? 0 : errno);
				return -1;
			}
			if (n < 0)
				return 0;
		}
		if (!keep)
			continue;
		if (c->st == S_WS_UP) {
			buf_append(&c->raw, e->scratch, (size_t)n);
			const char *h = (const char *)buf_head(&c->raw);
			const char *end = memmem(h, buf_used(&c->raw), "\r\n\r\n", 4);
			if (!end)
				continue;
			if (buf_used(&c->raw) < 12 || memcmp(h + 9, "101", 3) != 0) {
				ab_sock_finish(e, c, END_PEER, EPROTO);
				return -1;
			}
			buf_consume(&c->raw, (size_t)(end + 4 - h));
			transport_ready(e, c);
			keep = c->st == S_CONNACK;
			if (!keep)
				continue;
			ws_unframe(c);
		} else if (s->tr == TR_WS) {
			buf_append(&c->raw, e->scratch, (size_t)n);
			ws_unframe(c);
		} else {
			buf_append(&c->mq, e->scratch, (size_t)n);
		}
		if (c->st == S_CONNACK) {
			struct mqtt_frame f;
			int r = mqtt_frame_parse(buf_head(&c->mq), buf_used(&c->mq), 1 << 20, &f);
			if (r > 0 && f.type == MQTT_CONNACK && f.body_len >= 2) {
				R(e, c)->connack = (uint8_t)(f.body[1] + 1);
				buf_release(&c->mq);
				buf_release(&c->raw);
				keep = false;
				after_ready(e, c);
				if (c->st == S_DONE)
					return -1;
			}
		}
	}
	return 0;
}

void ab_sock_event(struct eng *e, struct aconn *c, uint32_t ev)
{
	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			ab_sock_finish(e, c, END_CONNECT_ERR, err);
			return;
		}
		tcp_up(e, c);
		if (c->st == S_TLS_HS)
			tls_step(e, c);
		return;
	}
	if (c->st == S_TLS_HS) {
		tls_step(e, c);
		return;
	}
	if ((ev & EPOLLOUT) && c->out_off < c->out_len && c->st != S_TRICKLE) {
		int k = ab_sock_push(e, c, SIZE_MAX);
		if (k < 0)
			return;
		if (k == 1 && c->st == S_SENDING) {
			R(e, c)->t_sent = ab_now_ms();
			c->st = S_WAIT_CLOSE;
		}
	} else if (ev & EPOLLOUT) {
		set_events(e, c, false);
	}
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
		read_in(e, c);
}

int ab_sock_setup(struct eng *e)
{
	snprintf(e->upgrade, sizeof(e->upgrade),
		 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
		 e->o->ws_path, e->o->host);
	if (!(e->tls = tls_client_ctx()))
		return -1;
	return make_hello(e);
}
