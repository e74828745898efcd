/* test_passwd.c - passwd_parse/load/check/hash/set/delete/format, against
 * files written by mosquitto_passwd and hashes computed here with OpenSSL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth/passwd.h"
#include "core/util.h"

#include "parse_cases.h"

static char tmpdir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_passwd.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof(path), "%s/pw", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(tmpdir);
}

static struct passwd_db *parse_ok(const char *text)
{
	char err[256] = "";
	struct passwd_db *db = passwd_parse(text, strlen(text), err, sizeof(err));

	if (!db)
		fail_msg("unexpected error: %s", err);
	return db;
}

static void check(const struct passwd_db *db, const char *user, const char *pw,
		  enum passwd_result want)
{
	enum passwd_result got = passwd_check(db, user, pw, strlen(pw));
	if (got != want)
		fail_msg("check(%s, %s): got %d, want %d", user, pw, got, want);
}

static void test_hash_round_trip(void **state)
{
	char h[PASSWD_HASH_MAX], h2[PASSWD_HASH_MAX];
	struct passwd_db *db = passwd_new();

	(void)state;
	assert_int_equal(passwd_hash("s3cret", 6, 1000, h, sizeof(h)), 0);
	assert_int_equal(strncmp(h, "$7$1000$", 8), 0);
	/* 12-byte salt = 16 base64 chars; 64-byte hash = 88 with "==". */
	assert_int_equal(strlen(h), 8 + 16 + 1 + 88);
	assert_int_equal(h[8 + 16], '$');
	assert_string_equal(h + strlen(h) - 2, "==");
	assert_int_equal(passwd_hash("s3cret", 6, 1000, h2, sizeof(h2)), 0);
	assert_string_not_equal(h, h2); /* fresh salt each time */

	assert_int_equal(passwd_set(db, "alice", h), 0);
	assert_int_equal(passwd_set(db, "bob", h2), 0);
	assert_int_equal(passwd_count(db), 2);
	check(db, "alice", "s3cret", PASSWD_OK);
	check(db, "bob", "s3cret", PASSWD_OK);
	check(db, "alice", "s3cret ", PASSWD_WRONG);
	check(db, "alice", "", PASSWD_WRONG);
	check(db, "carol", "s3cret", PASSWD_NO_USER);
	check(db, "Alice", "s3cret", PASSWD_NO_USER);
	/* Binary passwords: the length counts, not a NUL. */
	assert_int_equal(passwd_hash("a\0b", 3, 10, h, sizeof(h)), 0);
	assert_int_equal(passwd_set(db, "bin", h), 0);
	assert_int_equal(passwd_check(db, "bin", "a\0b", 3), PASSWD_OK);
	assert_int_equal(passwd_check(db, "bin", "a\0c", 3), PASSWD_WRONG);
	assert_int_equal(passwd_check(db, "bin", "a", 1), PASSWD_WRONG);

	assert_int_equal(passwd_hash("x", 1, 0, h, sizeof(h)), PASSWD_EINVAL);
	assert_int_equal(passwd_hash("x", 1, PASSWD_MAX_ITERATIONS + 1, h, sizeof(h)),
			 PASSWD_EINVAL);
	assert_int_equal(passwd_hash("x", 1, 10, h, 100), PASSWD_ENOSPC);
	passwd_free(db);
	passwd_free(NULL);
}

/* Shell-quotes s into out (single quotes). */
static const char *sq(const char *s, char *out, size_t len)
{
	size_t n = 0;

	out[n++] = '\'';
	for (; *s && n + 5 < len; s++) {
		if (*s == '\'') {
			memcpy(out + n, "'\\''", 4);
			n += 4;
		} else {
			out[n++] = *s;
		}
	}
	out[n++] = '\'';
	out[n] = '\0';
	return out;
}

/* Adds user with pw to the file at path with mosquitto_passwd. */
static void mosquitto_passwd(const char *hash, bool create, const char *user, const char *pw)
{
	char cmd[1024], qu[256], qp[256];

	snprintf(cmd, sizeof(cmd), "mosquitto_passwd -H %s %s -b %s %s %s >/dev/null 2>&1",
		 hash, create ? "-c" : "", path, sq(user, qu, sizeof(qu)), sq(pw, qp, sizeof(qp)));
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	if (pclose(p) != 0)
		fail_msg("failed (is mosquitto installed?): %s", cmd);
}

