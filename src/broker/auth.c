/* auth.c - the password file and ACL in force, and the ACL checks; see auth.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/passwd.h"
#include "broker/auth.h"
#include "broker/auth_addrs.h"
#include "broker/auth_connect.h"
#include "broker/auth_pool.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/send.h"
#include "broker/session.h"
#include "broker/worker.h"
#include "core/hash.h"
#include "core/cfg.h"
#include "core/log.h"
#include "core/msg.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

/* ---- the state in force ------------------------------------------------- */

static void db_free(struct auth_db *db)
{
	if (!db)
		return;
	passwd_free(db->pw);
	acl_free(db->acl);
	free(db);
}

/* Reads cfg's files into a new db (one reference). NULL with err set. */
static struct auth_db *db_load(const struct cfg *cfg, char *err, size_t errlen)
{
	const struct cfg_auth *ca = &cfg->auth;
	struct auth_db *db = calloc(1, sizeof(*db));

	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&db->refs, 1);
	db->allow_anonymous = ca->allow_anonymous;
	db->fail_delay_ms = ca->fail_delay_ms;
	if (ca->password_file.path &&
	    !(db->pw = passwd_load(ca->password_file.path, err, errlen)))
		goto fail;
	if (ca->acl_file.path && !(db->acl = acl_load(ca->acl_file.path, err, errlen)))
		goto fail;
	return db;
fail:
	db_free(db);
	return NULL;
}

struct auth_db *auth_db_get(struct auth *a)
{
	pthread_mutex_lock(&a->mu);
	struct auth_db *db = a->cur;
	atomic_fetch_add_explicit(&db->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&a->mu);
	return db;
}

void auth_db_put(struct auth_db *db)
{
	if (db && atomic_fetch_sub_explicit(&db->refs, 1, memory_order_acq_rel) == 1)
		db_free(db);
}

/* Makes db the state in force (taking its reference). Main thread. */
static void db_install(struct auth *a, struct auth_db *db)
{
	if (db->acl) {
		if (++a->gen_seq == 0)
			++a->gen_seq;
		db->acl_gen = a->gen_seq;
	}
	pthread_mutex_lock(&a->mu);
	struct auth_db *old = a->cur;
	a->cur = db;
	atomic_store_explicit(&a->acl_gen, db->acl_gen, memory_order_release);
	pthread_mutex_unlock(&a->mu);
	auth_db_put(old);
}

/* The pool runs only while a password file is in force; once started it
 * stays (verify_threads needs a restart anyway). */
static int pool_need(struct auth *a, const struct auth_db *db)
{
	if (!db->pw || a->pool)
		return 0;
	a->pool = auth_pool_new(a->verify_threads, auth_connect_done, a);
	return a->pool ? 0 : -1;
}

static bool address_is_loopback(const char *addr)
{
	unsigned char b[16];

	if (inet_pton(AF_INET, addr, b) == 1)
		return b[0] == 127;
	if (inet_pton(AF_INET6, addr, b) == 1) {
		static const unsigned char one[16] = { [15] = 1 };
		static const unsigned char v4[12] = { [10] = 0xff, [11] = 0xff };
		return memcmp(b, one, 16) == 0 || (memcmp(b, v4, 12) == 0 && b[12] == 127);
	}
	return false;
}

/* Anyone who reaches a non-loopback listener without a client certificate
 * could connect without a name: say so once at start. */
static void warn_anonymous(const struct cfg *cfg)
{
	if (!cfg->auth.allow_anonymous)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		if (address_is_loopback(l->address) || (l->has_tls && l->tls.require_client_cert))
			continue;
		log_warn("auth: anonymous clients accepted on a non-loopback listener address=%s "
			 "port=%d (%s:%d; set auth.allow_anonymous = false and a password_file, "
			 "or require client certificates)",
			 l->address, l->port, cfg->path, l->line);
	}
}

static void log_loaded(const char *what, const struct auth_db *db, const struct cfg *cfg)
{
	log_info("%s password_file=%s users=%zu acl_file=%s allow_anonymous=%d", what,
		 cfg->auth.password_file.path ? cfg->auth.password_file.path : "-",
		 db->pw ? passwd_count(db->pw) : (size_t)0,
		 cfg->auth.acl_file.path ? cfg->auth.acl_file.path : "-", db->allow_anonymous);
}

struct auth *auth_new(struct broker *br, const struct cfg *cfg)
{
	char err[512];
	struct auth *a = calloc(1, sizeof(*a));

