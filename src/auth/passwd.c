/* passwd.c - mosquitto password files; see passwd.h. The hash strings and
 * digests (and passwd_hash()) are in passwd_hash.c. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/hash.h"
#include "auth/passwd.h"
#include "auth/passwd_int.h"
#include "core/util.h"

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
	return hash_bytes(hash_process_seed(), s, strlen(s));
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
	const char *why = passwd_hash_parse(h, (size_t)(he - h), &e);
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

enum passwd_result passwd_check(const struct passwd_db *db, const char *user,
				const void *pw, size_t pwlen)
{
	uint8_t out[HASH_LEN];
	uint32_t idx = *find_slot(db, user);

	if (!idx) {
		/* Same work as for a real user: no timing oracle for names. */
		struct passwd_entry dummy = { .kind = 7, .iterations = db->dummy_iterations };
		passwd_hash_digest(&dummy, pw, pwlen, out);
		OPENSSL_cleanse(out, sizeof(out));
		return PASSWD_NO_USER;
	}
	const struct passwd_entry *e = &db->e[idx - 1];
	if (!passwd_hash_digest(e, pw, pwlen, out))
		return PASSWD_ERROR;
	bool same = CRYPTO_memcmp(out, e->hash, HASH_LEN) == 0;
	OPENSSL_cleanse(out, sizeof(out));
	return same ? PASSWD_OK : PASSWD_WRONG;
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

	if (!passwd_user_valid(user) || passwd_hash_parse(hash, strlen(hash), &e))
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
			n += passwd_hash_format(e, out + n);
		}
		out[n++] = '\n';
	}
	out[n] = '\0';
	if (len)
		*len = n;
	return out;
}
