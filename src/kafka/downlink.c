/* downlink.c - the downlink's consumer groups: each record becomes one
 * tracked MQTT message per mapping (downlink_map.h), injected into the
 * broker; counters, status and metrics. See downlink.h. */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "kafka/consumer.h"
#include "kafka/downlink.h"
#include "route/downlink_map.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/prom.h"
#include "core/msg.h"
#include "route/template.h"
#include "core/util.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"
#include "route/envelope.h"

#define LOG_BURST 20 /* skip lines per mapping per second before going quiet */

/* One mapping at run time: what downlink_map.c compiled, plus its state. */
struct mapping {
	struct downlink_map *m;
	struct consumer *c;            /* its group's consumer (set by downlink_new) */
	int upstream;                  /* -1: the local broker; else the upstream's index */
	char *target;                  /* "local" or "upstream:NAME" (owned) */
	struct downlink_uprops up;     /* headers that become user properties (owned) */
	atomic_uint_fast64_t consumed, delivered, skipped;
	int64_t log_second;            /* consumer thread only */
	unsigned log_count;
};

/* One consumer and the mappings it serves; the record callback's ud. */
struct group {
	struct downlink *d;
	struct consumer *c;
	struct mapping **maps;
	size_t nmaps;
	struct downlink_map_out out;   /* consumer thread only: reused per record */
	struct buf props;              /* consumer thread only: MQTT 5 properties */
};

struct downlink {
	struct broker *br;
	struct mapping *maps;          /* config order */
	size_t nmaps;
	struct group *groups;
	size_t ngroups;
	bool stopped;
	char member[256];              /* group.instance.id of the consumers, "" = none */
	struct downlink_fanout fanout; /* set before start; never changed */
};

/* The track of one injected message: done() frees it. */
struct rec {
	struct msg_track track;
	struct consumer_ticket t;
	struct mapping *mp;
};

static void rec_done(struct msg_track *tr)
{
	struct rec *r = container_of(tr, struct rec, track);
	atomic_fetch_add_explicit(&r->mp->delivered, 1, memory_order_relaxed);
	consumer_complete(&r->t);
	free(r);
}

static void log_skip(struct mapping *mp, const rd_kafka_message_t *rkm, const char *topic,
		     const char *why)
{
	int64_t sec = util_now_ms() / 1000;
	if (sec != mp->log_second) {
		mp->log_second = sec;
		mp->log_count = 0;
	}
	if (mp->log_count++ < LOG_BURST)
		log_warn("downlink record skipped group=%s topic=%s partition=%d offset=%lld "
			 "line=%d reason=\"%s\"", mp->m->group, topic, (int)rkm->partition,
			 (long long)rkm->offset, mp->m->line, why);
}

/* Longest property list made from headers: far below MQTT's 268435455 so
 * that a PUBLISH with it stays encodable; the user properties are left out
 * of a list that would be longer (the mqtt.* ones always fit). */
#define PROPS_MAX (16u << 20)

