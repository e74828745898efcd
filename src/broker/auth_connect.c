/* auth_connect.c - CONNECT's identity and password check; see auth_connect.h. */
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "broker/auth.h"
#include "broker/auth_addrs.h"
#include "broker/auth_connect.h"
#include "broker/auth_pool.h"
#include "broker/broker_int.h"
#include "broker/client.h"
#include "broker/send.h"
#include "broker/state_hooks.h"
#include "broker/worker.h"
#include "core/log.h"
#include "mqtt/mqtt5.h"
#include "mqtt/mqtt_codec.h"

static const uint8_t fail_code[AUTH_FAIL_N] = {
	[AUTH_FAIL_WRONG_PASSWORD] = MQTT_CONNACK_BAD_AUTH,
	[AUTH_FAIL_UNKNOWN_USER] = MQTT_CONNACK_NOT_AUTHORIZED,
	[AUTH_FAIL_ANONYMOUS] = MQTT_CONNACK_NOT_AUTHORIZED,
};
/* The metric's label and the log's reason. */
static const char *const fail_word[AUTH_FAIL_N] = {
	[AUTH_FAIL_WRONG_PASSWORD] = "wrong_password",
	[AUTH_FAIL_UNKNOWN_USER] = "unknown_user",
	[AUTH_FAIL_ANONYMOUS] = "anonymous",
};
/* close_reason keeps the pointer: static strings only. */
static const char *const fail_close[AUTH_FAIL_N] = {
	[AUTH_FAIL_WRONG_PASSWORD] = "refused: bad user name or password",
	[AUTH_FAIL_UNKNOWN_USER] = "refused: not authorized (unknown user)",
	[AUTH_FAIL_ANONYMOUS] = "refused: not authorized (anonymous)",
};

static struct log_limit lim_failed = LOG_LIMIT("auth failed", 10, 50);

/* CONNACK 3 and close: the gateway cannot check now (queue full, error).
 * MQTT 5 tells the two apart: a full queue is 0x89 Server busy (try again
 * later), anything else 0x88 Server unavailable. */
static int unavailable(struct client *c, const char *why, bool busy)
{
	struct auth *a = c->w->br->auth;

	AUTH_INC(a, c->w, unavailable);
	log_warn_rl("auth unavailable client=%s user=%s addr=%s reason=\"%s\"", log_q(c->id),
		    log_q(c->username), client_peer(c), why);
	send_connack(c, busy && c->level == 5 ? MQTT_RC_SERVER_BUSY : MQTT_CONNACK_UNAVAILABLE,
		     false);
	client_close(c, why, false);
	return -1;
}

static void refuse_now(struct client *c, uint8_t rc, const char *reason)
{
	if (send_connack(c, rc, false) == 0)
		client_close(c, reason, false);
}

/* Counts and logs a failed login, then refuses at once or after the delay. */
static int refuse(struct client *c, enum auth_fail why)
{
	struct worker *w = c->w;
	struct auth *a = w->br->auth;
	struct auth_worker *aw = &a->wk[w->idx];
	struct auth_db *db = auth_db_get(a);
	int delay = db->fail_delay_ms;

	auth_db_put(db);
	AUTH_INC(a, w, failures[why]);
	auth_addrs_fail(a->addrs, c->ip, w->now_ms);
	log_limited(&lim_failed, LVL_WARN, false, "auth failed client=%s user=%s addr=%s reason=%s",
		    log_q(c->id), log_q(c->username), client_peer(c), fail_word[why]);
	if (delay > 0 && aw->n_ref == aw->cap_ref) {
		size_t cap = aw->cap_ref ? aw->cap_ref * 2 : 16;
		struct auth_refusal *v = realloc(aw->ref, cap * sizeof(*v));
		if (v) {
			aw->ref = v;
			aw->cap_ref = cap;
		}
	}
	if (delay <= 0 || aw->n_ref == aw->cap_ref) {
		refuse_now(c, fail_code[why], fail_close[why]);
		return -1;
	}
	aw->ref[aw->n_ref++] = (struct auth_refusal){
		.conn_id = c->conn_id, .due_ms = w->now_ms + delay,
		.rc = fail_code[why], .why = (uint8_t)why,
	};
	c->state = CL_WAIT_AUTH;
	client_update_read(c);
	return 0;
}

