/*
 * itkafka.h - the Kafka side of the integration tests, and their admin
 * endpoint client.
 *
 * - a librdkafka mock cluster hosted in the test process (it outlives
 *   gateway restarts and can be taken down broker by broker);
 * - clients of any cluster: a producer/consumer maker, a record counter
 *   (high watermarks) and a reader that assigns every partition of a topic
 *   from the beginning and returns copies of the records;
 * - scripts/kafka-local (a real Apache Kafka) started on a private
 *   KAFKA_RUN_DIR and stopped again;
 * - a tiny blocking HTTP client for the gateway's metrics/admin port, written
 *   here so that the server is not checked with its own parser.
 *
 * Like itutil.h this does not link cmocka: failures are printed on stderr
 * and returned; the test asserts. Timeouts bound each call as a whole.
 * Not thread safe unless said: call from the test's main thread.
 */
#ifndef KG_ITKAFKA_H
#define KG_ITKAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>
#include <stdint.h>

/* ---- mock cluster --------------------------------------------------------- */

struct itkafka_mock {
	rd_kafka_t *rk;                /* owns the cluster */
	rd_kafka_mock_cluster_t *mc;
	char bootstrap[256];
};

/* Starts a mock cluster of `brokers` brokers (ids 1..brokers). Returns 0,
 * or -1 (printed). Release it with itkafka_mock_release() in either case. */
int itkafka_mock_init(struct itkafka_mock *m, int brokers);
/* Destroys the cluster and zeroes *m; a zeroed *m is fine. */
void itkafka_mock_release(struct itkafka_mock *m);

/* ---- clients and records ---------------------------------------------------- */

/* A client of bootstrap: log_level 2, group.id = group unless NULL, then
 * props (name, value pairs ended by NULL; may be NULL). Returns new, free
 * with rd_kafka_destroy(); NULL on a bad property or error (printed). */
rd_kafka_t *itkafka_client_new(const char *bootstrap, rd_kafka_type_t type, const char *group,
			       const char *const *props);

/* Records in topic: the sum of its partitions' high watermarks (topics in
 * tests start at offset 0, and the mock cluster drops old segments). topic
 * NULL: every topic of the cluster. Returns -1 if the topic does not exist,
 * -2 if a request failed or timeout_ms passed (printed). */
long itkafka_count(const char *bootstrap, const char *topic, int timeout_ms);

/* One record read back. key and val are NUL-terminated copies. */
struct itkafka_rec {
	int32_t partition;
	int64_t offset;
	int64_t ts;
	rd_kafka_timestamp_type_t tstype;
	char *key;                     /* NULL: the record has no key */
	size_t klen;
	char *val;                     /* may hold NULs: use vlen */
	size_t vlen;
	rd_kafka_headers_t *hdrs;      /* NULL: none */
};

/*
 * Reads up to want records of topic into out[0..want), every partition from
 * the beginning (assigned, nothing committed), within timeout_ms in all:
 * waiting first for the topic to exist, then for records. Returns how many
 * were read (0 if the topic never appeared), or -1 on a client error or when
 * no metadata request succeeded (printed). The caller frees them with
 * itkafka_recs_free(). itkafka_read_props(bootstrap, NULL, ...).
 */
int itkafka_read(const char *bootstrap, const char *topic, int want, int timeout_ms,
		 struct itkafka_rec *out);
/* Frees what r[0..n) holds and zeroes them. */
void itkafka_recs_free(struct itkafka_rec *r, int n);

/* Queues one record (partition part, or by key when part < 0; key and val
 * NULL-able strings; headers: name, value pairs ended by NULL, may be NULL),
 * polling while the producer's queue is full. Does not wait for delivery:
 * rd_kafka_flush() does. Returns 0, or -1 (printed). */
int itkafka_produce(rd_kafka_t *rk, const char *topic, int32_t part, const char *key,
		    const char *val, const char *const *headers);

/* ---- scripts/kafka-local ------------------------------------------------------ */

struct itkafka_local {
	char run_dir[64];              /* private KAFKA_RUN_DIR, "" before start */
	char bootstrap[128];
	const char *skip_reason;       /* set when the tests cannot run here */
};

