/* client.c - connection byte I/O, framing, output and delivery; see client.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/client.h"
#include "core/log.h"
#include "mqtt/mqtt_codec.h"
#include "core/msg.h"
#include "broker/session.h"
#include "core/util.h"
#include "broker/worker.h"

/* Reads per readiness event before yielding to other connections. */
#define READS_PER_EVENT 8
/* Output buffers larger than this are freed once empty (idle memory). */
#define OBUF_KEEP 16384

static void client_on_io(struct loop_io *io, uint32_t revents);

struct client *client_new(struct worker *w, int fd, const char *peer)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->io.fd = fd;
	c->io.fn = client_on_io;
	c->w = w;
	c->level = 4;
	if (worker_slot_add(w, c) < 0) {
		close(fd);
		free(c);
		return NULL;
	}
	c->accepted_ms = c->last_rx_ms = w->now_ms;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (loop_io_add(w->loop, &c->io, EPOLLIN) < 0) {
		worker_slot_del(w, c);
		close(fd);
		free(c);
		return NULL;
	}
	c->next = w->clients;
	if (w->clients)
		w->clients->prev = c;
	w->clients = c;
	w->n_clients++;
	return c;
}

void client_mark_output(struct client *c)
{
	worker_mark_dirty(c->w, c);
}

/* Parks the session (clean session 0) or discards it (clean session 1). */
static void client_detach_session(struct client *c)
{
	struct session *s = c->s;
	struct broker *br = c->w->br;

	if (!s)
		return;
	c->s = NULL;
	if (c->id == s->id)
		c->id = util_strdup_n(s->id, s->id_len); /* NULL logs as "-" */
	/* Offline now: what waits in the session counts as queued. */
	inflight_settle(&s->out);
	mqueue_settle(&s->queue);
	/* Deliveries other workers posted to our inbox while we owned s are
	 * still ahead of us: until we reach INBOX_SETTLE (posted behind them),
	 * new deliveries are routed through our inbox too, so that the session
	 * queue receives everything in order. */
	struct inbox_item it = { .kind = INBOX_SETTLE, .p1 = session_ref(s) };
	pthread_spin_lock(&s->mu);
	atomic_store_explicit(&s->owner, -1, memory_order_release);
	s->last_owner = c->w->idx;
	s->client = NULL;
	s->settling = worker_post(c->w, &it) == 0;
	pthread_spin_unlock(&s->mu);
	if (!s->settling)
		session_unref(s);
	if (s->clean) {
		pthread_mutex_lock(&br->dir_lock);
		if (session_dir_find(&br->dir, s->id, s->id_len) == s) {
			session_ref(s);
			session_dir_del(&br->dir, s);
			broker_discard_session(br, s);
			session_unref(s);
		}
		pthread_mutex_unlock(&br->dir_lock);
	}
	session_unref(s);
}

void client_close(struct client *c, const char *reason, bool publish_will)
{
	if (c->state == CL_CLOSING)
		return;
	bool was_active = c->state == CL_ACTIVE;
	c->state = CL_CLOSING;
	c->close_reason = reason;
	c->publish_will = publish_will && was_active && !c->graceful && c->will;
	loop_io_del(c->w->loop, &c->io);
	if (c->backlog_paused) {
		struct client **pp = &c->w->backlog;
		while (*pp != c)
			pp = &(*pp)->next_backlog;
		*pp = c->next_backlog;
	}
	if (c->up && c->up->blocked) {
		struct client **pp = &c->w->blocked;
		while (*pp != c)
			pp = &(*pp)->up->next_blocked;
		*pp = c->up->next_blocked;
	}
	client_detach_session(c);
	c->next_closing = c->w->closing;
	c->w->closing = c;
}

