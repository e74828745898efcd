/*
 * handle_subscribe.c - SUBSCRIBE and UNSUBSCRIBE.
 *
 * The trie and the session record each subscription (broker_subscribe()).
 * Retained messages matching a new (or repeated) subscription are sent after
 * the SUBACK, with RETAIN 1 (MQTT-3.3.1-6, MQTT-3.8.4-3).
 */
#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/handle_subscribe.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/shared.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt_codec.h"

struct retained_ctx {
	struct client *c;
	uint8_t granted;
};

static void send_retained(struct msg *m, void *ud)
{
	struct retained_ctx *r = ud;
	deliver_client(r->c, m, m->qos < r->granted ? m->qos : r->granted, true);
}

int handle_subscribe(struct client *c, const struct mqtt_packet *p)
{
	struct broker *br = c->w->br;
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;
	uint8_t codes[p->u.sub.count];
	uint32_t i = 0;

	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		uint8_t qos = opts & 3;
		if (limits_check_subscribe(c, (const char *)f.p, f.len) < 0) {
			codes[i++] = MQTT_SUBACK_FAILURE;
			continue;
		}
		/* "$share/NAME/FILTER" with a bad NAME (shared.h) */
		if (shared_invalid((const char *)f.p, f.len)) {
			codes[i++] = MQTT_SUBACK_FAILURE;
			continue;
		}
		/* ACL: a filter that can match nothing readable (auth.h). */
		if (!shared_may_subscribe(c, (const char *)f.p, f.len)) {
			codes[i++] = MQTT_SUBACK_FAILURE;
			continue;
		}
		if (broker_subscribe(br, c->s, (const char *)f.p, f.len, qos) < 0)
			codes[i++] = MQTT_SUBACK_FAILURE;
		else
			codes[i++] = qos;
	}
	if (send_suback(c, p->u.sub.packet_id, codes, i) < 0)
		return -1;

	i = 0;
	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts) && c->state == CL_ACTIVE) {
		uint8_t code = codes[i++];
		if (code == MQTT_SUBACK_FAILURE)
			continue;
		log_debug("subscribe client=%s filter=%s qos=%u", log_q(c->id),
			  log_qn((const char *)f.p, f.len), code);
		if (shared_is((const char *)f.p, f.len))
			continue; /* no retained messages on a shared subscription [MQTT-4.8.2] */
		struct retained_ctx r = { c, code };
		if (broker_retained_foreach(br, (const char *)f.p, f.len, send_retained, &r) < 0)
			log_warn_rl("retained messages skipped client=%s reason=\"out of memory\"",
				    log_q(c->id));
	}
	return c->state == CL_CLOSING ? -1 : 0;
}

int handle_unsubscribe(struct client *c, const struct mqtt_packet *p)
{
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;

	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts))
		broker_unsubscribe(c->w->br, c->s, (const char *)f.p, f.len);
	return send_unsuback(c, p->u.sub.packet_id);
}
