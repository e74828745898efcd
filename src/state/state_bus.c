/*
 * state_bus.c - cross-instance delivery (docs/scaling/bus.md).
 *
 * Sending side: the subscriptions of sessions owned by OTHER instances
 * (online or parked there), as read from <prefix>.sessions and handed over
 * by the sessions module (state_bus_subs), live in one sub_trie whose
 * owners are struct bus_sess (one per remote session). A client publish
 * (through the uplink's fan-out hook) or a downlink record (the downlink's
 * hook) whose topic matches becomes one record per target instance in
 * <prefix>.inbox.<target>: key = publisher client id (uplink) or the Kafka
 * key (downlink), value = payload, headers mqtt.topic, mqtt.qos,
 * mqtt.retain, kg.props, kg.expires, kg.from, kg.from_client. The uplink's
 * PUBACK and the downlink record's commit wait for those records.
 *
 * Receiving side: one consumer (kafka/consumer.h: commits per partition at
 * the oldest incomplete record, kafka/offsets.h) in group
 * <prefix>.inbox.<id> reads this instance's inbox; each record becomes a
 * tracked message for broker_inject_local(), so the inbox offset moves only
 * when every local device acknowledged it (or it was queued in a parked
 * session, or the delivery timeout passed).
 *
 * Threads: state_bus_subs on the state reader thread (write lock); the
 * hooks on broker workers and downlink consumer threads (read lock, held
 * for the trie walk only, never across a produce); delivery reports on the
 * state producer's poll thread; the inbox consumer on its own thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "broker/broker.h"
#include "core/buf.h"
#include "core/cfg.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/prom.h"
#include "core/util.h"
#include "kafka/consumer.h"
#include "kafka/downlink.h"
#include "kafka/uplink.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/sub_trie.h"
#include "state/state_int.h"

/* Distinct target instances one message can go to; more are dropped
 * (logged): far above any fleet this design is for. */
#define BUS_MAX_TARGETS 256
/* Delivery timeout of an inbox record (as a downlink mapping's
 * ack_timeout): a silent device does not hold the inbox back for ever. */
#define BUS_INBOX_TIMEOUT_MS 30000
#define BUS_INBOX_MAX_IN_FLIGHT 50000

/* One other instance we send to. Never freed before the bus: a worker may
 * keep the pointer after it dropped the read lock. */
struct bus_inst {
	struct bus_inst *next;
	size_t nsess;                        /* remote sessions it owns (write lock) */
	char id[STATE_ID_MAX + 1];
	char topic[STATE_TOPIC_MAX + 1];     /* <prefix>.inbox.<id> */
};

struct bus_filter {
	uint32_t off;                        /* in the session's blob */
	uint16_t len;
};

/* One remote session: the trie's owner for its filters. */
struct bus_sess {
	struct bus_sess *next;               /* hash chain */
	struct bus_inst *inst;
	uint32_t hash;
	uint16_t id_len;
	size_t nsubs;
	struct bus_filter *subs;             /* inside this allocation */
	char *blob;                          /* filters, inside this allocation */
	char id[];                           /* id_len bytes + NUL */
};

struct state_bus {
	struct state *st;
	pthread_rwlock_t mu;                 /* trie, sessions, instances */
	struct sub_trie *trie;
	atomic_size_t entries;               /* trie entries: 0 = the hooks return at once */
	struct bus_sess **tab;               /* sessions by client id */
	size_t tab_n;                        /* power of 2 */
	size_t nsess;
	struct bus_inst *insts;
	uint64_t seed;
	struct consumer *inbox;
	pthread_t starter;                   /* starts the inbox once caught up */
	bool starter_on;
	pthread_mutex_t start_mu;            /* started */
	bool started;
	atomic_bool stop;
	/* Counters (relaxed). */
	atomic_uint_fast64_t sent_up, sent_down, send_failed, received, skipped, forwarded;
};

/* Delivery reports name their record by its token (the uplink's ticket) or
 * message only, so the counters they bump are the process's: one bus per
 * process. */
/* How long the inbox waits for the restart's queue restore. */
#define BUS_RESTORE_WAIT_MS 30000

static _Atomic(struct state_bus *) g_bus;

/* --- the remote subscriptions ------------------------------------------ */

