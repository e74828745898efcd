/*
 * handle_publish.c - PUBLISH and PUBREL from a client (the inbound QoS flows).
 *
 * Every message goes to its subscribers (deliver.c) and to the sink the
 * broker was given (broker.h; the Kafka uplink). Without a sink QoS 1/2 are
 * acknowledged at once; with one, the acknowledgement waits for the sink's
 * answer (client_ack.c), which is what makes a PUBACK mean "Kafka has it".
 *
 * QoS 2 duplicate suppression: a packet id stays in the session's qos2_in
 * set from the first PUBLISH until PUBREL; a PUBLISH whose id is in the set
 * is a resend and is answered with PUBREC without delivering it again.
 *
 * MQTT 5 (level 5 only; 3.1/3.1.1 take none of these paths):
 *  - Topic Alias: resolved here (topic_alias.c) before anything looks at
 *    the topic, so limits, the ACL, subscribers and Kafka see the name.
 *  - Properties: the forwardable ones (msg.h) ride in the message as the
 *    client encoded them; Message Expiry becomes m->expires_ms; Topic Alias
 *    is dropped; a Subscription Identifier from a client is a protocol
 *    error [MQTT-3.3.4-6].
 *  - Receive Maximum: the client may have at most limits.max_inflight QoS
 *    1/2 publishes unacknowledged by us; one more is DISCONNECT 0x93
 *    [MQTT-3.3.4-9]. Such a client is not paused when its ack ring is full
 *    (client_ack_window_full()).
 *  - A failed sink answer is a PUBACK/PUBREC with a reason code
 *    (client_ack.c) instead of a close; with mqtt5.reject_when_busy a full
 *    sink is answered 0x97 Quota exceeded instead of pausing the client;
 *    with mqtt5.no_match_reason a message no route (SINK_UNROUTED) and no
 *    subscriber took gets 0x10 No matching subscribers.
 */
#include <stdlib.h>

#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/deliver.h"
#include "broker/handle_publish.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/topic_alias.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* Forwarded properties up to this size are filtered on the stack; beyond
 * it (a kilobyte of user properties plus an alias or expiry to drop) into a
 * temporary heap buffer. */
#define PROPS_STACK 1024

/* What a level 5 PUBLISH says besides topic and payload. */
struct pub5 {
	uint16_t alias;         /* Topic Alias; 0 = none */
	bool has_expiry;
	uint32_t expiry;        /* Message Expiry Interval, seconds */
	uint32_t keep_len;      /* bytes of the properties the message carries on */
	bool filter;            /* some property is not carried on: copy the rest */
};

/* Sorts out the properties (validated by the decoder). Returns 0, or -1
 * after closing c. */
static int pub5_scan(struct client *c, const struct mqtt_publish *pub, struct pub5 *x)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop pr;

	*x = (struct pub5){ 0 };
	mqtt_props_begin(&pub->props, &it);
	for (const uint8_t *at = it.p; mqtt_props_next(&it, &pr); at = it.p) {
		if (mqtt_prop_forwarded(pr.id)) {
			x->keep_len += (uint32_t)(it.p - at);
			continue;
		}
		x->filter = true;
		if (pr.id == MQTT_P_TOPIC_ALIAS) {
			x->alias = (uint16_t)pr.value;
		} else if (pr.id == MQTT_P_MESSAGE_EXPIRY) {
			x->has_expiry = true;
			x->expiry = pr.value;
		} else if (pr.id == MQTT_P_SUBSCRIPTION_ID) {
			client_close_rc(c, "subscription identifier in PUBLISH", true,
					MQTT_RC_PROTOCOL_ERROR); /* [MQTT-3.3.4-6] */
			return -1;
		}
	}
	return 0;
}

/* Copies the forwarded properties of pub into buf (keep_len bytes), in the
 * order received and as encoded. */
static void pub5_filter(const struct mqtt_publish *pub, uint8_t *buf, uint32_t cap)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop pr;
	struct mqtt_pw pw;

	mqtt_pw_init(&pw, buf, cap);
	mqtt_props_begin(&pub->props, &it);
	for (const uint8_t *at = it.p; mqtt_props_next(&it, &pr); at = it.p)
		if (mqtt_prop_forwarded(pr.id))
			mqtt_pw_raw(&pw, at, (uint32_t)(it.p - at));
}

/* The topic a PUBLISH names: its own, or the one its Topic Alias stands
 * for when the topic is empty. Returns 0, or -1 after closing c. */
