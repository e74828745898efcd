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
 *               p50/p99/max of produce -> arrival, beside a plain librdkafka
 *               consumer of the same topic in its own group (same
 *               fetch.wait.max.ms) in the same run: what the gateway adds
 *               is the difference. One "RESULT mode=latency ..." line each.
 *
 * --crash instead: COUNT (1000) commands to one device at RATE (50) per
 * second through a fresh topic and group; after a third the gateway is
 * SIGKILLed and started again, the device reconnecting as soon as the port
 * accepts. Reports the silence from the new process being ready (its port
 * accepting) to the first command delivered, and how many commands arrived
 * within 2 minutes of the last one being produced ("RESULT mode=crash ...";
 * lost = not arrived by then).
 *
 * Kafka: librdkafka's mock cluster in this process (default), or a real
 * broker with --bootstrap HOST:PORT (topics created with 4 partitions):
 *   make build/kafkagate build/bench/downlink_bench
 *   build/bench/downlink_bench                         # mock cluster
 *   B=$(scripts/kafka-local start)
 *   build/bench/downlink_bench --bootstrap "$B"; scripts/kafka-local stop
 * Options: --devices N (1000) --count N (200000) --rate N (25000)
 *          --seconds N (4) --payload BYTES (64) --qos 0|1 (both) --crash
 *          --fetch-wait MS: the gateway's fetch.wait.max.ms (default 10 on
 *          the mock, whose empty fetches wait that long even when records
 *          arrive meanwhile; librdkafka's 500 on a real broker)
 * Everything binds 127.0.0.1; the gateway is stopped by PID at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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

/* kafkagate's consumer default on a real broker (src/kafka/kafka_conf.c),
 * which the plain consumer uses too unless --fetch-wait says otherwise. */
#define KG_FETCH_WAIT_MS 100

struct conn {
	int fd;
	size_t len;
	uint8_t in[1 << 16];
};

static struct {
	int devices, rate, seconds, payload, only_qos, fetch_wait;
	long count;
	const char *bootstrap;
	bool crash, count_set, rate_set;
} opt = { 1000, 25000, 4, 64, -1, -1, 200000, NULL, false, false, false };

static struct conn *conns;
static atomic_long received[2];
static atomic_llong last_arrival_ns;
static atomic_bool recording, stop_rx;
static int64_t *lat;
static atomic_long nlat;
static long lat_cap;

/* The plain consumer beside the gateway: same topics, its own group. */
static atomic_long plain_received[2];
static int64_t *plat;
static atomic_long nplat;

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

/*
 * A plain librdkafka consumer of both bench topics in its own group: what a
 * backend service reading the commands directly would see, in the same run.
 * Same fetch.wait.max.ms as the gateway's consumer; starts at the end of the
 * topics once assigned.
 */
static rd_kafka_t *plain_new(const char *bootstrap, int fetch_wait)
{
	char e[256], group[64], fw[16];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	snprintf(group, sizeof(group), "bench-plain-%d", (int)getpid());
	snprintf(fw, sizeof(fw), "%d", fetch_wait);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "latest", e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "fetch.wait.max.ms", fw, e, sizeof(e)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)))
		die(e);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
	if (!rk)
		die(e);
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
	rd_kafka_topic_partition_list_add(l, "bench-q0", RD_KAFKA_PARTITION_UA);
	rd_kafka_topic_partition_list_add(l, "bench-q1", RD_KAFKA_PARTITION_UA);
	if (rd_kafka_subscribe(rk, l))
		die("plain consumer: subscribe failed");
	rd_kafka_topic_partition_list_destroy(l);
	return rk;
}

static void *plain_main(void *arg)
{
	rd_kafka_t *rk = arg;
	while (!atomic_load(&stop_rx)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (!m->err && m->len >= sizeof(int64_t)) {
			int64_t sent, now = now_ns();
			int q = strcmp(rd_kafka_topic_name(m->rkt), "bench-q1") == 0;
			memcpy(&sent, m->payload, sizeof(sent));
			atomic_fetch_add(&plain_received[q], 1);
			if (atomic_load(&recording)) {
				long k = atomic_fetch_add(&nplat, 1);
				if (k < lat_cap)
					plat[k] = now - sent;
			}
		}
		rd_kafka_message_destroy(m);
	}
	return NULL;
}

