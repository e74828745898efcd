/*
 * downlink.h - Kafka to devices: records read by the downlink consumers are
 * published through the broker as MQTT messages, and their offsets are
 * committed only once every delivery is accounted for.
 *
 * Mappings (cfg_downlink) are grouped by effective group id: one consumer
 * (thread, see consumer.h) per distinct id, subscribed to the union of its
 * mappings' topics. mode = "group" uses `group` as is; mode = "broadcast"
 * uses "<group>-<instance id>", the instance id being kafka.instance_id or
 * else the host name (stable across restarts, so an instance resumes from
 * its own commits; two instances on one host must not both use broadcast
 * mode with one group unless each has its own kafka.instance_id).
 *
 * Static group membership: every consumer joins with group.instance.id =
 * downlink_member_id(), so that a restarted gateway (a crash, SIGKILL, a
 * restart) takes its partitions back as soon as it rejoins instead of
 * waiting for its old member's session.timeout.ms. A static member does not
 * leave its group when it stops: its partitions go to the other members
 * only when its session times out (kafkagate's consumer default: 10 s).
 * Consumers start reading DOWNLINK_START_GRACE_MS after downlink_start().
 *
 * Per record, each mapping of the consumer that names the record's topic
 * builds one MQTT message (topic, QoS, retain, payload: see downlink_map.h;
 * MQTT 5 properties from the headers: downlink_props()). A record whose
 * mqtt.message_expiry has passed when it is read is skipped like the
 * records below.
 * A template that cannot be filled, a result that is not a valid MQTT topic
 * name (or is longer than 65535 bytes), or (json) a value that is not an
 * envelope: the record is skipped for that mapping, counted, logged with
 * topic/partition/offset, and its offset committed like a delivered one.
 * Otherwise the message is tracked (msg.h) and handed to broker_inject(), or
 * with `target = "upstream:NAME"` to broker_inject_upstream() (published to
 * that broker only; complete once it acknowledged);
 * the record completes when every mapping's message is accounted for: written
 * to each matching online QoS 0 subscriber, acknowledged by each QoS 1/2 one,
 * or queued in an offline persistent session; at once with no subscriber.
 * A record still incomplete `ack_timeout` seconds (per mapping, default
 * DOWNLINK_TIMEOUT_MS; a group uses its mappings' largest) after it was read counts as
 * complete (logged): one silent device cannot hold its partition's commits
 * back for ever; the message itself stays with the session, as if queued.
 *
 * Threads: downlink_new/start/stop/free on the main thread; the consumers run
 * their own threads; done() callbacks run on workers; snapshot and stats
 * readers on any thread (the admin thread). Lifetime: stop the downlink
 * before broker_stop() (nothing may be injected into stopped workers) and
 * free it after broker_free() (workers may still settle tracked messages
 * until then).
 */
#ifndef KG_DOWNLINK_H
#define KG_DOWNLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "core/buf.h"

struct broker;
struct cfg;
struct cfg_downlink;
struct json_t;

#define DOWNLINK_TIMEOUT_MS 30000   /* default delivery timeout per record (ack_timeout) */
#define DOWNLINK_MAX_IN_FLIGHT 50000 /* records per consumer before it pauses */
#define DOWNLINK_STOP_GRACE_MS 2000 /* downlink_stop() waits this long for acks */
/* A started consumer reads nothing for this long, so that devices that
 * reconnect at once after a restart are subscribed again when the records
 * it left uncommitted, and those produced meanwhile, are delivered (a
 * clean session has no subscription until its device sends SUBSCRIBE). */
#define DOWNLINK_START_GRACE_MS 500

/* Which headers a mapping turns into MQTT 5 user properties
 * (downlink[i].user_properties): all = every header not named mqtt.*;
 * else the n names listed (none when n == 0). */
struct downlink_uprops {
	bool all;
	char **names;
	size_t n;
};

/*
 * Appends to out the MQTT 5 property list (encoded as struct msg carries it,
 * msg.h) that a record's headers h (NULL: none) give its message:
 *   mqtt.payload_format "0" | "1"  -> Payload Format Indicator (1 only when
 *                                     the payload is UTF-8 text without NUL,
 *                                     envelope_text_valid(): [MQTT-3.3.2-4])
 *   mqtt.content_type              -> Content Type (a valid MQTT string)
 *   mqtt.response_topic            -> Response Topic (a valid topic name, no
 *                                     wildcards [MQTT-3.3.2-14])
 *   mqtt.correlation_data          -> Correlation Data (bytes as they are)
 *   the headers up selects         -> User Properties, in record order,
 *                                     repeated names kept; name and value
 *                                     valid MQTT strings (a null value is "")
 * each at most 65535 bytes; the last of a repeated mqtt.* header counts; a
 * header that does not fit its property is left out. *expires_ms is 0, or
 * from mqtt.message_expiry (decimal seconds, 0..4294967295): record_ts
 * (the record's timestamp, ms; <= 0: now) + that many seconds. Returns 0, or
 * -1 out of memory (out as it was). Any thread.
 */
int downlink_props(const struct downlink_uprops *up, rd_kafka_headers_t *h, int64_t record_ts,
		   const void *payload, size_t payload_len, struct buf *out, int64_t *expires_ms);

