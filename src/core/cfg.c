/* cfg.c - see cfg.h. The only file that includes libconfig.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg_int.h"
#include "core/util.h"

#define MAX_FILE_BYTES (16u << 20)
#define MAX_STR 65535   /* any string setting, unless its entry says less */

struct ctx {
	const char *path;
	struct cfg *c;
	char *err;
	size_t errlen;
};

static const char *const levels[] = { "error", "warn", "info", "debug", NULL }; /* enum log_level */
static const char *const formats[] = { "raw", "json", NULL };
static const char *const payload_texts[] = { "utf8", "base64", NULL }; /* enum cfg_payload_text */
static const char *const modes[] = { "group", "broadcast", NULL };
static const char *const stores[] = { "memory", "kafka", NULL }; /* enum cfg_store */
static const char *const protocols[] = { "mqtt", "websocket", NULL };
static const char *const identities[] = { "none", "cn", "san", NULL };

static int load_auth(struct ctx *x, const config_setting_t *s, void *base, const char *key);
static int load_tls(struct ctx *x, const config_setting_t *s, void *base, const char *key);
static int load_metrics(struct ctx *x, const config_setting_t *s, void *base, const char *key);
static int load_props(struct ctx *x, const config_setting_t *s, void *base, const char *key);
static int check_listener(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);
static int check_downlink(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);
static int check_route(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);
static int check_upstream(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);
static int load_upstream_tls(struct ctx *x, const config_setting_t *s, void *base, const char *key);
static int check_upstream_sub(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);

#define C(f) offsetof(struct cfg, f)
#define L(f) offsetof(struct cfg_listener, f)
#define M(f) offsetof(struct cfg_metrics, f)
#define R(f) offsetof(struct cfg_route, f)
#define D(f) offsetof(struct cfg_downlink, f)
#define U(f) offsetof(struct cfg_upstream, f)
#define US(f) offsetof(struct cfg_upstream_sub, f)
#define INT(s, n, o, d, lo, hi, rl) { s, n, T_INT, o, d, lo, hi, NULL, NULL, false, rl, 0, NULL }
#define U32(s, n, o, d, lo, hi, rl) { s, n, T_U32, o, d, lo, hi, NULL, NULL, false, rl, 0, NULL }
#define BOOL(s, n, o, d, rl) { s, n, T_BOOL, o, d, 0, 1, NULL, NULL, false, rl, 0, NULL }
#define STR(s, n, o, d, minlen, maxlen, req, rl) \
	{ s, n, T_STR, o, 0, minlen, maxlen, d, NULL, req, rl, 0, NULL }
#define PATH(s, n, o, req, rl) { s, n, T_PATH, o, 0, 1, PATH_MAX - 1, NULL, NULL, req, rl, 0, NULL }
#define ADDR(s, n, o, d) { s, n, T_ADDR, o, 0, 0, 0, d, NULL, false, false, 0, NULL }
#define ENUM(s, n, o, d, ch, rl) { s, n, T_ENUM, o, d, 0, 0, NULL, ch, false, rl, 0, NULL }
#define NEST(s, n, t, sub, load, rl) { s, n, t, 0, 0, 0, 0, NULL, NULL, false, rl, sub, load }
#define MiB (1 << 20)

/* Every setting: its default, limits and whether a reload may change it.
 * config/kafkagate.cfg and docs/security.md say why each default is what it is. */
