/*
 * http_int.h - what http.c (the admin thread: sockets, the connection state
 * machine, writing responses), http_route.c (which handler answers which
 * request) and http_auth.c (the bearer token) share. Not a public
 * interface: other modules use http.h.
 *
 * Threads: everything here runs on the admin thread, but for the
 * exceptions marked.
 */
#ifndef KG_HTTP_INT_H
#define KG_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin/http.h"
#include "admin/metrics.h"
#include "admin/status.h"

struct broker;
struct cfg;
struct uplink;
struct hconn;          /* one admin connection; only http.c looks inside */
struct http_request;

/* The bearer token in force (http.h) and what it guards. Made on the main
 * thread, immutable once made; http.c hands it to the admin thread. */
struct http_auth {
	bool has_token;                 /* false: nothing is protected */
	bool protect_metrics;           /* /metrics needs the token too */
	unsigned char digest[32];       /* SHA-256 of the token: the token itself
	                                   is not kept, and comparing digests
	                                   does not leak its length */
};

/* What the handlers read. Part of struct http_server; set on the main
 * thread before the admin thread starts, constant afterwards. */
struct http_route_env {
	struct broker *br;
	struct uplink *up;            /* NULL: no Kafka producer */
	int64_t start_wall_ms, start_mono_ms;
	struct metrics_hook mh[HTTP_METRICS_HOOKS]; /* n_mh of them, in order */
	int n_mh;
	struct status_hook sh;
	struct state *st;             /* NULL: state.store = "memory" */
};

/*
 * Answers c with one whole response (status line, Content-Type, Content-
 * Length, "Connection: close", and "Allow" with 405, "WWW-Authenticate:
 * Bearer" with 401; no body when head_only) and starts sending
 * it. body is borrowed, copied before return. c may be closed on return (out
 * of memory, peer gone): callers must not touch it afterwards.
 */
void http_respond(struct hconn *c, int status, const char *ctype, const char *body, size_t len,
		  bool head_only);
/* http_respond() with a text/plain body; same rules. */
void http_respond_text(struct hconn *c, int status, const char *text, bool head_only);

/* c's peer, "addr:port", for log lines. */
const char *http_peer(const struct hconn *c);

/* http_auth.c. Reads cfg's metrics.token_file (as http_server_check() in
 * http.h describes) and protect_metrics. Returns a new auth (no token
 * without a token file; free with http_auth_free()), or NULL with
 * "FILE:LINE: metrics.token_file: ..." in err. cfg is borrowed. Main thread. */
struct http_auth *http_auth_load(const struct cfg *cfg, char *err, size_t errlen);
/* Wipes and frees a. NULL ok. Whichever thread owns a (see struct
 * http_server in http.c). */
void http_auth_free(struct http_auth *a);

/* http_auth.c. True when auth has no token, or req carries "Authorization:
 * Bearer <token>" (scheme case-insensitive) with auth's token; constant
 * time in the token's length and contents. */
bool http_auth_ok(const struct http_auth *auth, const struct http_request *req);

/*
 * Routes one whole, well-formed request head to its handler (or to 404,
 * 405, 401 without the token auth asks for, 400 for a body) and answers c
 * exactly once, through http_respond(); c must not be touched after return.
 * auth is borrowed for the call. May block up to HTTP_CALL_TIMEOUT_MS
 * (/api/v1/clients waits for the workers).
 */
void http_route_serve(struct hconn *c, const struct http_route_env *env,
		      const struct http_auth *auth, const struct http_request *req);

#endif
