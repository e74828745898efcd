/*
 * limits.h - the per-client and process-wide caps a peer could otherwise
 * push past (limits group of the config; docs/security.md has the table):
 * what each one refuses, how it is counted and how it is logged.
 *
 * Every hit is counted in the worker's limit_hits[kind] (worker.h), summed
 * as kafkagate_limit_hits_total{limit="<setting name>"}; hits counted under
 * a broker lock with no worker at hand (the retained store) go to the
 * broker's own array (broker_int.h). A hit is logged at warn level, once per
 * connection and kind where a session is at hand (limits_hit() says when),
 * and always through a rate limit.
 *
 * Thread: the owning worker's only (c's, or w itself), except
 * limits_name() and limits_apply() (any thread).
 */
#ifndef KG_LIMITS_H
#define KG_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

struct broker_limits;
struct cfg_limits;
struct client;
struct msg;
struct mqtt_connect;
struct session;
struct worker;

/* One per limit; the name is the setting's (limits.NAME). */
enum limit_kind {
	LIMIT_CONNECT_SIZE,          /* CONNECT larger than max_connect_size (client.c) */
	LIMIT_CLIENT_ID_LENGTH,      /* CONNACK 2 */
	LIMIT_KEEPALIVE,             /* CONNACK 2 (level 5: capped, not refused) */
	LIMIT_TOPIC_LENGTH,          /* PUBLISH: close (MQTT 5: DISCONNECT 0x90); SUBSCRIBE: 0x80;
	                                will: close (MQTT 5: CONNACK 0x90) */
	LIMIT_TOPIC_LEVELS,          /* the same */
	LIMIT_SUBSCRIPTIONS,         /* SUBSCRIBE: 0x80 for each filter beyond */
	LIMIT_QOS2_PENDING,          /* close (MQTT 5: DISCONNECT 0x97) */
	LIMIT_RETAINED_MESSAGES,     /* not stored */
	LIMIT_RETAINED_BYTES,        /* not stored */
	LIMIT_QUEUED_MESSAGES,       /* dropped (also in queue_dropped) */
	LIMIT_QUEUED_BYTES,          /* dropped (also in queue_dropped) */
	LIMIT_QUEUED_TOTAL_MESSAGES, /* dropped (also in queue_dropped) */
	LIMIT_QUEUED_TOTAL_BYTES,    /* dropped (also in queue_dropped) */
	LIMIT_N
};

/* "max_topic_length", ... Never NULL. */
const char *limits_name(enum limit_kind k);

/* Copies the caps of l that this file enforces into lim (reload: any
 * thread; each field is one relaxed atomic store). */
void limits_apply(struct broker_limits *lim, const struct cfg_limits *l);

/* Counts one hit of kind k on worker w. Returns true when it should be
 * logged: the first hit of this kind for session s since its client
 * attached, or always when s is NULL (then only the rate limit applies).
 * s may be offline and touched by another worker: the flag is atomic. */
bool limits_hit(struct worker *w, struct session *s, enum limit_kind k);

/*
 * CONNECT k of c (c->level and c->keepalive set): a client id longer than
 * max_client_id_length, or a keepalive over max_keepalive (or 0 while
 * max_keepalive is set), gets CONNACK 2 (0x85 at level 5) and a close; a
 * will topic over max_topic_length / max_topic_levels a close without
 * CONNACK (MQTT-3.2.2-6: no 3.1.1 return code fits; level 5: CONNACK 0x90
 * first). At level 5 a keepalive over max_keepalive (or 0) is not refused
 * but capped: c->keepalive = max_keepalive and CL5_KEEPALIVE_SET, for the
 * CONNACK's Server Keep Alive. Returns 0, or -1 after closing.
 */
int limits_check_connect(struct client *c, const struct mqtt_connect *k);

/* PUBLISH topic (len bytes) over max_topic_length / max_topic_levels:
 * closes c (3.1.1 has no negative PUBACK). Returns 0, or -1 after closing. */
int limits_check_publish(struct client *c, const char *topic, uint16_t len);

/* A QoS 2 PUBLISH with a new packet id: closes c when its session already
 * holds max_qos2_pending ids awaiting PUBREL, counting those still waiting
 * for the sink. Returns 0, or -1 after closing. */
int limits_check_qos2(struct client *c);

/* One SUBSCRIBE filter: -1 (the caller answers 0x80 for it) when it is over
 * max_topic_length / max_topic_levels, or new to a session that holds
 * max_subscriptions filters already; else 0. Counted and logged here. */
int limits_check_subscribe(struct client *c, const char *filter, uint16_t len);

/*
 * Appends m to s's queue within max_queued_messages, max_queued_bytes and
 * the process-wide max_queued_total_messages / _bytes, counting a refusal
 * on w. Takes the reference on m on success; on refusal the caller keeps it.
 * Returns 0, the limit_kind (> 0) that refused it, or -1 (out of memory).
 * Logs nothing (the offline path calls it under s->mu).
 */
int limits_queue_push(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		      bool retain, bool owes);

#endif