const struct opt cfg_opts[] = {
	NEST(S_TOP, "listeners", T_LIST, S_LISTENER, NULL, false),
	INT(S_TOP, "workers", C(workers), 0, 0, 256, false),
	NEST(S_TOP, "limits", T_GROUP, S_LIMITS, NULL, true),
	NEST(S_TOP, "log", T_GROUP, S_LOG, NULL, true),
	NEST(S_TOP, "auth", T_GROUP, S_AUTH, load_auth, true),
	NEST(S_TOP, "metrics", T_GROUP, S_METRICS, load_metrics, false),
	NEST(S_TOP, "mqtt5", T_GROUP, S_MQTT5, NULL, true),
	NEST(S_TOP, "kafka", T_GROUP, S_KAFKA, NULL, true),
	NEST(S_TOP, "state", T_GROUP, S_STATE, NULL, false),
	NEST(S_TOP, "routes", T_LIST, S_ROUTE, NULL, true),
	NEST(S_TOP, "downlink", T_LIST, S_DOWNLINK, NULL, false),
	NEST(S_TOP, "upstreams", T_LIST, S_UPSTREAM, NULL, false),

	INT(S_LIMITS, "max_connections", C(limits.max_connections), 100000, 1, 10000000, true),
	INT(S_LIMITS, "max_packet_size", C(limits.max_packet_size), 1048576, 16, 268435455, true),
	INT(S_LIMITS, "max_inflight", C(limits.max_inflight), 32, 1, 65535, true),
	INT(S_LIMITS, "max_queued_messages", C(limits.max_queued_messages), 1000, 0, 10000000, true),
	INT(S_LIMITS, "max_output_bytes", C(limits.max_output_bytes), 1048576, 4096, 1 << 30, true),
	INT(S_LIMITS, "connect_timeout", C(limits.connect_timeout), 10, 1, 3600, true),
	INT(S_LIMITS, "max_connect_size", C(limits.max_connect_size), 65536, 16, 268435455, true),
	INT(S_LIMITS, "max_topic_length", C(limits.max_topic_length), 4096, 1, 65535, true),
	INT(S_LIMITS, "max_topic_levels", C(limits.max_topic_levels), 128, 1, 65535, true),
	INT(S_LIMITS, "max_client_id_length", C(limits.max_client_id_length), 256, 23, 65535, true),
	INT(S_LIMITS, "max_subscriptions", C(limits.max_subscriptions), 1000, 1, 1000000, true),
	INT(S_LIMITS, "max_qos2_pending", C(limits.max_qos2_pending), 1000, 1, 65535, true),
	INT(S_LIMITS, "packet_timeout", C(limits.packet_timeout), 30, 1, 3600, true),
	INT(S_LIMITS, "max_partial_bytes", C(limits.max_partial_bytes), 256 * MiB, 4096, INT32_MAX, true),
	INT(S_LIMITS, "max_retained_messages", C(limits.max_retained_messages), 100000, 0, 100000000, true),
	INT(S_LIMITS, "max_retained_bytes", C(limits.max_retained_bytes), 256 * MiB, 0, INT32_MAX, true),
	INT(S_LIMITS, "max_queued_bytes", C(limits.max_queued_bytes), 16 * MiB, 0, INT32_MAX, true),
	INT(S_LIMITS, "max_queued_total_messages", C(limits.max_queued_total_messages), 10000000, 0,
	    INT32_MAX, true),
	INT(S_LIMITS, "max_queued_total_bytes", C(limits.max_queued_total_bytes), 1024 * MiB, 0,
	    INT32_MAX, true),
	INT(S_LIMITS, "session_expiry", C(limits.session_expiry), 7 * 86400, 0, INT32_MAX, true),
	INT(S_LIMITS, "max_connections_per_address", C(limits.max_connections_per_address), 1000, 0,
	    10000000, true),
	INT(S_LIMITS, "max_connect_rate", C(limits.max_connect_rate), 5000, 0, 1000000, true),
	INT(S_LIMITS, "max_keepalive", C(limits.max_keepalive), 0, 0, 65535, true),
	U32(S_LIMITS, "max_session_expiry", C(limits.max_session_expiry), UINT32_MAX, 0, UINT32_MAX, true),
	INT(S_LIMITS, "topic_alias_maximum", C(limits.topic_alias_maximum), 10, 0, 65535, true),

	ENUM(S_LOG, "level", C(log_level), 2, levels, true),
	BOOL(S_LOG, "syslog", C(log_syslog), false, true),

	/* The default of allow_anonymous depends on password_file: load_auth(). */
	BOOL(S_AUTH, "allow_anonymous", C(auth.allow_anonymous), true, true),
	PATH(S_AUTH, "password_file", C(auth.password_file), false, true),
	PATH(S_AUTH, "acl_file", C(auth.acl_file), false, true),
	INT(S_AUTH, "fail_delay_ms", C(auth.fail_delay_ms), 1000, 0, 60000, true),
	INT(S_AUTH, "verify_threads", C(auth.verify_threads), 2, 1, 64, false),

	/* How MQTT 5 acknowledgements tell the truth (docs/mqtt5/publish.md). */
	BOOL(S_MQTT5, "reject_when_busy", C(mqtt5.reject_when_busy), false, true),
	BOOL(S_MQTT5, "no_match_reason", C(mqtt5.no_match_reason), false, true),

	STR(S_KAFKA, "brokers", C(kafka.brokers), "embedded", 1, MAX_STR, false, false),
	NEST(S_KAFKA, "properties", T_LIST, S_PROPS, load_props, false),
	STR(S_KAFKA, "dead_letter_topic", C(kafka.dead_letter_topic), NULL, 1, MAX_STR, false, false),
	STR(S_KAFKA, "instance_id", C(kafka.instance_id), NULL, 1, 249, false, false),
	INT(S_KAFKA, "flush_timeout", C(kafka.flush_timeout), 10, 0, 600, true),

	/* State in Kafka (docs/scaling.md); every setting restart-only. */
	ENUM(S_STATE, "store", C(state.store), CFG_STORE_MEMORY, stores, false),
	STR(S_STATE, "instance_id", C(state.instance_id), NULL, 1, 200, false, false),
	STR(S_STATE, "topic_prefix", C(state.topic_prefix), "kafkagate", 1, 180, false, false),
	INT(S_STATE, "partitions", C(state.partitions), 12, 1, 10000, false),
	INT(S_STATE, "replication_factor", C(state.replication_factor), -1, -1, 32, false),
	INT(S_STATE, "min_compaction_lag_ms", C(state.min_compaction_lag_ms), 3600000, 0, INT32_MAX, false),
	INT(S_STATE, "inbox_retention_ms", C(state.inbox_retention_ms), 604800000, 60000, INT32_MAX, false),
	INT(S_STATE, "heartbeat_ms", C(state.heartbeat_ms), 1000, 100, 60000, false),
	INT(S_STATE, "lease_ms", C(state.lease_ms), 10000, 1000, 600000, false),
	INT(S_STATE, "claim_timeout_ms", C(state.claim_timeout_ms), 5000, 100, 60000, false),

	ADDR(S_LISTENER, "address", L(address), "127.0.0.1"),
	INT(S_LISTENER, "port", L(port), 1883, 0, 65535, false),
	ENUM(S_LISTENER, "protocol", L(protocol), CFG_PROTO_MQTT, protocols, false),
	STR(S_LISTENER, "path", L(path), NULL, 1, 1024, false, false),
	NEST(S_LISTENER, "tls", T_GROUP, S_TLS, load_tls, true),
	PATH(S_TLS, "cert", L(tls.cert), true, true),
	PATH(S_TLS, "key", L(tls.key), true, true),
	PATH(S_TLS, "ca", L(tls.ca), false, true),
	BOOL(S_TLS, "require_client_cert", L(tls.require_client_cert), false, true),
	ENUM(S_TLS, "identity", L(tls.identity), CFG_IDENTITY_NONE, identities, true),

	ADDR(S_METRICS, "address", M(address), "127.0.0.1"),
	INT(S_METRICS, "port", M(port), 9100, 0, 65535, false),
	PATH(S_METRICS, "token_file", M(token_file), false, true),
	BOOL(S_METRICS, "protect_metrics", M(protect_metrics), false, true),

	/* MQTT caps topic filters at 65535 bytes; route_table_new() would call a
	 * longer one "out of memory". */
	STR(S_ROUTE, "filter", R(filter), NULL, 1, 65535, true, true),
	STR(S_ROUTE, "topic", R(topic), NULL, 1, MAX_STR, true, true),
	STR(S_ROUTE, "key", R(key), NULL, 0, MAX_STR, false, true),
	ENUM(S_ROUTE, "format", R(format), CFG_FORMAT_RAW, formats, true),
	ENUM(S_ROUTE, "payload_text", R(payload_text), CFG_TEXT_UTF8, payload_texts, true),

	{ S_DOWNLINK, "topic", T_OTHER, .reloadable = false },
	{ S_DOWNLINK, "topics", T_OTHER, .reloadable = false },
	STR(S_DOWNLINK, "group", D(group), "kafkagate", 1, MAX_STR, false, false),
	STR(S_DOWNLINK, "mqtt_topic", D(mqtt_topic), NULL, 1, MAX_STR, true, false),
	INT(S_DOWNLINK, "qos", D(qos), 0, 0, 2, false),
	BOOL(S_DOWNLINK, "retain", D(retain), false, false),
	ENUM(S_DOWNLINK, "format", D(format), CFG_FORMAT_RAW, formats, false),
	ENUM(S_DOWNLINK, "mode", D(mode), CFG_MODE_GROUP, modes, false),
	INT(S_DOWNLINK, "ack_timeout", D(ack_timeout), 30, 1, 86400, false),
	STR(S_DOWNLINK, "target", D(target), NULL, 1, 256, false, false),
	{ S_DOWNLINK, "user_properties", T_OTHER, .reloadable = false },

	/* Upstream brokers: all restart-only (check_upstream() fills the
	 * defaults that depend on other keys: port, client_id). */
	STR(S_UPSTREAM, "name", U(name), NULL, 1, 64, true, false),
	STR(S_UPSTREAM, "address", U(address), NULL, 1, 253, true, false),
	INT(S_UPSTREAM, "port", U(port), 0, 1, 65535, false),
	STR(S_UPSTREAM, "client_id", U(client_id), NULL, 1, 65535, false, false),
	STR(S_UPSTREAM, "username", U(username), NULL, 0, 65535, false, false),
	PATH(S_UPSTREAM, "password_file", U(password_file), false, false),
	NEST(S_UPSTREAM, "tls", T_GROUP, S_UPSTREAM_TLS, load_upstream_tls, false),
	BOOL(S_UPSTREAM, "clean_session", U(clean_session), false, false),
	INT(S_UPSTREAM, "keepalive", U(keepalive), 30, 0, 65535, false),
	INT(S_UPSTREAM, "protocol", U(protocol), 4, 3, 5, false),
	NEST(S_UPSTREAM, "subscriptions", T_LIST, S_UPSTREAM_SUB, NULL, false),
	STR(S_UPSTREAM, "prefix", U(prefix), "", 0, 32767, false, false),
	BOOL(S_UPSTREAM, "required", U(required), false, false),
	INT(S_UPSTREAM, "reconnect_min_ms", U(reconnect_min_ms), 500, 10, 3600000, false),
	INT(S_UPSTREAM, "reconnect_max_ms", U(reconnect_max_ms), 30000, 10, 3600000, false),
	PATH(S_UPSTREAM_TLS, "ca", U(tls.ca), false, false),
	PATH(S_UPSTREAM_TLS, "cert", U(tls.cert), false, false),
	PATH(S_UPSTREAM_TLS, "key", U(tls.key), false, false),
	STR(S_UPSTREAM_TLS, "server_name", U(tls.server_name), NULL, 1, 253, false, false),
	STR(S_UPSTREAM_SUB, "filter", US(filter), NULL, 1, 65535, true, false),
	INT(S_UPSTREAM_SUB, "qos", US(qos), 1, 0, 2, false),
};
#define NOPTS (sizeof(cfg_opts) / sizeof(cfg_opts[0]))
const size_t cfg_nopts = NOPTS;

