/*
 * abuse.c - the abuse driver's main: options, the case table, the RESULT
 * line and what the driver reads of the gateway from outside (/proc and
 * /metrics). See abuse.h for the pieces and tests/abuse/run.sh for how the
 * cases are run.
 *
 *   abuse list                     case names, one a line
 *   abuse cfg CASE [--full]        "limits=<body>" and "nofile=<n>" for run.sh
 *   abuse mock --ctl F --out F     host the mock Kafka cluster (ab_storm.c)
 *   abuse CASE [--full] --pid P --port P [--tls-port P] [--ws-port P]
 *         [--ws-path /mqtt] [--metrics-port P] [--host-addr A --host-port P]
 *         [--bootstrap B --mock-ctl F] [--log F] [--p99-max MS]
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "abuse.h"
#include "gw.h"
#include "itkafka.h"

int64_t ab_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ab_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ab_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- /proc --------------------------------------------------------------------- */

long ab_gw_kb(pid_t pid, const char *field)
{
	return gw_pid_kb(pid, field);
}

/* Kafka broker ports, from --bootstrap: the producer opens a connection to
 * a broker when it first needs it, which is no leak. */
static int kafka_ports[16], n_kafka_ports;

static void kafka_ports_parse(const char *bootstrap)
{
	for (const char *p = bootstrap; p && (p = strchr(p, ':')) && n_kafka_ports < 16; p++)
		kafka_ports[n_kafka_ports++] = atoi(p + 1);
}

/* Inodes of sockets (in /proc/PID/net/tcp*) connected to a Kafka port. */
static size_t kafka_inodes(pid_t pid, unsigned long *out, size_t cap)
{
	static const char *const files[] = { "tcp", "tcp6" };
	char path[64], line[512];
	size_t n = 0;

	for (int i = 0; i < 2; i++) {
		FILE *f;
		snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, files[i]);
		if (!(f = fopen(path, "r")))
			continue;
		while (fgets(line, sizeof(line), f) && n < cap) {
			unsigned rport;
			unsigned long ino;
			if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%*x %*[0-9A-Fa-f]:%x %*x %*x:%*x %*x:%*x "
					 "%*x %*u %*u %lu", &rport, &ino) != 2)
				continue;
			for (int k = 0; k < n_kafka_ports; k++)
				if ((int)rport == kafka_ports[k] && ino)
					out[n++] = ino;
		}
		fclose(f);
	}
	return n;
}

int ab_gw_fds(pid_t pid)
{
	unsigned long kino[256];
	size_t nk = n_kafka_ports ? kafka_inodes(pid, kino, 256) : 0;
	char path[64], link[64];
	struct dirent *d;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir))) {
		unsigned long ino;
		bool kafka = false;
		if (d->d_name[0] == '.')
			continue;
		if (nk) {
			char fp[320];
			ssize_t l;
			snprintf(fp, sizeof(fp), "%s/%s", path, d->d_name);
			l = readlink(fp, link, sizeof(link) - 1);
			link[l > 0 ? l : 0] = 0;
			if (sscanf(link, "socket:[%lu]", &ino) == 1)
				for (size_t i = 0; i < nk && !kafka; i++)
					kafka = kino[i] == ino;
		}
		n += !kafka;
	}
	closedir(dir);
	return n;
}

int ab_gw_fds_on(pid_t pid, const char *target)
{
	char path[64], fp[320], link[256];
	struct dirent *d;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir))) {
		ssize_t l;
		if (d->d_name[0] == '.')
			continue;
		snprintf(fp, sizeof(fp), "%s/%s", path, d->d_name);
		l = readlink(fp, link, sizeof(link) - 1);
		link[l > 0 ? l : 0] = 0;
		n += strcmp(link, target) == 0;
	}
	closedir(dir);
	return n;
}

long ab_gw_nofile(pid_t pid)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Max open files", 14) == 0)
			v = atol(line + 14);
	fclose(f);
	return v;
}

