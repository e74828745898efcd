/*
 * it_mqtt5_kafka.c - MQTT 5 properties to and from Kafka, against
 * librdkafka's mock cluster hosted in this process (docs/mqtt5/kafka.md):
 *
 *  - uplink, raw format: a level-5 client's user properties (repeated names
 *    in order), content type, response topic, correlation data, payload
 *    format and message expiry become record headers after the mqtt.* ones;
 *    a 3.1.1 client's record keeps the four/five headers of before;
 *  - uplink, json format: the envelope's "properties" object, text that is
 *    not JSON as a JSON string ("payload_encoding":"utf8"), and the same
 *    message as base64 on a route with payload_text = "base64";
 *  - a message whose Message Expiry has passed is acknowledged (PUBACK
 *    0x00), not produced, and counted in kafkagate_uplink_expired_total;
 *    at QoS 2 its PUBREC/PUBREL/PUBCOMP flow completes [MQTT-4.3.3-13];
 *  - downlink: a record's headers become a level-5 subscriber's user
 *    properties (the configured names, in record order), response topic,
 *    correlation data, content type, payload format and message expiry; a
 *    3.1.1 subscriber gets the payload alone; the device's answer on the
 *    response topic lands in Kafka with the correlation data as a header
 *    (command and reply through Kafka).
 *
 * Real clients: paho.mqtt.c's MQTT 5 API (MQTTClient_createWithOptions with
 * MQTTVERSION_5) and raw bytes where the exact PUBACK matters. Every test
 * makes its own mock cluster and gateway; the teardown stops both.
 *   make build/kafkagate build/tests/it_mqtt5_kafka
 *   KG_BIN=build/kafkagate build/tests/it_mqtt5_kafka       # ~15 s
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itpaho.h"
#include "itutil.h"
#include "rawmqtt.h"

#define WAIT_MS 10000

struct fx {
	struct itkafka_mock k;
	struct gw g;
	MQTTClient cl[4];          /* closed by the teardown */
};

static struct fx F;

/* Starts a one-broker mock cluster and a gateway producing to it, with
 * `rest` (routes, downlink) after the kafka group. */
static void fx_up(const char *rest)
{
	char cfg[4096];

	assert_int_equal(itkafka_mock_init(&F.k, 1), 0);
	F.g.metrics_port = gw_free_port();
	snprintf(cfg, sizeof(cfg),
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "kafka = { brokers = \"%s\"; flush_timeout = 2;\n"
		 "  properties = ( (\"session.timeout.ms\", 3000), (\"heartbeat.interval.ms\", 500) ); };\n"
		 "%s\n", F.g.metrics_port, F.k.bootstrap, rest);
	assert_int_equal(gw_start(&F.g, cfg), 0);
}

static int fx_down(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(F.cl) / sizeof(F.cl[0]); i++)
		if (F.cl[i]) {
			MQTTClient_disconnect(F.cl[i], 500);
			MQTTClient_destroy(&F.cl[i]);
		}
	gw_stop(&F.g);
	itkafka_mock_release(&F.k);
	memset(&F, 0, sizeof(F));
	return 0;
}

static long long metric(const char *name)
{
	static struct itkafka_resp r;

	assert_int_equal(itkafka_http_get(F.g.metrics_port, "/metrics", &r, WAIT_MS), 200);
	return (long long)itkafka_metric(r.body, name);
}

/* ---- MQTT 5 client (paho) -------------------------------------------------- */

