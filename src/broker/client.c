/* client.c - connection bytes, framing and lifecycle; see client.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/alias_out.h"
#include "broker/client.h"
#include "broker/state_hooks.h"
#include "broker/client_ack.h"
#include "broker/client_io.h"
#include "broker/limits.h"
#include "broker/listener.h"
#include "broker/deliver.h"
#include "broker/dispatch.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/takeover.h"
#include "broker/topic_alias.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/net.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* Reads per readiness event before yielding to other connections. */
#define READS_PER_EVENT 8
/* Output buffers larger than this are freed once empty (idle memory). */
#define OBUF_KEEP 16384

static void client_on_io(struct loop_io *io, uint32_t revents);

/* The epoll events c waits for now. */
static uint32_t client_events(const struct client *c)
{
	uint32_t ev = c->read_paused ? 0 : EPOLLIN;
	if (client_outq(c) > 0)
		ev |= EPOLLOUT;
	return ev | client_io_events(c);
}

/* A new connection on fd, not yet registered. NULL on ENOMEM. */
static struct client *client_alloc(struct worker *w, int fd)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->io.fd = fd;
	c->io.fn = client_on_io;
	c->w = w;
	c->level = 4;
	c->recv_max = UINT16_MAX;
	c->problem_info = true;
	return c;
}

/* Gives c its conn_id and puts it in epoll and on w's list. Returns 0 or -1. */
static int client_register(struct worker *w, struct client *c)
{
	if (worker_slot_add(w, c) < 0)
		return -1;
	if (loop_io_add(w->loop, &c->io, EPOLLIN) < 0) {
		worker_slot_del(w, c);
		return -1;
	}
	c->accepted_ms = c->last_rx_ms = c->last_tx_ms = w->now_ms;
	LIST_INSERT_HEAD(&w->clients, c, link);
	w->n_clients++;
	return 0;
}

struct client *client_new(struct worker *w, int fd, int lis, const struct net_peer *peer,
			  bool addr_counted)
{
	const struct broker_listener *l = &w->br->lis[lis];
	struct client *c = client_alloc(w, fd);
	if (!c)
		goto fail;
	c->lis = (uint8_t)lis;
	c->addr_counted = addr_counted;
	memcpy(c->ip, peer->ip, sizeof(c->ip));
	c->port = peer->port;
	if ((l->kind != LIS_MQTT && client_io_new(c, l) < 0) || client_register(w, c) < 0)
		goto fail;
	atomic_fetch_add_explicit(&w->br->lis[lis].open, 1, memory_order_relaxed);
	return c;
fail:
	if (c)
		client_io_free(c);
	free(c);
	if (addr_counted)
		listener_release(peer->ip);
	close(fd);
	return NULL;
}

const char *client_peer(const struct client *c)
{
	static _Thread_local char ring[4][64];
	static _Thread_local unsigned next;
	char *out = ring[next++ % 4];
	return net_peer_format(c->ip, c->port, out, sizeof(ring[0]));
}

struct client *client_new_outbound(struct worker *w, int fd, struct upstream *up,
				   const char *peer)
{
	struct client *c = client_alloc(w, fd);
	struct net_peer p;

	(void)peer;
	if (!c)
		goto fail;
	c->up = up;
	if (net_peer_of(fd, &p) == 0) {
		memcpy(c->ip, p.ip, sizeof(c->ip));
		c->port = p.port;
	}
	if (client_register(w, c) < 0)
		goto fail;
	atomic_fetch_add(&w->br->n_connections, 1);
	return c;
fail:
	free(c);
	close(fd);
	return NULL;
}

size_t client_outq(const struct client *c)
{
	return buf_used(&c->obuf) + client_io_queued(c);
}

/* Keeps the bytes held in c->rbuf counted against max_partial_bytes.
 * Returns 0, or -1 after closing c (the cap is reached). */
