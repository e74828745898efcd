/*
 * http_auth.c - the admin endpoint's bearer token (http.h, "Bearer token"):
 * reading metrics.token_file into a struct http_auth (only its SHA-256 is
 * kept) and checking a request's Authorization header against it. The
 * server (http.c) decides which auth is in force; http_route.c asks
 * http_auth_ok(). Contracts in http_int.h.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/http.h"
#include "admin/http_int.h"
#include "core/cfg.h"
#include "core/http_parse.h"
#include "core/util.h"

_Static_assert(sizeof(((struct http_auth *)0)->digest) == SHA256_DIGEST_LENGTH,
	       "http_auth.digest holds a SHA-256");

/* Returns a new auth for cfg (no token without a token file), or NULL with
 * "FILE:LINE: ..." in err. */
struct http_auth *http_auth_load(const struct cfg *cfg, char *err, size_t errlen)
{
	const struct cfg_path *tf = &cfg->metrics.token_file;
	struct http_auth *a = calloc(1, sizeof(*a));
	const char *why = NULL;
	char *text = NULL;
	size_t len = 0, n = 0;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->protect_metrics = cfg->metrics.protect_metrics;
	if (!tf->path)
		return a;
	if (!(text = util_read_file(tf->path, HTTP_TOKEN_FILE_MAX, &len))) {
		int e = errno;
		if (e == EFBIG)
			snprintf(err, errlen, "%s:%d: metrics.token_file: %s is larger than %d bytes",
				 cfg->path, tf->line, tf->path, HTTP_TOKEN_FILE_MAX);
		else
			snprintf(err, errlen, "%s:%d: metrics.token_file: cannot read %s: %s",
				 cfg->path, tf->line, tf->path, strerror(e));
		free(a);
		return NULL;
	}
	while (n < len && text[n] != '\n')
		n++;
	while (n > 0 && text[n - 1] && strchr(" \t\r\f\v", text[n - 1]))
		n--;
	if (n == 0)
		why = "its first line is empty";
	for (size_t i = 0; i < n && !why; i++)
		if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
			why = "the token may hold only visible ASCII characters, no blanks";
	if (why) {
		snprintf(err, errlen, "%s:%d: metrics.token_file: %s: %s", cfg->path, tf->line,
			 tf->path, why);
		free(a);
		a = NULL;
	} else {
		SHA256((const unsigned char *)text, n, a->digest);
		a->has_token = true;
	}
	OPENSSL_cleanse(text, len);
	free(text);
	return a;
}

void http_auth_free(struct http_auth *a)
{
	if (a)
		OPENSSL_cleanse(a, sizeof(*a));
	free(a);
}

bool http_auth_ok(const struct http_auth *auth, const struct http_request *req)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	const char *v;
	size_t len;

	if (!auth->has_token)
		return true;
	if (!(v = http_header_get(req, "Authorization", &len)) || len < 7 ||
	    strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	for (v += 7, len -= 7; len > 0 && (*v == ' ' || *v == '\t'); v++, len--)
		;
	SHA256((const unsigned char *)v, len, d);
	return CRYPTO_memcmp(d, auth->digest, sizeof(d)) == 0;
}
