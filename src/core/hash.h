/*
 * hash.h - the one hash function for in-memory tables: a seeded mix of
 * 8-byte words. Not cryptographic; the seed keeps a client from choosing
 * keys (topic levels, client ids, source addresses) that pile up in one
 * bucket or probe run.
 *
 * Pure but for hash_seed()/hash_process_seed() (getrandom). Any thread.
 */
#ifndef KG_HASH_H
#define KG_HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t hash_bytes(uint64_t seed, const void *p, size_t len);
/* A fresh random seed; without entropy yet (early boot), one that still
 * differs per salt and per run. */
uint64_t hash_seed(const void *salt);
/* One seed for the whole process, drawn on first use. */
uint64_t hash_process_seed(void);

#endif