static int client_account_partial(struct client *c)
{
	struct broker *br = c->w->br;
	size_t held = buf_used(&c->rbuf);

	if (held == 0) {
		c->partial_since_ms = 0;
		buf_shrink(&c->rbuf, 0);
	} else if (c->partial_since_ms == 0) {
		c->partial_since_ms = c->w->now_ms;
	}
	if (held > c->partial_held) {
		int64_t d = (int64_t)(held - c->partial_held);
		int64_t now = atomic_fetch_add(&br->partial_bytes, d) + d;
		c->partial_held = (uint32_t)held;
		if (now > (int64_t)LIM(br, max_partial_bytes)) {
			STAT_INC(c->w, partial_refused);
			client_close_rc(c, "max_partial_bytes reached", true, MQTT_RC_QUOTA_EXCEEDED);
			return -1;
		}
	} else if (held < c->partial_held) {
		atomic_fetch_sub(&br->partial_bytes, (int64_t)(c->partial_held - held));
		c->partial_held = (uint32_t)held;
	}
	return 0;
}

void client_mark_output(struct client *c)
{
	worker_mark_dirty(c->w, c);
}

void client_close_rc(struct client *c, const char *reason, bool publish_will, uint8_t rc)
{
	/* MQTT 5 lets the server say why, after CONNACK only [MQTT-3.14.0-1];
	 * upstream connections play the client and say nothing. */
	if (c->state == CL_ACTIVE && c->level == 5 && rc >= 0x80 && !c->up) {
		struct mqtt_disconnect d = { .reason = rc };
		if (mqtt_encode_disconnect(&c->obuf, 5, &d) == MQTT_OK)
			STAT_INC(c->w, pkts_out[MQTT_DISCONNECT]);
	}
	client_close(c, reason, publish_will);
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
	if (c->up)
		upstream_detach(c, was_active);
	else
		takeover_park(c);
	SLIST_INSERT_HEAD(&c->w->closing, c, closing_link);
}

void client_finish(struct client *c)
{
	struct worker *w = c->w;

	/* Best effort: a CONNACK with a refusal code should reach the peer. */
	if (c->x) {
		client_io_final(c, 1000);
	} else if (buf_used(&c->obuf) > 0) {
		ssize_t r = send(c->io.fd, buf_head(&c->obuf), buf_used(&c->obuf), MSG_NOSIGNAL);
		(void)r;
	}
	static struct log_limit lim = LOG_LIMIT("conn close", 200, 2000);
	if (log_enabled(LVL_INFO))
		log_limited(&lim, LVL_INFO, false,
			    "conn close client=%s addr=%s listener=%s reason=%s", log_q(c->id),
			    client_peer(c), c->up ? "upstream" : w->br->lis[c->lis].name,
			    log_q(c->close_reason ? c->close_reason : "?"));
	if (c->publish_will && auth_may_publish_will(c)) {
		/* MQTT 5: the will's Message Expiry Interval counts from now
		 * (3.1.3.2.4); c->will is still ours alone. */
		if (c->m5 & CL5_WILL_EXPIRY)
			c->will->expires_ms = util_wall_ms() + (int64_t)c->will_expiry * 1000;
		hooks_will(w, c->will, c->id, c->id_len);
	}
	msg_unref(c->will);
	auth_client_release(c);
	client_io_free(c);
	close(c->io.fd);
	if (c->addr_counted)
		listener_release(c->ip);
	if (!c->up)
		atomic_fetch_sub_explicit(&w->br->lis[c->lis].open, 1, memory_order_relaxed);
	if (c->partial_held)
		atomic_fetch_sub(&w->br->partial_bytes, (int64_t)c->partial_held);
	LIST_REMOVE(c, link);
	w->n_clients--;
	worker_slot_del(w, c);
	atomic_fetch_sub(&w->br->n_connections, 1);
	buf_release(&c->rbuf);
	buf_release(&c->obuf);
	client_acks_free(c->acks);
	topic_alias_free(c->aliases);
	alias_out_free(c->alias_out);
	free(c->subwait);
	free(c->id);
	free(c->username);
	free(c->cert_user);
	free(c);
}

/* Writes what the socket takes of c's output: through TLS and WebSocket, or
 * straight from obuf. Returns 0, or -1 after closing c. */
static int client_write(struct client *c)
{
	struct worker *w = c->w;

	if (c->x) {
		size_t raw = 0;
		int rc = client_io_flush(c, &raw);
		STAT_ADD(w, bytes_out, (uint64_t)raw);
		if (raw > 0)
			c->last_tx_ms = w->now_ms;
		if (rc < 0) {
			client_close(c, client_io_reason(c), true);
			return -1;
		}
		return 0;
	}
	while (buf_used(&c->obuf) > 0) {
		ssize_t n = send(c->io.fd, buf_head(&c->obuf), buf_used(&c->obuf), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(c, "write error", true);
			return -1;
		}
		STAT_ADD(w, bytes_out, (uint64_t)n);
		buf_consume(&c->obuf, (size_t)n);
		c->last_tx_ms = w->now_ms;
	}
	return 0;
}

