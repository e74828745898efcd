/*
 * auth_addrs.h - recent failed logins by source address: the addresses
 * whose password checks go to the back of the verification queue.
 *
 * A fixed table (AUTH_ADDRS_SLOTS entries, a few probes per address), so
 * that a crowd of addresses costs no memory: a new address takes the
 * oldest slot among its probes. Losing an entry only loses that address's
 * low priority, never anyone's refusal delay.
 *
 * Thread: any (one mutex, held for a few probes).
 */
#ifndef KG_AUTH_ADDRS_H
#define KG_AUTH_ADDRS_H

#include <stdbool.h>
#include <stdint.h>

#define AUTH_ADDRS_SLOTS 4096
/* An address stays suspect this long after its last failed login. */
#define AUTH_ADDRS_WINDOW_MS 60000

struct auth_addrs;

/* Returns a new empty table, or NULL. */
struct auth_addrs *auth_addrs_new(void);
/* NULL ok. */
void auth_addrs_free(struct auth_addrs *t);

/* A login from ip (as struct net_peer's key) failed at now_ms (monotonic). */
void auth_addrs_fail(struct auth_addrs *t, const uint8_t ip[16], int64_t now_ms);
/* Whether a login from ip failed within AUTH_ADDRS_WINDOW_MS before now_ms. */
bool auth_addrs_suspect(struct auth_addrs *t, const uint8_t ip[16], int64_t now_ms);

#endif
