/*
 * passwd_int.h - what passwd.c (the db: entries in file order, the user
 * index, parsing and writing the file, checking and editing) and
 * passwd_hash.c (the $6$ and $7$ hash strings and their digests) share.
 * Not a public interface: other modules use passwd.h.
 *
 * Pure functions on the caller's entries: any thread.
 */
#ifndef KG_PASSWD_INT_H
#define KG_PASSWD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SALT_LEN 12
#define HASH_LEN 64

/* One line of the file: a user, or a comment/blank line kept verbatim. */
struct passwd_entry {
	char *text;          /* user name, or the whole line (kind 0) */
	uint32_t iterations; /* kind 7 only */
	uint32_t line;       /* line in the parsed text; 0 when added later */
	uint8_t kind;        /* 0 comment, 6 ($6$) or 7 ($7$) */
	uint8_t salt[SALT_LEN];
	uint8_t hash[HASH_LEN];
};

/* Reads the hash string s (len bytes, "$6$SALT$HASH" or "$7$N$SALT$HASH",
 * base64 padding optional) into e's kind, iterations, salt and hash.
 * Returns NULL, or what is wrong (a constant string for an error message). */
const char *passwd_hash_parse(const char *s, size_t len, struct passwd_entry *e);

/* Computes into out the 64-byte hash of pw (pwlen bytes) for e's kind, salt
 * and iteration count. Returns false when OpenSSL fails or pwlen is over
 * INT_MAX. */
bool passwd_hash_digest(const struct passwd_entry *e, const void *pw, size_t pwlen,
			uint8_t out[HASH_LEN]);

/* Writes e's hash string ("$7$N$SALT$HASH" or "$6$SALT$HASH", padded
 * base64, no NUL) to out, which has room for PASSWD_HASH_MAX bytes. Returns
 * its length. */
size_t passwd_hash_format(const struct passwd_entry *e, char *out);

#endif
