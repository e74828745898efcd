/*
 * passwd_hash.c - the hash strings of a password file (passwd.h): reading
 * and writing "$6$SALT$HASH" and "$7$N$SALT$HASH", computing their digests
 * (SHA-512 and PBKDF2-HMAC-SHA512 from OpenSSL), and passwd_hash() for new
 * entries. Knows entries only, not the db (passwd.c); see passwd_int.h.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/passwd.h"
#include "auth/passwd_int.h"

static int b64_value(char c)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(abc, c) : NULL;

	return p ? (int)(p - abc) : -1;
}

/* Decodes exactly want bytes of base64 (padding optional) from s[0..len). */
static bool b64_decode(const char *s, size_t len, uint8_t *out, size_t want)
{
	uint32_t acc = 0;
	size_t n = 0, bits = 0, pad = 0;

	while (len > 0 && s[len - 1] == '=' && pad < 2) {
		len--;
		pad++;
	}
	if (pad && (len + pad) % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == want)
				return false;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	/* Six bits left over: a length of 4k+1, which no encoder writes. */
	return n == want && bits < 6;
}

/* Reads "$6$SALT$HASH" or "$7$N$SALT$HASH" into e. NULL, or what is wrong. */
const char *passwd_hash_parse(const char *s, size_t len, struct passwd_entry *e)
{
	const char *end = s + len, *p, *q;

	if (len == 0)
		return "no password hash after ':'";
	if (len < 3 || s[0] != '$' || (s[1] != '6' && s[1] != '7') || s[2] != '$')
		return "not a $6$ or $7$ hash (plain-text passwords are not accepted)";
	e->kind = (uint8_t)(s[1] - '0');
	p = s + 3;
	e->iterations = 0;
	if (e->kind == 7) {
		uint64_t it = 0;
		for (q = p; q < end && *q >= '0' && *q <= '9'; q++)
			if ((it = it * 10 + (uint64_t)(*q - '0')) > PASSWD_MAX_ITERATIONS)
				it = PASSWD_MAX_ITERATIONS + 1; /* saturate: no overflow */
		if (q == p || q == end || *q != '$' || it == 0)
			return "bad iteration count";
		if (it > PASSWD_MAX_ITERATIONS)
			return "iteration count above the limit of 10000000";
		e->iterations = (uint32_t)it;
		p = q + 1;
	}
	q = memchr(p, '$', (size_t)(end - p));
	if (!q || !b64_decode(p, (size_t)(q - p), e->salt, SALT_LEN))
		return "bad salt (want 12 bytes of base64)";
	if (!b64_decode(q + 1, (size_t)(end - q - 1), e->hash, HASH_LEN))
		return "bad hash (want 64 bytes of base64)";
	return NULL;
}

/* Computes the 64-byte hash of pw for an entry's kind, salt and count. */
bool passwd_hash_digest(const struct passwd_entry *e, const void *pw, size_t pwlen,
			uint8_t out[HASH_LEN])
{
	if (pwlen > INT_MAX)
		return false;
	if (e->kind == 7)
		return PKCS5_PBKDF2_HMAC(pw, (int)pwlen, e->salt, SALT_LEN, (int)e->iterations,
					 EVP_sha512(), HASH_LEN, out) == 1;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, pw, pwlen) == 1 &&
		  EVP_DigestUpdate(ctx, e->salt, SALT_LEN) == 1 &&
		  EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == HASH_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Writes e's hash string ("$7$N$SALT$HASH") to out, which has room for
 * PASSWD_HASH_MAX bytes. Returns its length. */
size_t passwd_hash_format(const struct passwd_entry *e, char *out)
{
	size_t n = e->kind == 7 ? (size_t)sprintf(out, "$7$%u$", (unsigned)e->iterations)
				: (size_t)sprintf(out, "$6$");
	n += (size_t)EVP_EncodeBlock((unsigned char *)out + n, e->salt, SALT_LEN);
	out[n++] = '$';
	n += (size_t)EVP_EncodeBlock((unsigned char *)out + n, e->hash, HASH_LEN);
	return n;
}

int passwd_hash(const void *pw, size_t pwlen, int iterations, char *out, size_t outlen)
{
	struct passwd_entry e = { .kind = 7, .iterations = (uint32_t)iterations };
	char buf[PASSWD_HASH_MAX];

	if (iterations < 1 || iterations > PASSWD_MAX_ITERATIONS || pwlen > INT_MAX)
		return PASSWD_EINVAL;
	if (RAND_bytes(e.salt, SALT_LEN) != 1 || !passwd_hash_digest(&e, pw, pwlen, e.hash))
		return PASSWD_ECRYPTO;
	size_t n = passwd_hash_format(&e, buf);
	OPENSSL_cleanse(&e, sizeof(e));
	if (n >= outlen)
		return PASSWD_ENOSPC;
	memcpy(out, buf, n + 1);
	return 0;
}
