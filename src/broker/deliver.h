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
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

struct client;
struct session;
struct worker;

/*
 * The Subscription Identifiers of one delivery, as one word that travels
 * with it (inbox item, session queue, in-flight window): 0 none;
 * 1..SUBOPT_ID_MAX that one identifier; DELIVER_SUBIDS_MANY several of the
 * session's subscriptions with identifiers matched, and they are read from
 * its subscriptions (session_subs) when the PUBLISH is written. One word
 * keeps queue entries small and the common cases free of lookups.
 */
#define DELIVER_SUBIDS_MANY 0x10000000u

/* True when m carries a Message Expiry that has passed at now_ms (wall
 * clock, util_wall_ms()). */
static inline bool deliver_expired(const struct msg *m, int64_t now_ms)
{
	return m->expires_ms != 0 && now_ms >= m->expires_ms;
}

/*
 * Delivers m to every matching subscription, from worker w: each session at
 * min(m->qos, granted); a session subscribed through several overlapping
 * filters gets one copy at the highest granted QoS, with the identifiers of
 * all of them [MQTT-3.3.4-3..5]. MQTT 5 options: a No Local subscription
 * of the publishing session (m->origin) is skipped [MQTT-3.8.3-3]; RETAIN
 * is sent as published when a matching subscription has Retain As
 * Published, else 0 [MQTT-3.3.1-12, MQTT-3.3.1-13]. Stores or clears the
 * retained message when m->retain. Borrows m (takes references as needed).
 */
/* Returns how many sessions it went to (shared subscription members
 * included; 0: no subscriber took it, MQTT 5 0x10 No matching subscribers). */
size_t deliver_publish(struct worker *w, struct msg *m);
/* As deliver_publish(), for a message another instance received
 * (broker_inject_local()): nothing is stored as retained and no state hook
 * is called; only (NULL: every session) limits it to the subscriptions of
 * that one session, shared ones included. */
size_t deliver_publish_local(struct worker *w, struct msg *m, const struct session *only);

/*
 * Hands m to session s at `qos` from worker w: sent if the session's client
 * is attached to w, posted to the owning worker's inbox if attached elsewhere,
 * queued (QoS > 0) if offline. `retain` is the RETAIN flag to send;
 * subid the Subscription Identifiers word (0: none).
 * Borrows s and m.
 */
void deliver_session(struct worker *w, struct session *s, struct msg *m, uint8_t qos,
		     bool retain, uint32_t subid);

/*
 * Sends m to the attached client at qos (already min(published, granted))
 * with the given RETAIN flag, or queues it in the session when the in-flight
 * window is full or the output is over its limit. QoS 0 over the output
 * limit is dropped and counted. A message the client may not read (ACL,
 * auth.h) is dropped, as are queued and resent ones when they leave.
 * subid: the Subscription Identifiers word (0: none). The window is
 * min(limits.max_inflight, the client's Receive Maximum) unacknowledged
 * QoS 1/2 PUBLISHes [MQTT-3.3.4-9]. A message that has expired or does not
 * fit the client's Maximum Packet Size is not sent and counts as delivered
 * (send_publish()).
 * Borrows m.
 */
void deliver_client(struct client *c, struct msg *m, uint8_t qos, bool retain, uint32_t subid);
/* Moves queued messages into the window while there is room (first the
 * in-flight ones a resume held back, below). */
void deliver_pump(struct client *c);
/* Resends the in-flight window after a session resumes (DUP set), at most
 * the client's Receive Maximum of them; the rest are held and go out as
 * acknowledgements make room (deliver_pump()). Expired ones are dropped. */
void deliver_resend(struct client *c);

#endif