/* A connected clean-start level-5 client in slot i of F.cl. */
static MQTTClient c5_connect(int i, const char *id)
{
	MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
	char uri[64];

	co.MQTTVersion = MQTTVERSION_5;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", F.g.port);
	assert_int_equal(MQTTClient_createWithOptions(&F.cl[i], uri, id, MQTTCLIENT_PERSISTENCE_NONE,
						      NULL, &co), MQTTCLIENT_SUCCESS);
	o.cleanstart = 1;
	o.keepAliveInterval = 30;
	o.connectTimeout = 5;
	MQTTResponse r = MQTTClient_connect5(F.cl[i], &o, NULL, NULL);
	assert_int_equal(r.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(r);
	return F.cl[i];
}

static void c5_subscribe(MQTTClient cl, const char *filter, int qos)
{
	MQTTResponse r = MQTTClient_subscribe5(cl, filter, qos, NULL, NULL);
	assert_int_equal(r.reasonCode, qos);
	MQTTResponse_free(r);
}

static void prop_int(MQTTProperties *ps, enum MQTTPropertyCodes id, int v)
{
	MQTTProperty p = { .identifier = id };
	p.value.integer4 = (unsigned)v;
	if (id == MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR)
		p.value.byte = (unsigned char)v;
	assert_int_equal(MQTTProperties_add(ps, &p), 0);
}

static void prop_str(MQTTProperties *ps, enum MQTTPropertyCodes id, const char *s, int len)
{
	MQTTProperty p = { .identifier = id };
	p.value.data.data = (char *)s;
	p.value.data.len = len;
	assert_int_equal(MQTTProperties_add(ps, &p), 0);
}

static void prop_user(MQTTProperties *ps, const char *k, const char *v)
{
	MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_USER_PROPERTY };
	p.value.data.data = (char *)k;
	p.value.data.len = (int)strlen(k);
	p.value.value.data = (char *)v;
	p.value.value.len = (int)strlen(v);
	assert_int_equal(MQTTProperties_add(ps, &p), 0);
}

/* The request every uplink test sends: all five kinds, repeated user
 * property names, and an expiry. */
static MQTTProperties request_props(void)
{
	MQTTProperties ps = MQTTProperties_initializer;
	prop_int(&ps, MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR, 1);
	prop_int(&ps, MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL, 120);
	prop_str(&ps, MQTTPROPERTY_CODE_CONTENT_TYPE, "text/plain", 10);
	prop_str(&ps, MQTTPROPERTY_CODE_RESPONSE_TOPIC, "reply/dev5", 10);
	prop_str(&ps, MQTTPROPERTY_CODE_CORRELATION_DATA, "\x00\x01\xfe", 3);
	prop_user(&ps, "k", "v1");
	prop_user(&ps, "trace", "t-1");
	prop_user(&ps, "k", "v2");
	return ps;
}

/* Publishes and, for QoS 1/2, waits for the acknowledgement. */
static void c5_publish(MQTTClient cl, const char *topic, const char *payload, int qos,
		       MQTTProperties *ps)
{
	MQTTClient_message m = MQTTClient_message_initializer;
	MQTTClient_deliveryToken dt;

	m.payload = (void *)payload;
	m.payloadlen = (int)strlen(payload);
	m.qos = qos;
	if (ps)
		m.properties = *ps;
	MQTTResponse r = MQTTClient_publishMessage5(cl, topic, &m, &dt);
	assert_int_equal(r.reasonCode, MQTTREASONCODE_SUCCESS);
	MQTTResponse_free(r);
	if (qos > 0)
		assert_int_equal(MQTTClient_waitForCompletion(cl, dt, WAIT_MS), MQTTCLIENT_SUCCESS);
}

/* ---- records ---------------------------------------------------------------- */

static void expect_hdr(const struct itkafka_rec *r, size_t i, const char *name, const void *val,
		       size_t len)
{
	const char *n;
	const void *v;
	size_t l;

	if (!r->hdrs || rd_kafka_header_get_all(r->hdrs, i, &n, &v, &l))
		fail_msg("record has no header %zu (want %s)", i, name);
	if (strcmp(n, name) != 0 || l != len || (len && memcmp(v, val, len) != 0))
		fail_msg("header %zu: %s = '%.*s', want %s = '%.*s'", i, n, (int)l,
			 v ? (const char *)v : "", name, (int)len, (const char *)val);
}

static size_t hdr_count(const struct itkafka_rec *r)
{
	return r->hdrs ? rd_kafka_header_cnt(r->hdrs) : 0;
}

static json_t *envelope_of(const struct itkafka_rec *k)
{
	json_error_t je;
	json_t *j = json_loadb(k->val, k->vlen, 0, &je);

	if (!j || !json_is_object(j))
		fail_msg("record value is not a JSON object: %s (%.*s)", je.text, (int)k->vlen, k->val);
	return j;
}

/* ---- uplink -------------------------------------------------------------------- */

