/*
 * handle_subscribe.c - SUBSCRIBE and UNSUBSCRIBE.
 *
 * The trie holds one session reference per entry. Retained messages matching
 * a new (or repeated) subscription are sent after the SUBACK, with RETAIN 1.
 */
#include <stdlib.h>

#include "broker/broker.h"
#include "broker/client.h"
#include "core/log.h"
#include "mqtt/mqtt_codec.h"
#include "core/msg.h"
#include "broker/retain.h"
#include "broker/session.h"
#include "mqtt/sub_trie.h"
#include "broker/worker.h"

struct retained_batch {
	struct msg **m;
	size_t n, cap;
};

static void collect_retained(struct msg *m, void *ud)
{
	struct retained_batch *b = ud;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct msg **n = realloc(b->m, cap * sizeof(*n));
		if (!n)
			return;
		b->m = n;
		b->cap = cap;
	}
	b->m[b->n++] = msg_ref(m);
}

int handle_subscribe(struct client *c, const struct mqtt_packet *p)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;
	uint8_t codes[p->u.sub.count];
	uint8_t granted[p->u.sub.count];
	uint32_t i = 0;

	pthread_rwlock_wrlock(&br->subs_lock);
	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		uint8_t qos = opts & 3;
		int r = sub_trie_add(br->subs, (const char *)f.p, f.len, s, qos);
		if (r == 1)
			session_ref(s);
		if (r < 0 || session_sub_add(s, (const char *)f.p, f.len, qos) < 0)
			codes[i] = MQTT_SUBACK_FAILURE;
		else
			codes[i] = qos;
		granted[i++] = qos;
	}
	pthread_rwlock_unlock(&br->subs_lock);

	struct mqtt_suback sa = { .packet_id = p->u.sub.packet_id, .codes = codes, .count = i };
	mqtt_encode_suback(&c->obuf, c->level, MQTT_SUBACK, &sa);
	STAT_INC(c->w, pkts_out[MQTT_SUBACK]);
	client_mark_output(c);

	struct retained_batch b = { 0 };
	i = 0;
	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		uint8_t g = granted[i];
		if (codes[i++] == MQTT_SUBACK_FAILURE)
			continue;
		log_debug("subscribe client=%s filter=%.*s qos=%u", c->id, (int)f.len,
			  (const char *)f.p, g);
		b.n = 0;
		pthread_mutex_lock(&br->retain_lock);
		retain_match(br->retained, (const char *)f.p, f.len, collect_retained, &b);
		pthread_mutex_unlock(&br->retain_lock);
		for (size_t j = 0; j < b.n; j++) {
			struct msg *m = b.m[j];
			client_deliver(c, m, m->qos < g ? m->qos : g, true);
			msg_unref(m);
		}
	}
	free(b.m);
	return 0;
}

int handle_unsubscribe(struct client *c, const struct mqtt_packet *p)
{
	struct broker *br = c->w->br;
	struct session *s = c->s;
	struct mqtt_topic_iter it;
	struct mqtt_str f;
	uint8_t opts;

	pthread_rwlock_wrlock(&br->subs_lock);
	mqtt_topics_begin(&p->u.sub, &it);
	while (mqtt_topics_next(&it, &f, &opts)) {
		if (sub_trie_remove(br->subs, (const char *)f.p, f.len, s) == 1)
			session_unref(s);
		session_sub_del(s, (const char *)f.p, f.len);
	}
	pthread_rwlock_unlock(&br->subs_lock);

	struct mqtt_ack a = { .packet_id = p->u.sub.packet_id };
	mqtt_encode_ack(&c->obuf, c->level, MQTT_UNSUBACK, &a);
	STAT_INC(c->w, pkts_out[MQTT_UNSUBACK]);
	client_mark_output(c);
	return 0;
}
