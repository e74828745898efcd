/*
 * faults.c - the fault harness's entry point and small shared helpers
 * (faults.h lists the subcommands).
 */
#include "faults.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile int fl_stop;

static void fl_on_signal(int sig)
{
	(void)sig;
	fl_stop = 1;
}

void fl_on_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fl_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

int64_t fl_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void fl_sleep_us(int64_t us)
{
	struct timespec ts;

	if (us <= 0)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !fl_stop)
		;
}

const char *fl_opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

long fl_opt_l(int argc, char **argv, const char *name, long def)
{
	const char *s = fl_opt(argc, argv, name, NULL);

	return s ? strtol(s, NULL, 10) : def;
}

double fl_opt_d(int argc, char **argv, const char *name, double def)
{
	const char *s = fl_opt(argc, argv, name, NULL);

	return s ? strtod(s, NULL) : def;
}

int fl_parse_ports(const char *s, int *ports, int cap)
{
	int n = 0;

	while (s && *s && n < cap) {
		char *end;
		long p = strtol(s, &end, 10);

		if (end == s)
			break;
		if (p > 0 && p < 65536)
			ports[n++] = (int)p;
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int64_t fl_pct(int64_t *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_i64);
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

void fl_vec_push(struct fl_vec *a, int64_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		int64_t *v = realloc(a->v, cap * sizeof(*v));

		if (!v) {
			perror("faults: realloc");
			exit(2);
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = x;
}

void fl_vec_free(struct fl_vec *a)
{
	free(a->v);
	memset(a, 0, sizeof(*a));
}

static size_t fl_hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

long fl_names_get(struct fl_names *t, const char *name, bool add)
{
	size_t h, i;

	if (t->slot_cap == 0 || (add && (t->n + 1) * 2 > t->slot_cap)) {
		/* Grow (and rehash) at half full. */
		size_t cap = t->slot_cap ? t->slot_cap * 2 : 256;
		size_t *slot = calloc(cap, sizeof(*slot));

		if (!slot) {
			perror("faults: calloc");
			exit(2);
		}
		for (size_t k = 0; k < t->n; k++) {
			i = fl_hash(t->name[k]) & (cap - 1);
			while (slot[i])
				i = (i + 1) & (cap - 1);
			slot[i] = k + 1;
		}
		free(t->slot);
		t->slot = slot;
		t->slot_cap = cap;
	}
	h = fl_hash(name);
	for (i = h & (t->slot_cap - 1); t->slot[i]; i = (i + 1) & (t->slot_cap - 1))
		if (strcmp(t->name[t->slot[i] - 1], name) == 0)
			return (long)(t->slot[i] - 1);
	if (!add)
		return -1;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **nm = realloc(t->name, cap * sizeof(*nm));

		if (!nm) {
			perror("faults: realloc");
			exit(2);
		}
		t->name = nm;
		t->cap = cap;
	}
	t->name[t->n] = strdup(name);
	if (!t->name[t->n]) {
		perror("faults: strdup");
		exit(2);
	}
	t->slot[i] = ++t->n;
	return (long)(t->n - 1);
}

void fl_names_free(struct fl_names *t)
{
	for (size_t k = 0; k < t->n; k++)
		free(t->name[k]);
	free(t->name);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
} cmds[] = {
	{ "pub", fl_pub_main },	      { "dev", fl_dev_main },
	{ "ping", fl_ping_main },     { "cmd", fl_cmd_main },
	{ "verify", fl_verify_main }, { "verify-cmd", fl_verify_cmd_main },
	{ "sample", fl_sample_main }, { "mock", fl_mock_main },
};

int main(int argc, char **argv)
{
	if (argc >= 2)
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (strcmp(argv[1], cmds[i].name) == 0) {
				fl_on_signals();
				return cmds[i].fn(argc - 1, argv + 1);
			}
	fprintf(stderr, "usage: faults pub|dev|ping|cmd|verify|verify-cmd|sample|mock [options]\n"
			"(tests/faults/faults.h describes each; tests/faults/run.sh drives them)\n");
	return 2;
}
