/*
 * state_owner.c - wills and expiry of sessions whose instance died.
 *
 * Every session record in <prefix>.sessions names the instance that owns it
 * (and that instance's boot). When that instance dies, somebody must
 * publish the wills of its devices once, and end its expired sessions;
 * "somebody" must be exactly one surviving instance per session, chosen
 * through Kafka, with no protocol of our own.
 *
 * The choice: a consumer group <prefix>.owners subscribed to
 * <prefix>.sessions. Kafka's group coordinator splits the partitions of the
 * sessions topic among the live instances; the partitions assigned here are
 * ours to watch. The consumer is used for its assignment only: every
 * assigned partition is paused at once (and starts at the end), it fetches
 * nothing that matters and commits nothing. The sessions themselves are
 * read by the state reader (state.c), which every instance runs over every
 * partition: this file only looks at that view.
 *
 * A session in a watched partition whose owner is not alive
 * (state_instance_alive(): no heartbeat, "up" or "down", within
 * state.lease_ms), or whose record was written by an earlier boot of its owner (the
 * owner restarted), and that is online or parked, is adopted:
 * state_sessions_adopt() writes an adopt record (the epoch moves here, so
 * a late write of the dead owner is stale), restores the session here and
 * publishes its will once (a "will" record first), or ends it when it
 * expired. Once the adopt record is read back the session's owner is this
 * instance, alive: it stops being a candidate.
 *
 * Time to a will after a crash: the dead instance's heartbeats stop; after
 * lease_ms it is not alive; the partitions it watched itself move after the
 * group's session.timeout.ms (max(lease_ms, 6000): brokers refuse less than
 * group.min.session.timeout.ms, 6 s by default); then the next scan (every
 * OWNER_SCAN_MS) adopts. So max(lease_ms, 6 s) + about a second.
 *
 * Safety: nothing is adopted while this instance is not ready (state_ready:
 * caught up, and our own view of the state topics within the lease), nor
 * during the first lease_ms after it became ready: an instance cut off
 * from Kafka would otherwise see every other instance as dead, and after an
 * outage all lived through, the first one back would take the sessions of
 * the others before their heartbeats are back. Two watchers for one partition for a short while (a rebalance in
 * flight, a watcher cut off) both adopting is harmless for the session:
 * Kafka orders the adopt records and the later one's epoch wins; the will
 * is written as a "will" record before it is published, and the sessions
 * module publishes a will only from a session that still carries one.
 *
 * Threads: the consumer has its own thread (rebalance callbacks are served
 * by its poll); the scan runs in state_owner_tick() on the state reader
 * thread, where the sessions view lives. The set of watched partitions is
 * shared under a mutex held only to copy it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/prom.h"
#include "kafka/kafka_conf.h"
#include "state/state_int.h"

/* The scan of the watched partitions: this often (tick runs every 100 ms). */
#define OWNER_SCAN_MS 1000
/* At most this many adopts per scan: a dead instance with 100,000 sessions
 * is taken over in steps, not with one burst that fills the producer. */
#define OWNER_ADOPT_PER_SCAN 5000
/* Candidates remembered between scans (retry pacing, grace): at most. */
#define OWNER_TRACK_MAX (1u << 17)
/* The owners consumer polls this long: the latency of a rebalance. */
#define OWNER_POLL_MS 200
/* The most sessions partitions we can watch (state.partitions max). */
#define OWNER_MAX_PARTS 10000

/* One candidate remembered across scans, by the hash of its client id. */
struct track {
	uint64_t h;          /* 0 = empty slot */
	int64_t first_ms;    /* monotonic: first scan that saw it a candidate */
	int64_t adopted_ms;  /* monotonic: last state_sessions_adopt(); 0 = never */
};

struct state_owner {
	struct state *st;
	rd_kafka_t *rk;
	pthread_t thread;
	bool started;
	atomic_bool stop;

	/* The assignment: watched[p] for sessions partition p. Written by the
	 * consumer thread (rebalance), copied by the tick. */
	pthread_mutex_t mu;
	bool *watched;
	int32_t nparts;

