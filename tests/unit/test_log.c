/*
 * test_log.c - the log: log_q() escaping (a table of values), truncation and
 * the ring of slots, forged fields, one bounded line per call, the rate
 * limits on a fake clock (burst, suppressed=N on the next line and in
 * log_flush_suppressed()), the global cap, and four threads logging at once.
 *
 * Lines go to a memfd (log_set_fd) that each test reads back.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/log.h"

/* ---- capture and a fake clock ---- */

static int cap_fd = -1;
static char *cap_buf;
static int64_t fake_now;

static int64_t fake_clock(void) { return fake_now; }

/* Returns what was logged since the last call (valid until the next one). */
static const char *cap_take(void)
{
	struct stat st;

	assert_int_equal(fstat(cap_fd, &st), 0);
	free(cap_buf);
	cap_buf = malloc((size_t)st.st_size + 1);
	assert_non_null(cap_buf);
	assert_int_equal(pread(cap_fd, cap_buf, (size_t)st.st_size, 0), st.st_size);
	cap_buf[st.st_size] = '\0';
	assert_int_equal(ftruncate(cap_fd, 0), 0);
	assert_int_equal(lseek(cap_fd, 0, SEEK_SET), 0);
	return cap_buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int setup(void **state)
{
	(void)state;
	cap_fd = memfd_create("test_log", MFD_CLOEXEC);
	assert_true(cap_fd >= 0);
	log_set_fd(cap_fd);
	log_set_level(LVL_INFO);
	log_set_global_limit(0, 0);
	fake_now = 1000000000000000; /* past any real monotonic time */
	log_set_clock(fake_clock);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_flush_suppressed(); /* leaves no count behind for the next test */
	log_set_clock(NULL);
	log_set_fd(-1);
	log_set_global_limit(1000, 5000);
	close(cap_fd);
	free(cap_buf);
	cap_buf = NULL;
	return 0;
}

/* ---- log_q ---- */

struct qcase {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *out;
};

static const struct qcase qcases[] = {
	{ "abc", 0, "\"abc\"" },
	{ "sensor-1/a_b.c:d", 0, "\"sensor-1/a_b.c:d\"" }, /* safe tokens are quoted too */
	{ "x addr=10.6.6.6 level=error", 0, "\"x addr=10.6.6.6 level=error\"" },
	{ "a\"b", 0, "\"a\\\"b\"" },
	{ "a\\b", 0, "\"a\\\\b\"" },
	{ "\\\"", 0, "\"\\\\\\\"\"" },
	{ "a\nb", 0, "\"a\\nb\"" },
	{ "\r\t", 0, "\"\\r\\t\"" },
	{ "\x01\x1f\x7f", 0, "\"\\x01\\x1f\\x7f\"" },
	{ "\x1b[31mred", 0, "\"\\x1b[31mred\"" },
	{ "a\0b", 3, "\"a\\x00b\"" },
	{ "\xff", 0, "\"\\xff\"" },
	{ "\xc3", 0, "\"\\xc3\"" },                        /* sequence cut short */
	{ "\xc3(", 0, "\"\\xc3(\"" },                      /* bad continuation */
	{ "\x80x", 0, "\"\\x80x\"" },                      /* stray continuation */
	{ "\xc0\xaf", 0, "\"\\xc0\\xaf\"" },               /* overlong '/' */
	{ "\xe0\x80\xaf", 0, "\"\\xe0\\x80\\xaf\"" },      /* overlong, 3 bytes */
	{ "\xed\xa0\x80", 0, "\"\\xed\\xa0\\x80\"" },      /* surrogate U+D800 */
	{ "\xf4\x90\x80\x80", 0, "\"\\xf4\\x90\\x80\\x80\"" }, /* > U+10FFFF */
	{ "\xf5\x80\x80\x80", 0, "\"\\xf5\\x80\\x80\\x80\"" },
	{ "caf\xc3\xa9", 0, "\"caf\xc3\xa9\"" },           /* U+00E9 kept */
	{ "\xe6\x97\xa5\xe6\x9c\xac", 0, "\"\xe6\x97\xa5\xe6\x9c\xac\"" },
	{ "\xf0\x9f\x98\x80", 0, "\"\xf0\x9f\x98\x80\"" }, /* U+1F600 */
	{ "\xf4\x8f\xbf\xbf", 0, "\"\xf4\x8f\xbf\xbf\"" }, /* U+10FFFF */
	{ "a\xc2\x85z", 0, "\"a\\xc2\\x85z\"" },           /* NEL, a C1 line break */
	{ "a\xe2\x80\xa8z", 0, "\"a\\xe2\\x80\\xa8z\"" },  /* U+2028 */
	{ "a\xe2\x80\xaez", 0, "\"a\\xe2\\x80\\xaez\"" },  /* U+202E, bidi override */
	{ "a\xe2\x81\xa6z", 0, "\"a\\xe2\\x81\\xa6z\"" },  /* U+2066 */
	{ "\xc2\xa0", 0, "\"\xc2\xa0\"" },                 /* U+00A0 is printable */
};

static void test_q_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(qcases) / sizeof(qcases[0]); i++) {
		const struct qcase *c = &qcases[i];
		const char *got = c->len ? log_qn(c->in, c->len) : log_q(c->in);
		if (strcmp(got, c->out) != 0)
			fail_msg("case %zu: got %s, want %s", i, got, c->out);
	}
}

