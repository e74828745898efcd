/* cfg.c - see cfg.h. The only file that includes libconfig.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg_int.h"
#include "core/util.h"

#define MAX_FILE_BYTES (16u << 20)

struct ctx {
	const char *path;
	struct cfg *c;
	char *err;
	size_t errlen;
};

static const char *const levels[] = { "error", "warn", "info", "debug", NULL }; /* enum log_level */
static const char *const formats[] = { "raw", "json", NULL };
static const char *const modes[] = { "group", "broadcast", NULL };

static int load_metrics(struct ctx *x, const config_setting_t *s);
static int load_props(struct ctx *x, const config_setting_t *s);
static int check_listener(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);
static int check_downlink(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i);

#define C(f) offsetof(struct cfg, f)
#define E(f) offsetof(struct cfg_endpoint, f)
#define R(f) offsetof(struct cfg_route, f)
#define D(f) offsetof(struct cfg_downlink, f)
#define INT(s, n, o, d, lo, hi, rl) { s, n, T_INT, o, d, lo, hi, NULL, NULL, false, rl, 0, NULL }
#define BOOL(s, n, o, d, rl) { s, n, T_BOOL, o, d, 0, 1, NULL, NULL, false, rl, 0, NULL }
#define STR(s, n, o, d, minlen, req, rl) { s, n, T_STR, o, 0, minlen, 0, d, NULL, req, rl, 0, NULL }
#define ADDR(s, n, o, d) { s, n, T_ADDR, o, 0, 0, 0, d, NULL, false, false, 0, NULL }
#define ENUM(s, n, o, d, ch, rl) { s, n, T_ENUM, o, d, 0, 0, NULL, ch, false, rl, 0, NULL }
#define NEST(s, n, t, sub, load, rl) { s, n, t, 0, 0, 0, 0, NULL, NULL, false, rl, sub, load }

/* Every setting: its default, limits and whether a reload may change it. */
const struct opt cfg_opts[] = {
	NEST(S_TOP, "listeners", T_LIST, S_LISTENER, NULL, false),
	INT(S_TOP, "workers", C(workers), 0, 0, 256, false),
	NEST(S_TOP, "limits", T_GROUP, S_LIMITS, NULL, true),
	NEST(S_TOP, "log", T_GROUP, S_LOG, NULL, true),
	NEST(S_TOP, "metrics", T_GROUP, S_METRICS, load_metrics, false),
	NEST(S_TOP, "kafka", T_GROUP, S_KAFKA, NULL, true),
	NEST(S_TOP, "routes", T_LIST, S_ROUTE, NULL, true),
	NEST(S_TOP, "downlink", T_LIST, S_DOWNLINK, NULL, false),

	INT(S_LIMITS, "max_connections", C(limits.max_connections), 100000, 1, 10000000, true),
	INT(S_LIMITS, "max_packet_size", C(limits.max_packet_size), 1048576, 16, 268435455, true),
	INT(S_LIMITS, "max_inflight", C(limits.max_inflight), 32, 1, 65535, true),
	INT(S_LIMITS, "max_queued_messages", C(limits.max_queued_messages), 1000, 0, 10000000, true),
	INT(S_LIMITS, "max_output_bytes", C(limits.max_output_bytes), 1048576, 4096, 1 << 30, true),
	INT(S_LIMITS, "connect_timeout", C(limits.connect_timeout), 10, 1, 3600, true),

	ENUM(S_LOG, "level", C(log_level), 2, levels, true),
	BOOL(S_LOG, "syslog", C(log_syslog), false, true),

	STR(S_KAFKA, "brokers", C(kafka.brokers), "embedded", 1, false, false),
	NEST(S_KAFKA, "properties", T_LIST, S_PROPS, load_props, false),
	STR(S_KAFKA, "dead_letter_topic", C(kafka.dead_letter_topic), NULL, 1, false, true),
	INT(S_KAFKA, "flush_timeout", C(kafka.flush_timeout), 10, 0, 600, true),

	ADDR(S_LISTENER, "address", E(address), "127.0.0.1"),
	INT(S_LISTENER, "port", E(port), 1883, 0, 65535, false),
	ADDR(S_METRICS, "address", E(address), "127.0.0.1"),
	INT(S_METRICS, "port", E(port), 9100, 0, 65535, false),

	STR(S_ROUTE, "filter", R(filter), NULL, 1, true, true),
	STR(S_ROUTE, "topic", R(topic), NULL, 1, true, true),
	STR(S_ROUTE, "key", R(key), NULL, 0, false, true),
	ENUM(S_ROUTE, "format", R(format), CFG_FORMAT_RAW, formats, true),

	{ S_DOWNLINK, "topic", T_OTHER, .reloadable = false },
	{ S_DOWNLINK, "topics", T_OTHER, .reloadable = false },
	STR(S_DOWNLINK, "group", D(group), "kafkagate", 1, false, false),
	STR(S_DOWNLINK, "mqtt_topic", D(mqtt_topic), NULL, 1, true, false),
	INT(S_DOWNLINK, "qos", D(qos), 0, 0, 2, false),
	BOOL(S_DOWNLINK, "retain", D(retain), false, false),
	ENUM(S_DOWNLINK, "format", D(format), CFG_FORMAT_RAW, formats, false),
	ENUM(S_DOWNLINK, "mode", D(mode), CFG_MODE_GROUP, modes, false),
	INT(S_DOWNLINK, "ack_timeout", D(ack_timeout), 30, 1, 86400, false),
};
#define NOPTS (sizeof(cfg_opts) / sizeof(cfg_opts[0]))
const size_t cfg_nopts = NOPTS;

