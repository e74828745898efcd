/*
 * itutil.c - MQTT test steps with strict checks, reported on stderr.
 */
#include "itutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Fixed header (5) + topic length (2) + topic + packet id (2) + payload. */
#define ITUTIL_PKT_MAX (5 + 2 + ITUTIL_TOPIC_MAX + 2 + ITUTIL_PAYLOAD_MAX)

long long itutil_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void itutil_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One line on what arrived instead of `want` (n as itutil_recv returned). */
static void itutil_report(const char *want, int n, const struct itutil_pkt *p)
{
	if (n > 0 && (p->first & 0xF0) == 0x30)
		fprintf(stderr, "itutil: expected %s, got PUBLISH 0x%02X topic '%s' payload '%.40s'\n",
			want, p->first, p->topic, p->payload);
	else if (n > 0)
		fprintf(stderr, "itutil: expected %s, got %d bytes, type 0x%02X, pid %u\n", want, n,
			p->first, p->pid);
	else
		fprintf(stderr, "itutil: expected %s, got %s\n", want,
			n == 0 ? "a close" : errno == ETIMEDOUT ? "nothing in time" : strerror(errno));
}

int itutil_handshake(int fd, const struct raw_connect *c, bool *present)
{
	uint8_t rc = 0xff;
	const char *id = c->client_id ? c->client_id : "";

	if (raw_mqtt_handshake(fd, c, &rc, present, ITUTIL_REPLY_MS) < 0) {
		fprintf(stderr, "itutil: connect '%s': no CONNACK\n", id);
		return -1;
	}
	if (rc != 0) {
		fprintf(stderr, "itutil: connect '%s': CONNACK return code %u\n", id, rc);
		return -1;
	}
	return 0;
}

