/*
 * state_hooks.h - the broker's side of "State in Kafka" (broker.h, the
 * block after broker_inject_upstream()): where the broker calls the state
 * layer's hooks (struct broker_state_ops) and how the state layer's calls
 * back (broker_state_claimed, _kick, _restore, broker_retained_apply,
 * broker_inject_local, broker_close_all) reach the workers.
 *
 * Without broker_set_state() (state.store = "memory") br->st is NULL and
 * every function here that a connection's path calls returns after that
 * one check (hooks_connect() goes straight to takeover_attach()).
 *
 * A CONNECT that passed authentication is a claim of its client id
 * (hooks_connect): the connection waits in CL_WAIT_CLAIM, reading nothing,
 * until INBOX_CLAIMED brings the answer to its worker; the connect timeout
 * still runs (then CONNACK 3 / 0x88). A connection that closes first leaves
 * its claim behind (struct hooks_abandoned, one per claim, until answered):
 * the answer then settles the session as if the connection had attached
 * and closed at once, so that Kafka's view (which recorded the claim) and
 * ours agree.
 *
 * A persistent session's SUBSCRIBE/UNSUBSCRIBE (hooks_subs_changed) waits
 * in the same way for Kafka to have its session record: c->subwait holds
 * the packet's answer, c reads nothing until INBOX_SUBS_WRITTEN (or the
 * timeout) releases it.
 *
 * A session closed for a newer connection here (a local takeover) or kicked
 * (another instance owns it) parks or ends without the parked/ended hook
 * (client CLST_QUIET): the newer connection's claim already told Kafka.
 *
 * Thread: the worker named or owning the client, except where said.
 */
#ifndef KG_STATE_HOOKS_H
#define KG_STATE_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

struct broker;
struct client;
struct msg;
struct mqtt_subscribe;
struct session;
struct worker;

/* An authenticated CONNECT: claims c's id from the state layer (c then
 * waits, paused) or, without one, attaches at once. Returns as
 * takeover_attach(): 0 (attached or waiting) or -1 (c closed). */
int hooks_connect(struct client *c);
/* The connect timeout passed while c waited for its claim. */
void hooks_claim_timeout(struct client *c);
/* c closes while its claim is unanswered (takeover_park()). */
void hooks_abandon(struct client *c);

/* Inbox items (worker.h). Each frees what its item owns. */
void hooks_claimed(struct worker *w, uint64_t conn_id, int result, void *img);
void hooks_kick(struct worker *w, char *id, uint16_t id_len, bool forwarded);
void hooks_inject_local(struct worker *w, struct msg *m, char *to_id, uint16_t to_len);

/* c's session changed its subscriptions (after SUBSCRIBE or UNSUBSCRIBE:
 * sub the packet, codes[n] its answer, added[n] which subscriptions are
 * new (NULL for UNSUBSCRIBE), subid its Subscription Identifier). Returns
 * true when the answer waits: c's session is persistent, the state layer
 * writes the change to Kafka, and the SUBACK/UNSUBACK (and the retained
 * messages after a SUBACK) go out once Kafka acknowledged it, through
 * INBOX_SUBS_WRITTEN (hooks_subs_written) or, at the latest, after
 * ops->subs_timeout_ms (hooks_subs_timeout). c reads nothing meanwhile: one
 * wait per connection, answers in the order of its packets. False: the
 * caller answers now (no state layer, a clean session, or no memory to
 * keep the packet). */
bool hooks_subs_changed(struct client *c, const struct mqtt_subscribe *sub,
			const uint8_t *codes, const bool *added, uint32_t n, uint32_t subid,
			bool unsub);
/* INBOX_SUBS_WRITTEN: broker_state_subs_written()'s answer for conn_id. */
void hooks_subs_written(struct worker *w, uint64_t conn_id, uint32_t token, bool ok);
/* c's wait passed ops->subs_timeout_ms (at now): then hooks_subs_timeout(c)
 * answers it, unconfirmed. */
bool hooks_subs_overdue(const struct client *c, int64_t now);
void hooks_subs_timeout(struct client *c);
/* Session s parked (persistent, offline now) or ended here. expiry_s as
 * ops->parked() says; will borrowed (NULL ok). Any broker thread, no lock
 * held. */
void hooks_parked(struct broker *br, const struct session *s, uint32_t expiry_s,
		  const struct msg *will, uint32_t will_delay_s);
void hooks_ended(struct broker *br, const struct session *s);

/* Frees the worker's hook buffers and the claims left behind. */
void hooks_worker_release(struct worker *w);
/* A will published here: deliver_publish() to this instance, and the
 * state layer's will hook for the others. Worker thread; m borrowed. */
void hooks_will(struct worker *w, struct msg *m, const char *id, uint16_t id_len);
/* s is being discarded because another instance owns its id: what it
 * still holds for its client (in flight before PUBREC, then the queue)
 * goes to the state layer's handover hook. The caller owns s's queue and
 * window (its owner worker, or dir_lock and s->mu for an offline one). */
void hooks_handover(struct broker *br, struct session *s);
/* The durable queue: *slot (an entry of offline s, at qos; *owes: a
 * completion is due for it) is written to Kafka through ops->spool; on
 * success *slot becomes the kept copy and *owes true, and the hook owes
 * the old message's completion. Returns true when spooled (false: no
 * hook, or it declined; nothing changed). The caller holds s->mu or owns
 * s. */
bool hooks_spool(struct broker *br, struct session *s, struct msg **slot, bool *owes,
		 uint8_t qos, bool retain);
/* s goes offline (persistent, not kicked): every message it holds for its
 * client (in flight before PUBREC, then queued) through hooks_spool(),
 * keeping packet ids and order. Owner worker. */
void hooks_spool_session(struct broker *br, struct session *s);

#endif
