/* passwd.c - mosquitto password files; see passwd.h. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/passwd.h"
#include "core/util.h"

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

struct passwd_db {
	struct passwd_entry *e; /* in file order */
	size_t n, cap;
	size_t users;
	uint32_t *slot;         /* open addressing: index into e + 1; 0 empty */
	size_t nslot;           /* power of two, > 2 * users */
	uint32_t dummy_iterations;
};

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot holding user, or the empty slot where it would go. */
static uint32_t *find_slot(const struct passwd_db *db, const char *user)
{
	size_t mask = db->nslot - 1, i = (size_t)hash_name(user) & mask;

	while (db->slot[i] && strcmp(db->e[db->slot[i] - 1].text, user) != 0)
		i = (i + 1) & mask;
	return &db->slot[i];
}

/* Refills the index from the entries (their positions changed). */
static void index_all(struct passwd_db *db)
{
	memset(db->slot, 0, db->nslot * sizeof(*db->slot));
	for (size_t i = 0; i < db->n; i++)
		if (db->e[i].kind)
			*find_slot(db, db->e[i].text) = (uint32_t)(i + 1);
}

/* Replaces the index by one with room for want users. */
static int reindex(struct passwd_db *db, size_t want)
{
	size_t nslot = 16;

	while (nslot <= 2 * want)
		nslot *= 2;
	uint32_t *slot = calloc(nslot, sizeof(*slot));
	if (!slot)
		return PASSWD_ENOMEM;
	free(db->slot);
	db->slot = slot;
	db->nslot = nslot;
	index_all(db);
	return 0;
}

/* Appends e (taking its text) and indexes it; on error nothing changes. */
static int append(struct passwd_db *db, const struct passwd_entry *e)
{
	if (db->n == db->cap) {
		size_t cap = db->cap ? db->cap * 2 : 64;
		struct passwd_entry *ne = cap < UINT32_MAX ? realloc(db->e, cap * sizeof(*ne)) : NULL;
		if (!ne)
			return PASSWD_ENOMEM;
		db->e = ne;
		db->cap = cap;
	}
	if (e->kind && 2 * (db->users + 1) >= db->nslot) {
		int rc = reindex(db, db->users + 1);
		if (rc)
			return rc;
	}
	db->e[db->n++] = *e;
	if (e->kind) {
		*find_slot(db, e->text) = (uint32_t)db->n;
		db->users++;
		if (e->kind == 7)
			db->dummy_iterations = e->iterations;
	}
	return 0;
}

struct passwd_db *passwd_new(void)
{
	struct passwd_db *db = calloc(1, sizeof(*db));

	if (db && reindex(db, 0) != 0) {
		free(db);
		return NULL;
	}
	if (db)
		db->dummy_iterations = PASSWD_DEFAULT_ITERATIONS;
	return db;
}

void passwd_free(struct passwd_db *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->n; i++)
		free(db->e[i].text);
	free(db->e);
	free(db->slot);
	free(db);
}

size_t passwd_count(const struct passwd_db *db) { return db->users; }

bool passwd_find(const struct passwd_db *db, const char *user)
{
	return *find_slot(db, user) != 0;
}

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
static const char *parse_hash(const char *s, size_t len, struct passwd_entry *e)
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

/* Moves [*a, *b) inwards past spaces and tabs. */
static void trim(const char **a, const char **b)
{
	while (*a < *b && (**a == ' ' || **a == '\t'))
		(*a)++;
	while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t'))
		(*b)--;
}

static void set_err(char *err, size_t errlen, unsigned line, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%u: %s", line, what);
}

/* Parses one line (no '\n'); returns NULL or what is wrong. */
static const char *parse_line(struct passwd_db *db, const char *s, size_t len,
			      unsigned line, char *dup, size_t duplen)
{
	struct passwd_entry e = { .line = line };
	while (len > 0 && s[len - 1] == '\r') /* CRLF, and kept comments stay stable */
		len--;
	if (memchr(s, '\0', len))
		return "NUL byte";
	const char *u = s, *ue = s + len, *colon, *h, *he = s + len;
	trim(&u, &ue);
	if (u == ue || *u == '#') {
		if (!(e.text = util_strdup_n(s, len)))
			return "out of memory";
		return append(db, &e) ? (free(e.text), "out of memory") : NULL;
	}
	if (!(colon = memchr(u, ':', (size_t)(ue - u))))
		return "no ':' after the user name";
	ue = colon;
	h = colon + 1;
	trim(&u, &ue);
	trim(&h, &he);
	if (ue == u)
		return "empty user name";
	if (ue - u > PASSWD_MAX_USER)
		return "user name longer than 65535 bytes";
	const char *why = parse_hash(h, (size_t)(he - h), &e);
	if (why)
		return why;
	if (!(e.text = util_strdup_n(u, (size_t)(ue - u))))
		return "out of memory";
	uint32_t other = *find_slot(db, e.text);
	if (other) {
		snprintf(dup, duplen, "user '%.64s' is listed twice (first on line %u)",
			 e.text, (unsigned)db->e[other - 1].line);
		free(e.text);
		return dup;
	}
	return append(db, &e) ? (free(e.text), "out of memory") : NULL;
}

