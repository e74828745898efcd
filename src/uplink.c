/* uplink.c - routes publishes into Kafka records; see uplink.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "broker.h"
#include "cfg.h"
#include "client.h"
#include "envelope.h"
#include "kafka_conf.h"
#include "log.h"
#include "msg.h"
#include "route.h"
#include "template.h"
#include "uplink.h"
#include "util.h"
#include "worker.h"

#define MAX_ROUTES_PER_MSG 64

struct uplink {
	struct broker *br;
	rd_kafka_t *rk;
	char *dead_letter;           /* NULL: none */
	char *bootstrap;
	pthread_mutex_t rt_mu;       /* guards gen swaps (reload) */
	struct uplink_routes *gen;   /* current; older ones kept until uplink_free */
	pthread_t thread;
	atomic_bool stop;
	atomic_bool closing;         /* uplink_free(): tickets are freed, not posted */
	bool started;
	int64_t queue_limit;         /* records in flight before UPLINK_BUSY */
	struct uplink_stats st;
	struct uplink_latency lat;
	pthread_mutex_t bk_mu;       /* guards brokers, n_brokers */
	struct uplink_broker_state brokers[UPLINK_MAX_BROKERS];
	size_t n_brokers;
};

/* A routing table with its counters. Never freed before the uplink, so a
 * worker or a delivery report may keep pointing at an old one. */
struct uplink_routes {
	struct route_table *rt;
	struct uplink_route_stats *rs; /* one per route */
	size_t n;
	struct uplink_routes *prev;
};

const double uplink_lat_bounds_ms[UPLINK_LAT_BUCKETS - 1] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000,
};

struct ticket;

/* The opaque of one record: which ticket, which route's counters. */
struct rec {
	struct ticket *t;
	struct uplink_route_stats *rs; /* NULL for a dead letter */
};

/* One per publish; shared by its records. */
struct ticket {
	struct reclaim_node rn;      /* freed by its worker (worker_reclaim) */
	struct uplink *u;
	struct msg *m;               /* raw values point into it */
	uint64_t conn_id;
	uint32_t seq;                /* 0: QoS 0, nobody waits */
	atomic_int remaining;
	atomic_bool failed;
	char *clientid;              /* for dead-letter envelopes (inside this allocation) */
	char *username;              /* NULL, or inside this allocation */
	uint32_t n_recs;
	struct rec recs[];           /* one per matched route, and one for a dead letter */
};



static void ticket_free(struct ticket *t)
{
	msg_unref(t->m);
	free(t); /* the ids live in the same allocation */
}

static bool err_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return true;
	default:
		/* Timeouts, transport, unknown: the device resends; nothing is lost. */
		return false;
	}
}

static void post_done(struct uplink *u, struct ticket *t)
{
	struct inbox_item it = { .kind = INBOX_UPLINK_DONE, .p1 = t };
	int w = conn_worker(t->conn_id);
	if (w >= u->br->n_workers || worker_post(&u->br->workers[w], &it) < 0)
		ticket_free(t);
}

static void ticket_reclaim(struct reclaim_node *n)
{
	ticket_free(container_of(n, struct ticket, rn));
}

static void ticket_release(struct uplink *u, struct ticket *t)
{
	if (atomic_fetch_sub(&t->remaining, 1) != 1)
		return;
	int w = conn_worker(t->conn_id);
	/* At shutdown the workers are gone: nobody is waiting for acks. */
	if (atomic_load(&u->closing) || w >= u->br->n_workers) {
		ticket_free(t);
	} else if (t->seq == 0) {
		/* QoS 0: nothing to acknowledge; only the memory goes home. */
		t->rn.free = ticket_reclaim;
		worker_reclaim(&u->br->workers[w], &t->rn);
	} else {
		post_done(u, t);
	}
}

