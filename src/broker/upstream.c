/*
 * upstream.c - upstream brokers: configuration, state and errors,
 * reconnection, the tick, and the session kept across connections; see
 * upstream.h. Connecting (resolve, TCP, TLS, CONNECT) is upstream_connect.c;
 * the packets the upstream sends, upstream_dispatch.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"
#include "transport/tls.h"

/* A connection that lasted this long resets the backoff. */
#define UPSTREAM_STABLE_MS 10000

const char *upstream_state_name(enum upstream_state st)
{
	static const char *const names[] = { "down", "connecting", "up" };
	return (unsigned)st < 3 ? names[st] : "?";
}

/* ---- configuration -------------------------------------------------------- */

static void tls_opts_of(const struct cfg_upstream *u, struct tls_client_opts *o)
{
	*o = (struct tls_client_opts){ .ca = u->tls.ca.path, .cert = u->tls.cert.path,
				       .key = u->tls.key.path };
}

/* The line to blame for a TLS error: the file the message names. */
static int tls_line(const struct cfg_upstream *u, const char *msg)
{
	if (u->tls.ca.path && strstr(msg, u->tls.ca.path))
		return u->tls.ca.line;
	if (u->tls.key.path && strstr(msg, u->tls.key.path))
		return u->tls.key.line;
	if (u->tls.cert.path && strstr(msg, u->tls.cert.path))
		return u->tls.cert.line;
	return u->tls.line;
}

static int check_one(const struct cfg *cfg, const struct cfg_upstream *u, size_t i, char *err,
		     size_t errlen, SSL_CTX **ctx_out)
{
	char e[400];
	const char *p = u->prefix;
	size_t plen = strlen(p);

	if (!mqtt_utf8_valid((const uint8_t *)u->client_id, strlen(u->client_id))) {
		snprintf(err, errlen, "%s:%d: upstreams[%zu].client_id is not valid UTF-8", cfg->path,
			 u->line, i);
		return -1;
	}
	if (plen && (!mqtt_utf8_valid((const uint8_t *)p, plen) || strpbrk(p, "+#"))) {
		snprintf(err, errlen, "%s:%d: upstreams[%zu].prefix must be topic text: valid UTF-8 "
			 "without '+' or '#' (got \"%.64s\")", cfg->path, u->line, i, p);
		return -1;
	}
	for (size_t j = 0; j < u->nsubs; j++) {
		const char *f = u->subs[j].filter;
		if (!mqtt_topic_filter_valid((const uint8_t *)f, strlen(f))) {
			snprintf(err, errlen, "%s:%d: upstreams[%zu].subscriptions[%zu].filter is not a "
				 "valid MQTT topic filter (got \"%.64s\")", cfg->path, u->subs[j].line,
				 i, j, f);
			return -1;
		}
	}
	if (u->password_file.path) {
		size_t len;
		char *pw = upstream_password_read(u->password_file.path, &len);
		if (!pw) {
			snprintf(err, errlen, "%s:%d: upstreams[%zu].password_file: cannot read %s: %s",
				 cfg->path, u->password_file.line, i, u->password_file.path,
				 strerror(errno));
			return -1;
		}
		explicit_bzero(pw, len);
		free(pw);
	}
	if (u->has_tls) {
		struct tls_client_opts o;
		tls_opts_of(u, &o);
		SSL_CTX *ctx = tls_client_ctx_new(&o, e, sizeof(e));
		if (!ctx) {
			snprintf(err, errlen, "%s:%d: upstreams[%zu].tls: %s", cfg->path, tls_line(u, e),
				 i, e);
			return -1;
		}
		if (ctx_out)
			*ctx_out = ctx;
		else
			SSL_CTX_free(ctx);
	}
	return 0;
}

int upstream_check(const struct cfg *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nupstreams; i++)
		if (check_one(cfg, &cfg->upstreams[i], i, err, errlen, NULL) < 0)
			return -1;
	return 0;
}

