/*
 * conn_model.h - the fake devices of fuzz_conn.c: what each one wrote to the
 * broker, what the fake Kafka sink took from it, and what the broker may
 * send back. A violation aborts (libFuzzer reports a crash).
 *
 * A device is one socket pair: the broker owns one end (a struct client),
 * the fuzzer the other. Everything written is parsed here the way client.c
 * parses it (framing limits, the decoder, the first-packet and second-CONNECT
 * rules), so that the model knows which packets the broker may have acted on;
 * everything read back is framed and decoded with the project's codec and
 * checked against that:
 *   - the first packet is a CONNACK, sent only after a CONNECT, and nothing
 *     follows a refusal (MQTT-3.2.2-5); session present is 0 with clean
 *     session 1 (MQTT-3.2.2-1);
 *   - a PUBACK/PUBREC answers, in order, the sink's publishes of this
 *     connection (struct rec), each completed OK (or SINK_DONE) before: never
 *     a failed or pending one, never out of order, with the packet id of a
 *     PUBLISH that carried the message. A PUBREC may also repeat for a QoS 2
 *     packet id the session already holds (duplicate); within a connection
 *     that is tracked exactly (PUBREC in, PUBCOMP out), across connections
 *     leniently (any id completed OK with this client id, and only if the
 *     session was present);
 *   - SUBACK, UNSUBACK, PINGRESP, PUBCOMP and PUBREL answer packets written;
 *   - every PUBLISH received carries the topic and payload of a message some
 *     device published (or a will), on a topic that matches a filter
 *     subscribed with this client id;
 *   - the bytes received are whole, well-formed server packets, and a close
 *     never cuts one.
 *
 * MQTT 5 (a level-5 CONNECT; docs/mqtt5/). Everything is decoded at the
 * device's level, and besides the above:
 *   - CONNECT: accepted with an empty id (either Clean Start), refused with
 *     0x8C for an Authentication Method, 0x85 for an id over
 *     max_client_id_length; the CONNACK's reason code is the one predicted;
 *     a successful one carries Receive Maximum = max_inflight, Topic Alias
 *     Maximum = topic_alias_maximum, an Assigned Client Identifier ("kg-...")
 *     exactly when the id was empty (the sink must then see that id), no
 *     Session Expiry or Server Keep Alive (nothing caps them in the fuzz
 *     config); Session Present only with Clean Start 0, a client-chosen id
 *     and another connection that attached that id before;
 *   - PUBACK/PUBREC: 0x00 for a delivery Kafka took, 0x80 for one it failed,
 *     both in publish order; the connection stays (3.1.1: closes). A failed
 *     PUBREC holds no id. PUBCOMP carries 0x00 or 0x92, PUBREL 0x00; SUBACK
 *     codes may be any failure >= 0x80; UNSUBACK has one code per filter
 *     (0x00, 0x11 or >= 0x80);
 *   - DISCONNECT from the broker: reason >= 0x80, nothing after it but the
 *     close, and a reason explained (fuzz_conn.c check_disconnect()): 0x8E a
 *     takeover, 0x8D the clock moved past a keep alive, 0x81/0x82/0x90/
 *     0x94/0x95 a packet of ours the model saw refused (0x82 also an odd
 *     ack), 0x93 the Receive Maximum could have been exceeded (an upper
 *     bound on the broker's quota: QoS 1/2 publishes minus PUBACKs and failed
 *     PUBRECs), 0x97 the partial-bytes cap; any other reason fails;
 *   - Topic Aliases both ways, per connection: ours (set, used, over the
 *     maximum or unknown = a close) and the broker's (within the maximum we
 *     announced, an empty topic only with an alias it set).
 * Not modelled exactly (accepted instead): which session a Clean Start 0
 * resumes (the expiry decides; filters are kept per id as a superset), when
 * the Receive Maximum close comes (the bound above), the client's Receive
 * Maximum and Maximum Packet Size toward it (they can only hold deliveries
 * back, which the model never requires), subscription options (No Local,
 * Retain As Published, Retain Handling only drop or re-flag deliveries),
 * will delay (a will may arrive any time later), message expiry, and the
 * properties delivered with a message (not compared). $share/NAME/FILTER
 * is matched as FILTER.
 *
 * Single-threaded (the fuzzer's thread).
 */