/* Writes a dead letter for t. Returns 0 if one record was produced. */
static int dead_letter(struct uplink *u, struct ticket *t, const char *error)
{
	struct buf b = { 0 };
	struct msg *m = t->m;
	struct envelope_in in = {
		.topic = m->topic, .topic_len = m->topic_len,
		.clientid = t->clientid, .clientid_len = strlen(t->clientid),
		.username = t->username, .username_len = t->username ? strlen(t->username) : 0,
		.qos = m->qos, .retain = m->retain, .timestamp_ms = m->received_ms,
		.payload = m->payload, .payload_len = m->payload_len, .error = error,
	};
	if (envelope_encode(&b, &in) < 0) {
		buf_release(&b);
		return -1;
	}
	atomic_fetch_add(&t->remaining, 1);
	atomic_fetch_add(&u->st.in_flight, 1);
	rd_kafka_resp_err_t err = rd_kafka_producev(
		u->rk, RD_KAFKA_V_TOPIC(u->dead_letter),
		RD_KAFKA_V_KEY(t->clientid, strlen(t->clientid)),
		RD_KAFKA_V_VALUE((void *)buf_head(&b), buf_used(&b)),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(m->received_ms),
		RD_KAFKA_V_OPAQUE(&t->recs[t->n_recs - 1]), RD_KAFKA_V_END);
	buf_release(&b);
	if (err) {
		atomic_fetch_sub(&t->remaining, 1);
		atomic_fetch_sub(&u->st.in_flight, 1);
		return -1;
	}
	return 0;
}

/* A record that can never be produced as routed. */
static void permanent_failure(struct uplink *u, struct ticket *t, const char *ktopic,
			      const char *error)
{
	if (u->dead_letter && dead_letter(u, t, error) == 0) {
		atomic_fetch_add(&u->st.dead_letters, 1);
		log_warn("dead letter client=%s topic=%s kafka_topic=%s reason=\"%s\"", t->clientid,
			 t->m->topic, ktopic ? ktopic : "-", error);
		return;
	}
	atomic_fetch_add(&u->st.dropped, 1);
	log_warn("record dropped client=%s topic=%s kafka_topic=%s reason=\"%s\"", t->clientid,
		 t->m->topic, ktopic ? ktopic : "-", error);
}

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
	} else {
		const char *topic = rd_kafka_topic_name(rm->rkt);
		if (rs)
			atomic_fetch_add(&rs->failed, 1);
		if (t->seq == 0) {
			atomic_fetch_add(&u->st.qos0_failed, 1);
		} else if (err_is_permanent(rm->err) && rec->rs) {
			permanent_failure(u, t, topic, rd_kafka_err2str(rm->err));
		} else {
			atomic_fetch_add(&u->st.failed, 1);
			atomic_store(&t->failed, true);
			log_warn("kafka delivery failed client=%s topic=%s kafka_topic=%s reason=\"%s\"",
				 t->clientid, t->m->topic, topic, rd_kafka_err2str(rm->err));
		}
	}
	ticket_release(u, t);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	log_warn("kafka error code=%s reason=\"%s\"", rd_kafka_err2name(err), reason);
}

