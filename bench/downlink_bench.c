/*
 * downlink_bench.c - Kafka-to-device throughput (msgs/s) and produce-to-
 * delivery latency (p50/p99) through kafkagate's downlink.
 *
 * The bench starts the gateway ($KG_BIN, default build/kafkagate) with two
 * mappings, bench-q0 (QoS 0) and bench-q1 (QoS 1), each keyed to
 * devices/${key}/commands; connects DEVICES raw MQTT clients each subscribed
 * (QoS 1) to its own devices/devN/commands; and produces records keyed
 * round-robin to the devices from this process. Each payload carries its
 * produce time (monotonic ns), read back on arrival. Devices acknowledge
 * QoS 1 at once, from one epoll thread.
 *
 * Per QoS, two phases:
 *   throughput  COUNT records produced as fast as possible; msgs/s = COUNT /
 *               (last arrival - first produce)
 *   latency     RATE records/s for SECONDS, paced every millisecond;
 *               p50/p99/max of produce -> arrival
 *
 * Kafka: librdkafka's mock cluster in this process (default), or a real
 * broker with --bootstrap HOST:PORT (topics created with 4 partitions):
 *   make build/kafkagate build/bench/downlink_bench
 *   build/bench/downlink_bench                         # mock cluster
 *   B=$(scripts/kafka-local start)
 *   build/bench/downlink_bench --bootstrap "$B"; scripts/kafka-local stop
 * Options: --devices N (1000) --count N (200000) --rate N (25000)
 *          --seconds N (4) --payload BYTES (64) --qos 0|1 (both)
 *          --fetch-wait MS: the gateway's fetch.wait.max.ms (default 10 on
 *          the mock, whose empty fetches wait that long even when records
 *          arrive meanwhile; librdkafka's 500 on a real broker)
 * Everything binds 127.0.0.1; the gateway is stopped by PID at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"
#include "rawmqtt.h"

struct conn {
	int fd;
	size_t len;
	uint8_t in[1 << 16];
};

static struct {
	int devices, rate, seconds, payload, only_qos, fetch_wait;
	long count;
	const char *bootstrap;
} opt = { 1000, 25000, 4, 64, -1, -1, 200000, NULL };

static struct conn *conns;
static atomic_long received[2];
static atomic_llong last_arrival_ns;
static atomic_bool recording, stop_rx;
static int64_t *lat;
static atomic_long nlat;
static long lat_cap;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "downlink_bench: %s\n", what);
	exit(1);
}

/* Handles every whole packet in c->in; acks QoS 1 PUBLISHes. */
static void on_packets(struct conn *c)
{
	uint8_t acks[4 * 512];
	size_t nacks = 0, off = 0;
	while (c->len - off >= 2) {
		const uint8_t *p = c->in + off;
		size_t avail = c->len - off, rl = 0, i = 1;
		bool whole = false;
		for (int shift = 0; i < avail && i <= 4; shift += 7) {
			uint8_t b = p[i++];
			rl |= (size_t)(b & 0x7f) << shift;
			if (!(b & 0x80)) {
				whole = avail >= i + rl;
				break;
			}
		}
		if (!whole)
			break;
		if ((p[0] & 0xF0) == 0x30) {
			int qos = (p[0] >> 1) & 3;
			size_t tl = (size_t)p[i] << 8 | p[i + 1], b = i + 2 + tl;
			if (qos) {
				memcpy(acks + nacks, (uint8_t[]){ 0x40, 2, p[b], p[b + 1] }, 4);
				nacks += 4;
				b += 2;
			}
			int64_t sent, now = now_ns();
			memcpy(&sent, p + b, sizeof(sent));
			atomic_fetch_add(&received[qos ? 1 : 0], 1);
			atomic_store(&last_arrival_ns, now);
			if (atomic_load(&recording)) {
				long k = atomic_fetch_add(&nlat, 1);
				if (k < lat_cap)
					lat[k] = now - sent;
			}
			if (nacks == sizeof(acks)) {
				raw_send(c->fd, acks, nacks);
				nacks = 0;
			}
		}
		off += i + rl;
	}
	memmove(c->in, c->in + off, c->len - off);
	c->len -= off;
	if (nacks)
		raw_send(c->fd, acks, nacks);
}

static void *rx_main(void *arg)
{
	int ep = *(int *)arg;
	struct epoll_event ev[256];
	while (!atomic_load(&stop_rx)) {
		int n = epoll_wait(ep, ev, 256, 100);
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;
			ssize_t r = read(c->fd, c->in + c->len, sizeof(c->in) - c->len);
			if (r > 0) {
				c->len += (size_t)r;
				on_packets(c);
			}
		}
	}
	return NULL;
}

