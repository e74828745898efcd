/* listener.c - listener kinds, TLS contexts and admission; see listener.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "broker/broker_int.h"
#include "broker/listener.h"
#include "core/cfg.h"
#include "core/net.h"
#include "transport/tls.h"

/* Connections per source address: a hash table of counts in stripes, each
 * with its own lock (a connect flood spreads over the workers). Entries are
 * removed when their count reaches zero, so the table holds only addresses
 * with live connections: bounded by max_connections. */
#define ADDR_STRIPES 64

struct addr_count {
	uint8_t ip[16];
	uint32_t n;
	struct addr_count *next;
};

struct addr_stripe {
	pthread_mutex_t mu;
	struct addr_count *head;
};

static struct addr_stripe stripes[ADDR_STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
	for (int i = 0; i < ADDR_STRIPES; i++)
		pthread_mutex_init(&stripes[i].mu, NULL);
}

static struct addr_stripe *stripe_of(const uint8_t ip[16])
{
	/* Seeded: source addresses are chosen by the peers. */
	return &stripes[hash_bytes(hash_process_seed(), ip, 16) % ADDR_STRIPES];
}

const char *listener_kind_name(enum listener_kind k)
{
	static const char *const names[] = { "mqtt", "mqtts", "ws", "wss" };
	return names[k];
}

static void tls_opts_of(const struct cfg_tls *t, struct tls_opts *o)
{
	*o = (struct tls_opts){
		.cert = t->cert.path, .key = t->key.path, .ca = t->ca.path,
		.require_client_cert = t->require_client_cert,
		.identity = t->identity == CFG_IDENTITY_CN    ? TLS_ID_CN
			    : t->identity == CFG_IDENTITY_SAN ? TLS_ID_SAN
							      : TLS_ID_NONE,
	};
}

/* The line to blame for a TLS error: the file named first in the message. */
static int tls_err_line(const struct cfg_tls *t, const char *msg)
{
	if (t->ca.path && strstr(msg, t->ca.path))
		return t->ca.line;
	if (t->key.path && strstr(msg, t->key.path) && !strstr(msg, "does not match"))
		return t->key.line;
	if (t->cert.path && strstr(msg, t->cert.path))
		return t->key.path && strstr(msg, "does not match") ? t->key.line : t->cert.line;
	return t->line;
}

int listener_check(const struct cfg *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		struct tls_opts o;
		char e[400];
		if (!l->has_tls)
			continue;
		tls_opts_of(&l->tls, &o);
		SSL_CTX *ctx = tls_ctx_new(&o, e, sizeof(e));
		if (!ctx) {
			snprintf(err, errlen, "%s:%d: %s", cfg->path, tls_err_line(&l->tls, e), e);
			return -1;
		}
		SSL_CTX_free(ctx);
	}
	return 0;
}

int listener_init_all(struct broker *br, const struct cfg *cfg, char *err, size_t errlen)
{
	pthread_once(&stripes_once, stripes_init);
	br->lis = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*br->lis));
	if (!br->lis) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	br->n_lis = (int)cfg->nlisteners;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		struct broker_listener *bl = &br->lis[i];
		bool ws = l->protocol == CFG_PROTO_WEBSOCKET;
		bl->kind = ws ? (l->has_tls ? LIS_WSS : LIS_WS) : (l->has_tls ? LIS_MQTTS : LIS_MQTT);
		snprintf(bl->name, sizeof(bl->name), "%s:%d", listener_kind_name(bl->kind), l->port);
		if (ws && !(bl->path = strdup(l->path ? l->path : "/mqtt"))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (l->has_tls) {
			struct tls_opts o;
			char e[400];
			tls_opts_of(&l->tls, &o);
			bl->identity = o.identity;
			if (!(bl->tls = tls_server_new(&o, e, sizeof(e)))) {
				snprintf(err, errlen, "%s:%d: %s", cfg->path, tls_err_line(&l->tls, e), e);
				return -1;
			}
		}
	}
	return 0;
}

/* The port part of a listener's name follows the port actually bound. */
void listener_set_port(struct broker *br, int i, int port)
{
	struct broker_listener *bl = &br->lis[i];
	snprintf(bl->name, sizeof(bl->name), "%s:%d", listener_kind_name(bl->kind), port);
}

