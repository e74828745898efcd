/*
 * ws_handshake.c - the WebSocket opening handshake (RFC 6455 section 4):
 * parsing the client's upgrade request, the 101 answer with
 * Sec-WebSocket-Accept, and the refusals. The frame decoder and encoder are
 * in ws.c; the contract for both is ws.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "core/http_parse.h"
#include "transport/ws.h"

/* The next element of a comma list ("a, b,,c"), blanks trimmed, empty ones
 * skipped. Returns false at the end. */
static bool list_next(const char *v, size_t len, size_t *pos, const char **el, size_t *el_len)
{
	size_t i = *pos;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t start = i, end = i;
		while (i < len && v[i] != ',') {
			if (v[i] != ' ' && v[i] != '\t')
				end = i + 1;
			i++;
		}
		if (end > start) {
			*el = v + start;
			*el_len = end - start;
			*pos = i;
			return true;
		}
	}
	*pos = i;
	return false;
}

static bool name_is(const struct http_header *h, const char *name)
{
	return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* Whether any header called name lists tok (case-insensitive). */
static bool has_token(const struct http_request *req, const char *name, const char *tok)
{
	size_t tlen = strlen(tok);

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_header *h = &req->headers[i];
		const char *el;
		size_t el_len, pos = 0;
		while (name_is(h, name) && list_next(h->value, h->value_len, &pos, &el, &el_len))
			if (el_len == tlen && strncasecmp(el, tok, tlen) == 0)
				return true;
	}
	return false;
}

/* Subprotocol tokens are case-sensitive (RFC 6455 section 4.1). Returns -1
 * when protocols are offered but neither MQTT one. */
static int choose_proto(const struct http_request *req, enum ws_proto *proto)
{
	bool offered = false, mqtt = false, v31 = false;

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_header *h = &req->headers[i];
		const char *el;
		size_t el_len, pos = 0;
		while (name_is(h, "Sec-WebSocket-Protocol") &&
		       list_next(h->value, h->value_len, &pos, &el, &el_len)) {
			offered = true;
			mqtt |= el_len == 4 && memcmp(el, "mqtt", 4) == 0;
			v31 |= el_len == 8 && memcmp(el, "mqttv3.1", 8) == 0;
		}
	}
	*proto = mqtt ? WS_PROTO_MQTT : v31 ? WS_PROTO_MQTTV31 : WS_PROTO_NONE;
	return offered && !mqtt && !v31 ? -1 : 0;
}

static int b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Canonical base64 of exactly 16 bytes: 22 characters, the last one with
 * its 4 padding bits zero, then "==". */
static bool key_valid(const char *k, size_t len)
{
	if (len != WS_KEY_LEN || k[22] != '=' || k[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (b64_value(k[i]) < 0)
			return false;
	return (b64_value(k[21]) & 0x0f) == 0;
}

int ws_handshake_parse(const uint8_t *in, size_t len, const char *path,
		       struct ws_handshake *out)
{
	struct http_request req;
	const char *v;
	size_t vlen;

	int r = http_parse_request((const char *)in, len < WS_MAX_HEAD ? len : WS_MAX_HEAD, &req);
	if (r == 0)
		return len >= WS_MAX_HEAD ? WS_HS_TOO_LARGE : 0;
	if (r < 0 || req.method_len != 3 || memcmp(req.method, "GET", 3) != 0 || req.minor != 1)
		return WS_HS_BAD_REQUEST;
	if (req.path_len != strlen(path) || memcmp(req.path, path, req.path_len) != 0)
		return WS_HS_NOT_FOUND;
	if (!has_token(&req, "Upgrade", "websocket") || !has_token(&req, "Connection", "upgrade"))
		return WS_HS_UPGRADE_REQUIRED;
	v = http_header_get(&req, "Sec-WebSocket-Version", &vlen);
	if (!v || vlen != 2 || memcmp(v, "13", 2) != 0)
		return WS_HS_UPGRADE_REQUIRED;
	if (!http_header_get(&req, "Host", &vlen))
		return WS_HS_BAD_REQUEST;
	v = http_header_get(&req, "Sec-WebSocket-Key", &vlen);
	if (!v || !key_valid(v, vlen))
		return WS_HS_BAD_REQUEST;
	memcpy(out->key, v, WS_KEY_LEN);
	out->key[WS_KEY_LEN] = '\0';
	if (choose_proto(&req, &out->proto) < 0)
		return WS_HS_BAD_REQUEST;
	return r;
}

int ws_accept_key(const char *key, char accept[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char cat[WS_KEY_LEN + sizeof(guid)];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t klen = strlen(key);

	if (klen > WS_KEY_LEN)
		return -1;
	memcpy(cat, key, klen);
	memcpy(cat + klen, guid, sizeof(guid) - 1);
	if (!EVP_Digest(cat, klen + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
		ERR_clear_error(); /* this thread's TLS reads need it empty (tls.h) */
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)accept, md, 20); /* 28 characters and a NUL */
	return 0;
}

int ws_handshake_response(const struct ws_handshake *hs, struct buf *out)
{
	static const char *const protos[] = { "", "mqtt", "mqttv3.1" };
	char accept[29], head[256];

	if (ws_accept_key(hs->key, accept) < 0)
		return -1;
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 101 Switching Protocols\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: %s\r\n"
			 "%s%s%s"
			 "\r\n",
			 accept, hs->proto != WS_PROTO_NONE ? "Sec-WebSocket-Protocol: " : "",
			 protos[hs->proto], hs->proto != WS_PROTO_NONE ? "\r\n" : "");
	return buf_append(out, head, (size_t)n);
}

int ws_handshake_error(int status, struct buf *out)
{
	const char *reason, *extra = "", *conn = "close";
	char head[256];

	switch (status) {
	case 400: reason = "Bad Request"; break;
	case 404: reason = "Not Found"; break;
	case 426:
		reason = "Upgrade Required";
		extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
		conn = "Upgrade, close"; /* RFC 9110: Upgrade goes with this option */
		break;
	case 431: reason = "Request Header Fields Too Large"; break;
	default: return -1;
	}
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\n%sConnection: %s\r\nContent-Length: 0\r\n\r\n",
			 status, reason, extra, conn);
	return buf_append(out, head, (size_t)n);
}