static int pub5_topic(struct client *c, const struct mqtt_publish *pub, const struct pub5 *x,
		      struct mqtt_str *topic)
{
	*topic = pub->topic;
	if (x->alias == 0)
		return 0;
	/* [MQTT-3.3.2-9]: 1..the maximum we announced. */
	if (x->alias > c->alias_max) {
		client_close_rc(c, "topic alias over the maximum", true,
				MQTT_RC_TOPIC_ALIAS_INVALID);
		return -1;
	}
	if (pub->topic.len > 0)
		return 0;
	uint16_t len;
	const char *t = topic_alias_get(c->aliases, x->alias, &len);
	if (!t) {
		/* 5.0 3.3.2.3.4: an alias the client never set is a protocol error. */
		client_close_rc(c, "unknown topic alias", true, MQTT_RC_PROTOCOL_ERROR);
		return -1;
	}
	*topic = (struct mqtt_str){ (const uint8_t *)t, len };
	return 0;
}

/* Local acknowledgement when there is no sink. */
static int ack_now(struct client *c, const struct mqtt_publish *pub)
{
	if (pub->qos == 1)
		return send_puback(c, pub->packet_id);
	if (pub->qos == 2) {
		if (client_ack_qos2_accepted(c, pub->packet_id) < 0)
			return -1;
		return send_pubrec(c, pub->packet_id);
	}
	return 0;
}

static enum sink_result sink_publish(struct client *c, struct msg *m, uint32_t seq)
{
	const struct broker_sink *sk = &c->w->br->sink;
	struct sink_publish p = {
		.conn_id = c->conn_id, .worker = c->w->idx,
		.clientid = c->id, .clientid_len = c->id_len, .username = c->username,
		.m = m, .seq = seq,
	};
	return sk->publish(sk->ctx, &p);
}

/* Hands m to the sink; the acknowledgement follows its answer. matched:
 * some subscriber took m (deliver_publish()). */
