/*
 * state_rec.c - the JSON session record (state_rec.h). Session records are
 * written on CONNECT, (UN)SUBSCRIBE and disconnect only, never per message,
 * so jansson's allocations are fine here.
 */
#include "state/state_rec.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "route/envelope.h"

static const char *const type_names[] = { "claim", "subs", "park", "end", "adopt", "will" };
static const char *const state_names[] = { "online", "parked", "ended" };

const char *state_rec_type_name(enum state_rec_type t)
{
	return (unsigned)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

void state_rec_will_clear(struct state_rec_will *w)
{
	if (!w)
		return;
	free(w->topic);
	free(w->payload);
	free(w->props);
	memset(w, 0, sizeof(*w));
}

void state_rec_clear(struct state_rec *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nsubs; i++)
		free((char *)r->subs[i].filter);
	free(r->subs);
	state_rec_will_clear(&r->will);
	memset(r, 0, sizeof(*r));
}

/* ---- encode ---- */

static json_t *b64_string(const uint8_t *p, size_t n)
{
	struct buf b;
	buf_init(&b);
	json_t *s = NULL;
	if (envelope_base64_encode(&b, p, n) == 0)
		s = json_stringn(n ? (const char *)buf_head(&b) : "", buf_used(&b));
	buf_release(&b);
	return s;
}

/* json_object_set_new that reports a NULL value (failed encoding). */
static int put(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new(o, k, v) : -1;
}

static json_t *will_json(const struct state_rec_will *w)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int rc = put(o, "topic", json_stringn(w->topic, w->topic_len));
	rc |= put(o, "payload", b64_string(w->payload, w->payload_len));
	rc |= put(o, "qos", json_integer(w->qos));
	rc |= put(o, "retain", json_boolean(w->retain));
	if (w->props_len)
		rc |= put(o, "props", b64_string(w->props, w->props_len));
	rc |= put(o, "delay", json_integer(w->delay_s));
	if (rc) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int state_rec_encode(const struct state_rec *r, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	json_t *o = json_object();
	if (!o)
		return -1;
	int rc = put(o, "v", json_integer(1));
	rc |= put(o, "t", json_string(state_rec_type_name(r->t)));
	rc |= put(o, "owner", json_string(r->owner));
	rc |= put(o, "boot", json_integer(r->boot));
	if (r->t == SREC_CLAIM)
		rc |= put(o, "conn", json_string(r->conn));
	rc |= put(o, "epoch", json_integer(r->epoch));
	if (r->t == SREC_CLAIM)
		rc |= put(o, "resume", json_boolean(r->resume));
	rc |= put(o, "persistent", json_boolean(r->persistent));
	rc |= put(o, "state", json_string((unsigned)r->state < 3 ? state_names[r->state] : "?"));
	rc |= put(o, "level", json_integer(r->level));
	rc |= put(o, "expiry", json_integer(r->expiry_s));
	rc |= put(o, "parked_at", json_integer(r->parked_at));
	json_t *subs = json_array();
	for (size_t i = 0; subs && i < r->nsubs && rc == 0; i++) {
		json_t *s = json_object();
		if (!s) {
			rc = -1;
			break;
		}
		rc |= put(s, "f", json_stringn(r->subs[i].filter, r->subs[i].len));
		rc |= put(s, "o", json_integer(r->subs[i].opts));
		rc |= json_array_append_new(subs, s);
	}
	rc |= put(o, "subs", subs);
	rc |= put(o, "will", r->has_will ? will_json(&r->will) : json_null());
	if (r->q_inst[0]) {
		json_t *q = json_object();
		if (!q)
			rc = -1;
		else {
			rc |= put(q, "i", json_string(r->q_inst));
			rc |= put(q, "o", json_integer(r->q_off));
			rc |= put(o, "q", q);
		}
	}
	rc |= put(o, "at", json_integer(r->at));
	if (rc == 0) {
		*out = json_dumps(o, JSON_COMPACT);
		if (*out)
			*len = strlen(*out);
		else
			rc = -1;
	}
	json_decref(o);
	return rc ? -1 : 0;
}

