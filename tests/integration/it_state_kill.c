/*
 * it_state_kill.c - an instance SIGKILLed under load (state.store =
 * "kafka", issue 13: "an instance killed with SIGKILL while 50 devices
 * publish QoS 1 and receive commands: the devices reconnect to the others,
 * each will is published once, nothing acknowledged is missing from Kafka,
 * no command is lost").
 *
 * Three gateways on one librdkafka mock cluster hosted in this process (it
 * outlives the SIGKILL), then the same on the real Kafka of
 * scripts/kafka-local (skipped without java, or with KG_SKIP_REAL_KAFKA).
 * Each gateway: an uplink route d/+/data -> <p>-up (key = client id), a
 * route wills/# -> <p>-wills, a downlink <p>-cmd (6 partitions) -> cmd/${key}
 * in mode "group" (one consumer group across the three: whichever gateway
 * reads a command forwards it to the gateway holding the device, through
 * that gateway's inbox). Dynamic group members: the mock cluster has no
 * static membership (docs/faults.md).
 *
 * 50 paho.mqtt.c devices, Clean Session 0, a will each (wills/<id>, payload
 * "<id> conn<N>", N = which connection of the device), subscribed to
 * cmd/<id> at QoS 1: 20 on gateway 1, 15 on each of gateways 2 and 3. Each
 * publishes "<id> <seq>" at QoS 1 to d/<id>/data ten times a second and
 * logs every sequence whose PUBACK came back; the test produces a command
 * "<id> <n>" (key = id) for every device twice a second and logs what
 * Kafka acknowledged and what each device received. A watcher on gateway 2
 * subscribes to wills/#.
 *
 * Gateway 1 is SIGKILLed by PID mid-stream. Its devices reconnect (Clean
 * Session 0, after 100-600 ms, as devices with a backoff would) to gateway
 * 2 or 3; publishing and commands go on for POST_KILL_MS, then stop. Then:
 *  - every reconnect finds session present = 1 (the subscription is not
 *    made again, so commands after it prove the session was there), and
 *    every device of gateway 1 receives commands produced after it;
 *  - every acknowledged (client, seq) is in <p>-up (acked_missing = 0);
 *  - every command Kafka acknowledged was received by its device at least
 *    once (duplicates reported, not failed); lost ones are listed with
 *    their device's gateway, their time relative to the kill (before it,
 *    between the kill and the device's reconnect, after that) and whether
 *    they sit uncommitted in the dead gateway's inbox;
 *  - the will of each killed connection ("<id> conn1" of the devices of
 *    gateway 1) reaches the watcher exactly once and is exactly once in
 *    <p>-wills; no other will (no device of gateways 2/3, no reconnected
 *    connection: they all DISCONNECT at the end).
 * A summary line per cluster is printed. Checks that fail are all printed,
 * then the test fails. About 30 s per cluster when something is missing
 * (it waits SETTLE_MS after the kill), 90 s for the binary with the real
 * Kafka's start.
 *
 * KG_KILL_BACKOFF_MS=N (diagnosis, default 0) adds N ms to the devices'
 * reconnect backoff: with N = 15000 the devices of gateway 1 come back
 * after their wills were due (lease_ms + the owners group's session
 * timeout), the path it_state_owner covers, instead of before.
 *
 *   make build/kafkagate build/tests/it_state_kill
 *   KG_BIN=build/kafkagate build/tests/it_state_kill
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <MQTTClient.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "itkafka.h"
#include "itutil.h"

#define NDEV 50
#define DEV1 20                /* devices 0..19 start on gateway 1, the killed one */
#define LEASE_MS 3000
#define PARTS 6                /* state partitions and command topic partitions */
#define PUB_EVERY_MS 100       /* per device: 500 QoS 1 publishes/s in all */
#define CMD_EVERY_MS 500       /* per device: 100 commands/s in all */
#define PRE_KILL_MS 3000       /* load before the kill */
#define POST_KILL_MS 4500      /* load after it */
/* After the kill: the wills need lease_ms + the owners group's session
 * timeout (max(lease_ms, 6 s)) + a scan; commands on the partitions gateway
 * 1 read need the downlink group's session.timeout.ms (6 s) + a rebalance.
 * The test waits until everything expected arrived, at most this long. */
#define SETTLE_MS 22000
#define QUIET_MS 2000          /* then nothing more (a second will) for this long */
#define SEQ_MAX 1024           /* publishes per device: 20 s at 10/s at most */
#define CMD_PER_DEV 64         /* commands per device: 20 s at 2/s at most */
#define PEND_MAX 64
#define INFLIGHT 20            /* paho's maxInflightMessages (gateway: 32) */

/* ---- state of one cluster run ------------------------------------------- */

static struct itkafka_mock mock;
static struct itkafka_local kl;
static const char *boot;
static const char *cluster;    /* "mock" or "real", for the output */
static char prefix[32], up_topic[48], will_topic[48], cmd_topic[48];
static struct gw gws[3];
static struct itkafka_resp resp;
static int fails;
#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "it_state_kill (%s): FAILED: ", cluster); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		fails++; \
	} \
} while (0)

static int backoff_ms;         /* KG_KILL_BACKOFF_MS */
static _Atomic long long t_kill; /* monotonic ms of the SIGKILL; 0 before */
static atomic_bool publishing, stopping;

