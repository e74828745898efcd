/* test_state_sessions.c - the sessions view (state/state_sessions.c) against
 * a fake Kafka: state_produce() appends to an in-memory partition, the test
 * delivers reports and feeds records back as the reader would, and the
 * broker's calls are recorded. Claims and their answers, inherited
 * subscriptions, stale epochs and the re-write, kicks, claim timeouts, the
 * lease, restart adoption with its will published once, the dead-owner
 * helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/broker.h"
#include "core/cfg.h"
#include "core/msg.h"
#include "state/state_int.h"
#include "state/state_rec.h"

/* ---- the fakes ---- */

#define MAXREC 256
struct logrec {
	char key[64];
	char *val;
	size_t len;
	state_dr_fn done;
	void *ud;
	bool reported;
};
static struct logrec LOG[MAXREC];
static int NLOG;
static int64_t NOW = 100000, WALL = 1700000000000;

static struct cfg CFG;
static struct state ST;
static int BUSDUMMY;

struct call {
	char what[16];
	uint64_t conn_id;
	int r;
	bool has_img;
	size_t nsubs;
	char sub0[64];
	char id[64];
	char owner[64];
	char topic[64];
	char payload[64];
};
static struct call CALLS[64];
static int NCALLS;

static struct call *call_add(const char *what)
{
	assert_true(NCALLS < 64);
	struct call *c = &CALLS[NCALLS++];
	memset(c, 0, sizeof(*c));
	snprintf(c->what, sizeof(c->what), "%s", what);
	return c;
}

int64_t state_now_ms(void) { return NOW; }
int64_t state_wall_ms(void) { return WALL; }

int state_produce(struct state *st, const char *topic, const void *key, size_t keylen,
		  const void *value, size_t vlen, rd_kafka_headers_t *hdrs, state_dr_fn done,
		  void *ud)
{
	(void)st;
	(void)hdrs;
	assert_string_equal(topic, "p.sessions");
	assert_true(NLOG < MAXREC);
	struct logrec *l = &LOG[NLOG++];
	snprintf(l->key, sizeof(l->key), "%.*s", (int)keylen, (const char *)key);
	l->val = malloc(vlen + 1);
	memcpy(l->val, value, vlen);
	l->val[vlen] = '\0';
	l->len = vlen;
	l->done = done;
	l->ud = ud;
	l->reported = false;
	return 0;
}

/* The queue module (state_queue.c) is not part of these tests: records
 * here never name a queue, so these are never reached. */
void *state_queue_current(struct state_queue *q, const char *id, uint16_t id_len, char *inst,
			  size_t inst_cap, int64_t *off)
{
	(void)q, (void)id, (void)id_len, (void)inst, (void)inst_cap, (void)off;
	fail_msg("state_queue_current");
	return NULL;
}
void state_queue_written(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)ud, (void)err, (void)partition, (void)offset;
}
void state_queue_restore(struct state_queue *q, const char *id, uint16_t id_len,
			 const char *inst, int64_t off, const char *owner)
{
	(void)q, (void)id, (void)id_len, (void)inst, (void)off, (void)owner;
	fail_msg("state_queue_restore");
}
void state_queue_restore_after(struct state_queue *q, const char *id, uint16_t id_len,
			       const char *inst, int64_t off, const char *owner,
			       struct msg *will, bool drain)
{
	(void)q, (void)id, (void)id_len, (void)inst, (void)off, (void)owner, (void)drain;
	msg_unref(will);
	fail_msg("state_queue_restore_after");
}

void broker_state_claimed(struct broker *br, uint64_t conn_id, enum broker_claim_result r,
			  const struct broker_session_image *img)
{
	(void)br;
	struct call *c = call_add("claimed");
	c->conn_id = conn_id;
	c->r = (int)r;
	c->has_img = img != NULL;
	if (img) {
		c->nsubs = img->nsubs;
		if (img->nsubs)
			snprintf(c->sub0, sizeof(c->sub0), "%.*s", img->subs[0].len,
				 img->subs[0].filter);
	}
}

/* A SUBACK released: conn_id, r = ok, nsubs = the token. */
void broker_state_subs_written(struct broker *br, uint64_t conn_id, uint32_t token, bool ok)
{
	(void)br;
	struct call *c = call_add("subsw");
	c->conn_id = conn_id;
	c->r = ok;
	c->nsubs = token;
}

void broker_state_kick(struct broker *br, const char *id, uint16_t id_len)
{
	(void)br;
	snprintf(call_add("kick")->id, 64, "%.*s", id_len, id);
}