static rd_kafka_t *producer_new(const char *bootstrap, const char *linger)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e));
	rd_kafka_conf_set(conf, "linger.ms", linger, e, sizeof(e));
	rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", e, sizeof(e));
	rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!rk)
		die(e);
	return rk;
}

static void produce(rd_kafka_t *rk, const char *topic, long i)
{
	char key[16], val[4096];
	int64_t t = now_ns();
	snprintf(key, sizeof(key), "dev%ld", i % opt.devices);
	memset(val, 'x', (size_t)opt.payload);
	memcpy(val, &t, sizeof(t));
	while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
				 RD_KAFKA_V_VALUE(val, (size_t)opt.payload),
				 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) ==
	       RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 1);
}

/* Waits until `want` more records of this QoS arrived after base, or until
 * nothing arrived for 10 s. Returns how many arrived. */
static long wait_for(int q, long base, long want)
{
	long got = 0, last = -1;
	int64_t idle_since = now_ns();
	while ((got = atomic_load(&received[q]) - base) < want) {
		if (got != last) {
			last = got;
			idle_since = now_ns();
		} else if (now_ns() - idle_since > 10000000000LL) {
			break;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return got;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void run_qos(int q, const char *label)
{
	char topic[16];
	snprintf(topic, sizeof(topic), "bench-q%d", q);

	/* Warm-up: the consumer is assigned and every device reachable. */
	rd_kafka_t *rk = producer_new(opt.bootstrap, "5");
	long base = atomic_load(&received[q]);
	for (long i = 0; i < opt.devices; i++)
		produce(rk, topic, i);
	rd_kafka_flush(rk, 30000);
	if (wait_for(q, base, opt.devices) < opt.devices * 9 / 10)
		die("warm-up: the gateway did not deliver (see its log with KG_KEEP=1)");

	/* Throughput: as fast as the producer can go. */
	base = atomic_load(&received[q]);
	int64_t t0 = now_ns();
	for (long i = 0; i < opt.count; i++)
		produce(rk, topic, i);
	rd_kafka_flush(rk, 60000);
	long got = wait_for(q, base, opt.count);
	double secs = (double)(atomic_load(&last_arrival_ns) - t0) / 1e9;
	printf("%-5s QoS %d throughput: %ld of %ld delivered in %.2f s = %.0f msgs/s\n", label, q,
	       got, opt.count, secs, (double)got / secs);
	rd_kafka_destroy(rk);

	/* Latency at a fixed rate, paced every millisecond. */
	rk = producer_new(opt.bootstrap, "1");
	long n = (long)opt.rate * opt.seconds;
	base = atomic_load(&received[q]);
	atomic_store(&nlat, 0);
	atomic_store(&recording, true);
	t0 = now_ns();
	for (long i = 0; i < n;) {
		long due = (long)((double)(now_ns() - t0) / 1e9 * opt.rate) + 1;
		for (; i < n && i < due; i++)
			produce(rk, topic, i);
		rd_kafka_poll(rk, 0);
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	rd_kafka_flush(rk, 60000);
	got = wait_for(q, base, n);
	atomic_store(&recording, false);
	long k = atomic_load(&nlat) < lat_cap ? atomic_load(&nlat) : lat_cap;
	qsort(lat, (size_t)k, sizeof(*lat), cmp64);
	printf("%-5s QoS %d latency at %d msgs/s: %ld of %ld delivered, p50 %.2f ms, p99 %.2f ms, "
	       "max %.2f ms\n", label, q, opt.rate, got, n, k ? (double)lat[k / 2] / 1e6 : 0,
	       k ? (double)lat[k * 99 / 100] / 1e6 : 0, k ? (double)lat[k - 1] / 1e6 : 0);
	rd_kafka_destroy(rk);
	fflush(stdout);
}

static void topics_create(rd_kafka_mock_cluster_t *mc)
{
	char e[256];
	if (mc) {
		rd_kafka_mock_topic_create(mc, "bench-q0", 4, 1);
		rd_kafka_mock_topic_create(mc, "bench-q1", 4, 1);
		return;
	}
	rd_kafka_t *rk = producer_new(opt.bootstrap, "5");
	rd_kafka_NewTopic_t *nt[2] = { rd_kafka_NewTopic_new("bench-q0", 4, 1, e, sizeof(e)),
				       rd_kafka_NewTopic_new("bench-q1", 4, 1, e, sizeof(e)) };
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, nt, 2, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	if (ev)
		rd_kafka_event_destroy(ev); /* "already exists" is fine too */
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy_array(nt, 2);
	rd_kafka_destroy(rk);
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "bootstrap", 1, NULL, 'b' }, { "devices", 1, NULL, 'd' }, { "count", 1, NULL, 'c' },
		{ "rate", 1, NULL, 'r' }, { "seconds", 1, NULL, 's' }, { "payload", 1, NULL, 'p' },
		{ "qos", 1, NULL, 'q' }, { "fetch-wait", 1, NULL, 'f' }, { NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "b:d:c:r:s:p:q:f:", lo, NULL)) != -1) {
		switch (o) {
		case 'b': opt.bootstrap = optarg; break;
		case 'd': opt.devices = atoi(optarg); break;
		case 'c': opt.count = atol(optarg); break;
		case 'r': opt.rate = atoi(optarg); break;
		case 's': opt.seconds = atoi(optarg); break;
		case 'p': opt.payload = atoi(optarg); break;
		case 'q': opt.only_qos = atoi(optarg); break;
		case 'f': opt.fetch_wait = atoi(optarg); break;
		default: die("see the options in the header of bench/downlink_bench.c");
		}
	}
	if (opt.devices < 1 || opt.count < 1 || opt.rate < 1 || opt.seconds < 1 ||
	    opt.payload < 8 || opt.payload > 4096)
		die("bad option value");
}

int main(int argc, char **argv)
{
	char e[256], cfg[1024];
	rd_kafka_t *mrk = NULL;
	rd_kafka_mock_cluster_t *mc = NULL;
	struct gw g = { 0 };

	parse(argc, argv);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max; /* the gateway inherits it */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!opt.bootstrap) {
		rd_kafka_conf_t *conf = rd_kafka_conf_new();
		rd_kafka_conf_set(conf, "log_level", "2", e, sizeof(e));
		if (!(mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e))) ||
		    !(mc = rd_kafka_mock_cluster_new(mrk, 1)))
			die("cannot start the mock cluster");
		opt.bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
	}
	topics_create(mc);
	/* The mock cluster answers an empty fetch only after fetch.wait.max.ms
	 * (a real broker answers as soon as data arrives): 10 ms by default on
	 * the mock models the real broker's latency; --fetch-wait overrides. */
	char props[128] = "";
	int fw = opt.fetch_wait >= 0 ? opt.fetch_wait : mc ? 10 : -1;
	if (fw >= 0)
		snprintf(props, sizeof(props), "properties = ( (\"fetch.wait.max.ms\", %d) );", fw);
	snprintf(cfg, sizeof(cfg),
		 "limits = { max_connections = 100000; };\n"
		 "kafka = { brokers = \"%s\"; flush_timeout = 2; %s };\n"
		 "downlink = (\n"
		 "  { topic = \"bench-q0\"; group = \"bench-q0\"; mqtt_topic = \"devices/${key}/commands\"; qos = 0; },\n"
		 "  { topic = \"bench-q1\"; group = \"bench-q1\"; mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n",
		 opt.bootstrap, props);
	if (gw_start(&g, cfg) < 0)
		die("the gateway did not start");

	conns = calloc((size_t)opt.devices, sizeof(*conns));
	lat_cap = (long)opt.rate * opt.seconds + 1000;
	lat = calloc((size_t)lat_cap, sizeof(*lat));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || !lat || ep < 0)
		die("out of memory");
	for (int i = 0; i < opt.devices; i++) {
		char id[32], filter[64];
		uint8_t pkt[128], rc = 0xff;
		snprintf(id, sizeof(id), "bench-dev%d", i);
		snprintf(filter, sizeof(filter), "devices/dev%d/commands", i);
		int fd = raw_mqtt_connect(g.port, id, true, 0, &rc, NULL);
		int n = fd >= 0 ? raw_build_subscribe(pkt, sizeof(pkt), 4, 1, filter, 1) : -1;
		if (fd < 0 || rc != 0 || raw_send(fd, pkt, (size_t)n) < 0 ||
		    raw_recv_packet(fd, pkt, sizeof(pkt), 5000) <= 0 || pkt[0] != 0x90)
			die("a device could not connect and subscribe");
		conns[i].fd = fd;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	pthread_t rx;
	pthread_create(&rx, NULL, rx_main, &ep);
	const char *label = mc ? "mock" : "kafka";
	char fws[16] = "default";
	if (fw >= 0)
		snprintf(fws, sizeof(fws), "%d", fw);
	printf("%s: %d devices, payload %d B, bootstrap %s, fetch.wait.max.ms %s\n", label,
	       opt.devices, opt.payload, opt.bootstrap, fws);
	for (int q = 0; q <= 1; q++)
		if (opt.only_qos < 0 || opt.only_qos == q)
			run_qos(q, label);

	atomic_store(&stop_rx, true);
	pthread_join(rx, NULL);
	for (int i = 0; i < opt.devices; i++)
		close(conns[i].fd);
	gw_stop(&g);
	if (mc)
		rd_kafka_mock_cluster_destroy(mc);
	if (mrk)
		rd_kafka_destroy(mrk);
	free(conns);
	free(lat);
	return 0;
}
