/*
 * mqtt_frame.c - locate one MQTT packet in a byte buffer; names for logs.
 * See mqtt_codec.h.
 */
#include "mqtt/mqtt_codec.h"

int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_remaining,
		     struct mqtt_frame *f)
{
	if (len == 0)
		return 0;
	if ((buf[0] >> 4) == 0)
		return MQTT_ERR_MALFORMED;

	uint32_t rem = 0;
	size_t i = 1;
	for (;;) {
		if (i >= len)
			return 0;
		uint8_t c = buf[i];
		rem |= (uint32_t)(c & 0x7f) << (7 * (i - 1));
		i++;
		if (!(c & 0x80)) {
			/* [MQTT-1.5.5-1]: a trailing zero group means the
			 * sender did not use the shortest encoding. */
			if (c == 0 && i > 2)
				return MQTT_ERR_MALFORMED;
			break;
		}
		if (i == 5)
			return MQTT_ERR_MALFORMED;
	}
	/* Refuse before buffering the body so a peer cannot make us
	 * accumulate more than the limit. */
	if (rem > max_remaining)
		return MQTT_ERR_TOO_LARGE;
	if (len - i < rem)
		return 0;

	f->type = buf[0] >> 4;
	f->flags = buf[0] & 0x0f;
	f->body = buf + i;
	f->body_len = rem;
	return (int)(i + rem);
}

static const char *const type_names[16] = {
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
	"UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
};

const char *mqtt_type_name(uint8_t type)
{
	return type < 16 ? type_names[type] : "UNKNOWN";
}

const char *mqtt_err_str(int err)
{
	switch (err) {
	case MQTT_OK: return "ok";
	case MQTT_ERR_MALFORMED: return "malformed packet";
	case MQTT_ERR_TOO_LARGE: return "packet too large";
	case MQTT_ERR_PROTOCOL: return "protocol error";
	case MQTT_ERR_UTF8: return "invalid UTF-8 string";
	case MQTT_ERR_TOPIC: return "invalid topic";
	case MQTT_ERR_PROTO_VERSION: return "unsupported protocol version";
	case MQTT_ERR_NOSPACE: return "out of buffer space";
	}
	return "unknown error";
}
