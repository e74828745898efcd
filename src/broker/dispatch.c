/* dispatch.c - the one switch from packet type to handler; see dispatch.h.
 * Framing and decoding errors are turned into a close by client.c, before a
 * packet gets here; a packet that is well formed but not allowed in this
 * state is closed here; what a packet means is for its handler. */
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/dispatch.h"
#include "broker/handle_ack.h"
#include "broker/handle_connect.h"
#include "broker/handle_publish.h"
#include "broker/handle_subscribe.h"
#include "broker/send.h"
#include "broker/upstream.h"
#include "broker/worker.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* DISCONNECT from the client. 3.1.1: the will is discarded. MQTT 5: only
 * reason 0x00 discards it [MQTT-3.14.4-3]; 0x04 (Disconnect with Will
 * Message) and the error codes keep it (5.0 3.1.2.5), after its Will Delay
 * Interval. A Session Expiry Interval replaces the CONNECT's, unless that
 * was 0 (section 3.14.2.2.2): then it is a protocol error. */
static int handle_disconnect(struct client *c, const struct mqtt_disconnect *d)
{
	struct mqtt_prop pr;

	if (c->level == 5 && mqtt_props_find(&d->props, MQTT_P_SESSION_EXPIRY, &pr)) {
		if ((c->m5 & CL5_EXPIRY_ZERO) && pr.value != 0) {
			client_close_rc(c, "DISCONNECT sets a Session Expiry after CONNECT's 0", true,
					MQTT_RC_PROTOCOL_ERROR);
			return -1;
		}
		uint32_t cap = LIM(c->w->br, max_session_expiry);
		c->session_expiry = pr.value < cap ? pr.value : cap;
	}
	c->graceful = c->level != 5 || d->reason == MQTT_RC_SUCCESS;
	client_close(c, c->level == 5 && d->reason == MQTT_RC_DISCONNECT_WITH_WILL
				? "client disconnected with will"
				: "client disconnected",
		     !c->graceful);
	return -1;
}

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
		return handle_disconnect(c, &p->u.disconnect);
	case MQTT_AUTH:
		/* kafkagate never starts enhanced authentication (it refuses an
		 * Authentication Method at CONNECT), so no AUTH is ever expected
		 * (5.0 4.12: AUTH only within an exchange the CONNECT began). */
		client_close_rc(c, "AUTH without enhanced authentication", true,
				MQTT_RC_PROTOCOL_ERROR);
		return -1;
	default:
		/* CONNACK, SUBACK, UNSUBACK, PINGRESP: a server never receives them. */
		client_close_rc(c, "packet type not allowed from a client", true,
				MQTT_RC_PROTOCOL_ERROR);
		return -1;
	}
}
