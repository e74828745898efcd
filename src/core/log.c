/* log.c - levels, lines and rate limits; see log.h. Quoting and escaping
 * are in log_quote.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/log_int.h"

_Static_assert(LOG_LINE_MAX <= PIPE_BUF, "a line must fit one atomic pipe write");

static atomic_int cur_level = LVL_INFO;
static atomic_bool to_syslog;
static atomic_int out_fd = STDERR_FILENO;
static atomic_int append_fd = -1; /* out_fd, once checked by set_append() */
static _Atomic(int64_t (*)(void)) clock_fn;
static _Thread_local char thread_name[16] = "main";
static const char *names[] = { "error", "warn", "info", "debug" };

/* The global cap: GCRA state and what it dropped from lines with no kind. */
static atomic_uint global_per_sec = 1000, global_burst = 5000;
static _Atomic int64_t global_tat;
static atomic_ullong global_suppressed;
/* Kinds that have dropped lines, for log_flush_suppressed(); push-only. */
static struct log_limit *_Atomic listed;

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

void log_set_fd(int fd)
{
	atomic_store(&out_fd, fd < 0 ? STDERR_FILENO : fd);
	atomic_store(&append_fd, -1);
}

/* Threads writing one file through one description without O_APPEND race
 * on its offset and overwrite each other's lines (`kafkagate 2>file`); with
 * O_APPEND each write(2) lands whole at the end. Pipes and sockets have no
 * offset. Idempotent, so a race between two first writes is harmless. */
static void set_append(int fd)
{
	struct stat st;
	int fl;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (fl = fcntl(fd, F_GETFL)) >= 0 &&
	    !(fl & O_APPEND))
		fcntl(fd, F_SETFL, fl | O_APPEND);
	atomic_store(&append_fd, fd);
}

void log_set_clock(int64_t (*now_us)(void)) { atomic_store(&clock_fn, now_us); }

static int64_t now_us(void)
{
	int64_t (*fn)(void) = atomic_load_explicit(&clock_fn, memory_order_relaxed);
	struct timespec ts;

	if (fn)
		return fn();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- lines ---- */

#define CUT_MARK " truncated=1"

/* Formats and writes one line; `err` is the errno to show or -1, and
 * `sup` > 0 appends " suppressed=N". Keeps no state but the output. */
__attribute__((format(printf, 4, 0)))
static void emit(int level, int err, unsigned long long sup, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX], line[LOG_LINE_MAX], tail[160];
	size_t n = 0, tn = 0, len, done, room;
	bool cut;
	int w;

	if (!atomic_load(&to_syslog)) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	n += (size_t)snprintf(line + n, sizeof(line) - n, "level=%s thread=%s ",
			      log_level_name(level), thread_name);

	w = vsnprintf(text, sizeof(text), fmt, ap);
	len = w < 0 ? 0 : (size_t)w < sizeof(text) ? (size_t)w : sizeof(text) - 1;
	cut = w >= (int)sizeof(text);

	if (err >= 0)
		tn += (size_t)snprintf(tail, sizeof(tail), " err=\"%s\"", strerror(err));
	if (sup && tn < sizeof(tail))
		tn += (size_t)snprintf(tail + tn, sizeof(tail) - tn, " suppressed=%llu", sup);
	if (tn >= sizeof(tail))
		tn = sizeof(tail) - 1;

	room = sizeof(line) - 1 - n - tn; /* 1: the newline */
	size_t o = log_quote_ctl(line + n, room, text, len, &done);
	if (done < len || cut) {
		bool open;
		o = log_quote_ctl(line + n, room - (sizeof("...\"" CUT_MARK) - 1), text, len, &done);
		o = log_quote_cut(line + n, o, &open);
		o += (size_t)sprintf(line + n + o, "...%s" CUT_MARK, open ? "\"" : "");
	}
	n += o;
	memcpy(line + n, tail, tn);
	n += tn;

	if (atomic_load(&to_syslog)) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		line[n] = '\0';
		syslog(prio[level >= 0 && level < 4 ? level : LVL_ERROR], "%s", line);
	} else {
		int fd = atomic_load(&out_fd);
		if (fd != atomic_load_explicit(&append_fd, memory_order_relaxed))
			set_append(fd);
		line[n++] = '\n';
		while (write(fd, line, n) < 0 && errno == EINTR)
			;
	}
}

__attribute__((format(printf, 4, 5)))
static void emitf(int level, int err, unsigned long long sup, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(level, err, sup, fmt, ap);
	va_end(ap);
}