static void test_uplink_headers(void **state)
{
	struct itkafka_rec r[2];
	(void)state;

	fx_up("routes = ( { filter = \"m5/#\"; topic = \"m5-raw\"; key = \"k\"; } );");
	MQTTClient c = c5_connect(0, "it-m5-dev5");
	MQTTProperties ps = request_props();
	c5_publish(c, "m5/req", "on", 1, &ps);
	MQTTProperties_free(&ps);
	/* A 3.1.1 client on the same route: the headers of before. */
	F.cl[1] = itpaho_connect(F.g.port, "it-m5-dev4", NULL);
	assert_non_null(F.cl[1]);
	MQTTClient_message m = MQTTClient_message_initializer;
	MQTTClient_deliveryToken dt;
	m.payload = "off";
	m.payloadlen = 3;
	m.qos = 1;
	assert_int_equal(MQTTClient_publishMessage(F.cl[1], "m5/old", &m, &dt), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_waitForCompletion(F.cl[1], dt, WAIT_MS), MQTTCLIENT_SUCCESS);

	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-raw", 2, WAIT_MS, r), 2);
	/* One key, one partition: publish order. */
	assert_int_equal(r[0].vlen, 2);
	assert_memory_equal(r[0].val, "on", 2);
	expect_hdr(&r[0], 0, "mqtt.topic", "m5/req", 6);
	expect_hdr(&r[0], 1, "mqtt.clientid", "it-m5-dev5", 10);
	expect_hdr(&r[0], 2, "mqtt.qos", "1", 1);
	expect_hdr(&r[0], 3, "mqtt.retain", "false", 5);
	/* Seconds left when produced: milliseconds after receipt, rounded up. */
	expect_hdr(&r[0], 4, "mqtt.message_expiry", "120", 3);
	expect_hdr(&r[0], 5, "mqtt.payload_format", "1", 1);
	expect_hdr(&r[0], 6, "mqtt.content_type", "text/plain", 10);
	expect_hdr(&r[0], 7, "mqtt.response_topic", "reply/dev5", 10);
	expect_hdr(&r[0], 8, "mqtt.correlation_data", "\x00\x01\xfe", 3);
	expect_hdr(&r[0], 9, "k", "v1", 2);
	expect_hdr(&r[0], 10, "trace", "t-1", 3);
	expect_hdr(&r[0], 11, "k", "v2", 2);
	assert_int_equal(hdr_count(&r[0]), 12);

	assert_memory_equal(r[1].val, "off", 3);
	expect_hdr(&r[1], 0, "mqtt.topic", "m5/old", 6);
	expect_hdr(&r[1], 3, "mqtt.retain", "false", 5);
	assert_int_equal(hdr_count(&r[1]), 4);
	itkafka_recs_free(r, 2);
}

static void test_uplink_json(void **state)
{
	struct itkafka_rec r[3];
	(void)state;

	fx_up("routes = ( { filter = \"m5/#\"; topic = \"m5-json\"; key = \"k\"; format = \"json\"; },\n"
	      "  { filter = \"m5/#\"; topic = \"m5-b64\"; format = \"json\"; payload_text = \"base64\"; } );");
	MQTTClient c = c5_connect(0, "it-m5-json");
	MQTTProperties ps = request_props();
	c5_publish(c, "m5/temp", "21.5 C", 1, &ps);
	MQTTProperties_free(&ps);
	c5_publish(c, "m5/doc", "{\"t\": 21.5}", 1, NULL);

	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-json", 2, WAIT_MS, r), 2);
	/* Text: a JSON string; the properties in their object, in order. */
	const char *want = "\"properties\":{\"payload_format\":1,\"content_type\":\"text/plain\","
			   "\"response_topic\":\"reply/dev5\",\"correlation_data\":\"AAH+\","
			   "\"message_expiry\":120,\"user_properties\":[[\"k\",\"v1\"],"
			   "[\"trace\",\"t-1\"],[\"k\",\"v2\"]]},\"payload_encoding\":\"utf8\","
			   "\"payload\":\"21.5 C\"}";
	if (!strstr(r[0].val, want))
		fail_msg("envelope %.*s\nlacks %s", (int)r[0].vlen, r[0].val, want);
	json_t *j = envelope_of(&r[0]);
	assert_string_equal(json_string_value(json_object_get(j, "clientid")), "it-m5-json");
	json_decref(j);
	/* No properties: no object; JSON inline as before. */
	j = envelope_of(&r[1]);
	assert_null(json_object_get(j, "properties"));
	assert_null(json_object_get(j, "payload_encoding"));
	assert_true(json_is_object(json_object_get(j, "payload")));
	json_decref(j);
	itkafka_recs_free(r, 2);

	/* payload_text = "base64": the same text as base64 (the old encoding).
	 * No key on this route: the two records may sit on two partitions. */
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-b64", 2, WAIT_MS, r), 2);
	j = envelope_of(&r[0]);
	if (strcmp(json_string_value(json_object_get(j, "topic")), "m5/temp") != 0) {
		json_decref(j);
		j = envelope_of(&r[1]);
	}
	assert_string_equal(json_string_value(json_object_get(j, "topic")), "m5/temp");
	assert_string_equal(json_string_value(json_object_get(j, "payload_encoding")), "base64");
	assert_string_equal(json_string_value(json_object_get(j, "payload")), "MjEuNSBD");
	assert_true(json_is_object(json_object_get(j, "properties")));
	json_decref(j);
	itkafka_recs_free(r, 2);
}

