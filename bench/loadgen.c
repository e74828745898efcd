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
 * Modes: pub, sub, idle, run (pubs and subs in one process). bench/README.md
 * documents the options and the RESULT line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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

#include "core/buf.h"
#include "mqtt/mqtt_codec.h"

#define LG_LEVEL 4              /* MQTT 3.1.1 */
#define LG_OUT_HIGH 16384       /* publishers stop encoding above this */
#define LG_READ_CHUNK 65536
#define LG_READS 16             /* reads per connection per wake-up */
#define LG_MAX_PACKET (1u << 20)
#define LG_KEEPALIVE 600
#define LG_PING_NS (300 * NS)   /* half the keepalive */
#define LG_QUIET_NS (2 * NS)    /* drain ends after this long without progress */
#define LG_STALL_NS NS          /* end-to-end window stuck this long: write off */
#define NS 1000000000ull

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
enum lg_state { ST_NEW, ST_CONNECTING, ST_CONNACK, ST_SUBACK, ST_READY, ST_DONE };
enum lg_phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_HOLD, PH_END };

struct conn {
	int fd;
	uint8_t role;
	uint8_t state;
	uint16_t next_id;
	uint32_t events;        /* epoll mask registered now */
	uint32_t index;         /* among its role: names its topic and client id */
	uint32_t inflight;      /* QoS 1/2 publishes not yet completed */
	uint64_t sent;
	struct buf in;
	struct buf out;
};

struct lg {
	/* options */
	int mode;
	struct sockaddr_in addr;
	int qos;
	size_t size;
	double rate;            /* msgs/s for the whole process; 0 = flat out */
	double duration, hold, drain, connect_timeout;
	unsigned window, conn_window;
	uint64_t expect;
	uint64_t e2e_window;     /* run mode: deliveries in transit at most */
	const char *prefix, *filter, *id_prefix;
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
	if (c->state == ST_CONNECTING || buf_used(&c->out) > 0 ||
	    (g->rate == 0 && pub_can_send(g, c)))
		ev |= EPOLLOUT;
	if (ev == c->events)
		return;
	struct epoll_event e = { .events = ev, .data.u32 = (uint32_t)(c - g->conns) };
	if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

/* Returns 0, or -1 when the connection is broken. */
static int conn_flush(struct conn *c)
{
	while (buf_used(&c->out) > 0) {
		ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return 0;
		} else {
			return -1;
		}
	}
	if (c->role == ROLE_IDLE)
		buf_release(&c->out);
	return 0;
}

static uint16_t conn_next_id(struct conn *c)
{
	if (++c->next_id == 0)
		c->next_id = 1;
	return c->next_id;
}

