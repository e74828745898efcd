/*
 * fuzz_conn.c - libFuzzer target for the broker's connection state machine:
 * CONNECT to close, session takeover across workers, the QoS flows and the
 * acknowledgements that wait for the sink.
 *
 * Each input builds a broker (two workers, small limits) and starts no
 * thread: the fuzzer's thread steps the workers' loops (loop_run_once()) on
 * a fake clock (util_set_clock()). Devices are socket pairs handed to
 * client_new() as the accept path would; the fuzzer writes their bytes,
 * reads what the broker sends, and conn_model.c checks it. The sink is
 * fake: it records each publish and answers PENDING, DONE or BUSY as the
 * input says; later operations complete its records OK or failed, in any
 * order, also after their connection is gone. The operations are in
 * conn_ops.h; client ids collide on purpose ("A" twice as often as "B"), so
 * takeovers, on one worker and across the two, are fuzzed.
 *
 * Checked, besides conn_model.h's wire invariants (no PUBACK/PUBREC without
 * a successful delivery, acks in publish order, ...):
 *   - the sink is called by an active connection, with its client id and a
 *     message it published, never twice for one ack sequence;
 *   - nothing is sent after the broker closed a connection but the output
 *     it held at that moment;
 *   - every close is one the model can explain (a packet the broker refuses,
 *     an acknowledgement nothing asked for, a failed delivery, a takeover, a
 *     timeout after the clock moved, the device closing, the partial-bytes
 *     cap);
 *   - after each tick, no client is left past connect_timeout,
 *     packet_timeout or 1.5 keepalives;
 *   - whenever the workers are quiet (inboxes empty, nothing to flush, free
 *     or resume): never two attached sessions for one client id, the
 *     session directory and the clients agree, no takeover or settle is left
 *     hanging, no acknowledgement the sink allowed is held back, no
 *     failed one left open, and the connection and partial-bytes counters
 *     add up. A round that never goes quiet (a busy loop) is a failure too;
 *   - ASan, UBSan and LeakSanitizer (the broker is freed after each input).
 *
 * Deterministic: no thread, no wall clock in any decision, fixed hash seeds;
 * FUZZ_CONN_LOG=1 replays an input with the broker's log and every packet
 * on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/listener.h"
#include "broker/session.h"
#include "broker/worker.h"
#include "conn_model.h"
#include "conn_ops.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/msg.h"
#include "core/net.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

#define N_SLOTS 4
#define MAX_DEVS 24
/* A quiet state is reached in a few rounds per device: a chain of
 * takeovers of one id hops between the workers' inboxes three times for
 * each device waiting (24 of them take 65 rounds). More is a busy loop. */
#define SETTLE_ROUNDS 1000

static const char fuzz_cfg[] =
	"listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
	"workers = 2;\n"
	"limits = {\n"
	"  max_packet_size = 1024; max_connect_size = 256; max_inflight = 4;\n"
	"  max_queued_messages = 8; max_output_bytes = 4096; connect_timeout = 2;\n"
	"  packet_timeout = 1; max_partial_bytes = 4096;\n"
	"};\n"
	"log = { level = \"debug\"; };\n";

static struct cfg *cfg;
static int64_t fake_now;
static struct broker *br;
static struct model md;
static struct dev *slot[N_SLOTS];
static enum sink_result sink_mode;

/* The tries' hash seeds (sub_trie_kids_seed()) set the order in which a
 * SUBSCRIBE gets the retained messages: fixed while the broker is built, so
 * that an input replays the same way. This definition takes the place of
 * libc's for the whole program; outside that window it is the kernel's. */
static bool fixed_random;

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	if (fixed_random) {
		memset(buf, 0x5a, len);
		return (ssize_t)len;
	}
	return syscall(SYS_getrandom, buf, len, flags);
}

static int64_t fake_clock_ms(void) { return fake_now; }
static int64_t fake_clock_us(void) { return fake_now * 1000; }

struct input {
	const uint8_t *p;
	size_t n, off;
};

static uint8_t in_u8(struct input *in)
{
	return in->off < in->n ? in->p[in->off++] : 0;
}

/* Up to n bytes of the input; *got says how many there were. */
static const uint8_t *in_bytes(struct input *in, size_t n, size_t *got)
{
	const uint8_t *p = in->p + in->off;
	*got = n < in->n - in->off ? n : in->n - in->off;
	in->off += *got;
	return p;
}

