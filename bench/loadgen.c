/*
 * loadgen.c - MQTT 3.1.1 load generator for kafkagate and other brokers.
 *
 * One thread, one epoll loop, raw non-blocking sockets. Packets are encoded
 * and parsed with the project codec (mqtt_codec.h). Per connection we keep a
 * small struct plus two struct buf: `in` holds only a partial packet carried
 * between reads (whole packets are parsed straight from a shared read buffer)
 * and `out` holds what the socket has not accepted yet. Publishers encode only
 * while `out` is under LG_OUT_HIGH and write only when the socket is
 * writable, so TCP backpressure bounds memory even flat out.
 *
 * Latency: publishers put CLOCK_MONOTONIC ns in the first 8 payload bytes;
 * every process runs on one machine, so subscribers subtract it from their
 * own clock and record the difference in a log-linear histogram.
 *
 * Transports: plain TCP by default; --tls CAFILE puts an OpenSSL client
 * under every connection (handshake, SSL_read and SSL_write driven by the
 * same loop); --ws PATH speaks MQTT over a WebSocket (RFC 6455 client side:
 * HTTP upgrade, masked binary frames out, the broker's frames streamed into
 * the MQTT parser whatever their boundaries), over TLS with both. Plain
 * connections keep no transport state and take no extra copy.
 *
 * Protocol: MQTT 3.1.1 by default, byte for byte as before MQTT 5 existed.
 * --mqtt5 speaks 5.0 (CONNECT level 5; the broker's packets decoded at level
 * 5: CONNACK and SUBACK with properties, acks with optional reason codes,
 * PUBLISH with a property list). --topic-alias N adds topic aliases both
 * ways: each publisher has one topic, so it sends it once with alias 1 and
 * then an empty topic with the alias (when the broker's CONNACK allows one);
 * every connection announces Topic Alias Maximum N, and subscribers resolve
 * the aliases the broker sends them (an unknown alias ends the connection).
 *
 * Modes: pub, sub, idle, run (pubs and subs in one process). bench/README.md
 * documents the options and the RESULT line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/buf.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"
#include "transport/ws.h"

#define LG_LEVEL 4              /* MQTT 3.1.1, the default; --mqtt5: 5 */
#define LG_OUT_HIGH 16384       /* publishers stop encoding above this */
#define LG_READ_CHUNK 65536
#define LG_READS 16             /* reads per connection per wake-up */
#define LG_MAX_PACKET (1u << 20)
#define LG_KEEPALIVE 600
#define LG_PING_NS (300 * NS)   /* half the keepalive */
#define LG_QUIET_NS (2 * NS)    /* drain ends after this long without progress */
#define LG_STALL_NS NS          /* end-to-end window stuck this long: write off */
#define NS 1000000000ull
#define LG_TLS_RECORD 16384     /* largest TLS plaintext record */

/* Log-linear histogram: values below 2^(SUB_BITS+1) ns are exact; above,
 * each power of two is split into 2^SUB_BITS buckets (< 0.8% error). Values
 * past 2^42 ns (about 73 minutes) land in the last bucket. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 34
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) * HIST_SUB)

struct hist {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
};

enum lg_mode { MODE_PUB, MODE_SUB, MODE_IDLE, MODE_RUN };
enum lg_role { ROLE_SUB, ROLE_PUB, ROLE_IDLE };
/* ST_TLS: handshaking (--tls); ST_UPGRADE: waiting for the 101 (--ws). */
enum lg_state { ST_NEW, ST_CONNECTING, ST_TLS, ST_UPGRADE, ST_CONNACK, ST_SUBACK, ST_READY,
		ST_DONE };
enum lg_phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_HOLD, PH_END, PH_SETTLE };

/* Client end of a WebSocket, allocated per connection with --ws only. Our
 * frames are masked (RFC 6455 5.3), the broker's are not. */
struct wsc {
	struct buf wire;        /* whole frames for the socket, in order */
	uint64_t remaining;     /* payload bytes left in the broker's current frame */
	uint32_t rng;           /* xorshift32: masking keys, Sec-WebSocket-Key */
	uint8_t opcode;         /* of that frame */
	uint8_t hdr_len;        /* its header bytes gathered so far */
	uint8_t hdr_need;       /* 2, then 4 or 10 once the length byte is in */
	uint8_t ctl_len;
	uint8_t hdr[10];
	uint8_t ctl[WS_MAX_CONTROL];  /* a control frame's payload */
	char key[WS_KEY_LEN + 1];
};

struct conn {
	int fd;
	uint8_t role;
	uint8_t state;
	uint16_t next_id;
	uint32_t events;        /* epoll mask registered now */
	uint32_t index;         /* among its role: names its topic and client id */
	uint32_t inflight;      /* QoS 1/2 publishes not yet completed */
	uint8_t tls_want;       /* the last handshake or read step needs EPOLLOUT */
	uint8_t alias_set;      /* --topic-alias publisher: alias 1 names its topic */
	uint64_t sent;
	struct buf in;
	struct buf out;         /* MQTT bytes; with --ws framed into ws->wire */
	SSL *ssl;               /* --tls, once connected; NULL otherwise */
	struct wsc *ws;         /* --ws, once connected (and through TLS) */
};

/* The aliases a broker set toward one subscriber: topic per alias, grown
 * to the highest alias seen (a broker uses few; kafkagate at most 64). */
struct lg_alias {
	char *topic;
	uint16_t len;
};

struct lg_aliases {
	struct lg_alias *v;
	uint32_t cap;
};

struct lg {
	/* options */
	int mode;
	struct sockaddr_in addr;
	int qos;
	size_t size;
	double rate;            /* msgs/s for the whole process; 0 = flat out */
	double duration, hold, drain, connect_timeout;
	double settle, linger;  /* pub/run: quiet seconds before and after the traffic */
	unsigned window, conn_window;
	uint64_t expect;
	uint64_t e2e_window;     /* run mode: deliveries in transit at most */
	const char *prefix, *filter, *id_prefix;
	const char *host;       /* dotted quad: the TLS name check, the Host header */
	SSL_CTX *tls;           /* --tls; NULL: plain TCP */
	const char *ws_path;    /* --ws; NULL: raw MQTT */
	char tls_desc[80];      /* version and cipher of the first handshake */
	uint8_t level;          /* 4 (MQTT 3.1.1) or 5 (--mqtt5) */
	uint16_t alias_max;     /* --topic-alias: the Topic Alias Maximum we announce */
	unsigned n_sub, n_pub, n_idle;
	/* state */
	int ep;
	int phase;
	struct conn *conns;     /* subscribers, then publishers, then idle */
	unsigned n, next_open, pending;
	unsigned ready, failed, lost, complaints;
	uint64_t t_setup, t_start, t_pub_end, t_hold_end, t_first_rx, t_last_rx;
	uint64_t t_progress, t_ping;
	uint64_t sent, acked, received;
	uint64_t written_off, stalls;  /* deliveries presumed dropped by the broker */
	/* Level 5: what the broker's first CONNACK announced (0 / 65535 when
	 * absent), and how often aliases were used. */
	uint16_t srv_alias_max;
	uint32_t srv_recv_max;
	bool srv_seen;
	uint64_t alias_pub;     /* PUBLISHes sent with an empty topic and an alias */
	uint64_t alias_rx;      /* deliveries that came that way, resolved */
	uint64_t refused;       /* acks with a reason code >= 0x80 */
	struct lg_aliases *atab; /* --topic-alias: per subscriber, the broker's aliases */
	uint8_t *payload;
	struct hist lat;
	uint8_t scratch[LG_READ_CHUNK];
};

