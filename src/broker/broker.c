/* broker.c - the broker's lifecycle, its shared state and the functions
 * that take its locks; see broker.h and broker_int.h. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/limits.h"
#include "broker/listener.h"
#include "broker/retain.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/takeover.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/net.h"
#include "core/util.h"
#include "mqtt/sub_trie.h"
#include "mqtt/topic.h"

void broker_set_limits(struct broker *br, const struct cfg *cfg)
{
	const struct cfg_limits *l = &cfg->limits;
	limits_apply(&br->lim, l);
	atomic_store(&br->lim.max_connections, (unsigned)l->max_connections);
	atomic_store(&br->lim.max_packet_size, (unsigned)l->max_packet_size);
	atomic_store(&br->lim.max_inflight, (unsigned)l->max_inflight);
	atomic_store(&br->lim.max_queued, (unsigned)l->max_queued_messages);
	atomic_store(&br->lim.max_output_bytes, (unsigned)l->max_output_bytes);
	atomic_store(&br->lim.connect_timeout_ms, (unsigned)l->connect_timeout * 1000u);
	atomic_store(&br->lim.max_connections_per_address, (unsigned)l->max_connections_per_address);
	atomic_store(&br->lim.max_connect_rate, (unsigned)l->max_connect_rate);
	atomic_store(&br->lim.packet_timeout_ms, (unsigned)l->packet_timeout * 1000u);
	atomic_store(&br->lim.max_partial_bytes, (unsigned)l->max_partial_bytes);
	atomic_store(&br->lim.mqtt5_reject_when_busy, cfg->mqtt5.reject_when_busy);
	atomic_store(&br->lim.mqtt5_no_match_reason, cfg->mqtt5.no_match_reason);
}

static int broker_init_workers(struct broker *br, const struct cfg *cfg, int n)
{
	int nl = (int)cfg->nlisteners;
	const char *addrs[nl > 0 ? nl : 1];
	int ports[nl > 0 ? nl : 1];

	for (int i = 0; i < nl; i++) {
		addrs[i] = cfg->listeners[i].address;
		ports[i] = cfg->listeners[i].port;
	}
	for (int i = 0; i < n; i++) {
		br->n_workers++; /* so that broker_free() releases a half-built worker */
		if (worker_init(&br->workers[i], br, i, addrs, ports, nl) < 0)
			return -1;
		/* Port 0: every worker must share the port the first one got. */
		if (i == 0)
			for (int j = 0; j < nl; j++) {
				ports[j] = broker_listener_port(br, j);
				listener_set_port(br, j, ports[j]);
			}
	}
	return 0;
}

struct broker *broker_new(const struct cfg *cfg)
{
	char err[512];
	struct broker *br = calloc(1, sizeof(*br));
	if (!br)
		return NULL;
	broker_set_limits(br, cfg);
	if (listener_init_all(br, cfg, err, sizeof(err)) < 0) {
		log_error("listener setup failed reason=%s", log_q(err));
		listener_free_all(br);
		free(br);
		return NULL;
	}
	pthread_rwlock_init(&br->subs_lock, NULL);
	pthread_mutex_init(&br->retain_lock, NULL);
	pthread_mutex_init(&br->dir_lock, NULL);
	TAILQ_INIT(&br->parked);
	br->subs = sub_trie_new();
	br->retained = retain_new();
	br->shared = shared_new();
	if (!br->subs || !br->retained || !br->shared || session_dir_init(&br->dir) < 0)
		goto fail;

	int n = cfg->workers;
	if (n <= 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		n = cores > 0 ? (int)cores : 1;
	}
	br->workers = calloc((size_t)n, sizeof(*br->workers));
	if (!br->workers || broker_init_workers(br, cfg, n) < 0)
		goto fail;
	if (!(br->auth = auth_new(br, cfg)))
		goto fail;
	if (upstream_init_all(br, cfg, err, sizeof(err)) < 0) {
		log_error("upstream setup failed reason=%s", log_q(err));
		goto fail;
	}
	return br;
fail:
	broker_free(br);
	return NULL;
}

int broker_listener_port(const struct broker *br, int i)
{
	if (br->n_workers == 0 || i >= br->workers[0].n_lis)
		return -1;
	return net_local_port(br->workers[0].lis[i].io.fd);
}

