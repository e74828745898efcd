/*
 * cfg_int.h - what cfg.c (loading: the option table, libconfig) and
 * cfg_diff.c (comparing two loaded configs for a reload) share. Not a public
 * interface: other modules use cfg.h.
 *
 * libconfig stays in cfg.c: its setting type is only named here, as an
 * incomplete struct, for the loader pointers in the table. The table is
 * constant, so any thread may read it.
 */
#ifndef KG_CFG_INT_H
#define KG_CFG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/cfg.h"

struct ctx;                /* cfg.c's state while loading one file */
struct config_setting_t;   /* libconfig's */

/* Where a key lives. Keys of S_TOP..S_KAFKA have offsets into struct cfg
 * and are compared one by one for a reload; the others have offsets into
 * their element (struct cfg_listener for S_LISTENER and S_TLS, struct
 * cfg_metrics, cfg_route, cfg_downlink, cfg_upstream for S_UPSTREAM and
 * S_UPSTREAM_TLS, cfg_upstream_sub) and are compared with their parent.
 * S_PROPS holds no keys: it marks kafka.properties, read by its own loader. */
enum sect { S_TOP, S_LIMITS, S_LOG, S_AUTH, S_MQTT5, S_KAFKA, S_STATE, S_LISTENER, S_TLS, S_METRICS, S_ROUTE,
	    S_DOWNLINK, S_UPSTREAM, S_UPSTREAM_TLS, S_UPSTREAM_SUB, S_PROPS };

/* T_OTHER keys are known but read by their section's own code. T_PATH is a
 * file name stored as struct cfg_path; T_U32 a uint32_t. */
enum opt_type { T_INT, T_BOOL, T_STR, T_ADDR, T_ENUM, T_PATH, T_U32, T_GROUP, T_LIST, T_OTHER };

struct opt {
	enum sect sect;
	const char *name;
	enum opt_type type;
	size_t off;
	long long def, min, max;     /* T_ENUM: def is an index; T_STR: min, max are lengths */
	const char *def_str;         /* T_STR, T_ADDR; NULL: none */
	const char *const *choices;  /* T_ENUM, NULL-terminated, stored as int index */
	bool required;
	bool reloadable;             /* inside list elements and metrics: compared or not */
	enum sect sub;               /* T_GROUP, T_LIST: the section of the keys inside */
	/* Instead of the generic: s is the setting (NULL when absent), base what
	 * the section's offsets are relative to, key its full name. */
	int (*load)(struct ctx *x, const struct config_setting_t *s, void *base, const char *key);
};

/* The arrays in struct cfg that hold list elements, by element section. */
struct list_info {
	size_t arr, count, size, line;
	int (*check)(struct ctx *x, const struct config_setting_t *e, void *elem, const char *key,
		     size_t i);
};

/* Every setting, cfg_nopts of them (defined in cfg.c). */
extern const struct opt cfg_opts[];
extern const size_t cfg_nopts;
/* Indexed by S_LISTENER, S_ROUTE, S_DOWNLINK, S_UPSTREAM (arrays of struct
 * cfg) and S_UPSTREAM_SUB (of struct cfg_upstream); other entries are zero. */
extern const struct list_info cfg_lists[];

#define CAT(base, off, type) ((const type *)(const void *)((const char *)(base) + (off)))

/* "limits" + "max_inflight" -> "limits.max_inflight"; "" + "workers" -> "workers" */
static inline const char *cfg_join(char *buf, size_t len, const char *prefix, const char *name)
{
	snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", name);
	return buf;
}

#endif
