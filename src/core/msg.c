/* msg.c - see msg.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/msg.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct msg *msg_new(const char *topic, size_t topic_len, const void *payload,
		    size_t payload_len, uint8_t qos, bool retain)
{
	return msg_new_props(topic, topic_len, payload, payload_len, qos, retain, NULL, 0);
}

struct msg *msg_new_props(const char *topic, size_t topic_len, const void *payload,
			  size_t payload_len, uint8_t qos, bool retain, const uint8_t *props,
			  size_t props_len)
{
	if (topic_len > UINT16_MAX || payload_len > UINT32_MAX || props_len > UINT32_MAX ||
	    payload_len + props_len > UINT32_MAX)
		return NULL;
	struct msg *m = malloc(sizeof(*m) + topic_len + 1 + payload_len + props_len);
	if (!m)
		return NULL;
	atomic_init(&m->refs, 1);
	m->track = NULL;
	m->qos = qos;
	m->retain = retain;
	m->topic_len = (uint16_t)topic_len;
	m->payload_len = (uint32_t)payload_len;
	m->received_ms = now_ms();
	memcpy(m->topic, topic, topic_len);
	m->topic[topic_len] = '\0';
	uint8_t *p = (uint8_t *)m->topic + topic_len + 1;
	if (payload_len)
		memcpy(p, payload, payload_len);
	m->payload = p;
	m->expires_ms = 0;
	m->origin = 0;
	m->props = NULL;
	m->props_len = (uint32_t)props_len;
	atomic_init(&m->topic_hash, 0);
	if (props_len) {
		memcpy(p + payload_len, props, props_len);
		m->props = p + payload_len;
	}
	return m;
}

struct msg *msg_clone(const struct msg *m, uint8_t qos, bool retain)
{
	struct msg *c = msg_new_props(m->topic, m->topic_len, m->payload, m->payload_len, qos,
				      retain, m->props, m->props_len);
	if (c) {
		c->received_ms = m->received_ms;
		c->expires_ms = m->expires_ms;
		c->origin = m->origin;
	}
	return c;
}

void msg_unref(struct msg *m)
{
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}