const struct list_info cfg_lists[S_PROPS + 1] = {
	[S_LISTENER] = { C(listeners), C(nlisteners), sizeof(struct cfg_listener), L(line), check_listener },
	[S_ROUTE] = { C(routes), C(nroutes), sizeof(struct cfg_route), R(line), check_route },
	[S_DOWNLINK] = { C(downlinks), C(ndownlinks), sizeof(struct cfg_downlink), D(line), check_downlink },
	[S_UPSTREAM] = { C(upstreams), C(nupstreams), sizeof(struct cfg_upstream), U(line), check_upstream },
	[S_UPSTREAM_SUB] = { U(subs), U(nsubs), sizeof(struct cfg_upstream_sub), US(line),
			     check_upstream_sub },
};

/* Enum members are written through int *. */
_Static_assert(sizeof(enum cfg_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_store) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_payload_text) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_protocol) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_identity) == sizeof(int), "enum size");

#define AT(base, off, type) ((type *)(void *)((char *)(base) + (off)))

__attribute__((format(printf, 4, 5)))
static int fail_at(struct ctx *x, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	int n = line ? snprintf(x->err, x->errlen, "%s:%d: ", file ? file : x->path, line)
		     : snprintf(x->err, x->errlen, "%s: ", file ? file : x->path);

	if (n >= 0 && (size_t)n < x->errlen) {
		va_start(ap, fmt);
		vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

#define fail(x, s, ...) fail_at(x, (s) ? config_setting_source_file(s) : NULL, line_of(s), __VA_ARGS__)

static int line_of(const config_setting_t *s) { return s ? (int)config_setting_source_line(s) : 0; }

static int set_str(struct ctx *x, char **dst, const char *val)
{
	if (val && !(*dst = strdup(val)))
		return fail_at(x, NULL, 0, "out of memory");
	return 0;
}

/* *dst = name resolved against the config file's directory (cfg.h); what
 * names the setting in messages. */
static int set_path(struct ctx *x, const config_setting_t *s, char **dst, const char *name,
		    const char *what)
{
	char cwd[PATH_MAX], buf[PATH_MAX];
	const char *slash = strrchr(x->path, '/');
	int dirlen = slash ? (int)(slash - x->path) : 0;
	int n;

	if (name[0] == '/')
		return set_str(x, dst, name);
	if (x->path[0] != '/' && !getcwd(cwd, sizeof(cwd)))
		return fail(x, s, "%s: cannot resolve \"%.64s\": getcwd: %s", what, name, strerror(errno));
	if (x->path[0] == '/')
		n = snprintf(buf, sizeof(buf), "%.*s/%s", dirlen, x->path, name);
	else
		n = snprintf(buf, sizeof(buf), "%s%s%.*s/%s", strcmp(cwd, "/") ? cwd : "", slash ? "/" : "",
			     dirlen, x->path, name);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return fail(x, s, "%s: the file name is too long once resolved (at most %d bytes)", what,
			    PATH_MAX - 1);
	return set_str(x, dst, buf);
}

/* Reads one plain key (s NULL: absent, take the default) into base. */
static int load_value(struct ctx *x, const struct opt *o, const config_setting_t *s,
		      void *base, const char *key)
{
	const char *str;
	long long v;

	if (!s && (o->type == T_STR || o->type == T_ADDR))
		return set_str(x, AT(base, o->off, char *), o->def_str);
	if (!s && o->type == T_BOOL)
		*AT(base, o->off, bool) = o->def;
	else if (!s && o->type == T_U32)
		*AT(base, o->off, uint32_t) = (uint32_t)o->def;
	else if (!s && o->type != T_PATH)
		*AT(base, o->off, int) = (int)o->def;
	if (!s)
		return 0;
	if (o->type == T_INT || o->type == T_U32) {
		if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
			return fail(x, s, "'%s' must be an integer", key);
		v = config_setting_get_int64(s);
		/* libconfig 1.5 reads 0x80000000..0xFFFFFFFF as negative ints */
		if (v < o->min || v > o->max)
			return fail(x, s, "'%s' must be in %lld..%lld (got %lld)%s", key, o->min, o->max, v,
				    o->type == T_U32 && v < 0 && config_setting_type(s) == CONFIG_TYPE_INT
				    ? "; a hex value above 0x7FFFFFFF needs an L suffix" : "");
		if (o->type == T_U32)
			*AT(base, o->off, uint32_t) = (uint32_t)v;
		else
			*AT(base, o->off, int) = (int)v;
		return 0;
	}
	if (o->type == T_BOOL) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(x, s, "'%s' must be a boolean (true or false)", key);
		*AT(base, o->off, bool) = config_setting_get_bool(s);
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(x, s, "'%s' must be a string", key);
	str = config_setting_get_string(s);
	if (o->type == T_ENUM) {
		char list[64] = "";
		for (int i = 0; o->choices[i]; i++) {
			if (strcmp(str, o->choices[i]) == 0) {
				*AT(base, o->off, int) = i;
				return 0;
			}
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", o->choices[i]);
		}
		return fail(x, s, "'%s' must be one of %s (got \"%.64s\")", key, list, str);
	}
	unsigned char addr[16];
	if (o->type == T_ADDR && inet_pton(AF_INET, str, addr) != 1 && inet_pton(AF_INET6, str, addr) != 1)
		return fail(x, s, "'%s' must be a numeric IPv4 or IPv6 address (got \"%.64s\")", key, str);
	size_t len = strlen(str);
	if (len < (size_t)o->min)
		return fail(x, s, "'%s' must not be empty", key);
	if (o->max && len > (size_t)o->max)
		return fail(x, s, "'%s' is too long (%zu bytes; at most %lld)", key, len, o->max);
	if (o->type == T_PATH) {
		struct cfg_path *p = AT(base, o->off, struct cfg_path);
		char what[260];
		p->line = line_of(s);
		snprintf(what, sizeof(what), "'%s'", key);
		return set_path(x, s, &p->path, str, what);
	}
	return set_str(x, AT(base, o->off, char *), str);
}

static int load_list(struct ctx *x, const config_setting_t *s, enum sect sect, void *base,
		     const char *name);

/* Loads the keys of section sect from group g (NULL: absent, all defaults). */
static int load_section(struct ctx *x, const config_setting_t *g, enum sect sect,
			void *base, const char *prefix)
{
	char key[256];
	size_t i;

	for (int k = 0; g && k < config_setting_length(g); k++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)k);
		for (i = 0; i < NOPTS && (cfg_opts[i].sect != sect || strcmp(cfg_opts[i].name, config_setting_name(s))); i++)
			;
		if (i == NOPTS)
			return fail(x, s, "unknown setting '%s'", cfg_join(key, sizeof(key), prefix, config_setting_name(s)));
	}
	for (i = 0; i < NOPTS; i++) {
		const struct opt *o = &cfg_opts[i];
		if (o->sect != sect || o->type == T_OTHER)
			continue;
		const config_setting_t *s = g ? config_setting_get_member(g, o->name) : NULL;
		cfg_join(key, sizeof(key), prefix, o->name);
		if (!s && o->required)
			return fail_at(x, g ? config_setting_source_file(g) : NULL, line_of(g),
				       "missing required setting '%s'", key);
		if (o->type == T_GROUP && s && !config_setting_is_group(s))
			return fail(x, s, "'%s' must be a group { ... }", key);
		/* `[]` is as empty as `()` */
		if (o->type == T_LIST && s && !config_setting_is_list(s) &&
		    !(config_setting_is_array(s) && config_setting_length(s) == 0))
			return fail(x, s, "'%s' must be a list ( ... )%s", key,
				    o->load == load_props ? " of (\"name\", value) pairs" : "");
		int rc = o->load ? o->load(x, s, base, key)
			 : o->type == T_GROUP ? load_section(x, s, o->sub, base, key)
			 : o->type == T_LIST ? load_list(x, s, o->sub, base, key)
			 : load_value(x, o, s, base, key);
		if (rc)
			return rc;
	}
	return 0;
}