struct device {
	int idx, home;             /* home: gateway index at the start */
	atomic_int gw;             /* the gateway it is connected to (or going to) */
	char id[24], pub_topic[48], cmd_filter[48], wtopic[48];
	MQTTClient cl;
	pthread_t th;
	bool th_started;
	atomic_bool lost;
	_Atomic long long lost_at; /* monotonic ms: connection lost (paho's thread) */
	long long back_at;         /* monotonic ms: reconnected */
	long long connect_ms;      /* the successful reconnect's CONNECT -> CONNACK */
	int conns;                 /* connections made (the will payload names it) */
	int present_bad;           /* reconnects that found no session */
	int reconnect_fail;        /* CONNECT attempts refused or failed */
	int unexpected_lost;       /* lost without its gateway being killed */
	pthread_mutex_t mu;        /* below: the device thread and paho's thread */
	int next_seq;
	struct { int tok, seq; } pend[PEND_MAX];
	int npend;
	int done[PEND_MAX * 4];    /* tokens whose PUBACK came before their pend entry */
	int ndone;
	uint8_t acked[SEQ_MAX];
	int nacked, stray;
	uint16_t got[CMD_PER_DEV]; /* times each command number was received */
	long long got_at[CMD_PER_DEV];
	int cmd_bad, warm;
};

static struct device devs[NDEV];

struct cmd {
	int dev, n;
	long long at;              /* monotonic ms when produced */
	atomic_int state;          /* 0 in flight, 1 delivered, -1 failed */
	int32_t partition;
	int64_t offset;
};

static struct cmd cmds[NDEV * CMD_PER_DEV];
static atomic_int ncmds;
static int cmd_next[NDEV];

/* The wills watcher (paho, on gateway 2). */
static MQTTClient watcher;
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static int wills_seen[NDEV][4];  /* [device][connection number], 3 = other */
static int wills_probe, wills_other;
static long long wills_last_at[NDEV];

/* ---- gateways -------------------------------------------------------------- */

static int start_gw(int i)
{
	char cfg[4096];
	gws[i].metrics_port = gw_free_port();
	gws[i].wait_metrics = true;
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 5;\n"
		 /* Dynamic members (the mock cluster has no static membership);
		  * 6 s: a real broker's group.min.session.timeout.ms. */
		 "  properties = ( (\"session.timeout.ms\", 6000), (\"heartbeat.interval.ms\", 500),\n"
		 "                 (\"group.instance.id\", \"\") ); };\n"
		 "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
		 "limits = { max_inflight = 32; };\n"
		 "state = { store = \"kafka\"; instance_id = \"gw-%d\"; topic_prefix = \"%s\";\n"
		 "  partitions = %d; replication_factor = 1; heartbeat_ms = 300; lease_ms = %d;\n"
		 "  claim_timeout_ms = 5000; };\n"
		 "routes = ( { filter = \"d/+/data\"; topic = \"%s\"; key = \"${clientid}\"; format = \"raw\"; },\n"
		 "  { filter = \"wills/#\"; topic = \"%s\"; key = \"${clientid}\"; format = \"raw\"; } );\n"
		 "downlink = ( { topic = \"%s\"; group = \"%s-dl\"; mode = \"group\";\n"
		 "  mqtt_topic = \"cmd/${key}\"; qos = 1; format = \"raw\"; } );\n",
		 boot, gws[i].metrics_port, i + 1, prefix, PARTS, LEASE_MS, up_topic, will_topic,
		 cmd_topic, prefix);
	return gw_start(&gws[i], cfg);
}

static bool ready(int i, int timeout_ms)
{
	long long end = itutil_now_ms() + timeout_ms;
	while (itutil_now_ms() < end) {
		if (itkafka_http_get(gws[i].metrics_port, "/readyz", &resp, 2000) == 200)
			return true;
		itutil_sleep_ms(100);
	}
	return false;
}

static int start_all(void)
{
	for (int i = 0; i < 3; i++)
		if (start_gw(i) < 0)
			return -1;
	for (int i = 0; i < 3; i++)
		if (!ready(i, 30000)) {
			fprintf(stderr, "gateway %d not ready: %s\n", i + 1, resp.body);
			return -1;
		}
	return 0;
}

static void stop_all(void)
{
	/* Also the SIGKILLed one: gw_stop() reaps it and removes its directory. */
	for (int i = 0; i < 3; i++)
		if (gws[i].pid || gws[i].dir[0])
			gw_stop(&gws[i]);
	memset(gws, 0, sizeof(gws));
}

static void names(const char *p)
{
	snprintf(prefix, sizeof(prefix), "%s", p);
	snprintf(up_topic, sizeof(up_topic), "%s-up", p);
	snprintf(will_topic, sizeof(will_topic), "%s-wills", p);
	snprintf(cmd_topic, sizeof(cmd_topic), "%s-cmd", p);
}

/* The command topic on the real Kafka, with PARTS partitions, before the
 * gateways subscribe (auto-creation would make one partition). */
static int topic_create(const char *topic, int n)
{
	char e[256];
	rd_kafka_t *rk = itkafka_client_new(boot, RD_KAFKA_PRODUCER, NULL, NULL);
	if (!rk)
		return -1;
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, n, 1, e, sizeof(e));
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	int rc = -1;
	const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
	if (res) {
		size_t cnt;
		const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
		rc = cnt == 1 && !rd_kafka_topic_result_error(tr[0]) ? 0 : -1;
		if (rc)
			fprintf(stderr, "create %s: %s\n", topic, rd_kafka_topic_result_error_string(tr[0]));
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
	return rc;
}

/* ---- the commands' producer ------------------------------------------------ */

static void cmd_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	struct cmd *c = m->_private;
	if (!c)
		return; /* a warm-up command */
	c->partition = m->partition;
	c->offset = m->offset;
	atomic_store(&c->state, m->err ? -1 : 1);
}

static rd_kafka_t *cmd_producer(void)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "linger.ms", "2", e, sizeof(e)) ||
	    /* murmur2 like the gateways and Java producers: key -> partition. */
	    rd_kafka_conf_set(conf, "partitioner", "murmur2_random", e, sizeof(e))) {
		fprintf(stderr, "producer conf: %s\n", e);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, cmd_dr);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk)
		fprintf(stderr, "producer: %s\n", e);
	return rk;
}

