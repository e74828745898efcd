/* worker.c - one network thread; see worker.h. */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/auth_connect.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/deliver.h"
#include "broker/handle_publish.h"
#include "broker/listener.h"
#include "broker/session.h"
#include "broker/state_hooks.h"
#include "broker/takeover.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/net.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"

#define WORKER_RBUF (64 * 1024)
#define WORKER_TICK_MS 250
#define ACCEPTS_PER_EVENT 64
#define ACCEPT_PAUSE_MS 100  /* out of descriptors, nothing to shed with */
/* Descriptors kept free for everything but client connections (librdkafka's
 * sockets, the admin endpoint, files read on reload, the spare). */
#define FD_RESERVE 64

/* Accepted descriptors at or above the ceiling are shed: RLIMIT_NOFILE
 * (read again each time: it may have been raised) minus the reserve. */
static void set_fd_ceiling(struct worker *w)
{
	struct rlimit rl;

	w->fd_ceiling = INT32_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur > 2 * FD_RESERVE)
		w->fd_ceiling = (int)rl.rlim_cur - FD_RESERVE;
}

/* Out of descriptors with nothing to shed: listeners off for a moment. */
static void pause_accepting(struct worker *w)
{
	for (int i = 0; i < w->n_lis; i++)
		loop_io_mod(w->loop, &w->lis[i].io, 0);
	w->accept_paused_until = w->now_ms + ACCEPT_PAUSE_MS;
}

/* Tick: listen again after a pause, with a spare descriptor if one can be
 * had again. */
static void resume_accepting(struct worker *w)
{
	if (w->accept_paused_until == 0 || w->now_ms < w->accept_paused_until)
		return;
	if (w->spare_fd < 0)
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	set_fd_ceiling(w);
	w->accept_paused_until = 0;
	if (!w->draining)
		for (int i = 0; i < w->n_lis; i++)
			loop_io_mod(w->loop, &w->lis[i].io, EPOLLIN);
}

/* Out of file descriptors: the pending connection would keep the listener
 * readable forever. Give up the spare descriptor, accept and close at once,
 * and take the spare back. */
static void shed_one(struct worker *w, int lfd)
{
	bool shed = false;

	/* Another thread may take the descriptor freed here before it is
	 * opened again; then this worker stops accepting for a moment instead
	 * of spinning on a listener that stays readable. */
	if (w->spare_fd >= 0) {
		close(w->spare_fd);
		int fd = accept(lfd, NULL, NULL);
		if (fd >= 0) {
			close(fd);
			shed = true;
		}
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		set_fd_ceiling(w);
	}
	if (!shed || w->spare_fd < 0)
		pause_accepting(w);
	STAT_INC(w, conn_rejected);
	log_warn_rl("conn rejected reason=\"out of file descriptors\"");
}

static void reject(struct worker *w, struct broker_listener *bl, int fd, const struct net_peer *p,
		   const char *why)
{
	STAT_INC(w, conn_rejected);
	atomic_fetch_add_explicit(&bl->rejected, 1, memory_order_relaxed);
	log_warn_rl("conn rejected addr=%s listener=%s reason=\"%s\"", p->str, bl->name, why);
	close(fd);
}

static void on_accept(struct loop_io *io, uint32_t revents)
{
	struct listener_io *li = container_of(io, struct listener_io, io);
	struct worker *w = li->w;
	struct broker *br = w->br;
	struct broker_listener *bl = &br->lis[li->idx];
	struct net_peer p;
	bool counted;
	(void)revents;

	w->now_ms = util_now_ms();
	for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
		int fd = net_accept(io->fd, &p);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				shed_one(w, io->fd);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn_errno_rl("accept failed");
			return;
		}
		/* Descriptors are handed out lowest first: one this high means the
		 * process is nearly out. Shed it while the reserve above it is
		 * still there for Kafka, the admin endpoint and the spare. */
		if (fd >= w->fd_ceiling) {
			reject(w, bl, fd, &p, "out of file descriptors");
			continue;
		}
		const char *why = listener_admit(br, li->idx, &p, w->now_ms, &counted);
		if (why) {
			reject(w, bl, fd, &p, why);
			continue;
		}
		if (atomic_fetch_add(&br->n_connections, 1) >= (int)LIM(br, max_connections)) {
			atomic_fetch_sub(&br->n_connections, 1);
			if (counted)
				listener_release(p.ip);
			reject(w, bl, fd, &p, "max_connections reached");
			continue;
		}
		STAT_INC(w, conn_accepted);
		atomic_fetch_add_explicit(&bl->accepted, 1, memory_order_relaxed);
		if (!client_new(w, fd, li->idx, &p, counted)) {
			atomic_fetch_sub(&br->n_connections, 1);
			log_warn_rl("conn rejected addr=%s reason=\"out of memory\"", p.str);
		}
	}
}

