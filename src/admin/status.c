/* status.c - the admin JSON API; see status.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_io.h"
#include "broker/listener.h"
#include "broker/inflight.h"
#include "route/route.h"
#include "broker/session.h"
#include "broker/upstream.h"
#include "admin/status.h"
#include "route/template.h"
#include "kafka/uplink.h"
#include "core/util.h"
#include "broker/worker.h"

#ifndef KG_VERSION
#define KG_VERSION "0.0.0"
#endif

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define JINT(v) json_integer((json_int_t)(v))

/* ---- /api/v1/status ------------------------------------------------------ */

/* a, or NULL (a dropped) when building it failed (rc < 0). */
static json_t *array_done(json_t *a, int rc)
{
	if (rc < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static json_t *listeners_json(struct broker *br)
{
	json_t *a = json_array();
	const struct worker *w0 = br->n_workers > 0 ? &br->workers[0] : NULL;
	int rc = a ? 0 : -1;

	/* Every worker binds the same addresses; worker 0's sockets say which. */
	for (int i = 0; a && w0 && i < w0->n_lis; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char host[INET6_ADDRSTRLEN] = "?";
		int port = -1;
		if (getsockname(w0->lis[i].io.fd, (struct sockaddr *)&ss, &len) == 0) {
			if (ss.ss_family == AF_INET) {
				struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
				inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
				port = ntohs(in4->sin_port);
			} else if (ss.ss_family == AF_INET6) {
				struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
				inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
				port = ntohs(in6->sin6_port);
			}
		}
		rc |= json_array_append_new(a, json_pack("{s:s,s:i}", "address", host, "port", port));
	}
	return array_done(a, rc);
}

/* [{name, nodeid, state}] as the producer's statistics last said. */
static json_t *brokers_json(struct uplink *up)
{
	struct uplink_broker_state *bs = malloc(UPLINK_MAX_BROKERS * sizeof(*bs));
	size_t n = bs ? uplink_broker_states(up, bs, UPLINK_MAX_BROKERS) : 0;
	json_t *a = bs ? json_array() : NULL;
	int rc = a ? 0 : -1;

	for (size_t i = 0; a && i < n; i++)
		rc |= json_array_append_new(a, json_pack("{s:s,s:i,s:s}", "name", bs[i].name,
							 "nodeid", (int)bs[i].nodeid,
							 "state", bs[i].state));
	free(bs);
	return array_done(a, rc);
}

static json_t *kafka_json(struct uplink *up)
{
	const struct uplink_stats *st = uplink_stats(up);

	return json_pack("{s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:o*}",
			 "bootstrap", uplink_bootstrap(up),
			 "queue_depth", uplink_queue_depth(up),
			 "delivered", (json_int_t)LD(st->delivered),
			 "failed", (json_int_t)LD(st->failed),
			 "dead_letters", (json_int_t)LD(st->dead_letters),
			 "dropped", (json_int_t)LD(st->dropped),
			 "in_flight", (json_int_t)LD(st->in_flight),
			 "brokers", brokers_json(up));
}

static json_t *routes_json(struct uplink *up)
{
	json_t *a = json_array();
	struct route_table *rt = up ? uplink_routes(up) : NULL;
	size_t n = rt ? route_table_count(rt) : 0;
	int rc = a ? 0 : -1;

	for (size_t i = 0; a && i < n; i++) {
		const struct route *r = route_table_get(rt, i);
		const struct uplink_route_stats *rs = uplink_route_stats(up, route_index(r));
		const struct template *key = route_key(r);
		json_t *o = json_pack("{s:I,s:s,s:s,s:s?,s:s}",
				      "index", (json_int_t)route_index(r),
				      "filter", route_filter(r),
				      "topic", template_source(route_topic(r)),
				      "key", key ? template_source(key) : NULL,
				      "format", route_format(r) == ROUTE_FORMAT_JSON ? "json" : "raw");
		if (o && rs) {
			rc |= json_object_set_new(o, "routed", JINT(LD(rs->routed)));
			rc |= json_object_set_new(o, "delivered", JINT(LD(rs->delivered)));
			rc |= json_object_set_new(o, "failed", JINT(LD(rs->failed)));
			rc |= json_object_set_new(o, "in_flight", JINT(LD(rs->in_flight)));
		}
		rc |= json_array_append_new(a, o);
	}
	route_table_unref(rt);
	return array_done(a, rc);
}

/* "2026-01-02T03:04:05.678Z" for a wall clock in ms; null for 0 (never). */
static json_t *iso_json(int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char stamp[32], iso[48];

	if (ms <= 0)
		return json_null();
	gmtime_r(&secs, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(iso, sizeof(iso), "%s.%03dZ", stamp, (int)(ms % 1000));
	return json_string(iso);
}

static json_t *upstreams_json(struct broker *br)
{
	json_t *a = json_array();
	int rc = a ? 0 : -1;

	for (int i = 0; a && i < br->n_ups; i++) {
		struct upstream *u = &br->ups[i];
		struct upstream_snapshot sn;
		uint64_t attempts = LD(u->st.attempts);
		upstream_snapshot(u, &sn);
		json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:s,s:b,s:b}", "name", u->name,
				      "address", u->address, "port", u->port,
				      "client_id", u->client_id,
				      "state", upstream_state_name(sn.state),
				      "tls", u->tls != NULL, "required", u->required);
		if (o) {
			rc |= json_object_set_new(o, "since", iso_json(sn.since_ms));
			rc |= json_object_set_new(o, "messages_in", JINT(LD(u->st.msgs_in)));
			rc |= json_object_set_new(o, "messages_out", JINT(LD(u->st.msgs_out)));
			rc |= json_object_set_new(o, "commands_acknowledged", JINT(LD(u->st.acked_out)));
			rc |= json_object_set_new(o, "commands_inflight", JINT(sn.inflight));
			rc |= json_object_set_new(o, "commands_queued", JINT(sn.queued));
			rc |= json_object_set_new(o, "dropped", JINT(LD(u->st.dropped)));
			rc |= json_object_set_new(o, "connections", JINT(LD(u->st.connects)));
			rc |= json_object_set_new(o, "reconnects", JINT(attempts ? attempts - 1 : 0));
			rc |= json_object_set_new(o, "last_error", sn.last_error[0]
					? json_string(sn.last_error) : json_null());
			rc |= json_object_set_new(o, "last_error_at", iso_json(sn.last_error_ms));
		}
		rc |= json_array_append_new(a, o);
	}
	return array_done(a, rc);
}

char *status_render(struct broker *br, struct uplink *up, int64_t start_mono_ms,
		    const struct status_hook *hook)
{
	json_t *root = json_object();
	json_t *down = hook && hook->downlink ? hook->downlink(hook->ud) : NULL;
	char *text = NULL;
	int rc = root ? 0 : -1;

	if (!root)
		goto out;
	rc |= json_object_set_new(root, "version", json_string(KG_VERSION));
	rc |= json_object_set_new(root, "uptime_s", JINT((util_now_ms() - start_mono_ms) / 1000));
	rc |= json_object_set_new(root, "listeners", listeners_json(br));
	rc |= json_object_set_new(root, "connections",
				  JINT(atomic_load_explicit(&br->n_connections, memory_order_relaxed)));
	rc |= json_object_set_new(root, "queued_messages", JINT(mqueue_total()));
	rc |= json_object_set_new(root, "kafka", up ? kafka_json(up) : json_null());
	rc |= json_object_set_new(root, "routes", routes_json(up));
	rc |= json_object_set_new(root, "downlink", down ? down : json_array());
	down = NULL;
	rc |= json_object_set_new(root, "upstreams", upstreams_json(br));
	rc |= json_object_set_new(root, "workers", JINT(br->n_workers));
	if (rc == 0)
		text = json_dumps(root, JSON_COMPACT);
out:
	json_decref(down);
	json_decref(root);
	return text;
}

/* ---- /api/v1/clients ----------------------------------------------------- */

/* One client, copied on its worker's thread. */
struct row {
	char *id;
	char *username;           /* NULL: none */
	char peer[64];
	char listener[24];
	char tls[16];             /* TLS version, "" for none */
	int64_t accepted_ms;      /* monotonic */
	char **subs;
	uint32_t n_subs;
	uint32_t inflight, queued;
};

/* One question to one worker. The waiter and the worker each hold a
 * reference, so whichever finishes last frees it: a late worker never
 * writes into freed memory. */
struct gather {
	pthread_mutex_t mu;
	pthread_cond_t cv;        /* CLOCK_MONOTONIC */
	int refs;                 /* mu */
	bool done;                /* mu; the fields below are the worker's until then */
	size_t skip, want;
	size_t seen;              /* connected clients on the worker */
	struct row *rows;         /* want entries */
	size_t n_rows;
	bool oom;
};

static void row_release(struct row *r)
{
	free(r->id);
	free(r->username);
	for (uint32_t i = 0; i < r->n_subs; i++)
		free(r->subs[i]);
	free(r->subs);
}

static void gather_unref(struct gather *g)
{
	pthread_mutex_lock(&g->mu);
	bool last = --g->refs == 0;
	pthread_mutex_unlock(&g->mu);
	if (!last)
		return;
	for (size_t i = 0; i < g->n_rows; i++)
		row_release(&g->rows[i]);
	free(g->rows);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

static struct gather *gather_new(size_t skip, size_t want)
{
	struct gather *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;

	if (!g || !(g->rows = calloc(want ? want : 1, sizeof(*g->rows)))) {
		free(g);
		return NULL;
	}
	pthread_mutex_init(&g->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cv, &ca);
	pthread_condattr_destroy(&ca);
	g->refs = 2;
	g->skip = skip;
	g->want = want;
	return g;
}

static int row_copy(struct row *r, const struct client *c)
{
	const struct session *s = c->s;

	memset(r, 0, sizeof(*r));
	r->id = util_strdup_n(c->id, c->id_len);
	r->username = c->username ? strdup(c->username) : NULL;
	r->subs = calloc(s->subs.n ? s->subs.n : 1, sizeof(*r->subs));
	snprintf(r->peer, sizeof(r->peer), "%s", client_peer(c));
	snprintf(r->listener, sizeof(r->listener), "%s",
		 c->up ? "upstream" : c->w->br->lis[c->lis].name);
	snprintf(r->tls, sizeof(r->tls), "%s", client_io_tls_version(c));
	r->accepted_ms = c->accepted_ms;
	r->inflight = s->out.n;
	r->queued = s->queue.n;
	if (!r->id || (c->username && !r->username) || !r->subs)
		goto fail;
	uint32_t pos = 0;
	for (const struct sub_entry *e; r->n_subs < s->subs.n &&
					(e = session_subs_next(&s->subs, &pos)); r->n_subs++)
		if (!(r->subs[r->n_subs] = strdup(e->filter)))
			goto fail;
	return 0;
fail:
	row_release(r);
	return -1;
}

/* Runs on worker w (INBOX_CALL): the clients are its own. */
static void gather_on_worker(void *arg, struct worker *w)
{
	struct gather *g = arg;
	size_t idx = 0;

	const struct client *c;
	LIST_FOREACH(c, &w->clients, link) {
		if (c->state != CL_ACTIVE || !c->s)
			continue;
		if (idx++ < g->skip || g->n_rows == g->want)
			continue;
		if (row_copy(&g->rows[g->n_rows], c) == 0)
			g->n_rows++;
		else
			g->oom = true;
	}
	pthread_mutex_lock(&g->mu);
	g->seen = idx;
	g->done = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
	gather_unref(g);
}

/* Asks w and waits until deadline (monotonic). Returns the answered gather
 * (drop it with gather_unref()), or NULL. */
static struct gather *gather_ask(struct worker *w, size_t skip, size_t want,
				 const struct timespec *deadline)
{
	struct gather *g = gather_new(skip, want);
	if (!g)
		return NULL;
	struct inbox_item it = { .kind = INBOX_CALL, .p1 = (void *)gather_on_worker, .p2 = g };
	if (worker_post(w, &it) < 0) {
		gather_unref(g);
		gather_unref(g);
		return NULL;
	}
	pthread_mutex_lock(&g->mu);
	while (!g->done && pthread_cond_timedwait(&g->cv, &g->mu, deadline) != ETIMEDOUT)
		;
	bool done = g->done;
	pthread_mutex_unlock(&g->mu);
	if (!done) {
		gather_unref(g);
		return NULL;
	}
	return g;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *row_json(const struct row *r, int64_t mono_now, int64_t wall_now)
{
	/* The session keeps its filters in a hash set: sorted here, on the
	 * admin thread, so that the answer is stable. */
	qsort(r->subs, r->n_subs, sizeof(*r->subs), cmp_str);
	json_t *subs = json_array();
	int rc = subs ? 0 : -1;
	for (uint32_t i = 0; subs && i < r->n_subs; i++)
		rc |= json_array_append_new(subs, json_string(r->subs[i]));
	if (!(subs = array_done(subs, rc)))
		return NULL;
	return json_pack("{s:s,s:s?,s:s,s:s,s:s?,s:o,s:o,s:i,s:i}",
			 "client_id", r->id, "username", r->username, "address", r->peer,
			 "listener", r->listener, "tls", r->tls[0] ? r->tls : NULL,
			 "connected_since", iso_json(wall_now - (mono_now - r->accepted_ms)),
			 "subscriptions", subs,
			 "inflight", (int)r->inflight, "queued", (int)r->queued);
}

char *status_clients(struct broker *br, size_t offset, size_t limit, int timeout_ms,
		     char *err, size_t errlen)
{
	struct timespec deadline;
	size_t total = 0, skip = offset, want;
	int64_t mono_now = util_now_ms(), wall_now = util_wall_ms();
	json_t *list = json_array(), *root = NULL;
	char *text = NULL;
	int rc = list ? 0 : -1;

	if (limit > STATUS_CLIENTS_MAX_LIMIT)
		limit = STATUS_CLIENTS_MAX_LIMIT;
	want = limit;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	snprintf(err, errlen, "out of memory");
	/* One worker after the other, so that the page needs no more copies
	 * than its own length however large the offset. */
	for (int i = 0; rc == 0 && i < br->n_workers; i++) {
		struct gather *g = gather_ask(&br->workers[i], skip, want, &deadline);
		if (!g) {
			snprintf(err, errlen, "worker %d did not answer in time", i);
			rc = -1;
			break;
		}
		rc = g->oom ? -1 : 0;
		total += g->seen;
		skip = skip > g->seen ? skip - g->seen : 0;
		want -= g->n_rows;
		for (size_t k = 0; rc == 0 && k < g->n_rows; k++)
			rc = json_array_append_new(list, row_json(&g->rows[k], mono_now, wall_now));
		gather_unref(g);
	}
	if (rc == 0 && (root = json_pack("{s:I,s:I,s:I,s:O}", "total", (json_int_t)total,
					 "offset", (json_int_t)offset,
					 "limit", (json_int_t)limit, "clients", list)))
		text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	json_decref(list);
	return text;
}
