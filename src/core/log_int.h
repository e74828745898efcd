/*
 * log_int.h - what log.c (levels, formatting and writing lines, rate
 * limits) and log_quote.c (escaping bytes: log_q()/log_qn() for values,
 * and the control-byte escaping of whole lines) share. Not a public
 * interface: other modules use log.h.
 *
 * Pure functions on the caller's buffers: any thread.
 */
#ifndef KG_LOG_INT_H
#define KG_LOG_INT_H

#include <stdbool.h>
#include <stddef.h>

/* Copies the formatted text s (len bytes) into out, at most cap bytes, with
 * newline, CR and tab as \n, \r, \t and other control bytes as \xHH, never
 * splitting an escape. Returns the bytes written; *done is the number of
 * bytes of s consumed. */
size_t log_quote_ctl(char *out, size_t cap, const char *s, size_t len, size_t *done);

/* The largest cut of the escaped text s[0..len) that splits neither a
 * backslash escape nor a UTF-8 sequence; *open says whether a quote is open
 * there. */
size_t log_quote_cut(const char *s, size_t len, bool *open);

#endif
