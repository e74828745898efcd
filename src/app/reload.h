/*
 * reload.h - SIGHUP: re-read the config file and apply in place what can
 * change without closing connections (routes, limits, log level).
 *
 * Main thread only. A config that fails validation changes nothing; settings
 * that need a restart (listeners, workers, metrics, kafka.brokers,
 * kafka.properties, downlink) are reported in the log and left as they are.
 */
#ifndef KG_RELOAD_H
#define KG_RELOAD_H

struct broker;
struct cfg;
struct http_server;
struct route_table;
struct uplink;

struct reload_ctx {
	const char *path;
	struct broker *br;
	struct uplink *up;      /* NULL: no Kafka */
	struct http_server *http; /* NULL: no admin endpoint; its token is re-read */
	const struct cfg *boot; /* the config the process started with: restart-only
	                           settings are still those */
	const struct cfg *cur;  /* the config in force (initially the caller's) */
	struct cfg **old;       /* configs this module loaded and replaced; freed by reload_release() */
	int n_old;
};

/* Builds the routing table from cfg's routes. Returns it (free with
 * route_table_unref) or NULL with "FILE:LINE: what is wrong" in err. */
struct route_table *reload_route_table(const struct cfg *cfg, char *err, size_t errlen);

/* Returns 0 when the new config is in force, -1 when it was rejected. */
int reload_apply(struct reload_ctx *r);
/* Frees every config reload_apply() loaded (not the caller's first one).
 * Only once nothing reads them: after the workers and admin thread stop. */
void reload_release(struct reload_ctx *r, const struct cfg *first);

#endif
