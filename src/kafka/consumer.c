/* consumer.c - a downlink consumer thread; see consumer.h. */
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/consumer.h"
#include "kafka/consumer_lag.h"
#include "kafka/kafka_conf.h"
#include "core/log.h"
#include "core/util.h"

#define BATCH 1000          /* records per poll round before other chores */
#define EXPIRE_EVERY_MS 1000
#define LOG_BURST 20        /* warnings per second before going quiet */

struct done_item {
	struct offsets_ref ref;
	int64_t offset;
};

struct done_list {
	struct done_item *v;
	size_t n, cap;
};

struct consumer {
	char *group;
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *subs;
	consumer_record_fn on_record;
	void *ud;
	int64_t timeout_ms;
	size_t max_in_flight;
	int stop_grace_ms, start_grace_ms;
	pthread_t thread;
	bool started, joined;
	atomic_bool stop;

	/* consumer thread only */
	struct offsets *off;
	bool paused;
	size_t since_commit;
	int64_t next_commit_ms, next_expire_ms;
	int64_t log_second;
	unsigned log_count;

	pthread_mutex_t done_mu;   /* guards pend */
	struct done_list pend, work;

	struct consumer_lag lag;

	atomic_uint_fast64_t timed_out;
};

void consumer_complete(const struct consumer_ticket *t)
{
	struct consumer *c = t->c;
	struct done_list *p = &c->pend;

	pthread_mutex_lock(&c->done_mu);
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct done_item *v = realloc(p->v, cap * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&c->done_mu);
			/* The record's timeout completes it later: late, never lost. */
			log_warn("downlink completion dropped group=%s reason=\"out of memory\"",
				 c->group);
			return;
		}
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = (struct done_item){ t->ref, t->offset };
	pthread_mutex_unlock(&c->done_mu);
}

/* True while this second's warnings are few: a partition stuck on a silent
 * device or a broker refusing commits must not flood the log. */
static bool log_ok(struct consumer *c)
{
	int64_t sec = util_now_ms() / 1000;
	if (sec != c->log_second) {
		c->log_second = sec;
		c->log_count = 0;
	}
	return c->log_count++ < LOG_BURST;
}

/* Applies the completions posted since the last call. */
static void drain_done(struct consumer *c)
{
	pthread_mutex_lock(&c->done_mu);
	struct done_list t = c->pend;
	c->pend = c->work;
	c->work = t;
	c->pend.n = 0;
	pthread_mutex_unlock(&c->done_mu);
	for (size_t i = 0; i < c->work.n; i++)
		if (offsets_complete(c->off, c->work.v[i].ref, c->work.v[i].offset) == 1)
			c->since_commit++;
	c->work.n = 0;
}

static void list_add(void *ud, const char *topic, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_add(ud, topic, partition)->offset = offset;
}

static void commit(struct consumer *c, bool sync)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	if (offsets_commit_due(c->off, list_add, l) > 0) {
		rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, sync ? 0 : 1);
		if (err) {
			if (log_ok(c))
				log_warn("kafka commit failed group=%s reason=\"%s\"", c->group,
					 rd_kafka_err2str(err));
			for (int i = 0; i < l->cnt; i++)
				offsets_commit_failed(c->off, l->elems[i].topic, l->elems[i].partition);
		} else {
			log_debug("kafka commit group=%s partitions=%d sync=%d", c->group, l->cnt, sync);
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	c->since_commit = 0;
	c->next_commit_ms = util_now_ms() + CONSUMER_COMMIT_MS;
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *l, void *opaque)
{
	struct consumer *c = opaque;
	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	for (int i = 0; l && i < l->cnt; i++) {
		rd_kafka_resp_err_t e = err ? err : l->elems[i].err;
		if (!e)
			continue;
		if (log_ok(c))
			log_warn("kafka commit failed group=%s topic=%s partition=%d offset=%lld "
				 "reason=\"%s\"", c->group, l->elems[i].topic,
				 (int)l->elems[i].partition, (long long)l->elems[i].offset,
				 rd_kafka_err2str(e));
		offsets_commit_failed(c->off, l->elems[i].topic, l->elems[i].partition);
	}
}

