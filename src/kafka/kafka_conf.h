/*
 * kafka_conf.h - librdkafka configuration from struct cfg, and the embedded
 * mock cluster for `kafka.brokers = "embedded"`.
 *
 * Main thread (start-up, --check, reload validation).
 */
#ifndef KG_KAFKA_CONF_H
#define KG_KAFKA_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

struct cfg;
struct json_t; /* jansson's json_t */

enum kafka_role { KAFKA_PRODUCER, KAFKA_CONSUMER };

/*
 * Returns a new rd_kafka_conf_t (free with rd_kafka_conf_destroy, or hand it
 * to rd_kafka_new) with kafkagate's defaults for the role, then every
 * kafka.properties entry applied in file order, and bootstrap.servers =
 * bootstrap. On an unknown property or bad value returns NULL and writes
 * "FILE:LINE: kafka property 'x': <librdkafka's message>" to err.
 * Producer defaults: acks=all, enable.idempotence=true, linger.ms=0,
 * compression.type=lz4, partitioner=murmur2_random, message.timeout.ms=30000,
 * statistics.interval.ms=5000; both roles: socket.nagle.disable=true,
 * reconnect.backoff.ms=100, reconnect.backoff.max.ms=1000
 * (kafka.properties may change any of them).
 *
 * A value "@file:PATH" (cfg.h: CFG_KAFKA_FILE_PREFIX; PATH already resolved
 * by cfg_load()) is replaced by the file's content, without one trailing
 * "\n" or "\r\n", read on every call (start-up and --check; a changed file
 * takes effect on restart). At most cfg_kafka_value_max(name) bytes, not
 * empty, no NUL byte; otherwise NULL with "FILE:LINE: kafka property 'x':
 * cannot read PATH: ..." in err. No value of a secret property
 * (kafka_conf_is_secret()) ever reaches err or the log.
 */
rd_kafka_conf_t *kafka_conf_new(const struct cfg *cfg, enum kafka_role role,
				const char *bootstrap, char *err, size_t errlen);

/*
 * True when the value of property name must never be logged or shown (status
 * page, errors): names containing, in any case, "password", "passphrase",
 * "secret", "private.key", "sasl.oauthbearer.config", "ssl.key.pem"
 * or "ssl_key". Pure; any thread.
 */
bool kafka_conf_is_secret(const char *name);

/* librdkafka log callback (set with rd_kafka_conf_set_log_cb): one line in
 * our log vocabulary. Role-mismatch notices (CONFWARN: a producer property
 * on a consumer) are informational, since kafka.properties serve both. */
void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Integer member key of object o in a librdkafka statistics document, or -1
 * when absent or not an integer (o may be NULL). Pure; any thread. */
int64_t kafka_conf_stats_int(struct json_t *o, const char *key);

/* Validates kafka.properties for --check. Returns 0 or -1 with err set. */
int kafka_conf_check(const struct cfg *cfg, char *err, size_t errlen);

struct kafka_embed;

/* Starts librdkafka's mock cluster (a real Kafka protocol endpoint on
 * 127.0.0.1) with `brokers` brokers. Returns it or NULL with err set. */
struct kafka_embed *kafka_embed_new(int brokers, char *err, size_t errlen);
/* "host:port,host:port": borrowed, valid until kafka_embed_free(). */
const char *kafka_embed_bootstrap(const struct kafka_embed *e);
void kafka_embed_free(struct kafka_embed *e);

#endif
