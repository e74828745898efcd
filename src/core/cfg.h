/*
 * cfg.h - the configuration file: load, validate, compare for reload.
 *
 * The file is libconfig syntax; config/kafkagate.cfg documents every setting,
 * docs/security.md the limits. Nothing outside cfg.c sees libconfig:
 * cfg_load() turns the file into plain C values.
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
#include <stdint.h>

enum cfg_format { CFG_FORMAT_RAW, CFG_FORMAT_JSON };
/* routes[i].payload_text (json routes): how a payload that is text but not
 * JSON is carried in the envelope (route/envelope.h). */
enum cfg_payload_text { CFG_TEXT_UTF8, CFG_TEXT_BASE64 };
enum cfg_mode { CFG_MODE_GROUP, CFG_MODE_BROADCAST };
enum cfg_store { CFG_STORE_MEMORY, CFG_STORE_KAFKA };
enum cfg_protocol { CFG_PROTO_MQTT, CFG_PROTO_WEBSOCKET };
/* The user name of a client with a verified certificate: NONE = the one in
 * CONNECT; CN = the certificate's subject common name; SAN = its first
 * DNS or email subjectAltName. */
enum cfg_identity { CFG_IDENTITY_NONE, CFG_IDENTITY_CN, CFG_IDENTITY_SAN };

/* The longest Kafka property name, and the longest value (given inline or
 * read from an "@file:" file); cfg_kafka_value_max() gives the value cap for
 * one name: CFG_KAFKA_PEM_MAX for names ending in ".pem" (whole PEM
 * documents), CFG_KAFKA_VALUE_MAX for the others. */
#define CFG_KAFKA_NAME_MAX 256
#define CFG_KAFKA_VALUE_MAX 4096
#define CFG_KAFKA_PEM_MAX 65536
/* A Kafka property value "@file:PATH" is read from PATH (see kafka_conf.h). */
#define CFG_KAFKA_FILE_PREFIX "@file:"

/*
 * A file named in the config (certificate, key, password file, ...). A
 * relative name is resolved against the directory of the config file, made
 * absolute with the working directory at load time: "certs/a.crt" in
 * /etc/kafkagate/kafkagate.cfg is /etc/kafkagate/certs/a.crt. Nothing checks
 * that the file exists: the code that opens it reports "FILE:LINE: ..." with
 * cfg->path and this line.
 */
struct cfg_path {
	char *path;  /* resolved; NULL = not set */
	int line;    /* of the setting; 0 when not set */
};

/* listeners[i].tls. Every key applies on reload (SIGHUP re-reads the files). */
struct cfg_tls {
	struct cfg_path cert;     /* required: PEM certificate chain */
	struct cfg_path key;      /* required: PEM private key */
	struct cfg_path ca;       /* CAs for client certificates; path NULL = none */
	bool require_client_cert; /* true: a client without a valid certificate is
	                             refused (needs ca) */
	enum cfg_identity identity; /* not NONE only with ca */
	int line;                 /* of the tls group */
};

/* One MQTT listener. address, port, protocol, path and whether tls is there
 * at all need a restart; the tls keys apply on reload. */
struct cfg_listener {
	char *address;  /* numeric IPv4 or IPv6 literal; default "127.0.0.1" */
	int port;       /* 0..65535, default 1883; 0 = ephemeral (tests) */
	int line;
	enum cfg_protocol protocol;  /* default MQTT */
	char *path;     /* WEBSOCKET: HTTP path that upgrades, starts with '/',
	                   default "/mqtt"; MQTT: NULL */
	bool has_tls;   /* false: plain TCP and tls is all zero */
	struct cfg_tls tls;
};

/* The admin endpoint. address and port need a restart; token_file and
 * protect_metrics apply on reload (the token is re-read then). */
struct cfg_metrics {
	char *address;  /* default "127.0.0.1" */
	int port;       /* default 9100 */
	int line;       /* of the metrics group */
	struct cfg_path token_file;  /* bearer token for the admin API; NULL = none */
	bool protect_metrics;        /* /metrics needs the token too (needs token_file) */
};

/* The auth group. All of it applies on reload (the files are re-read), but
 * verify_threads. */
struct cfg_auth {
	/* Default: false when password_file is set, true otherwise. */
	bool allow_anonymous;
	int allow_anonymous_line;      /* 0 = not in the file (derived) */
	struct cfg_path password_file; /* NULL = none */
	struct cfg_path acl_file;      /* NULL = none (no ACL: everything allowed) */
	int fail_delay_ms;   /* before refusing bad credentials; 0..60000, default 1000 */
	int verify_threads;  /* password hashing threads; 1..64, default 2 (restart) */
	int line;            /* of the auth group; 0 = absent */
};

