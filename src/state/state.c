/*
 * state.c - the state layer's core (state.h, state_int.h; docs/scaling/
 * core.md): the topics, the one producer and its poll thread, the reader
 * thread, heartbeats, the lease and readiness.
 *
 * Threads:
 * - main: state_new/start/stop/free;
 * - "state-prod": rd_kafka_poll() on the producer (delivery reports);
 * - "state": the reader. It first makes sure the topics exist (created or
 *   checked; retried every SETUP_RETRY_MS while Kafka cannot answer, so a
 *   gateway started before its Kafka comes up by itself), queries the high
 *   watermarks, assigns every partition of sessions, retained and instances
 *   from the beginning, then reads them forever, handing each record to its
 *   module. Every TICK_MS it ticks the modules, writes the heartbeat when
 *   due and checks the lease.
 * Readiness and the metrics read atomics (and the reason string under a
 * short lock) from any thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "broker/broker.h"
#include "core/buf.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/prom.h"
#include "core/util.h"
#include "kafka/kafka_conf.h"
#include "state/state_int.h"

#define TICK_MS 100
/* Setup retries back off from SETUP_RETRY_MIN_MS (a topic just created may
 * lack a leader for a moment) to SETUP_RETRY_MS (Kafka away). */
#define SETUP_RETRY_MIN_MS 200
#define SETUP_RETRY_MS 2000
#define META_TIMEOUT_MS 5000
#define ADMIN_TIMEOUT_MS 10000
#define WATERMARK_TIMEOUT_MS 5000
/* Beyond this many instance ids in <prefix>.instances new ones are not
 * tracked (they are written by gateways only: a guard, not a limit met). */
#define INSTANCES_MAX 4096
#define HEARTBEAT_MAX 512

enum { K_SESSIONS, K_RETAINED, K_INSTANCES, K_INBOX, K_QUEUE, K_N };
static const char *const kind_name[K_N] = { "sessions", "retained", "instances", "inbox",
					     "queue" };

enum phase {
	PH_SETUP,       /* topics not yet made sure of (Kafka unreachable, or not tried) */
	PH_CATCHING_UP, /* assigned; reading what was there at start */
	PH_RUNNING,     /* caught up */
	PH_BROKEN,      /* a topic has settings that lose state: never ready */
};

/* One partition the reader reads, and how far it got. */
struct rpart {
	int kind;
	int32_t p;
	int64_t start_hwm;  /* high watermark queried at start */
	bool done;          /* reached start_hwm (or an EOF) */
};

struct inst {
	char id[STATE_ID_MAX + 1];
	int64_t boot, at;   /* from its latest heartbeat (wall ms) */
	bool up;
};

/* The (done, ud) pair of a produced record, recycled through a free list so
 * that records with a callback cost no malloc once the list is warm. */
struct dr_node {
	state_dr_fn done;
	void *ud;
	struct dr_node *next;
};

struct state_core {
	pthread_t reader_th, poll_th;
	bool reader_started, poll_started, bus_started;
	atomic_bool poll_stop;
	atomic_bool closed;             /* state_produce() refuses (state_free) */
	rd_kafka_t *reader;
	atomic_int phase;
	pthread_mutex_t why_mu;         /* guards why */
	char why[256];                  /* what readiness waits for */
	int partitions[K_N];            /* as found in the metadata */
	struct rpart *parts;
	size_t nparts, ndone;
	int64_t setup_at;               /* monotonic: start of the current phase */
	atomic_llong catchup_ms;        /* how long catching up took; -1 before */
	atomic_llong start_records;     /* records before the start watermarks */
	bool heard_once, closed_all;
	int64_t next_hb;                /* monotonic */
	/* instances, from <prefix>.instances */
	pthread_mutex_t inst_mu;        /* guards inst, ninst */
	struct inst *inst;
	size_t ninst, inst_cap;
	/* delivery report nodes */
	pthread_mutex_t dr_mu;
	struct dr_node *dr_free;
	/* counters */
	atomic_ullong read[3];          /* sessions, retained, instances */
	atomic_ullong written, write_errors, refused, heartbeats, lease_lost;
};

int64_t state_now_ms(void) { return util_now_ms(); }
int64_t state_wall_ms(void) { return util_wall_ms(); }

static void set_why(struct state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(struct state *st, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&st->core->why_mu);
	va_start(ap, fmt);
	vsnprintf(st->core->why, sizeof(st->core->why), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&st->core->why_mu);
}