/* A list of groups into one of the arrays of cfg_lists, which live in base
 * (struct cfg, or the upstream that holds the subscriptions). */
static int load_list(struct ctx *x, const config_setting_t *s, enum sect sect, void *base,
		     const char *name)
{
	const struct list_info *li = &cfg_lists[sect];
	size_t n = s ? (size_t)config_setting_length(s) : 0;
	char *arr = calloc(n ? n : 1, li->size);
	char key[280]; /* name is at most 256 */

	if (!arr)
		return fail_at(x, NULL, 0, "out of memory");
	/* Both at once, so that cfg_free() can walk whatever was loaded. */
	*AT(base, li->arr, char *) = arr;
	*AT(base, li->count, size_t) = n;
	if (s && n == 0 && sect == S_LISTENER)
		return fail(x, s, "'%s' must not be empty", name);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		void *elem = arr + i * li->size;
		snprintf(key, sizeof(key), "%s[%zu]", name, i);
		if (!config_setting_is_group(e))
			return fail(x, e, "'%s' must be a group { ... }", key);
		*AT(elem, li->line, int) = line_of(e);
		if (load_section(x, e, sect, elem, key) || (li->check && li->check(x, e, elem, key, i)))
			return -1;
	}
	return 0;
}

/* An absolute HTTP path without query or fragment: "/mqtt". */
static bool http_path_ok(const char *p)
{
	if (p[0] != '/')
		return false;
	for (; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '?' || *p == '#')
			return false;
	return true;
}

