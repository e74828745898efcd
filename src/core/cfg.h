/*
 * cfg.h - the configuration file: load, validate, compare for reload.
 *
 * The file is libconfig syntax; config/dev.cfg shows every section. Nothing
 * outside cfg.c sees libconfig: cfg_load() turns the file into plain C values.
 *
 * Ownership: a struct cfg owns everything it points to (every char *, every
 * array). It is immutable once cfg_load() returns, so any thread may read it;
 * cfg_free() it only when no thread can still be reading (after a reload has
 * swapped it out and the readers have moved on).
 *
 * Line numbers (`line` fields) are the line of the setting in its file, kept
 * so that checks made later (routing templates, Kafka properties, binding)
 * can report "FILE:LINE: ..." like cfg_load() does; 0 means "not in the file,
 * a default".
 *
 * Pure: no logging, no globals; every function is reentrant and may be
 * called from any thread.
 */
#ifndef KG_CFG_H
#define KG_CFG_H

#include <stdbool.h>
#include <stddef.h>

enum cfg_format { CFG_FORMAT_RAW, CFG_FORMAT_JSON };
enum cfg_mode { CFG_MODE_GROUP, CFG_MODE_BROADCAST };

/* A socket to listen on: an MQTT listener or the metrics endpoint. */
struct cfg_endpoint {
	char *address;  /* numeric IPv4 or IPv6 literal (inet_pton accepts it) */
	int port;       /* 0..65535; 0 = ephemeral (tests) */
	int line;
};

/* All reloadable. */
struct cfg_limits {
	int max_connections;
	int max_packet_size;      /* bytes */
	int max_inflight;         /* unacknowledged QoS 1/2 messages per client */
	int max_queued_messages;  /* per session */
	int max_output_bytes;     /* per-connection output buffer */
	int connect_timeout;      /* seconds from accept to CONNECT */
};

/* One librdkafka property, as given: not checked against librdkafka here.
 * In the file: properties = ( ("linger.ms", 5), ("acks", "all") ); because
 * libconfig setting names cannot contain dots. */
struct cfg_kafka_prop {
	char *name;
	char *value;    /* ints and booleans converted: "5", "true" */
	int line;
};

struct cfg_kafka {
	char *brokers;            /* "embedded" = librdkafka's mock cluster */
	struct cfg_kafka_prop *props;
	size_t nprops;
	char *dead_letter_topic;  /* NULL = none */
	int flush_timeout;        /* seconds to flush the producer at shut-down */
	int line;                 /* of the kafka group */
};

/* Uplink: MQTT filter -> Kafka topic. Filter and templates are checked by
 * the routing module, not here. */
struct cfg_route {
	char *filter;
	char *topic;
	char *key;      /* template; NULL = records have no key */
	enum cfg_format format;
	int line;
};

/* Downlink: Kafka topics -> MQTT topic built from a template. */
struct cfg_downlink {
	char **topics;  /* `topic = "x"` gives a one-element array */
	size_t ntopics;
	char *group;    /* consumer group */
	char *mqtt_topic;
	int qos;
	bool retain;
	enum cfg_format format;
	enum cfg_mode mode;
	int ack_timeout;  /* seconds a record may wait for its devices before its
	                     offset is committed anyway (the group uses the largest) */
	int line;
};

struct cfg {
	char *path;     /* as passed to cfg_load() */
	struct cfg_endpoint *listeners;  /* at least one */
	size_t nlisteners;
	int workers;    /* 0 = one per core */
	struct cfg_limits limits;
	int log_level;  /* enum log_level (log.h) */
	bool log_syslog;
	bool has_metrics;               /* false: no admin endpoint */
	struct cfg_endpoint metrics;    /* zeroed unless has_metrics */
	struct cfg_kafka kafka;
	struct cfg_route *routes;
	size_t nroutes;
	struct cfg_downlink *downlinks;
	size_t ndownlinks;
};

/*
 * Reads and validates the file at path. Returns 0 and *out = a new config
 * (free with cfg_free()), or -1 with *out untouched and err holding one line
 * "FILE:LINE: what is wrong" (the first problem found): syntax errors, unknown
 * settings, wrong types, values out of range, missing required settings.
 */
int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen);

/* NULL ok. */
void cfg_free(struct cfg *c);

/*
 * Compares two configs for a reload. Returns how many changed settings take
 * effect only after a restart (listeners, workers, metrics, kafka.brokers,
 * kafka.properties, downlink) and writes their names, comma-separated, to msg
 * ("" when none; truncated to len). Everything else can be applied live.
 */
int cfg_reload_diff(const struct cfg *old, const struct cfg *new, char *msg, size_t len);

#endif
