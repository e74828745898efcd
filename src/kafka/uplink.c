/* uplink.c - the process's Kafka producer: lifecycle, poll thread, delivery
 * reports, readiness; see uplink.h. Routing a publish is uplink_publish.c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "kafka/kafka_conf.h"
#include "kafka/uplink_int.h"
#include "route/route.h"

const double uplink_lat_bounds_ms[UPLINK_LAT_BUCKETS - 1] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000,
};

static void count_latency(struct uplink *u, int64_t received_ms)
{
	int64_t ms = util_wall_ms() - received_ms;
	if (ms < 0)
		ms = 0;
	size_t b = 0;
	while (b < UPLINK_LAT_BUCKETS - 1 && (double)ms > uplink_lat_bounds_ms[b])
		b++;
	atomic_fetch_add_explicit(&u->lat.count[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&u->lat.sum_us, (uint64_t)ms * 1000, memory_order_relaxed);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque)
{
	struct uplink *u = opaque;
	struct rec *rec = rm->_private;
	struct ticket *t = rec->t;
	struct uplink_route_stats *rs = rec->rs;
	(void)rk;

	atomic_fetch_sub(&u->st.in_flight, 1);
	if (rs)
		atomic_fetch_sub(&rs->in_flight, 1);
	if (!rm->err) {
		atomic_fetch_add(&u->st.delivered, 1);
		if (rs)
			atomic_fetch_add(&rs->delivered, 1);
		count_latency(u, t->m->received_ms);
		lathist_add(&u->stage_kafka, lathist_now() - t->produced_ns, 1);
	} else {
		const char *topic = rd_kafka_topic_name(rm->rkt);
		if (rs)
			atomic_fetch_add(&rs->failed, 1);
		if (t->seq == 0) {
			atomic_fetch_add(&u->st.qos0_failed, 1);
		} else if (uplink_err_is_permanent(rm->err) && rec->rs) {
			uplink_permanent_failure(u, t, topic, rd_kafka_err2str(rm->err));
		} else {
			atomic_fetch_add(&u->st.failed, 1);
			atomic_store(&t->failed, true);
			log_warn_rl("kafka delivery failed client=%s topic=%s kafka_topic=%s reason=%s",
				    log_q(t->clientid), log_q(t->m->topic), log_q(topic),
				    log_q(rd_kafka_err2str(rm->err)));
		}
	}
	uplink_ticket_release(u, t);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	log_warn_rl("kafka error code=%s reason=%s", rd_kafka_err2name(err), log_q(reason));
}

struct uplink *uplink_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			  struct route_table *rt, char *err, size_t errlen)
{
	char e[512];
	struct uplink *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->br = br;
	pthread_mutex_init(&u->rt_mu, NULL);
	pthread_mutex_init(&u->bk_mu, NULL);
	u->n_wk = broker_n_workers(br);
	u->wk = calloc((size_t)(u->n_wk > 0 ? u->n_wk : 1), sizeof(*u->wk));
	if (!u->wk || uplink_set_routes(u, rt) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	u->bootstrap = strdup(bootstrap);
	if (cfg->kafka.dead_letter_topic)
		u->dead_letter = strdup(cfg->kafka.dead_letter_topic);
	rd_kafka_conf_t *conf = kafka_conf_new(cfg, KAFKA_PRODUCER, bootstrap, err, errlen);
	if (!conf)
		goto fail;
	rd_kafka_conf_set_opaque(conf, u);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_stats_cb(conf, uplink_on_stats);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	size_t sz = sizeof(e);
	u->queue_limit = 100000;
	if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", e, &sz) == RD_KAFKA_CONF_OK)
		u->queue_limit = atoll(e);
	/* Leave head room: a publish may fan out to several routes. */
	u->queue_limit = u->queue_limit * 9 / 10;
	u->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!u->rk) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "kafka producer: %s", e);
		goto fail;
	}
	return u;
fail:
	uplink_free(u);
	return NULL;
}

static void *poll_main(void *arg)
{
	struct uplink *u = arg;
	log_set_thread("kafka");
	while (!atomic_load(&u->stop))
		rd_kafka_poll(u->rk, 100);
	return NULL;
}

int uplink_start(struct uplink *u)
{
	if (pthread_create(&u->thread, NULL, poll_main, u) != 0)
		return -1;
	u->started = true;
	return 0;
}

int uplink_flush(struct uplink *u, int timeout_ms)
{
	int64_t end = util_now_ms() + timeout_ms;
	/* The poll thread serves the delivery reports; we only wait. */
	/* Fan-out records (uplink_fanout_hold) hold publishes' answers too. */
	while ((rd_kafka_outq_len(u->rk) > 0 || atomic_load(&u->fanout_out) > 0) &&
	       util_now_ms() < end) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return rd_kafka_outq_len(u->rk) + (int)atomic_load(&u->fanout_out);
}

