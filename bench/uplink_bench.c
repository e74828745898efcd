/*
 * uplink_bench.c - the measuring side of bench/uplink.sh (MQTT -> Kafka).
 *
 * Modes:
 *   mqtt     N MQTT 3.1.1 publishers on raw non-blocking sockets, one thread,
 *            one epoll loop. QoS 0: as fast as the sockets take it. QoS 1: at
 *            most --inflight unacknowledged per connection; each PUBACK gives
 *            a publish-to-PUBACK latency. With --bootstrap and --topic, a
 *            second thread watches the topic's watermarks, so the rate of
 *            records that reached Kafka is measured too (for QoS 0 that is
 *            the only honest throughput). --mqtt5: the same at protocol
 *            level 5 (empty property lists; PUBACKs may carry a reason
 *            code, counted in refused= when >= 0x80); --topic-alias also:
 *            each publisher sends its topic once with Topic Alias 1, then
 *            an empty topic with the alias (when CONNACK allows aliases).
 *   produce  a bare librdkafka producer writing what the gateway would write
 *            for the same load: same properties as kafkagate's producer
 *            defaults (--prop NAME=VALUE changes one), key = one of --clients
 *            client ids, the same headers. Flat out, or with --inflight K at
 *            most K records unreported, each report timed from its produce
 *            call (p50/p99): the bare producer's publish-to-PUBACK.
 *   count    records ever written to a fresh topic (sum of its high
 *            watermarks).
 *   mock     hosts librdkafka's mock cluster, prints "BOOTSTRAP host:port"
 *            and serves until stdin reaches EOF or a signal arrives.
 *
 * Every mode ends with one "RESULT key=value ..." line on stdout; mqtt and
 * produce report the longest silence between two acknowledgements
 * (max_gap_ms) and, with --gaps MS, print each silence longer than MS as it
 * ends ("GAP from=WALL to=WALL ms=N").
 * Payloads are slices of a pool of random lowercase letters (no newlines,
 * so that `mosquitto_sub | kcat -P` keeps one record per message; not a
 * constant, so that lz4 does not make Kafka's side unrealistically cheap).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define POOL_SIZE (1u << 20)
#define OUT_HIGH 32768           /* QoS 0 publishers stop encoding above this */
#define MAX_INFLIGHT 1024

#define MAX_PROPS 32

struct opts {
	const char *mode, *host, *bootstrap, *topic, *prefix;
	int port, clients, qos, size, inflight, brokers;
	int level;                       /* 4 (MQTT 3.1.1) or 5 (--mqtt5) */
	bool alias;                      /* --topic-alias (level 5) */
	double duration, drain, gaps;
	const char *props[MAX_PROPS][2]; /* --prop name=value: producer overrides */
	int nprops;
};

static struct opts o = {
	.host = "127.0.0.1", .prefix = "bench", .port = 1883, .clients = 100, .qos = 0,
	.size = 64, .inflight = -1, .brokers = 1, .duration = 10, .drain = 15, .level = 4,
};

/* Level 5: what the broker's CONNACK announced (the first one; every
 * connection talks to the same broker). */
static int srv_alias_max = -1, srv_recv_max = 65535;
static uint64_t refused;         /* PUBACKs with a reason code >= 0x80 */

static char pool[POOL_SIZE];

static uint64_t last_ack_ns, max_gap_ns; /* silences between acknowledgements */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double wall_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* An acknowledgement (PUBACK or delivery report) arrived at monotonic time
 * now: with --gaps MS, a silence longer than MS before it is printed as
 * "GAP from=WALL to=WALL ms=N" (wall clock, seconds since the epoch), so
 * that a script can set it beside the moment it restarted Kafka. */
