/* test_daemon.c - sd_notify datagrams on a real socket, path and abstract. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/daemon.h"

/* The socket the "service manager" reads, and the NOTIFY_SOCKET value. */
struct mgr {
	int fd;
	char dir[64];
	char name[108];
};

static void mgr_bind(struct mgr *m, const char *name, socklen_t len, const struct sockaddr_un *sa)
{
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(bind(m->fd, (const struct sockaddr *)sa, len), 0);
	snprintf(m->name, sizeof(m->name), "%s", name);
	assert_int_equal(setenv("NOTIFY_SOCKET", m->name, 1), 0);
}

static int setup_path(void **state)
{
	static struct mgr m;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(m.dir, sizeof(m.dir), "/tmp/kg-daemon-XXXXXX");
	assert_non_null(mkdtemp(m.dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", m.dir);
	mgr_bind(&m, sa.sun_path, sizeof(sa), &sa);
	*state = &m;
	return 0;
}

static int setup_abstract(void **state)
{
	static struct mgr m;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[64];
	int n;

	/* Unique per run so parallel test runs do not collide. */
	n = snprintf(name, sizeof(name), "@kg-daemon-test-%ld-%ld", (long)getpid(), (long)time(NULL));
	memcpy(sa.sun_path, name, (size_t)n);
	sa.sun_path[0] = '\0';
	m.dir[0] = '\0';
	mgr_bind(&m, name, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n), &sa);
	*state = &m;
	return 0;
}

static int teardown(void **state)
{
	struct mgr *m = *state;
	char path[128];

	close(m->fd);
	if (m->dir[0]) {
		snprintf(path, sizeof(path), "%s/notify", m->dir);
		unlink(path);
		rmdir(m->dir);
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return 0;
}

/* Reads the next datagram; "" when none is queued. A unix datagram is in
 * the receiver's queue when sendto() returns, so no waiting is needed. */
static const char *next(struct mgr *m)
{
	static char buf[1024];
	ssize_t n = recv(m->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (n < 0) {
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

static void check_states(struct mgr *m)
{
	const char *s;
	unsigned long long usec;

	daemon_notify_ready();
	assert_string_equal(next(m), "READY=1");
	daemon_notify_stopping();
	assert_string_equal(next(m), "STOPPING=1");
	daemon_watchdog_ping();
	assert_string_equal(next(m), "WATCHDOG=1");
	daemon_notify_status("serving connections=%d routes=%s", 42, "3");
	assert_string_equal(next(m), "STATUS=serving connections=42 routes=3");

	daemon_notify_reloading();
	s = next(m);
	assert_int_equal(sscanf(s, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec), 1);
	assert_true(usec > 0);
	assert_null(strchr(strchr(s, '\n') + 1, '\n'));
	assert_string_equal(next(m), "");
}

static void test_path_socket(void **state)
{
	check_states(*state);
}

static void test_abstract_socket(void **state)
{
	check_states(*state);
}

static void test_status_one_line_and_bounded(void **state)
{
	struct mgr *m = *state;
	char big[1000];
	const char *s;

	daemon_notify_status("a\nREADY=1\nb");
	assert_string_equal(next(m), "STATUS=a READY=1 b");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	daemon_notify_status("%s", big);
	s = next(m);
	assert_int_equal(strlen(s), strlen("STATUS=") + 255);
	assert_int_equal(strspn(s + 7, "x"), 255);
}

static void test_unset_is_noop(void **state)
{
	struct mgr *m = *state;

	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(daemon_notify("READY=1"), 1);
	daemon_notify_ready();
	daemon_notify_status("x");
	daemon_watchdog_ping();
	assert_string_equal(next(m), "");

	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(daemon_notify("READY=1"), 1);
	assert_string_equal(next(m), "");

	setenv("NOTIFY_SOCKET", m->name, 1);
	assert_int_equal(daemon_notify("READY=1"), 0);
	assert_string_equal(next(m), "READY=1");
}

static void test_bad_socket_names(void **state)
{
	struct mgr *m = *state;
	char path[128], longname[200];

	(void)m;
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	errno = 0;
	assert_int_equal(daemon_notify("READY=1"), -1);
	assert_int_equal(errno, EINVAL);

	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	assert_int_equal(daemon_notify("READY=1"), -1);
	assert_int_equal(errno, EINVAL);

	/* A path nobody listens on: the send fails, the void wrapper survives. */
	snprintf(path, sizeof(path), "%s/nobody", m->dir);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(daemon_notify("READY=1"), -1);
	assert_true(errno == ENOENT || errno == ECONNREFUSED);
	daemon_notify_ready();
	daemon_watchdog_ping();
	setenv("NOTIFY_SOCKET", m->name, 1);
}

static void test_watchdog_interval(void **state)
{
	struct mgr *m = *state;
	char pid[32];

	unsetenv("WATCHDOG_USEC");
	assert_int_equal(daemon_watchdog_interval_ms(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 15000);
	setenv("WATCHDOG_USEC", "1500", 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 1);
	setenv("WATCHDOG_USEC", "99999999999999999999", 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 0);
	setenv("WATCHDOG_USEC", "9000000000000000", 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 2147483647);
	static const char *const bad[] = { "", "0", "abc", "30s", "-5", " 30", "3e6" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		if (daemon_watchdog_interval_ms() != 0)
			fail_msg("WATCHDOG_USEC=\"%s\" gave an interval", bad[i]);
	}

	setenv("WATCHDOG_USEC", "10000000", 1);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 5000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 0);
	setenv("WATCHDOG_PID", "x", 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 0);
	unsetenv("WATCHDOG_PID");

	/* No socket to ping: no watchdog, whatever WATCHDOG_USEC says. */
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(daemon_watchdog_interval_ms(), 0);
	setenv("NOTIFY_SOCKET", m->name, 1);
	assert_int_equal(daemon_watchdog_interval_ms(), 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path_socket, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_abstract_socket, setup_abstract, teardown),
		cmocka_unit_test_setup_teardown(test_status_one_line_and_bounded, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_unset_is_noop, setup_abstract, teardown),
		cmocka_unit_test_setup_teardown(test_bad_socket_names, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_interval, setup_path, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
