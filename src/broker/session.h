/*
 * session.h - MQTT session state, which outlives a connection when the
 * client asked for clean session 0.
 *
 * Ownership and threads:
 *  - A session is reference counted (the directory, the subscription trie
 *    entries collectively, the attached client, and every inbox item that
 *    names it each hold one). session_unref() frees on the last.
 *  - `owner` is the index of the worker whose client is attached, or -1
 *    while offline. Only the owner worker reads or writes client, out,
 *    queue, qos2_in and subs while it owns the session, without locks.
 *    While offline, `queue` may be appended to by any worker holding `mu`
 *    (after re-checking owner == -1 under it). Owner changes happen under mu.
 *  - Lock order: broker dir_lock, then session mu, then subs_lock.
 */
#ifndef KG_SESSION_H
#define KG_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "broker/inflight.h"
#include "broker/session_subs.h"

struct client;
struct msg;

struct session {
	atomic_int refs;
	atomic_int owner;
	atomic_bool discarded;     /* removed from directory and trie: drop deliveries */
	pthread_spinlock_t mu;      /* short sections only: owner changes, offline enqueue */
	struct client *client;     /* attached client; owner thread only */
	int last_owner;            /* worker that parked it last, -1 never; mu */
	bool settling;             /* parked, and last_owner's inbox may still hold
	                              deliveries for it: new ones go there too, and
	                              nobody attaches until INBOX_SETTLE clears it; mu */
	uint32_t late;             /* deliveries routed to last_owner while settling,
	                              behind the pending INBOX_SETTLE; mu */
	uint64_t serial;           /* unique for the process, never reused (unlike
	                              the address): a message's origin, No Local */
	char *id;
	uint16_t id_len;
	bool clean;
	uint8_t level;
	uint32_t expiry_s;         /* Session Expiry Interval once parked (MQTT 5;
				      3.1.1 clean 0: limits.session_expiry) */
	bool parked_listed;        /* on the broker's parked list (below); dir_lock */
	struct session_subs subs;  /* its filters (session_subs.h) */
	struct inflight out;       /* QoS 1/2 sent to the client, awaiting acks */
	struct mqueue queue;       /* waiting for the window, or for reconnect */
	struct pidset qos2_in;     /* QoS 2 received, PUBREL not yet */
	uint64_t queue_dropped;
	atomic_uint limits_logged; /* bit per enum limit_kind logged since attach (limits.h) */
	struct session *dir_next;  /* directory hash chain; dir_lock */
	/* On the broker's list of parked persistent sessions, oldest first,
	 * for session_expiry (takeover.c); dir_lock. */
	TAILQ_ENTRY(session) park_link;
	int64_t parked_ms;         /* monotonic, when it was parked */
	/* A parked MQTT 5 session has its own deadline, and may hold a will
	 * waiting for its Will Delay Interval: it sits on the broker's timer
	 * heap (struct session_heap below) keyed by the nearer of the two.
	 * All dir_lock (takeover.c). */
	uint32_t heap_idx;         /* 1-based slot on the heap; 0 = not on it */
	int64_t due_ms;            /* heap key: the nearer of will_due_ms and expire_ms */
	int64_t expire_ms;         /* monotonic: the session ends; 0 = never */
	int64_t will_due_ms;       /* monotonic: the delayed will is published */
	struct msg *will;          /* delayed will (owned), or NULL */
	uint32_t will_expiry;      /* its Message Expiry Interval, s (will_expires) */
	bool will_expires;
};

/* Sessions ordered by due_ms (a binary min-heap): the sweep looks at the
 * top only, so a tick costs O(expired * log n), never a scan. Holds no
 * references (a session on it is in the directory). Not thread safe:
 * broker dir_lock. */
struct session_heap {
	struct session **v;
	uint32_t n, cap;
};

/* Adds s (s->due_ms set, s not on h). Returns 0 or -1 (ENOMEM). */
int session_heap_push(struct session_heap *h, struct session *s);
/* Removes s if it is on h. */
void session_heap_del(struct session_heap *h, struct session *s);
/* s->due_ms changed: restores the order. */
void session_heap_fix(struct session_heap *h, struct session *s);
static inline struct session *session_heap_top(const struct session_heap *h)
{
	return h->n ? h->v[0] : NULL;
}
void session_heap_release(struct session_heap *h);

/* Returns a new offline session with one reference, or NULL. */
struct session *session_new(const char *id, uint16_t id_len, bool clean);
struct session *session_ref(struct session *s);
void session_unref(struct session *s);

/* A hash table of sessions by client id. Not thread safe: broker dir_lock;
 * n may be read with a relaxed load from any thread (a gauge). */
struct session_dir {
	struct session **b;
	size_t nb;
	atomic_size_t n;
};

int session_dir_init(struct session_dir *d);
/* Drops the directory's references. */
void session_dir_release(struct session_dir *d);
struct session *session_dir_find(const struct session_dir *d, const char *id, uint16_t len);
/* Inserts s (takes a reference). Returns 0 or -1 ENOMEM. */
int session_dir_add(struct session_dir *d, struct session *s);
/* Removes s and drops the directory's reference. */
void session_dir_del(struct session_dir *d, struct session *s);

#endif