static void note_ack(uint64_t now)
{
	if (o.gaps > 0 && last_ack_ns && now - last_ack_ns > (uint64_t)(o.gaps * 1e6)) {
		double to = wall_secs() - (double)(now_ns() - now) / 1e9;
		double ms = (double)(now - last_ack_ns) / 1e6;
		printf("GAP from=%.3f to=%.3f ms=%.0f\n", to - ms / 1e3, to, ms);
		fflush(stdout);
	}
	if (last_ack_ns && now - last_ack_ns > max_gap_ns)
		max_gap_ns = now - last_ack_ns;
	last_ack_ns = now;
}

static void die(const char *what)
{
	fprintf(stderr, "uplink_bench: %s\n", what);
	exit(1);
}

static void pool_fill(void)
{
	uint64_t x = 0x9E3779B97F4A7C15u;

	for (size_t i = 0; i < POOL_SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pool[i] = (char)('a' + x % 26);
	}
}

/* A payload of o.size bytes that differs from message to message. */
static const char *payload_at(uint64_t n)
{
	return pool + (n * 7919u) % (POOL_SIZE - (size_t)o.size);
}

/* ---- Kafka helpers ---------------------------------------------------------- */

static rd_kafka_t *kafka_handle(rd_kafka_type_t type, const char *const (*kv)[2], size_t n)
{
	char e[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (rd_kafka_conf_set(conf, "bootstrap.servers", o.bootstrap, e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)))
		die(e);
	for (size_t i = 0; i < n; i++)
		if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof(e)))
			die(e);
	rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof(e));
	if (!rk)
		die(e);
	return rk;
}

/* Records in o.topic, or -1 when it does not exist (yet). */
static long topic_count(rd_kafka_t *rk)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o.topic, NULL);
	const struct rd_kafka_metadata *md;
	long total = -1;

	if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == 0) {
		if (md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0) {
			total = 0;
			for (int p = 0; p < md->topics[0].partition_cnt; p++) {
				int64_t lo, hi;

				if (rd_kafka_query_watermark_offsets(rk, o.topic, p, &lo, &hi, 5000)) {
					total = -1;
					break;
				}
				/* High watermarks: bench topics are fresh, and the mock
				 * cluster drops old segments (the low one moves). */
				total += (long)hi;
			}
		}
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_topic_destroy(rkt);
	return total;
}

/* Watches o.topic: the count and when it last grew. */
struct watch {
	pthread_t th;
	rd_kafka_t *rk;
	atomic_bool stop;
	long base, count;
	uint64_t last_growth_ns;
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;

	while (!atomic_load(&w->stop)) {
		long c = topic_count(w->rk);

		if (c >= 0 && c != w->count) {
			w->count = c;
			w->last_growth_ns = now_ns();
		}
		usleep(50000);
	}
	return NULL;
}

/* ---- mqtt mode ---------------------------------------------------------------- */

struct conn {
	int fd;
	char topic[32];
	bool alias_set;              /* --topic-alias: alias 1 names the topic */
	uint16_t next_pid;
	uint32_t events;
	char *out;
	size_t out_len;
	uint8_t in[64];
	size_t in_len;
	uint16_t fifo_pid[MAX_INFLIGHT];
	uint64_t fifo_ns[MAX_INFLIGHT];
	int head, n;                 /* outstanding QoS 1 publishes */
	uint64_t sent;
};

static uint32_t *lat_us;
static size_t lat_n, lat_cap;

