/*
 * fl_mqtt.c - the MQTT roles of the fault harness: publishers (pub),
 * devices (dev) and the PINGREQ prober (ping), one thread per client over
 * raw sockets (tests/support/rawmqtt.h), so that a client's packets are
 * exactly what the harness means to send: QoS 1, clean session 0, in-flight
 * messages resent with DUP after a reconnect under their first packet id.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"
#include "rawmqtt.h"

#define FL_MAX_PORTS 8
#define FL_MAX_WINDOW 64
#define FL_PKT_CAP 65536

/* ---- shared ------------------------------------------------------------- */

struct fl_conn_opts {
	int ports[FL_MAX_PORTS];
	int nports;
	uint16_t keepalive;
};

/* Connects (clean session 0) to the next port that answers, starting at
 * *port_i. Returns the fd or -1; *port_i moves on after a failure so that a
 * client of several gateways goes to another one when its own is down. */
static int fl_connect(const struct fl_conn_opts *o, int *port_i, const char *id, bool clean,
		      bool *present)
{
	struct raw_connect c = { .level = 4, .client_id = id, .clean = clean,
				 .keepalive = o->keepalive };
	uint8_t rc = 0xff;
	int fd = raw_connect_tcp(o->ports[*port_i]);

	if (fd >= 0 && raw_mqtt_handshake(fd, &c, &rc, present, 5000) == 0 && rc == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	*port_i = (*port_i + 1) % o->nports;
	return -1;
}

/* Remaining-length decoding of a whole packet in p (n bytes): the offset of
 * the variable header, or -1. */
static int fl_body_off(const uint8_t *p, int n)
{
	int i = 1;

	while (i < n && i < 5 && (p[i] & 0x80))
		i++;
	return i < n ? i + 1 : -1;
}

static int fl_wait_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int r = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);

	return r > 0 ? 1 : (r == 0 || errno == EINTR ? 0 : -1);
}

static int fl_conn_opts_parse(int argc, char **argv, struct fl_conn_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->nports = fl_parse_ports(fl_opt(argc, argv, "--ports", fl_opt(argc, argv, "--port", "")),
				   o->ports, FL_MAX_PORTS);
	o->keepalive = (uint16_t)fl_opt_l(argc, argv, "--keepalive", 60);
	if (o->nports == 0) {
		fprintf(stderr, "faults: --ports P[,P...] is required\n");
		return -1;
	}
	return 0;
}

/* ---- pub ---------------------------------------------------------------- */

struct pub_opts {
	struct fl_conn_opts c;
	double rate;             /* messages per second per client */
	int64_t dur_us, drain_us, stall_us;
	int window;              /* in flight per client (below max_inflight) */
	size_t size;             /* payload bytes */
	const char *prefix;      /* MQTT topic "<prefix>/<client>" */
	const char *idfmt;       /* client id prefix */
	FILE *log;
};

struct pub_slot {
	int64_t seq, t0;         /* t0: first send; latency counts from there */
	uint16_t pid;
	bool used;
};

struct pub_client {
	const struct pub_opts *o;
	pthread_t th;
	char id[64], topic[128];
	int port_i;
	struct pub_slot win[FL_MAX_WINDOW];
	int nin;
	uint16_t next_pid;
	int64_t next_seq;
	int64_t conn_at;         /* when the current connection was made */
	/* results */
	int64_t sent, acked, resent, reconnects, stray, unacked;
};

static int pub_send(struct pub_client *c, int fd, struct pub_slot *s, bool dup, uint8_t *pkt,
		    char *payload)
{
	int n = snprintf(payload, c->o->size + 64, "%s %" PRId64 " ", c->id, s->seq);
	int len;

	if ((size_t)n < c->o->size) {
		memset(payload + n, 'x', c->o->size - (size_t)n);
		n = (int)c->o->size;
	}
	len = raw_build_publish(pkt, FL_PKT_CAP, 4, c->topic, payload, (size_t)n, 1, false, dup,
				s->pid);
	return len > 0 ? raw_send(fd, pkt, (size_t)len) : -1;
}

