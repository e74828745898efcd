/* broker.c - shared broker state and the publish path; see broker.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "broker/client.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/net.h"
#include "broker/retain.h"
#include "broker/session.h"
#include "mqtt/sub_trie.h"
#include "broker/worker.h"

void broker_set_limits(struct broker *br, const struct cfg *cfg)
{
	const struct cfg_limits *l = &cfg->limits;
	atomic_store(&br->lim.max_connections, (unsigned)l->max_connections);
	atomic_store(&br->lim.max_packet_size, (unsigned)l->max_packet_size);
	atomic_store(&br->lim.max_inflight, (unsigned)l->max_inflight);
	atomic_store(&br->lim.max_queued, (unsigned)l->max_queued_messages);
	atomic_store(&br->lim.max_output_bytes, (unsigned)l->max_output_bytes);
	atomic_store(&br->lim.connect_timeout_ms, (unsigned)l->connect_timeout * 1000u);
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
			for (int j = 0; j < nl; j++)
				ports[j] = broker_listener_port(br, j);
	}
	return 0;
}

struct broker *broker_new(const struct cfg *cfg)
{
	struct broker *br = calloc(1, sizeof(*br));
	if (!br)
		return NULL;
	broker_set_limits(br, cfg);
	pthread_rwlock_init(&br->subs_lock, NULL);
	pthread_mutex_init(&br->retain_lock, NULL);
	pthread_mutex_init(&br->dir_lock, NULL);
	br->subs = sub_trie_new();
	br->retained = retain_new();
	if (!br->subs || !br->retained || session_dir_init(&br->dir) < 0)
		goto fail;

	int n = cfg->workers;
	if (n <= 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		n = cores > 0 ? (int)cores : 1;
	}
	br->workers = calloc((size_t)n, sizeof(*br->workers));
	if (!br->workers || broker_init_workers(br, cfg, n) < 0)
		goto fail;
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
	for (struct client *c = w->clients; c; c = c->next)
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
	for (int i = 0; i < br->n_workers; i++)
		worker_release(&br->workers[i]);
	free(br->workers);
	if (br->dir.b) {
		/* Break the trie's references first, then the directory's. */
		pthread_mutex_lock(&br->dir_lock);
		for (size_t i = 0; i < br->dir.nb; i++)
			for (struct session *s = br->dir.b[i]; s; s = s->dir_next)
				broker_discard_session(br, s);
		pthread_mutex_unlock(&br->dir_lock);
		session_dir_release(&br->dir);
	}
	sub_trie_free(br->subs);
	retain_free(br->retained);
	pthread_rwlock_destroy(&br->subs_lock);
	pthread_mutex_destroy(&br->retain_lock);
	pthread_mutex_destroy(&br->dir_lock);
	free(br);
}

int broker_inject(struct broker *br, struct msg *m)
{
	uint64_t h = 1469598103934665603ull;
	for (uint16_t i = 0; i < m->topic_len; i++)
		h = (h ^ (uint8_t)m->topic[i]) * 1099511628211ull;
	struct inbox_item it = { .kind = INBOX_INJECT, .p1 = m };
	if (worker_post(&br->workers[h % (uint64_t)br->n_workers], &it) < 0) {
		msg_track_done(m);
		msg_unref(m);
		return -1;
	}
	return 0;
}

void broker_discard_session(struct broker *br, struct session *s)
{
	atomic_store(&s->discarded, true);
	pthread_rwlock_wrlock(&br->subs_lock);
	for (uint32_t i = 0; i < s->n_subs; i++)
		if (sub_trie_remove(br->subs, s->subs[i].filter, s->subs[i].len, s) == 1)
			session_unref(s);
	pthread_rwlock_unlock(&br->subs_lock);
	pthread_spin_lock(&s->mu);
	mqueue_release(&s->queue);
	pthread_spin_unlock(&s->mu);
}

static void collect_match(void *owner, uint32_t qos, void *ud)
{
	struct worker *w = ud;
	if (w->n_matches == w->cap_matches) {
		size_t cap = w->cap_matches ? w->cap_matches * 2 : 64;
		struct match *m = realloc(w->matches, cap * sizeof(*m));
		if (!m)
			return;
		w->matches = m;
		w->cap_matches = cap;
	}
	w->matches[w->n_matches++] = (struct match){ session_ref(owner), (uint8_t)qos };
}