static void test_mosquitto_vectors(void **state)
{
	static const struct { const char *hash, *user, *pw; } users[] = {
		{ "sha512-pbkdf2", "alice", "correct horse battery staple" },
		{ "sha512-pbkdf2", "bob", "p:w$with:colons" },
		{ "sha512-pbkdf2", "carol", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac" },
		{ "sha512", "dave", "old-style $6$ hash" },
		{ "sha512", "eve", "x" },
		{ "sha512-pbkdf2", "user name", "spaces in the name" },
	};
	char err[256] = "";
	size_t n = sizeof(users) / sizeof(users[0]);

	(void)state;
	for (size_t i = 0; i < n; i++)
		mosquitto_passwd(users[i].hash, i == 0, users[i].user, users[i].pw);
	struct passwd_db *db = passwd_load(path, err, sizeof(err));
	if (!db)
		fail_msg("%s", err);
	assert_int_equal(passwd_count(db), n);
	for (size_t i = 0; i < n; i++) {
		check(db, users[i].user, users[i].pw, PASSWD_OK);
		check(db, users[i].user, "wrong", PASSWD_WRONG);
	}
	check(db, "mallory", "x", PASSWD_NO_USER);

	/* Written back, the file still holds the same hashes (byte for byte:
	 * mosquitto_passwd also writes padded base64). */
	size_t len, flen;
	char *text = passwd_format(db, &len), *file = util_read_file(path, 1 << 20, &flen);
	assert_non_null(text);
	assert_non_null(file);
	assert_string_equal(text, file);
	free(text);
	free(file);
	passwd_free(db);
}

static void b64(const unsigned char *in, int n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, n);
}

/* $6$ and $7$ lines built here with OpenSSL calls of our own. */
static void test_independent_vectors(void **state)
{
	const unsigned char salt[12] = "0123456789ab";
	const char *pw = "hunter2";
	unsigned char md[64], cat[64];
	char s64[32], h64[100], text[512];
	unsigned int mdlen = 0;

	(void)state;
	memcpy(cat, pw, 7);
	memcpy(cat + 7, salt, 12);
	assert_int_equal(EVP_Digest(cat, 19, md, &mdlen, EVP_sha512(), NULL), 1);
	b64(salt, 12, s64);
	b64(md, 64, h64);
	int n = snprintf(text, sizeof(text), "old:$6$%s$%s\n", s64, h64);

	assert_int_equal(PKCS5_PBKDF2_HMAC(pw, 7, salt, 12, 7, EVP_sha512(), 64, md), 1);
	b64(md, 64, h64);
	/* Unpadded base64, blanks around both fields and a CRLF ending. */
	h64[86] = '\0';
	snprintf(text + n, sizeof(text) - (size_t)n, "  new \t: $7$7$%s$%s \r\n", s64, h64);

	struct passwd_db *db = parse_ok(text);
	check(db, "old", "hunter2", PASSWD_OK);
	check(db, "old", "hunter3", PASSWD_WRONG);
	check(db, "new", "hunter2", PASSWD_OK);
	check(db, "new", "Hunter2", PASSWD_WRONG);
	check(db, " new", "hunter2", PASSWD_NO_USER);
	passwd_free(db);
}

#define H88 "AzMgqS8jHqMYKzeweJR4KrfuEV5NRkhxu4RnlVhnLdEiSo9SpMsPKFBPwx4+ZvkLUrUDpsch+fS1e+MptZVfDg=="
#define S16 "Vc0f09rKcOWAENfI"
#define GOOD "u:$7$101$" S16 "$" H88 "\n"

static bool passwd_parses(const char *text, size_t len, char *err, size_t errlen)
{
	struct passwd_db *db = passwd_parse(text, len, err, errlen);
	bool parsed = db != NULL;

	passwd_free(db);
	return parsed;
}