static void pub_on_ack(struct pub_client *c, uint16_t pid, int64_t now)
{
	for (int i = 0; i < c->o->window; i++) {
		struct pub_slot *s = &c->win[i];

		if (s->used && s->pid == pid) {
			fprintf(c->o->log, "%s %" PRId64 " %" PRId64 "\n", c->id, s->seq, now - s->t0);
			s->used = false;
			c->nin--;
			c->acked++;
			return;
		}
	}
	c->stray++;
}

static void *pub_thread(void *arg)
{
	struct pub_client *c = arg;
	const struct pub_opts *o = c->o;
	uint8_t *pkt = malloc(FL_PKT_CAP), *in = malloc(FL_PKT_CAP);
	char *payload = malloc(o->size + 64);
	int64_t start = fl_now_us(), interval = (int64_t)(1e6 / o->rate);
	int64_t next = start + (int64_t)(rand() % (interval > 0 ? interval : 1));
	int fd = -1;

	if (!pkt || !in || !payload)
		exit(2);
	for (;;) {
		int64_t t = fl_now_us();
		bool sending = t < start + o->dur_us && !fl_stop;
		int wait_ms;

		if (!sending && (c->nin == 0 || t > start + o->dur_us + o->drain_us || fl_stop))
			break;
		if (fd < 0) {
			fd = fl_connect(&o->c, &c->port_i, c->id, false, NULL);
			if (fd < 0) {
				fl_sleep_us(200000);
				continue;
			}
			c->conn_at = fl_now_us();
			/* The session may or may not have survived: resend every
			 * unacknowledged message, DUP set, same packet id, in the
			 * order first sent (MQTT 4.6; slots are reused, so the
			 * window's order is not the messages'). */
			for (int64_t last = -1; fd >= 0;) {
				struct pub_slot *s = NULL;

				for (int i = 0; i < o->window; i++)
					if (c->win[i].used && c->win[i].seq > last &&
					    (!s || c->win[i].seq < s->seq))
						s = &c->win[i];
				if (!s)
					break;
				last = s->seq;
				c->resent++;
				if (pub_send(c, fd, s, true, pkt, payload) < 0) {
					close(fd);
					fd = -1;
				}
			}
			continue;
		}
		if (sending && t >= next && c->nin < o->window) {
			struct pub_slot *s = NULL;

			for (int i = 0; i < o->window; i++)
				if (!c->win[i].used) {
					s = &c->win[i];
					break;
				}
			if (++c->next_pid == 0)
				c->next_pid = 1;
			*s = (struct pub_slot){ .seq = c->next_seq++, .t0 = t, .pid = c->next_pid,
						.used = true };
			c->nin++;
			c->sent++;
			/* Behind schedule (window full, reconnecting): catch up
			 * by at most one window's worth, not in one burst. */
			next += interval;
			if (next < t - interval * o->window)
				next = t - interval * o->window;
			if (pub_send(c, fd, s, false, pkt, payload) < 0) {
				close(fd);
				fd = -1;
				c->reconnects++;
			}
			continue;
		}
		/* A message unacknowledged for stall_us: the connection is
		 * presumed dead (a gateway SIGSTOPped, a lost packet): reconnect
		 * and resend. */
		for (int i = 0; i < o->window && fd >= 0; i++)
			if (c->win[i].used && t - c->win[i].t0 > o->stall_us &&
			    t - c->conn_at > o->stall_us) {
				close(fd);
				fd = -1;
				c->reconnects++;
			}
		if (fd < 0)
			continue;
		wait_ms = sending && c->nin < o->window ? (int)((next - t) / 1000) : 100;
		if (wait_ms > 100)
			wait_ms = 100;
		switch (fl_wait_readable(fd, wait_ms)) {
		case 0:
			continue;
		case 1: {
			int n = raw_recv_packet(fd, in, FL_PKT_CAP, 2000);

			if (n >= 4 && (in[0] >> 4) == 4) {
				pub_on_ack(c, (uint16_t)(in[2] << 8 | in[3]), fl_now_us());
				continue;
			}
			if (n > 0)
				continue; /* PINGRESP or anything else: ignored */
			/* closed or broken */
			close(fd);
			fd = -1;
			c->reconnects++;
			break;
		}
		default:
			close(fd);
			fd = -1;
			c->reconnects++;
		}
	}
	if (fd >= 0) {
		static const uint8_t disc[2] = { 0xe0, 0 };

		raw_send(fd, disc, sizeof(disc));
		close(fd);
	}
	c->unacked = c->nin;
	free(pkt);
	free(in);
	free(payload);
	return NULL;
}