/* All reloadable. Sizes are bytes, times seconds; see config/kafkagate.cfg
 * and docs/security.md for each default and why. */
struct cfg_limits {
	int max_connections;
	int max_packet_size;      /* bytes */
	int max_inflight;         /* unacknowledged QoS 1/2 messages per client */
	int max_queued_messages;  /* per session */
	int max_output_bytes;     /* per-connection output buffer */
	int connect_timeout;      /* seconds from accept to CONNECT */

	int max_connect_size;     /* the first packet (CONNECT); the cap in force is
	                             the smaller of this and max_packet_size */
	int max_topic_length;     /* bytes, 1..65535 */
	int max_topic_levels;     /* 1..65535 */
	int max_client_id_length; /* bytes, 23..65535 */
	int max_subscriptions;    /* filters per client */
	int max_qos2_pending;     /* QoS 2 ids awaiting PUBREL per client; past it: close */
	int packet_timeout;       /* seconds a started packet may take to complete */
	int max_partial_bytes;    /* held by partial packets, all connections together;
	                             at least max_packet_size */
	int max_retained_messages; /* 0 = none stored */
	int max_retained_bytes;   /* topic + payload of all retained; 0 = none stored */
	int max_queued_bytes;     /* topic + payload per session queue; 0 = none queued */
	int max_queued_total_messages; /* all session queues together */
	int max_queued_total_bytes;    /* the same, topic + payload */
	int session_expiry;       /* seconds a persistent 3.1.1 session lives offline;
	                             0 = never expires (MQTT 5: the client's own) */
	int max_connections_per_address; /* 0 = unlimited; loopback peers not counted */
	int max_connect_rate;     /* accepts per second per listener; 0 = unlimited */
	int max_keepalive;        /* seconds; 0 = any; else a larger (or 0) keepalive
	                             is refused with CONNACK 2 (3.1.1), capped with
	                             Server Keep Alive (MQTT 5) */
	uint32_t max_session_expiry; /* MQTT 5 Session Expiry Interval cap, seconds */
	int topic_alias_maximum;  /* MQTT 5, 0..65535 */
};

/* mqtt5 = { ... }: reason codes MQTT 5 publishers may get. Reloadable. */
struct cfg_mqtt5 {
	bool reject_when_busy;    /* Kafka's queue full: PUBACK/PUBREC 0x97 Quota
	                             exceeded instead of pausing the connection */
	bool no_match_reason;     /* no route and no subscriber took a QoS 1/2
	                             publish: PUBACK/PUBREC 0x10 No matching
	                             subscribers instead of 0x00 Success */
};

/* One librdkafka property, as given: not checked against librdkafka here.
 * In the file: properties = ( ("linger.ms", 5), ("acks", "all") ); because
 * libconfig setting names cannot contain dots. */
struct cfg_kafka_prop {
	char *name;
	char *value;    /* ints and booleans converted: "5", "true". "@file:PATH":
	                   read from PATH by kafka_conf_new(); PATH resolved
	                   like struct cfg_path. */
	int line;
};

struct cfg_kafka {
	/* "embedded" = librdkafka's mock cluster. Required in the file when there
	 * are routes or downlinks; otherwise "embedded" by default. */
	char *brokers;
	int brokers_line;         /* 0 = not in the file */
	struct cfg_kafka_prop *props;
	size_t nprops;
	char *dead_letter_topic;  /* NULL = none */
	char *instance_id;        /* NULL = derived from the host name (kafka/downlink.h) */
	int flush_timeout;        /* seconds to flush the producer at shut-down */
	int line;                 /* of the kafka group */
};

/* Where sessions, retained messages and wills live (docs/scaling.md):
 * `state = { store = "kafka"; instance_id = "gw-1"; topic_prefix = "kafkagate"; }`.
 * Restart-only. */
struct cfg_state {
	enum cfg_store store;     /* memory (default): this process only */
	char *instance_id;        /* NULL = the host name */
	char *topic_prefix;       /* "<prefix>.sessions", ".retained", ".instances", ".inbox.<id>" */
	int partitions;           /* of the sessions and retained topics it creates */
	int replication_factor;   /* of the topics it creates; -1 = the brokers' default */
	int min_compaction_lag_ms;/* of the compacted topics it creates */
	int inbox_retention_ms;   /* of the inbox topics it creates */
	int heartbeat_ms;         /* an instance record every ... */
	int lease_ms;             /* an instance silent this long is dead; an instance whose
	                             view of the state topics lags this long closes its clients */
	int claim_timeout_ms;     /* a CONNECT waits this long for its claim; then CONNACK 3 */
	int line;                 /* of the state group; 0 = absent */
};

/* Uplink: MQTT filter -> Kafka topic. Filter and templates are checked by
 * the routing module, not here. */