/* Queues the password check; c waits paused. Takes db's reference. */
static int submit(struct client *c, const struct mqtt_connect *k, struct auth_db *db)
{
	struct worker *w = c->w;
	struct auth *a = w->br->auth;
	struct client_auth *ca = auth_client(c);
	struct auth_job *j = ca ? auth_job_new(c->username, k->password.p,
					       k->has_password ? k->password.len : 0)
				: NULL;
	if (!j) {
		auth_db_put(db);
		return unavailable(c, "out of memory", false);
	}
	j->conn_id = c->conn_id;
	j->deadline_ms = c->accepted_ms + (int64_t)LIM(w->br, connect_timeout_ms);
	j->pw = db->pw;
	j->hold = db;
	memcpy(j->ip, c->ip, sizeof(j->ip));
	bool low = auth_addrs_suspect(a->addrs, c->ip, w->now_ms);
	if (!a->pool || auth_pool_submit(a->pool, j, low) < 0) {
		auth_job_free(j);
		auth_db_put(db);
		return unavailable(c, "verification queue full", true);
	}
	ca->pending = true;
	c->state = CL_WAIT_AUTH;
	client_update_read(c);
	return 0;
}

int auth_connect(struct client *c, const struct mqtt_connect *k)
{
	struct auth *a = c->w->br->auth;

	if (c->cert_user) {
		/* identity = "cn"/"san": the verified certificate names the user and
		 * no password is checked (mosquitto's use_identity_as_username). */
		struct client_auth *ca = auth_client(c);
		char *u = ca ? strdup(c->cert_user) : NULL;
		if (!u)
			return unavailable(c, "out of memory", false);
		free(c->username);
		c->username = u;
		ca->verified = true;
		AUTH_INC(a, c->w, success);
		return hooks_connect(c);
	}
	struct auth_db *db = auth_db_get(a);
	if (db->pw && k->has_username)
		return submit(c, k, db);
	/* No name, or no password file to prove one with: anonymous. */
	bool allowed = db->allow_anonymous;
	auth_db_put(db);
	if (!allowed)
		return refuse(c, AUTH_FAIL_ANONYMOUS);
	return hooks_connect(c);
}

void auth_connect_verified(struct worker *w, uint64_t conn_id, int result)
{
	struct auth *a = w->br->auth;
	struct client *c = worker_client(w, conn_id);

	if (!c || c->state != CL_WAIT_AUTH || !c->auth || !c->auth->pending)
		return;
	c->auth->pending = false;
	switch (result) {
	case PASSWD_OK:
		AUTH_INC(a, w, success);
		c->auth->verified = true;
		c->state = CL_NEW;
		hooks_connect(c);
		break;
	case PASSWD_WRONG:
		refuse(c, AUTH_FAIL_WRONG_PASSWORD);
		break;
	case PASSWD_NO_USER:
		refuse(c, AUTH_FAIL_UNKNOWN_USER);
		break;
	default:
		unavailable(c, "password check failed", false);
		break;
	}
}

void auth_connect_tick(struct worker *w)
{
	struct auth_worker *aw = &w->br->auth->wk[w->idx];
	size_t k = 0;

	if (aw->n_ref == 0)
		return;
	for (size_t i = 0; i < aw->n_ref; i++) {
		struct auth_refusal r = aw->ref[i];
		if (r.due_ms > w->now_ms) {
			aw->ref[k++] = r;
			continue;
		}
		struct client *c = worker_client(w, r.conn_id);
		if (c && c->state == CL_WAIT_AUTH)
			refuse_now(c, r.rc, fail_close[r.why]);
	}
	aw->n_ref = k;
	if (k == 0 && aw->cap_ref > 256) {
		free(aw->ref);
		aw->ref = NULL;
		aw->cap_ref = 0;
	}
}

void auth_connect_done(void *ud, uint64_t conn_id, bool checked, int result, void *hold)
{
	struct auth *a = ud;

	auth_db_put(hold);
	if (!checked)
		return; /* cancelled or too late: the connection is gone or timing out */
	struct inbox_item it = { .kind = INBOX_AUTH, .a = (uint8_t)result, .u = conn_id };
	if (worker_post(&a->br->workers[conn_worker(conn_id)], &it) < 0)
		log_error_rl("auth verdict lost conn=%llx reason=\"out of memory\"",
			     (unsigned long long)conn_id);
}
