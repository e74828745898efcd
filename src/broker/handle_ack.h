/* handle_ack.h - PUBACK, PUBREC and PUBCOMP from a client (handle_ack.c).
 * Owning worker only. Each returns 0, or -1 after closing c. */
#ifndef KG_HANDLE_ACK_H
#define KG_HANDLE_ACK_H

struct client;
struct mqtt_packet;

int handle_puback(struct client *c, const struct mqtt_packet *p);
int handle_pubrec(struct client *c, const struct mqtt_packet *p);
int handle_pubcomp(struct client *c, const struct mqtt_packet *p);

#endif