static bool is_shared(const char *f, size_t len)
{
	return len >= 7 && memcmp(f, "$share/", 7) == 0;
}

static struct bus_sess **sess_slot(struct state_bus *sb, const char *id, uint16_t len,
				   uint32_t h)
{
	struct bus_sess **pp = &sb->tab[h & (sb->tab_n - 1)];
	while (*pp && !((*pp)->hash == h && (*pp)->id_len == len &&
			memcmp((*pp)->id, id, len) == 0))
		pp = &(*pp)->next;
	return pp;
}

static int tab_grow(struct state_bus *sb)
{
	size_t n = sb->tab_n ? sb->tab_n * 2 : 64;
	struct bus_sess **t = calloc(n, sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < sb->tab_n; i++) {
		struct bus_sess *s = sb->tab[i], *next;
		for (; s; s = next) {
			next = s->next;
			s->next = t[s->hash & (n - 1)];
			t[s->hash & (n - 1)] = s;
		}
	}
	free(sb->tab);
	sb->tab = t;
	sb->tab_n = n;
	return 0;
}

static struct bus_inst *inst_get(struct state_bus *sb, const char *id)
{
	for (struct bus_inst *i = sb->insts; i; i = i->next)
		if (strcmp(i->id, id) == 0)
			return i;
	struct bus_inst *i = calloc(1, sizeof(*i));
	if (!i)
		return NULL;
	snprintf(i->id, sizeof(i->id), "%s", id);
	int n = snprintf(i->topic, sizeof(i->topic), "%s.inbox.%s", sb->st->cfg->state.topic_prefix,
			 id);
	if (n < 0 || (size_t)n >= sizeof(i->topic)) {
		free(i);
		return NULL;
	}
	i->next = sb->insts;
	sb->insts = i;
	return i;
}

/* Removes s's filters from the trie and unlinks it (write lock). */
static void sess_drop(struct state_bus *sb, struct bus_sess **slot)
{
	struct bus_sess *s = *slot;
	for (size_t k = 0; k < s->nsubs; k++)
		if (sub_trie_remove(sb->trie, s->blob + s->subs[k].off, s->subs[k].len, s) == 1)
			atomic_fetch_sub(&sb->entries, 1);
	s->inst->nsess--;
	*slot = s->next;
	sb->nsess--;
	free(s);
}

void state_bus_subs(struct state_bus *sb, const char *id, uint16_t id_len, const char *owner,
		    const struct broker_sub *subs, size_t n)
{
	if (!sb)
		return;
	/* Our own sessions are the local broker's to route. */
	bool remote = owner && n > 0 && strcmp(owner, sb->st->instance_id) != 0;
	size_t blob = 0, keep = 0;
	if (remote)
		for (size_t k = 0; k < n; k++)
			if (!is_shared(subs[k].filter, subs[k].len)) {
				blob += subs[k].len;
				keep++;
			}
	uint32_t h = hash_bytes(sb->seed, id, id_len);

	pthread_rwlock_wrlock(&sb->mu);
	struct bus_sess **slot = sb->tab_n ? sess_slot(sb, id, id_len, h) : NULL;
	/* Every record is a full snapshot: the old entries go, the new come. */
	if (slot && *slot)
		sess_drop(sb, slot);
	if (!remote || keep == 0)
		goto out;
	struct bus_inst *inst = inst_get(sb, owner);
	if (!inst || blob > UINT32_MAX)
		goto oom;
	if (sb->nsess + 1 > sb->tab_n && tab_grow(sb) < 0)
		goto oom;
	/* One allocation: the session, its id, then (4-byte aligned) the
	 * filter table and the filters. */
	size_t fo = (sizeof(struct bus_sess) + (size_t)id_len + 1 + 3) & ~(size_t)3;
	struct bus_sess *s = malloc(fo + keep * sizeof(struct bus_filter) + blob);
	if (!s)
		goto oom;
	memcpy(s->id, id, id_len);
	s->id[id_len] = '\0';
	s->id_len = id_len;
	s->hash = h;
	s->inst = inst;
	s->subs = (struct bus_filter *)((char *)s + fo);
	s->blob = (char *)(s->subs + keep);
	s->nsubs = 0;
	uint32_t off = 0;
	for (size_t k = 0; k < n; k++) {
		if (is_shared(subs[k].filter, subs[k].len))
			continue;
		memcpy(s->blob + off, subs[k].filter, subs[k].len);
		int rc = sub_trie_add(sb->trie, s->blob + off, subs[k].len, s, subs[k].opts);
		if (rc < 0)
			continue; /* memory: this filter is not routed across (logged below) */
		if (rc == 1)
			atomic_fetch_add(&sb->entries, 1);
		s->subs[s->nsubs++] = (struct bus_filter){ off, subs[k].len };
		off += subs[k].len;
	}
	inst->nsess++;
	slot = sess_slot(sb, id, id_len, h);
	s->next = NULL;
	*slot = s;
	sb->nsess++;
out:
	pthread_rwlock_unlock(&sb->mu);
	return;
oom:
	pthread_rwlock_unlock(&sb->mu);
	log_warn_rl("state bus: out of memory, remote subscriptions of client=%.*s not routed",
		    (int)id_len, id);
}