#ifndef FUZZ_CONN_MODEL_H
#define FUZZ_CONN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct msg;

/* Aborts with a message: an invariant does not hold. */
void model_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define MODEL_CHECK(c, ...) do { if (!(c)) model_fail(__VA_ARGS__); } while (0)

/* The broker's limits the model parses with (set from the fuzz config). */
struct model_limits {
	uint32_t max_packet_size;
	uint32_t max_connect_size;
	uint32_t max_inflight;       /* the Receive Maximum CONNACK announces (level 5) */
	uint32_t topic_alias_max;    /* the Topic Alias Maximum CONNACK announces */
	uint32_t max_client_id_length;
	uint32_t max_topic_length;   /* PUBLISH and will topics (limits.c) */
	uint32_t max_topic_levels;
};

enum rec_state { REC_PENDING, REC_OK, REC_FAILED };

/* One QoS 1/2 publish the fake sink took (SINK_PENDING or SINK_DONE). */
struct rec {
	struct dev *d;
	uint32_t seq;
	uint16_t pid;                /* the packet id its ack slot holds */
	uint8_t qos;
	uint8_t state;               /* enum rec_state */
	bool acked;                  /* its PUBACK/PUBREC was received */
	uint64_t after;              /* bytes the broker had sent d when the sink took it:
	                                its ack comes later in the stream */
	struct msg *m;               /* a reference */
};

struct pidlist {
	uint16_t *v;
	size_t n, cap;
};

/* A client id as the devices used it: what its session may hold. */
struct sess {
	char *id;
	uint16_t id_len;
	struct filt {
		char *f;
		uint16_t len;
	} *filters;                  /* every filter subscribed with this id */
	size_t n_filters, cap_filters;
	struct pidlist qos2_ok;      /* QoS 2 ids completed OK on any connection */
};

struct sent_sub {
	uint16_t pid;
	uint16_t count;
	uint8_t *qos;                /* requested, per filter (SUBSCRIBE only) */
};

struct sent_pub {
	uint16_t pid;
	uint8_t qos;
	struct msg *m;
};

/* A response the device owes the broker for what it received. */
struct owed {
	uint8_t type;
	uint16_t pid;
	bool answered;               /* written (and parsed) */
};

