/*
 * takeover.h - attaching a connection to its session and parking it again,
 * across workers; the protocol is described at the top of takeover.c.
 *
 * Thread: the worker that owns the client (or that received the inbox item).
 */
#ifndef KG_TAKEOVER_H
#define KG_TAKEOVER_H

#include <stdint.h>

struct client;
struct session;
struct worker;

/* Attaches c (after a valid CONNECT) to its session: created, resumed, or
 * taken over from an older connection. Returns 0 (CONNACK sent and reading
 * resumed if c was paused, or waiting for a takeover: c paused) or -1 (c
 * closed). */
int takeover_attach(struct client *c);
/* Detaches c's session: parked (clean session 0) or discarded (clean
 * session 1). Called by client_close(). */
void takeover_park(struct client *c);
/* Discards the persistent sessions parked for limits.session_expiry
 * seconds or more (at most a batch per call; never when it is 0). Worker
 * 0's tick calls it; other workers return at once. */
void takeover_expire(struct worker *w);

/* Inbox items (worker.h): */
/* INBOX_TAKEOVER_DONE: the session's previous owner has settled it; retry. */
void takeover_resume(struct worker *w, uint64_t conn_id);
/* INBOX_TAKEOVER: worker `from` wants s for conn_id; close our client
 * attached to it and fence our inbox. */
void takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id);
/* INBOX_FENCE: every delivery queued here before the takeover is settled. */
void takeover_fence(struct worker *w, int from, uint64_t conn_id);
/* INBOX_SETTLE: the deliveries posted here while s was ours are in its queue. */
void takeover_settle(struct worker *w, struct session *s);

#endif