/* Waits until the plain consumer has partitions (then it reads from the end). */
static void plain_wait_assigned(rd_kafka_t *rk)
{
	for (int i = 0; i < 300; i++) {
		rd_kafka_topic_partition_list_t *a = NULL;
		int n = rd_kafka_assignment(rk, &a) == 0 && a ? a->cnt : 0;
		if (a)
			rd_kafka_topic_partition_list_destroy(a);
		if (n > 0)
			return;
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (m)
			rd_kafka_message_destroy(m);
	}
	die("plain consumer: no partitions after 30 s");
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

/* One record with this key and value (a string), polling while the queue is full. */
static void produce_raw(rd_kafka_t *rk, const char *topic, const char *key, const char *val)
{
	while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
				 RD_KAFKA_V_VALUE((void *)val, strlen(val)),
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

/* p50, p99 and max of the first n of v (sorted in place), in ms. */
static void pcts(int64_t *v, long n, double *p50, double *p99, double *max)
{
	qsort(v, (size_t)n, sizeof(*v), cmp64);
	*p50 = n ? (double)v[n / 2] / 1e6 : 0;
	*p99 = n ? (double)v[n * 99 / 100] / 1e6 : 0;
	*max = n ? (double)v[n - 1] / 1e6 : 0;
}

static void run_qos(int q, const char *label)
{
	char topic[16];
	snprintf(topic, sizeof(topic), "bench-q%d", q);

	/* Warm-up: the consumer is assigned and every device reachable. */
	rd_kafka_t *rk = producer_new(opt.bootstrap, "5");
	long base = atomic_load(&received[q]), pbase = atomic_load(&plain_received[q]);
	for (long i = 0; i < opt.devices; i++)
		produce(rk, topic, i);
	rd_kafka_flush(rk, 30000);
	if (wait_for(q, base, opt.devices) < opt.devices * 9 / 10)
		die("warm-up: the gateway did not deliver (see its log with KG_KEEP=1)");
	for (int i = 0; i < 10000 && atomic_load(&plain_received[q]) - pbase < opt.devices; i++)
		usleep(1000);

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

	/* Latency at a fixed rate, paced every millisecond (linger 1 ms: the
	 * paced producer itself must keep up). */
	rk = producer_new(opt.bootstrap, "1");
	long n = (long)opt.rate * opt.seconds;
	base = atomic_load(&received[q]);
	pbase = atomic_load(&plain_received[q]);
	atomic_store(&nlat, 0);
	atomic_store(&nplat, 0);
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
	for (int i = 0; i < 10000 && atomic_load(&plain_received[q]) - pbase < n; i++)
		usleep(1000);
	atomic_store(&recording, false);
	long pgot = atomic_load(&plain_received[q]) - pbase;
	long k = atomic_load(&nlat) < lat_cap ? atomic_load(&nlat) : lat_cap;
	long pk = atomic_load(&nplat) < lat_cap ? atomic_load(&nplat) : lat_cap;
	double p50, p99, max, pp50, pp99, pmax;
	pcts(lat, k, &p50, &p99, &max);
	pcts(plat, pk, &pp50, &pp99, &pmax);
	printf("%-5s QoS %d latency at %d msgs/s: %ld of %ld delivered, p50 %.2f ms, p99 %.2f ms, "
	       "max %.2f ms; plain consumer: %ld read, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       label, q, opt.rate, got, n, p50, p99, max, pgot, pp50, pp99, pmax);
	printf("RESULT mode=latency cluster=%s qos=%d rate=%d sent=%ld delivered=%ld p50_ms=%.3f "
	       "p99_ms=%.3f max_ms=%.3f plain_read=%ld plain_p50_ms=%.3f plain_p99_ms=%.3f "
	       "plain_max_ms=%.3f\n", label, q, opt.rate, n, got, p50, p99, max, pgot, pp50, pp99,
	       pmax);
	rd_kafka_destroy(rk);
	fflush(stdout);
}

/* Creates topic with 4 partitions on a real broker ("already exists" is fine). */
static void topic_new(const char *topic)
{
	char e[256];
	rd_kafka_t *rk = producer_new(opt.bootstrap, "5");
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 4, 1, e, sizeof(e));
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
}

/* ---- --crash: commands across a SIGKILL and restart of the gateway -------- */

/* Connects dev0 and subscribes it (QoS 1) to its command topic. */
static int crash_device(int port)
{
	uint8_t pkt[128], rc = 0xff;
	int fd = raw_mqtt_connect(port, "bench-crash-dev0", true, 0, &rc, NULL);
	int n = fd >= 0 ? raw_build_subscribe(pkt, sizeof(pkt), 4, 1, "devices/dev0/commands", 1)
			: -1;
	if (fd < 0 || rc != 0 || raw_send(fd, pkt, (size_t)n) < 0 ||
	    raw_recv_packet(fd, pkt, sizeof(pkt), 5000) <= 0 || pkt[0] != 0x90)
		die("crash: the device could not connect and subscribe");
	return fd;
}

/* Reads what arrived on fd within wait_ms: acknowledges each PUBLISH and
 * returns its sequence number (payload "seq <n>"), -3 for another PUBLISH,
 * -1 for none, -2 when the connection is gone. */
static long crash_recv(int fd, int wait_ms)
{
	uint8_t p[512];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, wait_ms) <= 0)
		return -1;
	int n = raw_recv_packet(fd, p, sizeof(p) - 1, 1000);
	if (n <= 0)
		return -2;
	if ((p[0] & 0xF0) != 0x30)
		return -1;
	size_t i = 1;
	while (p[i] & 0x80)
		i++;
	i++;
	size_t tl = (size_t)p[i] << 8 | p[i + 1], b = i + 2 + tl;
	if ((p[0] >> 1) & 3) {
		uint8_t ack[4] = { 0x40, 2, p[b], p[b + 1] };
		raw_send(fd, ack, sizeof(ack));
		b += 2;
	}
	p[n] = '\0';
	return strncmp((const char *)p + b, "seq ", 4) == 0 ? atol((const char *)p + b + 4) : -3;
}

