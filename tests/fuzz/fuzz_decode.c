/*
 * fuzz_decode.c - libFuzzer target for the MQTT codec.
 *
 * The input is a byte stream of packets. For each protocol level (3, 4, 5)
 * every whole frame is decoded; whatever decodes is re-encoded, framed and
 * decoded again, and must come back as the same packet. Framing is also
 * checked for consistency: one byte less is "need more", and a lower
 * max_remaining refuses exactly the frames above it.
 *
 * MQTT 5: every property list a packet decodes with is walked with the
 * iterator (mqtt5.h), which must read it to its end, and is rebuilt entry by
 * entry with the writer: the bytes must come back the same (validated lists
 * use shortest varints, so the writer's encoding is the only one). The
 * server's decoding (mqtt_decode_refusing with the server-only types) must
 * agree with mqtt_decode() on every other type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	CHECK(alen == blen);
	CHECK(alen == 0 || memcmp(a, b, alen) == 0);
}

#define SAME_STR(a, b) same_bytes((a).p, (a).len, (b).p, (b).len)
#define SAME_PROPS(a, b) same_bytes((a).p, (a).len, (b).p, (b).len)

/* A fuzz input is at most a few KB, so this bounds any filter list. */
static struct mqtt_str filters[8192];
static uint8_t options[8192];
static uint8_t rebuilt[1 << 16];

/* Walks a validated property list and rebuilds it with the writer. */
static void walk_props(const struct mqtt_props *pr)
{
	struct mqtt_prop_iter it;
	struct mqtt_prop p, first;
	struct mqtt_pw w;
	size_t n = 0;

	mqtt_pw_init(&w, rebuilt, sizeof rebuilt);
	mqtt_props_begin(pr, &it);
	while (mqtt_props_next(&it, &p)) {
		CHECK(p.id != 0);
		if (n++ == 0)
			first = p;
		switch (p.id) {
		case MQTT_P_USER_PROPERTY:
			mqtt_pw_pair(&w, p.str.p, p.str.len, p.str2.p, p.str2.len);
			break;
		case MQTT_P_CONTENT_TYPE: case MQTT_P_RESPONSE_TOPIC:
		case MQTT_P_CORRELATION_DATA: case MQTT_P_ASSIGNED_CLIENT_ID:
		case MQTT_P_AUTH_METHOD: case MQTT_P_AUTH_DATA: case MQTT_P_RESPONSE_INFO:
		case MQTT_P_SERVER_REFERENCE: case MQTT_P_REASON_STRING:
			CHECK(p.value == 0 && p.str2.len == 0);
			mqtt_pw_str(&w, p.id, p.str.p, p.str.len);
			break;
		default:
			CHECK(p.str.len == 0 && p.str2.len == 0);
			mqtt_pw_int(&w, p.id, p.value);
		}
	}
	CHECK(it.p == it.end);
	CHECK(!w.overflow || pr->len > sizeof rebuilt);
	if (!w.overflow)
		same_bytes(pr->p, pr->len, w.p, w.len);
	if (n > 0) {
		struct mqtt_prop f;
		CHECK(mqtt_props_find(pr, first.id, &f));
		CHECK(f.id == first.id && f.value == first.value && f.str.p == first.str.p &&
		      f.str.len == first.str.len);
	}
}

/* Every property list of a decoded packet. */
static void walk_packet(uint8_t level, const struct mqtt_packet *pkt)
{
	switch (pkt->type) {
	case MQTT_CONNECT:
		walk_props(&pkt->u.connect.props);
		walk_props(&pkt->u.connect.will_props);
		break;
	case MQTT_CONNACK:
		walk_props(&pkt->u.connack.props);
		break;
	case MQTT_PUBLISH:
		walk_props(&pkt->u.publish.props);
		break;
	case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
		walk_props(&pkt->u.ack.props);
		break;
	case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE:
		walk_props(&pkt->u.sub.props);
		break;
	case MQTT_SUBACK:
		walk_props(&pkt->u.suback.props);
		break;
	case MQTT_UNSUBACK:
		walk_props(level == 5 ? &pkt->u.suback.props : &pkt->u.ack.props);
		break;
	case MQTT_DISCONNECT: case MQTT_AUTH:
		walk_props(&pkt->u.disconnect.props);
		break;
	}
}