static void test_malformed(void **state)
{
	static const struct parse_case cases[] = {
		{ "nocolon\n", "1: no ':' after the user name" },
		{ "# ok\n\n:$7$101$" S16 "$" H88 "\n", "3: empty user name" },
		{ "  :$7$1$x$y\n", "1: empty user name" },
		{ "u:\n", "1: no password hash after ':'" },
		{ "u:   \n", "1: no password hash after ':'" },
		{ "u:plaintext\n", "1: not a $6$ or $7$ hash" },
		{ "u:$5$" S16 "$" H88 "\n", "1: not a $6$ or $7$ hash" },
		{ "u:$7$$" S16 "$" H88 "\n", "1: bad iteration count" },
		{ "u:$7$0$" S16 "$" H88 "\n", "1: bad iteration count" },
		{ "u:$7$-1$" S16 "$" H88 "\n", "1: bad iteration count" },
		{ "u:$7$10x$" S16 "$" H88 "\n", "1: bad iteration count" },
		{ "u:$7$101\n", "1: bad iteration count" },
		{ "u:$7$10000001$" S16 "$" H88 "\n", "1: iteration count above the limit" },
		{ "u:$7$99999999999999999999999$" S16 "$" H88 "\n", "1: iteration count above" },
		{ "u:$7$101$" S16 "\n", "1: bad salt" },
		{ "u:$7$101$Vc0f09rKcOWAENf$" H88 "\n", "1: bad salt" },
		{ "u:$7$101$Vc0f09rKcOWAENfIAA$" H88 "\n", "1: bad salt" },
		{ "u:$7$101$Vc0f09rK*OWAENfI$" H88 "\n", "1: bad salt" },
		{ "u:$7$101$" S16 "$" "AzMg\n", "1: bad hash" },
		{ "u:$7$101$" S16 "$" H88 "AAAA\n", "1: bad hash" },
		{ "u:$7$101$" S16 "$" H88 ":extra\n", "1: bad hash" },
		{ "u:$7$101$" S16 "$" H88 "=\n", "1: bad hash" },
		{ "u:$6$" S16 "\n", "1: bad salt" },
		{ GOOD "v:$7$1$" S16 "$" H88 "\n" GOOD, "3: user 'u' is listed twice (first on line 1)" },
		{ GOOD "# c\nx:y\0z\n", "3: NUL byte" },
	};
	char err[256];

	(void)state;
	parse_cases_check(cases, sizeof(cases) / sizeof(cases[0]), passwd_parses);
	/* err may be NULL, and a too small buffer truncates. */
	assert_null(passwd_parse("x\n", 2, NULL, 0));
	assert_null(passwd_parse("x\n", 2, err, 4));
	assert_string_equal(err, "1: ");
}

static void test_comments_and_edits(void **state)
{
	const char *text = "# users\n\n" GOOD "  # indented comment\n#w:x\n";
	char h[PASSWD_HASH_MAX], err[256];

	(void)state;
	struct passwd_db *db = parse_ok(text);
	assert_int_equal(passwd_count(db), 1);
	assert_true(passwd_find(db, "u"));
	assert_false(passwd_find(db, "#w"));
	check(db, "u", "pass", PASSWD_OK); /* the line mosquitto_passwd wrote for user/pass */

	size_t len;
	char *out = passwd_format(db, &len);
	assert_string_equal(out, text);
	assert_int_equal(len, strlen(text));
	free(out);

	assert_int_equal(passwd_hash("new", 3, 5, h, sizeof(h)), 0);
	assert_int_equal(passwd_set(db, "u", h), 0);     /* replaced in place */
	assert_int_equal(passwd_set(db, "z", &GOOD[2]), PASSWD_EINVAL); /* hash has '\n' */
	assert_int_equal(passwd_set(db, "z", "$7$101$" S16 "$" H88), 0);
	assert_int_equal(passwd_set(db, "bad:name", h), PASSWD_EINVAL);
	assert_int_equal(passwd_set(db, "y", "plain"), PASSWD_EINVAL);
	assert_int_equal(passwd_count(db), 2);
	check(db, "u", "new", PASSWD_OK);
	check(db, "u", "pass", PASSWD_WRONG);
	check(db, "z", "pass", PASSWD_OK);

	out = passwd_format(db, NULL);
	char want[1024];
	snprintf(want, sizeof(want), "# users\n\nu:%s\n  # indented comment\n#w:x\n%s", h,
		 "z:$7$101$" S16 "$" H88 "\n");
	assert_string_equal(out, want);
	free(out);

	assert_true(passwd_delete(db, "u"));
	assert_false(passwd_delete(db, "u"));
	check(db, "u", "new", PASSWD_NO_USER);
	check(db, "z", "pass", PASSWD_OK);
	out = passwd_format(db, NULL);
	struct passwd_db *again = passwd_parse(out, strlen(out), err, sizeof(err));
	assert_non_null(again);
	assert_int_equal(passwd_count(again), 1);
	check(again, "z", "pass", PASSWD_OK);
	free(out);
	passwd_free(again);
	passwd_free(db);
}