void uplink_free(struct uplink *u)
{
	if (!u)
		return;
	if (u->started) {
		atomic_store(&u->stop, true);
		pthread_join(u->thread, NULL);
	}
	if (u->rk) {
		/* Records Kafka never answered (flush timed out) are purged so that
		 * their reports run here and free their tickets; none is acked. */
		atomic_store(&u->closing, true);
		rd_kafka_purge(u->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (int i = 0; i < 100 && rd_kafka_outq_len(u->rk) > 0; i++)
			rd_kafka_poll(u->rk, 10);
		rd_kafka_destroy(u->rk);
	}
	while (u->gen) {
		struct uplink_routes *g = u->gen;
		u->gen = g->prev;
		route_table_unref(g->rt);
		free(g->rs);
		free(g);
	}
	for (int i = 0; u->wk && i < u->n_wk; i++) {
		buf_release(&u->wk[i].topic);
		buf_release(&u->wk[i].key);
		buf_release(&u->wk[i].value);
	}
	free(u->wk);
	pthread_mutex_destroy(&u->rt_mu);
	pthread_mutex_destroy(&u->bk_mu);
	free(u->dead_letter);
	free(u->bootstrap);
	free(u);
}

int uplink_set_routes(struct uplink *u, struct route_table *rt)
{
	struct uplink_routes *g = calloc(1, sizeof(*g));
	size_t n = route_table_count(rt);
	if (!g || !(g->rs = calloc(n ? n : 1, sizeof(*g->rs)))) {
		free(g);
		return -1;
	}
	g->rt = route_table_ref(rt);
	g->n = n;
	pthread_mutex_lock(&u->rt_mu);
	g->prev = u->gen;
	u->gen = g;
	atomic_store_explicit(&u->cur, g, memory_order_release);
	pthread_mutex_unlock(&u->rt_mu);
	return 0;
}

static const struct uplink_routes *current(struct uplink *u)
{
	return atomic_load_explicit(&u->cur, memory_order_acquire);
}

struct route_table *uplink_routes(struct uplink *u)
{
	return route_table_ref(current(u)->rt);
}

const struct uplink_stats *uplink_stats(const struct uplink *u) { return &u->st; }
const struct uplink_latency *uplink_latency(const struct uplink *u) { return &u->lat; }
const struct lathist *uplink_stage_kafka(const struct uplink *u) { return &u->stage_kafka; }
int uplink_queue_depth(const struct uplink *u) { return rd_kafka_outq_len(u->rk); }

const struct uplink_route_stats *uplink_route_stats(struct uplink *u, size_t i)
{
	const struct uplink_routes *g = current(u);
	return i < g->n ? &g->rs[i] : NULL;
}
const char *uplink_bootstrap(const struct uplink *u) { return u->bootstrap; }
const char *uplink_librdkafka_version(void) { return rd_kafka_version_str(); }

void uplink_counts(const struct uplink *u, uint64_t *routed, uint64_t *unrouted)
{
	*routed = *unrouted = 0;
	for (int i = 0; i < u->n_wk; i++) {
		*routed += atomic_load_explicit(&u->wk[i].routed, memory_order_relaxed);
		*unrouted += atomic_load_explicit(&u->wk[i].unrouted, memory_order_relaxed);
	}
}

uint64_t uplink_expired(const struct uplink *u)
{
	uint64_t n = 0;
	for (int i = 0; i < u->n_wk; i++)
		n += atomic_load_explicit(&u->wk[i].expired, memory_order_relaxed);
	return n;
}

/* Readiness: cached so that scrapes do not hammer Kafka (one producer per
 * process, so static storage is enough). */
#define READY_TIMEOUT_MS 500
#define READY_CACHE_MS 1000

int uplink_ready(struct uplink *u, char *why, size_t len)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static const struct uplink *cached_u;
	static int64_t cached_at;
	static int cached_rc;
	static char cached_why[200];
	const struct rd_kafka_metadata *md = NULL;

	pthread_mutex_lock(&mu);
	int64_t now = util_now_ms();
	if (cached_u != u || now - cached_at >= READY_CACHE_MS) {
		rd_kafka_resp_err_t err = rd_kafka_metadata(u->rk, 0, NULL, &md, READY_TIMEOUT_MS);
		cached_rc = -1;
		if (err)
			snprintf(cached_why, sizeof(cached_why), "kafka metadata unreachable: %s",
				 rd_kafka_err2str(err));
		else if (md->broker_cnt == 0)
			snprintf(cached_why, sizeof(cached_why), "kafka metadata lists no broker");
		else
			cached_rc = 0;
		if (cached_rc == 0)
			cached_why[0] = '\0';
		if (md)
			rd_kafka_metadata_destroy(md);
		cached_u = u;
		cached_at = util_now_ms();
	}
	int rc = cached_rc;
	snprintf(why, len, "%s", cached_why);
	pthread_mutex_unlock(&mu);
	return rc;
}
