/*
 * ab_storm.c - client-id takeover storm against late Kafka deliveries
 * (the faults come from the mock cluster host, ab_mock.c).
 *
 * The storm: N client ids, each reconnecting every 0.2-1.2 s (mostly by
 * opening a new connection that takes the id over, sometimes by a DISCONNECT
 * first; even ids clean, odd ids persistent), every live connection keeping
 * up to STORM_WIN QoS 1 publishes in flight to storm/<id> (routed to Kafka
 * topic "storm"), payload "id=I seq=S gen=G pid=P". Each connection of an id
 * takes its packet ids from its own range of 1024, so a PUBACK that lands on
 * the wrong connection names an id that connection never used. Meanwhile
 * the mock cluster answers the storm's partitions late (round trips, pushed
 * 2.5 s delays, a broker down for 1.5 s). Checks: no PUBACK for an id its
 * connection has not outstanding, and every acknowledged (id, seq) is in
 * Kafka when the topic is read back.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "abuse.h"
#include "itkafka.h"

#define STORM_WIN 16
#define PID_RANGE 1024
#define MAX_CONNS 4096

struct sconn {
	int fd;
	int cl;                  /* client index */
	uint32_t gen;
	bool ready, quitting;
	uint16_t base, next;     /* packet ids: base .. base + PID_RANGE - 1 */
	int nout;
	uint16_t out_pid[STORM_WIN];
	uint32_t out_seq[STORM_WIN];
	struct buf in, ob;
};

struct sclient {
	char id[40];
	bool clean;
	uint32_t seq, gens;
	int64_t next_new;
	int last;                /* slot of the newest connection, -1 */
	uint8_t *acked;          /* by seq */
	size_t cap;
};

struct storm {
	const struct ab_opts *o;
	int ep;
	struct sconn *c[MAX_CONNS];
	struct sclient *cl;
	int ncl;
	uint64_t opened, connack_bad, by_gw, self_closed, published, acked, wrong, unordered;
	char first_wrong[160];
	uint8_t scratch[65536];
};

