/* http_route.c - which handler answers which admin request; see http.h for
 * the endpoints and http_int.h for the contract with the connection code. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/buf.h"
#include "admin/http.h"
#include "admin/http_int.h"
#include "core/http_parse.h"
#include "core/log.h"
#include "admin/metrics.h"
#include "admin/status.h"
#include "kafka/uplink.h"
#include "state/state.h"
#include "broker/upstream.h"
#include "broker/worker.h"

/* One line per upstream that is not up; *required set when one of them is
 * required for readiness. */
static void upstreams_down(struct broker *br, char *out, size_t len, bool *required)
{
	size_t used = 0;

	*required = false;
	out[0] = '\0';
	for (int i = 0; i < br->n_ups && used < len; i++) {
		struct upstream_snapshot sn;
		upstream_snapshot(&br->ups[i], &sn);
		if (sn.state == UPSTREAM_UP)
			continue;
		*required |= br->ups[i].required;
		int n = snprintf(out + used, len - used, "upstream %s %s%s: %s\n", br->ups[i].name,
				 upstream_state_name(sn.state), br->ups[i].required ? " (required)" : "",
				 sn.last_error[0] ? sn.last_error : "not connected yet");
		if (n > 0)
			used += (size_t)n;
	}
}

static void serve_ready(struct hconn *c, const struct http_route_env *env, bool head_only)
{
	struct broker *br = env->br;
	struct uplink *up = env->up;
	int n_lis = br->n_workers > 0 ? br->workers[0].n_lis : 0;
	char why[256] = "", body[2400], ups[2048];
	bool required;

	if (n_lis == 0)
		snprintf(why, sizeof(why), "no MQTT listener");
	for (int i = 0; i < n_lis && !why[0]; i++)
		if (broker_listener_port(br, i) <= 0)
			snprintf(why, sizeof(why), "MQTT listener %d is not bound", i);
	if (!why[0] && !broker_healthy(br))
		snprintf(why, sizeof(why), "a network worker stopped (see the log)");
	if (!why[0] && up && uplink_ready(up, why, sizeof(why)) < 0 && !why[0])
		snprintf(why, sizeof(why), "kafka not reachable");
	/* State in Kafka: the state topics read to their end, the lease held. */
	if (!why[0] && env->st && !state_ready(env->st, why, sizeof(why)) && !why[0])
		snprintf(why, sizeof(why), "state not ready");
	/* Upstreams that are down are listed; they fail the probe only when
	 * the config says they are required. */
	upstreams_down(br, ups, sizeof(ups), &required);
	if (!why[0] && required)
		snprintf(why, sizeof(why), "a required upstream is down");
	if (!why[0]) {
		snprintf(body, sizeof(body), "ready\n%s", ups);
		http_respond_text(c, 200, body, head_only);
		return;
	}
	snprintf(body, sizeof(body), "not ready: %s\n%s", why, ups);
	http_respond_text(c, 503, body, head_only);
}

static void serve_json(struct hconn *c, char *text, const char *err, bool head_only)
{
	if (!text) {
		char body[300];
		snprintf(body, sizeof(body), "%s\n", err);
		http_respond_text(c, 503, body, head_only);
		return;
	}
	http_respond(c, 200, "application/json", text, strlen(text), head_only);
	free(text);
}

enum endpoint { EP_NONE, EP_METRICS, EP_HEALTHZ, EP_READYZ, EP_STATUS, EP_CLIENTS };

static enum endpoint endpoint_of(const struct http_request *req)
{
	static const char *const paths[] = {
		[EP_METRICS] = "/metrics", [EP_HEALTHZ] = "/healthz", [EP_READYZ] = "/readyz",
		[EP_STATUS] = "/api/v1/status", [EP_CLIENTS] = "/api/v1/clients",
	};

	for (int e = EP_METRICS; e <= EP_CLIENTS; e++)
		if (req->path_len == strlen(paths[e]) && memcmp(req->path, paths[e], req->path_len) == 0)
			return (enum endpoint)e;
	return EP_NONE;
}

/* The token guards the API, and /metrics when asked to; never the probes. */
static bool needs_token(const struct http_auth *auth, enum endpoint ep)
{
	return auth->has_token && (ep == EP_STATUS || ep == EP_CLIENTS ||
				   (auth->protect_metrics && ep == EP_METRICS));
}

void http_route_serve(struct hconn *c, const struct http_route_env *env,
		      const struct http_auth *auth, const struct http_request *req)
{
	bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
	bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
	enum endpoint ep = endpoint_of(req);
	const char *cl;
	size_t cl_len;

	if (ep == EP_NONE) {
		http_respond_text(c, 404, "not found\n", head);
		return;
	}
	if (!get && !head) {
		http_respond_text(c, 405, "method not allowed\n", false);
		return;
	}
	if (needs_token(auth, ep) && !http_auth_ok(auth, req)) {
		log_info_rl("http unauthorized addr=%s path=%s reason=\"%s\"", http_peer(c),
			    log_qn(req->path, req->path_len),
			    http_header_get(req, "Authorization", &cl_len) ? "wrong token" : "no token");
		http_respond_text(c, 401, "unauthorized\n", head);
		return;
	}
	cl = http_header_get(req, "Content-Length", &cl_len);
	if (http_header_get(req, "Transfer-Encoding", &cl_len) ||
	    (cl && !(cl_len == 1 && cl[0] == '0'))) {
		http_respond_text(c, 400, "request bodies are not accepted\n", head);
		return;
	}

	switch (ep) {
	case EP_HEALTHZ:
		http_respond_text(c, 200, "ok\n", head);
		break;
	case EP_READYZ:
		serve_ready(c, env, head);
		break;
	case EP_METRICS: {
		struct buf b = { 0 };
		int r = metrics_render(&b, env->br, env->up, env->start_wall_ms, NULL);
		for (int i = 0; i < env->n_mh; i++)
			r |= env->mh[i].render(&b, env->mh[i].ud);
		if (r < 0)
			http_respond_text(c, 500, "out of memory\n", head);
		else
			http_respond(c, 200, METRICS_CONTENT_TYPE, (const char *)buf_head(&b),
				buf_used(&b), head);
		buf_release(&b);
		break;
	}
	case EP_STATUS:
		serve_json(c, status_render(env->br, env->up, env->start_mono_ms, &env->sh), "out of memory",
			   head);
		break;
	default: {
		long off = http_query_count(req->query, req->query_len, "offset", 0);
		long lim = http_query_count(req->query, req->query_len, "limit",
					    STATUS_CLIENTS_DEFAULT_LIMIT);
		char err[128];
		if (off < 0 || lim < 0) {
			http_respond_text(c, 400, "offset and limit must be non-negative integers\n", head);
			return;
		}
		serve_json(c, status_clients(env->br, (size_t)off, (size_t)lim, HTTP_CALL_TIMEOUT_MS,
					     err, sizeof(err)), err, head);
	}
	}
}
