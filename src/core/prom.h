/*
 * prom.h - Prometheus text exposition format (0.0.4): family headers and
 * sample lines appended to a buffer. Shared by the admin endpoint and every
 * module that adds its own families (the downlink). Pure; any thread.
 */
#ifndef KG_PROM_H
#define KG_PROM_H

#include <stdint.h>

#include "core/buf.h"

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram).
 * help must not contain a backslash or a newline. Returns 0 or -1. */
int prom_family(struct buf *out, const char *name, const char *type, const char *help);

/*
 * One sample line: name{k1="v1",...} value. labels is NULL or an array of
 * key, value strings ended by a NULL key; values are escaped (\\, \", \n).
 * Returns 0 or -1.
 */
int prom_u64(struct buf *out, const char *name, const char *const *labels, uint64_t v);
int prom_i64(struct buf *out, const char *name, const char *const *labels, int64_t v);
int prom_f64(struct buf *out, const char *name, const char *const *labels, double v);

#endif