static volatile sig_atomic_t lg_stop;

static void on_signal(int sig)
{
	(void)sig;
	lg_stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
	unsigned e = v ? 63u - (unsigned)__builtin_clzll(v) : 0;
	unsigned shift = e > HIST_SUB_BITS ? e - HIST_SUB_BITS : 0;
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* Midpoint of a bucket's value range. */
static uint64_t hist_value(unsigned idx)
{
	if (idx < 2 * HIST_SUB)
		return idx;
	unsigned shift = idx / HIST_SUB - 1;
	uint64_t lo = (uint64_t)(idx - shift * HIST_SUB) << shift;
	return lo + ((1ull << shift) - 1) / 2;
}

static void hist_record(struct hist *h, uint64_t v)
{
	h->counts[hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

static uint64_t hist_percentile(const struct hist *h, double q)
{
	if (h->total == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->total);
	if ((double)rank < q * (double)h->total)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank)
			return hist_value(i) < h->max ? hist_value(i) : h->max;
	}
	return h->max;
}

static void complain(struct lg *g, const struct conn *c, const char *what, int err)
{
	/* A broker refusing thousands of connections would flood the terminal;
	 * the counts in the RESULT line tell the rest. */
	if (g->complaints++ >= 5)
		return;
	fprintf(stderr, "loadgen: conn %c%u: %s%s%s\n", "SPI"[c->role], c->index, what,
		err ? ": " : "", err ? strerror(err) : "");
}

static void conn_close(struct conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->ws) {
		buf_release(&c->ws->wire);
		free(c->ws);
		c->ws = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = ST_DONE;
	buf_release(&c->in);
	buf_release(&c->out);
}

static void conn_fail(struct lg *g, struct conn *c, const char *what, int err)
{
	complain(g, c, what, err);
	if (c->state == ST_READY) {
		g->lost++;
	} else {
		g->failed++;
		g->pending--;
	}
	conn_close(c);
}

static void conn_ready(struct lg *g, struct conn *c)
{
	c->state = ST_READY;
	g->pending--;
	g->ready++;
	/* Idle connections are the per-connection memory test: keep nothing. */
	if (c->role == ROLE_IDLE)
		buf_release(&c->in);
}

/* Deliveries still on their way to subscribers (run mode). */
static int64_t lg_in_transit(const struct lg *g)
{
	return (int64_t)(g->sent * g->n_sub - g->received - g->written_off);
}

static bool pub_can_send(const struct lg *g, const struct conn *c)
{
	return c->role == ROLE_PUB && c->state == ST_READY && g->phase == PH_RUN &&
	       (g->qos == 0 || c->inflight < g->window) &&
	       (g->e2e_window == 0 || lg_in_transit(g) < (int64_t)g->e2e_window);
}

static void conn_watch(struct lg *g, struct conn *c)
{
	uint32_t ev = EPOLLIN;
	if (c->state == ST_CONNECTING || c->tls_want || buf_used(&c->out) > 0 ||
	    (c->ws && buf_used(&c->ws->wire) > 0) || (g->rate == 0 && pub_can_send(g, c)))
		ev |= EPOLLOUT;
	if (ev == c->events)
		return;
	struct epoll_event e = { .events = ev, .data.u32 = (uint32_t)(c - g->conns) };
	if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

/* ---- Transport: the socket, TLS under it (--tls), WebSocket over it (--ws) ---- */

/* After a failed SSL call: returns SSL_ERROR_WANT_READ or _WANT_WRITE when
 * the call is to be repeated once the socket is ready, 0 when the
 * connection is over (*what and errno then say why). Leaves OpenSSL's error
 * queue empty so that the next connection's SSL_get_error() reads its own. */
static int tls_check(struct conn *c, int r, const char **what)
{
	static char why[200];
	int err = errno;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return e;
	unsigned long code = ERR_peek_error();
	long vr = SSL_get_verify_result(c->ssl);
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && code == 0 && err == 0)) {
		*what = "closed by broker";
		err = 0;
	} else if (e == SSL_ERROR_SYSCALL && code == 0) {
		*what = "TLS: socket";
	} else {
		const char *reason = code ? ERR_reason_error_string(code) : NULL;
		snprintf(why, sizeof why, "TLS: %s%s%s", reason ? reason : "error",
			 vr != X509_V_OK ? ": " : "",
			 vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
		*what = why;
		err = 0;
	}
	ERR_clear_error();
	errno = err;
	return 0;
}

/* Reads into p. Returns the byte count, 0 when nothing is there yet, or -1
 * when the connection is over (*what and errno say why). */
static ssize_t conn_recv(struct conn *c, uint8_t *p, size_t n, const char **what)
{
	if (!c->ssl) {
		ssize_t r;
		do
			r = recv(c->fd, p, n, 0);
		while (r < 0 && errno == EINTR);
		if (r > 0)
			return r;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		*what = r == 0 ? "closed by broker" : "recv";
		if (r == 0)
			errno = 0;
		return -1;
	}
	/* Whole records only (room for the largest), and no read-ahead (the
	 * default): OpenSSL then keeps no decrypted or raw bytes that epoll
	 * cannot see, so a reader that stops after LG_READS is woken again. */
	size_t got = 0;
	c->tls_want = 0;
	while (n - got >= LG_TLS_RECORD) {
		int r = SSL_read(c->ssl, p + got, (int)(n - got));
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		int e = tls_check(c, r, what);
		if (!e)
			return -1;
		c->tls_want = e == SSL_ERROR_WANT_WRITE;
		break;
	}
	return (ssize_t)got;
}

/* Writes from p. Returns the count taken, 0 when the socket is full, or -1
 * (*what, errno). After 0 over TLS the same bytes, or more, are offered
 * again: the buffer may move (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
static ssize_t conn_send(struct conn *c, const uint8_t *p, size_t n, const char **what)
{
	if (!c->ssl) {
		ssize_t r;
		do
			r = send(c->fd, p, n, MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
		if (r >= 0)
			return r;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
	int r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0)
		return r;
	return tls_check(c, r, what) ? 0 : -1;
}

static uint32_t ws_rand(struct wsc *w)
{
	uint32_t x = w->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return w->rng = x;
}

/* Appends one masked FIN frame to w->wire. A benchmark needs no
 * unpredictable keys (RFC 6455 10.3 guards against proxies), only changing
 * ones, so that the broker does unmask. Returns 0 or -1 (out of memory). */
static int ws_put_frame(struct wsc *w, uint8_t op, const uint8_t *p, size_t n)
{
	uint8_t h[14];
	size_t hl = 0;
	h[hl++] = (uint8_t)(0x80 | op);
	if (n < 126) {
		h[hl++] = (uint8_t)(0x80 | n);
	} else if (n <= 0xffff) {
		h[hl++] = 0x80 | 126;
		h[hl++] = (uint8_t)(n >> 8);
		h[hl++] = (uint8_t)n;
	} else {
		h[hl++] = 0x80 | 127;
		for (int s = 56; s >= 0; s -= 8)
			h[hl++] = (uint8_t)((uint64_t)n >> s);
	}
	uint8_t m[8];
	uint32_t key = ws_rand(w);
	memcpy(m, &key, 4);
	memcpy(m + 4, &key, 4);
	memcpy(h + hl, m, 4);
	hl += 4;
	if (buf_reserve(&w->wire, hl + n) < 0)
		return -1;
	uint8_t *d = w->wire.data + w->wire.len;
	memcpy(d, h, hl);
	d += hl;
	uint64_t m64, v;
	memcpy(&m64, m, 8);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&v, p + i, 8);
		v ^= m64;
		memcpy(d + i, &v, 8);
	}
	for (; i < n; i++)
		d[i] = p[i] ^ m[i & 3];
	w->wire.len += hl + n;
	return 0;
}