static void handle_item(struct worker *w, struct inbox_item *it)
{
	switch (it->kind) {
	case INBOX_DELIVER:
		deliver_session(w, it->p1, it->p2, it->a, it->b != 0, it->c);
		session_unref(it->p1);
		msg_unref(it->p2);
		break;
	case INBOX_TAKEOVER:
		takeover_request(w, it->p1, it->a, it->u, it->b != 0);
		session_unref(it->p1);
		break;
	case INBOX_FENCE:
		takeover_fence(w, it->a, it->u);
		break;
	case INBOX_SETTLE:
		takeover_settle(w, it->p1);
		session_unref(it->p1);
		break;
	case INBOX_TAKEOVER_DONE:
		takeover_resume(w, it->u);
		break;
	case INBOX_INJECT:
		if (it->u) /* for one upstream only (broker_inject_upstream) */
			upstream_inject(w, (int)(it->u - 1), it->p1);
		else
			deliver_publish(w, it->p1);
		msg_track_done(it->p1); /* the injector's hold */
		msg_unref(it->p1);
		break;
	case INBOX_ACK: {
		if (!w->drained_ns)
			w->drained_ns = lathist_now();
		lathist_add(&w->st.ack_handoff, w->drained_ns > it->v ? w->drained_ns - it->v : 0, 1);
		w->acks_unflushed++;
		struct client *c = worker_client(w, it->u);
		if (c && c->state == CL_ACTIVE) {
			if (!it->a)
				STAT_INC(w, sink_failed);
			client_ack_complete(c, it->c, it->a != 0);
		}
		if (it->p1) {
			struct reclaim_node *n = it->p1;
			n->free(n);
		}
		break;
	}
	case INBOX_AUTH:
		auth_connect_verified(w, it->u, it->a);
		break;
	case INBOX_CLAIMED:
		hooks_claimed(w, it->u, it->a, it->p1); /* frees p1 */
		break;
	case INBOX_KICK:
		hooks_kick(w, it->p1, it->b, it->a != 0); /* frees p1 */
		break;
	case INBOX_SUBS_WRITTEN:
		hooks_subs_written(w, it->u, it->c, it->a != 0);
		break;
	case INBOX_INJECT_LOCAL:
		hooks_inject_local(w, it->p1, it->p2, it->b); /* takes p1, frees p2 */
		break;
	case INBOX_WILL:
		hooks_will(w, it->p1, it->p2, it->b);
		msg_unref(it->p1);
		free(it->p2);
		break;
	case INBOX_CALL: {
		void (*fn)(void *, struct worker *) = (void (*)(void *, struct worker *))it->p1;
		fn(it->p2, w);
		break;
	}
	case INBOX_STOP: {
		struct client *c;
		/* MQTT 5 clients are told why (DISCONNECT 0x8B). */
		LIST_FOREACH(c, &w->clients, link)
			client_close_rc(c, "shutting down", false, MQTT_RC_SERVER_SHUTTING_DOWN);
		loop_stop(w->loop);
		break;
	}
	}
}

static void on_inbox(struct loop_io *io, uint32_t revents)
{
	struct worker *w = container_of(io, struct worker, inbox.io);
	(void)revents;
	w->now_ms = util_now_ms();
	struct inbox_batch *b = inbox_drain(&w->inbox);
	w->drained_ns = 0;
	for (size_t i = 0; i < b->n; i++)
		handle_item(w, &b->items[i]);
	/* The sink's answers mean it has room again: one retry per drain, not
	 * one per answer (each is a sink call while it is still full). */
	if (w->drained_ns && !STAILQ_EMPTY(&w->blocked))
		handle_publish_retry(w);
}

