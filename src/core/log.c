/* log.c - see log.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static atomic_int cur_level = LVL_INFO;
static atomic_bool to_syslog;
static _Thread_local char thread_name[16] = "main";
static const char *names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(int level)
{
	return level >= 0 && level < 4 ? names[level] : "?";
}

void log_set_level(int level) { atomic_store_explicit(&cur_level, level, memory_order_relaxed); }

bool log_enabled(int level)
{
	return level <= atomic_load_explicit(&cur_level, memory_order_relaxed);
}

void log_use_syslog(bool on)
{
	if (on)
		openlog("kafkagate", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	atomic_store(&to_syslog, on);
}

void log_set_thread(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

__attribute__((format(printf, 3, 0)))
static void vlog(int level, bool with_errno, const char *fmt, va_list ap)
{
	int saved = errno;
	char line[2048];
	size_t n = 0;

	if (!atomic_load(&to_syslog)) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	n += snprintf(line + n, sizeof(line) - n, "level=%s thread=%s ",
		      log_level_name(level), thread_name);
	if (n < sizeof(line)) {
		int w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (w > 0)
			n += (size_t)w;
	}
	if (with_errno && n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " err=\"%s\"", strerror(saved));
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (atomic_load(&to_syslog)) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		line[n] = '\0';
		syslog(prio[level], "%s", line);
	} else {
		line[n++] = '\n';
		ssize_t r = write(STDERR_FILENO, line, n);
		(void)r;
	}
	errno = saved;
}

void log_write(int level, bool with_errno, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(level, with_errno, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LVL_ERROR, false, fmt, ap);
	va_end(ap);
	exit(1);
}