	/* The tick's own state (reader thread only). */
	bool *scan_parts;        /* copy of watched for one scan */
	int64_t next_scan_ms;
	int64_t ready_since_ms;  /* monotonic; 0 = not ready at the last tick */
	struct track *tab, *tab_new;
	size_t tab_cap, tab_len, new_cap, new_len;
	/* One scan's context. */
	int64_t now_ms;
	unsigned adopts_this_scan;
	atomic_ullong adopts_total;    /* relaxed: read by /metrics */
	atomic_ullong rebalances;      /* assignments and revocations */
	bool scan_full;          /* the adopt budget ran out */
};

/* --- the assignment (consumer thread) ------------------------------------- */

static void set_watched(struct state_owner *so, const rd_kafka_topic_partition_list_t *parts,
			bool on)
{
	int beyond = 0;
	pthread_mutex_lock(&so->mu);
	for (int i = 0; parts && i < parts->cnt; i++) {
		int32_t p = parts->elems[i].partition;
		if (p >= 0 && p < so->nparts)
			so->watched[p] = on;
		else
			beyond++;
	}
	pthread_mutex_unlock(&so->mu);
	/* A topic made elsewhere with more partitions than state.partitions
	 * allows: said, not silently unwatched. */
	if (beyond && on)
		log_warn("state owners partitions not watched count=%d max=%d", beyond,
			 (int)so->nparts);
}

static void clear_watched(struct state_owner *so)
{
	pthread_mutex_lock(&so->mu);
	memset(so->watched, 0, (size_t)so->nparts * sizeof(bool));
	pthread_mutex_unlock(&so->mu);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct state_owner *so = opaque;
	/* NULL while no protocol is chosen (a close before the first join). */
	const char *proto = rd_kafka_rebalance_protocol(rk);
	bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
	rd_kafka_error_t *e = NULL;

	atomic_fetch_add_explicit(&so->rebalances, 1, memory_order_relaxed);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		/* Start at the end and pause: the records are read by the state
		 * reader; this consumer exists for its assignment only. */
		for (int i = 0; i < parts->cnt; i++)
			parts->elems[i].offset = RD_KAFKA_OFFSET_END;
		if (coop)
			e = rd_kafka_incremental_assign(rk, parts);
		else
			rd_kafka_assign(rk, parts);
		rd_kafka_pause_partitions(rk, parts);
		set_watched(so, parts, true);
		log_info("state owners partitions assigned count=%d protocol=%s", parts->cnt,
			 proto ? proto : "NONE");
	} else {
		if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			log_warn("state owners rebalance error reason=%s", log_q(rd_kafka_err2str(err)));
		bool lost = rd_kafka_assignment_lost(rk);
		if (coop) {
			set_watched(so, parts, false);
			e = rd_kafka_incremental_unassign(rk, parts);
		} else {
			clear_watched(so);
			rd_kafka_assign(rk, NULL);
		}
		log_info("state owners partitions %s count=%d", lost ? "lost" : "revoked", parts->cnt);
	}
	if (e) {
		log_warn("state owners rebalance failed reason=%s", log_q(rd_kafka_error_string(e)));
		rd_kafka_error_destroy(e);
	}
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	/* Transport errors are the lease's business (state.c); say them once
	 * at info, the rest at warn. */
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		log_info("state owners consumer kafka error=%s reason=%s",
			 log_q(rd_kafka_err2name((rd_kafka_resp_err_t)err)), log_q(reason));
	else
		log_warn("state owners consumer kafka error=%s reason=%s",
			 log_q(rd_kafka_err2name((rd_kafka_resp_err_t)err)), log_q(reason));
}

static void *owner_main(void *arg)
{
	struct state_owner *so = arg;
	log_set_thread("state-owner");
	while (!atomic_load(&so->stop)) {
		/* Serves the rebalance callback. Paused partitions fetch nothing;
		 * a record fetched before the pause took hold is dropped. */
		rd_kafka_message_t *m = rd_kafka_consumer_poll(so->rk, OWNER_POLL_MS);
		if (!m)
			continue;
		if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_debug("state owners consumer error=%s", log_q(rd_kafka_err2name(m->err)));
		rd_kafka_message_destroy(m);
	}
	return NULL;
}

/* --- candidates remembered across scans (reader thread) ------------------- */