int broker_start(struct broker *br)
{
	for (int i = 0; i < br->n_workers; i++)
		if (worker_start(&br->workers[i]) < 0)
			return -1;
	return 0;
}

static void drain_worker(void *arg, struct worker *w)
{
	(void)arg;
	w->draining = true;
	for (int i = 0; i < w->n_lis; i++)
		loop_io_del(w->loop, &w->lis[i].io);
	struct client *c;
	LIST_FOREACH(c, &w->clients, link)
		client_update_read(c);
}

void broker_drain(struct broker *br)
{
	struct inbox_item it = { .kind = INBOX_CALL, .p1 = (void *)drain_worker };
	for (int i = 0; i < br->n_workers; i++)
		worker_post(&br->workers[i], &it);
}

void broker_stop(struct broker *br)
{
	struct inbox_item it = { .kind = INBOX_STOP };
	for (int i = 0; i < br->n_workers; i++)
		worker_post(&br->workers[i], &it);
	for (int i = 0; i < br->n_workers; i++)
		worker_join(&br->workers[i]);
}

void broker_free(struct broker *br)
{
	if (!br)
		return;
	auth_stop(br->auth); /* its threads post to the workers' inboxes */
	for (int i = 0; i < br->n_workers; i++)
		worker_release(&br->workers[i]);
	free(br->workers);
	upstream_free_all(br); /* their connections are finished */
	auth_free(br->auth);
	if (br->dir.b) {
		/* Break the trie's references first, then the directory's. */
		pthread_mutex_lock(&br->dir_lock);
		for (size_t i = 0; i < br->dir.nb; i++)
			for (struct session *s = br->dir.b[i]; s; s = s->dir_next)
				broker_discard_session(br, s);
		pthread_mutex_unlock(&br->dir_lock);
		session_dir_release(&br->dir);
		session_heap_release(&br->timers);
	}
	shared_free(br->shared);
	sub_trie_free(br->subs);
	retain_free(br->retained);
	listener_free_all(br);
	pthread_rwlock_destroy(&br->subs_lock);
	pthread_mutex_destroy(&br->retain_lock);
	pthread_mutex_destroy(&br->dir_lock);
	free(br);
}

int broker_inject(struct broker *br, struct msg *m)
{
	uint32_t h = hash_bytes(hash_process_seed(), m->topic, m->topic_len);
	struct inbox_item it = { .kind = INBOX_INJECT, .p1 = m };
	if (worker_post(&br->workers[h % (uint32_t)br->n_workers], &it) < 0) {
		msg_track_done(m);
		msg_unref(m);
		return -1;
	}
	return 0;
}

int broker_upstream_find(const struct broker *br, const char *name)
{
	for (int i = 0; i < br->n_ups; i++)
		if (strcmp(br->ups[i].name, name) == 0)
			return i;
	return -1;
}

int broker_inject_upstream(struct broker *br, int idx, struct msg *m)
{
	assert(idx >= 0 && idx < br->n_ups);
	struct inbox_item it = { .kind = INBOX_INJECT, .p1 = m, .u = (uint64_t)idx + 1 };
	if (worker_post(br->ups[idx].w, &it) < 0) {
		msg_track_done(m);
		msg_unref(m);
		return -1;
	}
	return 0;
}

void broker_discard_session(struct broker *br, struct session *s)
{
	uint32_t unrefs = 0, pos = 0;

	atomic_store(&s->discarded, true);
	takeover_unlist(br, s);
	shared_session_end(br, s);
	pthread_rwlock_wrlock(&br->subs_lock);
	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));)
		unrefs += sub_trie_remove(br->subs, e->filter, e->len, s) == 1;
	pthread_rwlock_unlock(&br->subs_lock);
	/* The trie's references: never the last, the caller holds one. */
	while (unrefs--)
		session_unref(s);
	session_subs_release(&s->subs);
	pthread_spin_lock(&s->mu);
	mqueue_release(&s->queue);
	pthread_spin_unlock(&s->mu);
}

int broker_check(const struct cfg *cfg, char *err, size_t errlen)
{
	if (listener_check(cfg, err, errlen) < 0 || upstream_check(cfg, err, errlen) < 0)
		return -1;
	return auth_check(cfg, err, errlen);
}

