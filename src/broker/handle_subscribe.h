/* handle_subscribe.h - SUBSCRIBE and UNSUBSCRIBE (handle_subscribe.c).
 * Owning worker only. Each returns 0, or -1 after closing c. */
#ifndef KG_HANDLE_SUBSCRIBE_H
#define KG_HANDLE_SUBSCRIBE_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct mqtt_packet;
struct mqtt_subscribe;

int handle_subscribe(struct client *c, const struct mqtt_packet *p);
int handle_unsubscribe(struct client *c, const struct mqtt_packet *p);

/* The answer to a SUBSCRIBE whose subscriptions are in force: the SUBACK
 * (codes[n], one per filter of sub), then the retained messages of the
 * filters granted (added[k]: that subscription is new; subid its
 * Subscription Identifier). Called at once, or later by state_hooks.c once
 * the state layer has the change (sub a copy then). */
int handle_subscribe_answer(struct client *c, const struct mqtt_subscribe *sub,
			    const uint8_t *codes, const bool *added, uint32_t n, uint32_t subid);

#endif