int fl_pub_main(int argc, char **argv)
{
	struct pub_opts o;
	struct pub_client *cl;
	int n = (int)fl_opt_l(argc, argv, "--clients", 10);
	const char *logpath = fl_opt(argc, argv, "--log", NULL);
	int64_t sent = 0, acked = 0, resent = 0, reconnects = 0, stray = 0, unacked = 0;

	memset(&o, 0, sizeof(o));
	if (fl_conn_opts_parse(argc, argv, &o.c) < 0 || !logpath || n <= 0)
		return 2;
	o.rate = fl_opt_d(argc, argv, "--rate", 50);
	o.dur_us = (int64_t)(fl_opt_d(argc, argv, "--duration", 10) * 1e6);
	o.drain_us = (int64_t)(fl_opt_d(argc, argv, "--drain", 30) * 1e6);
	o.stall_us = (int64_t)(fl_opt_d(argc, argv, "--stall", 60) * 1e6);
	o.window = (int)fl_opt_l(argc, argv, "--window", 16);
	o.size = (size_t)fl_opt_l(argc, argv, "--size", 64);
	o.prefix = fl_opt(argc, argv, "--prefix", "f");
	o.idfmt = fl_opt(argc, argv, "--id", "p");
	if (o.window < 1 || o.window > FL_MAX_WINDOW || o.rate <= 0) {
		fprintf(stderr, "faults pub: --window 1..%d, --rate > 0\n", FL_MAX_WINDOW);
		return 2;
	}
	if (!(o.log = fopen(logpath, "w"))) {
		perror(logpath);
		return 2;
	}
	setvbuf(o.log, NULL, _IOFBF, 1 << 16);
	cl = calloc((size_t)n, sizeof(*cl));
	if (!cl)
		return 2;
	for (int i = 0; i < n; i++) {
		cl[i].o = &o;
		snprintf(cl[i].id, sizeof(cl[i].id), "%s-%d", o.idfmt, i);
		snprintf(cl[i].topic, sizeof(cl[i].topic), "%s/%s", o.prefix, cl[i].id);
		cl[i].port_i = i % o.c.nports;
		if (pthread_create(&cl[i].th, NULL, pub_thread, &cl[i]) != 0) {
			perror("pthread_create");
			return 2;
		}
	}
	for (int i = 0; i < n; i++) {
		pthread_join(cl[i].th, NULL);
		sent += cl[i].sent;
		acked += cl[i].acked;
		resent += cl[i].resent;
		reconnects += cl[i].reconnects;
		stray += cl[i].stray;
		unacked += cl[i].unacked;
	}
	fclose(o.log);
	printf("RESULT role=pub clients=%d sent=%" PRId64 " acked=%" PRId64 " unacked=%" PRId64
	       " resent=%" PRId64 " reconnects=%" PRId64 " stray_acks=%" PRId64 "\n",
	       n, sent, acked, unacked, resent, reconnects, stray);
	free(cl);
	return 0;
}

/* ---- dev ---------------------------------------------------------------- */

struct dev_opts {
	struct fl_conn_opts c;
	int64_t dur_us;
	double withhold;
	const char *prefix;
	FILE *log;
};

