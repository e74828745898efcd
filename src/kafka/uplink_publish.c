/* uplink_publish.c - one publish becomes one Kafka record per matching
 * route, all sharing a ticket whose last delivery report acknowledges the
 * publish; see uplink.h for the threads involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "broker/broker.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/util.h"
#include "kafka/uplink_int.h"
#include "mqtt/mqtt5.h"
#include "route/envelope.h"
#include "route/route.h"
#include "route/template.h"

#define MAX_ROUTES_PER_MSG 64

void uplink_ticket_free(struct ticket *t)
{
	msg_unref(t->m);
	free(t); /* the ids live in the same allocation */
}

bool uplink_err_is_permanent(rd_kafka_resp_err_t err)
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

static void ticket_reclaim(struct reclaim_node *n)
{
	uplink_ticket_free(container_of(n, struct ticket, rn));
}

void uplink_ticket_release(struct uplink *u, struct ticket *t)
{
	if (atomic_fetch_sub(&t->remaining, 1) != 1)
		return;
	/* At shutdown the workers are gone: nobody is waiting for acks. */
	if (atomic_load(&u->closing)) {
		uplink_ticket_free(t);
		return;
	}
	/* The memory goes home to the worker that allocated it: with the
	 * answer when there is one (one hand-off per publish), else alone. */
	t->rn.free = ticket_reclaim;
	if (t->seq != 0)
		broker_ack_done(u->br, t->conn_id, t->seq, !atomic_load(&t->failed), &t->rn);
	else
		broker_reclaim(u->br, t->conn_id, &t->rn);
}

