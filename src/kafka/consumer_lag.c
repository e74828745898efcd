/* consumer_lag.c - a downlink consumer's per-partition lag, from librdkafka
 * statistics; see consumer_lag.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kafka/consumer_lag.h"
#include "kafka/downlink.h"
#include "kafka/kafka_conf.h"

void consumer_lag_init(struct consumer_lag *l)
{
	pthread_mutex_init(&l->mu, NULL);
	l->v = NULL;
	l->n = 0;
}

void consumer_lag_release(struct consumer_lag *l)
{
	pthread_mutex_destroy(&l->mu);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void consumer_lag_update(struct consumer_lag *l, const char *group, const char *json,
			 size_t len)
{
	json_t *root = json_loadb(json, len, 0, NULL);
	json_t *topics = json_object_get(root, "topics");
	struct downlink_lag *v = NULL;
	size_t n = 0, cap = 0;
	const char *tname, *pkey;
	json_t *t, *p;

	json_object_foreach(topics, tname, t) {
		json_object_foreach(json_object_get(t, "partitions"), pkey, p) {
			int64_t part = kafka_conf_stats_int(p, "partition");
			/* -1 is librdkafka's internal partition; only ours count. */
			if (part < 0 || !json_is_true(json_object_get(p, "desired")))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				struct downlink_lag *nv = realloc(v, cap * sizeof(*nv));
				if (!nv)
					goto out;
				v = nv;
			}
			struct downlink_lag *e = &v[n++];
			snprintf(e->group, sizeof(e->group), "%s", group);
			snprintf(e->topic, sizeof(e->topic), "%s", tname);
			e->partition = (int32_t)part;
			e->hi_offset = kafka_conf_stats_int(p, "hi_offset");
			e->committed_offset = kafka_conf_stats_int(p, "committed_offset");
			e->lag = kafka_conf_stats_int(p, "consumer_lag");
			/* librdkafka says -1001 (invalid) until it knows: -1 here. */
			e->hi_offset = e->hi_offset < 0 ? -1 : e->hi_offset;
			e->committed_offset = e->committed_offset < 0 ? -1 : e->committed_offset;
			if (e->lag < 0 && e->hi_offset >= 0 && e->committed_offset >= 0)
				e->lag = e->hi_offset - e->committed_offset;
			e->lag = e->lag < 0 ? -1 : e->lag;
		}
	}
	pthread_mutex_lock(&l->mu);
	struct downlink_lag *old = l->v;
	l->v = v;
	l->n = n;
	pthread_mutex_unlock(&l->mu);
	v = old;
out:
	free(v);
	json_decref(root);
}

void consumer_lag_drop(struct consumer_lag *l, const char *topic, int32_t partition)
{
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].partition == partition && strcmp(l->v[i].topic, topic) == 0) {
			l->v[i] = l->v[--l->n];
			break;
		}
	}
	pthread_mutex_unlock(&l->mu);
}

size_t consumer_lag_snapshot(struct consumer_lag *l, struct downlink_lag *out, size_t max)
{
	pthread_mutex_lock(&l->mu);
	size_t n = l->n;
	if (n && max)
		memcpy(out, l->v, (n < max ? n : max) * sizeof(*out));
	pthread_mutex_unlock(&l->mu);
	return n;
}
