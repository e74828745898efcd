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
 */
#include "broker/auth.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/deliver.h"
#include "broker/handle_publish.h"
#include "broker/limits.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/worker.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt_codec.h"

/* Local acknowledgement when there is no sink. */
static int ack_now(struct client *c, const struct mqtt_publish *pub)
{
	if (pub->qos == 1)
		return send_puback(c, pub->packet_id);
	if (pub->qos == 2) {
		if (pidset_add(&c->s->qos2_in, pub->packet_id) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
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

/* Hands m to the sink; the acknowledgement follows its answer. */
static int ack_after_sink(struct client *c, const struct mqtt_publish *pub, struct msg *m)
{
	uint32_t seq = 0;

	if (pub->qos > 0 && (seq = client_ack_push(c, pub->packet_id, pub->qos)) == 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	enum sink_result r = sink_publish(c, m, seq);
	if (r == SINK_BUSY) {
		/* Sink full: hold this one message and stop reading. */
		if (client_ack_block(c, m, seq) < 0) {
			client_close(c, "out of memory", true);
			return -1;
		}
		worker_mark_blocked(c->w, c);
		STAT_INC(c->w, sink_blocked);
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
		if (r == SINK_DONE && a->blocked_seq)
			client_ack_complete(c, a->blocked_seq, true);
		client_update_read(c);
	}
}

int handle_publish(struct client *c, const struct mqtt_packet *p)
{
	const struct mqtt_publish *pub = &p->u.publish;
	struct worker *w = c->w;
	int rc;

	if (limits_check_publish(c, (const char *)pub->topic.p, pub->topic.len) < 0)
		return -1;
	/* ACL: a denied publish is acknowledged and dropped (auth.h). */
	if (!auth_may_publish(c, pub))
		return auth_drop_publish(c, pub);
	if (pub->qos == 2) {
		if (pidset_has(&c->s->qos2_in, pub->packet_id))
			return send_pubrec(c, pub->packet_id);
		if (client_ack_pending(c, pub->packet_id))
			return 0; /* a resend while the sink has not answered: PUBREC will follow */
		if (limits_check_qos2(c) < 0)
			return -1;
	}
	struct msg *m = msg_new((const char *)pub->topic.p, pub->topic.len, pub->payload,
				pub->payload_len, pub->qos, pub->retain);
	if (!m) {
		client_close(c, "out of memory", true);
		return -1;
	}
	STAT_INC(w, msgs_in[pub->qos]);
	log_debug("publish client=%s topic=%s qos=%u retain=%d bytes=%u", log_q(c->id),
		  log_q(m->topic),
		  pub->qos, pub->retain, pub->payload_len);
	deliver_publish(w, m);
	if (w->backlogged)
		worker_mark_backlog(w, c);
	rc = w->br->sink.publish ? ack_after_sink(c, pub, m) : ack_now(c, pub);
	msg_unref(m);
	if (rc == 0)
		client_update_read(c);
	return rc;
}

int handle_pubrel(struct client *c, const struct mqtt_packet *p)
{
	/* PUBCOMP even for an unknown id: the client may be resending a PUBREL
	 * whose PUBCOMP was lost before a reconnect. */
	pidset_del(&c->s->qos2_in, p->u.ack.packet_id);
	return send_pubcomp(c, p->u.ack.packet_id);
}
