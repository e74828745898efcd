/*
 * passwd.h - mosquitto password files: parse, look up, check, edit, write.
 *
 * A file is read as lines of
 *
 *     USER:$7$ITERATIONS$SALT$HASH    PBKDF2-HMAC-SHA512 (mosquitto_passwd 2.x)
 *     USER:$6$SALT$HASH               SHA-512(password || salt) (mosquitto 1.x)
 *
 * with SALT 12 bytes and HASH 64 bytes, both base64 (padding optional on
 * input, always written). Blank lines and lines whose first non-blank
 * character is '#' are comments. Blanks around USER and the hash are
 * ignored, as mosquitto does; a trailing '\r' (CRLF files) too. The user
 * name runs to the first ':', so it cannot contain one.
 *
 * Stricter than mosquitto, which skips bad lines with a warning: any bad
 * line fails the whole file with "LINE: what is wrong", so a typo never
 * silently locks a user out or leaves a stale entry in force. In particular:
 *   - a user listed twice is an error (naming both lines), not "last wins";
 *   - plain-text passwords (mosquitto_passwd -U input) are refused;
 *   - ITERATIONS must be 1..PASSWD_MAX_ITERATIONS: the count comes from the
 *     file and is spent on every login, so a huge value would let a bad
 *     file turn each CONNECT into minutes of CPU.
 *
 * Lookups use a hash table (O(1) expected); loading does no key
 * derivation (PBKDF2 runs only in passwd_check()), so 100k users load in
 * tens of milliseconds.
 *
 * Pure but for OpenSSL (hashes, RAND_bytes) and passwd_load()'s read of
 * one file: no globals, no logging.
 * Threads: a db is not locked. passwd_check(), passwd_find() and
 * passwd_format() only read it, so any number of threads (the verification
 * pool) may call them concurrently on a db nobody modifies; the editing
 * functions (passwd_set(), passwd_delete()) need exclusive access. A reload
 * builds a new db and swaps the pointer; the old one is freed once no
 * verification uses it (the caller's job).
 *
 * Files: passwd_hash.c implements passwd_hash() and the hash strings and
 * digests behind passwd_check(); passwd.c the rest.
 */
#ifndef KG_PASSWD_H
#define KG_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

struct passwd_db;

/* 210000: OWASP's 2023 recommendation for PBKDF2-HMAC-SHA512 (mosquitto_passwd
 * writes 101). About 0.2 s of one x86 core per check, hence the pool. */
#define PASSWD_DEFAULT_ITERATIONS 210000
/* Largest iteration count accepted from a file or by passwd_hash(). */
#define PASSWD_MAX_ITERATIONS 10000000
/* Largest file passwd_load() reads, and largest user name (as MQTT). */
#define PASSWD_MAX_FILE (16u << 20)
#define PASSWD_MAX_USER 65535
/* Room for any line passwd_hash() writes ("$7$" count, salt, hash, NUL). */
#define PASSWD_HASH_MAX 128

enum passwd_result {
	PASSWD_OK = 0,      /* the password is right */
	PASSWD_WRONG = 1,   /* the user exists, the password is wrong */
	PASSWD_NO_USER = 2, /* no such user */
	PASSWD_ERROR = 3,   /* out of memory or an OpenSSL failure: refuse */
};

/* Negative results of the functions returning int. */
enum {
	PASSWD_EINVAL = -1, /* bad argument: user name, hash string, count */
	PASSWD_ENOMEM = -2,
	PASSWD_ECRYPTO = -3, /* OpenSSL failed (RAND_bytes, a digest) */
	PASSWD_ENOSPC = -4,  /* the output buffer is too small */
};

/* Returns a new empty db (free with passwd_free()), NULL on out of memory. */
struct passwd_db *passwd_new(void);

/*
 * Parses len bytes of text (no NUL needed; a NUL byte is an error).
 * Returns a new db (free with passwd_free()), or NULL with "LINE: what is
 * wrong" (1-based line) in err, truncated to errlen (err may be NULL).
 */
struct passwd_db *passwd_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses the file at path (at most PASSWD_MAX_FILE bytes). As
 * passwd_parse(), with errors "PATH:LINE: what is wrong", or "PATH: reason"
 * when the file cannot be read. */
struct passwd_db *passwd_load(const char *path, char *err, size_t errlen);

/* Frees db and everything in it. NULL ok. */
void passwd_free(struct passwd_db *db);

/* Number of users. */
size_t passwd_count(const struct passwd_db *db);

/* Whether user (NUL-terminated) is in db. No hashing. */
bool passwd_find(const struct passwd_db *db, const char *user);

/*
 * Checks the password pw (pwlen bytes, any bytes) of user (NUL-terminated).
 * Runs the user's hash (PBKDF2 with the file's count for $7$) and compares
 * in constant time. For an unknown user it still runs one PBKDF2, with the
 * count of the last $7$ entry read or set (PASSWD_DEFAULT_ITERATIONS if
 * none), so the reply time does not tell which user names exist.
 * Any thread, concurrently with other readers (see the top).
 */
enum passwd_result passwd_check(const struct passwd_db *db, const char *user,
				const void *pw, size_t pwlen);

/*
 * Writes the $7$ string of pw (pwlen bytes) with iterations rounds
 * (1..PASSWD_MAX_ITERATIONS) and a fresh random 12-byte salt into out
 * (NUL-terminated; PASSWD_HASH_MAX bytes are always enough). Returns 0,
 * PASSWD_EINVAL, PASSWD_ENOSPC or PASSWD_ECRYPTO. Any thread.
 */
int passwd_hash(const void *pw, size_t pwlen, int iterations, char *out, size_t outlen);

/* Whether name can be stored as a user: 1..PASSWD_MAX_USER bytes, no ':',
 * no control characters (so no line break or NUL), no blank at either end
 * and no '#' first (both would read back differently). */
bool passwd_user_valid(const char *user);

/*
 * Sets user's hash to hash (a "$6$..." or "$7$..." string as in the file,
 * e.g. from passwd_hash()), replacing an existing entry in place or adding
 * one at the end. Both strings are copied. Returns 0, PASSWD_EINVAL (user
 * not passwd_user_valid() or hash malformed) or PASSWD_ENOMEM; on error db
 * is unchanged. Exclusive access.
 */
int passwd_set(struct passwd_db *db, const char *user, const char *hash);

/* Removes user. Returns true when it was there. Exclusive access. */
bool passwd_delete(struct passwd_db *db, const char *user);

/*
 * Returns the db as file text (NUL-terminated, length in *len when len is
 * not NULL; free with free()), or NULL on out of memory. Comments and blank
 * lines are kept where they were; user lines are written in their file
 * order, normalised (no blanks, padded base64), new users at the end.
 */
char *passwd_format(const struct passwd_db *db, size_t *len);

#endif
