/*
 * client.h - one MQTT network connection, owned by one worker thread:
 * its bytes, framing and lifecycle.
 *
 * client.c reads into the worker's shared buffer, frames, hands whole
 * packets to dispatch_packet() (dispatch.h), and flushes the output that
 * send.c encodes into obuf once per loop iteration (worker before-sleep) or
 * when the socket becomes writable. What a packet means is decided in the
 * handlers; what a client receives, in deliver.c; the acknowledgements that
 * wait for the sink, in client_ack.c.
 *
 * Thread: the owning worker's only.
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
#include <sys/queue.h>

#include "core/buf.h"
#include "core/loop.h"

struct alias_out;
struct client_acks;
struct client_auth;
struct client_io;
struct hooks_subwait;
struct msg;
struct net_peer;
struct session;
struct topic_aliases;
struct upstream;
struct worker;

enum client_state {
	CL_NEW = 0,        /* accepted, CONNECT not yet handled */
	CL_WAIT_TAKEOVER,  /* CONNECT received; an older connection is being closed */
	CL_WAIT_AUTH,      /* CONNECT received; its password is being checked, or its
	                      refusal waits for fail_delay_ms (auth_connect.h) */
	CL_WAIT_CLAIM,     /* CONNECT authenticated; the state layer is asked whether
	                      this instance may own the client id (state_hooks.h) */
	CL_ACTIVE,         /* CONNACK sent */
	CL_CLOSING,
};

/* struct client m5 bits: what CONNECT asked, for CONNACK and DISCONNECT. */
enum {
	CL5_ASSIGNED_ID = 1,     /* empty client id: CONNACK carries Assigned Client Identifier */
	CL5_EXPIRY_CAPPED = 2,   /* Session Expiry capped: CONNACK carries the granted one */
	CL5_KEEPALIVE_SET = 4,   /* keepalive capped by max_keepalive: Server Keep Alive */
	CL5_EXPIRY_ZERO = 8,     /* CONNECT's Session Expiry was 0 (or absent) (section 3.14.2.2.2) */
	CL5_WILL_EXPIRY = 16,    /* the will has a Message Expiry Interval */
	CL5_HANDOVER = 32,       /* closed by a takeover that resumes the session
	                            (Clean Start 0): it outlives a 0 expiry */
};

/* struct client st bits: the state hooks (state_hooks.h). */
enum {
	CLST_WAIT = 1,    /* a claim was made and not answered yet */
	CLST_QUIET = 2,   /* closed for a newer connection here, or kicked: its session
	                     parks or ends without the parked/ended hook */
	CLST_KICKED = 4,  /* another instance owns the id: the session is discarded */
	CLST_CLAIMED = 8, /* the claim was accepted (the session may not be attached yet:
	                     a local takeover is in progress) */
};

