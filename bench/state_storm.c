/*
 * state_storm.c - the reconnect storm of bench/state_bench.sh: persistent-
 * session devices on one instance, which is then killed; every device
 * reconnects at once to the surviving instances and must find its session.
 *
 *   state_storm --port A --reconnect B[,C...] --count N [--from I]
 *               [--prefix ID] [--window W] [--timeout S] [--samples FILE]
 *
 * 1. Connects N MQTT 3.1.1 clients to 127.0.0.1:A (at most W connection
 *    attempts in progress), ids "<prefix><I..I+N-1>", Clean Session 0,
 *    keepalive 600; each SUBSCRIBEs to "st/<id>" at QoS 1 (so its session
 *    has something to keep). Prints "READY ok=.. failed=.." on stdout.
 * 2. Waits for its connections to drop (the script kills instance A). The
 *    first drop starts the storm: every dropped device reconnects at once
 *    (W attempts in progress) to one of the --reconnect ports, round robin
 *    by device index, with the same CONNECT. CONNACK 0 ends it; any other
 *    answer, a refused or reset connection is retried after 200 ms (counted).
 * 3. Prints one RESULT line: devices, reconnected, refused/retries,
 *    session_present (how many CONNACKs said 1), the storm's start and end
 *    (CLOCK_MONOTONIC ns, so that the script can merge processes),
 *    connects_per_s, and CONNECT->CONNACK (the last attempt) and drop->
 *    CONNACK (the device's whole wait) p50/p99/max in ms. --samples writes
 *    one line per reconnected device: "connack_us total_us".
 *
 * One thread, one epoll loop, non-blocking sockets; packets are built by
 * hand (3.1.1 CONNECT and SUBSCRIBE are a few bytes) so that this builds
 * without the library. Each process must stay under its fd limit: the
 * script spreads devices over several processes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 8
#define RETRY_NS (200 * 1000000ull)
#define NS 1000000000ull

enum st {
	S_IDLE,        /* waiting for a window slot */
	S_CONNECTING,  /* TCP connect in progress */
	S_CONNACK,     /* CONNECT sent */
	S_SUBACK,      /* SUBSCRIBE sent (setup only) */
	S_UP,          /* connected to the victim, waiting for it to die */
	S_RETRY,       /* waiting RETRY_NS before the next attempt */
	S_DONE,        /* reconnected (storm) */
	S_FAILED,      /* setup failed */
};

struct dev {
	int fd;
	enum st st;
	bool storm;           /* reconnecting (phase 2) */
	bool present;
	uint64_t t_drop, t_connect_sent, t_connack, t_retry;
	unsigned char in[16];
	size_t inlen;
	uint32_t skip;        /* bytes of an unwanted packet still to discard */
	uint32_t id;
};

static struct {
	int port, rports[MAX_PORTS], nr, window, timeout_s;
	uint32_t from, count;
	const char *prefix, *samples;
} o = { .window = 500, .timeout_s = 120, .prefix = "storm-" };

static struct dev *devs;
static int ep, inprogress;
static uint64_t storm_start, storm_end;
static unsigned long refused, retries, present, reconnected, setup_ok, setup_failed;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static size_t id_of(const struct dev *d, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s%" PRIu32, o.prefix, d->id);
}

static int put_str(unsigned char *p, const char *s, size_t n)
{
	p[0] = (unsigned char)(n >> 8);
	p[1] = (unsigned char)n;
	memcpy(p + 2, s, n);
	return (int)(n + 2);
}

static int send_all(int fd, const unsigned char *b, size_t n)
{
	/* A few dozen bytes into an empty socket buffer: one write. */
	ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
	return w == (ssize_t)n ? 0 : -1;
}

static int send_connect(struct dev *d)
{
	unsigned char b[300];
	char id[128];
	size_t idn = id_of(d, id, sizeof id);
	int n = 2;
	n += put_str(b + n, "MQTT", 4);
	b[n++] = 4;          /* 3.1.1 */
	b[n++] = 0x00;       /* Clean Session 0, no will, no credentials */
	b[n++] = 600 >> 8;
	b[n++] = 600 & 0xff;
	n += put_str(b + n, id, idn);
	b[0] = 0x10;
	b[1] = (unsigned char)(n - 2);
	d->t_connect_sent = now_ns();
	return send_all(d->fd, b, (size_t)n);
}

static int send_subscribe(struct dev *d)
{
	unsigned char b[300];
	char id[128], f[140];
	id_of(d, id, sizeof id);
	int fl = snprintf(f, sizeof f, "st/%s", id);
	int n = 2;
	b[n++] = 0;
	b[n++] = 1;          /* packet id 1 */
	n += put_str(b + n, f, (size_t)fl);
	b[n++] = 1;          /* QoS 1 */
	b[0] = 0x82;
	b[1] = (unsigned char)(n - 2);
	return send_all(d->fd, b, (size_t)n);
}