/* Returns 1 once the packet is encoded into b; aborts if the encoder fails. */
static int encode(struct buf *b, uint8_t level, const struct mqtt_packet *pkt)
{
	int rc;

	switch (pkt->type) {
	case MQTT_CONNECT:
		rc = mqtt_encode_connect(b, &pkt->u.connect);
		break;
	case MQTT_CONNACK:
		rc = mqtt_encode_connack(b, level, &pkt->u.connack);
		break;
	case MQTT_PUBLISH:
		rc = mqtt_encode_publish(b, level, &pkt->u.publish);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		rc = mqtt_encode_ack(b, level, pkt->type, &pkt->u.ack);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE: {
		struct mqtt_topic_iter it;
		uint16_t n = 0;
		mqtt_topics_begin(&pkt->u.sub, &it);
		while (mqtt_topics_next(&it, &filters[n], &options[n]))
			n++;
		CHECK(n == pkt->u.sub.count);
		rc = mqtt_encode_subscribe_props(b, level, pkt->type, pkt->u.sub.packet_id,
						 &pkt->u.sub.props, filters, options, n);
		break;
	}
	case MQTT_SUBACK:
		rc = mqtt_encode_suback(b, level, pkt->type, &pkt->u.suback);
		break;
	case MQTT_UNSUBACK:
		rc = level == 5 ? mqtt_encode_suback(b, level, pkt->type, &pkt->u.suback)
				: mqtt_encode_ack(b, level, pkt->type, &pkt->u.ack);
		break;
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		rc = mqtt_encode_simple(b, level, pkt->type);
		break;
	case MQTT_DISCONNECT:
		rc = mqtt_encode_disconnect(b, level, &pkt->u.disconnect);
		break;
	case MQTT_AUTH:
		rc = mqtt_encode_auth(b, &pkt->u.disconnect);
		break;
	default:
		abort();
	}
	CHECK(rc == MQTT_OK);
	return 1;
}

static void compare_topics(const struct mqtt_subscribe *a, const struct mqtt_subscribe *b)
{
	struct mqtt_topic_iter ia, ib;
	struct mqtt_str fa, fb;
	uint8_t oa, ob;

	CHECK(a->packet_id == b->packet_id && a->count == b->count);
	CHECK(a->with_options == b->with_options);
	mqtt_topics_begin(a, &ia);
	mqtt_topics_begin(b, &ib);
	while (mqtt_topics_next(&ia, &fa, &oa)) {
		CHECK(mqtt_topics_next(&ib, &fb, &ob));
		SAME_STR(fa, fb);
		CHECK(oa == ob);
	}
	CHECK(!mqtt_topics_next(&ib, &fb, &ob));
}

static void compare_ack(const struct mqtt_ack *a, const struct mqtt_ack *b)
{
	CHECK(a->packet_id == b->packet_id && a->reason == b->reason);
	SAME_PROPS(a->props, b->props);
}

static void compare(uint8_t level, const struct mqtt_packet *a, const struct mqtt_packet *b)
{
	CHECK(a->type == b->type);
	switch (a->type) {
	case MQTT_CONNECT: {
		const struct mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
		CHECK(x->level == y->level && x->clean == y->clean && x->will == y->will);
		CHECK(x->will_qos == y->will_qos && x->will_retain == y->will_retain);
		CHECK(x->has_username == y->has_username && x->has_password == y->has_password);
		CHECK(x->keepalive == y->keepalive);
		SAME_STR(x->client_id, y->client_id);
		SAME_STR(x->will_topic, y->will_topic);
		SAME_STR(x->will_payload, y->will_payload);
		SAME_STR(x->username, y->username);
		SAME_STR(x->password, y->password);
		SAME_PROPS(x->props, y->props);
		SAME_PROPS(x->will_props, y->will_props);
		break;
	}
	case MQTT_CONNACK:
		CHECK(a->u.connack.session_present == b->u.connack.session_present);
		CHECK(a->u.connack.rc == b->u.connack.rc);
		SAME_PROPS(a->u.connack.props, b->u.connack.props);
		break;
	case MQTT_PUBLISH: {
		const struct mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
		CHECK(x->qos == y->qos && x->dup == y->dup && x->retain == y->retain);
		CHECK(x->packet_id == y->packet_id);
		SAME_STR(x->topic, y->topic);
		SAME_PROPS(x->props, y->props);
		same_bytes(x->payload, x->payload_len, y->payload, y->payload_len);
		break;
	}
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		compare_topics(&a->u.sub, &b->u.sub);
		SAME_PROPS(a->u.sub.props, b->u.sub.props);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		if (a->type == MQTT_UNSUBACK && level != 5) {
			compare_ack(&a->u.ack, &b->u.ack);
			break;
		}
		CHECK(a->u.suback.packet_id == b->u.suback.packet_id);
		SAME_PROPS(a->u.suback.props, b->u.suback.props);
		same_bytes(a->u.suback.codes, a->u.suback.count,
			   b->u.suback.codes, b->u.suback.count);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		compare_ack(&a->u.ack, &b->u.ack);
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		CHECK(a->u.disconnect.reason == b->u.disconnect.reason);
		SAME_PROPS(a->u.disconnect.props, b->u.disconnect.props);
		break;
	}
}

