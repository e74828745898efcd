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
 * Each connection's transport and behaviour are in ab_sock.c.
 * BH_CONNECT_HOLD: a worker whose connections are all held or closed
 * writes 'H' on the status pipe and waits until the parent closes the
 * release pipe.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "ab_engine_int.h"

#define PER_PROC 15000
#define OPENS_PER_TURN 200
#define R ab_rec_of
#define S ab_spec_of

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
		ab_sock_finish(e, c, END_ERROR, errno);
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
		ab_sock_finish(e, c, END_CONNECT_ERR, errno);
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
			ab_sock_push(e, c, 1);
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
				ab_sock_event(e, c, evs[i].events);
		}
	}
out:
	for (size_t i = 0; i < e->n; i++)
		if (e->c[i].st != S_DONE && e->c[i].st != S_IDLE_NEW)
			ab_sock_finish(e, &e->c[i], e->c[i].st == S_HELD ? END_SELF : END_OPEN, 0);
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
			if (ab_sock_setup(e) < 0)
				_exit(1);
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

void ab_tally_say(const char *label, const struct ab_tally *t)
{
	ab_say("  %-22s n=%zu closed_by_gw=%zu self=%zu open=%zu conn_err=%zu err=%zu connack=%zu "
	       "life=%.2f..%.2f s after_send_max=%lld ms",
	       label, t->n, t->peer, t->self, t->open, t->conn_err, t->error, t->connack,
	       t->life_min / 1000.0, t->life_max / 1000.0, (long long)t->after_max);
}
