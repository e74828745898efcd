/*
 * client.h - one MQTT network connection, owned by one worker thread.
 *
 * Byte I/O only lives here: read into the worker's shared buffer, frame,
 * hand whole packets to dispatch_packet(), append encoded output to obuf
 * and flush it once per loop iteration (worker before-sleep) or when the
 * socket becomes writable.
 *
 * Lifetime: client_close() marks the client and queues it on its worker's
 * closing list; worker_reap() finishes it at the safe point (will, session
 * detach, close(2), free). Asynchronous references use conn_id, never the
 * pointer.
 */
#ifndef KG_CLIENT_H
#define KG_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"

struct msg;
struct mqtt_packet;
struct session;
struct worker;

enum client_state {
	CL_NEW = 0,        /* accepted, CONNECT not yet handled */
	CL_WAIT_TAKEOVER,  /* CONNECT received; an older connection is being closed */
	CL_ACTIVE,         /* CONNACK sent */
	CL_CLOSING,
};

enum ack_state { ACK_PENDING = 0, ACK_DONE, ACK_FAILED };

struct ack_slot {
	uint32_t seq;
	uint16_t pid;
	uint8_t qos;
	uint8_t state;               /* enum ack_state */
};

/* Uplink state of a publishing connection, allocated on first use so that
 * idle and subscribe-only connections do not carry it. */
struct client_uplink {
	/* QoS 1/2 publishes waiting for Kafka, acknowledged in the order
	 * received (MQTT-4.6.0-2/3): a ring of ack_cap slots. */
	struct ack_slot *acks;
	uint32_t ack_head, ack_n, ack_cap;
	uint32_t ack_seq;            /* last sequence number handed out */
	struct msg *blocked;         /* waiting for room in the producer */
	uint32_t blocked_seq;
	struct client *next_blocked; /* worker's blocked list */
};

struct client {
	struct loop_io io;
	struct worker *w;
	uint64_t conn_id;
	struct session *s;           /* attached session (one reference) */
	struct client *prev, *next;  /* worker's list */
	struct client *next_dirty;
	struct client *next_closing;
	struct client *next_resume;
	bool resume;
	struct client *next_backlog;
	bool backlog_paused;         /* publishing into an overfull inbox */
	uint8_t state;
	uint8_t level;               /* protocol level from CONNECT */
	bool dirty;
	bool read_paused;
	bool clean;
	bool graceful;               /* DISCONNECT received: no will */
	bool publish_will;
	uint16_t keepalive;
	int64_t accepted_ms;
	int64_t last_rx_ms;
	int64_t last_tx_ms;          /* last flush that wrote bytes */
	struct buf rbuf;             /* partial packet carried between reads */
	struct buf obuf;             /* encoded output not yet written */
	char *id;                    /* client identifier: owned, or the attached session's */
	uint16_t id_len;
	char *username;              /* NULL if none (owned) */
	struct msg *will;            /* will message, retain flag inside */
	const char *close_reason;
	struct client_uplink *up;    /* NULL until the first publish that goes to Kafka */
	char peer[64];
};

/* Takes ownership of fd (non-blocking). Returns the client or NULL (fd closed). */
struct client *client_new(struct worker *w, int fd, const char *peer);

/* Marks c closing with a reason for the log and detaches its session at
 * once (parked, or discarded for clean sessions) so that a new connection may
 * take it over; publish_will selects whether the will is published at the
 * safe point. Idempotent. After it, handlers must return without touching
 * c->s. */
void client_close(struct client *c, const char *reason, bool publish_will);
/* Safe point: finishes a closing client and frees it. Worker only. */
void client_finish(struct client *c);

/* Schedules a flush after encoders appended to c->obuf. */
void client_mark_output(struct client *c);
/* Writes as much of obuf as the socket takes; arms EPOLLOUT for the rest. */
void client_flush(struct client *c);
/* Pauses or resumes reading from the socket: paused while a takeover is
 * pending, a publish waits for producer room, the uplink ack window is full
 * (max_inflight) or the output is over max_output_bytes. On resume, bytes
 * already read are parsed at the worker's safe point. */
void client_update_read(struct client *c);
/* Safe point only: parses packets left in rbuf after a pause. */
void client_process_pending(struct client *c);

/*
 * Sends m to the attached client at qos (already min(published, granted))
 * with the given RETAIN flag, or queues it in the session when the in-flight
 * window is full or the output is over its limit. QoS 0 over the output
 * limit is dropped and counted. Borrows m.
 */
void client_deliver(struct client *c, struct msg *m, uint8_t qos, bool retain);
/* Moves queued messages into the window while there is room. */
void client_pump(struct client *c);
/* Resends the in-flight window after a session resumes (DUP set). */
void client_resend_inflight(struct client *c);

/* Uplink acknowledgement ring (uplink.c uses these; owner thread). */
/* Returns c->up, allocating it on first use, or NULL (ENOMEM). */
struct client_uplink *client_uplink(struct client *c);
/* Appends a pending ack; returns its sequence number (never 0) or 0 on ENOMEM. */
uint32_t client_ack_push(struct client *c, uint16_t pid, uint8_t qos);
/* True if a QoS 2 publish with this packet id is still waiting for Kafka. */
bool client_ack_pending(const struct client *c, uint16_t pid);
/* Marks seq done or failed, then sends every leading completed ack in order;
 * a failure closes the connection without acknowledging. */
void client_ack_complete(struct client *c, uint32_t seq, bool ok);

/* Dispatch: one decoded packet from c. Returns 0, or -1 after closing c. */
int dispatch_packet(struct client *c, const struct mqtt_packet *p);

/* Handlers (dispatch.c calls them; each returns 0 or -1 after closing c). */
int handle_connect(struct client *c, const struct mqtt_packet *p);
int handle_publish(struct client *c, const struct mqtt_packet *p);
int handle_pubrel(struct client *c, const struct mqtt_packet *p);
int handle_subscribe(struct client *c, const struct mqtt_packet *p);
int handle_unsubscribe(struct client *c, const struct mqtt_packet *p);
int handle_puback(struct client *c, const struct mqtt_packet *p);
int handle_pubrec(struct client *c, const struct mqtt_packet *p);
int handle_pubcomp(struct client *c, const struct mqtt_packet *p);

/* Inbox: the session's previous owner has settled it; retry the CONNECT. */
void handle_connect_resume(struct worker *w, uint64_t conn_id);
/* Inbox: another worker wants session s; close our client attached to it
 * and fence our inbox. */
void handle_takeover_request(struct worker *w, struct session *s, int from, uint64_t conn_id);
/* Inbox: every delivery queued here before the takeover is settled. */
void handle_fence(struct worker *w, int from, uint64_t conn_id);
/* Inbox: the deliveries posted here while s was ours are all in its queue. */
void handle_settle(struct worker *w, struct session *s);

#endif
