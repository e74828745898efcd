/* envelope.c - JSON envelopes for Kafka record values; see envelope.h. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "mqtt/mqtt5.h"
#include "route/envelope.h"

/* Integers as reals so that any size validates: the text is copied, never
 * re-printed, so jansson's number type does not matter. */
#define PAYLOAD_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)
#define ENVELOPE_FLAGS (JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int envelope_base64_encode(struct buf *out, const uint8_t *p, size_t n)
{
	size_t olen = (n + 2) / 3 * 4;
	if (olen == 0)
		return 0; /* out->data may be NULL: no pointer arithmetic on it */
	if (buf_reserve(out, olen) < 0)
		return ENVELOPE_ERR_NOMEM;
	char *o = (char *)out->data + out->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64_alphabet[v >> 18 & 63];
		*o++ = b64_alphabet[v >> 12 & 63];
		*o++ = b64_alphabet[v >> 6 & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		*o++ = b64_alphabet[v >> 18 & 63];
		*o++ = b64_alphabet[v >> 12 & 63];
		*o++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
		*o++ = '=';
	}
	out->len += olen;
	return 0;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int envelope_base64_decode(struct buf *out, const char *s, size_t n)
{
	if (n % 4 != 0)
		return ENVELOPE_ERR_INVALID;
	if (n == 0)
		return 0;
	if (buf_reserve(out, n / 4 * 3) < 0)
		return ENVELOPE_ERR_NOMEM;
	uint8_t *o = out->data + out->len;
	size_t w = 0;
	for (size_t i = 0; i < n; i += 4) {
		int pad = 0;
		if (i + 4 == n)
			pad = (s[i + 3] == '=') + (s[i + 3] == '=' && s[i + 2] == '=');
		int a = b64_value(s[i]), b = b64_value(s[i + 1]);
		int c = pad == 2 ? 0 : b64_value(s[i + 2]);
		int d = pad >= 1 ? 0 : b64_value(s[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return ENVELOPE_ERR_INVALID;
		/* Non-zero unused bits mean a sloppy encoder or corruption; a
		 * canonical form also keeps decode(encode(x)) the only way in. */
		if ((pad == 2 && (b & 15)) || (pad == 1 && (c & 3)))
			return ENVELOPE_ERR_INVALID;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		o[w++] = (uint8_t)(v >> 16);
		if (pad < 2)
			o[w++] = (uint8_t)(v >> 8);
		if (pad < 1)
			o[w++] = (uint8_t)v;
	}
	out->len += w;
	return 0;
}

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Appends JSON text that jansson has validated, minus whitespace outside
 * strings: compact like jansson's output, but numbers and escapes are kept
 * as written (re-printing would turn 0.1 into 0.10000000000000001). */
static int append_compact(struct buf *out, const uint8_t *p, size_t n)
{
	bool in_str = false, esc = false;

	if (n == 0)
		return 0;
	if (buf_reserve(out, n) < 0)
		return ENVELOPE_ERR_NOMEM;
	uint8_t *o = out->data + out->len;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		} else if (is_ws(c)) {
			continue;
		} else if (c == '"') {
			in_str = true;
		}
		*o++ = c;
	}
	out->len = (size_t)(o - out->data);
	return 0;
}

static size_t skip_ws(const uint8_t *p, size_t i, size_t n)
{
	while (i < n && is_ws(p[i]))
		i++;
	return i;
}

/* p[i] is '"'; returns the index after the closing quote. */
static size_t skip_string(const uint8_t *p, size_t i, size_t n)
{
	for (i++; i < n; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return n;
}

/* Returns the index just after the value starting at p[i]. */
static size_t skip_value(const uint8_t *p, size_t i, size_t n)
{
	size_t depth = 0;
	while (i < n) {
		uint8_t c = p[i];
		if (c == '"') {
			i = skip_string(p, i, n);
			if (depth == 0)
				return i;
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return i;
			if (--depth == 0)
				return i + 1;
		} else if (depth == 0 && (c == ',' || is_ws(c))) {
			return i;
		}
		i++;
	}
	return i;
}

/* A key written with escapes may still spell "payload": let jansson read it. */
static bool escaped_key_is_payload(const uint8_t *p, size_t n)
{
	json_error_t jerr;
	json_t *k = json_loadb((const char *)p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	bool yes = json_is_string(k) && json_string_length(k) == 7 &&
		   memcmp(json_string_value(k), "payload", 7) == 0;
	json_decref(k);
	return yes;
}

/*
 * Finds the text of the top-level "payload" member in p (JSON that jansson
 * has accepted), the last one if it repeats, as jansson keeps the last.
 */
static bool payload_span(const uint8_t *p, size_t n, size_t *start, size_t *end)
{
	bool found = false;
	size_t i = skip_ws(p, 0, n);

	if (i >= n || p[i] != '{')
		return false;
	i = skip_ws(p, i + 1, n);
	while (i < n && p[i] == '"') {
		size_t k = i;
		i = skip_string(p, i, n);
		bool is_payload = memchr(p + k, '\\', i - k)
					  ? escaped_key_is_payload(p + k, i - k)
					  : i - k == 9 && memcmp(p + k, "\"payload\"", 9) == 0;
		i = skip_ws(p, i, n);
		if (i >= n || p[i] != ':')
			return false;
		i = skip_ws(p, i + 1, n);
		size_t s = i;
		i = skip_value(p, i, n);
		if (is_payload) {
			*start = s;
			*end = i;
			found = true;
		}
		i = skip_ws(p, i, n);
		if (i < n && p[i] == ',')
			i = skip_ws(p, i + 1, n);
		else
			break;
	}
	return found && i < n && p[i] == '}';
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
	return buf_append(data, buffer, size);
}

enum payload_kind { PK_BINARY, PK_JSON_STRING, PK_JSON, PK_TEXT };

bool envelope_text_valid(const uint8_t *s, size_t len)
{
	if (len == 0)
		return true; /* s may be NULL: no NULL + 0 */
	const uint8_t *end = s + len;

	while (s < end) {
		uint8_t c = *s;
		if (c < 0x80) {
			if (c == 0)
				return false;
			s++;
			continue;
		}
		size_t n = mqtt_utf8_seq_len(s, end);
		if (n == 0)
			return false;
		s += n;
	}
	return true;
}

/* Appends p[0..n) (valid UTF-8) as a quoted JSON string: '"', '\\' and the
 * control characters U+0000..U+001F escaped (RFC 8259 section 7), the rest
 * copied as it is. */
static int append_json_string(struct buf *out, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t extra = 2;

	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
			extra += 5; /* at most \u00XX */
	if (buf_reserve(out, n + extra) < 0)
		return ENVELOPE_ERR_NOMEM;
	char *o = (char *)out->data + out->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o++ = '"';
	out->len = (size_t)(o - (char *)out->data);
	return 0;
}

static enum payload_kind payload_kind(const uint8_t *p, size_t n, bool text_base64)
{
	json_error_t jerr;
	json_t *j = n ? json_loadb((const char *)p, n, PAYLOAD_FLAGS, &jerr) : NULL;
	enum payload_kind kind = j ? (json_is_string(j) ? PK_JSON_STRING : PK_JSON)
			       : !text_base64 && envelope_text_valid(p, n) ? PK_TEXT : PK_BINARY;
	json_decref(j);
	return kind;
}

/* Returns 0 or a negative enum envelope_err. */
static int set_string(json_t *obj, const char *name, const char *s, size_t n)
{
	/* jansson refuses invalid UTF-8 by returning NULL. */
	json_t *v = s ? json_stringn(s, n) : json_string("");
	if (!v)
		return ENVELOPE_ERR_UTF8;
	return json_object_set_new(obj, name, v) < 0 ? ENVELOPE_ERR_NOMEM : 0;
}

static int append_str(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s)) < 0 ? ENVELOPE_ERR_NOMEM : 0;
}

/* ,"name": then the string, checked for UTF-8 (a property list that did
 * not come through the decoder is not trusted). */
static int append_member_text(struct buf *out, const char *name, const struct mqtt_str *v)
{
	int rc;
	if (!envelope_text_valid(v->p, v->len))
		return ENVELOPE_ERR_UTF8;
	if ((rc = append_str(out, name)) < 0)
		return rc;
	return append_json_string(out, v->p, v->len);
}

/* Appends ,"properties":{...} (envelope.h) when in has any; 0 or a negative
 * enum envelope_err. */
static int append_properties(struct buf *out, const struct envelope_in *in)
{
	struct mqtt_props pr = { in->props, (uint32_t)in->props_len };
	struct mqtt_prop_iter it;
	struct mqtt_prop p;
	const char *sep = "";
	bool any = in->has_expiry, users = false, has_users = false;
	char num[40];
	int rc = 0;
	/* The single-valued properties, in the order envelope.h gives: the
	 * first of each, found in one pass, written before the user ones. */
	static const uint8_t order[] = { MQTT_P_PAYLOAD_FORMAT, MQTT_P_CONTENT_TYPE,
					 MQTT_P_RESPONSE_TOPIC, MQTT_P_CORRELATION_DATA };
	struct mqtt_prop one[sizeof order];
	bool seen[sizeof order] = { false };

	mqtt_props_begin(&pr, &it);
	while (mqtt_props_next(&it, &p)) {
		has_users |= p.id == MQTT_P_USER_PROPERTY;
		for (size_t k = 0; k < sizeof order; k++) {
			if (p.id == order[k] && !seen[k]) {
				one[k] = p;
				seen[k] = any = true;
			}
		}
	}
	if (!any && !has_users)
		return 0;
	if ((rc = append_str(out, ",\"properties\":{")) < 0)
		return rc;
	for (size_t k = 0; k < sizeof order && rc == 0; k++) {
		if (!seen[k])
			continue;
		p = one[k];
		switch (p.id) {
		case MQTT_P_PAYLOAD_FORMAT:
			snprintf(num, sizeof num, "%s\"payload_format\":%u", sep, (unsigned)p.value);
			rc = append_str(out, num);
			break;
		case MQTT_P_CONTENT_TYPE:
			rc = append_str(out, sep);
			if (rc == 0)
				rc = append_member_text(out, "\"content_type\":", &p.str);
			break;
		case MQTT_P_RESPONSE_TOPIC:
			rc = append_str(out, sep);
			if (rc == 0)
				rc = append_member_text(out, "\"response_topic\":", &p.str);
			break;
		case MQTT_P_CORRELATION_DATA:
			if ((rc = append_str(out, sep)) < 0 ||
			    (rc = append_str(out, "\"correlation_data\":\"")) < 0 ||
			    (rc = envelope_base64_encode(out, p.str.p, p.str.len)) < 0)
				break;
			rc = append_str(out, "\"");
			break;
		}
		sep = ",";
	}
	if (rc == 0 && in->has_expiry) {
		snprintf(num, sizeof num, "%s\"message_expiry\":%lu", sep, (unsigned long)in->expiry_s);
		rc = append_str(out, num);
		sep = ",";
	}
	mqtt_props_begin(&pr, &it);
	while (rc == 0 && has_users && mqtt_props_next(&it, &p)) {
		if (p.id != MQTT_P_USER_PROPERTY)
			continue;
		if (!users) {
			if ((rc = append_str(out, sep)) < 0 ||
			    (rc = append_str(out, "\"user_properties\":[")) < 0)
				break;
			users = true;
		} else if ((rc = append_str(out, ",")) < 0) {
			break;
		}
		if ((rc = append_member_text(out, "[", &p.str)) < 0 ||
		    (rc = append_member_text(out, ",", &p.str2)) < 0)
			break;
		rc = append_str(out, "]");
	}
	if (rc == 0 && users)
		rc = append_str(out, "]");
	if (rc == 0)
		rc = append_str(out, "}");
	return rc;
}

int envelope_encode(struct buf *out, const struct envelope_in *in)
{
	static const char *const encoding[] = {
		[PK_BINARY] = ",\"payload_encoding\":\"base64\"",
		[PK_JSON_STRING] = ",\"payload_encoding\":\"json\"",
		[PK_JSON] = "",
		[PK_TEXT] = ",\"payload_encoding\":\"utf8\"",
	};
	size_t used = buf_used(out);
	enum payload_kind kind = payload_kind(in->payload, in->payload_len, in->text_base64);
	int rc = ENVELOPE_ERR_NOMEM;
	json_t *obj = json_object();

	if (!obj)
		goto fail;
	if ((rc = set_string(obj, "topic", in->topic, in->topic_len)) < 0 ||
	    (rc = set_string(obj, "clientid", in->clientid, in->clientid_len)) < 0)
		goto fail;
	if (in->username)
		rc = set_string(obj, "username", in->username, in->username_len);
	else
		rc = json_object_set_new(obj, "username", json_null()) < 0
			     ? ENVELOPE_ERR_NOMEM : 0;
	if (rc < 0)
		goto fail;
	rc = ENVELOPE_ERR_NOMEM;
	if (json_object_set_new(obj, "qos", json_integer(in->qos)) < 0 ||
	    json_object_set_new(obj, "retain", json_boolean(in->retain)) < 0 ||
	    json_object_set_new(obj, "timestamp", json_integer(in->timestamp_ms)) < 0)
		goto fail;
	if (in->error && (rc = set_string(obj, "error", in->error, strlen(in->error))) < 0)
		goto fail;
	rc = ENVELOPE_ERR_NOMEM;
	if (json_dump_callback(obj, dump_cb, out, JSON_COMPACT) < 0)
		goto fail;
	/* The rest is spliced in by hand: the payload so that its text is kept
	 * as written, the properties and the encoding to keep the key order. */
	out->len--; /* the object's closing brace */
	if ((rc = append_properties(out, in)) < 0 || (rc = append_str(out, encoding[kind])) < 0 ||
	    (rc = append_str(out, ",\"payload\":")) < 0)
		goto fail;
	rc = ENVELOPE_ERR_NOMEM;
	if (kind == PK_JSON || kind == PK_JSON_STRING) {
		if (append_compact(out, in->payload, in->payload_len) < 0)
			goto fail;
	} else if (kind == PK_TEXT) {
		if (append_json_string(out, in->payload, in->payload_len) < 0)
			goto fail;
	} else if (buf_append(out, "\"", 1) < 0 ||
		   envelope_base64_encode(out, in->payload, in->payload_len) < 0 ||
		   buf_append(out, "\"", 1) < 0) {
		goto fail;
	}
	if (buf_append(out, "}", 1) < 0)
		goto fail;
	json_decref(obj);
	return 0;
fail:
	out->len = out->off + used;
	json_decref(obj);
	return rc;
}

int envelope_decode_parsed(const struct json_t *root, const uint8_t *value, size_t len,
			   struct buf *payload_out)
{
	size_t used = buf_used(payload_out);
	const json_t *pl = json_is_object(root) ? json_object_get(root, "payload") : NULL;
	const json_t *enc = pl ? json_object_get(root, "payload_encoding") : NULL;
	const char *how = NULL;
	size_t start = 0, end = 0;
	int rc;

	if (!pl)
		return ENVELOPE_ERR_NOT_ENVELOPE;
	if (enc && !json_is_null(enc)) {
		if (!json_is_string(enc))
			return ENVELOPE_ERR_INVALID;
		how = json_string_value(enc);
		if (strcmp(how, "base64") != 0 && strcmp(how, "json") != 0 &&
		    strcmp(how, "utf8") != 0)
			return ENVELOPE_ERR_INVALID;
	}
	if (how && strcmp(how, "utf8") == 0) {
		if (!json_is_string(pl))
			return ENVELOPE_ERR_INVALID;
		return buf_append(payload_out, json_string_value(pl), json_string_length(pl)) < 0
			       ? ENVELOPE_ERR_NOMEM : 0;
	}
	if (how && strcmp(how, "base64") == 0) {
		if (!json_is_string(pl))
			return ENVELOPE_ERR_INVALID;
		return envelope_base64_decode(payload_out, json_string_value(pl),
					      json_string_length(pl));
	}
	if (!how && json_is_string(pl))
		return buf_append(payload_out, json_string_value(pl), json_string_length(pl)) < 0
			       ? ENVELOPE_ERR_NOMEM : 0;
	if (value && payload_span(value, len, &start, &end))
		rc = append_compact(payload_out, value + start, end - start);
	else /* value is not what root was parsed from: print what jansson has */
		rc = json_dump_callback(pl, dump_cb, payload_out,
					JSON_COMPACT | JSON_ENCODE_ANY) < 0 ? ENVELOPE_ERR_NOMEM : 0;
	if (rc < 0)
		payload_out->len = payload_out->off + used;
	return rc;
}

int envelope_decode_payload(const uint8_t *value, size_t len, struct buf *payload_out)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	if (!value)
		return ENVELOPE_ERR_NOT_ENVELOPE;
	root = json_loadb((const char *)value, len, ENVELOPE_FLAGS, &jerr);
	if (!root)
		return ENVELOPE_ERR_NOT_ENVELOPE;
	rc = envelope_decode_parsed(root, value, len, payload_out);
	json_decref(root);
	return rc;
}

const char *envelope_err_str(int err)
{
	switch (err) {
	case ENVELOPE_OK: return "ok";
	case ENVELOPE_ERR_NOT_ENVELOPE: return "not a JSON envelope with a payload";
	case ENVELOPE_ERR_INVALID: return "bad payload or payload_encoding";
	case ENVELOPE_ERR_UTF8: return "string field is not valid UTF-8";
	case ENVELOPE_ERR_NOMEM: return "out of memory";
	}
	return "unknown envelope error";
}
