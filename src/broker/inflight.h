/*
 * inflight.h - per-session QoS state: the outgoing in-flight window, the
 * bounded message queue behind it, and the set of incoming QoS 2 packet ids
 * awaiting PUBREL. Pure data structures; the session's owner thread uses them
 * (see session.h for the locking rule of the queue while offline). The
 * exceptions are mqueue_total() and mqueue_total_bytes(), process-wide
 * counts kept by the mqueue functions themselves.
 */
#ifndef KG_INFLIGHT_H
#define KG_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg;

enum inflight_state {
	INFL_WAIT_PUBACK = 1,  /* QoS 1 PUBLISH sent */
	INFL_WAIT_PUBREC,      /* QoS 2 PUBLISH sent */
	INFL_WAIT_PUBCOMP,     /* PUBREL sent */
};

struct inflight_entry {
	struct msg *m;     /* owns one reference, until PUBCOMP for QoS 2 */
	uint16_t pid;
	uint8_t qos;
	uint8_t state;
	bool retain;       /* RETAIN flag to send */
	bool owes;         /* a msg_track_done() is due when retired */
	bool held;         /* resumed but not resent yet: the client's Receive
			      Maximum is smaller than the window (deliver.c) */
	uint32_t subid;    /* Subscription Identifiers to send (deliver.h) */
};

/* In insertion order, so redelivery keeps the original order. */
struct inflight {
	struct inflight_entry *e;
	uint16_t n, cap;
	uint16_t next_pid;
	uint16_t held;     /* entries with held set */
};

void inflight_init(struct inflight *f);
/* Retires every entry (settling owed tracks) and frees the storage. */
void inflight_release(struct inflight *f);
/* Settles every owed track now (the session went offline: its messages
 * count as queued) without removing the entries. */
void inflight_settle(struct inflight *f);
/* Returns a packet id (1..65535) not in use, or 0 if all are. */
uint16_t inflight_next_pid(struct inflight *f);
/* Appends an entry (takes the message reference; owes says whether a track
 * completion is still due; subid 0, held false). Returns the entry or NULL
 * (ENOMEM). */
struct inflight_entry *inflight_add(struct inflight *f, struct msg *m, uint16_t pid,
				    uint8_t qos, bool retain, bool owes);
/* Returns the entry with this packet id, or NULL. */
struct inflight_entry *inflight_find(struct inflight *f, uint16_t pid);
/* Removes the entry (settles its track, unrefs its message, counts a held
 * one out of f->held). */
void inflight_remove(struct inflight *f, struct inflight_entry *e);

struct mqueue_entry {
	struct msg *m;     /* one reference */
	uint8_t qos;
	bool retain;
	bool owes;         /* a msg_track_done() is due when retired */
	uint32_t subid;    /* Subscription Identifiers to send (deliver.h) */
};

/* A FIFO ring that grows on demand up to the caller's limit. */
struct mqueue {
	struct mqueue_entry *e;
	uint32_t head, n, cap;
	size_t bytes;      /* mqueue_msg_bytes() of the entries */
};

/* What a push may not exceed: this queue's entries and bytes, and the
 * entries and bytes of all queues of the process together (read with a
 * relaxed load: concurrent pushes may overshoot by one message each). */
struct mqueue_caps {
	uint32_t max;
	size_t max_bytes;
	int64_t max_total;
	int64_t max_total_bytes;
};

/* Why mqueue_push_capped() refused. */
enum mqueue_err {
	MQUEUE_NOMEM = -1,
	MQUEUE_FULL = -2,             /* caps->max */
	MQUEUE_FULL_BYTES = -3,       /* caps->max_bytes */
	MQUEUE_FULL_TOTAL = -4,       /* caps->max_total */
	MQUEUE_FULL_TOTAL_BYTES = -5, /* caps->max_total_bytes */
};

void mqueue_init(struct mqueue *q);
/* Retires every entry (settling owed tracks) and frees the storage. */
void mqueue_release(struct mqueue *q);
/* Settles every owed track now, keeping the entries. */
void mqueue_settle(struct mqueue *q);
/* Appends (takes the reference) unless the queue holds `max` entries or
 * cannot grow. Returns 0, or -1 when full (the caller keeps the reference). */
int mqueue_push(struct mqueue *q, struct msg *m, uint8_t qos, bool retain, bool owes,
		uint32_t max);
/* As mqueue_push() within every cap of caps. Returns 0, or an enum
 * mqueue_err saying which cap refused (the caller keeps the reference). */
int mqueue_push_capped(struct mqueue *q, struct msg *m, uint8_t qos, bool retain, bool owes,
		       const struct mqueue_caps *caps);
/* The bytes a queued copy of m counts for: its topic and payload (a message
 * shared by several queues counts in each). */
size_t mqueue_msg_bytes(const struct msg *m);
/* The newest entry (the one the last successful push added), or NULL when
 * empty: for setting fields the push does not take (subid, 0 after push). */
struct mqueue_entry *mqueue_back(struct mqueue *q);
/* Removes the oldest entry into *out (the reference passes to the caller).
 * Returns false when empty. */
bool mqueue_pop(struct mqueue *q, struct mqueue_entry *out);
/* Entries held by all mqueues of the process together (every session's
 * queue, online or offline): pushes minus pops, mqueue_release() popping
 * what it frees. A relaxed atomic read, so any thread may call it; the
 * value may lag concurrent pushes and pops by a few. */
int64_t mqueue_total(void);
/* The same for mqueue_msg_bytes() of those entries. */
int64_t mqueue_total_bytes(void);

/* Incoming QoS 2 packet ids whose PUBREL has not arrived. */
struct pidset {
	uint16_t *ids;
	uint32_t n, cap;
};

void pidset_init(struct pidset *s);
void pidset_release(struct pidset *s);
bool pidset_has(const struct pidset *s, uint16_t pid);
/* Returns 0 or -1 (ENOMEM). Adding a present id is a no-op. */
int pidset_add(struct pidset *s, uint16_t pid);
/* Returns true if it was present. */
bool pidset_del(struct pidset *s, uint16_t pid);

#endif