const struct list_info cfg_lists[S_PROPS + 1] = {
	[S_LISTENER] = { C(listeners), C(nlisteners), sizeof(struct cfg_endpoint), E(line), check_listener },
	[S_ROUTE] = { C(routes), C(nroutes), sizeof(struct cfg_route), R(line), NULL },
	[S_DOWNLINK] = { C(downlinks), C(ndownlinks), sizeof(struct cfg_downlink), D(line), check_downlink },
};

/* Enum members are written through int *. */
_Static_assert(sizeof(enum cfg_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_mode) == sizeof(int), "enum size");

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

#define fail(x, s, ...) fail_at(x, config_setting_source_file(s), line_of(s), __VA_ARGS__)

static int line_of(const config_setting_t *s) { return s ? (int)config_setting_source_line(s) : 0; }

static int set_str(struct ctx *x, char **dst, const char *val)
{
	if (val && !(*dst = strdup(val)))
		return fail_at(x, NULL, 0, "out of memory");
	return 0;
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
	else if (!s)
		*AT(base, o->off, int) = (int)o->def;
	if (!s)
		return 0;
	if (o->type == T_INT) {
		if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
			return fail(x, s, "'%s' must be an integer", key);
		v = config_setting_get_int64(s);
		if (v < o->min || v > o->max)
			return fail(x, s, "'%s' must be in %lld..%lld (got %lld)", key, o->min, o->max, v);
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
		return fail(x, s, "'%s' must be one of %s (got \"%s\")", key, list, str);
	}
	unsigned char addr[16];
	if (o->type == T_ADDR && inet_pton(AF_INET, str, addr) != 1 && inet_pton(AF_INET6, str, addr) != 1)
		return fail(x, s, "'%s' must be a numeric IPv4 or IPv6 address (got \"%s\")", key, str);
	if (strlen(str) < (size_t)o->min)
		return fail(x, s, "'%s' must not be empty", key);
	return set_str(x, AT(base, o->off, char *), str);
}

static int load_list(struct ctx *x, const config_setting_t *s, enum sect sect, const char *name);

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
		int rc = o->load ? o->load(x, s)
			 : o->type == T_GROUP ? load_section(x, s, o->sub, base, key)
			 : o->type == T_LIST ? load_list(x, s, o->sub, key)
			 : load_value(x, o, s, base, key);
		if (rc)
			return rc;
	}
	return 0;
}