long ab_gw_cpu_ms(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut, st;
	FILE *f;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* The name in field 2 may hold spaces: count from its ')'. */
	if (!p || !(p = strrchr(buf, ')')))
		return -1;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

bool ab_gw_alive(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return false;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	return p && (p = strrchr(buf, ')')) && p[2] != 'Z';
}

long ab_gw_rss_settle(pid_t pid, long kb, int ms)
{
	int64_t end = ab_now_ms() + ms;
	long v;

	while ((v = ab_gw_kb(pid, "VmRSS")) > kb && ab_now_ms() < end)
		ab_sleep_ms(250);
	return v;
}

int ab_gw_fds_settle(pid_t pid, int want, int ms)
{
	int64_t end = ab_now_ms() + ms;
	int n;

	while ((n = ab_gw_fds(pid)) > want && ab_now_ms() < end)
		ab_sleep_ms(100);
	return n;
}

double ab_metric(const struct ab_opts *o, const char *series)
{
	static struct itkafka_resp r;

	if (o->metrics_port <= 0 || itkafka_http_get(o->metrics_port, "/metrics", &r, 5000) != 200)
		return -2;
	return itkafka_metric(r.body, series);
}

long ab_log_count(const struct ab_opts *o, const char *needle)
{
	char line[4096];
	long n = 0;
	FILE *f;

	if (!o->log_path || !(f = fopen(o->log_path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

/* ---- results --------------------------------------------------------------------- */

int ab_fail(struct ab_result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->verdict != AB_FAIL) {
		r->verdict = AB_FAIL;
		r->reason[0] = 0;
	} else {
		size_t l = strlen(r->reason);
		snprintf(r->reason + l, sizeof(r->reason) - l, "; ");
	}
	size_t l = strlen(r->reason);
	va_start(ap, fmt);
	vsnprintf(r->reason + l, sizeof(r->reason) - l, fmt, ap);
	va_end(ap);
	return -1;
}

void ab_note(struct ab_result *r, const char *fmt, ...)
{
	size_t l = strlen(r->reason);
	va_list ap;

	if (l > 0 && l + 2 < sizeof(r->reason)) {
		snprintf(r->reason + l, sizeof(r->reason) - l, "; ");
		l += 2;
	}
	va_start(ap, fmt);
	vsnprintf(r->reason + l, sizeof(r->reason) - l, fmt, ap);
	va_end(ap);
}

void ab_say(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void result_print(const struct ab_result *r)
{
	static const char *const v[] = { "PASS", "FAIL", "SKIP" };
	char reason[sizeof(r->reason)];
	char conn_p99[32] = "-"; /* the persistent legitimate client never reconnects */

	/* The line is parsed by run.sh: no double quotes inside values. */
	snprintf(reason, sizeof(reason), "%s", r->reason);
	for (char *p = reason; *p; p++)
		if (*p == '"' || *p == '\n' || *p == '|')
			*p = '\'';
	if (r->legit.conns > 0)
		snprintf(conn_p99, sizeof(conn_p99), "%.1f", r->legit.conn_p99_ms);
	printf("RESULT case=%s params=\"%s\" legit_pubs=%zu legit_p50_ms=%.1f legit_p99_ms=%.1f "
	       "legit_max_ms=%.1f legit_conn_p99_ms=%s legit_fail=%zu legit_retries=%zu "
	       "rss_base_mb=%.1f rss_peak_mb=%.1f fds_before=%d fds_after=%d verdict=%s "
	       "reason=\"%s\"\n",
	       r->name, r->params, r->legit.pubs, r->legit.p50_ms, r->legit.p99_ms, r->legit.max_ms,
	       conn_p99, r->legit.fails, r->legit.retries, r->rss_base_kb / 1024.0,
	       r->rss_peak_kb / 1024.0, r->fds_before, r->fds_after, v[r->verdict], reason);
	fflush(stdout);
}

/* ---- the case table ------------------------------------------------------------------ */

static const struct ab_case *const *tables(void)
{
	static const struct ab_case *const t[] = { ab_conn_cases, ab_flood_cases, ab_caps_cases,
						   ab_store_cases, ab_storm_cases, NULL };
	return t;
}

static const struct ab_case *case_find(const char *name)
{
	for (const struct ab_case *const *t = tables(); *t; t++)
		for (const struct ab_case *k = *t; k->name; k++)
			if (strcmp(k->name, name) == 0)
				return k;
	return NULL;
}

static void case_list(void)
{
	for (const struct ab_case *const *t = tables(); *t; t++)
		for (const struct ab_case *k = *t; k->name; k++)
			puts(k->name);
}

/* Runs k with the legitimate client alongside; the verdict adds the checks
 * every case shares: the gateway alive, the legitimate client served, and
 * no descriptor left behind. */
static int case_run(const struct ab_case *k, const struct ab_opts *o)
{
	struct ab_result r = { .name = k->name, .verdict = AB_PASS };
	int64_t t0;

	if (!ab_gw_alive(o->pid)) {
		fprintf(stderr, "abuse: no gateway with pid %d\n", (int)o->pid);
		return 2;
	}
	r.fds_before = ab_gw_fds(o->pid);
	r.rss_base_kb = ab_gw_kb(o->pid, "VmRSS");
	if (ab_legit_start(o, k->name, k->legit) < 0) {
		fprintf(stderr, "abuse: the legitimate client could not start\n");
		return 2;
	}
	ab_sleep_ms(500);
	t0 = ab_now_ms();
	k->run(o, &r);
	/* At least a second and a half of legitimate traffic in every case. */
	if (ab_now_ms() - t0 < 1500)
		ab_sleep_ms((int)(1500 - (ab_now_ms() - t0)));
	ab_legit_stop(&r.legit);
	r.rss_peak_kb = ab_gw_kb(o->pid, "VmHWM");
	if (!ab_gw_alive(o->pid)) {
		ab_fail(&r, "the gateway exited");
		r.fds_after = -1;
		result_print(&r);
		return 1;
	}
	r.fds_after = ab_gw_fds_settle(o->pid, r.fds_before, 10000);
	if (r.verdict == AB_SKIP) {
		result_print(&r);
		return 0;
	}
	if (r.fds_after > r.fds_before)
		ab_fail(&r, "descriptors: %d before, %d after", r.fds_before, r.fds_after);
	if (r.legit.pubs == 0)
		ab_fail(&r, "the legitimate client published nothing");
	if (r.legit.fails > 0) {
		if (k->legit_may_fail)
			ab_note(&r, "legit failures %zu tolerated here (%s)", r.legit.fails,
				r.legit.first_fail);
		else
			ab_fail(&r, "legit client failed %zu times (%s)", r.legit.fails,
				r.legit.first_fail);
	}
	if (r.legit.p99_ms > o->p99_max_ms)
		ab_fail(&r, "legit PUBACK p99 %.0f ms > %d ms", r.legit.p99_ms, o->p99_max_ms);
	result_print(&r);
	return r.verdict == AB_FAIL;
}

static int usage(void)
{
	fprintf(stderr, "usage: abuse list | cfg CASE [--full] | mock --ctl FIFO --out FILE |\n"
			"       CASE [--full] --pid P --port P [--tls-port P] [--ws-port P]\n"
			"            [--ws-path PATH] [--metrics-port P] [--host-addr A --host-port P]\n"
			"            [--bootstrap B --mock-ctl FIFO] [--log FILE] [--p99-max MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "full", no_argument, NULL, 'F' },
		{ "pid", required_argument, NULL, 'p' },
		{ "port", required_argument, NULL, 'P' },
		{ "tls-port", required_argument, NULL, 'T' },
		{ "ws-port", required_argument, NULL, 'W' },
		{ "ws-path", required_argument, NULL, 'w' },
		{ "metrics-port", required_argument, NULL, 'M' },
		{ "host-addr", required_argument, NULL, 'a' },
		{ "host-port", required_argument, NULL, 'A' },
		{ "bootstrap", required_argument, NULL, 'b' },
		{ "mock-ctl", required_argument, NULL, 'c' },
		{ "log", required_argument, NULL, 'l' },
		{ "p99-max", required_argument, NULL, 'x' },
		{ 0 },
	};
	struct ab_opts o = { .host = "127.0.0.1", .ws_path = "/mqtt", .p99_max_ms = 500 };
	const struct ab_case *k;
	int ch;

	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "mock") == 0)
		return ab_mock_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0) {
		case_list();
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	bool cfg = strcmp(argv[1], "cfg") == 0;
	const char *name = cfg ? (argc > 2 ? argv[2] : "") : argv[1];
	if (!(k = case_find(name))) {
		fprintf(stderr, "abuse: no case %s\n", name);
		return usage();
	}
	optind = cfg ? 3 : 2;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'F': o.full = true; break;
		case 'p': o.pid = (pid_t)atoi(optarg); break;
		case 'P': o.port = atoi(optarg); break;
		case 'T': o.tls_port = atoi(optarg); break;
		case 'W': o.ws_port = atoi(optarg); break;
		case 'w': o.ws_path = optarg; break;
		case 'M': o.metrics_port = atoi(optarg); break;
		case 'a': o.host_addr = optarg; break;
		case 'A': o.host_port = atoi(optarg); break;
		case 'b': o.bootstrap = optarg; break;
		case 'c': o.mock_ctl = optarg; break;
		case 'l': o.log_path = optarg; break;
		case 'x': o.p99_max_ms = atoi(optarg); break;
		default: return usage();
		}
	}
	if (cfg) {
		char body[1024];
		long nofile = 0;

		k->limits(o.full, body, sizeof(body), &nofile);
		printf("limits=%s\nnofile=%ld\n", body, nofile);
		return 0;
	}
	if (o.pid <= 0 || o.port <= 0)
		return usage();
	kafka_ports_parse(o.bootstrap);
	return case_run(k, &o);
}
