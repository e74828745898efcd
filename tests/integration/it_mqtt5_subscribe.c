/*
 * it_mqtt5_subscribe.c - SUBSCRIBE, UNSUBSCRIBE and delivery to MQTT 5.0
 * clients, byte by byte over raw sockets: subscription options (No Local,
 * Retain As Published, Retain Handling), Subscription Identifiers (one,
 * several overlapping, none), SUBACK and UNSUBACK reason codes, Receive
 * Maximum toward the client, Maximum Packet Size, Message Expiry from the
 * offline queue and the retained store, and the publisher's properties
 * forwarded to a 5.0 subscriber but not to a 3.1.1 one, and outbound
 * topic aliases. Subscription identifiers and aliases are also read with
 * paho.mqtt.c's MQTT 5 API, and the options with Python paho-mqtt's MQTTv5
 * client (m5sub_paho.py).
 *
 * The packets are built and parsed here by hand (as rawmqtt.c does for
 * 3.1.1) so that the test does not check the codec with itself.
 *
 * A PINGREQ after a SUBSCRIBE (or a CONNECT) is a fence: retained or queued
 * messages are written before the server reads it, so what arrives before
 * the PINGRESP is everything it had to send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw.h"
#include "itutil.h"
#include "rawmqtt.h"

#define WAIT_MS 5000
#define QUIET_MS 400

static struct gw g;

/* ---- building level-5 packets -------------------------------------- */

struct wb {
	uint8_t b[8192];
	size_t n;
};

static void w_u8(struct wb *w, uint8_t v) { w->b[w->n++] = v; }
static void w_u16(struct wb *w, uint16_t v) { w_u8(w, (uint8_t)(v >> 8)); w_u8(w, (uint8_t)v); }
static void w_u32(struct wb *w, uint32_t v) { w_u16(w, (uint16_t)(v >> 16)); w_u16(w, (uint16_t)v); }
static void w_bytes(struct wb *w, const void *p, size_t n) { memcpy(w->b + w->n, p, n); w->n += n; }
static void w_str(struct wb *w, const char *s) { w_u16(w, (uint16_t)strlen(s)); w_bytes(w, s, strlen(s)); }
static void w_varint(struct wb *w, uint32_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		w_u8(w, v ? (uint8_t)(c | 0x80) : c);
	} while (v);
}

/* Sends first_byte, the remaining length and body. */
static void send_pkt(int fd, uint8_t first, const struct wb *body)
{
	struct wb p = { .n = 0 };
	w_u8(&p, first);
	w_varint(&p, (uint32_t)body->n);
	w_bytes(&p, body->b, body->n);
	assert_int_equal(raw_send(fd, p.b, p.n), 0);
}

/* Appends a property list (its length, then the bytes of props). */
static void w_props(struct wb *w, const struct wb *props)
{
	w_varint(w, (uint32_t)(props ? props->n : 0));
	if (props)
		w_bytes(w, props->b, props->n);
}

struct conn5 {
	const char *id;
	bool clean;
	uint32_t session_expiry;   /* 0: property left out */
	uint16_t recv_max;         /* 0: left out */
	uint32_t max_packet;       /* 0: left out */
	uint16_t alias_max;        /* Topic Alias Maximum; 0: left out */
};

/* A level-5 connection; returns the fd after CONNACK 0 (its session
 * present flag into *present, may be NULL). */
static int connect5(const struct conn5 *k, bool *present)
{
	int fd = raw_connect_tcp(g.port);
	struct wb b = { .n = 0 }, pr = { .n = 0 };
	uint8_t in[512];

	assert_true(fd >= 0);
	w_str(&b, "MQTT");
	w_u8(&b, 5);
	w_u8(&b, k->clean ? 0x02 : 0x00);
	w_u16(&b, 0);
	if (k->session_expiry) {
		w_u8(&pr, 0x11);
		w_u32(&pr, k->session_expiry);
	}
	if (k->recv_max) {
		w_u8(&pr, 0x21);
		w_u16(&pr, k->recv_max);
	}
	if (k->max_packet) {
		w_u8(&pr, 0x27);
		w_u32(&pr, k->max_packet);
	}
	if (k->alias_max) {
		w_u8(&pr, 0x22);
		w_u16(&pr, k->alias_max);
	}
	w_props(&b, &pr);
	w_str(&b, k->id);
	send_pkt(fd, 0x10, &b);
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	if (n < 5 || in[0] != 0x20 || in[3] != 0)
		print_error("%s: no CONNACK 0 (%d bytes, rc 0x%02x)\n", k->id, n, n >= 4 ? in[3] : 0);
	assert_true(n >= 5 && in[0] == 0x20 && in[3] == 0);
	if (present)
		*present = in[2] & 1;
	return fd;
}

static int connect5_clean(const char *id)
{
	struct conn5 k = { .id = id, .clean = true };
	return connect5(&k, NULL);
}

/* SUBSCRIBE (level 5) of n filters with their option bytes, Subscription
 * Identifier subid (0: none). The SUBACK's codes go to codes[0..n). */
static void subscribe5(int fd, uint16_t pid, uint32_t subid, const char *const *filters,
		       const uint8_t *opts, size_t n, uint8_t *codes)
{
	struct wb b = { .n = 0 }, pr = { .n = 0 };
	uint8_t in[512];

	w_u16(&b, pid);
	if (subid) {
		w_u8(&pr, 0x0b);
		w_varint(&pr, subid);
	}
	w_props(&b, &pr);
	for (size_t i = 0; i < n; i++) {
		w_str(&b, filters[i]);
		w_u8(&b, opts[i]);
	}
	send_pkt(fd, 0x82, &b);
	int len = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	/* 90 rem pid(2) props-len(1, empty) codes */
	if (len != (int)(5 + n) || in[0] != 0x90 || in[2] != pid >> 8 || in[3] != (pid & 0xff) ||
	    in[4] != 0)
		print_error("SUBACK: %d bytes, first 0x%02x\n", len, len > 0 ? in[0] : 0);
	assert_int_equal(len, (int)(5 + n));
	assert_int_equal(in[0], 0x90);
	assert_int_equal(in[4], 0);
	memcpy(codes, in + 5, n);
}

