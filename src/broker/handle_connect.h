/* handle_connect.h - CONNECT (handle_connect.c). Owning worker only.
 * Returns 0, or -1 after closing c. */
#ifndef KG_HANDLE_CONNECT_H
#define KG_HANDLE_CONNECT_H

struct client;
struct mqtt_packet;

int handle_connect(struct client *c, const struct mqtt_packet *p);

#endif
