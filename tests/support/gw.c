/*
 * gw.c - spawn, probe and stop the gateway (or mosquitto) for tests.
 */
#include "gw.h"
#include "itutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GW_WAIT_MS 10000
#define GW_TAIL_BYTES 4096

static bool gw_is_mosquitto(void)
{
	const char *b = getenv("KG_BROKER");

	return b && strcmp(b, "mosquitto") == 0;
}

static int gw_status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int gw_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static bool gw_port_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd, rc;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc == 0;
}

static void gw_print_tail(const struct gw *g)
{
	char buf[GW_TAIL_BYTES + 1];
	ssize_t n;
	off_t size;
	int fd;

	fd = open(g->log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "gw: no log at %s\n", g->log_path);
		return;
	}
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > GW_TAIL_BYTES ? size - GW_TAIL_BYTES : 0, SEEK_SET);
	n = read(fd, buf, GW_TAIL_BYTES);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	fprintf(stderr, "gw: --- tail of %s ---\n%s\ngw: --- end of log ---\n",
		g->log_path, buf);
}

static int gw_write_config(const struct gw *g, const char *extra_cfg)
{
	FILE *f = fopen(g->cfg_path, "w");
	int rc;

	if (!f)
		return -1;
	/* "user root": mosquitto started as root would otherwise switch user,
	 * which clears PR_SET_PDEATHSIG. */
	if (gw_is_mosquitto())
		fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\n"
			"log_dest stderr\nlog_type all\n%s", g->port,
			geteuid() == 0 ? "user root\n" : "");
	else
		fprintf(f, "listeners = ( { address = \"127.0.0.1\"; port = %d; } );\n"
			"log = { level = \"debug\"; };\n%s\n",
			g->port, extra_cfg ? extra_cfg : "");
	rc = ferror(f) ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void gw_exec(const struct gw *g, pid_t parent)
{
	const char *bin;
	int fd;

	if (gw_is_mosquitto()) {
		bin = getenv("KG_MOSQUITTO");
		if (!bin)
			bin = "/usr/sbin/mosquitto";
	} else {
		bin = getenv("KG_BIN");
		if (!bin)
			bin = "build/kafkagate";
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	fd = open(g->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	if (gw_is_mosquitto())
		execl(bin, bin, "-c", g->cfg_path, (char *)NULL);
	else
		execl(bin, bin, "--config", g->cfg_path, (char *)NULL);
	dprintf(STDERR_FILENO, "gw: cannot exec %s: %s\n", bin, strerror(errno));
	_exit(127);
}

/* Waits for the child to exit for up to timeout_ms; returns gw_status_code()
 * and clears g->pid, or -1 while it still runs. */
static int gw_reap(struct gw *g, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;
	int st;

	while (g->pid > 0) {
		pid_t r = waitpid(g->pid, &st, WNOHANG);

		if (r == g->pid) {
			g->pid = 0;
			return gw_status_code(st);
		}
		if (r < 0) {
			g->pid = 0;
			break;
		}
		if (itutil_now_ms() >= deadline)
			break;
		itutil_sleep_ms(10);
	}
	return -1;
}

static int gw_terminate(struct gw *g)
{
	pid_t pid = g->pid;
	int rc;

	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	rc = gw_reap(g, GW_WAIT_MS);
	if (g->pid == 0)
		return rc;
	fprintf(stderr, "gw: pid %d ignored SIGTERM for %d ms, sending SIGKILL\n",
		(int)pid, GW_WAIT_MS);
	kill(pid, SIGKILL);
	return gw_reap(g, GW_WAIT_MS);
}

static int gw_spawn(struct gw *g)
{
	long long deadline = itutil_now_ms() + GW_WAIT_MS;
	pid_t parent = getpid();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("gw: fork");
		return -1;
	}
	if (pid == 0)
		gw_exec(g, parent);
	g->pid = pid;
	while (itutil_now_ms() < deadline) {
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			g->pid = 0;
			fprintf(stderr, "gw: broker exited during start-up with status %d\n",
				gw_status_code(st));
			gw_print_tail(g);
			return -1;
		}
		/* The admin endpoint is bound after the MQTT listeners: a test that
		 * scrapes at once must not find it closed. */
		if (gw_port_open(g->port) && (!g->wait_metrics || gw_port_open(g->metrics_port)))
			return 0;
		itutil_sleep_ms(20);
	}
	fprintf(stderr, "gw: port %d not open after %d ms\n", g->port, GW_WAIT_MS);
	gw_print_tail(g);
	gw_terminate(g);
	return -1;
}