void client_finish(struct client *c)
{
	struct worker *w = c->w;

	/* Best effort: a CONNACK with a refusal code should reach the peer. */
	if (buf_used(&c->obuf) > 0) {
		ssize_t r = send(c->io.fd, buf_head(&c->obuf), buf_used(&c->obuf), MSG_NOSIGNAL);
		(void)r;
	}
	log_info("conn close client=%s addr=%s reason=\"%s\"", c->id ? c->id : "-", c->peer,
		 c->close_reason ? c->close_reason : "?");
	if (c->publish_will)
		broker_publish(w, c->will);
	msg_unref(c->will);
	close(c->io.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_clients--;
	worker_slot_del(w, c);
	atomic_fetch_sub(&w->br->n_connections, 1);
	buf_release(&c->rbuf);
	buf_release(&c->obuf);
	if (c->up) {
		free(c->up->acks);
		msg_unref(c->up->blocked);
		free(c->up);
	}
	free(c->id);
	free(c->username);
	free(c);
}

void client_flush(struct client *c)
{
	struct worker *w = c->w;

	if (c->state == CL_CLOSING)
		return;
	while (buf_used(&c->obuf) > 0) {
		ssize_t n = send(c->io.fd, buf_head(&c->obuf), buf_used(&c->obuf), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(c, "write error", true);
			return;
		}
		STAT_ADD(w, bytes_out, (uint64_t)n);
		buf_consume(&c->obuf, (size_t)n);
		c->last_tx_ms = w->now_ms;
	}
	uint32_t want = c->read_paused ? 0 : EPOLLIN;
	if (buf_used(&c->obuf) > 0)
		want |= EPOLLOUT;
	else
		buf_shrink(&c->obuf, OBUF_KEEP);
	loop_io_mod(w->loop, &c->io, want);
	client_update_read(c);
	/* Room again: feed the window from the session queue. */
	if (c->state == CL_ACTIVE && c->s && c->s->queue.n > 0 &&
	    buf_used(&c->obuf) < LIM(w->br, max_output_bytes))
		client_pump(c);
}

void client_update_read(struct client *c)
{
	struct broker *br = c->w->br;

	if (c->state == CL_CLOSING)
		return;
	bool pause = c->w->draining || c->backlog_paused || c->state == CL_WAIT_TAKEOVER ||
		     (c->up && (c->up->blocked || c->up->ack_n >= LIM(br, max_inflight))) ||
		     buf_used(&c->obuf) >= LIM(br, max_output_bytes);
	if (pause == c->read_paused)
		return;
	c->read_paused = pause;
	loop_io_mod(c->w->loop, &c->io,
		    (pause ? 0 : EPOLLIN) | (buf_used(&c->obuf) ? EPOLLOUT : 0));
	/* Bytes read before the pause wait in rbuf; the safe point parses them. */
	if (!pause && buf_used(&c->rbuf) > 0)
		worker_mark_resume(c->w, c);
}

/* Frames and dispatches whole packets from p[0..n); returns bytes consumed. */
static size_t client_process(struct client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->w;
	uint32_t max = LIM(w->br, max_packet_size);
	size_t off = 0;

	while (off < n && c->state != CL_CLOSING && !c->read_paused) {
		struct mqtt_frame f;
		struct mqtt_packet pkt;
		int r = mqtt_frame_parse(p + off, n - off, max, &f);
		if (r == 0)
			break;
		if (r < 0) {
			STAT_INC(w, malformed);
			client_close(c, r == MQTT_ERR_TOO_LARGE ? "packet too large"
								: "malformed packet", true);
			break;
		}
		off += (size_t)r;
		STAT_INC(w, pkts_in[f.type & 15]);
		int d = mqtt_decode(&f, c->level, &pkt);
		if (d == MQTT_ERR_PROTO_VERSION && f.type == MQTT_CONNECT && c->state == CL_NEW) {
			struct mqtt_connack ca = { .rc = MQTT_CONNACK_BAD_PROTOCOL };
			mqtt_encode_connack(&c->obuf, 4, &ca);
			client_close(c, "unsupported protocol version", false);
			break;
		}
		if (d == MQTT_ERR_PROTOCOL && f.type == MQTT_CONNECT && c->state == CL_NEW &&
		    pkt.u.connect.level == 3) {
			/* MQTT 3.1: a client id outside 1..23 bytes gets return code 2. */
			struct mqtt_connack ca = { .rc = MQTT_CONNACK_ID_REJECTED };
			mqtt_encode_connack(&c->obuf, 3, &ca);
			client_close(c, "client id rejected (MQTT 3.1)", false);
			break;
		}
		if (d < 0) {
			STAT_INC(w, malformed);
			log_debug("malformed client=%s addr=%s type=%s err=%s", c->id ? c->id : "-",
				  c->peer, mqtt_type_name(f.type), mqtt_err_str(d));
			client_close(c, mqtt_err_str(d), true);
			break;
		}
		if (dispatch_packet(c, &pkt) < 0)
			break;
	}
	return off;
}

static void client_read(struct client *c)
{
	struct worker *w = c->w;

	for (int i = 0; i < READS_PER_EVENT && c->state != CL_CLOSING && !c->read_paused; i++) {
		ssize_t n;
		if (buf_used(&c->rbuf) > 0) {
			/* A partial packet is pending: read behind it so it completes in place. */
			if (buf_reserve(&c->rbuf, w->rbuf_cap) < 0) {
				client_close(c, "out of memory", true);
				return;
			}
			n = read(c->io.fd, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
		} else {
			n = read(c->io.fd, w->rbuf, w->rbuf_cap);
		}
		if (n == 0) {
			client_close(c, "peer closed", true);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_close(c, "read error", true);
			return;
		}
		STAT_ADD(w, bytes_in, (uint64_t)n);
		c->last_rx_ms = w->now_ms;
		if (buf_used(&c->rbuf) > 0) {
			c->rbuf.len += (size_t)n;
			size_t used = client_process(c, buf_head(&c->rbuf), buf_used(&c->rbuf));
			if (c->state == CL_CLOSING)
				return;
			buf_consume(&c->rbuf, used);
			if (buf_used(&c->rbuf) == 0)
				buf_shrink(&c->rbuf, 0);
		} else {
			size_t used = client_process(c, w->rbuf, (size_t)n);
			if (c->state == CL_CLOSING)
				return;
			if (used < (size_t)n && buf_append(&c->rbuf, w->rbuf + used, (size_t)n - used) < 0) {
				client_close(c, "out of memory", true);
				return;
			}
		}
		if ((size_t)n < w->rbuf_cap)
			return;
	}
}

void client_process_pending(struct client *c)
{
	if (buf_used(&c->rbuf) == 0 || c->state == CL_CLOSING)
		return;
	size_t used = client_process(c, buf_head(&c->rbuf), buf_used(&c->rbuf));
	if (c->state != CL_CLOSING)
		buf_consume(&c->rbuf, used);
}

static void client_on_io(struct loop_io *io, uint32_t revents)
{
	struct client *c = container_of(io, struct client, io);

	if (c->state == CL_CLOSING)
		return;
	/* Keepalive needs the time of this read, not of the last tick. */
	c->w->now_ms = util_now_ms();
	if (revents & EPOLLOUT)
		client_flush(c);
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
		client_read(c);
	client_update_read(c);
}

static void send_publish(struct client *c, struct msg *m, uint8_t qos, bool retain,
			 uint16_t pid, bool dup)
{
	struct mqtt_publish p = {
		.qos = qos, .dup = dup, .retain = retain, .packet_id = pid,
		.topic = { (const uint8_t *)m->topic, m->topic_len },
		.payload = m->payload, .payload_len = m->payload_len,
	};
	mqtt_encode_publish(&c->obuf, c->level, &p);
	STAT_INC(c->w, pkts_out[MQTT_PUBLISH]);
	client_mark_output(c);
}

/* Takes the reference on m. */
static void send_window(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes)
{
	struct session *s = c->s;
	uint16_t pid = inflight_next_pid(&s->out);
	if (pid == 0 || !inflight_add(&s->out, m, pid, qos, retain, owes)) {
		if (owes)
			msg_track_done(m);
		msg_unref(m);
		STAT_INC(c->w, queue_dropped);
		return;
	}
	send_publish(c, m, qos, retain, pid, false);
}

static void queue_or_drop(struct client *c, struct msg *m, uint8_t qos, bool retain, bool owes)
{
	struct session *s = c->s;
	if (mqueue_push(&s->queue, msg_ref(m), qos, retain, owes, LIM(c->w->br, max_queued)) < 0) {
		if (owes)
			msg_track_done(m);
		msg_unref(m);
		s->queue_dropped++;
		STAT_INC(c->w, queue_dropped);
		if ((s->queue_dropped & (s->queue_dropped - 1)) == 0) /* log 1, 2, 4, 8... */
			log_warn("queue full client=%s topic=%s dropped=%llu", s->id, m->topic,
				 (unsigned long long)s->queue_dropped);
	}
}

void client_deliver(struct client *c, struct msg *m, uint8_t qos, bool retain)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	bool owes = m->track != NULL;

	if (c->state != CL_ACTIVE || !s) {
		if (owes)
			msg_track_done(m);
		return;
	}
	bool over = buf_used(&c->obuf) >= LIM(br, max_output_bytes);
	if (qos == 0) {
		if (over)
			STAT_INC(c->w, qos0_dropped);
		else
			send_publish(c, m, 0, retain, 0, false);
		if (owes)
			msg_track_done(m);
		return;
	}
	if (over || s->queue.n > 0 || s->out.n >= LIM(br, max_inflight)) {
		queue_or_drop(c, m, qos, retain, owes);
		return;
	}
	send_window(c, msg_ref(m), qos, retain, owes);
}

void client_pump(struct client *c)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	struct mqueue_entry e;

	if (c->state != CL_ACTIVE || !s)
		return;
	while (s->queue.n > 0 && s->out.n < LIM(br, max_inflight) &&
	       buf_used(&c->obuf) < LIM(br, max_output_bytes)) {
		mqueue_pop(&s->queue, &e);
		if (e.qos == 0) {
			send_publish(c, e.m, 0, e.retain, 0, false);
			if (e.owes)
				msg_track_done(e.m);
			msg_unref(e.m);
		} else {
			send_window(c, e.m, e.qos, e.retain, e.owes);
		}
	}
}

void client_resend_inflight(struct client *c)
{
	struct session *s = c->s;

	for (uint16_t i = 0; i < s->out.n; i++) {
		struct inflight_entry *e = &s->out.e[i];
		if (e->state == INFL_WAIT_PUBCOMP) {
			struct mqtt_ack a = { .packet_id = e->pid };
			mqtt_encode_ack(&c->obuf, c->level, MQTT_PUBREL, &a);
			STAT_INC(c->w, pkts_out[MQTT_PUBREL]);
		} else {
			send_publish(c, e->m, e->qos, e->retain, e->pid, true);
		}
	}
	client_mark_output(c);
}
