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

struct msg {
	atomic_uint refs;
	uint8_t qos;           /* QoS it was published with */
	bool retain;           /* retain flag it was published with */
	uint16_t topic_len;
	uint32_t payload_len;
	int64_t received_ms;   /* wall clock at receipt, ms since the epoch */
	const uint8_t *payload;
	char topic[];          /* topic_len bytes + NUL, then the payload */
};

/* Returns a new message with one reference, or NULL on allocation failure. */
struct msg *msg_new(const char *topic, size_t topic_len, const void *payload,
		    size_t payload_len, uint8_t qos, bool retain);
/* Returns a copy of m with a different qos/retain (new, one reference). */
struct msg *msg_clone(const struct msg *m, uint8_t qos, bool retain);

static inline struct msg *msg_ref(struct msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

/* Drops one reference; frees on the last. NULL ok. */
void msg_unref(struct msg *m);

#endif