void client_flush(struct client *c)
{
	struct worker *w = c->w;

	if (c->state == CL_CLOSING || client_write(c) < 0)
		return;
	if (buf_used(&c->obuf) == 0)
		buf_shrink(&c->obuf, OBUF_KEEP);
	loop_io_mod(w->loop, &c->io, client_events(c));
	client_update_read(c);
	/* Room again: feed the window from the session queue. */
	deliver_pump(c);
}

bool client_held(const struct client *c)
{
	return c->blocked || c->backlog_paused ||
	       client_ack_window_full(c, LIM(c->w->br, max_inflight));
}

void client_update_read(struct client *c)
{
	if (c->state == CL_CLOSING)
		return;
	bool pause = c->w->draining || c->state == CL_WAIT_TAKEOVER ||
		     c->state == CL_WAIT_AUTH || c->state == CL_WAIT_CLAIM || client_held(c) ||
		     c->subwait ||
		     client_outq(c) >= LIM(c->w->br, max_output_bytes);
	if (pause == c->read_paused)
		return;
	c->read_paused = pause;
	if (!pause && c->io_parked) {
		c->io_parked = false;
		if (loop_io_add(c->w->loop, &c->io, client_events(c)) < 0) {
			client_close(c, "out of memory", true);
			return;
		}
	} else {
		loop_io_mod(c->w->loop, &c->io, client_events(c));
	}
	/* Bytes read before the pause wait in rbuf (or inside TLS); the safe
	 * point parses them. The packet timer restarts: the wait was ours. */
	if (!pause && (buf_used(&c->rbuf) > 0 || client_io_pending(c))) {
		if (c->partial_since_ms)
			c->partial_since_ms = c->w->now_ms;
		worker_mark_resume(c->w, c);
	}
}

/* Frames and dispatches whole packets from p[0..n); returns bytes consumed. */
static size_t client_process(struct client *c, const uint8_t *p, size_t n)
{
	struct worker *w = c->w;
	size_t off = 0;

	while (off < n && c->state != CL_CLOSING && !c->read_paused) {
		struct mqtt_frame f;
		struct mqtt_packet pkt;
		/* Until CONNECT is in, a smaller cap (max_connect_size is already
		 * the smaller of the two settings); the state changes inside one
		 * buffer, so per packet. */
		bool first = c->state == CL_NEW;
		uint32_t max = first ? LIM(w->br, max_connect_size) : LIM(w->br, max_packet_size);
		int r = mqtt_frame_parse(p + off, n - off, max, &f);
		if (r == 0)
			break;
		if (r < 0) {
			STAT_INC(w, malformed);
			if (r == MQTT_ERR_TOO_LARGE && first)
				limits_hit(w, NULL, LIMIT_CONNECT_SIZE);
			/* Packet type 0 is forbidden (5.0 2.1.2), not malformed: a
			 * protocol error. */
			uint8_t rc = r == MQTT_ERR_TOO_LARGE ? MQTT_RC_PACKET_TOO_LARGE
				   : (p[off] >> 4) == 0    ? MQTT_RC_PROTOCOL_ERROR
							   : MQTT_RC_MALFORMED;
			client_close_rc(c, r == MQTT_ERR_TOO_LARGE ? "packet too large" : "malformed packet",
					true, rc);
			break;
		}
		off += (size_t)r;
		STAT_INC(w, pkts_in[f.type & 15]);
		/* Level 5: a server-only type, or AUTH (no Authentication Method is
		 * ever accepted, 3.15), is a Protocol Error, 0x82, whatever it holds. */
		int d = mqtt_decode_refusing(&f, c->level, c->up ? 0 :
					     MQTT_SERVER_ONLY_TYPES | MQTT_TYPE_BIT(MQTT_AUTH), &pkt);
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
				  client_peer(c), mqtt_type_name(f.type), mqtt_err_str(d));
			client_close_rc(c, mqtt_err_str(d), true,
					d == MQTT_ERR_PROTOCOL ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED);
			break;
		}
		if (dispatch_packet(c, &pkt) < 0)
			break;
	}
	return off;
}