struct cfg_route {
	char *filter;
	char *topic;
	char *key;      /* template; NULL = records have no key */
	enum cfg_format format;
	enum cfg_payload_text payload_text; /* json only (checked here) */
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
	char *target;     /* NULL = the local broker (its subscribers); else the name
	                     of an upstream: `target = "upstream:NAME"` in the file */
	/* Kafka headers that become MQTT 5 user properties (kafka/downlink.h):
	 * user_props_all (`user_properties = "*"`): every header not named
	 * mqtt.*; else the names listed (none by default). */
	char **user_props;
	size_t nuser_props;
	bool user_props_all;
	int line;
};

/* One subscription an upstream connection makes (upstreams[i].subscriptions).
 * The filter is checked by the broker (upstream.h), not here. */
struct cfg_upstream_sub {
	char *filter;
	int qos;        /* 0..2 */
	int line;
};

/* upstreams[i].tls: kafkagate is the TLS client. */
struct cfg_upstream_tls {
	struct cfg_path ca;    /* CAs that sign the server's certificate; NULL = the
	                          system's default CA store */
	struct cfg_path cert;  /* client certificate chain (PEM); NULL = none */
	struct cfg_path key;   /* its key; set with cert, or neither */
	char *server_name;     /* checked in the server certificate and sent as
	                          SNI; NULL = address */
	int line;
};

/* An MQTT broker kafkagate connects to as a client (upstreams = ( ... )).
 * Everything here needs a restart; the password file is re-read at every
 * connection attempt. */
struct cfg_upstream {
	char *name;          /* [A-Za-z0-9._-], 1..64 bytes, unique */
	char *address;       /* host name or numeric address */
	int port;            /* 1..65535; default 1883, 8883 with tls */
	char *client_id;     /* default "kafkagate-<name>" */
	char *username;      /* NULL = none */
	struct cfg_path password_file;  /* first line is the password; needs username */
	bool has_tls;
	struct cfg_upstream_tls tls;
	bool clean_session;  /* default false: the upstream keeps our session */
	int keepalive;       /* seconds, 0..65535, default 30 */
	int protocol;        /* MQTT protocol level: 4 (3.1.1) */
	struct cfg_upstream_sub *subs;  /* at least one */
	size_t nsubs;
	char *prefix;        /* added before received topics; "" = none */
	bool required;       /* /readyz fails while it is down (default false) */
	int reconnect_min_ms;  /* first reconnect delay, default 500 */
	int reconnect_max_ms;  /* cap of the exponential backoff, default 30000 */
	int line;
};

struct cfg {
	char *path;     /* as passed to cfg_load() */
	struct cfg_listener *listeners;  /* at least one */
	size_t nlisteners;
	int workers;    /* 0 = one per core */
	struct cfg_limits limits;
	struct cfg_auth auth;
	struct cfg_mqtt5 mqtt5;
	int log_level;  /* enum log_level (log.h) */
	bool log_syslog;
	bool has_metrics;               /* false: no admin endpoint */
	struct cfg_metrics metrics;     /* zeroed unless has_metrics */
	struct cfg_kafka kafka;
	struct cfg_state state;
	struct cfg_route *routes;
	size_t nroutes;
	struct cfg_downlink *downlinks;
	size_t ndownlinks;
	struct cfg_upstream *upstreams;
	size_t nupstreams;
};

/*
 * Reads and validates the file at path. Returns 0 and *out = a new config
 * (free with cfg_free()), or -1 with *out untouched and err holding one line
 * "FILE:LINE: what is wrong" (the first problem found): syntax errors, unknown
 * settings, wrong types, values out of range, missing required settings, no
 * listeners, routes or downlinks without kafka.brokers, two upstreams with one
 * name, a downlink target naming no upstream.
 */
int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen);

/* As cfg_load() on a file named name holding text (borrowed; NUL-terminated):
 * name is cfg->path, starts the error messages and anchors relative paths. */
int cfg_parse_string(const char *text, const char *name, struct cfg **out, char *err,
		     size_t errlen);

/* The longest value allowed for Kafka property name (see CFG_KAFKA_VALUE_MAX). */
size_t cfg_kafka_value_max(const char *name);

/* NULL ok. */
void cfg_free(struct cfg *c);

/*
 * Compares two configs for a reload. Returns how many changed settings take
 * effect only after a restart (listeners but their tls keys, workers,
 * metrics.address and .port, auth.verify_threads, kafka.brokers,
 * kafka.properties, kafka.instance_id, downlink, upstreams) and writes their
 * names, comma-separated, to msg ("" when none; truncated to len). Everything
 * else can be applied live.
 */
int cfg_reload_diff(const struct cfg *old, const struct cfg *new, char *msg, size_t len);

#endif
