/*
 * state_retained.c - retained messages <-> <prefix>.retained (docs/scaling/
 * core.md).
 *
 * Writing (the broker's retained hook, a worker thread): one record per
 * retained publish stored or cleared here, key = the MQTT topic, value =
 * the payload (a clear is a tombstone: compaction then drops the topic),
 * headers mqtt.qos, kg.instance, and for MQTT 5 kg.props (the raw encoded
 * properties) and kg.expires (the expiry, wall ms, decimal).
 *
 * Reading (the reader thread): every record, ours included, becomes the
 * topic's retained message here through broker_retained_apply(): Kafka's
 * order (one partition per topic) decides between instances. A tombstone,
 * an empty value or an already expired message clears the topic.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "core/log.h"
#include "core/msg.h"
#include "state/state_int.h"

struct state_retained {
	struct state *st;
	atomic_ullong written, applied, cleared;
};

struct state_retained *state_retained_new(struct state *st)
{
	struct state_retained *sr = calloc(1, sizeof(*sr));
	if (sr)
		sr->st = st;
	return sr;
}

void state_retained_free(struct state_retained *sr) { free(sr); }

void state_retained_counts(const struct state_retained *sr, uint64_t *written, uint64_t *applied,
			   uint64_t *cleared)
{
	*written = atomic_load_explicit(&sr->written, memory_order_relaxed);
	*applied = atomic_load_explicit(&sr->applied, memory_order_relaxed);
	*cleared = atomic_load_explicit(&sr->cleared, memory_order_relaxed);
}

void state_retained_hook(struct state_retained *sr, struct msg *m)
{
	struct state *st = sr->st;
	char qos[2] = { (char)('0' + m->qos), 0 }, exp[24];
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);

	if (!h)
		return;
	rd_kafka_header_add(h, "mqtt.qos", -1, qos, 1);
	rd_kafka_header_add(h, "kg.instance", -1, st->instance_id, -1);
	if (m->props_len)
		rd_kafka_header_add(h, "kg.props", -1, m->props, (ssize_t)m->props_len);
	if (m->expires_ms) {
		int n = snprintf(exp, sizeof(exp), "%" PRId64, m->expires_ms);
		rd_kafka_header_add(h, "kg.expires", -1, exp, n);
	}
	/* A clear is a tombstone (NULL value), so that compaction forgets it. */
	if (state_produce(st, st->t_retained, m->topic, m->topic_len,
			  m->payload_len ? m->payload : NULL, m->payload_len, h, NULL, NULL) == 0)
		atomic_fetch_add_explicit(&sr->written, 1, memory_order_relaxed);
}

/* Header name's last value, or NULL. */
static const void *header(const rd_kafka_message_t *rec, const char *name, size_t *len)
{
	rd_kafka_headers_t *h = NULL;
	const void *v = NULL;

	if (rd_kafka_message_headers(rec, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(h, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return v;
}

void state_retained_record(struct state_retained *sr, const rd_kafka_message_t *rec)
{
	size_t len;
	const char *v;
	uint8_t qos = 0;
	int64_t expires = 0;

	if (!rec->key || rec->key_len == 0 || rec->key_len > UINT16_MAX) {
		log_warn_rl("state retained record ignored reason=\"no usable key\" offset=%" PRId64,
			    rec->offset);
		return;
	}
	bool clear = !rec->payload || rec->len == 0;
	if (!clear) {
		if ((v = header(rec, "mqtt.qos", &len)) && len == 1 && v[0] >= '0' && v[0] <= '2')
			qos = (uint8_t)(v[0] - '0');
		if ((v = header(rec, "kg.expires", &len)) && len > 0 && len < 24) {
			char b[24];
			memcpy(b, v, len);
			b[len] = '\0';
			expires = strtoll(b, NULL, 10);
			/* Expired while it sat in Kafka: what it replaced is gone too. */
			if (expires > 0 && expires <= state_wall_ms())
				clear = true;
		}
	}
	const uint8_t *props = NULL;
	size_t props_len = 0;
	if (!clear && (props = header(rec, "kg.props", &props_len)) == NULL)
		props_len = 0;
	struct msg *m = clear ? msg_new(rec->key, rec->key_len, NULL, 0, 0, true)
			      : msg_new_props(rec->key, rec->key_len, rec->payload, rec->len, qos, true,
					      props, props_len);
	if (!m) {
		log_warn_rl("state retained record dropped reason=\"out of memory\"");
		return;
	}
	rd_kafka_timestamp_type_t tt;
	int64_t ts = rd_kafka_message_timestamp(rec, &tt);
	m->received_ms = ts > 0 ? ts : state_wall_ms();
	m->expires_ms = clear ? 0 : expires;
	if (broker_retained_apply(sr->st->br, m) == 0)
		atomic_fetch_add_explicit(clear ? &sr->cleared : &sr->applied, 1,
					  memory_order_relaxed);
	msg_unref(m);
}