/* One filter; asserts the SUBACK code. */
static void sub1(int fd, uint16_t pid, uint32_t subid, const char *filter, uint8_t opts,
		 uint8_t want)
{
	uint8_t code;
	subscribe5(fd, pid, subid, &filter, &opts, 1, &code);
	if (code != want)
		print_error("SUBACK for %s: 0x%02x, wanted 0x%02x\n", filter, code, want);
	assert_int_equal(code, want);
}

static void unsubscribe5(int fd, uint16_t pid, const char *const *filters, size_t n,
			 uint8_t *codes)
{
	struct wb b = { .n = 0 };
	uint8_t in[512];

	w_u16(&b, pid);
	w_props(&b, NULL);
	for (size_t i = 0; i < n; i++)
		w_str(&b, filters[i]);
	send_pkt(fd, 0xA2, &b);
	int len = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_int_equal(len, (int)(5 + n));
	assert_int_equal(in[0], 0xB0);
	assert_int_equal(in[4], 0);
	memcpy(codes, in + 5, n);
}

/* Sends a PUBLISH at level 5 with the property bytes props (may be NULL). */
static void send_publish5(int fd, const char *topic, const char *payload, uint8_t qos,
			  bool retain, uint16_t pid, const struct wb *props)
{
	struct wb b = { .n = 0 };

	w_str(&b, topic);
	if (qos)
		w_u16(&b, pid);
	w_props(&b, props);
	w_bytes(&b, payload, strlen(payload));
	send_pkt(fd, (uint8_t)(0x30 | qos << 1 | retain), &b);
}

/* send_publish5(); QoS 1/2 then wait for their acknowledgement (PUBACK;
 * PUBREC, PUBREL, PUBCOMP), which must be the next packet. */
static void publish5(int fd, const char *topic, const char *payload, uint8_t qos, bool retain,
		     uint16_t pid, const struct wb *props)
{
	uint8_t in[512];

	send_publish5(fd, topic, payload, qos, retain, pid, props);
	if (qos == 0)
		return;
	int n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(in[0], qos == 1 ? 0x40 : 0x50);
	if (qos == 2) {
		assert_int_equal(itutil_send_ack(fd, 0x62, pid), 0);
		n = raw_recv_packet(fd, in, sizeof(in), WAIT_MS);
		assert_true(n >= 4);
		assert_int_equal(in[0], 0x70);
	}
}

/* ---- reading level-5 packets --------------------------------------- */

struct pub5 {
	uint8_t first;     /* 0 when the packet was a PINGRESP */
	uint8_t qos;
	bool retain, dup;
	uint16_t pid;
	char topic[256];
	char payload[8192];
	size_t payload_len;
	uint32_t subids[16];
	size_t n_subids;
	bool has_expiry;
	uint32_t expiry;
	uint16_t alias;    /* Topic Alias; 0 when absent */
	uint8_t props[2048];   /* the whole property list as received */
	size_t props_len;
};

