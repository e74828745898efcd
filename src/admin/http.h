/*
 * http.h - the admin HTTP endpoint: one thread with its own epoll loop.
 *
 *   GET /metrics          Prometheus text format 0.0.4 (metrics.h)
 *   GET /healthz          200 "ok" while the process runs
 *   GET /readyz           200 "ready" when every MQTT listener is bound and,
 *                         with Kafka configured, metadata is reachable
 *                         (uplink_ready()); 503 with the reason otherwise
 *   GET /api/v1/status    JSON (status.h)
 *   GET /api/v1/clients?offset=N&limit=M   JSON, paged (status.h)
 *
 * HEAD works wherever GET does. Small and strict on purpose: at most
 * HTTP_MAX_CONNS connections (more are closed at accept), a request head of
 * at most HTTP_MAX_HEAD bytes (431 beyond), HTTP_TIMEOUT_MS to send it (the
 * connection is closed without an answer) and again to read the response,
 * no bodies (400; methods other
 * than GET and HEAD get 405), one request per connection (every response
 * says "Connection: close" and has a Content-Length). Malformed heads get
 * 400; unknown paths 404. Nothing here touches a client's connection: the
 * MQTT side only sees relaxed counter loads and, for /api/v1/clients, an
 * inbox call per worker.
 *
 * Threads: new/free on the main thread; everything else runs on the admin
 * thread. Serving is sequential: a slow /api/v1/clients (waiting up to
 * HTTP_CALL_TIMEOUT_MS for the workers) delays the next request.
 */
#ifndef KG_HTTP_H
#define KG_HTTP_H

#include <stddef.h>

#define HTTP_MAX_CONNS 64
#define HTTP_MAX_HEAD 8192
#define HTTP_TIMEOUT_MS 5000
#define HTTP_CALL_TIMEOUT_MS 1000

struct broker;
struct uplink;
struct http_server;
struct metrics_hook;
struct status_hook;

/*
 * Binds address:port (numeric IPv4 or IPv6; port 0 picks a free one) for br
 * and its Kafka producer up (NULL without Kafka), which must outlive the
 * server. Returns a new server (not yet serving), or
 * NULL with the reason in err. Main thread.
 */
struct http_server *http_server_new(const char *addr, int port, struct broker *br,
				    struct uplink *up, char *err, size_t errlen);
/*
 * Sections that the downlink module adds to /metrics and to the status
 * document; copied. Either may be NULL. Call before http_server_start().
 */
void http_server_set_hooks(struct http_server *hs, const struct metrics_hook *mh,
			   const struct status_hook *sh);
/* Starts the admin thread. Returns 0 or -1 (logged). */
int http_server_start(struct http_server *hs);
/* The port actually bound (useful when 0 was configured). */
int http_server_port(const struct http_server *hs);
/* Stops and joins the thread, closes every socket, frees. NULL ok. Must be
 * called while the broker's workers still run (a clients request in progress
 * waits for them). */
void http_server_free(struct http_server *hs);

#endif