/* ---- producing ---------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct state *st = opaque;
	struct dr_node *n = m->_private;
	(void)rk;

	if (m->err) {
		atomic_fetch_add_explicit(&st->core->write_errors, 1, memory_order_relaxed);
		log_warn_rl("state write failed topic=%s err=\"%s\"", rd_kafka_topic_name(m->rkt),
			    rd_kafka_err2str(m->err));
	} else {
		atomic_fetch_add_explicit(&st->core->written, 1, memory_order_relaxed);
	}
	if (!n)
		return;
	n->done(n->ud, m->err, m->partition, m->offset);
	pthread_mutex_lock(&st->core->dr_mu);
	n->next = st->core->dr_free;
	st->core->dr_free = n;
	pthread_mutex_unlock(&st->core->dr_mu);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	log_warn_rl("state kafka error err=%s reason=%s", rd_kafka_err2name(err), log_q(reason));
}

int state_produce(struct state *st, const char *topic, const void *key, size_t keylen,
		  const void *value, size_t vlen, rd_kafka_headers_t *hdrs, state_dr_fn done,
		  void *ud)
{
	return state_produce_part(st, topic, RD_KAFKA_PARTITION_UA, key, keylen, value, vlen, hdrs,
				  done, ud);
}

int state_produce_part(struct state *st, const char *topic, int32_t partition, const void *key,
		       size_t keylen, const void *value, size_t vlen, rd_kafka_headers_t *hdrs,
		       state_dr_fn done, void *ud)
{
	struct state_core *c = st->core;
	struct dr_node *n = NULL;
	rd_kafka_resp_err_t err;

	if (atomic_load(&c->closed)) {
		if (hdrs)
			rd_kafka_headers_destroy(hdrs);
		atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
		return -1;
	}
	if (done) {
		pthread_mutex_lock(&c->dr_mu);
		if ((n = c->dr_free))
			c->dr_free = n->next;
		pthread_mutex_unlock(&c->dr_mu);
		if (!n && !(n = malloc(sizeof(*n)))) {
			if (hdrs)
				rd_kafka_headers_destroy(hdrs);
			atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
			return -1;
		}
		n->done = done;
		n->ud = ud;
	}
	if (hdrs)
		err = rd_kafka_producev(st->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
					RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, vlen),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(n), RD_KAFKA_V_END);
	else
		err = rd_kafka_producev(st->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
					RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, vlen),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(n),
					RD_KAFKA_V_END);
	if (err) {
		/* producev leaves the headers with the caller when it fails. */
		if (hdrs)
			rd_kafka_headers_destroy(hdrs);
		if (n) {
			pthread_mutex_lock(&c->dr_mu);
			n->next = c->dr_free;
			c->dr_free = n;
			pthread_mutex_unlock(&c->dr_mu);
		}
		atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
		log_warn_rl("state write refused topic=%s err=\"%s\"", topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static void *poll_main(void *arg)
{
	struct state *st = arg;
	log_set_thread("state-prod");
	while (!atomic_load(&st->core->poll_stop))
		rd_kafka_poll(st->prod, 100);
	return NULL;
}

/* ---- instances and heartbeats ------------------------------------------- */

static int heartbeat_write(struct state *st, const char *what)
{
	char v[HEARTBEAT_MAX];
	int n = snprintf(v, sizeof(v),
			 "{\"v\":1,\"instance\":\"%s\",\"boot\":%" PRId64 ",\"at\":%" PRId64
			 ",\"state\":\"%s\"}",
			 st->instance_id, st->started_ms, state_wall_ms(), what);
	if (n < 0 || (size_t)n >= sizeof(v))
		return -1;
	int rc = state_produce(st, st->t_instances, st->instance_id, strlen(st->instance_id), v,
			       (size_t)n, NULL, NULL, NULL);
	if (rc == 0)
		atomic_fetch_add_explicit(&st->core->heartbeats, 1, memory_order_relaxed);
	return rc;
}

static struct inst *inst_find(struct state_core *c, const char *id)
{
	for (size_t i = 0; i < c->ninst; i++)
		if (strcmp(c->inst[i].id, id) == 0)
			return &c->inst[i];
	return NULL;
}

/* A record of <prefix>.instances (reader thread). */
static void instance_record(struct state *st, const rd_kafka_message_t *m)
{
	struct state_core *c = st->core;
	char id[STATE_ID_MAX + 1];

	if (!m->key || m->key_len == 0 || m->key_len > STATE_ID_MAX)
		return;
	memcpy(id, m->key, m->key_len);
	id[m->key_len] = '\0';
	if (!m->payload || m->len == 0) {
		/* A tombstone: someone removed the instance's record. */
		pthread_mutex_lock(&c->inst_mu);
		struct inst *e = inst_find(c, id);
		if (e)
			*e = c->inst[--c->ninst];
		pthread_mutex_unlock(&c->inst_mu);
		return;
	}
	json_error_t jerr;
	json_t *j = json_loadb(m->payload, m->len, 0, &jerr);
	if (!j || !json_is_object(j)) {
		log_warn_rl("state instance record unreadable id=%s", log_q(id));
		json_decref(j);
		return;
	}
	json_t *jb = json_object_get(j, "boot"), *ja = json_object_get(j, "at");
	const char *s = json_string_value(json_object_get(j, "state"));
	int64_t boot = json_is_integer(jb) ? (int64_t)json_integer_value(jb) : -1;
	int64_t at = json_is_integer(ja) ? (int64_t)json_integer_value(ja) : 0;
	bool up = s && strcmp(s, "up") == 0;
	json_decref(j);

	pthread_mutex_lock(&c->inst_mu);
	struct inst *e = inst_find(c, id);
	if (!e && c->ninst < INSTANCES_MAX) {
		if (c->ninst == c->inst_cap) {
			size_t cap = c->inst_cap ? c->inst_cap * 2 : 16;
			struct inst *ni = realloc(c->inst, cap * sizeof(*ni));
			if (ni) {
				c->inst = ni;
				c->inst_cap = cap;
			}
		}
		if (c->ninst < c->inst_cap) {
			e = &c->inst[c->ninst++];
			snprintf(e->id, sizeof(e->id), "%s", id);
		}
	}
	if (e) {
		e->boot = boot;
		e->at = at;
		e->up = up;
	}
	pthread_mutex_unlock(&c->inst_mu);

	/* Our own heartbeat of this run read back: produce and fetch both work. */
	if (up && boot == st->started_ms && strcmp(id, st->instance_id) == 0) {
		atomic_store(&st->last_heard_ms, state_now_ms());
		c->heard_once = true;
		if (!atomic_load(&st->kafka_ok)) {
			atomic_store(&st->kafka_ok, true);
			if (c->closed_all)
				log_info("state lease regained: own heartbeat read back");
			c->closed_all = false;
		}
	}
}

bool state_instance_alive(struct state *st, const char *id)
{
	struct state_core *c = st->core;
	bool alive = false;

	if (strcmp(id, st->instance_id) == 0)
		return true;
	pthread_mutex_lock(&c->inst_mu);
	struct inst *e = inst_find(c, id);
	/* "down" (a clean stop) counts as alive for the lease too: a restart
	 * within lease_ms takes its own sessions (and the queues its stop wrote
	 * to its inbox) back; a drain hands them over lease_ms after the stop,
	 * as after a crash. */
	if (e)
		alive = state_wall_ms() - e->at <= st->cfg->state.lease_ms;
	pthread_mutex_unlock(&c->inst_mu);
	return alive;
}

int64_t state_instance_boot(struct state *st, const char *id)
{
	struct state_core *c = st->core;
	int64_t boot = -1;

	if (strcmp(id, st->instance_id) == 0)
		return st->started_ms;
	pthread_mutex_lock(&c->inst_mu);
	struct inst *e = inst_find(c, id);
	if (e)
		boot = e->boot;
	pthread_mutex_unlock(&c->inst_mu);
	return boot;
}

static size_t instances_alive(struct state *st)
{
	struct state_core *c = st->core;
	size_t n = 0;
	int64_t now = state_wall_ms();

	pthread_mutex_lock(&c->inst_mu);
	for (size_t i = 0; i < c->ninst; i++)
		n += c->inst[i].up && now - c->inst[i].at <= st->cfg->state.lease_ms;
	pthread_mutex_unlock(&c->inst_mu);
	return n;
}

/* ---- topics ------------------------------------------------------------- */

static const char *topic_of(const struct state *st, int k)
{
	switch (k) {
	case K_SESSIONS: return st->t_sessions;
	case K_RETAINED: return st->t_retained;
	case K_INSTANCES: return st->t_instances;
	case K_QUEUE: return st->t_queue;
	default: return st->t_inbox;
	}
}

static bool wanted_compact(int k) { return k != K_INBOX && k != K_QUEUE; }

static rd_kafka_conf_t *conf_for(struct state *st, enum kafka_role role, char *err,
				 size_t errlen);
static struct msg *hook_spool(void *ctx, const char *id, uint16_t id_len, struct msg *m,
			      uint8_t qos, bool retain, bool owes)
{
	return state_queue_spool(((struct state *)ctx)->queue, id, id_len, m, qos, retain, owes);
}

static int wanted_partitions(const struct state *st, int k)
{
	return k == K_SESSIONS || k == K_RETAINED ? st->cfg->state.partitions : 1;
}

/* Partition counts of the four topics from an all-topics metadata request
 * (a request naming the topics would auto-create them with the broker's
 * defaults on a Kafka with auto.create.topics.enable). 0: absent. Sets
 * *admin when the metadata names a controller among its brokers (the mock
 * cluster names none: its admin API is missing). Returns 0 or -1 (why set). */
static int topics_metadata(struct state *st, int parts[K_N], bool *admin)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(st->prod, 1, NULL, &md, META_TIMEOUT_MS);

	if (err) {
		set_why(st, "kafka metadata unreachable: %s", rd_kafka_err2str(err));
		return -1;
	}
	int32_t ctl = rd_kafka_controllerid(st->prod, 0);
	*admin = false;
	for (int i = 0; i < md->broker_cnt; i++)
		if (md->brokers[i].id == ctl)
			*admin = true;
	for (int k = 0; k < K_N; k++) {
		parts[k] = 0;
		for (int i = 0; i < md->topic_cnt; i++)
			if (strcmp(md->topics[i].topic, topic_of(st, k)) == 0 && !md->topics[i].err)
				parts[k] = md->topics[i].partition_cnt;
	}
	rd_kafka_metadata_destroy(md);
	return 0;
}

