/*
 * state_rec.h - the session record of <prefix>.sessions (docs/scaling.md,
 * "Sessions"): one JSON object per record, a full snapshot of the session
 * so that compaction may keep only the last one:
 *
 *   {"v":1,"t":"claim"|"subs"|"park"|"end"|"adopt"|"will",
 *    "owner":"gw-1","boot":<owner's boot, wall ms>,"conn":"<conn id>",
 *    "epoch":E,"resume":true,"persistent":true,
 *    "state":"online"|"parked"|"ended",
 *    "level":4,"expiry":3600,"parked_at":<wall ms or 0>,
 *    "subs":[{"f":"a/+","o":1}],
 *    "will":{"topic":"..","payload":"<base64>","qos":1,"retain":false,
 *            "props":"<base64>","delay":10} | null,
 *    "q":{"i":"gw-1","o":1234},   (optional: the session's durable queue)
 *    "at":<wall ms>}
 *
 * Pure (jansson and the route layer's base64); data read from Kafka is
 * untrusted: decode checks every field and never trusts a length.
 * Thread: any (no shared state).
 */
#ifndef KG_STATE_REC_H
#define KG_STATE_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

#define STATE_REC_OWNER_MAX 200      /* as STATE_ID_MAX */
#define STATE_REC_CONN_MAX 64
#define STATE_REC_SUBS_MAX 65535     /* a session's subscriptions in one record */

enum state_rec_type {
	SREC_CLAIM = 0,   /* a CONNECT asks to own the id; epoch = its own offset */
	SREC_SUBS,        /* the owner's snapshot after a (UN)SUBSCRIBE or a claim */
	SREC_PARK,        /* the connection closed; the session lives expiry s */
	SREC_END,         /* the session is gone */
	SREC_ADOPT,       /* an instance took an offline session over (restart, dead
	                     owner); epoch = its own offset */
	SREC_WILL,        /* the will is being published: it must not be again */
};

enum state_rec_state {
	SREC_ONLINE = 0,
	SREC_PARKED,
	SREC_ENDED,
};

struct state_rec_will {
	char *topic;          /* NUL-terminated, topic_len bytes */
	uint16_t topic_len;
	uint8_t *payload;     /* NULL when payload_len is 0 */
	uint32_t payload_len;
	uint8_t qos;
	bool retain;
	uint8_t *props;       /* MQTT 5 properties as msg->props; NULL when none */
	uint32_t props_len;
	uint32_t delay_s;     /* Will Delay Interval */
};

struct state_rec {
	enum state_rec_type t;
	char owner[STATE_REC_OWNER_MAX + 1];
	int64_t boot;
	char conn[STATE_REC_CONN_MAX + 1]; /* claims only ("" otherwise) */
	int64_t epoch;        /* -1: "my offset is my epoch" (claims, adopts) */
	bool resume;          /* claims: Clean Start 0 */
	bool persistent;      /* the session outlives its connection */
	enum state_rec_state state;
	uint8_t level;        /* 3, 4 or 5 */
	uint32_t expiry_s;
	int64_t parked_at;    /* wall ms, 0 = online/unknown */
	struct broker_sub *subs; /* filters owned (NUL-terminated copies) */
	size_t nsubs;
	bool has_will;
	struct state_rec_will will;
	/* The session's queue in Kafka (docs/scaling/queue.md): the records
	 * addressed to it in <prefix>.queue.<q_inst> from offset q_off on are
	 * what it held when it was last written. q_inst "" = none. */
	char q_inst[STATE_REC_OWNER_MAX + 1];
	int64_t q_off;
	int64_t at;           /* wall ms it was written */
};

/* "claim", ... or "?". */
const char *state_rec_type_name(enum state_rec_type t);

/* Encodes r as compact JSON: *out is new (free()), *len its length without
 * the NUL. Returns 0, or -1 (a filter or topic that is not UTF-8, no
 * memory). */
int state_rec_encode(const struct state_rec *r, char **out, size_t *len);

/* Decodes len bytes (not NUL-terminated) into r (zeroed first; release with
 * state_rec_clear() whatever the result). Returns 0, or -1 with a short
 * reason in err (NULL ok) for anything malformed: not JSON, v != 1, an
 * unknown type or state, a field of the wrong type or out of range. */
int state_rec_decode(struct state_rec *r, const void *data, size_t len, char *err,
		     size_t errlen);

/* Copies src into dst (dst's old content is not freed). Returns 0 or -1
 * (ENOMEM: dst cleared). */
int state_rec_copy(struct state_rec *dst, const struct state_rec *src);

/* Replaces r's subscriptions with a copy of subs[0..n). Returns 0 or -1
 * (ENOMEM: r keeps none). */
int state_rec_set_subs(struct state_rec *r, const struct broker_sub *subs, size_t n);

/* Replaces r's will (NULL: none). Returns 0 or -1 (ENOMEM: no will). */
int state_rec_set_will(struct state_rec *r, const struct state_rec_will *w);

/* Frees what r owns and zeroes it. NULL ok. */
void state_rec_clear(struct state_rec *r);
void state_rec_will_clear(struct state_rec_will *w);

#endif
