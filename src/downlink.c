/* downlink.c - Kafka records to MQTT messages; see downlink.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "broker.h"
#include "cfg.h"
#include "consumer.h"
#include "downlink.h"
#include "envelope.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "mqtt_codec.h"
#include "msg.h"
#include "template.h"
#include "util.h"

#define LOG_BURST 20 /* skip lines per mapping per second before going quiet */

struct downlink_map {
	struct template *t;
	char **topics;
	size_t ntopics;
	char *topics_csv;
	char *group;
	uint8_t qos;
	bool retain;
	enum cfg_format format;
	enum cfg_mode mode;
	int line;
	int64_t ack_timeout_ms;
	struct consumer *c;            /* its group's consumer (set by downlink_new) */
	atomic_uint_fast64_t consumed, delivered, skipped;
	int64_t log_second;            /* consumer thread only */
	unsigned log_count;
};

/* One consumer and the mappings it serves; the record callback's ud. */
struct group {
	struct downlink *d;
	struct consumer *c;
	struct downlink_map **maps;
	size_t nmaps;
	struct downlink_out out;       /* consumer thread only: reused per record */
};

struct downlink {
	struct broker *br;
	struct downlink_map **maps;
	size_t nmaps;
	struct group *groups;
	size_t ngroups;
	bool stopped;
};

/* The track of one injected message: done() frees it. */
struct rec {
	struct msg_track track;
	struct consumer_ticket t;
	struct downlink_map *m;
};

static void rec_done(struct msg_track *tr)
{
	struct rec *r = container_of(tr, struct rec, track);
	atomic_fetch_add_explicit(&r->m->delivered, 1, memory_order_relaxed);
	consumer_complete(&r->t);
	free(r);
}

/* Kafka's legal topic names: [A-Za-z0-9._-]{1,249}. */
static bool kafka_topic_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 249)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
			return false;
	return true;
}

void downlink_map_free(struct downlink_map *m)
{
	if (!m)
		return;
	template_free(m->t);
	for (size_t i = 0; i < m->ntopics; i++)
		free(m->topics[i]);
	free(m->topics);
	free(m->topics_csv);
	free(m->group);
	free(m);
}