static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type)
{
	int64_t end = state_now_ms() + ADMIN_TIMEOUT_MS + 1000;
	while (state_now_ms() < end) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 200);
		if (!ev)
			continue;
		if (rd_kafka_event_type(ev) == type)
			return ev;
		rd_kafka_event_destroy(ev);
	}
	return NULL;
}

static int create_topics(struct state *st, const int parts[K_N])
{
	char e[256], v[32];
	rd_kafka_NewTopic_t *nt[K_N];
	size_t n = 0;
	int rc = 0;
	const struct cfg_state *cs = &st->cfg->state;

	for (int k = 0; k < K_N; k++) {
		if (parts[k] > 0)
			continue;
		rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(topic_of(st, k), wanted_partitions(st, k),
							       cs->replication_factor, e, sizeof(e));
		if (!t) {
			set_why(st, "topic %s: %s", topic_of(st, k), e);
			rc = -1;
			break;
		}
		nt[n++] = t;
		if (wanted_compact(k)) {
			rd_kafka_NewTopic_set_config(t, "cleanup.policy", "compact");
			if (k != K_INSTANCES) {
				snprintf(v, sizeof(v), "%d", cs->min_compaction_lag_ms);
				rd_kafka_NewTopic_set_config(t, "min.compaction.lag.ms", v);
			}
		} else {
			rd_kafka_NewTopic_set_config(t, "cleanup.policy", "delete");
			snprintf(v, sizeof(v), "%d", cs->inbox_retention_ms);
			rd_kafka_NewTopic_set_config(t, "retention.ms", v);
		}
	}
	if (rc == 0 && n > 0) {
		rd_kafka_queue_t *q = rd_kafka_queue_new(st->prod);
		rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(st->prod,
								       RD_KAFKA_ADMIN_OP_CREATETOPICS);
		rd_kafka_AdminOptions_set_operation_timeout(o, ADMIN_TIMEOUT_MS, e, sizeof(e));
		rd_kafka_AdminOptions_set_request_timeout(o, ADMIN_TIMEOUT_MS, e, sizeof(e));
		rd_kafka_CreateTopics(st->prod, nt, n, o, q);
		rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
		if (!ev || rd_kafka_event_error(ev)) {
			set_why(st, "creating the state topics: %s",
				ev ? rd_kafka_event_error_string(ev) : "timed out");
			rc = -1;
		} else {
			size_t nr;
			const rd_kafka_topic_result_t **r = rd_kafka_CreateTopics_result_topics(
				rd_kafka_event_CreateTopics_result(ev), &nr);
			for (size_t i = 0; i < nr; i++) {
				rd_kafka_resp_err_t te = rd_kafka_topic_result_error(r[i]);
				if (te == RD_KAFKA_RESP_ERR_NO_ERROR)
					log_info("state topic created topic=%s",
						 rd_kafka_topic_result_name(r[i]));
				else if (te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
					set_why(st, "creating topic %s: %s",
						rd_kafka_topic_result_name(r[i]),
						rd_kafka_topic_result_error_string(r[i])
							? rd_kafka_topic_result_error_string(r[i])
							: rd_kafka_err2str(te));
					rc = -1;
				}
			}
		}
		if (ev)
			rd_kafka_event_destroy(ev);
		rd_kafka_AdminOptions_destroy(o);
		rd_kafka_queue_destroy(q);
	}
	for (size_t i = 0; i < n; i++)
		rd_kafka_NewTopic_destroy(nt[i]);
	return rc;
}

/* Without the admin API (librdkafka's mock cluster): a metadata request
 * naming the topics from a handle that allows auto-creation. They get the
 * cluster's defaults (partitions, no compaction: the mock compacts nothing
 * anyway). */
static void auto_create(struct state *st, const int parts[K_N])
{
	char e[256];
	/* kafka.properties too (security), with auto-creation allowed. */
	rd_kafka_conf_t *conf = conf_for(st, KAFKA_PRODUCER, e, sizeof(e));
	if (!conf || rd_kafka_conf_set(conf, "allow.auto.create.topics", "true", e, sizeof(e)) !=
			     RD_KAFKA_CONF_OK) {
		if (conf)
			rd_kafka_conf_destroy(conf);
		return;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return;
	}
	for (int k = 0; k < K_N; k++) {
		if (parts[k] > 0)
			continue;
		rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic_of(st, k), NULL);
		const struct rd_kafka_metadata *md = NULL;
		if (t && rd_kafka_metadata(rk, 0, t, &md, META_TIMEOUT_MS) == 0)
			rd_kafka_metadata_destroy(md);
		if (t)
			rd_kafka_topic_destroy(t);
	}
	rd_kafka_destroy(rk);
	log_warn("state topics auto-created reason=\"the cluster has no admin API (librdkafka mock "
		 "cluster?)\" settings=\"the cluster's defaults: partitions and cleanup.policy not set\"");
}

