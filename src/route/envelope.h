/*
 * envelope.h - the JSON envelope of the "json" format: an MQTT message with
 * its metadata as one Kafka record value, and back.
 *
 * Encoded shape (compact, keys in this order):
 *   {"topic":"t","clientid":"c","username":"u"|null,"qos":1,"retain":false,
 *    "timestamp":1700000000000[,"error":"why"][,"properties":{...}]
 *    [,"payload_encoding":"..."],"payload":...}
 * username is always present: null when the client gave none, so that every
 * envelope has the same keys. timestamp is milliseconds since the epoch.
 *
 * "properties" (only when the message has MQTT 5 properties or an expiry),
 * members in this order, each only when present:
 *   "payload_format": 0|1,            Payload Format Indicator
 *   "content_type": "text",
 *   "response_topic": "a/b",
 *   "correlation_data": "base64",     binary, RFC 4648 with padding
 *   "message_expiry": seconds,        remaining when the record was made
 *   "user_properties": [["name","value"], ...]
 *                                     in the order received, repeated names
 *                                     kept (an array of pairs, not an object:
 *                                     an object would lose order and repeats)
 *
 * The payload is placed:
 *   - a JSON object, array, number, true, false or null: inline, as the
 *     payload's own text with the whitespace outside strings removed (numbers
 *     and string escapes are kept exactly as the device wrote them);
 *   - a JSON string: inline the same way, with "payload_encoding":"json" so
 *     that decoding gives back the quoted JSON text, not the string's bytes;
 *   - other text (envelope_text_valid(): well-formed UTF-8 without U+0000,
 *     the empty payload included): a JSON string of that text with
 *     "payload_encoding":"utf8" (control characters, '"' and '\' escaped,
 *     everything else as it is); with text_base64 set (the route option
 *     payload_text = "base64", the behaviour before MQTT 5) such a payload
 *     is base64 instead, like binary;
 *   - anything else (binary, invalid UTF-8, text with U+0000): a base64
 *     string (RFC 4648 alphabet with padding) with "payload_encoding":"base64".
 * A payload counts as JSON when jansson accepts it whole (JSON_DECODE_ANY,
 * nothing but whitespace after it, valid UTF-8; integers wider than 64 bits
 * and \u0000 are accepted; numbers beyond a double's range are not).
 *
 * Decoding (downlink) takes a record value that is a JSON object with a
 * "payload" member and gives the payload bytes:
 *   - "payload_encoding":"base64": the decoded bytes (strict: padding
 *     required, no whitespace, unused bits zero);
 *   - "payload_encoding":"json": the payload's JSON text;
 *   - "payload_encoding":"utf8": the string's UTF-8 bytes (must be a string);
 *   - no payload_encoding: a string's UTF-8 bytes (what a backend writing
 *     {"payload":"reboot"} means), any other value's JSON text.
 * JSON text comes back compact (whitespace outside strings removed, numbers
 * and escapes as written), so encode then decode returns every payload
 * exactly, except that an inlined JSON payload loses its insignificant
 * whitespace. Other members are ignored. A value that is JSON but not an
 * object with "payload" is ENVELOPE_ERR_NOT_ENVELOPE: the caller decides
 * whether to deliver such a value as it is.
 *
 * Pure: no I/O, no globals, no logging. Reentrant.
 */
#ifndef KG_ENVELOPE_H
#define KG_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct json_t; /* jansson's json_t */

enum envelope_err {
	ENVELOPE_OK = 0,
	ENVELOPE_ERR_NOT_ENVELOPE = -1, /* not a JSON object with a "payload" */
	ENVELOPE_ERR_INVALID = -2,      /* bad payload_encoding, bad base64,
					   base64 payload not a string */
	ENVELOPE_ERR_UTF8 = -3,         /* encode: a string field is not UTF-8 */
	ENVELOPE_ERR_NOMEM = -4,
};

/* What envelope_encode() reads. Borrowed; strings need no NUL terminator
 * except error. */
struct envelope_in {
	const char *topic;
	size_t topic_len;
	const char *clientid;
	size_t clientid_len;
	const char *username;  /* NULL: "username":null */
	size_t username_len;
	uint8_t qos;
	bool retain;
	int64_t timestamp_ms;
	const uint8_t *payload;
	size_t payload_len;
	const char *error;     /* NUL-terminated; NULL: no "error" member
				  (set for dead letters) */
	bool text_base64;      /* true: text that is not JSON goes as base64
				  (payload_text = "base64"), not "utf8" */
	const uint8_t *props;  /* MQTT 5 properties as struct msg carries them
				  (encoded, validated); NULL: none */
	size_t props_len;
	bool has_expiry;       /* "message_expiry": expiry_s */
	uint32_t expiry_s;
};

/* Appends the envelope to out. Returns 0 or a negative enum envelope_err; on
 * error out is left as it was before the call. */
int envelope_encode(struct buf *out, const struct envelope_in *in);

/* Appends the payload carried by the envelope in value to payload_out.
 * Returns 0 or a negative enum envelope_err; on error payload_out is left as
 * it was before the call. */
int envelope_decode_payload(const uint8_t *value, size_t len, struct buf *payload_out);
/* The same, reusing a parse of value made elsewhere (template_ctx_json());
 * root must be jansson's parse of exactly these bytes. */
int envelope_decode_parsed(const struct json_t *root, const uint8_t *value, size_t len,
			   struct buf *payload_out);

/* True when p[0..n) is text for the "utf8" payload encoding: well-formed
 * UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF) without U+0000 (which MQTT strings may not hold either,
 * [MQTT-1.5.4-2]; a payload with NUL bytes is treated as binary). Control
 * characters are allowed (escaped in the envelope). n == 0 is true. */
bool envelope_text_valid(const uint8_t *p, size_t n);

/* Base64 (RFC 4648, standard alphabet, padded). Append to out; return 0, or
 * ENVELOPE_ERR_NOMEM, or (decode) ENVELOPE_ERR_INVALID with out unchanged. */
int envelope_base64_encode(struct buf *out, const uint8_t *p, size_t n);
int envelope_base64_decode(struct buf *out, const char *s, size_t n);

const char *envelope_err_str(int err);

#endif