static int check_listener(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i)
{
	struct cfg_listener *l = elem;
	const config_setting_t *path = config_setting_get_member(e, "path");

	if (l->protocol == CFG_PROTO_MQTT && l->path)
		return fail(x, path, "'%s.path' is only for protocol = \"websocket\"", key);
	if (l->path && !http_path_ok(l->path))
		return fail(x, path, "'%s.path' must be an HTTP path such as \"/mqtt\": '/' first, "
			    "no spaces, '?' or '#' (got \"%.64s\")", key, l->path);
	if (l->protocol == CFG_PROTO_WEBSOCKET && !l->path && set_str(x, &l->path, "/mqtt"))
		return -1;
	/* SO_REUSEPORT would let a duplicate bind silently. */
	for (size_t j = 0; j < i; j++)
		if (l->port && l->port == x->c->listeners[j].port &&
		    strcmp(l->address, x->c->listeners[j].address) == 0)
			return fail(x, e, "'%s' repeats listeners[%zu] (%s port %d)", key, j, l->address, l->port);
	return 0;
}

static int load_tls(struct ctx *x, const config_setting_t *s, void *base, const char *key)
{
	struct cfg_listener *l = base;
	struct cfg_tls *t = &l->tls;

	if (!s)
		return 0;
	l->has_tls = true;
	t->line = line_of(s);
	if (load_section(x, s, S_TLS, base, key))
		return -1;
	if (t->require_client_cert && !t->ca.path)
		return fail(x, config_setting_get_member(s, "require_client_cert"),
			    "'%s.require_client_cert' needs '%s.ca' (the CA certificates that sign "
			    "client certificates)", key, key);
	if (t->identity != CFG_IDENTITY_NONE && !t->ca.path)
		return fail(x, config_setting_get_member(s, "identity"),
			    "'%s.identity' = \"%s\" needs client certificates: set '%s.ca'", key,
			    identities[t->identity], key);
	return 0;
}

static int load_auth(struct ctx *x, const config_setting_t *s, void *base, const char *key)
{
	struct cfg_auth *a = &x->c->auth;
	const config_setting_t *anon = s ? config_setting_get_member(s, "allow_anonymous") : NULL;

	a->line = line_of(s);
	if (load_section(x, s, S_AUTH, base, key))
		return -1;
	a->allow_anonymous_line = line_of(anon);
	if (!anon)
		a->allow_anonymous = !a->password_file.path;
	return 0;
}

static int check_route(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i)
{
	const struct cfg_route *r = elem;
	const config_setting_t *pt = config_setting_get_member(e, "payload_text");

	(void)i;
	if (pt && r->format != CFG_FORMAT_JSON)
		return fail(x, pt, "'%s.payload_text' applies to format = \"json\" only", key);
	return 0;
}

/* downlink[i].user_properties: "*" or an array of header names. */
static int load_user_props(struct ctx *x, const config_setting_t *s, struct cfg_downlink *d,
			   const char *key)
{
	static const char what[] = "must be \"*\" or an array of Kafka header names";
	size_t n;

	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (strcmp(config_setting_get_string(s), "*") != 0)
			return fail(x, s, "'%s.user_properties' %s (got \"%.64s\")", key, what,
				    config_setting_get_string(s));
		d->user_props_all = true;
		return 0;
	}
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(x, s, "'%s.user_properties' %s", key, what);
	n = (size_t)config_setting_length(s);
	if (!(d->user_props = calloc(n ? n : 1, sizeof(*d->user_props))))
		return fail_at(x, NULL, 0, "out of memory");
	for (size_t j = 0; j < n; j++) {
		const config_setting_t *v = config_setting_get_elem(s, (unsigned)j);
		const char *name = config_setting_type(v) == CONFIG_TYPE_STRING
				   ? config_setting_get_string(v) : NULL;
		if (!name || !*name || strlen(name) > 65535)
			return fail(x, v, "'%s.user_properties' %s (non-empty strings, at most 65535 "
				    "bytes)", key, what);
		if (strcmp(name, "*") == 0)
			return fail(x, v, "'%s.user_properties': \"*\" stands alone, not in an array",
				    key);
		/* The mqtt.* headers set fields of the message, never user properties. */
		if (strncmp(name, "mqtt.", 5) == 0)
			return fail(x, v, "'%s.user_properties': \"%.64s\": the mqtt.* headers are "
				    "the gateway's (kafka.md)", key, name);
		if (set_str(x, &d->user_props[j], name))
			return -1;
		d->nuser_props = j + 1;
	}
	return 0;
}