struct dev {
	int serial;
	int fd;                      /* our end; -1 once we closed it */
	int worker;
	int64_t opened_ms;           /* fake clock when the socket was handed over */
	uint64_t conn_id;            /* 0: the broker refused the socket */
	bool eof;                    /* the broker closed its end */
	bool closed_by_us;
	bool shut_wr;
	struct buf unsent;           /* written by ops, not yet taken by the socket */
	struct buf held;             /* second half of a split packet */
	/* What the broker parsed of our bytes (as far as it read them). */
	struct buf out;
	bool out_dead;               /* a packet the broker closes on: nothing after counts */
	int n_frames;
	uint8_t first_type;
	bool connect_ok;             /* a CONNECT the broker accepts (id rules included) */
	uint8_t level;               /* of our CONNECT; 4 before */
	bool clean;
	struct sess *s;              /* NULL before CONNECT */
	struct sent_pub *pubs;
	size_t n_pubs, cap_pubs;
	struct sent_sub *subs, *unsubs;
	size_t n_subs, cap_subs, n_unsubs, cap_unsubs;
	size_t subacks, unsubacks;
	uint32_t pingreqs, pingresps;
	struct pidlist pubrec_sent, pubrel_sent;
	/* What the broker sent. */
	struct buf in;
	uint64_t rx_bytes;
	bool closing_seen;           /* its client was seen closing, with */
	uint64_t closing_rx;         /* rx_bytes then, and */
	size_t closing_obuf;         /* the output it still held */
	bool connack;
	uint8_t connack_rc;
	bool present;
	struct rec **recs;           /* the sink's publishes of this connection, by seq */
	size_t n_recs, cap_recs, next_rec;
	struct pidlist q2_in, q2_out; /* QoS 2 ids known held / released on this connection */
	struct owed *owed;
	size_t n_owed, cap_owed;
	bool odd_ack;                /* wrote a PUBACK/PUBREC/PUBCOMP nothing asked for:
	                                the broker may close on a wrong kind */
	/* MQTT 5 (level 5 only). */
	uint8_t expect_rc;           /* the CONNACK reason code predicted */
	uint32_t expiry;             /* CONNECT's Session Expiry Interval */
	bool has_expiry;
	char *assigned;              /* Assigned Client Identifier (empty id) */
	bool disc;                   /* the broker sent DISCONNECT: only the close follows */
	uint8_t disc_rc;
	uint32_t q12_pubs;           /* QoS 1/2 PUBLISHes the broker parsed */
	uint32_t quota_freed;        /* PUBACKs and failed PUBRECs received: each freed
	                                a place of the Receive Maximum quota */
	struct alias { uint16_t n; char *t; uint16_t len; } *alias_in, *alias_out;
	size_t n_alias_in, cap_alias_in, n_alias_out, cap_alias_out;
	uint32_t alias_out_max;      /* the Topic Alias Maximum we announced */
	uint32_t max_packet;         /* the Maximum Packet Size we announced (0: none) */
};

struct model {
	struct model_limits lim;
	bool trace;                  /* every packet to stderr (FUZZ_CONN_LOG) */
	struct dev **devs;
	size_t n_devs, cap_devs;
	struct sess **sess;
	size_t n_sess, cap_sess;
	struct msg **published;      /* every PUBLISH and will written */
	size_t n_published, cap_published;
	struct rec **recs;           /* all, in the order the sink took them */
	size_t n_recs, cap_recs;
};

void model_init(struct model *md, const struct model_limits *lim);
void model_release(struct model *md);

/* A new device for socket fd on worker w. */
struct dev *model_dev_new(struct model *md, int fd, int worker);
struct dev *model_dev_by_conn(struct model *md, uint64_t conn_id);

/* Bytes the socket took from us: parsed as the broker parses them. */
void model_wrote(struct model *md, struct dev *d, const uint8_t *p, size_t n);
/* Bytes read from the socket, and the broker's close. */
void model_read(struct model *md, struct dev *d, const uint8_t *p, size_t n);
void model_eof(struct model *md, struct dev *d);

/* The sink took m (seq > 0, packet id pid) from d, after the broker had
 * sent d `after` bytes; state REC_PENDING or REC_OK. */
struct rec *model_rec_new(struct model *md, struct dev *d, uint32_t seq, uint16_t pid,
			  uint64_t after, struct msg *m, enum rec_state st);
/* The fuzzer answered the sink's publish: ok or failed. */
void model_rec_complete(struct model *md, struct rec *r, bool ok);
/* True if d wrote a PUBLISH with m's QoS, topic and payload. */
bool model_dev_published(const struct dev *d, const struct msg *m);
/* The topic a PUBLISH of d (level 5) with this alias would stand for,
 * NULL if none is set on this connection. */
const char *model_alias_topic(const struct dev *d, uint16_t alias, uint16_t *len);
/* The size of the successful level-5 CONNACK d gets before any trimming. */
uint32_t model_connack_size(const struct model *md, const struct dev *d);
/* Necessary for a DISCONNECT 0x93 (Receive Maximum exceeded): d may have
 * had max_inflight QoS 1/2 publishes unacknowledged when it sent one more. */
bool model_quota_may_overflow(const struct model *md, const struct dev *d);
/* The oldest response d owes and has not written (PUBACK, PUBREC,
 * PUBCOMP); false if none. */
bool model_owed_next(struct dev *d, struct owed *o);

#endif