/* ---- decode ---- */

struct derr {
	char *err;
	size_t errlen;
};

static int bad(struct derr *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct derr *d, const char *fmt, ...)
{
	if (d->err && d->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->err, d->errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* An integer member within [lo, hi]; absent = def when opt. */
static int get_int(struct derr *d, json_t *o, const char *k, bool opt, long long def,
		   long long lo, long long hi, long long *v)
{
	json_t *j = json_object_get(o, k);
	if (!j) {
		if (!opt)
			return bad(d, "%s missing", k);
		*v = def;
		return 0;
	}
	if (!json_is_integer(j))
		return bad(d, "%s not an integer", k);
	long long x = json_integer_value(j);
	if (x < lo || x > hi)
		return bad(d, "%s out of range", k);
	*v = x;
	return 0;
}

static int get_bool(struct derr *d, json_t *o, const char *k, bool def, bool *v)
{
	json_t *j = json_object_get(o, k);
	if (!j) {
		*v = def;
		return 0;
	}
	if (!json_is_boolean(j))
		return bad(d, "%s not a boolean", k);
	*v = json_is_true(j);
	return 0;
}

/* A string member of at most max bytes, copied NUL-terminated into out. */
static int get_str(struct derr *d, json_t *o, const char *k, bool opt, char *out, size_t max)
{
	json_t *j = json_object_get(o, k);
	out[0] = '\0';
	if (!j)
		return opt ? 0 : bad(d, "%s missing", k);
	if (!json_is_string(j))
		return bad(d, "%s not a string", k);
	size_t n = json_string_length(j);
	if (n > max || memchr(json_string_value(j), '\0', n))
		return bad(d, "%s too long or has NUL", k);
	memcpy(out, json_string_value(j), n);
	out[n] = '\0';
	return 0;
}

static int name_index(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

/* base64 string member k into a new allocation (NULL when empty). */
static int get_b64(struct derr *d, json_t *o, const char *k, bool opt, uint32_t max,
		   uint8_t **out, uint32_t *n)
{
	json_t *j = json_object_get(o, k);
	*out = NULL;
	*n = 0;
	if (!j)
		return opt ? 0 : bad(d, "will.%s missing", k);
	if (!json_is_string(j))
		return bad(d, "will.%s not a string", k);
	size_t sl = json_string_length(j);
	if (sl / 4 * 3 > max + 3)
		return bad(d, "will.%s too long", k);
	struct buf b;
	buf_init(&b);
	if (envelope_base64_decode(&b, json_string_value(j), sl) != 0 || buf_used(&b) > max) {
		buf_release(&b);
		return bad(d, "will.%s bad base64", k);
	}
	if (buf_used(&b)) {
		*out = malloc(buf_used(&b));
		if (!*out) {
			buf_release(&b);
			return bad(d, "no memory");
		}
		memcpy(*out, buf_head(&b), buf_used(&b));
		*n = (uint32_t)buf_used(&b);
	}
	buf_release(&b);
	return 0;
}

static int decode_will(struct derr *d, json_t *w, struct state_rec_will *out)
{
	if (!json_is_object(w))
		return bad(d, "will not an object");
	json_t *t = json_object_get(w, "topic");
	if (!json_is_string(t))
		return bad(d, "will.topic missing");
	size_t tl = json_string_length(t);
	if (tl == 0 || tl > UINT16_MAX || memchr(json_string_value(t), '\0', tl))
		return bad(d, "will.topic empty, too long or has NUL");
	out->topic = malloc(tl + 1);
	if (!out->topic)
		return bad(d, "no memory");
	memcpy(out->topic, json_string_value(t), tl);
	out->topic[tl] = '\0';
	out->topic_len = (uint16_t)tl;
	long long v;
	bool b = false;
	if (get_b64(d, w, "payload", false, 256u << 20, &out->payload, &out->payload_len) ||
	    get_b64(d, w, "props", true, 256u << 20, &out->props, &out->props_len))
		return -1;
	if (get_int(d, w, "qos", false, 0, 0, 2, &v))
		return -1;
	out->qos = (uint8_t)v;
	if (get_bool(d, w, "retain", false, &b))
		return -1;
	out->retain = b;
	if (get_int(d, w, "delay", true, 0, 0, UINT32_MAX, &v))
		return -1;
	out->delay_s = (uint32_t)v;
	return 0;
}

static int decode_subs(struct derr *d, json_t *a, struct state_rec *r)
{
	if (!a)
		return 0;
	if (!json_is_array(a))
		return bad(d, "subs not an array");
	size_t n = json_array_size(a);
	if (n > STATE_REC_SUBS_MAX)
		return bad(d, "too many subs");
	if (n == 0)
		return 0;
	r->subs = calloc(n, sizeof(*r->subs));
	if (!r->subs)
		return bad(d, "no memory");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_object(s))
			return bad(d, "subs[%zu] not an object", i);
		json_t *f = json_object_get(s, "f");
		if (!json_is_string(f))
			return bad(d, "subs[%zu].f missing", i);
		size_t fl = json_string_length(f);
		if (fl == 0 || fl > UINT16_MAX || memchr(json_string_value(f), '\0', fl))
			return bad(d, "subs[%zu].f empty, too long or has NUL", i);
		long long o;
		if (get_int(d, s, "o", false, 0, 0, UINT32_MAX, &o))
			return -1;
		char *c = malloc(fl + 1);
		if (!c)
			return bad(d, "no memory");
		memcpy(c, json_string_value(f), fl);
		c[fl] = '\0';
		r->subs[i] = (struct broker_sub){ c, (uint16_t)fl, (uint32_t)o };
		r->nsubs = i + 1;
	}
	return 0;
}

static int decode_obj(struct derr *d, json_t *o, struct state_rec *r)
{
	char s[16];
	long long v;
	if (!json_is_object(o))
		return bad(d, "not an object");
	if (get_int(d, o, "v", false, 0, 1, 1, &v))
		return -1;
	if (get_str(d, o, "t", false, s, sizeof(s) - 1))
		return -1;
	int t = name_index(s, type_names, sizeof type_names / sizeof type_names[0]);
	if (t < 0)
		return bad(d, "unknown type");
	r->t = (enum state_rec_type)t;
	if (get_str(d, o, "owner", false, r->owner, STATE_REC_OWNER_MAX))
		return -1;
	if (r->owner[0] == '\0')
		return bad(d, "owner empty");
	if (get_int(d, o, "boot", false, 0, 0, INT64_MAX, &v))
		return -1;
	r->boot = v;
	if (get_str(d, o, "conn", true, r->conn, STATE_REC_CONN_MAX))
		return -1;
	if (get_int(d, o, "epoch", false, 0, -1, INT64_MAX, &v))
		return -1;
	r->epoch = v;
	if (r->epoch < 0 && r->t != SREC_CLAIM && r->t != SREC_ADOPT)
		return bad(d, "epoch -1 on a %s", type_names[r->t]);
	if (get_bool(d, o, "resume", false, &r->resume) ||
	    get_bool(d, o, "persistent", false, &r->persistent))
		return -1;
	if (get_str(d, o, "state", false, s, sizeof(s) - 1))
		return -1;
	int st = name_index(s, state_names, 3);
	if (st < 0)
		return bad(d, "unknown state");
	r->state = (enum state_rec_state)st;
	if (get_int(d, o, "level", false, 0, 3, 5, &v))
		return -1;
	r->level = (uint8_t)v;
	if (get_int(d, o, "expiry", true, 0, 0, UINT32_MAX, &v))
		return -1;
	r->expiry_s = (uint32_t)v;
	if (get_int(d, o, "parked_at", true, 0, 0, INT64_MAX, &v))
		return -1;
	r->parked_at = v;
	if (get_int(d, o, "at", true, 0, 0, INT64_MAX, &v))
		return -1;
	r->at = v;
	if (decode_subs(d, json_object_get(o, "subs"), r))
		return -1;
	json_t *q = json_object_get(o, "q");
	if (q && !json_is_null(q)) {
		if (!json_is_object(q))
			return bad(d, "q not an object");
		if (get_str(d, q, "i", false, r->q_inst, STATE_REC_OWNER_MAX))
			return -1;
		if (r->q_inst[0] == '\0')
			return bad(d, "q.i empty");
		if (get_int(d, q, "o", false, 0, 0, INT64_MAX, &v))
			return -1;
		r->q_off = v;
	}
	json_t *w = json_object_get(o, "will");
	if (w && !json_is_null(w)) {
		if (decode_will(d, w, &r->will))
			return -1;
		r->has_will = true;
	}
	return 0;
}

int state_rec_decode(struct state_rec *r, const void *data, size_t len, char *err,
		     size_t errlen)
{
	struct derr d = { err, errlen };
	memset(r, 0, sizeof(*r));
	if (err && errlen)
		err[0] = '\0';
	if (!data || len == 0)
		return bad(&d, "empty");
	json_error_t je;
	json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return bad(&d, "not JSON: %s", je.text);
	int rc = decode_obj(&d, o, r);
	json_decref(o);
	return rc;
}

/* ---- copies ---- */

static void *dup_bytes(const void *p, size_t n)
{
	if (n == 0)
		return NULL;
	void *c = malloc(n);
	if (c)
		memcpy(c, p, n);
	return c;
}

int state_rec_set_subs(struct state_rec *r, const struct broker_sub *subs, size_t n)
{
	for (size_t i = 0; i < r->nsubs; i++)
		free((char *)r->subs[i].filter);
	free(r->subs);
	r->subs = NULL;
	r->nsubs = 0;
	if (n == 0)
		return 0;
	struct broker_sub *c = calloc(n, sizeof(*c));
	if (!c)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char *f = malloc((size_t)subs[i].len + 1);
		if (!f) {
			for (size_t k = 0; k < i; k++)
				free((char *)c[k].filter);
			free(c);
			return -1;
		}
		memcpy(f, subs[i].filter, subs[i].len);
		f[subs[i].len] = '\0';
		c[i] = (struct broker_sub){ f, subs[i].len, subs[i].opts };
	}
	r->subs = c;
	r->nsubs = n;
	return 0;
}

int state_rec_set_will(struct state_rec *r, const struct state_rec_will *w)
{
	state_rec_will_clear(&r->will);
	r->has_will = false;
	if (!w)
		return 0;
	struct state_rec_will c = *w;
	c.topic = malloc((size_t)w->topic_len + 1);
	c.payload = dup_bytes(w->payload, w->payload_len);
	c.props = dup_bytes(w->props, w->props_len);
	if (!c.topic || (w->payload_len && !c.payload) || (w->props_len && !c.props)) {
		state_rec_will_clear(&c);
		return -1;
	}
	memcpy(c.topic, w->topic, w->topic_len);
	c.topic[w->topic_len] = '\0';
	r->will = c;
	r->has_will = true;
	return 0;
}

int state_rec_copy(struct state_rec *dst, const struct state_rec *src)
{
	*dst = *src;
	dst->subs = NULL;
	dst->nsubs = 0;
	dst->has_will = false;
	memset(&dst->will, 0, sizeof(dst->will));
	if (state_rec_set_subs(dst, src->subs, src->nsubs) ||
	    state_rec_set_will(dst, src->has_will ? &src->will : NULL)) {
		state_rec_clear(dst);
		return -1;
	}
	return 0;
}