struct passwd_db *passwd_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct passwd_db *db = passwd_new();
	char dup[128];
	unsigned line = 0;

	if (!db) {
		set_err(err, errlen, 0, "out of memory");
		return NULL;
	}
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		const char *why = parse_line(db, text + pos, end - pos, ++line, dup, sizeof(dup));
		if (why) {
			set_err(err, errlen, line, why);
			passwd_free(db);
			return NULL;
		}
		pos = end + 1;
	}
	return db;
}

struct passwd_db *passwd_load(const char *path, char *err, size_t errlen)
{
	char sub[256];
	size_t len;
	char *text = util_read_file(path, PASSWD_MAX_FILE, &len);

	if (!text) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, errno == EFBIG ?
				 "larger than 16 MiB" : strerror(errno));
		return NULL;
	}
	struct passwd_db *db = passwd_parse(text, len, sub, sizeof(sub));
	free(text);
	if (!db && err && errlen)
		snprintf(err, errlen, "%s:%s", path, sub);
	return db;
}

/* Computes the 64-byte hash of pw for an entry's kind, salt and count. */
static bool digest(const struct passwd_entry *e, const void *pw, size_t pwlen,
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

enum passwd_result passwd_check(const struct passwd_db *db, const char *user,
				const void *pw, size_t pwlen)
{
	uint8_t out[HASH_LEN];
	uint32_t idx = *find_slot(db, user);

	if (!idx) {
		/* Same work as for a real user: no timing oracle for names. */
		struct passwd_entry dummy = { .kind = 7, .iterations = db->dummy_iterations };
		digest(&dummy, pw, pwlen, out);
		OPENSSL_cleanse(out, sizeof(out));
		return PASSWD_NO_USER;
	}
	const struct passwd_entry *e = &db->e[idx - 1];
	if (!digest(e, pw, pwlen, out))
		return PASSWD_ERROR;
	bool same = CRYPTO_memcmp(out, e->hash, HASH_LEN) == 0;
	OPENSSL_cleanse(out, sizeof(out));
	return same ? PASSWD_OK : PASSWD_WRONG;
}

/* Writes e's hash string ("$7$N$SALT$HASH") to out, which has room for
 * PASSWD_HASH_MAX bytes. Returns its length. */
static size_t format_hash(const struct passwd_entry *e, char *out)
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
	if (RAND_bytes(e.salt, SALT_LEN) != 1 || !digest(&e, pw, pwlen, e.hash))
		return PASSWD_ECRYPTO;
	size_t n = format_hash(&e, buf);
	OPENSSL_cleanse(&e, sizeof(e));
	if (n >= outlen)
		return PASSWD_ENOSPC;
	memcpy(out, buf, n + 1);
	return 0;
}

bool passwd_user_valid(const char *user)
{
	size_t len = strnlen(user, PASSWD_MAX_USER + 1);

	if (len == 0 || len > PASSWD_MAX_USER || user[0] == '#' || user[0] == ' ' ||
	    user[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++)
		if (user[i] == ':' || (unsigned char)user[i] < 0x20 || user[i] == 0x7f)
			return false;
	return true;
}

int passwd_set(struct passwd_db *db, const char *user, const char *hash)
{
	struct passwd_entry e = { 0 };

	if (!passwd_user_valid(user) || parse_hash(hash, strlen(hash), &e))
		return PASSWD_EINVAL;
	uint32_t idx = *find_slot(db, user);
	if (idx) {
		struct passwd_entry *old = &db->e[idx - 1];
		e.text = old->text;
		e.line = old->line;
		*old = e;
	} else {
		if (!(e.text = strdup(user)))
			return PASSWD_ENOMEM;
		if (append(db, &e) != 0) {
			free(e.text);
			return PASSWD_ENOMEM;
		}
	}
	if (e.kind == 7)
		db->dummy_iterations = e.iterations;
	return 0;
}

bool passwd_delete(struct passwd_db *db, const char *user)
{
	uint32_t idx = *find_slot(db, user);

	if (!idx)
		return false;
	free(db->e[idx - 1].text);
	memmove(&db->e[idx - 1], &db->e[idx], (db->n - idx) * sizeof(*db->e));
	db->n--;
	db->users--;
	index_all(db); /* the entries after it moved down; editing is rare */
	return true;
}

char *passwd_format(const struct passwd_db *db, size_t *len)
{
	size_t total = 1, n = 0;

	for (size_t i = 0; i < db->n; i++)
		total += strlen(db->e[i].text) + 1 + (db->e[i].kind ? PASSWD_HASH_MAX : 0);
	char *out = malloc(total);
	if (!out)
		return NULL;
	for (size_t i = 0; i < db->n; i++) {
		const struct passwd_entry *e = &db->e[i];
		size_t tl = strlen(e->text);
		memcpy(out + n, e->text, tl);
		n += tl;
		if (e->kind) {
			out[n++] = ':';
			n += format_hash(e, out + n);
		}
		out[n++] = '\n';
	}
	out[n] = '\0';
	if (len)
		*len = n;
	return out;
}
