/*
 * fl_kafka.c - the Kafka roles of the fault harness: the command producer
 * (cmd), the uplink verifier (verify), the command verifier (verify-cmd).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "faults.h"

/* ---- cmd ------------------------------------------------------------------ */

struct cmd_state {
	FILE *log;
	int64_t ok, failed;
	char first_err[256];
};

static void cmd_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct cmd_state *st = opaque;
	uint64_t v = (uint64_t)(uintptr_t)m->_private;

	(void)rk;
	if (m->err) {
		if (st->failed++ == 0)
			snprintf(st->first_err, sizeof(st->first_err), "%s", rd_kafka_err2str(m->err));
		return;
	}
	st->ok++;
	fprintf(st->log, "d-%" PRIu64 " %" PRIu64 "\n", v >> 40, v & (((uint64_t)1 << 40) - 1));
}

/* Commands "d-I SEQ" with key d-I to --topic, --rate per device per second
 * for --duration s, then a flush of up to --flush s. Every record Kafka
 * acknowledged is logged "d-I SEQ" (--log); failed ones are counted. */
int fl_cmd_main(int argc, char **argv)
{
	const char *boot = fl_opt(argc, argv, "--bootstrap", NULL);
	const char *topic = fl_opt(argc, argv, "--topic", "faults.cmd");
	const char *logpath = fl_opt(argc, argv, "--log", NULL);
	long devices = fl_opt_l(argc, argv, "--devices", 10);
	double rate = fl_opt_d(argc, argv, "--rate", 5);
	int64_t dur = (int64_t)(fl_opt_d(argc, argv, "--duration", 10) * 1e6);
	int flush_ms = (int)(fl_opt_d(argc, argv, "--flush", 60) * 1000);
	struct cmd_state st = { 0 };
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[256];
	rd_kafka_t *rk;
	int64_t start, produced = 0, *seq;
	static const char *const props[] = { "acks", "all", "enable.idempotence", "true",
					     "message.timeout.ms", "120000", "log_level", "2",
					     "linger.ms", "5", "partitioner", "murmur2_random",
					     NULL };

	if (!boot || !logpath || devices <= 0 || rate <= 0) {
		fprintf(stderr, "faults cmd: --bootstrap, --log, --devices > 0, --rate > 0\n");
		return 2;
	}
	if (!(st.log = fopen(logpath, "w")) || !(seq = calloc((size_t)devices, sizeof(*seq)))) {
		perror(logpath);
		return 2;
	}
	for (int i = 0; props[i]; i += 2)
		if (rd_kafka_conf_set(conf, props[i], props[i + 1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
			fprintf(stderr, "faults cmd: %s\n", e);
			return 2;
		}
	rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e));
	rd_kafka_conf_set_dr_msg_cb(conf, cmd_dr);
	rd_kafka_conf_set_opaque(conf, &st);
	if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e)))) {
		fprintf(stderr, "faults cmd: %s\n", e);
		return 2;
	}
	/* Round-robin over the devices at devices * rate records per second:
	 * each device's commands are in sequence and spread in time. */
	start = fl_now_us();
	for (int64_t t; !fl_stop && (t = fl_now_us()) - start < dur;) {
		int64_t due = (int64_t)((double)(t - start) / 1e6 * rate * (double)devices);

		while (produced < due) {
			long d = (long)(produced % devices);
			char key[32], val[64];
			int kn = snprintf(key, sizeof(key), "d-%ld", d);
			int vn = snprintf(val, sizeof(val), "d-%ld %" PRId64, d, seq[d]);
			uint64_t tag = (uint64_t)d << 40 | (uint64_t)seq[d];
			rd_kafka_resp_err_t err;

			err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)kn),
						RD_KAFKA_V_VALUE(val, (size_t)vn),
						RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
			if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				rd_kafka_poll(rk, 10);
				continue;
			}
			if (err) {
				fprintf(stderr, "faults cmd: produce: %s\n", rd_kafka_err2str(err));
				return 2;
			}
			seq[d]++;
			produced++;
		}
		rd_kafka_poll(rk, 5);
	}
	rd_kafka_flush(rk, flush_ms);
	rd_kafka_poll(rk, 0);
	printf("RESULT role=cmd produced=%" PRId64 " delivered=%" PRId64 " failed=%" PRId64
	       " undelivered=%d first_error=\"%s\"\n",
	       produced, st.ok, st.failed, rd_kafka_outq_len(rk), st.first_err);
	rd_kafka_destroy(rk);
	fclose(st.log);
	free(seq);
	return 0;
}