int itutil_connect_with(int port, const struct raw_connect *c, bool *present)
{
	int fd = raw_connect_tcp(port);

	if (fd < 0) {
		fprintf(stderr, "itutil: connect to port %d: %s\n", port, strerror(errno));
		return -1;
	}
	if (itutil_handshake(fd, c, present) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int itutil_connect(int port, const char *id, bool clean, uint16_t keepalive, bool *present)
{
	struct raw_connect c = { .level = 4, .client_id = id, .clean = clean,
				 .keepalive = keepalive };

	return itutil_connect_with(port, &c, present);
}

int itutil_subscribe(int fd, uint16_t pid, const char *filter, uint8_t qos)
{
	uint8_t out[512], in[16];
	int n = raw_build_subscribe(out, sizeof(out), 4, pid, filter, qos);

	if (n < 0 || raw_send(fd, out, (size_t)n) < 0) {
		fprintf(stderr, "itutil: cannot send SUBSCRIBE %s\n", filter);
		return -1;
	}
	n = raw_recv_packet(fd, in, sizeof(in), ITUTIL_REPLY_MS);
	if (n != 5 || in[0] != 0x90 || (in[2] << 8 | in[3]) != pid || in[4] != qos) {
		fprintf(stderr, "itutil: SUBSCRIBE %s pid %u QoS %u: got %d bytes (0x%02X, code 0x%02X)\n",
			filter, pid, qos, n, n > 0 ? in[0] : 0, n == 5 ? in[4] : 0);
		return -1;
	}
	return 0;
}

int itutil_send_publish(int fd, const char *topic, const void *payload, size_t len, uint8_t qos,
			bool dup, uint16_t pid)
{
	size_t cap = 16 + strlen(topic) + len;
	uint8_t *out = malloc(cap);
	int n = -1;

	if (out) {
		n = raw_build_publish(out, cap, 4, topic, payload, len, qos, false, dup, pid);
		if (n >= 0)
			n = raw_send(fd, out, (size_t)n);
		free(out);
	}
	if (n < 0)
		fprintf(stderr, "itutil: cannot send PUBLISH %s: %s\n", topic, strerror(errno));
	return n < 0 ? -1 : 0;
}

int itutil_send_ack(int fd, uint8_t first, uint16_t pid)
{
	uint8_t out[4];

	raw_build_ack(out, sizeof(out), first, pid);
	if (raw_send(fd, out, sizeof(out)) < 0) {
		fprintf(stderr, "itutil: cannot send ack 0x%02X: %s\n", first, strerror(errno));
		return -1;
	}
	return 0;
}

int itutil_expect_ack(int fd, uint8_t first, uint16_t pid, int timeout_ms)
{
	struct itutil_pkt p;
	int n = itutil_recv(fd, &p, timeout_ms);
	char want[48];

	if (n == 4 && p.first == first && p.pid == pid)
		return 0;
	snprintf(want, sizeof(want), "ack 0x%02X for pid %u", first, pid);
	itutil_report(want, n, &p);
	return -1;
}

/* Fills the PUBLISH fields of p from the whole packet b[0..n). */
static int itutil_parse_publish(const uint8_t *b, size_t n, struct itutil_pkt *p)
{
	size_t i = 1, tlen;

	while (b[i++] & 0x80) /* raw_recv_packet() bounded the length field */
		;
	p->qos = (b[0] >> 1) & 3;
	p->dup = b[0] & 0x08;
	p->retain = b[0] & 0x01;
	if (p->qos == 3 || i + 2 > n)
		return -1;
	tlen = (size_t)b[i] << 8 | b[i + 1];
	i += 2;
	if (tlen > ITUTIL_TOPIC_MAX || i + tlen + (p->qos ? 2 : 0) > n)
		return -1;
	memcpy(p->topic, b + i, tlen);
	p->topic[tlen] = '\0';
	i += tlen;
	if (p->qos) {
		p->pid = (uint16_t)(b[i] << 8 | b[i + 1]);
		i += 2;
	}
	p->len = n - i;
	if (p->len > ITUTIL_PAYLOAD_MAX)
		return -1;
	memcpy(p->payload, b + i, p->len);
	p->payload[p->len] = '\0';
	return 0;
}

int itutil_recv(int fd, struct itutil_pkt *p, int timeout_ms)
{
	uint8_t b[ITUTIL_PKT_MAX];
	int n;

	memset(p, 0, sizeof(*p));
	errno = 0;
	n = raw_recv_packet(fd, b, sizeof(b), timeout_ms);
	if (n < 0 && errno == 0) /* raw_recv_packet() leaves errno alone on a packet over cap */
		errno = EPROTO;
	if (n <= 0)
		return n;
	p->first = b[0];
	if ((b[0] & 0xF0) == 0x30 && itutil_parse_publish(b, (size_t)n, p) < 0) {
		fprintf(stderr, "itutil: PUBLISH of %d bytes not well formed or too large\n", n);
		errno = EPROTO;
		return -1;
	}
	if ((b[0] & 0xF0) != 0x30 && n == 4)
		p->pid = (uint16_t)(b[2] << 8 | b[3]);
	return n;
}

int itutil_recv_publish(int fd, struct itutil_pkt *p, int timeout_ms)
{
	int n = itutil_recv(fd, p, timeout_ms);

	if (n > 0 && (p->first & 0xF0) == 0x30)
		return 0;
	itutil_report("a PUBLISH", n, p);
	return -1;
}

int itutil_ack_publish(int fd, const struct itutil_pkt *p)
{
	if (p->qos == 1)
		return itutil_send_ack(fd, 0x40, p->pid);
	if (p->qos != 2)
		return 0;
	if (itutil_send_ack(fd, 0x50, p->pid) < 0 ||
	    itutil_expect_ack(fd, 0x62, p->pid, ITUTIL_REPLY_MS) < 0)
		return -1;
	return itutil_send_ack(fd, 0x70, p->pid);
}

int itutil_recv_acked(int fd, struct itutil_pkt *p, int timeout_ms)
{
	if (itutil_recv_publish(fd, p, timeout_ms) < 0)
		return -1;
	return itutil_ack_publish(fd, p);
}

int itutil_ping(int fd)
{
	struct itutil_pkt p;
	int n;

	if (raw_send_hex(fd, "C0 00") < 0) {
		fprintf(stderr, "itutil: cannot send PINGREQ: %s\n", strerror(errno));
		return -1;
	}
	n = itutil_recv(fd, &p, ITUTIL_REPLY_MS);
	if (n == 2 && p.first == 0xD0)
		return 0;
	itutil_report("PINGRESP", n, &p);
	return -1;
}

bool itutil_quiet(int fd, int ms)
{
	struct itutil_pkt p;
	int n = itutil_recv(fd, &p, ms);

	if (n < 0 && errno == ETIMEDOUT)
		return true;
	itutil_report("nothing", n, &p);
	return false;
}

bool itutil_closed_silently(int fd, int timeout_ms)
{
	struct itutil_pkt p;
	int n = itutil_recv(fd, &p, timeout_ms);

	if (n == 0 || (n < 0 && errno != ETIMEDOUT && errno != EPROTO))
		return true;
	itutil_report("a close", n, &p);
	return false;
}
