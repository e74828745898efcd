/*
 * sub_trie.h - a trie of MQTT topic filters, one node per filter level.
 *
 * Each node holds entries (owner, data); an owner is any pointer the caller
 * chooses (a session, a route) and is never dereferenced or freed here.
 * Used for subscriptions, the routing table and, keyed by topic names, the
 * retained store: nothing in it is specific to one of them.
 *
 * Children are found in O(1) expected time whatever their number: one
 * inline in the node, up to 8 in a small array, more in an open-addressing
 * hash table keyed by the level string with a per-trie random seed (so
 * clients cannot precompute colliding levels). Each level string is stored
 * once, inside its node's allocation; a level costs about 32 bytes of heap
 * when empty, plus its length (sub_trie_int.h has the layout).
 *
 * Not thread safe: the caller locks (readers may share a read lock; match
 * and the other const functions do not modify the trie). Pure: no logging.
 * Callbacks must not modify the trie they are called from.
 *
 * Filters and topics are assumed valid (mqtt_topic_filter_valid(),
 * mqtt_topic_name_valid()); their length and level count are the caller's
 * to cap (topic_check_limits()). Walks recurse only where the trie
 * branches: a chain of levels, however long, costs no stack, and deep
 * recursion needs one stored filter per branching level.
 */
#ifndef KG_SUB_TRIE_H
#define KG_SUB_TRIE_H

#include <stddef.h>
#include <stdint.h>

struct sub_trie;

/* Returns a new empty trie, or NULL on allocation failure. */
struct sub_trie *sub_trie_new(void);
/* Frees the trie and its nodes; owners are not touched. NULL ok. */
void sub_trie_free(struct sub_trie *t);

/*
 * Adds the entry (owner, data) under filter. Returns 1 when added, 0 when
 * the (filter, owner) entry existed and only its data was replaced, -1 on
 * allocation failure or a level longer than 65535 bytes (the trie is then
 * unchanged).
 */
int sub_trie_add(struct sub_trie *t, const char *filter, size_t len, void *owner,
		 uint32_t data);

/* Removes the (filter, owner) entry and frees the nodes left empty.
 * Returns 1 when removed, 0 when there was no such entry. Never fails. */
int sub_trie_remove(struct sub_trie *t, const char *filter, size_t len, void *owner);

/*
 * Calls cb(owner, data, ud) for every entry whose filter matches the topic
 * name (topic_matches() rules, including the '$' rule). An owner entered
 * under two overlapping filters is reported twice: deduplication is the
 * caller's job. Order is unspecified. Returns the number of calls.
 * Allocates nothing; recursion happens only where a '+' child branches off.
 */
size_t sub_trie_match(const struct sub_trie *t, const char *topic, size_t len,
		      void (*cb)(void *owner, uint32_t data, void *ud), void *ud);

/*
 * The reverse walk, for tries keyed by topic names (the retained store):
 * calls cb for every entry whose key, read as a topic name, matches filter.
 * The walk follows the filter, so "a/b/#" visits only the subtree of "a/b".
 * Entries under keys containing '+' or '#' levels are never reported.
 * Returns the number of calls. Allocates nothing.
 */
size_t sub_trie_match_filter(const struct sub_trie *t, const char *filter, size_t len,
			     void (*cb)(void *owner, uint32_t data, void *ud), void *ud);

/* Calls cb for every entry in the trie, in unspecified order. Returns the
 * number of calls. */
size_t sub_trie_foreach(const struct sub_trie *t,
			void (*cb)(void *owner, uint32_t data, void *ud), void *ud);

/* Number of entries. O(1). */
size_t sub_trie_count(const struct sub_trie *t);
/* Number of nodes below the root (0 for an empty trie). O(1). For memory
 * metrics and for tests that check pruning. */
size_t sub_trie_node_count(const struct sub_trie *t);
/* Heap bytes the trie holds (nodes, children tables, side records, entry
 * arrays, the trie itself) as requested from malloc, without the
 * allocator's own overhead. O(1). Back to its value for a new trie once
 * every entry is removed. For a memory gauge. */
size_t sub_trie_bytes(const struct sub_trie *t);

#endif
