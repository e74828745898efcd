/*
 * log_quote.c - escaping for the log (log.h): log_q()/log_qn(), which quote
 * a value from the network, and the escaping of control bytes in a whole
 * line, with the safe place to cut it, for log.c (log_int.h).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/log.h"
#include "core/log_int.h"

/* ---- quoting ---- */

/* Length of the well-formed UTF-8 sequence at p (2-4, with its code point
 * in *cp), or 0 if there is none (stray, overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t left, uint32_t *cp)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;
	uint32_t v;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, v = c & 0x0f;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++, lo = 0x80, hi = 0xbf) {
		if (p[i] < lo || p[i] > hi)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	*cp = v;
	return n;
}

/* Code points a terminal or viewer would render as a line break or use to
 * reorder text: shown escaped. */
static bool cp_hidden(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f || cp == 0x2028 ||
	       cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

static size_t hex_byte(char *out, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	out[0] = '\\', out[1] = 'x', out[2] = hex[c >> 4], out[3] = hex[c & 15];
	return 4;
}

/* Escapes the unit (one byte or one UTF-8 character) at p into out (16
 * bytes); returns the bytes of p it covers and sets *outlen. */
static size_t q_unit(const unsigned char *p, size_t left, char *out, size_t *outlen)
{
	unsigned char c = p[0];
	uint32_t cp;
	size_t n;

	if (c < 0x80) {
		const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" :
				c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
		if (e)
			memcpy(out, e, *outlen = 2);
		else if (c < 0x20 || c == 0x7f)
			*outlen = hex_byte(out, c);
		else
			out[0] = (char)c, *outlen = 1;
		return 1;
	}
	n = utf8_seq(p, left, &cp);
	if (n == 0) {
		*outlen = hex_byte(out, c);
		return 1;
	}
	if (cp_hidden(cp)) {
		*outlen = 0;
		for (size_t i = 0; i < n; i++)
			*outlen += hex_byte(out + *outlen, p[i]);
	} else {
		memcpy(out, p, n);
		*outlen = n;
	}
	return n;
}

const char *log_qn(const char *s, size_t len)
{
	static _Thread_local char ring[LOG_Q_SLOTS][LOG_Q_MAX + sizeof("\"...\"")];
	static _Thread_local unsigned next;
	const unsigned char *p = (const unsigned char *)s, *end;
	char *out, unit[16];
	size_t o = 0, un;

	if (!s)
		return "-";
	end = p + len;
	out = ring[next++ % LOG_Q_SLOTS];
	out[o++] = '"';
	while (p < end) {
		size_t used = q_unit(p, (size_t)(end - p), unit, &un);
		if (o - 1 + un > LOG_Q_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, unit, un);
		o += un;
		p += used;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

const char *log_q(const char *s)
{
	return log_qn(s, s ? strlen(s) : 0);
}

/* ---- lines ---- */

/* Copies the formatted text s into out (at most cap bytes) with control
 * bytes escaped, never splitting an escape. Returns the bytes written;
 * *done is the number of bytes of s consumed. */
size_t log_quote_ctl(char *out, size_t cap, const char *s, size_t len, size_t *done)
{
	size_t o = 0, i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[4];
		size_t n = 1;

		e[0] = (char)c;
		if (c == '\n' || c == '\r' || c == '\t')
			e[0] = '\\', e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', n = 2;
		else if (c < 0x20 || c == 0x7f)
			n = hex_byte(e, c);
		if (o + n > cap)
			break;
		memcpy(out + o, e, n);
		o += n;
	}
	*done = i;
	return o;
}

/* The largest cut of s[0..len) that splits neither a backslash escape nor
 * a UTF-8 sequence; *open says whether a quote is open there. */
size_t log_quote_cut(const char *s, size_t len, bool *open)
{
	size_t good = 0, esc_end = 0;
	bool q = false;

	*open = false;
	for (size_t i = 0; i <= len; i++) {
		if (i >= esc_end && (i == len || ((unsigned char)s[i] & 0xc0) != 0x80))
			good = i, *open = q;
		if (i == len || i < esc_end)
			continue;
		if (s[i] == '\\')
			esc_end = i + (i + 1 < len && s[i + 1] == 'x' ? 4 : 2);
		else if (s[i] == '"')
			q = !q;
	}
	/* A lead byte whose sequence was cut short at the end. */
	size_t j = good;
	while (j > 0 && good - j < 3 && ((unsigned char)s[j - 1] & 0xc0) == 0x80)
		j--;
	if (j > 0) {
		unsigned char c = (unsigned char)s[j - 1];
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (need > 1 && good - (j - 1) < need)
			good = j - 1;
	}
	return good;
}
