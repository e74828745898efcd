/* http_parse.c - HTTP/1.x request head parser; see http_parse.h. */
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "core/http_parse.h"

/* RFC 9110 tchar: the characters of a method or a header name. */
static bool is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Field value bytes: visible ASCII, blanks and obs-text; no controls, no DEL. */
static bool is_value_char(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* A line end at p[i] (i < len): its length (1 for LF, 2 for CRLF), 0 when
 * a CR is the last byte, -1 for a CR without LF, -2 when p[i] is no line end. */
static int line_end(const unsigned char *p, size_t len, size_t i)
{
	if (p[i] == '\n')
		return 1;
	if (p[i] != '\r')
		return -2;
	if (i + 1 == len)
		return 0;
	return p[i + 1] == '\n' ? 2 : -1;
}

/* Parses "METHOD SP /target SP HTTP/1.x EOL". Returns the bytes it took,
 * 0 for need more, -1 for malformed. */
static long parse_request_line(const unsigned char *p, size_t len, struct http_request *r)
{
	static const char version[] = "HTTP/1.";
	const char *base = (const char *)p;
	size_t i = 0;

	while (i < len && is_tchar(p[i]))
		if (++i > HTTP_MAX_METHOD)
			return -1;
	if (i == len)
		return 0;
	if (p[i] != ' ' || i == 0)
		return -1;
	r->method = base;
	r->method_len = i++;

	if (i == len)
		return 0;
	if (p[i] != '/')
		return -1;
	size_t start = i;
	while (i < len && p[i] > 0x20 && p[i] < 0x7f) {
		/* Still in the target here: the line cannot end within the limit. */
		if (i >= HTTP_MAX_REQUEST_LINE)
			return -1;
		if (p[i] == '?' && !r->query)
			r->query = base + i + 1;
		i++;
	}
	if (i == len)
		return 0;
	if (p[i] != ' ')
		return -1;
	r->path = base + start;
	r->path_len = (r->query ? (size_t)(r->query - 1 - base) : i) - start;
	if (r->query)
		r->query_len = (size_t)(base + i - r->query);
	i++;

	for (size_t k = 0; k < sizeof(version) - 1; k++, i++) {
		if (i == len)
			return 0;
		if (p[i] != (unsigned char)version[k])
			return -1;
	}
	if (i == len)
		return 0;
	if (p[i] != '0' && p[i] != '1')
		return -1;
	r->minor = p[i++] - '0';
	if (i > HTTP_MAX_REQUEST_LINE)
		return -1;
	if (i == len)
		return 0;
	int e = line_end(p, len, i);
	if (e <= 0)
		return e == 0 ? 0 : -1;
	return (long)(i + (size_t)e);
}

/* Parses one "name: value EOL" at p[i]. Returns the bytes it took, 0 or -1. */
static long parse_header(const unsigned char *p, size_t len, size_t i, struct http_header *h)
{
	size_t start = i;

	while (i < len && is_tchar(p[i]))
		i++;
	if (i == len)
		return 0;
	if (p[i] != ':' || i == start)
		return -1;
	h->name = (const char *)p + start;
	h->name_len = i - start;
	i++;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	size_t vstart = i, vend = i;
	while (i < len && is_value_char(p[i])) {
		if (p[i] != ' ' && p[i] != '\t')
			vend = i + 1;
		i++;
	}
	if (i == len)
		return 0;
	int e = line_end(p, len, i);
	if (e <= 0)
		return e == 0 ? 0 : -1;
	h->value = (const char *)p + vstart;
	h->value_len = vend - vstart;
	return (long)(i + (size_t)e - start);
}

int http_parse_request(const char *buf, size_t len, struct http_request *req)
{
	const unsigned char *p = (const unsigned char *)buf;
	struct http_request r = { .query = NULL };

	long n = parse_request_line(p, len, &r);
	if (n <= 0)
		return (int)n;
	size_t i = (size_t)n;
	for (;;) {
		if (i == len)
			return 0;
		int e = line_end(p, len, i);
		if (e == 0 || e == -1)
			return e;
		if (e > 0) {
			i += (size_t)e;
			break;
		}
		if (r.n_headers == HTTP_MAX_HEADERS)
			return -1;
		n = parse_header(p, len, i, &r.headers[r.n_headers]);
		if (n <= 0)
			return (int)n;
		r.n_headers++;
		i += (size_t)n;
	}
	if (i > INT_MAX)
		return -1;
	*req = r;
	return (int)i;
}

const char *http_header_get(const struct http_request *req, const char *name, size_t *len)
{
	size_t nlen = strlen(name);

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_header *h = &req->headers[i];
		if (h->name_len == nlen && strncasecmp(h->name, name, nlen) == 0) {
			*len = h->value_len;
			return h->value;
		}
	}
	return NULL;
}

bool http_query_get(const char *query, size_t query_len, const char *name,
		    const char **val, size_t *val_len)
{
	size_t nlen = strlen(name);
	size_t i = 0;

	while (query && i < query_len) {
		size_t end = i;
		while (end < query_len && query[end] != '&')
			end++;
		size_t eq = i;
		while (eq < end && query[eq] != '=')
			eq++;
		if (eq - i == nlen && memcmp(query + i, name, nlen) == 0) {
			*val = eq < end ? query + eq + 1 : query + end;
			*val_len = eq < end ? end - eq - 1 : 0;
			return true;
		}
		i = end + 1;
	}
	return false;
}

long http_query_count(const char *query, size_t query_len, const char *name, long def)
{
	const char *v;
	size_t len;
	long n = 0;

	if (!http_query_get(query, query_len, name, &v, &len))
		return def;
	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	return n;
}