/* Checks the settings of the existing topics (DescribeConfigs). A compacted
 * topic that is not compacted, or an inbox that is, loses state: returns -2
 * (never ready, why says it). Other differences are warnings. -1: could not
 * ask (retry). */
static int check_topics(struct state *st, const int parts[K_N])
{
	char e[256];
	rd_kafka_ConfigResource_t *cr[K_N];
	int rc = 0;
	const struct cfg_state *cs = &st->cfg->state;

	for (int k = 0; k < K_N; k++)
		cr[k] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic_of(st, k));
	rd_kafka_queue_t *q = rd_kafka_queue_new(st->prod);
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(st->prod,
							       RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_AdminOptions_set_request_timeout(o, ADMIN_TIMEOUT_MS, e, sizeof(e));
	rd_kafka_DescribeConfigs(st->prod, cr, K_N, o, q);
	rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
	if (!ev || rd_kafka_event_error(ev)) {
		set_why(st, "describing the state topics: %s",
			ev ? rd_kafka_event_error_string(ev) : "timed out");
		rc = -1;
		goto out;
	}
	size_t nres;
	const rd_kafka_ConfigResource_t **res = rd_kafka_DescribeConfigs_result_resources(
		rd_kafka_event_DescribeConfigs_result(ev), &nres);
	for (size_t i = 0; i < nres && rc != -2; i++) {
		const char *name = rd_kafka_ConfigResource_name(res[i]);
		int k = 0;
		while (k < K_N && strcmp(name, topic_of(st, k)) != 0)
			k++;
		if (k == K_N)
			continue;
		if (rd_kafka_ConfigResource_error(res[i])) {
			set_why(st, "describing topic %s: %s", name,
				rd_kafka_err2str(rd_kafka_ConfigResource_error(res[i])));
			rc = -1;
			continue;
		}
		size_t nent;
		const rd_kafka_ConfigEntry_t **ent = rd_kafka_ConfigResource_configs(res[i], &nent);
		const char *policy = "", *lag = NULL;
		for (size_t j = 0; j < nent; j++) {
			const char *n = rd_kafka_ConfigEntry_name(ent[j]);
			const char *v = rd_kafka_ConfigEntry_value(ent[j]);
			if (strcmp(n, "cleanup.policy") == 0 && v)
				policy = v;
			else if (strcmp(n, "min.compaction.lag.ms") == 0)
				lag = v;
		}
		bool compact = strstr(policy, "compact") != NULL;
		if (wanted_compact(k) && !compact) {
			set_why(st, "topic %s has cleanup.policy=%s: state would be deleted; set "
				"cleanup.policy=compact", name, policy);
			log_error("state topic misconfigured topic=%s cleanup.policy=%s "
				  "reason=\"records would be deleted after retention.ms, not compacted: "
				  "set cleanup.policy=compact; the instance stays not ready\"",
				  name, policy);
			rc = -2;
		} else if (!wanted_compact(k) && compact) {
			set_why(st, "topic %s has cleanup.policy=%s: messages would be compacted away; "
				"set cleanup.policy=delete", name, policy);
			log_error("state topic misconfigured topic=%s cleanup.policy=%s "
				  "reason=\"compaction would drop messages of one key: set "
				  "cleanup.policy=delete; the instance stays not ready\"", name, policy);
			rc = -2;
		} else if (wanted_compact(k) && strcmp(policy, "compact") != 0) {
			log_warn("state topic settings topic=%s cleanup.policy=%s reason=\"delete too: "
				 "state older than retention.ms is lost\"", name, policy);
		}
		if (wanted_compact(k) && k != K_INSTANCES && lag && atoll(lag) < cs->min_compaction_lag_ms)
			log_warn("state topic settings topic=%s min.compaction.lag.ms=%s wanted=%d "
				 "reason=\"stale records may outlive the fencing records after them\"",
				 name, lag, cs->min_compaction_lag_ms);
		if (parts[k] != wanted_partitions(st, k))
			log_warn("state topic settings topic=%s partitions=%d wanted=%d reason=\"the "
				 "existing topic is used as it is\"", name, parts[k],
				 wanted_partitions(st, k));
	}
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	for (int k = 0; k < K_N; k++)
		rd_kafka_ConfigResource_destroy(cr[k]);
	return rc;
}

/* The topics exist (created or checked). 0, -1 (retry later) or -2 (broken). */
static int ensure_topics(struct state *st)
{
	int parts[K_N];
	bool admin, created = false;

	if (topics_metadata(st, parts, &admin) < 0)
		return -1;
	bool missing = false;
	for (int k = 0; k < K_N; k++)
		missing |= parts[k] == 0;
	if (missing) {
		if (admin) {
			if (create_topics(st, parts) < 0)
				return -1;
		} else {
			auto_create(st, parts);
		}
		created = true;
		/* Wait for the metadata to show them (a new topic takes a moment to
		 * reach every broker). */
		int64_t end = state_now_ms() + META_TIMEOUT_MS;
		do {
			if (topics_metadata(st, parts, &admin) < 0)
				return -1;
			missing = false;
			for (int k = 0; k < K_N; k++)
				missing |= parts[k] == 0;
			if (missing) {
				struct timespec ts = { 0, 100 * 1000 * 1000 };
				nanosleep(&ts, NULL);
			}
		} while (missing && state_now_ms() < end && !atomic_load(&st->stopping));
		if (missing) {
			set_why(st, "state topics do not show in the metadata yet");
			return -1;
		}
	}
	if (admin) {
		int rc = check_topics(st, parts);
		if (rc < 0)
			return rc;
	} else if (!created) {
		log_warn("state topic settings not checked reason=\"the cluster has no admin API "
			 "(librdkafka mock cluster?)\"");
	}
	memcpy(st->core->partitions, parts, sizeof(parts));
	log_info("state topics ready sessions=%s:%d retained=%s:%d instances=%s:%d inbox=%s:%d "
		 "queue=%s:%d", st->t_sessions, parts[K_SESSIONS], st->t_retained,
		 parts[K_RETAINED], st->t_instances, parts[K_INSTANCES], st->t_inbox,
		 parts[K_INBOX], st->t_queue, parts[K_QUEUE]);
	return 0;
}

/* Queries the high watermarks and assigns every partition of sessions,
 * retained and instances from the beginning. 0 or -1 (retry). */