/*
 * COUNT commands (default 1000) to one device at RATE per second (default
 * 50), QoS 1, through a mapping in group mode; when a third of them were
 * produced the gateway is SIGKILLed and started again at once (the device
 * reconnects as soon as the port accepts). Measures the silence: from the
 * new process accepting connections to the first command delivered, and
 * from the kill to it; and that every command arrived (duplicates are
 * allowed: offsets not yet committed are read again).
 */
static void run_crash(rd_kafka_mock_cluster_t *mc, const char *props, const char *label)
{
	char cfg[1024], group[64], val[64], topic[64];
	struct gw g = { 0 };
	long count = opt.count, rate = opt.rate, seen = 0, dups = 0, kill_at = count / 3;
	char *got = calloc((size_t)count, 1);
	int64_t t_kill = 0, t_ready = 0, t_first = 0, t_restarted = 0;

	if (!got)
		die("out of memory");
	/* A fresh topic and group: nothing of an earlier run is read. */
	snprintf(group, sizeof(group), "bench-crash-%d", (int)getpid());
	snprintf(topic, sizeof(topic), "%s", group);
	if (mc)
		rd_kafka_mock_topic_create(mc, topic, 4, 1);
	else
		topic_new(topic);
	snprintf(cfg, sizeof(cfg),
		 "kafka = { brokers = \"%s\"; flush_timeout = 2; %s };\n"
		 "downlink = ( { topic = \"%s\"; group = \"%s\";"
		 " mqtt_topic = \"devices/${key}/commands\"; qos = 1; } );\n",
		 opt.bootstrap, props, topic, group);
	if (gw_start(&g, cfg) < 0)
		die("the gateway did not start");
	int fd = crash_device(g.port);
	rd_kafka_t *rk = producer_new(opt.bootstrap, "0");
	/* Warm-up: the gateway's consumer has its partitions. */
	produce_raw(rk, topic, "dev0", "warm-up");
	rd_kafka_flush(rk, 10000);
	int64_t until = now_ns() + 60000000000LL;
	while (crash_recv(fd, 100) == -1 && now_ns() < until)
		;
	if (now_ns() >= until)
		die("crash: the warm-up command never arrived");

	int64_t t0 = now_ns();
	/* Up to 2 minutes after the last command was produced. */
	for (long i = 0; i < count || (seen < count && now_ns() - t0 < (int64_t)(count / rate + 120) * 1000000000LL);) {
		long due = (long)((double)(now_ns() - t0) / 1e9 * (double)rate) + 1;
		for (; i < count && i < due; i++) {
			snprintf(val, sizeof(val), "seq %ld", i);
			produce_raw(rk, topic, "dev0", val);
			if (i == kill_at) {
				rd_kafka_flush(rk, 1000);
				t_kill = now_ns();
				gw_kill(&g, SIGKILL);
				close(fd);
				if (gw_restart(&g) < 0)
					die("crash: the gateway did not start again");
				t_ready = now_ns();
				fd = crash_device(g.port);
				t_restarted = now_ns();
			}
		}
		rd_kafka_poll(rk, 0);
		long s = crash_recv(fd, 1);
		if (s == -2)
			die("crash: the device lost its connection");
		if (s >= 0 && s < count) {
			if (t_ready && !t_first)
				t_first = now_ns();
			if (got[s])
				dups++;
			else
				seen++;
			got[s] = 1;
		}
		if (i >= count && seen >= count)
			break;
	}
	printf("%s crash: %ld commands at %ld/s, gateway SIGKILLed after %ld and started again "
	       "(ready %.0f ms after the kill; device subscribed %.0f ms later): first command "
	       "%.0f ms after ready, %.0f ms after the kill; %ld of %ld arrived, %ld duplicates\n",
	       label, count, rate, kill_at, (double)(t_ready - t_kill) / 1e6,
	       (double)(t_restarted - t_ready) / 1e6,
	       t_first ? (double)(t_first - t_ready) / 1e6 : -1,
	       t_first ? (double)(t_first - t_kill) / 1e6 : -1, seen, count, dups);
	printf("RESULT mode=crash cluster=%s count=%ld arrived=%ld lost=%ld duplicates=%ld "
	       "kill_to_ready_ms=%.0f ready_to_first_ms=%.0f kill_to_first_ms=%.0f\n", label, count,
	       seen, count - seen, dups, (double)(t_ready - t_kill) / 1e6,
	       t_first ? (double)(t_first - t_ready) / 1e6 : -1,
	       t_first ? (double)(t_first - t_kill) / 1e6 : -1);
	close(fd);
	gw_stop(&g);
	rd_kafka_destroy(rk);
	free(got);
	(void)mc;
}

