/*
 * client_ack.h - the acknowledgement ring of a publishing connection.
 *
 * QoS 1/2 publishes handed to the sink take a slot in arrival order; when
 * the sink has answered for them (broker_ack_done), PUBACK/PUBREC leave for
 * every leading completed slot, so acks keep the order of the publishes
 * (MQTT-4.6.0-2/3) even though Kafka partitions answer out of order.
 *
 * A failed slot (reason code >= 0x80) at the head:
 *  - 3.1/3.1.1 (and our own upstream connections): closes the connection
 *    without acknowledging it or anything behind it: the device resends.
 *  - MQTT 5: is answered in its turn with PUBACK/PUBREC carrying the reason
 *    code (0x80 Unspecified error when Kafka failed), and the connection
 *    stays open. A PUBREC >= 0x80 ends that QoS 2 flow (5.0 4.3.3): the id
 *    does not join qos2_in and no PUBREL is expected.
 *
 * MQTT 5 Receive Maximum (inbound): client_ack_quota_used() counts the
 * publishes of this connection the server has not finished acknowledging
 * (PUBACK, or PUBCOMP for QoS 2): those in the ring plus the QoS 2 ids this
 * connection put in qos2_in. Ids left in qos2_in by an earlier connection
 * of the session are not counted: the client's send quota starts afresh at
 * each connection [MQTT-4.9.0-1].
 *
 * Thread: the owning worker's only. Allocated on first use so that idle and
 * subscribe-only connections do not carry it.
 */
#ifndef KG_CLIENT_ACK_H
#define KG_CLIENT_ACK_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/inflight.h"

struct client;
struct msg;

enum ack_state { ACK_PENDING = 0, ACK_DONE };

struct ack_slot {
	uint32_t seq;
	uint16_t pid;
	uint8_t qos;
	uint8_t state;               /* enum ack_state */
	uint8_t rc;                  /* once done: MQTT 5 reason code (enum mqtt_rc) */
};

struct client_acks {
	struct ack_slot *slots;      /* ring of cap slots, n used from head */
	uint32_t head, n, cap;
	uint32_t seq;                /* last sequence number handed out */
	struct msg *blocked;         /* waiting for room in the sink (one reference) */
	uint32_t blocked_seq;
	struct pidset qos2_here;     /* MQTT 5: QoS 2 ids of this connection in qos2_in */
};

/* Appends a pending ack; returns its sequence number (never 0) or 0 on
 * ENOMEM (the caller closes the connection). */
uint32_t client_ack_push(struct client *c, uint16_t pid, uint8_t qos);
/* True if a QoS 2 publish with this packet id is still waiting for the sink. */
bool client_ack_pending(const struct client *c, uint16_t pid);
/* Acks waiting for the sink (0 without a ring). */
uint32_t client_ack_count(const struct client *c);
/* Of those, the QoS 2 ones (their ids join the session's qos2_in set once
 * the sink answers). O(client_ack_count()). */
uint32_t client_ack_qos2_count(const struct client *c);
/* Marks seq done (ok: success; !ok: 0x80 Unspecified error), then sends
 * every leading completed ack in order, as client_ack_complete_rc(). */
void client_ack_complete(struct client *c, uint32_t seq, bool ok);
/* Marks seq done with reason code rc (enum mqtt_rc: 0x00 success, 0x10 No
 * matching subscribers, >= 0x80 a failure; an unknown seq is ignored), then
 * sends every leading completed ack in order; a failure closes the
 * connection below MQTT 5 and is acknowledged with rc at MQTT 5. */
void client_ack_complete_rc(struct client *c, uint32_t seq, uint8_t rc);
/* Holds m (takes a reference) as the publish that waits for room in the
 * sink. Returns 0 or -1 (ENOMEM). */
int client_ack_block(struct client *c, struct msg *m, uint32_t seq);

/* A QoS 2 publish with pid was accepted (PUBREC success goes out): the id
 * joins the session's qos2_in until PUBREL (and, at MQTT 5, this
 * connection's quota). Returns 0, or -1 after closing c (ENOMEM). */
int client_ack_qos2_accepted(struct client *c, uint16_t pid);
/* PUBREL for pid: the id leaves qos2_in. Returns true if it was there. */
bool client_ack_qos2_released(struct client *c, uint16_t pid);
/* MQTT 5 Receive Maximum: unacknowledged QoS 1/2 publishes of this
 * connection (see above). */
uint32_t client_ack_quota_used(const struct client *c);
/* True when the ring itself should pause reading: below MQTT 5, while
 * max_inflight publishes wait for the sink. An MQTT 5 client is read on:
 * it promised to respect our Receive Maximum, which handle_publish
 * enforces with DISCONNECT 0x93 instead. */
bool client_ack_window_full(const struct client *c, uint32_t max_inflight);
/* Frees the ring and a blocked message. NULL ok. */
void client_acks_free(struct client_acks *a);

#endif
