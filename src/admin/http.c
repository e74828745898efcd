/* http.c - the admin HTTP endpoint; see http.h. The bearer token itself
 * (reading it, checking a request) is in http_auth.c. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "admin/http.h"
#include "admin/http_int.h"
#include "core/cfg.h"
#include "core/http_parse.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/net.h"
#include "core/util.h"

#define HTTP_TICK_MS 250
#define HTTP_LINGER_MS 1000
#define ACCEPTS_PER_EVENT 16

/* In the order connections are closed to make room for a newcomer: one
 * still sending its head first (a slowloris, or an idle socket), then one
 * already answered, last one being answered. */
enum hconn_state {
	HC_READ,    /* reading the request head */
	HC_LINGER,  /* sent and shut down for writing: draining what the peer still sends */
	HC_WRITE,   /* sending the response */
	HC_CLOSED,  /* socket closed, on hs->closed until the loop's next turn */
};

struct hconn {
	struct loop_io io;
	struct http_server *hs;
	TAILQ_ENTRY(hconn) link;     /* hs->conns (oldest first) or hs->closed */
	enum hconn_state state;
	int64_t deadline_ms;
	uint8_t addr[16];            /* per-address limit key: see addr_key() */
	char peer[64];
	size_t in_len;
	char in[HTTP_MAX_HEAD];
	struct buf out;
};

TAILQ_HEAD(hconn_list, hconn);

struct http_server {
	struct http_route_env env;
	struct loop *loop;
	struct loop_io lis;
	struct loop_io wake;         /* eventfd: http_server_free() stops the loop */
	pthread_t thread;
	bool started;
	struct hconn_list conns;
	int n_conns;
	/* Closed during this turn of the loop, freed before the next: an event
	 * for one of them may still wait in the current batch. */
	struct hconn_list closed;
	int port;
	struct http_auth *auth;      /* in force; the admin thread's once it runs */
	/* A newer one from http_server_reload(), not yet taken. Both sides
	 * swap it with atomic_exchange, so each pointer has one owner: what
	 * the admin thread takes is its own, what the main thread gets back
	 * was never seen by the admin thread and is freed there. */
	_Atomic(struct http_auth *) auth_next;
};

/* ---- the token ------------------------------------------------------------ */

/* The auth for a request whose head just completed. Admin thread. */
static const struct http_auth *auth_current(struct http_server *hs)
{
	struct http_auth *a = atomic_exchange(&hs->auth_next, NULL);

	if (a) {
		http_auth_free(hs->auth);
		hs->auth = a;
	}
	return hs->auth;
}

int http_server_check(const struct cfg *cfg, char *err, size_t errlen)
{
	struct http_auth *a;

	if (!cfg->has_metrics)
		return 0;
	if (!(a = http_auth_load(cfg, err, errlen)))
		return -1;
	http_auth_free(a);
	return 0;
}

int http_server_reload(struct http_server *hs, const struct cfg *cfg, char *err, size_t errlen)
{
	struct http_auth *a;

	if (!cfg->has_metrics)
		return 0;
	if (!(a = http_auth_load(cfg, err, errlen)))
		return -1;
	http_auth_free(atomic_exchange(&hs->auth_next, a));
	return 0;
}

/* ---- connections ----------------------------------------------------------- */

/* The per-address limit's key: an IPv4 address (as ::ffff:a.b.c.d) whole,
 * an IPv6 one cut to its /64, the block one host usually has to itself. */
static void addr_key(const struct net_peer *np, uint8_t key[16])
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };

	memcpy(key, np->ip, 16);
	if (memcmp(key, v4mapped, sizeof(v4mapped)) != 0)
		memset(key + 8, 0, 8);
}

/* Closes the socket at once (which frees the connection's slot) and queues
 * c to be freed by conns_reap(): any connection may be closed from any
 * callback, to make room or at a deadline, while an event for it is still
 * pending in the loop's batch. */
static void conn_close(struct hconn *c)
{
	struct http_server *hs = c->hs;

	loop_io_del(hs->loop, &c->io);
	close(c->io.fd);
	c->io.fd = -1;
	c->state = HC_CLOSED;
	TAILQ_REMOVE(&hs->conns, c, link);
	TAILQ_INSERT_TAIL(&hs->closed, c, link);
	hs->n_conns--;
}

/* Before the loop waits again: no event names a closed connection now. */
static void conns_reap(void *ud)
{
	struct http_server *hs = ud;
	struct hconn *c;

	while ((c = TAILQ_FIRST(&hs->closed))) {
		TAILQ_REMOVE(&hs->closed, c, link);
		buf_release(&c->out);
		free(c);
	}
}

/* Writes what the socket takes; once all is out, half-closes and lingers so
 * that unread request bytes do not turn our close into a reset that could
 * destroy the response before the client read it. */