int broker_reload(struct broker *br, const struct cfg *cfg, char *err, size_t errlen)
{
	broker_set_limits(br, cfg);
	auth_reload(br->auth, cfg);
	return listener_reload(br, cfg, err, errlen);
}

void broker_set_sink(struct broker *br, const struct broker_sink *sink)
{
	br->sink = sink ? *sink : (struct broker_sink){ 0 };
}

int broker_n_workers(const struct broker *br)
{
	return br->n_workers;
}

bool broker_healthy(const struct broker *br)
{
	return !atomic_load(&br->failed);
}

bool broker_alive(const struct broker *br, int64_t max_silence_ms)
{
	int64_t now = util_now_ms();
	for (int i = 0; i < br->n_workers; i++)
		if (now - atomic_load(&br->workers[i].heartbeat_ms) > max_silence_ms)
			return false;
	return true;
}

void broker_count_reload(struct broker *br, bool applied)
{
	atomic_fetch_add(applied ? &br->reloads : &br->reload_failures, 1);
}

void broker_ack_done(struct broker *br, uint64_t conn_id, uint32_t seq, bool ok,
		     struct reclaim_node *n)
{
	int w = conn_worker(conn_id);
	struct inbox_item it = { .kind = INBOX_ACK, .a = ok, .c = seq, .u = conn_id,
				 .p1 = n, .v = lathist_now() };

	assert(w < br->n_workers && seq != 0);
	/* Only ENOMEM fails here: the publisher then waits for its keepalive or
	 * the close that a later failure brings; nothing is acknowledged. */
	if (worker_post(&br->workers[w], &it) < 0) {
		log_error_rl("ack lost conn=%llx seq=%u reason=\"out of memory\"",
			     (unsigned long long)conn_id, seq);
		if (n)
			reclaim_push(&br->workers[w].reclaim, n);
	}
}

void broker_reclaim(struct broker *br, uint64_t conn_id, struct reclaim_node *n)
{
	int w = conn_worker(conn_id);
	assert(w < br->n_workers);
	reclaim_push(&br->workers[w].reclaim, n);
}

int broker_subscribe(struct broker *br, struct session *s, const char *filter, uint16_t len,
		     uint32_t opts)
{
	if (shared_is(filter, len))
		return shared_subscribe(br, s, filter, len, opts);
	/* The write lock covers the trie change only. */
	pthread_rwlock_wrlock(&br->subs_lock);
	int r = sub_trie_add(br->subs, filter, len, s, opts);
	if (r == 1)
		session_ref(s);
	pthread_rwlock_unlock(&br->subs_lock);
	if (r < 0)
		return -1;
	if (session_subs_add(&s->subs, filter, len, opts) < 0) {
		/* Only a new entry is taken back: a replaced one keeps the new
		 * options in the trie, which is what the client asked for. */
		if (r == 1) {
			pthread_rwlock_wrlock(&br->subs_lock);
			int d = sub_trie_remove(br->subs, filter, len, s);
			pthread_rwlock_unlock(&br->subs_lock);
			if (d == 1)
				session_unref(s);
		}
		return -1;
	}
	return r;
}

bool broker_unsubscribe(struct broker *br, struct session *s, const char *filter, uint16_t len)
{
	if (shared_is(filter, len))
		return shared_unsubscribe(br, s, filter, len);
	/* The session's set mirrors its trie entries: a filter it does not
	 * hold needs neither the lock nor a trie walk. */
	if (!session_subs_del(&s->subs, filter, len))
		return false;
	pthread_rwlock_wrlock(&br->subs_lock);
	int r = sub_trie_remove(br->subs, filter, len, s);
	pthread_rwlock_unlock(&br->subs_lock);
	if (r == 1)
		session_unref(s);
	return true;
}

void broker_subs_stats(struct broker *br, size_t *count, size_t *bytes)
{
	pthread_rwlock_rdlock(&br->subs_lock);
	*count = sub_trie_count(br->subs);
	*bytes = sub_trie_bytes(br->subs);
	pthread_rwlock_unlock(&br->subs_lock);
}

void broker_session_counts(struct broker *br, int64_t *total, int64_t *online)
{
	*total = (int64_t)atomic_load_explicit(&br->dir.n, memory_order_relaxed);
	*online = atomic_load_explicit(&br->sessions_online, memory_order_relaxed);
}

