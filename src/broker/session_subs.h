/*
 * session_subs.h - the filters one session is subscribed to, with the QoS
 * granted for each: a hash set keyed by filter.
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

struct sub_entry {
	uint32_t hash;
	uint16_t len;
	uint8_t qos;        /* granted */
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
/* Adds filter at qos, or sets the qos of an equal filter. Returns 1 added,
 * 0 replaced, -1 ENOMEM (the set unchanged). */
int session_subs_add(struct session_subs *ss, const char *filter, uint16_t len, uint8_t qos);
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
