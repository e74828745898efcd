/* test_acl.c - acl_parse/load, per-client expansion, access checks,
 * SUBSCRIBE verdicts and the filter overlap/cover relations they rest on
 * (topic_filters_overlap()/topic_filter_covers() in mqtt/topic.h, tested
 * here over the same brute-force universe as the rule matching). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/acl.h"
#include "core/util.h"
#include "mqtt/topic.h"

#include "parse_cases.h"

static struct acl *parse_ok(const char *text)
{
	char err[256] = "";
	struct acl *acl = acl_parse(text, strlen(text), err, sizeof(err));

	if (!acl)
		fail_msg("unexpected error: %s", err);
	return acl;
}

/* ---- filter relations ------------------------------------------------ */

static void test_overlaps_table(void **state)
{
	static const struct { const char *a, *b; bool want; } cases[] = {
		{ "a", "a", true }, { "a", "b", false }, { "a", "+", true },
		{ "a/b", "a/+", true }, { "a/b", "+/b", true }, { "a/b", "+/c", false },
		{ "a/#", "a", true }, { "a/#", "a/b/c", true }, { "a/#", "b/#", false },
		{ "a/+/#", "a", false }, { "a/+/#", "a/x", true }, { "a/+", "a", false },
		{ "a/+", "a/b/c", false }, { "#", "a/b", true }, { "+/+", "a", false },
		{ "+/+", "/", true }, { "+", "/a", false }, { "#", "$SYS/x", false },
		{ "+/x", "$SYS/x", false }, { "+/#", "$SYS", false }, { "$SYS/#", "$SYS", true },
		{ "$SYS/+", "$SYS/#", true }, { "$SYS/#", "#", false }, { "a/$x", "a/+", true },
		{ "a//b", "a/+/b", true }, { "a//b", "a/b", false }, { "#", "+", true },
		{ "+/#", "#", true }, { "a/b/+/d", "a/+/c/#", true }, { "a/b/+/d", "a/+/c/e", false },
		{ "sport/tennis/#", "sport/+/player1", true }, { "x/#", "x//", true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *a = cases[i].a, *b = cases[i].b;
		if (topic_filters_overlap(a, strlen(a), b, strlen(b)) != cases[i].want ||
		    topic_filters_overlap(b, strlen(b), a, strlen(a)) != cases[i].want)
			fail_msg("overlaps(%s, %s) != %d", a, b, cases[i].want);
	}
}

static void test_covers_table(void **state)
{
	static const struct { const char *outer, *inner; bool want; } cases[] = {
		{ "a", "a", true }, { "a", "b", false }, { "+", "a", true }, { "a", "+", false },
		{ "#", "a/b/#", true }, { "#", "#", true }, { "#", "+/+", true },
		{ "a/#", "a", true }, { "a/#", "a/#", true }, { "a/#", "a/+/c", true },
		{ "a/+", "a/#", false }, { "a/+/#", "a/#", false }, { "a/+/#", "a/b", true },
		{ "a/+", "a/b/c", false }, { "+/+", "a/+", true }, { "a/+", "+/+", false },
		{ "#", "$SYS/x", false }, { "+/#", "$SYS/x", false }, { "+", "$SYS", false },
		{ "$SYS/#", "$SYS/+/x", true }, { "$SYS/#", "$SYS", true }, { "$SYS/+", "$SYS/#", false },
		{ "#", "+/#", true }, { "+/#", "#", true }, { "+/#", "+", true },
		{ "a/b/#", "a/b/c/#", true }, { "a/b/c/#", "a/b/#", false }, { "a/+/c", "a/b/c", true },
		{ "a//#", "a//x", true }, { "a/+", "a/", true }, { "a/$x", "a/$x", true },
		{ "+/$x", "a/$x", true }, { "#", "a/$x/#", true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *o = cases[i].outer, *in = cases[i].inner;
		if (topic_filter_covers(o, strlen(o), in, strlen(in)) != cases[i].want)
			fail_msg("covers(%s, %s) != %d", o, in, cases[i].want);
	}
}

/*
 * Brute force: every filter of up to 3 levels over {a, $x, "", +, #} against
 * every topic of up to 5 levels over {a, b, $x, ""}. The helpers must agree
 * exactly with topic_matches() over that universe plus the empty topic (a
 * real broker never sees it, so the only allowed slack is the safe one).
 */
#define NLV 5
static const char *const flevels[NLV] = { "a", "$x", "", "+", "#" };
static const char *const tlevels[] = { "a", "b", "$x", "" };

static size_t gen_filters(char out[][16])
{
	size_t n = 0;

	for (int len = 1; len <= 3; len++) {
		int total = 1;
		for (int i = 0; i < len; i++)
			total *= NLV;
		for (int k = 0; k < total; k++) {
			char f[16] = "";
			int v = k, ok = 1;
			for (int i = 0; i < len; i++, v /= NLV) {
				if (i > 0)
					strcat(f, "/");
				if (flevels[v % NLV][0] == '#' && i != len - 1)
					ok = 0;
				strcat(f, flevels[v % NLV]);
			}
			if (ok && strcmp(f, "") != 0)
				strcpy(out[n++], f);
		}
	}
	return n;
}

static size_t gen_topics(char out[][24])
{
	size_t n = 0;

	strcpy(out[n++], ""); /* the empty topic: see above */
	for (int len = 1; len <= 5; len++) {
		int total = 1;
		for (int i = 0; i < len; i++)
			total *= 4;
		for (int k = 0; k < total; k++) {
			char t[24] = "";
			for (int i = 0, v = k; i < len; i++, v /= 4) {
				if (i > 0)
					strcat(t, "/");
				strcat(t, tlevels[v % 4]);
			}
			if (t[0])
				strcpy(out[n++], t);
		}
	}
	return n;
}

static void test_relations_brute_force(void **state)
{
	static char f[200][16], t[1400][24];
	static bool m[200][1400];
	size_t nf = gen_filters(f), nt = gen_topics(t);

	(void)state;
	for (size_t i = 0; i < nf; i++)
		for (size_t k = 0; k < nt; k++)
			m[i][k] = topic_matches(f[i], strlen(f[i]), t[k], strlen(t[k]));
	for (size_t i = 0; i < nf; i++) {
		for (size_t j = 0; j < nf; j++) {
			bool overlap = false, cover = true;
			for (size_t k = 0; k < nt; k++) {
				overlap = overlap || (m[i][k] && m[j][k]);
				cover = cover && (!m[j][k] || m[i][k]);
			}
			if (topic_filters_overlap(f[i], strlen(f[i]), f[j], strlen(f[j])) != overlap)
				fail_msg("overlaps(%s, %s) != %d", f[i], f[j], overlap);
			if (topic_filter_covers(f[i], strlen(f[i]), f[j], strlen(f[j])) != cover)
				fail_msg("covers(%s, %s) != %d", f[i], f[j], cover);
		}
	}
}

/* acl_client_can() matches a rule with shortcuts for exact names and
 * "P/#" trees: it must agree with topic_matches() for every filter and
 * topic of the brute-force universe, as a grant and as a deny, and on
 * topics that share a prefix with the filter byte for byte. */
static void check_rule_matching(const char *f, const char *const *topics, size_t nt,
				size_t stride)
{
	char text[128];
	struct acl *grant, *deny;

	snprintf(text, sizeof(text), "topic read %s\n", f);
	grant = parse_ok(text);
	snprintf(text, sizeof(text), "topic read #\ntopic read $x/#\ntopic read $x\n"
		 "topic deny %s\n", f);
	deny = parse_ok(text);
	struct acl_client *g = acl_client_new(grant, NULL, NULL);
	struct acl_client *d = acl_client_new(deny, NULL, NULL);
	assert_non_null(g);
	assert_non_null(d);
	for (size_t k = 0; k < nt; k++) {
		const char *t = (const char *)topics + k * stride;
		bool m = topic_matches(f, strlen(f), t, strlen(t));
		size_t tl = strlen(t);
		bool all = topic_matches("#", 1, t, tl) || topic_matches("$x/#", 4, t, tl);
		if (acl_client_can(g, t, strlen(t), ACL_READ) != m)
			fail_msg("grant %s, topic \"%s\": want %d", f, t, m);
		if (acl_client_can(d, t, strlen(t), ACL_READ) != (all && !m))
			fail_msg("deny %s, topic \"%s\": want %d", f, t, all && !m);
	}
	acl_client_free(g);
	acl_client_free(d);
	acl_free(grant);
	acl_free(deny);
}

static void test_rule_matching(void **state)
{
	static char f[200][16], t[1400][24];
	size_t nf = gen_filters(f), nt = gen_topics(t);
	static const char *const ef[] = {
		"a/#", "ab/#", "a/b", "a/+/c", "a/b/#", "/#", "#", "$x/#", "$x", "abc", "+/b", "a/+",
	};
	static char et[][24] = {
		"a", "ab", "abc", "a/", "a/b", "a/bc", "ab/c", "a/b/c", "a/b/cd", "a/x/c", "/",
		"/a", "", "$x", "$xy", "$x/a", "b", "a/b/", "a//c", "$x/",
	};

	(void)state;
	for (size_t i = 0; i < nf; i++)
		check_rule_matching(f[i], (const char *const *)t, nt, sizeof(t[0]));
	for (size_t i = 0; i < sizeof(ef) / sizeof(ef[0]); i++) {
		check_rule_matching(ef[i], (const char *const *)et, sizeof(et) / sizeof(et[0]),
				    sizeof(et[0]));
		check_rule_matching(ef[i], (const char *const *)t, nt, sizeof(t[0]));
	}
}

/* ---- access ---------------------------------------------------------- */

static const char acl_text[] =
	"# anonymous clients\n"                          /* 1 */
	"topic read public/#\n"
	"topic readwrite anon/+/data\n"
	"topic deny public/secret\n"
	"\n"                                             /* 5 */
	"user alice\n"
	"topic alice/#\n"
	"topic read shared/#\n"
	"topic deny shared/private/#\n"
	"topic write $SYS/broker/alice\n"                /* 10 */
	"user bob\n"
	"topic read bob/#\n"
	"topic write bob/out\n"
	"user alice\n"
	"topic read extra/alice\n"                       /* 15 */
	"pattern readwrite devices/%c/#\n"
	"pattern read users/%u/inbox\n"
	"pattern deny devices/%c/locked\n"
	"pattern write dev-%c/x\n"
	"topic read after-pattern\n"                     /* 20: still alice's */
	"user carol\n"
	"  topic\tread   #\n"
	"topic read $SYS/#\n"
	"topic write spaced topic name\n"
	"user  dave smith \r\n"                          /* 25 */
	"topic read dave\n";

#define R ACL_READ
#define W ACL_WRITE
#define ANON NULL

static const struct {
	const char *user, *cid, *topic;
	int access;
	bool want;
} access_cases[] = {
	{ ANON, "c1", "public/x", R, true },
	{ ANON, "c1", "public", R, true },
	{ ANON, "c1", "public/x", W, false },
	{ ANON, "c1", "public/secret", R, false },      /* deny wins */
	{ ANON, "c1", "public/secret/x", R, true },
	{ ANON, "c1", "anon/1/data", R | W, true },
	{ ANON, "c1", "anon/1/2/data", W, false },
	{ ANON, "c1", "alice/x", R, false },
	{ ANON, "c1", "devices/c1/a", R | W, true },    /* patterns apply to everyone */
	{ ANON, "c1", "devices/c1/locked", R, false },
	{ ANON, "c1", "devices/c2/a", R, false },
	{ ANON, "c1", "users//inbox", R, false },       /* %u: not for anonymous */
	{ "alice", "c1", "alice/x", R | W, true },
	{ "alice", "c1", "alice", W, true },
	{ "alice", "c1", "public/x", R, false },        /* anonymous rules are not hers */
	{ "alice", "c1", "shared/a", R, true },
	{ "alice", "c1", "shared/a", W, false },
	{ "alice", "c1", "shared/private", R, false },
	{ "alice", "c1", "shared/private/x/y", R, false },
	{ "alice", "c1", "$SYS/broker/alice", W, true },
	{ "alice", "c1", "$SYS/broker/alice", R, false },
	{ "alice", "c1", "extra/alice", R, true },      /* second block, same user */
	{ "alice", "c1", "after-pattern", R, true },
	{ "alice", "c1", "users/alice/inbox", R, true },
	{ "alice", "c1", "users/alice/inbox", W, false },
	{ "alice", "c1", "users/bob/inbox", R, false },
	{ "alice", "c1", "dev-c1/x", W, true },
	{ "alice", "c1", "dev-c1/x", R, false },
	{ "alice", "c2", "dev-c1/x", W, false },
	{ "alice", "c1", "devices/c1/locked", W, false },
	{ "bob", "b", "bob/x", R, true },
	{ "bob", "b", "bob/out", R | W, true },
	{ "bob", "b", "bob/in", W, false },
	{ "bob", "b", "alice/x", R, false },
	{ "carol", "c", "anything/at/all", R, true },
	{ "carol", "c", "$SYS/x", R, true },            /* only through $SYS/# */
	{ "carol", "c", "spaced topic name", W, true },
	{ "carol", "c", "spaced", W, false },
	{ "dave smith", "d", "dave", R, true },
	{ "dave", "d", "dave", R, false },
	{ "erin", "e", "users/erin/inbox", R, true },   /* no block: patterns only */
	{ "erin", "e", "public/x", R, false },
	{ "erin", "e", "devices/e/q", W, true },
	{ "alice", "c1", "alice/x", 0, false },
	/* Injection: wildcard or '/' in the values never widen a grant. */
	{ ANON, "+", "devices/x/a", R, false },
	{ ANON, "+", "devices/+/a", R, false },
	{ ANON, "#", "devices/x", R, false },
	{ ANON, "a/b", "devices/a/b/c", R, false },
	{ ANON, "", "devices//a", R, false },
	{ "+", "c", "users/x/inbox", R, false },
	{ "#", "c", "users/x/inbox", R, false },
	{ "a/b", "c", "users/a/b/inbox", R, false },
	{ "a/b", "c", "devices/c/x", R, true },         /* the %c rule still applies */
	{ "a+b", "c", "users/a+b/inbox", R, false },
};

static void test_access(void **state)
{
	struct acl *acl = parse_ok(acl_text);

	(void)state;
	for (size_t i = 0; i < sizeof(access_cases) / sizeof(access_cases[0]); i++) {
		struct acl_client *c = acl_client_new(acl, access_cases[i].user, access_cases[i].cid);
		const char *t = access_cases[i].topic;
		assert_non_null(c);
		if (acl_client_can(c, t, strlen(t), (enum acl_access)access_cases[i].access) !=
		    access_cases[i].want)
			fail_msg("case %zu: %s/%s %s access %d: want %d", i,
				 access_cases[i].user ? access_cases[i].user : "(anon)",
				 access_cases[i].cid, t, access_cases[i].access, access_cases[i].want);
		acl_client_free(c);
	}
	acl_free(acl);
}

/* Deny patterns take the values literally; grants drop them. */
static void test_injection_rule_counts(void **state)
{
	struct acl *acl = parse_ok("pattern read d/%c/#\npattern deny d/%c/x\n"
				   "pattern read u/%u\npattern deny u/%u/x\n");
	static const struct { const char *user, *cid; size_t rules; } cases[] = {
		{ "u", "c", 4 }, { NULL, "c", 2 }, { "u", NULL, 2 }, { NULL, NULL, 0 },
		{ "u", "+", 2 }, { "u", "a/#", 2 }, { "u", "a/b", 3 }, { "u", "", 3 },
		{ "a/b", "c", 3 }, { "+", "+", 0 }, { "", "", 2 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct acl_client *c = acl_client_new(acl, cases[i].user, cases[i].cid);
		if (acl_client_rule_count(c) != cases[i].rules)
			fail_msg("case %zu: %zu rules, want %zu", i, acl_client_rule_count(c),
				 cases[i].rules);
		acl_client_free(c);
	}
	struct acl_client *c = acl_client_new(acl, "u", "a/b");
	assert_false(acl_client_can(c, "d/a/b/x", 7, ACL_READ)); /* no grant, and denied */
	acl_client_free(c);
	acl_free(acl);
}

static void test_client_outlives_acl(void **state)
{
	struct acl *acl = parse_ok("user u\ntopic read a/#\npattern write c/%c\n");
	struct acl_client *c = acl_client_new(acl, "u", "me");

	(void)state;
	acl_free(acl);
	assert_true(acl_client_can(c, "a/b", 3, ACL_READ));
	assert_true(acl_client_can(c, "c/me", 4, ACL_WRITE));
	assert_int_equal(acl_client_subscribe(c, "a/#", 3), ACL_SUB_GRANT);
	acl_client_free(c);
	acl_client_free(NULL);
	acl_free(NULL);
}

static void test_empty_acl_denies(void **state)
{
	struct acl *acl = parse_ok("# nothing\n\n");
	struct acl_client *c = acl_client_new(acl, NULL, "x");

	(void)state;
	assert_int_equal(acl_client_rule_count(c), 0);
	assert_false(acl_client_can(c, "a", 1, ACL_READ));
	assert_int_equal(acl_client_subscribe(c, "#", 1), ACL_SUB_DENY);
	acl_client_free(c);
	acl_free(acl);
	acl = parse_ok("");
	acl_free(acl);
}

/* ---- SUBSCRIBE verdicts ---------------------------------------------- */

static void test_subscribe(void **state)
{
	static const struct { const char *user, *cid, *filter; enum acl_sub want; } cases[] = {
		{ "alice", "c1", "alice/#", ACL_SUB_GRANT },
		{ "alice", "c1", "alice/+/x", ACL_SUB_GRANT },
		{ "alice", "c1", "alice", ACL_SUB_GRANT },
		{ "alice", "c1", "shared/#", ACL_SUB_FILTER },    /* a deny overlaps */
		{ "alice", "c1", "shared/public/+", ACL_SUB_GRANT },
		{ "alice", "c1", "shared/+/x", ACL_SUB_FILTER },  /* shared/private/x */
		{ "alice", "c1", "shared/private/#", ACL_SUB_DENY },
		{ "alice", "c1", "shared/private/x", ACL_SUB_DENY },
		{ "alice", "c1", "bob/#", ACL_SUB_DENY },         /* nothing readable */
		{ "alice", "c1", "#", ACL_SUB_FILTER },
		{ "alice", "c1", "+/alice", ACL_SUB_FILTER },
		{ "alice", "c1", "$SYS/#", ACL_SUB_DENY },        /* write only there */
		{ "alice", "c1", "+/broker/alice", ACL_SUB_FILTER }, /* alice/broker/alice */
		{ "alice", "c1", "users/alice/inbox", ACL_SUB_GRANT },
		{ "alice", "c1", "users/+/inbox", ACL_SUB_FILTER },
		{ "alice", "c1", "devices/c1/#", ACL_SUB_FILTER }, /* devices/c1/locked */
		{ "alice", "c1", "devices/c1/a/#", ACL_SUB_GRANT },
		{ "alice", "c1", "devices/c1/locked", ACL_SUB_DENY },
		{ "alice", "c1", "dev-c1/x", ACL_SUB_DENY },       /* write-only */
		{ ANON, "c1", "public/#", ACL_SUB_FILTER },
		{ ANON, "c1", "public/a/#", ACL_SUB_GRANT },
		{ ANON, "c1", "public/secret", ACL_SUB_DENY },
		{ ANON, "c1", "anon/+/data", ACL_SUB_GRANT },
		{ ANON, "c1", "anon/#", ACL_SUB_FILTER },
		{ "carol", "c", "#", ACL_SUB_FILTER },           /* deny devices/c/locked */
		{ "carol", NULL, "#", ACL_SUB_GRANT },           /* no %c patterns */
		{ "carol", NULL, "$SYS/#", ACL_SUB_GRANT },
		{ "carol", NULL, "+/#", ACL_SUB_GRANT },
		{ "carol", "c", "devices/c/locked/#", ACL_SUB_FILTER }, /* locked/x is fine */
		{ "carol", "c", "devices/+/locked", ACL_SUB_FILTER },
		{ "bob", "b", "bob/out", ACL_SUB_GRANT },         /* read from bob/# */
		{ "erin", "+", "devices/+/x", ACL_SUB_DENY },     /* injected id: nothing */
		{ "erin", "e", "devices/+/x", ACL_SUB_FILTER },
	};
	struct acl *acl = parse_ok(acl_text);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct acl_client *c = acl_client_new(acl, cases[i].user, cases[i].cid);
		const char *f = cases[i].filter;
		enum acl_sub got = acl_client_subscribe(c, f, strlen(f));
		if (got != cases[i].want)
			fail_msg("case %zu: %s subscribes %s: got %d, want %d", i,
				 cases[i].user ? cases[i].user : "(anon)", f, got, cases[i].want);
		acl_client_free(c);
	}
	acl_free(acl);
}

/* ---- parse errors ---------------------------------------------------- */

static bool acl_parses(const char *text, size_t len, char *err, size_t errlen)
{
	struct acl *acl = acl_parse(text, len, err, errlen);
	bool parsed = acl != NULL;

	acl_free(acl);
	return parsed;
}

static void test_malformed(void **state)
{
	static const struct parse_case cases[] = {
		{ "topic foo bar\n", "1: unknown access 'foo' (read, write, readwrite or deny)" },
		{ "user\n", "1: missing user name" },
		{ "user   \t\n", "1: missing user name" },
		{ "topic\n", "1: missing topic filter" },
		{ "pattern   \n", "1: missing topic filter" },
		{ "topic read\n", "1: missing topic filter after 'read'" },
		{ "topic readwrite  \r\n", "1: missing topic filter after 'readwrite'" },
		{ "pattern deny\n", "1: missing topic filter after 'deny'" },
		{ "topic read a/#/b\n", "1: invalid topic filter 'a/#/b'" },
		{ "topic read a+\n", "1: invalid topic filter 'a+'" },
		{ "topic a#\n", "1: invalid topic filter 'a#'" },
		{ "topic read \xff\xfe\n", "1: invalid topic filter" },
		{ "frob x\n", "1: unknown keyword 'frob'" },
		{ "Topic read x\n", "1: unknown keyword 'Topic'" },
		{ "# ok\n\ntopic read a\nuser x\n  topic bogus a\n", "5: unknown access 'bogus'" },
		{ "topic read a\ntopic read b\0\n", "2: NUL byte" },
	};

	(void)state;
	parse_cases_check(cases, sizeof(cases) / sizeof(cases[0]), acl_parses);
	assert_null(acl_parse("x\n", 2, NULL, 0));
}

static void test_load(void **state)
{
	char dir[] = "/tmp/test_acl.XXXXXX", path[64], err[256], want[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/acl", dir);
	assert_null(acl_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("topic read a\nuser u\ntopic wrte b\n", f);
	fclose(f);
	assert_null(acl_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:3: unknown access 'wrte'", path);
	assert_int_equal(strncmp(err, want, strlen(want)), 0);
	f = fopen(path, "w");
	fputs("topic read a\n", f);
	fclose(f);
	struct acl *acl = acl_load(path, err, sizeof(err));
	assert_non_null(acl);
	acl_free(acl);
	unlink(path);
	rmdir(dir);
}

/* 50k user blocks parse fast; each client gets only its own rules. */
static void test_large(void **state)
{
	const size_t n = 50000;
	size_t cap = n * 64, len = 0;
	char *text = malloc(cap), err[256];

	(void)state;
	len += (size_t)snprintf(text, cap, "pattern read in/%%u\n");
	for (size_t i = n; i-- > 0;) /* reverse order: the index must sort */
		len += (size_t)snprintf(text + len, cap - len,
					"user u%zu\ntopic read a/%zu/#\ntopic deny a/%zu/x\n", i, i, i);
	len += (size_t)snprintf(text + len, cap - len, "user u7\ntopic write w/7\n");
	int64_t t0 = util_now_ms();
	struct acl *acl = acl_parse(text, len, err, sizeof(err));
	int64_t ms = util_now_ms() - t0;
	assert_non_null(acl);
	print_message("parsed %zu user blocks in %lld ms\n", n, (long long)ms);
	assert_true(ms < 1000);
	struct acl_client *c = acl_client_new(acl, "u7", "c");
	assert_int_equal(acl_client_rule_count(c), 4);
	assert_true(acl_client_can(c, "a/7/y", 5, ACL_READ));
	assert_false(acl_client_can(c, "a/7/x", 5, ACL_READ));
	assert_false(acl_client_can(c, "a/8/y", 5, ACL_READ));
	assert_true(acl_client_can(c, "w/7", 3, ACL_WRITE));
	assert_true(acl_client_can(c, "in/u7", 5, ACL_READ));
	acl_client_free(c);
	c = acl_client_new(acl, "u49999", "c");
	assert_int_equal(acl_client_rule_count(c), 3);
	acl_client_free(c);
	c = acl_client_new(acl, "nobody", "c");
	assert_int_equal(acl_client_rule_count(c), 1);
	acl_client_free(c);
	acl_free(acl);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlaps_table),
		cmocka_unit_test(test_covers_table),
		cmocka_unit_test(test_relations_brute_force),
		cmocka_unit_test(test_rule_matching),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_injection_rule_counts),
		cmocka_unit_test(test_client_outlives_acl),
		cmocka_unit_test(test_empty_acl_denies),
		cmocka_unit_test(test_subscribe),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