static int init_one(struct broker *br, struct upstream *up, const struct cfg *cfg, size_t i,
		    char *err, size_t errlen)
{
	const struct cfg_upstream *u = &cfg->upstreams[i];

	up->idx = (int)i;
	up->br = br;
	up->w = &br->workers[i % (size_t)br->n_workers];
	up->cio.fd = -1;
	pthread_mutex_init(&up->err_mu, NULL);
	atomic_init(&up->state, UPSTREAM_DOWN);
	atomic_init(&up->since_ms, util_wall_ms());
	up->rng = (uint64_t)util_wall_ms() * 2654435761u + i + 1;
	if (check_one(cfg, u, i, err, errlen, &up->tls) < 0)
		return -1;
	up->port = u->port;
	up->clean = u->clean_session;
	up->keepalive = (uint16_t)u->keepalive;
	up->required = u->required;
	up->backoff_min_ms = u->reconnect_min_ms;
	up->backoff_max_ms = u->reconnect_max_ms;
	up->prefix_len = (uint16_t)strlen(u->prefix);
	up->nsubs = (uint16_t)u->nsubs;
	up->name = strdup(u->name);
	up->address = strdup(u->address);
	up->client_id = strdup(u->client_id);
	up->prefix = strdup(u->prefix);
	up->server_name = strdup(u->tls.server_name ? u->tls.server_name : u->address);
	up->username = u->username ? strdup(u->username) : NULL;
	up->password_file = u->password_file.path ? strdup(u->password_file.path) : NULL;
	up->filters = calloc(u->nsubs + 1, sizeof(*up->filters));
	up->qos = calloc(u->nsubs + 1, 1);
	up->s = session_new(u->name, (uint16_t)strlen(u->name), false);
	bool oom = !up->name || !up->address || !up->client_id || !up->prefix || !up->server_name ||
		   (u->username && !up->username) || (u->password_file.path && !up->password_file) ||
		   !up->filters || !up->qos || !up->s;
	for (size_t j = 0; !oom && j < u->nsubs; j++) {
		up->qos[j] = (uint8_t)u->subs[j].qos;
		oom = !(up->filters[j] = strdup(u->subs[j].filter));
	}
	if (oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int upstream_init_all(struct broker *br, const struct cfg *cfg, char *err, size_t errlen)
{
	if (cfg->nupstreams == 0)
		return 0;
	br->ups = calloc(cfg->nupstreams, sizeof(*br->ups));
	if (!br->ups) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->nupstreams; i++) {
		br->n_ups++; /* so that upstream_free_all() releases a half-built one */
		if (init_one(br, &br->ups[i], cfg, i, err, errlen) < 0)
			return -1;
	}
	return 0;
}

void upstream_free_all(struct broker *br)
{
	for (int i = 0; i < br->n_ups; i++) {
		struct upstream *up = &br->ups[i];
		/* The workers and their loops are gone: close, do not unregister. */
		up->cio_added = false;
		upstream_connect_abort(up, NULL);
		SSL_CTX_free(up->tls);
		free(up->name);
		free(up->address);
		free(up->client_id);
		free(up->username);
		free(up->password_file);
		free(up->server_name);
		free(up->prefix);
		for (int j = 0; up->filters && j < up->nsubs; j++)
			free(up->filters[j]);
		free(up->filters);
		free(up->qos);
		session_unref(up->s);
		buf_release(&up->topic);
		pthread_mutex_destroy(&up->err_mu);
	}
	free(br->ups);
	br->ups = NULL;
	br->n_ups = 0;
}

/* ---- state, errors, backoff ----------------------------------------------- */

void upstream_set_error(struct upstream *up, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&up->err_mu);
	va_start(ap, fmt);
	vsnprintf(up->last_error, sizeof(up->last_error), fmt, ap);
	va_end(ap);
	up->last_error_ms = util_wall_ms();
	pthread_mutex_unlock(&up->err_mu);
}

void upstream_set_state(struct upstream *up, enum upstream_state st)
{
	atomic_store_explicit(&up->state, st, memory_order_relaxed);
	atomic_store_explicit(&up->since_ms, util_wall_ms(), memory_order_relaxed);
}

void upstream_snapshot(struct upstream *up, struct upstream_snapshot *out)
{
	out->state = atomic_load_explicit(&up->state, memory_order_relaxed);
	out->since_ms = atomic_load_explicit(&up->since_ms, memory_order_relaxed);
	out->inflight = atomic_load_explicit(&up->inflight_n, memory_order_relaxed);
	out->queued = atomic_load_explicit(&up->queued_n, memory_order_relaxed);
	pthread_mutex_lock(&up->err_mu);
	memcpy(out->last_error, up->last_error, sizeof(out->last_error));
	out->last_error_ms = up->last_error_ms;
	pthread_mutex_unlock(&up->err_mu);
}

/* xorshift64*: jitter needs no more. */
static uint64_t rnd(struct upstream *up)
{
	up->rng ^= up->rng >> 12;
	up->rng ^= up->rng << 25;
	up->rng ^= up->rng >> 27;
	return up->rng * 2685821657736338717ull;
}

