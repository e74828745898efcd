/*
 * auth.h - authentication and authorisation in the broker: the password
 * file and ACL in force, each connection's identity and ACL, and the checks
 * on PUBLISH, SUBSCRIBE, the will and every delivery. The CONNECT flow
 * (verification pool, delayed refusals) is in auth_connect.c.
 *
 * What is in force is one immutable struct auth_db (password db, ACL,
 * allow_anonymous, fail_delay_ms), swapped whole on reload: a reader takes
 * a reference under a short mutex (auth_db_get), so a reload frees the old
 * one once the last CONNECT or verification job using it is done.
 *
 * ACL. Each connection holds an acl_client built from its identity (the
 * verified user name, or none: anonymous) and client id, on its own worker,
 * lazily: when the ACL generation it was built from is not the current one
 * (a reload), it is rebuilt before the next check, so existing connections
 * follow the new file from their next message on. With no ACL in force
 * (acl_gen 0) nothing is checked: auth_acl_on() is one relaxed load.
 *
 * Read access is checked when a message leaves for a client
 * (deliver_client, deliver_pump, the resend on resume), on the owner
 * worker: live deliveries, queued ones, retained messages sent after
 * SUBSCRIBE and downlink injections all pass there, so a wildcard
 * subscription never leaks a denied topic.
 *
 * Thread: as marked. "Owner" = the worker owning the client.
 */
#ifndef KG_AUTH_H
#define KG_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acl;
struct acl_client;
struct auth_addrs;
struct auth_pool;
struct broker;
struct cfg;
struct client;
struct msg;
struct mqtt_publish;
struct passwd_db;

/* kafkagate_auth_failures_total{reason} */
enum auth_fail {
	AUTH_FAIL_WRONG_PASSWORD,
	AUTH_FAIL_UNKNOWN_USER,
	AUTH_FAIL_ANONYMOUS,
	AUTH_FAIL_N,
};

/* kafkagate_acl_denied_total{access} */
enum auth_denied { AUTH_DENY_WRITE, AUTH_DENY_READ, AUTH_DENY_SUBSCRIBE, AUTH_DENY_N };

/* Counters of one worker, written by it with relaxed atomics, summed at
 * scrape time. */
struct auth_stats {
	atomic_uint_fast64_t success;                /* password or certificate */
	atomic_uint_fast64_t failures[AUTH_FAIL_N];
	atomic_uint_fast64_t unavailable;            /* CONNACK 3: queue full, error */
	atomic_uint_fast64_t denied[AUTH_DENY_N];
};

#define AUTH_INC(a, w, field) \
	atomic_store_explicit(&(a)->wk[(w)->idx].st.field, \
		atomic_load_explicit(&(a)->wk[(w)->idx].st.field, memory_order_relaxed) + 1, \
		memory_order_relaxed)

/* A refusal waiting for fail_delay_ms (auth_connect.c). */
struct auth_refusal {
	uint64_t conn_id;
	int64_t due_ms;
	uint8_t rc;        /* CONNACK return code */
	uint8_t why;       /* enum auth_fail */
};

/* Per worker; the owner only, but st (any thread reads). */
struct auth_worker {
	struct auth_stats st;
	struct auth_refusal *ref;
	size_t n_ref, cap_ref;
};

/* What is in force; immutable once made. */
struct auth_db {
	atomic_int refs;
	struct passwd_db *pw;     /* NULL: no password file */
	struct acl *acl;          /* NULL: no ACL, everything allowed */
	unsigned acl_gen;         /* 0 when acl is NULL, else unique per load */
	bool allow_anonymous;
	int fail_delay_ms;
};

struct auth {
	atomic_uint acl_gen;      /* cur->acl_gen: the hot path's "is there an ACL" */
	pthread_mutex_t mu;       /* guards cur: swap, and taking a reference */
	struct auth_db *cur;
	unsigned gen_seq;         /* last acl_gen given; main thread */
	struct auth_pool *pool;   /* NULL until a password file is in force */
	int verify_threads;       /* from the start-up config (restart to change) */
	struct broker *br;
	struct auth_worker *wk;   /* [n_workers] */
	int n_workers;
	struct auth_addrs *addrs; /* recent failures by address (auth_connect.c) */
};

/* A connection's auth state (c->auth), allocated the first time it is
 * needed: a connection of a gateway without auth has none. Owner only. */
struct client_auth {
	struct acl_client *acl;   /* built from acl_gen; NULL before */
	unsigned acl_gen;
	bool verified;            /* c->username was proven (password or certificate) */
	bool pending;             /* a verification job is queued for it */
	uint8_t n_logged;         /* entries of logged[] in use */
	uint8_t next_logged;      /* next entry to overwrite */
	uint32_t logged[8];       /* hashes of topics whose denial was logged */
};

/* Loads cfg's password and ACL files, warns when a non-loopback listener
 * accepts anonymous clients, and starts the verification pool when there
 * is a password file. Returns the state or NULL (logged). Main thread,
 * after the workers exist. */
struct auth *auth_new(struct broker *br, const struct cfg *cfg);
/* Stops the verification threads (their queued jobs are dropped). Before
 * the workers are released. Main thread. NULL ok. */
void auth_stop(struct auth *a);
/* After the workers are released. NULL ok. */
void auth_free(struct auth *a);

/* Parses cfg's password and ACL files without keeping them. Returns 0 or
 * -1 with "FILE:LINE: what is wrong" in err. Any thread. */
int auth_check(const struct cfg *cfg, char *err, size_t errlen);
/* Reads the files again and swaps what is in force (a file that fails
 * keeps the old state: logged with FILE:LINE). Main thread. */
void auth_reload(struct auth *a, const struct cfg *cfg);

/* The state in force, with a reference: release with auth_db_put(). Any thread. */
struct auth_db *auth_db_get(struct auth *a);
void auth_db_put(struct auth_db *db);

/* True when an ACL is in force. Any thread. */
static inline bool auth_acl_on(const struct auth *a)
{
	return atomic_load_explicit(&a->acl_gen, memory_order_relaxed) != 0;
}

/* c's auth state, allocated if need be; NULL on ENOMEM. Owner. */
struct client_auth *auth_client(struct client *c);
/* Frees c's auth state and cancels a queued verification. Owner. */
void auth_client_release(struct client *c);

/*
 * PUBLISH: whether c may publish pub (always true without an ACL). When it
 * may not, handle_publish returns auth_drop_publish(c, pub): counted, logged
 * once per client and topic, not delivered, not handed to the sink; QoS 1
 * gets its PUBACK and QoS 2 its PUBREC in arrival order, as mosquitto does
 * for 3.1.1; at MQTT 5 with reason code 0x87 Not authorized (QoS 0: nothing
 * to answer). Returns 0, or -1 after closing c. Owner.
 */
bool auth_may_publish(struct client *c, const struct mqtt_publish *pub);
int auth_drop_publish(struct client *c, const struct mqtt_publish *pub);
/* SUBSCRIBE: false when no topic the filter matches is readable by c
 * (SUBACK 0x80 for it; counted and logged). Filters that are partly
 * readable are granted: deliveries are checked one by one. Owner. */
bool auth_may_subscribe(struct client *c, const char *filter, uint16_t len);
/* Delivery: whether c may read m's topic (counted when not); always for
 * an upstream connection (upstream.h) and without an ACL (callers test
 * auth_acl_on() first to skip the call). Owner. */
bool auth_may_read(struct client *c, const struct msg *m);
/* The will, at close: whether c may still publish on its topic. Owner. */
bool auth_may_publish_will(struct client *c);

#endif