	if (!a || !(a->wk = calloc((size_t)br->n_workers, sizeof(*a->wk))) ||
	    !(a->addrs = auth_addrs_new())) {
		log_error("auth setup failed reason=\"out of memory\"");
		goto fail;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->br = br;
	a->n_workers = br->n_workers;
	a->verify_threads = cfg->auth.verify_threads > 0 ? cfg->auth.verify_threads : 1;
	struct auth_db *db = db_load(cfg, err, sizeof(err));
	if (!db) {
		log_error("auth setup failed reason=%s", log_q(err));
		goto fail;
	}
	db_install(a, db);
	if (pool_need(a, db) < 0)
		goto fail;
	if (cfg->auth.line > 0)
		log_loaded("auth loaded", db, cfg);
	warn_anonymous(cfg);
	return a;
fail:
	auth_stop(a);
	auth_free(a);
	return NULL;
}

void auth_stop(struct auth *a)
{
	if (!a)
		return;
	auth_pool_free(a->pool);
	a->pool = NULL;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	auth_pool_free(a->pool);
	auth_db_put(a->cur);
	for (int i = 0; a->wk && i < a->n_workers; i++)
		free(a->wk[i].ref);
	free(a->wk);
	auth_addrs_free(a->addrs);
	if (a->br)
		pthread_mutex_destroy(&a->mu);
	free(a);
}

int auth_check(const struct cfg *cfg, char *err, size_t errlen)
{
	struct auth_db *db = db_load(cfg, err, errlen);
	db_free(db);
	return db ? 0 : -1;
}

void auth_reload(struct auth *a, const struct cfg *cfg)
{
	char err[512];
	struct auth_db *db = db_load(cfg, err, sizeof(err));

	if (!db) {
		/* broker_check() passed: the file changed since. */
		log_error("reload: auth files kept reason=%s", log_q(err));
		return;
	}
	if (pool_need(a, db) < 0) {
		log_error("reload: auth files kept reason=\"verification threads failed\"");
		db_free(db);
		return;
	}
	/* Said when there is or was something to say (cur: main thread only
	 * swaps it, so reading it here needs no reference). */
	bool had = a->cur->pw || a->cur->acl;
	db_install(a, db);
	if (had || cfg->auth.line > 0)
		log_loaded("auth reloaded", db, cfg);
}

/* ---- connections ------------------------------------------------------------ */

struct client_auth *auth_client(struct client *c)
{
	if (!c->auth)
		c->auth = calloc(1, sizeof(*c->auth));
	return c->auth;
}

void auth_client_release(struct client *c)
{
	struct client_auth *ca = c->auth;
	struct auth_pool *p = c->w->br->auth ? c->w->br->auth->pool : NULL;

	if (!ca)
		return;
	if (ca->pending && p)
		auth_pool_cancel(p, c->conn_id);
	acl_client_free(ca->acl);
	free(ca);
	c->auth = NULL;
}

/*
 * c's rules under ACL generation gen (auth_acl_on()'s load, not 0), rebuilt
 * when a reload changed it. Returns 1 and *out (NULL: the ACL went away
 * meanwhile, everything allowed), or 0 on ENOMEM (the caller denies:
 * failing closed). The rebuild reads the state in force under its mutex,
 * so gen needs no ordering of its own.
 */
static int client_acl(struct client *c, unsigned gen, const struct acl_client **out)
{
	struct client_auth *ca = auth_client(c);

	if (!ca)
		return 0;
	if (ca->acl_gen != gen) {
		struct auth_db *db = auth_db_get(c->w->br->auth);
		struct acl_client *n = NULL;
		if (db->acl)
			n = acl_client_new(db->acl, ca->verified ? c->username : NULL, c->id);
		bool oom = db->acl && !n;
		unsigned ng = db->acl_gen;
		auth_db_put(db);
		if (oom) {
			log_warn_rl("acl check failed client=%s reason=\"out of memory\" (denied)",
				    log_q(c->id));
			return 0;
		}
		acl_client_free(ca->acl);
		ca->acl = n;
		ca->acl_gen = ng;
	}
	*out = ca->acl;
	return 1;
}

/* The ACL generation in force; 0: none, everything allowed. */
static unsigned acl_gen(const struct client *c)
{
	return atomic_load_explicit(&c->w->br->auth->acl_gen, memory_order_relaxed);
}

static bool can(struct client *c, unsigned gen, const char *topic, size_t len,
		enum acl_access access)
{
	const struct acl_client *acl;