static void lat_add(uint64_t ns)
{
	if (lat_n == lat_cap) {
		lat_cap = lat_cap ? lat_cap * 2 : 1u << 20;
		lat_us = realloc(lat_us, lat_cap * sizeof(*lat_us));
		if (!lat_us)
			die("out of memory");
	}
	lat_us[lat_n++] = (uint32_t)(ns / 1000);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(double p)
{
	if (!lat_n)
		return 0;
	size_t i = (size_t)(p * (double)(lat_n - 1));
	return lat_us[i] / 1000.0;
}

/* Reads a variable byte integer at p (at most 4 bytes, not past end).
 * Returns the bytes it took, or 0 if incomplete or malformed. */
static int varint(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4 && p + i < end; i++) {
		*v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

/* Level 5: the Topic Alias Maximum (0x22) and Receive Maximum (0x21) of a
 * CONNACK's property list; dies on a list it cannot walk. */
static void connack_props(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		uint8_t id = *p++;
		size_t n = 0;
		switch (id) {
		case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29:
		case 0x2a:
			n = 1;
			break;
		case 0x13: case 0x21: case 0x22: case 0x23:
			n = 2;
			break;
		case 0x02: case 0x11: case 0x18: case 0x27:
			n = 4;
			break;
		case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1a:
		case 0x1c: case 0x1f:
			if (end - p < 2)
				die("bad CONNACK properties");
			n = 2 + (size_t)(p[0] << 8 | p[1]);
			break;
		case 0x26:
			if (end - p < 2 || (size_t)(end - p) < 4 + (size_t)(p[0] << 8 | p[1]))
				die("bad CONNACK properties");
			n = 2 + (size_t)(p[0] << 8 | p[1]);
			n += 2 + (size_t)(p[n] << 8 | p[n + 1]);
			break;
		default:
			die("unknown CONNACK property");
		}
		if ((size_t)(end - p) < n)
			die("bad CONNACK properties");
		if (id == 0x22 && srv_alias_max < 0)
			srv_alias_max = p[0] << 8 | p[1];
		if (id == 0x21)
			srv_recv_max = p[0] << 8 | p[1];
		p += n;
	}
}

/* Blocking: the rest of a CONNACK whose first two bytes are in ack. */
static void read_connack5(int fd, const uint8_t *first)
{
	uint8_t buf[512];
	size_t got = 2;
	uint32_t rem;
	int vl;

	memcpy(buf, first, 2);
	while (!(vl = varint(buf + 1, buf + got, &rem))) {
		if (got == 5)
			die("bad CONNACK length");
		if (read(fd, buf + got, 1) != 1)
			die("no CONNACK");
		got++;
	}
	size_t total = 1 + (size_t)vl + rem;
	if (buf[0] != 0x20 || rem < 2 || total > sizeof(buf))
		die("unexpected CONNACK");
	while (got < total) {
		ssize_t r = read(fd, buf + got, total - got);
		if (r <= 0)
			die("no CONNACK");
		got += (size_t)r;
	}
	const uint8_t *p = buf + 1 + vl, *end = buf + total;
	if (p[1] != 0) {
		fprintf(stderr, "uplink_bench: CONNACK reason 0x%02x\n", p[1]);
		exit(1);
	}
	if (end > p + 2) {
		uint32_t plen;
		int pl = varint(p + 2, end, &plen);
		if (!pl || plen != (size_t)(end - (p + 2 + pl)))
			die("bad CONNACK properties");
		if (srv_alias_max < 0)
			connack_props(p + 2 + pl, end);
	}
	if (srv_alias_max < 0)
		srv_alias_max = 0;
}

/* Blocking connect, CONNECT, CONNACK; then non-blocking. */
static int mqtt_open(int i)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o.port) };
	char id[32];
	uint8_t pkt[64], ack[4];
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	bool v5 = o.level == 5;

	inet_pton(AF_INET, o.host, &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to the MQTT port");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Bounded, so that a flat-out QoS 0 publisher measures the broker and
	 * not how much loopback buffers (autotuning reaches megabytes). */
	int sndbuf = 128 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	size_t idlen = (size_t)snprintf(id, sizeof(id), "%s-p%d", o.prefix, i);
	size_t n = 0;
	pkt[n++] = 0x10;
	pkt[n++] = (uint8_t)(10 + v5 + 2 + idlen);
	memcpy(pkt + n, "\0\4MQTT\4\2\0\0", 10); /* level 4, clean, keepalive 0 */
	if (v5)
		pkt[n + 6] = 5;  /* level 5, and an empty property list */
	n += 10;
	if (v5)
		pkt[n++] = 0;
	pkt[n++] = 0;
	pkt[n++] = (uint8_t)idlen;
	memcpy(pkt + n, id, idlen);
	n += idlen;
	if (write(fd, pkt, n) != (ssize_t)n)
		die("CONNECT write failed");
	size_t got = 0;
	while (got < (v5 ? 2u : 4u)) {
		ssize_t r = read(fd, ack + got, (v5 ? 2 : 4) - got);
		if (r <= 0)
			die("no CONNACK");
		got += (size_t)r;
	}
	if (v5)
		read_connack5(fd, ack);  /* properties: its length varies */
	else if (ack[0] != 0x20 || ack[3] != 0)
		die("CONNECT refused");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void encode_publish(struct conn *c, uint64_t seq)
{
	/* Level 5 with --topic-alias (and a broker that allows one): the
	 * first PUBLISH sets alias 1 with the topic, later ones leave the
	 * topic empty. The property list is 0 or 3 bytes long. */
	bool alias = o.alias && srv_alias_max >= 1;
	size_t tlen = alias && c->alias_set ? 0 : strlen(c->topic);
	size_t plen = alias ? 3 : 0;
	size_t rem = 2 + tlen + (o.qos ? 2 : 0) + (size_t)o.size +
		     (o.level == 5 ? 1 + plen : 0);
	char *p = c->out + c->out_len;

	*p++ = (char)(0x30 | o.qos << 1);
	do {
		uint8_t b = rem % 128;
		rem /= 128;
		*p++ = (char)(b | (rem ? 0x80 : 0));
	} while (rem);
	*p++ = (char)(tlen >> 8);
	*p++ = (char)tlen;
	memcpy(p, c->topic, tlen);
	p += tlen;
	if (o.qos) {
		if (++c->next_pid == 0)
			c->next_pid = 1;
		*p++ = (char)(c->next_pid >> 8);
		*p++ = (char)c->next_pid;
		int slot = (c->head + c->n) % o.inflight;
		c->fifo_pid[slot] = c->next_pid;
		c->fifo_ns[slot] = now_ns();
		c->n++;
	}
	if (o.level == 5) {
		*p++ = (char)plen;
		if (alias) {
			*p++ = 0x23;  /* Topic Alias 1 */
			*p++ = 0;
			*p++ = 1;
			c->alias_set = true;
		}
	}
	memcpy(p, payload_at(seq), (size_t)o.size);
	p += o.size;
	c->out_len = (size_t)(p - c->out);
	c->sent++;
}

static void want(int ep, struct conn *c, uint32_t ev)
{
	if (ev == c->events)
		return;
	struct epoll_event e = { .events = ev, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
	c->events = ev;
}

/* Reads PUBACKs; returns how many. */
static int read_acks(struct conn *c, uint64_t *lost)
{
	int acks = 0;

	for (;;) {
		ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			(*lost)++;
			close(c->fd);
			c->fd = -1;
			return acks;
		}
		if (r < 0)
			return acks;
		c->in_len += (size_t)r;
		size_t off = 0;
		while (c->in_len - off >= 4) {
			size_t len = 4;
			if (o.level == 5) {
				/* 40 02 id, or 40 03+ id reason [properties]; a
				 * DISCONNECT says why the broker gave up. */
				uint32_t rem;
				int vl = varint(c->in + off + 1, c->in + c->in_len, &rem);
				if (!vl && c->in_len - off < 5)
					break;
				if (!vl || 1 + (size_t)vl + rem > sizeof(c->in))
					die("unexpected packet from the broker");
				len = 1 + (size_t)vl + rem;
				if (c->in_len - off < len)
					break;
				if (c->in[off] == 0xe0) {
					fprintf(stderr, "uplink_bench: DISCONNECT reason 0x%02x\n",
						rem ? c->in[off + 2] : 0);
					exit(1);
				}
				if (c->in[off] != 0x40 || rem < 2 || vl != 1)
					die("unexpected packet from the broker");
				if (rem > 2 && c->in[off + 4] >= 0x80)
					refused++;
			} else if (c->in[off] != 0x40 || c->in[off + 1] != 2) {
				die("unexpected packet from the broker");
			}
			uint16_t pid = (uint16_t)(c->in[off + 2] << 8 | c->in[off + 3]);
			if (c->n == 0 || c->fifo_pid[c->head] != pid)
				die("PUBACK out of order");
			uint64_t now = now_ns();
			lat_add(now - c->fifo_ns[c->head]);
			note_ack(now);
			c->head = (c->head + 1) % o.inflight;
			c->n--;
			acks++;
			off += len;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

static int run_mqtt(void)
{
	struct conn *cs = calloc((size_t)o.clients, sizeof(*cs));
	struct watch w = { .count = -1 };
	uint64_t sent = 0, acked = 0, lost = 0, seq = 0;
	size_t out_cap = OUT_HIGH + (size_t)o.size * 2 + 256;
	int ep = epoll_create1(0);

	if (o.inflight < 0)
		o.inflight = 10;
	if (!cs || ep < 0 || o.inflight < 1 || o.inflight > MAX_INFLIGHT)
		die("bad arguments or out of memory");
	if (o.bootstrap && o.topic) {
		w.rk = kafka_handle(RD_KAFKA_PRODUCER, NULL, 0);
		w.base = topic_count(w.rk);
		w.base = w.base < 0 ? 0 : w.base;
		w.count = w.base;
		pthread_create(&w.th, NULL, watch_main, &w);
	}
	for (int i = 0; i < o.clients; i++) {
		struct conn *c = &cs[i];

		c->fd = mqtt_open(i);
		/* Level 5: never more unacknowledged than the broker's Receive
		 * Maximum (a protocol error otherwise). */
		if (i == 0 && o.level == 5 && o.inflight > srv_recv_max)
			o.inflight = srv_recv_max;
		snprintf(c->topic, sizeof(c->topic), "%s/%d", o.prefix, i);
		c->out = malloc(out_cap);
		c->events = EPOLLIN;
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
	}
	double cpu0 = cpu_secs();
	uint64_t t0 = now_ns(), t_end = t0 + (uint64_t)(o.duration * 1e9), t_last_ack = t0;
	uint64_t t_drain = t_end + (uint64_t)(o.drain * 1e9);
	struct epoll_event evs[256];

	long in_window = -1;          /* records in Kafka when sending stopped */

	for (;;) {
		uint64_t now = now_ns();
		bool sending = now < t_end;
		uint64_t outstanding = 0;

		if (!sending && in_window < 0)
			in_window = w.rk ? w.count - w.base : 0; /* sampled every ~50 ms */

		for (int i = 0; i < o.clients; i++) {
			struct conn *c = &cs[i];
			if (c->fd < 0)
				continue;
			while (sending && c->out_len < OUT_HIGH && (o.qos == 0 || c->n < o.inflight))
				encode_publish(c, seq++);
			if (c->out_len) {
				ssize_t wr = write(c->fd, c->out, c->out_len);
				if (wr > 0) {
					memmove(c->out, c->out + wr, c->out_len - (size_t)wr);
					c->out_len -= (size_t)wr;
				}
			}
			want(ep, c, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
			outstanding += (uint64_t)c->n + (c->out_len ? 1 : 0);
		}
		if (!sending && (outstanding == 0 || now >= t_drain))
			break;
		int n = epoll_wait(ep, evs, 256, 10);
		for (int k = 0; k < n; k++) {
			struct conn *c = evs[k].data.ptr;
			if (c->fd >= 0 && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				int a = read_acks(c, &lost);
				if (a) {
					acked += (uint64_t)a;
					t_last_ack = now_ns();
				}
			}
		}
	}
	uint64_t t_stop = now_ns();
	double cpu = cpu_secs() - cpu0;
	for (int i = 0; i < o.clients; i++)
		sent += cs[i].sent;
	double send_secs = (double)((t_stop < t_end ? t_stop : t_end) - t0) / 1e9;
	double ack_secs = (double)(t_last_ack - t0) / 1e9;

	long records = -1;
	double krate = 0;
	if (w.rk) {
		/* Let Kafka's count settle: stop 2 s after it last grew. */
		uint64_t give_up = now_ns() + (uint64_t)(o.drain * 1e9);
		while (now_ns() < give_up && (w.count - w.base < (long)sent) &&
		       (w.last_growth_ns == 0 || now_ns() - w.last_growth_ns < 2000000000u))
			usleep(50000);
		atomic_store(&w.stop, true);
		pthread_join(w.th, NULL);
		records = w.count - w.base;
		if (w.last_growth_ns > t0)
			krate = (double)records / ((double)(w.last_growth_ns - t0) / 1e9);
		rd_kafka_destroy(w.rk);
	}
	qsort(lat_us, lat_n, sizeof(*lat_us), cmp_u32);
	printf("RESULT mode=mqtt qos=%d size=%d clients=%d inflight=%d sent=%" PRIu64
	       " acked=%" PRIu64 " lost_conns=%" PRIu64 " send_secs=%.3f sent_per_s=%.0f"
	       " acked_per_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f kafka_in_window=%ld"
	       " kafka_window_per_s=%.0f kafka_records=%ld kafka_per_s=%.0f cpu_s=%.2f"
	       " max_gap_ms=%.0f",
	       o.qos, o.size, o.clients, o.inflight, sent, acked, lost, send_secs,
	       (double)sent / send_secs, o.qos && ack_secs > 0 ? (double)acked / ack_secs : 0,
	       pct_ms(0.50), pct_ms(0.99), lat_n ? lat_us[lat_n - 1] / 1000.0 : 0, in_window,
	       in_window > 0 ? (double)in_window / o.duration : 0, records, krate, cpu,
	       (double)max_gap_ns / 1e6);
	/* Only at level 5, so that 3.1.1 runs print the line as before. */
	if (o.level == 5)
		printf(" mqtt=5 topic_alias=%d srv_alias_max=%d srv_recv_max=%d refused=%" PRIu64,
		       o.alias, srv_alias_max, srv_recv_max, refused);
	putchar('\n');
	return lost ? 3 : 0;
}

/* ---- produce mode --------------------------------------------------------------- */

static atomic_uint_fast64_t delivered, failed;
static uint64_t last_dr_ns;
static bool dr_latency;          /* --inflight K: each report gives a latency */

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		atomic_fetch_add(&failed, 1);
	else
		atomic_fetch_add(&delivered, 1);
	last_dr_ns = now_ns();
	if (dr_latency && !m->err)
		lat_add(last_dr_ns - (uint64_t)(uintptr_t)m->_private);
	if (!m->err)
		note_ack(last_dr_ns);
}

/* kafkagate's producer defaults (src/kafka/kafka_conf.c), then --prop. */
static rd_kafka_t *bare_producer(void)
{
	static const char *const kv[][2] = {
		{ "acks", "all" }, { "enable.idempotence", "true" }, { "linger.ms", "0" },
		{ "compression.type", "lz4" }, { "partitioner", "murmur2_random" },
		{ "message.timeout.ms", "30000" }, { "socket.nagle.disable", "true" },
		{ "reconnect.backoff.ms", "100" }, { "reconnect.backoff.max.ms", "1000" },
	};
	char e[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	rd_kafka_conf_set(conf, "bootstrap.servers", o.bootstrap, e, sizeof(e));
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof(e)))
			die(e);
	for (int i = 0; i < o.nprops; i++)
		if (rd_kafka_conf_set(conf, o.props[i][0], o.props[i][1], e, sizeof(e)))
			die(e);
	rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk)
		die(e);
	return rk;
}

/*
 * Flat out (--inflight absent or 0), or with at most --inflight records
 * unreported (then each delivery report gives a produce-to-report latency,
 * the bare producer's side of the gateway's publish-to-PUBACK). Reports are
 * served by rd_kafka_poll() on this thread, as soon as they are queued.
 */
static int run_produce(void)
{
	char (*ids)[32] = calloc((size_t)o.clients, sizeof(*ids));
	char (*topics)[32] = calloc((size_t)o.clients, sizeof(*topics));
	uint64_t sent = 0;
	int window = o.inflight > 0 ? o.inflight : 0;

	if (!ids || !topics)
		die("out of memory");
	dr_latency = window > 0;
	rd_kafka_t *rk = bare_producer();
	for (int i = 0; i < o.clients; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%s-p%d", o.prefix, i);
		snprintf(topics[i], sizeof(topics[i]), "%s/%d", o.prefix, i);
	}
	if (window) {
		/* The topic's metadata and the producer id first, as a gateway
		 * that has been running has them. */
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o.topic), RD_KAFKA_V_VALUE("warm-up", 7),
				  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		rd_kafka_flush(rk, 30000);
		atomic_store(&delivered, 0);
		lat_n = 0;
	}
	double cpu0 = cpu_secs();
	uint64_t t0 = now_ns(), t_end = t0 + (uint64_t)(o.duration * 1e9);
	while (now_ns() < t_end) {
		int burst = window ? (int)((int64_t)window - (int64_t)(sent - delivered - failed)) : 1000;
		for (int k = 0; k < burst; k++) {
			int i = (int)(sent % (uint64_t)o.clients);
			rd_kafka_headers_t *h = rd_kafka_headers_new(4);

			rd_kafka_header_add(h, "mqtt.topic", -1, topics[i], -1);
			rd_kafka_header_add(h, "mqtt.clientid", -1, ids[i], -1);
			rd_kafka_header_add(h, "mqtt.qos", -1, o.qos ? "1" : "0", 1);
			rd_kafka_header_add(h, "mqtt.retain", -1, "false", 5);
			rd_kafka_resp_err_t err = rd_kafka_producev(
				rk, RD_KAFKA_V_TOPIC(o.topic), RD_KAFKA_V_KEY(ids[i], strlen(ids[i])),
				RD_KAFKA_V_VALUE((void *)payload_at(sent), (size_t)o.size),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
				RD_KAFKA_V_OPAQUE((void *)(uintptr_t)now_ns()), RD_KAFKA_V_END);
			if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				rd_kafka_headers_destroy(h);
				rd_kafka_poll(rk, 1);
				break;
			}
			if (err)
				die(rd_kafka_err2str(err));
			sent++;
		}
		/* With a window, block until a report frees room in it. */
		rd_kafka_poll(rk, window ? 100 : 0);
	}
	rd_kafka_flush(rk, (int)(o.drain * 1000));
	double cpu = cpu_secs() - cpu0;
	double secs = (double)(last_dr_ns - t0) / 1e9;
	qsort(lat_us, lat_n, sizeof(*lat_us), cmp_u32);
	printf("RESULT mode=produce size=%d keys=%d inflight=%d sent=%" PRIu64 " delivered=%" PRIu64
	       " failed=%" PRIu64 " secs=%.3f delivered_per_s=%.0f p50_ms=%.3f p99_ms=%.3f"
	       " cpu_s=%.2f max_gap_ms=%.0f\n",
	       o.size, o.clients, window, sent, (uint64_t)delivered, (uint64_t)failed, secs,
	       secs > 0 ? (double)delivered / secs : 0, pct_ms(0.50), pct_ms(0.99), cpu,
	       (double)max_gap_ns / 1e6);
	rd_kafka_destroy(rk);
	return failed ? 3 : 0;
}