int listener_reload(struct broker *br, const struct cfg *cfg, char *err, size_t errlen)
{
	int rc = 0;
	for (int i = 0; i < br->n_lis && (size_t)i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		struct tls_opts o;
		char e[400];
		if (!br->lis[i].tls || !l->has_tls)
			continue;
		tls_opts_of(&l->tls, &o);
		if (tls_server_reload(br->lis[i].tls, &o, e, sizeof(e)) < 0 && rc == 0) {
			snprintf(err, errlen, "%s:%d: %s", cfg->path, tls_err_line(&l->tls, e), e);
			rc = -1;
		}
	}
	return rc;
}

void listener_free_all(struct broker *br)
{
	for (int i = 0; br->lis && i < br->n_lis; i++) {
		tls_server_free(br->lis[i].tls);
		free(br->lis[i].path);
	}
	free(br->lis);
	br->lis = NULL;
	br->n_lis = 0;
}

static bool rate_ok(struct broker_listener *bl, unsigned max_rate, int64_t now_ms)
{
	if (max_rate == 0)
		return true;
	int64_t sec = now_ms / 1000;
	int64_t cur = atomic_load_explicit(&bl->rate_second, memory_order_relaxed);
	if (cur != sec &&
	    atomic_compare_exchange_strong(&bl->rate_second, &cur, sec))
		atomic_store_explicit(&bl->rate_count, 0, memory_order_relaxed);
	return atomic_fetch_add_explicit(&bl->rate_count, 1, memory_order_relaxed) < max_rate;
}

static bool addr_take(const uint8_t ip[16], unsigned max)
{
	struct addr_stripe *st = stripe_of(ip);
	struct addr_count *a;
	bool ok = true;

	pthread_mutex_lock(&st->mu);
	for (a = st->head; a && memcmp(a->ip, ip, 16) != 0; a = a->next)
		;
	if (a) {
		ok = a->n < max;
	} else if ((a = calloc(1, sizeof(*a)))) {
		memcpy(a->ip, ip, 16);
		a->next = st->head;
		st->head = a;
	} else {
		ok = false;
	}
	if (ok)
		a->n++;
	pthread_mutex_unlock(&st->mu);
	return ok;
}

/* Test seam: KAFKAGATE_TEST_COUNT_LOOPBACK=1 in the environment makes
 * loopback peers other than 127.0.0.1 count against the per-address limit,
 * so that tests, which may only use loopback, can prove the limit
 * (tests/abuse: per-address). Read once. */
static bool count_loopback(const struct net_peer *p)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("KAFKAGATE_TEST_COUNT_LOOPBACK");
		on = e && strcmp(e, "1") == 0;
	}
	static const uint8_t one[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1 };
	return on && memcmp(p->ip, one, sizeof(one)) != 0;
}

const char *listener_admit(struct broker *br, int i, const struct net_peer *p, int64_t now_ms,
			   bool *counted)
{
	struct broker_listener *bl = &br->lis[i];
	unsigned per_addr = LIM(br, max_connections_per_address);

	if (!rate_ok(bl, LIM(br, max_connect_rate), now_ms))
		return "max_connect_rate reached";
	/* Loopback peers are not counted: local health checks and load
	 * generators must not lock themselves out. */
	*counted = false;
	if (per_addr > 0 && (!p->loopback || count_loopback(p))) {
		if (!addr_take(p->ip, per_addr))
			return "max_connections_per_address reached";
		*counted = true;
	}
	return NULL;
}

void listener_release(const uint8_t ip[16])
{
	struct addr_stripe *st = stripe_of(ip);
	pthread_mutex_lock(&st->mu);
	for (struct addr_count **pp = &st->head; *pp; pp = &(*pp)->next) {
		struct addr_count *a = *pp;
		if (memcmp(a->ip, ip, 16) != 0)
			continue;
		if (a->n > 0)
			a->n--;
		if (a->n == 0) {
			*pp = a->next;
			free(a);
		}
		break;
	}
	pthread_mutex_unlock(&st->mu);
}