static uint64_t stat_sum_partial_refused(void)
{
	uint64_t n = 0;
	for (int i = 0; i < br->n_workers; i++)
		n += atomic_load(&br->workers[i].st.partial_refused);
	return n;
}

static bool taken_over(const struct dev *d)
{
	if (d->s)
		for (size_t i = 0; i < md.n_devs; i++) {
			struct dev *e = md.devs[i];
			if (e != d && e->s == d->s && e->connect_ok)
				return true;
		}
	return false;
}

/* A level-5 device got a DISCONNECT before the close: its reason must be
 * one the model can explain (docs/mqtt5/connection.md, "Server DISCONNECT
 * reason codes"). */
static void check_disconnect(const struct dev *d)
{
	bool ok;

	switch (d->disc_rc) {
	case MQTT_RC_SESSION_TAKEN_OVER:
		ok = taken_over(d);
		break;
	case MQTT_RC_KEEPALIVE_TIMEOUT: /* the shortest keep alive is 1 s (1.5 s) */
		ok = fake_now - d->opened_ms >= 1000;
		break;
	case MQTT_RC_MALFORMED:
	case MQTT_RC_PACKET_TOO_LARGE:
	case MQTT_RC_TOPIC_NAME_INVALID:
	case MQTT_RC_TOPIC_ALIAS_INVALID:
		ok = d->out_dead; /* a packet of ours the model saw refused */
		break;
	case MQTT_RC_PROTOCOL_ERROR: /* also an ack of the wrong kind */
		ok = d->out_dead || d->odd_ack;
		break;
	case MQTT_RC_RECEIVE_MAX_EXCEEDED:
		ok = model_quota_may_overflow(&md, d);
		break;
	case MQTT_RC_QUOTA_EXCEEDED: /* max_partial_bytes (max_qos2_pending is 1000) */
		ok = stat_sum_partial_refused() > 0;
		break;
	default:
		ok = false;
	}
	MODEL_CHECK(ok, "dev %d: DISCONNECT 0x%02x, for no reason the model knows", d->serial,
		    d->disc_rc);
}

/* The broker closed d: after it decided to, only the output it held then
 * may have followed; and it must have had a reason the model knows. */
static void check_close(struct dev *d)
{
	MODEL_CHECK(!d->closing_seen || d->rx_bytes - d->closing_rx == d->closing_obuf,
		    "dev %d: %llu bytes sent after the close, %zu were waiting", d->serial,
		    (unsigned long long)(d->rx_bytes - d->closing_rx), d->closing_obuf);
	if (d->disc) {
		check_disconnect(d);
		return;
	}
	if (d->closed_by_us || d->shut_wr || d->out_dead || d->odd_ack)
		return;
	/* A CONNACK larger than the client's Maximum Packet Size is not sent,
	 * only the close [MQTT-3.1.2-24] (send.c; since cd145f8 only when even
	 * a trimmed one is too large: either is accepted). */
	if (d->level == 5 && d->connect_ok && !d->connack && d->max_packet &&
	    d->max_packet < model_connack_size(&md, d))
		return;
	/* 3.1.1: a failed delivery closes; level 5 answers it with 0x80. */
	for (size_t i = 0; d->level != 5 && i < d->n_recs; i++)
		if (d->recs[i]->state == REC_FAILED)
			return;
	if (fake_now - d->opened_ms >= 1000)
		return; /* connect, packet or keepalive timeout: none is shorter */
	if (taken_over(d))
		return;
	if (stat_sum_partial_refused() > 0)
		return;
	model_fail("dev %d: the broker closed it for no reason the model knows", d->serial);
}