static int cmp_match(const void *a, const void *b)
{
	const struct match *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

void broker_publish(struct worker *w, struct msg *m)
{
	struct broker *br = w->br;

	if (m->retain) {
		/* The store keeps an untracked copy: deliveries from it owe nothing. */
		struct msg *rm = m->track ? msg_clone(m, m->qos, true) : msg_ref(m);
		int r = -1;
		if (rm) {
			pthread_mutex_lock(&br->retain_lock);
			r = retain_set(br->retained, rm);
			pthread_mutex_unlock(&br->retain_lock);
			msg_unref(rm);
		}
		if (r < 0)
			log_warn("retain failed topic=%s reason=\"out of memory\"", m->topic);
	}

	w->n_matches = 0;
	pthread_rwlock_rdlock(&br->subs_lock);
	sub_trie_match(br->subs, m->topic, m->topic_len, collect_match, w);
	pthread_rwlock_unlock(&br->subs_lock);

	size_t n = w->n_matches;
	/* Overlapping subscriptions: one copy per session at the highest QoS. */
	if (n > 1) {
		qsort(w->matches, n, sizeof(*w->matches), cmp_match);
		size_t k = 0;
		for (size_t i = 1; i < n; i++) {
			if (w->matches[i].s == w->matches[k].s) {
				if (w->matches[i].qos > w->matches[k].qos)
					w->matches[k].qos = w->matches[i].qos;
				session_unref(w->matches[i].s);
			} else {
				w->matches[++k] = w->matches[i];
			}
		}
		n = k + 1;
	}
	if (m->track)
		atomic_fetch_add(&m->track->remaining, (int)n);
	for (size_t i = 0; i < n; i++) {
		struct match *mt = &w->matches[i];
		broker_deliver(w, mt->s, m, m->qos < mt->qos ? m->qos : mt->qos, false);
		session_unref(mt->s);
	}
	w->n_matches = 0;
}

void broker_deliver(struct worker *w, struct session *s, struct msg *m, uint8_t qos, bool retain)
{
	struct broker *br = w->br;

	/* Only this worker can move a session away from itself: no lock. */
	if (atomic_load_explicit(&s->owner, memory_order_acquire) == w->idx) {
		client_deliver(s->client, m, qos, retain);
		return;
	}
	/* Reading the owner and posting to its inbox happen under mu, so a
	 * takeover (which parks under mu, then fences that inbox) sees every
	 * delivery posted before it: messages to one session keep their order. */
	pthread_spin_lock(&s->mu);
	int owner = atomic_load_explicit(&s->owner, memory_order_acquire);
	/* Parked but not settled: queue behind what the old owner still holds. */
	if (owner < 0 && s->settling && s->last_owner != w->idx) {
		owner = s->last_owner;
		s->late++;
	}
	if (owner >= 0) {
		struct inbox *ib = &br->workers[owner].inbox;
		bool drop = false;
		if (inbox_depth(ib) > INBOX_SOFT_CAP) {
			/* The owner is behind: slow our publishers down. */
			w->backlogged = true;
			drop = qos == 0;
		}
		struct inbox_item it = { .kind = INBOX_DELIVER, .a = qos, .b = retain,
					 .p1 = session_ref(s), .p2 = msg_ref(m) };
		if (drop || worker_post(&br->workers[owner], &it) < 0) {
			pthread_spin_unlock(&s->mu);
			session_unref(s);
			msg_unref(m);
			STAT_INC(w, qos0_dropped);
			msg_track_done(m);
			return;
		}
		pthread_spin_unlock(&s->mu);
		return;
	}
	/* Offline: QoS 0 is not kept for absent clients (MQTT-3.1.2-5 allows either).
	 * A tracked message counts as delivered once queued here. */
	uint64_t dropped = 0;
	if (qos > 0 && !atomic_load(&s->discarded) &&
	    mqueue_push(&s->queue, msg_ref(m), qos, retain, false, LIM(br, max_queued)) < 0) {
		msg_unref(m);
		dropped = ++s->queue_dropped;
		STAT_INC(w, queue_dropped);
	}
	pthread_spin_unlock(&s->mu);
	/* Logged outside the lock (no I/O under it), at 1, 2, 4, 8... drops;
	 * s->id never changes, so reading it unlocked is safe. */
	if (dropped && (dropped & (dropped - 1)) == 0)
		log_warn("offline queue full client=%s topic=%s dropped=%llu", s->id, m->topic,
			 (unsigned long long)dropped);
	msg_track_done(m);
}
