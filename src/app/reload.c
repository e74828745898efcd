/* reload.c - see reload.h. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "admin/http.h"
#include "broker/broker.h"
#include "core/cfg.h"
#include "kafka/downlink.h"
#include "kafka/kafka_conf.h"
#include "core/log.h"
#include "app/reload.h"
#include "route/route.h"
#include "kafka/uplink.h"

struct route_table *reload_route_table(const struct cfg *cfg, char *err, size_t errlen)
{
	size_t n = cfg->nroutes;
	struct route_spec specs[n ? n : 1];
	char e[400];

	for (size_t i = 0; i < n; i++) {
		const struct cfg_route *r = &cfg->routes[i];
		specs[i] = (struct route_spec){
			.filter = r->filter, .topic = r->topic, .key = r->key,
			.format = r->format == CFG_FORMAT_JSON ? "json" : "raw", .line = r->line,
			.payload_text = r->payload_text == CFG_TEXT_BASE64 ? "base64" : NULL,
		};
	}
	struct route_table *rt = route_table_new(specs, n, e, sizeof(e));
	if (!rt)
		snprintf(err, errlen, "%s:%s", cfg->path, e);
	return rt;
}

static int reject(struct reload_ctx *r, struct cfg *cfg, const char *why)
{
	broker_count_reload(r->br, false);
	log_error("reload rejected config=%s reason=\"%s\" (configuration unchanged)", r->path, why);
	cfg_free(cfg);
	return -1;
}

int reload_apply(struct reload_ctx *r)
{
	char err[512], diff[256];
	struct cfg *cfg = NULL;
	struct route_table *rt = NULL;

	if (cfg_load(r->path, &cfg, err, sizeof(err)) < 0)
		return reject(r, NULL, err);
	if (!(rt = reload_route_table(cfg, err, sizeof(err))) ||
	    kafka_conf_check(cfg, err, sizeof(err)) < 0 ||
	    downlink_check(cfg, err, sizeof(err)) < 0 ||
	    broker_check(cfg, err, sizeof(err)) < 0 ||
	    http_server_check(cfg, err, sizeof(err)) < 0) {
		route_table_unref(rt);
		return reject(r, cfg, err);
	}
	if (cfg->nroutes > 0 && !r->up) {
		route_table_unref(rt);
		return reject(r, cfg, "routes need Kafka, which was not started: restart to enable it");
	}
	struct cfg **old = realloc(r->old, (size_t)(r->n_old + 1) * sizeof(*old));
	if (!old) {
		route_table_unref(rt);
		return reject(r, cfg, "out of memory");
	}
	r->old = old;

	/* Against the start-up config: a setting that needs a restart is still
	 * the boot value however many reloads asked for another. */
	int restart = cfg_reload_diff(r->boot, cfg, diff, sizeof(diff));
	if (restart > 0)
		log_warn("reload: changes need a restart to take effect settings=\"%s\"", diff);

	log_set_level(cfg->log_level);
	/* Checked above: this only fails if a file changed in between. */
	if (broker_reload(r->br, cfg, err, sizeof(err)) < 0)
		log_error("reload: listener kept its old certificate reason=%s", log_q(err));
	if (r->up) {
		/* Publishes after this use the new table (an atomic switch). */
		if (uplink_set_routes(r->up, rt) < 0) {
			route_table_unref(rt);
			return reject(r, cfg, "out of memory");
		}
	}
	route_table_unref(rt);
	/* Checked above; after the last step that can refuse the reload. The
	 * old token stays only if the file went bad since the check. */
	if (r->http && http_server_reload(r->http, cfg, err, sizeof(err)) < 0)
		log_error("reload: admin endpoint kept its old token reason=%s", log_q(err));
	/* The replaced config may still be read by the admin thread: keep it.
	 * The slot is always taken so that reload_release() can tell the
	 * caller's first config (old[0]) from ours. */
	r->old[r->n_old++] = (struct cfg *)r->cur;
	r->cur = cfg;
	broker_count_reload(r->br, true);
	log_info("reload applied config=%s routes=%zu log_level=%s restart_needed=%d", r->path,
		 cfg->nroutes, log_level_name(cfg->log_level), restart);
	return 0;
}

void reload_release(struct reload_ctx *r, const struct cfg *first)
{
	for (int i = 0; i < r->n_old; i++)
		if (r->old[i] != first)
			cfg_free(r->old[i]);
	if (r->cur != first)
		cfg_free((struct cfg *)r->cur);
	free(r->old);
	r->old = NULL;
	r->n_old = 0;
}