static void drop_fd(struct dev *d)
{
	if (d->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, d->fd, NULL);
		close(d->fd);
		d->fd = -1;
	}
	d->inlen = 0;
	d->skip = 0;
}

static int start_connect(struct dev *d)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int port = d->storm ? o.rports[d->id % (uint32_t)o.nr] : o.port;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (d->fd < 0)
		return -1;
	int one = 1;
	setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(d->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		close(d->fd);
		d->fd = -1;
		return -1;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
				  .data.ptr = d };
	epoll_ctl(ep, EPOLL_CTL_ADD, d->fd, &ev);
	d->st = S_CONNECTING;
	inprogress++;
	return 0;
}

/* An attempt of the storm failed: retry later. Setup: the device fails. */
static void attempt_failed(struct dev *d, bool was_refused)
{
	drop_fd(d);
	if (d->st == S_CONNECTING || d->st == S_CONNACK || d->st == S_SUBACK)
		inprogress--;
	if (!d->storm) {
		d->st = S_FAILED;
		setup_failed++;
		return;
	}
	if (was_refused)
		refused++;
	retries++;
	d->st = S_RETRY;
	d->t_retry = now_ns() + RETRY_NS;
}

static void connection_lost(struct dev *d)
{
	if (d->st == S_UP) {
		/* The victim died: this device joins the storm now. */
		drop_fd(d);
		uint64_t t = now_ns();
		if (!storm_start)
			storm_start = t;
		d->storm = true;
		d->t_drop = t;
		d->st = S_IDLE;
		return;
	}
	attempt_failed(d, false);
}

/* A whole packet of type `first` with body b (len bytes). */
static void on_packet(struct dev *d, uint8_t first, const unsigned char *b, size_t len)
{
	switch (d->st) {
	case S_CONNACK:
		if ((first >> 4) != 2 || len != 2) {
			attempt_failed(d, false);
			return;
		}
		if (b[1] != 0) {
			attempt_failed(d, true);
			return;
		}
		if (d->storm) {
			d->t_connack = now_ns();
			d->present = b[0] & 1;
			present += d->present;
			reconnected++;
			inprogress--;
			d->st = S_DONE;
			if (d->t_connack > storm_end)
				storm_end = d->t_connack;
			/* Done: close, the session stays (parked) on its new owner. */
			drop_fd(d);
			return;
		}
		if (send_subscribe(d) < 0) {
			attempt_failed(d, false);
			return;
		}
		d->st = S_SUBACK;
		return;
	case S_SUBACK:
		if ((first >> 4) == 9) {
			d->st = S_UP;
			inprogress--;
			setup_ok++;
		}
		return;
	default:
		return; /* PUBLISH of queued messages, PINGRESP: ignored */
	}
}

static void on_readable(struct dev *d)
{
	unsigned char buf[4096];
	for (;;) {
		if (d->fd < 0) /* closed by what the last packet said */
			return;
		ssize_t n = recv(d->fd, buf, sizeof buf, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			connection_lost(d);
			return;
		}
		if (n < 0)
			return;
		size_t i = 0;
		while (i < (size_t)n && d->fd >= 0) {
			if (d->skip) {
				size_t k = (size_t)n - i < d->skip ? (size_t)n - i : d->skip;
				d->skip -= (uint32_t)k;
				i += k;
				continue;
			}
			d->in[d->inlen++] = buf[i++];
			/* Fixed header: first byte, remaining length (1-4 bytes). */
			size_t hl = 1;
			uint32_t rl = 0, mul = 1;
			bool whole_len = false;
			while (hl < d->inlen) {
				rl += (uint32_t)(d->in[hl] & 0x7f) * mul;
				mul <<= 7;
				if (!(d->in[hl++] & 0x80)) {
					whole_len = true;
					break;
				}
				if (hl > 4) {
					attempt_failed(d, false);
					return;
				}
			}
			if (!whole_len)
				continue;
			if (rl > sizeof d->in - hl) { /* a PUBLISH or such: skip it */
				d->skip = rl - (uint32_t)(d->inlen - hl);
				d->inlen = 0;
				continue;
			}
			if (d->inlen < hl + rl)
				continue;
			uint8_t first = d->in[0];
			d->inlen = 0;
			on_packet(d, first, d->in + hl, rl);
		}
	}
}

static void on_event(struct dev *d, uint32_t ev)
{
	if (d->st == S_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof err;
		getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err || (ev & (EPOLLERR | EPOLLHUP))) {
			attempt_failed(d, err == ECONNREFUSED);
			return;
		}
		if (!(ev & EPOLLOUT))
			return;
		struct epoll_event e2 = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = d };
		epoll_ctl(ep, EPOLL_CTL_MOD, d->fd, &e2);
		if (send_connect(d) < 0) {
			attempt_failed(d, false);
			return;
		}
		d->st = S_CONNACK;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
		on_readable(d);
}

