/*
 * ws.h - WebSocket (RFC 6455), server side, for MQTT over WebSocket: the
 * opening handshake, an incremental frame decoder and the frame encoder.
 *
 * MQTT 3.1.1 section 6 and MQTT 5 section 6: control packets travel in
 * binary frames only, and the MQTT stream is independent of the frame
 * boundaries (a packet may span frames, a frame may hold several packets).
 * So the decoder streams payload bytes as they arrive and never reassembles
 * a message; text frames are refused (close 1003). No extension is ever
 * negotiated (no permessage-deflate), so RSV bits are always an error. The
 * Origin header is not checked: MQTT clients are not browsers sharing a
 * cookie jar, and authentication happens in CONNECT.
 *
 * Pure: no I/O, no globals, no logging; the only allocation is the caller's
 * struct buf growing. SHA-1 and base64 come from OpenSSL. Reentrant.
 *
 * Files: ws_handshake.c implements the opening handshake (ws_handshake_*,
 * ws_accept_key), ws.c the frames (ws_decoder_init, ws_decode, the encoders).
 */
#ifndef KG_WS_H
#define KG_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define WS_MAX_HEAD 8192       /* handshake request head, bytes */
#define WS_KEY_LEN 24          /* base64 of the 16-byte Sec-WebSocket-Key */
#define WS_MAX_CONTROL 125     /* control frame payload */
#define WS_MAX_FRAME_HEADER 10 /* server frames: unmasked, 64-bit length */

/* ---- Opening handshake ---- */

/* Handshake refusals: the negated HTTP status to answer with. */
enum ws_hs_err {
	WS_HS_BAD_REQUEST = -400,     /* malformed, not GET, not HTTP/1.1, no Host,
				       * bad key, subprotocols offered without mqtt */
	WS_HS_NOT_FOUND = -404,       /* another path */
	WS_HS_UPGRADE_REQUIRED = -426,/* no Upgrade: websocket / Connection: upgrade,
				       * or Sec-WebSocket-Version other than 13 */
	WS_HS_TOO_LARGE = -431,       /* head over WS_MAX_HEAD */
};

enum ws_proto {
	WS_PROTO_NONE,     /* none offered: answer without the header */
	WS_PROTO_MQTT,     /* "mqtt" (MQTT 3.1.1 and 5) */
	WS_PROTO_MQTTV31,  /* "mqttv3.1", sent by some old 3.1 clients */
};

/* Owns its fields: nothing borrows from the request buffer. */
struct ws_handshake {
	char key[WS_KEY_LEN + 1];  /* Sec-WebSocket-Key as sent, NUL-terminated */
	enum ws_proto proto;       /* "mqtt" wins when several are offered */
};

/*
 * Parses the upgrade request at the start of in (len bytes) for the listener
 * at path (e.g. "/mqtt"; the request's query string is ignored). Returns the
 * head's length (> 0; bytes after it are not looked at, a client may not send
 * frames before our 101), 0 when incomplete (read more and call again with
 * the grown buffer), or an enum ws_hs_err: answer ws_handshake_error(-r)
 * and close. *out is written only when > 0.
 * Connection, Upgrade and Sec-WebSocket-Protocol may be comma lists spread
 * over several header lines. Never reads past in + len.
 */
int ws_handshake_parse(const uint8_t *in, size_t len, const char *path,
		       struct ws_handshake *out);
/* Appends the 101 Switching Protocols answer to hs. Returns 0, or -1 when out
 * of memory or SHA-1 fails. */
int ws_handshake_response(const struct ws_handshake *hs, struct buf *out);
/* Appends an answer for status (400, 404, 426 or 431; the 426 names version
 * 13) that closes the connection. Returns 0, -1 when out of memory or for
 * another status. */
int ws_handshake_error(int status, struct buf *out);
/* Writes base64(SHA-1(key + RFC 6455 GUID)) and a NUL into accept (29 bytes).
 * Returns 0 or -1. */
int ws_accept_key(const char *key, char accept[29]);

/* ---- Frames ---- */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* Close status codes this module produces or names. */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,     /* a frame breaks RFC 6455 */
	WS_CLOSE_UNSUPPORTED = 1003,  /* a text frame */
	WS_CLOSE_NO_STATUS = 1005,    /* received close had no code; never sent */
	WS_CLOSE_INVALID_DATA = 1007, /* close reason not UTF-8 */
	WS_CLOSE_TOO_BIG = 1009,      /* data frame over the decoder's max_frame */
	WS_CLOSE_INTERNAL = 1011,
};