	if (!client_acl(c, gen, &acl))
		return false;
	return !acl || acl_client_can(acl, topic, len, access);
}

/* True the first time this topic is denied for c: one line per client
 * and topic, remembered as hashes in a ring of 8 (a client cycling through
 * more topics gets more lines, still under the kind's rate limit). */
static bool first_denial(struct client *c, const char *topic, size_t len)
{
	struct client_auth *ca = c->auth;

	if (!ca)
		return true;
	uint32_t h = hash_bytes(hash_process_seed(), topic, len);
	for (int i = 0; i < ca->n_logged; i++)
		if (ca->logged[i] == h)
			return false;
	ca->logged[ca->next_logged] = h;
	ca->next_logged = (uint8_t)((ca->next_logged + 1) % 8);
	if (ca->n_logged < 8)
		ca->n_logged++;
	return true;
}

static void denied(struct client *c, enum auth_denied what, const char *topic, size_t len)
{
	static const char *const words[AUTH_DENY_N] = { "write", "read", "subscribe" };
	static struct log_limit lim = LOG_LIMIT("acl denied", 10, 50);
	struct auth *a = c->w->br->auth;

	AUTH_INC(a, c->w, denied[what]);
	/* Reads are filtered silently: a wildcard subscriber would log every
	 * message it is not shown. */
	if (what != AUTH_DENY_READ && first_denial(c, topic, len))
		log_limited(&lim, LVL_WARN, false, "acl denied client=%s user=%s addr=%s access=%s %s=%s",
			    log_q(c->id), log_q(c->username), client_peer(c), words[what],
			    what == AUTH_DENY_SUBSCRIBE ? "filter" : "topic", log_qn(topic, len));
}

bool auth_may_publish(struct client *c, const struct mqtt_publish *pub)
{
	unsigned gen = acl_gen(c);

	return !gen || can(c, gen, (const char *)pub->topic.p, pub->topic.len, ACL_WRITE);
}

int auth_drop_publish(struct client *c, const struct mqtt_publish *pub)
{
	denied(c, AUTH_DENY_WRITE, (const char *)pub->topic.p, pub->topic.len);
	if (pub->qos == 0)
		return 0;
	/* As an accepted publish would be: a resent QoS 2 id gets its PUBREC
	 * again; acks leave in arrival order behind those awaiting the sink. */
	if (pub->qos == 2 && pidset_has(&c->s->qos2_in, pub->packet_id))
		return send_pubrec(c, pub->packet_id);
	if (pub->qos == 2 && client_ack_pending(c, pub->packet_id))
		return 0;
	uint32_t seq = client_ack_push(c, pub->packet_id, pub->qos);
	if (seq == 0) {
		client_close(c, "out of memory", true);
		return -1;
	}
	/* MQTT 5 says why: 0x87 Not authorized, in its turn (a PUBREC >= 0x80
	 * ends that QoS 2 flow, so the id is not kept). 3.1.1 has no way to
	 * say it: a plain PUBACK/PUBREC, as before. */
	client_ack_complete_rc(c, seq, c->level == 5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_RC_SUCCESS);
	return c->state == CL_CLOSING ? -1 : 0;
}

bool auth_may_subscribe(struct client *c, const char *filter, uint16_t len)
{
	const struct acl_client *acl;
	unsigned gen = acl_gen(c);

	if (!gen)
		return true;
	/* "$share/GROUP/" is not served: the filter is taken as written. */
	bool ok = client_acl(c, gen, &acl) &&
		  (!acl || acl_client_subscribe(acl, filter, len) != ACL_SUB_DENY);
	if (!ok)
		denied(c, AUTH_DENY_SUBSCRIBE, filter, len);
	return ok;
}

bool auth_may_read(struct client *c, const struct msg *m)
{
	/* Commands for an upstream were addressed to it by a downlink mapping;
	 * the ACL says what devices may read. */
	unsigned gen = acl_gen(c);

	if (c->up || !gen || can(c, gen, m->topic, m->topic_len, ACL_READ))
		return true;
	denied(c, AUTH_DENY_READ, m->topic, m->topic_len);
	return false;
}

bool auth_may_publish_will(struct client *c)
{
	const struct msg *m = c->will;
	unsigned gen = acl_gen(c);

	if (!m || !gen || can(c, gen, m->topic, m->topic_len, ACL_WRITE))
		return true;
	denied(c, AUTH_DENY_WRITE, m->topic, m->topic_len);
	return false;
}