static void on_tick(void *ud)
{
	struct worker *w = ud;
	struct broker *br = w->br;
	int64_t now = w->now_ms = util_now_ms();

	atomic_store_explicit(&w->heartbeat_ms, now, memory_order_relaxed);
	reclaim_drain(&w->reclaim);
	resume_accepting(w);
	takeover_expire(w);
	if (!STAILQ_EMPTY(&w->blocked))
		handle_publish_retry(w);
	auth_connect_tick(w);
	upstream_tick(w);
	int64_t connect_timeout = LIM(br, connect_timeout_ms);
	int64_t packet_timeout = LIM(br, packet_timeout_ms);

	struct client *c;
	LIST_FOREACH(c, &w->clients, link) {
		/* An idle connection keeps no output buffer (memory per
		 * connection); a busy one reuses its buffer between ticks. */
		if (c->obuf.cap > 0 && buf_used(&c->obuf) == 0 && now - c->last_tx_ms > 1000)
			buf_release(&c->obuf);
		if (c->subwait && hooks_subs_overdue(c, now))
			hooks_subs_timeout(c); /* answers it: c reads again (or closed) */
		if (c->state == CL_WAIT_CLAIM && now - c->accepted_ms > connect_timeout) {
			/* The state layer did not answer in time: the same as its
			 * "unavailable" (CONNACK 3 / 0x88). */
			hooks_claim_timeout(c);
		} else if ((c->state == CL_NEW || c->state == CL_WAIT_AUTH) &&
		    now - c->accepted_ms > connect_timeout) {
			/* The TLS and WebSocket handshakes count here too, and so
			 * does the password check. */
			client_close(c, "no CONNECT in time", false);
		} else if (c->partial_since_ms && !c->read_paused && packet_timeout > 0 &&
			   now - c->partial_since_ms > packet_timeout) {
			/* A started packet must arrive whole in time, keepalive or not:
			 * one byte per period would otherwise hold its buffer forever. */
			STAT_INC(w, packet_timeouts);
			client_close(c, "packet_timeout: a packet took too long to arrive", true);
		} else if (c->state == CL_ACTIVE && c->read_paused && (client_held(c) || c->subwait)) {
			/* We stopped reading it (Kafka busy, ack window full, a
			 * SUBACK waiting for Kafka): its PINGREQs wait unread, so its
			 * silence is ours, not its own. */
			c->last_rx_ms = now;
		} else if (c->state == CL_ACTIVE && c->keepalive > 0 &&
			   now - c->last_rx_ms > (int64_t)c->keepalive * 1500) {
			/* MQTT-3.1.2-24: one and a half keepalive periods of silence;
			 * MQTT 5 clients get DISCONNECT 0x8D (5.0 3.1.2.10). */
			client_close_rc(c, "keepalive timeout", true, MQTT_RC_KEEPALIVE_TIMEOUT);
		}
	}
}

/* Resumes paused publishers once every peer inbox is back under half the cap. */
static void worker_check_backlog(struct worker *w)
{
	struct client *c;

	if (SLIST_EMPTY(&w->backlog))
		return;
	for (int i = 0; i < w->br->n_workers; i++)
		if (inbox_depth(&w->br->workers[i].inbox) > INBOX_SOFT_CAP / 2)
			return;
	w->backlogged = false;
	while ((c = SLIST_FIRST(&w->backlog))) {
		SLIST_REMOVE_HEAD(&w->backlog, backlog_link);
		c->backlog_paused = false;
		client_update_read(c);
	}
}

/* The safe point: flush what the iteration produced, then free the closed.
 * Each list is taken whole before it is walked: the walk may add to it. */
