/*
 * handle_subscribe.c - SUBSCRIBE and UNSUBSCRIBE.
 *
 * The trie and the session record each subscription with its options
 * (broker_subscribe(), session_subs.h SUBOPT_*). Retained messages matching
 * a new (or repeated) subscription are sent after the SUBACK, with RETAIN 1
 * (MQTT-3.3.1-6, MQTT-3.8.4-3), as MQTT 5's Retain Handling allows.
 *
 * MQTT 5 reason codes per filter: the granted QoS; 0x8F Topic Filter
 * invalid for a filter over the topic limits; 0x87 Not authorized (ACL);
 * 0x97 Quota exceeded past limits.max_subscriptions; 0x80 out of memory.
 * 3.1/3.1.1 get 0x80 for every refusal, as before.
 *
 * With the state in Kafka, the SUBACK/UNSUBACK of a persistent session
 * waits until Kafka has the session record carrying the change
 * (hooks_subs_changed(); the connection reads nothing meanwhile, so its
 * acknowledgements keep the order of its packets). Messages matching a new
 * subscription may reach the client before its SUBACK then, as MQTT allows
 * (3.1.1 and 5.0 section 3.8.4: the Server is permitted to start sending
 * PUBLISH packets matching the Subscription before it sends the SUBACK);
 * the retained ones still come after it.
 */
#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/deliver.h"
#include "broker/handle_subscribe.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/shared.h"
#include "broker/state_hooks.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* SUBSCRIBE options byte (MQTT 5 section 3.8.3.1; 3.1.1 uses bits 0-1). */
#define OPT_NO_LOCAL 0x04
#define OPT_RAP 0x08
#define OPT_RH_SHIFT 4

struct retained_ctx {
	struct client *c;
	uint8_t granted;
	uint32_t subid;
};

static void send_retained(struct msg *m, void *ud)
{
	struct retained_ctx *r = ud;
	/* RETAIN 1 whatever Retain As Published says (5.0 section 3.3.1.3);
	 * the identifier of the subscription that asked for it [MQTT-3.3.4-3]. */
	deliver_client(r->c, m, m->qos < r->granted ? m->qos : r->granted, true, r->subid);
}

/*
 * The one place a parsed filter becomes a subscription: checks, adds, and
 * returns the SUBACK code (the granted QoS or a refusal at c's level).
 * *added says whether the subscription is new (Retain Handling 1).
 */
static uint8_t subscribe_one(struct client *c, const struct mqtt_str *f, uint8_t opts,
			     uint32_t subid, bool *added)
{
	struct broker *br = c->w->br;
	const char *filter = (const char *)f->p;
	bool v5 = c->level == 5;
	uint8_t qos = opts & 3;

	*added = false;
	if (limits_check_subscribe(c, filter, f->len) < 0) {
		if (!v5)
			return MQTT_SUBACK_FAILURE;
		/* The filter was fine (limits.c checks the topic caps first);
		 * the session is at limits.max_subscriptions. */
		bool quota = c->s->subs.n >= LIM(br, max_subscriptions) &&
			     !session_subs_find(&c->s->subs, filter, f->len);
		return quota ? MQTT_RC_QUOTA_EXCEEDED : MQTT_RC_TOPIC_FILTER_INVALID;
	}
	/* "$share/NAME/FILTER" with a bad NAME (shared.h) */
	if (shared_invalid(filter, f->len))
		return v5 ? MQTT_RC_TOPIC_FILTER_INVALID : MQTT_SUBACK_FAILURE;
	/* ACL: a filter that can match nothing readable (auth.h; for a shared
	 * subscription the filter after the share name). */
	if (!shared_may_subscribe(c, filter, f->len))
		return v5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_SUBACK_FAILURE;
	uint32_t o = v5 ? subopt_make(qos, opts & OPT_NO_LOCAL, opts & OPT_RAP, subid) : qos;
	int r = broker_subscribe(br, c->s, filter, f->len, o);
	if (r < 0)
		return v5 ? MQTT_RC_UNSPECIFIED : MQTT_SUBACK_FAILURE;
	*added = r == 1;
	return qos;
}

int handle_subscribe(struct client *c, const struct mqtt_packet *p)
{
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	struct mqtt_prop prop;
	uint8_t opts;
	uint8_t codes[p->u.sub.count];
	bool added[p->u.sub.count];
	uint32_t i = 0, subid = 0;

	/* Subscription Identifier: one at most, 1..268,435,455, checked by the
	 * decoder; kept with every filter of this SUBSCRIBE (5.0 section
	 * 3.8.2.1.2) and replaced with the subscription. */
	if (c->level == 5 && mqtt_props_find(&p->u.sub.props, MQTT_P_SUBSCRIPTION_ID, &prop))
		subid = prop.value;

	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		codes[i] = subscribe_one(c, &f, opts, subid, &added[i]);
		i++;
	}
	/* The state layer mirrors the whole set; a persistent session's
	 * answer may wait for Kafka (then it is given by state_hooks.c). */
	for (uint32_t k = 0; k < i; k++)
		if (codes[k] < 0x80) {
			if (hooks_subs_changed(c, &p->u.sub, codes, added, i, subid, false))
				return 0;
			break;
		}
	return handle_subscribe_answer(c, &p->u.sub, codes, added, i, subid);
}

int handle_subscribe_answer(struct client *c, const struct mqtt_subscribe *sub,
			    const uint8_t *codes, const bool *added, uint32_t n, uint32_t subid)
{
	struct broker *br = c->w->br;
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;
	uint32_t i = 0;

	if (send_suback(c, sub->packet_id, codes, n) < 0)
		return -1;
	mqtt_topics_begin(sub, &it);
	while (i < n && mqtt_topics_next(&it, &f, &opts) && c->state == CL_ACTIVE) {
		uint8_t code = codes[i];
		bool is_new = added[i++];
		if (code >= 0x80)
			continue;
		log_debug("subscribe client=%s filter=%s qos=%u", log_q(c->id),
			  log_qn((const char *)f.p, f.len), code);
		/* Retain Handling (MQTT 5; 0 for 3.1.1): 0 send retained
		 * messages, 1 only for a new subscription, 2 never
		 * [MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11]. */
		uint8_t rh = (uint8_t)(opts >> OPT_RH_SHIFT) & 3;
		if (rh == 2 || (rh == 1 && !is_new))
			continue;
		if (shared_is((const char *)f.p, f.len))
			continue; /* no retained messages on a shared subscription [MQTT-4.8.2] */
		struct retained_ctx r = { c, code, subid };
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
	uint8_t codes[p->u.sub.count];
	uint32_t i = 0;
	bool changed = false;

	/* Always allowed: the ACL file has no unsubscribe right, and giving
	 * up a subscription only narrows what the client reads. */
	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		bool was = broker_unsubscribe(c->w->br, c->s, (const char *)f.p, f.len);
		codes[i++] = was ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
		changed |= was;
	}
	/* As for SUBSCRIBE: a persistent session's UNSUBACK may wait for
	 * Kafka to have the set without the filter. */
	if (changed && hooks_subs_changed(c, &p->u.sub, codes, NULL, i, 0, true))
		return 0;
	return send_unsuback(c, p->u.sub.packet_id, codes, i);
}