int broker_state_restore(struct broker *br, const char *id, uint16_t id_len,
			 const struct broker_session_image *img)
{
	(void)br;
	struct call *c = call_add("restore");
	snprintf(c->id, sizeof(c->id), "%.*s", id_len, id);
	c->nsubs = img->nsubs;
	if (img->nsubs)
		snprintf(c->sub0, sizeof(c->sub0), "%.*s", img->subs[0].len, img->subs[0].filter);
	return 0;
}

int broker_inject(struct broker *br, struct msg *m)
{
	(void)br;
	msg_unref(m);
	fail_msg("broker_inject: state_publish should be the test's");
	return -1;
}

void state_bus_subs(struct state_bus *sb, const char *id, uint16_t id_len, const char *owner,
		    const struct broker_sub *subs, size_t n)
{
	assert_ptr_equal(sb, &BUSDUMMY);
	struct call *c = call_add("bus");
	snprintf(c->id, sizeof(c->id), "%.*s", id_len, id);
	snprintf(c->owner, sizeof(c->owner), "%s", owner ? owner : "-");
	c->nsubs = n;
	if (n)
		snprintf(c->sub0, sizeof(c->sub0), "%.*s", subs[0].len, subs[0].filter);
}

int state_publish(struct state *st, const char *id, uint16_t id_len, struct msg *m)
{
	(void)st;
	struct call *c = call_add("publish");
	snprintf(c->id, sizeof(c->id), "%.*s", id_len, id);
	snprintf(c->topic, sizeof(c->topic), "%.*s", m->topic_len, m->topic);
	snprintf(c->payload, sizeof(c->payload), "%.*s", (int)m->payload_len,
		 (const char *)m->payload);
	msg_unref(m);
	return 0;
}

/* ---- helpers ---- */

static int count(const char *what)
{
	int n = 0;
	for (int i = 0; i < NCALLS; i++)
		n += strcmp(CALLS[i].what, what) == 0;
	return n;
}

static struct call *last(const char *what)
{
	for (int i = NCALLS - 1; i >= 0; i--)
		if (strcmp(CALLS[i].what, what) == 0)
			return &CALLS[i];
	return NULL;
}

/* Delivery report of record i: its offset is i. */
static void report(int i, rd_kafka_resp_err_t err)
{
	struct logrec *l = &LOG[i];
	assert_false(l->reported);
	l->reported = true;
	if (l->done)
		l->done(l->ud, err, 0, i);
}

static void report_all(void)
{
	for (int i = 0; i < NLOG; i++)
		if (!LOG[i].reported)
			report(i, RD_KAFKA_RESP_ERR_NO_ERROR);
}

static int READ; /* the reader's position */
static uint32_t PUT_DELAY; /* Will Delay Interval of the wills put() writes */

/* Reports and reads everything written so far, as Kafka and the reader. */
static void pump(struct state_sessions *ss)
{
	for (int round = 0; round < 8 && READ < NLOG; round++) {
		report_all();
		while (READ < NLOG) {
			rd_kafka_message_t m = { 0 };
			m.partition = 0;
			m.offset = READ;
			m.key = LOG[READ].key;
			m.key_len = strlen(LOG[READ].key);
			m.payload = LOG[READ].val;
			m.len = LOG[READ].len;
			READ++;
			state_sessions_record(ss, &m);
		}
	}
	report_all();
}

static void decode(int i, struct state_rec *r)
{
	assert_int_equal(state_rec_decode(r, LOG[i].val, LOG[i].len, NULL, 0), 0);
}

/* Appends a record as another writer (or a previous run) made it. */
static void put(const char *key, enum state_rec_type t, const char *owner, int64_t boot,
		int64_t epoch, enum state_rec_state state, bool persistent, const char *sub,
		const char *will_topic)
{
	struct state_rec r = { 0 };
	r.t = t;
	snprintf(r.owner, sizeof(r.owner), "%s", owner);
	snprintf(r.conn, sizeof(r.conn), "7");
	r.boot = boot;
	r.epoch = epoch;
	r.state = state;
	r.persistent = persistent;
	r.level = 4;
	r.parked_at = state == SREC_PARKED ? WALL - 1000 : 0;
	r.at = WALL;
	if (sub) {
		struct broker_sub s = { sub, (uint16_t)strlen(sub), 1 };
		assert_int_equal(state_rec_set_subs(&r, &s, 1), 0);
	}
	if (will_topic) {
		struct state_rec_will w = { .topic = (char *)will_topic,
					    .topic_len = (uint16_t)strlen(will_topic),
					    .payload = (uint8_t *)"bye", .payload_len = 3, .qos = 1,
					    .delay_s = PUT_DELAY };
		assert_int_equal(state_rec_set_will(&r, &w), 0);
	}
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	state_produce(&ST, "p.sessions", key, strlen(key), js, len, NULL, NULL, NULL);
	free(js);
	state_rec_clear(&r);
}