/* Starts attempts while the window allows: devices idle or due to retry. */
static void fill_window(uint64_t now)
{
	for (uint32_t i = 0; i < o.count && inprogress < o.window; i++) {
		struct dev *d = &devs[i];
		if (d->st == S_IDLE || (d->st == S_RETRY && now >= d->t_retry))
			if (start_connect(d) < 0)
				attempt_failed(d, false);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e6;
}

static void usage(void)
{
	fputs("usage: state_storm --port A --reconnect B[,C...] --count N [--from I]\n"
	      "                   [--prefix ID] [--window W] [--timeout S] [--samples FILE]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", 1, 0, 'p' }, { "reconnect", 1, 0, 'r' }, { "count", 1, 0, 'n' },
		{ "from", 1, 0, 'f' }, { "prefix", 1, 0, 'P' }, { "window", 1, 0, 'w' },
		{ "timeout", 1, 0, 't' }, { "samples", 1, 0, 's' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'p': o.port = atoi(optarg); break;
		case 'r':
			for (char *s = strtok(optarg, ","); s && o.nr < MAX_PORTS; s = strtok(NULL, ","))
				o.rports[o.nr++] = atoi(s);
			break;
		case 'n': o.count = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'f': o.from = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'P': o.prefix = optarg; break;
		case 'w': o.window = atoi(optarg); break;
		case 't': o.timeout_s = atoi(optarg); break;
		case 's': o.samples = optarg; break;
		default: usage();
		}
	}
	if (!o.port || !o.nr || !o.count || o.window < 1 || strlen(o.prefix) > 64)
		usage();
	signal(SIGPIPE, SIG_IGN);
	devs = calloc(o.count, sizeof *devs);
	ep = epoll_create1(0);
	if (!devs || ep < 0)
		return 1;
	for (uint32_t i = 0; i < o.count; i++) {
		devs[i].fd = -1;
		devs[i].id = o.from + i;
	}

	struct epoll_event evs[256];
	bool ready_said = false;
	uint64_t deadline = now_ns() + (uint64_t)o.timeout_s * NS, storm_deadline = 0;
	for (;;) {
		uint64_t now = now_ns();
		fill_window(now);
		if (!ready_said && setup_ok + setup_failed == o.count) {
			printf("READY ok=%lu failed=%lu\n", setup_ok, setup_failed);
			fflush(stdout);
			ready_said = true;
		}
		if (storm_start && !storm_deadline)
			storm_deadline = storm_start + (uint64_t)o.timeout_s * NS;
		if (ready_said && reconnected == setup_ok)
			break;
		if (!ready_said && now > deadline)
			break;
		if (storm_deadline && now > storm_deadline)
			break;
		if (ready_said && !storm_start && now > deadline + 600 * NS)
			break; /* nobody killed the instance */
		int n = epoll_wait(ep, evs, 256, 20);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	if (!ready_said) {
		printf("READY ok=%lu failed=%lu\n", setup_ok, setup_failed);
		fflush(stdout);
	}

	uint64_t *ca = calloc(reconnected + 1, sizeof *ca), *tot = calloc(reconnected + 1, sizeof *tot);
	size_t k = 0;
	FILE *sf = o.samples ? fopen(o.samples, "w") : NULL;
	for (uint32_t i = 0; i < o.count; i++) {
		struct dev *d = &devs[i];
		if (d->st != S_DONE)
			continue;
		ca[k] = d->t_connack - d->t_connect_sent;
		tot[k] = d->t_connack - d->t_drop;
		if (sf)
			fprintf(sf, "%" PRIu64 " %" PRIu64 "\n", ca[k] / 1000, tot[k] / 1000);
		k++;
	}
	if (sf)
		fclose(sf);
	qsort(ca, k, sizeof *ca, cmp_u64);
	qsort(tot, k, sizeof *tot, cmp_u64);
	double secs = storm_end > storm_start ? (double)(storm_end - storm_start) / NS : 0;
	printf("RESULT devices=%" PRIu32 " setup_ok=%lu reconnected=%lu session_present=%lu"
	       " refused=%lu retries=%lu storm_start_ns=%" PRIu64 " storm_end_ns=%" PRIu64
	       " storm_s=%.3f connects_per_s=%.0f connack_p50_ms=%.2f connack_p99_ms=%.2f"
	       " connack_max_ms=%.2f total_p50_ms=%.2f total_p99_ms=%.2f total_max_ms=%.2f\n",
	       o.count, setup_ok, reconnected, present, refused, retries, storm_start, storm_end,
	       secs, secs > 0 ? (double)reconnected / secs : 0, pct(ca, k, 0.5), pct(ca, k, 0.99),
	       k ? (double)ca[k - 1] / 1e6 : 0, pct(tot, k, 0.5), pct(tot, k, 0.99),
	       k ? (double)tot[k - 1] / 1e6 : 0);
	free(ca);
	free(tot);
	free(devs);
	return reconnected == setup_ok && setup_ok == o.count ? 0 : 1;
}
