/* handle_subscribe.h - SUBSCRIBE and UNSUBSCRIBE (handle_subscribe.c).
 * Owning worker only. Each returns 0, or -1 after closing c. */
#ifndef KG_HANDLE_SUBSCRIBE_H
#define KG_HANDLE_SUBSCRIBE_H

struct client;
struct mqtt_packet;

int handle_subscribe(struct client *c, const struct mqtt_packet *p);
int handle_unsubscribe(struct client *c, const struct mqtt_packet *p);

#endif