static uint64_t id_hash(const char *id, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)id[i];
		h *= 1099511628211ull;
	}
	return h ? h : 1;
}

static struct track *tab_find(struct track *t, size_t cap, uint64_t h, bool insert)
{
	if (!cap)
		return NULL;
	size_t mask = cap - 1;
	for (size_t i = (size_t)h & mask, n = 0; n < cap; i = (i + 1) & mask, n++) {
		if (t[i].h == h)
			return &t[i];
		if (t[i].h == 0)
			return insert ? &t[i] : NULL;
	}
	return NULL;
}

/* Starts the table of this scan: sized for the previous scan's candidates
 * (twice, for a low load), bounded by OWNER_TRACK_MAX. */
static void scan_begin(struct state_owner *so)
{
	size_t want = 1024;
	while (want < 2 * (so->tab_len + 64) && want < 2 * OWNER_TRACK_MAX)
		want *= 2;
	if (want != so->new_cap) {
		struct track *t = calloc(want, sizeof(*t));
		if (t) {
			free(so->tab_new);
			so->tab_new = t;
			so->new_cap = want;
		}
	}
	if (so->tab_new)
		memset(so->tab_new, 0, so->new_cap * sizeof(*so->tab_new));
	so->new_len = 0;
}

/* The candidate's entry in this scan's table, carrying what the previous
 * scan knew; NULL when the table is full (the candidate is then handled
 * without memory: no grace, no pacing). */
static struct track *scan_track(struct state_owner *so, uint64_t h)
{
	if (!so->tab_new || so->new_len >= so->new_cap / 2)
		return NULL;
	struct track *n = tab_find(so->tab_new, so->new_cap, h, true);
	if (!n)
		return NULL;
	if (n->h == 0) {
		struct track *o = tab_find(so->tab, so->tab_cap, h, false);
		n->h = h;
		n->first_ms = o ? o->first_ms : so->now_ms;
		n->adopted_ms = o ? o->adopted_ms : 0;
		so->new_len++;
	}
	return n;
}

/* Candidates not seen in this scan are forgotten: swap the tables. */
static void scan_end(struct state_owner *so)
{
	struct track *t = so->tab;
	size_t c = so->tab_cap;
	so->tab = so->tab_new;
	so->tab_cap = so->new_cap;
	so->tab_len = so->new_len;
	so->tab_new = t;
	so->new_cap = c;
	so->new_len = 0;
}

/* --- the scan (reader thread) ---------------------------------------------- */

/* One session of a watched partition, from state_sessions_foreach(). */
static void on_session(void *ud, const struct state_session_info *s)
{
	struct state_owner *so = ud;
	struct state *st = so->st;

	/* Ended sessions are left out by state_sessions_foreach(); an adopt
	 * of one would answer "nothing to do" anyway. */
	if (!s->owner || !s->owner[0])
		return;
	/* Ours: either live here, or from our own earlier boot, which the
	 * sessions module adopts itself once caught up after a restart. */
	if (strcmp(s->owner, st->instance_id) == 0)
		return;

	bool alive = state_instance_alive(st, s->owner);
	bool restarted = false;
	if (alive) {
		int64_t boot = state_instance_boot(st, s->owner);
		restarted = boot > 0 && s->boot > 0 && boot != s->boot;
		if (!restarted)
			return;
	}
	if (so->scan_full)
		return;

	struct track *t = scan_track(so, id_hash(s->id, s->id_len));
	int64_t lease = st->cfg->state.lease_ms;
	if (restarted) {
		/* The owner is alive with a new boot: it adopts its own sessions
		 * when it has caught up. Only those it left behind for a whole
		 * lease are ours to take (without memory: leave them). */
		if (!t || so->now_ms - t->first_ms < lease)
			return;
	}
	/* An adopt in flight is read back within a round trip; ask again only
	 * after the claim timeout (the write may have failed). */
	if (t && t->adopted_ms && so->now_ms - t->adopted_ms < st->cfg->state.claim_timeout_ms)
		return;
	if (so->adopts_this_scan >= OWNER_ADOPT_PER_SCAN) {
		so->scan_full = true;
		return;
	}
	/* 0: started; 1: nothing to do (in progress, already ours, ended);
	 * -1: failed (queue full, stopping): tried again after the pause.
	 * One line per session at debug: a dead instance may have had
	 * 100,000; the scan's summary is at info. */
	int rc = state_sessions_adopt(st->sessions, s->id, s->id_len);
	if (rc == 0) {
		so->adopts_this_scan++;
		atomic_fetch_add_explicit(&so->adopts_total, 1, memory_order_relaxed);
		log_debug("state owner adopting session client=%s owner=%s reason=%s",
			  log_qn(s->id, s->id_len), log_q(s->owner), restarted ? "restarted" : "dead");
	} else if (rc < 0) {
		log_warn_rl("state owner adopt failed client=%s owner=%s",
			    log_qn(s->id, s->id_len), log_q(s->owner));
	}
	if (t)
		t->adopted_ms = so->now_ms;
}

