/*
 * template.h - "${...}" templates for Kafka topics, record keys and MQTT topics.
 *
 * A template is compiled once (at config load) into literal and variable
 * segments and rendered many times (per message) into a caller's struct buf.
 * Rendering allocates nothing beyond the growth of that buffer, except for the
 * one-time lazy parse of a record value for ${json:...} (see template_ctx).
 *
 * Uplink variables (MQTT publish -> Kafka record):
 *   ${clientid}  ${username}  ${topic}  ${topic[N]} (level N, 0-based)
 * Downlink variables (Kafka record -> MQTT publish):
 *   ${key}  ${header:NAME}  ${json:a.b.0.c}  ${kafka_topic}
 * A ${json:} path walks object members by name; an element that is a decimal
 * number also indexes arrays. Strings fill with their raw UTF-8 bytes, numbers
 * and true/false with their JSON text (reals as jansson prints them, with up
 * to 17 significant digits); objects, arrays and null cannot fill. The
 * value must be a JSON object or array jansson accepts (integers wider than
 * 64 bits make it TEMPLATE_ERR_NOT_JSON).
 * Names and paths cannot contain '}' and paths cannot name keys containing
 * '.'. A '$' not followed by '{' is literal; there is no way to write a
 * literal "${".
 *
 * Rendering does not validate the result (a ${topic} may put '/' into a Kafka
 * topic name, a ${key} may be empty): the caller checks what it builds.
 *
 * Pure: no I/O, no globals, no logging. A compiled template is immutable and
 * may be rendered from any number of threads at once; a template_ctx belongs
 * to one thread.
 */
#ifndef KG_TEMPLATE_H
#define KG_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct json_t; /* jansson's json_t, so that callers need not include jansson.h */
struct template;

enum template_kind {
	TEMPLATE_UPLINK = 1,
	TEMPLATE_DOWNLINK = 2,
};

/* template_render() results: 0, or why the template cannot be filled. */
enum template_err {
	TEMPLATE_OK = 0,
	TEMPLATE_ERR_LEVEL = -1,    /* ${topic[N]}: the topic has no level N */
	TEMPLATE_ERR_USERNAME = -2, /* ${username}: the client gave none */
	TEMPLATE_ERR_KEY = -3,      /* ${key}: the record has no key (NULL) */
	TEMPLATE_ERR_HEADER = -4,   /* ${header:NAME}: no such header */
	TEMPLATE_ERR_NOT_JSON = -5, /* ${json:}: the value is not a JSON object/array */
	TEMPLATE_ERR_JSON_PATH = -6,/* ${json:}: path absent, or object/array/null */
	TEMPLATE_ERR_NOMEM = -7,    /* out of memory */
};

/*
 * Looks up a record header by NUL-terminated name (the last one wins when a
 * name repeats: the caller decides). Returns 0 and sets *val / *len (val may
 * be NULL when len is 0), or -1 when the record has no such header. The bytes
 * are borrowed and must stay valid until template_render() returns.
 */
typedef int (*template_header_fn)(void *ud, const char *name, const void **val, size_t *len);

/*
 * What a render may read. Initialise with template_ctx_init(), fill the fields
 * of the kind being rendered, render any number of templates for the same
 * message or record, then template_ctx_release(). All pointers are borrowed
 * and must outlive the ctx's use; strings need no NUL terminator.
 */
struct template_ctx {
	/* uplink */
	const char *clientid;
	size_t clientid_len;
	const char *username;      /* NULL: connected without a username */
	size_t username_len;
	const char *topic;
	size_t topic_len;
	/* downlink */
	const uint8_t *key;        /* NULL: the record has no key */
	size_t key_len;
	template_header_fn header; /* NULL: the record has no headers */
	void *header_ud;
	const uint8_t *value;      /* the record value, for ${json:} */
	size_t value_len;
	const char *kafka_topic;
	size_t kafka_topic_len;
	/* private: the value parsed at most once per record (owned) */
	struct json_t *json;
	int json_state;            /* 0 not parsed yet, 1 parsed, -1 not JSON */
};

/*
 * Compiles src for the given kind into *out (new, free with template_free()).
 * Returns 0, or -1 with a message in err (NUL-terminated, truncated to
 * errlen; err may be NULL): empty template, unterminated "${", unknown
 * variable, variable of the other kind, bad ${topic[N]} index, empty header
 * name or JSON path element, out of memory. Messages carry no line number:
 * the caller prefixes its own context.
 */
int template_compile(struct template **out, const char *src, enum template_kind kind,
		     char *err, size_t errlen);
/* NULL ok. */
void template_free(struct template *t);

/*
 * Appends the rendering of t to out. Returns 0, or a negative enum
 * template_err; on error out is left as it was before the call.
 * ctx is not const because its JSON cache may be filled.
 */
int template_render(const struct template *t, struct template_ctx *ctx, struct buf *out);

/* True when t has no variables: its rendering is always template_source(t). */
bool template_is_literal(const struct template *t);
/* The source text t was compiled from (owned by t), for logs and status. */
const char *template_source(const struct template *t);
enum template_kind template_kind(const struct template *t);

/* A zeroed ctx; same as memset(ctx, 0, sizeof *ctx). */
void template_ctx_init(struct template_ctx *ctx);
/* Drops the cached JSON parse. The ctx may be refilled and reused. NULL ok. */
void template_ctx_release(struct template_ctx *ctx);
/*
 * The record value parsed as JSON (an object or array), parsing it on first
 * use; NULL when it is not JSON. Borrowed: valid until template_ctx_release().
 * Lets other code (e.g. envelope_decode_parsed()) reuse the one parse.
 */
const struct json_t *template_ctx_json(struct template_ctx *ctx);

/* Human-readable text of a template_render() result, for logs. Never NULL. */
const char *template_err_str(int err);

#endif