static void test_q_null_empty(void **state)
{
	(void)state;
	assert_string_equal(log_q(NULL), "-");
	assert_string_equal(log_qn(NULL, 5), "-");
	assert_string_equal(log_q(""), "\"\"");
	assert_string_equal(log_qn("abc", 0), "\"\"");
	assert_string_equal(log_q("-"), "\"-\""); /* an id "-" is not "no id" */
	assert_string_equal(log_qn("abcdef", 3), "\"abc\"");
}

static void expect_q(const char *in, size_t len, const char *body, bool cut)
{
	char want[LOG_Q_MAX + 8];
	snprintf(want, sizeof(want), "\"%s%s\"", body, cut ? "..." : "");
	assert_string_equal(log_qn(in, len), want);
}

static void test_q_truncate(void **state)
{
	char in[1000], body[LOG_Q_MAX + 1];
	(void)state;

	memset(in, 'a', sizeof(in));
	memset(body, 'a', LOG_Q_MAX);
	body[LOG_Q_MAX] = '\0';
	expect_q(in, LOG_Q_MAX, body, false);
	expect_q(in, LOG_Q_MAX + 1, body, true);
	expect_q(in, sizeof(in), body, true);
	assert_int_equal(strlen(log_qn(in, sizeof(in))), 1 + LOG_Q_MAX + 3 + 1);

	/* An escape is never split: 255 a's and "\n" need 257 bytes. */
	in[LOG_Q_MAX - 1] = '\n';
	body[LOG_Q_MAX - 1] = '\0';
	expect_q(in, LOG_Q_MAX, body, true);

	/* Nor is a UTF-8 character: 255 a's and U+00E9. */
	in[LOG_Q_MAX - 1] = (char)0xc3;
	in[LOG_Q_MAX] = (char)0xa9;
	expect_q(in, LOG_Q_MAX + 1, body, true);

	/* 64 bad bytes fill the 256 bytes exactly; 65 do not fit. */
	memset(in, 0xff, sizeof(in));
	char hex[LOG_Q_MAX + 1] = "";
	for (int i = 0; i < LOG_Q_MAX / 4; i++)
		strcat(hex, "\\xff");
	expect_q(in, LOG_Q_MAX / 4, hex, false);
	expect_q(in, LOG_Q_MAX / 4 + 1, hex, true);
}

static void test_q_ring(void **state)
{
	const char *p[LOG_Q_SLOTS + 1];
	char want[32], line[512];
	(void)state;

	for (int i = 0; i < LOG_Q_SLOTS; i++) {
		snprintf(want, sizeof(want), "v%d", i);
		p[i] = log_q(want);
	}
	for (int i = 0; i < LOG_Q_SLOTS; i++) {
		snprintf(want, sizeof(want), "\"v%d\"", i);
		assert_string_equal(p[i], want); /* all N still valid */
	}
	p[LOG_Q_SLOTS] = log_q("new");
	assert_ptr_equal(p[LOG_Q_SLOTS], p[0]); /* call N+1 reuses the oldest slot */
	assert_string_equal(p[0], "\"new\"");
	assert_string_equal(p[1], "\"v1\"");

	/* N values in one call. */
	snprintf(line, sizeof(line), "%s %s %s %s %s %s %s %s", log_q("a"), log_q("b"),
		 log_q("c"), log_q("d"), log_q("e"), log_q("f"), log_q("g"), log_q("h"));
	assert_string_equal(line, "\"a\" \"b\" \"c\" \"d\" \"e\" \"f\" \"g\" \"h\"");
}