/* A list of groups into one of the arrays of struct cfg. Absent listeners
 * mean one listener with the defaults. */
static int load_list(struct ctx *x, const config_setting_t *s, enum sect sect, const char *name)
{
	const struct list_info *li = &cfg_lists[sect];
	size_t n = s ? (size_t)config_setting_length(s) : sect == S_LISTENER;
	char *arr = calloc(n ? n : 1, li->size);
	char key[280]; /* name is at most 256 */

	if (!arr)
		return fail_at(x, NULL, 0, "out of memory");
	/* Both at once, so that cfg_free() can walk whatever was loaded. */
	*AT(x->c, li->arr, char *) = arr;
	*AT(x->c, li->count, size_t) = n;
	if (s && n == 0 && sect == S_LISTENER)
		return fail(x, s, "'%s' must not be empty", name);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = s ? config_setting_get_elem(s, (unsigned)i) : NULL;
		void *elem = arr + i * li->size;
		snprintf(key, sizeof(key), "%s[%zu]", name, i);
		if (e && !config_setting_is_group(e))
			return fail(x, e, "'%s' must be a group { ... }", key);
		*AT(elem, li->line, int) = line_of(e);
		if (load_section(x, e, sect, elem, key) || (li->check && li->check(x, e, elem, key, i)))
			return -1;
	}
	return 0;
}

static int check_listener(struct ctx *x, const config_setting_t *e, void *elem, const char *key, size_t i)
{
	const struct cfg_endpoint *l = elem;

	/* SO_REUSEPORT would let a duplicate bind silently. */
	for (size_t j = 0; j < i; j++)
		if (l->port && l->port == x->c->listeners[j].port &&
		    strcmp(l->address, x->c->listeners[j].address) == 0)
			return fail(x, e, "'%s' repeats listeners[%zu] (%s port %d)", key, j, l->address, l->port);
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
	if (!(d->topics = calloc(n, sizeof(*d->topics))))
		return fail_at(x, NULL, 0, "out of memory");
	d->ntopics = n;
	for (i = 0; i < n; i++) {
		const config_setting_t *v = many ? config_setting_get_elem(many, (unsigned)i) : one;
		if (config_setting_type(v) != CONFIG_TYPE_STRING || !*config_setting_get_string(v))
			return fail(x, v, many ? "'%s.topics' must be a non-empty array of non-empty strings"
				    : "'%s.topic' must be a non-empty string", key);
		if (set_str(x, &d->topics[i], config_setting_get_string(v)))
			return -1;
	}
	return 0;
}

static int load_metrics(struct ctx *x, const config_setting_t *s)
{
	if (!s)
		return 0;
	x->c->has_metrics = true;
	x->c->metrics.line = line_of(s);
	return load_section(x, s, S_METRICS, &x->c->metrics, "metrics");
}

/* Property names contain dots, which libconfig 1.5 does not allow in setting
 * names, quoted or not: hence ( ("linger.ms", "5"), ... ). */