/* Produces "<id> <n>" (n < 0: the warm-up "<id> w") with key = id. */
static int cmd_send(rd_kafka_t *rk, int dev, int n)
{
	char val[48];
	struct cmd *c = NULL;
	if (n >= 0) {
		int k = atomic_load(&ncmds);
		c = &cmds[k];
		*c = (struct cmd){ .dev = dev, .n = n, .at = itutil_now_ms(), .partition = -1,
				   .offset = -1 };
		atomic_store(&c->state, 0);
		atomic_store(&ncmds, k + 1);
		snprintf(val, sizeof(val), "%s %d", devs[dev].id, n);
	} else {
		snprintf(val, sizeof(val), "%s w", devs[dev].id);
	}
	const char *key = devs[dev].id;
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
			rk, RD_KAFKA_V_TOPIC(cmd_topic), RD_KAFKA_V_KEY(key, strlen(key)),
			RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			RD_KAFKA_V_OPAQUE(c), RD_KAFKA_V_END);
		if (!err)
			return 0;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			fprintf(stderr, "produce: %s\n", rd_kafka_err2str(err));
			if (c)
				atomic_store(&c->state, -1);
			return -1;
		}
		rd_kafka_poll(rk, 10);
	}
}

/* ---- devices (paho.mqtt.c) -------------------------------------------------- */

static void uri_of(int g, char *out, size_t cap)
{
	snprintf(out, cap, "tcp://127.0.0.1:%d", gws[g].port);
}

