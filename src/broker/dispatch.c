/* dispatch.c - the one switch from packet type to handler; see dispatch.h.
 * Framing and decoding errors are turned into a close by client.c, before a
 * packet gets here; a packet that is well formed but not allowed in this
 * state is closed here; what a packet means is for its handler. */
#include "broker/client.h"
#include "broker/dispatch.h"
#include "broker/handle_ack.h"
#include "broker/handle_connect.h"
#include "broker/handle_publish.h"
#include "broker/handle_subscribe.h"
#include "broker/send.h"
#include "broker/upstream.h"
#include "mqtt/mqtt_codec.h"

int dispatch_packet(struct client *c, const struct mqtt_packet *p)
{
	/* Our connection to an upstream broker: the server's packets. */
	if (c->up)
		return upstream_dispatch(c, p);
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
		return send_pingresp(c);
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
