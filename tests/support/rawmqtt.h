/*
 * rawmqtt.h - a raw-socket MQTT client for byte-level broker tests.
 *
 * Sockets are blocking TCP connections to 127.0.0.1 with TCP_NODELAY; every
 * receive takes a timeout in milliseconds and never blocks longer. Sends use
 * MSG_NOSIGNAL, so a peer that closed gives -1/EPIPE, not SIGPIPE.
 *
 * The packet builders are written here by hand on purpose rather than with
 * src/mqtt/mqtt_encode.c: a test must not build its input with the code it checks.
 * They write into a caller buffer and return the packet length, or -1 if it
 * does not fit. They do not validate: tests may build illegal packets.
 *
 * Thread safety: every function is reentrant; an fd belongs to one thread.
 */
#ifndef KG_RAWMQTT_H
#define KG_RAWMQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAW_TIMEOUT_MS 5000 /* used by raw_mqtt_connect() and raw_mqtt_publish() */

/* Connects to 127.0.0.1:port. Returns the fd, or -1. */
int raw_connect_tcp(int port);

/* Writes all n bytes. Returns 0, or -1 (errno set, e.g. EPIPE, ECONNRESET). */
int raw_send(int fd, const void *p, size_t n);
/* Sends bytes written as hex; spaces are ignored ("10 0C 0004 4D515454").
 * Returns 0, or -1 on bad hex (errno EINVAL) or a send error. */
int raw_send_hex(int fd, const char *hex);

/*
 * Reads exactly n bytes within timeout_ms (one deadline for all of them).
 * Returns n; or, if fewer arrived, how many did (they are in p) with errno
 * ETIMEDOUT (deadline passed), EPIPE (the peer closed) or the socket error.
 */
int raw_recv_exact(int fd, void *p, size_t n, int timeout_ms);

/*
 * Reads one whole MQTT packet (fixed header, remaining length, body) into buf.
 * Returns its total length; 0 if the peer closed before a whole packet
 * arrived; -1 on timeout, socket error, a remaining length longer than 4
 * bytes, or a packet larger than cap (its body is left unread: the stream is
 * out of step, close it).
 */
int raw_recv_packet(int fd, uint8_t *buf, size_t cap, int timeout_ms);

/* True if the peer closed the connection (read returns 0 or fails, e.g.
 * ECONNRESET) within timeout_ms. Bytes that arrive first are discarded. */
bool raw_closed_within(int fd, int timeout_ms);

/* Hex helpers. raw_hex_decode() ignores spaces and returns the byte count, or
 * -1 for a bad digit, an odd count or more than cap bytes.
 * raw_hex_encode() writes "0A 1B ..." NUL-terminated, truncated to fit cap
 * (ending in "..." when truncated); returns out. */
int raw_hex_decode(const char *hex, uint8_t *out, size_t cap);
char *raw_hex_encode(const uint8_t *p, size_t n, char *out, size_t cap);

/* CONNECT fields. A zeroed struct plus client_id is a clean level-4 CONNECT
 * with keepalive 0. Strings are NUL-terminated; client_id NULL means "". */
struct raw_connect {
	uint8_t level;              /* 3 ("MQIsdp"), 4 or 5 ("MQTT"); 0 means 4 */
	const char *client_id;
	bool clean;
	uint16_t keepalive;
	const char *will_topic;     /* NULL: no will */
	const void *will_payload;
	uint16_t will_payload_len;
	uint8_t will_qos;
	bool will_retain;
	const char *username;       /* NULL: no user name flag */
	const char *password;       /* NULL: no password flag */
};

/* Builders: MQTT 5 packets get empty properties. */
int raw_build_connect(uint8_t *out, size_t cap, const struct raw_connect *c);
int raw_build_publish(uint8_t *out, size_t cap, uint8_t level, const char *topic,
		      const void *payload, size_t payload_len, uint8_t qos, bool retain,
		      bool dup, uint16_t packet_id);
/* One filter with its options byte (QoS in the low 2 bits). */
int raw_build_subscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
			const char *filter, uint8_t options);
int raw_build_unsubscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
			  const char *filter);
/* PUBACK (0x40), PUBREC (0x50), PUBREL (0x62), PUBCOMP (0x70): first_byte is
 * the whole first byte, so tests can also set illegal flags. 4 bytes. */
int raw_build_ack(uint8_t *out, size_t cap, uint8_t first_byte, uint16_t packet_id);

/*
 * Sends CONNECT c on fd and reads the CONNACK (3.1.1 or 5.0 layout, by
 * c->level) within timeout_ms. Returns 0 and fills *connack_rc and
 * *session_present (either may be NULL), or -1 if no CONNACK arrived.
 */
int raw_mqtt_handshake(int fd, const struct raw_connect *c, uint8_t *connack_rc,
		       bool *session_present, int timeout_ms);

/* Connects over TCP and completes a level-4 CONNECT/CONNACK. Returns the fd
 * (the caller closes it) whatever the return code, which goes to *connack_rc;
 * -1 if the connection or the CONNACK failed. */
int raw_mqtt_connect(int port, const char *client_id, bool clean, uint16_t keepalive,
		     uint8_t *connack_rc, bool *session_present);

/*
 * Publishes on a level-4 connection with the whole QoS flow: QoS 1 waits for
 * PUBACK, QoS 2 for PUBREC, sends PUBREL and waits for PUBCOMP (packet_id is
 * used for both). The next packet on fd must be that acknowledgement.
 * Returns 0, or -1 on a send error, a timeout or any other packet.
 */
int raw_mqtt_publish(int fd, const char *topic, const void *payload, size_t len,
		     uint8_t qos, bool retain, uint16_t packet_id);

#endif
