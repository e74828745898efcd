/*
 * worker.h - one network thread: an epoll loop, its listener sockets
 * (SO_REUSEPORT), the connections it accepted, and its inbox.
 *
 * Thread: the worker's own, except worker_post() (any thread).
 *
 * A connection and, while connected, its session belong to exactly one
 * worker; only that thread touches them. Other threads reach a worker only
 * through worker_post().
 */
#ifndef KG_WORKER_H
#define KG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "broker/limits.h"
#include "core/buf.h"
#include "core/inbox.h"
#include "core/lathist.h"
#include "core/loop.h"
#include "core/reclaim.h"

struct broker;
struct broker_sub;
struct client;
struct hooks_abandoned;
struct session;

/* Lists of connections, linked through fields of struct client (client.h). */
LIST_HEAD(client_list, client);
SLIST_HEAD(client_slist, client);
STAILQ_HEAD(client_queue, client);

/* Items of a worker's inbox (core/inbox.h carries them by value). */
enum worker_item {
	INBOX_DELIVER = 1,     /* p1 = struct session * (ref), p2 = struct msg * (ref), a = qos,
				* b = retain, c = subscription ids (deliver.h) */
	INBOX_TAKEOVER,        /* p1 = struct session * (ref), a = requesting worker, u = conn id,
	                          b = 1: the new connection resumes it (Clean Start 0) */
	INBOX_FENCE,           /* a = requesting worker, u = conn id: answer once reached */
	INBOX_SETTLE,          /* p1 = struct session * (ref): posted to itself by the worker that parked it */
	INBOX_TAKEOVER_DONE,   /* u = conn id of the waiting client */
	INBOX_INJECT,          /* p1 = struct msg * (ref): publish from outside MQTT (downlink);
	                          u = 0, or upstream index + 1: for that upstream only */
	INBOX_ACK,             /* u = conn id, c = ack sequence, a = ok, v = lathist_now() at
				* the post, p1 = struct reclaim_node * or NULL (freed here):
				* the sink's answer */
	INBOX_CALL,            /* p1 = void (*)(void *arg, struct worker *), p2 = arg */
	INBOX_AUTH,            /* u = conn id, a = enum passwd_result: a password checked */
	/* The state hooks (state_hooks.h): */
	INBOX_CLAIMED,         /* u = conn id, a = enum broker_claim_result, p1 = the session
	                          image copied (owned; NULL = none) */
	INBOX_KICK,            /* p1 = client id copied (owned), b = its length, a = 1:
	                          forwarded by another worker (state_hooks.c) */
	INBOX_INJECT_LOCAL,    /* p1 = struct msg * (ref), p2 = client id copied (owned) or
	                          NULL, b = its length: broker_inject_local() */
	INBOX_WILL,            /* p1 = struct msg * (ref), p2 = client id copied (owned) or
	                          NULL, b = its length: broker_publish_will() */
	INBOX_SUBS_WRITTEN,    /* u = conn id, c = token, a = ok: broker_state_subs_written() */
	INBOX_STOP,
};

/* Counters written by the owning worker only (relaxed atomics so that a
 * scraper thread may read them), summed at scrape time. */
struct worker_stats {
	atomic_uint_fast64_t conn_accepted;
	atomic_uint_fast64_t conn_rejected;
	atomic_uint_fast64_t pkts_in[16];
	atomic_uint_fast64_t pkts_out[16];
	atomic_uint_fast64_t bytes_in;
	atomic_uint_fast64_t bytes_out;
	atomic_uint_fast64_t msgs_in[3];
	atomic_uint_fast64_t qos0_dropped;
	atomic_uint_fast64_t queue_dropped;
	atomic_uint_fast64_t msgs_expired;    /* not sent: MQTT 5 Message Expiry passed (send.c) */
	atomic_uint_fast64_t msgs_too_large;  /* not sent: over the client's Maximum Packet Size */
	atomic_uint_fast64_t limit_hits[LIMIT_N];  /* by enum limit_kind (limits.h) */
	atomic_uint_fast64_t malformed;
	atomic_uint_fast64_t sink_blocked;   /* times a connection waited for the sink */
	atomic_uint_fast64_t sink_failed;    /* connections closed after a failed ack */
	atomic_uint_fast64_t packet_timeouts;  /* closed: a packet took longer than packet_timeout */
	atomic_uint_fast64_t partial_refused;  /* closed: max_partial_bytes reached */
	/* The path back of an acknowledgement, per sink answer: posted ->
	 * drained by this worker (hand-off and wake-up), and drained -> the
	 * end of the flush that follows (the PUBACK/PUBREC write). */
	struct lathist ack_handoff;
	struct lathist ack_write;
};

