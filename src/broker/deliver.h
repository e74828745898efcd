/*
 * deliver.h - from one published message to the clients that get it:
 * matching the subscription trie, one copy per session, and the in-flight
 * window and queue of each session.
 *
 * Thread: the worker named (w) or owning the client (c), only.
 */
#ifndef KG_DELIVER_H
#define KG_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct msg;
struct session;
struct worker;

/*
 * Delivers m to every matching subscription, from worker w: each session at
 * min(m->qos, granted); a session subscribed through several overlapping
 * filters gets one copy at the highest granted QoS. Stores or clears the
 * retained message when m->retain. Borrows m (takes references as needed).
 */
void deliver_publish(struct worker *w, struct msg *m);

/*
 * Hands m to session s at `qos` from worker w: sent if the session's client
 * is attached to w, posted to the owning worker's inbox if attached elsewhere,
 * queued (QoS > 0) if offline. `retain` is the RETAIN flag to send.
 * Borrows s and m.
 */
void deliver_session(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		     bool retain);

/*
 * Sends m to the attached client at qos (already min(published, granted))
 * with the given RETAIN flag, or queues it in the session when the in-flight
 * window is full or the output is over its limit. QoS 0 over the output
 * limit is dropped and counted. A message the client may not read (ACL,
 * auth.h) is dropped, as are queued and resent ones when they leave.
 * Borrows m.
 */
void deliver_client(struct client *c, struct msg *m, uint8_t qos, bool retain);
/* Moves queued messages into the window while there is room. */
void deliver_pump(struct client *c);
/* Resends the in-flight window after a session resumes (DUP set). */
void deliver_resend(struct client *c);

#endif
