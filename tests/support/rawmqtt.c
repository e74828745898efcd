/*
 * rawmqtt.c - byte-level MQTT test client: sockets, hex, packet builders.
 */
#include "rawmqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RAW_HDR_MAX 5 /* type byte + 4-byte remaining length */

static long long raw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int raw_connect_tcp(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int raw_send(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int raw_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int raw_hex_decode(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *hex; hex++) {
		int d;

		if (*hex == ' ')
			continue;
		d = raw_hex_digit(*hex);
		if (d < 0)
			return -1;
		if (hi < 0) {
			hi = d;
			continue;
		}
		if (n == cap)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | d);
		hi = -1;
	}
	return hi < 0 ? (int)n : -1;
}

char *raw_hex_encode(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return out;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (o + 3 + 4 > cap) {
			snprintf(out + o, cap - o, "...");
			break;
		}
		o += (size_t)snprintf(out + o, cap - o, i ? " %02X" : "%02X", p[i]);
	}
	return out;
}

int raw_send_hex(int fd, const char *hex)
{
	size_t cap = strlen(hex) / 2 + 1;
	uint8_t *buf = malloc(cap);
	int n, rc = -1;

	if (!buf)
		return -1;
	n = raw_hex_decode(hex, buf, cap);
	if (n < 0)
		errno = EINVAL;
	else
		rc = raw_send(fd, buf, (size_t)n);
	free(buf);
	return rc;
}