/* --- sending ------------------------------------------------------------ */

struct match_ctx {
	const char *from;                    /* publisher client id, or NULL */
	size_t from_len;
	struct bus_inst *t[BUS_MAX_TARGETS];
	size_t n;
	bool any;
	bool over;
};

/* A remote session with the publisher's own id is a stale view (the
 * publisher is here now): never a target, which also keeps No Local. */
static bool is_self(const struct match_ctx *mc, const struct bus_sess *s)
{
	return mc->from && s->id_len == mc->from_len && memcmp(s->id, mc->from, mc->from_len) == 0;
}

static void match_any(void *owner, uint32_t data, void *ud)
{
	struct match_ctx *mc = ud;
	(void)data;
	if (!is_self(mc, owner))
		mc->any = true;
}

static void match_collect(void *owner, uint32_t data, void *ud)
{
	struct match_ctx *mc = ud;
	struct bus_sess *s = owner;
	(void)data;
	if (is_self(mc, s))
		return;
	for (size_t i = 0; i < mc->n; i++)
		if (mc->t[i] == s->inst)
			return;
	if (mc->n == BUS_MAX_TARGETS) {
		mc->over = true;
		return;
	}
	mc->t[mc->n++] = s->inst;
}

/* The instances m's topic goes to (read lock for the walk only). */
static void targets(struct state_bus *sb, const struct msg *m, struct match_ctx *mc)
{
	pthread_rwlock_rdlock(&sb->mu);
	sub_trie_match(sb->trie, m->topic, m->topic_len, match_collect, mc);
	pthread_rwlock_unlock(&sb->mu);
	if (mc->over)
		log_warn_rl("state bus: topic=%s matches more than %d instances; the rest get nothing",
			    log_q(m->topic), BUS_MAX_TARGETS);
}

/* The headers of an inbox (or queue) record (new; state_produce takes them). */
rd_kafka_headers_t *state_bus_headers(struct state *st, const struct msg *m, uint8_t qos,
				      const char *from, size_t from_len)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	char q[2] = { (char)('0' + qos), 0 };
	rd_kafka_header_add(h, "mqtt.topic", -1, m->topic, m->topic_len);
	rd_kafka_header_add(h, "mqtt.qos", -1, q, 1);
	rd_kafka_header_add(h, "mqtt.retain", -1, m->retain ? "true" : "false", m->retain ? 4 : 5);
	if (m->props_len)
		rd_kafka_header_add(h, "kg.props", -1, m->props, m->props_len);
	if (m->expires_ms) {
		char num[24];
		int k = snprintf(num, sizeof num, "%" PRId64, m->expires_ms);
		rd_kafka_header_add(h, "kg.expires", -1, num, k);
	}
	rd_kafka_header_add(h, "kg.from", -1, st->instance_id, -1);
	if (from)
		rd_kafka_header_add(h, "kg.from_client", -1, from, (ssize_t)from_len);
	return h;
}

static rd_kafka_headers_t *inbox_headers(struct state_bus *sb, const struct msg *m,
					 const char *from, size_t from_len)
{
	return state_bus_headers(sb->st, m, m->qos, from, from_len);
}

/* Errors no retry fixes (the target's inbox does not exist and cannot be
 * created, the record is too large): the record is dropped, logged; a
 * device resending would not help. */
static bool err_permanent(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		return true;
	default:
		return false;
	}
}

