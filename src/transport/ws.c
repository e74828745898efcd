/* ws.c - WebSocket frame decoder and encoder; see ws.h. The opening
 * handshake is in ws_handshake.c. */
#include <string.h>

#include "transport/ws.h"

enum { S_HEADER, S_PAYLOAD, S_CONTROL, S_CLOSED, S_ERROR };

/* ---- Decoder ---- */

void ws_decoder_init(struct ws_decoder *d, uint64_t max_frame)
{
	memset(d, 0, sizeof(*d));
	d->max_frame = max_frame;
	d->state = S_HEADER;
}

/* XORs n bytes with the mask starting at payload offset pos: eight bytes at
 * a time, which compilers turn into vector code. */
static void unmask(uint8_t *p, size_t n, const uint8_t mask[4], unsigned pos)
{
	uint8_t m[8];
	uint64_t m64, w;
	size_t k = 0;

	for (unsigned j = 0; j < 8; j++)
		m[j] = mask[(pos + j) & 3];
	memcpy(&m64, m, 8);
	for (; k + 8 <= n; k += 8) {
		memcpy(&w, p + k, 8);
		w ^= m64;
		memcpy(p + k, &w, 8);
	}
	for (; k < n; k++)
		p[k] ^= m[k & 3];
}

/* Checks the first two header bytes; returns a close code or 0. */
static uint16_t check_start(const struct ws_decoder *d)
{
	uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
	bool fin = b0 & 0x80;

	if (b0 & 0x70)
		return WS_CLOSE_PROTOCOL; /* RSV bits: no extension was negotiated */
	switch (b0 & 0x0f) {
	case WS_OP_CONT:
		if (!d->in_message)
			return WS_CLOSE_PROTOCOL;
		break;
	case WS_OP_TEXT:
		return d->in_message ? WS_CLOSE_PROTOCOL : WS_CLOSE_UNSUPPORTED;
	case WS_OP_BINARY:
		if (d->in_message)
			return WS_CLOSE_PROTOCOL;
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!fin || (b1 & 0x7f) > WS_MAX_CONTROL)
			return WS_CLOSE_PROTOCOL;
		break;
	default:
		return WS_CLOSE_PROTOCOL;
	}
	return b1 & 0x80 ? 0 : WS_CLOSE_PROTOCOL; /* clients must mask */
}