static void flush_unsent(struct dev *d)
{
	while (d->fd >= 0 && buf_used(&d->unsent) > 0) {
		ssize_t n = send(d->fd, buf_head(&d->unsent), buf_used(&d->unsent),
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			model_wrote(&md, d, buf_head(&d->unsent), (size_t)n);
			buf_consume(&d->unsent, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				buf_reset(&d->unsent); /* the broker is gone: never read */
			return;
		}
	}
}

static void drain_dev(struct dev *d)
{
	uint8_t b[4096];

	while (d->fd >= 0 && !d->eof) {
		ssize_t n = recv(d->fd, b, sizeof(b), MSG_DONTWAIT);
		if (n > 0) {
			model_read(&md, d, b, (size_t)n);
		} else if (n == 0 || errno == ECONNRESET) {
			model_eof(&md, d);
			check_close(d);
		} else if (errno != EINTR) {
			break;
		}
	}
	flush_unsent(d);
}

static void drain_all(void)
{
	for (size_t i = 0; i < md.n_devs; i++)
		drain_dev(md.devs[i]);
}

/* Right after a tick on w, no client may be past a timeout it enforces. */
static void check_after_tick(struct worker *w)
{
	int64_t now = atomic_load(&w->heartbeat_ms);
	int64_t connect_timeout = cfg->limits.connect_timeout * 1000;
	int64_t packet_timeout = cfg->limits.packet_timeout * 1000;
	struct client *c;

	LIST_FOREACH(c, &w->clients, link) {
		if (c->state == CL_CLOSING)
			continue;
		MODEL_CHECK(!(c->state == CL_NEW && now - c->accepted_ms > connect_timeout),
			    "w%d: a client without CONNECT outlived connect_timeout", w->idx);
		MODEL_CHECK(!(c->partial_since_ms && !c->read_paused &&
			      now - c->partial_since_ms > packet_timeout),
			    "w%d: a partial packet outlived packet_timeout", w->idx);
		MODEL_CHECK(!(c->state == CL_ACTIVE && c->keepalive > 0 &&
			      now - c->last_rx_ms > (int64_t)c->keepalive * 1500),
			    "w%d: a silent client outlived its keepalive", w->idx);
	}
}

/* Clients closed but not yet freed (at w's next safe point): what they
 * will still send is what their output holds now. */
static void note_closing(struct worker *w)
{
	struct client *c;

	LIST_FOREACH(c, &w->clients, link) {
		struct dev *d = c->state == CL_CLOSING ? model_dev_by_conn(&md, c->conn_id) : NULL;
		if (!d)
			continue;
		MODEL_CHECK(!d->closing_seen || (d->closing_rx == d->rx_bytes &&
						 d->closing_obuf == buf_used(&c->obuf)),
			    "dev %d: output changed after the close", d->serial);
		d->closing_seen = true;
		d->closing_rx = d->rx_bytes;
		d->closing_obuf = buf_used(&c->obuf);
	}
}

/* One iteration of worker i's loop, then everything it sent is read.
 * Returns how many handlers ran, the tick counting as one (it may resume a
 * connection whose input is waiting: work the lists do not show). */
static int step_worker(int i)
{
	struct worker *w = &br->workers[i];
	int64_t hb = atomic_load(&w->heartbeat_ms);
	int n = loop_run_once(w->loop, 0);

	MODEL_CHECK(n >= 0, "w%d: loop_run_once: %s", i, strerror(errno));
	if (atomic_load(&w->heartbeat_ms) != hb) {
		check_after_tick(w);
		n++;
	}
	drain_all();
	for (int j = 0; j < br->n_workers; j++)
		note_closing(&br->workers[j]);
	return n;
}

static bool workers_quiet(void)
{
	for (int i = 0; i < br->n_workers; i++) {
		struct worker *w = &br->workers[i];
		if (inbox_depth(&w->inbox) > 0 || !SLIST_EMPTY(&w->dirty) ||
		    !SLIST_EMPTY(&w->closing) || !SLIST_EMPTY(&w->resume) ||
		    !SLIST_EMPTY(&w->backlog))
			return false;
	}
	return true;
}

/* The session directory agrees with the clients. Takes the broker's locks
 * as takeover.c does (nothing else runs, but the order is the broker's). */
static void check_directory(void)
{
	pthread_mutex_lock(&br->dir_lock);
	for (size_t i = 0; i < br->dir.nb; i++)
		for (struct session *s = br->dir.b[i]; s; s = s->dir_next) {
			MODEL_CHECK(session_dir_find(&br->dir, s->id, s->id_len) == s,
				    "two sessions in the directory for \"%s\"", s->id);
			pthread_spin_lock(&s->mu);
			int owner = atomic_load(&s->owner);
			struct client *c = s->client;
			bool settling = s->settling;
			pthread_spin_unlock(&s->mu);
			MODEL_CHECK(!settling, "session \"%s\" still settling when quiet", s->id);
			if (owner < 0) {
				MODEL_CHECK(!c, "offline session \"%s\" has a client", s->id);
				continue;
			}
			MODEL_CHECK(c && c->s == s && c->w->idx == owner && c->state == CL_ACTIVE,
				    "session \"%s\" owned by w%d without its client", s->id, owner);
		}
	pthread_mutex_unlock(&br->dir_lock);
}

static void check_clients(void)
{
	int n_clients = 0;
	int64_t partial = 0;

	for (int i = 0; i < br->n_workers; i++) {
		struct worker *w = &br->workers[i];
		struct client *c;
		LIST_FOREACH(c, &w->clients, link) {
			n_clients++;
			partial += c->partial_held;
			MODEL_CHECK(c->state != CL_WAIT_TAKEOVER,
				    "w%d: a takeover never finished (client \"%s\")", i, c->id);
			MODEL_CHECK(c->state == CL_NEW || c->state == CL_ACTIVE,
				    "w%d: a closed client was never freed", i);
			MODEL_CHECK((c->state == CL_ACTIVE) == (c->s != NULL),
				    "w%d: client state and session disagree", i);
			struct dev *d = model_dev_by_conn(&md, c->conn_id);
			MODEL_CHECK(d && !d->eof, "w%d: a client whose socket is closed", i);
			if (c->state != CL_ACTIVE)
				continue;
			struct session *s = c->s;
			MODEL_CHECK(s->client == c && atomic_load(&s->owner) == i,
				    "w%d: client \"%s\" attached to a session that is not its own", i,
				    s->id);
			pthread_mutex_lock(&br->dir_lock);
			struct session *in_dir = session_dir_find(&br->dir, s->id, s->id_len);
			pthread_mutex_unlock(&br->dir_lock);
			MODEL_CHECK(in_dir == s, "client \"%s\" attached to a session not in the directory",
				    s->id);
			MODEL_CHECK(d->connack && d->connack_rc == 0,
				    "dev %d: attached but no CONNACK sent", d->serial);
		}
	}
	MODEL_CHECK(atomic_load(&br->n_connections) == n_clients,
		    "n_connections %d, clients %d", atomic_load(&br->n_connections), n_clients);
	MODEL_CHECK(atomic_load(&br->lis[0].open) == n_clients, "listener open count is off");
	MODEL_CHECK(atomic_load(&br->partial_bytes) == partial, "partial_bytes is off");
}

static void check_devices(void)
{
	for (size_t i = 0; i < md.n_devs; i++) {
		struct dev *d = md.devs[i];
		if (d->eof || !d->conn_id)
			continue;
		struct client *c = worker_client(&br->workers[d->worker], d->conn_id);
		if (d->closed_by_us) {
			/* Only a connection that reads nothing may not have seen it. */
			MODEL_CHECK(!c || c->read_paused, "dev %d: hung up, but its client lives on",
				    d->serial);
			continue;
		}
		MODEL_CHECK(c, "dev %d: open, but the broker has no client for it", d->serial);
		/* Every answer the sink gave has been acted on: an OK at the head
		 * is acknowledged, a failure closes. */
		if (d->next_rec < d->n_recs)
			MODEL_CHECK(d->recs[d->next_rec]->state == REC_PENDING,
				    "dev %d: sink record seq %u is %s but neither acknowledged nor closed",
				    d->serial, d->recs[d->next_rec]->seq,
				    d->recs[d->next_rec]->state == REC_OK ? "ok" : "failed");
		if (!d->connack || d->connack_rc != 0)
			continue;
		for (size_t j = 0; j < md.n_devs; j++) {
			struct dev *e = md.devs[j];
			MODEL_CHECK(e == d || e->s != d->s || e->eof || e->closed_by_us ||
				    !e->connack || e->connack_rc != 0,
				    "devs %d and %d both attached as \"%s\"", d->serial, e->serial,
				    d->s->id);
		}
	}
}

/* Steps both workers until nothing moves, then checks the quiet state. */
static void settle(void)
{
	for (int round = 0; round < SETTLE_ROUNDS; round++) {
		int n = 0;
		for (int i = 0; i < br->n_workers; i++)
			n += step_worker(i);
		if (n == 0 && workers_quiet()) {
			check_clients();
			check_directory();
			check_devices();
			return;
		}
	}
	model_fail("the workers never go quiet (a busy loop)");
}

/* The packet id the ack ring keeps for seq: what PUBACK/PUBREC will carry. */
static uint16_t ack_pid(const struct client *c, uint32_t seq)
{
	const struct client_acks *a = c->acks;
	for (uint32_t i = 0; a && i < a->n; i++) {
		const struct ack_slot *s = &a->slots[(a->head + i) % a->cap];
		if (s->seq == seq)
			return s->pid;
	}
	model_fail("sink given seq %u, which the connection's ack ring does not hold", seq);
}

static enum sink_result fake_publish(void *ctx, const struct sink_publish *p)
{
	(void)ctx;
	if ((p->conn_id & ((UINT64_C(1) << 56) - 1)) == 0) {
		/* A will (state_hooks.c hooks_will()): its connection is gone;
		 * the worker's own id, nobody waiting (seq 0), the payload every
		 * CONNECT of the model gives its will. */
		MODEL_CHECK(conn_worker(p->conn_id) == p->worker && p->worker < br->n_workers,
			    "sink: a will on w%d with the id of w%d", p->worker,
			    conn_worker(p->conn_id));
		MODEL_CHECK(p->seq == 0 && p->m->payload_len == 4 &&
				    memcmp(p->m->payload, "gone", 4) == 0,
			    "sink: a publish from an unknown connection");
		return sink_mode;
	}
	struct dev *d = model_dev_by_conn(&md, p->conn_id);

	MODEL_CHECK(d, "sink: a publish from an unknown connection");
	MODEL_CHECK(p->worker == d->worker && conn_worker(p->conn_id) == d->worker,
		    "sink: called on w%d for a connection of w%d", p->worker, d->worker);
	struct client *c = worker_client(&br->workers[p->worker], p->conn_id);
	MODEL_CHECK(c && c->state == CL_ACTIVE, "dev %d: sink called for an inactive connection",
		    d->serial);
	MODEL_CHECK(d->s && (d->s->id_len == 0 ? p->clientid_len > 0 &&
			     (!d->assigned || (p->clientid_len == strlen(d->assigned) &&
					       memcmp(p->clientid, d->assigned, p->clientid_len) == 0))
			     : p->clientid_len == d->s->id_len &&
			       memcmp(p->clientid, d->s->id, d->s->id_len) == 0),
		    "dev %d: sink given client id \"%.*s\"", d->serial, (int)p->clientid_len,
		    p->clientid);
	MODEL_CHECK(model_dev_published(d, p->m), "dev %d: sink given a message it did not publish",
		    d->serial);
	MODEL_CHECK((p->seq == 0) == (p->m->qos == 0), "dev %d: sink seq %u for QoS %u", d->serial,
		    p->seq, p->m->qos);
	for (size_t i = 0; p->seq && i < d->n_recs; i++)
		MODEL_CHECK(d->recs[i]->seq < p->seq, "dev %d: sink given seq %u after seq %u",
			    d->serial, p->seq, d->recs[i]->seq);
	if (sink_mode == SINK_BUSY || p->seq == 0)
		return sink_mode;
	/* Bytes the broker has sent d so far: read, in our socket, in obuf. */
	int queued = 0;
	if (d->fd >= 0 && ioctl(d->fd, FIONREAD, &queued) < 0)
		queued = 0;
	uint64_t sent = d->rx_bytes + (uint64_t)queued + buf_used(&c->obuf);
	model_rec_new(&md, d, p->seq, ack_pid(c, p->seq), sent, p->m,
		      sink_mode == SINK_DONE ? REC_OK : REC_PENDING);
	return sink_mode;
}

static void dev_close(struct dev *d)
{
	if (d->fd < 0)
		return;
	close(d->fd);
	d->fd = -1;
	d->closed_by_us = true;
}

/* A new device in slot k, accepted on worker wi as worker.c's on_accept()
 * would (minus the admission checks, which are not under test here). */
static struct dev *dev_open(int k, int wi)
{
	struct worker *w = &br->workers[wi];
	struct net_peer peer = { .loopback = true };
	int sv[2];

	if (slot[k])
		dev_close(slot[k]);
	slot[k] = NULL;
	if (md.n_devs >= MAX_DEVS)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	struct dev *d = model_dev_new(&md, sv[0], wi);
	snprintf(peer.str, sizeof(peer.str), "fuzz:%d", d->serial);
	d->opened_ms = fake_now;
	w->now_ms = util_now_ms();
	atomic_fetch_add(&br->n_connections, 1);
	struct client *c = client_new(w, sv[1], 0, &peer, false);
	if (!c) {
		atomic_fetch_sub(&br->n_connections, 1);
		dev_close(d);
		return NULL;
	}
	d->conn_id = c->conn_id;
	slot[k] = d;
	return d;
}

static struct dev *dev_at(int k)
{
	return slot[k] ? slot[k] : dev_open(k, k & 1);
}

/* Writes p[0..n): the first `split` bytes now, the rest before the next write. */
static void dev_write(struct dev *d, const uint8_t *p, size_t n, size_t split)
{
	if (!d || d->fd < 0 || d->shut_wr)
		return;
	if (buf_append(&d->unsent, buf_head(&d->held), buf_used(&d->held)) < 0 ||
	    buf_append(&d->unsent, p, split) < 0)
		abort();
	buf_reset(&d->held);
	if (buf_append(&d->held, p + split, n - split) < 0)
		abort();
	flush_unsent(d);
}

static void write_packet(int k, struct buf *b, bool split)
{
	size_t n = buf_used(b);
	dev_write(dev_at(k), buf_head(b), n, split ? n / 2 : n);
}

static void op_connect(struct input *in, int k, bool split, struct buf *b)
{
	static const char *const ids[4] = { "A", "A", "B", "" };
	static const uint16_t keepalives[4] = { 0, 1, 5, 60 };
	static const uint8_t levels[4] = { 4, 4, 3, 5 };
	uint8_t a = in_u8(in), x = in_u8(in);
	const char *id = ids[a & 3], *wt = conn_topics[x >> 3 & 7];
	struct mqtt_connect c = {
		.level = levels[a >> 6], .clean = a & 4, .keepalive = keepalives[a >> 3 & 3],
		.client_id = { (const uint8_t *)id, (uint16_t)strlen(id) },
		.will = a & 32, .will_qos = x & 3, .will_retain = x & 4,
		.will_topic = { (const uint8_t *)wt, (uint16_t)strlen(wt) },
		.will_payload = { (const uint8_t *)"gone", 4 },
	};
	if (!c.will)
		c.will_topic = c.will_payload = (struct mqtt_str){ 0 };
	/* Level 5: one more byte chooses the properties (conn_ops.h). */
	uint8_t pb[64], wb[32];
	struct mqtt_pw pw, ww;
	mqtt_pw_init(&pw, pb, sizeof(pb));
	mqtt_pw_init(&ww, wb, sizeof(wb));
	if (c.level == 5) {
		static const uint32_t expiries[4] = { 0, 0, 10, 0xffffffffu };
		uint8_t v = in_u8(in);
		if (v & 3)
			mqtt_pw_int(&pw, MQTT_P_SESSION_EXPIRY, expiries[v & 3]);
		if (v & 4)
			mqtt_pw_int(&pw, MQTT_P_RECEIVE_MAXIMUM, 2);
		if (v & 8)
			mqtt_pw_pair(&pw, "k", 1, "v", 1);
		if (v & 16)
			mqtt_pw_int(&pw, MQTT_P_REQUEST_PROBLEM_INFO, 0);
		if (v & 32) {
			mqtt_pw_int(&ww, MQTT_P_WILL_DELAY, 1);
			mqtt_pw_int(&ww, MQTT_P_MESSAGE_EXPIRY, 60);
		}
		if (v & 64)
			mqtt_pw_int(&pw, MQTT_P_MAXIMUM_PACKET_SIZE, 64);
		if (v & 128)
			mqtt_pw_int(&pw, MQTT_P_TOPIC_ALIAS_MAXIMUM, 3);
		c.props = mqtt_pw_props(&pw);
		if (c.will)
			c.will_props = mqtt_pw_props(&ww);
	}
	if (mqtt_encode_connect(b, &c) == MQTT_OK)
		write_packet(k, b, split);
}

/* The level device k's packets are encoded at: its CONNECT's (as far as
 * the model parsed it), 4 before. */
static uint8_t dev_level(int k)
{
	return slot[k] && slot[k]->level == 5 ? 5 : 4;
}

static void op_publish(struct input *in, int k, bool split, struct buf *b, bool big, bool v5)
{
	uint8_t a = in_u8(in), x = in_u8(in);
	const char *t = conn_topics[a >> 4 & 7];
	uint8_t fill[2048];
	struct mqtt_publish p = {
		.qos = a & 3, .retain = !big && (a & 4), .dup = !big && (a & 8),
		.topic = { (const uint8_t *)t, (uint16_t)strlen(t) },
	};
	size_t got;
	if (big) {
		memset(fill, 'x', sizeof(fill));
		p.payload = fill;
		p.payload_len = (uint32_t)x * 8;
		p.packet_id = 1;
	} else {
		p.payload = in_bytes(in, x >> 3, &got);
		p.payload_len = (uint32_t)got;
		p.packet_id = x & 7;
	}
	if (p.qos == 0)
		p.packet_id = 0;
	/* Level 5 with x & 1: a Topic Alias (1..3) for the topic, the topic
	 * left out when the alias already stands for it on this connection;
	 * plus a Message Expiry and a user property that travel with it. */
	uint8_t pb[32];
	struct mqtt_pw pw;
	mqtt_pw_init(&pw, pb, sizeof(pb));
	if (dev_level(k) == 5 && v5 && !big) {
		uint16_t alias = (uint16_t)((a >> 4 & 7) % 3 + 1), len = 0;
		const char *at = model_alias_topic(slot[k], alias, &len);
		mqtt_pw_int(&pw, MQTT_P_TOPIC_ALIAS, alias);
		mqtt_pw_int(&pw, MQTT_P_MESSAGE_EXPIRY, 60);
		mqtt_pw_pair(&pw, "u", 1, "1", 1);
		if (at && len == p.topic.len && memcmp(at, p.topic.p, len) == 0)
			p.topic.len = 0;
		p.props = mqtt_pw_props(&pw);
	}
	if (mqtt_encode_publish(b, dev_level(k), &p) == MQTT_OK)
		write_packet(k, b, split);
}

static void op_ack(struct input *in, int k, int x, struct buf *b)
{
	struct mqtt_ack a = { 0 };
	uint8_t type;

	if (x == 0) {
		uint8_t v = in_u8(in);
		type = (uint8_t)(MQTT_PUBACK + (v & 3));
		a.packet_id = v >> 2 & 7;
	} else {
		struct owed o;
		if (!slot[k] || !model_owed_next(slot[k], &o))
			return;
		type = o.type;
		a.packet_id = o.pid;
	}
	if (mqtt_encode_ack(b, dev_level(k), type, &a) == MQTT_OK)
		write_packet(k, b, false);
}

static void op_subscribe(struct input *in, int k, bool split, struct buf *b, bool unsub,
			 bool v5)
{
	struct mqtt_str f[2];
	uint8_t opts[2] = { 0, 0 };
	uint8_t a = in_u8(in);
	uint16_t n = unsub ? 1 : (uint16_t)(1 + (a >> 3 & 1));

	for (uint16_t i = 0; i < n; i++) {
		uint8_t v = unsub ? a >> 3 : in_u8(in);
		const char *s = conn_filters[v & 7];
		f[i] = (struct mqtt_str){ (const uint8_t *)s, (uint16_t)strlen(s) };
		opts[i] = v >> 3 & 3;
		/* Level 5 with x & 1: No Local, Retain As Published, Retain
		 * Handling 1 from v's high bits (the model checks only what
		 * is delivered, which these can only reduce or re-flag). */
		if (v5 && dev_level(k) == 5)
			opts[i] |= (uint8_t)((v >> 5 & 1) << 2 | (v >> 6 & 1) << 3 | (v >> 7 & 1) << 4);
	}
	if (mqtt_encode_subscribe(b, dev_level(k), unsub ? MQTT_UNSUBSCRIBE : MQTT_SUBSCRIBE, a & 7, f, opts,
				  n) == MQTT_OK)
		write_packet(k, b, split);
}

static void op_complete(struct input *in, int x)
{
	uint8_t a = in_u8(in);
	size_t n = 0;

	for (size_t i = 0; i < md.n_recs; i++)
		n += md.recs[i]->state == REC_PENDING;
	if (n == 0)
		return;
	n = a % n;
	for (size_t i = 0; i < md.n_recs; i++) {
		struct rec *r = md.recs[i];
		if (r->state != REC_PENDING || n-- > 0)
			continue;
		broker_ack_done(br, r->d->conn_id, r->seq, x != 3, NULL);
		model_rec_complete(&md, r, x != 3);
		return;
	}
}

static void run_op(struct input *in)
{
	uint8_t op = in_u8(in);
	int k = op >> 4 & 3, x = op >> 6;
	bool split = x & 2;
	struct buf b;

	buf_init(&b);
	switch (op & 15) {
	case OP_RAW: {
		size_t got;
		const uint8_t *p = in_bytes(in, in_u8(in), &got);
		dev_write(dev_at(k), p, got, got);
		break;
	}
	case OP_CONNECT:
		op_connect(in, k, split, &b);
		break;
	case OP_PUBLISH:
		op_publish(in, k, split, &b, false, x & 1);
		break;
	case OP_BIG:
		op_publish(in, k, split, &b, true, false);
		break;
	case OP_ACK:
		op_ack(in, k, x, &b);
		break;
	case OP_SUBSCRIBE:
		op_subscribe(in, k, split, &b, false, x & 1);
		break;
	case OP_UNSUBSCRIBE:
		op_subscribe(in, k, false, &b, true, false);
		break;
	case OP_PING:
		if (mqtt_encode_simple(&b, dev_level(k), x & 1 ? MQTT_DISCONNECT : MQTT_PINGREQ) ==
		    MQTT_OK)
			write_packet(k, &b, false);
		break;
	case OP_STEP:
		if (k < 2) {
			step_worker(k);
		} else {
			step_worker(0);
			step_worker(1);
		}
		break;
	case OP_SETTLE:
		settle();
		break;
	case OP_CLOCK:
		fake_now += (int64_t)(in_u8(in) + 1) * 50 * (x & 1 ? 10 : 1);
		break;
	case OP_SINK:
		sink_mode = k % 3 == 0 ? SINK_PENDING : k % 3 == 1 ? SINK_DONE : SINK_BUSY;
		break;
	case OP_COMPLETE:
		op_complete(in, x);
		break;
	case OP_CLOSE:
		if (slot[k] && slot[k]->fd >= 0) {
			if (x & 1) {
				shutdown(slot[k]->fd, SHUT_WR);
				slot[k]->shut_wr = true;
			} else {
				dev_close(slot[k]);
			}
		}
		break;
	case OP_OPEN:
		dev_open(k, x & 1);
		break;
	default:
		break;
	}
	buf_release(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512];
	(void)argc;
	(void)argv;

	if (cfg_parse_string(fuzz_cfg, "/fuzz/conn.cfg", &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_conn: %s\n", err);
		abort();
	}
	util_set_clock(fake_clock_ms);
	log_set_clock(fake_clock_us);
	log_set_level(LVL_DEBUG);
	/* Every log line is formatted (client ids and topics come from the
	 * input); none is kept unless FUZZ_CONN_LOG is set (to replay a crash). */
	if (!getenv("FUZZ_CONN_LOG")) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			abort();
		log_set_fd(fd);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size, 0 };
	struct model_limits lim = {
		.max_packet_size = (uint32_t)cfg->limits.max_packet_size,
		.max_connect_size = (uint32_t)cfg->limits.max_connect_size,
		.max_inflight = (uint32_t)cfg->limits.max_inflight,
		.topic_alias_max = (uint32_t)cfg->limits.topic_alias_maximum,
		.max_client_id_length = (uint32_t)cfg->limits.max_client_id_length,
		.max_topic_length = (uint32_t)cfg->limits.max_topic_length,
		.max_topic_levels = (uint32_t)cfg->limits.max_topic_levels,
	};
	struct broker_sink sink = { .publish = fake_publish };

	fake_now = 1000000;
	sink_mode = SINK_PENDING;
	memset(slot, 0, sizeof(slot));
	model_init(&md, &lim);
	fixed_random = true;
	br = broker_new(cfg);
	fixed_random = false;
	if (!br)
		abort();
	broker_set_sink(br, &sink);
	while (in.off < in.n)
		run_op(&in);
	settle();
	broker_free(br);
	br = NULL;
	model_release(&md);
	return 0;
}