/* ---- lines ---- */

struct field {
	char key[32];
	char val[LOG_LINE_MAX];
};

/* Splits one logfmt line into its key=value fields (bare words skipped;
 * quoted values unescaped for \" and \\ only). Returns the count. */
static int parse_fields(const char *s, struct field *f, int max)
{
	int n = 0;

	while (*s && *s != '\n') {
		while (*s == ' ')
			s++;
		size_t k = strcspn(s, "= \n");
		if (s[k] != '=' || k == 0 || k >= sizeof(f->key)) {
			s += k;
			continue;
		}
		assert_true(n < max);
		memcpy(f[n].key, s, k);
		f[n].key[k] = '\0';
		s += k + 1;
		size_t v = 0;
		if (*s == '"') {
			for (s++; *s && *s != '"'; s++) {
				if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
					s++;
				f[n].val[v++] = *s;
			}
			if (*s == '"')
				s++;
		} else {
			while (*s && *s != ' ' && *s != '\n')
				f[n].val[v++] = *s++;
		}
		f[n].val[v] = '\0';
		n++;
	}
	return n;
}

static int field_count(const struct field *f, int n, const char *key)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += strcmp(f[i].key, key) == 0;
	return c;
}

static const char *field_get(const struct field *f, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(f[i].key, key) == 0)
			return f[i].val;
	return NULL;
}

static struct field fields[32];

static void test_forged_field(void **state)
{
	const char *out;
	int n;
	(void)state;

	log_info("conn open client=%s addr=%s user=%s", log_q("x addr=10.6.6.6 level=error"),
		 "192.0.2.1", log_q("u\" level=\"debug"));
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out, "client=\"x addr=10.6.6.6 level=error\" addr=192.0.2.1 "
				    "user=\"u\\\" level=\\\"debug\"\n"));
	n = parse_fields(out, fields, 32);
	assert_int_equal(field_count(fields, n, "level"), 1);
	assert_string_equal(field_get(fields, n, "level"), "info");
	assert_int_equal(field_count(fields, n, "addr"), 1);
	assert_string_equal(field_get(fields, n, "addr"), "192.0.2.1");
	assert_string_equal(field_get(fields, n, "client"), "x addr=10.6.6.6 level=error");
	assert_string_equal(field_get(fields, n, "user"), "u\" level=\"debug");

	/* A forged line: the newline stays inside the value. */
	log_warn("auth failed client=%s", log_q("a\n2026-01-01T00:00:00.000Z level=error thread=main x"));
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_int_equal(count(out, "level="), 2); /* one real, one inside the quotes */
	n = parse_fields(out, fields, 32);
	assert_int_equal(field_count(fields, n, "level"), 1);
	assert_int_equal(field_count(fields, n, "thread"), 1);
}

static void test_line_escapes_controls(void **state)
{
	const char *out;
	(void)state;

	/* Not quoted (a call site not yet converted): still one line. */
	log_warn("raw client=%s end", "a\nb\r\x1b[2J\x7f");
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out, " level=warn thread=main raw client=a\\nb\\r\\x1b[2J\\x7f end\n"));
	assert_memory_equal(out, "20", 2); /* the line starts with its timestamp */
}