static void topics_create(rd_kafka_mock_cluster_t *mc)
{
	if (mc) {
		rd_kafka_mock_topic_create(mc, "bench-q0", 4, 1);
		rd_kafka_mock_topic_create(mc, "bench-q1", 4, 1);
		return;
	}
	topic_new("bench-q0");
	topic_new("bench-q1");
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "bootstrap", 1, NULL, 'b' }, { "devices", 1, NULL, 'd' }, { "count", 1, NULL, 'c' },
		{ "rate", 1, NULL, 'r' }, { "seconds", 1, NULL, 's' }, { "payload", 1, NULL, 'p' },
		{ "qos", 1, NULL, 'q' }, { "fetch-wait", 1, NULL, 'f' }, { "crash", 0, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "b:d:c:r:s:p:q:f:", lo, NULL)) != -1) {
		switch (o) {
		case 'b': opt.bootstrap = optarg; break;
		case 'd': opt.devices = atoi(optarg); break;
		case 'c': opt.count = atol(optarg); opt.count_set = true; break;
		case 'r': opt.rate = atoi(optarg); opt.rate_set = true; break;
		case 's': opt.seconds = atoi(optarg); break;
		case 'p': opt.payload = atoi(optarg); break;
		case 'q': opt.only_qos = atoi(optarg); break;
		case 'f': opt.fetch_wait = atoi(optarg); break;
		case 'K': opt.crash = true; break;
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
	if (opt.crash) {
		if (!opt.count_set)
			opt.count = 1000;
		if (!opt.rate_set)
			opt.rate = 50;
		run_crash(mc, props, mc ? "mock" : "kafka");
		if (mc)
			rd_kafka_mock_cluster_destroy(mc);
		if (mrk)
			rd_kafka_destroy(mrk);
		return 0;
	}
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
	plat = calloc((size_t)lat_cap, sizeof(*plat));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || !lat || !plat || ep < 0)
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
	pthread_t rx, prx;
	pthread_create(&rx, NULL, rx_main, &ep);
	rd_kafka_t *plain = plain_new(opt.bootstrap, fw >= 0 ? fw : KG_FETCH_WAIT_MS);
	plain_wait_assigned(plain);
	pthread_create(&prx, NULL, plain_main, plain);
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
	pthread_join(prx, NULL);
	rd_kafka_consumer_close(plain);
	rd_kafka_destroy(plain);
	for (int i = 0; i < opt.devices; i++)
		close(conns[i].fd);
	gw_stop(&g);
	if (mc)
		rd_kafka_mock_cluster_destroy(mc);
	if (mrk)
		rd_kafka_destroy(mrk);
	free(conns);
	free(lat);
	free(plat);
	return 0;
}