static int broker_cmp(const void *a, const void *b)
{
	const struct uplink_broker_state *x = a, *y = b;
	if (x->nodeid != y->nodeid)
		return x->nodeid < y->nodeid ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Poll thread: replaces the broker table with one statistics document's. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct uplink *u = opaque;
	struct uplink_broker_state v[UPLINK_MAX_BROKERS];
	size_t n = 0;
	const char *key;
	json_t *b, *root = json_loadb(json, len, 0, NULL);

	(void)rk;
	json_object_foreach(json_object_get(root, "brokers"), key, b) {
		int64_t id = kafka_conf_stats_int(b, "nodeid");
		const char *name = json_string_value(json_object_get(b, "name"));
		const char *state = json_string_value(json_object_get(b, "state"));
		/* nodeid -1: the internal broker, a bootstrap address not yet
		 * matched to a node, or a logical one (coordinator): none is a
		 * broker of the cluster in its own right. */
		if (id < 0 || id > INT32_MAX || !name || !state || n == UPLINK_MAX_BROKERS)
			continue;
		snprintf(v[n].name, sizeof(v[n].name), "%s", name);
		snprintf(v[n].state, sizeof(v[n].state), "%s", state);
		v[n++].nodeid = (int32_t)id;
	}
	qsort(v, n, sizeof(v[0]), broker_cmp);
	/* An unreadable document keeps the previous table rather than
	 * reporting every broker gone. */
	if (root) {
		pthread_mutex_lock(&u->bk_mu);
		memcpy(u->brokers, v, n * sizeof(v[0]));
		u->n_brokers = n;
		pthread_mutex_unlock(&u->bk_mu);
	}
	json_decref(root);
	return 0; /* librdkafka frees json */
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
	if (!uplink_set_routes(u, rt)) {
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
	rd_kafka_conf_set_stats_cb(conf, on_stats);
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
	while (rd_kafka_outq_len(u->rk) > 0 && util_now_ms() < end) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return rd_kafka_outq_len(u->rk);
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
	pthread_mutex_destroy(&u->rt_mu);
	pthread_mutex_destroy(&u->bk_mu);
	free(u->dead_letter);
	free(u->bootstrap);
	free(u);
}

const struct uplink_routes *uplink_set_routes(struct uplink *u, struct route_table *rt)
{
	struct uplink_routes *g = calloc(1, sizeof(*g));
	size_t n = route_table_count(rt);
	if (!g || !(g->rs = calloc(n ? n : 1, sizeof(*g->rs)))) {
		free(g);
		return NULL;
	}
	g->rt = route_table_ref(rt);
	g->n = n;
	pthread_mutex_lock(&u->rt_mu);
	g->prev = u->gen;
	u->gen = g;
	pthread_mutex_unlock(&u->rt_mu);
	return g;
}

const struct uplink_routes *uplink_current_routes(struct uplink *u)
{
	pthread_mutex_lock(&u->rt_mu);
	const struct uplink_routes *g = u->gen;
	pthread_mutex_unlock(&u->rt_mu);
	return g;
}

struct route_table *uplink_routes(struct uplink *u)
{
	return route_table_ref(uplink_current_routes(u)->rt);
}

const struct uplink_stats *uplink_stats(const struct uplink *u) { return &u->st; }
const struct uplink_latency *uplink_latency(const struct uplink *u) { return &u->lat; }
int uplink_queue_depth(const struct uplink *u) { return rd_kafka_outq_len(u->rk); }

const struct uplink_route_stats *uplink_route_stats(struct uplink *u, size_t i)
{
	const struct uplink_routes *g = uplink_current_routes(u);
	return i < g->n ? &g->rs[i] : NULL;
}
const char *uplink_bootstrap(const struct uplink *u) { return u->bootstrap; }

size_t uplink_broker_states(struct uplink *u, struct uplink_broker_state *out, size_t max)
{
	pthread_mutex_lock(&u->bk_mu);
	size_t n = u->n_brokers < max ? u->n_brokers : max;
	if (n)
		memcpy(out, u->brokers, n * sizeof(*out));
	pthread_mutex_unlock(&u->bk_mu);
	return n;
}

bool uplink_broker_is_up(const struct uplink_broker_state *b)
{
	/* UPDATE is a passing mark librdkafka sets on a connected broker. */
	return strcmp(b->state, "UP") == 0 || strcmp(b->state, "UPDATE") == 0;
}

static struct ticket *ticket_new(struct uplink *u, struct client *c, struct msg *m, uint32_t seq,
				 uint32_t n_routes)
{
	/* One allocation per publish: the ticket, its records' opaques and
	 * copies of the ids that dead letters and logs need after the client
	 * may be gone. */
	size_t recs = (n_routes + 1) * sizeof(struct rec);
	size_t idlen = (size_t)c->id_len + 1;
	size_t ulen = c->username ? strlen(c->username) + 1 : 0;
	struct ticket *t = malloc(sizeof(*t) + recs + idlen + ulen);
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	char *strs = (char *)t->recs + recs;
	t->n_recs = n_routes + 1;
	for (uint32_t i = 0; i < t->n_recs; i++)
		t->recs[i] = (struct rec){ t, NULL };
	t->u = u;
	t->m = msg_ref(m);
	t->conn_id = c->conn_id;
	t->seq = seq;
	atomic_init(&t->remaining, 1); /* held by uplink_publish until it is done */
	t->clientid = memcpy(strs, c->id, idlen);
	t->username = c->username ? memcpy(strs + idlen, c->username, ulen) : NULL;
	return t;
}

static rd_kafka_headers_t *raw_headers(struct client *c, struct msg *m)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(5);
	char qos[2] = { (char)('0' + m->qos), 0 };
	rd_kafka_header_add(h, "mqtt.topic", -1, m->topic, m->topic_len);
	rd_kafka_header_add(h, "mqtt.clientid", -1, c->id, c->id_len);
	rd_kafka_header_add(h, "mqtt.qos", -1, qos, 1);
	rd_kafka_header_add(h, "mqtt.retain", -1, m->retain ? "true" : "false", m->retain ? 4 : 5);
	if (c->username)
		rd_kafka_header_add(h, "mqtt.username", -1, c->username, -1);
	return h;
}