/* A header value as an MQTT string/binary field: at most 65535 bytes. */
static bool hdr_get(rd_kafka_headers_t *h, const char *name, const uint8_t **v, size_t *n)
{
	const void *val;
	if (!h || rd_kafka_header_get_last(h, name, &val, n) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	*v = val ? val : (const uint8_t *)"";
	if (!val)
		*n = 0;
	return *n <= UINT16_MAX;
}

/* True when the header named name (a user property candidate) is wanted. */
static bool uprop_wanted(const struct downlink_uprops *up, const char *name)
{
	if (up->all)
		return strncmp(name, "mqtt.", 5) != 0;
	for (size_t i = 0; i < up->n; i++)
		if (strcmp(up->names[i], name) == 0)
			return true;
	return false;
}

/* Header i of h as a user property for mp: name and value valid MQTT UTF-8
 * strings [MQTT-1.5.7-1] of at most 65535 bytes; a null value is "". */
static bool uprop_at(const struct downlink_uprops *up, rd_kafka_headers_t *h, size_t i,
		     const char **name, const void **val, size_t *vlen, bool *more)
{
	*more = rd_kafka_header_get_all(h, i, name, val, vlen) == RD_KAFKA_RESP_ERR_NO_ERROR;
	if (!*more || !uprop_wanted(up, *name))
		return false;
	if (!*val) {
		*val = "";
		*vlen = 0;
	}
	size_t nlen = strlen(*name);
	return nlen <= UINT16_MAX && *vlen <= UINT16_MAX &&
	       mqtt_utf8_valid((const uint8_t *)*name, nlen) && mqtt_utf8_valid(*val, *vlen);
}

int downlink_props(const struct downlink_uprops *up, rd_kafka_headers_t *h, int64_t record_ts,
		   const void *payload, size_t payload_len, struct buf *out, int64_t *expires_ms)
{
	const uint8_t *v;
	size_t n;
	uint8_t pfi = 2;           /* 2: none */
	struct { const uint8_t *v; size_t n; bool ok; } ct = { 0 }, rt = { 0 }, cd = { 0 };
	size_t need = 0;

	*expires_ms = 0;
	if (!h)
		return 0;
	if (hdr_get(h, "mqtt.payload_format", &v, &n) && n == 1 && (v[0] == '0' || v[0] == '1')) {
		pfi = (uint8_t)(v[0] - '0');
		/* Indicator 1 promises UTF-8 [MQTT-3.3.2-4]: not made for a
		 * payload that is not. */
		if (pfi == 1 && !envelope_text_valid(payload, payload_len))
			pfi = 2;
		need += pfi < 2 ? 2 : 0;
	}
	if (hdr_get(h, "mqtt.content_type", &ct.v, &ct.n) && mqtt_utf8_valid(ct.v, ct.n))
		ct.ok = true, need += 3 + ct.n;
	/* A Response Topic is a topic name: no wildcards [MQTT-3.3.2-14]. */
	if (hdr_get(h, "mqtt.response_topic", &rt.v, &rt.n) && mqtt_topic_name_valid(rt.v, rt.n))
		rt.ok = true, need += 3 + rt.n;
	if (hdr_get(h, "mqtt.correlation_data", &cd.v, &cd.n))
		cd.ok = true, need += 3 + cd.n;
	if (hdr_get(h, "mqtt.message_expiry", &v, &n) && n > 0 && n <= 10) {
		uint64_t secs = 0;
		size_t i = 0;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			secs = secs * 10 + (uint64_t)(v[i++] - '0');
		if (i == n && secs <= UINT32_MAX)
			*expires_ms = (record_ts > 0 ? record_ts : util_wall_ms()) +
				      (int64_t)secs * 1000;
	}
	size_t base = need, i = 0;
	const char *name;
	const void *val;
	size_t vlen;
	bool more = true;
	if (up && (up->all || up->n)) {
		while (more) {
			if (uprop_at(up, h, i++, &name, &val, &vlen, &more))
				need += 5 + strlen(name) + vlen;
		}
	}
	bool users = up && (up->all || up->n) && need <= PROPS_MAX;
	if (!users)
		need = base;
	if (need == 0)
		return 0;
	if (buf_reserve(out, need) < 0)
		return -1;
	struct mqtt_pw w;
	mqtt_pw_init(&w, out->data + out->len, (uint32_t)need);
	if (pfi < 2)
		mqtt_pw_int(&w, MQTT_P_PAYLOAD_FORMAT, pfi);
	if (ct.ok)
		mqtt_pw_str(&w, MQTT_P_CONTENT_TYPE, ct.v, (uint16_t)ct.n);
	if (rt.ok)
		mqtt_pw_str(&w, MQTT_P_RESPONSE_TOPIC, rt.v, (uint16_t)rt.n);
	if (cd.ok)
		mqtt_pw_str(&w, MQTT_P_CORRELATION_DATA, cd.v, (uint16_t)cd.n);
	for (i = 0, more = users; more;)
		if (uprop_at(up, h, i++, &name, &val, &vlen, &more))
			mqtt_pw_pair(&w, name, (uint16_t)strlen(name), val, (uint16_t)vlen);
	if (w.overflow) /* the two passes disagree: a bug, not the record's fault */
		return -1;
	out->len += w.len;
	return 0;
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
	struct downlink_map_record r = { topic, rkm->key, rkm->key_len, rkm->payload, rkm->len,
					 hdrs };
	struct template_ctx ctx;
	template_ctx_init(&ctx);
	for (size_t i = 0; i < g->nmaps; i++) {
		struct mapping *mp = g->maps[i];
		if (!downlink_map_has_topic(mp->m, topic))
			continue;
		atomic_fetch_add_explicit(&mp->consumed, 1, memory_order_relaxed);
		struct downlink_map_out *o = &g->out;
		int rc = downlink_map_build(mp->m, &r, &ctx, o);
		struct msg *msg = NULL;
		struct rec *r_tr = NULL; /* the message's track */
		int64_t expires_ms = 0;
		const char *why = NULL;
		if (rc == DOWNLINK_MAP_OK) {
			rd_kafka_timestamp_type_t tt;
			buf_reset(&g->props);
			if (downlink_props(&mp->up, hdrs, rd_kafka_message_timestamp(rkm, &tt),
					   buf_head(&o->payload), buf_used(&o->payload), &g->props,
					   &expires_ms) < 0)
				rc = DOWNLINK_MAP_ERR_NOMEM;
		}
		/* Expired before it could be sent: nobody should act on it. */
		if (rc == DOWNLINK_MAP_OK && expires_ms && expires_ms <= util_wall_ms())
			why = "mqtt.message_expiry has passed";
		if (rc == DOWNLINK_MAP_OK && !why) {
			msg = msg_new_props((const char *)buf_head(&o->topic), buf_used(&o->topic),
					    buf_head(&o->payload), buf_used(&o->payload), o->qos,
					    o->retain, buf_head(&g->props), buf_used(&g->props));
			r_tr = malloc(sizeof(*r_tr));
			if (!msg || !r_tr)
				rc = DOWNLINK_MAP_ERR_NOMEM;
		}
		if (rc != DOWNLINK_MAP_OK || why) { /* out of memory too: waiting would not help */
			msg_unref(msg);
			free(r_tr);
			atomic_fetch_add_explicit(&mp->skipped, 1, memory_order_relaxed);
			log_skip(mp, rkm, topic, why ? why : downlink_map_err_str(rc, o->detail));
			continue;
		}
		msg->expires_ms = expires_ms;
		atomic_init(&r_tr->track.remaining, 1);
		r_tr->track.done = rec_done;
		r_tr->track.kept = false;
		r_tr->t = *t;
		r_tr->mp = mp;
		msg->track = &r_tr->track;
		owed++;
		/* On failure the broker completes the track itself: counted as done. */
		if (mp->upstream >= 0) {
			broker_inject_upstream(g->d->br, mp->upstream, msg);
		} else {
			/* Other instances' devices first: their holds are on the
			 * track before the local deliveries can settle it. Not
			 * in broadcast mode: every instance reads every record
			 * and delivers to its own devices already. */
			if (g->d->fanout.send && mp->m->mode != CFG_MODE_BROADCAST)
				g->d->fanout.send(g->d->fanout.ctx, msg, rkm->key, rkm->key_len);
			broker_inject(g->d->br, msg);
		}
	}
	template_ctx_release(&ctx);
	return owed;
}

void downlink_set_fanout(struct downlink *d, const struct downlink_fanout *f)
{
	d->fanout = f ? *f : (struct downlink_fanout){ 0 };
}

int downlink_group_id(const struct cfg_downlink *cd, const char *instance_id, char *out,
		      size_t len)
{
	int n = cd->mode == CFG_MODE_BROADCAST
		? snprintf(out, len, "%s-%s", cd->group, instance_id)
		: snprintf(out, len, "%s", cd->group);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* True for a name Kafka accepts as a group instance id (as for a topic:
 * 1..249 bytes of [A-Za-z0-9._-], not "." or ".."). */
static bool id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* kafka.instance_id, or the host name. */
static void instance_id(const struct cfg *cfg, char *out, size_t len)
{
	if (cfg->kafka.instance_id) {
		snprintf(out, len, "%s", cfg->kafka.instance_id);
		return;
	}
	if (gethostname(out, len) < 0 || !out[0])
		snprintf(out, len, "localhost");
	out[len - 1] = '\0';
}

int downlink_member_id(const struct cfg *cfg, const char *host, char *out, size_t len)
{
	int n;

	if (len == 0)
		return -1;
	out[0] = '\0';
	for (size_t i = 0; i < cfg->kafka.nprops; i++)
		if (strcmp(cfg->kafka.props[i].name, "group.instance.id") == 0)
			return 0; /* kafka.properties decides, "" included */
	if (cfg->kafka.instance_id)
		n = snprintf(out, len, "%s", cfg->kafka.instance_id);
	else if (cfg->nlisteners > 0 && cfg->listeners[0].port != 0)
		n = snprintf(out, len, "%s-%d", host, cfg->listeners[0].port);
	else
		return 0; /* no stable default: dynamic membership */
	if (n < 0 || (size_t)n >= len) {
		out[0] = '\0';
		return -1;
	}
	/* A host name may hold what Kafka refuses in an id. */
	for (char *p = out; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
			*p = '_';
	if (strlen(out) > 249)
		out[249] = '\0';
	return 0;
}

int downlink_check(const struct cfg *cfg, char *err, size_t errlen)
{
	char e[400];
	if (cfg->kafka.instance_id && !id_valid(cfg->kafka.instance_id)) {
		snprintf(err, errlen, "%s:%d: kafka.instance_id: 1 to 249 of A-Z a-z 0-9 . _ - "
			 "(a Kafka group instance id), not \".\" or \"..\"", cfg->path,
			 cfg->kafka.line);
		return -1;
	}
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
	buf_release(&g->props);
}

void downlink_free(struct downlink *d)
{
	if (!d)
		return;
	downlink_stop(d);
	for (size_t i = 0; i < d->ngroups; i++)
		group_release(&d->groups[i]);
	free(d->groups);
	for (size_t i = 0; i < d->nmaps; i++) {
		downlink_map_free(d->maps[i].m);
		free(d->maps[i].target);
		for (size_t j = 0; j < d->maps[i].up.n; j++)
			free(d->maps[i].up.names[j]);
		free(d->maps[i].up.names);
	}
	free(d->maps);
	free(d);
}

/* The group serving group_id, created (without its consumer) if new. */
static struct group *group_for(struct downlink *d, const char *group_id)
{
	for (size_t i = 0; i < d->ngroups; i++)
		if (strcmp(d->groups[i].maps[0]->m->group, group_id) == 0)
			return &d->groups[i];
	struct group *g = &d->groups[d->ngroups++];
	memset(g, 0, sizeof(*g));
	g->d = d;
	return g;
}

static int start_consumer(struct downlink *d, struct group *g, const struct cfg *cfg,
			  const char *bootstrap, const char *member, char *err, size_t errlen)
{
	size_t n = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		n += g->maps[i]->m->ntopics;
	const char **topics = calloc(n, sizeof(*topics));
	if (!topics) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		for (size_t j = 0; j < g->maps[i]->m->ntopics; j++)
			topics[n++] = g->maps[i]->m->topics[j];
	/* One consumer tracks the group's records: the most patient mapping wins. */
	int64_t timeout_ms = 0;
	for (size_t i = 0; i < g->nmaps; i++)
		if (g->maps[i]->m->ack_timeout_ms > timeout_ms)
			timeout_ms = g->maps[i]->m->ack_timeout_ms;
	struct consumer_opts o = {
		.group_id = g->maps[0]->m->group, .topics = topics, .ntopics = n,
		.on_record = on_record, .ud = g,
		.timeout_ms = timeout_ms > 0 ? timeout_ms : DOWNLINK_TIMEOUT_MS,
		.max_in_flight = DOWNLINK_MAX_IN_FLIGHT, .stop_grace_ms = DOWNLINK_STOP_GRACE_MS,
		.start_grace_ms = DOWNLINK_START_GRACE_MS, .instance_id = member,
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
	char host[256], gid[512], e[400], member[256], name[256];
	struct downlink *d = calloc(1, sizeof(*d));
	size_t n = cfg->ndownlinks;

	if (downlink_check(cfg, err, errlen) < 0) {
		free(d);
		return NULL;
	}
	instance_id(cfg, host, sizeof(host));
	if (gethostname(name, sizeof(name)) < 0 || !name[0])
		snprintf(name, sizeof(name), "localhost");
	name[sizeof(name) - 1] = '\0';
	if (downlink_member_id(cfg, name, member, sizeof(member)) < 0) {
		snprintf(err, errlen, "%s:%d: kafka: group instance id too long", cfg->path,
			 cfg->kafka.line);
		free(d);
		return NULL;
	}
	if (!d || !(d->maps = calloc(n ? n : 1, sizeof(*d->maps))) ||
	    !(d->groups = calloc(n ? n : 1, sizeof(*d->groups)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	d->br = br;
	snprintf(d->member, sizeof(d->member), "%s", member);
	for (size_t i = 0; i < n; i++) {
		const struct cfg_downlink *cd = &cfg->downlinks[i];
		if (downlink_group_id(cd, host, gid, sizeof(gid)) < 0) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: group id too long", cfg->path,
				 cd->line, i);
			goto fail;
		}
		if (!(d->maps[i].m = downlink_map_new(cd, gid, e, sizeof(e)))) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: %s", cfg->path, cd->line, i, e);
			goto fail;
		}
		d->nmaps++;
		d->maps[i].upstream = -1;
		if (cd->target && (d->maps[i].upstream = broker_upstream_find(br, cd->target)) < 0) {
			snprintf(err, errlen, "%s:%d: downlink[%zu]: target names no upstream (\"%s\")",
				 cfg->path, cd->line, i, cd->target);
			goto fail;
		}
		struct mapping *mp = &d->maps[i];
		mp->up.all = cd->user_props_all;
		if (cd->nuser_props && !(mp->up.names = calloc(cd->nuser_props, sizeof(char *)))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (size_t j = 0; j < cd->nuser_props; j++) {
			if (!(mp->up.names[j] = strdup(cd->user_props[j]))) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			mp->up.n = j + 1;
		}
		char tgt[300];
		snprintf(tgt, sizeof(tgt), "%s%s", cd->target ? "upstream:" : "local",
			 cd->target ? cd->target : "");
		if (!(d->maps[i].target = strdup(tgt))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		struct group *g = group_for(d, gid);
		struct mapping **maps = realloc(g->maps, (g->nmaps + 1) * sizeof(*maps));
		if (!maps) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		g->maps = maps;
		g->maps[g->nmaps++] = &d->maps[i];
	}
	for (size_t i = 0; i < d->ngroups; i++) {
		struct group *g = &d->groups[i];
		if (start_consumer(d, g, cfg, bootstrap, member, err, errlen) < 0)
			goto fail;
		for (size_t j = 0; j < g->nmaps; j++) {
			const struct downlink_map *m = g->maps[j]->m;
			log_info("downlink mapping group=%s topics=%s mqtt_topic=%s qos=%d retain=%d "
				 "target=%s line=%d", m->group, m->topics_csv, template_source(m->t), m->qos,
				 m->retain, g->maps[j]->target, m->line);
		}
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
		log_info("downlink consumer started group=%s mappings=%zu instance_id=%s",
			 consumer_group(d->groups[i].c), d->groups[i].nmaps,
			 d->member[0] ? log_q(d->member) : "none");
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
	const struct mapping *mp = &d->maps[i];
	const struct downlink_map *m = mp->m;
	*out = (struct downlink_stats){
		.group = m->group, .topics = m->topics_csv, .mqtt_topic = template_source(m->t),
		.line = m->line,
		.consumed = atomic_load_explicit(&mp->consumed, memory_order_relaxed),
		.delivered = atomic_load_explicit(&mp->delivered, memory_order_relaxed),
		.skipped = atomic_load_explicit(&mp->skipped, memory_order_relaxed),
		.timed_out = mp->c ? consumer_timed_out(mp->c) : 0,
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
	json_object_set_new(o, "target", json_string(d->maps[i].target));
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
		json_t *o = map_json(d, d->maps[i].m, i, lag, n);
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
	int rc = prom_family(out, name, "counter", help);
	for (size_t i = 0; i < d->nmaps; i++) {
		struct downlink_stats st;
		char idx[24];
		downlink_stats(d, i, &st);
		snprintf(idx, sizeof(idx), "%zu", i);
		const char *labels[] = { "mapping", idx, "group", st.group, "topics", st.topics, NULL };
		rc |= prom_u64(out, name, labels,
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
	rc |= prom_family(out, "kafkagate_downlink_records_timed_out_total", "counter",
			     "Downlink records committed after the delivery timeout.");
	for (size_t i = 0; i < d->ngroups; i++) {
		const char *labels[] = { "group", consumer_group(d->groups[i].c), NULL };
		rc |= prom_u64(out, "kafkagate_downlink_records_timed_out_total", labels,
				  consumer_timed_out(d->groups[i].c));
	}

	size_t cap = downlink_lag_snapshot(d, NULL, 0) + 8;
	struct downlink_lag *lag = calloc(cap, sizeof(*lag));
	if (!lag)
		return -1;
	size_t n = downlink_lag_snapshot(d, lag, cap);
	rc |= prom_family(out, "kafkagate_downlink_consumer_lag", "gauge",
			     "Records between the high watermark and the committed offset.");
	for (size_t i = 0; i < n && i < cap; i++) {
		char part[16];
		if (lag[i].lag < 0)
			continue; /* unknown yet */
		snprintf(part, sizeof(part), "%d", (int)lag[i].partition);
		const char *labels[] = { "topic", lag[i].topic, "partition", part,
					 "group", lag[i].group, NULL };
		rc |= prom_i64(out, "kafkagate_downlink_consumer_lag", labels, lag[i].lag);
	}
	free(lag);
	return rc;
}
