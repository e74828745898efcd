/* util.c - see util.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Set by tests before threads start; read-only afterwards. */
static int64_t (*test_clock)(void);

int64_t util_now_ms(void) { return test_clock ? test_clock() : clock_ms(CLOCK_MONOTONIC); }

void util_set_clock(int64_t (*now_ms)(void)) { test_clock = now_ms; }

int64_t util_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

char *util_strdup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *util_read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0, cap = 4096;
	char *buf = NULL, *tmp;
	int err = 0;

	if (!f)
		return NULL;
	/* Read until a short read: sizes from stat lie for /proc and pipes. */
	for (;;) {
		if (!(tmp = realloc(buf, cap + 1))) {
			err = ENOMEM;
			break;
		}
		buf = tmp;
		n += fread(buf + n, 1, cap - n, f);
		if (ferror(f))
			err = errno ? errno : EIO;
		else if (n > max)
			err = EFBIG;
		if (err || n < cap)
			break;
		cap *= 2;
	}
	fclose(f);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}