void state_owner_tick(struct state_owner *so)
{
	if (!so)
		return;
	int64_t now = state_now_ms();
	if (now < so->next_scan_ms)
		return;
	so->next_scan_ms = now + OWNER_SCAN_MS;
	/* Cut off from Kafka (or not caught up), every other instance looks
	 * dead: adopt nothing then. And not before a whole lease after
	 * becoming ready: after an outage that every instance lived through,
	 * the others' heartbeats are all older than the lease until they
	 * too are back; the first one back must not take their sessions
	 * (and publish their devices' wills) for that. */
	if (!state_ready(so->st, NULL, 0) || !so->st->sessions) {
		so->ready_since_ms = 0;
		return;
	}
	if (!so->ready_since_ms)
		so->ready_since_ms = now;
	if (now - so->ready_since_ms < so->st->cfg->state.lease_ms)
		return;

	pthread_mutex_lock(&so->mu);
	memcpy(so->scan_parts, so->watched, (size_t)so->nparts * sizeof(bool));
	pthread_mutex_unlock(&so->mu);

	so->now_ms = now;
	so->adopts_this_scan = 0;
	so->scan_full = false;
	scan_begin(so);
	for (int32_t p = 0; p < so->nparts; p++)
		if (so->scan_parts[p])
			state_sessions_foreach(so->st->sessions, p, on_session, so);
	scan_end(so);
	if (so->adopts_this_scan)
		log_info("state owner adopted sessions of dead or restarted instances count=%u "
			 "more=%s", so->adopts_this_scan, so->scan_full ? "yes" : "no");
	/* The budget ran out: the next scan comes at the next tick. */
	if (so->scan_full)
		so->next_scan_ms = now;
}

size_t state_owner_watched(struct state_owner *so, int32_t *parts, size_t max)
{
	size_t n = 0;
	if (!so)
		return 0;
	pthread_mutex_lock(&so->mu);
	for (int32_t p = 0; p < so->nparts; p++)
		if (so->watched[p]) {
			if (n < max)
				parts[n] = p;
			n++;
		}
	pthread_mutex_unlock(&so->mu);
	return n;
}

