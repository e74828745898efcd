/*
 * parse_cases.h - the malformed-file check that the file parsers' tests
 * share (test_acl.c, test_passwd.c): a table of texts, each with the start
 * of the "LINE: what is wrong" error its parse must fail with.
 *
 * A case whose error mentions "NUL" holds a NUL byte: its text runs on to
 * the second NUL of its literal ("a\0b\n" is four bytes).
 * Include after <cmocka.h>: a failing case fails the test with fail_msg().
 */
#ifndef KG_TEST_PARSE_CASES_H
#define KG_TEST_PARSE_CASES_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct parse_case {
	const char *text, *err;
};

/*
 * Runs parses() on each of the n cases: it parses text (len bytes) as the
 * module does, frees what it made and returns whether the text parsed,
 * writing the error into err (errlen bytes) when it did not. Fails the test
 * on the first case that parses or whose error does not start as expected.
 */
static inline void parse_cases_check(const struct parse_case *cases, size_t n,
				     bool (*parses)(const char *text, size_t len, char *err,
						    size_t errlen))
{
	char err[256];

	for (size_t i = 0; i < n; i++) {
		const char *t = cases[i].text;
		size_t len = strlen(t);
		if (strstr(cases[i].err, "NUL"))
			len += 1 + strlen(t + len + 1);
		err[0] = '\0';
		bool parsed = parses(t, len, err, sizeof(err));
		if (parsed || strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, parsed ? "(parsed)" : err,
				 cases[i].err);
	}
}

#endif
