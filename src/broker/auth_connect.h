/*
 * auth_connect.h - who a CONNECT is: the certificate's identity, a user
 * name and password checked on the verification pool (auth_pool.h), or
 * anonymous; and the refusals, sent fail_delay_ms late.
 *
 * Flow. handle_connect() has stored the client id, user name and will; it
 * ends with auth_connect(), which either goes on to takeover_attach() at
 * once (certificate identity, anonymous allowed, no password file), refuses,
 * or queues a password check and pauses the connection (CL_WAIT_AUTH: no
 * packet is read meanwhile; connect_timeout still runs from accept). The
 * answer comes back as INBOX_AUTH to auth_connect_verified(), which attaches
 * (exactly what a CONNECT without auth does) or refuses.
 *
 * Refusals for bad credentials (CONNACK 4 wrong password, 5 unknown user or
 * anonymous not allowed) are counted, logged rate-limited without the
 * password, and sent fail_delay_ms after the verdict: the connection stays
 * paused on its worker's refusal list until auth_connect_tick() (every
 * 250 ms) finds it due, so the worker never sleeps and a right password is
 * never delayed. The address is remembered (auth_addrs.h): its next checks
 * wait behind those of other addresses.
 *
 * Thread: the owning worker's, but auth_connect_done (a pool thread).
 */
#ifndef KG_AUTH_CONNECT_H
#define KG_AUTH_CONNECT_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct mqtt_connect;
struct worker;

/* The end of a valid CONNECT (k). Returns 0 (attached, waiting for a
 * takeover, a password check or a refusal's delay: c paused) or -1 (c
 * closed). */
int auth_connect(struct client *c, const struct mqtt_connect *k);
/* INBOX_AUTH: the pool's verdict (enum passwd_result) for conn_id. */
void auth_connect_verified(struct worker *w, uint64_t conn_id, int result);
/* Worker tick: sends the refusals that are due. */
void auth_connect_tick(struct worker *w);
/* The pool's answer (auth_pool_done_fn; ud = struct auth *): posts
 * INBOX_AUTH to the worker owning conn_id. Any thread. */
void auth_connect_done(void *ud, uint64_t conn_id, bool checked, int result, void *hold);

#endif
