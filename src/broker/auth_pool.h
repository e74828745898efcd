/*
 * auth_pool.h - the password verification threads: CONNECT's password
 * hashes run here, never on a network worker, so that a flood of logins
 * (right or wrong) cannot stall MQTT traffic.
 *
 * A worker submits a job (connection id, user, a copy of the password);
 * one of the pool's threads runs passwd_check() on it and hands the result
 * to the done callback, which posts it to the owning worker's inbox. The
 * queue is bounded: when it is full, submit fails and the caller refuses
 * the CONNECT (CONNACK 3) instead of queueing without limit.
 *
 * Two queues: normal, and low priority for addresses that failed to log in
 * recently or that already have AUTH_POOL_PER_ADDR jobs in the normal
 * queue. A thread takes from the normal queue first, so a flood of logins
 * from a few addresses makes logins from elsewhere wait for at most a few
 * checks, never for the flood. The low priority queue holds at most
 * AUTH_POOL_LOW_MAX jobs, so a flood cannot fill the normal one either.
 *
 * The threads run at a lower priority (nice 10) than the workers.
 *
 * A job past its deadline (the client's connect_timeout) or cancelled (its
 * connection closed) is dropped unchecked: no hash, no answer.
 *
 * Threads: auth_pool_new/free on the main thread; auth_pool_submit,
 * auth_pool_cancel and auth_pool_depth from any thread (the workers).
 */
#ifndef KG_AUTH_POOL_H
#define KG_AUTH_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct passwd_db;

/* Jobs waiting in the normal queue, and in the low priority one, at most. */
#define AUTH_POOL_MAX 1024
#define AUTH_POOL_LOW_MAX 256
/* Jobs of one address in the normal queue, at most; the next go low. */
#define AUTH_POOL_PER_ADDR 4

struct auth_job {
	uint64_t conn_id;               /* 0 once cancelled */
	int64_t deadline_ms;            /* util_now_ms(): dropped unchecked after it */
	const struct passwd_db *pw;     /* read only; kept alive by hold */
	void *hold;                     /* given back to done() */
	char *user;                     /* NUL-terminated */
	unsigned char *pass;            /* passlen bytes, wiped before the job is freed */
	size_t passlen;
	uint8_t ip[16];                 /* source address (struct net_peer's key) */
	/* user and pass are stored here, behind the struct */
};

/*
 * The answer for one job that was checked (result: enum passwd_result), or
 * dropped (checked false: deadline passed or cancelled; result undefined).
 * Called on a pool thread; must only post and release (hold).
 */
typedef void (*auth_pool_done_fn)(void *ud, uint64_t conn_id, bool checked, int result,
				  void *hold);

struct auth_pool;

/* Starts `threads` threads (1..64). Returns the pool or NULL (logged). */
struct auth_pool *auth_pool_new(int threads, auth_pool_done_fn done, void *ud);
/* Stops and joins the threads; queued jobs are dropped (done() with
 * checked false). NULL ok. */
void auth_pool_free(struct auth_pool *p);

/*
 * Returns a new job holding copies of user (NUL-terminated) and of the
 * password (passlen bytes), or NULL on ENOMEM. The caller fills conn_id,
 * deadline_ms, pw and hold, then submits it. Any thread.
 */
struct auth_job *auth_job_new(const char *user, const void *pass, size_t passlen);
/* Wipes the password copy and frees the job. NULL ok. */
void auth_job_free(struct auth_job *j);

/* Queues j (taking ownership): on the low priority queue when low (the
 * address failed recently) or when j->ip has AUTH_POOL_PER_ADDR jobs in
 * the normal queue, else on the normal one. Returns 0, or -1 when that
 * queue is full (j is still the caller's). */
int auth_pool_submit(struct auth_pool *p, struct auth_job *j, bool low);
/* Drops the queued job of conn_id, if any (a job being checked runs on). */
void auth_pool_cancel(struct auth_pool *p, uint64_t conn_id);
/* Jobs queued now (both queues; relaxed). */
size_t auth_pool_depth(const struct auth_pool *p);

#endif
