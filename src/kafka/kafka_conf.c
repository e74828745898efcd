/* kafka_conf.c - see kafka_conf.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/cfg.h"
#include "kafka/kafka_conf.h"
#include "core/log.h"
#include "core/util.h"

#include <librdkafka/rdkafka_mock.h>

struct kafka_embed {
	rd_kafka_t *rk; /* a handle only to own the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	char *bootstrap;
};

/* Both roles: reconnect quickly after a broker outage. librdkafka doubles
 * its reconnect backoff from reconnect.backoff.ms (100) up to
 * reconnect.backoff.max.ms, 10 s by default: a Kafka that came back after a
 * long outage then waited up to 10 s for the next attempt (bench/recovery.sh:
 * acks resumed 5-6.5 s after a 12 s outage, now 0.1-0.3 s). At 1 s a broker
 * still starting gets one connection attempt per second per client.
 * Nagle's algorithm off: requests are small and pipelined (up to 5 in
 * flight with idempotence), and a request held back for the ACK of the
 * previous one is pure latency (kafka-clients sets TCP_NODELAY too). See
 * docs/benchmarks.md, "Latency of the truth". */
#define COMMON_DEFAULTS \
	{ "socket.nagle.disable", "true" }, \
	{ "reconnect.backoff.ms", "100" }, \
	{ "reconnect.backoff.max.ms", "1000" }

static const char *const producer_defaults[][2] = {
	{ "acks", "all" },
	{ "enable.idempotence", "true" },
	/* A QoS 1/2 PUBACK waits for the record's delivery report, so linger
	 * is added to every acknowledgement when few messages are in flight.
	 * Under load librdkafka batches anyway (records wait while the 5
	 * requests allowed in flight are out), so QoS 0 throughput does not
	 * need it; librdkafka 2.0 waits at least 1 ms for any linger above 0
	 * (its broker thread sleeps in whole milliseconds). */
	{ "linger.ms", "0" },
	{ "compression.type", "lz4" },
	{ "partitioner", "murmur2_random" },
	{ "message.timeout.ms", "30000" },
	/* Broker connection states for /metrics come from these. */
	{ "statistics.interval.ms", "5000" },
	COMMON_DEFAULTS,
};

static const char *const consumer_defaults[][2] = {
	/* Commands are latency-sensitive: librdkafka's 500 ms default fetch wait
	 * is also the delay of an idle partition's next record on some brokers
	 * (a real Kafka answers a waiting fetch as soon as a record arrives). */
	{ "fetch.wait.max.ms", "100" },
	{ "enable.auto.commit", "false" },
	{ "enable.auto.offset.store", "false" },
	{ "auto.offset.reset", "earliest" },
	{ "statistics.interval.ms", "5000" },
	/* Consumers are static members (downlink.h): a restart takes its
	 * partitions back at once, and a member that stopped for good hands
	 * them over after this, not librdkafka's 45 s. Kafka's
	 * group.min.session.timeout.ms is 6 s; heartbeats go every 3 s. */
	{ "session.timeout.ms", "10000" },
	COMMON_DEFAULTS,
};

bool kafka_conf_is_secret(const char *name)
{
	static const char *const words[] = {
		"password", "passphrase", "secret", "private.key", "sasl.oauthbearer.config",
		"ssl.key.pem", "ssl_key",
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(name, words[i]))
			return true;
	return false;
}

/* The content of an "@file:" value: new (free with free_value()), or NULL
 * with why set. */
