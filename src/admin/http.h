/*
 * http.h - the admin HTTP endpoint: one thread with its own epoll loop.
 *
 *   GET /metrics          Prometheus text format 0.0.4 (metrics.h)
 *   GET /healthz          200 "ok" while the process runs
 *   GET /readyz           200 "ready" when every MQTT listener is bound and,
 *                         with Kafka configured, metadata is reachable
 *                         (uplink_ready()); 503 with the reason otherwise.
 *                         Upstream brokers that are not up are listed, one
 *                         line each ("upstream NAME down: why"); they fail
 *                         the probe only with `required = true`
 *   GET /api/v1/status    JSON (status.h)
 *   GET /api/v1/clients?offset=N&limit=M   JSON, paged (status.h)
 *
 * HEAD works wherever GET does. Small and strict on purpose: a request head
 * of at most HTTP_MAX_HEAD bytes (431 beyond), no bodies (400; methods other
 * than GET and HEAD get 405), one request per connection (every response
 * says "Connection: close" and has a Content-Length). Malformed heads get
 * 400; unknown paths 404. Nothing here touches a client's connection: the
 * MQTT side only sees relaxed counter loads and, for /api/v1/clients, an
 * inbox call per worker.
 *
 * Probes first. A liveness probe that cannot get in restarts a healthy
 * gateway, so a newcomer is never refused for lack of room: when the peer's
 * address already holds HTTP_MAX_CONNS_PER_ADDR connections, or the server
 * HTTP_MAX_CONNS, the oldest connection of that address (or of all) that
 * is still sending its request head is closed to make room (failing that,
 * the oldest one draining after its answer, then the oldest one still
 * being answered). One address is an IPv4 address or an IPv6 /64;
 * loopback addresses count like any other, so 127.0.0.1 and 127.0.0.2 are
 * two. A request head must be complete HTTP_HEAD_TIMEOUT_MS after accept,
 * and the answer sent within HTTP_WRITE_TIMEOUT_MS; either deadline closes
 * the connection unanswered.
 *
 * Bearer token (metrics.token_file): when set, /api/... (and /metrics with
 * metrics.protect_metrics) answer 401 with "WWW-Authenticate: Bearer"
 * unless the request carries "Authorization: Bearer <token>" (compared in
 * constant time). /healthz and /readyz never ask for it. The token is never
 * logged nor shown.
 *
 * Threads: check/new/reload/free on the main thread; everything else runs
 * on the admin thread. Serving is sequential: a slow /api/v1/clients
 * (waiting up to HTTP_CALL_TIMEOUT_MS for the workers) delays the next
 * request, which is one reason to keep /api behind the token.
 */
#ifndef KG_HTTP_H
#define KG_HTTP_H

#include <stddef.h>

#define HTTP_MAX_CONNS 128
#define HTTP_MAX_CONNS_PER_ADDR 8
#define HTTP_MAX_HEAD 8192
#define HTTP_HEAD_TIMEOUT_MS 2000
#define HTTP_WRITE_TIMEOUT_MS 5000
#define HTTP_CALL_TIMEOUT_MS 1000
#define HTTP_TOKEN_FILE_MAX 4096
#define HTTP_METRICS_HOOKS 4

struct broker;
struct cfg;
struct uplink;
struct http_server;
struct metrics_hook;
struct status_hook;
struct state;

/*
 * Reads cfg's metrics.token_file, if any, as http_server_new() would: the
 * first line, trailing whitespace stripped, must be a non-empty run of
 * visible ASCII. Returns 0 (also without a metrics group or token file), or
 * -1 with "FILE:LINE: metrics.token_file: ..." in err (the line of the
 * setting; the token itself is never put in err). Main thread.
 */
int http_server_check(const struct cfg *cfg, char *err, size_t errlen);

/*
 * Binds cfg->metrics.address:port (numeric IPv4 or IPv6; port 0 picks a
 * free one) and reads the token as http_server_check() does, for br and its
 * Kafka producer up (NULL without Kafka), which must outlive the server;
 * cfg is borrowed. Returns a new server (not yet serving), or NULL with the
 * reason in err. Main thread.
 */
struct http_server *http_server_new(const struct cfg *cfg, struct broker *br, struct uplink *up,
				    char *err, size_t errlen);
/*
 * Applies cfg's token_file (re-read) and protect_metrics: requests whose
 * head completes after return see them. Returns 0, or -1 with the reason
 * in err when the file cannot be used, the old token and protect_metrics
 * staying in force. A cfg without a metrics group changes nothing (the
 * endpoint itself needs a restart to go). Main thread; hs may be serving.
 */
int http_server_reload(struct http_server *hs, const struct cfg *cfg, char *err, size_t errlen);
/*
 * Sections that the downlink module (and the state layer) add to /metrics
 * and to the status document; copied. Either may be NULL. Each call adds
 * its metrics hook after those of earlier calls (HTTP_METRICS_HOOKS at
 * most; more are ignored) and replaces the status hook. Call before
 * http_server_start().
 */
void http_server_set_hooks(struct http_server *hs, const struct metrics_hook *mh,
			   const struct status_hook *sh);
/* /readyz also waits for state_ready(st) (state in Kafka). Before
 * http_server_start(); st must outlive the server. */
void http_server_set_state(struct http_server *hs, struct state *st);
/* Starts the admin thread. Returns 0 or -1 (logged). */
int http_server_start(struct http_server *hs);
/* The port actually bound (useful when 0 was configured). */
int http_server_port(const struct http_server *hs);
/* Stops and joins the thread, closes every socket, frees. NULL ok. Must be
 * called while the broker's workers still run (a clients request in progress
 * waits for them). */
void http_server_free(struct http_server *hs);

#endif