static void count_failure(rd_kafka_resp_err_t err, const char *side)
{
	struct state_bus *sb = atomic_load(&g_bus);
	if (sb)
		atomic_fetch_add_explicit(&sb->send_failed, 1, memory_order_relaxed);
	log_warn_rl("state bus: inbox write failed side=%s reason=%s", side,
		    log_q(err ? rd_kafka_err2str(err) : "producer queue full or stopping"));
}

static void up_done(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)partition;
	(void)offset;
	if (err)
		count_failure(err, "uplink");
	/* A transient failure fails the publish (the device resends); a
	 * permanent one is dropped and logged, as a dead letter would be. */
	uplink_fanout_done(ud, !err || err_permanent(err));
}

static void down_done(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct msg *m = ud;
	(void)partition;
	(void)offset;
	/* The record's commit waited for this write; a failed one is lost for
	 * that instance (logged): holding the offset would only delay it until
	 * the downlink's ack_timeout, which commits it anyway. */
	if (err)
		count_failure(err, "downlink");
	msg_track_done(m);
	msg_unref(m);
}

static bool bus_up_wanted(void *ctx, const struct msg *m, const char *clientid, size_t clen)
{
	struct state_bus *sb = ctx;
	/* The hot path of a fleet with no remote subscriber: one load. */
	if (atomic_load_explicit(&sb->entries, memory_order_relaxed) == 0)
		return false;
	struct match_ctx mc = { .from = clientid, .from_len = clen };
	pthread_rwlock_rdlock(&sb->mu);
	sub_trie_match(sb->trie, m->topic, m->topic_len, match_any, &mc);
	pthread_rwlock_unlock(&sb->mu);
	return mc.any;
}

static void bus_up_send(void *ctx, struct msg *m, const char *clientid, size_t clen,
			struct uplink_fanout_tok *tok)
{
	struct state_bus *sb = ctx;
	struct match_ctx mc = { .from = clientid, .from_len = clen };
	targets(sb, m, &mc);
	if (mc.n == 0)
		return;
	rd_kafka_headers_t *h = inbox_headers(sb, m, clientid, clen);
	for (size_t i = 0; i < mc.n; i++) {
		rd_kafka_headers_t *hi = i + 1 < mc.n ? rd_kafka_headers_copy(h) : h;
		uplink_fanout_hold(tok);
		if (state_produce(sb->st, mc.t[i]->topic, clientid, clen, m->payload, m->payload_len,
				  hi, up_done, tok) < 0) {
			count_failure(0, "uplink");
			uplink_fanout_done(tok, false);
			continue;
		}
		atomic_fetch_add_explicit(&sb->sent_up, 1, memory_order_relaxed);
	}
}

static void bus_down_send(void *ctx, struct msg *m, const void *key, size_t keylen)
{
	struct state_bus *sb = ctx;
	if (atomic_load_explicit(&sb->entries, memory_order_relaxed) == 0 || !m->track)
		return;
	struct match_ctx mc = { 0 };
	targets(sb, m, &mc);
	if (mc.n == 0)
		return;
	rd_kafka_headers_t *h = inbox_headers(sb, m, NULL, 0);
	for (size_t i = 0; i < mc.n; i++) {
		rd_kafka_headers_t *hi = i + 1 < mc.n ? rd_kafka_headers_copy(h) : h;
		/* The hold goes on the track before the record can be reported. */
		atomic_fetch_add(&m->track->remaining, 1);
		msg_ref(m);
		if (state_produce(sb->st, mc.t[i]->topic, key, keylen, m->payload, m->payload_len, hi,
				  down_done, m) < 0) {
			count_failure(0, "downlink");
			msg_track_done(m);
			msg_unref(m);
			continue;
		}
		atomic_fetch_add_explicit(&sb->sent_down, 1, memory_order_relaxed);
	}
}

static void send_done(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)partition;
	(void)offset;
	if (err)
		count_failure(err, "state");
	msg_unref(ud);
}