static int assign_all(struct state *st)
{
	struct state_core *c = st->core;
	size_t n = 0;
	int64_t total = 0;

	for (int k = 0; k < K_INBOX; k++)
		n += (size_t)c->partitions[k];
	free(c->parts);
	if (!(c->parts = calloc(n, sizeof(*c->parts)))) {
		set_why(st, "out of memory");
		return -1;
	}
	c->nparts = n;
	c->ndone = 0;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
	size_t i = 0;
	for (int k = 0; k < K_INBOX; k++)
		for (int32_t p = 0; p < c->partitions[k]; p++, i++) {
			int64_t lo = 0, hi = 0;
			rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
				c->reader, topic_of(st, k), p, &lo, &hi, WATERMARK_TIMEOUT_MS);
			if (err) {
				set_why(st, "kafka watermarks of %s [%d]: %s", topic_of(st, k), (int)p,
					rd_kafka_err2str(err));
				rd_kafka_topic_partition_list_destroy(l);
				return -1;
			}
			c->parts[i] = (struct rpart){ .kind = k, .p = p, .start_hwm = hi };
			if (hi <= lo) {
				c->parts[i].done = true;
				c->ndone++;
			}
			total += hi - lo;
			rd_kafka_topic_partition_list_add(l, topic_of(st, k), p)->offset =
				RD_KAFKA_OFFSET_BEGINNING;
		}
	rd_kafka_resp_err_t err = rd_kafka_assign(c->reader, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (err) {
		set_why(st, "kafka assign: %s", rd_kafka_err2str(err));
		return -1;
	}
	atomic_store(&c->start_records, total);
	log_info("state catching up partitions=%zu records=%" PRId64, n, total);
	return 0;
}

/* ---- the reader --------------------------------------------------------- */

static struct rpart *part_of(struct state *st, int k, int32_t p)
{
	struct state_core *c = st->core;
	size_t base = 0;
	for (int i = 0; i < k; i++)
		base += (size_t)c->partitions[i];
	if (p < 0 || p >= c->partitions[k])
		return NULL;
	return &c->parts[base + (size_t)p];
}

static void caught_up(struct state *st);

static void part_reached(struct state *st, int k, int32_t p, int64_t next, bool eof)
{
	struct state_core *c = st->core;
	struct rpart *rp = part_of(st, k, p);

	if (!rp || rp->done || (!eof && next < rp->start_hwm))
		return;
	rp->done = true;
	if (++c->ndone == c->nparts)
		caught_up(st);
}

/* Everything there at start was read: the modules know what Kafka knew. */
static void caught_up(struct state *st)
{
	struct state_core *c = st->core;

	state_sessions_caught_up(st->sessions);
	atomic_store(&c->catchup_ms, state_now_ms() - c->setup_at);
	atomic_store(&c->phase, PH_RUNNING);
	atomic_store(&st->caught_up, true);
	log_info("state caught up ms=%lld", (long long)atomic_load(&c->catchup_ms));
}

static int kind_of(struct state *st, const char *topic)
{
	for (int k = 0; k < K_INBOX; k++)
		if (strcmp(topic, topic_of(st, k)) == 0)
			return k;
	return -1;
}

static void on_record(struct state *st, const rd_kafka_message_t *m)
{
	int k = kind_of(st, rd_kafka_topic_name(m->rkt));

	if (k < 0)
		return;
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if (k == K_SESSIONS)
			state_sessions_reader_at(st->sessions, m->partition, m->offset);
		part_reached(st, k, m->partition, m->offset, true);
		return;
	}
	if (m->err) {
		log_warn_rl("state read error topic=%s partition=%d err=\"%s\"",
			    rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
		return;
	}
	atomic_fetch_add_explicit(&st->core->read[k], 1, memory_order_relaxed);
	switch (k) {
	case K_SESSIONS:
		state_sessions_record(st->sessions, m);
		state_sessions_reader_at(st->sessions, m->partition, m->offset + 1);
		break;
	case K_RETAINED:
		state_retained_record(st->retained, m);
		break;
	default:
		instance_record(st, m);
		break;
	}
	part_reached(st, k, m->partition, m->offset + 1, false);
}

/* Every TICK_MS on the reader thread. */
static void tick(struct state *st, int64_t now)
{
	struct state_core *c = st->core;
	int ph = atomic_load(&c->phase);

	if ((ph == PH_CATCHING_UP || ph == PH_RUNNING) && now >= c->next_hb) {
		heartbeat_write(st, "up");
		c->next_hb = now + st->cfg->state.heartbeat_ms;
	}
	/* The lease: our own heartbeat not read back for lease_ms means this
	 * view of the state topics may be stale; another instance may own our
	 * sessions by now. Close every connection, once per loss. */
	if (c->heard_once && now - atomic_load(&st->last_heard_ms) > st->cfg->state.lease_ms &&
	    atomic_load(&st->kafka_ok)) {
		atomic_store(&st->kafka_ok, false);
		atomic_fetch_add_explicit(&c->lease_lost, 1, memory_order_relaxed);
		log_error("state lease lost heard_ms_ago=%lld lease_ms=%d reason=\"own heartbeat not "
			  "read back: closing every connection\"",
			  (long long)(now - atomic_load(&st->last_heard_ms)), st->cfg->state.lease_ms);
		if (!c->closed_all) {
			c->closed_all = true;
			broker_close_all(st->br, "state lease lost");
		}
	}
	state_sessions_tick(st->sessions);
	state_owner_tick(st->owner);
}