/* Waits until fd is readable or the deadline passes; returns 1, 0 (timeout) or -1. */
static int raw_wait_readable(int fd, long long deadline)
{
	for (;;) {
		long long left = deadline - raw_now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r;

		if (left <= 0)
			return 0;
		r = poll(&pfd, 1, (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int raw_recv_until(int fd, uint8_t *p, size_t n, long long deadline)
{
	size_t got = 0;

	while (got < n) {
		int w = raw_wait_readable(fd, deadline);
		ssize_t r;

		if (w == 0) {
			errno = ETIMEDOUT;
			return (int)got;
		}
		if (w < 0)
			return (int)got;
		r = recv(fd, p + got, n - got, 0);
		if (r == 0) {
			errno = EPIPE;
			return (int)got;
		}
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return (int)got;
		}
		got += (size_t)r;
	}
	return (int)got;
}

int raw_recv_exact(int fd, void *p, size_t n, int timeout_ms)
{
	return raw_recv_until(fd, p, n, raw_now_ms() + timeout_ms);
}

int raw_recv_packet(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
	long long deadline = raw_now_ms() + timeout_ms;
	uint32_t remaining = 0;
	size_t hdr = 1;

	if (cap < 2)
		return -1;
	if (raw_recv_until(fd, buf, 1, deadline) != 1)
		return errno == EPIPE ? 0 : -1;
	for (int shift = 0;; shift += 7) {
		if (hdr == RAW_HDR_MAX || hdr == cap)
			return -1;
		if (raw_recv_until(fd, buf + hdr, 1, deadline) != 1)
			return errno == EPIPE ? 0 : -1;
		remaining |= (uint32_t)(buf[hdr] & 0x7f) << shift;
		if (!(buf[hdr++] & 0x80))
			break;
	}
	if (remaining > cap - hdr)
		return -1;
	if (raw_recv_until(fd, buf + hdr, remaining, deadline) != (int)remaining)
		return errno == EPIPE ? 0 : -1;
	return (int)(hdr + remaining);
}

bool raw_closed_within(int fd, int timeout_ms)
{
	long long deadline = raw_now_ms() + timeout_ms;
	uint8_t sink[4096];

	for (;;) {
		int w = raw_wait_readable(fd, deadline);
		ssize_t r;

		if (w <= 0)
			return false;
		r = recv(fd, sink, sizeof(sink), 0);
		if (r == 0)
			return true;
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return true;
	}
}

/* A packet body is written at out + RAW_HDR_MAX and moved down behind the
 * fixed header once its length is known. */
struct raw_w {
	uint8_t *p;
	size_t cap;
	size_t len;
	bool over;
};

static void raw_put(struct raw_w *w, const void *src, size_t n)
{
	if (n == 0)
		return;
	if (w->over || n > w->cap - w->len) {
		w->over = true;
		return;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void raw_put8(struct raw_w *w, uint8_t v)
{
	raw_put(w, &v, 1);
}

static void raw_put16(struct raw_w *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	raw_put(w, b, 2);
}

static void raw_putstr(struct raw_w *w, const void *s, size_t n)
{
	raw_put16(w, (uint16_t)n);
	raw_put(w, s, n);
}

static bool raw_begin(struct raw_w *w, uint8_t *out, size_t cap)
{
	if (cap < RAW_HDR_MAX)
		return false;
	*w = (struct raw_w){ .p = out + RAW_HDR_MAX, .cap = cap - RAW_HDR_MAX };
	return true;
}

static int raw_finish(uint8_t *out, uint8_t first, const struct raw_w *w)
{
	uint8_t hdr[RAW_HDR_MAX];
	size_t h = 0, rem = w->len;

	if (w->over || rem > 268435455u)
		return -1;
	hdr[h++] = first;
	do {
		hdr[h] = (uint8_t)(rem & 0x7f);
		rem >>= 7;
		if (rem)
			hdr[h] |= 0x80;
		h++;
	} while (rem);
	memmove(out + h, w->p, w->len);
	memcpy(out, hdr, h);
	return (int)(h + w->len);
}

int raw_build_connect(uint8_t *out, size_t cap, const struct raw_connect *c)
{
	uint8_t level = c->level ? c->level : 4;
	const char *id = c->client_id ? c->client_id : "";
	uint8_t flags = c->clean ? 0x02 : 0;
	struct raw_w w;

	if (!raw_begin(&w, out, cap))
		return -1;
	if (c->will_topic)
		flags |= (uint8_t)(0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0));
	if (c->password)
		flags |= 0x40;
	if (c->username)
		flags |= 0x80;
	if (level == 3)
		raw_putstr(&w, "MQIsdp", 6);
	else
		raw_putstr(&w, "MQTT", 4);
	raw_put8(&w, level);
	raw_put8(&w, flags);
	raw_put16(&w, c->keepalive);
	if (level == 5)
		raw_put8(&w, 0);
	raw_putstr(&w, id, strlen(id));
	if (c->will_topic) {
		if (level == 5)
			raw_put8(&w, 0);
		raw_putstr(&w, c->will_topic, strlen(c->will_topic));
		raw_putstr(&w, c->will_payload, c->will_payload_len);
	}
	if (c->username)
		raw_putstr(&w, c->username, strlen(c->username));
	if (c->password)
		raw_putstr(&w, c->password, strlen(c->password));
	return raw_finish(out, 0x10, &w);
}

int raw_build_publish(uint8_t *out, size_t cap, uint8_t level, const char *topic,
		      const void *payload, size_t payload_len, uint8_t qos, bool retain,
		      bool dup, uint16_t packet_id)
{
	uint8_t first = (uint8_t)(0x30 | (dup ? 0x08 : 0) | (qos & 3) << 1 | (retain ? 1 : 0));
	struct raw_w w;

	if (!raw_begin(&w, out, cap))
		return -1;
	raw_putstr(&w, topic, strlen(topic));
	if (qos > 0)
		raw_put16(&w, packet_id);
	if (level == 5)
		raw_put8(&w, 0);
	raw_put(&w, payload, payload_len);
	return raw_finish(out, first, &w);
}

static int raw_build_sub(uint8_t *out, size_t cap, uint8_t first, uint8_t level,
			 uint16_t packet_id, const char *filter, int options)
{
	struct raw_w w;

	if (!raw_begin(&w, out, cap))
		return -1;
	raw_put16(&w, packet_id);
	if (level == 5)
		raw_put8(&w, 0);
	raw_putstr(&w, filter, strlen(filter));
	if (options >= 0)
		raw_put8(&w, (uint8_t)options);
	return raw_finish(out, first, &w);
}

int raw_build_subscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
			const char *filter, uint8_t options)
{
	return raw_build_sub(out, cap, 0x82, level, packet_id, filter, options);
}

int raw_build_unsubscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
			  const char *filter)
{
	return raw_build_sub(out, cap, 0xA2, level, packet_id, filter, -1);
}

int raw_build_ack(uint8_t *out, size_t cap, uint8_t first_byte, uint16_t packet_id)
{
	if (cap < 4)
		return -1;
	out[0] = first_byte;
	out[1] = 2;
	out[2] = (uint8_t)(packet_id >> 8);
	out[3] = (uint8_t)packet_id;
	return 4;
}

int raw_mqtt_handshake(int fd, const struct raw_connect *c, uint8_t *connack_rc,
		       bool *session_present, int timeout_ms)
{
	size_t id_len = c->client_id ? strlen(c->client_id) : 0;
	size_t cap = 64 + id_len + (c->will_topic ? strlen(c->will_topic) : 0) +
		     c->will_payload_len + (c->username ? strlen(c->username) : 0) +
		     (c->password ? strlen(c->password) : 0);
	uint8_t *out = malloc(cap), in[512];
	size_t hdr = 2;
	int n;

	if (!out)
		return -1;
	n = raw_build_connect(out, cap, c);
	if (n >= 0)
		n = raw_send(fd, out, (size_t)n);
	free(out);
	if (n < 0)
		return -1;
	n = raw_recv_packet(fd, in, sizeof(in), timeout_ms);
	if (n < 4 || in[0] != 0x20)
		return -1;
	while (hdr < (size_t)n && in[hdr - 1] & 0x80)
		hdr++;
	if ((size_t)n < hdr + 2)
		return -1;
	if (session_present)
		*session_present = in[hdr] & 1;
	if (connack_rc)
		*connack_rc = in[hdr + 1];
	return 0;
}

int raw_mqtt_connect(int port, const char *client_id, bool clean, uint16_t keepalive,
		     uint8_t *connack_rc, bool *session_present)
{
	struct raw_connect c = { .level = 4, .client_id = client_id, .clean = clean,
				 .keepalive = keepalive };
	int fd = raw_connect_tcp(port);

	if (fd < 0)
		return -1;
	if (raw_mqtt_handshake(fd, &c, connack_rc, session_present, RAW_TIMEOUT_MS) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one packet and checks it is exactly the 3.1.1 ack `first` for id. */
static int raw_expect_ack(int fd, uint8_t first, uint16_t packet_id)
{
	uint8_t in[16];

	if (raw_recv_packet(fd, in, sizeof(in), RAW_TIMEOUT_MS) != 4)
		return -1;
	if (in[0] != first || in[1] != 2 || in[2] != (uint8_t)(packet_id >> 8) ||
	    in[3] != (uint8_t)packet_id)
		return -1;
	return 0;
}

int raw_mqtt_publish(int fd, const char *topic, const void *payload, size_t len,
		     uint8_t qos, bool retain, uint16_t packet_id)
{
	size_t cap = RAW_HDR_MAX + 4 + strlen(topic) + len;
	uint8_t *out = malloc(cap), rel[4];
	int n = -1;

	if (out) {
		n = raw_build_publish(out, cap, 4, topic, payload, len, qos, retain, false,
				      packet_id);
		if (n >= 0)
			n = raw_send(fd, out, (size_t)n);
		free(out);
	}
	if (n < 0)
		return -1;
	if (qos == 1)
		return raw_expect_ack(fd, 0x40, packet_id);
	if (qos != 2)
		return 0;
	if (raw_expect_ack(fd, 0x50, packet_id) < 0)
		return -1;
	raw_build_ack(rel, sizeof(rel), 0x62, packet_id);
	if (raw_send(fd, rel, sizeof(rel)) < 0)
		return -1;
	return raw_expect_ack(fd, 0x70, packet_id);
}