size_t state_bus_send(struct state_bus *sb, struct msg *m, const char *from, size_t from_len)
{
	if (!sb || atomic_load_explicit(&sb->entries, memory_order_relaxed) == 0)
		return 0;
	struct match_ctx mc = { .from = from, .from_len = from_len };
	targets(sb, m, &mc);
	if (mc.n == 0)
		return 0;
	size_t sent = 0;
	rd_kafka_headers_t *h = inbox_headers(sb, m, from, from_len);
	for (size_t i = 0; i < mc.n; i++) {
		rd_kafka_headers_t *hi = i + 1 < mc.n ? rd_kafka_headers_copy(h) : h;
		msg_ref(m);
		if (state_produce(sb->st, mc.t[i]->topic, from, from ? from_len : 0, m->payload,
				  m->payload_len, hi, send_done, m) < 0) {
			count_failure(0, "state");
			msg_unref(m);
			continue;
		}
		sent++;
		atomic_fetch_add_explicit(&sb->sent_up, 1, memory_order_relaxed);
	}
	return sent;
}

int state_bus_send_to(struct state_bus *sb, const char *owner, const char *to, size_t to_len,
		      struct msg *m)
{
	char topic[STATE_TOPIC_MAX + 1];
	/* To this instance itself only at a clean stop (broker_state_persist():
	 * the restarted instance reads them back). */
	if (!sb || !owner ||
	    (strcmp(owner, sb->st->instance_id) == 0 && !atomic_load(&sb->st->stopping)) ||
	    snprintf(topic, sizeof(topic), "%s.inbox.%s", sb->st->cfg->state.topic_prefix, owner) >=
		    (int)sizeof(topic))
		return -1;
	rd_kafka_headers_t *h = inbox_headers(sb, m, NULL, 0);
	rd_kafka_header_add(h, "kg.to", -1, to, (ssize_t)to_len);
	msg_ref(m);
	/* Keyed by the client: its messages keep their order in the inbox. */
	if (state_produce(sb->st, topic, to, to_len, m->payload, m->payload_len, h, send_done, m) <
	    0) {
		count_failure(0, "handover");
		msg_unref(m);
		return -1;
	}
	atomic_fetch_add_explicit(&sb->sent_up, 1, memory_order_relaxed);
	return 0;
}

/* A forwarded record written (or not): its message is accounted for. */
static void forward_done(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct msg *m = ud;
	(void)partition;
	(void)offset;
	if (err)
		count_failure(err, "forward");
	msg_track_done(m);
	msg_unref(m);
}

void state_bus_deliver_to(struct state_bus *sb, struct msg *m, const void *to, size_t to_len)
{
	struct state *st = sb->st;
	char owner[STATE_ID_MAX + 1], topic[STATE_TOPIC_MAX + 1];

	/* The view names another owner: the session moved (or was adopted)
	 * after this record was addressed here. Its inbox, for it only. */
	if (to_len <= UINT16_MAX &&
	    state_sessions_owner(st->sessions, to, (uint16_t)to_len, owner, sizeof(owner)) == 0 &&
	    strcmp(owner, st->instance_id) != 0 &&
	    snprintf(topic, sizeof(topic), "%s.inbox.%s", st->cfg->state.topic_prefix, owner) <
		    (int)sizeof(topic)) {
		rd_kafka_headers_t *h = inbox_headers(sb, m, NULL, 0);
		rd_kafka_header_add(h, "kg.to", -1, to, (ssize_t)to_len);
		if (state_produce(st, topic, to, to_len, m->payload, m->payload_len, h, forward_done,
				  m) == 0) {
			atomic_fetch_add_explicit(&sb->forwarded, 1, memory_order_relaxed);
			return; /* m's reference goes with the record */
		}
		count_failure(0, "forward");
		msg_track_done(m);
		msg_unref(m);
		return;
	}
	broker_inject_local(st->br, m, to, (uint16_t)to_len);
}

int state_bus_send_marker(struct state_bus *sb, const char *owner, const char *to, size_t to_len)
{
	char topic[STATE_TOPIC_MAX + 1];
	if (!sb || !owner || strcmp(owner, sb->st->instance_id) == 0 ||
	    snprintf(topic, sizeof(topic), "%s.inbox.%s", sb->st->cfg->state.topic_prefix, owner) >=
		    (int)sizeof(topic))
		return -1;
	rd_kafka_headers_t *h = rd_kafka_headers_new(3);
	rd_kafka_header_add(h, "kg.handover", -1, "done", 4);
	rd_kafka_header_add(h, "kg.to", -1, to, (ssize_t)to_len);
	rd_kafka_header_add(h, "kg.from", -1, sb->st->instance_id, -1);
	if (state_produce(sb->st, topic, to, to_len, "", 0, h, NULL, NULL) < 0) {
		count_failure(0, "handover");
		return -1;
	}
	return 0;
}

