/* dispatch.c - the one switch from packet type to handler; see client.h.
 * Protocol errors become a close here and nowhere else. */
#include "broker/client.h"
#include "mqtt/mqtt_codec.h"
#include "broker/worker.h"

int dispatch_packet(struct client *c, const struct mqtt_packet *p)
{
	if (c->state == CL_NEW && p->type != MQTT_CONNECT) {
		client_close(c, "first packet not CONNECT", false);
		return -1;
	}
	switch (p->type) {
	case MQTT_CONNECT:
		return handle_connect(c, p);
	case MQTT_PUBLISH:
		return handle_publish(c, p);
	case MQTT_PUBACK:
		return handle_puback(c, p);
	case MQTT_PUBREC:
		return handle_pubrec(c, p);
	case MQTT_PUBREL:
		return handle_pubrel(c, p);
	case MQTT_PUBCOMP:
		return handle_pubcomp(c, p);
	case MQTT_SUBSCRIBE:
		return handle_subscribe(c, p);
	case MQTT_UNSUBSCRIBE:
		return handle_unsubscribe(c, p);
	case MQTT_PINGREQ:
		mqtt_encode_simple(&c->obuf, c->level, MQTT_PINGRESP);
		STAT_INC(c->w, pkts_out[MQTT_PINGRESP]);
		client_mark_output(c);
		return 0;
	case MQTT_DISCONNECT:
		c->graceful = true;
		client_close(c, "client disconnected", false);
		return -1;
	default:
		/* CONNACK, SUBACK, UNSUBACK, PINGRESP, AUTH: a server never receives them. */
		client_close(c, "packet type not allowed from a client", true);
		return -1;
	}
}
