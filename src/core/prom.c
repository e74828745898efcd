/* prom.c - Prometheus text format helpers; see prom.h. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/prom.h"

static int put(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s));
}

static int putf(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int putf(struct buf *out, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Only numbers go through here: they always fit. */
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return buf_append(out, tmp, (size_t)n);
}

static int put_escaped(struct buf *out, const char *s)
{
	int rc = 0;

	for (const char *run = s;; s++) {
		if (*s && *s != '\\' && *s != '"' && *s != '\n')
			continue;
		rc |= buf_append(out, run, (size_t)(s - run));
		if (!*s)
			return rc;
		rc |= put(out, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n");
		run = s + 1;
	}
}

int prom_family(struct buf *out, const char *name, const char *type, const char *help)
{
	int rc = put(out, "# HELP ");
	rc |= put(out, name);
	rc |= put(out, " ");
	rc |= put(out, help);
	rc |= put(out, "\n# TYPE ");
	rc |= put(out, name);
	rc |= put(out, " ");
	rc |= put(out, type);
	rc |= put(out, "\n");
	return rc;
}

static int sample_head(struct buf *out, const char *name, const char *const *labels)
{
	int rc = put(out, name);

	for (size_t i = 0; labels && labels[i]; i += 2) {
		rc |= put(out, i == 0 ? "{" : ",");
		rc |= put(out, labels[i]);
		rc |= put(out, "=\"");
		rc |= put_escaped(out, labels[i + 1]);
		rc |= put(out, "\"");
	}
	if (labels && labels[0])
		rc |= put(out, "}");
	return rc;
}

int prom_u64(struct buf *out, const char *name, const char *const *labels, uint64_t v)
{
	int rc = sample_head(out, name, labels);
	return rc | putf(out, " %" PRIu64 "\n", v);
}

int prom_i64(struct buf *out, const char *name, const char *const *labels, int64_t v)
{
	int rc = sample_head(out, name, labels);
	return rc | putf(out, " %" PRId64 "\n", v);
}

int prom_f64(struct buf *out, const char *name, const char *const *labels, double v)
{
	int rc = sample_head(out, name, labels);
	if (isnan(v))
		return rc | put(out, " NaN\n");
	if (isinf(v))
		return rc | put(out, v > 0 ? " +Inf\n" : " -Inf\n");
	return rc | putf(out, " %.15g\n", v);
}