static int gw_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void gw_remove_dir(struct gw *g)
{
	const char *keep = getenv("KG_KEEP");

	if (g->dir[0] == '\0')
		return;
	if (keep && strcmp(keep, "1") == 0)
		fprintf(stderr, "gw: kept %s\n", g->dir);
	else
		nftw(g->dir, gw_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g->dir[0] = '\0';
}

int gw_start(struct gw *g, const char *extra_cfg)
{
	const char *tmp = getenv("TMPDIR");
	int metrics_port = g->metrics_port;

	memset(g, 0, sizeof(*g));
	g->metrics_port = metrics_port;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (snprintf(g->dir, sizeof(g->dir), "%s/kg-gw-XXXXXX", tmp) >= (int)sizeof(g->dir) ||
	    !mkdtemp(g->dir)) {
		fprintf(stderr, "gw: cannot make a temporary directory in %s\n", tmp);
		g->dir[0] = '\0';
		return -1;
	}
	snprintf(g->cfg_path, sizeof(g->cfg_path), "%s/gw.cfg", g->dir);
	snprintf(g->log_path, sizeof(g->log_path), "%s/gw.log", g->dir);
	g->port = gw_free_port();
	if (metrics_port > 0 && extra_cfg) {
		char needle[32];
		snprintf(needle, sizeof(needle), "port = %d;", metrics_port);
		g->wait_metrics = strstr(extra_cfg, needle) != NULL;
	}
	if (g->port < 0 || gw_write_config(g, extra_cfg) < 0) {
		fprintf(stderr, "gw: cannot pick a port or write %s\n", g->cfg_path);
		goto fail;
	}
	if (gw_spawn(g) < 0)
		goto fail;
	return 0;
fail:
	gw_remove_dir(g);
	return -1;
}

/* A gateway that reported a sanitizer error fails the whole test binary,
 * whatever the test itself asserted: see gw_check_sanitizer(). */
static int gw_sanitizer_failed;

static void gw_atexit(void)
{
	if (gw_sanitizer_failed) {
		fprintf(stderr, "gw: a gateway reported sanitizer errors: failing\n");
		_exit(1);
	}
}

static void gw_check_sanitizer(struct gw *g)
{
	static bool registered;

	if (!registered) {
		atexit(gw_atexit);
		registered = true;
	}
	if (gw_log_contains(g, "Sanitizer") || gw_log_contains(g, "runtime error:")) {
		char cmd[400];

		fprintf(stderr, "gw: sanitizer report in %s:\n", g->log_path);
		snprintf(cmd, sizeof(cmd), "grep -A30 -E 'Sanitizer|runtime error:' '%s' | head -60 >&2",
			 g->log_path);
		if (system(cmd) < 0)
			perror("system");
		gw_sanitizer_failed = 1;
	}
}

int gw_stop(struct gw *g)
{
	int rc = gw_terminate(g);

	gw_check_sanitizer(g);
	gw_remove_dir(g);
	return rc;
}

void gw_kill(struct gw *g, int sig)
{
	if (g->pid > 0)
		kill(g->pid, sig);
}

int gw_wait_exit(struct gw *g, int timeout_ms)
{
	return gw_reap(g, timeout_ms);
}

int gw_restart(struct gw *g)
{
	gw_terminate(g);
	gw_check_sanitizer(g);
	return gw_spawn(g);
}

bool gw_log_contains(struct gw *g, const char *needle)
{
	size_t nlen = strlen(needle), cap = 0, len = 0;
	char *data = NULL;
	bool found = false;
	FILE *f;

	f = fopen(g->log_path, "rb");
	if (!f)
		return false;
	for (;;) {
		if (len == cap) {
			char *p = realloc(data, cap ? cap * 2 : 65536);

			if (!p)
				break;
			data = p;
			cap = cap ? cap * 2 : 65536;
		}
		size_t n = fread(data + len, 1, cap - len, f);

		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	found = data && memmem(data, len, needle, nlen) != NULL;
	free(data);
	return found;
}

bool gw_log_wait(struct gw *g, const char *needle, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;

	for (;;) {
		if (gw_log_contains(g, needle))
			return true;
		if (itutil_now_ms() >= deadline)
			return false;
		itutil_sleep_ms(20);
	}
}

/* ---- a whole config: several listeners, files beside it -------------------- */

/* The whole log, NUL-terminated (free it), or NULL. */
static char *gw_log_read(const struct gw *g)
{
	size_t cap = 0, len = 0;
	char *data = NULL;
	FILE *f = fopen(g->log_path, "rb");

	if (!f)
		return NULL;
	for (;;) {
		if (cap - len < 2) {
			char *p = realloc(data, cap ? cap * 2 : 65536);

			if (!p) {
				free(data);
				fclose(f);
				return NULL;
			}
			data = p;
			cap = cap ? cap * 2 : 65536;
		}
		size_t n = fread(data + len, 1, cap - len - 1, f);

		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	if (data)
		data[len] = '\0';
	return data;
}

/* Port of the i-th "listening address=" line, or of the metrics one when
 * i < 0; -1 when there is no such line. */
static int gw_logged_port(const struct gw *g, int i)
{
	static const char tag[] = "listening address=", mtag[] = "metrics ";
	char *log = gw_log_read(g), *p;
	int seen = 0, port = -1;

	for (p = log; p && (p = strstr(p, tag)) != NULL; p += sizeof(tag) - 1) {
		bool metrics = (size_t)(p - log) >= sizeof(mtag) - 1 &&
			       memcmp(p - (sizeof(mtag) - 1), mtag, sizeof(mtag) - 1) == 0;
		char *eol = strchr(p, '\n'), *q = strstr(p, " port=");

		if (metrics != (i < 0) || (!metrics && seen++ != i))
			continue;
		if (q && (!eol || q < eol))
			port = atoi(q + 6);
		break;
	}
	free(log);
	return port;
}

/* Copies the regular files directly in from into to. Returns 0 or -1. */
static int gw_copy_files(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *e;
	int rc = 0;

	if (!d) {
		fprintf(stderr, "gw: cannot open %s: %s\n", from, strerror(errno));
		return -1;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char src[600], dst[600], buf[8192];
		struct stat st;
		ssize_t n;
		int in, out;

		snprintf(src, sizeof(src), "%s/%s", from, e->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", to, e->d_name);
		if (stat(src, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		in = open(src, O_RDONLY | O_CLOEXEC);
		out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
		while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n)
				rc = -1;
		if (in < 0 || out < 0)
			rc = -1;
		if (in >= 0)
			close(in);
		if (out >= 0 && close(out) < 0)
			rc = -1;
		if (rc < 0)
			fprintf(stderr, "gw: cannot copy %s to %s\n", src, dst);
	}
	closedir(d);
	return rc;
}

int gw_start_files(struct gw *g, const char *files_dir, const char *cfg)
{
	const char *tmp = getenv("TMPDIR");
	pid_t parent = getpid(), pid;
	long long deadline;
	FILE *f;

	memset(g, 0, sizeof(*g));
	if (gw_is_mosquitto()) {
		fprintf(stderr, "gw: gw_start_files() runs kafkagate only (KG_BROKER=mosquitto)\n");
		return -1;
	}
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (snprintf(g->dir, sizeof(g->dir), "%s/kg-gw-XXXXXX", tmp) >= (int)sizeof(g->dir) ||
	    !mkdtemp(g->dir)) {
		fprintf(stderr, "gw: cannot make a temporary directory in %s\n", tmp);
		g->dir[0] = '\0';
		return -1;
	}
	snprintf(g->cfg_path, sizeof(g->cfg_path), "%s/gw.cfg", g->dir);
	snprintf(g->log_path, sizeof(g->log_path), "%s/gw.log", g->dir);
	if (files_dir && gw_copy_files(files_dir, g->dir) < 0)
		goto fail;
	f = fopen(g->cfg_path, "w");
	if (!f || fputs(cfg, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "gw: cannot write %s\n", g->cfg_path);
		goto fail;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("gw: fork");
		goto fail;
	}
	if (pid == 0)
		gw_exec(g, parent);
	g->pid = pid;
	deadline = itutil_now_ms() + GW_WAIT_MS;
	for (;;) {
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			g->pid = 0;
			fprintf(stderr, "gw: gateway exited during start-up with status %d\n",
				gw_status_code(st));
			gw_print_tail(g);
			goto fail;
		}
		if (gw_log_contains(g, "kafkagate started"))
			break;
		if (itutil_now_ms() >= deadline) {
			fprintf(stderr, "gw: no \"kafkagate started\" after %d ms\n", GW_WAIT_MS);
			gw_print_tail(g);
			gw_terminate(g);
			goto fail;
		}
		itutil_sleep_ms(20);
	}
	g->port = gw_logged_port(g, 0);
	g->metrics_port = gw_logged_port(g, -1);
	if (g->metrics_port < 0)
		g->metrics_port = 0;
	return 0;
fail:
	gw_remove_dir(g);
	return -1;
}

int gw_listener_port(struct gw *g, int i)
{
	return i < 0 ? -1 : gw_logged_port(g, i);
}

long gw_pid_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t fl = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			kb = atol(line + fl + 1);
	fclose(f);
	return kb;
}

long gw_mem_kb(const struct gw *g, const char *field)
{
	long kb = gw_pid_kb(g->pid, field);

	if (kb < 0)
		fprintf(stderr, "gw: no %s in /proc/%d/status\n", field, (int)g->pid);
	return kb;
}

bool gw_is_asan(const struct gw *g)
{
	return gw_mem_kb(g, "VmSize") > 1024L * 1024 * 1024;
}