/* Renders and produces one record of t for route r. */
static void produce_route(struct worker *w, struct client *c, struct ticket *t,
			  const struct route *r, struct rec *rec)
{
	struct uplink *u = t->u;
	struct msg *m = t->m;
	struct template_ctx ctx;
	struct buf *tb = &w->scratch_topic, *kb = &w->scratch_key, *vb = &w->scratch_value;

	template_ctx_init(&ctx);
	ctx.clientid = c->id;
	ctx.clientid_len = c->id_len;
	ctx.username = c->username;
	ctx.username_len = c->username ? strlen(c->username) : 0;
	ctx.topic = m->topic;
	ctx.topic_len = m->topic_len;
	buf_reset(tb);
	buf_reset(kb);
	int rc = template_render(route_topic(r), &ctx, tb);
	if (rc == 0 && route_key(r))
		rc = template_render(route_key(r), &ctx, kb);
	if (rc < 0) {
		char why[160];
		snprintf(why, sizeof(why), "route line %d: %s", route_line(r), template_err_str(rc));
		permanent_failure(u, t, NULL, why);
		return;
	}
	if (buf_append(tb, "", 1) < 0 ||
	    !route_kafka_topic_valid((const char *)buf_head(tb), buf_used(tb) - 1)) {
		permanent_failure(u, t, (const char *)buf_head(tb), "invalid Kafka topic name");
		return;
	}
	const char *ktopic = (const char *)buf_head(tb);
	const void *val = m->payload;
	size_t vlen = m->payload_len;
	int flags = 0; /* zero copy: the ticket keeps m alive until the report */
	rd_kafka_headers_t *hdrs = NULL;
	if (route_format(r) == ROUTE_FORMAT_JSON) {
		struct envelope_in in = {
			.topic = m->topic, .topic_len = m->topic_len,
			.clientid = c->id, .clientid_len = c->id_len,
			.username = c->username, .username_len = ctx.username_len,
			.qos = m->qos, .retain = m->retain, .timestamp_ms = m->received_ms,
			.payload = m->payload, .payload_len = m->payload_len,
		};
		buf_reset(vb);
		if (envelope_encode(vb, &in) < 0) {
			permanent_failure(u, t, ktopic, "cannot encode the JSON envelope");
			return;
		}
		val = buf_head(vb);
		vlen = buf_used(vb);
		flags = RD_KAFKA_MSG_F_COPY;
	} else {
		hdrs = raw_headers(c, m);
	}
	atomic_fetch_add(&t->remaining, 1);
	atomic_fetch_add(&u->st.in_flight, 1);
	const void *key = route_key(r) ? buf_head(kb) : NULL;
	size_t klen = route_key(r) ? buf_used(kb) : 0;
	rd_kafka_resp_err_t err;
	if (hdrs)
		err = rd_kafka_producev(u->rk, RD_KAFKA_V_TOPIC(ktopic), RD_KAFKA_V_KEY(key, klen),
					RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_MSGFLAGS(flags),
					RD_KAFKA_V_TIMESTAMP(m->received_ms),
					RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(rec), RD_KAFKA_V_END);
	else
		err = rd_kafka_producev(u->rk, RD_KAFKA_V_TOPIC(ktopic), RD_KAFKA_V_KEY(key, klen),
					RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_MSGFLAGS(flags),
					RD_KAFKA_V_TIMESTAMP(m->received_ms),
					RD_KAFKA_V_OPAQUE(rec), RD_KAFKA_V_END);
	struct uplink_route_stats *rs = rec->rs;
	if (err) {
		rd_kafka_headers_destroy(hdrs); /* not taken on failure */
		atomic_fetch_sub(&t->remaining, 1);
		atomic_fetch_sub(&u->st.in_flight, 1);
		if (rs)
			atomic_fetch_add(&rs->failed, 1);
		if (t->seq != 0 && err_is_permanent(err)) {
			permanent_failure(u, t, ktopic, rd_kafka_err2str(err));
		} else if (t->seq != 0) {
			atomic_fetch_add(&u->st.failed, 1);
			atomic_store(&t->failed, true);
			log_warn("kafka produce failed client=%s topic=%s kafka_topic=%s reason=\"%s\"",
				 c->id, m->topic, ktopic, rd_kafka_err2str(err));
		} else {
			atomic_fetch_add(&u->st.qos0_failed, 1);
		}
		return;
	}
	STAT_INC(w, up_routed);
	if (rs) {
		atomic_fetch_add(&rs->routed, 1);
		atomic_fetch_add(&rs->in_flight, 1);
	}
}

