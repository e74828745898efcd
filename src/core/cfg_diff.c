/* cfg_diff.c - comparing two loaded configs for a reload; see cfg.h. Walks
 * cfg.c's option table (cfg_int.h) and never sees libconfig. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/cfg_int.h"

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_value(const struct opt *o, const void *a, const void *b)
{
	if (o->type == T_BOOL)
		return *CAT(a, o->off, bool) == *CAT(b, o->off, bool);
	if (o->type == T_STR || o->type == T_ADDR)
		return same_str(*CAT(a, o->off, char *), *CAT(b, o->off, char *));
	if (o->type == T_PATH)
		return same_str(CAT(a, o->off, struct cfg_path)->path, CAT(b, o->off, struct cfg_path)->path);
	if (o->type == T_U32)
		return *CAT(a, o->off, uint32_t) == *CAT(b, o->off, uint32_t);
	return *CAT(a, o->off, int) == *CAT(b, o->off, int);
}

/* The plain restart-only keys of section sect; a and b point to the
 * section's struct. */
static bool same_keys(enum sect sect, const void *a, const void *b)
{
	for (size_t i = 0; i < cfg_nopts; i++)
		if (cfg_opts[i].sect == sect && cfg_opts[i].type < T_GROUP && !cfg_opts[i].reloadable &&
		    !same_value(&cfg_opts[i], a, b))
			return false;
	return true;
}

/* What same_keys() does not see in an upstream: its tls group and subscriptions. */
static bool same_upstream(const struct cfg_upstream *a, const struct cfg_upstream *b)
{
	if (a->has_tls != b->has_tls || !same_keys(S_UPSTREAM_TLS, a, b) || a->nsubs != b->nsubs)
		return false;
	for (size_t i = 0; i < a->nsubs; i++)
		if (!same_keys(S_UPSTREAM_SUB, &a->subs[i], &b->subs[i]))
			return false;
	return true;
}

static bool same_nested(const struct opt *o, const struct cfg *a, const struct cfg *b)
{
	const struct list_info *li = &cfg_lists[o->sub];
	size_t n = *CAT(a, li->count, size_t);

	if (o->sub == S_STATE)
		return same_keys(S_STATE, a, b);
	if (o->sub == S_METRICS)
		return a->has_metrics == b->has_metrics && same_keys(S_METRICS, &a->metrics, &b->metrics);
	if (o->sub == S_PROPS) {
		if (a->kafka.nprops != b->kafka.nprops)
			return false;
		for (size_t i = 0; i < a->kafka.nprops; i++)
			if (!same_str(a->kafka.props[i].name, b->kafka.props[i].name) ||
			    !same_str(a->kafka.props[i].value, b->kafka.props[i].value))
				return false;
		return true;
	}
	if (n != *CAT(b, li->count, size_t))
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *ea = *CAT(a, li->arr, char *) + i * li->size;
		const char *eb = *CAT(b, li->arr, char *) + i * li->size;
		if (!same_keys(o->sub, ea, eb))
			return false;
		/* Adding or removing TLS needs a restart; its keys do not. */
		if (o->sub == S_LISTENER &&
		    ((const struct cfg_listener *)(const void *)ea)->has_tls !=
		    ((const struct cfg_listener *)(const void *)eb)->has_tls)
			return false;
		if (o->sub == S_UPSTREAM && !same_upstream((const void *)ea, (const void *)eb))
			return false;
		if (o->sub != S_DOWNLINK)
			continue;
		const struct cfg_downlink *da = (const void *)ea, *db = (const void *)eb;
		if (da->ntopics != db->ntopics)
			return false;
		for (size_t j = 0; j < da->ntopics; j++)
			if (!same_str(da->topics[j], db->topics[j]))
				return false;
		if (da->user_props_all != db->user_props_all || da->nuser_props != db->nuser_props)
			return false;
		for (size_t j = 0; j < da->nuser_props; j++)
			if (!same_str(da->user_props[j], db->user_props[j]))
				return false;
	}
	return true;
}

int cfg_reload_diff(const struct cfg *old, const struct cfg *new, char *msg, size_t len)
{
	static const char *const prefix[] = { [S_TOP] = "", [S_LIMITS] = "limits", [S_LOG] = "log",
					      [S_AUTH] = "auth", [S_MQTT5] = "mqtt5",
					      [S_KAFKA] = "kafka" };
	char key[64];
	size_t used = 0;
	int count = 0;

	if (len)
		msg[0] = '\0';
	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct opt *o = &cfg_opts[i];
		/* Keys inside list elements and metrics are compared with their parent;
		 * a reloadable group (limits, auth, kafka) has its keys compared one
		 * by one. */
		if (o->reloadable || o->sect > S_KAFKA)
			continue;
		if (o->type < T_GROUP ? same_value(o, old, new) : same_nested(o, old, new))
			continue;
		if (used < len)
			used += (size_t)snprintf(msg + used, len - used, "%s%s", count ? ", " : "",
						 cfg_join(key, sizeof(key), prefix[o->sect], o->name));
		count++;
	}
	return count;
}
