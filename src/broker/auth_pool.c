/* auth_pool.c - password verification threads; see auth_pool.h. */
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/passwd.h"
#include "broker/auth_pool.h"
#include "core/log.h"
#include "core/util.h"

/* Nice value of the verification threads (the workers keep 0). */
#define AUTH_POOL_NICE 10

/* A bounded FIFO of jobs. */
struct job_ring {
	struct auth_job **v;
	size_t head, n, cap;
};

struct auth_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job_ring q[2];        /* [0] normal, [1] low priority; mu */
	bool stop;                   /* mu */
	atomic_size_t depth;
	atomic_int started;          /* numbers the threads' names */
	auth_pool_done_fn done;
	void *ud;
	pthread_t *threads;
	int n_threads;
};

struct auth_job *auth_job_new(const char *user, const void *pass, size_t passlen)
{
	size_t ulen = strlen(user);
	struct auth_job *j = malloc(sizeof(*j) + ulen + 1 + passlen);

	if (!j)
		return NULL;
	memset(j, 0, sizeof(*j));
	j->user = (char *)(j + 1);
	memcpy(j->user, user, ulen + 1);
	j->pass = (unsigned char *)j->user + ulen + 1;
	if (passlen)
		memcpy(j->pass, pass, passlen);
	j->passlen = passlen;
	return j;
}

void auth_job_free(struct auth_job *j)
{
	if (!j)
		return;
	OPENSSL_cleanse(j->pass, j->passlen);
	free(j);
}

static bool ring_push(struct job_ring *r, struct auth_job *j)
{
	if (r->n == r->cap)
		return false;
	r->v[(r->head + r->n++) % r->cap] = j;
	return true;
}

static struct auth_job *ring_pop(struct job_ring *r)
{
	if (r->n == 0)
		return NULL;
	struct auth_job *j = r->v[r->head];
	r->head = (r->head + 1) % r->cap;
	r->n--;
	return j;
}

/* Runs one job outside the lock and answers for it. */
static void run_job(struct auth_pool *p, struct auth_job *j)
{
	uint64_t id = j->conn_id;
	bool live = id != 0 && util_now_ms() <= j->deadline_ms;
	int r = live ? (int)passwd_check(j->pw, j->user, j->pass, j->passlen) : PASSWD_ERROR;

	p->done(p->ud, id, live, r, j->hold);
	auth_job_free(j);
}

static void *pool_main(void *arg)
{
	struct auth_pool *p = arg;
	char name[16];

	snprintf(name, sizeof(name), "auth%d", atomic_fetch_add(&p->started, 1));
	log_set_thread(name);
	/* Hashing gives way to the network workers when CPU is short: a flood
	 * of logins slows logins, not MQTT traffic. (Linux: per thread.) */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), AUTH_POOL_NICE) < 0)
		log_warn_errno("auth verification thread keeps its priority");
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct auth_job *j = ring_pop(&p->q[0]);
		if (!j)
			j = ring_pop(&p->q[1]);
		if (!j) {
			if (p->stop)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		atomic_fetch_sub_explicit(&p->depth, 1, memory_order_relaxed);
		/* At shut-down the rest is dropped unchecked. */
		if (p->stop)
			j->conn_id = 0;
		pthread_mutex_unlock(&p->mu);
		run_job(p, j);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct auth_pool *auth_pool_new(int threads, auth_pool_done_fn done, void *ud)
{
	struct auth_pool *p = calloc(1, sizeof(*p));
	const size_t caps[2] = { AUTH_POOL_MAX, AUTH_POOL_LOW_MAX };

	if (!p)
		goto oom;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->done = done;
	p->ud = ud;
	for (int i = 0; i < 2; i++) {
		p->q[i].cap = caps[i];
		if (!(p->q[i].v = calloc(caps[i], sizeof(*p->q[i].v))))
			goto oom;
	}
	if (!(p->threads = calloc((size_t)threads, sizeof(*p->threads))))
		goto oom;
	for (int i = 0; i < threads; i++) {
		int e = pthread_create(&p->threads[i], NULL, pool_main, p);
		if (e != 0) {
			log_error("auth verification thread failed to start err=%d", e);
			auth_pool_free(p);
			return NULL;
		}
		p->n_threads++;
	}
	return p;
oom:
	log_error("auth verification pool failed reason=\"out of memory\"");
	auth_pool_free(p);
	return NULL;
}

void auth_pool_free(struct auth_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* Threads may not have started: answer what is left here. */
	for (int i = 0; i < 2; i++) {
		struct auth_job *j;
		while (p->q[i].v && (j = ring_pop(&p->q[i]))) {
			j->conn_id = 0;
			run_job(p, j);
		}
		free(p->q[i].v);
	}
	free(p->threads);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* Jobs from ip in r. Linear, but r holds at most AUTH_POOL_MAX. */
static size_t ring_count_ip(const struct job_ring *r, const uint8_t ip[16])
{
	size_t n = 0;
	for (size_t k = 0; k < r->n; k++)
		n += memcmp(r->v[(r->head + k) % r->cap]->ip, ip, 16) == 0;
	return n;
}

int auth_pool_submit(struct auth_pool *p, struct auth_job *j, bool low)
{
	pthread_mutex_lock(&p->mu);
	if (!low && ring_count_ip(&p->q[0], j->ip) >= AUTH_POOL_PER_ADDR)
		low = true;
	bool ok = !p->stop && ring_push(&p->q[low ? 1 : 0], j);
	if (ok) {
		atomic_fetch_add_explicit(&p->depth, 1, memory_order_relaxed);
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return ok ? 0 : -1;
}

void auth_pool_cancel(struct auth_pool *p, uint64_t conn_id)
{
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < 2; i++) {
		struct job_ring *r = &p->q[i];
		for (size_t k = 0; k < r->n; k++) {
			struct auth_job *j = r->v[(r->head + k) % r->cap];
			if (j->conn_id == conn_id) {
				j->conn_id = 0;
				goto out;
			}
		}
	}
out:
	pthread_mutex_unlock(&p->mu);
}

size_t auth_pool_depth(const struct auth_pool *p)
{
	return atomic_load_explicit(&p->depth, memory_order_relaxed);
}
