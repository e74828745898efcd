/*
 * conn_ops.h - the input format of fuzz_conn.c, shared with the seed
 * generator (gen_conn_seeds.c).
 *
 * An input is a sequence of operations. Each starts with one byte:
 *   bits 0-3  the operation (enum conn_op)
 *   bits 4-5  k, the device slot (0..3) it applies to
 *   bits 6-7  x, a variant
 * followed by the operation's own bytes (missing bytes read as 0):
 *   OP_RAW        len, then len bytes written to device k as they are
 *   OP_CONNECT    a, b: id (a & 3: "A" "A" "B" empty), clean (a & 4),
 *                 keepalive (a >> 3 & 3: 0 1 5 60 s), will (a & 32), level
 *                 (a >> 6: 4 4 3 5); will QoS (b & 3), retain (b & 4), will
 *                 topic (b >> 3 & 7); level 5 only, one more byte c of
 *                 properties: Session Expiry (c & 3: absent 0 10 0xFFFFFFFF),
 *                 Receive Maximum 2 (c & 4), a user property (c & 8), Request
 *                 Problem Information 0 (c & 16), will's Will Delay 1 s and
 *                 Message Expiry 60 s (c & 32), Maximum Packet Size 64
 *                 (c & 64), Topic Alias Maximum 3 (c & 128)
 *   OP_PUBLISH    a, b, then the payload: QoS (a & 3), retain (a & 4), dup
 *                 (a & 8), topic (a >> 4 & 7); packet id (b & 7), payload
 *                 length (b >> 3); level 5 and x & 1: Topic Alias (topic % 3
 *                 + 1; the topic left out when the alias already stands for
 *                 it on this connection), Message Expiry 60, a user property
 *   OP_ACK        a: x == 0: type (a & 3: PUBACK PUBREC PUBREL PUBCOMP), id
 *                 (a >> 2 & 7); x != 0: the oldest response the device owes
 *                 for what it received (no byte read)
 *   OP_SUBSCRIBE  a, then one byte per filter: id (a & 7), filters (1 + (a >> 3
 *                 & 1)); filter (f & 7), QoS (f >> 3 & 3); level 5 and x & 1:
 *                 No Local (f >> 5 & 1), Retain As Published (f >> 6 & 1),
 *                 Retain Handling 1 (f >> 7)
 *   OP_UNSUBSCRIBE a: id (a & 7), filter (a >> 3 & 7)
 *   OP_PING       x & 1: DISCONNECT instead of PINGREQ
 *   OP_STEP       k: 0 worker 0, 1 worker 1, else one round of both
 *   OP_SETTLE     step until nothing moves; check the broker's state
 *   OP_CLOCK      a: advance the clock by (a + 1) * 50 ms (x & 1: * 10)
 *   OP_SINK       the sink's next answers: k % 3: PENDING DONE BUSY
 *   OP_COMPLETE   a: completes pending sink record a % n; fails it if x == 3
 *   OP_CLOSE      device k's end: closed (x & 1: shutdown for writing)
 *   OP_OPEN       device k gets a new socket, on worker x & 1
 *   OP_BIG        a, b: a PUBLISH of b * 8 bytes of payload: QoS (a & 3),
 *                 topic (a >> 4 & 7), packet id 1
 * The structured packets (CONNECT ... BIG) are built with the project's
 * encoder, at the level of the device's CONNECT (5 or else 4); with x & 2 (CONNECT, PUBLISH, SUBSCRIBE, BIG) only the first half
 * is written now and the rest before the device's next write.
 */
#ifndef FUZZ_CONN_OPS_H
#define FUZZ_CONN_OPS_H

enum conn_op {
	OP_RAW,
	OP_CONNECT,
	OP_PUBLISH,
	OP_ACK,
	OP_SUBSCRIBE,
	OP_UNSUBSCRIBE,
	OP_PING,
	OP_STEP,
	OP_SETTLE,
	OP_CLOCK,
	OP_SINK,
	OP_COMPLETE,
	OP_CLOSE,
	OP_OPEN,
	OP_BIG,
	OP_NOP,
};

#define CONN_OP(op, k, x) ((unsigned char)((op) | ((k) << 4) | ((x) << 6)))

/* Topic names and filters the structured operations choose from. */
static const char *const conn_topics[8] = {
	"a", "a/b", "a/c", "b", "b/a", "$SYS/x", "a/b/c", "c",
};
static const char *const conn_filters[8] = {
	"#", "a/#", "a/+", "+/b", "a/b", "b", "+", "$SYS/#",
};

#endif
