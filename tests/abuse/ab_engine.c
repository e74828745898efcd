/*
 * ab_engine.c - many attacker sockets, one epoll loop per process.
 *
 * The parent maps the records shared, forks one worker per 15,000 sockets
 * (the per-process descriptor limit here is 20,000), and each worker opens
 * its share (record i belongs to worker i % procs) at its part of the rate,
 * drives every connection through its behaviour and writes what happened
 * into the records. Sockets bind 127.0.0.2 .. 127.0.0.251 in turn
 * (IP_BIND_ADDRESS_NO_PORT: ports are picked per destination at connect),
 * or one fixed address.
 *
 * Transports: plain; TLS (OpenSSL, no verification: the attackers do not
 * care who answers); WebSocket (the upgrade, then our frames masked with a
 * zero key, which RFC 6455 allows, and the server's frames unwrapped).
 * BH_CONNECT_HOLD: a worker whose connections are all held or closed
 * writes 'H' on the status pipe and waits until the parent closes the
 * release pipe.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "abuse.h"

#define PER_PROC 15000
#define OPENS_PER_TURN 200
#define SCRATCH 65536

enum st {
	S_IDLE_NEW, S_CONNECTING, S_TLS_HS, S_WS_UP, S_CONNACK, S_TRICKLE, S_SENDING,
	S_WAIT_CLOSE, S_HELD, S_DONE,
};

struct aconn {
	int fd;
	uint8_t st;
	bool want_out;           /* EPOLLOUT registered */
	bool inner;              /* out goes through the transport */
	uint32_t idx;            /* record */
	SSL *ssl;
	const uint8_t *out;      /* owned when own */
	bool own;
	size_t out_len, out_off;
	int64_t next_tr;
	struct buf raw;          /* bytes read: the 101 head, WebSocket frames */
	struct buf mq;           /* MQTT bytes read */
};

struct eng {
	const struct ab_opts *o;
	const struct ab_plan *p;
	struct ab_rec *rec;
	struct aconn *c;
	int port[3];             /* by transport */
	size_t n;                /* mine */
	size_t opened, live;
	int ep;
	struct sockaddr_in dst;  /* port set per connection */
	SSL_CTX *tls;
	uint8_t *hello;          /* a ClientHello, for BH_TRICKLE_PRE on TLS */
	size_t hello_len;
	char upgrade[512];
	int64_t t0;
	int64_t progress;        /* last time a connection became held or ended */
	uint8_t scratch[SCRATCH];
};

static struct ab_rec *R(struct eng *e, struct aconn *c) { return &e->rec[c->idx]; }
static const struct ab_spec *S(struct eng *e, struct aconn *c)
{
	return &e->p->spec[e->rec[c->idx].spec];
}

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

static void finish(struct eng *e, struct aconn *c, enum ab_end how, int err)
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

/* Writes what is queued (at most max bytes). Returns 1 when all is out, 0
 * when blocked, -1 after finishing c (the peer closed). */