static int check_downlink(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i)
{
	struct cfg_downlink *d = elem;
	const config_setting_t *one = config_setting_get_member(e, "topic");
	const config_setting_t *many = config_setting_get_member(e, "topics");
	size_t n = many ? (size_t)config_setting_length(many) : 1;

	(void)i;
	if (one && many)
		return fail(x, many, "'%s' has both 'topic' and 'topics'; use one", key);
	if (!one && !many)
		return fail(x, e, "missing required setting '%s.topic' (or 'topics')", key);
	if (many && (config_setting_is_group(many) || n == 0))
		return fail(x, many, "'%s.topics' must be a non-empty array of non-empty strings", key);
	if (load_user_props(x, config_setting_get_member(e, "user_properties"), d, key))
		return -1;
	if (!(d->topics = calloc(n, sizeof(*d->topics))))
		return fail_at(x, NULL, 0, "out of memory");
	d->ntopics = n;
	for (i = 0; i < n; i++) {
		const config_setting_t *v = many ? config_setting_get_elem(many, (unsigned)i) : one;
		if (config_setting_type(v) != CONFIG_TYPE_STRING || !*config_setting_get_string(v))
			return fail(x, v, many ? "'%s.topics' must be a non-empty array of non-empty strings"
				    : "'%s.topic' must be a non-empty string", key);
		if (strlen(config_setting_get_string(v)) > MAX_STR)
			return fail(x, v, "'%s.%s' is too long (%zu bytes; at most %d)", key,
				    many ? "topics" : "topic", strlen(config_setting_get_string(v)), MAX_STR);
		if (set_str(x, &d->topics[i], config_setting_get_string(v)))
			return -1;
	}
	return 0;
}

static int load_metrics(struct ctx *x, const config_setting_t *s, void *base, const char *key)
{
	struct cfg_metrics *m = &x->c->metrics;

	(void)base;
	if (!s)
		return 0;
	x->c->has_metrics = true;
	m->line = line_of(s);
	if (load_section(x, s, S_METRICS, m, key))
		return -1;
	if (m->protect_metrics && !m->token_file.path)
		return fail(x, config_setting_get_member(s, "protect_metrics"),
			    "'%s.protect_metrics' needs '%s.token_file'", key, key);
	return 0;
}

/* An upstream name labels metrics and is named by downlink targets. */
static bool upstream_name_ok(const char *n)
{
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
		      *n == '.' || *n == '_' || *n == '-'))
			return false;
	return true;
}

static int load_upstream_tls(struct ctx *x, const config_setting_t *s, void *base, const char *key)
{
	struct cfg_upstream *u = base;
	struct cfg_upstream_tls *t = &u->tls;

	if (!s)
		return 0;
	u->has_tls = true;
	t->line = line_of(s);
	if (load_section(x, s, S_UPSTREAM_TLS, base, key))
		return -1;
	if (!t->cert.path != !t->key.path)
		return fail(x, s, "'%s' needs both 'cert' and 'key' (a client certificate and its key), "
			    "or neither", key);
	return 0;
}

static int check_upstream_sub(struct ctx *x, const config_setting_t *e, void *elem, const char *key,
			      size_t i)
{
	const struct cfg_upstream_sub *subs = (const struct cfg_upstream_sub *)elem - i;

	for (size_t j = 0; j < i; j++)
		if (strcmp(subs[j].filter, subs[i].filter) == 0)
			return fail(x, e, "'%s' repeats the filter of line %d", key, subs[j].line);
	return 0;
}

static int check_upstream(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i)
{
	struct cfg_upstream *u = elem;
	char id[80];

	if (!upstream_name_ok(u->name))
		return fail(x, config_setting_get_member(e, "name"), "'%s.name' may hold only letters, "
			    "digits, '.', '_' and '-' (got \"%.64s\")", key, u->name);
	for (size_t j = 0; j < i; j++)
		if (strcmp(u->name, x->c->upstreams[j].name) == 0)
			return fail(x, e, "'%s' repeats the name \"%s\" of upstreams[%zu] (line %d)", key,
				    u->name, j, x->c->upstreams[j].line);
	if (u->protocol != 4)
		return fail(x, config_setting_get_member(e, "protocol"), "'%s.protocol' = %d is not "
			    "served: only 4 (MQTT 3.1.1) is, for now", key, u->protocol);
	if (u->password_file.path && !u->username)
		return fail(x, config_setting_get_member(e, "password_file"), "'%s.password_file' needs "
			    "'%s.username' (MQTT 3.1.1 sends no password without a user name)", key, key);
	if (u->reconnect_max_ms < u->reconnect_min_ms)
		return fail(x, config_setting_get_member(e, "reconnect_max_ms"), "'%s.reconnect_max_ms' "
			    "(%d) must be at least '%s.reconnect_min_ms' (%d)", key, u->reconnect_max_ms,
			    key, u->reconnect_min_ms);
	if (!u->port)
		u->port = u->has_tls ? 8883 : 1883;
	snprintf(id, sizeof(id), "kafkagate-%s", u->name);
	if (!u->client_id && set_str(x, &u->client_id, id))
		return -1;
	return 0;
}

/* A downlink target: "local" (the default) or "upstream:NAME" of a known upstream. */
static int check_targets(struct ctx *x, const config_setting_t *down)
{
	static const char pre[] = "upstream:";
	const struct cfg *c = x->c;

	for (size_t i = 0; i < c->ndownlinks; i++) {
		struct cfg_downlink *d = &c->downlinks[i];
		const config_setting_t *at =
			config_setting_get_member(config_setting_get_elem(down, (unsigned)i), "target");
		bool found = false;
		if (!d->target)
			continue;
		if (strcmp(d->target, "local") == 0) {
			free(d->target);
			d->target = NULL;
			continue;
		}
		if (strncmp(d->target, pre, sizeof(pre) - 1) != 0)
			return fail(x, at, "'downlink[%zu].target' must be \"local\" or \"upstream:NAME\" "
				    "(got \"%.64s\")", i, d->target);
		for (size_t j = 0; j < c->nupstreams && !found; j++)
			found = strcmp(c->upstreams[j].name, d->target + sizeof(pre) - 1) == 0;
		if (!found)
			return fail(x, at, "'downlink[%zu].target' names no upstream (\"%.64s\"; the "
				    "upstreams list has %zu)", i, d->target + sizeof(pre) - 1,
				    c->nupstreams);
		/* Keep the name only: that is what the broker looks up. */
		memmove(d->target, d->target + sizeof(pre) - 1, strlen(d->target) - sizeof(pre) + 2);
	}
	return 0;
}