/* Writes what is queued: c->out, or with --ws c->out framed as one binary
 * frame (once the frames before it are out) behind what ws->wire holds.
 * Returns 0, or -1 when the connection failed (and is closed). */
static int conn_flush(struct lg *g, struct conn *c)
{
	struct buf *b = c->ws ? &c->ws->wire : &c->out;
	for (;;) {
		if (c->ws && buf_used(b) == 0 && buf_used(&c->out) > 0 && c->state >= ST_CONNACK) {
			if (ws_put_frame(c->ws, WS_OP_BINARY, buf_head(&c->out),
					 buf_used(&c->out)) < 0) {
				conn_fail(g, c, "frame", ENOMEM);
				return -1;
			}
			buf_reset(&c->out);
		}
		if (buf_used(b) == 0)
			break;
		const char *what = "send";
		ssize_t n = conn_send(c, buf_head(b), buf_used(b), &what);
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_fail(g, c, what, errno);
			return -1;
		}
		buf_consume(b, (size_t)n);
	}
	if (c->role == ROLE_IDLE) {
		buf_release(&c->out);
		if (c->ws)
			buf_release(&c->ws->wire);
	}
	return 0;
}

static uint16_t conn_next_id(struct conn *c)
{
	if (++c->next_id == 0)
		c->next_id = 1;
	return c->next_id;
}

static int send_ack(const struct lg *g, struct conn *c, uint8_t type, uint16_t id)
{
	/* Level 5: reason 0 and no properties, so the encoder writes the same
	 * four bytes as 3.1.1 (3.4.2.1). */
	struct mqtt_ack a = { .packet_id = id };
	return mqtt_encode_ack(&c->out, g->level, type, &a);
}

/* Encodes up to `budget` publishes, bounded by the output high-water mark
 * and the in-flight window. */
static void pub_fill(struct lg *g, struct conn *c, uint64_t budget)
{
	if (!pub_can_send(g, c))
		return;
	char topic[256];
	int tlen = snprintf(topic, sizeof topic, "%s/%u", g->prefix, c->index);
	struct mqtt_publish p = {
		.qos = (uint8_t)g->qos,
		.topic = { (const uint8_t *)topic, (uint16_t)tlen },
		.payload = g->payload,
		.payload_len = (uint32_t)g->size,
	};
	/* Topic Alias 1 (0x23, two bytes): a publisher has one topic. Only
	 * when the broker's CONNACK allows aliases (5.0 section 3.2.2.3.8). */
	static const uint8_t alias1[] = { MQTT_P_TOPIC_ALIAS, 0, 1 };
	bool alias = g->alias_max > 0 && g->srv_alias_max >= 1;
	if (alias)
		p.props = (struct mqtt_props){ alias1, sizeof alias1 };
	while (budget-- > 0 && buf_used(&c->out) < LG_OUT_HIGH && pub_can_send(g, c)) {
		uint64_t ts = now_ns();
		memcpy(g->payload, &ts, sizeof ts);
		p.packet_id = g->qos ? conn_next_id(c) : 0;
		/* The first PUBLISH sets the alias with the topic; later ones
		 * leave the topic empty. They leave in this order on one
		 * connection, so the broker always knows the alias first. */
		if (alias && c->alias_set)
			p.topic.len = 0;
		if (mqtt_encode_publish(&c->out, g->level, &p) != MQTT_OK)
			break;
		if (alias) {
			g->alias_pub += c->alias_set;
			c->alias_set = 1;
		}
		if (g->qos)
			c->inflight++;
		c->sent++;
		g->sent++;
	}
}

static void pub_complete(struct lg *g, struct conn *c)
{
	if (c->inflight > 0)
		c->inflight--;
	g->acked++;
	g->t_progress = now_ns();
}

/* Level 5: the Topic Alias of a delivery to subscriber c, set or used.
 * Returns 0, or -1 for an alias the broker may not send: 0 or over the
 * maximum we announced, or used before it was set (5.0 section 3.3.2.3.4:
 * both are protocol errors for the receiver). */
static int sub_alias(struct lg *g, struct conn *c, const struct mqtt_publish *p)
{
	struct mqtt_prop pr;
	if (!mqtt_props_find(&p->props, MQTT_P_TOPIC_ALIAS, &pr))
		return 0;  /* decoder: an empty topic always comes with an alias */
	if (pr.value == 0 || pr.value > g->alias_max || !g->atab) {
		complain(g, c, "topic alias over the maximum we announced", 0);
		return -1;
	}
	struct lg_aliases *t = &g->atab[c->index];
	if (p->topic.len == 0) {
		if (pr.value >= t->cap || !t->v[pr.value].topic) {
			complain(g, c, "PUBLISH with an alias that was never set", 0);
			return -1;
		}
		g->alias_rx++;
		return 0;
	}
	if (pr.value >= t->cap) {
		uint32_t cap = pr.value + 1;
		struct lg_alias *v = realloc(t->v, cap * sizeof *v);
		if (!v)
			return -1;
		memset(v + t->cap, 0, (cap - t->cap) * sizeof *v);
		t->v = v;
		t->cap = cap;
	}
	struct lg_alias *a = &t->v[pr.value];
	if (a->len != p->topic.len || !a->topic) {
		char *n = realloc(a->topic, p->topic.len);
		if (!n)
			return -1;
		a->topic = n;
		a->len = p->topic.len;
	}
	memcpy(a->topic, p->topic.p, p->topic.len);
	return 0;
}

static int on_publish(struct lg *g, struct conn *c, const struct mqtt_publish *p)
{
	uint64_t now = now_ns();
	if (g->level == 5 && c->role == ROLE_SUB && sub_alias(g, c, p) < 0)
		return -1;
	if (p->payload_len >= 8) {
		uint64_t ts;
		memcpy(&ts, p->payload, sizeof ts);
		if (now >= ts)
			hist_record(&g->lat, now - ts);
	}
	g->received++;
	if (g->t_first_rx == 0)
		g->t_first_rx = now;
	g->t_last_rx = g->t_progress = now;
	if (p->qos == 1)
		return send_ack(g, c, MQTT_PUBACK, p->packet_id);
	if (p->qos == 2)
		return send_ack(g, c, MQTT_PUBREC, p->packet_id);
	return 0;
}