/* Writes a dead letter for t. Returns 0 if one record was produced. */
static int dead_letter(struct uplink *u, struct ticket *t, const char *error)
{
	struct buf b = { 0 };
	struct msg *m = t->m;
	struct envelope_in in = {
		.topic = m->topic, .topic_len = m->topic_len,
		.clientid = t->clientid, .clientid_len = t->clientid_len,
		.username = t->username, .username_len = t->username_len,
		.qos = m->qos, .retain = m->retain, .timestamp_ms = m->received_ms,
		.payload = m->payload, .payload_len = m->payload_len, .error = error,
		.props = m->props, .props_len = m->props_len,
	};
	in.has_expiry = msg_expiry_left(m, util_wall_ms(), &in.expiry_s);
	if (envelope_encode(&b, &in) < 0) {
		buf_release(&b);
		return -1;
	}
	atomic_fetch_add(&t->remaining, 1);
	atomic_fetch_add(&u->st.in_flight, 1);
	rd_kafka_resp_err_t err = rd_kafka_producev(
		u->rk, RD_KAFKA_V_TOPIC(u->dead_letter),
		RD_KAFKA_V_KEY(t->clientid, t->clientid_len),
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
void uplink_permanent_failure(struct uplink *u, struct ticket *t, const char *ktopic,
			      const char *error)
{
	if (u->dead_letter && dead_letter(u, t, error) == 0) {
		atomic_fetch_add(&u->st.dead_letters, 1);
		log_warn_rl("dead letter client=%s topic=%s kafka_topic=%s reason=%s",
			    log_q(t->clientid), log_q(t->m->topic), log_q(ktopic), log_q(error));
		return;
	}
	atomic_fetch_add(&u->st.dropped, 1);
	log_warn_rl("record dropped client=%s topic=%s kafka_topic=%s reason=%s",
		    log_q(t->clientid), log_q(t->m->topic), log_q(ktopic), log_q(error));
}

static struct ticket *ticket_new(struct uplink *u, const struct sink_publish *p,
				 uint32_t n_routes)
{
	/* One allocation per publish: the ticket, its records' opaques and
	 * copies of the ids that dead letters and logs need after the client
	 * may be gone. */
	size_t recs = (n_routes + 1) * sizeof(struct rec);
	size_t idlen = (size_t)p->clientid_len + 1;
	size_t ulen = p->username ? strlen(p->username) + 1 : 0; /* with its NUL */
	struct ticket *t = malloc(sizeof(*t) + recs + idlen + ulen);
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	char *strs = (char *)t->recs + recs;
	t->n_recs = n_routes + 1;
	for (uint32_t i = 0; i < t->n_recs; i++)
		t->recs[i] = (struct rec){ t, NULL };
	t->u = u;
	t->m = msg_ref(p->m);
	t->conn_id = p->conn_id;
	t->seq = p->seq;
	t->produced_ns = lathist_now();
	atomic_init(&t->remaining, 1); /* held by uplink_publish until it is done */
	t->clientid = memcpy(strs, p->clientid, idlen - 1);
	t->clientid[idlen - 1] = '\0';
	t->clientid_len = p->clientid_len;
	t->username = p->username ? memcpy(strs + idlen, p->username, ulen) : NULL;
	t->username_len = ulen ? ulen - 1 : 0;
	return t;
}

/* See uplink_int.h. librdkafka's headers object is sized for every header
 * up front; each header is copied into it (librdkafka's own allocation). */
rd_kafka_headers_t *uplink_raw_headers(const struct msg *m, const char *clientid,
				       size_t clientid_len, const char *username,
				       size_t username_len, bool has_expiry, uint32_t expiry_s)
{
	struct mqtt_props pr = { m->props, m->props_len };
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	size_t n = 5 + (has_expiry ? 1 : 0);

	mqtt_props_begin(&pr, &it);
	while (mqtt_props_next(&it, &p))
		n++;
	rd_kafka_headers_t *h = rd_kafka_headers_new(n);
	char qos[2] = { (char)('0' + m->qos), 0 };
	char num[12];
	rd_kafka_header_add(h, "mqtt.topic", -1, m->topic, m->topic_len);
	rd_kafka_header_add(h, "mqtt.clientid", -1, clientid, (ssize_t)clientid_len);
	rd_kafka_header_add(h, "mqtt.qos", -1, qos, 1);
	rd_kafka_header_add(h, "mqtt.retain", -1, m->retain ? "true" : "false", m->retain ? 4 : 5);
	if (username)
		rd_kafka_header_add(h, "mqtt.username", -1, username, (ssize_t)username_len);
	if (has_expiry) {
		int k = snprintf(num, sizeof num, "%lu", (unsigned long)expiry_s);
		rd_kafka_header_add(h, "mqtt.message_expiry", -1, num, k);
	}
	mqtt_props_begin(&pr, &it);
	while (mqtt_props_next(&it, &p)) {
		switch (p.id) {
		case MQTT_P_PAYLOAD_FORMAT:
			num[0] = (char)('0' + (p.value & 1));
			rd_kafka_header_add(h, "mqtt.payload_format", -1, num, 1);
			break;
		case MQTT_P_CONTENT_TYPE:
			rd_kafka_header_add(h, "mqtt.content_type", -1, p.str.p, p.str.len);
			break;
		case MQTT_P_RESPONSE_TOPIC:
			rd_kafka_header_add(h, "mqtt.response_topic", -1, p.str.p, p.str.len);
			break;
		case MQTT_P_CORRELATION_DATA:
			rd_kafka_header_add(h, "mqtt.correlation_data", -1, p.str.p, p.str.len);
			break;
		case MQTT_P_USER_PROPERTY:
			rd_kafka_header_add(h, (const char *)p.str.p, p.str.len, p.str2.p,
					    p.str2.len);
			break;
		default: /* struct msg carries no others (msg.h) */
			break;
		}
	}
	return h;
}

/* Renders (with ctx, the same for every route of t) and produces one
 * record of t for route r. */
static void produce_route(struct uplink_worker *w, struct ticket *t, const struct route *r,
			  struct template_ctx *ctx, struct rec *rec, bool has_expiry,
			  uint32_t expiry_s)
{
	struct uplink *u = t->u;
	struct msg *m = t->m;
	struct buf *tb = &w->topic, *kb = &w->key, *vb = &w->value;

	buf_reset(tb);
	buf_reset(kb);
	int rc = template_render(route_topic(r), ctx, tb);
	if (rc == 0 && route_key(r))
		rc = template_render(route_key(r), ctx, kb);
	if (rc < 0) {
		char why[160];
		snprintf(why, sizeof(why), "route line %d: %s", route_line(r), template_err_str(rc));
		uplink_permanent_failure(u, t, NULL, why);
		return;
	}
	/* A literal topic was checked when the table was built (route.c). */
	if (buf_append(tb, "", 1) < 0 ||
	    (!template_is_literal(route_topic(r)) &&
	     !route_kafka_topic_valid((const char *)buf_head(tb), buf_used(tb) - 1))) {
		uplink_permanent_failure(u, t, (const char *)buf_head(tb), "invalid Kafka topic name");
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
			.clientid = t->clientid, .clientid_len = t->clientid_len,
			.username = t->username, .username_len = t->username_len,
			.qos = m->qos, .retain = m->retain, .timestamp_ms = m->received_ms,
			.payload = m->payload, .payload_len = m->payload_len,
			.text_base64 = route_text_base64(r),
			.props = m->props, .props_len = m->props_len,
			.has_expiry = has_expiry, .expiry_s = expiry_s,
		};
		buf_reset(vb);
		if (envelope_encode(vb, &in) < 0) {
			uplink_permanent_failure(u, t, ktopic, "cannot encode the JSON envelope");
			return;
		}
		val = buf_head(vb);
		vlen = buf_used(vb);
		flags = RD_KAFKA_MSG_F_COPY;
	} else {
		hdrs = uplink_raw_headers(m, t->clientid, t->clientid_len, t->username,
					  t->username_len, has_expiry, expiry_s);
	}
	atomic_fetch_add(&t->remaining, 1);
	atomic_fetch_add(&u->st.in_flight, 1);
	const void *key = route_key(r) ? buf_head(kb) : NULL;
	size_t klen = route_key(r) ? buf_used(kb) : 0;
	/* NULL headers are the same as none (librdkafka sets them only if given). */
	rd_kafka_resp_err_t err = rd_kafka_producev(
		u->rk, RD_KAFKA_V_TOPIC(ktopic), RD_KAFKA_V_KEY(key, klen),
		RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_MSGFLAGS(flags),
		RD_KAFKA_V_TIMESTAMP(m->received_ms), RD_KAFKA_V_HEADERS(hdrs),
		RD_KAFKA_V_OPAQUE(rec), RD_KAFKA_V_END);
	struct uplink_route_stats *rs = rec->rs;
	if (err) {
		rd_kafka_headers_destroy(hdrs); /* not taken on failure */
		atomic_fetch_sub(&t->remaining, 1);
		atomic_fetch_sub(&u->st.in_flight, 1);
		if (rs)
			atomic_fetch_add(&rs->failed, 1);
		if (t->seq != 0 && uplink_err_is_permanent(err)) {
			uplink_permanent_failure(u, t, ktopic, rd_kafka_err2str(err));
		} else if (t->seq != 0) {
			atomic_fetch_add(&u->st.failed, 1);
			atomic_store(&t->failed, true);
			log_warn_rl("kafka produce failed client=%s topic=%s kafka_topic=%s reason=%s",
				    log_q(t->clientid), log_q(m->topic), log_q(ktopic),
				    log_q(rd_kafka_err2str(err)));
		} else {
			atomic_fetch_add(&u->st.qos0_failed, 1);
		}
		return;
	}
	atomic_fetch_add_explicit(&w->routed, 1, memory_order_relaxed);
	if (rs) {
		atomic_fetch_add(&rs->routed, 1);
		atomic_fetch_add(&rs->in_flight, 1);
	}
}

enum sink_result uplink_publish(void *ctx, const struct sink_publish *p)
{
	struct uplink *u = ctx;
	struct uplink_worker *w = &u->wk[p->worker];
	struct msg *m = p->m;
	const struct route *routes[MAX_ROUTES_PER_MSG];

	const struct uplink_routes *g = atomic_load_explicit(&u->cur, memory_order_acquire);
	size_t n = route_table_match(g->rt, m->topic, m->topic_len, routes, MAX_ROUTES_PER_MSG);
	/* Subscribers on other instances (state.store = "kafka"): one test of
	 * a pointer without, one lookup with; nothing allocated for a topic
	 * nobody elsewhere subscribed to. */
	bool fan = u->fanout.wanted &&
		   u->fanout.wanted(u->fanout.ctx, m, p->clientid, p->clientid_len);
	if (n == 0) {
		atomic_fetch_add_explicit(&w->unrouted, 1, memory_order_relaxed);
		if (!fan)
			return SINK_UNROUTED;
	}
	if (n > MAX_ROUTES_PER_MSG)
		n = MAX_ROUTES_PER_MSG;
	/* MQTT 5 Message Expiry: a message whose interval ran out before the
	 * producer took it (held by backpressure, or sent already expired) is
	 * not produced, and counted. The publish is acknowledged as a success:
	 * it expired by the publisher's own rule, and a failure code would
	 * only make a device resend something already stale. */
	uint32_t expiry_s = 0;
	/* No clock read for the common message without an expiry. */
	bool has_expiry = m->expires_ms && msg_expiry_left(m, util_wall_ms(), &expiry_s);
	if (has_expiry && expiry_s == 0) {
		atomic_fetch_add_explicit(&w->expired, 1, memory_order_relaxed);
		return SINK_DONE;
	}
	if (atomic_load_explicit(&u->st.in_flight, memory_order_relaxed) + (int64_t)n >
	    u->queue_limit)
		return SINK_BUSY;
	struct ticket *t = ticket_new(u, p, (uint32_t)n);
	if (!t)
		return SINK_BUSY;
	struct template_ctx tc;
	template_ctx_init(&tc);
	tc.clientid = t->clientid;
	tc.clientid_len = t->clientid_len;
	tc.username = t->username;
	tc.username_len = t->username_len;
	tc.topic = m->topic;
	tc.topic_len = m->topic_len;
	for (size_t i = 0; i < n; i++) {
		t->recs[i].rs = &g->rs[route_index(routes[i])];
		produce_route(w, t, routes[i], &tc, &t->recs[i], has_expiry, expiry_s);
	}
	template_ctx_release(&tc);
	/* After the routes, so a device's retry after a failure is seen by the
	 * routes first; the same ticket: the answer waits for both. */
	if (fan)
		u->fanout.send(u->fanout.ctx, m, t->clientid, t->clientid_len,
			       (struct uplink_fanout_tok *)t);
	/* Drop our hold. If every record already failed or none was produced,
	 * this completes the ticket like any report would. */
	if (atomic_load(&t->remaining) == 1 && !atomic_load(&t->failed)) {
		uplink_ticket_free(t);
		return SINK_DONE;
	}
	uplink_ticket_release(u, t);
	return SINK_PENDING;
}

void uplink_set_fanout(struct uplink *u, const struct uplink_fanout *f)
{
	u->fanout = f ? *f : (struct uplink_fanout){ 0 };
}

/* The token is the publish's ticket: a fan-out record holds it as a routed
 * record does, and uplink_flush() waits for it too (fanout_out). */
void uplink_fanout_hold(struct uplink_fanout_tok *tok)
{
	struct ticket *t = (struct ticket *)tok;
	atomic_fetch_add(&t->remaining, 1);
	atomic_fetch_add(&t->u->fanout_out, 1);
}

void uplink_fanout_done(struct uplink_fanout_tok *tok, bool ok)
{
	struct ticket *t = (struct ticket *)tok;
	struct uplink *u = t->u;
	if (!ok && t->seq != 0) {
		atomic_fetch_add(&u->st.failed, 1);
		atomic_store(&t->failed, true);
	}
	atomic_fetch_sub(&u->fanout_out, 1);
	uplink_ticket_release(u, t);
}
