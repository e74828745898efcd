/*
 * listener.h - the MQTT listeners as the broker serves them: transport kind
 * (plain, TLS, WebSocket, WebSocket over TLS), the TLS context (reloadable),
 * and the admission checks made at accept: connections per source address
 * and accepts per second per listener.
 *
 * Threads: listener_init_all/free_all on the main thread; listener_reload on
 * the main thread while workers run (TLS contexts swap atomically, see
 * transport/tls.h); listener_admit/listener_release from any worker.
 */
#ifndef KG_LISTENER_H
#define KG_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct cfg;
struct net_peer;
struct tls_server;

enum listener_kind { LIS_MQTT, LIS_MQTTS, LIS_WS, LIS_WSS };

struct broker_listener {
	enum listener_kind kind;
	char name[24];               /* "mqtt:1883", "wss:8084": the metrics label */
	char *path;                  /* WebSocket upgrade path; NULL otherwise */
	struct tls_server *tls;      /* NULL: no TLS */
	int identity;                /* enum tls_identity: username from the certificate */
	/* Counters (relaxed atomics, any worker). */
	atomic_uint_fast64_t accepted;
	atomic_uint_fast64_t rejected;   /* refused at accept, any reason */
	atomic_int open;                 /* connections open now */
	/* max_connect_rate: a one-second window shared by the workers. */
	atomic_int_fast64_t rate_second;
	atomic_uint rate_count;
};

/* Builds br->lis from cfg (one per listener; TLS files are read now).
 * Returns 0, or -1 with "FILE:LINE: reason" in err. */
int listener_init_all(struct broker *br, const struct cfg *cfg, char *err, size_t errlen);
void listener_free_all(struct broker *br);
/* Reloads certificates and keys of every TLS listener from cfg (same
 * listeners, in the same order, as at start). Connections keep theirs.
 * Returns 0, or -1 with "FILE:LINE: reason" in err (the failing listener
 * keeps its old context; the others are reloaded). */
int listener_reload(struct broker *br, const struct cfg *cfg, char *err, size_t errlen);
/* Checks the TLS files of every listener of cfg without keeping anything
 * (for --check). Returns 0 or -1 with "FILE:LINE: reason" in err. */
int listener_check(const struct cfg *cfg, char *err, size_t errlen);

/* Admission at accept on listener i from peer p: connect rate and
 * connections per address. Returns NULL when admitted, else the reason.
 * *counted says whether the connection counts against its address: then
 * the caller calls listener_release() when it ends. */
const char *listener_admit(struct broker *br, int i, const struct net_peer *p, int64_t now_ms,
			   bool *counted);
/* A connection that counted against address ip has ended. */
void listener_release(const uint8_t ip[16]);
/* Listener i is bound to port (its metrics label follows). Main thread. */
void listener_set_port(struct broker *br, int i, int port);

const char *listener_kind_name(enum listener_kind k);

#endif