/* ---- count and mock modes -------------------------------------------------------- */

static int run_count(void)
{
	rd_kafka_t *rk = kafka_handle(RD_KAFKA_PRODUCER, NULL, 0);
	long c = topic_count(rk);

	printf("RESULT mode=count topic=%s records=%ld\n", o.topic, c);
	rd_kafka_destroy(rk);
	return c < 0;
}

static int run_mock(void)
{
	char e[256], b;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk)
		die(e);
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, o.brokers);
	if (!mc)
		die("cannot start the mock cluster");
	printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	/* SIGTERM's default action ends us; EOF on stdin ends us cleanly. */
	while (read(0, &b, 1) > 0)
		;
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	printf("RESULT mode=mock\n");
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: uplink_bench mqtt    --port P [--clients N] [--qos 0|1] [--size B]\n"
		"                            [--inflight K] [--duration S] [--drain S]\n"
		"                            [--prefix T] [--bootstrap B --topic T] [--gaps MS]\n"
		"                            [--mqtt5] [--topic-alias]\n"
		"       uplink_bench produce --bootstrap B --topic T [--clients N] [--size B]\n"
		"                            [--duration S] [--inflight K] [--prop NAME=VALUE]...\n"
		"                            [--gaps MS]\n"
		"       uplink_bench count   --bootstrap B --topic T\n"
		"       uplink_bench mock    [--brokers N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, NULL, 'h' }, { "port", 1, NULL, 'p' }, { "clients", 1, NULL, 'c' },
		{ "qos", 1, NULL, 'q' }, { "size", 1, NULL, 's' }, { "inflight", 1, NULL, 'i' },
		{ "duration", 1, NULL, 'd' }, { "drain", 1, NULL, 'D' }, { "prefix", 1, NULL, 'P' },
		{ "bootstrap", 1, NULL, 'b' }, { "topic", 1, NULL, 't' }, { "brokers", 1, NULL, 'B' },
		{ "prop", 1, NULL, 'X' }, { "gaps", 1, NULL, 'G' }, { "mqtt5", 0, NULL, '5' },
		{ "topic-alias", 0, NULL, 'A' }, { NULL, 0, NULL, 0 },
	};
	int ch;

	if (argc < 2)
		usage();
	o.mode = argv[1];
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'c': o.clients = atoi(optarg); break;
		case 'q': o.qos = atoi(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'i': o.inflight = atoi(optarg); break;
		case 'd': o.duration = atof(optarg); break;
		case 'D': o.drain = atof(optarg); break;
		case 'P': o.prefix = optarg; break;
		case 'b': o.bootstrap = optarg; break;
		case 't': o.topic = optarg; break;
		case 'B': o.brokers = atoi(optarg); break;
		case 'G': o.gaps = atof(optarg); break;
		case '5': o.level = 5; break;
		case 'A': o.alias = true; o.level = 5; break;
		case 'X': {
			char *eq = strchr(optarg, '=');
			if (!eq || o.nprops == MAX_PROPS)
				usage();
			*eq = '\0';
			o.props[o.nprops][0] = optarg;
			o.props[o.nprops++][1] = eq + 1;
			break;
		}
		default: usage();
		}
	}
	if (o.clients < 1 || o.size < 1 || o.size > 65536 || o.qos < 0 || o.qos > 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	pool_fill();
	if (strcmp(o.mode, "mqtt") == 0)
		return run_mqtt();
	if ((strcmp(o.mode, "produce") == 0 || strcmp(o.mode, "count") == 0) &&
	    (!o.bootstrap || !o.topic))
		usage();
	if (strcmp(o.mode, "produce") == 0)
		return run_produce();
	if (strcmp(o.mode, "count") == 0)
		return run_count();
	if (strcmp(o.mode, "mock") == 0)
		return run_mock();
	usage();
	return 2;
}