static void test_uplink_expired(void **state)
{
	uint8_t pkt[64];
	struct itkafka_rec r[1];
	(void)state;

	fx_up("routes = ( { filter = \"m5/#\"; topic = \"m5-exp\"; } );");
	int fd = raw_connect_tcp(F.g.port);
	assert_true(fd >= 0);
	/* CONNECT level 5, clean start, keepalive 60, no properties, id "x5". */
	assert_int_equal(raw_send_hex(fd, "10 0f 0004 4d515454 05 02 003c 00 0002 7835"), 0);
	int n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x20);
	assert_int_equal(pkt[3], 0x00); /* reason: success */
	/* PUBLISH QoS 1 id 1 "m5/exp", properties: expiry 0; payload "stale". */
	assert_int_equal(raw_send_hex(fd, "32 15 0006 6d352f657870 0001 05 02 00000000 7374616c65"), 0);
	n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x40);
	assert_int_equal(pkt[2] << 8 | pkt[3], 1);
	if (n > 4) /* reason code present: must be success (0x00) */
		assert_int_equal(pkt[4], 0x00);
	/* PUBLISH QoS 1 id 2, expiry 60; payload "fresh". */
	assert_int_equal(raw_send_hex(fd, "32 15 0006 6d352f657870 0002 05 02 0000003c 6672657368"), 0);
	n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x40);
	assert_int_equal(pkt[2] << 8 | pkt[3], 2);
	if (n > 4)
		assert_int_equal(pkt[4], 0x00);
	/* The PUBACK of a produced record means it is in Kafka. */
	assert_int_equal(itkafka_count(F.k.bootstrap, "m5-exp", 5000), 1);
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-exp", 1, WAIT_MS, r), 1);
	assert_int_equal(r[0].vlen, 5);
	assert_memory_equal(r[0].val, "fresh", 5);
	expect_hdr(&r[0], 4, "mqtt.message_expiry", "60", 2);
	itkafka_recs_free(r, 1);
	assert_int_equal(metric("kafkagate_uplink_expired_total"), 1);
	close(fd);
}

/* One QoS 2 publication with id `id`: PUBREC (no error reason), PUBREL,
 * PUBCOMP (success). */
static void qos2_flow(int fd, uint16_t id, const char *publish_hex)
{
	uint8_t pkt[64];
	char rel[16];

	assert_int_equal(raw_send_hex(fd, publish_hex), 0);
	int n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x50);
	assert_int_equal(pkt[2] << 8 | pkt[3], id);
	if (n > 4) /* reason code present: not an error */
		assert_true(pkt[4] < 0x80);
	snprintf(rel, sizeof(rel), "62 02 %04x", id);
	assert_int_equal(raw_send_hex(fd, rel), 0);
	n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x70);
	assert_int_equal(pkt[2] << 8 | pkt[3], id);
	if (n > 4)
		assert_int_equal(pkt[4], 0x00);
}

/* The QoS 2 flow goes on when the message expired before Kafka took it
 * [MQTT-4.3.3-13]: PUBREC, PUBREL, PUBCOMP complete, nothing is produced,
 * and the next, fresh message is. */