struct downlink_map *downlink_map_new(const struct cfg_downlink *cd, const char *group_id,
				      char *err, size_t errlen)
{
	char e[256];
	struct downlink_map *m = calloc(1, sizeof(*m));
	size_t csv = 1;

	if (!m || !(m->group = strdup(group_id)) ||
	    !(m->topics = calloc(cd->ntopics ? cd->ntopics : 1, sizeof(*m->topics)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	m->ack_timeout_ms = (int64_t)cd->ack_timeout * 1000;
	if (template_compile(&m->t, cd->mqtt_topic, TEMPLATE_DOWNLINK, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "mqtt_topic: %s", e);
		goto fail;
	}
	const char *lit = template_source(m->t);
	if (template_is_literal(m->t) &&
	    !mqtt_topic_name_valid((const uint8_t *)lit, strlen(lit))) {
		snprintf(err, errlen, "mqtt_topic: '%s' is not a valid MQTT topic name", lit);
		goto fail;
	}
	for (size_t i = 0; i < cd->ntopics; i++) {
		if (!kafka_topic_valid(cd->topics[i])) {
			snprintf(err, errlen, "topic: '%s' is not a valid Kafka topic name", cd->topics[i]);
			goto fail;
		}
		if (!(m->topics[i] = strdup(cd->topics[i]))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		m->ntopics++;
		csv += strlen(cd->topics[i]) + 1;
	}
	if (!(m->topics_csv = calloc(1, csv))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < m->ntopics; i++) {
		if (i)
			strcat(m->topics_csv, ",");
		strcat(m->topics_csv, m->topics[i]);
	}
	m->qos = (uint8_t)cd->qos;
	m->retain = cd->retain;
	m->format = cd->format;
	m->mode = cd->mode;
	m->line = cd->line;
	return m;
fail:
	downlink_map_free(m);
	return NULL;
}

bool downlink_map_has_topic(const struct downlink_map *m, const char *topic)
{
	for (size_t i = 0; i < m->ntopics; i++)
		if (strcmp(m->topics[i], topic) == 0)
			return true;
	return false;
}

static int header_get(void *ud, const char *name, const void **val, size_t *len)
{
	return rd_kafka_header_get_last(ud, name, val, len) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* The header's value if it equals one of the words (same length, same bytes). */
static int header_word(rd_kafka_headers_t *h, const char *name, const char *const *words)
{
	const void *v;
	size_t n;
	if (!h || header_get(h, name, &v, &n) < 0 || !v)
		return -1;
	for (int i = 0; words[i]; i++)
		if (strlen(words[i]) == n && memcmp(words[i], v, n) == 0)
			return i;
	return -1;
}

int downlink_build(const struct downlink_map *m, const struct downlink_record *r,
		   struct template_ctx *ctx, struct downlink_out *out)
{
	static const char *const qos_words[] = { "0", "1", "2", NULL };
	static const char *const bool_words[] = { "false", "true", "0", "1", NULL };

	buf_reset(&out->topic);
	buf_reset(&out->payload);
	out->detail = 0;
	ctx->key = r->key;
	ctx->key_len = r->key_len;
	ctx->header = r->headers ? header_get : NULL;
	ctx->header_ud = r->headers;
	ctx->value = r->value;
	ctx->value_len = r->value ? r->value_len : 0;
	ctx->kafka_topic = r->topic;
	ctx->kafka_topic_len = strlen(r->topic);

	int rc = template_render(m->t, ctx, &out->topic);
	if (rc < 0) {
		out->detail = rc;
		return rc == TEMPLATE_ERR_NOMEM ? DOWNLINK_ERR_NOMEM : DOWNLINK_ERR_TEMPLATE;
	}
	if (buf_used(&out->topic) > UINT16_MAX ||
	    !mqtt_topic_name_valid(buf_head(&out->topic), buf_used(&out->topic)))
		return DOWNLINK_ERR_TOPIC;

	int q = header_word(r->headers, "mqtt.qos", qos_words);
	int b = header_word(r->headers, "mqtt.retain", bool_words);
	out->qos = q >= 0 ? (uint8_t)q : m->qos;
	out->retain = b >= 0 ? (b & 1) != 0 : m->retain;

	if (m->format == CFG_FORMAT_JSON) {
		const struct json_t *root = template_ctx_json(ctx);
		rc = root ? envelope_decode_parsed(root, ctx->value, ctx->value_len, &out->payload)
			  : ENVELOPE_ERR_NOT_ENVELOPE;
		if (rc < 0) {
			out->detail = rc;
			return rc == ENVELOPE_ERR_NOMEM ? DOWNLINK_ERR_NOMEM : DOWNLINK_ERR_ENVELOPE;
		}
	} else if (ctx->value_len && buf_append(&out->payload, ctx->value, ctx->value_len) < 0) {
		return DOWNLINK_ERR_NOMEM;
	}
	return DOWNLINK_OK;
}

const char *downlink_err_str(int err, int detail)
{
	switch (err) {
	case DOWNLINK_OK: return "ok";
	case DOWNLINK_ERR_TEMPLATE: return template_err_str(detail);
	case DOWNLINK_ERR_TOPIC: return "not a valid MQTT topic name";
	case DOWNLINK_ERR_ENVELOPE:
		return detail == ENVELOPE_ERR_NOT_ENVELOPE ? "value is not a JSON envelope"
							    : envelope_err_str(detail);
	case DOWNLINK_ERR_NOMEM: return "out of memory";
	}
	return "unknown error";
}

static void log_skip(struct downlink_map *m, const rd_kafka_message_t *rkm, const char *topic,
		     const char *why)
{
	int64_t sec = util_now_ms() / 1000;
	if (sec != m->log_second) {
		m->log_second = sec;
		m->log_count = 0;
	}
	if (m->log_count++ < LOG_BURST)
		log_warn("downlink record skipped group=%s topic=%s partition=%d offset=%lld "
			 "line=%d reason=\"%s\"", m->group, topic, (int)rkm->partition,
			 (long long)rkm->offset, m->line, why);
}

/* The consumer's record callback: one tracked message per mapping. */
static unsigned on_record(void *ud, const rd_kafka_message_t *rkm, const struct consumer_ticket *t)
{
	struct group *g = ud;
	rd_kafka_headers_t *hdrs = NULL;
	const char *topic = rd_kafka_topic_name(rkm->rkt);
	unsigned owed = 0;

	if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		hdrs = NULL;
	struct downlink_record r = { topic, rkm->key, rkm->key_len, rkm->payload, rkm->len, hdrs };
	struct template_ctx ctx;
	template_ctx_init(&ctx);
	for (size_t i = 0; i < g->nmaps; i++) {
		struct downlink_map *m = g->maps[i];
		if (!downlink_map_has_topic(m, topic))
			continue;
		atomic_fetch_add_explicit(&m->consumed, 1, memory_order_relaxed);
		struct downlink_out *o = &g->out;
		int rc = downlink_build(m, &r, &ctx, o);
		struct msg *msg = NULL;
		struct rec *r_tr = NULL; /* the message's track */
		if (rc == DOWNLINK_OK) {
			msg = msg_new((const char *)buf_head(&o->topic), buf_used(&o->topic),
				      buf_head(&o->payload), buf_used(&o->payload), o->qos, o->retain);
			r_tr = malloc(sizeof(*r_tr));
			if (!msg || !r_tr)
				rc = DOWNLINK_ERR_NOMEM;
		}
		if (rc != DOWNLINK_OK) { /* out of memory too: waiting would not help */
			msg_unref(msg);
			free(r_tr);
			atomic_fetch_add_explicit(&m->skipped, 1, memory_order_relaxed);
			log_skip(m, rkm, topic, downlink_err_str(rc, o->detail));
			continue;
		}
		atomic_init(&r_tr->track.remaining, 1);
		r_tr->track.done = rec_done;
		r_tr->t = *t;
		r_tr->m = m;
		msg->track = &r_tr->track;
		owed++;
		/* On failure the broker completes the track itself: counted as done. */
		broker_inject(g->d->br, msg);
	}
	template_ctx_release(&ctx);
	return owed;
}

int downlink_group_id(const struct cfg_downlink *cd, const char *instance_id, char *out,
		      size_t len)
{
	int n = cd->mode == CFG_MODE_BROADCAST
		? snprintf(out, len, "%s-%s", cd->group, instance_id)
		: snprintf(out, len, "%s", cd->group);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void instance_id(char *out, size_t len)
{
	if (gethostname(out, len) < 0 || !out[0])
		snprintf(out, len, "localhost");
	out[len - 1] = '\0';
}

int downlink_check(const struct cfg *cfg, char *err, size_t errlen)
{
	char e[400];
	for (size_t i = 0; i < cfg->ndownlinks; i++) {
		struct downlink_map *m = downlink_map_new(&cfg->downlinks[i], "check", e, sizeof(e));
		if (!m) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: %s", cfg->path,
				 cfg->downlinks[i].line, i, e);
			return -1;
		}
		downlink_map_free(m);
	}
	return 0;
}

static void group_release(struct group *g)
{
	consumer_free(g->c);
	free(g->maps);
	buf_release(&g->out.topic);
	buf_release(&g->out.payload);
}

void downlink_free(struct downlink *d)
{
	if (!d)
		return;
	downlink_stop(d);
	for (size_t i = 0; i < d->ngroups; i++)
		group_release(&d->groups[i]);
	free(d->groups);
	for (size_t i = 0; i < d->nmaps; i++)
		downlink_map_free(d->maps[i]);
	free(d->maps);
	free(d);
}

/* The group serving group_id, created (without its consumer) if new. */
static struct group *group_for(struct downlink *d, const char *group_id)
{
	for (size_t i = 0; i < d->ngroups; i++)
		if (strcmp(d->groups[i].maps[0]->group, group_id) == 0)
			return &d->groups[i];
	struct group *g = &d->groups[d->ngroups++];
	memset(g, 0, sizeof(*g));
	g->d = d;
	return g;
}

static int start_consumer(struct downlink *d, struct group *g, const struct cfg *cfg,
			  const char *bootstrap, char *err, size_t errlen)
{
	size_t n = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		n += g->maps[i]->ntopics;
	const char **topics = calloc(n, sizeof(*topics));
	if (!topics) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		for (size_t j = 0; j < g->maps[i]->ntopics; j++)
			topics[n++] = g->maps[i]->topics[j];
	/* One consumer tracks the group's records: the most patient mapping wins. */
	int64_t timeout_ms = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		if (g->maps[i]->ack_timeout_ms > timeout_ms)
			timeout_ms = g->maps[i]->ack_timeout_ms;
	struct consumer_opts o = {
		.group_id = g->maps[0]->group, .topics = topics, .ntopics = n,
		.on_record = on_record, .ud = g,
		.timeout_ms = timeout_ms > 0 ? timeout_ms : DOWNLINK_TIMEOUT_MS,
		.max_in_flight = DOWNLINK_MAX_IN_FLIGHT, .stop_grace_ms = DOWNLINK_STOP_GRACE_MS,
	};
	g->c = consumer_new(cfg, bootstrap, &o, err, errlen);
	free(topics);
	if (!g->c)
		return -1;
	for (size_t i = 0; i < g->nmaps; i++)
		g->maps[i]->c = g->c;
	(void)d;
	return 0;
}

struct downlink *downlink_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			      char *err, size_t errlen)
{
	char host[256], gid[512], e[400];
	struct downlink *d = calloc(1, sizeof(*d));
	size_t n = cfg->ndownlinks;

	instance_id(host, sizeof(host));
	if (!d || !(d->maps = calloc(n ? n : 1, sizeof(*d->maps))) ||
	    !(d->groups = calloc(n ? n : 1, sizeof(*d->groups)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	d->br = br;
	for (size_t i = 0; i < n; i++) {
		const struct cfg_downlink *cd = &cfg->downlinks[i];
		if (downlink_group_id(cd, host, gid, sizeof(gid)) < 0) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: group id too long", cfg->path,
				 cd->line, i);
			goto fail;
		}
		if (!(d->maps[i] = downlink_map_new(cd, gid, e, sizeof(e)))) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: %s", cfg->path, cd->line, i, e);
			goto fail;
		}
		d->nmaps++;
		struct group *g = group_for(d, gid);
		struct downlink_map **maps = realloc(g->maps, (g->nmaps + 1) * sizeof(*maps));
		if (!maps) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		g->maps = maps;
		g->maps[g->nmaps++] = d->maps[i];
	}
	for (size_t i = 0; i < d->ngroups; i++) {
		struct group *g = &d->groups[i];
		if (start_consumer(d, g, cfg, bootstrap, err, errlen) < 0)
			goto fail;
		for (size_t j = 0; j < g->nmaps; j++)
			log_info("downlink mapping group=%s topics=%s mqtt_topic=%s qos=%d retain=%d "
				 "line=%d", g->maps[j]->group, g->maps[j]->topics_csv,
				 template_source(g->maps[j]->t), g->maps[j]->qos, g->maps[j]->retain,
				 g->maps[j]->line);
	}
	return d;
fail:
	downlink_free(d);
	return NULL;
}

int downlink_start(struct downlink *d)
{
	for (size_t i = 0; i < d->ngroups; i++) {
		if (consumer_start(d->groups[i].c) < 0) {
			downlink_stop(d);
			return -1;
		}
		log_info("downlink consumer started group=%s mappings=%zu",
			 consumer_group(d->groups[i].c), d->groups[i].nmaps);
	}
	return 0;
}

void downlink_stop(struct downlink *d)
{
	if (!d || d->stopped)
		return;
	d->stopped = true;
	/* All at once, so that the grace periods overlap. */
	for (size_t i = 0; i < d->ngroups; i++)
		if (d->groups[i].c)
			consumer_stop(d->groups[i].c);
	for (size_t i = 0; i < d->ngroups; i++)
		if (d->groups[i].c)
			consumer_join(d->groups[i].c);
}

size_t downlink_lag_snapshot(struct downlink *d, struct downlink_lag *out, size_t max)
{
	size_t total = 0;
	for (size_t i = 0; i < d->ngroups; i++) {
		size_t off = total < max ? total : max;
		total += consumer_lag(d->groups[i].c, out ? out + off : NULL, max - off);
	}
	return total;
}

size_t downlink_count(const struct downlink *d)
{
	return d ? d->nmaps : 0;
}

int downlink_stats(const struct downlink *d, size_t i, struct downlink_stats *out)
{
	if (!d || i >= d->nmaps)
		return -1;
	const struct downlink_map *m = d->maps[i];
	*out = (struct downlink_stats){
		.group = m->group, .topics = m->topics_csv, .mqtt_topic = template_source(m->t),
		.line = m->line,
		.consumed = atomic_load_explicit(&m->consumed, memory_order_relaxed),
		.delivered = atomic_load_explicit(&m->delivered, memory_order_relaxed),
		.skipped = atomic_load_explicit(&m->skipped, memory_order_relaxed),
		.timed_out = m->c ? consumer_timed_out(m->c) : 0,
	};
	return 0;
}

static json_t *map_json(struct downlink *d, const struct downlink_map *m, size_t i,
			const struct downlink_lag *lag, size_t nlag)
{
	struct downlink_stats st;
	json_t *o = json_object(), *topics = json_array(), *lags = json_array();

	downlink_stats(d, i, &st);
	for (size_t j = 0; j < m->ntopics; j++)
		json_array_append_new(topics, json_string(m->topics[j]));
	for (size_t j = 0; j < nlag; j++) {
		if (strcmp(lag[j].group, m->group) != 0 || !downlink_map_has_topic(m, lag[j].topic))
			continue;
		json_array_append_new(lags, json_pack("{s:s, s:i, s:I, s:I, s:I}", "topic",
			lag[j].topic, "partition", (int)lag[j].partition, "lag", (json_int_t)lag[j].lag,
			"hi_offset", (json_int_t)lag[j].hi_offset,
			"committed_offset", (json_int_t)lag[j].committed_offset));
	}
	json_object_set_new(o, "group", json_string(m->group));
	json_object_set_new(o, "topics", topics);
	json_object_set_new(o, "mqtt_topic", json_string(st.mqtt_topic));
	json_object_set_new(o, "qos", json_integer(m->qos));
	json_object_set_new(o, "retain", json_boolean(m->retain));
	json_object_set_new(o, "format", json_string(m->format == CFG_FORMAT_JSON ? "json" : "raw"));
	json_object_set_new(o, "mode", json_string(m->mode == CFG_MODE_BROADCAST ? "broadcast"
									  : "group"));
	json_object_set_new(o, "consumed", json_integer((json_int_t)st.consumed));
	json_object_set_new(o, "delivered", json_integer((json_int_t)st.delivered));
	json_object_set_new(o, "skipped", json_integer((json_int_t)st.skipped));
	json_object_set_new(o, "timed_out", json_integer((json_int_t)st.timed_out));
	json_object_set_new(o, "lag", lags);
	return o;
}

json_t *downlink_status_json(void *ud)
{
	struct downlink *d = ud;
	json_t *arr = json_array();
	size_t cap = downlink_lag_snapshot(d, NULL, 0) + 8;
	struct downlink_lag *lag = calloc(cap, sizeof(*lag));

	if (!arr || !lag)
		goto fail;
	size_t n = downlink_lag_snapshot(d, lag, cap);
	if (n > cap) /* grew meanwhile: keep what fits */
		n = cap;
	for (size_t i = 0; i < d->nmaps; i++) {
		json_t *o = map_json(d, d->maps[i], i, lag, n);
		if (!o || json_array_append_new(arr, o) < 0)
			goto fail;
	}
	free(lag);
	return arr;
fail:
	free(lag);
	json_decref(arr);
	return NULL;
}

/* One counter family over every mapping; which = 0 consumed, 1 delivered,
 * 2 skipped. */
static int map_family(struct buf *out, struct downlink *d, const char *name, const char *help,
		      int which)
{
	int rc = metrics_family(out, name, "counter", help);
	for (size_t i = 0; i < d->nmaps; i++) {
		struct downlink_stats st;
		char idx[24];
		downlink_stats(d, i, &st);
		snprintf(idx, sizeof(idx), "%zu", i);
		const char *labels[] = { "mapping", idx, "group", st.group, "topics", st.topics, NULL };
		rc |= metrics_u64(out, name, labels,
				  which == 0 ? st.consumed : which == 1 ? st.delivered : st.skipped);
	}
	return rc;
}

int downlink_metrics_render(struct buf *out, void *ud)
{
	struct downlink *d = ud;
	int rc = map_family(out, d, "kafkagate_downlink_records_consumed_total",
			    "Kafka records read for a downlink mapping.", 0);
	rc |= map_family(out, d, "kafkagate_downlink_messages_delivered_total",
			 "Downlink messages whose every matching delivery completed.", 1);
	rc |= map_family(out, d, "kafkagate_downlink_records_skipped_total",
			 "Downlink records skipped (template, topic name or envelope).", 2);
	rc |= metrics_family(out, "kafkagate_downlink_records_timed_out_total", "counter",
			     "Downlink records committed after the delivery timeout.");
	for (size_t i = 0; i < d->ngroups; i++) {
		const char *labels[] = { "group", consumer_group(d->groups[i].c), NULL };
		rc |= metrics_u64(out, "kafkagate_downlink_records_timed_out_total", labels,
				  consumer_timed_out(d->groups[i].c));
	}

	size_t cap = downlink_lag_snapshot(d, NULL, 0) + 8;
	struct downlink_lag *lag = calloc(cap, sizeof(*lag));
	if (!lag)
		return -1;
	size_t n = downlink_lag_snapshot(d, lag, cap);
	rc |= metrics_family(out, "kafkagate_downlink_consumer_lag", "gauge",
			     "Records between the high watermark and the committed offset.");
	for (size_t i = 0; i < n && i < cap; i++) {
		char part[16];
		if (lag[i].lag < 0)
			continue; /* unknown yet */
		snprintf(part, sizeof(part), "%d", (int)lag[i].partition);
		const char *labels[] = { "topic", lag[i].topic, "partition", part,
					 "group", lag[i].group, NULL };
		rc |= metrics_i64(out, "kafkagate_downlink_consumer_lag", labels, lag[i].lag);
	}
	free(lag);
	return rc;
}