/* ---- shared: per-name sequence bookkeeping ---------------------------------- */

/* Set by --show-order: the first order violations of each name on stderr. */
static bool fl_verbose_order;

/* One client's (or device's) sequence numbers as seen somewhere, in the
 * order seen, plus a bitmap of those seen at least once. */
struct fl_seqs {
	struct fl_vec order;
	uint8_t *seen;
	size_t seen_cap;  /* bits */
	int64_t max, dups, order_viol, uniq;
};

static bool seqs_has(const struct fl_seqs *s, int64_t q)
{
	return q >= 0 && (size_t)q < s->seen_cap && (s->seen[q >> 3] >> (q & 7) & 1);
}

/* Adds q; counts a duplicate (seen before) or an order violation (first
 * seen after a higher one). */
static void seqs_add(struct fl_seqs *s, int64_t q)
{
	if (q < 0)
		return;
	if ((size_t)q >= s->seen_cap) {
		size_t cap = s->seen_cap ? s->seen_cap : 1024;
		uint8_t *p;

		while (cap <= (size_t)q)
			cap *= 2;
		p = realloc(s->seen, cap / 8);
		if (!p)
			exit(2);
		memset(p + s->seen_cap / 8, 0, (cap - s->seen_cap) / 8);
		s->seen = p;
		s->seen_cap = cap;
	}
	fl_vec_push(&s->order, q);
	if (seqs_has(s, q)) {
		s->dups++;
		return;
	}
	s->seen[q >> 3] |= (uint8_t)(1 << (q & 7));
	s->uniq++;
	if (s->uniq > 1 && q < s->max && s->order_viol++ < 3 && fl_verbose_order)
		fprintf(stderr, "faults: order: %" PRId64 " first seen after %" PRId64 "\n", q, s->max);
	if (s->uniq == 1 || q > s->max)
		s->max = q;
}

struct fl_table {
	struct fl_names names;
	struct fl_seqs *s;
	size_t cap;
};

static struct fl_seqs *table_get(struct fl_table *t, const char *name, bool add)
{
	long i = fl_names_get(&t->names, name, add);

	if (i < 0)
		return NULL;
	if ((size_t)i >= t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct fl_seqs *p;

		while (cap <= (size_t)i)
			cap *= 2;
		if (!(p = realloc(t->s, cap * sizeof(*p))))
			exit(2);
		memset(p + t->cap, 0, (cap - t->cap) * sizeof(*p));
		t->s = p;
		t->cap = cap;
	}
	return &t->s[i];
}

static void table_free(struct fl_table *t)
{
	for (size_t i = 0; i < t->names.n; i++) {
		fl_vec_free(&t->s[i].order);
		free(t->s[i].seen);
	}
	free(t->s);
	fl_names_free(&t->names);
}

/* ---- verify ------------------------------------------------------------------ */

/* Reads every partition of topic from its first offset to its high
 * watermark into t (values "<client> <seq> ..."). Returns the records read,
 * or -1; *truncated gets the sum of the partitions' low watermarks (records
 * Kafka no longer has: the check would be meaningless). */