static void pause_all(struct consumer *c, bool pause)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	if (rd_kafka_assignment(c->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l->cnt > 0) {
		if (pause)
			rd_kafka_pause_partitions(c->rk, l);
		else
			rd_kafka_resume_partitions(c->rk, l);
	}
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	c->paused = pause;
	log_info("downlink %s group=%s in_flight=%zu", pause ? "paused" : "resumed", c->group,
		 offsets_in_flight(c->off));
}

/* Drops the windows of parts, committing what is complete unless the
 * partitions were lost (another member may own them already). */
static void revoke(struct consumer *c, rd_kafka_topic_partition_list_t *parts, bool lost)
{
	drain_done(c); /* so that the commit below is as far as it can be */
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		int64_t pos;
		const char *t = parts->elems[i].topic;
		int32_t p = parts->elems[i].partition;
		if (offsets_revoke(c->off, t, p, &pos) == 1 && !lost)
			list_add(l, t, p, pos);
		consumer_lag_drop(&c->lag, t, p);
	}
	if (l->cnt > 0) {
		rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 0);
		if (err)
			log_warn("kafka commit on revoke failed group=%s reason=\"%s\"", c->group,
				 rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct consumer *c = opaque;
	/* NULL while no protocol is chosen: a close before the first join
	 * revokes nothing through here. */
	const char *proto = rd_kafka_rebalance_protocol(rk);
	bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
	rd_kafka_error_t *e = NULL;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		for (int i = 0; i < parts->cnt; i++) {
			struct offsets_ref ref;
			if (offsets_assign(c->off, parts->elems[i].topic, parts->elems[i].partition,
					   &ref) < 0)
				log_error("downlink assign failed group=%s topic=%s partition=%d "
					  "reason=\"out of memory\"", c->group, parts->elems[i].topic,
					  (int)parts->elems[i].partition);
		}
		log_info("downlink partitions assigned group=%s count=%d protocol=%s", c->group,
			 parts->cnt, proto ? proto : "NONE");
		if (coop)
			e = rd_kafka_incremental_assign(rk, parts);
		else
			rd_kafka_assign(rk, parts);
		if (c->paused) /* new partitions join the pause */
			rd_kafka_pause_partitions(rk, parts);
	} else {
		if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			log_warn("downlink rebalance error group=%s reason=\"%s\"", c->group,
				 rd_kafka_err2str(err));
		bool lost = rd_kafka_assignment_lost(rk);
		revoke(c, parts, lost);
		log_info("downlink partitions %s group=%s count=%d", lost ? "lost" : "revoked",
			 c->group, parts->cnt);
		if (coop)
			e = rd_kafka_incremental_unassign(rk, parts);
		else
			rd_kafka_assign(rk, NULL);
	}
	if (e) {
		log_warn("downlink rebalance failed group=%s reason=%s", c->group,
			 log_q(rd_kafka_error_string(e)));
		rd_kafka_error_destroy(e);
	}
}

/* librdkafka statistics (consumer thread, from poll): the lag table. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct consumer *c = opaque;
	(void)rk;
	consumer_lag_update(&c->lag, c->group, json, len);
	return 0; /* librdkafka frees json */
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct consumer *c = opaque;
	char why[256];

	if (err == RD_KAFKA_RESP_ERR__FATAL &&
	    rd_kafka_fatal_error(rk, why, sizeof(why)) == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID) {
		/* Static membership: a newer member took our group.instance.id.
		 * This consumer is finished; the other one has the partitions. */
		log_error("downlink consumer fenced group=%s reason=%s hint=\"another gateway uses "
			  "the same group.instance.id: give each one its own kafka.instance_id\"",
			  c->group, log_q(why));
		return;
	}
	log_warn_rl("kafka consumer error group=%s code=%s reason=%s", c->group,
		    rd_kafka_err2name(err), log_q(reason));
}