enum uplink_result uplink_publish(struct worker *w, struct client *c, struct msg *m,
				  uint32_t seq)
{
	struct uplink *u = w->up;
	const struct route *routes[MAX_ROUTES_PER_MSG];

	const struct uplink_routes *g = w->routes;
	size_t n = route_table_match(g->rt, m->topic, m->topic_len, routes, MAX_ROUTES_PER_MSG);
	if (n == 0) {
		STAT_INC(w, up_unrouted);
		return UPLINK_DONE;
	}
	if (n > MAX_ROUTES_PER_MSG)
		n = MAX_ROUTES_PER_MSG;
	if (atomic_load_explicit(&u->st.in_flight, memory_order_relaxed) + (int64_t)n >
	    u->queue_limit)
		return UPLINK_BUSY;
	struct ticket *t = ticket_new(u, c, m, seq, (uint32_t)n);
	if (!t)
		return UPLINK_BUSY;
	for (size_t i = 0; i < n; i++) {
		t->recs[i].rs = &g->rs[route_index(routes[i])];
		produce_route(w, c, t, routes[i], &t->recs[i]);
	}
	/* Drop our hold. If every record already failed or none was produced,
	 * this completes the ticket through the inbox like any report. */
	if (atomic_load(&t->remaining) == 1 && !atomic_load(&t->failed)) {
		ticket_free(t);
		return UPLINK_DONE;
	}
	ticket_release(u, t);
	return UPLINK_PENDING;
}

void uplink_done(struct worker *w, void *ticket)
{
	struct ticket *t = ticket;
	struct client *c = worker_client(w, t->conn_id);

	if (c && c->state == CL_ACTIVE) {
		if (atomic_load(&t->failed))
			atomic_fetch_add(&t->u->st.closed, 1);
		client_ack_complete(c, t->seq, !atomic_load(&t->failed));
	}
	ticket_free(t);
}

/* The cache lives here rather than in struct uplink so that this stays a
 * self-contained addition; there is one producer per process. */
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