static long read_topic(const char *boot, const char *topic, struct fl_table *t, int timeout_ms,
		       int64_t *truncated, int64_t *unparsed)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_topic_t *rkt;
	rd_kafka_t *rk;
	char e[256];
	long n = 0;
	int64_t *high, *next, deadline;
	int pcnt, left = 0;
	static const char *const props[] = { "group.id", "faults-verify", "enable.auto.commit", "false",
					     "enable.partition.eof", "true", "log_level", "2",
					     "isolation.level", "read_uncommitted", NULL };

	for (int i = 0; props[i]; i += 2)
		rd_kafka_conf_set(conf, props[i], props[i + 1], e, sizeof(e));
	rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e));
	if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
		fprintf(stderr, "faults verify: %s\n", e);
		return -1;
	}
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    md->topic_cnt != 1 || md->topics[0].err) {
		fprintf(stderr, "faults verify: no metadata for %s: %s\n", topic,
			md && md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "request failed");
		if (md)
			rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(rkt);
		rd_kafka_destroy(rk);
		return -1;
	}
	pcnt = md->topics[0].partition_cnt;
	high = calloc((size_t)pcnt, sizeof(*high));
	next = calloc((size_t)pcnt, sizeof(*next)); /* next offset to read; -1: done */
	parts = rd_kafka_topic_partition_list_new(pcnt);
	*truncated = 0;
	for (int p = 0; p < pcnt; p++) {
		int64_t lo = 0, hi = 0;
		int32_t id = md->topics[0].partitions[p].id;

		if (rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, timeout_ms)) {
			fprintf(stderr, "faults verify: watermarks of %s [%d] failed\n", topic, id);
			n = -1;
		}
		if (id >= 0 && id < pcnt)
			high[id] = hi;
		*truncated += lo;
		if (id >= 0 && id < pcnt && hi <= lo)
			next[id] = -1;
		if (hi > lo) {
			rd_kafka_topic_partition_list_add(parts, topic, id)->offset = RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	if (n == 0 && left > 0 && rd_kafka_assign(rk, parts)) {
		fprintf(stderr, "faults verify: assign failed\n");
		n = -1;
	}
	/* timeout_ms without progress, not in all: a big log takes a while. */
	deadline = fl_now_us() + (int64_t)timeout_ms * 1000;
	while (n >= 0 && left > 0 && fl_now_us() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		int32_t pt;
		char name[64];
		long long q;

		if (!m)
			continue;
		pt = m->partition;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* The end, also when the last offsets hold no record. */
			if (pt >= 0 && pt < pcnt && next[pt] >= 0 && m->offset >= high[pt]) {
				next[pt] = -1;
				left--;
			}
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err) {
			fprintf(stderr, "faults verify: %s\n", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->len > 0 && m->len < 128) {
			char v[128];

			memcpy(v, m->payload, m->len);
			v[m->len] = 0;
			if (sscanf(v, "%63s %lld", name, &q) == 2)
				seqs_add(table_get(t, name, true), q);
			else
				(*unparsed)++;
		} else {
			(*unparsed)++;
		}
		n++;
		deadline = fl_now_us() + (int64_t)timeout_ms * 1000;
		if (pt >= 0 && pt < pcnt && next[pt] >= 0) {
			next[pt] = m->offset + 1;
			if (next[pt] >= high[pt]) {
				next[pt] = -1;
				left--;
			}
		}
		rd_kafka_message_destroy(m);
	}
	if (left > 0 && n >= 0) {
		fprintf(stderr, "faults verify: %d partitions of %s not read to the end (nothing new for %d ms):",
			left, topic, timeout_ms);
		for (int p = 0; p < pcnt; p++)
			if (next[p] >= 0)
				fprintf(stderr, " [%d] at %" PRId64 " of %" PRId64, p, next[p], high[p]);
		fprintf(stderr, "\n");
		n = -1;
	}
	rd_kafka_topic_partition_list_destroy(parts);
	free(high);
	free(next);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n;
}

/* Kafka against the publishers' ack logs: acked_missing (acknowledged, not
 * in Kafka), duplicates, order violations, ack latency percentiles. */
