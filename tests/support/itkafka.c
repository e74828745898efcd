/*
 * itkafka.c - mock cluster, Kafka clients, kafka-local and HTTP for tests.
 */
#include "itkafka.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itutil.h"
#include "rawmqtt.h"

#define ITKAFKA_READER_GROUP "itkafka-reader"

/* Milliseconds left until deadline, at least 1 (librdkafka reads 0 as "do
 * not wait", which would turn a late deadline into a spurious failure). */
static int itkafka_left(long long deadline)
{
	long long left = deadline - itutil_now_ms();

	return left > 0 ? (int)left : 1;
}

int itkafka_mock_init(struct itkafka_mock *m, int brokers)
{
	char e[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	memset(m, 0, sizeof(*m));
	rd_kafka_conf_set(conf, "log_level", "2", e, sizeof(e));
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!m->rk) {
		fprintf(stderr, "itkafka: mock cluster client: %s\n", e);
		return -1;
	}
	m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
	if (!m->mc) {
		fprintf(stderr, "itkafka: cannot start a mock cluster of %d brokers\n", brokers);
		return -1;
	}
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
	return 0;
}

void itkafka_mock_release(struct itkafka_mock *m)
{
	if (m->mc)
		rd_kafka_mock_cluster_destroy(m->mc);
	if (m->rk)
		rd_kafka_destroy(m->rk);
	memset(m, 0, sizeof(*m));
}

rd_kafka_t *itkafka_client_new(const char *bootstrap, rd_kafka_type_t type, const char *group,
			       const char *const *props)
{
	/* Without a group the list ends before group.id. */
	const char *base[] = { "bootstrap.servers", bootstrap, "log_level", "2",
			       group ? "group.id" : NULL, group, NULL };
	const char *const *lists[] = { base, props };
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char e[256];

	for (size_t l = 0; l < 2; l++)
		for (size_t i = 0; lists[l] && lists[l][i]; i += 2)
			if (rd_kafka_conf_set(conf, lists[l][i], lists[l][i + 1], e, sizeof(e))) {
				fprintf(stderr, "itkafka: %s: %s\n", lists[l][i], e);
				rd_kafka_conf_destroy(conf);
				return NULL;
			}
	rk = rd_kafka_new(type, conf, e, sizeof(e));
	if (!rk)
		fprintf(stderr, "itkafka: rd_kafka_new: %s\n", e);
	return rk;
}

/* Partitions of topic; 0 when the cluster does not have it, -1 on error. */
static int itkafka_partitions(rd_kafka_t *rk, const char *topic, long long deadline)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int n = 0;

	err = rd_kafka_metadata(rk, 0, rkt, &md, itkafka_left(deadline));
	rd_kafka_topic_destroy(rkt);
	if (err)
		return -1;
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	return n;
}

static long itkafka_count_in(rd_kafka_t *rk, const char *topic, int nparts, long long deadline)
{
	long total = 0;

	for (int p = 0; p < nparts; p++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t err;

		err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, itkafka_left(deadline));
		if (err) {
			fprintf(stderr, "itkafka: watermarks of %s[%d]: %s\n", topic, p,
				rd_kafka_err2str(err));
			return -2;
		}
		total += (long)hi;
	}
	return total;
}

long itkafka_count(const char *bootstrap, const char *topic, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;
	rd_kafka_t *rk = itkafka_client_new(bootstrap, RD_KAFKA_CONSUMER, ITKAFKA_READER_GROUP, NULL);
	const struct rd_kafka_metadata *md;
	long total = 0;
	int n;

	if (!rk)
		return -2;
	if (topic) {
		n = itkafka_partitions(rk, topic, deadline);
		if (n < 0)
			fprintf(stderr, "itkafka: no metadata of %s from %s\n", topic, bootstrap);
		total = n < 0 ? -2 : n == 0 ? -1 : itkafka_count_in(rk, topic, n, deadline);
	} else if (rd_kafka_metadata(rk, 1, NULL, &md, itkafka_left(deadline)) == 0) {
		for (int i = 0; i < md->topic_cnt && total >= 0; i++) {
			long c = itkafka_count_in(rk, md->topics[i].topic, md->topics[i].partition_cnt,
						  deadline);

			total = c < 0 ? c : total + c;
		}
		rd_kafka_metadata_destroy(md);
	} else {
		fprintf(stderr, "itkafka: no metadata from %s\n", bootstrap);
		total = -2;
	}
	rd_kafka_destroy(rk);
	return total;
}