static void test_user_valid(void **state)
{
	static const struct { const char *name; bool ok; } cases[] = {
		{ "alice", true }, { "user name", true }, { "\xc3\xa9l\xc3\xa8ve", true },
		{ "a#b", true }, { "$x", true }, { "", false }, { "a:b", false },
		{ "#a", false }, { " a", false }, { "a ", false }, { "a\tb", false },
		{ "a\nb", false }, { "a\rb", false }, { "a\x7f", false },
	};
	char *big = malloc(PASSWD_MAX_USER + 2);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (passwd_user_valid(cases[i].name) != cases[i].ok)
			fail_msg("case %zu: '%s'", i, cases[i].name);
	memset(big, 'a', PASSWD_MAX_USER + 1);
	big[PASSWD_MAX_USER + 1] = '\0';
	assert_false(passwd_user_valid(big));
	big[PASSWD_MAX_USER] = '\0';
	assert_true(passwd_user_valid(big));
	free(big);
}

static void test_load_errors(void **state)
{
	char err[512], want[256];
	FILE *f;

	(void)state;
	assert_null(passwd_load("/nonexistent/pw", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/pw: No such file or directory");
	assert_non_null(f = fopen(path, "w"));
	fputs(GOOD "# fine\nbroken\n", f);
	fclose(f);
	assert_null(passwd_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:3: no ':' after the user name", path);
	assert_string_equal(err, want);
}

/* 100k users load in well under a second; lookups stay exact. */
static void test_large(void **state)
{
	const size_t n = 100000;
	size_t cap = n * 140, len = 0;
	char *text = malloc(cap), err[256], h[PASSWD_HASH_MAX];

	(void)state;
	assert_int_equal(passwd_hash("pw-77777", 8, 3, h, sizeof(h)), 0);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "user%zu:%s\n", i,
					i == 77777 ? h : "$7$101$" S16 "$" H88);
	int64_t t0 = util_now_ms();
	struct passwd_db *db = passwd_parse(text, len, err, sizeof(err));
	int64_t ms = util_now_ms() - t0;
	assert_non_null(db);
	print_message("parsed %zu users in %lld ms\n", n, (long long)ms);
	assert_true(ms < 1000);
	assert_int_equal(passwd_count(db), n);
	for (size_t i = 0; i < n; i += 997) {
		char u[32];
		snprintf(u, sizeof(u), "user%zu", i);
		assert_true(passwd_find(db, u));
	}
	assert_false(passwd_find(db, "user100000"));
	check(db, "user77777", "pw-77777", PASSWD_OK);
	check(db, "user77776", "pass", PASSWD_OK);
	check(db, "user77777", "pass", PASSWD_WRONG);
	/* A duplicate far down still names both lines. */
	len += (size_t)snprintf(text + len, cap - len, "user5:%s\n", h);
	assert_null(passwd_parse(text, len, err, sizeof(err)));
	assert_string_equal(err, "100001: user 'user5' is listed twice (first on line 6)");
	passwd_free(db);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_round_trip),
		cmocka_unit_test_setup_teardown(test_mosquitto_vectors, setup, teardown),
		cmocka_unit_test(test_independent_vectors),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_comments_and_edits),
		cmocka_unit_test(test_user_valid),
		cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
		cmocka_unit_test(test_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
