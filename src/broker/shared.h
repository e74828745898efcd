/*
 * shared.h - shared subscriptions, "$share/{ShareName}/{filter}" (MQTT 5.0
 * section 4.8.2; also accepted from 3.1.1 and 3.1 clients, as the major
 * brokers do): each matching message goes to one member of the group.
 *
 * The registry holds one group per (ShareName, filter), each with its list
 * of member sessions and a round-robin cursor, in a topic trie of its own
 * keyed by the filter (owner = the group). It is guarded by the broker's
 * subs_lock: members change under the write lock; publishers match and
 * choose a member under the read lock, concurrently (the cursor is an
 * atomic). A session's own "$share/..." filters sit in its subscription set
 * (session_subs) like any other, so max_subscriptions, UNSUBSCRIBE and
 * discarding a session see them; they are never in the broker's main trie.
 *
 * Choosing a member (shared_select): round robin from the cursor, taking
 * the first member that is online and whose window has room (no queued
 * messages, fewer than max_inflight in flight); else the first online one
 * (it queues); else the first offline one (its session queues QoS 1/2).
 *
 * docs/mqtt5/shared.md has the decisions and what is not done.
 */
#ifndef KG_SHARED_H
#define KG_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct client;
struct msg;
struct session;
struct shared_reg;
struct worker;

/* True when filter starts with "$share/" (a shared subscription, valid or
 * not). Any thread. */
bool shared_is(const char *filter, size_t len);

/* For a filter with shared_is(): 0 when "$share/NAME/FILTER" has a NAME of
 * at least one character without '+' or '#' and a non-empty FILTER
 * [MQTT-4.8.2-1], [MQTT-4.8.2-2]; -1 otherwise. The whole string is assumed
 * to be a valid topic filter (the decoder checked it), so FILTER is valid
 * too. Sets *name / *name_len and *f / *flen on success (NULL ok). Any
 * thread. */
int shared_parse(const char *filter, size_t len, const char **name, size_t *name_len,
		 const char **f, size_t *flen);

/* True for a shared_is() filter that shared_parse() refuses: a 3.1.1
 * client gets SUBACK 0x80 for it (at level 5 the decoder already closed
 * the connection with 0x82, as for No Local on it [MQTT-3.8.3-4]). */
bool shared_invalid(const char *filter, size_t len);

/* auth_may_subscribe() (auth.h) for filter, or for the FILTER part of a
 * shared subscription: the ACL's patterns name topics, not share groups.
 * The owning worker of c. */
bool shared_may_subscribe(struct client *c, const char *filter, size_t len);

/* Returns a new empty registry, or NULL (ENOMEM). Main thread. */
struct shared_reg *shared_new(void);
/* Frees the registry; every member must be gone (sessions discarded). NULL ok. */
void shared_free(struct shared_reg *r);

/*
 * Adds session s to the group of filter ("$share/NAME/FILTER", checked
 * with shared_parse() by the caller), or updates its membership, and
 * records filter in s->subs. data is laid out as the SUBSCRIBE options
 * byte: the granted QoS in bits 0-1, Retain As Published in bit 3 (the
 * rest is kept with the membership, unread). Returns 1 (a new
 * membership), 0 (an existing one, now with data), or -1 (ENOMEM or an
 * invalid filter: nothing changed). The owning worker of s.
 */
int shared_subscribe(struct broker *br, struct session *s, const char *filter, uint16_t len,
		     uint32_t data);
/* Removes s's membership of filter's group, if it has one (a group left
 * without members goes). Returns whether it had one. The owning worker
 * of s. */
bool shared_unsubscribe(struct broker *br, struct session *s, const char *filter,
			uint16_t len);
/* Removes every membership of s (its session ends; the caller releases
 * s->subs and its queue afterwards). The QoS 1/2 messages its queue holds
 * through shared subscriptions whose group has another member are taken
 * out and kept in the registry (at most limits.max_queued_total_messages
 * together; more are dropped and counted as that limit's hits) until the
 * next shared_publish() hands them to other members. s offline, or owned
 * by the caller. Takes s->mu, then subs_lock; may be called with dir_lock
 * and without a worker. */
void shared_session_end(struct broker *br, struct session *s);
/* Messages kept by shared_session_end() not yet handed on. Any thread
 * (a relaxed load). */
size_t shared_orphans(const struct shared_reg *r);

/*
 * Delivers m, published on worker w, to one member of every group whose
 * filter matches m's topic (QoS min(m->qos, granted); RETAIN as published
 * only with Retain As Published, else 0); first
 * hands on what ended sessions left (shared_session_end()). Costs two
 * relaxed loads when neither exists. Worker w only.
 */
/* Returns how many members it went to. */
size_t shared_publish(struct worker *w, struct msg *m);

/* shared_publish() to session s alone: m goes to s through every group
 * that matches m's topic and has s as a member, whoever the round robin
 * would pick (another instance picked s). Returns how many groups. Worker w
 * only. */
size_t shared_publish_to(struct worker *w, struct msg *m, const struct session *s);

/*
 * s's client is going away (the owning worker, before s is parked or
 * discarded): hands the QoS 1 messages s received through its shared
 * subscriptions and has not acknowledged, and the QoS 1/2 ones still in
 * its queue, to other members of the same groups. QoS 2 messages already
 * sent stay with s [MQTT-4.8.2-4], [MQTT-4.8.2-5]. A group with no other
 * member keeps them in s.
 */
void shared_park(struct worker *w, struct session *s);

/* ---- the choice, alone (unit-tested) -------------------------------------- */

enum shared_state {
	SHARED_SKIP = 0,     /* excluded (leaving, discarded) */
	SHARED_OFFLINE,      /* no client attached */
	SHARED_BUSY,         /* online, window full or messages queued */
	SHARED_READY,        /* online with room */
};

/* Index of the member to send to among n states, scanning from start
 * (mod n): the first READY, else the first BUSY, else the first OFFLINE;
 * -1 when all are SKIP or n is 0. Pure. */
int shared_select(const uint8_t *state, uint32_t n, uint32_t start);

#endif