static void test_line_truncated(void **state)
{
	static char big[3 * LOG_LINE_MAX];
	const char *out;
	size_t len;
	(void)state;

	memset(big, 'a', sizeof(big) - 1);
	log_info("long v=%s", big);
	out = cap_take();
	len = strlen(out);
	assert_int_equal(count(out, "\n"), 1);
	assert_true(len <= LOG_LINE_MAX && len > LOG_LINE_MAX - 4);
	assert_string_equal(out + len - strlen("aaa... truncated=1\n"), "aaa... truncated=1\n");

	/* The err= and suppressed= fields survive; an open quote is closed. */
	errno = ENOENT;
	log_write(LVL_WARN, true, "long v=\"%s\"", big);
	out = cap_take();
	len = strlen(out);
	assert_true(len <= LOG_LINE_MAX);
	assert_non_null(strstr(out, "aaa...\" truncated=1 err=\"No such file or directory\"\n"));
	assert_int_equal(count(out, "\""), 4);

	/* Control bytes expand (1 -> 4): the cut never splits an escape. */
	memset(big, 0x01, sizeof(big) - 1);
	log_info("long v=%s", big);
	out = cap_take();
	len = strlen(out);
	assert_true(len <= LOG_LINE_MAX && len > LOG_LINE_MAX - 8);
	assert_string_equal(out + len - strlen("\\x01... truncated=1\n"), "\\x01... truncated=1\n");

	/* Quoted values (already escaped): the cut never splits one either. */
	for (int shift = 0; shift < 4; shift++) {
		char fmt_pad[8] = "";
		memset(fmt_pad, 'p', (size_t)shift);
		log_info("long%s a=%s b=%s c=%s d=%s e=%s f=%s g=%s h=%s i=%s i=%s i=%s i=%s i=%s "
			 "i=%s i=%s i=%s i=%s", fmt_pad,
			 log_qn(big, 300), log_qn(big, 300), log_qn(big, 300), log_qn(big, 300),
			 log_qn(big, 300), log_qn(big, 300), log_qn(big, 300), log_qn(big, 300),
			 log_qn(big, 300), log_qn(big, 300), log_qn(big, 300), log_qn(big, 300),
			 log_qn(big, 300), log_qn(big, 300), log_qn(big, 300), log_qn(big, 300),
			 log_qn(big, 300));
		out = cap_take();
		len = strlen(out);
		assert_true(len <= LOG_LINE_MAX);
		assert_string_equal(out + len - strlen("\\x01...\" truncated=1\n"),
				    "\\x01...\" truncated=1\n");
	}
}

static void test_errno_kept(void **state)
{
	static struct log_limit lim = LOG_LIMIT("errno", 1, 1);
	(void)state;

	errno = EPIPE;
	log_info("x=%s", log_q("a"));
	assert_int_equal(errno, EPIPE);
	log_limited(&lim, LVL_WARN, true, "y");
	log_limited(&lim, LVL_WARN, true, "y"); /* dropped */
	assert_int_equal(errno, EPIPE);
	log_flush_suppressed();
	assert_int_equal(errno, EPIPE);
	assert_non_null(strstr(cap_take(), "y err=\"Broken pipe\"\n"));
}

/* ---- rate limits ---- */

static void test_rl_burst(void **state)
{
	static struct log_limit lim = LOG_LIMIT("burst test", 10, 5);
	const char *out;
	(void)state;

	for (int i = 0; i < 20; i++)
		log_limited(&lim, LVL_WARN, false, "burst i=%d", i);
	out = cap_take();
	assert_int_equal(count(out, "\n"), 5);
	assert_non_null(strstr(out, "burst i=4\n"));
	assert_null(strstr(out, "suppressed"));

	/* One interval later, one line passes and reports the 15. */
	fake_now += 100000;
	log_limited(&lim, LVL_WARN, false, "burst i=%d", 20);
	log_limited(&lim, LVL_WARN, false, "burst i=%d", 21);
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out, "level=warn thread=main burst i=20 suppressed=15\n"));

	/* Quiet after that: the flush reports the last drop, once. */
	fake_now += 1000000;
	log_flush_suppressed();
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out, "level=warn thread=main log lines suppressed "
				    "kind=\"burst test\" suppressed=1\n"));
	log_flush_suppressed();
	assert_string_equal(cap_take(), "");

	/* A full bucket holds `burst` lines, not more. */
	fake_now += 10000000;
	for (int i = 0; i < 10; i++)
		log_limited(&lim, LVL_WARN, false, "again");
	assert_int_equal(count(cap_take(), "\n"), 5);

	/* Sustained: per_sec a second. */
	fake_now += 10000000;
	for (int i = 0; i < 5; i++)
		log_limited(&lim, LVL_WARN, false, "drain");
	cap_take();
	int passed = 0;
	for (int i = 0; i < 300; i++) {
		fake_now += 10000; /* 3 s of calls every 10 ms */
		log_limited(&lim, LVL_WARN, false, "steady");
		passed += count(cap_take(), "\n");
	}
	assert_int_equal(passed, 30);
}

static void test_rl_kinds_apart(void **state)
{
	static struct log_limit a = LOG_LIMIT("kind a", 1, 2), b = LOG_LIMIT("kind b", 1, 2);
	const char *out;
	(void)state;

	for (int i = 0; i < 5; i++) {
		log_limited(&a, LVL_WARN, false, "a");
		log_limited(&b, LVL_INFO, false, "b");
	}
	assert_int_equal(count(cap_take(), "\n"), 4);
	log_flush_suppressed();
	out = cap_take();
	assert_non_null(strstr(out, "level=warn thread=main log lines suppressed kind=\"kind a\" suppressed=3\n"));
	assert_non_null(strstr(out, "level=info thread=main log lines suppressed kind=\"kind b\" suppressed=3\n"));
}

