/*
 * itutil.h - MQTT steps for the integration tests, on top of rawmqtt.h.
 *
 * Each helper is one step a test takes (connect, subscribe, send or read a
 * PUBLISH, acknowledge, check that nothing arrives) and checks the answer
 * strictly: exact packet type, length and packet id. This file does not link
 * cmocka (the vector runner and the benches link it too), so a helper that
 * gets a wrong, late or missing answer prints one line on stderr saying what
 * came instead and returns -1 (or false); the test asserts on that value, so
 * the failure points at the test's line:
 *
 *     int fd = itutil_connect(g.port, "it-x", true, 0, NULL);
 *     assert_true(fd >= 0);
 *     assert_int_equal(itutil_subscribe(fd, 1, "a/#", 1), 0);
 *
 * Packets are MQTT 3.1.1 (level 4). Answers that the server sends at once
 * (CONNACK, SUBACK, PINGRESP, PUBREL) are awaited for ITUTIL_REPLY_MS; where
 * the wait depends on the test (a message, a Kafka-backed PUBACK) the caller
 * passes timeout_ms.
 *
 * Thread safety: every function is reentrant; an fd belongs to one thread.
 */
#ifndef KG_ITUTIL_H
#define KG_ITUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rawmqtt.h"

/* The tightest wait any test used for an immediate answer. */
#define ITUTIL_REPLY_MS 3000
#define ITUTIL_TOPIC_MAX 255
#define ITUTIL_PAYLOAD_MAX 8192

/* One packet as read. For a PUBLISH every field is set; for any other
 * packet only first, and pid when it is 4 bytes long (an ack). */
struct itutil_pkt {
	uint8_t first;                 /* the fixed header's first byte */
	uint8_t qos;
	bool dup, retain;
	uint16_t pid;                  /* 0 for a QoS 0 PUBLISH */
	char topic[ITUTIL_TOPIC_MAX + 1];        /* NUL-terminated */
	size_t len;                              /* payload bytes */
	char payload[ITUTIL_PAYLOAD_MAX + 1];    /* NUL-terminated copy */
};

/* CLOCK_MONOTONIC in milliseconds. */
long long itutil_now_ms(void);
/* Sleeps ms milliseconds, resuming after signals. */
void itutil_sleep_ms(int ms);

/* Sends CONNECT c on the connected fd. Returns 0 once CONNACK 0 arrived
 * (its session present flag goes to *present, which may be NULL); -1 when
 * none came or its return code was not 0. */
int itutil_handshake(int fd, const struct raw_connect *c, bool *present);
/* Connects to 127.0.0.1:port and sends CONNECT c. Returns the fd (the
 * caller closes it) once CONNACK 0 arrived; -1 otherwise (fd closed). */
int itutil_connect_with(int port, const struct raw_connect *c, bool *present);
/* itutil_connect_with() for a level-4 CONNECT without will or credentials. */
int itutil_connect(int port, const char *id, bool clean, uint16_t keepalive, bool *present);

/* SUBSCRIBE to one filter at qos. Returns 0 if the next packet is exactly
 * the SUBACK for pid granting qos; -1 otherwise. */
int itutil_subscribe(int fd, uint16_t pid, const char *filter, uint8_t qos);

/* Sends one PUBLISH (RETAIN 0; pid is left out at QoS 0) and waits for
 * nothing. Returns 0, or -1 if it could not be built or sent. */
int itutil_send_publish(int fd, const char *topic, const void *payload, size_t len, uint8_t qos,
			bool dup, uint16_t pid);
/* Sends the 4-byte ack `first` (0x40 PUBACK, 0x50 PUBREC, 0x62 PUBREL,
 * 0x70 PUBCOMP) for pid. Returns 0 or -1. */
int itutil_send_ack(int fd, uint8_t first, uint16_t pid);
/* Returns 0 if the next packet within timeout_ms is exactly the ack
 * `first` for pid; -1 otherwise. */
int itutil_expect_ack(int fd, uint8_t first, uint16_t pid, int timeout_ms);

/*
 * Reads the next packet within timeout_ms into *p. Returns its length; 0
 * if the peer closed first; -1 on a timeout (errno ETIMEDOUT), a socket
 * error, a PUBLISH too large for *p or not well formed (errno EPROTO; the
 * stream is then out of step: close it).
 */
int itutil_recv(int fd, struct itutil_pkt *p, int timeout_ms);
/* Returns 0 if the next packet within timeout_ms is a PUBLISH (in *p);
 * -1 otherwise. Does not acknowledge it. */
int itutil_recv_publish(int fd, struct itutil_pkt *p, int timeout_ms);
/* The receiver's side of p's QoS flow: nothing at QoS 0, PUBACK at 1; at
 * 2 PUBREC, then the next packet must be PUBREL for p->pid, then PUBCOMP.
 * Returns 0 or -1. */
int itutil_ack_publish(int fd, const struct itutil_pkt *p);
/* itutil_recv_publish(), then itutil_ack_publish(): a subscriber that
 * acknowledges everything (at QoS 2 nothing else may be in flight). */
int itutil_recv_acked(int fd, struct itutil_pkt *p, int timeout_ms);

/* PINGREQ; returns 0 if the next packet is exactly PINGRESP, else -1. */
int itutil_ping(int fd);
/* True if no packet arrives and the connection stays open for ms. */
bool itutil_quiet(int fd, int ms);
/* True if the peer closes fd (FIN or reset) within timeout_ms without
 * sending any packet first. */
bool itutil_closed_silently(int fd, int timeout_ms);

#endif