static int send_ack(struct conn *c, uint8_t type, uint16_t id)
{
	struct mqtt_ack a = { .packet_id = id };
	return mqtt_encode_ack(&c->out, LG_LEVEL, type, &a);
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
	while (budget-- > 0 && buf_used(&c->out) < LG_OUT_HIGH && pub_can_send(g, c)) {
		uint64_t ts = now_ns();
		memcpy(g->payload, &ts, sizeof ts);
		p.packet_id = g->qos ? conn_next_id(c) : 0;
		if (mqtt_encode_publish(&c->out, LG_LEVEL, &p) != MQTT_OK)
			break;
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

static int on_publish(struct lg *g, struct conn *c, const struct mqtt_publish *p)
{
	uint64_t now = now_ns();
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
		return send_ack(c, MQTT_PUBACK, p->packet_id);
	if (p->qos == 2)
		return send_ack(c, MQTT_PUBREC, p->packet_id);
	return 0;
}

static int send_subscribe(struct lg *g, struct conn *c)
{
	struct mqtt_str f = { (const uint8_t *)g->filter, (uint16_t)strlen(g->filter) };
	uint8_t opt = (uint8_t)g->qos;
	return mqtt_encode_subscribe(&c->out, LG_LEVEL, MQTT_SUBSCRIBE, conn_next_id(c),
				     &f, &opt, 1);
}

/* Handles one framed packet. Returns 0, or -1 to drop the connection. */
static int conn_packet(struct lg *g, struct conn *c, const struct mqtt_frame *f)
{
	struct mqtt_packet pkt;
	int rc = mqtt_decode(f, LG_LEVEL, &pkt);
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
		if (c->role != ROLE_SUB) {
			conn_ready(g, c);
			return 0;
		}
		c->state = ST_SUBACK;
		return send_subscribe(g, c);
	case MQTT_SUBACK:
		if (c->state != ST_SUBACK || pkt.u.suback.count < 1 ||
		    pkt.u.suback.codes[0] == MQTT_SUBACK_FAILURE) {
			complain(g, c, "SUBACK refused or unexpected", 0);
			return -1;
		}
		conn_ready(g, c);
		return 0;
	case MQTT_PUBLISH:
		return on_publish(g, c, &pkt.u.publish);
	case MQTT_PUBACK:
	case MQTT_PUBCOMP:
		pub_complete(g, c);
		return 0;
	case MQTT_PUBREC:
		return send_ack(c, MQTT_PUBREL, pkt.u.ack.packet_id);
	case MQTT_PUBREL:
		return send_ack(c, MQTT_PUBCOMP, pkt.u.ack.packet_id);
	case MQTT_PINGRESP:
		return 0;
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

/* Returns 0, or -1 when the connection failed (and is closed). */
static int conn_read(struct lg *g, struct conn *c)
{
	/* Drain up to LG_READS per wake-up: a subscriber sharing the loop with
	 * many publishers would otherwise read far less than they write and
	 * the generator, not the broker, would set the delivered rate. */
	for (int i = 0; i < LG_READS; i++) {
		ssize_t n = recv(c->fd, g->scratch, sizeof g->scratch, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0) {
			conn_fail(g, c, n == 0 ? "closed by broker" : "recv", n == 0 ? 0 : errno);
			return -1;
		}
		if (conn_feed(g, c, g->scratch, (size_t)n) < 0) {
			conn_fail(g, c, "protocol", 0);
			return -1;
		}
		if ((size_t)n < sizeof g->scratch)
			return 0;
	}
	return 0;
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
	char id[64];
	int idlen = snprintf(id, sizeof id, "%s%d-%c%u", g->id_prefix, (int)getpid(),
			     "spi"[c->role], c->index);
	struct mqtt_connect cn = {
		.level = LG_LEVEL,
		.clean = true,
		.keepalive = LG_KEEPALIVE,
		.client_id = { (const uint8_t *)id, (uint16_t)idlen },
	};
	if (mqtt_encode_connect(&c->out, &cn) != MQTT_OK) {
		conn_fail(g, c, "encode CONNECT", ENOMEM);
		return;
	}
	c->state = ST_CONNACK;
}

static void conn_event(struct lg *g, struct conn *c, uint32_t events)
{
	if (c->fd < 0)
		return;
	if (c->state == ST_CONNECTING) {
		conn_connected(g, c);
		if (c->fd < 0)
			return;
	} else if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && conn_read(g, c) < 0) {
		return;
	}
	if ((events & EPOLLOUT) && g->rate == 0)
		pub_fill(g, c, UINT64_MAX);
	if (conn_flush(c) < 0) {
		conn_fail(g, c, "send", errno);
		return;
	}
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
		if (mqtt_encode_simple(&c->out, LG_LEVEL, type) != MQTT_OK || conn_flush(c) < 0)
			conn_fail(g, c, "send", errno);
		else
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
				if (conn_flush(c) < 0)
					conn_fail(g, c, "send", errno);
				else
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
	case PH_DRAIN:
		if (lg_drained(g) || now - g->t_progress > LG_QUIET_NS ||
		    now - g->t_pub_end > (uint64_t)(g->drain * NS))
			g->phase = PH_END;
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
	       " written_off=%" PRIu64 " stalls=%" PRIu64 " cpu_s=%.2f\n",
	       mode_names[g->mode], g->n_pub, g->n_sub, g->n_idle, g->qos, g->size,
	       g->ready, g->failed, g->lost, g->sent, g->acked, g->received, pub_secs,
	       rx_secs, sent_rate, g->n_sub ? rx_rate : sent_rate,
	       (double)hist_percentile(&g->lat, 0.50) / 1e3,
	       (double)hist_percentile(&g->lat, 0.99) / 1e3,
	       (double)hist_percentile(&g->lat, 0.999) / 1e3, (double)g->lat.max / 1e3,
	       g->written_off, g->stalls, cpu);
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
	      "  --connect-window N (100)  connection attempts in progress at once\n"
	      "  --connect-timeout S (60)  --id-prefix STR (lg)\n"
	      "  --e2e-window N (0 = off)  run mode: at most N deliveries in transit\n",
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
		{ "e2e-window", 1, 0, 'W' }, { 0, 0, 0, 0 },
	};
	const char *host = "127.0.0.1";
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
	if (!g->conns || !g->payload || g->ep < 0) {
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
	free(g->conns);
	free(g->payload);
	return rc;
}