/*
 * Without java or mvn sets kl->skip_reason and returns 0 (the tests skip).
 * Otherwise makes a private KAFKA_RUN_DIR (exported to this process, so
 * later itkafka_local_run() calls act on the same broker), starts the broker
 * and fills kl->bootstrap. Returns 0, or -1 (printed; the log is in run_dir).
 */
int itkafka_local_start(struct itkafka_local *kl);
/* Runs scripts/kafka-local CMD ("restart", "stop", ...); its first line of
 * output goes to out (may be NULL). Returns its exit status, or -1. */
int itkafka_local_run(const char *cmd, char *out, size_t cap);
/* Stops the broker and removes run_dir (kept when KG_KEEP is set). Nothing
 * to do after a skip. */
void itkafka_local_stop(struct itkafka_local *kl);

/* ---- HTTP ---------------------------------------------------------------------- */

#define ITKAFKA_HTTP_MAX (1 << 17)

/* An answer. Large: make it static or allocate it. body points into raw,
 * so the struct must not be copied. */
struct itkafka_resp {
	int status;        /* "HTTP/1.1 NNN" with a whole head; 0 for anything
			    * else (closed unanswered); -1 if connect or send failed */
	size_t len;        /* bytes in raw */
	char raw[ITKAFKA_HTTP_MAX];    /* head and body, NUL-terminated, truncated */
	const char *body;  /* after the head; "" when there is none */
	size_t body_len;
};

/* Sends the len bytes of req to 127.0.0.1:port and reads until the server
 * closes or timeout_ms passes. Returns r->status. */
int itkafka_http(int port, const void *req, size_t len, struct itkafka_resp *r, int timeout_ms);
/* itkafka_http() with "GET path HTTP/1.0" (the server closes after it). */
int itkafka_http_get(int port, const char *path, struct itkafka_resp *r, int timeout_ms);
/* The value of one series ("name{labels}" exactly as exposed) in a
 * Prometheus text body, or -1 if it is not there. */
double itkafka_metric(const char *text, const char *series);

/* ---- scripts/kafka-local in secure mode ------------------------------------------ */

/* What `scripts/kafka-local secure-info` printed, and the password read from
 * its file (librdkafka clients in the test process take it inline). */
struct itkafka_secure {
	char bootstrap[128];           /* SASL_SSL listener (= kl->bootstrap) */
	char mechanism[32];            /* "SCRAM-SHA-512" */
	char mechanisms[96];           /* every enabled one, comma-separated */
	char username[64];
	char password_file[256];       /* no trailing newline */
	char password[128];
	char ca[256];                  /* PEM CA that signed the broker's certificate */
	char mtls_bootstrap[128];      /* SSL listener that requires a client certificate */
	char mtls_cert[256];           /* client certificate and key (PEM) for it */
	char mtls_key[256];
};

/*
 * itkafka_local_start() with KAFKA_SECURE=1 (scripts/kafka-local's secure
 * mode), then fills *s from `scripts/kafka-local secure-info`. Same skip and
 * return as itkafka_local_start(); stop with itkafka_local_stop().
 */
int itkafka_local_start_secure(struct itkafka_local *kl, struct itkafka_secure *s);

/*
 * Fills out[0..cap) with the name, value pairs of a SASL_SSL client of s
 * using mechanism (NULL: s->mechanism) and password (NULL: s->password),
 * then extra pairs (may be NULL), ended by NULL: a props list for
 * itkafka_client_new(). The strings are borrowed from s, mechanism,
 * password and extra. Returns 0, or -1 if cap is too small.
 */
int itkafka_secure_props(const struct itkafka_secure *s, const char *mechanism,
			 const char *password, const char *const *extra, const char **out, size_t cap);

/* itkafka_read() for a cluster that needs client properties (props: name,
 * value pairs ended by NULL, e.g. from itkafka_secure_props()). -1 only
 * when no metadata request succeeded: a topic that never appeared is 0. */
int itkafka_read_props(const char *bootstrap, const char *const *props, const char *topic,
		       int want, int timeout_ms, struct itkafka_rec *out);

#endif
