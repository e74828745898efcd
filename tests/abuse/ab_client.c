/*
 * ab_client.c - a blocking MQTT 3.1.1 client on the project codec, and the
 * legitimate client that runs beside every case.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "abuse.h"

#define LEGIT_WAIT_MS 5000
#define LEGIT_EVERY_MS 10
#define LEGIT_CYCLE_PUBS 20

/* ---- latency vectors ------------------------------------------------------------ */

void ab_lat_add(struct ab_lat *l, int64_t us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		int64_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

double ab_lat_pct(struct ab_lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), cmp_i64);
	i = (size_t)(q * (double)l->n);
	if (i >= l->n)
		i = l->n - 1;
	return (double)l->v[i] / 1000.0;
}

void ab_lat_free(struct ab_lat *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- blocking client ------------------------------------------------------------- */

int ab_tcp_connect(const char *addr, int port, const char *src, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct pollfd pfd;
	int fd, one = 1, err = 0;
	socklen_t el = sizeof(err);

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -1;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -1;
	if (src) {
		struct sockaddr_in s = { .sin_family = AF_INET };
		inet_pton(AF_INET, src, &s.sin_addr);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&s, sizeof(s)) < 0)
			goto fail;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
			errno = err ? err : ETIMEDOUT;
			goto fail;
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

void ab_cli_close(struct ab_cli *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	buf_release(&cl->in);
	cl->pkt_len = 0;
}

int ab_cli_send(struct ab_cli *cl, struct buf *b)
{
	while (buf_used(b) > 0) {
		ssize_t n = send(cl->fd, buf_head(b), buf_used(b), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf_consume(b, (size_t)n);
	}
	buf_reset(b);
	return 0;
}

int ab_cli_recv(struct ab_cli *cl, int timeout_ms)
{
	int64_t end = ab_now_ms() + timeout_ms;

	if (cl->pkt_len) {
		buf_consume(&cl->in, cl->pkt_len);
		cl->pkt_len = 0;
	}
	for (;;) {
		int r = mqtt_frame_parse(buf_head(&cl->in), buf_used(&cl->in), MQTT_MAX_REMAINING,
					 &cl->f);
		if (r > 0) {
			cl->pkt = (uint8_t *)buf_head(&cl->in);
			cl->pkt_len = (size_t)r;
			return 1;
		}
		if (r < 0) {
			errno = EPROTO;
			return -1;
		}
		int left = (int)(end - ab_now_ms());
		struct pollfd pfd = { .fd = cl->fd, .events = POLLIN };
		if (left <= 0 || poll(&pfd, 1, left) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (buf_reserve(&cl->in, 65536) < 0)
			return -1;
		ssize_t n = recv(cl->fd, cl->in.data + cl->in.len, cl->in.cap - cl->in.len, 0);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? 0 : -1;
		}
		cl->in.len += (size_t)n;
	}
}

int ab_cli_open_with(struct ab_cli *cl, const char *addr, int port, const struct mqtt_connect *k,
		     uint8_t *rc, bool *present, int timeout_ms)
{
	struct buf b = { 0 };
	int r;

	memset(cl, 0, sizeof(*cl));
	if ((cl->fd = ab_tcp_connect(addr, port, NULL, timeout_ms)) < 0)
		return -1;
	if (mqtt_encode_connect(&b, k) != MQTT_OK || ab_cli_send(cl, &b) < 0)
		goto fail;
	r = ab_cli_recv(cl, timeout_ms);
	if (r != 1 || cl->f.type != MQTT_CONNACK || cl->f.body_len < 2)
		goto fail;
	if (rc)
		*rc = cl->f.body[1];
	if (present)
		*present = cl->f.body[0] & 1;
	buf_release(&b);
	return 0;
fail:
	buf_release(&b);
	ab_cli_close(cl);
	return -1;
}

int ab_cli_open(struct ab_cli *cl, const char *addr, int port, const char *id, bool clean,
		uint16_t keepalive, uint8_t *rc, bool *present, int timeout_ms)
{
	struct mqtt_connect k = {
		.level = 4, .clean = clean, .keepalive = keepalive,
		.client_id = { (const uint8_t *)id, (uint16_t)strlen(id) },
	};
	return ab_cli_open_with(cl, addr, port, &k, rc, present, timeout_ms);
}

int ab_cli_simple(struct ab_cli *cl, uint8_t type)
{
	struct buf b = { 0 };
	int rc = mqtt_encode_simple(&b, 4, type) == MQTT_OK ? ab_cli_send(cl, &b) : -1;

	buf_release(&b);
	return rc;
}

bool ab_cli_ping(struct ab_cli *cl)
{
	if (ab_cli_simple(cl, MQTT_PINGREQ) < 0)
		return false;
	for (;;) {
		if (ab_cli_recv(cl, 10000) != 1)
			return false;
		if (cl->f.type == MQTT_PINGRESP)
			return true;
	}
}

void ab_cli_quit(struct ab_cli *cl)
{
	ab_cli_simple(cl, MQTT_DISCONNECT);
	ab_cli_close(cl);
}

int ab_enc_publish(struct buf *b, const char *topic, const void *payload, size_t len, int qos,
		   bool retain, uint16_t pid)
{
	struct mqtt_publish p = {
		.qos = (uint8_t)qos, .retain = retain, .packet_id = qos ? pid : 0,
		.topic = { (const uint8_t *)topic, (uint16_t)strlen(topic) },
		.payload = payload, .payload_len = (uint32_t)len,
	};
	return mqtt_encode_publish(b, 4, &p);
}

int ab_enc_ack(struct buf *b, uint8_t type, uint16_t pid)
{
	struct mqtt_ack a = { .packet_id = pid };
	return mqtt_encode_ack(b, 4, type, &a);
}

int ab_enc_connect(struct buf *b, const char *id, bool clean, uint16_t keepalive)
{
	struct mqtt_connect k = {
		.level = 4, .clean = clean, .keepalive = keepalive,
		.client_id = { (const uint8_t *)id, (uint16_t)strlen(id) },
	};
	return mqtt_encode_connect(b, &k);
}

int ab_enc_subscribe(struct buf *b, uint16_t pid, const char *const *filters, size_t n, int qos)
{
	struct mqtt_str f[256];
	uint8_t opt[256];

	if (n > 256)
		return MQTT_ERR_NOSPACE;
	for (size_t i = 0; i < n; i++) {
		f[i] = (struct mqtt_str){ (const uint8_t *)filters[i], (uint16_t)strlen(filters[i]) };
		opt[i] = (uint8_t)qos;
	}
	return mqtt_encode_subscribe(b, 4, MQTT_SUBSCRIBE, pid, f, opt, (uint16_t)n);
}

/* ---- the legitimate client ------------------------------------------------------------ */

static struct {
	pthread_t th;
	atomic_bool stop;
	const struct ab_opts *o;
	enum ab_legit_mode mode;
	char id[64], topic[96];
	struct ab_lat pub, conn;
	size_t conns, fails, retries;
	char first_fail[160];
} L;

static void legit_failed(const char *what)
{
	if (L.fails++ == 0)
		snprintf(L.first_fail, sizeof(L.first_fail), "%s", what);
}

/* Connects, retrying refusals for up to LEGIT_WAIT_MS as a device would. */
static int legit_connect(struct ab_cli *cl)
{
	int64_t t0 = ab_now_us(), end = ab_now_ms() + LEGIT_WAIT_MS;
	uint8_t rc = 0xff;

	for (;;) {
		int left = (int)(end - ab_now_ms());
		if (ab_cli_open(cl, L.o->host, L.o->port, L.id, true, 60, &rc, NULL,
				left < 2000 ? (left > 1 ? left : 1) : 2000) == 0 && rc == 0)
			break;
		if (cl->fd >= 0)
			ab_cli_close(cl);
		if (atomic_load(&L.stop))
			return -1;
		if (ab_now_ms() >= end) {
			legit_failed("no CONNACK 0 within 5 s");
			return -1;
		}
		L.retries++;
		ab_sleep_ms(20);
	}
	ab_lat_add(&L.conn, ab_now_us() - t0);
	L.conns++;
	return 0;
}

/* One QoS 1 publish and its PUBACK. 0, or -1 (connection dropped). */
static int legit_publish(struct ab_cli *cl, uint16_t pid)
{
	struct buf b = { 0 };
	int64_t t0 = ab_now_us(), end = ab_now_ms() + LEGIT_WAIT_MS;
	char payload[32];

	snprintf(payload, sizeof(payload), "legit %u", pid);
	ab_enc_publish(&b, L.topic, payload, strlen(payload), 1, false, pid);
	int rc = ab_cli_send(cl, &b);
	buf_release(&b);
	if (rc < 0) {
		legit_failed("send failed");
		return -1;
	}
	for (;;) {
		int left = (int)(end - ab_now_ms());
		int r = ab_cli_recv(cl, left > 0 ? left : 0);
		if (r == 1 && cl->f.type == MQTT_PUBACK && cl->f.body_len == 2 &&
		    (cl->f.body[0] << 8 | cl->f.body[1]) == pid) {
			ab_lat_add(&L.pub, ab_now_us() - t0);
			return 0;
		}
		if (r == 1)
			continue; /* nothing else is expected; skip it */
		legit_failed(r == 0 ? "connection closed awaiting PUBACK" : "no PUBACK within 5 s");
		return -1;
	}
}

static void *legit_main(void *arg)
{
	struct ab_cli cl = { .fd = -1 };
	unsigned n = 0;
	uint16_t pid = 1;
	(void)arg;

	/* Warm-up, not counted: the first publish waits for the producer to
	 * learn the topic and connect to its leader. */
	if (legit_connect(&cl) == 0 && legit_publish(&cl, pid) == 0) {
		L.pub.n = 0;
		L.conn.n = 0;
		L.conns = 0;
	}

	while (!atomic_load(&L.stop)) {
		if (cl.fd < 0 && legit_connect(&cl) < 0)
			continue;
		if (++pid == 0)
			pid = 1;
		if (legit_publish(&cl, pid) < 0) {
			ab_cli_close(&cl);
			continue;
		}
		if (L.mode == LEGIT_CYCLE && ++n % LEGIT_CYCLE_PUBS == 0)
			ab_cli_quit(&cl);
		ab_sleep_ms(LEGIT_EVERY_MS);
	}
	ab_cli_close(&cl);
	return NULL;
}

int ab_legit_start(const struct ab_opts *o, const char *tag, enum ab_legit_mode mode)
{
	memset(&L, 0, sizeof(L));
	L.o = o;
	L.mode = mode;
	snprintf(L.id, sizeof(L.id), "legit-%s", tag);
	snprintf(L.topic, sizeof(L.topic), "legit/%s", tag);
	return pthread_create(&L.th, NULL, legit_main, NULL) == 0 ? 0 : -1;
}

void ab_legit_stop(struct ab_legit_stats *st)
{
	atomic_store(&L.stop, true);
	pthread_join(L.th, NULL);
	memset(st, 0, sizeof(*st));
	st->pubs = L.pub.n;
	st->conns = L.conns;
	st->fails = L.fails;
	st->retries = L.retries;
	st->p50_ms = ab_lat_pct(&L.pub, 0.50);
	st->p99_ms = ab_lat_pct(&L.pub, 0.99);
	st->max_ms = L.pub.n ? (double)L.pub.v[L.pub.n - 1] / 1000.0 : 0;
	st->conn_p99_ms = ab_lat_pct(&L.conn, 0.99);
	snprintf(st->first_fail, sizeof(st->first_fail), "%s", L.first_fail);
	ab_lat_free(&L.pub);
	ab_lat_free(&L.conn);
}