static int send_subscribe(struct lg *g, struct conn *c)
{
	struct mqtt_str f = { (const uint8_t *)g->filter, (uint16_t)strlen(g->filter) };
	uint8_t opt = (uint8_t)g->qos;
	/* Level 5: the options byte holds the maximum QoS in its low bits,
	 * the rest 0 (No Local off, Retain As Published off, Retain Handling
	 * 0); no properties. */
	return mqtt_encode_subscribe(&c->out, g->level, MQTT_SUBSCRIBE, conn_next_id(c),
				     &f, &opt, 1);
}

/* Level 5: what the broker's first CONNACK announced. A QoS 1/2 window
 * larger than its Receive Maximum would be a protocol error (5.0 section
 * 4.9, flow control), so the window shrinks to it. */
static void on_connack5(struct lg *g, const struct mqtt_connack *ca)
{
	struct mqtt_prop pr;
	if (g->srv_seen)
		return;
	g->srv_seen = true;
	g->srv_alias_max = mqtt_props_find(&ca->props, MQTT_P_TOPIC_ALIAS_MAXIMUM, &pr)
				   ? (uint16_t)pr.value : 0;
	g->srv_recv_max = mqtt_props_find(&ca->props, MQTT_P_RECEIVE_MAXIMUM, &pr)
				  ? pr.value : 65535;
	if (g->srv_recv_max < g->window)
		g->window = g->srv_recv_max;
	if (g->alias_max && g->srv_alias_max == 0)
		fprintf(stderr, "loadgen: the broker allows no topic aliases: "
			"publishers send full topics\n");
}

/* Handles one framed packet. Returns 0, or -1 to drop the connection. */
static int conn_packet(struct lg *g, struct conn *c, const struct mqtt_frame *f)
{
	struct mqtt_packet pkt;
	int rc = mqtt_decode(f, g->level, &pkt);
	if (rc != MQTT_OK) {
		complain(g, c, mqtt_err_str(rc), 0);
		return -1;
	}
	switch (f->type) {
	case MQTT_CONNACK:
		if (c->state != ST_CONNACK || pkt.u.connack.rc != MQTT_CONNACK_ACCEPTED) {
			complain(g, c, "CONNACK refused or unexpected", 0);
			return -1;
		}
		if (g->level == 5)
			on_connack5(g, &pkt.u.connack);
		if (c->role != ROLE_SUB) {
			conn_ready(g, c);
			return 0;
		}
		c->state = ST_SUBACK;
		return send_subscribe(g, c);
	case MQTT_SUBACK:
		/* Level 5: every code from 0x80 up is a refusal. */
		if (c->state != ST_SUBACK || pkt.u.suback.count < 1 ||
		    pkt.u.suback.codes[0] == MQTT_SUBACK_FAILURE ||
		    (g->level == 5 && pkt.u.suback.codes[0] >= 0x80)) {
			complain(g, c, "SUBACK refused or unexpected", 0);
			return -1;
		}
		conn_ready(g, c);
		return 0;
	case MQTT_PUBLISH:
		return on_publish(g, c, &pkt.u.publish);
	case MQTT_PUBACK:
	case MQTT_PUBCOMP:
		/* Level 5: a failure code still ends the exchange; counted. */
		g->refused += pkt.u.ack.reason >= 0x80;
		pub_complete(g, c);
		return 0;
	case MQTT_PUBREC:
		/* Level 5: PUBREC >= 0x80 ends the QoS 2 exchange, no PUBREL. */
		if (pkt.u.ack.reason >= 0x80) {
			g->refused++;
			pub_complete(g, c);
			return 0;
		}
		return send_ack(g, c, MQTT_PUBREL, pkt.u.ack.packet_id);
	case MQTT_PUBREL:
		return send_ack(g, c, MQTT_PUBCOMP, pkt.u.ack.packet_id);
	case MQTT_PINGRESP:
		return 0;
	case MQTT_DISCONNECT: {
		char why[48];
		snprintf(why, sizeof why, "DISCONNECT from broker, reason 0x%02x",
			 pkt.u.disconnect.reason);
		complain(g, c, why, 0);
		return -1;
	}
	default:
		complain(g, c, mqtt_type_name(f->type), 0);
		return -1;
	}
}

/* Parses every whole packet in data; keeps a trailing partial one in c->in. */
static int conn_feed(struct lg *g, struct conn *c, const uint8_t *data, size_t n)
{
	const uint8_t *p = data;
	size_t len = n, off = 0;
	bool carried = buf_used(&c->in) > 0;
	if (carried) {
		if (buf_append(&c->in, data, n) < 0)
			return -1;
		p = buf_head(&c->in);
		len = buf_used(&c->in);
	}
	while (off < len) {
		struct mqtt_frame f;
		int r = mqtt_frame_parse(p + off, len - off, LG_MAX_PACKET, &f);
		if (r < 0) {
			complain(g, c, mqtt_err_str(r), 0);
			return -1;
		}
		if (r == 0)
			break;
		if (conn_packet(g, c, &f) < 0)
			return -1;
		off += (size_t)r;
	}
	if (carried) {
		buf_consume(&c->in, off);
		buf_shrink(&c->in, 4096);
		return 0;
	}
	return buf_append(&c->in, p + off, len - off);
}

static int ws_frame_end(struct lg *g, struct conn *c)
{
	struct wsc *w = c->ws;
	char why[64];
	switch (w->opcode) {
	case WS_OP_PING:
		return ws_put_frame(w, WS_OP_PONG, w->ctl, w->ctl_len);
	case WS_OP_CLOSE:
		snprintf(why, sizeof why, "websocket closed by broker (code %u)",
			 w->ctl_len >= 2 ? (unsigned)(w->ctl[0] << 8 | w->ctl[1]) : 1005u);
		complain(g, c, why, 0);
		return -1;
	default:
		return 0;
	}
}

/* A frame header is complete in w->hdr. Returns 0, or -1 for a frame the
 * broker may not send. */
static int ws_frame_start(struct lg *g, struct conn *c)
{
	struct wsc *w = c->ws;
	uint8_t op = w->hdr[0] & 0x0f;
	uint64_t len = w->hdr[1] & 0x7f;
	if (len == 126) {
		len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
	} else if (len == 127) {
		len = 0;
		for (int i = 2; i < 10; i++)
			len = len << 8 | w->hdr[i];
	}
	w->hdr_len = 0;
	w->hdr_need = 2;
	if (op >= 0x8 && (op > WS_OP_PONG || len > WS_MAX_CONTROL || !(w->hdr[0] & 0x80))) {
		complain(g, c, "bad websocket control frame", 0);
		return -1;
	}
	if (op != WS_OP_CONT && op != WS_OP_BINARY && op < 0x8) {
		complain(g, c, "websocket frame neither binary nor control", 0);
		return -1;
	}
	w->opcode = op;
	w->remaining = len;
	w->ctl_len = 0;
	return len == 0 ? ws_frame_end(g, c) : 0;
}