static int load_props(struct ctx *x, const config_setting_t *s)
{
	struct cfg_kafka *k = &x->c->kafka;
	size_t n = s ? (size_t)config_setting_length(s) : 0;
	char num[24];

	if (!(k->props = calloc(n ? n : 1, sizeof(*k->props))))
		return fail_at(x, NULL, 0, "out of memory");
	k->nprops = n;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const config_setting_t *name = NULL, *v = NULL;
		const char *val = num;
		k->props[i].line = line_of(e);
		if ((config_setting_is_list(e) || config_setting_is_array(e)) && config_setting_length(e) == 2) {
			name = config_setting_get_elem(e, 0);
			v = config_setting_get_elem(e, 1);
		}
		if (!name || config_setting_type(name) != CONFIG_TYPE_STRING || !*config_setting_get_string(name))
			return fail(x, e, "'kafka.properties[%zu]' must be a (\"name\", value) pair", i);
		if (config_setting_type(v) == CONFIG_TYPE_STRING)
			val = config_setting_get_string(v);
		else if (config_setting_type(v) == CONFIG_TYPE_BOOL)
			val = config_setting_get_bool(v) ? "true" : "false";
		else if (config_setting_type(v) == CONFIG_TYPE_INT || config_setting_type(v) == CONFIG_TYPE_INT64)
			snprintf(num, sizeof(num), "%lld", config_setting_get_int64(v));
		else
			return fail(x, e, "Kafka property '%s' must be a string, integer or boolean",
				    config_setting_get_string(name));
		for (size_t j = 0; j < i; j++)
			if (strcmp(k->props[j].name, config_setting_get_string(name)) == 0)
				return fail(x, e, "Kafka property '%s' repeats line %d", k->props[j].name, k->props[j].line);
		if (set_str(x, &k->props[i].name, config_setting_get_string(name)) ||
		    set_str(x, &k->props[i].value, val))
			return -1;
	}
	return 0;
}

/*
 * libconfig 1.5 reads a plain integer literal with atoi(), so 4294967297
 * silently becomes 1 and would pass any range check: find such literals in
 * the text first. Skips comments, strings, names, floats and 64-bit (L)
 * literals. Files pulled in with @include are not scanned.
 */
static int check_int_literals(struct ctx *x, const char *p)
{
	int line = 1;

	while (*p) {
		const char *start = p;
		char *end;
		if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
				line += *p == '\n';
			p += *p ? 2 : 0;
		} else if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				p += p[0] == '\\' && p[1];
				line += *p == '\n';
			}
			p += *p ? 1 : 0;
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
				return fail_at(x, NULL, line, "integer %.*s is out of range (%d..%d)",
					       (int)(p - start), start, INT32_MIN, INT32_MAX);
			}
		} else {
			line += *p++ == '\n';
		}
	}
	return 0;
}

int cfg_load(const char *path, struct cfg **out, char *err, size_t errlen)
{
	struct ctx x = { path, calloc(1, sizeof(struct cfg)), err, errlen };
	config_t lc;
	size_t len;
	char *text = NULL;
	int rc = -1;

	config_init(&lc);
	if (!x.c) {
		fail_at(&x, NULL, 0, "out of memory");
		goto cleanup;
	}
	if (set_str(&x, &x.c->path, path))
		goto cleanup;
	if (!(text = util_read_file(path, MAX_FILE_BYTES, &len))) {
		fail_at(&x, NULL, 0, "cannot read: %s", strerror(errno));
		goto cleanup;
	}
	if (strlen(text) != len) {
		fail_at(&x, NULL, 0, "not a text file (contains NUL bytes)");
		goto cleanup;
	}
	if (!config_read_string(&lc, text)) {
		fail_at(&x, config_error_file(&lc), config_error_line(&lc), "%s", config_error_text(&lc));
		goto cleanup;
	}
	if (check_int_literals(&x, text))
		goto cleanup;
	x.c->kafka.line = line_of(config_lookup(&lc, "kafka"));
	rc = load_section(&x, config_root_setting(&lc), S_TOP, x.c, "");
cleanup:
	config_destroy(&lc);
	free(text);
	if (rc == 0)
		*out = x.c;
	else
		cfg_free(x.c);
	return rc;
}

void cfg_free(struct cfg *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nlisteners; i++)
		free(c->listeners[i].address);
	free(c->listeners);
	free(c->metrics.address);
	free(c->kafka.brokers);
	for (size_t i = 0; i < c->kafka.nprops; i++) {
		free(c->kafka.props[i].name);
		free(c->kafka.props[i].value);
	}
	free(c->kafka.props);
	free(c->kafka.dead_letter_topic);
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
	}
	free(c->downlinks);
	free(c->path);
	free(c);
}
