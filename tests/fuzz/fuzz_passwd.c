/*
 * fuzz_passwd.c - libFuzzer target for the password file parser.
 *
 * Whatever parses must write back (passwd_format) into text that parses to
 * the same users and writes back byte for byte the same; every user line
 * of that text must be found, deleting one must leave the others. A
 * failure must name a line. passwd_check() is left out on purpose: it runs
 * PBKDF2 with the file's iteration count (up to 10 million), which would
 * measure the fuzzer's patience, not the parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Calls fn on each user name of formatted text (lines not comments). */
static size_t each_user(char *text, void (*fn)(struct passwd_db *, const char *),
			struct passwd_db *db)
{
	size_t n = 0;

	for (char *line = text, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		CHECK(nl);
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (p == nl || *p == '#')
			continue;
		char *colon = memchr(line, ':', (size_t)(nl - line));
		CHECK(colon && colon > line);
		*colon = '\0';
		fn(db, line);
		*colon = ':';
		n++;
	}
	return n;
}

static void must_find(struct passwd_db *db, const char *user)
{
	CHECK(passwd_find(db, user));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[128];
	size_t len, len2;

	memset(err, 'x', sizeof(err));
	struct passwd_db *db = passwd_parse((const char *)data, size, err, sizeof(err));
	if (!db) {
		CHECK(memchr(err, '\0', sizeof(err)));
		CHECK(err[0] >= '0' && err[0] <= '9' && strstr(err, ": "));
		return 0;
	}
	char *text = passwd_format(db, &len);
	CHECK(text && strlen(text) == len);
	struct passwd_db *again = passwd_parse(text, len, err, sizeof(err));
	CHECK(again);
	CHECK(passwd_count(again) == passwd_count(db));
	char *text2 = passwd_format(again, &len2);
	CHECK(text2 && len2 == len && memcmp(text, text2, len) == 0);
	CHECK(each_user(text, must_find, db) == passwd_count(db));

	/* Delete the first user: the rest stay, the text shrinks by a line. */
	char *first = text2;
	size_t users = passwd_count(db);
	for (char *nl; users > 0 && *first; first = nl + 1) {
		nl = strchr(first, '\n');
		const char *p = first;
		while (*p == ' ' || *p == '\t')
			p++;
		if (p == nl || *p == '#')
			continue;
		*strchr(first, ':') = '\0';
		CHECK(passwd_delete(again, first));
		CHECK(!passwd_delete(again, first));
		CHECK(!passwd_find(again, first));
		CHECK(passwd_count(again) == users - 1);
		break;
	}
	free(text2);
	text2 = passwd_format(again, &len2);
	CHECK(text2);
	struct passwd_db *third = passwd_parse(text2, len2, err, sizeof(err));
	CHECK(third && passwd_count(third) == passwd_count(again));
	passwd_free(third);
	free(text2);
	free(text);
	passwd_free(again);
	passwd_free(db);
	return 0;
}