#define STAT_ADD(w, field, v) \
	atomic_store_explicit(&(w)->st.field, \
		atomic_load_explicit(&(w)->st.field, memory_order_relaxed) + (v), \
		memory_order_relaxed)
#define STAT_INC(w, field) STAT_ADD(w, field, 1)

struct listener_io {
	struct loop_io io;
	struct worker *w;
	int idx;                     /* listener index (broker listener.h) */
};

struct match {
	struct session *s;
	uint8_t qos;
	bool rap;          /* a matching subscription has Retain As Published */
	uint32_t subid;    /* Subscription Identifiers (deliver.h DELIVER_SUBIDS_MANY) */
};

struct worker {
	int idx;
	struct broker *br;
	pthread_t thread;
	struct loop *loop;
	struct inbox inbox;
	struct listener_io *lis;
	int n_lis;
	struct client_list clients;  /* every connection of this worker */
	int n_clients;
	struct client_slist dirty;   /* output waiting for the before-sleep flush */
	struct client_slist closing; /* to be freed at the safe point */
	struct client_slist resume;  /* unpaused with bytes left in rbuf */
	struct client_queue blocked; /* waiting for room in the sink, oldest first */
	struct client_slist backlog; /* publishers paused until peers' inboxes drain */
	uint8_t *rbuf;               /* shared read buffer */
	size_t rbuf_cap;
	struct match *matches;       /* scratch for deliver_publish */
	size_t n_matches, cap_matches;
	struct client **slots;       /* conn_id -> client lookup for async completions */
	uint32_t n_slots, cap_slots;
	uint32_t *free_slots;
	uint32_t n_free_slots;
	uint32_t conn_seq;
	struct reclaim_stack reclaim; /* any thread pushes; owner drains */
	int64_t now_ms;              /* monotonic, refreshed each tick/read */
	atomic_int_fast64_t heartbeat_ms; /* last tick; read by the watchdog */
	int spare_fd;                /* given up to shed a connection when out of fds */
	int64_t accept_paused_until; /* out of fds with no spare: listeners off until then */
	int fd_ceiling;              /* accepted fds at or above it are shed (RLIMIT_NOFILE
	                                minus a reserve) */
	bool draining;               /* shutting down: read nothing more */
	bool backlogged;             /* a peer's inbox is over INBOX_SOFT_CAP */
	uint64_t drained_ns;         /* when this iteration's inbox drain met its first ACK */
	uint32_t acks_unflushed;     /* ACKs handled since the last flush */
	/* State hooks (state_hooks.c): the subscription list handed to
	 * subs_changed, reused; claims whose connection closed before the
	 * answer came (one each, until answered). */
	struct broker_sub *st_subs;
	size_t st_subs_cap;
	struct hooks_abandoned *st_gone;
	size_t n_st_gone, cap_st_gone;
	struct worker_stats st;
};

/* Creates the loop, the inbox and one listener socket per configured
 * listener. Returns 0 or -1 (logged). Main thread. */
int worker_init(struct worker *w, struct broker *br, int idx,
		const char **addrs, const int *ports, int n_lis);
void worker_release(struct worker *w);
int worker_start(struct worker *w);
void worker_join(struct worker *w);

/* Any thread: queues an item for worker w. Returns 0 or -1. */
int worker_post(struct worker *w, const struct inbox_item *it);

/* Owner thread: registers c and gives it a conn_id that names the worker,
 * a slot and a generation. Returns 0 or -1 (ENOMEM). */
int worker_slot_add(struct worker *w, struct client *c);
void worker_slot_del(struct worker *w, struct client *c);
/* Owner thread: the live client with this conn_id, or NULL. */
struct client *worker_client(struct worker *w, uint64_t conn_id);
/* Worker index encoded in a conn_id. */
static inline int conn_worker(uint64_t conn_id) { return (int)(conn_id >> 56); }

/* Owner thread: queues c to parse its buffered input at the safe point. */
void worker_mark_resume(struct worker *w, struct client *c);
/* Owner thread: c's publish waits for room in the sink. */
void worker_mark_blocked(struct worker *w, struct client *c);
/* Owner thread: c publishes into an overfull peer inbox; paused until it drains. */
void worker_mark_backlog(struct worker *w, struct client *c);

/* Owner thread: queues c for the before-sleep flush of its output. */
void worker_mark_dirty(struct worker *w, struct client *c);

#endif