static void on_expired(void *ud, const char *topic, int32_t partition, int64_t offset)
{
	struct consumer *c = ud;
	atomic_fetch_add_explicit(&c->timed_out, 1, memory_order_relaxed);
	if (log_ok(c))
		log_warn("downlink delivery timed out, committing as queued group=%s topic=%s "
			 "partition=%d offset=%lld timeout_ms=%lld", c->group, topic, (int)partition,
			 (long long)offset, (long long)c->timeout_ms);
}

static void handle(struct consumer *c, rd_kafka_message_t *rkm, int64_t now)
{
	const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";

	if (rkm->err) {
		if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn_rl("kafka consume error group=%s topic=%s partition=%d reason=%s",
				    c->group, topic, (int)rkm->partition,
				    log_q(rd_kafka_message_errstr(rkm)));
		return;
	}
	struct consumer_ticket t = { .c = c, .offset = rkm->offset };
	if (offsets_find(c->off, topic, rkm->partition, &t.ref) < 0 ||
	    offsets_add(c->off, t.ref, rkm->offset, now) < 0) {
		/* Not ours any more, or already seen: it is (or will be) read again
		 * by whoever owns the partition, so nothing is lost. */
		log_debug("downlink record ignored group=%s topic=%s partition=%d offset=%lld",
			  c->group, topic, (int)rkm->partition, (long long)rkm->offset);
		return;
	}
	unsigned owed = c->on_record(c->ud, rkm, &t);
	if (owed)
		offsets_owe(c->off, t.ref, t.offset, owed);
	if (offsets_complete(c->off, t.ref, t.offset) == 1) /* our hold */
		c->since_commit++;
}

static void chores(struct consumer *c, int64_t now)
{
	drain_done(c);
	if (now >= c->next_expire_ms) {
		offsets_expire(c->off, now, c->timeout_ms, on_expired, c);
		c->next_expire_ms = now + EXPIRE_EVERY_MS;
	}
	size_t inf = offsets_in_flight(c->off);
	if (!c->paused && inf >= c->max_in_flight)
		pause_all(c, true);
	else if (c->paused && inf <= c->max_in_flight / 2)
		pause_all(c, false);
	if (c->since_commit >= CONSUMER_COMMIT_EVERY || now >= c->next_commit_ms)
		commit(c, false);
}

/* Stops reading and gives deliveries in flight a moment to complete so that
 * a clean restart redelivers as little as possible. */
static void wind_down(struct consumer *c)
{
	int64_t end = util_now_ms() + c->stop_grace_ms;
	if (!c->paused)
		pause_all(c, true);
	drain_done(c);
	while (offsets_in_flight(c->off) > 0 && util_now_ms() < end) {
		/* Records fetched before the pause are dropped unread: they are
		 * beyond every tracked offset, so they are not committed. */
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, CONSUMER_POLL_MS);
		if (rkm)
			rd_kafka_message_destroy(rkm);
		drain_done(c);
	}
	commit(c, true);
	rd_kafka_consumer_close(c->rk); /* revokes: commits nothing new, drops the rest */
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	log_set_thread("downlink");
	/* Not polling yet also holds the assignment back (its callback is
	 * served by the poll): the group join proceeds meanwhile. */
	int64_t start = util_now_ms() + c->start_grace_ms;
	while (!atomic_load(&c->stop) && util_now_ms() < start) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	c->next_commit_ms = util_now_ms() + CONSUMER_COMMIT_MS;
	while (!atomic_load(&c->stop)) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, CONSUMER_POLL_MS);
		int64_t now = util_now_ms();
		for (int i = 0; rkm; i++) {
			handle(c, rkm, now);
			rd_kafka_message_destroy(rkm);
			rkm = i + 1 < BATCH ? rd_kafka_consumer_poll(c->rk, 0) : NULL;
		}
		chores(c, util_now_ms());
	}
	wind_down(c);
	return NULL;
}

