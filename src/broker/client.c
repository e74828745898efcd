/* client.c - connection bytes, framing and lifecycle; see client.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/deliver.h"
#include "broker/dispatch.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/takeover.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"

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
	LIST_INSERT_HEAD(&w->clients, c, link);
	w->n_clients++;
	return c;
}

void client_mark_output(struct client *c)
{
	worker_mark_dirty(c->w, c);
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
		SLIST_REMOVE(&c->w->backlog, c, client, backlog_link);
		c->backlog_paused = false;
	}
	if (c->blocked) {
		STAILQ_REMOVE(&c->w->blocked, c, client, blocked_link);
		c->blocked = false;
	}
	takeover_park(c);
	SLIST_INSERT_HEAD(&c->w->closing, c, closing_link);
}

void client_finish(struct client *c)
{
	struct worker *w = c->w;

	/* Best effort: a CONNACK with a refusal code should reach the peer. */
	if (buf_used(&c->obuf) > 0) {
		ssize_t r = send(c->io.fd, buf_head(&c->obuf), buf_used(&c->obuf), MSG_NOSIGNAL);
		(void)r;
	}
	static struct log_limit lim = LOG_LIMIT("conn close", 200, 2000);
	log_limited(&lim, LVL_INFO, false, "conn close client=%s addr=%s reason=\"%s\"", log_q(c->id),
		    c->peer,
		 c->close_reason ? c->close_reason : "?");
	if (c->publish_will)
		deliver_publish(w, c->will);
	msg_unref(c->will);
	close(c->io.fd);
	LIST_REMOVE(c, link);
	w->n_clients--;
	worker_slot_del(w, c);
	atomic_fetch_sub(&w->br->n_connections, 1);
	buf_release(&c->rbuf);
	buf_release(&c->obuf);
	client_acks_free(c->acks);
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
		deliver_pump(c);
}

void client_update_read(struct client *c)
{
	struct broker *br = c->w->br;

	if (c->state == CL_CLOSING)
		return;
	bool pause = c->w->draining || c->backlog_paused || c->state == CL_WAIT_TAKEOVER ||
		     c->blocked || client_ack_count(c) >= LIM(br, max_inflight) ||
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
			c->level = 4;
			if (send_connack(c, MQTT_CONNACK_BAD_PROTOCOL, false) == 0)
				client_close(c, "unsupported protocol version", false);
			break;
		}
		if (d == MQTT_ERR_PROTOCOL && f.type == MQTT_CONNECT && c->state == CL_NEW &&
		    pkt.u.connect.level == 3) {
			/* MQTT 3.1: a client id outside 1..23 bytes gets return code 2. */
			c->level = 3;
			if (send_connack(c, MQTT_CONNACK_ID_REJECTED, false) == 0)
				client_close(c, "client id rejected (MQTT 3.1)", false);
			break;
		}
		if (d < 0) {
			STAT_INC(w, malformed);
			log_debug_rl("malformed client=%s addr=%s type=%s err=%s", log_q(c->id),
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