static uint32_t rnd(void)
{
	static uint32_t x = 2463534242u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

static void mark_acked(struct sclient *k, uint32_t seq)
{
	if (seq >= k->cap) {
		size_t cap = k->cap ? k->cap : 4096;
		while (cap <= seq)
			cap *= 2;
		uint8_t *a = realloc(k->acked, cap);
		if (!a)
			return;
		memset(a + k->cap, 0, cap - k->cap);
		k->acked = a;
		k->cap = cap;
	}
	k->acked[seq] = 1;
}

static void sc_free(struct storm *s, int slot, bool by_gw)
{
	struct sconn *c = s->c[slot];

	if (!c)
		return;
	if (by_gw)
		s->by_gw++;
	else
		s->self_closed++;
	if (s->cl[c->cl].last == slot)
		s->cl[c->cl].last = -1;
	close(c->fd);
	buf_release(&c->in);
	buf_release(&c->ob);
	free(c);
	s->c[slot] = NULL;
}

static void sc_flush(struct storm *s, int slot)
{
	struct sconn *c = s->c[slot];
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)slot };

	while (buf_used(&c->ob) > 0) {
		ssize_t n = send(c->fd, buf_head(&c->ob), buf_used(&c->ob), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN) {
				ev.events |= EPOLLOUT;
				break;
			}
			sc_free(s, slot, true);
			return;
		}
		buf_consume(&c->ob, (size_t)n);
	}
	epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void sc_open(struct storm *s, int ci)
{
	struct sclient *k = &s->cl[ci];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->o->port) };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	int slot = -1, one = 1;

	for (int i = 0; i < MAX_CONNS && slot < 0; i++)
		if (!s->c[i])
			slot = i;
	if (slot < 0)
		return;
	struct sconn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->cl = ci;
	c->gen = k->gens++;
	c->base = (uint16_t)((c->gen % 63) * PID_RANGE + 1);
	c->next = c->base;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, s->o->host, &sa.sin_addr);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		close(c->fd);
		free(c);
		return;
	}
	s->c[slot] = c;
	k->last = slot;
	s->opened++;
	ab_enc_connect(&c->ob, k->id, k->clean, 0);
	ev.data.u32 = (uint32_t)slot;
	epoll_ctl(s->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void sc_publish(struct storm *s, int slot)
{
	struct sconn *c = s->c[slot];
	struct sclient *k = &s->cl[c->cl];
	char topic[64], payload[128];

	if (!c->ready || c->quitting || buf_used(&c->ob) > 0)
		return;
	snprintf(topic, sizeof(topic), "storm/%s", k->id);
	while (c->nout < STORM_WIN) {
		uint16_t pid = c->next;
		uint32_t seq = k->seq++;
		c->next = (uint16_t)(c->next + 1 == c->base + PID_RANGE ? c->base : c->next + 1);
		snprintf(payload, sizeof(payload), "id=%d seq=%u gen=%u pid=%u", c->cl, seq, c->gen,
			 pid);
		ab_enc_publish(&c->ob, topic, payload, strlen(payload), 1, false, pid);
		c->out_pid[c->nout] = pid;
		c->out_seq[c->nout++] = seq;
		s->published++;
	}
	sc_flush(s, slot);
}

static void sc_puback(struct storm *s, struct sconn *c, uint16_t pid)
{
	for (int i = 0; i < c->nout; i++) {
		if (c->out_pid[i] != pid)
			continue;
		if (i != 0)
			s->unordered++;
		mark_acked(&s->cl[c->cl], c->out_seq[i]);
		s->acked++;
		memmove(c->out_pid + i, c->out_pid + i + 1, (size_t)(c->nout - i - 1) * 2);
		memmove(c->out_seq + i, c->out_seq + i + 1, (size_t)(c->nout - i - 1) * 4);
		c->nout--;
		return;
	}
	if (s->wrong++ == 0)
		snprintf(s->first_wrong, sizeof(s->first_wrong),
			 "PUBACK %u on %s gen %u (ids %u..%u, %d outstanding)", pid,
			 s->cl[c->cl].id, c->gen, c->base, c->base + PID_RANGE - 1, c->nout);
}

static void sc_read(struct storm *s, int slot)
{
	struct sconn *c = s->c[slot];

	for (;;) {
		ssize_t n = recv(c->fd, s->scratch, sizeof(s->scratch), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			sc_free(s, slot, !c->quitting);
			return;
		}
		if (n < 0)
			break;
		buf_append(&c->in, s->scratch, (size_t)n);
	}
	for (;;) {
		struct mqtt_frame f;
		int r = mqtt_frame_parse(buf_head(&c->in), buf_used(&c->in), 1 << 20, &f);
		if (r <= 0)
			break;
		if (f.type == MQTT_CONNACK) {
			if (f.body_len >= 2 && f.body[1] == 0)
				c->ready = true;
			else
				s->connack_bad++;
		} else if (f.type == MQTT_PUBACK && f.body_len >= 2) {
			sc_puback(s, c, (uint16_t)(f.body[0] << 8 | f.body[1]));
		}
		buf_consume(&c->in, (size_t)r);
	}
}

/* A DISCONNECT, and the connection is ours to close once it is written. */
static void sc_quit(struct storm *s, int slot)
{
	struct sconn *c = s->c[slot];

	c->quitting = true;
	mqtt_encode_simple(&c->ob, 4, MQTT_DISCONNECT);
	sc_flush(s, slot);
	if (s->c[slot])
		sc_free(s, slot, false);
}

static void faults(const struct ab_opts *o, int64_t t, int64_t *next, int dur_ms, int *phase)
{
	if (!o->mock_ctl)
		return;
	if (*phase == 0) {
		ab_mock_cmd(o, "rtt 2 200");
		ab_mock_cmd(o, "rtt 3 700");
		*phase = 1;
	}
	if (t >= *next) {
		ab_mock_cmd(o, "delay %d 10 2500", (int)(t / 1000) % 2 ? 2 : 3);
		*next = t + 1000;
	}
	if (*phase == 1 && t >= dur_ms / 2) {
		ab_mock_cmd(o, "down 3");
		*phase = 2;
	}
	if (*phase == 2 && t >= dur_ms / 2 + 1500) {
		ab_mock_cmd(o, "up 3");
		*phase = 3;
	}
}

/* Reads "storm" back: fills the number of acknowledged records missing. */
static int read_back(const struct storm *s, long *records, long *missing, long *dups)
{
	long dup_part[4] = { 0 };
	long n = itkafka_count(s->o->bootstrap, "storm", 15000);
	struct itkafka_rec *r;
	uint8_t **seen;
	int got;

	*records = *missing = *dups = 0;
	if (n < 0)
		return -1;
	if (!(r = calloc((size_t)n + 1, sizeof(*r))) || !(seen = calloc((size_t)s->ncl, sizeof(*seen))))
		return -1;
	got = itkafka_read(s->o->bootstrap, "storm", (int)n, 60000, r);
	*records = got;
	for (int i = 0; i < s->ncl; i++)
		seen[i] = calloc(s->cl[i].seq + 1, 1);
	for (int i = 0; i < got; i++) {
		int id;
		unsigned seq;
		char key[40];
		/* Records of an earlier run against the same cluster carry
		 * another key (the ids hold this driver's pid). */
		if (sscanf(r[i].val, "id=%d seq=%u", &id, &seq) != 2 || id < 0 || id >= s->ncl ||
		    seq > s->cl[id].seq || !r[i].key)
			continue;
		snprintf(key, sizeof(key), "%s", s->cl[id].id);
		if (strcmp(r[i].key, key) != 0)
			continue;
		*dups += seen[id][seq];
		if (seen[id][seq] && r[i].partition >= 0 && r[i].partition < 4)
			dup_part[r[i].partition]++;
		seen[id][seq] = 1;
	}
	for (int i = 0; i < s->ncl; i++) {
		for (uint32_t q = 0; q < s->cl[i].cap && q < s->cl[i].seq; q++)
			if (s->cl[i].acked[q] && !seen[i][q]) {
				if (*missing == 0)
					ab_say("  first missing: %s seq %u", s->cl[i].id, q);
				(*missing)++;
			}
		free(seen[i]);
	}
	free(seen);
	if (*dups)
		ab_say("  duplicates by partition (leaders 2, 3, 2, 3): %ld %ld %ld %ld", dup_part[0],
		       dup_part[1], dup_part[2], dup_part[3]);
	itkafka_recs_free(r, got > 0 ? got : 0);
	free(r);
	return 0;
}

static void storm_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)full;
	(void)nofile;
	snprintf(out, cap, "max_inflight = 32; max_connect_rate = 0;");
}