static void rl_site(int i)
{
	log_warn_rl("conn rejected addr=%s reason=\"%s\" i=%d", "192.0.2.1", "max", i);
}

static void test_rl_site_macro(void **state)
{
	const char *out;
	(void)state;

	for (int i = 0; i < LOG_RL_BURST + 7; i++)
		rl_site(i);
	/* Another call site with the same words is a kind of its own. */
	log_warn_rl("conn rejected addr=%s", "192.0.2.2");
	out = cap_take();
	assert_int_equal(count(out, "\n"), LOG_RL_BURST + 1);
	log_flush_suppressed();
	out = cap_take();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out, "log lines suppressed kind=\"conn rejected\" suppressed=7\n"));

	/* The kind is the event words of the format. */
	for (int i = 0; i < LOG_RL_BURST + 1; i++)
		log_info_rl("reload: changes need a restart settings=%d", i);
	for (int i = 0; i < LOG_RL_BURST + 1; i++)
		log_info_rl("downlink %s group=%d", "paused", i);
	cap_take();
	log_flush_suppressed();
	out = cap_take();
	assert_non_null(strstr(out, "kind=\"reload: changes need a restart\" suppressed=1\n"));
	assert_non_null(strstr(out, "kind=\"downlink\" suppressed=1\n"));
}

static int calls;
static const char *counted(const char *s)
{
	calls++;
	return s;
}

static void test_rl_level_off(void **state)
{
	static struct log_limit lim = LOG_LIMIT("debug kind", 1, 1);
	(void)state;

	for (int i = 0; i < 100; i++) {
		log_debug_rl("off x=%s", counted("a"));
		log_limited(&lim, LVL_DEBUG, false, "off");
	}
	assert_int_equal(calls, 0); /* arguments not even evaluated */
	log_flush_suppressed();
	assert_string_equal(cap_take(), ""); /* and nothing counted */

	log_set_level(LVL_DEBUG);
	log_limited(&lim, LVL_DEBUG, false, "on");
	log_limited(&lim, LVL_DEBUG, false, "on");
	log_flush_suppressed();
	const char *out = cap_take();
	assert_int_equal(count(out, "level=debug"), 2);
	assert_non_null(strstr(out, "kind=\"debug kind\" suppressed=1\n"));
}

static void test_global_cap(void **state)
{
	static struct log_limit lim = LOG_LIMIT("under cap", 1000, 1000);
	const char *out;
	(void)state;

	log_set_global_limit(100, 10);
	log_set_level(LVL_DEBUG);
	for (int i = 0; i < 50; i++)
		log_info("flood i=%d", i);
	for (int i = 0; i < 5; i++)
		log_debug("debug is not capped");
	for (int i = 0; i < 3; i++)
		log_limited(&lim, LVL_WARN, false, "kind passes, cap drops");
	out = cap_take();
	assert_int_equal(count(out, "flood"), 10);
	assert_int_equal(count(out, "debug is not capped"), 5);
	assert_int_equal(count(out, "cap drops"), 0);

	/* The first line through again is preceded by the global count; the
	 * kind's count rides on its own next line. */
	fake_now += 1000000;
	log_error("after");
	log_limited(&lim, LVL_WARN, false, "kind again");
	out = cap_take();
	assert_non_null(strstr(out, "level=warn thread=main log lines suppressed kind=\"global\" "
				    "suppressed=40\n"));
	assert_non_null(strstr(out, "level=error thread=main after\n"));
	assert_non_null(strstr(out, "kind again suppressed=3\n"));
	assert_true(strstr(out, "kind=\"global\"") < strstr(out, "after\n"));

	/* per_sec 0 turns it off. */
	log_set_global_limit(0, 0);
	for (int i = 0; i < 50; i++)
		log_info("uncapped");
	assert_int_equal(count(cap_take(), "uncapped"), 50);
}

/* ---- threads ---- */

#define T_THREADS 4
#define T_LINES   2000

static struct log_limit t_lim = LOG_LIMIT("smoke limited", 200, 20);