static int on_cmd(void *ctx, char *topic, int tlen, MQTTClient_message *m)
{
	struct device *d = ctx;
	char id[32], what[16];
	char payload[64];
	snprintf(payload, sizeof(payload), "%.*s", m->payloadlen, (const char *)m->payload);
	size_t tl = tlen ? (size_t)tlen : strlen(topic);
	bool topic_ok = tl == strlen(d->cmd_filter) && memcmp(topic, d->cmd_filter, tl) == 0;
	pthread_mutex_lock(&d->mu);
	if (topic_ok && sscanf(payload, "%31s %15s", id, what) == 2 && strcmp(id, d->id) == 0) {
		if (strcmp(what, "w") == 0) {
			d->warm++;
		} else {
			int n = atoi(what);
			if (n >= 0 && n < CMD_PER_DEV) {
				if (d->got[n]++ == 0)
					d->got_at[n] = itutil_now_ms();
			} else {
				d->cmd_bad++;
			}
		}
	} else {
		d->cmd_bad++;
	}
	pthread_mutex_unlock(&d->mu);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

/* Pairs PUBACKed tokens with the sequences they carried. Lock held. */
static void match_acks(struct device *d)
{
	for (int i = 0; i < d->ndone;) {
		int j;
		for (j = 0; j < d->npend && d->pend[j].tok != d->done[i]; j++)
			;
		if (j == d->npend) {
			i++;
			continue;
		}
		int seq = d->pend[j].seq;
		if (!d->acked[seq]) {
			d->acked[seq] = 1;
			d->nacked++;
		}
		d->pend[j] = d->pend[--d->npend];
		d->done[i] = d->done[--d->ndone];
	}
}

static void on_delivered(void *ctx, MQTTClient_deliveryToken tok)
{
	struct device *d = ctx;
	pthread_mutex_lock(&d->mu);
	if (d->ndone < (int)(sizeof(d->done) / sizeof(d->done[0])))
		d->done[d->ndone++] = tok;
	else
		d->stray++;
	match_acks(d);
	pthread_mutex_unlock(&d->mu);
}

static void on_lost(void *ctx, char *cause)
{
	(void)cause;
	struct device *d = ctx;
	d->lost_at = itutil_now_ms();
	atomic_store(&d->lost, true);
}

/* CONNECT (Clean Session 0, will "<id> conn<N>") to gateway g. Returns
 * paho's code (0 ok; 3: server unavailable); *present: session present. */
static int dev_connect(struct device *d, int g, int *present)
{
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	MQTTClient_willOptions w = MQTTClient_willOptions_initializer;
	char uri[64], wp[48];
	char *uris[1] = { uri };
	uri_of(g, uri, sizeof(uri));
	snprintf(wp, sizeof(wp), "%s conn%d", d->id, d->conns + 1);
	w.topicName = d->wtopic;
	w.message = wp;
	w.qos = 1;
	w.retained = 0;
	o.will = &w;
	o.cleansession = 0;
	o.reliable = 0;
	o.maxInflightMessages = INFLIGHT;
	o.keepAliveInterval = 30;
	o.connectTimeout = 5;
	o.MQTTVersion = MQTTVERSION_3_1_1;
	o.serverURIcount = 1;
	o.serverURIs = uris;
	int rc = MQTTClient_connect(d->cl, &o);
	if (rc == MQTTCLIENT_SUCCESS) {
		d->conns++;
		atomic_store(&d->gw, g);
		*present = o.returned.sessionPresent;
	}
	return rc;
}

static void dev_publish(struct device *d)
{
	char payload[48];
	pthread_mutex_lock(&d->mu);
	bool room = d->npend < PEND_MAX && d->next_seq < SEQ_MAX;
	pthread_mutex_unlock(&d->mu);
	if (!room)
		return;
	int seq = d->next_seq;
	int len = snprintf(payload, sizeof(payload), "%s %d", d->id, seq);
	MQTTClient_deliveryToken tok = 0;
	/* Not under d->mu: paho's thread may be in on_delivered() meanwhile. */
	int rc = MQTTClient_publish(d->cl, d->pub_topic, len, payload, 1, 0, &tok);
	if (rc != MQTTCLIENT_SUCCESS)
		return; /* disconnected or the window is full: the same seq next time */
	d->next_seq++;
	pthread_mutex_lock(&d->mu);
	d->pend[d->npend].tok = tok;
	d->pend[d->npend].seq = seq;
	d->npend++;
	match_acks(d);
	pthread_mutex_unlock(&d->mu);
}

/* The device's own thread: publishes while `publishing`, reconnects when
 * its connection is lost (to gateway 2 or 3 when its gateway was killed). */
static void *dev_thread(void *arg)
{
	struct device *d = arg;
	long long next = itutil_now_ms() + rand() % PUB_EVERY_MS;
	while (!atomic_load(&stopping)) {
		if (atomic_load(&d->lost)) {
			int g = atomic_load(&d->gw);
			if (g != 0 || !t_kill)
				d->unexpected_lost++;
			if (g == 0)
				g = 1 + d->idx % 2;
			/* A device's backoff: 100-600 ms (or KG_KILL_BACKOFF_MS
			 * more: see the top of the file). */
			itutil_sleep_ms(backoff_ms + 100 + rand() % 500);
			int present = 0, rc;
			long long c0 = itutil_now_ms();
			while ((rc = dev_connect(d, g, &present)) != MQTTCLIENT_SUCCESS &&
			       !atomic_load(&stopping)) {
				d->reconnect_fail++;
				itutil_sleep_ms(300);
				c0 = itutil_now_ms();
			}
			if (rc != MQTTCLIENT_SUCCESS)
				break;
			d->back_at = itutil_now_ms();
			d->connect_ms = d->back_at - c0;
			atomic_store(&d->lost, false);
			if (!present) {
				/* Counted (a failure); the device does what a real one
				 * does and subscribes again, so that the rest of the
				 * run still measures the commands. */
				d->present_bad++;
				MQTTClient_subscribe(d->cl, d->cmd_filter, 1);
			}
			continue;
		}
		long long now = itutil_now_ms();
		if (atomic_load(&publishing) && now >= next) {
			dev_publish(d);
			next += PUB_EVERY_MS;
			if (next < now - PUB_EVERY_MS * 5)
				next = now; /* behind after a reconnect: no burst */
		}
		itutil_sleep_ms(10);
	}
	return NULL;
}

static void dev_init(int i)
{
	struct device *d = &devs[i];
	memset(d, 0, sizeof(*d));
	d->idx = i;
	d->home = i < DEV1 ? 0 : i < DEV1 + (NDEV - DEV1) / 2 ? 1 : 2;
	atomic_store(&d->gw, d->home);
	pthread_mutex_init(&d->mu, NULL);
	snprintf(d->id, sizeof(d->id), "kill-d%02d", i);
	snprintf(d->pub_topic, sizeof(d->pub_topic), "d/%s/data", d->id);
	snprintf(d->cmd_filter, sizeof(d->cmd_filter), "cmd/%s", d->id);
	snprintf(d->wtopic, sizeof(d->wtopic), "wills/%s", d->id);
}

static void devices_cleanup(bool disconnect)
{
	atomic_store(&publishing, false);
	atomic_store(&stopping, true);
	for (int i = 0; i < NDEV; i++)
		if (devs[i].th_started) {
			pthread_join(devs[i].th, NULL);
			devs[i].th_started = false;
		}
	for (int i = 0; i < NDEV; i++)
		if (devs[i].cl) {
			/* DISCONNECT: no will for these connections. */
			if (disconnect && MQTTClient_isConnected(devs[i].cl))
				MQTTClient_disconnect(devs[i].cl, 1000);
			MQTTClient_destroy(&devs[i].cl);
		}
	if (watcher) {
		MQTTClient_disconnect(watcher, 500);
		MQTTClient_destroy(&watcher);
	}
}

/* ---- the wills watcher ------------------------------------------------------ */

static int on_will(void *ctx, char *topic, int tlen, MQTTClient_message *m)
{
	(void)ctx;
	char t[128], payload[64];
	snprintf(t, sizeof(t), "%.*s", tlen ? tlen : (int)strlen(topic), topic);
	snprintf(payload, sizeof(payload), "%.*s", m->payloadlen, (const char *)m->payload);
	int k, conn;
	pthread_mutex_lock(&wmu);
	if (strcmp(t, "wills/probe") == 0)
		wills_probe++;
	else if (sscanf(t, "wills/kill-d%d", &k) == 1 && k >= 0 && k < NDEV) {
		char want[48];
		snprintf(want, sizeof(want), "kill-d%02d conn", k);
		if (strncmp(payload, want, strlen(want)) == 0 &&
		    sscanf(payload + strlen(want), "%d", &conn) == 1 && conn >= 1 && conn <= 2)
			wills_seen[k][conn]++;
		else
			wills_seen[k][3]++;
		wills_last_at[k] = itutil_now_ms();
	} else {
		wills_other++;
	}
	pthread_mutex_unlock(&wmu);
	MQTTClient_freeMessage(&m);
	MQTTClient_free(topic);
	return 1;
}

static void on_watcher_lost(void *ctx, char *cause)
{
	(void)ctx;
	(void)cause;
	fprintf(stderr, "it_state_kill: the wills watcher lost its connection\n");
}

/* ---- reading back ------------------------------------------------------------ */

/* Every record of topic (count from the high watermarks), or NULL with
 * *n = 0 when the topic has none. Free with itkafka_recs_free + free. */
static struct itkafka_rec *read_all(const char *topic, int *n)
{
	long cnt = itkafka_count(boot, topic, 10000);
	*n = 0;
	if (cnt <= 0)
		return NULL;
	struct itkafka_rec *r = calloc((size_t)cnt, sizeof(*r));
	assert_non_null(r);
	int got = itkafka_read(boot, topic, (int)cnt, 30000, r);
	if (got != cnt)
		fprintf(stderr, "it_state_kill: read %d of %ld records of %s\n", got, cnt, topic);
	*n = got > 0 ? got : 0;
	return r;
}

/* The committed offset of group on topic's partition p, or -1 (none). */
static int64_t committed(const char *group, const char *topic, int32_t p)
{
	rd_kafka_t *rk = itkafka_client_new(boot, RD_KAFKA_CONSUMER, group, NULL);
	if (!rk)
		return -1;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, topic, p);
	int64_t off = -1;
	if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && !l->elems[0].err)
		off = l->elems[0].offset;
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return off;
}