void upstream_schedule(struct upstream *up)
{
	int64_t now = up->w->now_ms;

	/* A connection that held for a while starts the backoff over. */
	if (up->up_ms && now - up->up_ms >= UPSTREAM_STABLE_MS)
		up->failures = 0;
	up->up_ms = 0;
	int shift = up->failures < 20 ? up->failures : 20;
	int64_t base = (int64_t)up->backoff_min_ms << shift;
	if (base > up->backoff_max_ms)
		base = up->backoff_max_ms;
	/* Half fixed, half random: many gateways restarting together spread out. */
	int64_t delay = base / 2 + (int64_t)(rnd(up) % (uint64_t)(base / 2 + 1));
	up->failures++;
	up->next_ms = now + delay;
	upstream_set_state(up, UPSTREAM_DOWN);
	UP_INC(up, disconnects);
	log_info_rl("upstream down name=%s address=%s port=%d retry_ms=%lld reason=%s", up->name,
		    up->address, up->port, (long long)delay, log_q(up->last_error));
}

/* ---- the worker's tick ----------------------------------------------------- */

static void tick_one(struct upstream *up, int64_t now)
{
	struct client *c = up->c;
	int64_t timeout = LIM(up->br, connect_timeout_ms);
	int st = atomic_load_explicit(&up->state, memory_order_relaxed);

	atomic_store_explicit(&up->inflight_n, up->s->out.n, memory_order_relaxed);
	atomic_store_explicit(&up->queued_n, up->s->queue.n, memory_order_relaxed);
	if (st == UPSTREAM_DOWN) {
		if (!up->w->draining && now >= up->next_ms)
			upstream_connect_start(up);
		return;
	}
	if (st == UPSTREAM_CONNECTING) {
		if (up->resolving)
			upstream_connect_poll(up);
		/* A lookup in progress cannot be cancelled without waiting for it:
		 * the resolver's own timeouts end it, and the poll above then
		 * ends the attempt. */
		if (atomic_load_explicit(&up->state, memory_order_relaxed) != UPSTREAM_CONNECTING ||
		    now - up->attempt_ms <= timeout || up->resolving)
			return;
		if (!up->c) {
			upstream_connect_abort(up, "no connection within connect_timeout");
			upstream_schedule(up);
		} else {
			client_close(up->c, up->c->x ? "no TLS handshake and CONNACK within connect_timeout"
						     : "no CONNACK within connect_timeout", false);
		}
		return;
	}
	/* Up: a packet within every keepalive (MQTT-3.1.2-23), and a PINGREQ
	 * when the server has been quiet that long, so that a dead one shows
	 * (the worker closes after 1.5 keepalives without a byte). */
	int64_t ka = (int64_t)up->keepalive * 1000;
	if (ka > 0 && c && c->state == CL_ACTIVE && now - up->ping_ms >= ka &&
	    (now - c->last_tx_ms >= ka || now - c->last_rx_ms >= ka) && send_pingreq(c) == 0)
		up->ping_ms = now;
}

void upstream_tick(struct worker *w)
{
	struct broker *br = w->br;

	for (int i = 0; i < br->n_ups; i++)
		if (br->ups[i].w == w)
			tick_one(&br->ups[i], w->now_ms);
}

/* ---- closing and commands ----------------------------------------------- */

void upstream_detach(struct client *c, bool was_active)
{
	struct upstream *up = c->up;
	struct session *s = c->s;

	if (was_active)
		send_disconnect(c); /* best effort: client_finish() writes it out */
	if (s) {
		/* Offline, but nothing settles: the window and the queue wait for
		 * the next connection, their tracks still owed (upstream.h). */
		c->s = NULL;
		pthread_spin_lock(&s->mu);
		atomic_store_explicit(&s->owner, -1, memory_order_release);
		s->client = NULL;
		pthread_spin_unlock(&s->mu);
		session_unref(s);
	}
	up->c = NULL;
	up->sub_pid = 0;
	upstream_set_error(up, "%s", c->close_reason ? c->close_reason : "closed");
	upstream_schedule(up);
}

void upstream_inject(struct worker *w, int idx, struct msg *m)
{
	struct upstream *up = &w->br->ups[idx];
	struct client *c = up->c;
	bool owes = m->track != NULL;

	if (owes)
		atomic_fetch_add(&m->track->remaining, 1);
	if (c && c->state == CL_ACTIVE) {
		deliver_client(c, m, m->qos, m->retain, 0);
		return;
	}
	/* Down: QoS 1/2 waits in the session, its track still owed until the
	 * upstream acknowledges it after the reconnect. */
	const char *why = "QoS 0 while the upstream is down";
	if (m->qos > 0) {
		int r = limits_queue_push(w, up->s, msg_ref(m), m->qos, m->retain, owes);
		if (r == 0)
			return;
		msg_unref(m);
		why = r > 0 ? limits_name(r) : "out of memory";
	}
	UP_INC(up, dropped);
	log_warn_rl("upstream command dropped name=%s topic=%s qos=%u reason=%s", up->name,
		    log_q(m->topic), m->qos, log_q(why));
	if (owes)
		msg_track_done(m);
}
