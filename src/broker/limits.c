/* limits.c - the caps a peer could push past; see limits.h. */
#include <stdarg.h>
#include <stdio.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/worker.h"
#include "core/cfg.h"
#include "core/log.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/topic.h"

static const char *const names[LIMIT_N] = {
	[LIMIT_CONNECT_SIZE] = "max_connect_size",
	[LIMIT_CLIENT_ID_LENGTH] = "max_client_id_length",
	[LIMIT_KEEPALIVE] = "max_keepalive",
	[LIMIT_TOPIC_LENGTH] = "max_topic_length",
	[LIMIT_TOPIC_LEVELS] = "max_topic_levels",
	[LIMIT_SUBSCRIPTIONS] = "max_subscriptions",
	[LIMIT_QOS2_PENDING] = "max_qos2_pending",
	[LIMIT_RETAINED_MESSAGES] = "max_retained_messages",
	[LIMIT_RETAINED_BYTES] = "max_retained_bytes",
	[LIMIT_QUEUED_MESSAGES] = "max_queued_messages",
	[LIMIT_QUEUED_BYTES] = "max_queued_bytes",
	[LIMIT_QUEUED_TOTAL_MESSAGES] = "max_queued_total_messages",
	[LIMIT_QUEUED_TOTAL_BYTES] = "max_queued_total_bytes",
};

/* One rate limit per kind, so that a flood of one kind does not hide the
 * others. */
#define LIM_LOG(k) [k] = LOG_LIMIT("limit hit", LOG_RL_PER_SEC, LOG_RL_BURST)
static struct log_limit log_lims[LIMIT_N] = {
	LIM_LOG(LIMIT_CONNECT_SIZE), LIM_LOG(LIMIT_CLIENT_ID_LENGTH), LIM_LOG(LIMIT_KEEPALIVE),
	LIM_LOG(LIMIT_TOPIC_LENGTH), LIM_LOG(LIMIT_TOPIC_LEVELS), LIM_LOG(LIMIT_SUBSCRIPTIONS),
	LIM_LOG(LIMIT_QOS2_PENDING), LIM_LOG(LIMIT_RETAINED_MESSAGES),
	LIM_LOG(LIMIT_RETAINED_BYTES), LIM_LOG(LIMIT_QUEUED_MESSAGES), LIM_LOG(LIMIT_QUEUED_BYTES),
	LIM_LOG(LIMIT_QUEUED_TOTAL_MESSAGES), LIM_LOG(LIMIT_QUEUED_TOTAL_BYTES),
};

const char *limits_name(enum limit_kind k)
{
	return (unsigned)k < LIMIT_N ? names[k] : "unknown";
}

#define SET(f, v) atomic_store_explicit(&lim->f, (unsigned)(v), memory_order_relaxed)

void limits_apply(struct broker_limits *lim, const struct cfg_limits *l)
{
	SET(max_connect_size, l->max_connect_size < l->max_packet_size ? l->max_connect_size
								   : l->max_packet_size);
	SET(max_topic_length, l->max_topic_length);
	SET(max_topic_levels, l->max_topic_levels);
	SET(max_client_id_length, l->max_client_id_length);
	SET(max_subscriptions, l->max_subscriptions);
	SET(max_qos2_pending, l->max_qos2_pending);
	SET(max_retained_messages, l->max_retained_messages);
	SET(max_retained_bytes, l->max_retained_bytes);
	SET(max_queued_bytes, l->max_queued_bytes);
	SET(max_queued_total_messages, l->max_queued_total_messages);
	SET(max_queued_total_bytes, l->max_queued_total_bytes);
	SET(session_expiry, l->session_expiry);
	SET(max_keepalive, l->max_keepalive);
	SET(max_session_expiry, l->max_session_expiry);
	SET(topic_alias_maximum, l->topic_alias_maximum);
}

bool limits_hit(struct worker *w, struct session *s, enum limit_kind k)
{
	unsigned bit = 1u << k;

	STAT_INC(w, limit_hits[k]);
	if (!s)
		return true;
	return !(atomic_fetch_or_explicit(&s->limits_logged, bit, memory_order_relaxed) & bit);
}

/* "limit hit limit=NAME client=ID addr=PEER DETAIL"; network values in
 * detail are quoted by the caller. */