static void test_uplink_expired_qos2(void **state)
{
	uint8_t pkt[64];
	struct itkafka_rec r[1];
	(void)state;

	fx_up("routes = ( { filter = \"m5/#\"; topic = \"m5-exp2\"; } );");
	int fd = raw_connect_tcp(F.g.port);
	assert_true(fd >= 0);
	/* CONNECT level 5, clean start, keepalive 60, no properties, id "x6". */
	assert_int_equal(raw_send_hex(fd, "10 0f 0004 4d515454 05 02 003c 00 0002 7836"), 0);
	int n = raw_recv_packet(fd, pkt, sizeof(pkt), WAIT_MS);
	assert_true(n >= 4);
	assert_int_equal(pkt[0], 0x20);
	assert_int_equal(pkt[3], 0x00);
	/* PUBLISH QoS 2 id 1 "m5/exp", expiry 0; payload "stale". */
	qos2_flow(fd, 1, "34 15 0006 6d352f657870 0001 05 02 00000000 7374616c65");
	/* PUBLISH QoS 2 id 2, expiry 60; payload "fresh". */
	qos2_flow(fd, 2, "34 15 0006 6d352f657870 0002 05 02 0000003c 6672657368");
	assert_int_equal(itkafka_count(F.k.bootstrap, "m5-exp2", 5000), 1);
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-exp2", 1, WAIT_MS, r), 1);
	assert_int_equal(r[0].vlen, 5);
	assert_memory_equal(r[0].val, "fresh", 5);
	itkafka_recs_free(r, 1);
	assert_int_equal(metric("kafkagate_uplink_expired_total"), 1);
	close(fd);
}

/* ---- downlink, and the reply ---------------------------------------------------------- */

static const MQTTProperty *find_prop(MQTTProperties *ps, enum MQTTPropertyCodes id)
{
	return MQTTProperties_getProperty(ps, id);
}

static void expect_prop_data(MQTTProperties *ps, enum MQTTPropertyCodes id, const void *want,
			     int len)
{
	const MQTTProperty *p = find_prop(ps, id);
	if (!p)
		fail_msg("property %d missing", (int)id);
	if (p->value.data.len != len || memcmp(p->value.data.data, want, (size_t)len) != 0)
		fail_msg("property %d = '%.*s'", (int)id, p->value.data.len, p->value.data.data);
}