static void before_sleep(void *ud)
{
	struct worker *w = ud;
	struct client_slist l;
	struct client *c;

	worker_check_backlog(w);
	reclaim_drain(&w->reclaim);
	while (!SLIST_EMPTY(&w->dirty) || !SLIST_EMPTY(&w->closing) || !SLIST_EMPTY(&w->resume)) {
		l = w->resume;
		SLIST_INIT(&w->resume);
		while ((c = SLIST_FIRST(&l))) {
			SLIST_REMOVE_HEAD(&l, resume_link);
			c->resume = false;
			if (!c->read_paused)
				client_process_pending(c);
		}
		l = w->dirty;
		SLIST_INIT(&w->dirty);
		while ((c = SLIST_FIRST(&l))) {
			SLIST_REMOVE_HEAD(&l, dirty_link);
			c->dirty = false;
			client_flush(c);
		}
		l = w->closing;
		SLIST_INIT(&w->closing);
		while ((c = SLIST_FIRST(&l))) {
			SLIST_REMOVE_HEAD(&l, closing_link);
			client_finish(c); /* may publish a will: more dirty clients */
		}
	}
	if (w->acks_unflushed) {
		lathist_add(&w->st.ack_write, lathist_now() - w->drained_ns, w->acks_unflushed);
		w->acks_unflushed = 0;
	}
}

int worker_slot_add(struct worker *w, struct client *c)
{
	uint32_t slot;
	if (w->n_free_slots > 0) {
		slot = w->free_slots[--w->n_free_slots];
	} else {
		if (w->n_slots == w->cap_slots) {
			uint32_t cap = w->cap_slots ? w->cap_slots * 2 : 256;
			if (cap > (1u << 24))
				return -1;
			struct client **n = realloc(w->slots, cap * sizeof(*n));
			uint32_t *f = realloc(w->free_slots, cap * sizeof(*f));
			if (n)
				w->slots = n;
			if (f)
				w->free_slots = f;
			if (!n || !f)
				return -1;
			w->cap_slots = cap;
		}
		slot = w->n_slots++;
	}
	w->slots[slot] = c;
	c->conn_id = ((uint64_t)w->idx << 56) | ((uint64_t)++w->conn_seq << 24) | slot;
	return 0;
}

void worker_slot_del(struct worker *w, struct client *c)
{
	uint32_t slot = (uint32_t)(c->conn_id & 0xffffff);
	w->slots[slot] = NULL;
	w->free_slots[w->n_free_slots++] = slot;
}

struct client *worker_client(struct worker *w, uint64_t conn_id)
{
	uint32_t slot = (uint32_t)(conn_id & 0xffffff);
	if (conn_worker(conn_id) != w->idx || slot >= w->n_slots)
		return NULL;
	struct client *c = w->slots[slot];
	return c && c->conn_id == conn_id ? c : NULL;
}

void worker_mark_resume(struct worker *w, struct client *c)
{
	if (c->resume)
		return;
	c->resume = true;
	SLIST_INSERT_HEAD(&w->resume, c, resume_link);
}

void worker_mark_dirty(struct worker *w, struct client *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	SLIST_INSERT_HEAD(&w->dirty, c, dirty_link);
}

void worker_mark_blocked(struct worker *w, struct client *c)
{
	if (c->blocked)
		return;
	c->blocked = true;
	STAILQ_INSERT_TAIL(&w->blocked, c, blocked_link);
}

void worker_mark_backlog(struct worker *w, struct client *c)
{
	if (c->backlog_paused)
		return;
	c->backlog_paused = true;
	SLIST_INSERT_HEAD(&w->backlog, c, backlog_link);
}