static void *t_main(void *arg)
{
	int t = (int)(intptr_t)arg;
	char name[16], v[64];

	snprintf(name, sizeof(name), "t%d", t);
	log_set_thread(name);
	for (int i = 0; i < T_LINES; i++) {
		snprintf(v, sizeof(v), "t%d \"i\"\n%d", t, i);
		log_info("smoke t=%d i=%d v=%s w=%s", t, i, log_q(v), log_qn(v, 3));
		log_limited(&t_lim, LVL_WARN, false, "smoke limited t=%d", t);
	}
	return NULL;
}

/* Runs the threads and checks every line they wrote to `out`: whole,
 * bounded, each unlimited line exactly once with its own values, and each
 * limited call either written or counted in a suppressed=N, exactly once. */
static void check_threads(char *out)
{
	static bool seen[T_THREADS][T_LINES];
	unsigned long long passed = 0, dropped = 0;
	int lines = 0;

	memset(seen, 0, sizeof(seen));
	for (char *line = out, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		lines++;
		assert_true((size_t)(nl - line) < LOG_LINE_MAX);
		if (memcmp(line, "20", 2) != 0 || count(line, " level=") != 1)
			fail_msg("bad line %d: %s", lines, line);
		int t, i;
		char want[128];
		const char *p;
		if (sscanf(line + 25, "level=info thread=t%d smoke t=%*d i=%d", &t, &i) == 2) {
			assert_true(t >= 0 && t < T_THREADS && i >= 0 && i < T_LINES);
			assert_false(seen[t][i]);
			seen[t][i] = true;
			snprintf(want, sizeof(want), "smoke t=%d i=%d v=\"t%d \\\"i\\\"\\n%d\" w=\"t%d \"",
				 t, i, t, i, t);
			assert_non_null(strstr(line, want));
		} else if (strstr(line, "smoke limited t=")) {
			passed++;
			if ((p = strstr(line, " suppressed=")))
				dropped += strtoull(p + 12, NULL, 10);
		} else if ((p = strstr(line, "log lines suppressed kind=\"smoke limited\" suppressed="))) {
			dropped += strtoull(strrchr(p, '=') + 1, NULL, 10);
		} else {
			fail_msg("unexpected line: %s", line);
		}
	}
	for (int t = 0; t < T_THREADS; t++)
		for (int i = 0; i < T_LINES; i++)
			if (!seen[t][i])
				fail_msg("line t=%d i=%d lost", t, i);
	assert_true(passed > 0);
	assert_int_equal(passed + dropped, T_THREADS * T_LINES);
	print_message("threads: %d lines, limited: %llu passed, %llu dropped\n", lines, passed,
		      dropped);
}

static void run_threads(void)
{
	pthread_t th[T_THREADS];

	log_set_clock(NULL);
	for (int t = 0; t < T_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, t_main, (void *)(intptr_t)t), 0);
	for (int t = 0; t < T_THREADS; t++)
		pthread_join(th[t], NULL);
	log_flush_suppressed();
}

/* A regular file the test opened without O_APPEND: log.c sets it. */
static void test_threads_file(void **state)
{
	(void)state;
	run_threads();
	check_threads((char *)cap_take());
}

struct sink {
	int fd;
	char *buf;
	size_t len, cap;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	ssize_t r;

	for (;;) {
		if (k->cap - k->len < 65536) {
			k->cap = k->cap * 2 + 65536;
			k->buf = realloc(k->buf, k->cap);
			if (!k->buf)
				abort();
		}
		r = read(k->fd, k->buf + k->len, k->cap - k->len - 1);
		if (r <= 0)
			break;
		k->len += (size_t)r;
	}
	k->buf[k->len] = '\0';
	return NULL;
}

/* A pipe (journald, docker): each line is one write of at most PIPE_BUF. */
static void test_threads_pipe(void **state)
{
	struct sink k = { 0 };
	pthread_t reader;
	int p[2];
	(void)state;

	assert_int_equal(pipe(p), 0);
	k.fd = p[0];
	assert_int_equal(pthread_create(&reader, NULL, sink_main, &k), 0);
	log_set_fd(p[1]);
	run_threads();
	log_set_fd(cap_fd);
	close(p[1]);
	pthread_join(reader, NULL);
	close(p[0]);
	check_threads(k.buf);
	free(k.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q_table),
		cmocka_unit_test(test_q_null_empty),
		cmocka_unit_test(test_q_truncate),
		cmocka_unit_test(test_q_ring),
		cmocka_unit_test_setup_teardown(test_forged_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_escapes_controls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errno_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rl_burst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rl_kinds_apart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rl_site_macro, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rl_level_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_global_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_pipe, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