static int storm_run(const struct ab_opts *o, struct ab_result *r)
{
	struct storm *s = calloc(1, sizeof(*s));
	int dur = o->full ? 30000 : 8000, phase = 0;
	int64_t t0, next_fault = 0;
	long records, missing, dups;
	struct epoll_event evs[256];

	if (!s)
		return ab_fail(r, "out of memory");
	s->o = o;
	s->ncl = o->full ? 40 : 10;
	snprintf(r->params, sizeof(r->params),
		 "%d client ids reconnecting every 0.2-1.2 s for %d s, %d QoS 1 in flight each; "
		 "Kafka answers 0.2-2.5 s late, a broker down 1.5 s", s->ncl, dur / 1000, STORM_WIN);
	if (!o->bootstrap) {
		r->verdict = AB_SKIP;
		snprintf(r->reason, sizeof(r->reason), "needs --bootstrap (and --mock-ctl)");
		free(s);
		return 0;
	}
	s->cl = calloc((size_t)s->ncl, sizeof(*s->cl));
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < s->ncl; i++) {
		snprintf(s->cl[i].id, sizeof(s->cl[i].id), "st%d-%d", (int)getpid(), i);
		s->cl[i].clean = i % 2 == 0;
		s->cl[i].last = -1;
	}
	t0 = ab_now_ms();
	for (int64_t now = t0; now - t0 < dur; now = ab_now_ms()) {
		faults(o, now - t0, &next_fault, dur, &phase);
		for (int i = 0; i < s->ncl; i++) {
			struct sclient *k = &s->cl[i];
			if (now < k->next_new)
				continue;
			if (k->last >= 0 && rnd() % 4 == 0)
				sc_quit(s, k->last);
			sc_open(s, i);
			k->next_new = now + 200 + rnd() % 1000;
		}
		int n = epoll_wait(s->ep, evs, 256, 5);
		for (int i = 0; i < n; i++) {
			int slot = (int)evs[i].data.u32;
			if (!s->c[slot])
				continue;
			if (evs[i].events & EPOLLOUT)
				sc_flush(s, slot);
			if (s->c[slot] && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				sc_read(s, slot);
		}
		for (int i = 0; i < MAX_CONNS; i++)
			if (s->c[i])
				sc_publish(s, i);
	}
	if (o->mock_ctl) {
		ab_mock_cmd(o, "up -1");
		ab_mock_cmd(o, "rtt -1 0");
	}
	/* Let what is in flight be answered, then hang up. */
	for (int64_t end = ab_now_ms() + 10000; ab_now_ms() < end;) {
		int out = 0;
		for (int i = 0; i < MAX_CONNS; i++)
			if (s->c[i])
				out += s->c[i]->nout;
		if (out == 0)
			break;
		int n = epoll_wait(s->ep, evs, 256, 20);
		for (int i = 0; i < n; i++) {
			int slot = (int)evs[i].data.u32;
			if (s->c[slot] && (evs[i].events & EPOLLOUT))
				sc_flush(s, slot);
			if (s->c[slot] && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				sc_read(s, slot);
		}
	}
	for (int i = 0; i < MAX_CONNS; i++)
		if (s->c[i])
			sc_quit(s, i);
	ab_sleep_ms(1000);
	if (read_back(s, &records, &missing, &dups) < 0)
		ab_fail(r, "could not read topic storm back");
	ab_say("  connections %llu (closed by the gateway %llu, by us %llu), CONNACK != 0 %llu; "
	       "published %llu, acked %llu; PUBACKs out of order %llu; wrong PUBACKs %llu",
	       (unsigned long long)s->opened, (unsigned long long)s->by_gw,
	       (unsigned long long)s->self_closed, (unsigned long long)s->connack_bad,
	       (unsigned long long)s->published, (unsigned long long)s->acked,
	       (unsigned long long)s->unordered, (unsigned long long)s->wrong);
	ab_say("  kafka: %ld records of this run, %ld acknowledged missing, %ld duplicated", records,
	       missing, dups);
	if (s->wrong)
		ab_fail(r, "%llu PUBACKs for ids their connection had not outstanding (first: %s)",
			(unsigned long long)s->wrong, s->first_wrong);
	if (missing)
		ab_fail(r, "%ld acknowledged publishes missing from Kafka", missing);
	if (s->acked == 0)
		ab_fail(r, "nothing acknowledged");
	if (s->connack_bad)
		ab_fail(r, "%llu CONNACKs refused", (unsigned long long)s->connack_bad);
	if (r->verdict == AB_PASS)
		ab_note(r, "%llu connections (%llu taken over or closed by the gateway), %llu acked, all "
			   "in Kafka (%ld records, %ld duplicates); no PUBACK on a wrong connection; "
			   "%llu out of order",
			(unsigned long long)s->opened, (unsigned long long)s->by_gw,
			(unsigned long long)s->acked, records, dups,
			(unsigned long long)s->unordered);
	for (int i = 0; i < s->ncl; i++)
		free(s->cl[i].acked);
	free(s->cl);
	close(s->ep);
	free(s);
	return 0;
}

const struct ab_case ab_storm_cases[] = {
	{ "takeover-storm", storm_limits, storm_run, LEGIT_CYCLE, false },
	{ NULL },
};