/* --- receiving ---------------------------------------------------------- */

struct inbox_rec {
	struct msg_track track;
	struct consumer_ticket t;
};

static void inbox_done(struct msg_track *tr)
{
	struct inbox_rec *r = container_of(tr, struct inbox_rec, track);
	consumer_complete(&r->t);
	free(r);
}

static bool hdr(rd_kafka_headers_t *h, const char *name, const void **v, size_t *n)
{
	if (!h || rd_kafka_header_get_last(h, name, v, n) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	if (!*v) {
		*v = "";
		*n = 0;
	}
	return true;
}

struct msg *state_bus_msg_of(const rd_kafka_message_t *rkm, const void **to, size_t *to_len,
			     const char **why)
{
	rd_kafka_headers_t *h = NULL;
	const void *topic, *v;
	size_t tlen, n;
	uint8_t qos = 0;
	bool retain = false;
	const void *props = NULL;
	size_t plen = 0;
	int64_t expires = 0;

	*why = NULL;
	if (rd_kafka_message_headers(rkm, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		h = NULL;
	if (!hdr(h, "mqtt.topic", &topic, &tlen) || tlen == 0 || tlen > UINT16_MAX ||
	    !mqtt_topic_name_valid(topic, tlen)) {
		*why = "no valid mqtt.topic";
		return NULL;
	}
	if (hdr(h, "mqtt.qos", &v, &n) && n == 1 && *(const char *)v >= '0' &&
	    *(const char *)v <= '2')
		qos = (uint8_t)(*(const char *)v - '0');
	if (hdr(h, "mqtt.retain", &v, &n) && n == 4 && memcmp(v, "true", 4) == 0)
		retain = true;
	if (hdr(h, "kg.props", &v, &n) && n > 0) {
		props = v;
		plen = n;
	}
	if (hdr(h, "kg.expires", &v, &n) && n > 0 && n < 24) {
		char num[24];
		memcpy(num, v, n);
		num[n] = '\0';
		expires = strtoll(num, NULL, 10);
		if (expires > 0 && expires <= util_wall_ms())
			return NULL; /* expired on the way: nobody should act on it */
	}
	struct msg *m = msg_new_props(topic, tlen, rkm->payload, rkm->len, qos, retain, props, plen);
	if (!m) {
		*why = "out of memory";
		return NULL;
	}
	m->expires_ms = expires > 0 ? expires : 0;
	*to = NULL;
	*to_len = 0;
	if (!hdr(h, "kg.to", to, to_len) || *to_len == 0 || *to_len > UINT16_MAX)
		*to = NULL;
	return m;
}

static unsigned inbox_record(void *ud, const rd_kafka_message_t *rkm,
			     const struct consumer_ticket *t)
{
	struct state_bus *sb = ud;
	const void *to, *v;
	size_t to_len, n;
	const char *why;
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(rkm, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    hdr(h, "kg.handover", &v, &n) && hdr(h, "kg.to", &to, &to_len) && to_len > 0 &&
	    to_len <= UINT16_MAX) {
		/* The previous owner of a session claimed here handed over all
		 * it held: its queue topic need not be read back. */
		state_queue_handover_done(sb->st->queue, to, (uint16_t)to_len);
		return 0;
	}
	struct msg *m = state_bus_msg_of(rkm, &to, &to_len, &why);
	struct inbox_rec *r = m ? malloc(sizeof(*r)) : NULL;
	if (!r) {
		/* Malformed, expired, or memory (waiting would not help):
		 * counted as skipped. */
		if (m)
			why = "out of memory";
		msg_unref(m);
		atomic_fetch_add_explicit(&sb->skipped, 1, memory_order_relaxed);
		if (why)
			log_warn_rl("state bus: inbox record skipped (%s) partition=%d offset=%lld",
				    why, (int)rkm->partition, (long long)rkm->offset);
		return 0;
	}
	atomic_init(&r->track.remaining, 1);
	r->track.done = inbox_done;
	r->track.kept = false;
	r->t = *t;
	m->track = &r->track;
	atomic_fetch_add_explicit(&sb->received, 1, memory_order_relaxed);
	/* On failure the broker settles the track itself, as broker_inject.
	 * kg.to: a message a session held on the instance that lost it
	 * (state_bus_send_to()), for that session only, wherever it is now. */
	if (to)
		state_bus_deliver_to(sb, m, to, to_len);
	else
		broker_inject_local(sb->st->br, m, NULL, 0);
	return 1;
}

/* --- lifecycle ---------------------------------------------------------- */

struct state_bus *state_bus_new(struct state *st)
{
	struct state_bus *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return NULL;
	sb->st = st;
	sb->seed = hash_process_seed();
	if (pthread_rwlock_init(&sb->mu, NULL) != 0) {
		free(sb);
		return NULL;
	}
	pthread_mutex_init(&sb->start_mu, NULL);
	if (!(sb->trie = sub_trie_new()) || tab_grow(sb) < 0) {
		state_bus_free(sb);
		return NULL;
	}
	char err[512];
	const char *topics[] = { st->t_inbox };
	struct consumer_opts o = {
		/* The group is named after the topic: one member, this instance,
		 * static (group.instance.id = the instance id) so that a restart
		 * takes the inbox back at once. */
		.group_id = st->t_inbox, .topics = topics, .ntopics = 1,
		.on_record = inbox_record, .ud = sb,
		.timeout_ms = BUS_INBOX_TIMEOUT_MS, .max_in_flight = BUS_INBOX_MAX_IN_FLIGHT,
		.stop_grace_ms = DOWNLINK_STOP_GRACE_MS, .start_grace_ms = DOWNLINK_START_GRACE_MS,
		.instance_id = st->instance_id,
	};
	if (!(sb->inbox = consumer_new(st->cfg, st->bootstrap, &o, err, sizeof(err)))) {
		log_error("state bus: inbox consumer: %s", err);
		state_bus_free(sb);
		return NULL;
	}
	atomic_store(&g_bus, sb);
	return sb;
}

/* The inbox is read only once the state reader caught up (and the
 * consumer's start grace passed): records for sessions this instance owned
 * before a restart must find them restored, not be injected into nothing. */
static void *starter_main(void *arg)
{
	struct state_bus *sb = arg;
	log_set_thread("state-bus");
	while (!atomic_load(&sb->st->caught_up) && !atomic_load(&sb->stop)) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	/* And, for a while at most, until the queues of the sessions restored
	 * at catch-up are read back (state_queue.c): what they held comes
	 * before what was sent to them since. */
	for (int i = 0; i < BUS_RESTORE_WAIT_MS / 20 && !atomic_load(&sb->stop) &&
			state_queue_restoring(sb->st->queue); i++) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&sb->start_mu);
	if (!atomic_load(&sb->stop)) {
		if (consumer_start(sb->inbox) == 0) {
			sb->started = true;
			log_info("state bus inbox consumer started group=%s", sb->st->t_inbox);
		} else {
			log_error("state bus: inbox consumer did not start: nothing from other "
				  "instances is delivered here");
		}
	}
	pthread_mutex_unlock(&sb->start_mu);
	return NULL;
}

int state_bus_start(struct state_bus *sb)
{
	if (pthread_create(&sb->starter, NULL, starter_main, sb) != 0)
		return -1;
	sb->starter_on = true;
	return 0;
}

void state_bus_attach(struct state_bus *sb, struct uplink *up, struct downlink *dl)
{
	if (!sb)
		return;
	if (up)
		uplink_set_fanout(up, &(struct uplink_fanout){ bus_up_wanted, bus_up_send, sb });
	if (dl)
		downlink_set_fanout(dl, &(struct downlink_fanout){ bus_down_send, sb });
}

void state_attach(struct state *st, struct uplink *up, struct downlink *dl)
{
	if (st)
		state_bus_attach(st->bus, up, dl);
}

void state_bus_stop(struct state_bus *sb)
{
	if (!sb)
		return;
	atomic_store(&sb->stop, true);
	if (sb->starter_on) {
		pthread_join(sb->starter, NULL);
		sb->starter_on = false;
	}
	pthread_mutex_lock(&sb->start_mu);
	bool started = sb->started;
	sb->started = false;
	pthread_mutex_unlock(&sb->start_mu);
	if (started) {
		/* Stops reading, waits for the devices' acks (grace), commits. */
		consumer_stop(sb->inbox);
		consumer_join(sb->inbox);
	}
}

void state_bus_free(struct state_bus *sb)
{
	if (!sb)
		return;
	state_bus_stop(sb);
	consumer_free(sb->inbox);
	struct state_bus *me = sb;
	atomic_compare_exchange_strong(&g_bus, &me, NULL);
	for (size_t i = 0; i < sb->tab_n; i++) {
		struct bus_sess *s = sb->tab[i], *next;
		for (; s; s = next) {
			next = s->next;
			free(s);
		}
	}
	free(sb->tab);
	while (sb->insts) {
		struct bus_inst *i = sb->insts;
		sb->insts = i->next;
		free(i);
	}
	sub_trie_free(sb->trie);
	pthread_rwlock_destroy(&sb->mu);
	pthread_mutex_destroy(&sb->start_mu);
	free(sb);
}

/* --- metrics ------------------------------------------------------------ */

int state_bus_metrics_render(struct buf *out, struct state_bus *sb)
{
	if (!sb)
		return 0;
	pthread_rwlock_rdlock(&sb->mu);
	size_t nsess = sb->nsess;
	pthread_rwlock_unlock(&sb->mu);
	int rc = prom_family(out, "kafkagate_state_bus_remote_sessions", "gauge",
			     "Sessions owned by other instances with subscriptions routed to them.");
	rc |= prom_u64(out, "kafkagate_state_bus_remote_sessions", NULL, nsess);
	rc |= prom_family(out, "kafkagate_state_bus_remote_filters", "gauge",
			  "Their subscription filters (remote subscription trie entries).");
	rc |= prom_u64(out, "kafkagate_state_bus_remote_filters", NULL,
		       atomic_load_explicit(&sb->entries, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_records_sent_total", "counter",
			  "Records written to other instances' inbox topics.");
	const char *up[] = { "side", "uplink", NULL }, *down[] = { "side", "downlink", NULL };
	rc |= prom_u64(out, "kafkagate_state_bus_records_sent_total", up,
		       atomic_load_explicit(&sb->sent_up, memory_order_relaxed));
	rc |= prom_u64(out, "kafkagate_state_bus_records_sent_total", down,
		       atomic_load_explicit(&sb->sent_down, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_send_failed_total", "counter",
			  "Inbox records that could not be written.");
	rc |= prom_u64(out, "kafkagate_state_bus_send_failed_total", NULL,
		       atomic_load_explicit(&sb->send_failed, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_records_received_total", "counter",
			  "Records read from this instance's inbox and delivered locally.");
	rc |= prom_u64(out, "kafkagate_state_bus_records_received_total", NULL,
		       atomic_load_explicit(&sb->received, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_records_skipped_total", "counter",
			  "Inbox records skipped (no valid topic, expired, out of memory).");
	rc |= prom_u64(out, "kafkagate_state_bus_records_skipped_total", NULL,
		       atomic_load_explicit(&sb->skipped, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_records_forwarded_total", "counter",
			  "Records for one session forwarded to the instance that holds it now.");
	rc |= prom_u64(out, "kafkagate_state_bus_records_forwarded_total", NULL,
		       atomic_load_explicit(&sb->forwarded, memory_order_relaxed));
	rc |= prom_family(out, "kafkagate_state_bus_inbox_timed_out_total", "counter",
			  "Inbox records committed after the delivery timeout.");
	rc |= prom_u64(out, "kafkagate_state_bus_inbox_timed_out_total", NULL,
		       sb->inbox ? consumer_timed_out(sb->inbox) : 0);

	struct downlink_lag lag[8];
	size_t n = sb->inbox ? consumer_lag(sb->inbox, lag, 8) : 0;
	rc |= prom_family(out, "kafkagate_state_bus_inbox_lag", "gauge",
			  "Records of this instance's inbox not yet committed (delivered).");
	for (size_t i = 0; i < n && i < 8; i++) {
		char part[16];
		if (lag[i].lag < 0)
			continue;
		snprintf(part, sizeof(part), "%d", (int)lag[i].partition);
		const char *labels[] = { "topic", lag[i].topic, "partition", part, NULL };
		rc |= prom_i64(out, "kafkagate_state_bus_inbox_lag", labels, lag[i].lag);
	}
	return rc;
}