/* ---- rate limits ---- */

/* GCRA: a line may go if, charging it one interval, the bucket's
 * theoretical arrival time stays within `burst` intervals of now. */
static bool gcra_take(_Atomic int64_t *tat, uint32_t per_sec, uint32_t burst, int64_t now)
{
	if (per_sec == 0)
		return true;
	int64_t t = per_sec > 1000000 ? 1 : 1000000 / per_sec;
	int64_t tau = t * (burst ? burst : 1);
	int64_t cur = atomic_load_explicit(tat, memory_order_relaxed);

	for (;;) {
		int64_t next = (cur > now ? cur : now) + t;
		if (next - now > tau)
			return false;
		if (atomic_compare_exchange_weak_explicit(tat, &cur, next, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

/* The event words of a kind: "conn rejected addr=%s" -> "conn rejected". */
static const char *kind_q(const char *kind)
{
	size_t len;

	if (!kind)
		return "-";
	len = strcspn(kind, "%=");
	if (kind[len] != '\0') {
		while (len > 0 && kind[len - 1] != ' ')
			len--;
		while (len > 0 && (kind[len - 1] == ' ' || kind[len - 1] == ':'))
			len--;
		if (len == 0)
			len = strcspn(kind, " ");
	}
	return log_qn(kind, len);
}

static void report(int level, const char *kind, unsigned long long n)
{
	emitf(level, -1, 0, "log lines suppressed kind=%s suppressed=%llu", kind, n);
}

/* The global cap for a line at `level`; reports what it dropped before
 * the first line it lets through again. */
static bool global_take(int level, int64_t now)
{
	if (level > LVL_INFO)
		return true;
	if (!gcra_take(&global_tat, atomic_load_explicit(&global_per_sec, memory_order_relaxed),
		       atomic_load_explicit(&global_burst, memory_order_relaxed), now))
		return false;
	unsigned long long n = atomic_exchange_explicit(&global_suppressed, 0, memory_order_relaxed);
	if (n)
		report(LVL_WARN, "\"global\"", n);
	return true;
}

static void limit_drop(struct log_limit *lim, int level)
{
	atomic_store_explicit(&lim->level, level, memory_order_relaxed);
	atomic_fetch_add_explicit(&lim->suppressed, 1, memory_order_relaxed);
	if (atomic_exchange_explicit(&lim->listed, true, memory_order_relaxed))
		return;
	struct log_limit *head = atomic_load_explicit(&listed, memory_order_relaxed);
	do
		lim->next = head;
	while (!atomic_compare_exchange_weak_explicit(&listed, &head, lim, memory_order_release,
						      memory_order_relaxed));
}

void log_set_global_limit(uint32_t per_sec, uint32_t burst)
{
	atomic_store(&global_burst, burst);
	atomic_store(&global_per_sec, per_sec);
	atomic_store(&global_tat, 0); /* a new limit starts with a full bucket */
}

void log_flush_suppressed(void)
{
	int saved = errno;
	unsigned long long n;

	for (struct log_limit *l = atomic_load_explicit(&listed, memory_order_acquire); l; l = l->next)
		if ((n = atomic_exchange_explicit(&l->suppressed, 0, memory_order_relaxed)))
			report(atomic_load_explicit(&l->level, memory_order_relaxed), kind_q(l->kind), n);
	if ((n = atomic_exchange_explicit(&global_suppressed, 0, memory_order_relaxed)))
		report(LVL_WARN, "\"global\"", n);
	errno = saved;
}

void log_limited(struct log_limit *lim, int level, bool with_errno, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (!log_enabled(level))
		return;
	int64_t now = now_us();
	if (!gcra_take(&lim->tat, lim->per_sec, lim->burst, now) || !global_take(level, now)) {
		limit_drop(lim, level);
	} else {
		va_start(ap, fmt);
		emit(level, with_errno ? saved : -1,
		     atomic_exchange_explicit(&lim->suppressed, 0, memory_order_relaxed), fmt, ap);
		va_end(ap);
	}
	errno = saved;
}

void log_write(int level, bool with_errno, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (!log_enabled(level))
		return;
	if (!global_take(level, level > LVL_INFO ? 0 : now_us())) {
		atomic_fetch_add_explicit(&global_suppressed, 1, memory_order_relaxed);
	} else {
		va_start(ap, fmt);
		emit(level, with_errno ? saved : -1, 0, fmt, ap);
		va_end(ap);
	}
	errno = saved;
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LVL_ERROR, -1, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