static void limit_log(enum limit_kind k, const struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void limit_log(enum limit_kind k, const struct client *c, const char *fmt, ...)
{
	char detail[2 * LOG_Q_MAX + 128];
	va_list ap;

	if (!log_enabled(LVL_WARN))
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	log_limited(&log_lims[k], LVL_WARN, false, "limit hit limit=%s client=%s addr=%s %s",
		    limits_name(k), log_q(c->id), client_peer(c), detail);
}

static enum limit_kind topic_kind(int err)
{
	return err == TOPIC_ERR_TOO_LONG ? LIMIT_TOPIC_LENGTH : LIMIT_TOPIC_LEVELS;
}

static int check_topic(struct broker *br, const char *t, uint16_t len)
{
	return topic_check_limits(t, len, LIM(br, max_topic_length), LIM(br, max_topic_levels));
}

/* CONNACK 2 ("identifier rejected", what mosquitto answers for both) and close. */
static int refuse(struct client *c, enum limit_kind k, const char *reason)
{
	limits_hit(c->w, NULL, k);
	send_connack(c, MQTT_CONNACK_ID_REJECTED, false);
	client_close(c, reason, false);
	return -1;
}

int limits_check_connect(struct client *c, const struct mqtt_connect *k)
{
	struct broker *br = c->w->br;
	unsigned max_id = LIM(br, max_client_id_length), max_ka = LIM(br, max_keepalive);

	if (k->client_id.len > max_id) {
		limit_log(LIMIT_CLIENT_ID_LENGTH, c, "client_id=%s len=%u max=%u",
			  log_qn((const char *)k->client_id.p, k->client_id.len), k->client_id.len,
			  max_id);
		return refuse(c, LIMIT_CLIENT_ID_LENGTH, "client id too long");
	}
	/* A 3.1.1 client cannot be told a lower keepalive; 0 (never time out)
	 * is more than any maximum. An MQTT 5 client can: CONNACK carries the
	 * cap as Server Keep Alive, which it must use [MQTT-3.2.2-21]. */
	if (max_ka && (k->keepalive == 0 || k->keepalive > max_ka) && k->level == 5) {
		c->keepalive = (uint16_t)max_ka;
		c->m5 |= CL5_KEEPALIVE_SET;
	} else if (max_ka && (k->keepalive == 0 || k->keepalive > max_ka)) {
		limit_log(LIMIT_KEEPALIVE, c, "client_id=%s keepalive=%u max=%u",
			  log_qn((const char *)k->client_id.p, k->client_id.len), k->keepalive,
			  max_ka);
		return refuse(c, LIMIT_KEEPALIVE, "keepalive over max_keepalive");
	}
	if (k->will) {
		int r = check_topic(br, (const char *)k->will_topic.p, k->will_topic.len);
		if (r != TOPIC_OK) {
			limits_hit(c->w, NULL, topic_kind(r));
			limit_log(topic_kind(r), c, "client_id=%s will_topic=%s len=%u",
				  log_qn((const char *)k->client_id.p, k->client_id.len),
				  log_qn((const char *)k->will_topic.p, k->will_topic.len),
				  k->will_topic.len);
			const char *why = r == TOPIC_ERR_TOO_LONG ? "will topic too long"
								  : "too many will topic levels";
			/* MQTT 5 has a code for it: 0x90 Topic Name invalid ("not
			 * malformed, but not accepted by this Server"). */
			if (k->level == 5)
				send_connack(c, MQTT_RC_TOPIC_NAME_INVALID, false);
			/* No 3.1.1 return code fits: close without CONNACK (MQTT-3.2.2-6). */
			client_close(c, why, false);
			return -1;
		}
	}
	return 0;
}

int limits_check_publish(struct client *c, const char *topic, uint16_t len)
{
	int r = check_topic(c->w->br, topic, len);

	if (r == TOPIC_OK)
		return 0;
	if (limits_hit(c->w, c->s, topic_kind(r)))
		limit_log(topic_kind(r), c, "topic=%s len=%u levels=%d", log_qn(topic, len), len,
			  topic_levels(topic, len));
	/* MQTT 5: "not malformed, but not accepted by this Server". */
	client_close_rc(c, topic_err_str(r), true, MQTT_RC_TOPIC_NAME_INVALID);
	return -1;
}

int limits_check_qos2(struct client *c)
{
	unsigned max = LIM(c->w->br, max_qos2_pending);
	uint32_t held = c->s->qos2_in.n + client_ack_qos2_count(c);

	if (held < max)
		return 0;
	if (limits_hit(c->w, c->s, LIMIT_QOS2_PENDING))
		limit_log(LIMIT_QOS2_PENDING, c, "pending=%u max=%u", held, max);
	client_close_rc(c, "too many QoS 2 messages awaiting PUBREL", true, MQTT_RC_QUOTA_EXCEEDED);
	return -1;
}

int limits_check_subscribe(struct client *c, const char *filter, uint16_t len)
{
	struct session *s = c->s;
	int r = check_topic(c->w->br, filter, len);

	if (r != TOPIC_OK) {
		if (limits_hit(c->w, s, topic_kind(r)))
			limit_log(topic_kind(r), c, "filter=%s len=%u levels=%d", log_qn(filter, len),
				  len, topic_levels(filter, len));
		return -1;
	}
	unsigned max = LIM(c->w->br, max_subscriptions);
	if (s->subs.n >= max && !session_subs_find(&s->subs, filter, len)) {
		if (limits_hit(c->w, s, LIMIT_SUBSCRIPTIONS))
			limit_log(LIMIT_SUBSCRIPTIONS, c, "filter=%s subscriptions=%u max=%u",
				  log_qn(filter, len), s->subs.n, max);
		return -1;
	}
	return 0;
}

int limits_queue_push(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		      bool retain, bool owes)
{
	struct broker *br = w->br;
	struct mqueue_caps caps = {
		.max = LIM(br, max_queued),
		.max_bytes = LIM(br, max_queued_bytes),
		.max_total = LIM(br, max_queued_total_messages),
		.max_total_bytes = LIM(br, max_queued_total_bytes),
	};
	enum limit_kind k;

	switch (mqueue_push_capped(&s->queue, m, qos, retain, owes, &caps)) {
	case 0:
		return 0;
	case MQUEUE_FULL:
		k = LIMIT_QUEUED_MESSAGES;
		break;
	case MQUEUE_FULL_BYTES:
		k = LIMIT_QUEUED_BYTES;
		break;
	case MQUEUE_FULL_TOTAL:
		k = LIMIT_QUEUED_TOTAL_MESSAGES;
		break;
	case MQUEUE_FULL_TOTAL_BYTES:
		k = LIMIT_QUEUED_TOTAL_BYTES;
		break;
	default:
		return -1;
	}
	STAT_INC(w, limit_hits[k]);
	return (int)k;
}
