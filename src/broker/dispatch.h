/*
 * dispatch.h - the one switch from a decoded packet to its handler.
 * Thread: the owning worker's only.
 */
#ifndef KG_DISPATCH_H
#define KG_DISPATCH_H

struct client;
struct mqtt_packet;

/* One decoded packet from c. Returns 0, or -1 after closing c. */
int dispatch_packet(struct client *c, const struct mqtt_packet *p);

#endif