struct dev_client {
	const struct dev_opts *o;
	pthread_t th;
	char id[64], filter[128];
	int port_i;
	bool withhold;
	int64_t received, dups, reconnects;
};

static void dev_on_publish(struct dev_client *c, int fd, const uint8_t *p, int n)
{
	int off = fl_body_off(p, n), qos = (p[0] >> 1) & 3, tlen;
	uint16_t pid = 0;
	char buf[128];
	long long seq = -1;
	size_t plen;

	if (off < 0 || off + 2 > n)
		return;
	tlen = p[off] << 8 | p[off + 1];
	off += 2 + tlen;
	if (qos > 0) {
		if (off + 2 > n)
			return;
		pid = (uint16_t)(p[off] << 8 | p[off + 1]);
		off += 2;
	}
	plen = (size_t)(n - off) < sizeof(buf) - 1 ? (size_t)(n - off) : sizeof(buf) - 1;
	memcpy(buf, p + off, plen);
	buf[plen] = 0;
	{
		char dev[64];

		if (sscanf(buf, "%63s %lld", dev, &seq) == 2)
			fprintf(c->o->log, "%s %lld %d\n", dev, seq, (p[0] & 8) ? 1 : 0);
	}
	c->received++;
	if (p[0] & 8)
		c->dups++;
	if (qos == 1 && !c->withhold) {
		uint8_t ack[4];

		raw_build_ack(ack, sizeof(ack), 0x40, pid);
		raw_send(fd, ack, sizeof(ack));
	}
}

static void *dev_thread(void *arg)
{
	struct dev_client *c = arg;
	const struct dev_opts *o = c->o;
	uint8_t *in = malloc(FL_PKT_CAP), pkt[256];
	int64_t start = fl_now_us(), last_ping = start;
	int fd = -1;

	if (!in)
		exit(2);
	while (!fl_stop && fl_now_us() - start < o->dur_us) {
		int n;

		if (fd < 0) {
			fd = fl_connect(&o->c, &c->port_i, c->id, false, NULL);
			if (fd < 0) {
				fl_sleep_us(200000);
				continue;
			}
			/* Every time: a gateway restarted from memory forgot it. */
			n = raw_build_subscribe(pkt, sizeof(pkt), 4, 1, c->filter, 1);
			if (raw_send(fd, pkt, (size_t)n) < 0) {
				close(fd);
				fd = -1;
				c->reconnects++;
			}
			continue;
		}
		if (fl_now_us() - last_ping > (int64_t)o->c.keepalive * 500000) {
			static const uint8_t ping[2] = { 0xc0, 0 };

			raw_send(fd, ping, sizeof(ping));
			last_ping = fl_now_us();
		}
		switch (fl_wait_readable(fd, 100)) {
		case 0:
			continue;
		case 1:
			n = raw_recv_packet(fd, in, FL_PKT_CAP, 2000);
			if (n > 0) {
				if ((in[0] >> 4) == 3)
					dev_on_publish(c, fd, in, n);
				continue;
			}
		/* fallthrough */
		default:
			close(fd);
			fd = -1;
			c->reconnects++;
		}
	}
	if (fd >= 0) {
		static const uint8_t disc[2] = { 0xe0, 0 };

		raw_send(fd, disc, sizeof(disc));
		close(fd);
	}
	free(in);
	return NULL;
}