/* Streams the payload of the broker's data frames into the MQTT parser,
 * whatever the frame and packet boundaries; answers pings. Returns 0, or -1
 * to drop the connection. */
static int ws_input(struct lg *g, struct conn *c, const uint8_t *p, size_t n)
{
	struct wsc *w = c->ws;
	while (n > 0) {
		if (w->remaining > 0) {
			size_t k = w->remaining < n ? (size_t)w->remaining : n;
			if (w->opcode < 0x8) {
				if (conn_feed(g, c, p, k) < 0)
					return -1;
			} else {
				memcpy(w->ctl + w->ctl_len, p, k);
				w->ctl_len = (uint8_t)(w->ctl_len + k);
			}
			w->remaining -= k;
			p += k;
			n -= k;
			if (w->remaining == 0 && ws_frame_end(g, c) < 0)
				return -1;
			continue;
		}
		size_t k = (size_t)(w->hdr_need - w->hdr_len) < n ? (size_t)(w->hdr_need - w->hdr_len) : n;
		memcpy(w->hdr + w->hdr_len, p, k);
		w->hdr_len = (uint8_t)(w->hdr_len + k);
		p += k;
		n -= k;
		if (w->hdr_len == 2 && w->hdr_need == 2) {
			uint8_t l = w->hdr[1] & 0x7f;
			if ((w->hdr[1] & 0x80) || (w->hdr[0] & 0x70)) {
				complain(g, c, "masked websocket frame or RSV bits from broker", 0);
				return -1;
			}
			w->hdr_need = l == 126 ? 4 : l == 127 ? 10 : 2;
		}
		if (w->hdr_len == w->hdr_need && ws_frame_start(g, c) < 0)
			return -1;
	}
	return 0;
}

static int conn_send_connect(struct lg *g, struct conn *c)
{
	char id[64];
	int idlen = snprintf(id, sizeof id, "%s%d-%c%u", g->id_prefix, (int)getpid(),
			     "spi"[c->role], c->index);
	struct mqtt_connect cn = {
		.level = g->level,
		.clean = true,
		.keepalive = LG_KEEPALIVE,
		.client_id = { (const uint8_t *)id, (uint16_t)idlen },
	};
	/* Level 5: no properties, or Topic Alias Maximum (0x22, two bytes)
	 * with --topic-alias, so that the broker may alias toward us. */
	uint8_t props[3] = { MQTT_P_TOPIC_ALIAS_MAXIMUM, (uint8_t)(g->alias_max >> 8),
			     (uint8_t)g->alias_max };
	if (g->alias_max)
		cn.props = (struct mqtt_props){ props, sizeof props };
	c->state = ST_CONNACK;
	return mqtt_encode_connect(&c->out, &cn) == MQTT_OK ? 0 : -1;
}

/* The broker's answer to the upgrade, gathered in c->in: a 101 with the
 * accept key for ours, then frames. Returns 0, or -1 to drop the connection. */
static int ws_response(struct lg *g, struct conn *c, const uint8_t *data, size_t n)
{
	if (buf_append(&c->in, data, n) < 0)
		return -1;
	const uint8_t *h = buf_head(&c->in);
	size_t used = buf_used(&c->in);
	const uint8_t *end = memmem(h, used, "\r\n\r\n", 4);
	if (!end || end + 4 - h > WS_MAX_HEAD) {
		if (used <= WS_MAX_HEAD)
			return 0;
		complain(g, c, "websocket upgrade answer too long", 0);
		return -1;
	}
	size_t head = (size_t)(end + 4 - h);
	char txt[WS_MAX_HEAD + 1], accept[29], why[160];
	memcpy(txt, h, head);
	txt[head] = '\0';
	const char *a = strcasestr(txt, "\r\nSec-WebSocket-Accept:");
	if (a)
		for (a += 23; *a == ' ' || *a == '\t'; a++)
			;
	if (strncmp(txt, "HTTP/1.1 101 ", 13) != 0 || !a || ws_accept_key(c->ws->key, accept) < 0 ||
	    strncmp(a, accept, 28) != 0 || (a[28] != '\r' && a[28] != ' ' && a[28] != '\t')) {
		snprintf(why, sizeof why, "websocket upgrade refused: %.*s",
			 (int)strcspn(txt, "\r\n"), txt);
		complain(g, c, why, 0);
		return -1;
	}
	/* Frames may follow the head in the same read: they are the tail of data. */
	size_t left = used - head;
	buf_release(&c->in);
	if (conn_send_connect(g, c) < 0)
		return -1;
	return left ? ws_input(g, c, data + n - left, left) : 0;
}

static int conn_input(struct lg *g, struct conn *c, const uint8_t *p, size_t n)
{
	if (!c->ws)
		return conn_feed(g, c, p, n);
	if (c->state == ST_UPGRADE)
		return ws_response(g, c, p, n);
	return ws_input(g, c, p, n);
}

/* Returns 0, or -1 when the connection failed (and is closed). */
static int conn_read(struct lg *g, struct conn *c)
{
	/* Drain up to LG_READS per wake-up: a subscriber sharing the loop with
	 * many publishers would otherwise read far less than they write and
	 * the generator, not the broker, would set the delivered rate. Over
	 * TLS a read stops with less than a record's room left. */
	size_t full = c->ssl ? sizeof g->scratch - LG_TLS_RECORD + 1 : sizeof g->scratch;
	for (int i = 0; i < LG_READS; i++) {
		const char *what = "recv";
		ssize_t n = conn_recv(c, g->scratch, sizeof g->scratch, &what);
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_fail(g, c, what, errno);
			return -1;
		}
		if (conn_input(g, c, g->scratch, (size_t)n) < 0) {
			conn_fail(g, c, "protocol", 0);
			return -1;
		}
		if ((size_t)n < full)
			return 0;
	}
	return 0;
}

/* TCP (and TLS) are up: the upgrade request with --ws, else CONNECT. */
static void conn_begin(struct lg *g, struct conn *c)
{
	if (!g->ws_path) {
		if (conn_send_connect(g, c) < 0)
			conn_fail(g, c, "encode CONNECT", ENOMEM);
		return;
	}
	struct wsc *w = calloc(1, sizeof *w);
	if (!w) {
		conn_fail(g, c, "websocket", ENOMEM);
		return;
	}
	c->ws = w;
	w->hdr_need = 2;
	w->rng = ((uint32_t)getpid() << 16) ^ (c->index * 2654435761u) ^ ((uint32_t)c->role << 30);
	if (w->rng == 0)
		w->rng = 1;
	uint8_t raw[16];
	for (int i = 0; i < 16; i += 4) {
		uint32_t r = ws_rand(w);
		memcpy(raw + i, &r, 4);
	}
	EVP_EncodeBlock((unsigned char *)w->key, raw, sizeof raw); /* 24 characters */
	char req[512];
	int len = snprintf(req, sizeof req,
			   "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
			   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
			   g->ws_path, g->host, (unsigned)ntohs(g->addr.sin_port), w->key);
	c->state = ST_UPGRADE;
	if (len < 0 || (size_t)len >= sizeof req || buf_append(&w->wire, req, (size_t)len) < 0)
		conn_fail(g, c, "websocket request", ENOMEM);
}