size_t cfg_kafka_value_max(const char *name)
{
	size_t n = strlen(name);

	return n >= 4 && strcmp(name + n - 4, ".pem") == 0 ? CFG_KAFKA_PEM_MAX : CFG_KAFKA_VALUE_MAX;
}

/* Property names contain dots, which libconfig 1.5 does not allow in setting
 * names, quoted or not: hence ( ("linger.ms", "5"), ... ). Values are never
 * put in messages: they may be secrets. */
static int load_props(struct ctx *x, const config_setting_t *s, void *base, const char *key)
{
	static const size_t pre = sizeof(CFG_KAFKA_FILE_PREFIX) - 1;
	struct cfg_kafka *k = &x->c->kafka;
	size_t n = s ? (size_t)config_setting_length(s) : 0;
	char num[24];

	(void)base;
	if (!(k->props = calloc(n ? n : 1, sizeof(*k->props))))
		return fail_at(x, NULL, 0, "out of memory");
	k->nprops = n;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const config_setting_t *name = NULL, *v = NULL;
		const char *val = num, *nm;
		k->props[i].line = line_of(e);
		if ((config_setting_is_list(e) || config_setting_is_array(e)) && config_setting_length(e) == 2) {
			name = config_setting_get_elem(e, 0);
			v = config_setting_get_elem(e, 1);
		}
		if (!name || config_setting_type(name) != CONFIG_TYPE_STRING || !*config_setting_get_string(name))
			return fail(x, e, "'%s[%zu]' must be a (\"name\", value) pair", key, i);
		nm = config_setting_get_string(name);
		if (strlen(nm) > CFG_KAFKA_NAME_MAX)
			return fail(x, e, "'%s[%zu]': the property name is too long (%zu bytes; at most %d)",
				    key, i, strlen(nm), CFG_KAFKA_NAME_MAX);
		if (config_setting_type(v) == CONFIG_TYPE_STRING)
			val = config_setting_get_string(v);
		else if (config_setting_type(v) == CONFIG_TYPE_BOOL)
			val = config_setting_get_bool(v) ? "true" : "false";
		else if (config_setting_type(v) == CONFIG_TYPE_INT || config_setting_type(v) == CONFIG_TYPE_INT64)
			snprintf(num, sizeof(num), "%lld", config_setting_get_int64(v));
		else
			return fail(x, e, "Kafka property '%s' must be a string, integer or boolean", nm);
		for (size_t j = 0; j < i; j++)
			if (strcmp(k->props[j].name, nm) == 0)
				return fail(x, e, "Kafka property '%s' repeats line %d", k->props[j].name, k->props[j].line);
		if (set_str(x, &k->props[i].name, nm))
			return -1;
		if (strncmp(val, CFG_KAFKA_FILE_PREFIX, pre) != 0) {
			if (strlen(val) > cfg_kafka_value_max(nm))
				return fail(x, e, "Kafka property '%s': the value is too long (%zu bytes; at most %zu)",
					    nm, strlen(val), cfg_kafka_value_max(nm));
			if (set_str(x, &k->props[i].value, val))
				return -1;
			continue;
		}
		char *path = NULL, prop[CFG_KAFKA_NAME_MAX + 32];
		snprintf(prop, sizeof(prop), "Kafka property '%s'", nm);
		if (!val[pre])
			return fail(x, e, "%s: \"%s\" needs a file name", prop, CFG_KAFKA_FILE_PREFIX);
		if (strlen(val + pre) >= PATH_MAX)
			return fail(x, e, "%s: the file name is too long (at most %d bytes)", prop, PATH_MAX - 1);
		if (set_path(x, e, &path, val + pre, prop))
			return -1;
		k->props[i].value = malloc(pre + strlen(path) + 1);
		if (k->props[i].value)
			sprintf(k->props[i].value, "%s%s", CFG_KAFKA_FILE_PREFIX, path);
		free(path);
		if (!k->props[i].value)
			return fail_at(x, NULL, 0, "out of memory");
	}
	return 0;
}

/*
 * What libconfig 1.5 lets through, found in the text first:
 * - it reads a plain integer literal with atoi(), so 4294967297 silently
 *   becomes 1 and would pass any range check;
 * - a file that ends inside a string or a comment (truncated) loads as if
 *   that tail were not there.
 * Skips comments, strings, names, floats and 64-bit (L) literals. Files
 * pulled in with @include are not scanned.
 */
static int check_text(struct ctx *x, const char *p)
{
	int line = 1;

	while (*p) {
		const char *start = p;
		int start_line = line;
		char *end;
		if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
				line += *p == '\n';
			if (!*p)
				return fail_at(x, NULL, start_line, "unterminated /* comment (is the file truncated?)");
			p += 2;
		} else if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				p += p[0] == '\\' && p[1];
				line += *p == '\n';
			}
			if (!*p)
				return fail_at(x, NULL, start_line, "unterminated string (is the file truncated?)");
			p++;
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '*')
				p++;
		} else if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1])) ||
			   ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
			bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
			errno = 0;
			unsigned long long u = hex ? strtoull(p, &end, 16) : 0;
			long long v = hex ? 0 : strtoll(p, &end, 10);
			bool over = errno == ERANGE || u > UINT32_MAX || v > INT32_MAX || v < INT32_MIN;
			p = end > p ? end : p + 1;
			if (*p == 'L' || *p == '.' || *p == 'e' || *p == 'E' || *start == '.') {
				while (isalnum((unsigned char)*p) || *p == '.' ||
				       ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E')))
					p++;
			} else if (over) {
				return fail_at(x, NULL, line, "integer %.*s is out of range (%d..%d; "
					       "write %.*sL for a 64-bit integer)", (int)(p - start), start,
					       INT32_MIN, INT32_MAX, (int)(p - start), start);
			}
		} else {
			line += *p++ == '\n';
		}
	}
	return 0;
}