int worker_init(struct worker *w, struct broker *br, int idx,
		const char **addrs, const int *ports, int n_lis)
{
	memset(w, 0, sizeof(*w));
	LIST_INIT(&w->clients);
	SLIST_INIT(&w->dirty);
	SLIST_INIT(&w->closing);
	SLIST_INIT(&w->resume);
	SLIST_INIT(&w->backlog);
	STAILQ_INIT(&w->blocked);
	w->idx = idx;
	w->br = br;
	w->inbox.io.fd = -1;
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	set_fd_ceiling(w);
	w->loop = loop_new();
	w->rbuf_cap = WORKER_RBUF;
	w->rbuf = malloc(w->rbuf_cap);
	w->lis = calloc((size_t)(n_lis > 0 ? n_lis : 1), sizeof(*w->lis));
	if (!w->loop || !w->rbuf || !w->lis || inbox_init(&w->inbox) < 0) {
		log_error("worker init failed worker=%d reason=\"out of memory\"", idx);
		return -1;
	}
	w->inbox.io.fn = on_inbox;
	if (loop_io_add(w->loop, &w->inbox.io, EPOLLIN) < 0)
		return -1;
	for (int i = 0; i < n_lis; i++) {
		int fd = net_listen(addrs[i], ports[i], true, 1024);
		if (fd < 0) {
			log_error_errno("listen failed address=%s port=%d", addrs[i], ports[i]);
			return -1;
		}
		w->lis[i].w = w;
		w->lis[i].idx = i;
		w->lis[i].io.fd = fd;
		w->lis[i].io.fn = on_accept;
		w->n_lis++;
		if (loop_io_add(w->loop, &w->lis[i].io, EPOLLIN) < 0)
			return -1;
	}
	loop_set_tick(w->loop, WORKER_TICK_MS, on_tick, w);
	loop_set_before_sleep(w->loop, before_sleep, w);
	w->now_ms = util_now_ms();
	atomic_init(&w->heartbeat_ms, w->now_ms);
	return 0;
}

void worker_release(struct worker *w)
{
	/* Finish connections that were still open (a start-up failure). */
	struct client *c;
	LIST_FOREACH(c, &w->clients, link)
		client_close(c, "shutting down", false);
	while ((c = SLIST_FIRST(&w->closing))) {
		SLIST_REMOVE_HEAD(&w->closing, closing_link);
		client_finish(c);
	}
	if (w->inbox.io.fd >= 0) {
		struct inbox_batch *b = inbox_drain(&w->inbox);
		for (size_t i = 0; i < b->n; i++) {
			if (b->items[i].kind == INBOX_DELIVER) {
				session_unref(b->items[i].p1);
				msg_track_done(b->items[i].p2);
				msg_unref(b->items[i].p2);
			} else if (b->items[i].kind == INBOX_INJECT) {
				msg_track_done(b->items[i].p1);
				msg_unref(b->items[i].p1);
			} else if (b->items[i].kind == INBOX_TAKEOVER ||
				   b->items[i].kind == INBOX_SETTLE) {
				session_unref(b->items[i].p1);
			} else if (b->items[i].kind == INBOX_ACK && b->items[i].p1) {
				struct reclaim_node *n = b->items[i].p1;
				n->free(n);
			} else if (b->items[i].kind == INBOX_CLAIMED || b->items[i].kind == INBOX_KICK) {
				free(b->items[i].p1);
			} else if (b->items[i].kind == INBOX_WILL) {
				msg_unref(b->items[i].p1);
				free(b->items[i].p2);
			} else if (b->items[i].kind == INBOX_INJECT_LOCAL) {
				msg_track_done(b->items[i].p1);
				msg_unref(b->items[i].p1);
				free(b->items[i].p2);
			}
		}
	}
	reclaim_drain(&w->reclaim);
	for (int i = 0; i < w->n_lis; i++)
		close(w->lis[i].io.fd);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	free(w->lis);
	inbox_release(&w->inbox);
	loop_free(w->loop);
	free(w->rbuf);
	free(w->matches);
	free(w->slots);
	free(w->free_slots);
	hooks_worker_release(w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "w%d", w->idx);
	log_set_thread(name);
	if (loop_run(w->loop) < 0) {
		/* Nothing on this worker can make progress any more: say so, and
		 * let /readyz fail so that an orchestrator replaces the process. */
		log_error_errno("worker loop failed worker=%d", w->idx);
		atomic_store(&w->br->failed, true);
	}
	before_sleep(w); /* close what INBOX_STOP marked */
	return NULL;
}

int worker_start(struct worker *w)
{
	int r = pthread_create(&w->thread, NULL, worker_main, w);
	if (r != 0) {
		log_error("worker start failed worker=%d err=%d", w->idx, r);
		return -1;
	}
	return 0;
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

int worker_post(struct worker *w, const struct inbox_item *it)
{
	return inbox_post(&w->inbox, it);
}
