/* handle_publish.h - PUBLISH and PUBREL from a client (handle_publish.c).
 * Owning worker only. Each returns 0, or -1 after closing c. */
#ifndef KG_HANDLE_PUBLISH_H
#define KG_HANDLE_PUBLISH_H

struct client;
struct mqtt_packet;
struct worker;

int handle_publish(struct client *c, const struct mqtt_packet *p);
int handle_pubrel(struct client *c, const struct mqtt_packet *p);
/* Retries publishes that waited for room in the sink, oldest first. */
void handle_publish_retry(struct worker *w);

#endif