static void tls_step(struct lg *g, struct conn *c)
{
	int r = SSL_connect(c->ssl);
	if (r == 1) {
		c->tls_want = 0;
		if (!g->tls_desc[0])
			snprintf(g->tls_desc, sizeof g->tls_desc, "%s:%s", SSL_get_version(c->ssl),
				 SSL_get_cipher_name(c->ssl));
		conn_begin(g, c);
		return;
	}
	const char *what = "TLS handshake";
	int e = tls_check(c, r, &what);
	if (!e)
		conn_fail(g, c, what, errno);
	else
		c->tls_want = e == SSL_ERROR_WANT_WRITE;
}

static void conn_connected(struct lg *g, struct conn *c)
{
	int err = 0;
	socklen_t elen = sizeof err;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		err = errno;
	if (err) {
		conn_fail(g, c, "connect", err);
		return;
	}
	if (!g->tls) {
		conn_begin(g, c);
		return;
	}
	c->ssl = SSL_new(g->tls);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
	    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), g->host)) {
		ERR_clear_error();
		conn_fail(g, c, "TLS setup", ENOMEM);
		return;
	}
	SSL_set_connect_state(c->ssl);
	c->state = ST_TLS;
	tls_step(g, c);
}

static void conn_event(struct lg *g, struct conn *c, uint32_t events)
{
	if (c->fd < 0)
		return;
	if (c->state == ST_CONNECTING) {
		conn_connected(g, c);
	} else if (c->state == ST_TLS) {
		tls_step(g, c);
	} else if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP) ||
		    (c->tls_want && (events & EPOLLOUT))) && conn_read(g, c) < 0) {
		return;
	}
	if (c->fd < 0)
		return;
	if ((events & EPOLLOUT) && g->rate == 0)
		pub_fill(g, c, UINT64_MAX);
	if (conn_flush(g, c) == 0)
		conn_watch(g, c);
}

static void conn_open(struct lg *g, struct conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->state = ST_CONNECTING;
	g->pending++;
	if (fd < 0) {
		conn_fail(g, c, "socket", errno);
		return;
	}
	c->fd = fd;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&g->addr, sizeof g->addr) < 0 &&
	    errno != EINPROGRESS) {
		conn_fail(g, c, "connect", errno);
		return;
	}
	struct epoll_event e = { .events = EPOLLIN | EPOLLOUT,
				 .data.u32 = (uint32_t)(c - g->conns) };
	if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
		conn_fail(g, c, "epoll_ctl", errno);
		return;
	}
	c->events = e.events;
}

/* Sends `type` (PINGREQ, DISCONNECT) to every ready connection. */
static void lg_broadcast(struct lg *g, uint8_t type)
{
	for (unsigned i = 0; i < g->n; i++) {
		struct conn *c = &g->conns[i];
		if (c->state != ST_READY)
			continue;
		/* Level 5: PINGREQ is the same; DISCONNECT leaves out reason 0
		 * (Normal disconnection), the same two bytes too. */
		if (mqtt_encode_simple(&c->out, g->level, type) != MQTT_OK)
			conn_fail(g, c, "encode", ENOMEM);
		else if (conn_flush(g, c) == 0)
			conn_watch(g, c);
	}
}

static void lg_set_phase(struct lg *g, int phase, uint64_t now)
{
	g->phase = phase;
	g->t_progress = now;
	/* Flat-out publishers start or stop wanting EPOLLOUT. */
	for (unsigned i = 0; i < g->n; i++)
		if (g->conns[i].state == ST_READY)
			conn_watch(g, &g->conns[i]);
}

static bool lg_drained(const struct lg *g)
{
	uint64_t want = g->expect ? g->expect : g->sent * g->n_sub;
	bool acks_done = g->qos == 0 || g->acked >= g->sent;
	return acks_done && (g->n_sub == 0 || g->received >= want);
}

static void lg_tick(struct lg *g, uint64_t now)
{
	if (lg_stop && g->phase != PH_END) {
		g->phase = PH_END;
		return;
	}
	if (now - g->t_ping >= LG_PING_NS) {
		g->t_ping = now;
		lg_broadcast(g, MQTT_PINGREQ);
	}
	switch (g->phase) {
	case PH_SETUP:
		if (now - g->t_setup > (uint64_t)(g->connect_timeout * NS)) {
			for (unsigned i = 0; i < g->n; i++) {
				struct conn *c = &g->conns[i];
				if (c->state == ST_NEW) {
					c->state = ST_DONE;
					g->failed++;
				} else if (c->state != ST_READY && c->state != ST_DONE) {
					conn_fail(g, c, "setup timed out", 0);
				}
			}
			g->next_open = g->n;
		}
		while (g->next_open < g->n && g->pending < g->conn_window)
			conn_open(g, &g->conns[g->next_open++]);
		if (g->next_open < g->n || g->pending > 0)
			return;
		printf("CONNECTED ok=%u failed=%u secs=%.2f\n", g->ready, g->failed,
		       (double)(now - g->t_setup) / NS);
		fflush(stdout);
		g->t_start = now;
		if (g->mode == MODE_IDLE && g->ready > 0) {
			g->t_hold_end = now + (uint64_t)(g->hold * NS);
			lg_set_phase(g, PH_HOLD, now);
		} else if (g->settle > 0 && g->ready) {
			/* --settle: connected and quiet, so that a profiler
			 * started now sees only the traffic. */
			g->t_hold_end = now + (uint64_t)(g->settle * NS);
			lg_set_phase(g, PH_SETTLE, now);
		} else {
			lg_set_phase(g, g->ready ? PH_RUN : PH_END, now);
		}
		return;
	case PH_RUN:
		if (g->rate > 0 && g->n_pub > 0) {
			double per_conn = g->rate / g->n_pub;
			double elapsed = (double)(now - g->t_start) / NS;
			for (unsigned i = g->n_sub; i < g->n_sub + g->n_pub; i++) {
				struct conn *c = &g->conns[i];
				uint64_t due = (uint64_t)(per_conn * elapsed);
				if (c->state != ST_READY || due <= c->sent)
					continue;
				pub_fill(g, c, due - c->sent);
				if (conn_flush(g, c) == 0)
					conn_watch(g, c);
			}
		}
		/* A broker may drop QoS 0 messages (and only those): if the
		 * end-to-end window stays full without progress, write its
		 * contents off rather than stall. */
		if (g->e2e_window && g->qos == 0 &&
		    lg_in_transit(g) >= (int64_t)g->e2e_window &&
		    now - g->t_progress > LG_STALL_NS) {
			g->written_off += (uint64_t)lg_in_transit(g);
			g->stalls++;
			g->t_progress = now;
		}
		if (g->e2e_window && g->rate == 0)
			for (unsigned i = g->n_sub; i < g->n_sub + g->n_pub; i++)
				if (g->conns[i].state == ST_READY)
					conn_watch(g, &g->conns[i]);
		if (g->n_pub == 0) {
			/* sub mode: --duration bounds the wait for the first message */
			bool quiet = g->received > 0 && now - g->t_last_rx > (uint64_t)(g->drain * NS);
			bool enough = g->expect > 0 && g->received >= g->expect;
			if (quiet || enough || now - g->t_start > (uint64_t)(g->duration * NS))
				g->phase = PH_END;
		} else if (now - g->t_start >= (uint64_t)(g->duration * NS)) {
			g->t_pub_end = now;
			lg_set_phase(g, PH_DRAIN, now);
		}
		return;
	case PH_SETTLE:
		if (now >= g->t_hold_end) {
			g->t_start = now;
			lg_set_phase(g, PH_RUN, now);
		}
		return;
	case PH_DRAIN:
		if (!(lg_drained(g) || now - g->t_progress > LG_QUIET_NS ||
		      now - g->t_pub_end > (uint64_t)(g->drain * NS)))
			return;
		g->phase = PH_END;
		if (g->linger > 0) {
			/* --linger: the traffic is over, the connections stay
			 * (a profiler stopped now leaves the teardown out). */
			printf("DRAINED sent=%" PRIu64 " received=%" PRIu64 "\n", g->sent, g->received);
			fflush(stdout);
			g->t_hold_end = now + (uint64_t)(g->linger * NS);
			g->phase = PH_HOLD;
		}
		return;
	case PH_HOLD:
		if (now >= g->t_hold_end)
			g->phase = PH_END;
		return;
	}
}

