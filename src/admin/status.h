/*
 * status.h - the admin JSON API (jansson): /api/v1/status and
 * /api/v1/clients.
 *
 * Status reads only what metrics.h reads (relaxed atomic counters, the
 * uplink's counters, listener sockets). Clients are different: a client
 * belongs to its worker's thread, so status_clients() asks each worker in
 * turn, through its inbox (INBOX_CALL), to copy a page of its connected
 * clients into a buffer this module owns, and waits for the answer on a
 * condition variable with a deadline. A worker that answers late still
 * finds its buffer alive (it holds a reference) and frees it.
 *
 * Threads: the admin thread, or any thread that is not a worker (it waits
 * for the workers). Must not be called once the workers were stopped.
 */
#ifndef KG_STATUS_H
#define KG_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct uplink;
struct json_t; /* jansson's json_t */

#define STATUS_CLIENTS_DEFAULT_LIMIT 100
#define STATUS_CLIENTS_MAX_LIMIT 1000

/* The "downlink" array of the status document, provided by the downlink
 * module: returns a new JSON array (the caller takes the reference), or NULL
 * for an empty one. Same threads and rules as status_render(). */
struct status_hook {
	struct json_t *(*downlink)(void *ud);
	void *ud;
};

/*
 * Returns new JSON text (free with free()) for /api/v1/status:
 * {version, uptime_s, listeners [{address, port}], connections,
 *  kafka {bootstrap, queue_depth, delivered, failed, dead_letters, dropped,
 *         in_flight} or null, routes [{index, filter, topic, key, format,
 *  routed, delivered, failed, in_flight}], downlink [], workers,
 *  upstreams [{name, address, port, client_id, state ("down", "connecting",
 *  "up"), tls, required, since, messages_in, messages_out,
 *  commands_acknowledged, commands_inflight, commands_queued, dropped,
 *  connections, reconnects, last_error, last_error_at}]}.
 * start_mono_ms is the process start on util_now_ms()'s clock. hook may be
 * NULL. Returns NULL on allocation failure.
 */
char *status_render(struct broker *br, struct uplink *up, int64_t start_mono_ms, const struct status_hook *hook);

/*
 * Returns new JSON text (free with free()) for /api/v1/clients:
 * {total, offset, limit, clients [{client_id, username, address,
 *  connected_since, subscriptions [filters], inflight, queued}]}, clients
 * being connected (CONNACK sent) MQTT clients in worker order (upstream
 * connections among them, with listener "upstream"), skipping
 * `offset` of them and listing at most `limit` (clamped to
 * STATUS_CLIENTS_MAX_LIMIT). Waits at most timeout_ms in all for the workers.
 * Returns NULL with a reason in err when a worker did not answer in time or
 * memory ran out.
 */
char *status_clients(struct broker *br, size_t offset, size_t limit, int timeout_ms,
		     char *err, size_t errlen);

#endif