/*
 * Cross-instance fan-out (state.store = "kafka": the state layer's bus,
 * docs/scaling/bus.md): send is called on the consumer thread for each
 * message about to go to the local broker (not for target = "upstream:",
 * nor mode = "broadcast", where every instance reads every record),
 * with the record's key. When devices on other instances subscribe to
 * m's topic it produces their records, each holding one more delivery of
 * m's track (atomic_fetch_add on m->track->remaining, before producing)
 * and settling it (msg_track_done) once Kafka acknowledged the record, so
 * the record's offset is committed only after that. Cheap when nobody
 * elsewhere subscribes. Main thread, before downlink_start(); copied. The
 * kafka layer never includes the state layer: this is its only link.
 */
struct downlink;
struct msg;
struct downlink_fanout {
	void (*send)(void *ctx, struct msg *m, const void *key, size_t keylen);
	void *ctx;
};
void downlink_set_fanout(struct downlink *d, const struct downlink_fanout *f);

/* Latest lag of one assigned partition, from librdkafka's statistics. */
struct downlink_lag {
	char group[256];          /* effective group id (truncated if longer) */
	char topic[256];
	int32_t partition;
	int64_t lag;              /* high watermark - committed; -1 unknown */
	int64_t hi_offset;        /* -1 unknown */
	int64_t committed_offset; /* -1 none yet */
};

/* Counters of one mapping; strings are borrowed from the downlink (valid
 * until downlink_free()). */
struct downlink_stats {
	const char *group;        /* effective group id */
	const char *topics;       /* Kafka topics, comma-separated */
	const char *mqtt_topic;   /* template source */
	int line;                 /* of the mapping in the config file */
	uint64_t consumed;        /* records read for this mapping */
	uint64_t delivered;       /* messages accounted for (incl. no subscriber) */
	uint64_t skipped;         /* records skipped (template, topic, envelope) */
	uint64_t timed_out;       /* records of this mapping's consumer that hit
				     DOWNLINK_TIMEOUT_MS (shared by its group) */
};

/*
 * Compiles every mapping as downlink_new() would: template, resulting MQTT
 * topic when the template is literal, Kafka topic names; and checks
 * kafka.instance_id (1..249 of [A-Za-z0-9._-], not "." or ".."). Returns 0,
 * or -1 with "FILE:LINE: downlink[i]...: why" (or "FILE:LINE:
 * kafka.instance_id: ...") in err. For --check. Any thread.
 */
int downlink_check(const struct cfg *cfg, char *err, size_t errlen);

/* Writes the effective group id of cd for this instance to out. Returns 0
 * or -1 when it does not fit. instance_id is used by mode = "broadcast". */
int downlink_group_id(const struct cfg_downlink *cd, const char *instance_id, char *out,
		      size_t len);

/*
 * Writes the consumers' group.instance.id to out: "" (none: kafka.properties
 * sets group.instance.id itself, "" there turning static membership off; or
 * there is no stable default), kafka.instance_id when set, else
 * "<host>-<port>" with host (the host name) and the first listener's port
 * (0, any free port: no stable default), characters Kafka refuses in an id
 * replaced by '_'. Returns 0, or -1 when it does not fit in len. Pure.
 */
int downlink_member_id(const struct cfg *cfg, const char *host, char *out, size_t len);

/*
 * Returns a new downlink for cfg's mappings (cfg->ndownlinks > 0), whose
 * consumers read from bootstrap and publish through br; or NULL with err set.
 * cfg is borrowed for the call only. Main thread.
 */
struct downlink *downlink_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			      char *err, size_t errlen);
/* Subscribes and starts the consumer threads; br's workers must be running.
 * Returns 0, or -1 (logged) with nothing left running. Main thread. */
int downlink_start(struct downlink *d);
/* Stops reading, waits up to DOWNLINK_STOP_GRACE_MS for deliveries in flight,
 * commits what is complete, closes the consumers (static members stay in
 * their groups until their sessions time out) and joins the threads. NULL
 * and repeated calls ok. Main thread. */
void downlink_stop(struct downlink *d);
/* Stops if needed and frees. NULL ok. After broker_free() (see above). */
void downlink_free(struct downlink *d);

/* Copies up to max lag entries (every partition assigned to any consumer) to
 * out and returns how many there are in all (which may exceed max). Takes
 * one short lock per consumer. Any thread. */
size_t downlink_lag_snapshot(struct downlink *d, struct downlink_lag *out, size_t max);
/* Number of mappings (config order). */
size_t downlink_count(const struct downlink *d);
/* Counters of mapping i (relaxed atomic loads). Returns 0, or -1 if i is out
 * of range. Any thread. */
int downlink_stats(const struct downlink *d, size_t i, struct downlink_stats *out);
/* The "downlink" array of /api/v1/status (status.h's status_hook; ud is the
 * struct downlink *): one object per mapping {group, topics [], mqtt_topic,
 * qos, retain, format, mode, target ("local" or "upstream:NAME"), consumed, delivered, skipped, timed_out,
 * lag [{topic, partition, lag, hi_offset, committed_offset}]}. Returns a new
 * reference, or NULL on allocation failure. Any thread. */
struct json_t *downlink_status_json(void *ud);
/* Appends the downlink families to a /metrics scrape (metrics.h's
 * metrics_hook; ud is the struct downlink *):
 *   kafkagate_downlink_records_consumed_total{mapping,group,topics}
 *   kafkagate_downlink_messages_delivered_total{mapping,group,topics}
 *   kafkagate_downlink_records_skipped_total{mapping,group,topics}
 *   kafkagate_downlink_records_timed_out_total{group}
 *   kafkagate_downlink_consumer_lag{topic,partition,group} (known lags only)
 * Returns 0 or -1 (ENOMEM). Any thread. */
int downlink_metrics_render(struct buf *out, void *ud);

#endif