struct consumer *consumer_new(const struct cfg *cfg, const char *bootstrap,
			      const struct consumer_opts *opts, char *err, size_t errlen)
{
	char e[512];
	struct consumer *c = calloc(1, sizeof(*c));
	rd_kafka_conf_t *conf = NULL;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->done_mu, NULL);
	consumer_lag_init(&c->lag);
	if (!(c->group = strdup(opts->group_id)) || !(c->off = offsets_new())) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	c->on_record = opts->on_record;
	c->ud = opts->ud;
	c->timeout_ms = opts->timeout_ms;
	c->max_in_flight = opts->max_in_flight ? opts->max_in_flight : 1;
	c->stop_grace_ms = opts->stop_grace_ms;
	c->start_grace_ms = opts->start_grace_ms;
	c->subs = rd_kafka_topic_partition_list_new((int)opts->ntopics);
	for (size_t i = 0; i < opts->ntopics; i++)
		if (!rd_kafka_topic_partition_list_find(c->subs, opts->topics[i], RD_KAFKA_PARTITION_UA))
			rd_kafka_topic_partition_list_add(c->subs, opts->topics[i], RD_KAFKA_PARTITION_UA);
	if (!(conf = kafka_conf_new(cfg, KAFKA_CONSUMER, bootstrap, err, errlen)))
		goto fail;
	if (rd_kafka_conf_set(conf, "group.id", opts->group_id, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka consumer group '%s': %s", opts->group_id, e);
		goto fail;
	}
	if (opts->instance_id && opts->instance_id[0] &&
	    rd_kafka_conf_set(conf, "group.instance.id", opts->instance_id, e, sizeof(e)) !=
		    RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka consumer group '%s': group.instance.id: %s",
			 opts->group_id, e);
		goto fail;
	}
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		snprintf(err, errlen, "kafka consumer: %s", e);
		goto fail;
	}
	conf = NULL;
	/* Callbacks (rebalance, commits, statistics) are then served by
	 * rd_kafka_consumer_poll() on our thread. */
	rd_kafka_poll_set_consumer(c->rk);
	return c;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	consumer_free(c);
	return NULL;
}

int consumer_start(struct consumer *c)
{
	rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, c->subs);
	if (err) {
		log_error("kafka subscribe failed group=%s reason=\"%s\"", c->group,
			  rd_kafka_err2str(err));
		return -1;
	}
	if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
		log_error("downlink thread start failed group=%s", c->group);
		return -1;
	}
	c->started = true;
	return 0;
}

void consumer_stop(struct consumer *c)
{
	atomic_store(&c->stop, true);
}

void consumer_join(struct consumer *c)
{
	if (c->started && !c->joined) {
		pthread_join(c->thread, NULL);
		c->joined = true;
	}
}

void consumer_free(struct consumer *c)
{
	if (!c)
		return;
	consumer_stop(c);
	consumer_join(c);
	if (c->rk)
		rd_kafka_destroy(c->rk);
	if (c->subs)
		rd_kafka_topic_partition_list_destroy(c->subs);
	offsets_free(c->off);
	pthread_mutex_destroy(&c->done_mu);
	consumer_lag_release(&c->lag);
	free(c->pend.v);
	free(c->work.v);
	free(c->group);
	free(c);
}

size_t consumer_lag(struct consumer *c, struct downlink_lag *out, size_t max)
{
	return consumer_lag_snapshot(&c->lag, out, max);
}

const char *consumer_group(const struct consumer *c) { return c->group; }

uint64_t consumer_timed_out(const struct consumer *c)
{
	return atomic_load_explicit(&c->timed_out, memory_order_relaxed);
}