static struct broker_claim claim_of(const char *id, uint64_t conn, bool clean, bool persistent)
{
	return (struct broker_claim){ .conn_id = conn, .id = id, .id_len = (uint16_t)strlen(id),
				      .level = 4, .clean = clean, .persistent = persistent };
}

static int setup(void **state)
{
	for (int i = 0; i < NLOG; i++)
		free(LOG[i].val);
	memset(LOG, 0, sizeof(LOG));
	NLOG = READ = NCALLS = 0;
	PUT_DELAY = 0;
	NOW = 100000;
	WALL = 1700000000000;
	memset(&CFG, 0, sizeof(CFG));
	CFG.state.claim_timeout_ms = 1000;
	CFG.state.lease_ms = 5000;
	memset(&ST, 0, sizeof(ST));
	ST.cfg = &CFG;
	snprintf(ST.instance_id, sizeof(ST.instance_id), "gw-1");
	snprintf(ST.t_sessions, sizeof(ST.t_sessions), "p.sessions");
	ST.started_ms = 1000;
	ST.bus = (struct state_bus *)&BUSDUMMY;
	*state = state_sessions_new(&ST);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	report_all(); /* librdkafka reports every record, purged ones too */
	state_sessions_free(*state);
	for (int i = 0; i < NLOG; i++)
		free(LOG[i].val);
	NLOG = 0;
	return 0;
}

/* ---- tests ---- */

/* A persistent claim waits for its record to be read back; later hooks
 * write with its offset as the epoch. */