struct retained_batch {
	struct msg **m;
	size_t n, cap;
	bool oom;
};

static void collect_retained(struct msg *m, void *ud)
{
	struct retained_batch *b = ud;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct msg **n = realloc(b->m, cap * sizeof(*n));
		if (!n) {
			b->oom = true;
			return;
		}
		b->m = n;
		b->cap = cap;
	}
	b->m[b->n++] = msg_ref(m);
}

int broker_retained_foreach(struct broker *br, const char *filter, uint16_t len,
			    void (*fn)(struct msg *m, void *ud), void *ud)
{
	struct retained_batch b = { 0 };
	size_t expired = 0;

	/* Copied out under the lock, delivered outside it. */
	pthread_mutex_lock(&br->retain_lock);
	retain_match(br->retained, filter, len, collect_retained, &b);
	pthread_mutex_unlock(&br->retain_lock);
	int64_t now = b.n ? util_wall_ms() : 0;
	for (size_t i = 0; i < b.n; i++) {
		/* An expired one is still handed to fn, whose send drops and
		 * counts it [MQTT-3.3.2-5]; it leaves the store below. */
		if (deliver_expired(b.m[i], now))
			b.m[expired++] = msg_ref(b.m[i]);
		fn(b.m[i], ud);
		msg_unref(b.m[i]);
	}
	if (expired) {
		pthread_mutex_lock(&br->retain_lock);
		for (size_t i = 0; i < expired; i++)
			retain_del(br->retained, b.m[i]);
		pthread_mutex_unlock(&br->retain_lock);
		for (size_t i = 0; i < expired; i++)
			msg_unref(b.m[i]);
	}
	free(b.m);
	return b.oom ? -1 : 0;
}

static void retain_refused(struct broker *br, const struct msg *m, enum limit_kind k)
{
	atomic_fetch_add_explicit(&br->limit_hits[k], 1, memory_order_relaxed);
	/* No client at hand (a will, a downlink record): rate-limited only. */
	log_warn_rl("retained message not stored topic=%s bytes=%u limit=%s", log_q(m->topic),
		    m->payload_len, limits_name(k));
}

int broker_retain(struct broker *br, struct msg *m, bool hook)
{
	/* Client topics were checked on arrival; downlink topics come from
	 * templates and are checked here. */
	int t = topic_check_limits(m->topic, m->topic_len, LIM(br, max_topic_length),
				   LIM(br, max_topic_levels));
	if (t != TOPIC_OK && m->payload_len > 0) {
		retain_refused(br, m, t == TOPIC_ERR_TOO_LONG ? LIMIT_TOPIC_LENGTH
							       : LIMIT_TOPIC_LEVELS);
		return -1;
	}
	/* The store keeps an untracked copy: deliveries from it owe nothing. */
	struct msg *rm = m->track ? msg_clone(m, m->qos, true) : msg_ref(m);
	int r = -1;
	if (rm) {
		pthread_mutex_lock(&br->retain_lock);
		r = retain_set_capped(br->retained, rm, LIM(br, max_retained_messages),
				      LIM(br, max_retained_bytes));
		pthread_mutex_unlock(&br->retain_lock);
		/* Outside the lock; the untracked copy, so that what the state
		 * layer keeps holds no downlink commit back. */
		if (r == 0 && hook && br->st && br->st->retained)
			br->st->retained(br->st->ctx, rm);
		msg_unref(rm);
	}
	if (r == RETAIN_FULL_COUNT)
		retain_refused(br, m, LIMIT_RETAINED_MESSAGES);
	else if (r == RETAIN_FULL_BYTES)
		retain_refused(br, m, LIMIT_RETAINED_BYTES);
	else if (r < 0)
		log_warn_rl("retain failed topic=%s reason=\"out of memory\"", log_q(m->topic));
	return r == 0 ? 0 : -1;
}

void broker_retained_stats(struct broker *br, size_t *count, size_t *bytes)
{
	pthread_mutex_lock(&br->retain_lock);
	*count = retain_count(br->retained);
	*bytes = retain_bytes(br->retained);
	pthread_mutex_unlock(&br->retain_lock);
}