static void *reader_main(void *arg)
{
	struct state *st = arg;
	struct state_core *c = st->core;
	int64_t next_setup = 0, next_tick = state_now_ms();
	int backoff = SETUP_RETRY_MIN_MS;

	log_set_thread("state");
	c->setup_at = state_now_ms();
	while (!atomic_load(&st->stopping)) {
		int64_t now = state_now_ms();
		int ph = atomic_load(&c->phase);

		if (ph == PH_SETUP && now >= next_setup) {
			int r = ensure_topics(st);
			if (r == 0 && assign_all(st) == 0) {
				c->setup_at = state_now_ms();
				c->next_hb = c->setup_at;
				set_why(st, "catching up with the state topics");
				atomic_store(&c->phase, PH_CATCHING_UP);
				if (c->ndone == c->nparts)
					caught_up(st); /* every partition empty */
			} else if (r == -2) {
				atomic_store(&c->phase, PH_BROKEN);
			} else {
				char why[256];
				pthread_mutex_lock(&c->why_mu);
				snprintf(why, sizeof(why), "%s", c->why);
				pthread_mutex_unlock(&c->why_mu);
				log_warn_rl("state setup failed reason=\"%s\" retry_ms=%d", why, backoff);
				next_setup = state_now_ms() + backoff;
				backoff = backoff * 2 > SETUP_RETRY_MS ? SETUP_RETRY_MS : backoff * 2;
			}
			now = state_now_ms();
		}
		ph = atomic_load(&c->phase);
		int wait = (int)(next_tick - now);
		if (wait < 0)
			wait = 0;
		if (ph == PH_CATCHING_UP || ph == PH_RUNNING) {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(c->reader, wait);
			if (m) {
				on_record(st, m);
				rd_kafka_message_destroy(m);
			}
		} else if (wait > 0) {
			struct timespec ts = { 0, (long)wait * 1000000L };
			nanosleep(&ts, NULL);
		}
		now = state_now_ms();
		if (now >= next_tick) {
			tick(st, now);
			next_tick = now + TICK_MS;
		}
	}
	return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

/* Kafka topic names: letters, digits, '.', '_', '-'. */
static bool topic_chars_ok(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* The broker's hooks: ctx is the state; each goes to its module. */
static int hook_claim(void *ctx, const struct broker_claim *c)
{
	return state_sessions_claim(((struct state *)ctx)->sessions, c);
}
static void hook_subs(void *ctx, const char *id, uint16_t id_len, const struct broker_sub *subs,
		      size_t n, uint64_t conn_id, uint32_t token)
{
	state_sessions_subs_changed(((struct state *)ctx)->sessions, id, id_len, subs, n, conn_id,
				    token);
}
static void hook_parked(void *ctx, const char *id, uint16_t id_len, uint32_t expiry_s,
			const struct msg *will, uint32_t will_delay_s)
{
	state_sessions_parked(((struct state *)ctx)->sessions, id, id_len, expiry_s, will,
			      will_delay_s);
}
static void hook_ended(void *ctx, const char *id, uint16_t id_len)
{
	state_sessions_ended(((struct state *)ctx)->sessions, id, id_len);
}
static void hook_retained(void *ctx, struct msg *m)
{
	state_retained_hook(((struct state *)ctx)->retained, m);
}
/* A will published on behalf of a connection that died with its instance
 * goes where a will of a connection closing here goes: this instance's
 * subscribers and retained store, the Kafka routes, and through the
 * uplink's fan-out the subscribers on other instances. */
int state_publish(struct state *st, const char *id, uint16_t id_len, struct msg *m)
{
	int rc = broker_publish_will(st->br, m, id, id_len);
	msg_unref(m); /* ours: broker_publish_will() took its own */
	return rc;
}

/* A session another instance took still held m here: to the new owner's
 * inbox, for that session. */
static void hook_handover(void *ctx, const char *id, uint16_t id_len, struct msg *m, uint8_t qos,
			  bool retain)
{
	struct state *st = ctx;
	char owner[STATE_ID_MAX + 1];
	(void)qos;
	(void)retain;
	/* At a clean stop (broker_state_persist()): a copy the queue topic
	 * holds already comes back from there; no end marker to ourselves. */
	if (atomic_load(&st->stopping) && (!m || (m->track && m->track->kept)))
		return;
	if (!m) {
		/* The new owner stops waiting to read our queue topic back. */
		if (state_sessions_owner(st->sessions, id, id_len, owner, sizeof(owner)) == 0)
			state_bus_send_marker(st->bus, owner, id, id_len);
		return;
	}
	if (state_sessions_owner(st->sessions, id, id_len, owner, sizeof(owner)) < 0 ||
	    state_bus_send_to(st->bus, owner, id, id_len, m) < 0)
		log_warn_rl("state handover lost client=%s topic=%s", log_qn(id, id_len),
			    log_q(m->topic));
}

rd_kafka_conf_t *state_consumer_conf(struct state *st, char *err, size_t errlen)
{
	return conf_for(st, KAFKA_CONSUMER, err, errlen);
}

static rd_kafka_conf_t *conf_for(struct state *st, enum kafka_role role, char *err, size_t errlen)
{
	char e[256];
	rd_kafka_conf_t *conf = kafka_conf_new(st->cfg, role, st->bootstrap, err, errlen);
	if (!conf)
		return NULL;
	/* Forced, whatever kafka.properties says for the routes: every
	 * instance (and Java tools) must agree on key -> partition; a state
	 * record must never create a topic with the broker's defaults; no
	 * statistics callback here. */
	static const char *const prod[][2] = {
		{ "partitioner", "murmur2_random" },
		{ "allow.auto.create.topics", "false" },
		{ "statistics.interval.ms", "0" },
	};
	static const char *const cons[][2] = {
		{ "enable.auto.commit", "false" },
		{ "enable.partition.eof", "true" },
		{ "fetch.wait.max.ms", "10" },
		/* A partition whose leader moved is fetched again soon (500 ms
		 * by default): catching up and the lease both wait on it. */
		{ "fetch.error.backoff.ms", "100" },
		/* Bounds what the reader prefetches (64 MB by default). */
		{ "queued.max.messages.kbytes", "16384" },
		{ "auto.offset.reset", "earliest" },
		{ "statistics.interval.ms", "0" },
	};
	const char *const(*kv)[2] = role == KAFKA_PRODUCER ? prod : cons;
	size_t n = role == KAFKA_PRODUCER ? sizeof(prod) / sizeof(prod[0])
					  : sizeof(cons) / sizeof(cons[0]);
	for (size_t i = 0; i < n; i++)
		if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
			snprintf(err, errlen, "state kafka property '%s': %s", kv[i][0], e);
			rd_kafka_conf_destroy(conf);
			return NULL;
		}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_opaque(conf, st);
	return conf;
}

struct state *state_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			char *err, size_t errlen)
{
	char e[512];
	const struct cfg_state *cs = &cfg->state;
	struct state *st = calloc(1, sizeof(*st));
	struct state_core *c = st ? calloc(1, sizeof(*c)) : NULL;

	if (!c) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	st->core = c;
	st->cfg = cfg;
	st->br = br;
	pthread_mutex_init(&c->why_mu, NULL);
	pthread_mutex_init(&c->inst_mu, NULL);
	pthread_mutex_init(&c->dr_mu, NULL);
	atomic_init(&c->catchup_ms, -1);
	snprintf(c->why, sizeof(c->why), "state topics not read yet");
	st->started_ms = state_wall_ms();

