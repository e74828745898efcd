/*
 * ab_engine_int.h - what the engine's loop (ab_engine.c) and its
 * connections (ab_sock.c) share: one worker process's state. Not used
 * elsewhere.
 */
#ifndef KG_AB_ENGINE_INT_H
#define KG_AB_ENGINE_INT_H

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "abuse.h"

#define AB_SCRATCH 65536

enum ab_st {
	S_IDLE_NEW, S_CONNECTING, S_TLS_HS, S_WS_UP, S_CONNACK, S_TRICKLE, S_SENDING,
	S_WAIT_CLOSE, S_HELD, S_DONE,
};

/* One attacker connection. */
struct aconn {
	int fd;
	uint8_t st;              /* enum ab_st */
	bool want_out;           /* EPOLLOUT registered */
	bool inner;              /* out goes through the transport */
	uint32_t idx;            /* record */
	SSL *ssl;
	const uint8_t *out;      /* owned when own */
	bool own;
	size_t out_len, out_off;
	int64_t next_tr;
	struct buf raw;          /* bytes read: the 101 head, WebSocket frames */
	struct buf mq;           /* MQTT bytes read */
};

/* One worker process. */
struct eng {
	const struct ab_opts *o;
	const struct ab_plan *p;
	struct ab_rec *rec;      /* shared with the parent */
	struct aconn *c;
	int port[3];             /* by transport */
	size_t n;                /* mine */
	size_t opened, live;
	int ep;
	struct sockaddr_in dst;  /* port set per connection */
	SSL_CTX *tls;
	uint8_t *hello;          /* a ClientHello, for BH_TRICKLE_PRE on TLS */
	size_t hello_len;
	char upgrade[512];
	int64_t t0;
	int64_t progress;        /* last time a connection became held or ended */
	uint8_t scratch[AB_SCRATCH];
};

static inline struct ab_rec *ab_rec_of(struct eng *e, struct aconn *c) { return &e->rec[c->idx]; }
static inline const struct ab_spec *ab_spec_of(struct eng *e, struct aconn *c)
{
	return &e->p->spec[e->rec[c->idx].spec];
}

/* ab_sock.c. All on the worker process's one thread. */
/* The TLS context, the ClientHello to trickle and the upgrade request. */
int ab_sock_setup(struct eng *e);
/* Records how c ended and frees it (idempotent). */
void ab_sock_finish(struct eng *e, struct aconn *c, enum ab_end how, int err);
/* Writes at most max queued bytes; 1 all out, 0 blocked, -1 finished. */
int ab_sock_push(struct eng *e, struct aconn *c, size_t max);
/* An epoll event on c (connect completion included). */
void ab_sock_event(struct eng *e, struct aconn *c, uint32_t ev);

#endif
