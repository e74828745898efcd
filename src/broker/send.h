/*
 * send.h - one function per packet type the broker sends: each encodes into
 * the client's output buffer, counts the packet and schedules the flush.
 * When the buffer cannot grow (MQTT_ERR_NOSPACE) the connection is closed
 * with a logged reason, so a PUBACK or CONNACK never silently fails to go
 * out. Each returns 0, or -1 after closing c.
 *
 * Thread: the owning worker's only.
 */
#ifndef KG_SEND_H
#define KG_SEND_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct msg;
struct mqtt_connect;
struct mqtt_str;

/* CONNACK with return code rc; session present only where the level has it. */
int send_connack(struct client *c, uint8_t rc, bool present);
int send_puback(struct client *c, uint16_t pid);
int send_pubrec(struct client *c, uint16_t pid);
int send_pubrel(struct client *c, uint16_t pid);
/* The same with an MQTT 5 reason code (enum mqtt_rc): sent to a level 5
 * client (omitted when 0, as the spec allows), ignored for 3.1/3.1.1. */
int send_puback_rc(struct client *c, uint16_t pid, uint8_t rc);
int send_pubrec_rc(struct client *c, uint16_t pid, uint8_t rc);
int send_pubcomp_rc(struct client *c, uint16_t pid, uint8_t rc);
/* SUBACK with one return code per filter. */
int send_suback(struct client *c, uint16_t pid, const uint8_t *codes, uint32_t n);
/* UNSUBACK with one reason code per filter (0x00 success, 0x11 no
 * subscription existed, ...) for a level 5 client; below level 5 the codes
 * are ignored (3.1.1 has none: packet id only). */
int send_unsuback(struct client *c, uint16_t pid, const uint8_t *codes, uint32_t n);
int send_pingresp(struct client *c);
/* send_publish() did not send: m has expired or does not fit the client. */
#define SEND_DROPPED 1
/* Most Subscription Identifiers one PUBLISH carries (send_publish()). */
#define SEND_MAX_SUBIDS 256

/*
 * PUBLISH of m at qos (pid 0 for QoS 0) with the given RETAIN and DUP.
 * Level 5: m's properties as stored (m->props, untouched and in order),
 * then Message Expiry Interval = the seconds left, rounded up, when m
 * expires [MQTT-3.3.2-6], and the Subscription Identifiers subids[0..n)
 * (at most SEND_MAX_SUBIDS) [MQTT-3.3.4-3], and a Topic Alias (with an
 * empty topic name once the client has the mapping) when the client allows
 * aliases (alias_out.h). Levels 3/4: no properties.
 * Returns 0 when encoded, -1 after closing c, or SEND_DROPPED with nothing
 * sent, counted in the worker's stats: m expired (any level) [MQTT-3.3.2-5],
 * or the packet is larger than the client's Maximum Packet Size
 * [MQTT-3.1.2-24]. The caller settles the message as delivered then
 * [MQTT-3.1.2-25].
 */
int send_publish(struct client *c, const struct msg *m, uint8_t qos, bool retain, uint16_t pid,
		 bool dup, const uint32_t *subids, uint16_t n_subids);

/* The client's side, on an upstream connection (upstream.h). */
int send_connect(struct client *c, const struct mqtt_connect *k);
/* SUBSCRIBE to filters[0..n) at qos[i]. */
int send_subscribe(struct client *c, uint16_t pid, const struct mqtt_str *filters,
		   const uint8_t *qos, uint16_t n);
int send_pingreq(struct client *c);
int send_disconnect(struct client *c);

#endif