static int ack_after_sink(struct client *c, const struct mqtt_publish *pub, struct msg *m,
			  bool matched)
{
	uint32_t seq = 0;

	if (pub->qos > 0 && (seq = client_ack_push(c, pub->packet_id, pub->qos)) == 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	enum sink_result r = sink_publish(c, m, seq);
	if (r == SINK_BUSY && seq && c->level == 5 && LIM(c->w->br, mqtt5_reject_when_busy)) {
		/* mqtt5.reject_when_busy: the truth now (0x97 Quota exceeded, in
		 * its turn behind earlier acks) instead of holding the client. */
		client_ack_complete_rc(c, seq, MQTT_RC_QUOTA_EXCEEDED);
	} else if (r == SINK_BUSY) {
		/* Sink full: hold this one message and stop reading. */
		if (client_ack_block(c, m, seq) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
		worker_mark_blocked(c->w, c);
		STAT_INC(c->w, sink_blocked);
	} else if (r == SINK_UNROUTED && seq) {
		/* mqtt5.no_match_reason: no route and no subscriber took it
		 * (5.0 3.4.2.1: "the message is accepted but there are no
		 * subscribers"); a success code, so a QoS 2 id is kept as
		 * usual. Default: 0x00, as before. */
		bool say = c->level == 5 && !matched && LIM(c->w->br, mqtt5_no_match_reason);
		client_ack_complete_rc(c, seq,
				       say ? MQTT_RC_NO_MATCHING_SUBSCRIBERS : MQTT_RC_SUCCESS);
	} else if (r == SINK_DONE && seq) {
		client_ack_complete(c, seq, true);
	}
	return c->state == CL_CLOSING ? -1 : 0;
}

void handle_publish_retry(struct worker *w)
{
	struct client *c;

	while ((c = STAILQ_FIRST(&w->blocked))) {
		struct client_acks *a = c->acks;
		enum sink_result r = sink_publish(c, a->blocked, a->blocked_seq);
		if (r == SINK_BUSY)
			return;
		STAILQ_REMOVE_HEAD(&w->blocked, blocked_link);
		c->blocked = false;
		msg_unref(a->blocked);
		a->blocked = NULL;
		/* Unrouted only if the routes were reloaded meanwhile: 0x00. */
		if ((r == SINK_DONE || r == SINK_UNROUTED) && a->blocked_seq)
			client_ack_complete(c, a->blocked_seq, true);
		client_update_read(c);
	}
}

/* Where the id of a QoS 2 PUBLISH stands: new, or a resend of one accepted
 * (in qos2_in until PUBREL) or still waiting for the sink's answer. */
enum qos2_dup { QOS2_NEW, QOS2_ACCEPTED, QOS2_PENDING };

/* Looked up once per PUBLISH: the Receive Maximum count and the duplicate
 * suppression both need it. */
static enum qos2_dup qos2_dup(const struct client *c, const struct mqtt_publish *pub)
{
	if (pub->qos != 2)
		return QOS2_NEW;
	if (pidset_has(&c->s->qos2_in, pub->packet_id))
		return QOS2_ACCEPTED;
	return client_ack_pending(c, pub->packet_id) ? QOS2_PENDING : QOS2_NEW;
}

/* The message for pub (its topic resolved from any alias), with the MQTT 5
 * properties of x. NULL on ENOMEM. */
static struct msg *make_msg(struct client *c, const struct mqtt_publish *pub, const struct pub5 *x)
{
	uint8_t sbuf[PROPS_STACK], *heap = NULL;
	const uint8_t *props = pub->props.p;
	uint32_t props_len = pub->props.len;

	if (x->filter) {
		/* Usually nothing or a few bytes are left: no copy, or one on
		 * the stack. */
		props_len = x->keep_len;
		props = sbuf;
		if (props_len > sizeof(sbuf) && !(props = heap = malloc(props_len)))
			return NULL;
		if (props_len)
			pub5_filter(pub, (uint8_t *)props, props_len);
	}
	struct msg *m = msg_new_props((const char *)pub->topic.p, pub->topic.len, pub->payload,
				      pub->payload_len, pub->qos, pub->retain,
				      props_len ? props : NULL, props_len);
	if (heap) /* rare: over PROPS_STACK bytes kept; free(NULL) is not free */
		free(heap);
	if (!m)
		return NULL;
	if (x->has_expiry)
		m->expires_ms = m->received_ms + (int64_t)x->expiry * 1000;
	/* For No Local: the serial, not the address, which a later session
	 * may get once this one is freed (the message may outlive it). */
	m->origin = c->s ? c->s->serial : 0;
	return m;
}

int handle_publish(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_publish *in = &p->u.publish;
	struct mqtt_publish pv = *in; /* with the topic an alias stands for */
	const struct mqtt_publish *pub = &pv;
	struct worker *w = c->w;
	struct pub5 x = { 0 };
	int rc;

	if (c->level == 5 && (pub5_scan(c, in, &x) < 0 || pub5_topic(c, in, &x, &pv.topic) < 0))
		return -1;
	if (limits_check_publish(c, (const char *)pub->topic.p, pub->topic.len) < 0)
		return -1;
	/* An alias with a topic (re)defines the alias [MQTT-3.3.2-12]; the
	 * table allocates here, never when an alias is merely used. */
	if (x.alias && in->topic.len > 0 &&
	    topic_alias_set(&c->aliases, c->alias_max, x.alias, (const char *)in->topic.p,
			    in->topic.len) < 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	enum qos2_dup dup = qos2_dup(c, pub);
	/* Receive Maximum [MQTT-3.3.4-9]: a resent QoS 2 id is not a new one. */
	if (c->level == 5 && pub->qos > 0 && dup == QOS2_NEW &&
	    client_ack_quota_used(c) >= LIM(w->br, max_inflight)) {
		client_close_rc(c, "receive maximum exceeded", true, MQTT_RC_RECEIVE_MAX_EXCEEDED);
		return -1;
	}
	/* ACL: a denied publish is acknowledged and dropped (auth.h). */
	if (!auth_may_publish(c, pub))
		return auth_drop_publish(c, pub);
	if (dup == QOS2_ACCEPTED)
		return send_pubrec(c, pub->packet_id);
	if (dup == QOS2_PENDING)
		return 0; /* a resend while the sink has not answered: PUBREC will follow */
	if (pub->qos == 2 && limits_check_qos2(c) < 0)
		return -1;
	struct msg *m = make_msg(c, pub, &x);
	if (!m) {
		client_close(c, "out of memory", true);
		return -1;
	}
	STAT_INC(w, msgs_in[pub->qos]);
	log_debug("publish client=%s topic=%s qos=%u retain=%d bytes=%u", log_q(c->id),
		  log_q(m->topic),
		  pub->qos, pub->retain, pub->payload_len);
	bool matched = deliver_publish(w, m) > 0;
	if (w->backlogged)
		worker_mark_backlog(w, c);
	rc = w->br->sink.publish ? ack_after_sink(c, pub, m, matched) : ack_now(c, pub);
	msg_unref(m);
	if (rc == 0)
		client_update_read(c);
	return rc;
}

int handle_pubrel(struct client *c, const struct mqtt_packet *p)
{
	uint16_t pid = p->u.ack.packet_id;
	bool known = client_ack_qos2_released(c, pid);

	/* PUBCOMP even for an unknown id: the client may be resending a PUBREL
	 * whose PUBCOMP was lost before a reconnect. MQTT 5 says so with 0x92
	 * Packet Identifier not found, "not an error during recovery" (5.0
	 * 3.7.2.1); a PUBREL carrying 0x92 itself (the client lost the id)
	 * ends the flow the same way. */
	return send_pubcomp_rc(c, pid, known ? MQTT_RC_SUCCESS : MQTT_RC_PACKET_ID_NOT_FOUND);
}