static void roundtrip(uint8_t level, const struct mqtt_packet *pkt)
{
	struct buf b;
	struct mqtt_frame f;
	struct mqtt_packet again;

	buf_init(&b);
	if (encode(&b, level, pkt)) {
		int n = mqtt_frame_parse(buf_head(&b), buf_used(&b), MQTT_MAX_REMAINING, &f);
		CHECK(n > 0 && (size_t)n == buf_used(&b));
		CHECK(mqtt_decode(&f, level, &again) == MQTT_OK);
		compare(level, pkt, &again);
		if (pkt->type == MQTT_PUBLISH && pkt->u.publish.props.len == 0)
			CHECK(buf_used(&b) == mqtt_publish_size(level, pkt->u.publish.topic.len,
								pkt->u.publish.payload_len,
								pkt->u.publish.qos));
		if (pkt->type == MQTT_PUBLISH)
			CHECK(buf_used(&b) == mqtt_publish_size_props(level, pkt->u.publish.topic.len,
								      pkt->u.publish.props.len,
								      pkt->u.publish.payload_len,
								      pkt->u.publish.qos));
		if (pkt->type == MQTT_PUBLISH && pkt->u.publish.props.len > 0) {
			/* props_more: the same list split in two encodes the same */
			struct mqtt_publish split = pkt->u.publish;
			uint32_t cut = split.props.len / 2;
			struct buf b2;
			split.props_more = (struct mqtt_props){ split.props.p + cut,
								split.props.len - cut };
			split.props.len = cut;
			buf_init(&b2);
			CHECK(mqtt_encode_publish(&b2, level, &split) == MQTT_OK);
			same_bytes(buf_head(&b), buf_used(&b), buf_head(&b2), buf_used(&b2));
			buf_release(&b2);
		}
	}
	buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (uint8_t level = 3; level <= 5; level++) {
		size_t off = 0;
		while (off < size) {
			struct mqtt_frame f, g;
			struct mqtt_packet pkt;
			int n = mqtt_frame_parse(data + off, size - off, MQTT_MAX_REMAINING, &f);
			if (n <= 0)
				break;
			CHECK((size_t)n <= size - off && f.type >= 1 && f.type <= 15);
			CHECK(mqtt_frame_parse(data + off, (size_t)n - 1, MQTT_MAX_REMAINING, &g) == 0);
			int small = mqtt_frame_parse(data + off, (size_t)n, 64, &g);
			CHECK(f.body_len > 64 ? small == MQTT_ERR_TOO_LARGE : small == n);

			int rc = mqtt_decode(&f, level, &pkt);
			CHECK(rc <= 0 && rc >= MQTT_ERR_PROTO_VERSION);
			CHECK(pkt.type == f.type);
			if (rc == MQTT_OK) {
				walk_packet(level, &pkt);
				roundtrip(level, &pkt);
			}
			/* the server's view: refused types are protocol errors at
			 * level 5, the rest decode as above */
			struct mqtt_packet srv;
			unsigned refused = MQTT_SERVER_ONLY_TYPES | MQTT_TYPE_BIT(MQTT_AUTH);
			int rs = mqtt_decode_refusing(&f, level, refused, &srv);
			CHECK(srv.type == f.type);
			if (level == 5 && (refused & MQTT_TYPE_BIT(f.type)))
				CHECK(rs == MQTT_ERR_PROTOCOL);
			else
				CHECK(rs == rc);
			off += (size_t)n;
		}
	}
	return 0;
}