/* The header is complete: reads length and mask, enters the payload. */
static uint16_t start_frame(struct ws_decoder *d)
{
	const uint8_t *h = d->hdr;
	uint64_t n = h[1] & 0x7f;
	size_t m = 2;

	if (n == 126) {
		n = (uint64_t)h[2] << 8 | h[3];
		m = 4;
	} else if (n == 127) {
		n = 0;
		for (m = 2; m < 10; m++)
			n = n << 8 | h[m];
		if (n >> 63)
			return WS_CLOSE_PROTOCOL;
	}
	d->opcode = h[0] & 0x0f;
	if (d->opcode < 8 && d->max_frame && n > d->max_frame)
		return WS_CLOSE_TOO_BIG;
	memcpy(d->mask, h + m, 4);
	d->remaining = n;
	d->mask_pos = 0;
	d->hdr_len = 0;
	d->ctl_len = 0;
	if (d->opcode >= 8) {
		d->state = S_CONTROL;
	} else {
		d->in_message = !(h[0] & 0x80);
		d->state = n ? S_PAYLOAD : S_HEADER;
	}
	return 0;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			k = 1, cp = c & 0x1f, min = 0x80;
		else if ((c & 0xf0) == 0xe0)
			k = 2, cp = c & 0x0f, min = 0x800;
		else if ((c & 0xf8) == 0xf0)
			k = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* Codes a peer may send: RFC 6455 7.4.1, the IANA registry, 3000-4999. */
static bool close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

/* A whole control frame is in d->ctl: fills ev, or returns a close code. */
static uint16_t control_event(struct ws_decoder *d, struct ws_event *ev)
{
	ev->data = d->ctl;
	ev->len = d->ctl_len;
	if (d->opcode == WS_OP_PING) {
		ev->type = WS_EV_PING;
	} else if (d->opcode == WS_OP_PONG) {
		ev->type = WS_EV_PONG;
	} else {
		if (d->ctl_len == 1)
			return WS_CLOSE_PROTOCOL;
		ev->type = WS_EV_CLOSE;
		ev->code = WS_CLOSE_NO_STATUS;
		if (d->ctl_len >= 2) {
			ev->code = (uint16_t)(d->ctl[0] << 8 | d->ctl[1]);
			ev->data = d->ctl + 2;
			ev->len = d->ctl_len - 2u;
			if (!close_code_valid(ev->code))
				return WS_CLOSE_PROTOCOL;
			if (!utf8_valid(ev->data, ev->len))
				return WS_CLOSE_INVALID_DATA;
		}
		d->state = S_CLOSED;
	}
	if (ev->len == 0)
		ev->data = NULL;
	return 0;
}

int ws_decode(struct ws_decoder *d, uint8_t *in, size_t len, size_t *consumed,
	      struct ws_event *ev)
{
	size_t i = 0, n;
	uint16_t err = 0;

	*ev = (struct ws_event){ .type = WS_EV_NONE };
	for (;;) {
		switch (d->state) {
		case S_CLOSED:
			*consumed = len;
			return WS_EV_NONE;
		case S_ERROR:
			*consumed = i;
			ev->type = WS_EV_ERROR;
			ev->code = d->err;
			return WS_EV_ERROR;
		case S_HEADER:
			if (i == len)
				goto out;
			d->hdr[d->hdr_len++] = in[i++];
			if (d->hdr_len == 2) {
				unsigned len7 = d->hdr[1] & 0x7f;
				err = check_start(d);
				d->hdr_need = (uint8_t)(6 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0));
			} else if (d->hdr_len == d->hdr_need) {
				err = start_frame(d);
			}
			break;
		case S_PAYLOAD:
			if (i == len)
				goto out;
			n = len - i < d->remaining ? len - i : (size_t)d->remaining;
			unmask(in + i, n, d->mask, d->mask_pos);
			d->mask_pos = (uint8_t)((d->mask_pos + n) & 3);
			d->remaining -= n;
			if (d->remaining == 0)
				d->state = S_HEADER;
			ev->type = WS_EV_DATA;
			ev->data = in + i;
			ev->len = n;
			*consumed = i + n;
			return WS_EV_DATA;
		case S_CONTROL:
			n = len - i < d->remaining ? len - i : (size_t)d->remaining;
			if (n) {
				memcpy(d->ctl + d->ctl_len, in + i, n);
				unmask(d->ctl + d->ctl_len, n, d->mask, d->mask_pos);
			}
			d->mask_pos = (uint8_t)((d->mask_pos + n) & 3);
			d->ctl_len = (uint8_t)(d->ctl_len + n);
			d->remaining -= n;
			i += n;
			if (d->remaining)
				goto out;
			d->state = S_HEADER;
			err = control_event(d, ev);
			if (!err) {
				*consumed = i;
				return ev->type;
			}
			*ev = (struct ws_event){ .type = WS_EV_NONE };
			break;
		}
		if (err) {
			d->state = S_ERROR;
			d->err = err;
		}
	}
out:
	*consumed = i;
	return WS_EV_NONE;
}

/* ---- Encoder ---- */

size_t ws_frame_header(uint8_t hdr[WS_MAX_FRAME_HEADER], enum ws_opcode op, uint64_t len)
{
	hdr[0] = (uint8_t)(0x80 | op);
	if (len < 126) {
		hdr[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		hdr[1] = 126;
		hdr[2] = (uint8_t)(len >> 8);
		hdr[3] = (uint8_t)len;
		return 4;
	}
	hdr[1] = 127;
	for (int k = 0; k < 8; k++)
		hdr[2 + k] = (uint8_t)(len >> (56 - 8 * k));
	return 10;
}

int ws_encode_frame(struct buf *out, enum ws_opcode op, const void *data, size_t len)
{
	uint8_t hdr[WS_MAX_FRAME_HEADER];

	if ((op >= 8 && len > WS_MAX_CONTROL) || len > SIZE_MAX - sizeof(hdr))
		return -1;
	size_t h = ws_frame_header(hdr, op, len);
	if (buf_reserve(out, h + len) < 0)
		return -1;
	buf_append(out, hdr, h);
	buf_append(out, data, len);
	return 0;
}

int ws_encode_close(struct buf *out, uint16_t code, const char *reason, size_t len)
{
	uint8_t body[WS_MAX_CONTROL];

	if (code == WS_CLOSE_NO_STATUS)
		return ws_encode_frame(out, WS_OP_CLOSE, NULL, 0);
	if (len > WS_MAX_CONTROL - 2)
		return -1;
	body[0] = (uint8_t)(code >> 8);
	body[1] = (uint8_t)code;
	if (len)
		memcpy(body + 2, reason, len);
	return ws_encode_frame(out, WS_OP_CLOSE, body, len + 2);
}
