/*
 * topic_alias.h - MQTT 5 inbound Topic Aliases of one connection: the
 * alias -> topic name table a client sets with a PUBLISH that carries both
 * a topic and a Topic Alias, and uses with an empty topic and the alias
 * (5.0 section 3.3.2.3.4). Aliases last for the network connection only
 * [MQTT-3.3.2-7]: the table hangs off struct client, not the session.
 *
 * Memory: nothing until the first alias is set; then a slot array grown to
 * the highest alias used (never past alias_max) and one buffer per alias,
 * reused when the alias is set again to a topic that fits. Using an alias
 * allocates nothing, so a publisher on aliases costs no malloc per message.
 *
 * Thread: the owning worker's only.
 */
#ifndef KG_TOPIC_ALIAS_H
#define KG_TOPIC_ALIAS_H

#include <stdint.h>

struct topic_aliases;

/* Maps alias (1..alias_max) to topic[0..len) in *t, creating the table on
 * first use. Returns 0 or -1 on ENOMEM (the table is unchanged). */
int topic_alias_set(struct topic_aliases **t, uint16_t alias_max, uint16_t alias,
		    const char *topic, uint16_t len);
/* The topic alias stands for, borrowed until the next topic_alias_set() or
 * topic_alias_free(); NULL when it was never set (t may be NULL). */
const char *topic_alias_get(const struct topic_aliases *t, uint16_t alias, uint16_t *len);
/* NULL ok. */
void topic_alias_free(struct topic_aliases *t);

#endif
