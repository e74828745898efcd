/* uplink_stats.c - the producer's view of the Kafka brokers, from
 * librdkafka statistics (statistics.interval.ms); see uplink.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kafka/kafka_conf.h"
#include "kafka/uplink_int.h"

static int broker_cmp(const void *a, const void *b)
{
	const struct uplink_broker_state *x = a, *y = b;
	if (x->nodeid != y->nodeid)
		return x->nodeid < y->nodeid ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Poll thread: replaces the broker table with one statistics document's. */
int uplink_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct uplink *u = opaque;
	struct uplink_broker_state v[UPLINK_MAX_BROKERS];
	size_t n = 0;
	const char *key;
	json_t *b, *root = json_loadb(json, len, 0, NULL);

	(void)rk;
	json_object_foreach(json_object_get(root, "brokers"), key, b) {
		int64_t id = kafka_conf_stats_int(b, "nodeid");
		const char *name = json_string_value(json_object_get(b, "name"));
		const char *state = json_string_value(json_object_get(b, "state"));
		/* nodeid -1: the internal broker, a bootstrap address not yet
		 * matched to a node, or a logical one (coordinator): none is a
		 * broker of the cluster in its own right. */
		if (id < 0 || id > INT32_MAX || !name || !state || n == UPLINK_MAX_BROKERS)
			continue;
		snprintf(v[n].name, sizeof(v[n].name), "%s", name);
		snprintf(v[n].state, sizeof(v[n].state), "%s", state);
		v[n++].nodeid = (int32_t)id;
	}
	qsort(v, n, sizeof(v[0]), broker_cmp);
	/* An unreadable document keeps the previous table rather than
	 * reporting every broker gone. */
	if (root) {
		pthread_mutex_lock(&u->bk_mu);
		memcpy(u->brokers, v, n * sizeof(v[0]));
		u->n_brokers = n;
		pthread_mutex_unlock(&u->bk_mu);
	}
	json_decref(root);
	return 0; /* librdkafka frees json */
}

size_t uplink_broker_states(struct uplink *u, struct uplink_broker_state *out, size_t max)
{
	pthread_mutex_lock(&u->bk_mu);
	size_t n = u->n_brokers < max ? u->n_brokers : max;
	if (n)
		memcpy(out, u->brokers, n * sizeof(*out));
	pthread_mutex_unlock(&u->bk_mu);
	return n;
}

bool uplink_broker_is_up(const struct uplink_broker_state *b)
{
	/* UPDATE is a passing mark librdkafka sets on a connected broker. */
	return strcmp(b->state, "UP") == 0 || strcmp(b->state, "UPDATE") == 0;
}