static char *itkafka_dup0(const void *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void itkafka_rec_fill(struct itkafka_rec *r, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;

	r->partition = m->partition;
	r->offset = m->offset;
	r->ts = rd_kafka_message_timestamp(m, &r->tstype);
	r->key = m->key ? itkafka_dup0(m->key, m->key_len) : NULL;
	r->klen = m->key_len;
	r->val = itkafka_dup0(m->payload, m->len);
	r->vlen = m->len;
	r->hdrs = rd_kafka_message_headers(m, &h) == 0 ? rd_kafka_headers_copy(h) : NULL;
}

int itkafka_read(const char *bootstrap, const char *topic, int want, int timeout_ms,
		 struct itkafka_rec *out)
{
	return itkafka_read_props(bootstrap, NULL, topic, want, timeout_ms, out);
}

void itkafka_recs_free(struct itkafka_rec *r, int n)
{
	for (int i = 0; i < n; i++) {
		free(r[i].key);
		free(r[i].val);
		if (r[i].hdrs)
			rd_kafka_headers_destroy(r[i].hdrs);
	}
	if (n > 0)
		memset(r, 0, (size_t)n * sizeof(*r));
}

int itkafka_produce(rd_kafka_t *rk, const char *topic, int32_t part, const char *key,
		    const char *val, const char *const *headers)
{
	rd_kafka_headers_t *h = headers ? rd_kafka_headers_new(4) : NULL;
	rd_kafka_resp_err_t err;

	for (size_t i = 0; headers && headers[i]; i += 2)
		rd_kafka_header_add(h, headers[i], -1, headers[i + 1], -1);
	/* On success the record owns h; on failure it is still ours. */
	while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_PARTITION(part < 0 ? RD_KAFKA_PARTITION_UA : part),
					RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
					RD_KAFKA_V_VALUE((void *)val, val ? strlen(val) : 0),
					RD_KAFKA_V_HEADERS(h),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
	       RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 10);
	if (err) {
		if (h)
			rd_kafka_headers_destroy(h);
		fprintf(stderr, "itkafka: produce to %s: %s\n", topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int itkafka_local_run(const char *cmd, char *out, size_t cap)
{
	char line[256] = "", sh[128];
	FILE *p;
	int st;

	snprintf(sh, sizeof(sh), "scripts/kafka-local %s", cmd);
	p = popen(sh, "r");
	if (!p)
		return -1;
	if (!fgets(line, sizeof(line), p))
		line[0] = '\0';
	while (fgetc(p) != EOF) /* let it finish writing before pclose() waits */
		;
	st = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if (out)
		snprintf(out, cap, "%s", line);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int itkafka_local_start(struct itkafka_local *kl)
{
	long long t0;

	memset(kl, 0, sizeof(*kl));
	if (system("command -v java >/dev/null 2>&1") != 0) {
		kl->skip_reason = "java not found: real-Kafka tests skipped";
		return 0;
	}
	if (system("command -v mvn >/dev/null 2>&1") != 0) {
		kl->skip_reason = "mvn not found (scripts/kafka-local fetches Kafka with it): skipped";
		return 0;
	}
	snprintf(kl->run_dir, sizeof(kl->run_dir), "/tmp/kg-it-kafka-XXXXXX");
	if (!mkdtemp(kl->run_dir)) {
		fprintf(stderr, "itkafka: mkdtemp: %s\n", strerror(errno));
		kl->run_dir[0] = '\0';
		return -1;
	}
	setenv("KAFKA_RUN_DIR", kl->run_dir, 1);
	t0 = itutil_now_ms();
	if (itkafka_local_run("start", kl->bootstrap, sizeof(kl->bootstrap)) != 0 ||
	    !kl->bootstrap[0]) {
		fprintf(stderr, "scripts/kafka-local start failed (log in %s)\n", kl->run_dir);
		return -1;
	}
	printf("kafka-local serves on %s after %lld ms\n", kl->bootstrap, itutil_now_ms() - t0);
	return 0;
}

void itkafka_local_stop(struct itkafka_local *kl)
{
	char cmd[128];

	if (kl->skip_reason || !kl->run_dir[0])
		return;
	itkafka_local_run("stop", NULL, 0);
	if (!getenv("KG_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", kl->run_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", kl->run_dir);
	}
	kl->run_dir[0] = '\0';
}

int itkafka_http(int port, const void *req, size_t len, struct itkafka_resp *r, int timeout_ms)
{
	long long deadline = itutil_now_ms() + timeout_ms;
	int fd = raw_connect_tcp(port);
	const char *end;

	r->status = -1;
	r->len = 0;
	r->raw[0] = '\0';
	r->body = r->raw;
	r->body_len = 0;
	if (fd < 0 || raw_send(fd, req, len) < 0) {
		fprintf(stderr, "itkafka: HTTP to port %d: %s\n", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (r->len + 1 < sizeof(r->raw)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long long left = deadline - itutil_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = recv(fd, r->raw + r->len, sizeof(r->raw) - 1 - r->len, 0);
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	close(fd);
	r->raw[r->len] = '\0';
	end = strstr(r->raw, "\r\n\r\n");
	r->status = strncmp(r->raw, "HTTP/1.1 ", 9) == 0 && end ? atoi(r->raw + 9) : 0;
	if (r->status > 0) {
		r->body = end + 4;
		r->body_len = r->len - (size_t)(r->body - r->raw);
	} else {
		r->body = r->raw + r->len;
	}
	return r->status;
}

int itkafka_http_get(int port, const char *path, struct itkafka_resp *r, int timeout_ms)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);

	return itkafka_http(port, req, (size_t)n, r, timeout_ms);
}

double itkafka_metric(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

/* Reads secure-info ("KAFKA_NAME=value" lines) and the password file into
 * *s. Values are taken as printed: the run dir is ours and needs no shell
 * quoting. */
static int itkafka_secure_info(struct itkafka_secure *s)
{
	const struct {
		const char *name;
		char *dst;
		size_t cap;
	} f[] = {
		{ "BOOTSTRAP", s->bootstrap, sizeof(s->bootstrap) },
		{ "SASL_MECHANISM", s->mechanism, sizeof(s->mechanism) },
		{ "SASL_MECHANISMS", s->mechanisms, sizeof(s->mechanisms) },
		{ "SASL_USERNAME", s->username, sizeof(s->username) },
		{ "SASL_PASSWORD_FILE", s->password_file, sizeof(s->password_file) },
		{ "CA", s->ca, sizeof(s->ca) },
		{ "MTLS_BOOTSTRAP", s->mtls_bootstrap, sizeof(s->mtls_bootstrap) },
		{ "MTLS_CERT", s->mtls_cert, sizeof(s->mtls_cert) },
		{ "MTLS_KEY", s->mtls_key, sizeof(s->mtls_key) },
	};
	char line[512];
	FILE *p = popen("scripts/kafka-local secure-info", "r");
	size_t n = 0;

	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		char *eq = strchr(line, '=');

		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "KAFKA_", 6) != 0 || !eq)
			continue;
		*eq = '\0';
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
			if (strcmp(line + 6, f[i].name) == 0)
				snprintf(f[i].dst, f[i].cap, "%s", eq + 1);
	}
	if (pclose(p) != 0 || !s->bootstrap[0] || !s->ca[0] || !s->password_file[0]) {
		fprintf(stderr, "itkafka: scripts/kafka-local secure-info failed\n");
		return -1;
	}
	p = fopen(s->password_file, "r");
	if (p) {
		n = fread(s->password, 1, sizeof(s->password) - 1, p);
		fclose(p);
	}
	s->password[n] = '\0';
	if (n == 0) {
		fprintf(stderr, "itkafka: cannot read %s\n", s->password_file);
		return -1;
	}
	return 0;
}

int itkafka_local_start_secure(struct itkafka_local *kl, struct itkafka_secure *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	setenv("KAFKA_SECURE", "1", 1);
	rc = itkafka_local_start(kl);
	unsetenv("KAFKA_SECURE");
	if (rc < 0 || kl->skip_reason)
		return rc;
	return itkafka_secure_info(s);
}

int itkafka_secure_props(const struct itkafka_secure *s, const char *mechanism,
			 const char *password, const char *const *extra, const char **out, size_t cap)
{
	const char *base[] = {
		"security.protocol", "SASL_SSL",
		"sasl.mechanisms", mechanism ? mechanism : s->mechanism,
		"sasl.username", s->username,
		"sasl.password", password ? password : s->password,
		"ssl.ca.location", s->ca,
	};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]) && n < cap; i++)
		out[n++] = base[i];
	for (size_t i = 0; extra && extra[i] && n < cap; i++)
		out[n++] = extra[i];
	if (n >= cap)
		return -1;
	out[n] = NULL;
	return 0;
}

int itkafka_read_props(const char *bootstrap, const char *const *props, const char *topic,
		       int want, int timeout_ms, struct itkafka_rec *out)
{
	static const char *const own[] = { "enable.auto.commit", "false",
					   "enable.partition.eof", "false" };
	const char *all[64];
	size_t k = 0;
	long long deadline = itutil_now_ms() + timeout_ms;
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *l;
	int n, got = 0;

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		all[k++] = own[i];
	for (size_t i = 0; props && props[i]; i++) {
		if (k + 1 >= sizeof(all) / sizeof(all[0])) {
			fprintf(stderr, "itkafka: too many client properties\n");
			return -1;
		}
		all[k++] = props[i];
	}
	all[k] = NULL;
	rk = itkafka_client_new(bootstrap, RD_KAFKA_CONSUMER, ITKAFKA_READER_GROUP, all);
	if (!rk)
		return -1;
	/* -1 only if no metadata request succeeded: the last one may time out
	 * at the deadline after earlier ones said the topic is not there. */
	n = -1;
	while (itutil_now_ms() < deadline) {
		int parts = itkafka_partitions(rk, topic, deadline);

		if (parts >= 0)
			n = parts;
		if (parts > 0)
			break;
		itutil_sleep_ms(100);
	}
	if (n < 0)
		fprintf(stderr, "itkafka: no metadata of %s from %s\n", topic, bootstrap);
	if (n > 0) {
		l = rd_kafka_topic_partition_list_new(n);
		for (int p = 0; p < n; p++)
			rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
		if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "itkafka: cannot assign %s\n", topic);
			n = -1;
		}
		rd_kafka_topic_partition_list_destroy(l);
	}
	while (n > 0 && got < want && itutil_now_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

		if (!m)
			continue;
		if (!m->err)
			itkafka_rec_fill(&out[got++], m);
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n < 0 ? -1 : got;
}