static uint32_t r_varint(const uint8_t **p)
{
	uint32_t v = 0;
	for (int shift = 0;; shift += 7) {
		uint8_t c = *(*p)++;
		v |= (uint32_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
}

static uint16_t r_u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Parses a level-5 PUBLISH body into *o; the properties it knows. */
static void parse_pub5(const uint8_t *b, int n, struct pub5 *o)
{
	const uint8_t *p = b + 1, *end = b + n;
	(void)r_varint(&p); /* remaining length */
	o->first = b[0];
	o->qos = (b[0] >> 1) & 3;
	o->retain = b[0] & 1;
	o->dup = b[0] & 8;
	uint16_t tl = r_u16(p);
	p += 2;
	assert_true(tl < sizeof(o->topic));
	memcpy(o->topic, p, tl);
	o->topic[tl] = 0;
	p += tl;
	if (o->qos) {
		o->pid = r_u16(p);
		p += 2;
	}
	uint32_t pl = r_varint(&p);
	assert_true(pl <= sizeof(o->props) && p + pl <= end);
	memcpy(o->props, p, pl);
	o->props_len = pl;
	const uint8_t *pe = p + pl;
	while (p < pe) {
		uint8_t id = *p++;
		switch (id) {
		case 0x01: p += 1; break;
		case 0x02: o->has_expiry = true; o->expiry = (uint32_t)r_u16(p) << 16 | r_u16(p + 2); p += 4; break;
		case 0x03: case 0x08: case 0x09: p += 2 + r_u16(p); break;
		case 0x0b:
			assert_true(o->n_subids < 16);
			o->subids[o->n_subids++] = r_varint(&p);
			break;
		case 0x23: o->alias = r_u16(p); p += 2; break;
		case 0x26: p += 2 + r_u16(p); p += 2 + r_u16(p); break;
		default: fail_msg("unexpected property 0x%02x in PUBLISH", id);
		}
	}
	assert_true(p == pe);
	o->payload_len = (size_t)(end - p);
	assert_true(o->payload_len < sizeof(o->payload));
	memcpy(o->payload, p, o->payload_len);
	o->payload[o->payload_len] = 0;
}

/* Next packet: 1 and *o for a PUBLISH, 0 for PINGRESP; anything else
 * fails. Does not acknowledge. */
static int recv5(int fd, struct pub5 *o)
{
	static uint8_t b[16384];
	int n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);

	memset(o, 0, sizeof(*o));
	if (n == 2 && b[0] == 0xD0)
		return 0;
	if (n <= 0 || (b[0] & 0xF0) != 0x30)
		print_error("expected PUBLISH or PINGRESP: %d bytes, first 0x%02x\n", n,
			    n > 0 ? b[0] : 0);
	assert_true(n > 0 && (b[0] & 0xF0) == 0x30);
	parse_pub5(b, n, o);
	return 1;
}

/* The next packet must be a PUBLISH on topic with payload. */
static void expect_pub5(int fd, const char *topic, const char *payload, struct pub5 *o)
{
	int r = recv5(fd, o);
	if (r != 1 || strcmp(o->topic, topic) != 0 || strcmp(o->payload, payload) != 0)
		print_error("wanted %s \"%s\", got %s \"%s\"\n", topic, payload,
			    r ? o->topic : "PINGRESP", r ? o->payload : "");
	assert_int_equal(r, 1);
	assert_string_equal(o->topic, topic);
	assert_string_equal(o->payload, payload);
}

static void ack5(int fd, const struct pub5 *o)
{
	if (o->qos == 1)
		assert_int_equal(itutil_send_ack(fd, 0x40, o->pid), 0);
	else if (o->qos == 2) {
		assert_int_equal(itutil_send_ack(fd, 0x50, o->pid), 0);
		uint8_t b[64];
		int n = raw_recv_packet(fd, b, sizeof(b), WAIT_MS);
		assert_true(n >= 4 && b[0] == 0x62);
		assert_int_equal(itutil_send_ack(fd, 0x70, o->pid), 0);
	}
}

/* Sends PINGREQ; the next packet must be PINGRESP (nothing else pending). */
static void fence_empty(int fd)
{
	struct pub5 o;
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
	int r = recv5(fd, &o);
	if (r)
		print_error("unexpected PUBLISH %s \"%s\"\n", o.topic, o.payload);
	assert_int_equal(r, 0);
}

static void ping(int fd)
{
	assert_int_equal(raw_send_hex(fd, "C0 00"), 0);
}

static bool has_subid(const struct pub5 *o, uint32_t id)
{
	for (size_t i = 0; i < o->n_subids; i++)
		if (o->subids[i] == id)
			return true;
	return false;
}

static struct wb expiry_props(uint32_t s)
{
	struct wb p = { .n = 0 };
	w_u8(&p, 0x02);
	w_u32(&p, s);
	return p;
}

/* Waits until the gateway has seen the connection of client id close. A
 * close(2) here is only noticed when the gateway reads the EOF, on that
 * connection's worker, unordered with a PUBLISH another worker handles
 * meanwhile: a message published before then is still sent to the old
 * connection, so it is in flight, not queued, and comes again with DUP
 * (as it must, [MQTT-3.3.1-1]). Tests that want it queued wait for this. */
static void wait_closed(const char *id)
{
	char needle[128];
	snprintf(needle, sizeof(needle), "conn close client=\"%s\" ", id);
	assert_true(gw_log_wait(&g, needle, WAIT_MS));
}

/* ---- fixtures -------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	return gw_start(&g, "limits = { max_inflight = 8; };\n");
}

static int group_teardown(void **state)
{
	(void)state;
	gw_stop(&g);
	return 0;
}

/* ---- SUBACK / UNSUBACK ---------------------------------------------- */

/* Granted QoS per filter; 0x8F for a filter over the topic limits, 0x97
 * past limits.max_subscriptions, 0x87 for a filter the ACL denies; 3.1.1
 * gets 0x80 for the same refusals. Runs on its own gateway (small limits,
 * an ACL). */
static void test_suback_codes(void **state)
{
	(void)state;
	struct gw keep = g;
	char dir[] = "/tmp/it-m5sub-XXXXXX", acl[300], extra[1024];

	assert_non_null(mkdtemp(dir));
	snprintf(acl, sizeof(acl), "%s/acl", dir);
	FILE *f = fopen(acl, "w");
	assert_non_null(f);
	fputs("topic readwrite ok/#\ntopic read deep/#\n", f);
	fclose(f);
	snprintf(extra, sizeof(extra),
		 "limits = { max_subscriptions = 4; max_topic_levels = 4; };\n"
		 "auth = { acl_file = \"%s\"; allow_anonymous = true; };\n", acl);
	memset(&g, 0, sizeof(g));
	assert_int_equal(gw_start(&g, extra), 0);

	int fd = connect5_clean("m5-suback");
	const char *fl[] = { "ok/a", "ok/b/+", "ok/c/#", "deep/1/2/3/4/5", "secret/x", "ok/d",
			     "ok/e" };
	uint8_t opts[] = { 0, 1, 2, 1, 1, 1, 1 };
	uint8_t codes[7];
	subscribe5(fd, 1, 0, fl, opts, 7, codes);
	assert_int_equal(codes[0], 0x00);
	assert_int_equal(codes[1], 0x01);
	assert_int_equal(codes[2], 0x02);
	assert_int_equal(codes[3], 0x8F); /* over max_topic_levels */
	assert_int_equal(codes[4], 0x87); /* the ACL gives nothing under secret/ */
	assert_int_equal(codes[5], 0x01);
	assert_int_equal(codes[6], 0x97); /* a fifth subscription */
	/* Replacing an existing one is no new subscription: granted. */
	sub1(fd, 2, 0, "ok/a", 2, 0x02);
	close(fd);

	/* 3.1.1: the same refusals are 0x80. */
	int fd4 = itutil_connect(g.port, "m4-suback", true, 0, NULL);
	assert_true(fd4 >= 0);
	const int okf[] = { 0, 1, 2, 5 }, deny[] = { 3, 4, 6 };
	for (int i = 0; i < 4; i++)
		assert_int_equal(itutil_subscribe(fd4, (uint16_t)(1 + i), fl[okf[i]], opts[okf[i]]), 0);
	for (int i = 0; i < 3; i++) {
		uint8_t pkt[256];
		int n = raw_build_subscribe(pkt, sizeof(pkt), 4, 9, fl[deny[i]], 1);
		assert_int_equal(raw_send(fd4, pkt, (size_t)n), 0);
		n = raw_recv_packet(fd4, pkt, sizeof(pkt), WAIT_MS);
		assert_int_equal(n, 5);
		assert_int_equal(pkt[0], 0x90);
		assert_int_equal(pkt[4], 0x80);
	}
	close(fd4);

	gw_stop(&g);
	unlink(acl);
	rmdir(dir);
	g = keep;
}

/* UNSUBACK per filter: 0x00 for a subscription that existed, 0x11 for one
 * that did not; 3.1.1 still gets the 4-byte UNSUBACK. */
static void test_unsuback_codes(void **state)
{
	(void)state;
	int fd = connect5_clean("m5-unsub");
	sub1(fd, 1, 0, "un/a", 1, 1);
	const char *fl[] = { "un/a", "un/b", "un/a" };
	uint8_t codes[3];
	unsubscribe5(fd, 2, fl, 3, codes);
	assert_int_equal(codes[0], 0x00);
	assert_int_equal(codes[1], 0x11);
	assert_int_equal(codes[2], 0x11); /* gone with the first */

	/* Really gone: nothing arrives for it. */
	int pub = connect5_clean("m5-unsub-pub");
	publish5(pub, "un/a", "x", 0, false, 0, NULL);
	fence_empty(fd);
	close(pub);
	close(fd);

	int fd4 = itutil_connect(g.port, "m4-unsub", true, 0, NULL);
	uint8_t pkt[64];
	int n = raw_build_unsubscribe(pkt, sizeof(pkt), 4, 3, "never/subscribed");
	assert_int_equal(raw_send(fd4, pkt, (size_t)n), 0);
	assert_int_equal(itutil_expect_ack(fd4, 0xB0, 3, WAIT_MS), 0);
	close(fd4);
}

/* ---- Subscription Identifiers ----------------------------------------- */

/* One id; several overlapping subscriptions give one copy with all their
 * ids (at the highest QoS); a subscription without an id adds none; a
 * re-subscription replaces the id; ids are per session [MQTT-3.3.4-3,
 * MQTT-3.3.4-4]. */
static void test_subscription_ids(void **state)
{
	(void)state;
	struct pub5 o;
	int fd = connect5_clean("m5-sid");
	int other = connect5_clean("m5-sid-other");
	int pub = connect5_clean("m5-sid-pub");

	sub1(fd, 1, 7, "sid/+", 1, 1);
	sub1(fd, 2, 300000, "sid/x", 0, 0);   /* a 3-byte varint */
	sub1(fd, 3, 0, "sid/#", 0, 0);        /* no id */
	sub1(other, 1, 0, "sid/x", 2, 2);

	publish5(pub, "sid/x", "both", 2, false, 1, NULL);
	expect_pub5(fd, "sid/x", "both", &o);
	assert_int_equal(o.qos, 1);            /* the highest granted */
	assert_int_equal(o.n_subids, 2);
	assert_true(has_subid(&o, 7) && has_subid(&o, 300000));
	ack5(fd, &o);
	expect_pub5(other, "sid/x", "both", &o);
	assert_int_equal(o.n_subids, 0);
	ack5(other, &o);

	publish5(pub, "sid/y", "one", 0, false, 0, NULL);
	expect_pub5(fd, "sid/y", "one", &o);
	assert_int_equal(o.n_subids, 1);
	assert_int_equal(o.subids[0], 7);

	publish5(pub, "sid/y/z", "none", 0, false, 0, NULL);
	expect_pub5(fd, "sid/y/z", "none", &o);
	assert_int_equal(o.n_subids, 0);

	/* The maximum id, replacing 7 on the same filter. */
	sub1(fd, 4, 268435455, "sid/+", 1, 1);
	publish5(pub, "sid/y", "max", 0, false, 0, NULL);
	expect_pub5(fd, "sid/y", "max", &o);
	assert_int_equal(o.n_subids, 1);
	assert_int_equal(o.subids[0], 268435455);

	/* Retained messages sent on subscribe carry that subscription's id. */
	publish5(pub, "sid/r", "kept", 1, true, 2, NULL);
	expect_pub5(fd, "sid/r", "kept", &o); /* live: ids 268435455 (and no id for sid/#) */
	ack5(fd, &o);
	sub1(fd, 5, 42, "sid/r", 1, 1);
	expect_pub5(fd, "sid/r", "kept", &o);
	assert_true(o.retain);
	assert_int_equal(o.n_subids, 1);
	assert_int_equal(o.subids[0], 42);
	ack5(fd, &o);
	fence_empty(fd);
	publish5(pub, "sid/r", "", 1, true, 3, NULL); /* clear it */
	expect_pub5(fd, "sid/r", "", &o);
	ack5(fd, &o);
	fence_empty(other);

	/* Two overlapping subscriptions with the same identifier: it comes
	 * twice (5.0 section 3.3.4, non-normative). */
	sub1(fd, 6, 77, "dup/a", 0, 0);
	sub1(fd, 7, 77, "dup/+", 0, 0);
	publish5(pub, "dup/a", "twice", 0, false, 0, NULL);
	expect_pub5(fd, "dup/a", "twice", &o);
	assert_int_equal(o.n_subids, 2);
	assert_int_equal(o.subids[0], 77);
	assert_int_equal(o.subids[1], 77);
	fence_empty(fd);
	close(pub);
	close(other);
	close(fd);
}

/* The same through paho.mqtt.c's MQTT 5 API: the library sees the ids. */
static void test_subscription_ids_paho(void **state)
{
	(void)state;
	char uri[64];
	MQTTClient cl;
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
	MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer5;
	MQTTProperties none = MQTTProperties_initializer;
	MQTTResponse rsp;

	co.MQTTVersion = MQTTVERSION_5;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", g.port);
	assert_int_equal(MQTTClient_createWithOptions(&cl, uri, "m5-sid-paho",
						      MQTTCLIENT_PERSISTENCE_NONE, NULL, &co),
			 MQTTCLIENT_SUCCESS);
	opts.cleanstart = 1;
	/* Aliases allowed: the second message comes with the alias only.
	 * paho.mqtt.c does not resolve aliases itself: it hands over the
	 * empty topic name and the alias, as received. */
	MQTTProperties cprops = MQTTProperties_initializer;
	MQTTProperty ta = { .identifier = MQTTPROPERTY_CODE_TOPIC_ALIAS_MAXIMUM };
	ta.value.integer2 = 5;
	assert_int_equal(MQTTProperties_add(&cprops, &ta), 0);
	rsp = MQTTClient_connect5(cl, &opts, &cprops, NULL);
	MQTTProperties_free(&cprops);
	assert_int_equal(rsp.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(rsp);

	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER };
	p.value.integer4 = 1234;
	assert_int_equal(MQTTProperties_add(&props, &p), 0);
	MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
	rsp = MQTTClient_subscribe5(cl, "paho5/#", 1, &so, &props);
	assert_int_equal(rsp.reasonCode, 1);
	MQTTResponse_free(rsp);
	MQTTProperties_free(&props);

	int pub = connect5_clean("m5-sid-paho-pub");
	publish5(pub, "paho5/t", "hello", 1, false, 1, NULL);
	publish5(pub, "paho5/t", "again", 1, false, 2, NULL);
	close(pub);

	for (int i = 0; i < 2; i++) {
		char *topic = NULL;
		int tlen = 0;
		MQTTClient_message *msg = NULL;
		assert_int_equal(MQTTClient_receive(cl, &topic, &tlen, &msg, WAIT_MS),
				 MQTTCLIENT_SUCCESS);
		assert_non_null(msg);
		assert_non_null(topic);
		assert_int_equal(MQTTProperties_getNumericValue(&msg->properties,
							       MQTTPROPERTY_CODE_TOPIC_ALIAS),
				 1);
		assert_string_equal(topic, i ? "" : "paho5/t");
		assert_int_equal(msg->payloadlen, 5);
		assert_memory_equal(msg->payload, i ? "again" : "hello", 5);
		assert_int_equal(MQTTProperties_getNumericValue(
					 &msg->properties, MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER),
				 1234);
		MQTTClient_freeMessage(&msg);
		MQTTClient_free(topic);
	}
	MQTTClient_disconnect5(cl, 1000, MQTTREASONCODE_NORMAL_DISCONNECTION, &none);
	MQTTClient_destroy(&cl);
}

/* ---- subscription options ------------------------------------------- */

/* No Local: a session's own messages do not come back through a No Local
 * subscription [MQTT-3.8.3-3]; through an overlapping one without it they
 * do (with its id only); other sessions get them. */
static void test_no_local(void **state)
{
	(void)state;
	struct pub5 o;
	int fd = connect5_clean("m5-nl");
	int other = connect5_clean("m5-nl-other");

	sub1(fd, 1, 11, "nl/t", 0x04 | 1, 1);
	sub1(other, 1, 0, "nl/t", 0x04 | 1, 1); /* No Local, but not the publisher */

	publish5(fd, "nl/t", "mine", 1, false, 1, NULL);
	fence_empty(fd);
	expect_pub5(other, "nl/t", "mine", &o);
	ack5(other, &o);

	/* Another publisher's message arrives through the No Local one. */
	publish5(other, "nl/t", "theirs", 1, false, 2, NULL);
	expect_pub5(fd, "nl/t", "theirs", &o);
	assert_int_equal(o.n_subids, 1);
	assert_int_equal(o.subids[0], 11);
	ack5(fd, &o);
	fence_empty(other);

	/* Overlap: nl/# without No Local delivers our own, at its QoS and
	 * with its id, not the No Local one's. */
	sub1(fd, 2, 12, "nl/#", 0, 0);
	send_publish5(fd, "nl/t", "mine2", 1, false, 3, NULL);
	expect_pub5(fd, "nl/t", "mine2", &o);  /* delivered before the PUBACK */
	assert_int_equal(o.qos, 0);
	assert_int_equal(o.n_subids, 1);
	assert_int_equal(o.subids[0], 12);
	assert_int_equal(itutil_expect_ack(fd, 0x40, 3, WAIT_MS), 0);
	fence_empty(fd);
	expect_pub5(other, "nl/t", "mine2", &o);
	ack5(other, &o);
	close(other);
	close(fd);

	/* The retained messages sent at SUBSCRIBE are not "forwarded" from
	 * their publisher: a No Local subscription of the session that set one
	 * still gets it (RETAIN 1), as with mosquitto; a live one it publishes
	 * afterwards does not come back. docs/mqtt5/subscribe.md */
	int me = connect5_clean("m5-nl-ret");
	publish5(me, "nlr/t", "kept", 1, true, 1, NULL);
	sub1(me, 1, 0, "nlr/t", 0x04 | 1, 1);
	expect_pub5(me, "nlr/t", "kept", &o);
	assert_true(o.retain);
	ack5(me, &o);
	publish5(me, "nlr/t", "", 1, true, 2, NULL); /* clears it */
	fence_empty(me);
	close(me);
}

/* Retain As Published: RETAIN as published when set, 0 otherwise
 * [MQTT-3.3.1-12, MQTT-3.3.1-13]; 3.1.1 subscribers get 0 on live
 * messages as before. */
static void test_retain_as_published(void **state)
{
	(void)state;
	struct pub5 o;
	struct itutil_pkt p4;
	int rap = connect5_clean("m5-rap");
	int norap = connect5_clean("m5-norap");
	int v4 = itutil_connect(g.port, "m4-rap", true, 0, NULL);
	int pub = connect5_clean("m5-rap-pub");

	assert_true(v4 >= 0);
	sub1(rap, 1, 0, "rap/t", 0x08, 0);
	sub1(norap, 1, 0, "rap/t", 0, 0);
	assert_int_equal(itutil_subscribe(v4, 1, "rap/t", 0), 0);

	publish5(pub, "rap/t", "r1", 0, true, 0, NULL);
	expect_pub5(rap, "rap/t", "r1", &o);
	assert_true(o.retain);
	expect_pub5(norap, "rap/t", "r1", &o);
	assert_false(o.retain);
	assert_int_equal(itutil_recv_publish(v4, &p4, WAIT_MS), 0);
	assert_false(p4.retain);

	publish5(pub, "rap/t", "r0", 0, false, 0, NULL);
	expect_pub5(rap, "rap/t", "r0", &o);
	assert_false(o.retain);
	expect_pub5(norap, "rap/t", "r0", &o);
	assert_false(o.retain);
	assert_int_equal(itutil_recv_publish(v4, &p4, WAIT_MS), 0);

	/* Sent because of the subscription: RETAIN 1 whatever RAP says. */
	int late = connect5_clean("m5-rap-late");
	sub1(late, 1, 0, "rap/t", 0, 0);
	expect_pub5(late, "rap/t", "r1", &o);
	assert_true(o.retain);
	fence_empty(late);

	publish5(pub, "rap/t", "", 0, true, 0, NULL); /* clear */
	close(late);
	close(pub);
	close(v4);
	close(norap);
	close(rap);
}

/* Retain Handling 0: retained messages on every subscribe; 1: only when
 * the subscription is new; 2: never [MQTT-3.3.1-9..11]. */
static void test_retain_handling(void **state)
{
	(void)state;
	struct pub5 o;
	int pub = connect5_clean("m5-rh-pub");
	int fd = connect5_clean("m5-rh");

	publish5(pub, "rh/t", "stored", 1, true, 1, NULL);

	sub1(fd, 1, 0, "rh/t", 0x00, 0);
	expect_pub5(fd, "rh/t", "stored", &o);
	assert_true(o.retain);
	fence_empty(fd);
	sub1(fd, 2, 0, "rh/t", 0x00, 0); /* again: sent again */
	expect_pub5(fd, "rh/t", "stored", &o);
	fence_empty(fd);

	sub1(fd, 3, 0, "rh/+", 0x10, 0); /* 1, new */
	expect_pub5(fd, "rh/t", "stored", &o);
	fence_empty(fd);
	sub1(fd, 4, 0, "rh/+", 0x10, 0); /* 1, exists */
	fence_empty(fd);

	sub1(fd, 5, 0, "rh/#", 0x20, 0); /* 2 */
	fence_empty(fd);
	sub1(fd, 6, 0, "rh/#", 0x20, 0);
	fence_empty(fd);

	publish5(pub, "rh/t", "", 1, true, 2, NULL);
	close(fd);
	close(pub);
}

/* ---- flow control toward the client ----------------------------------- */

/* Receive Maximum 2: never more than two unacknowledged QoS 1 PUBLISHes
 * [MQTT-3.3.4-9]; each PUBACK lets exactly one more out. */
static void test_receive_maximum(void **state)
{
	(void)state;
	struct pub5 o;
	struct conn5 k = { .id = "m5-rm", .clean = true, .recv_max = 2 };
	int fd = connect5(&k, NULL);
	int pub = connect5_clean("m5-rm-pub");
	char payload[16];

	sub1(fd, 1, 0, "rm/t", 1, 1);
	for (int i = 0; i < 6; i++) {
		snprintf(payload, sizeof(payload), "m%d", i);
		publish5(pub, "rm/t", payload, 1, false, (uint16_t)(1 + i), NULL);
	}
	struct pub5 held[2];
	expect_pub5(fd, "rm/t", "m0", &held[0]);
	expect_pub5(fd, "rm/t", "m1", &held[1]);
	fence_empty(fd); /* a third would have come before the PINGRESP */
	for (int i = 2; i < 6; i++) {
		ack5(fd, &held[i % 2]);
		snprintf(payload, sizeof(payload), "m%d", i);
		expect_pub5(fd, "rm/t", payload, &held[i % 2]);
		fence_empty(fd);
	}
	ack5(fd, &held[0]);
	ack5(fd, &held[1]);
	fence_empty(fd);
	(void)o;
	close(pub);
	close(fd);
}

/* A session resumed by a client with a smaller Receive Maximum than it has
 * in flight: only that many are resent (DUP); each PUBACK releases the
 * next, in order, then the queue follows [MQTT-3.3.4-9]. An in-flight
 * message whose expiry passed is still resent: its delivery had started
 * [MQTT-4.3.3-7, MQTT-4.4.0-1]. */
static void test_receive_maximum_resume(void **state)
{
	(void)state;
	struct pub5 o[5];
	struct conn5 k = { .id = "m5-rmr", .clean = false, .session_expiry = 300 };
	int fd = connect5(&k, NULL);
	int pub = connect5_clean("m5-rmr-pub");
	struct wb brief = expiry_props(1);
	char payload[16];

	sub1(fd, 1, 0, "rmr/t", 1, 1);
	publish5(pub, "rmr/t", "gone", 1, false, 1, &brief);
	for (int i = 0; i < 4; i++) {
		snprintf(payload, sizeof(payload), "m%d", i);
		publish5(pub, "rmr/t", payload, 1, false, (uint16_t)(2 + i), NULL);
	}
	expect_pub5(fd, "rmr/t", "gone", &o[0]);
	for (int i = 0; i < 4; i++) {
		snprintf(payload, sizeof(payload), "m%d", i);
		expect_pub5(fd, "rmr/t", payload, &o[i + 1]);
	}
	close(fd); /* five unacknowledged */
	wait_closed(k.id); /* else "queued" may be sent on the old connection */
	publish5(pub, "rmr/t", "queued", 1, false, 9, NULL);
	itutil_sleep_ms(1200);

	k.recv_max = 2;
	bool present = false;
	fd = connect5(&k, &present);
	assert_true(present);
	ping(fd);
	/* Five in flight, in order: "gone" first. Its expiry has passed, but
	 * its delivery had started, so it is completed (DUP, Message Expiry
	 * 0) [MQTT-4.3.3-7, MQTT-4.4.0-1]. */
	static const char *const names[5] = { "gone", "m0", "m1", "m2", "m3" };
	struct pub5 r[2];
	expect_pub5(fd, "rmr/t", names[0], &r[0]);
	assert_true(r[0].dup);
	assert_true(r[0].has_expiry);
	assert_int_equal(r[0].expiry, 0);
	expect_pub5(fd, "rmr/t", names[1], &r[1]);
	assert_true(r[1].dup);
	assert_int_equal(recv5(fd, &o[0]), 0); /* PINGRESP: no third */
	for (int i = 2; i < 5; i++) {
		ack5(fd, &r[i % 2]);
		expect_pub5(fd, "rmr/t", names[i], &r[i % 2]);
		assert_true(r[i % 2].dup);
		fence_empty(fd);
	}
	ack5(fd, &r[1]);
	expect_pub5(fd, "rmr/t", "queued", &r[1]);
	assert_false(r[1].dup);
	ack5(fd, &r[1]);
	ack5(fd, &r[0]);
	fence_empty(fd);
	close(fd);
	close(pub);
	k.clean = true;
	k.session_expiry = 0;
	close(connect5(&k, NULL));
}

/* Maximum Packet Size: a PUBLISH that would be larger is not sent (the
 * message is dropped for that client) and the ones after it are; a QoS 1
 * one does not hold the window [MQTT-3.1.2-24]. */
static void test_maximum_packet_size(void **state)
{
	(void)state;
	struct pub5 o;
	struct conn5 k = { .id = "m5-mps", .clean = true, .max_packet = 64 };
	int fd = connect5(&k, NULL);
	int pub = connect5_clean("m5-mps-pub");
	char big[200];

	memset(big, 'B', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	sub1(fd, 1, 5, "mps/t", 1, 1);
	/* 30 + 7 + ... : "mps/t" small payload fits, 199 bytes do not. */
	publish5(pub, "mps/t", big, 0, false, 0, NULL);
	publish5(pub, "mps/t", "small0", 0, false, 0, NULL);
	expect_pub5(fd, "mps/t", "small0", &o);
	for (int i = 0; i < 10; i++) /* more than max_inflight (8) */
		publish5(pub, "mps/t", big, 1, false, (uint16_t)(1 + i), NULL);
	publish5(pub, "mps/t", "small1", 1, false, 20, NULL);
	expect_pub5(fd, "mps/t", "small1", &o);
	ack5(fd, &o);
	fence_empty(fd);

	/* Exactly at the limit goes out: 64 bytes in all. PUBLISH QoS 0:
	 * 1 + 1 (rem) + 2 + 5 (topic) + 1 (props len) + 2 (sub id) + payload. */
	char edge[64];
	size_t fixed = 1 + 1 + 2 + 5 + 1 + 2;
	memset(edge, 'E', sizeof(edge));
	edge[64 - fixed] = 0;
	publish5(pub, "mps/t", edge, 0, false, 0, NULL);
	expect_pub5(fd, "mps/t", edge, &o);
	edge[64 - fixed] = 'E';
	edge[64 - fixed + 1] = 0;
	publish5(pub, "mps/t", edge, 0, false, 0, NULL);
	fence_empty(fd);
	close(pub);
	close(fd);
}

/* Topic Aliases toward a client that allows them (Topic Alias Maximum
 * 2): the first PUBLISH on a topic sets an alias (topic and alias), the
 * next ones carry the alias and an empty topic; a new topic with every
 * alias taken remaps the least recently used one. A client that allows
 * none never gets one (5.0 section 3.3.2.3.4). */
static void test_topic_alias_out(void **state)
{
	(void)state;
	struct pub5 o;
	struct conn5 k = { .id = "m5-alias", .clean = true, .alias_max = 2 };
	int fd = connect5(&k, NULL);
	int plain = connect5_clean("m5-alias-none");
	int pub = connect5_clean("m5-alias-pub");
	static const struct {
		const char *topic, *wire;   /* the topic published, the topic name sent */
		uint16_t alias;
	} want[] = {
		{ "al/a", "al/a", 1 },  /* new: alias 1 */
		{ "al/a", "", 1 },      /* known */
		{ "al/b", "al/b", 2 },
		{ "al/c", "al/c", 1 },  /* full: 1 was used least recently */
		{ "al/a", "al/a", 2 },  /* full again: now 2 is the oldest */
		{ "al/c", "", 1 },
		{ "al/a", "", 2 },
	};

	sub1(fd, 1, 0, "al/#", 0, 0);
	sub1(plain, 1, 0, "al/#", 0, 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char payload[8];
		snprintf(payload, sizeof(payload), "p%zu", i);
		publish5(pub, want[i].topic, payload, 0, false, 0, NULL);
		expect_pub5(fd, want[i].wire, payload, &o);
		assert_int_equal(o.alias, want[i].alias);
		expect_pub5(plain, want[i].topic, payload, &o);
		assert_int_equal(o.alias, 0);
	}
	fence_empty(fd);
	close(pub);
	close(plain);
	close(fd);
}

/* ---- message expiry ---------------------------------------------------- */

/* Queued for an offline session: an expired message is not delivered at
 * reconnect [MQTT-3.3.2-5]; another goes out with the interval it has
 * left [MQTT-3.3.2-6]; one without expiry carries none. */
static void test_expiry_offline_queue(void **state)
{
	(void)state;
	struct pub5 o;
	struct conn5 k = { .id = "m5-exp", .clean = false, .session_expiry = 300 };
	int fd = connect5(&k, NULL);
	sub1(fd, 1, 0, "exp/t", 1, 1);
	close(fd);
	wait_closed(k.id);

	int pub = connect5_clean("m5-exp-pub");
	struct wb short_ = expiry_props(1), long_ = expiry_props(100);
	publish5(pub, "exp/t", "short", 1, false, 1, &short_);
	publish5(pub, "exp/t", "long", 1, false, 2, &long_);
	publish5(pub, "exp/t", "never", 1, false, 3, NULL);
	itutil_sleep_ms(2100);

	k.clean = false;
	bool present = false;
	fd = connect5(&k, &present);
	assert_true(present);
	ping(fd);
	expect_pub5(fd, "exp/t", "long", &o);
	assert_true(o.has_expiry);
	assert_true(o.expiry >= 97 && o.expiry <= 100);
	ack5(fd, &o);
	expect_pub5(fd, "exp/t", "never", &o);
	assert_false(o.has_expiry);
	ack5(fd, &o);
	assert_int_equal(recv5(fd, &o), 0); /* the PINGRESP: "short" never came */
	close(pub);

	/* End the session. */
	k.clean = true;
	k.session_expiry = 0;
	close(connect5(&k, NULL));
}

/* Retained with an expiry: sent while it lasts (with the interval left),
 * gone after. */
static void test_expiry_retained(void **state)
{
	(void)state;
	struct pub5 o;
	int pub = connect5_clean("m5-expr-pub");
	struct wb one = expiry_props(1);

	publish5(pub, "expr/t", "brief", 1, true, 1, &one);
	int fd = connect5_clean("m5-expr");
	sub1(fd, 1, 0, "expr/t", 1, 1);
	expect_pub5(fd, "expr/t", "brief", &o);
	assert_true(o.retain && o.has_expiry && o.expiry == 1);
	ack5(fd, &o);
	fence_empty(fd);
	itutil_sleep_ms(1300);
	sub1(fd, 2, 0, "expr/t", 1, 1);
	fence_empty(fd);
	/* A 3.1.1 reader does not get it either. */
	int v4 = itutil_connect(g.port, "m4-expr", true, 0, NULL);
	assert_int_equal(itutil_subscribe(v4, 1, "expr/#", 1), 0);
	assert_true(itutil_quiet(v4, QUIET_MS));
	close(v4);
	close(fd);
	close(pub);
}

/* ---- properties ------------------------------------------------------------ */

/* What a 5.0 publisher sent reaches a 5.0 subscriber byte for byte (user
 * properties in order); a 3.1.1 subscriber gets the plain message. */
static void test_properties_forwarded(void **state)
{
	(void)state;
	struct pub5 o;
	struct itutil_pkt p4;
	int v5 = connect5_clean("m5-props");
	int v4 = itutil_connect(g.port, "m4-props", true, 0, NULL);
	int pub = connect5_clean("m5-props-pub");
	struct wb pr = { .n = 0 };

	sub1(v5, 1, 0, "props/t", 1, 1);
	assert_int_equal(itutil_subscribe(v4, 1, "props/t", 1), 0);

	w_u8(&pr, 0x01); w_u8(&pr, 1);                         /* payload format: UTF-8 */
	w_u8(&pr, 0x03); w_str(&pr, "text/plain");             /* content type */
	w_u8(&pr, 0x08); w_str(&pr, "reply/here");             /* response topic */
	w_u8(&pr, 0x09); w_u16(&pr, 3); w_bytes(&pr, "\x00\x01\x02", 3); /* correlation */
	w_u8(&pr, 0x26); w_str(&pr, "k"); w_str(&pr, "v1");    /* user properties */
	w_u8(&pr, 0x26); w_str(&pr, "k"); w_str(&pr, "v2");
	w_u8(&pr, 0x26); w_str(&pr, "a"); w_str(&pr, "z");
	publish5(pub, "props/t", "body", 1, false, 1, &pr);

	expect_pub5(v5, "props/t", "body", &o);
	assert_int_equal(o.props_len, pr.n);
	assert_memory_equal(o.props, pr.b, pr.n);
	ack5(v5, &o);

	assert_int_equal(itutil_recv_publish(v4, &p4, WAIT_MS), 0);
	assert_string_equal(p4.topic, "props/t");
	assert_string_equal(p4.payload, "body");
	assert_int_equal(itutil_ack_publish(v4, &p4), 0);
	close(pub);
	close(v4);
	close(v5);
}

/* ---- Python paho-mqtt --------------------------------------------------------------- */

/* The options and identifiers as Python paho-mqtt's MQTTv5 client sees
 * them (tests/integration/m5sub_paho.py). */
static void test_paho_python(void **state)
{
	char cmd[300], line[512];
	(void)state;

	if (system("python3 -c 'import paho.mqtt.client' >/dev/null 2>&1") != 0) {
		print_error("\n*** it_mqtt5_subscribe: SKIPPING test_paho_python: python3 or its "
			    "paho-mqtt module is missing (make deps). ***\n\n");
		skip();
	}
	snprintf(cmd, sizeof(cmd),
		 "timeout 60 python3 tests/integration/m5sub_paho.py --port %d 2>&1", g.port);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p))
		print_message("m5sub_paho.py: %s", line);
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suback_codes),
		cmocka_unit_test(test_unsuback_codes),
		cmocka_unit_test(test_subscription_ids),
		cmocka_unit_test(test_subscription_ids_paho),
		cmocka_unit_test(test_no_local),
		cmocka_unit_test(test_retain_as_published),
		cmocka_unit_test(test_retain_handling),
		cmocka_unit_test(test_receive_maximum),
		cmocka_unit_test(test_receive_maximum_resume),
		cmocka_unit_test(test_maximum_packet_size),
		cmocka_unit_test(test_topic_alias_out),
		cmocka_unit_test(test_expiry_offline_queue),
		cmocka_unit_test(test_expiry_retained),
		cmocka_unit_test(test_properties_forwarded),
		cmocka_unit_test(test_paho_python),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