/* ---- the test -------------------------------------------------------------- */

static void wait_probe_routed(void)
{
	/* gateway 3 knows the watcher's wills/# on gateway 2 (and so does
	 * gateway 1 soon after: the sessions topic is read by all). */
	MQTTClient pr = NULL;
	char uri[64];
	uri_of(2, uri, sizeof(uri));
	MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
	assert_int_equal(MQTTClient_create(&pr, uri, "kill-prober", MQTTCLIENT_PERSISTENCE_NONE, NULL),
			 MQTTCLIENT_SUCCESS);
	o.cleansession = 1;
	o.connectTimeout = 5;
	assert_int_equal(MQTTClient_connect(pr, &o), MQTTCLIENT_SUCCESS);
	long long end = itutil_now_ms() + 15000;
	bool got = false;
	while (!got && itutil_now_ms() < end) {
		MQTTClient_publish(pr, "wills/probe", 5, "probe", 0, 0, NULL);
		itutil_sleep_ms(200);
		pthread_mutex_lock(&wmu);
		got = wills_probe > 0;
		pthread_mutex_unlock(&wmu);
	}
	MQTTClient_disconnect(pr, 500);
	MQTTClient_destroy(&pr);
	assert_true(got);
}

static void test_kill_under_load(void **state)
{
	(void)state;
	fails = 0;
	t_kill = 0;
	atomic_store(&ncmds, 0);
	atomic_store(&publishing, false);
	atomic_store(&stopping, false);
	memset(cmd_next, 0, sizeof(cmd_next));
	memset(wills_seen, 0, sizeof(wills_seen));
	memset(wills_last_at, 0, sizeof(wills_last_at));
	wills_probe = wills_other = 0;

	/* The watcher of the wills, on gateway 2. */
	char uri[64];
	uri_of(1, uri, sizeof(uri));
	assert_int_equal(MQTTClient_create(&watcher, uri, "kill-watcher", MQTTCLIENT_PERSISTENCE_NONE,
					   NULL), MQTTCLIENT_SUCCESS);
	assert_int_equal(MQTTClient_setCallbacks(watcher, NULL, on_watcher_lost, on_will, NULL),
			 MQTTCLIENT_SUCCESS);
	{
		MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
		o.cleansession = 1;
		o.connectTimeout = 5;
		o.keepAliveInterval = 30;
		assert_int_equal(MQTTClient_connect(watcher, &o), MQTTCLIENT_SUCCESS);
		assert_int_equal(MQTTClient_subscribe(watcher, "wills/#", 1), MQTTCLIENT_SUCCESS);
	}

	/* The devices: persistent sessions, a will each, cmd/<id> at QoS 1. */
	for (int i = 0; i < NDEV; i++) {
		struct device *d = &devs[i];
		dev_init(i);
		uri_of(d->home, uri, sizeof(uri));
		assert_int_equal(MQTTClient_create(&d->cl, uri, d->id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
				 MQTTCLIENT_SUCCESS);
		assert_int_equal(MQTTClient_setCallbacks(d->cl, d, on_lost, on_cmd, on_delivered),
				 MQTTCLIENT_SUCCESS);
		int present = 1;
		assert_int_equal(dev_connect(d, d->home, &present), MQTTCLIENT_SUCCESS);
		assert_int_equal(present, 0);
		assert_int_equal(MQTTClient_subscribe(d->cl, d->cmd_filter, 1), MQTTCLIENT_SUCCESS);
	}
	wait_probe_routed();

	/* Warm-up: a command per device reaches it (the downlink group has its
	 * partitions, every gateway knows where every device is). */
	rd_kafka_t *prod = cmd_producer();
	assert_non_null(prod);
	for (int i = 0; i < NDEV; i++)
		assert_int_equal(cmd_send(prod, i, -1), 0);
	rd_kafka_flush(prod, 10000);
	{
		long long end = itutil_now_ms() + 30000;
		int warm = 0;
		while (itutil_now_ms() < end) {
			warm = 0;
			for (int i = 0; i < NDEV; i++) {
				pthread_mutex_lock(&devs[i].mu);
				warm += devs[i].warm > 0;
				pthread_mutex_unlock(&devs[i].mu);
			}
			if (warm == NDEV)
				break;
			itutil_sleep_ms(100);
		}
		fprintf(stderr, "it_state_kill (%s): warm-up commands reached %d of %d devices\n",
			cluster, warm, NDEV);
		assert_int_equal(warm, NDEV);
	}

	/* The load. */
	atomic_store(&publishing, true);
	for (int i = 0; i < NDEV; i++) {
		assert_int_equal(pthread_create(&devs[i].th, NULL, dev_thread, &devs[i]), 0);
		devs[i].th_started = true;
	}
	long long t0 = itutil_now_ms(), next_cmd[NDEV];
	for (int i = 0; i < NDEV; i++)
		next_cmd[i] = t0 + (i * CMD_EVERY_MS) / NDEV;
	for (;;) {
		long long now = itutil_now_ms();
		if (!t_kill && now >= t0 + PRE_KILL_MS) {
			t_kill = itutil_now_ms();
			gw_kill(&gws[0], SIGKILL);
			assert_true(gw_wait_exit(&gws[0], 5000) >= 0);
			fprintf(stderr, "it_state_kill (%s): gateway 1 SIGKILLed at +%lld ms\n", cluster,
				t_kill - t0);
		}
		if (t_kill && now >= t_kill + POST_KILL_MS)
			break;
		for (int i = 0; i < NDEV; i++)
			if (now >= next_cmd[i] && cmd_next[i] < CMD_PER_DEV) {
				assert_int_equal(cmd_send(prod, i, cmd_next[i]++), 0);
				next_cmd[i] += CMD_EVERY_MS;
			}
		rd_kafka_poll(prod, 0);
		itutil_sleep_ms(5);
	}
	atomic_store(&publishing, false);
	long long t_stop = itutil_now_ms();
	CHECK(rd_kafka_flush(prod, 15000) == RD_KAFKA_RESP_ERR_NO_ERROR,
	      "the command producer did not flush");
	rd_kafka_destroy(prod);
	int nc = atomic_load(&ncmds);

	/* Until every command, every in-flight PUBACK and every will of a
	 * killed connection arrived (or SETTLE_MS after the kill), then
	 * QUIET_MS for what should not come (a will twice). */
	long long settle_end = t_kill + SETTLE_MS;
	for (;;) {
		int missing = 0, inflight = 0, wills = 0;
		for (int k = 0; k < nc; k++)
			if (atomic_load(&cmds[k].state) == 1) {
				struct device *d = &devs[cmds[k].dev];
				pthread_mutex_lock(&d->mu);
				missing += d->got[cmds[k].n] == 0;
				pthread_mutex_unlock(&d->mu);
			}
		for (int i = 0; i < NDEV; i++) {
			pthread_mutex_lock(&devs[i].mu);
			inflight += devs[i].npend;
			pthread_mutex_unlock(&devs[i].mu);
		}
		pthread_mutex_lock(&wmu);
		for (int i = 0; i < DEV1; i++)
			wills += wills_seen[i][1] > 0;
		pthread_mutex_unlock(&wmu);
		if ((missing == 0 && inflight == 0 && wills == DEV1) || itutil_now_ms() >= settle_end)
			break;
		itutil_sleep_ms(200);
	}
	itutil_sleep_ms(QUIET_MS);
	long long t_end = itutil_now_ms();
	devices_cleanup(true);

	/* ---- uplink: every acknowledged (client, seq) in Kafka ---- */
	int nup = 0;
	struct itkafka_rec *up = read_all(up_topic, &nup);
	static uint8_t found[NDEV][SEQ_MAX];
	memset(found, 0, sizeof(found));
	int up_bad = 0, up_dup = 0;
	for (int r = 0; r < nup; r++) {
		int k, seq;
		if (up[r].val && sscanf(up[r].val, "kill-d%d %d", &k, &seq) == 2 && k >= 0 &&
		    k < NDEV && seq >= 0 && seq < SEQ_MAX && up[r].key &&
		    strcmp(up[r].key, devs[k].id) == 0) {
			if (found[k][seq]++)
				up_dup++;
		} else {
			up_bad++;
		}
	}
	if (up) {
		itkafka_recs_free(up, nup);
		free(up);
	}
	long acked = 0, acked_missing = 0, unacked_in_kafka = 0;
	for (int i = 0; i < NDEV; i++)
		for (int s = 0; s < SEQ_MAX; s++) {
			acked += devs[i].acked[s];
			if (devs[i].acked[s] && !found[i][s]) {
				acked_missing++;
				if (acked_missing <= 10)
					fprintf(stderr, "  acked, not in Kafka: %s %d\n", devs[i].id, s);
			}
			unacked_in_kafka += !devs[i].acked[s] && found[i][s];
		}
	CHECK(acked_missing == 0, "%ld acknowledged publishes are missing from %s", acked_missing,
	      up_topic);
	CHECK(up_bad == 0, "%d records in %s are not the devices'", up_bad, up_topic);

	/* ---- commands ---- */
	int produced = 0, failed = 0, received = 0, lost = 0, dups = 0, lost_cat[2][3] = { { 0 } };
	int lost_part[PARTS + 1] = { 0 };
	long long lat_max = 0;
	static int lost_idx[NDEV * CMD_PER_DEV];
	for (int k = 0; k < nc; k++) {
		struct cmd *c = &cmds[k];
		struct device *d = &devs[c->dev];
		if (atomic_load(&c->state) != 1) {
			failed++;
			continue;
		}
		produced++;
		if (d->got[c->n] == 0) {
			int cat = c->at < t_kill ? 0 : d->home == 0 && d->back_at && c->at < d->back_at ? 1 : 2;
			lost_cat[d->home == 0 ? 0 : 1][cat]++;
			lost_part[c->partition >= 0 && c->partition < PARTS ? c->partition : PARTS]++;
			lost_idx[lost++] = k;
		} else {
			received++;
			dups += d->got[c->n] - 1;
			/* Produce -> first delivery: the downlink partitions gateway
			 * 1 read wait for the group's session timeout. */
			if (d->got_at[c->n] - c->at > lat_max)
				lat_max = d->got_at[c->n] - c->at;
		}
	}
	int cmd_bad = 0, present_bad = 0, reconnected = 0, unexpected = 0, refused = 0;
	int fed_after = 0;          /* killed devices that got a command produced after their return */
	long long back_max = 0;
	fprintf(stderr, "  gw-1's devices (ms after the kill: connection lost / CONNACK on the "
		"other gateway, CONNECT->CONNACK ms):");
	for (int i = 0; i < DEV1; i++)
		fprintf(stderr, " d%02d %+lld/%+lld,%lld", i,
			devs[i].lost_at ? devs[i].lost_at - t_kill : 0,
			devs[i].back_at ? devs[i].back_at - t_kill : 0, devs[i].connect_ms);
	fputc('\n', stderr);
	int due_after = 0;          /* ... of those for which some were produced after it */
	for (int i = 0; i < DEV1; i++) {
		struct device *d = &devs[i];
		bool due = false, any = false;
		for (int k = 0; k < nc && d->back_at && !any; k++)
			if (cmds[k].dev == i && cmds[k].at > d->back_at) {
				due = true;
				any = d->got[cmds[k].n] > 0;
			}
		due_after += due;
		fed_after += any;
		if (due && !any)
			fprintf(stderr, "  %s: no command produced after its reconnect reached it\n", d->id);
	}
	for (int i = 0; i < NDEV; i++) {
		cmd_bad += devs[i].cmd_bad;
		present_bad += devs[i].present_bad;
		unexpected += devs[i].unexpected_lost;
		refused += devs[i].reconnect_fail;
		if (devs[i].home == 0 && devs[i].conns >= 2) {
			reconnected++;
			if (devs[i].back_at - t_kill > back_max)
				back_max = devs[i].back_at - t_kill;
		}
	}

	/* What stayed in the dead gateway's inbox past its committed offset:
	 * forwarded there, never delivered. */
	char inbox[64], inbox_group[64];
	snprintf(inbox, sizeof(inbox), "%s.inbox.gw-1", prefix);
	snprintf(inbox_group, sizeof(inbox_group), "%s.inbox.gw-1", prefix);
	int nin = 0, stranded = 0, lost_stranded = 0;
	struct itkafka_rec *in = read_all(inbox, &nin);
	static int64_t inbox_commit[64];
	for (int p = 0; p < 64; p++)
		inbox_commit[p] = -2;
	static uint8_t in_dead[NDEV][CMD_PER_DEV];
	memset(in_dead, 0, sizeof(in_dead));
	for (int r = 0; r < nin; r++) {
		int32_t p = in[r].partition;
		if (p < 0 || p >= 64)
			continue;
		if (inbox_commit[p] == -2)
			inbox_commit[p] = committed(inbox_group, inbox, p);
		int k, n;
		if (in[r].offset >= inbox_commit[p] && in[r].val &&
		    sscanf(in[r].val, "kill-d%d %d", &k, &n) == 2 && k >= 0 && k < NDEV && n >= 0 &&
		    n < CMD_PER_DEV) {
			stranded++;
			in_dead[k][n] = 1;
		}
	}
	if (in) {
		itkafka_recs_free(in, nin);
		free(in);
	}
	for (int j = 0; j < lost; j++) {
		struct cmd *c = &cmds[lost_idx[j]];
		lost_stranded += in_dead[c->dev][c->n];
	}
	for (int j = 0; j < lost && j < 40; j++) {
		struct cmd *c = &cmds[lost_idx[j]];
		struct device *d = &devs[c->dev];
		fprintf(stderr,
			"  lost command \"%s %d\": device on gw-%d (now gw-%d), produced at %+lld ms "
			"from the kill (device back at %+lld ms), partition %d offset %lld%s\n",
			d->id, c->n, d->home + 1, atomic_load(&d->gw) + 1, c->at - t_kill,
			d->back_at ? d->back_at - t_kill : 0, (int)c->partition, (long long)c->offset,
			in_dead[c->dev][c->n] ? ", uncommitted in gw-1's inbox" : "");
	}
	if (lost > 40)
		fprintf(stderr, "  ... %d more lost commands\n", lost - 40);
	if (lost) {
		fprintf(stderr, "  lost commands by partition:");
		for (int p = 0; p <= PARTS; p++)
			if (lost_part[p])
				fprintf(stderr, " %s%d: %d", p < PARTS ? "p" : "?", p, lost_part[p]);
		fputc('\n', stderr);
	}

	/* ---- wills: each killed connection's once, nothing else ---- */
	static struct itkafka_rec wrec[512];
	int nw = 0;
	{
		long cnt = itkafka_count(boot, will_topic, 10000);
		if (cnt > 512)
			cnt = 512;
		if (cnt > 0)
			nw = itkafka_read(boot, will_topic, (int)cnt, 20000, wrec);
		if (nw < 0)
			nw = 0;
	}
	int wk[NDEV][4];
	memset(wk, 0, sizeof(wk));
	int wk_other = 0;
	for (int r = 0; r < nw; r++) {
		int k, conn;
		if (wrec[r].val && strcmp(wrec[r].val, "probe") == 0)
			continue;
		if (wrec[r].val && sscanf(wrec[r].val, "kill-d%d conn%d", &k, &conn) == 2 && k >= 0 &&
		    k < NDEV)
			wk[k][conn >= 1 && conn <= 2 ? conn : 3]++;
		else
			wk_other++;
	}
	itkafka_recs_free(wrec, nw);
	int w_once = 0, w_missing = 0, w_dup = 0, w_wrong = 0, wk_once = 0;
	long long w_last = 0;
	pthread_mutex_lock(&wmu);
	for (int i = 0; i < NDEV; i++) {
		if (i < DEV1) {
			w_once += wills_seen[i][1] == 1;
			w_missing += wills_seen[i][1] == 0;
			w_dup += wills_seen[i][1] > 1;
			wk_once += wk[i][1] == 1;
			if (wills_seen[i][1] != 1 || wk[i][1] != 1)
				fprintf(stderr, "  will of %s's killed connection: %d at the watcher, "
					"%d in Kafka\n", devs[i].id, wills_seen[i][1], wk[i][1]);
			if (wills_seen[i][1] && wills_last_at[i] - t_kill > w_last)
				w_last = wills_last_at[i] - t_kill;
			w_wrong += wills_seen[i][2] + wills_seen[i][3] + wk[i][2] + wk[i][3];
		} else {
			w_wrong += wills_seen[i][1] + wills_seen[i][2] + wills_seen[i][3] + wk[i][1] +
				   wk[i][2] + wk[i][3];
		}
	}
	w_wrong += wills_other + wk_other;
	pthread_mutex_unlock(&wmu);
	CHECK(w_once == DEV1, "the wills of %d of the %d killed connections reached the watcher "
	      "once (%d never, %d more than once)", w_once, DEV1, w_missing, w_dup);
	CHECK(wk_once == DEV1, "the wills of %d of the %d killed connections are once in %s",
	      wk_once, DEV1, will_topic);
	CHECK(w_wrong == 0, "%d wills (watcher and Kafka) of connections that did not die with "
	      "gateway 1, or unreadable", w_wrong);

	/* ---- the rest ---- */
	CHECK(reconnected == DEV1, "%d of %d devices of gateway 1 reconnected", reconnected, DEV1);
	CHECK(fed_after == due_after, "%d of %d devices of gateway 1 received commands produced "
	      "after their reconnect", fed_after, due_after);
	CHECK(backoff_ms || due_after == DEV1, "commands were produced after the reconnect of only "
	      "%d of %d devices of gateway 1", due_after, DEV1);
	CHECK(present_bad == 0, "%d reconnects found no session (session present 0)", present_bad);
	CHECK(unexpected == 0, "%d connections to gateways 2/3 were lost", unexpected);
	CHECK(failed == 0, "%d commands were not acknowledged by Kafka", failed);
	CHECK(cmd_bad == 0, "%d messages to the devices were not theirs", cmd_bad);
	CHECK(lost == 0, "%d of %d commands never reached their device (devices of gw-1: %d "
	      "produced before the kill, %d between the kill and the device's reconnect, %d after; "
	      "devices of gw-2/3: %d before, %d after); %d of the lost sit uncommitted in gw-1's "
	      "inbox (%d command records there in all)",
	      lost, produced, lost_cat[0][0], lost_cat[0][1], lost_cat[0][2], lost_cat[1][0],
	      lost_cat[1][1] + lost_cat[1][2], lost_stranded, stranded);

	printf("it_state_kill summary (%s): acked=%ld acked_missing=%ld in_kafka_unacked=%ld "
	       "uplink_dups=%d | commands produced=%d received=%d lost=%d dup=%d max_latency=%lld ms "
	       "(in gw-1's inbox past its commit: %d) | wills once=%d/%d missing=%d dup=%d wrong=%d "
	       "in_kafka_once=%d/%d last=%+lld ms | reconnected=%d/%d present0=%d fed_after=%d/%d "
	       "refused=%d last_back=%+lld ms | load stopped at %+lld ms, run %lld ms\n",
	       cluster, acked, acked_missing, unacked_in_kafka, up_dup, produced, received, lost, dups,
	       lat_max, stranded, w_once, DEV1, w_missing, w_dup, w_wrong, wk_once, DEV1, w_last,
	       reconnected, DEV1, present_bad, fed_after, due_after, refused, back_max, t_stop - t_kill,
	       t_end - t0);
	fflush(stdout);
	assert_int_equal(fails, 0);
}

/* ---- groups ------------------------------------------------------------------ */

static int mock_setup(void **state)
{
	(void)state;
	char p[32];
	cluster = "mock";
	if (itkafka_mock_init(&mock, 1) < 0)
		return -1;
	boot = mock.bootstrap;
	snprintf(p, sizeof(p), "itkill%d", (int)getpid());
	names(p);
	if (rd_kafka_mock_topic_create(mock.mc, cmd_topic, PARTS, 1) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return start_all();
}

static int group_teardown(void **state)
{
	(void)state;
	devices_cleanup(false);
	stop_all();
	return 0;
}

static int mock_teardown(void **state)
{
	group_teardown(state);
	itkafka_mock_release(&mock);
	return 0;
}

static int real_setup(void **state)
{
	(void)state;
	char p[32];
	cluster = "real";
	if (itkafka_local_start(&kl) < 0)
		return -1;
	if (kl.skip_reason)
		return 0;
	boot = kl.bootstrap;
	snprintf(p, sizeof(p), "itkillr%d", (int)getpid());
	names(p);
	if (topic_create(cmd_topic, PARTS) < 0)
		return -1;
	return start_all();
}

static int real_teardown(void **state)
{
	group_teardown(state);
	itkafka_local_stop(&kl);
	return 0;
}

static void test_kill_under_load_real(void **state)
{
	if (kl.skip_reason) {
		print_message("%s\n", kl.skip_reason);
		skip();
	}
	test_kill_under_load(state);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)getpid());
	if (getenv("KG_KILL_BACKOFF_MS"))
		backoff_ms = atoi(getenv("KG_KILL_BACKOFF_MS"));
	const struct CMUnitTest mock_tests[] = {
		cmocka_unit_test(test_kill_under_load),
	};
	const struct CMUnitTest real_tests[] = {
		cmocka_unit_test(test_kill_under_load_real),
	};
	int nf = cmocka_run_group_tests_name("it_state_kill (mock cluster)", mock_tests, mock_setup,
					     mock_teardown);
	if (!getenv("KG_SKIP_REAL_KAFKA"))
		nf += cmocka_run_group_tests_name("it_state_kill (real Kafka)", real_tests, real_setup,
						  real_teardown);
	return nf;
}