enum ws_event_type {
	WS_EV_NONE,   /* all input consumed, nothing to report: feed more */
	WS_EV_DATA,   /* binary payload bytes for the MQTT stream */
	WS_EV_PING,   /* answer ws_encode_frame(WS_OP_PONG) with the same bytes */
	WS_EV_PONG,   /* ignore */
	WS_EV_CLOSE,  /* peer closed: answer ws_encode_close(), then shut down */
	WS_EV_ERROR,  /* send ws_encode_close(code), then shut down */
};

struct ws_event {
	enum ws_event_type type;
	/* DATA: unmasked in place inside the input, valid while it is.
	 * PING, PONG, CLOSE (the reason): inside the decoder, valid until the
	 * next ws_decode() on it. NULL when len is 0. */
	uint8_t *data;
	size_t len;
	uint16_t code;  /* CLOSE: status received (1005 for none); ERROR: to send */
};

/* Decoder state for one connection, embedded in it: 168 bytes, no heap. */
struct ws_decoder {
	uint64_t max_frame;   /* largest data frame payload; 0: no limit */
	uint64_t remaining;   /* payload bytes left in the current frame */
	uint16_t err;         /* close code once in error */
	uint8_t state;
	uint8_t opcode;       /* of the current frame */
	bool in_message;      /* a fragmented binary message awaits continuation */
	uint8_t hdr_len;      /* header bytes gathered so far */
	uint8_t hdr_need;     /* header length, known after two bytes */
	uint8_t mask_pos;     /* payload offset modulo 4 */
	uint8_t ctl_len;
	uint8_t mask[4];
	uint8_t hdr[14];
	uint8_t ctl[WS_MAX_CONTROL];
};

/* Readies d for a new connection. max_frame bounds one data frame (1009
 * above it), not a message: messages are streamed. Nothing to release. */
void ws_decoder_init(struct ws_decoder *d, uint64_t max_frame);

/*
 * Decodes client frames from in[0 .. len), stopping at the first event.
 * Returns ev->type and sets *consumed (<= len) to the bytes used; call again
 * on the rest. Input may be cut anywhere, down to one byte per call.
 *   WS_EV_NONE   *consumed == len
 *   WS_EV_DATA   ev->data == in + *consumed - ev->len, unmasked in place; a
 *                frame delivered in several events when cut, or when a
 *                message spans frames (empty frames give no event)
 *   WS_EV_PING/PONG/CLOSE  the whole control frame, checked (close: a valid
 *                code, a UTF-8 reason); control frames may come between the
 *                fragments of a message
 *   WS_EV_ERROR  ev->code is 1002 (unmasked frame, RSV bits, unknown opcode,
 *                fragmented or over-125-byte control frame, continuation
 *                without a start, a new message inside a fragmented one,
 *                64-bit length with the top bit set, close with a 1-byte
 *                body or an invalid code), 1003 (text frame), 1007 (close
 *                reason not UTF-8) or 1009 (data frame over max_frame).
 * After CLOSE, further input is consumed and ignored (WS_EV_NONE); after
 * ERROR every call returns ERROR again and consumes nothing.
 */
int ws_decode(struct ws_decoder *d, uint8_t *in, size_t len, size_t *consumed,
	      struct ws_event *ev);

/*
 * Output. The fast path for the MQTT stream is ws_frame_header(): when the
 * caller flushes n pending bytes of its output buffer it frames them as one
 * binary frame and writev()s {header, bytes}: no copy and one frame per
 * flush, not per MQTT packet. Once a header is written, exactly its n bytes
 * must follow before the next header (track it across partial writes).
 * Over TLS, where SSL_write() has no writev and each call makes a record,
 * ws_encode_frame() into the staging buffer instead: a memcpy costs far
 * less than a second TLS record.
 */
/* Writes a FIN, unmasked header for op and len into hdr; returns its length
 * (2, 4 or 10). */
size_t ws_frame_header(uint8_t hdr[WS_MAX_FRAME_HEADER], enum ws_opcode op, uint64_t len);
/* Appends one whole frame. Returns 0, or -1 when out of memory or for a
 * control frame over WS_MAX_CONTROL bytes. */
int ws_encode_frame(struct buf *out, enum ws_opcode op, const void *data, size_t len);
/* Appends a close frame with code and reason (at most 123 bytes, UTF-8 is
 * the caller's business); code 1005 sends an empty body. Returns 0, or -1
 * when out of memory or the reason is too long. */
int ws_encode_close(struct buf *out, uint16_t code, const char *reason, size_t len);

#endif