	/* One name per gateway: kafka.instance_id (the downlink's static
	 * membership) when state.instance_id is not set. */
	const char *iid = cs->instance_id ? cs->instance_id : cfg->kafka.instance_id;
	if (iid) {
		int w = snprintf(st->instance_id, sizeof(st->instance_id), "%s", iid);
		if (w < 0 || (size_t)w >= sizeof(st->instance_id) || !topic_chars_ok(st->instance_id)) {
			snprintf(err, errlen, "%s:%d: %s.instance_id: at most %d of letters, digits, '.', "
				 "'_' and '-' (it names the topic <prefix>.inbox.<id>)", cfg->path,
				 cs->instance_id ? cs->line : cfg->kafka.line,
				 cs->instance_id ? "state" : "kafka", STATE_ID_MAX);
			goto fail;
		}
	} else {
		/* The host name, with anything a topic name cannot hold made '-'. */
		char h[256] = "";
		if (gethostname(h, sizeof(h) - 1) < 0 || !h[0])
			snprintf(h, sizeof(h), "kafkagate");
		for (char *p = h; *p; p++)
			if (!topic_chars_ok((char[]){ *p, 0 }))
				*p = '-';
		h[STATE_ID_MAX] = '\0'; /* host names are at most 64 bytes anyway */
		memcpy(st->instance_id, h, strlen(h) + 1);
	}
	const char *pfx = cs->topic_prefix ? cs->topic_prefix : "kafkagate";
	if (!topic_chars_ok(pfx)) {
		snprintf(err, errlen, "%s:%d: state.topic_prefix: only letters, digits, '.', '_' and '-'",
			 cfg->path, cs->line);
		goto fail;
	}
	snprintf(st->t_sessions, sizeof(st->t_sessions), "%s.sessions", pfx);
	snprintf(st->t_retained, sizeof(st->t_retained), "%s.retained", pfx);
	snprintf(st->t_instances, sizeof(st->t_instances), "%s.instances", pfx);
	int n = snprintf(st->t_inbox, sizeof(st->t_inbox), "%s.inbox.%s", pfx, st->instance_id);
	int nq = snprintf(st->t_queue, sizeof(st->t_queue), "%s.queue.%s", pfx, st->instance_id);
	if (n < 0 || (size_t)n >= sizeof(st->t_inbox) || nq < 0 || (size_t)nq >= sizeof(st->t_queue)) {
		snprintf(err, errlen, "%s:%d: state: topic_prefix and instance_id make a topic name "
			 "longer than %d", cfg->path, cs->line, STATE_TOPIC_MAX);
		goto fail;
	}
	snprintf(st->bootstrap, sizeof(st->bootstrap), "%s", bootstrap);

	rd_kafka_conf_t *conf = conf_for(st, KAFKA_PRODUCER, err, errlen);
	if (!conf)
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if (!(st->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e)))) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "state kafka producer: %s", e);
		goto fail;
	}
	if (!(conf = conf_for(st, KAFKA_CONSUMER, err, errlen)))
		goto fail;
	/* rd_kafka_assign() wants a group; this one never joins (no
	 * subscription) and never commits: the reader always starts over. */
	char gid[STATE_TOPIC_MAX + 16];
	snprintf(gid, sizeof(gid), "%s.reader", st->t_inbox);
	if (rd_kafka_conf_set(conf, "group.id", gid, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "state kafka reader: %s", e);
		goto fail;
	}
	if (!(c->reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "state kafka reader: %s", e);
		goto fail;
	}
	rd_kafka_poll_set_consumer(c->reader);

	if (!(st->retained = state_retained_new(st)) || !(st->sessions = state_sessions_new(st)) ||
	    !(st->bus = state_bus_new(st)) || !(st->owner = state_owner_new(st)) ||
	    !(st->queue = state_queue_new(st))) {
		snprintf(err, errlen, "state modules: out of memory");
		goto fail;
	}
	broker_set_state(br, &(struct broker_state_ops){
				     .claim = hook_claim,
				     .subs_changed = hook_subs,
				     .parked = hook_parked,
				     .ended = hook_ended,
				     .retained = hook_retained,
				     .handover = hook_handover,
				     .spool = hook_spool,
				     .ctx = st,
				     /* A SUBACK waits for Kafka as long as a CONNACK. */
				     .subs_timeout_ms = (uint32_t)cs->claim_timeout_ms,
			     });
	log_info("state store=kafka instance=%s prefix=%s bootstrap=%s", st->instance_id, pfx,
		 bootstrap);
	return st;
fail:
	state_free(st);
	return NULL;
}

int state_start(struct state *st)
{
	struct state_core *c = st->core;

	if (pthread_create(&c->poll_th, NULL, poll_main, st) != 0)
		return -1;
	c->poll_started = true;
	if (pthread_create(&c->reader_th, NULL, reader_main, st) != 0)
		return -1;
	c->reader_started = true;
	if (state_queue_start(st->queue) < 0)
		return -1;
	if (state_bus_start(st->bus) < 0)
		return -1;
	c->bus_started = true;
	return 0;
}

bool state_ready(struct state *st, char *why, size_t whylen)
{
	struct state_core *c = st->core;
	int ph = atomic_load(&c->phase);
	bool ok = ph == PH_RUNNING && atomic_load(&st->kafka_ok);

	if (why && whylen) {
		why[0] = '\0';
		if (ok)
			return true;
		if (ph == PH_RUNNING)
			snprintf(why, whylen, "state: own heartbeat not read back within %d ms "
				 "(Kafka lost?)", st->cfg->state.lease_ms);
		else {
			pthread_mutex_lock(&c->why_mu);
			snprintf(why, whylen, "state: %s", c->why);
			pthread_mutex_unlock(&c->why_mu);
		}
	}
	return ok;
}

void state_stop(struct state *st)
{
	if (!st)
		return;
	struct state_core *c = st->core;
	atomic_store(&st->stopping, true);
	if (c->bus_started) {
		state_bus_stop(st->bus);
		c->bus_started = false;
	}
	if (c->reader_started) {
		pthread_join(c->reader_th, NULL);
		c->reader_started = false;
	}
	state_queue_stop(st->queue);
	if (c->reader) {
		rd_kafka_destroy(c->reader);
		c->reader = NULL;
	}
}