static void conn_flush(struct hconn *c)
{
	while (buf_used(&c->out) > 0) {
		ssize_t n = send(c->io.fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			loop_io_mod(c->hs->loop, &c->io, EPOLLOUT);
			return;
		}
		if (n <= 0) {
			conn_close(c);
			return;
		}
		buf_consume(&c->out, (size_t)n);
	}
	shutdown(c->io.fd, SHUT_WR);
	c->state = HC_LINGER;
	c->deadline_ms = util_now_ms() + HTTP_LINGER_MS;
	loop_io_mod(c->hs->loop, &c->io, EPOLLIN);
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

void http_respond(struct hconn *c, int status, const char *ctype, const char *body, size_t len,
		  bool head_only)
{
	char h[512];
	int n = snprintf(h, sizeof(h),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
			 status, reason_phrase(status), ctype, len,
			 status == 405 ? "Allow: GET, HEAD\r\n" :
			 status == 401 ? "WWW-Authenticate: Bearer\r\n" : "");

	log_debug("http response status=%d addr=%s bytes=%zu", status, c->peer, len);
	buf_reset(&c->out);
	if (buf_append(&c->out, h, (size_t)n) < 0 ||
	    (!head_only && len > 0 && buf_append(&c->out, body, len) < 0)) {
		conn_close(c);
		return;
	}
	c->state = HC_WRITE;
	c->deadline_ms = util_now_ms() + HTTP_WRITE_TIMEOUT_MS;
	conn_flush(c);
}

const char *http_peer(const struct hconn *c) { return c->peer; }

void http_respond_text(struct hconn *c, int status, const char *text, bool head_only)
{
	http_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

static void conn_read(struct hconn *c)
{
	for (;;) {
		if (c->state == HC_LINGER) {
			char sink[4096];
			ssize_t n = read(c->io.fd, sink, sizeof(sink));
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return;
			if (n <= 0) {
				conn_close(c);
				return;
			}
			continue;
		}
		if (c->in_len == sizeof(c->in)) {
			http_respond_text(c, 431, "request head too large\n", false);
			return;
		}
		ssize_t n = read(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* The peer left before a whole head: nobody to answer. */
			conn_close(c);
			return;
		}
		c->in_len += (size_t)n;
		struct http_request req;
		int r = http_parse_request(c->in, c->in_len, &req);
		if (r < 0) {
			log_debug("http malformed request addr=%s", c->peer);
			http_respond_text(c, 400, "malformed request\n", false);
			return;
		}
		if (r > 0) {
			log_debug("http request addr=%s method=%s path=%s", c->peer,
				  log_qn(req.method, req.method_len), log_qn(req.path, req.path_len));
			http_route_serve(c, &c->hs->env, auth_current(c->hs), &req);
			return;
		}
	}
}

static void on_conn(struct loop_io *io, uint32_t revents)
{
	struct hconn *c = container_of(io, struct hconn, io);

	if (c->state == HC_CLOSED)
		return;
	if (c->state == HC_WRITE) {
		if (revents & (EPOLLERR | EPOLLHUP) && !(revents & EPOLLOUT))
			conn_close(c);
		else
			conn_flush(c);
		return;
	}
	conn_read(c);
}

/* Connections from addr (from anyone when addr is NULL): how many, and in
 * *victim the one to close for a newcomer, the oldest in the first state
 * of enum hconn_state. */
static int conn_count(struct http_server *hs, const uint8_t *addr, struct hconn **victim)
{
	struct hconn *c;
	int n = 0;

	*victim = NULL;
	TAILQ_FOREACH(c, &hs->conns, link) {
		if (addr && memcmp(c->addr, addr, sizeof(c->addr)) != 0)
			continue;
		n++;
		if (!*victim || c->state < (*victim)->state)
			*victim = c;
	}
	return n;
}

/* Makes room for a newcomer from addr (peer), closing one connection when
 * its address or the server is full: a probe always gets in, and whoever
 * holds sockets open without asking anything loses them first. */
static void make_room(struct http_server *hs, const uint8_t *addr, const char *peer)
{
	static const char *const state_name[] = { "reading", "lingering", "writing", "closed" };
	struct hconn *v;
	const char *why = "per-address limit";

	if (conn_count(hs, addr, &v) < HTTP_MAX_CONNS_PER_ADDR) {
		why = "connection limit";
		if (hs->n_conns < HTTP_MAX_CONNS || !conn_count(hs, NULL, &v))
			return;
	}
	log_warn_rl("http conn evicted addr=%s state=%s reason=\"%s\" newcomer=%s", v->peer,
		    state_name[v->state], why, peer);
	conn_close(v);
}

static void on_accept(struct loop_io *io, uint32_t revents)
{
	struct http_server *hs = container_of(io, struct http_server, lis);
	struct net_peer np;
	uint8_t addr[16];
	(void)revents;

	for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
		int fd = net_accept(io->fd, &np);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn_errno_rl("http accept failed");
			return;
		}
		addr_key(&np, addr);
		make_room(hs, addr, np.str);
		struct hconn *c = calloc(1, sizeof(*c));
		if (!c) {
			log_warn_rl("http conn rejected addr=%s reason=\"out of memory\"", np.str);
			close(fd);
			continue;
		}
		c->io.fd = fd;
		c->io.fn = on_conn;
		c->hs = hs;
		c->state = HC_READ;
		c->deadline_ms = util_now_ms() + HTTP_HEAD_TIMEOUT_MS;
		memcpy(c->addr, addr, sizeof(c->addr));
		snprintf(c->peer, sizeof(c->peer), "%s", np.str);
		TAILQ_INSERT_TAIL(&hs->conns, c, link);
		hs->n_conns++;
		if (loop_io_add(hs->loop, &c->io, EPOLLIN) < 0)
			conn_close(c);
	}
}