static const char *mode_names[] = { "pub", "sub", "idle", "run" };

static void lg_report(struct lg *g, uint64_t now)
{
	double pub_secs = (double)((g->t_pub_end ? g->t_pub_end : now) - g->t_start) / NS;
	double rx_secs = (double)(g->t_last_rx - g->t_first_rx) / NS;
	double sent_rate = pub_secs > 0 ? (double)g->sent / pub_secs : 0;
	double rx_rate = rx_secs > 0 ? (double)g->received / rx_secs : 0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	printf("RESULT mode=%s pubs=%u subs=%u idle=%u qos=%d size=%zu connected=%u "
	       "failed=%u lost=%u sent=%" PRIu64 " acked=%" PRIu64 " received=%" PRIu64
	       " pub_secs=%.3f rx_secs=%.3f sent_per_s=%.0f msgs_per_s=%.0f"
	       " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
	       " written_off=%" PRIu64 " stalls=%" PRIu64 " cpu_s=%.2f",
	       mode_names[g->mode], g->n_pub, g->n_sub, g->n_idle, g->qos, g->size,
	       g->ready, g->failed, g->lost, g->sent, g->acked, g->received, pub_secs,
	       rx_secs, sent_rate, g->n_sub ? rx_rate : sent_rate,
	       (double)hist_percentile(&g->lat, 0.50) / 1e3,
	       (double)hist_percentile(&g->lat, 0.99) / 1e3,
	       (double)hist_percentile(&g->lat, 0.999) / 1e3, (double)g->lat.max / 1e3,
	       g->written_off, g->stalls, cpu);
	/* Only at level 5, so that 3.1.1 runs print the line as before. */
	if (g->level == 5)
		printf(" mqtt=5 topic_alias=%u srv_alias_max=%u srv_recv_max=%u alias_pub=%" PRIu64
		       " alias_rx=%" PRIu64 " refused=%" PRIu64,
		       (unsigned)g->alias_max, (unsigned)g->srv_alias_max, g->srv_recv_max,
		       g->alias_pub, g->alias_rx, g->refused);
	/* Only with a transport, so that plain runs print the line as before. */
	if (g->tls || g->ws_path)
		printf(" transport=%s%s%s", g->ws_path ? (g->tls ? "wss" : "ws") : "tls",
		       g->tls ? " tls=" : "", g->tls ? (g->tls_desc[0] ? g->tls_desc : "-") : "");
	putchar('\n');
	fflush(stdout);
}

static void usage(void)
{
	fputs("usage: loadgen pub|sub|idle|run [options]\n"
	      "  --host ADDR (127.0.0.1)  --port N (1883)\n"
	      "  --clients N        connections of the mode's kind (pub, sub, idle)\n"
	      "  --pubs N --subs M  run mode: publishers and subscribers in one process\n"
	      "  --qos Q (0)  --size BYTES (64, >= 8)  --inflight K (16, QoS 1/2 window)\n"
	      "  --rate MSGS_PER_S  whole process; 0 = flat out (default)\n"
	      "  --duration S (10)  publish time; sub mode: longest wait\n"
	      "  --topic-prefix P (bench/t)  publishers use P/<index>\n"
	      "  --topic FILTER     subscription (default P/#)\n"
	      "  --expect N         messages to receive before stopping (default sent x subs)\n"
	      "  --drain S (10)     longest wait for acks/deliveries after publishing\n"
	      "  --hold S (10)      idle mode: how long to hold the connections\n"
	      "  --settle S (0)     pub/run: wait S s after CONNECTED before publishing\n"
	      "  --linger S (0)     pub/run: after the drain print DRAINED, keep the\n"
	      "                     connections S s, then disconnect\n"
	      "  --connect-window N (100)  connection attempts in progress at once\n"
	      "  --connect-timeout S (60)  --id-prefix STR (lg)\n"
	      "  --e2e-window N (0 = off)  run mode: at most N deliveries in transit\n"
	      "  --tls CAFILE       TLS (1.2 or 1.3, the broker's choice), broker verified\n"
	      "                     against CAFILE for the --host address\n"
	      "  --ws PATH          MQTT over WebSocket, upgrading at PATH (e.g. /mqtt)\n"
	      "  --mqtt5            MQTT 5.0 (protocol level 5) instead of 3.1.1\n"
	      "  --topic-alias N    MQTT 5 with topic aliases: publishers alias their topic,\n"
	      "                     every connection announces Topic Alias Maximum N\n",
	      stderr);
	exit(2);
}

static double opt_num(const char *name, const char *v, double lo, double hi)
{
	char *end;
	double d = strtod(v, &end);
	if (end == v || *end || d < lo || d > hi) {
		fprintf(stderr, "loadgen: --%s %s: want a number in [%g, %g]\n", name, v, lo, hi);
		exit(2);
	}
	return d;
}

/* Verifies the broker (the name check is per connection, for --host);
 * no session resumption: every connection makes a full handshake. */
static SSL_CTX *lg_tls_ctx(const char *cafile)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