static char *read_value(const char *name, const char *path, char *why, size_t len)
{
	size_t max = cfg_kafka_value_max(name), n;
	char *v = util_read_file(path, max, &n);

	if (!v) {
		if (errno == EFBIG)
			snprintf(why, len, "%s is larger than %zu bytes", path, max);
		else
			snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (n > 0 && v[n - 1] == '\n')
		v[--n] = '\0';
	if (n > 0 && v[n - 1] == '\r')
		v[--n] = '\0';
	if (n == 0 || strlen(v) != n) {
		snprintf(why, len, "%s %s", path, n ? "contains a NUL byte" : "is empty");
		free(v);
		return NULL;
	}
	return v;
}

/* Secrets leave no copy behind in freed memory. */
static void free_value(char *v)
{
	if (v) {
		explicit_bzero(v, strlen(v));
		free(v);
	}
}

/* Applies one kafka.properties entry; err as kafka_conf_new(). */
static int set_prop(rd_kafka_conf_t *conf, const struct cfg *cfg, const struct cfg_kafka_prop *p,
		    char *err, size_t errlen)
{
	static const size_t pre = sizeof(CFG_KAFKA_FILE_PREFIX) - 1;
	char e[512];
	char *owned = NULL;
	const char *v = p->value;

	if (strncmp(v, CFG_KAFKA_FILE_PREFIX, pre) == 0 &&
	    !(v = owned = read_value(p->name, p->value + pre, e, sizeof(e)))) {
		snprintf(err, errlen, "%s:%d: kafka property '%s': %s", cfg->path, p->line, p->name, e);
		return -1;
	}
	int rc = rd_kafka_conf_set(conf, p->name, v, e, sizeof(e)) == RD_KAFKA_CONF_OK ? 0 : -1;
	/* librdkafka quotes some values it refuses */
	if (rc < 0 && kafka_conf_is_secret(p->name) && strstr(e, v))
		snprintf(e, sizeof(e), "invalid value (not shown: the property is secret)");
	if (rc < 0)
		snprintf(err, errlen, "%s:%d: kafka property '%s': %s", cfg->path, p->line, p->name, e);
	free_value(owned);
	return rc;
}

rd_kafka_conf_t *kafka_conf_new(const struct cfg *cfg, enum kafka_role role,
				const char *bootstrap, char *err, size_t errlen)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *const(*defs)[2] = role == KAFKA_PRODUCER ? producer_defaults : consumer_defaults;
	size_t ndefs = role == KAFKA_PRODUCER
		? sizeof(producer_defaults) / sizeof(producer_defaults[0])
		: sizeof(consumer_defaults) / sizeof(consumer_defaults[0]);

	for (size_t i = 0; i < ndefs; i++) {
		if (rd_kafka_conf_set(conf, defs[i][0], defs[i][1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
			snprintf(err, errlen, "kafka default '%s': %s", defs[i][0], e);
			goto fail;
		}
	}
	/* The embedded mock cluster answers an empty fetch only after the full
	 * wait: keep it short so that `make run` feels immediate. */
	if (role == KAFKA_CONSUMER && cfg->kafka.brokers &&
	    strcmp(cfg->kafka.brokers, "embedded") == 0 &&
	    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka default 'fetch.wait.max.ms': %s", e);
		goto fail;
	}
	for (size_t i = 0; i < cfg->kafka.nprops; i++)
		if (set_prop(conf, cfg, &cfg->kafka.props[i], err, errlen) < 0)
			goto fail;
	if (bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) !=
				 RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "%s:%d: kafka.brokers: %s", cfg->path,
			 cfg->kafka.brokers_line ? cfg->kafka.brokers_line : cfg->kafka.line, e);
		goto fail;
	}
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	/* librdkafka's text names brokers, topics and error strings from the
	 * network: quoted like any other outside value, and rate limited (a
	 * broker that flaps logs once per reconnect attempt). */
	if (level <= 3)
		log_error_rl("kafka log facility=%s msg=%s", log_q(fac), log_q(buf));
	else if (level <= 4 && strcmp(fac, "CONFWARN") != 0)
		log_warn_rl("kafka log facility=%s msg=%s", log_q(fac), log_q(buf));
	else if (level <= 4)
		log_info_rl("kafka log facility=%s msg=%s", log_q(fac), log_q(buf));
	else
		log_debug("kafka log facility=%s msg=%s", log_q(fac), log_q(buf));
}

int64_t kafka_conf_stats_int(struct json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

int kafka_conf_check(const struct cfg *cfg, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = kafka_conf_new(cfg, KAFKA_PRODUCER, NULL, err, errlen);
	if (!conf)
		return -1;
	rd_kafka_conf_destroy(conf);
	return 0;
}

struct kafka_embed *kafka_embed_new(int brokers, char *err, size_t errlen)
{
	char e[256];
	struct kafka_embed *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!k->rk) {
		snprintf(err, errlen, "embedded kafka: %s", e);
		rd_kafka_conf_destroy(conf);
		free(k);
		return NULL;
	}
	k->mc = rd_kafka_mock_cluster_new(k->rk, brokers);
	if (!k->mc) {
		snprintf(err, errlen, "embedded kafka: cannot start the mock cluster");
		kafka_embed_free(k);
		return NULL;
	}
	k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mc));
	return k;
}

const char *kafka_embed_bootstrap(const struct kafka_embed *k) { return k->bootstrap; }

void kafka_embed_free(struct kafka_embed *k)
{
	if (!k)
		return;
	if (k->mc)
		rd_kafka_mock_cluster_destroy(k->mc);
	if (k->rk)
		rd_kafka_destroy(k->rk);
	free(k->bootstrap);
	free(k);
}