static void on_tick(void *ud)
{
	struct http_server *hs = ud;
	int64_t now = util_now_ms();
	struct hconn *c, *next;

	for (c = TAILQ_FIRST(&hs->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (now >= c->deadline_ms) {
			if (c->state == HC_READ)
				log_debug("http request timed out addr=%s", c->peer);
			conn_close(c);
		}
	}
}

static void on_wake(struct loop_io *io, uint32_t revents)
{
	struct http_server *hs = container_of(io, struct http_server, wake);
	uint64_t v;
	(void)revents;

	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn_errno("http wake read failed");
	loop_stop(hs->loop);
}

/* ---- the server -------------------------------------------------------------- */

struct http_server *http_server_new(const struct cfg *cfg, struct broker *br, struct uplink *up,
				    char *err, size_t errlen)
{
	const char *addr = cfg->metrics.address;
	int port = cfg->metrics.port;
	struct http_server *hs = calloc(1, sizeof(*hs));

	if (!hs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&hs->conns);
	TAILQ_INIT(&hs->closed);
	atomic_init(&hs->auth_next, NULL);
	hs->env.br = br;
	hs->env.up = up;
	hs->lis.fd = hs->wake.fd = -1;
	hs->env.start_wall_ms = util_wall_ms();
	hs->env.start_mono_ms = util_now_ms();
	if (!(hs->auth = http_auth_load(cfg, err, errlen)))
		goto fail;
	if (!(hs->loop = loop_new())) {
		snprintf(err, errlen, "event loop: %s", strerror(errno));
		goto fail;
	}
	/* A backlog that a burst of slow or hostile connections cannot fill
	 * while the admin thread is busy closing them: a probe whose SYN is
	 * dropped waits for its retransmission (1 s), which is a failed probe
	 * (it_admin: test_slow_clients_do_not_starve_probes, 200 connections
	 * at once; 64 was too few). The kernel caps it at somaxconn. */
	if ((hs->lis.fd = net_listen(addr, port, false, 1024)) < 0) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", addr, port, strerror(errno));
		goto fail;
	}
	if ((hs->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	hs->lis.fn = on_accept;
	hs->wake.fn = on_wake;
	if (loop_io_add(hs->loop, &hs->lis, EPOLLIN) < 0 ||
	    loop_io_add(hs->loop, &hs->wake, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		goto fail;
	}
	loop_set_tick(hs->loop, HTTP_TICK_MS, on_tick, hs);
	loop_set_before_sleep(hs->loop, conns_reap, hs);
	hs->port = net_local_port(hs->lis.fd);
	return hs;
fail:
	http_server_free(hs);
	return NULL;
}

void http_server_set_hooks(struct http_server *hs, const struct metrics_hook *mh,
			   const struct status_hook *sh)
{
	if (mh && hs->env.n_mh < HTTP_METRICS_HOOKS)
		hs->env.mh[hs->env.n_mh++] = *mh;
	if (sh)
		hs->env.sh = *sh;
}

void http_server_set_state(struct http_server *hs, struct state *st) { hs->env.st = st; }

static void *http_main(void *arg)
{
	struct http_server *hs = arg;

	log_set_thread("http");
	loop_run(hs->loop);
	return NULL;
}

int http_server_start(struct http_server *hs)
{
	int e = pthread_create(&hs->thread, NULL, http_main, hs);
	if (e != 0) {
		log_error("http thread not started err=\"%s\"", strerror(e));
		return -1;
	}
	hs->started = true;
	return 0;
}

int http_server_port(const struct http_server *hs) { return hs->port; }

void http_server_free(struct http_server *hs)
{
	struct hconn *c;

	if (!hs)
		return;
	if (hs->started) {
		uint64_t one = 1;
		if (write(hs->wake.fd, &one, sizeof(one)) < 0)
			log_warn_errno("http wake write failed");
		pthread_join(hs->thread, NULL);
	}
	while ((c = TAILQ_FIRST(&hs->conns)))
		conn_close(c);
	conns_reap(hs);
	if (hs->lis.fd >= 0)
		close(hs->lis.fd);
	if (hs->wake.fd >= 0)
		close(hs->wake.fd);
	loop_free(hs->loop);
	http_auth_free(hs->auth);
	http_auth_free(atomic_exchange(&hs->auth_next, NULL));
	free(hs);
}