static void test_downlink_command_and_reply(void **state)
{
	char *topic = NULL;
	int tlen = 0;
	MQTTClient_message *m = NULL;
	(void)state;

	/* The topic exists before the consumer subscribes: no wait for a
	 * metadata refresh. */
	assert_int_equal(itkafka_mock_init(&F.k, 1), 0);
	rd_kafka_mock_topic_create(F.k.mc, "m5-cmd", 1, 1);
	F.g.metrics_port = gw_free_port();
	{
		char cfg[2048];
		snprintf(cfg, sizeof(cfg),
			 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
			 "kafka = { brokers = \"%s\"; flush_timeout = 2;\n"
			 "  properties = ( (\"session.timeout.ms\", 3000),"
			 " (\"heartbeat.interval.ms\", 500) ); };\n"
			 "downlink = ( { topic = \"m5-cmd\"; group = \"it-m5\"; qos = 1;\n"
			 "  mqtt_topic = \"devices/${key}/cmd\"; user_properties = [\"cmd-id\", \"trace\"]; } );\n"
			 "routes = ( { filter = \"reply/#\"; topic = \"m5-replies\"; } );\n",
			 F.g.metrics_port, F.k.bootstrap);
		assert_int_equal(gw_start(&F.g, cfg), 0);
	}
	MQTTClient d5 = c5_connect(0, "it-m5-d5");
	c5_subscribe(d5, "devices/d5/cmd", 1);
	F.cl[1] = itpaho_connect(F.g.port, "it-m5-d4", NULL);
	assert_non_null(F.cl[1]);
	assert_int_equal(MQTTClient_subscribe(F.cl[1], "devices/d5/cmd", 1), MQTTCLIENT_SUCCESS);

	rd_kafka_t *prod = itkafka_client_new(F.k.bootstrap, RD_KAFKA_PRODUCER, NULL, NULL);
	assert_non_null(prod);
	static const char *const kv[] = {
		"cmd-id", "42", "trace", "a", "other", "not-mapped",
		"mqtt.response_topic", "reply/backend", "mqtt.correlation_data", "req-7",
		"mqtt.content_type", "application/json", "mqtt.payload_format", "1",
		"mqtt.message_expiry", "300", "trace", "b", NULL,
	};
	/* The mapping's consumer starts from the earliest offset: one record,
	 * whenever it joins. */
	assert_int_equal(itkafka_produce(prod, "m5-cmd", 0, "d5", "{\"op\":\"open\"}", kv), 0);
	assert_int_equal(rd_kafka_flush(prod, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	int rc = MQTTClient_receive(d5, &topic, &tlen, &m, 2 * WAIT_MS);
	rd_kafka_destroy(prod);
	assert_int_equal(rc, MQTTCLIENT_SUCCESS);
	assert_non_null(m);
	assert_string_equal(topic, "devices/d5/cmd");
	assert_int_equal(m->payloadlen, 13);
	assert_memory_equal(m->payload, "{\"op\":\"open\"}", 13);
	/* User properties: the configured names, record order, repeats kept. */
	int nu = MQTTProperties_propertyCount(&m->properties, MQTTPROPERTY_CODE_USER_PROPERTY);
	assert_int_equal(nu, 3);
	static const char *const want_up[][2] = { { "cmd-id", "42" }, { "trace", "a" },
						  { "trace", "b" } };
	for (int i = 0; i < nu; i++) {
		MQTTProperty *p = MQTTProperties_getPropertyAt(&m->properties,
							       MQTTPROPERTY_CODE_USER_PROPERTY, i);
		assert_non_null(p);
		assert_int_equal(p->value.data.len, (int)strlen(want_up[i][0]));
		assert_memory_equal(p->value.data.data, want_up[i][0], strlen(want_up[i][0]));
		assert_int_equal(p->value.value.len, (int)strlen(want_up[i][1]));
		assert_memory_equal(p->value.value.data, want_up[i][1], strlen(want_up[i][1]));
	}
	expect_prop_data(&m->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC, "reply/backend", 13);
	expect_prop_data(&m->properties, MQTTPROPERTY_CODE_CORRELATION_DATA, "req-7", 5);
	expect_prop_data(&m->properties, MQTTPROPERTY_CODE_CONTENT_TYPE, "application/json", 16);
	const MQTTProperty *pf = find_prop(&m->properties,
					   MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR);
	assert_non_null(pf);
	assert_int_equal(pf->value.byte, 1);
	const MQTTProperty *ex = find_prop(&m->properties,
					   MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL);
	assert_non_null(ex);
	assert_true(ex->value.integer4 <= 300 && ex->value.integer4 >= 270);

	/* The device answers on the response topic with the correlation data:
	 * the reply lands in Kafka with it as a header. */
	MQTTProperties rp = MQTTProperties_initializer;
	const MQTTProperty *cd = find_prop(&m->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
	prop_str(&rp, MQTTPROPERTY_CODE_CORRELATION_DATA, cd->value.data.data, cd->value.data.len);
	const MQTTProperty *rt = find_prop(&m->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC);
	char reply_topic[64];
	snprintf(reply_topic, sizeof(reply_topic), "%.*s", rt->value.data.len, rt->value.data.data);
	c5_publish(d5, reply_topic, "opened", 1, &rp);
	MQTTProperties_free(&rp);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);

	struct itkafka_rec r[1];
	memset(r, 0, sizeof(r));
	assert_int_equal(itkafka_read(F.k.bootstrap, "m5-replies", 1, WAIT_MS, r), 1);
	assert_memory_equal(r[0].val, "opened", 6);
	const void *v;
	size_t l;
	assert_int_equal(rd_kafka_header_get_last(r[0].hdrs, "mqtt.correlation_data", &v, &l), 0);
	assert_int_equal(l, 5);
	assert_memory_equal(v, "req-7", 5);
	itkafka_recs_free(r, 1);

	/* The 3.1.1 subscriber got the same command: payload alone (paho
	 * gives it no properties at level 4, and properties sent to it would
	 * have been read as the start of the payload). */
	m = NULL;
	rc = MQTTClient_receive(F.cl[1], &topic, &tlen, &m, WAIT_MS);
	assert_int_equal(rc, MQTTCLIENT_SUCCESS);
	assert_non_null(m);
	assert_int_equal(m->payloadlen, 13);
	assert_memory_equal(m->payload, "{\"op\":\"open\"}", 13);
	assert_int_equal(m->properties.count, 0);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_uplink_headers, fx_down),
		cmocka_unit_test_teardown(test_uplink_json, fx_down),
		cmocka_unit_test_teardown(test_uplink_expired, fx_down),
		cmocka_unit_test_teardown(test_uplink_expired_qos2, fx_down),
		cmocka_unit_test_teardown(test_downlink_command_and_reply, fx_down),
	};
	if (getenv("KG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KG_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
