/*
 * it_cli.c - the command line: --version, --help, --check on the shipped
 * config and on every .cfg file in config/test-bad and config/test-bad-check
 * (each must fail at the line its "# expect: LINE: message" comment names),
 * and clean exits on SIGTERM and SIGINT. Run from the repository root (paths are relative to it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"

#define RUN_TIMEOUT_MS 10000

static const char *bin(void)
{
	const char *b = getenv("KG_BIN");

	return b && *b ? b : "build/kafkagate";
}

struct run {
	int status;      /* exit code, 128 + signal, or -1 */
	char out[8192];  /* stdout then stderr, NUL-terminated, truncated */
	char err[8192];
};

/* Reads what fd holds (the child has exited) into buf. */
static void slurp(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	lseek(fd, 0, SEEK_SET);
	while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
}

/* Runs the gateway with up to three arguments (NULL-terminated), stdout
 * and stderr to temporary files, killing it after RUN_TIMEOUT_MS. */
static void run(struct run *r, const char *a1, const char *a2, const char *a3)
{
	char opath[] = "/tmp/kg-cli-out-XXXXXX", epath[] = "/tmp/kg-cli-err-XXXXXX";
	int ofd = mkstemp(opath), efd = mkstemp(epath), st;
	long long deadline = itutil_now_ms() + RUN_TIMEOUT_MS;
	pid_t pid;

	assert_true(ofd >= 0 && efd >= 0);
	unlink(opath);
	unlink(epath);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(ofd, STDOUT_FILENO);
		dup2(efd, STDERR_FILENO);
		execl(bin(), bin(), a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	r->status = -1;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (itutil_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			print_error("%s %s: still running after %d ms\n", bin(), a1, RUN_TIMEOUT_MS);
			break;
		}
		usleep(5000);
	}
	if (WIFEXITED(st))
		r->status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		r->status = 128 + WTERMSIG(st);
	slurp(ofd, r->out, sizeof(r->out));
	slurp(efd, r->err, sizeof(r->err));
	close(ofd);
	close(efd);
}

static void test_version(void **state)
{
	struct run r;
	char want[64] = "";
	FILE *f = fopen("VERSION", "r");
	(void)state;

	run(&r, "--version", NULL, NULL);
	assert_int_equal(r.status, 0);
	print_message("--version: %s", r.out);
	/* "kafkagate X.Y.Z" */
	assert_true(strncmp(r.out, "kafkagate ", 10) == 0);
	assert_true(r.out[10] >= '0' && r.out[10] <= '9');
	assert_non_null(strchr(r.out + 10, '.'));
	/* The version the build was made from. */
	if (f) {
		if (fgets(want, sizeof(want), f))
			want[strcspn(want, "\r\n")] = '\0';
		fclose(f);
		assert_non_null(strstr(r.out, want));
	}
}

static void test_help(void **state)
{
	struct run r;
	(void)state;

	run(&r, "--help", NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--config"));
	assert_non_null(strstr(r.out, "--check"));
}

static void test_usage_errors(void **state)
{
	struct run r;
	(void)state;

	run(&r, "--no-such-option", NULL, NULL);
	assert_int_not_equal(r.status, 0);
	assert_true(r.status < 128);
	run(&r, "--check", NULL, NULL); /* no --config */
	assert_int_not_equal(r.status, 0);
	assert_true(r.status < 128);
	run(&r, "--check", "--config", "config/no-such-file.cfg");
	assert_int_not_equal(r.status, 0);
	assert_true(r.status < 128);
	assert_non_null(strstr(r.err, "config/no-such-file.cfg"));
}

static void test_check_dev_config(void **state)
{
	struct run r;
	(void)state;

	run(&r, "--check", "--config", "config/dev.cfg");
	if (r.status != 0)
		print_error("%s", r.err);
	assert_int_equal(r.status, 0);
}

/* Reads "# expect: LINE: message" from path. Returns LINE or -1. */
static int read_expect(const char *path, char *msg, size_t cap)
{
	char line[512];
	int want = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	msg[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "# expect:");

		if (!p)
			continue;
		p += strlen("# expect:");
		want = (int)strtol(p, &p, 10);
		if (*p == ':')
			p++;
		while (*p == ' ')
			p++;
		snprintf(msg, cap, "%s", p);
		msg[strcspn(msg, "\r\n")] = '\0';
		break;
	}
	fclose(f);
	return want;
}

static void test_check_bad_configs(void **state)
{
	glob_t gl;
	int failures = 0;
	(void)state;

	/* test-bad: caught by the config loader; test-bad-check: valid libconfig
	 * that the routing, Kafka or downlink checks refuse. */
	assert_int_equal(glob("config/test-bad/*.cfg", 0, NULL, &gl), 0);
	assert_int_equal(glob("config/test-bad-check/*.cfg", GLOB_APPEND, NULL, &gl), 0);
	assert_true(gl.gl_pathc >= 15);
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		const char *path = gl.gl_pathv[i];
		char msg[256], prefix[320];
		int line = read_expect(path, msg, sizeof(msg));
		struct run r;

		if (line < 1) {
			print_error("%s: no '# expect: LINE: message' comment\n", path);
			failures++;
			continue;
		}
		run(&r, "--check", "--config", path);
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
		if (r.status == 0 || r.status >= 128 || strncmp(r.err, prefix, strlen(prefix)) != 0 ||
		    !strstr(r.err, msg)) {
			print_error("%s: exit %d, stderr '%s'; wanted non-zero and '%s%s'\n", path,
				    r.status, r.err, prefix, msg);
			failures++;
		}
	}
	print_message("%zu bad configs checked\n", gl.gl_pathc);
	globfree(&gl);
	assert_int_equal(failures, 0);
}

/* A running gateway (with clients connected) stops with status 0 within 5 s. */
static void stop_by_signal(int sig)
{
	struct gw g = { 0 };
	int fd[3], status;
	long long t0;

	assert_int_equal(gw_start(&g, NULL), 0);
	for (int i = 0; i < 3; i++) {
		char id[32];

		snprintf(id, sizeof(id), "it-cli-%d", i);
		fd[i] = itutil_connect(g.port, id, i == 0, 30, NULL);
		assert_true(fd[i] >= 0);
	}
	t0 = itutil_now_ms();
	gw_kill(&g, sig);
	status = gw_wait_exit(&g, 5000);
	print_message("signal %d: exit status %d after %lld ms\n", sig, status, itutil_now_ms() - t0);
	/* The clients see their connections closed. */
	bool closed[3];

	for (int i = 0; i < 3; i++) {
		closed[i] = raw_closed_within(fd[i], 1000);
		close(fd[i]);
	}
	gw_stop(&g);
	assert_int_equal(status, 0);
	for (int i = 0; i < 3; i++)
		assert_true(closed[i]);
}

static void test_sigterm(void **state) { (void)state; stop_by_signal(SIGTERM); }
static void test_sigint(void **state) { (void)state; stop_by_signal(SIGINT); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_check_dev_config),
		cmocka_unit_test(test_check_bad_configs),
		cmocka_unit_test(test_sigterm),
		cmocka_unit_test(test_sigint),
	};

	return cmocka_run_group_tests_name("it_cli", tests, NULL, NULL);
}