int state_owner_metrics_render(struct buf *out, struct state_owner *so)
{
	if (!so)
		return 0;
	int32_t parts[1];
	size_t n = state_owner_watched(so, parts, 0);
	int rc = prom_family(out, "kafkagate_state_owner_partitions", "gauge",
			     "Sessions partitions this instance watches for dead instances "
			     "(its assignment in the <prefix>.owners group).");
	rc |= prom_u64(out, "kafkagate_state_owner_partitions", NULL, n);
	rc |= prom_family(out, "kafkagate_state_owner_adopts_total", "counter",
			  "Sessions of dead or restarted instances adopted here (wills published "
			  "once, expired sessions ended).");
	rc |= prom_u64(out, "kafkagate_state_owner_adopts_total", NULL,
		       atomic_load_explicit(&so->adopts_total, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_owner_rebalances_total", "counter",
			  "Assignments and revocations in the <prefix>.owners group.");
	rc |= prom_u64(out, "kafkagate_state_owner_rebalances_total", NULL,
		       atomic_load_explicit(&so->rebalances, memory_order_relaxed));
	return rc ? -1 : 0;
}

/* --- life cycle (main thread) ---------------------------------------------- */

struct state_owner *state_owner_new(struct state *st)
{
	const struct cfg *cfg = st->cfg;
	char e[512], group[STATE_TOPIC_MAX + 1], v[32];
	rd_kafka_conf_t *conf = NULL;
	struct state_owner *so = calloc(1, sizeof(*so));

	if (!so)
		return NULL;
	so->st = st;
	pthread_mutex_init(&so->mu, NULL);
	so->nparts = OWNER_MAX_PARTS;
	so->watched = calloc((size_t)so->nparts, sizeof(bool));
	so->scan_parts = calloc((size_t)so->nparts, sizeof(bool));
	if (!so->watched || !so->scan_parts)
		goto fail;

	snprintf(group, sizeof(group), "%s.owners", cfg->state.topic_prefix);
	if (!(conf = kafka_conf_new(cfg, KAFKA_CONSUMER, st->bootstrap, e, sizeof(e)))) {
		log_error("state owners consumer: %s", e);
		goto fail;
	}
	/* A dead instance's partitions move after its session times out:
	 * about the lease, but not below the brokers' minimum (6 s by
	 * default). Dynamic membership: a clean stop leaves the group at once
	 * (static members do not), and a restarted instance rejoins as new. */
	int sess_ms = cfg->state.lease_ms < 6000 ? 6000 : cfg->state.lease_ms;
	int hb_ms = sess_ms / 3 < 3000 ? sess_ms / 3 : 3000;
	struct {
		const char *k;
		char v[STATE_TOPIC_MAX + 1];
	} set[] = {
		{ "group.id", "" },
		{ "group.instance.id", "" },
		{ "enable.auto.commit", "false" },
		{ "enable.auto.offset.store", "false" },
		{ "enable.partition.eof", "false" },
		{ "auto.offset.reset", "latest" },
		{ "session.timeout.ms", "" },
		{ "heartbeat.interval.ms", "" },
		/* Nothing is fetched: keep what librdkafka prefetches tiny. */
		{ "queued.max.messages.kbytes", "64" },
		{ "statistics.interval.ms", "0" },
	};
	snprintf(set[0].v, sizeof(set[0].v), "%s", group);
	snprintf(v, sizeof(v), "%d", sess_ms);
	snprintf(set[6].v, sizeof(set[6].v), "%s", v);
	snprintf(v, sizeof(v), "%d", hb_ms);
	snprintf(set[7].v, sizeof(set[7].v), "%s", v);
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		if (rd_kafka_conf_set(conf, set[i].k, set[i].v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
			log_error("state owners consumer: %s: %s", set[i].k, e);
			goto fail;
		}
	rd_kafka_conf_set_opaque(conf, so);
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	if (!(so->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		log_error("state owners consumer: %s", e);
		goto fail;
	}
	conf = NULL;
	rd_kafka_poll_set_consumer(so->rk);

	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(subs, st->t_sessions, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(so->rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err) {
		log_error("state owners subscribe failed group=%s reason=%s", log_q(group),
			  log_q(rd_kafka_err2str(err)));
		goto fail;
	}
	int rc = pthread_create(&so->thread, NULL, owner_main, so);
	if (rc != 0) {
		errno = rc;
		log_error_errno("state owners thread start failed");
		goto fail;
	}
	so->started = true;
	log_info("state owners consumer started group=%s topic=%s session_timeout_ms=%d",
		 log_q(group), log_q(st->t_sessions), sess_ms);
	return so;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	state_owner_free(so);
	return NULL;
}

void state_owner_free(struct state_owner *so)
{
	if (!so)
		return;
	atomic_store(&so->stop, true);
	if (so->started)
		pthread_join(so->thread, NULL);
	if (so->rk) {
		/* Leaves the group, so the others take our partitions now; cut
		 * off from Kafka, the close would wait for a coordinator that
		 * does not answer: the session timeout moves them instead. */
		if (atomic_load(&so->st->kafka_ok)) {
			rd_kafka_consumer_close(so->rk);
			rd_kafka_destroy(so->rk);
		} else {
			rd_kafka_destroy_flags(so->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		}
	}
	pthread_mutex_destroy(&so->mu);
	free(so->watched);
	free(so->scan_parts);
	free(so->tab);
	free(so->tab_new);
	free(so);
}