static void lg_options(struct lg *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "clients", 1, 0, 'c' },
		{ "pubs", 1, 0, 'P' }, { "subs", 1, 0, 'S' }, { "qos", 1, 0, 'q' },
		{ "size", 1, 0, 's' }, { "rate", 1, 0, 'r' }, { "duration", 1, 0, 'd' },
		{ "topic-prefix", 1, 0, 't' }, { "topic", 1, 0, 'f' },
		{ "inflight", 1, 0, 'k' }, { "expect", 1, 0, 'e' }, { "drain", 1, 0, 'D' },
		{ "hold", 1, 0, 'H' }, { "connect-window", 1, 0, 'w' },
		{ "connect-timeout", 1, 0, 'T' }, { "id-prefix", 1, 0, 'i' },
		{ "e2e-window", 1, 0, 'W' }, { "tls", 1, 0, 'L' }, { "ws", 1, 0, 'B' },
		{ "mqtt5", 0, 0, '5' }, { "topic-alias", 1, 0, 'A' },
		{ "settle", 1, 0, 'Z' }, { "linger", 1, 0, 'Y' },
		{ 0, 0, 0, 0 },
	};
	const char *host = "127.0.0.1", *cafile = NULL;
	unsigned clients = 1;
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *name = "";
		for (const struct option *x = opts; x->name; x++)
			if (x->val == o)
				name = x->name;
		switch (o) {
		case 'h': host = optarg; break;
		case 'p': g->addr.sin_port = htons((uint16_t)opt_num(name, optarg, 1, 65535)); break;
		case 'c': clients = (unsigned)opt_num(name, optarg, 1, 1e6); break;
		case 'P': g->n_pub = (unsigned)opt_num(name, optarg, 0, 1e6); break;
		case 'S': g->n_sub = (unsigned)opt_num(name, optarg, 0, 1e6); break;
		case 'q': g->qos = (int)opt_num(name, optarg, 0, 2); break;
		case 's': g->size = (size_t)opt_num(name, optarg, 8, LG_MAX_PACKET / 2); break;
		case 'r': g->rate = opt_num(name, optarg, 0, 1e9); break;
		case 'd': g->duration = opt_num(name, optarg, 0.001, 1e6); break;
		case 't': g->prefix = optarg; break;
		case 'f': g->filter = optarg; break;
		case 'k': g->window = (unsigned)opt_num(name, optarg, 1, 65000); break;
		case 'e': g->expect = (uint64_t)opt_num(name, optarg, 0, 1e15); break;
		case 'D': g->drain = opt_num(name, optarg, 0, 1e6); break;
		case 'H': g->hold = opt_num(name, optarg, 0, 1e7); break;
		case 'w': g->conn_window = (unsigned)opt_num(name, optarg, 1, 1e6); break;
		case 'T': g->connect_timeout = opt_num(name, optarg, 0.1, 1e6); break;
		case 'i': g->id_prefix = optarg; break;
		case 'W': g->e2e_window = (uint64_t)opt_num(name, optarg, 0, 1e12); break;
		case 'L': cafile = optarg; break;
		case 'B': g->ws_path = optarg; break;
		case '5': g->level = 5; break;
		case 'Z': g->settle = opt_num(name, optarg, 0, 1e6); break;
		case 'Y': g->linger = opt_num(name, optarg, 0, 1e6); break;
		case 'A':
			g->alias_max = (uint16_t)opt_num(name, optarg, 1, 65535);
			g->level = 5;
			break;
		default: usage();
		}
	}
	if (optind != argc || inet_pton(AF_INET, host, &g->addr.sin_addr) != 1)
		usage();
	if (g->mode == MODE_PUB)
		g->n_pub = clients;
	else if (g->mode == MODE_SUB)
		g->n_sub = clients;
	else if (g->mode == MODE_IDLE)
		g->n_idle = clients;
	if (g->mode != MODE_RUN)
		g->e2e_window = 0;  /* needs both ends in this process */
	if (strlen(g->prefix) > 200 || strlen(g->id_prefix) > 30)
		usage();
	if (g->ws_path && (g->ws_path[0] != '/' || strlen(g->ws_path) > 200 ||
			   strpbrk(g->ws_path, " \r\n")))
		usage();
	g->host = host;
	if (cafile && !(g->tls = lg_tls_ctx(cafile))) {
		fprintf(stderr, "loadgen: --tls %s: ", cafile);
		ERR_print_errors_fp(stderr);
		exit(2);
	}
}

/* Raises the soft fd limit to the hard one; fails early rather than halfway. */
static int lg_fd_limit(unsigned want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && want + 16 > rl.rlim_cur) {
		fprintf(stderr, "loadgen: %u connections need more than the fd limit %llu; "
			"run several processes\n", want, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct lg lg;  /* large (read buffer, histogram): not on the stack */
	struct lg *g = &lg;
	int rc = 1;

	if (argc < 2)
		usage();
	for (g->mode = 0; g->mode < 4 && strcmp(argv[1], mode_names[g->mode]); g->mode++)
		;
	if (g->mode == 4)
		usage();
	g->ep = -1;
	g->addr.sin_family = AF_INET;
	g->addr.sin_port = htons(1883);
	g->size = 64;
	g->duration = g->drain = g->hold = 10;
	g->connect_timeout = 60;
	g->window = 16;
	g->conn_window = 100;
	g->prefix = "bench/t";
	g->id_prefix = "lg";
	g->level = LG_LEVEL;
	lg_options(g, argc - 1, argv + 1);

	char filter[256];
	if (!g->filter) {
		snprintf(filter, sizeof filter, "%s/#", g->prefix);
		g->filter = filter;
	}
	if (g->mode == MODE_SUB && g->duration == 10)
		g->duration = 60;  /* sub mode waits for publishers started elsewhere */
	g->n = g->n_sub + g->n_pub + g->n_idle;
	if (g->n == 0 || lg_fd_limit(g->n) < 0)
		usage();

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	g->conns = calloc(g->n, sizeof *g->conns);
	g->payload = calloc(1, g->size);
	g->ep = epoll_create1(EPOLL_CLOEXEC);
	if (g->alias_max && g->n_sub)
		g->atab = calloc(g->n_sub, sizeof *g->atab);
	if (!g->conns || !g->payload || g->ep < 0 || (g->alias_max && g->n_sub && !g->atab)) {
		perror("loadgen: setup");
		goto cleanup;
	}
	for (unsigned i = 0; i < g->n; i++) {
		struct conn *c = &g->conns[i];
		c->fd = -1;
		c->role = i < g->n_sub ? ROLE_SUB : i < g->n_sub + g->n_pub ? ROLE_PUB : ROLE_IDLE;
		c->index = c->role == ROLE_SUB ? i : c->role == ROLE_PUB ? i - g->n_sub
								    : i - g->n_sub - g->n_pub;
	}
	memset(g->payload, 'x', g->size);
	g->t_setup = g->t_ping = now_ns();

	struct epoll_event evs[256];
	while (g->phase != PH_END) {
		int timeout = g->phase == PH_RUN && g->rate > 0 ? 1 : 10;
		int n = epoll_wait(g->ep, evs, 256, timeout);
		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++)
			conn_event(g, &g->conns[evs[i].data.u32], evs[i].events);
		lg_tick(g, now_ns());
	}
	uint64_t now = now_ns();
	if (!g->t_start)
		g->t_start = now;
	lg_broadcast(g, MQTT_DISCONNECT);
	lg_report(g, now);
	rc = g->ready > 0 && g->failed == 0 && g->lost == 0 ? 0 : 3;
cleanup:
	for (unsigned i = 0; g->conns && i < g->n; i++)
		conn_close(&g->conns[i]);
	if (g->ep >= 0)
		close(g->ep);
	for (unsigned i = 0; g->atab && i < g->n_sub; i++) {
		for (uint32_t k = 0; k < g->atab[i].cap; k++)
			free(g->atab[i].v[k].topic);
		free(g->atab[i].v);
	}
	free(g->atab);
	free(g->conns);
	free(g->payload);
	SSL_CTX_free(g->tls);
	return rc;
}