struct client {
	struct loop_io io;
	struct worker *w;
	uint64_t conn_id;
	struct session *s;           /* attached session (one reference) */
	LIST_ENTRY(client) link;     /* worker's clients */
	SLIST_ENTRY(client) dirty_link;
	SLIST_ENTRY(client) closing_link;
	SLIST_ENTRY(client) resume_link;
	SLIST_ENTRY(client) backlog_link;
	STAILQ_ENTRY(client) blocked_link;
	bool dirty;
	bool resume;
	bool backlog_paused;         /* publishing into an overfull inbox */
	bool blocked;                /* on the worker's blocked queue */
	uint8_t state;
	uint8_t level;               /* protocol level from CONNECT */
	bool read_paused;
	bool io_parked;              /* hung up while paused: out of epoll until resumed */
	bool clean;
	bool graceful;               /* DISCONNECT received: no will */
	bool publish_will;
	bool addr_counted;           /* counts against max_connections_per_address */
	uint8_t lis;                 /* listener index (broker listener.h) */
	uint16_t keepalive;
	uint16_t id_len;
	uint32_t partial_held;       /* bytes of a partial packet counted in broker partial_bytes */
	int64_t accepted_ms;
	int64_t last_rx_ms;
	int64_t last_tx_ms;          /* last flush that wrote bytes */
	struct buf rbuf;             /* partial packet carried between reads */
	struct buf obuf;             /* encoded output not yet written */
	char *id;                    /* client identifier: owned, or the attached session's */
	char *username;              /* NULL if none (owned) */
	struct msg *will;            /* will message, retain flag inside */
	const char *close_reason;
	/* MQTT 5 connection lifecycle (handle_connect.c, send_connack, dispatch.c). */
	uint8_t m5;                  /* CL5_* (above) */
	uint8_t st;                  /* CLST_* (above) */
	uint32_t will_expiry;        /* the will's Message Expiry Interval, s (CL5_WILL_EXPIRY) */
	struct client_acks *acks;    /* NULL until the first publish handed to the sink */
	struct client_io *x;         /* TLS/WebSocket state; NULL for plain TCP */
	char *cert_user;             /* identity from the client certificate, or NULL */
	struct client_auth *auth;    /* identity and ACL (auth.h); NULL until needed */
	int64_t partial_since_ms;    /* a packet started arriving; 0: none pending */
	struct hooks_subwait *subwait; /* a SUBACK/UNSUBACK waiting for Kafka (state_hooks.h):
	                                  nothing more is read meanwhile; owned */
	uint32_t subs_token;         /* numbers this connection's waits */
	struct upstream *up;         /* set: our connection to an upstream broker
	                                (upstream.h), which plays the server */
	/* MQTT 5 (level 5 only; the defaults below for 3.1/3.1.1). */
	uint16_t recv_max;           /* the client's Receive Maximum: our unacknowledged
	                                QoS 1/2 PUBLISHes toward it (65535 when absent) */
	uint16_t alias_max;          /* Topic Alias Maximum we announced (inbound aliases) */
	uint16_t alias_max_out;      /* the client's Topic Alias Maximum (outbound) */
	bool problem_info;           /* Request Problem Information (1 when absent) */
	uint32_t max_packet;         /* the client's Maximum Packet Size; 0 = no limit */
	uint32_t session_expiry;     /* seconds; 0 = ends at disconnect, UINT32_MAX never */
	uint32_t will_delay;         /* Will Delay Interval, seconds */
	struct topic_aliases *aliases; /* inbound alias -> topic; NULL until first used */
	struct alias_out *alias_out; /* outbound topic -> alias (alias_out.h); NULL until used */
	uint8_t ip[16];              /* peer address (IPv4 as ::ffff:a.b.c.d) */
	uint16_t port;               /* peer port */
};

/* The peer as "addr:port", for logs: formatted into a thread-local ring of
 * four buffers (valid until four more calls on this thread). */
const char *client_peer(const struct client *c);

/* Output bytes not yet on the wire: encoded MQTT plus what the transport
 * still holds (WebSocket frames). */
size_t client_outq(const struct client *c);

/* Takes ownership of fd (non-blocking), accepted on listener lis from peer
 * (counted against its address when addr_counted). Returns the client or
 * NULL (fd closed, address released). */
struct client *client_new(struct worker *w, int fd, int lis, const struct net_peer *peer,
			  bool addr_counted);

/* Takes ownership of fd (connected, non-blocking): our own connection to
 * upstream up, from no listener, peer "addr:port". Counts as a connection.
 * Returns the client (CL_NEW until the upstream's CONNACK) or NULL (fd
 * closed). */
struct client *client_new_outbound(struct worker *w, int fd, struct upstream *up,
				   const char *peer);

/* Marks c closing with a reason for the log and detaches its session at
 * once (parked, or discarded for clean sessions) so that a new connection may
 * take it over; publish_will selects whether the will is published at the
 * safe point. Idempotent. After it, handlers must return without touching
 * c->s. */
void client_close(struct client *c, const char *reason, bool publish_will);
/* As client_close(), first sending an MQTT 5 client DISCONNECT with reason
 * code rc (enum mqtt_rc, >= 0x80) when it has had its CONNACK; for other
 * levels the same as client_close(). */
void client_close_rc(struct client *c, const char *reason, bool publish_will, uint8_t rc);
/* Safe point: finishes a closing client and frees it. Worker only. */
void client_finish(struct client *c);

/* Schedules a flush after encoders appended to c->obuf. */
void client_mark_output(struct client *c);
/* Writes as much of obuf as the socket takes; arms EPOLLOUT for the rest. */
void client_flush(struct client *c);
/* Pauses or resumes reading from the socket: paused while a takeover is
 * pending, a password is being checked (or its refusal delayed), a publish
 * waits for room in the sink, the ack window is full (max_inflight) or the
 * output is over max_output_bytes. On resume, bytes already read are
 * parsed at the worker's safe point. */
void client_update_read(struct client *c);
/* True when the broker itself holds c back (the sink is busy, the ack
 * window is full, peers' inboxes are backlogged), as opposed to c not
 * reading its output: the keepalive does not run meanwhile. */
bool client_held(const struct client *c);
/* Safe point only: parses packets left in rbuf after a pause. */
void client_process_pending(struct client *c);

#endif