static void test_claim_answered_on_read_back(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("dev", 11, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	assert_int_equal(NLOG, 1);
	assert_int_equal(count("claimed"), 0);
	struct state_rec r;
	decode(0, &r);
	assert_int_equal(r.t, SREC_CLAIM);
	assert_int_equal(r.epoch, -1);
	assert_true(r.resume);
	assert_string_equal(r.conn, "11");
	state_rec_clear(&r);
	pump(ss);
	struct call *k = last("claimed");
	assert_non_null(k);
	assert_int_equal(k->conn_id, 11);
	assert_int_equal(k->r, BROKER_CLAIM_OK);
	assert_false(k->has_img); /* nothing known before */
	assert_int_equal(count("bus"), 1);

	struct broker_sub s = { "a/b", 3, 1 };
	state_sessions_subs_changed(ss, "dev", 3, &s, 1, 0, 0);
	assert_int_equal(NLOG, 2);
	decode(1, &r);
	assert_int_equal(r.t, SREC_SUBS);
	assert_int_equal(r.epoch, 0);
	assert_int_equal(r.nsubs, 1);
	state_rec_clear(&r);
	state_sessions_parked(ss, "dev", 3, 60, NULL, 0);
	decode(2, &r);
	assert_int_equal(r.t, SREC_PARK);
	assert_int_equal(r.state, SREC_PARKED);
	assert_int_equal(r.nsubs, 1);
	assert_int_equal(r.expiry_s, 60);
	state_rec_clear(&r);
	state_sessions_ended(ss, "dev", 3);
	decode(3, &r);
	assert_int_equal(r.t, SREC_END);
	assert_int_equal(r.nsubs, 0);
	state_rec_clear(&r);
	/* Not ours any more. */
	state_sessions_subs_changed(ss, "dev", 3, &s, 1, 0, 0);
	assert_int_equal(NLOG, 4);
}

/* A persistent session's SUBACK waits for the delivery report of the
 * snapshot carrying the change; a failed write releases it unconfirmed;
 * a session not held here releases it at once. */
static void test_suback_waits_for_report(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("dev", 11, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	pump(ss);
	assert_int_equal(count("claimed"), 1);
	struct broker_sub s = { "a/b", 3, 1 };
	state_sessions_subs_changed(ss, "dev", 3, &s, 1, 11, 7);
	assert_int_equal(NLOG, 2);
	assert_int_equal(count("subsw"), 0); /* not before Kafka has it */
	report(1, RD_KAFKA_RESP_ERR_NO_ERROR);
	struct call *k = last("subsw");
	assert_non_null(k);
	assert_int_equal(k->conn_id, 11);
	assert_int_equal(k->nsubs, 7);
	assert_true(k->r);
	state_sessions_subs_changed(ss, "dev", 3, NULL, 0, 11, 8);
	assert_int_equal(NLOG, 3);
	assert_int_equal(count("subsw"), 1);
	report(2, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
	k = last("subsw");
	assert_int_equal(count("subsw"), 2);
	assert_int_equal(k->nsubs, 8);
	assert_false(k->r);
	/* Without a wait: nothing to answer. */
	state_sessions_subs_changed(ss, "dev", 3, &s, 1, 0, 0);
	assert_int_equal(count("subsw"), 2);
	/* Not held here: no record, answered at once, unconfirmed. */
	state_sessions_subs_changed(ss, "other", 5, &s, 1, 12, 1);
	assert_int_equal(NLOG, 4);
	k = last("subsw");
	assert_int_equal(count("subsw"), 3);
	assert_int_equal(k->conn_id, 12);
	assert_false(k->r);
}

/* While the claim's epoch is unknown the snapshot waits (dirty), and so do
 * its SUBACKs: they go with the delivery report of the record written once
 * the epoch is known, not with the claim's. A claim that fails drops the
 * snapshot: they go at once, unconfirmed. */
static void test_suback_waits_for_deferred_snapshot(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("cl", 5, true, false);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	struct broker_sub s = { "x", 1, 0 };
	state_sessions_subs_changed(ss, "cl", 2, &s, 1, 5, 1);
	struct broker_sub s2[] = { { "x", 1, 0 }, { "y", 1, 0 } };
	state_sessions_subs_changed(ss, "cl", 2, s2, 2, 5, 2);
	assert_int_equal(NLOG, 1);
	assert_int_equal(count("subsw"), 0);
	report(0, RD_KAFKA_RESP_ERR_NO_ERROR); /* the claim's: the snapshot goes now */
	assert_int_equal(NLOG, 2);
	assert_int_equal(count("subsw"), 0);
	struct state_rec r;
	decode(1, &r);
	assert_int_equal(r.nsubs, 2);
	state_rec_clear(&r);
	report(1, RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(count("subsw"), 2);
	for (int i = 0; i < NCALLS; i++)
		if (strcmp(CALLS[i].what, "subsw") == 0)
			assert_true(CALLS[i].r);

	/* A persistent claim whose record fails: the waiting SUBACK too. */
	struct broker_claim p = claim_of("pd", 9, false, true);
	assert_int_equal(state_sessions_claim(ss, &p), 0);
	int at = NLOG - 1;
	state_sessions_subs_changed(ss, "pd", 2, &s, 1, 9, 3);
	assert_int_equal(NLOG, at + 1);
	report(at, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
	struct call *k = last("subsw");
	assert_int_equal(count("subsw"), 3);
	assert_int_equal(k->conn_id, 9);
	assert_false(k->r);
}

/* Writes before the claim's delivery report wait for the epoch. */
static void test_writes_wait_for_epoch(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("cl", 5, true, false);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	assert_int_equal(count("claimed"), 1); /* clean: answered at once */
	struct broker_sub s = { "x", 1, 0 };
	state_sessions_subs_changed(ss, "cl", 2, &s, 1, 0, 0);
	struct broker_sub s2[] = { { "x", 1, 0 }, { "y", 1, 0 } };
	state_sessions_subs_changed(ss, "cl", 2, s2, 2, 0, 0);
	assert_int_equal(NLOG, 1); /* waiting */
	report(0, RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(NLOG, 2); /* only the latest snapshot */
	struct state_rec r;
	decode(1, &r);
	assert_int_equal(r.epoch, 0);
	assert_int_equal(r.nsubs, 2);
	state_rec_clear(&r);
}

/* A resuming claim inherits the subscriptions of the session before it
 * (another instance's), writes them again under its epoch, and kicks
 * nothing here; the other instance's later claim kicks us. */
static void test_resume_inherits_and_kick(void **state)
{
	struct state_sessions *ss = *state;
	put("d", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, true, NULL, NULL);
	put("d", SREC_SUBS, "gw-2", 50, 0, SREC_ONLINE, true, "cmd/d", NULL);
	put("d", SREC_PARK, "gw-2", 50, 0, SREC_PARKED, true, "cmd/d", NULL);
	pump(ss);
	struct broker_claim c = claim_of("d", 9, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	pump(ss);
	struct call *k = last("claimed");
	assert_non_null(k);
	assert_true(k->has_img);
	assert_int_equal(k->nsubs, 1);
	assert_string_equal(k->sub0, "cmd/d");
	/* Our claim (3) carried the subscriptions it inherits, so it keeps
	 * them through compaction itself: no snapshot follows it. */
	struct state_rec r;
	decode(3, &r);
	assert_int_equal(r.t, SREC_CLAIM);
	assert_int_equal(r.nsubs, 1);
	assert_string_equal(r.subs[0].filter, "cmd/d");
	assert_string_equal(r.owner, "gw-1");
	state_rec_clear(&r);
	assert_int_equal(NLOG, 4);
	assert_int_equal(count("kick"), 0);
	struct call *b = last("bus");
	assert_string_equal(b->owner, "gw-1");
	assert_int_equal(b->nsubs, 1);

	/* gw-2 claims it back: we are kicked, and write nothing more. */
	put("d", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, false, NULL, NULL);
	pump(ss);
	assert_int_equal(count("kick"), 1);
	assert_string_equal(last("kick")->id, "d");
	int n = NLOG;
	state_sessions_parked(ss, "d", 1, 60, NULL, 0);
	assert_int_equal(NLOG, n);
}

/* A claim made on a stale view carries the wrong subscriptions: readers
 * inherit those before the claim in Kafka's order, and its owner writes
 * them under its epoch at once. A resuming claim that inherits nothing
 * (the session had ended) carried some: readers see none, and a snapshot
 * without them follows. */
static void test_claim_carried_stale_subs(void **state)
{
	struct state_sessions *ss = *state;
	put("v", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, true, NULL, NULL); /* 0 */
	put("v", SREC_PARK, "gw-2", 50, 0, SREC_PARKED, true, "old/v", NULL); /* 1 */
	pump(ss);
	put("v", SREC_PARK, "gw-2", 50, 0, SREC_PARKED, true, "new/v", NULL); /* 2, not read yet */
	struct broker_claim c = claim_of("v", 9, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0); /* 3: carries old/v */
	struct state_rec r;
	decode(3, &r);
	assert_int_equal(r.nsubs, 1);
	assert_string_equal(r.subs[0].filter, "old/v");
	state_rec_clear(&r);
	pump(ss);
	struct call *k = last("claimed");
	assert_non_null(k);
	assert_int_equal(k->nsubs, 1);
	assert_string_equal(k->sub0, "new/v");
	decode(4, &r);
	assert_int_equal(r.t, SREC_SUBS);
	assert_int_equal(r.epoch, 3);
	assert_int_equal(r.nsubs, 1);
	assert_string_equal(r.subs[0].filter, "new/v");
	state_rec_clear(&r);

	/* Ended (by gw-2, written after our view had it parked): our next
	 * resuming claim carries old subscriptions but inherits none. */
	put("w", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, true, NULL, NULL); /* 5 */
	put("w", SREC_PARK, "gw-2", 50, 5, SREC_PARKED, true, "w/#", NULL); /* 6 */
	pump(ss);
	put("w", SREC_END, "gw-2", 50, 5, SREC_ENDED, true, NULL, NULL); /* 7 */
	struct broker_claim c2 = claim_of("w", 10, false, true);
	assert_int_equal(state_sessions_claim(ss, &c2), 0); /* 8: carries w/# */
	pump(ss);
	k = last("claimed");
	assert_non_null(k);
	assert_false(k->has_img);
	decode(9, &r);
	assert_int_equal(r.t, SREC_SUBS);
	assert_int_equal(r.epoch, 8);
	assert_int_equal(r.nsubs, 0);
	state_rec_clear(&r);
	struct call *b = last("bus");
	assert_int_equal(b->nsubs, 0);
}

/* A clean claim is answered at once: its client subscribes before the
 * claim is read back; reading the claim back must not drop that
 * subscription (the snapshot written then carries it). */
static void test_clean_claim_keeps_early_subscribe(void **state)
{
	struct state_sessions *ss = *state;
	put("k", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, true, NULL, NULL); /* 0 */
	put("k", SREC_PARK, "gw-2", 50, 0, SREC_PARKED, true, "old/k", NULL); /* 1 */
	pump(ss);
	struct broker_claim c = claim_of("k", 12, true, false);
	assert_int_equal(state_sessions_claim(ss, &c), 0); /* 2 */
	assert_non_null(last("claimed")); /* answered at once */
	struct broker_sub sub = { "wills/#", 7, 1 };
	state_sessions_subs_changed(ss, "k", 1, &sub, 1, 0, 0); /* deferred: no epoch yet */
	/* The reader reads the claim back before its delivery report came. */
	rd_kafka_message_t m = { 0 };
	m.partition = 0;
	m.offset = 2;
	m.key = LOG[2].key;
	m.key_len = strlen(LOG[2].key);
	m.payload = LOG[2].val;
	m.len = LOG[2].len;
	READ = 3;
	state_sessions_record(ss, &m);
	pump(ss);
	struct state_rec r;
	decode(NLOG - 1, &r);
	assert_int_equal(r.t, SREC_SUBS);
	assert_int_equal(r.epoch, 2);
	assert_int_equal(r.nsubs, 1);
	assert_string_equal(r.subs[0].filter, "wills/#");
	state_rec_clear(&r);
	struct call *b = last("bus");
	assert_int_equal(b->nsubs, 1);
}

/* A displaced owner's late write is ignored, and the current owner (us)
 * writes its snapshot again. */
static void test_stale_epoch_ignored_and_rewritten(void **state)
{
	struct state_sessions *ss = *state;
	put("s", SREC_CLAIM, "gw-2", 50, -1, SREC_ONLINE, true, NULL, NULL); /* 0 */
	pump(ss);
	struct broker_claim c = claim_of("s", 4, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0); /* 1 */
	pump(ss);
	struct broker_sub s = { "mine", 4, 1 };
	state_sessions_subs_changed(ss, "s", 1, &s, 1, 0, 0); /* 2 */
	pump(ss);
	int n = NLOG, buses = count("bus");
	/* gw-2 did not see our claim yet: epoch 0 < 1. */
	put("s", SREC_SUBS, "gw-2", 50, 0, SREC_ONLINE, true, "theirs", NULL);
	pump(ss);
	assert_int_equal(count("bus"), buses + 0 + 1); /* only our re-write's */
	assert_true(NLOG == n + 2);
	struct state_rec r;
	decode(NLOG - 1, &r);
	assert_string_equal(r.owner, "gw-1");
	assert_int_equal(r.epoch, 1);
	assert_int_equal(r.nsubs, 1);
	assert_string_equal(r.subs[0].filter, "mine");
	state_rec_clear(&r);
	assert_int_equal(count("kick"), 0);
	struct state_sessions_stats st;
	state_sessions_stats(ss, &st);
	assert_int_equal(st.stale, 1);
	assert_int_equal(st.known, 1);
}

/* No answer within claim_timeout_ms: unavailable; the late read-back keeps
 * the persistent session parked here. */
static void test_claim_timeout(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("t", 21, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	NOW += 999;
	state_sessions_tick(ss);
	assert_int_equal(count("claimed"), 0);
	NOW += 2;
	state_sessions_tick(ss);
	struct call *k = last("claimed");
	assert_non_null(k);
	assert_int_equal(k->r, BROKER_CLAIM_UNAVAILABLE);
	pump(ss);
	assert_int_equal(count("claimed"), 1); /* answered once */
	assert_int_equal(count("restore"), 1);
	struct state_rec r;
	decode(NLOG - 1, &r);
	assert_int_equal(r.t, SREC_PARK);
	assert_int_equal(r.epoch, 0);
	state_rec_clear(&r);
}

/* A failed write refuses the claim; the lease lost refuses at once. */
static void test_write_error_and_lease(void **state)
{
	struct state_sessions *ss = *state;
	struct broker_claim c = claim_of("e", 31, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	report(0, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
	assert_int_equal(last("claimed")->r, BROKER_CLAIM_UNAVAILABLE);
	atomic_store(&ST.last_heard_ms, NOW);
	NOW += 5001;
	c.conn_id = 32;
	assert_int_equal(state_sessions_claim(ss, &c), -1);
	/* Clean sessions still go. */
	struct broker_claim k = claim_of("e2", 33, true, false);
	assert_int_equal(state_sessions_claim(ss, &k), 0);
	assert_int_equal(last("claimed")->r, BROKER_CLAIM_OK);
}

/* After a restart: this instance's sessions of its previous boot are
 * adopted and restored; the will of the one that was online goes out once,
 * after a "will" record; a clean one that was online gets its will and an
 * end. */
static void test_restart_adoption(void **state)
{
	struct state_sessions *ss = *state;
	put("p", SREC_CLAIM, "gw-1", 500, -1, SREC_ONLINE, true, NULL, NULL);     /* 0 */
	put("p", SREC_SUBS, "gw-1", 500, 0, SREC_ONLINE, true, "p/#", "will/p");  /* 1 */
	put("c", SREC_CLAIM, "gw-1", 500, -1, SREC_ONLINE, false, NULL, "will/c"); /* 2 */
	put("o", SREC_CLAIM, "gw-3", 77, -1, SREC_ONLINE, true, NULL, "will/o");   /* 3 */
	pump(ss);
	assert_int_equal(NLOG, 4);
	state_sessions_caught_up(ss);
	/* Restored at once (before the inbox is read), then again when the
	 * adopt is read back (the broker keeps the one it has). */
	assert_int_equal(count("restore"), 1);
	pump(ss);
	assert_int_equal(count("restore"), 2);
	assert_string_equal(last("restore")->id, "p");
	assert_string_equal(last("restore")->sub0, "p/#");
	assert_int_equal(count("publish"), 2);
	bool wp = false, wc = false;
	for (int i = 0; i < NCALLS; i++) {
		if (strcmp(CALLS[i].what, "publish"))
			continue;
		wp |= strcmp(CALLS[i].topic, "will/p") == 0 && strcmp(CALLS[i].id, "p") == 0;
		wc |= strcmp(CALLS[i].topic, "will/c") == 0 && strcmp(CALLS[i].payload, "bye") == 0;
	}
	assert_true(wp && wc);
	/* Records: adopt p, will c (with end after), will p; and the end of c. */
	int adopts = 0, wills = 0, ends = 0;
	for (int i = 4; i < NLOG; i++) {
		struct state_rec r;
		decode(i, &r);
		adopts += r.t == SREC_ADOPT;
		wills += r.t == SREC_WILL && !r.has_will;
		ends += r.t == SREC_END && strcmp(LOG[i].key, "c") == 0;
		state_rec_clear(&r);
	}
	assert_int_equal(adopts, 1);
	assert_int_equal(wills, 2);
	assert_int_equal(ends, 1);
	/* Nothing again: not at another tick, not when adopting again. */
	NOW += 20000;
	state_sessions_tick(ss);
	assert_int_equal(state_sessions_adopt(ss, "p", 1), 1);
	pump(ss);
	assert_int_equal(count("publish"), 2);
	/* The other instance's session is left to the watcher. */
	assert_int_equal(count("kick"), 0);
}

/* The client comes back here while the adopt of its session is on its way:
 * its claim holds the session (its epoch, no restore), and the will of the
 * connection that died still goes out once. */
static void test_claim_during_adopt(void **state)
{
	struct state_sessions *ss = *state;
	put("q", SREC_CLAIM, "gw-1", 500, -1, SREC_ONLINE, true, NULL, NULL);     /* 0 */
	put("q", SREC_SUBS, "gw-1", 500, 0, SREC_ONLINE, true, "q/#", "will/q");  /* 1 */
	pump(ss);
	state_sessions_caught_up(ss);                                              /* 2: adopt */
	assert_int_equal(NLOG, 3);
	struct broker_claim c = claim_of("q", 41, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);                         /* 3: claim */
	pump(ss);
	/* Only the one at catch-up: the adopt read back is left to the claim. */
	assert_int_equal(count("restore"), 1);
	assert_int_equal(count("publish"), 1);
	struct call *k = last("claimed");
	assert_non_null(k);
	assert_true(k->has_img);
	assert_string_equal(k->sub0, "q/#");
	struct broker_sub sb = { "q/2", 3, 1 };
	state_sessions_subs_changed(ss, "q", 1, &sb, 1, 0, 0);
	struct state_rec r;
	decode(NLOG - 1, &r);
	assert_int_equal(r.t, SREC_SUBS);
	assert_int_equal(r.epoch, 3);
	state_rec_clear(&r);
	pump(ss);
	/* The "will" record carried the adopt's epoch and came after our
	 * claim: stale, ignored (the claim, with the new will, stands). */
	struct state_sessions_stats st;
	state_sessions_stats(ss, &st);
	assert_int_equal(st.stale, 1);
	assert_int_equal(count("publish"), 1);
}

/* A delayed will of an adopted session goes out after its delay, or when
 * the session ends first; the client back first cancels it. */
static void test_delayed_will(void **state)
{
	struct state_sessions *ss = *state;
	PUT_DELAY = 60;
	/* parked 1 s ago by our previous run */
	put("w1", SREC_PARK, "gw-1", 500, 0, SREC_PARKED, true, "w/1", "will/w1");
	put("w2", SREC_PARK, "gw-1", 500, 0, SREC_PARKED, true, "w/2", "will/w2");
	put("w3", SREC_PARK, "gw-1", 500, 0, SREC_PARKED, true, "w/3", "will/w3");
	pump(ss);
	state_sessions_caught_up(ss);
	pump(ss);
	assert_int_equal(count("restore"), 6); /* at catch-up and at the read-back */
	assert_int_equal(count("publish"), 0);
	WALL += 30000;
	NOW += 30000;
	state_sessions_tick(ss);
	pump(ss);
	assert_int_equal(count("publish"), 0);
	/* w2's session ends (the broker expired it): its will now. */
	state_sessions_ended(ss, "w2", 2);
	pump(ss);
	assert_int_equal(count("publish"), 1);
	assert_string_equal(last("publish")->topic, "will/w2");
	/* w3's client is back: no will. */
	struct broker_claim c = claim_of("w3", 51, false, true);
	assert_int_equal(state_sessions_claim(ss, &c), 0);
	pump(ss);
	WALL += 31000;
	NOW += 31000;
	state_sessions_tick(ss);
	pump(ss);
	assert_int_equal(count("publish"), 2);
	assert_string_equal(last("publish")->topic, "will/w1");
	WALL += 60000;
	NOW += 60000;
	state_sessions_tick(ss);
	pump(ss);
	assert_int_equal(count("publish"), 2);
}

struct seen {
	int n;
	char ids[8][16];
	char owners[8][16];
};

static void collect(void *ud, const struct state_session_info *si)
{
	struct seen *s = ud;
	if (s->n < 8) {
		snprintf(s->ids[s->n], 16, "%s", si->id);
		snprintf(s->owners[s->n], 16, "%s", si->owner);
	}
	s->n++;
}

/* The dead-owner helpers: foreach lists, adopt takes a dead instance's
 * session over (restore, its will once). */
static void test_foreach_and_adopt(void **state)
{
	struct state_sessions *ss = *state;
	put("z", SREC_CLAIM, "gw-9", 77, -1, SREC_ONLINE, true, NULL, "will/z");
	put("z", SREC_SUBS, "gw-9", 77, 0, SREC_ONLINE, true, "z/1", "will/z");
	put("gone", SREC_END, "gw-9", 77, 5, SREC_ENDED, false, NULL, NULL);
	pump(ss);
	struct seen s = { 0 };
	state_sessions_foreach(ss, 0, collect, &s);
	assert_int_equal(s.n, 1); /* ended ones left out */
	assert_string_equal(s.ids[0], "z");
	assert_string_equal(s.owners[0], "gw-9");
	s.n = 0;
	state_sessions_foreach(ss, 3, collect, &s);
	assert_int_equal(s.n, 0);
	assert_int_equal(state_sessions_adopt(ss, "z", 1), 0);
	assert_int_equal(state_sessions_adopt(ss, "z", 1), 1); /* in progress */
	assert_int_equal(state_sessions_adopt(ss, "nope", 4), 1);
	pump(ss);
	assert_int_equal(count("restore"), 1);
	assert_string_equal(last("restore")->sub0, "z/1");
	assert_int_equal(count("publish"), 1);
	assert_string_equal(last("publish")->topic, "will/z");
	s.n = 0;
	state_sessions_foreach(ss, -1, collect, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.owners[0], "gw-1");
}

/* Records that do not decode are counted and change nothing; a tombstone
 * ends the id. */
static void test_malformed_and_tombstone(void **state)
{
	struct state_sessions *ss = *state;
	put("m", SREC_SUBS, "gw-2", 50, 3, SREC_ONLINE, true, "m/1", NULL);
	state_produce(&ST, "p.sessions", "m", 1, "{\"v\":1,", 6, NULL, NULL, NULL);
	pump(ss);
	struct state_sessions_stats st;
	state_sessions_stats(ss, &st);
	assert_int_equal(st.malformed, 1);
	assert_int_equal(st.known, 1);
	rd_kafka_message_t m = { 0 };
	m.key = "m";
	m.key_len = 1;
	m.offset = 2;
	state_sessions_record(ss, &m);
	state_sessions_stats(ss, &st);
	assert_int_equal(st.known, 0);
	assert_string_equal(last("bus")->owner, "-");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_claim_answered_on_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suback_waits_for_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suback_waits_for_deferred_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_writes_wait_for_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_inherits_and_kick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_carried_stale_subs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clean_claim_keeps_early_subscribe, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_epoch_ignored_and_rewritten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_error_and_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_adoption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_during_adopt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed_will, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_and_adopt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_and_tombstone, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
