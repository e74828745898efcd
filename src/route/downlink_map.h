/*
 * downlink_map.h - one downlink mapping (cfg_downlink) compiled, and the
 * MQTT message it makes of a Kafka record:
 *   - the MQTT topic is the mapping's template rendered from the record
 *     (${key}, ${header:NAME}, ${json:path}, ${kafka_topic}); it must be a
 *     valid MQTT topic name of at most 65535 bytes;
 *   - QoS and retain come from the mapping, overridden by the headers
 *     mqtt.qos ("0" | "1" | "2") and mqtt.retain ("true" | "false" | "1" |
 *     "0"); other header values are ignored (the mapping's value is used);
 *   - the payload is the value (format "raw"; a null value is an empty
 *     payload, which on a retain mapping clears the retained message) or the
 *     envelope's unwrapped payload (format "json", see envelope.h).
 * What to do with a record that cannot be mapped is the caller's (downlink.h).
 *
 * Pure: no I/O, no globals, no logging. A map is immutable once built and
 * may be used from any number of threads at once.
 */
#ifndef KG_DOWNLINK_MAP_H
#define KG_DOWNLINK_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "core/buf.h"
#include "core/cfg.h"

struct template_ctx;

/* A compiled mapping. Read-only after downlink_map_new(): callers read the
 * fields directly, from any thread. */
struct downlink_map {
	struct template *t;      /* mqtt_topic (template_source() for logs) */
	char **topics;           /* Kafka topics, valid names */
	size_t ntopics;
	char *topics_csv;        /* the same, comma-separated */
	char *group;             /* effective group id */
	uint8_t qos;
	bool retain;
	enum cfg_format format;
	enum cfg_mode mode;
	int line;                /* of the mapping in the config file */
	int64_t ack_timeout_ms;
};

/* Compiles one mapping (group_id is the effective id, copied): the
 * template, the resulting MQTT topic when the template is literal, the Kafka
 * topic names. Returns a new map or NULL with err set ("why", no file/line).
 * Free with downlink_map_free(); NULL ok there. */
struct downlink_map *downlink_map_new(const struct cfg_downlink *cd, const char *group_id,
				      char *err, size_t errlen);
void downlink_map_free(struct downlink_map *m);
/* True if the map names this Kafka topic (NUL-terminated). */
bool downlink_map_has_topic(const struct downlink_map *m, const char *topic);

/* A Kafka record as downlink_map_build() reads it; everything borrowed. */
struct downlink_map_record {
	const char *topic;        /* NUL-terminated */
	const void *key;          /* NULL: no key */
	size_t key_len;
	const void *value;        /* NULL: null value */
	size_t value_len;
	rd_kafka_headers_t *headers; /* NULL: none */
};

enum downlink_map_err {
	DOWNLINK_MAP_OK = 0,
	DOWNLINK_MAP_ERR_TEMPLATE = -1,  /* template cannot be filled (detail: template_err) */
	DOWNLINK_MAP_ERR_TOPIC = -2,     /* rendered topic is not a valid MQTT topic name */
	DOWNLINK_MAP_ERR_ENVELOPE = -3,  /* json format: not an envelope (detail: envelope_err) */
	DOWNLINK_MAP_ERR_NOMEM = -4,
};

/* What downlink_map_build() makes. Initialise zeroed; buffers are reset (not
 * freed) by each build; buf_release() them when done. */
struct downlink_map_out {
	struct buf topic;         /* not NUL-terminated */
	struct buf payload;
	uint8_t qos;
	bool retain;
	int detail;               /* template_err / envelope_err behind an error */
};

/*
 * Builds the MQTT message for record r under map m. ctx is a template_ctx
 * that the caller initialised for this record (template_ctx_init(); the
 * fields are filled here) and releases after the last map: the value is
 * parsed as JSON at most once for all maps. Returns DOWNLINK_MAP_OK or a
 * negative enum downlink_map_err. Any thread.
 */
int downlink_map_build(const struct downlink_map *m, const struct downlink_map_record *r,
		       struct template_ctx *ctx, struct downlink_map_out *out);
/* Human-readable reason for a downlink_map_build() error, for logs. Never
 * NULL. */
const char *downlink_map_err_str(int err, int detail);

#endif