int fl_dev_main(int argc, char **argv)
{
	struct dev_opts o;
	struct dev_client *cl;
	int n = (int)fl_opt_l(argc, argv, "--devices", 10), withholding = 0;
	const char *logpath = fl_opt(argc, argv, "--log", NULL);
	int64_t received = 0, dups = 0, reconnects = 0;

	memset(&o, 0, sizeof(o));
	if (fl_conn_opts_parse(argc, argv, &o.c) < 0 || !logpath || n <= 0)
		return 2;
	o.dur_us = (int64_t)(fl_opt_d(argc, argv, "--duration", 3600) * 1e6);
	o.withhold = fl_opt_d(argc, argv, "--withhold", 0);
	o.prefix = fl_opt(argc, argv, "--prefix", "cmd");
	if (!(o.log = fopen(logpath, "w"))) {
		perror(logpath);
		return 2;
	}
	setvbuf(o.log, NULL, _IOLBF, 0); /* line-buffered: read while it runs */
	cl = calloc((size_t)n, sizeof(*cl));
	if (!cl)
		return 2;
	for (int i = 0; i < n; i++) {
		cl[i].o = &o;
		snprintf(cl[i].id, sizeof(cl[i].id), "d-%d", i);
		snprintf(cl[i].filter, sizeof(cl[i].filter), "%s/%s", o.prefix, cl[i].id);
		cl[i].port_i = i % o.c.nports;
		cl[i].withhold = fl_withholds(i, o.withhold);
		withholding += cl[i].withhold;
		if (pthread_create(&cl[i].th, NULL, dev_thread, &cl[i]) != 0) {
			perror("pthread_create");
			return 2;
		}
	}
	for (int i = 0; i < n; i++) {
		pthread_join(cl[i].th, NULL);
		received += cl[i].received;
		dups += cl[i].dups;
		reconnects += cl[i].reconnects;
	}
	fclose(o.log);
	printf("RESULT role=dev devices=%d withholding=%d received=%" PRId64 " dup_flag=%" PRId64
	       " reconnects=%" PRId64 "\n",
	       n, withholding, received, dups, reconnects);
	free(cl);
	return 0;
}

/* ---- ping --------------------------------------------------------------- */

/* PINGREQ every --interval-ms for --duration s; the round trips' p50, p99
 * and max, and how many got no PINGRESP within --timeout-ms. */
int fl_ping_main(int argc, char **argv)
{
	struct fl_conn_opts c;
	struct fl_vec rtt = { 0 };
	int64_t dur = (int64_t)(fl_opt_d(argc, argv, "--duration", 10) * 1e6);
	int64_t every = fl_opt_l(argc, argv, "--interval-ms", 200) * 1000;
	int timeout_ms = (int)fl_opt_l(argc, argv, "--timeout-ms", 5000);
	int64_t start = fl_now_us(), lost = 0, reconnects = 0;
	int fd = -1, port_i = 0;
	uint8_t in[256];

	if (fl_conn_opts_parse(argc, argv, &c) < 0)
		return 2;
	while (!fl_stop && fl_now_us() - start < dur) {
		static const uint8_t ping[2] = { 0xc0, 0 };
		int64_t t0;
		int n = 0;

		if (fd < 0 && (fd = fl_connect(&c, &port_i, "faults-ping", true, NULL)) < 0) {
			fl_sleep_us(200000);
			continue;
		}
		t0 = fl_now_us();
		if (raw_send(fd, ping, sizeof(ping)) == 0)
			while ((n = raw_recv_packet(fd, in, sizeof(in), timeout_ms)) > 0 &&
			       in[0] != 0xd0)
				;
		if (n > 0) {
			fl_vec_push(&rtt, fl_now_us() - t0);
		} else {
			lost++;
			reconnects++;
			close(fd);
			fd = -1;
		}
		fl_sleep_us(every - (fl_now_us() - t0));
	}
	if (fd >= 0)
		close(fd);
	{
		size_t k = rtt.n;
		int64_t p50 = fl_pct(rtt.v, k, 0.5), p99 = fl_pct(rtt.v, k, 0.99),
			mx = fl_pct(rtt.v, k, 1.0);

		printf("RESULT role=ping pings=%zu lost=%" PRId64 " ping_p50_ms=%.2f ping_p99_ms=%.2f"
		       " ping_max_ms=%.2f\n",
		       k, lost, p50 / 1e3, p99 / 1e3, mx / 1e3);
	}
	fl_vec_free(&rtt);
	return 0;
}
