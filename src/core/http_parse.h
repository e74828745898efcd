/*
 * http_parse.h - parses one HTTP/1.0 or HTTP/1.1 request head from a buffer.
 *
 * Only what the admin endpoint needs: a request line in origin form
 * ("GET /path?query HTTP/1.1") and up to HTTP_MAX_HEADERS header fields.
 * Line ends are CRLF or a bare LF. Strict on purpose: anything unusual
 * (control bytes, whitespace before a colon, folded header lines, absolute
 * or asterisk request targets, other versions) is malformed.
 *
 * The parser keeps no state between calls: call it again on the grown
 * buffer until it stops answering "need more". Every prefix of a valid head
 * needs more; a prefix that can no longer become valid is malformed at once,
 * so garbage is refused without waiting for a size limit.
 *
 * Pure: no I/O, no globals, no allocation, no logging. Reentrant.
 */
#ifndef KG_HTTP_PARSE_H
#define KG_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 32
#define HTTP_MAX_REQUEST_LINE 2048   /* bytes before the line end */
#define HTTP_MAX_METHOD 16

struct http_header {
	const char *name;    /* token, as sent (compare case-insensitively) */
	size_t name_len;
	const char *value;   /* without leading and trailing blanks */
	size_t value_len;
};

/* Every pointer borrows from the parsed buffer: valid while it is. */
struct http_request {
	const char *method;
	size_t method_len;
	const char *path;    /* starts with '/', up to '?' or the end of the target */
	size_t path_len;
	const char *query;   /* after the first '?'; NULL when the target has none */
	size_t query_len;
	int minor;           /* HTTP/1.<minor>: 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t n_headers;
};

/*
 * Parses the request head at the start of buf (len bytes; no NUL needed).
 * Returns the length of the head including its empty line (> 0): bytes after
 * it (a body, a pipelined request) are not looked at; 0 when the head is
 * incomplete; -1 when malformed: bad method token, target not starting with
 * '/', version other than HTTP/1.0 or 1.1, control bytes, a header line
 * without a colon or with blanks before it, more than HTTP_MAX_HEADERS
 * headers, a request line over HTTP_MAX_REQUEST_LINE bytes. *req is written
 * only when the result is > 0. Never reads past buf + len.
 */
int http_parse_request(const char *buf, size_t len, struct http_request *req);

/* The value of the first header called name (case-insensitive), with its
 * length in *len; NULL when absent. */
const char *http_header_get(const struct http_request *req, const char *name, size_t *len);

/*
 * Finds parameter name in a query string ("a=1&b=2"; not percent-decoded).
 * Returns true and the value (possibly empty) in *val, *val_len; false when
 * absent. A parameter without '=' has an empty value.
 */
bool http_query_get(const char *query, size_t query_len, const char *name,
		    const char **val, size_t *val_len);

/* Parameter name as a count of 1 to 9 decimal digits: def when absent, -1
 * when anything else (empty, sign, other characters, too long). */
long http_query_count(const char *query, size_t query_len, const char *name, long def);

#endif
