/*
 * alias_out.h - MQTT 5 Topic Aliases toward one client (the server's MAY,
 * 5.0 section 3.3.2.3.4): which topic each alias stands for on this
 * connection, so that a PUBLISH on a topic the client already knows carries
 * the alias and an empty topic name.
 *
 * At most min(the client's Topic Alias Maximum, ALIAS_OUT_MAX) aliases per
 * connection; when all are taken, the least recently used one is given to
 * the new topic (the PUBLISH then carries the topic and the alias, which
 * remaps it for the client: 5.0 section 3.3.2.3.4 lets a sender change a
 * mapping that way).
 * A mapping exists only once the PUBLISH that set it was written
 * (alias_out_commit()), so a message dropped before that (too large,
 * expired) never leaves the client with an alias it was not told.
 *
 * Thread: the owning worker's only (the connection's state). Pure: no
 * logging.
 */
#ifndef KG_ALIAS_OUT_H
#define KG_ALIAS_OUT_H

#include <stdbool.h>
#include <stdint.h>

/* Topics aliased per connection at most: a bound on the memory a client
 * can make us keep, and on the scan a miss costs. */
#define ALIAS_OUT_MAX 64

struct alias_out;

/* A table of min(cap, ALIAS_OUT_MAX) aliases (cap > 0), or NULL (ENOMEM). */
struct alias_out *alias_out_new(uint16_t cap);
/* NULL ok. */
void alias_out_free(struct alias_out *a);

/*
 * The alias for topic: *known true when the client already has this
 * mapping (send the alias and an empty topic); false when the alias is
 * (re)assigned now (send the topic and the alias, then alias_out_commit()).
 */
/* h is the topic's hash, the same for the same topic in every call (the
 * message's msg_topic_hash()). */
uint16_t alias_out_pick(struct alias_out *a, const char *topic, uint16_t len, uint32_t h,
			bool *known);
/* Records that the PUBLISH mapping alias to topic (hash h) was written. On
 * ENOMEM the alias is left unmapped (the topic is sent in full next time). */
void alias_out_commit(struct alias_out *a, uint16_t alias, const char *topic, uint16_t len,
		      uint32_t h);

#endif
