/*
 * session_subs.h - the filters one session is subscribed to, with the
 * options granted for each: a hash set keyed by filter.
 *
 * Add, find and remove take O(1) expected time whatever the number of
 * filters (the list it replaces was searched linearly: 100,000 filters from
 * one client took 18 s). Open addressing with linear probing over pointers
 * to entries; the hash is seeded per process so that a client cannot pick
 * filters that pile up in one probe run. The table grows at 3/4 load and
 * shrinks at 1/8, and is freed when the last filter goes: a session that
 * unsubscribes gives its memory back.
 *
 * Not thread safe; the session's rules apply (session.h): its owner thread,
 * or whoever holds the broker's dir_lock for an offline session. Pure: no
 * logging.
 */
#ifndef KG_SESSION_SUBS_H
#define KG_SESSION_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A subscription's options packed in one word, as the subscription trie
 * keeps them for each (filter, session) entry (sub_trie.h data), so that
 * matching a publish reads everything a delivery needs from the trie:
 *   bits 0-1  granted QoS
 *   bit 2     No Local (MQTT 5)
 *   bit 3     Retain As Published (MQTT 5)
 *   bits 4-31 Subscription Identifier, 1..268,435,455 (0 = none; MQTT 5)
 * A 3.1/3.1.1 subscription is its QoS alone, as before MQTT 5. Retain
 * Handling is not kept: it matters only while the SUBSCRIBE is handled.
 */
#define SUBOPT_QOS(o)       ((uint8_t)((o) & 3u))
#define SUBOPT_NO_LOCAL     0x4u
#define SUBOPT_RAP          0x8u
#define SUBOPT_ID_SHIFT     4
#define SUBOPT_ID_MAX       268435455u /* 2^28 - 1: a 4-byte varint */
#define SUBOPT_ID(o)        ((uint32_t)(o) >> SUBOPT_ID_SHIFT)

static inline uint32_t subopt_make(uint8_t qos, bool no_local, bool rap, uint32_t id)
{
	return (uint32_t)(qos & 3u) | (no_local ? SUBOPT_NO_LOCAL : 0) | (rap ? SUBOPT_RAP : 0) |
	       (id & SUBOPT_ID_MAX) << SUBOPT_ID_SHIFT;
}

struct sub_entry {
	uint32_t hash;
	uint16_t len;
	uint8_t qos;        /* granted: SUBOPT_QOS(opts) */
	uint32_t opts;      /* the packed options above */
	char filter[];      /* len bytes and a NUL */
};

struct session_subs {
	struct sub_entry **slot;  /* cap slots, NULL = free */
	uint32_t n, cap;          /* cap: 0 or a power of two */
	size_t bytes;             /* heap held: the table and the entries */
};

void session_subs_init(struct session_subs *ss);
/* Frees every entry and the table; ss is empty (and usable) afterwards. */
void session_subs_release(struct session_subs *ss);

/* The entry for filter (len bytes), or NULL. Borrowed: valid until the set
 * changes. */
struct sub_entry *session_subs_find(const struct session_subs *ss, const char *filter,
				    uint16_t len);
/* Adds filter with options opts (SUBOPT_*; a bare QoS for 3.1.1), or sets
 * the options of an equal filter. Returns 1 added, 0 replaced, -1 ENOMEM
 * (the set unchanged). */
int session_subs_add(struct session_subs *ss, const char *filter, uint16_t len, uint32_t opts);
/* Removes filter. Returns true if it was there. */
bool session_subs_del(struct session_subs *ss, const char *filter, uint16_t len);

/*
 * Iteration in no particular order: start with *pos = 0; returns the next
 * entry, or NULL at the end. The set must not change meanwhile.
 *
 *	uint32_t pos = 0;
 *	for (const struct sub_entry *e; (e = session_subs_next(&s->subs, &pos));)
 */
const struct sub_entry *session_subs_next(const struct session_subs *ss, uint32_t *pos);

#endif
