/*
 * msg.h - an immutable, reference-counted application message.
 *
 * One allocation holds the header, the topic (NUL-terminated) and the
 * payload. A message is shared read-only by every subscriber, session queue,
 * retained store and Kafka record that refers to it; each holder owns one
 * reference. Refcounts are atomic: any thread may ref/unref.
 */
#ifndef KG_MSG_H
#define KG_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"

/*
 * Delivery tracking for messages that must be accounted for (downlink
 * records whose Kafka offset is committed only once delivered). Each live
 * delivery of a tracked message owes exactly one msg_track_done(): when the
 * QoS 0 copy is written or dropped, the QoS 1/2 copy is acknowledged, or it
 * lands in an offline session's queue. `done` runs once, on any thread,
 * when `remaining` reaches zero; it owns and frees the track.
 */
struct msg_track {
	atomic_int remaining;
	bool kept;             /* the copy of an offline session's queue that the
				  state layer keeps in Kafka (broker.h, ops->spool):
				  its delivery is the client's acknowledgement, so
				  it is never settled as "queued" (inflight.c) */
	void (*done)(struct msg_track *t);
};

struct msg {
	atomic_uint refs;
	struct msg_track *track;   /* NULL unless tracked */
	uint8_t qos;           /* QoS it was published with */
	bool retain;           /* retain flag it was published with */
	uint16_t topic_len;
	uint32_t payload_len;
	int64_t received_ms;   /* wall clock at receipt, ms since the epoch */
	int64_t expires_ms;    /* wall clock ms at which it expires (MQTT 5 Message
				  Expiry Interval); 0 = never */
	uint64_t origin;       /* the publisher's session serial (struct session
				  serial, never reused), for MQTT 5 No Local; 0
				  when it came from Kafka, an upstream or the
				  broker */
	const uint8_t *props;  /* MQTT 5 properties carried with it, encoded, in
				  the order received: Payload Format Indicator,
				  Content Type, Response Topic, Correlation Data,
				  User Properties. Never Message Expiry (from
				  expires_ms), Topic Alias or Subscription
				  Identifier (per delivery). NULL when none. */
	uint32_t props_len;
	atomic_uint topic_hash; /* hash_bytes(hash_process_seed(), topic) | 1, or 0
				   until msg_topic_hash() first asks: a cache any
				   holder may fill (every thread computes the
				   same value), so per delivery it is one load */
	const uint8_t *payload;
	char topic[];          /* topic_len bytes + NUL, then the payload */
};

/* Returns a new message with one reference, or NULL on allocation failure. */
struct msg *msg_new(const char *topic, size_t topic_len, const void *payload,
		    size_t payload_len, uint8_t qos, bool retain);
/* As msg_new() with MQTT 5 properties (copied into the same allocation;
 * props may be NULL when props_len is 0). expires_ms and origin start 0:
 * the caller sets them before sharing the message. */
struct msg *msg_new_props(const char *topic, size_t topic_len, const void *payload,
			  size_t payload_len, uint8_t qos, bool retain, const uint8_t *props,
			  size_t props_len);
/* Returns a copy of m with a different qos/retain (new, one reference;
 * properties, expiry, origin and receipt time kept). */
struct msg *msg_clone(const struct msg *m, uint8_t qos, bool retain);

static inline struct msg *msg_ref(struct msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

/*
 * What is left of m's MQTT 5 Message Expiry Interval at now_ms (wall
 * clock), in seconds rounded up: a live message never shows 0, 0 means
 * expired; the value a server forwarding m sends [MQTT-3.3.2-6]. Returns
 * false when m has no expiry (callers test m->expires_ms first to skip the
 * clock read for the common message without one). Any thread.
 */
static inline bool msg_expiry_left(const struct msg *m, int64_t now_ms, uint32_t *secs)
{
	if (m->expires_ms == 0)
		return false;
	int64_t left = m->expires_ms - now_ms;
	int64_t s = left <= 0 ? 0 : (left + 999) / 1000;
	*secs = s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
	return true;
}

/* The topic's hash (core/hash.h, process seed; never 0), computed once per
 * message whichever thread asks first. */
static inline uint32_t msg_topic_hash(const struct msg *m)
{
	atomic_uint *c = (atomic_uint *)&m->topic_hash; /* a cache: see the field */
	uint32_t h = atomic_load_explicit(c, memory_order_relaxed);
	if (h == 0) {
		h = hash_bytes(hash_process_seed(), m->topic, m->topic_len) | 1;
		atomic_store_explicit(c, h, memory_order_relaxed);
	}
	return h;
}

/* One delivery of m is accounted for (no-op for untracked messages). */
static inline void msg_track_done(struct msg *m)
{
	if (m->track && atomic_fetch_sub(&m->track->remaining, 1) == 1)
		m->track->done(m->track);
}

/* Drops one reference; frees on the last. NULL ok. */
void msg_unref(struct msg *m);

#endif
