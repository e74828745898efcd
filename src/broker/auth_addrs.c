/* auth_addrs.c - recent failed logins by address; see auth_addrs.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "broker/auth_addrs.h"

#define PROBES 4

struct slot {
	uint8_t ip[16];
	int64_t last_ms;     /* 0: free */
};

struct auth_addrs {
	pthread_mutex_t mu;
	uint64_t seed;       /* so that colliding addresses cannot be chosen ahead */
	struct slot s[AUTH_ADDRS_SLOTS];
};

struct auth_addrs *auth_addrs_new(void)
{
	struct auth_addrs *t = calloc(1, sizeof(*t));
	struct timespec ts;

	if (!t)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	t->seed = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)t;
	return t;
}

void auth_addrs_free(struct auth_addrs *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static size_t hash(const struct auth_addrs *t, const uint8_t ip[16])
{
	return hash_bytes(t->seed, ip, 16);
}

void auth_addrs_fail(struct auth_addrs *t, const uint8_t ip[16], int64_t now_ms)
{
	size_t h = hash(t, ip);
	struct slot *victim = NULL;

	pthread_mutex_lock(&t->mu);
	for (int i = 0; i < PROBES; i++) {
		struct slot *s = &t->s[(h + (size_t)i) % AUTH_ADDRS_SLOTS];
		if (s->last_ms && memcmp(s->ip, ip, 16) == 0) {
			victim = s;
			break;
		}
		if (!victim || s->last_ms < victim->last_ms)
			victim = s;
	}
	memcpy(victim->ip, ip, 16);
	victim->last_ms = now_ms > 0 ? now_ms : 1;
	pthread_mutex_unlock(&t->mu);
}

bool auth_addrs_suspect(struct auth_addrs *t, const uint8_t ip[16], int64_t now_ms)
{
	size_t h = hash(t, ip);
	bool r = false;

	pthread_mutex_lock(&t->mu);
	for (int i = 0; i < PROBES; i++) {
		const struct slot *s = &t->s[(h + (size_t)i) % AUTH_ADDRS_SLOTS];
		if (s->last_ms && memcmp(s->ip, ip, 16) == 0) {
			r = now_ms - s->last_ms < AUTH_ADDRS_WINDOW_MS;
			break;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return r;
}
