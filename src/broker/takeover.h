/*
 * takeover.h - attaching a connection to its session and parking it again,
 * across workers; the protocol is described at the top of takeover.c.
 *
 * Thread: the worker that owns the client (or that received the inbox item).
 */
#ifndef KG_TAKEOVER_H
#define KG_TAKEOVER_H

#include <stdbool.h>
#include <stdint.h>

struct broker;
struct client;
struct session;
struct worker;

/* Attaches c (after a valid CONNECT) to its session: created, resumed, or
 * taken over from an older connection. Returns 0 (CONNACK sent and reading
 * resumed if c was paused, or waiting for a takeover: c paused) or -1 (c
 * closed). */
int takeover_attach(struct client *c);
/* Detaches c's session: parked (3.1.1 clean session 0; MQTT 5 Session
 * Expiry Interval > 0, with its own deadline and a delayed will) or
 * discarded. Called by client_close(). */
void takeover_park(struct client *c);
/* Discards the 3.1.1 persistent sessions parked for limits.session_expiry
 * seconds or more (never when it is 0), and the MQTT 5 sessions whose own
 * Session Expiry Interval has passed; publishes the delayed MQTT 5 wills
 * that are due (Will Delay Interval, or their session ended first). At
 * most a batch per call. Worker 0's tick calls it; other workers return
 * at once. */
void takeover_expire(struct worker *w);
/* Takes s off the parked list and the timer heap (it is attached again or
 * discarded). Caller holds dir_lock. */
void takeover_unlist(struct broker *br, struct session *s);

/* Inbox items (worker.h): */
/* INBOX_TAKEOVER_DONE: the session's previous owner has settled it; retry. */
void takeover_resume(struct worker *w, uint64_t conn_id);
/* INBOX_TAKEOVER: worker `from` wants s for conn_id (resume: with Clean
 * Start 0, so s outlives the old connection's Session Expiry 0); close our
 * client attached to it and fence our inbox. */
void takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id,
		      bool resume);
/* INBOX_FENCE: every delivery queued here before the takeover is settled. */
void takeover_fence(struct worker *w, int from, uint64_t conn_id);
/* INBOX_SETTLE: the deliveries posted here while s was ours are in its queue. */
void takeover_settle(struct worker *w, struct session *s);

#endif