static int push_out(struct eng *e, struct aconn *c, size_t max)
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
				finish(e, c, END_PEER, EPIPE);
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
				finish(e, c, END_PEER, errno);
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
		if (push_out(e, c, SIZE_MAX) == 1) {
			r->t_sent = ab_now_ms();
			c->st = S_WAIT_CLOSE;
		}
		break;
	default: /* BH_CONNECT_* */
		ab_enc_connect(&b, id, true, 0);
		queue_framed(e, c, s->tr, buf_head(&b), buf_used(&b), true);
		c->st = S_CONNACK;
		push_out(e, c, SIZE_MAX);
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
		if (push_out(e, c, SIZE_MAX) == 1) {
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
		push_out(e, c, SIZE_MAX);
		finish(e, c, END_SELF, 0);
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
			finish(e, c, END_ERROR, ENOMEM);
			return;
		}
		SSL_set_connect_state(c->ssl);
		c->st = S_TLS_HS;
		return;
	}
	if (s->tr == TR_WS) {
		queue_framed(e, c, TR_PLAIN, (const uint8_t *)e->upgrade, strlen(e->upgrade), false);
		c->st = S_WS_UP;
		push_out(e, c, SIZE_MAX);
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
		finish(e, c, END_PEER, EPROTO);
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
			int k = SSL_read(c->ssl, e->scratch, SCRATCH);
			if (k <= 0) {
				int se = SSL_get_error(c->ssl, k);
				ERR_clear_error();
				if (se == SSL_ERROR_WANT_READ)
					return 0;
				if (se == SSL_ERROR_WANT_WRITE) {
					set_events(e, c, true);
					return 0;
				}
				finish(e, c, END_PEER, 0);
				return -1;
			}
			n = k;
		} else {
			n = recv(c->fd, e->scratch, SCRATCH, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				finish(e, c, END_PEER, n == 0 ? 0 : errno);
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
				finish(e, c, END_PEER, EPROTO);
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

static void on_event(struct eng *e, struct aconn *c, uint32_t ev)
{
	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			finish(e, c, END_CONNECT_ERR, err);
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
		int k = push_out(e, c, SIZE_MAX);
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

/* ---- the worker loop -------------------------------------------------------------- */

static void open_one(struct eng *e, struct aconn *c)
{
	struct ab_rec *r = R(e, c);
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u32 = c->idx };
	struct sockaddr_in src = { .sin_family = AF_INET };
	int one = 1;

	e->live++;
	r->t_open = ab_now_ms();
	c->st = S_CONNECTING;
	c->want_out = true;
	if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		finish(e, c, END_ERROR, errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (e->p->src_fixed)
		inet_pton(AF_INET, e->p->src_fixed, &src.sin_addr);
	else
		src.sin_addr.s_addr = htonl(0x7f000002u + c->idx % 250);
	e->dst.sin_port = htons((uint16_t)e->port[S(e, c)->tr]);
	if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    (connect(c->fd, (struct sockaddr *)&e->dst, sizeof(e->dst)) < 0 &&
	     errno != EINPROGRESS)) {
		finish(e, c, END_CONNECT_ERR, errno);
		return;
	}
	epoll_ctl(e->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void trickle(struct eng *e, int64_t now)
{
	for (size_t i = 0; i < e->opened; i++) {
		struct aconn *c = &e->c[i];
		if (c->st != S_TRICKLE || c->next_tr > now)
			continue;
		c->next_tr = now + e->p->trickle_ms;
		if (c->out_off + 1 < c->out_len) /* never the last byte */
			push_out(e, c, 1);
	}
}

static bool settled(struct eng *e)
{
	if (e->opened < e->n)
		return false;
	for (size_t i = 0; i < e->n; i++)
		if (e->c[i].st != S_DONE && e->c[i].st != S_HELD)
			return false;
	return true;
}

static void worker(struct eng *e, int k, int procs, int status_wr, int release_rd)
{
	const struct ab_plan *p = e->p;
	bool hold = false, holding = false;
	double rate = p->rate > 0 ? p->rate / procs : 1e9;
	struct epoll_event evs[256], rev = { .events = EPOLLIN, .data.u32 = UINT32_MAX };
	size_t total = 0;
	int64_t last_tr = 0;

	for (int i = 0; i < p->nspec; i++) {
		total += (size_t)p->spec[i].count;
		hold |= p->spec[i].bh == BH_CONNECT_HOLD;
	}
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	e->n = total / (size_t)procs + ((size_t)k < total % (size_t)procs);
	e->c = calloc(e->n ? e->n : 1, sizeof(*e->c));
	for (size_t i = 0; i < e->n; i++) {
		e->c[i].idx = (uint32_t)(i * (size_t)procs + (size_t)k);
		e->c[i].fd = -1;
	}
	/* Only a holding plan waits on the release pipe: for the others the
	 * parent has closed it already, and it would always be readable. */
	if (hold)
		epoll_ctl(e->ep, EPOLL_CTL_ADD, release_rd, &rev);
	e->t0 = e->progress = ab_now_ms();
	for (;;) {
		int64_t now = ab_now_ms();
		size_t due = (size_t)((double)(now - e->t0) * rate / 1000.0) + 1;
		for (int i = 0; i < OPENS_PER_TURN && e->opened < e->n && e->opened < due; i++)
			open_one(e, &e->c[e->opened++]);
		if (now - last_tr >= 10) {
			trickle(e, now);
			last_tr = now;
		}
		/* Held once every connection is held or closed, or nothing has
		 * moved for 5 s (connections the gateway leaves unanswered). */
		if (hold && !holding && e->opened == e->n &&
		    (settled(e) || now - e->progress > 5000 || now - e->t0 > p->deadline_ms)) {
			holding = true;
			if (write(status_wr, "H", 1) != 1)
				break;
		}
		if (!hold && e->opened == e->n && e->live == 0)
			break;
		if (now - e->t0 > p->deadline_ms + (holding ? 600000 : 0))
			break;
		int n = epoll_wait(e->ep, evs, 256, e->opened < e->n ? 2 : 10);
		for (int i = 0; i < n; i++) {
			uint32_t idx = evs[i].data.u32;
			if (idx == UINT32_MAX) {
				if (holding)
					goto out; /* released */
				continue;
			}
			struct aconn *c = &e->c[idx / (uint32_t)procs];
			if (c->st != S_DONE)
				on_event(e, c, evs[i].events);
		}
	}
out:
	for (size_t i = 0; i < e->n; i++)
		if (e->c[i].st != S_DONE && e->c[i].st != S_IDLE_NEW)
			finish(e, &e->c[i], e->c[i].st == S_HELD ? END_SELF : END_OPEN, 0);
}

/* ---- the parent ---------------------------------------------------------------------- */

static int wait_bytes(int fd, int want, int ms)
{
	int64_t end = ab_now_ms() + ms;
	int got = 0;
	char ch;

	while (got < want) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = (int)(end - ab_now_ms());
		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			break;
		if (read(fd, &ch, 1) != 1)
			break;
		got++;
	}
	return got;
}

struct ab_rec *ab_engine_run(const struct ab_opts *o, const struct ab_plan *p, size_t *n_out)
{
	size_t total = 0, left[8];
	int status[2], release[2], procs;
	pid_t kids[64];
	struct ab_rec *rec;
	bool hold = false;

	for (int i = 0; i < p->nspec; i++) {
		total += (size_t)p->spec[i].count;
		left[i] = (size_t)p->spec[i].count;
		hold |= p->spec[i].bh == BH_CONNECT_HOLD;
	}
	procs = p->procs ? p->procs : (int)((total + PER_PROC - 1) / PER_PROC);
	if (procs < 1)
		procs = 1;
	if (procs > 64)
		procs = 64;
	rec = mmap(NULL, total * sizeof(*rec) + 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		   -1, 0);
	if (rec == MAP_FAILED)
		return NULL;
	/* The groups interleaved, so that they ramp up together. */
	for (size_t i = 0; i < total;)
		for (int s = 0; s < p->nspec && i < total; s++)
			if (left[s] > 0) {
				left[s]--;
				rec[i++].spec = (uint8_t)s;
			}
	if (pipe2(status, O_CLOEXEC) < 0 || pipe2(release, O_CLOEXEC) < 0)
		return NULL;
	fflush(stdout);
	for (int k = 0; k < procs; k++) {
		if ((kids[k] = fork()) == 0) {
			struct eng *e = calloc(1, sizeof(*e));
			close(status[0]);
			close(release[1]);
			e->o = o;
			e->p = p;
			e->rec = rec;
			e->dst = (struct sockaddr_in){ .sin_family = AF_INET };
			inet_pton(AF_INET, p->dst ? p->dst : o->host, &e->dst.sin_addr);
			e->port[TR_PLAIN] = p->dst_port ? p->dst_port : o->port;
			e->port[TR_TLS] = o->tls_port;
			e->port[TR_WS] = o->ws_port;
			e->tls = tls_client_ctx();
			make_hello(e);
			snprintf(e->upgrade, sizeof(e->upgrade),
				 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
				 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
				 o->ws_path, o->host);
			worker(e, k, procs, status[1], release[0]);
			_exit(0);
		}
		if (kids[k] < 0)
			procs = k;
	}
	close(status[1]);
	close(release[0]);
	if (hold) {
		int got = wait_bytes(status[0], procs, p->deadline_ms + 10000);
		if (got < procs)
			ab_say("engine: %d of %d workers reported their sockets settled", got, procs);
		if (p->on_hold)
			p->on_hold(p->ud);
	}
	close(release[1]);
	for (int k = 0; k < procs; k++) {
		int st;
		int64_t end = ab_now_ms() + p->deadline_ms + 30000;
		while (waitpid(kids[k], &st, WNOHANG) == 0) {
			if (ab_now_ms() > end) {
				kill(kids[k], SIGKILL);
				waitpid(kids[k], &st, 0);
				break;
			}
			ab_sleep_ms(20);
		}
	}
	close(status[0]);
	*n_out = total;
	return rec;
}

void ab_recs_free(struct ab_rec *r, size_t n)
{
	if (r)
		munmap(r, n * sizeof(*r) + 1);
}

void ab_tally(const struct ab_rec *r, size_t n, int spec, struct ab_tally *t)
{
	memset(t, 0, sizeof(*t));
	t->life_min = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		const struct ab_rec *x = &r[i];
		if (spec >= 0 && x->spec != spec)
			continue;
		t->n++;
		t->connack += x->connack != 0;
		t->ready += x->t_ready != 0;
		switch (x->end) {
		case END_OPEN: t->open++; break;
		case END_SELF: t->self++; break;
		case END_CONNECT_ERR:
		case END_ERROR:
			if (x->end == END_CONNECT_ERR)
				t->conn_err++;
			else
				t->error++;
			if (!t->first_err)
				t->first_err = x->err;
			break;
		case END_PEER: {
			int64_t life = x->t_end - (x->t_conn ? x->t_conn : x->t_open);
			t->peer++;
			if (life < t->life_min)
				t->life_min = life;
			if (life > t->life_max)
				t->life_max = life;
			if (x->t_sent && x->t_end - x->t_sent > t->after_max)
				t->after_max = x->t_end - x->t_sent;
			if (x->t_first && x->t_end - x->t_first > t->first_max)
				t->first_max = x->t_end - x->t_first;
			break;
		}
		}
	}
	if (t->life_min == INT64_MAX)
		t->life_min = 0;
}
