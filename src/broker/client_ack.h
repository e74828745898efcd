/*
 * client_ack.h - the acknowledgement ring of a publishing connection.
 *
 * QoS 1/2 publishes handed to the sink take a slot in arrival order; when
 * the sink has answered for them (broker_ack_done), PUBACK/PUBREC leave for
 * every leading completed slot, so acks keep the order of the publishes
 * (MQTT-4.6.0-2/3) even though Kafka partitions answer out of order. A
 * failed slot at the head closes the connection without acknowledging it or
 * anything behind it: the device resends.
 *
 * Thread: the owning worker's only. Allocated on first use so that idle and
 * subscribe-only connections do not carry it.
 */
#ifndef KG_CLIENT_ACK_H
#define KG_CLIENT_ACK_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct msg;

enum ack_state { ACK_PENDING = 0, ACK_DONE, ACK_FAILED };

struct ack_slot {
	uint32_t seq;
	uint16_t pid;
	uint8_t qos;
	uint8_t state;               /* enum ack_state */
};

struct client_acks {
	struct ack_slot *slots;      /* ring of cap slots, n used from head */
	uint32_t head, n, cap;
	uint32_t seq;                /* last sequence number handed out */
	struct msg *blocked;         /* waiting for room in the sink (one reference) */
	uint32_t blocked_seq;
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
/* Marks seq done or failed (an unknown seq is ignored), then sends every
 * leading completed ack in order; a failure closes the connection. */
void client_ack_complete(struct client *c, uint32_t seq, bool ok);
/* Holds m (takes a reference) as the publish that waits for room in the
 * sink. Returns 0 or -1 (ENOMEM). */
int client_ack_block(struct client *c, struct msg *m, uint32_t seq);
/* Frees the ring and a blocked message. NULL ok. */
void client_acks_free(struct client_acks *a);

#endif
