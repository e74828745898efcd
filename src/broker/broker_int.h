/*
 * broker_int.h - the broker's shared state and the functions that take its
 * locks. Inside src/broker only (and the admin layer, read-only, never taking
 * a lock itself): everything else uses broker.h.
 *
 * Shared, read-mostly state and its guards:
 *   subs      subscription trie (owner = struct session *, data = the options,
 *             session_subs.h SUBOPT_*: granted QoS, No Local, RAP, sub id)
 *             pthread_rwlock subs_lock: publishers read concurrently
 *   retained  retained store, retain_lock
 *   dir       session directory by client id, dir_lock (connect/disconnect only)
 *   lim       limits, atomics so a reload can change them in place
 * Lock order: dir_lock, session mu, subs_lock, retain_lock. Every lock is
 * taken in broker.c, takeover.c, deliver.c, shared.c or state_hooks.c (subs_lock over the
 * shared subscription registry, br->shared), never in a handler.
 */
#ifndef KG_BROKER_INT_H
#define KG_BROKER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "broker/broker.h"
#include "broker/limits.h"
#include "broker/session.h"

struct auth;
struct msg;
struct shared_reg;
struct upstream;
struct worker;

struct broker_limits {
	/* limits_apply() (limits.c): */
	atomic_uint max_connect_size;      /* the smaller of it and max_packet_size */
	atomic_uint max_topic_length;
	atomic_uint max_topic_levels;
	atomic_uint max_client_id_length;
	atomic_uint max_subscriptions;
	atomic_uint max_qos2_pending;
	atomic_uint max_retained_messages;
	atomic_uint max_retained_bytes;
	atomic_uint max_queued_bytes;
	atomic_uint max_queued_total_messages;
	atomic_uint max_queued_total_bytes;
	atomic_uint session_expiry;        /* seconds; 0 = never */
	atomic_uint max_keepalive;         /* 0 = any */
	atomic_uint max_session_expiry;    /* MQTT 5 Session Expiry cap, s */
	atomic_uint topic_alias_maximum;   /* MQTT 5, announced in CONNACK */

	atomic_uint max_connections;
	atomic_uint max_packet_size;
	atomic_uint max_inflight;
	atomic_uint max_queued;
	atomic_uint max_output_bytes;
	atomic_uint connect_timeout_ms;
	atomic_uint max_connections_per_address;
	atomic_uint max_connect_rate;
	atomic_uint packet_timeout_ms;
	atomic_uint max_partial_bytes;

	/* mqtt5 = { ... } (broker_set_limits()): */
	atomic_uint mqtt5_reject_when_busy;
	atomic_uint mqtt5_no_match_reason;
};

#define LIM(br, f) atomic_load_explicit(&(br)->lim.f, memory_order_relaxed)

struct broker {
	struct broker_limits lim;
	int n_workers;
	struct worker *workers;
	struct broker_sink sink;     /* publish == NULL: acknowledge locally */
	pthread_rwlock_t subs_lock;
	struct sub_trie *subs;
	struct shared_reg *shared;   /* shared subscriptions (shared.h); subs_lock */
	pthread_mutex_t retain_lock;
	struct retain_store *retained;
	pthread_mutex_t dir_lock;
	struct session_dir dir;
	TAILQ_HEAD(session_park_list, session) parked; /* persistent sessions offline, oldest park first; dir_lock */
	struct session_heap timers;   /* MQTT 5 parked sessions by deadline (takeover.c); dir_lock */
	atomic_int_fast64_t sessions_online;   /* attached to a client */
	atomic_uint_fast64_t sessions_expired; /* discarded by session_expiry */
	/* Limit hits counted under retain_lock, with no worker at hand. */
	atomic_uint_fast64_t limit_hits[LIMIT_N];
	atomic_int n_connections;
	struct broker_listener *lis; /* one per configured listener (listener.h) */
	struct auth *auth;           /* passwords and ACL in force (auth.h) */
	struct upstream *ups;        /* upstream brokers (upstream.h), config order */
	int n_ups;
	int n_lis;
	atomic_int_fast64_t partial_bytes; /* held by partially received packets */
	atomic_bool failed;          /* a worker loop ended on an error */
	atomic_uint_fast64_t reloads;         /* SIGHUP reloads applied */
	atomic_uint_fast64_t reload_failures; /* rejected */
	/* State in Kafka (broker_set_state(), state_hooks.h): NULL for
	 * state.store = "memory", the only check the other paths pay. */
	const struct broker_state_ops *st;
	struct broker_state_ops st_ops;       /* st points here when set */
	atomic_int_fast64_t claims_waiting;    /* connections waiting for a claim's answer */
	atomic_uint_fast64_t claims_refused;   /* CONNACK 3 / 0x88: the state layer said no */
	atomic_uint_fast64_t kicks;            /* sessions another instance took */
	atomic_uint_fast64_t subacks_waited;   /* SUBACK/UNSUBACKs held for Kafka */
	atomic_uint_fast64_t subacks_unconfirmed; /* answered without Kafka's ack */
};

/*
 * Subscriptions of session s (owner worker thread). broker_subscribe adds
 * or replaces filter with options opts (session_subs.h SUBOPT_*: the QoS
 * alone for 3.1.1) in the trie and in the session; returns 1 added, 0
 * replaced (an existing subscription, now with opts), -1 ENOMEM.
 * broker_unsubscribe removes it if present and says whether it was (a
 * filter the session does not hold costs no lock). Caps are the caller's
 * (limits.h).
 */
int broker_subscribe(struct broker *br, struct session *s, const char *filter, uint16_t len,
		     uint32_t opts);
bool broker_unsubscribe(struct broker *br, struct session *s, const char *filter, uint16_t len);

/* Calls fn for every retained message matching filter, outside the lock
 * (the messages are copied out under it first). Expired ones (MQTT 5
 * Message Expiry) are passed too, for fn's send to drop and count, and are
 * then removed from the store. Returns -1 on ENOMEM (some may be missing),
 * else 0. Any worker. */
int broker_retained_foreach(struct broker *br, const char *filter, uint16_t len,
			    void (*fn)(struct msg *m, void *ud), void *ud);
/* Stores or clears (empty payload) the retained message for m's topic,
 * within max_retained_messages, max_retained_bytes and the topic caps: a
 * new topic beyond them is not stored, a replacement that does not fit
 * clears the topic (its old message is stale); counted and logged here.
 * hook: a publish made here (a client's, a will, broker_inject()): once
 * stored or cleared, the state layer's retained hook hears of it (when one
 * is set). Returns 0 (stored or cleared) or -1. */
int broker_retain(struct broker *br, struct msg *m, bool hook);
/* Retained messages and their bytes (topic + payload). Any thread. */
void broker_retained_stats(struct broker *br, size_t *count, size_t *bytes);
/* Entries in the subscription trie and the heap it holds. Any thread. */
void broker_subs_stats(struct broker *br, size_t *count, size_t *bytes);
/* Sessions in the directory, and how many have a client attached. Any thread. */
void broker_session_counts(struct broker *br, int64_t *total, int64_t *online);

/* Removes every subscription of s from the trie, drops its queue and its
 * subscription set, takes it off the parked list and marks it discarded.
 * Caller holds dir_lock and has removed s from the directory; s is offline
 * or its owner is the caller. */
void broker_discard_session(struct broker *br, struct session *s);

#endif
