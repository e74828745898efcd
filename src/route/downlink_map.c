/* downlink_map.c - a downlink mapping compiled, and the MQTT message it
 * makes of a Kafka record; see downlink_map.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/downlink_map.h"
#include "route/envelope.h"
#include "mqtt/mqtt_codec.h"
#include "route/template.h"

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

int downlink_map_build(const struct downlink_map *m, const struct downlink_map_record *r,
		       struct template_ctx *ctx, struct downlink_map_out *out)
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
		return rc == TEMPLATE_ERR_NOMEM ? DOWNLINK_MAP_ERR_NOMEM
						: DOWNLINK_MAP_ERR_TEMPLATE;
	}
	/* An MQTT string carries a 16-bit length [MQTT-4.7.3-3]. */
	if (buf_used(&out->topic) > UINT16_MAX ||
	    !mqtt_topic_name_valid(buf_head(&out->topic), buf_used(&out->topic)))
		return DOWNLINK_MAP_ERR_TOPIC;

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
			return rc == ENVELOPE_ERR_NOMEM ? DOWNLINK_MAP_ERR_NOMEM
							: DOWNLINK_MAP_ERR_ENVELOPE;
		}
	} else if (ctx->value_len && buf_append(&out->payload, ctx->value, ctx->value_len) < 0) {
		return DOWNLINK_MAP_ERR_NOMEM;
	}
	return DOWNLINK_MAP_OK;
}

const char *downlink_map_err_str(int err, int detail)
{
	switch (err) {
	case DOWNLINK_MAP_OK: return "ok";
	case DOWNLINK_MAP_ERR_TEMPLATE: return template_err_str(detail);
	case DOWNLINK_MAP_ERR_TOPIC: return "not a valid MQTT topic name";
	case DOWNLINK_MAP_ERR_ENVELOPE:
		return detail == ENVELOPE_ERR_NOT_ENVELOPE ? "value is not a JSON envelope"
							    : envelope_err_str(detail);
	case DOWNLINK_MAP_ERR_NOMEM: return "out of memory";
	}
	return "unknown error";
}
