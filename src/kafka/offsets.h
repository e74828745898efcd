/*
 * offsets.h - which Kafka offsets may be committed: per partition, a window
 * of records in flight, completed in any order, committed only up to the
 * highest contiguous completed one.
 *
 * A partition is tracked from offsets_assign() to offsets_revoke(). Each
 * assignment gets a new generation (unique within one struct offsets), and
 * every call that names a record carries the struct offsets_ref of the
 * assignment it was added under, so a completion that arrives after its
 * partition was revoked (or revoked and assigned again) is ignored rather
 * than applied to the wrong window.
 *
 * A record is added owing one completion (the caller's hold, as in msg.h);
 * offsets_owe() adds more; it is complete when every owed completion came,
 * or when offsets_expire() declares it complete. Records are added in
 * increasing offset order per partition; gaps between offsets (compaction,
 * transaction markers) are fine: "contiguous" means in the order consumed.
 *
 * The commit position of a partition is the offset of its oldest incomplete
 * record, or the last added offset + 1 when none is incomplete: Kafka's
 * "next offset to read", ready for rd_kafka_commit().
 *
 * Pure: no I/O, no logging, no librdkafka. Not thread safe: a struct offsets
 * belongs to one thread (the consumer's); other threads post completions to
 * it through their own channel.
 */
#ifndef KG_OFFSETS_H
#define KG_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

struct offsets;

/* One partition assignment. Plain value: copy it freely. */
struct offsets_ref {
	uint32_t slot;
	uint32_t gen;  /* never 0 for a live assignment */
};

/* Called for each partition whose commit position moved (offsets_commit_due)
 * or each record declared complete by a timeout (offsets_expire; then
 * `offset` is the record's offset). topic is borrowed for the call. */
typedef void (*offsets_fn)(void *ud, const char *topic, int32_t partition, int64_t offset);

/* Returns a new, empty tracker or NULL (ENOMEM). Free with offsets_free(). */
struct offsets *offsets_new(void);
/* NULL ok. */
void offsets_free(struct offsets *o);

/* Starts tracking (topic, partition) afresh under a new generation, dropping
 * any window it had. Returns 0 and sets *ref, or -1 (ENOMEM). */
int offsets_assign(struct offsets *o, const char *topic, int32_t partition,
		   struct offsets_ref *ref);
/* Sets *ref to the current assignment of (topic, partition). Returns 0, or
 * -1 when it is not tracked. */
int offsets_find(struct offsets *o, const char *topic, int32_t partition,
		 struct offsets_ref *ref);

/* Adds a record owing one completion, added at now_ms (for timeouts).
 * Returns 0; or -1 when ref is stale, offset is not above the last added
 * one, or memory ran out (nothing added in each case). */
int offsets_add(struct offsets *o, struct offsets_ref ref, int64_t offset, int64_t now_ms);
/* The record owes n more completions. Returns 0, or -1 when the record is
 * unknown, already complete, or ref is stale. */
int offsets_owe(struct offsets *o, struct offsets_ref ref, int64_t offset, unsigned n);
/* One owed completion arrived. Returns 1 when the record is now complete, 0
 * when it still owes some, -1 when ignored (stale ref, unknown offset,
 * record already complete, e.g. expired). */
int offsets_complete(struct offsets *o, struct offsets_ref ref, int64_t offset);

/* Declares complete every record added at or before now_ms - timeout_ms
 * that is not, calling fn for each (fn may be NULL). Returns how many. */
size_t offsets_expire(struct offsets *o, int64_t now_ms, int64_t timeout_ms,
		      offsets_fn fn, void *ud);

/* Calls fn(topic, partition, position) for every partition whose commit
 * position moved since it was last reported, and records it as reported.
 * The offset of an assignment's first record counts as reported: the group
 * already stood there. Returns how many. */
size_t offsets_commit_due(struct offsets *o, offsets_fn fn, void *ud);
/* A commit of (topic, partition) failed: the next offsets_commit_due()
 * reports its position again. No-op when it is not tracked. */
void offsets_commit_failed(struct offsets *o, const char *topic, int32_t partition);

/* Stops tracking (topic, partition). Returns 1 and sets *position when its
 * position moved since last reported (commit it now), 0 when not, -1 when
 * it was not tracked. Later calls with its ref are ignored. */
int offsets_revoke(struct offsets *o, const char *topic, int32_t partition, int64_t *position);

/* Records added and not yet behind the commit position, all partitions. */
size_t offsets_in_flight(const struct offsets *o);

#endif