/* What no single setting can check: called once everything is loaded. */
static int check_whole(struct ctx *x, const config_setting_t *root)
{
	const struct cfg *c = x->c;
	const config_setting_t *routes = config_setting_get_member(root, "routes");
	const config_setting_t *down = config_setting_get_member(root, "downlink");
	const config_setting_t *limits = config_setting_get_member(root, "limits");

	if (c->nlisteners == 0)
		return fail_at(x, NULL, 0, "no listeners: add listeners = ( { port = 1883; } );");
	/* The mock cluster keeps nothing: it must be asked for, never fallen into. */
	if (!c->kafka.brokers_line && (c->nroutes || c->ndownlinks))
		return fail(x, c->nroutes ? routes : down,
			    "%s need kafka.brokers: set it to the Kafka bootstrap servers (\"host:port,...\"), "
			    "or to \"embedded\" for the in-process mock cluster, which keeps nothing",
			    c->nroutes ? "routes" : "downlink mappings");
	if (check_targets(x, down))
		return -1;
	if (c->limits.max_partial_bytes < c->limits.max_packet_size) {
		const config_setting_t *at = config_setting_get_member(limits, "max_partial_bytes");
		return fail(x, at ? at : config_setting_get_member(limits, "max_packet_size"),
			    "'limits.max_partial_bytes' (%d) must be at least 'limits.max_packet_size' (%d)",
			    c->limits.max_partial_bytes, c->limits.max_packet_size);
	}
	return 0;
}

static int parse(const char *name, const char *text, size_t len, struct cfg **out, char *err,
		 size_t errlen)
{
	struct ctx x = { name, calloc(1, sizeof(struct cfg)), err, errlen };
	config_t lc;
	int rc = -1;

	config_init(&lc);
	if (!x.c) {
		fail_at(&x, NULL, 0, "out of memory");
		goto cleanup;
	}
	if (set_str(&x, &x.c->path, name))
		goto cleanup;
	if (strlen(text) != len) {
		fail_at(&x, NULL, 0, "not a text file (contains NUL bytes)");
		goto cleanup;
	}
	if (len > MAX_FILE_BYTES) {
		fail_at(&x, NULL, 0, "larger than %u bytes", MAX_FILE_BYTES);
		goto cleanup;
	}
	if (!config_read_string(&lc, text)) {
		fail_at(&x, config_error_file(&lc), config_error_line(&lc), "%s", config_error_text(&lc));
		goto cleanup;
	}
	if (check_text(&x, text))
		goto cleanup;
	x.c->kafka.line = line_of(config_lookup(&lc, "kafka"));
	x.c->state.line = line_of(config_lookup(&lc, "state"));
	x.c->kafka.brokers_line = line_of(config_lookup(&lc, "kafka.brokers"));
	rc = load_section(&x, config_root_setting(&lc), S_TOP, x.c, "");
	if (rc == 0)
		rc = check_whole(&x, config_root_setting(&lc));
cleanup:
	config_destroy(&lc);
	if (rc == 0)
		*out = x.c;
	else
		cfg_free(x.c);
	return rc;
}

int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen)
{
	struct ctx x = { path, NULL, err, errlen };
	size_t len;
	char *text = util_read_file(path, MAX_FILE_BYTES, &len);
	int rc;

	if (!text)
		return fail_at(&x, NULL, 0, "cannot read: %s", strerror(errno));
	rc = parse(path, text, len, out, err, errlen);
	free(text);
	return rc;
}

int cfg_parse_string(const char *text, const char *name, struct cfg **out, char *err, size_t errlen)
{
	return parse(name, text, strlen(text), out, err, errlen);
}

static void path_release(struct cfg_path *p)
{
	free(p->path);
}

void cfg_free(struct cfg *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct cfg_listener *l = &c->listeners[i];
		free(l->address);
		free(l->path);
		path_release(&l->tls.cert);
		path_release(&l->tls.key);
		path_release(&l->tls.ca);
	}
	free(c->listeners);
	free(c->metrics.address);
	path_release(&c->metrics.token_file);
	path_release(&c->auth.password_file);
	path_release(&c->auth.acl_file);
	free(c->kafka.brokers);
	for (size_t i = 0; i < c->kafka.nprops; i++) {
		free(c->kafka.props[i].name);
		free(c->kafka.props[i].value);
	}
	free(c->kafka.props);
	free(c->kafka.dead_letter_topic);
	free(c->kafka.instance_id);
	free(c->state.instance_id);
	free(c->state.topic_prefix);
	for (size_t i = 0; i < c->nroutes; i++) {
		free(c->routes[i].filter);
		free(c->routes[i].topic);
		free(c->routes[i].key);
	}
	free(c->routes);
	for (size_t i = 0; i < c->ndownlinks; i++) {
		for (size_t j = 0; j < c->downlinks[i].ntopics; j++)
			free(c->downlinks[i].topics[j]);
		free(c->downlinks[i].topics);
		free(c->downlinks[i].group);
		free(c->downlinks[i].mqtt_topic);
		free(c->downlinks[i].target);
		for (size_t j = 0; j < c->downlinks[i].nuser_props; j++)
			free(c->downlinks[i].user_props[j]);
		free(c->downlinks[i].user_props);
	}
	free(c->downlinks);
	for (size_t i = 0; i < c->nupstreams; i++) {
		struct cfg_upstream *u = &c->upstreams[i];
		free(u->name);
		free(u->address);
		free(u->client_id);
		free(u->username);
		path_release(&u->password_file);
		path_release(&u->tls.ca);
		path_release(&u->tls.cert);
		path_release(&u->tls.key);
		free(u->tls.server_name);
		for (size_t j = 0; j < u->nsubs; j++)
			free(u->subs[j].filter);
		free(u->subs);
		free(u->prefix);
	}
	free(c->upstreams);
	free(c->path);
	free(c);
}
