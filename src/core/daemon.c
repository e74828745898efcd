/* daemon.c - see daemon.h. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/log.h"

#define STATUS_MAX 255

static atomic_bool warned;

/* Fills *sa from NOTIFY_SOCKET's value. Returns the address length or -1. */
static int notify_addr(const char *name, struct sockaddr_un *sa)
{
	size_t n = strlen(name);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof(sa->sun_path))
		return -1;
	memcpy(sa->sun_path, name, n);
	/* An abstract name is not NUL-terminated: its length is the address
	 * length, and a leading NUL marks it as abstract. */
	if (name[0] == '@')
		sa->sun_path[0] = '\0';
	return (int)(offsetof(struct sockaddr_un, sun_path) + n);
}

int daemon_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	int len, fd, rc = -1, saved;

	if (!name || !*name)
		return 1;
	if ((len = notify_addr(name, &sa)) < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	/* The manager reads the sender's credentials from the socket (it sets
	 * SO_PASSCRED), which is what NotifyAccess=main checks. */
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, (socklen_t)len) >= 0)
		rc = 0;
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* The void wrappers: a failure is worth one line, not one every watchdog
 * tick for the life of the process. */
static void notify_or_warn(const char *state)
{
	if (daemon_notify(state) < 0 && !atomic_exchange(&warned, true))
		log_warn_errno("service manager notification failed socket=\"%s\" state=%.*s",
			       getenv("NOTIFY_SOCKET"), (int)strcspn(state, "\n"), state);
}

void daemon_notify_ready(void)
{
	notify_or_warn("READY=1");
}

void daemon_notify_stopping(void)
{
	notify_or_warn("STOPPING=1");
}

void daemon_notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	notify_or_warn(msg);
}

void daemon_notify_status(const char *fmt, ...)
{
	char msg[sizeof("STATUS=") + STATUS_MAX] = "STATUS=";
	size_t pre = strlen(msg);
	va_list ap;

	if (!getenv("NOTIFY_SOCKET"))
		return;
	va_start(ap, fmt);
	vsnprintf(msg + pre, sizeof(msg) - pre, fmt, ap);
	va_end(ap);
	for (char *p = msg + pre; (p = strchr(p, '\n')); )
		*p = ' ';
	notify_or_warn(msg);
}

/* Parses a whole unsigned decimal string; false on anything else. */
static bool parse_ull(const char *s, unsigned long long *v)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

int daemon_watchdog_interval_ms(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	unsigned long long usec, pid;

	if (!sock || !*sock || !parse_ull(getenv("WATCHDOG_USEC"), &usec) || usec == 0)
		return 0;
	/* Set by the manager when the watchdog is meant for one process; a
	 * child that inherited the environment must not ping for its parent. */
	if (getenv("WATCHDOG_PID") && (!parse_ull(getenv("WATCHDOG_PID"), &pid) ||
				       pid != (unsigned long long)getpid()))
		return 0;
	/* Half the period, as systemd advises, so one late tick is not fatal. */
	usec /= 2000;
	return usec == 0 ? 1 : usec > INT_MAX ? INT_MAX : (int)usec;
}

void daemon_watchdog_ping(void)
{
	notify_or_warn("WATCHDOG=1");
}