int fl_verify_main(int argc, char **argv)
{
	const char *boot = fl_opt(argc, argv, "--bootstrap", NULL);
	const char *topic = fl_opt(argc, argv, "--topic", "faults.up");
	const char *acks = fl_opt(argc, argv, "--acks", NULL);
	int timeout_ms = (int)(fl_opt_d(argc, argv, "--timeout", 60) * 1000);
	struct fl_table t = { 0 };
	struct fl_vec lat = { 0 };
	int64_t truncated = 0, unparsed = 0, acked = 0, missing = 0, dups = 0, viol = 0, uniq = 0;
	long recs;
	FILE *f;
	char name[64];
	long long q, us;

	fl_verbose_order = fl_opt(argc, argv, "--show-order", NULL) != NULL;
	if (!boot || !acks) {
		fprintf(stderr, "faults verify: --bootstrap and --acks are required\n");
		return 2;
	}
	/* --topic a,b: every topic read into one table (a client's records
	 * may be routed to several). */
	recs = 0;
	for (const char *p = topic; *p;) {
		size_t n = strcspn(p, ",");
		char one[256];
		int64_t tr = 0;
		long r;

		snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), p);
		r = read_topic(boot, one, &t, timeout_ms, &tr, &unparsed);
		if (r < 0) {
			printf("RESULT role=verify error=read_failed topic=%s\n", one);
			return 1;
		}
		recs += r;
		truncated += tr;
		p += n;
		if (*p == ',')
			p++;
	}
	if (!(f = fopen(acks, "r"))) {
		perror(acks);
		return 2;
	}
	while (fscanf(f, "%63s %lld %lld", name, &q, &us) == 3) {
		struct fl_seqs *s = table_get(&t, name, false);

		acked++;
		fl_vec_push(&lat, us);
		if (!s || !seqs_has(s, q)) {
			if (missing++ < 10)
				fprintf(stderr, "faults verify: acknowledged, not in Kafka: %s %lld\n", name,
					q);
		}
	}
	fclose(f);
	for (size_t i = 0; i < t.names.n; i++) {
		dups += t.s[i].dups;
		viol += t.s[i].order_viol;
		uniq += t.s[i].uniq;
	}
	printf("RESULT role=verify records=%ld unique=%" PRId64 " acked=%" PRId64
	       " acked_missing=%" PRId64 " duplicates=%" PRId64 " order_violations=%" PRId64
	       " ack_p50_ms=%.1f ack_p99_ms=%.1f ack_max_ms=%.1f truncated=%" PRId64
	       " unparsed=%" PRId64 "\n",
	       recs, uniq, acked, missing, dups, viol, fl_pct(lat.v, lat.n, 0.5) / 1e3,
	       fl_pct(lat.v, lat.n, 0.99) / 1e3, fl_pct(lat.v, lat.n, 1.0) / 1e3, truncated,
	       unparsed);
	fl_vec_free(&lat);
	table_free(&t);
	return missing == 0 && truncated == 0 ? 0 : 1;
}

/* ---- verify-cmd --------------------------------------------------------------- */

/* The devices' receive logs against the commands Kafka took: lost (for
 * devices that acknowledge; must be 0), duplicates, order violations. */
int fl_verify_cmd_main(int argc, char **argv)
{
	const char *prod = fl_opt(argc, argv, "--produced", NULL);
	const char *recv = fl_opt(argc, argv, "--received", NULL);
	double frac = fl_opt_d(argc, argv, "--withhold", 0);
	struct fl_table got = { 0 };
	int64_t produced = 0, lost = 0, lost_withheld = 0, received = 0, dups = 0, viol = 0;
	FILE *f;
	char name[64];
	long long q;
	int dup;

	if (!prod || !recv) {
		fprintf(stderr, "faults verify-cmd: --produced and --received are required\n");
		return 2;
	}
	if (!(f = fopen(recv, "r"))) {
		perror(recv);
		return 2;
	}
	while (fscanf(f, "%63s %lld %d", name, &q, &dup) == 3) {
		seqs_add(table_get(&got, name, true), q);
		received++;
	}
	fclose(f);
	if (!(f = fopen(prod, "r"))) {
		perror(prod);
		return 2;
	}
	while (fscanf(f, "%63s %lld", name, &q) == 2) {
		struct fl_seqs *s = table_get(&got, name, false);
		long idx = strncmp(name, "d-", 2) == 0 ? strtol(name + 2, NULL, 10) : -1;

		produced++;
		if (s && seqs_has(s, q))
			continue;
		if (fl_withholds(idx, frac)) {
			lost_withheld++;
		} else if (lost++ < 10) {
			fprintf(stderr, "faults verify-cmd: in Kafka, never delivered: %s %lld\n", name, q);
		}
	}
	fclose(f);
	for (size_t i = 0; i < got.names.n; i++) {
		long idx = strtol(got.names.name[i] + 2, NULL, 10);

		/* Withholding devices get their unacknowledged commands again
		 * on every reconnect: duplicates by design, not counted. */
		if (fl_withholds(idx, frac))
			continue;
		dups += got.s[i].dups;
		viol += got.s[i].order_viol;
	}
	printf("RESULT role=verify-cmd produced=%" PRId64 " received=%" PRId64 " lost=%" PRId64
	       " undelivered_withholding=%" PRId64 " cmd_duplicates=%" PRId64
	       " cmd_order_violations=%" PRId64 "\n",
	       produced, received, lost, lost_withheld, dups, viol);
	table_free(&got);
	return lost == 0 ? 0 : 1;
}
