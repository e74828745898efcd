/* template.c - compiled "${...}" templates; see template.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/template.h"
#include "mqtt/topic.h"

#define LEVEL_MAX 65535 /* a topic of at most 65535 bytes has fewer levels */

enum seg_type {
	SEG_LITERAL,
	SEG_CLIENTID,
	SEG_USERNAME,
	SEG_TOPIC,
	SEG_LEVEL,
	SEG_KEY,
	SEG_HEADER,
	SEG_JSON,
	SEG_KAFKA_TOPIC,
};

/* off/len point into t->text: the literal text, header name or JSON path. */
struct seg {
	enum seg_type type;
	size_t off, len;
	size_t level;
};

struct template {
	enum template_kind kind;
	char *src;
	/* A copy of src with each variable's '}' replaced by NUL, so that header
	 * names can be handed to lookups as C strings without a copy per render. */
	char *text;
	struct seg *segs;
	size_t nseg;
};

struct var_def {
	const char *name;   /* whole name, or prefix when prefix is set */
	bool prefix;
	enum seg_type type;
	enum template_kind kind;
};

static const struct var_def vars[] = {
	{ "clientid", false, SEG_CLIENTID, TEMPLATE_UPLINK },
	{ "username", false, SEG_USERNAME, TEMPLATE_UPLINK },
	{ "topic", false, SEG_TOPIC, TEMPLATE_UPLINK },
	{ "topic[", true, SEG_LEVEL, TEMPLATE_UPLINK },
	{ "key", false, SEG_KEY, TEMPLATE_DOWNLINK },
	{ "header:", true, SEG_HEADER, TEMPLATE_DOWNLINK },
	{ "json:", true, SEG_JSON, TEMPLATE_DOWNLINK },
	{ "kafka_topic", false, SEG_KAFKA_TOPIC, TEMPLATE_DOWNLINK },
};

static const struct var_def *var_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		size_t n = strlen(vars[i].name);
		if (vars[i].prefix ? len >= n && memcmp(name, vars[i].name, n) == 0
				   : len == n && memcmp(name, vars[i].name, n) == 0)
			return &vars[i];
	}
	return NULL;
}

/* Parses the argument of a prefixed variable into s. Returns NULL or what is wrong. */
static const char *var_arg(struct seg *s, const char *arg, size_t len)
{
	switch (s->type) {
	case SEG_LEVEL:
		if (len < 2 || len > 6 || arg[len - 1] != ']')
			return "bad level index";
		s->level = 0;
		for (size_t i = 0; i + 1 < len; i++) {
			if (arg[i] < '0' || arg[i] > '9')
				return "bad level index";
			s->level = s->level * 10 + (size_t)(arg[i] - '0');
		}
		return s->level > LEVEL_MAX ? "level index too large" : NULL;
	case SEG_HEADER:
		return len == 0 ? "empty header name" : NULL;
	case SEG_JSON:
		if (len == 0)
			return "empty JSON path";
		if (arg[0] == '.' || arg[len - 1] == '.' || memmem(arg, len, "..", 2))
			return "empty element in JSON path";
		return NULL;
	default:
		return NULL;
	}
}

static void seg_push(struct template *t, enum seg_type type, size_t off, size_t len)
{
	struct seg *s = &t->segs[t->nseg++];
	s->type = type;
	s->off = off;
	s->len = len;
	s->level = 0;
}

int template_compile(struct template **out, const char *src, enum template_kind kind,
		     char *err, size_t errlen)
{
	char dummy[1];
	size_t n = strlen(src);
	size_t vars_max = 0;
	struct template *t = NULL;

	*out = NULL;
	if (!err) {
		err = dummy;
		errlen = sizeof dummy;
	}
	if (n == 0) {
		snprintf(err, errlen, "empty template");
		return -1;
	}
	for (const char *p = src; (p = strstr(p, "${")) != NULL; p += 2)
		vars_max++;
	t = calloc(1, sizeof *t);
	if (!t)
		goto nomem;
	t->kind = kind;
	t->src = strdup(src);
	t->text = strdup(src);
	/* Each variable may be preceded by a literal; one more may trail. */
	t->segs = calloc(2 * vars_max + 1, sizeof *t->segs);
	if (!t->src || !t->text || !t->segs)
		goto nomem;

	size_t lit = 0, i = 0;
	while (i < n) {
		if (src[i] != '$' || src[i + 1] != '{') {
			i++;
			continue;
		}
		const char *name = src + i + 2;
		const char *close = strchr(name, '}');
		if (!close) {
			snprintf(err, errlen, "unterminated \"${\" at column %zu", i + 1);
			goto fail;
		}
		size_t len = (size_t)(close - name);
		const struct var_def *v = var_find(name, len);
		if (!v) {
			snprintf(err, errlen, "unknown variable \"${%.*s}\"", (int)len, name);
			goto fail;
		}
		if (v->kind != kind) {
			snprintf(err, errlen, "\"${%.*s}\" is %s variable, not allowed here",
				 (int)len, name,
				 v->kind == TEMPLATE_UPLINK ? "an uplink" : "a downlink");
			goto fail;
		}
		if (i > lit)
			seg_push(t, SEG_LITERAL, lit, i - lit);
		size_t arg = v->prefix ? strlen(v->name) : len;
		seg_push(t, v->type, (size_t)(name - src) + arg, len - arg);
		const char *what = var_arg(&t->segs[t->nseg - 1], name + arg, len - arg);
		if (what) {
			snprintf(err, errlen, "%s in \"${%.*s}\"", what, (int)len, name);
			goto fail;
		}
		t->text[close - src] = '\0';
		i = lit = (size_t)(close - src) + 1;
	}
	if (n > lit)
		seg_push(t, SEG_LITERAL, lit, n - lit);
	*out = t;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	template_free(t);
	return -1;
}