void state_free(struct state *st)
{
	if (!st)
		return;
	struct state_core *c = st->core;
	state_stop(st);
	if (st->prod) {
		int ph = atomic_load(&c->phase);
		/* After the broker parked its sessions (their records are queued
		 * before this one): other instances may take over from here. */
		if (ph == PH_CATCHING_UP || ph == PH_RUNNING)
			heartbeat_write(st, "down");
		int64_t end = state_now_ms() + (int64_t)st->cfg->kafka.flush_timeout * 1000;
		while (rd_kafka_outq_len(st->prod) > 0 && state_now_ms() < end) {
			if (!c->poll_started)
				rd_kafka_poll(st->prod, 10);
			else {
				struct timespec ts = { 0, 10 * 1000 * 1000 };
				nanosleep(&ts, NULL);
			}
		}
		if (rd_kafka_outq_len(st->prod) > 0)
			log_warn("state flush timed out records=%d", rd_kafka_outq_len(st->prod));
		atomic_store(&c->closed, true);
	}
	if (c->poll_started) {
		atomic_store(&c->poll_stop, true);
		pthread_join(c->poll_th, NULL);
	}
	if (st->prod) {
		/* What Kafka never answered: purged so that every delivery report
		 * (and its module's callback) runs before the modules go. */
		rd_kafka_purge(st->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (int i = 0; i < 100 && rd_kafka_outq_len(st->prod) > 0; i++)
			rd_kafka_poll(st->prod, 10);
		rd_kafka_destroy(st->prod);
	}
	state_owner_free(st->owner);
	state_queue_free(st->queue);
	state_bus_free(st->bus);
	state_sessions_free(st->sessions);
	state_retained_free(st->retained);
	while (c->dr_free) {
		struct dr_node *n = c->dr_free;
		c->dr_free = n->next;
		free(n);
	}
	free(c->parts);
	free(c->inst);
	pthread_mutex_destroy(&c->why_mu);
	pthread_mutex_destroy(&c->inst_mu);
	pthread_mutex_destroy(&c->dr_mu);
	free(c);
	free(st);
}

const char *state_instance_id(const struct state *st) { return st->instance_id; }

/* ---- metrics ------------------------------------------------------------ */

static int one(struct buf *out, const char *name, const char *type, const char *help,
	       const char *const *labels, double v)
{
	int rc = prom_family(out, name, type, help);
	return rc | prom_f64(out, name, labels, v);
}

int state_metrics_render(struct buf *out, void *ud)
{
	struct state *st = ud;
	struct state_core *c = st->core;
	/* Not "instance": Prometheus gives every target that label itself. */
	const char *const info[] = { "instance_id", st->instance_id, "sessions_topic",
				     st->t_sessions, NULL };
	int rc = 0;

#define LD(x) ((double)atomic_load_explicit(&(x), memory_order_relaxed))
	rc |= one(out, "kafkagate_state_info", "gauge",
		  "Always 1; the labels name this instance and its state topics.", info, 1);
	rc |= one(out, "kafkagate_state_ready", "gauge",
		  "1 when the state topics were read to their end and the lease holds.", NULL,
		  state_ready(st, NULL, 0));
	rc |= one(out, "kafkagate_state_caught_up", "gauge",
		  "1 once the state topics were read up to the ends seen at start.", NULL,
		  atomic_load(&st->caught_up));
	rc |= one(out, "kafkagate_state_catchup_seconds", "gauge",
		  "How long reading the state topics to their start ends took; -1 before.", NULL,
		  atomic_load(&c->catchup_ms) < 0 ? -1.0 : (double)atomic_load(&c->catchup_ms) / 1e3);
	rc |= one(out, "kafkagate_state_catchup_records", "gauge",
		  "Records in the state topics when the reader started.", NULL,
		  LD(c->start_records));
	rc |= prom_family(out, "kafkagate_state_records_read_total", "counter",
			  "State records read back, per topic.");
	for (int k = 0; k < K_INBOX; k++) {
		const char *const l[] = { "topic", kind_name[k], NULL };
		rc |= prom_f64(out, "kafkagate_state_records_read_total", l, LD(c->read[k]));
	}
	rc |= one(out, "kafkagate_state_records_written_total", "counter",
		  "State records Kafka acknowledged.", NULL, LD(c->written));
	rc |= one(out, "kafkagate_state_write_errors_total", "counter",
		  "State records refused locally (queue full, stopping) or failed in Kafka.", NULL,
		  LD(c->write_errors) + LD(c->refused));
	rc |= one(out, "kafkagate_state_producer_queue", "gauge",
		  "State records queued or in flight.", NULL, (double)rd_kafka_outq_len(st->prod));
	rc |= one(out, "kafkagate_state_heartbeats_total", "counter",
		  "Heartbeats written to the instances topic.", NULL, LD(c->heartbeats));
	int64_t heard = atomic_load(&st->last_heard_ms);
	rc |= one(out, "kafkagate_state_heartbeat_age_seconds", "gauge",
		  "Since this instance last read its own heartbeat back; -1 before the first.", NULL,
		  heard ? (double)(state_now_ms() - heard) / 1e3 : -1.0);
	rc |= one(out, "kafkagate_state_lease_lost_total", "counter",
		  "Times the lease was lost (own heartbeat not read back within state.lease_ms).",
		  NULL, LD(c->lease_lost));
	rc |= one(out, "kafkagate_state_instances_alive", "gauge",
		  "Instances whose latest heartbeat is up and within state.lease_ms.", NULL,
		  (double)instances_alive(st));
	struct broker_state_stats bs;
	broker_state_stats(st->br, &bs);
	rc |= one(out, "kafkagate_state_claims_waiting", "gauge",
		  "Connections waiting for their claim to come back from Kafka.", NULL,
		  (double)bs.claims_waiting);
	rc |= one(out, "kafkagate_state_claims_refused_total", "counter",
		  "CONNECTs answered server unavailable because the state could not say.", NULL,
		  (double)bs.claims_refused);
	rc |= one(out, "kafkagate_state_kicks_total", "counter",
		  "Sessions closed here because another instance took their client id.", NULL,
		  (double)bs.kicks);
	rc |= one(out, "kafkagate_state_subacks_waited_total", "counter",
		  "SUBACK/UNSUBACKs of persistent sessions held until Kafka had the session record.",
		  NULL, (double)bs.subacks_waited);
	rc |= one(out, "kafkagate_state_subacks_unconfirmed_total", "counter",
		  "Of those, answered without Kafka's acknowledgement (write failed, or none within "
		  "state.claim_timeout_ms).", NULL, (double)bs.subacks_unconfirmed);
	uint64_t rw = 0, ra = 0, rcl = 0;
	state_retained_counts(st->retained, &rw, &ra, &rcl);
	rc |= one(out, "kafkagate_state_retained_written_total", "counter",
		  "Retained messages (and clears) written to the retained topic.", NULL, (double)rw);
	rc |= one(out, "kafkagate_state_retained_applied_total", "counter",
		  "Retained messages read from the retained topic and stored.", NULL, (double)ra);
	rc |= one(out, "kafkagate_state_retained_cleared_total", "counter",
		  "Retained clears (tombstones, empty or expired messages) read and applied.", NULL,
		  (double)rcl);
	rc |= state_sessions_metrics_render(out, st->sessions); /* state_sessions.c */
	rc |= state_bus_metrics_render(out, st->bus);          /* state_bus.c */
	rc |= state_owner_metrics_render(out, st->owner);      /* state_owner.c */
	rc |= state_queue_metrics_render(out, st->queue);      /* state_queue.c */
#undef LD
	return rc ? -1 : 0;
}