/* One read into p (at most cap): from the socket, or through TLS and
 * WebSocket. Returns the MQTT bytes read (> 0), or 0 after closing c or when
 * nothing more can be read now. */
static size_t client_read_some(struct client *c, uint8_t *p, size_t cap)
{
	struct worker *w = c->w;
	ssize_t n;

	if (c->x) {
		size_t raw = 0;
		n = client_io_read(c, p, cap, &raw);
		STAT_ADD(w, bytes_in, (uint64_t)raw);
		if (raw > 0)
			c->last_rx_ms = w->now_ms;
		if (n == CLIO_CLOSED)
			client_close(c, "peer closed", true);
		else if (n == CLIO_ERROR)
			client_close(c, client_io_reason(c), true);
		return n > 0 ? (size_t)n : 0;
	}
	for (;;) {
		n = read(c->io.fd, p, cap);
		if (n > 0)
			break;
		if (n == 0) {
			client_close(c, "peer closed", true);
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			client_close(c, "read error", true);
		return 0;
	}
	STAT_ADD(w, bytes_in, (uint64_t)n);
	c->last_rx_ms = w->now_ms;
	return (size_t)n;
}

static void client_read(struct client *c)
{
	struct worker *w = c->w;

	for (int i = 0; i < READS_PER_EVENT && c->state != CL_CLOSING && !c->read_paused; i++) {
		size_t n;
		if (buf_used(&c->rbuf) > 0) {
			/* A partial packet is pending: read behind it so it completes in place. */
			if (buf_reserve(&c->rbuf, w->rbuf_cap) < 0) {
				client_close(c, "out of memory", true);
				return;
			}
			n = client_read_some(c, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
			if (n == 0)
				return;
			c->rbuf.len += n;
			size_t used = client_process(c, buf_head(&c->rbuf), buf_used(&c->rbuf));
			if (c->state == CL_CLOSING)
				return;
			buf_consume(&c->rbuf, used);
		} else {
			n = client_read_some(c, w->rbuf, w->rbuf_cap);
			if (n == 0)
				return;
			size_t used = client_process(c, w->rbuf, n);
			if (c->state == CL_CLOSING)
				return;
			if (used < n && buf_append(&c->rbuf, w->rbuf + used, n - used) < 0) {
				client_close(c, "out of memory", true);
				return;
			}
		}
		if (client_account_partial(c) < 0)
			return;
		if (n < w->rbuf_cap && !client_io_pending(c))
			return;
	}
	/* Stopped early with input still inside TLS: epoll will not say so. */
	if (c->state != CL_CLOSING && !c->read_paused && client_io_pending(c))
		worker_mark_resume(w, c);
}

void client_process_pending(struct client *c)
{
	if (c->state == CL_CLOSING)
		return;
	if (buf_used(&c->rbuf) > 0) {
		size_t used = client_process(c, buf_head(&c->rbuf), buf_used(&c->rbuf));
		if (c->state == CL_CLOSING)
			return;
		buf_consume(&c->rbuf, used);
		if (client_account_partial(c) < 0)
			return;
	}
	if (!c->read_paused && client_io_pending(c))
		client_read(c);
}

static void client_on_io(struct loop_io *io, uint32_t revents)
{
	struct client *c = container_of(io, struct client, io);

	if (c->state == CL_CLOSING)
		return;
	/* Keepalive needs the time of this read, not of the last tick. */
	c->w->now_ms = util_now_ms();
	/* epoll reports a hang-up whatever was asked: a paused connection,
	 * which reads nothing, would be woken for it on every wait. Flush what
	 * waits (a write to a dead peer fails and closes), then leave the loop
	 * until reading resumes and reads up to the end. */
	if (c->read_paused && (revents & (EPOLLHUP | EPOLLERR))) {
		if (client_outq(c) > 0)
			client_flush(c);
		if (c->state != CL_CLOSING && c->read_paused) {
			loop_io_del(c->w->loop, &c->io);
			c->io_parked = true;
		}
		return;
	}
	/* TLS may need to write to read and read to write: both on any event. */
	if ((revents & EPOLLOUT) || c->x)
		client_flush(c);
	if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->x)
		client_read(c);
	client_update_read(c);
}