void template_free(struct template *t)
{
	if (!t)
		return;
	free(t->src);
	free(t->text);
	free(t->segs);
	free(t);
}

bool template_is_literal(const struct template *t)
{
	for (size_t i = 0; i < t->nseg; i++)
		if (t->segs[i].type != SEG_LITERAL)
			return false;
	return true;
}

const char *template_source(const struct template *t)
{
	return t->src;
}

enum template_kind template_kind(const struct template *t)
{
	return t->kind;
}

void template_ctx_init(struct template_ctx *ctx)
{
	memset(ctx, 0, sizeof *ctx);
}

void template_ctx_release(struct template_ctx *ctx)
{
	if (!ctx)
		return;
	json_decref(ctx->json);
	ctx->json = NULL;
	ctx->json_state = 0;
}

const struct json_t *template_ctx_json(struct template_ctx *ctx)
{
	if (ctx->json_state == 0) {
		json_error_t jerr;
		/* NUL inside strings is allowed so that one odd field does not
		 * make the whole record unreadable; the caller validates what a
		 * rendering produces. */
		if (ctx->value)
			ctx->json = json_loadb((const char *)ctx->value, ctx->value_len,
					       JSON_ALLOW_NUL, &jerr);
		ctx->json_state = ctx->json ? 1 : -1;
	}
	return ctx->json;
}

static bool is_index(const char *p, size_t len, size_t *idx)
{
	if (len == 0 || len > 9)
		return false;
	*idx = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*idx = *idx * 10 + (size_t)(p[i] - '0');
	}
	return true;
}

/* buf_append() reports allocation failure as -1, which is a template_err too. */
static int append(struct buf *out, const void *p, size_t n)
{
	return buf_append(out, p, n) == 0 ? 0 : TEMPLATE_ERR_NOMEM;
}

static int render_json(const char *path, size_t len, struct template_ctx *ctx,
		       struct buf *out)
{
	const json_t *v = template_ctx_json(ctx);
	const char *end = path + len;
	char num[64];
	size_t idx;

	if (!v)
		return TEMPLATE_ERR_NOT_JSON;
	for (const char *p = path; v; p++) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		size_t el = (size_t)((dot ? dot : end) - p);
		if (json_is_object(v))
			v = json_object_getn(v, p, el);
		else if (json_is_array(v) && is_index(p, el, &idx))
			v = json_array_get(v, idx);
		else
			v = NULL;
		if (!dot)
			break;
		p = dot;
	}
	if (!v || json_is_object(v) || json_is_array(v) || json_is_null(v))
		return TEMPLATE_ERR_JSON_PATH;
	if (json_is_string(v))
		return append(out, json_string_value(v), json_string_length(v));
	size_t n = json_dumpb(v, num, sizeof num, JSON_ENCODE_ANY);
	if (n == 0 || n > sizeof num)
		return TEMPLATE_ERR_JSON_PATH;
	return append(out, num, n);
}

static int render_seg(const struct template *t, const struct seg *s,
		      struct template_ctx *ctx, struct buf *out)
{
	const char *arg = t->text + s->off;
	const char *p;
	const void *hv;
	size_t n;

	switch (s->type) {
	case SEG_LITERAL:
		return append(out, arg, s->len);
	case SEG_CLIENTID:
		return append(out, ctx->clientid, ctx->clientid_len);
	case SEG_USERNAME:
		if (!ctx->username)
			return TEMPLATE_ERR_USERNAME;
		return append(out, ctx->username, ctx->username_len);
	case SEG_TOPIC:
		return append(out, ctx->topic, ctx->topic_len);
	case SEG_LEVEL:
		n = ctx->topic ? topic_level(ctx->topic, ctx->topic_len, s->level, &p)
			       : (size_t)-1;
		if (n == (size_t)-1)
			return TEMPLATE_ERR_LEVEL;
		return append(out, p, n);
	case SEG_KEY:
		if (!ctx->key)
			return TEMPLATE_ERR_KEY;
		return append(out, ctx->key, ctx->key_len);
	case SEG_HEADER:
		if (!ctx->header || ctx->header(ctx->header_ud, arg, &hv, &n) != 0)
			return TEMPLATE_ERR_HEADER;
		return append(out, hv, n);
	case SEG_JSON:
		return render_json(arg, s->len, ctx, out);
	case SEG_KAFKA_TOPIC:
		return append(out, ctx->kafka_topic, ctx->kafka_topic_len);
	}
	return TEMPLATE_ERR_NOMEM; /* unreachable: every type is handled */
}

int template_render(const struct template *t, struct template_ctx *ctx, struct buf *out)
{
	/* Remember the used length, not out->len: growth may compact the buffer. */
	size_t used = buf_used(out);

	for (size_t i = 0; i < t->nseg; i++) {
		int rc = render_seg(t, &t->segs[i], ctx, out);
		if (rc != 0) {
			out->len = out->off + used;
			return rc;
		}
	}
	return 0;
}

const char *template_err_str(int err)
{
	switch (err) {
	case TEMPLATE_OK: return "ok";
	case TEMPLATE_ERR_LEVEL: return "topic has no such level";
	case TEMPLATE_ERR_USERNAME: return "client has no username";
	case TEMPLATE_ERR_KEY: return "record has no key";
	case TEMPLATE_ERR_HEADER: return "record has no such header";
	case TEMPLATE_ERR_NOT_JSON: return "record value is not JSON";
	case TEMPLATE_ERR_JSON_PATH: return "JSON path absent or not a scalar";
	case TEMPLATE_ERR_NOMEM: return "out of memory";
	}
	return "unknown template error";
}
