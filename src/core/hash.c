/* hash.c - seeded table hash; see hash.h. */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/hash.h"

uint32_t hash_bytes(uint64_t seed, const void *p, size_t len)
{
	const char *s = p;
	uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15u);
	uint64_t w;
	for (; len >= 8; s += 8, len -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, s, len);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 29;
	return (uint32_t)h;
}

uint64_t hash_seed(const void *salt)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)(uintptr_t)salt ^ ((uint64_t)ts.tv_nsec << 21) ^ (uint64_t)ts.tv_sec;
}

static uint64_t process_seed;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void process_seed_init(void)
{
	process_seed = hash_seed(&process_seed);
}

uint64_t hash_process_seed(void)
{
	pthread_once(&process_once, process_seed_init);
	return process_seed;
}
