/* test_state_bus.c - the bus's remote subscriptions (state_bus.c) without
 * Kafka: state_produce() is replaced here by a recorder, so each test sees
 * exactly which inbox records a message becomes. The inbox consumer is
 * created (not started); nothing connects. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/broker.h"
#include "core/buf.h"
#include "core/cfg.h"
#include "core/msg.h"
#include "state/state_int.h"

/* ---- the recorder ---------------------------------------------------- */

#define MAX_REC 16
struct rec {
	char topic[256];
	char key[64];
	char h_topic[64], h_qos[4], h_retain[8], h_from[64], h_client[64];
	bool has_client;
	state_dr_fn done;
	void *ud;
};
static struct rec recs[MAX_REC];
static int nrec;

static void hget(rd_kafka_headers_t *h, const char *name, char *out, size_t cap, bool *has)
{
	const void *v;
	size_t n;
	out[0] = '\0';
	if (has)
		*has = false;
	if (rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	snprintf(out, cap, "%.*s", (int)n, (const char *)v);
	if (has)
		*has = true;
}

int state_produce(struct state *st, const char *topic, const void *key, size_t keylen,
		  const void *value, size_t vlen, rd_kafka_headers_t *hdrs, state_dr_fn done,
		  void *ud)
{
	(void)st;
	(void)value;
	(void)vlen;
	assert_true(nrec < MAX_REC);
	struct rec *r = &recs[nrec++];
	snprintf(r->topic, sizeof(r->topic), "%s", topic);
	snprintf(r->key, sizeof(r->key), "%.*s", (int)keylen, key ? (const char *)key : "");
	hget(hdrs, "mqtt.topic", r->h_topic, sizeof(r->h_topic), NULL);
	hget(hdrs, "mqtt.qos", r->h_qos, sizeof(r->h_qos), NULL);
	hget(hdrs, "mqtt.retain", r->h_retain, sizeof(r->h_retain), NULL);
	hget(hdrs, "kg.from", r->h_from, sizeof(r->h_from), NULL);
	hget(hdrs, "kg.from_client", r->h_client, sizeof(r->h_client), &r->has_client);
	rd_kafka_headers_destroy(hdrs);
	r->done = done;
	r->ud = ud;
	return 0;
}

/* The queue module (state_queue.c) is not part of these tests. */
void state_queue_handover_done(struct state_queue *q, const char *id, uint16_t id_len)
{
	(void)q, (void)id, (void)id_len;
}
bool state_queue_restoring(struct state_queue *q)
{
	(void)q;
	return false;
}
/* No session view here: kg.to records stay local. */
int state_sessions_owner(struct state_sessions *ss, const char *id, uint16_t id_len, char *out,
			 size_t cap)
{
	(void)ss, (void)id, (void)id_len, (void)out, (void)cap;
	return -1;
}

/* Reports every recorded record as delivered and forgets them. */
static void deliver_all(void)
{
	for (int i = 0; i < nrec; i++)
		if (recs[i].done)
			recs[i].done(recs[i].ud, RD_KAFKA_RESP_ERR_NO_ERROR, 0, i);
	nrec = 0;
}

static bool sent_to(const char *instance)
{
	char t[256];
	snprintf(t, sizeof(t), "pfx.inbox.%s", instance);
	for (int i = 0; i < nrec; i++)
		if (strcmp(recs[i].topic, t) == 0)
			return true;
	return false;
}

/* ---- fixture ------------------------------------------------------------ */

static struct cfg *cfg;
static struct state st;

static int setup(void **state)
{
	(void)state;
	char err[256];
	const char *text = "listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
			   "kafka = { brokers = \"127.0.0.1:9\"; };\n"
			   "state = { store = \"kafka\"; instance_id = \"me\"; topic_prefix = \"pfx\"; };\n";
	if (cfg_parse_string(text, "test.cfg", &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	snprintf(st.instance_id, sizeof(st.instance_id), "me");
	snprintf(st.t_inbox, sizeof(st.t_inbox), "pfx.inbox.me");
	snprintf(st.bootstrap, sizeof(st.bootstrap), "127.0.0.1:9");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cfg_free(cfg);
	return 0;
}

static void subs(struct state_bus *sb, const char *id, const char *owner, const char *const *f)
{
	struct broker_sub v[8];
	size_t n = 0;
	for (; f && f[n]; n++)
		v[n] = (struct broker_sub){ f[n], (uint16_t)strlen(f[n]), 1 };
	state_bus_subs(sb, id, (uint16_t)strlen(id), owner, v, n);
}

static size_t send_from(struct state_bus *sb, const char *topic, const char *from)
{
	struct msg *m = msg_new(topic, strlen(topic), "pl", 2, 1, false);
	assert_non_null(m);
	nrec = 0;
	size_t n = state_bus_send(sb, m, from, from ? strlen(from) : 0);
	deliver_all(); /* each record's done drops its reference */
	assert_int_equal(atomic_load(&m->refs), 1);
	msg_unref(m);
	return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_own_and_none(void **state)
{
	(void)state;
	struct state_bus *sb = state_bus_new(&st);
	assert_non_null(sb);
	assert_int_equal(send_from(sb, "t/1", "p"), 0);
	/* This instance's own sessions are the local broker's. */
	subs(sb, "mine", "me", (const char *const[]){ "t/#", NULL });
	assert_int_equal(send_from(sb, "t/1", "p"), 0);
	state_bus_free(sb);
}

static void test_targets(void **state)
{
	(void)state;
	struct state_bus *sb = state_bus_new(&st);
	assert_non_null(sb);
	subs(sb, "c1", "gw-2", (const char *const[]){ "t/+", "x", NULL });
	subs(sb, "c2", "gw-2", (const char *const[]){ "t/#", NULL });
	subs(sb, "c3", "gw-3", (const char *const[]){ "t/1", NULL });
	subs(sb, "c4", "gw-4", (const char *const[]){ "$share/g/t/1", NULL });

	/* One record per target instance, not per session; shared
	 * subscriptions are not routed across. */
	nrec = 0;
	struct msg *m = msg_new("t/1", 3, "pl", 2, 1, false);
	assert_int_equal(state_bus_send(sb, m, "p", 1), 2);
	assert_int_equal(nrec, 2);
	assert_true(sent_to("gw-2"));
	assert_true(sent_to("gw-3"));
	assert_false(sent_to("gw-4"));
	for (int i = 0; i < nrec; i++) {
		assert_string_equal(recs[i].key, "p");
		assert_string_equal(recs[i].h_topic, "t/1");
		assert_string_equal(recs[i].h_qos, "1");
		assert_string_equal(recs[i].h_retain, "false");
		assert_string_equal(recs[i].h_from, "me");
		assert_true(recs[i].has_client);
		assert_string_equal(recs[i].h_client, "p");
	}
	deliver_all();
	msg_unref(m);

	assert_int_equal(send_from(sb, "x", "p"), 1);
	assert_int_equal(send_from(sb, "nobody", "p"), 0);
	/* The publisher's own id elsewhere is a stale view: never a target. */
	nrec = 0;
	m = msg_new("t/1", 3, "pl", 2, 0, true);
	assert_int_equal(state_bus_send(sb, m, "c3", 2), 1);
	assert_true(sent_to("gw-2"));
	assert_string_equal(recs[0].h_retain, "true");
	assert_string_equal(recs[0].h_qos, "0");
	deliver_all();
	msg_unref(m);
	state_bus_free(sb);
}

static void test_snapshots(void **state)
{
	(void)state;
	struct state_bus *sb = state_bus_new(&st);
	assert_non_null(sb);
	subs(sb, "c1", "gw-2", (const char *const[]){ "a", "b", NULL });
	assert_int_equal(send_from(sb, "a", NULL), 1);
	/* A new record replaces the subscriptions. */
	subs(sb, "c1", "gw-2", (const char *const[]){ "b", NULL });
	assert_int_equal(send_from(sb, "a", NULL), 0);
	assert_int_equal(send_from(sb, "b", NULL), 1);
	/* The session moved to gw-3. */
	subs(sb, "c1", "gw-3", (const char *const[]){ "b", NULL });
	nrec = 0;
	struct msg *m = msg_new("b", 1, "", 0, 0, false);
	assert_int_equal(state_bus_send(sb, m, NULL, 0), 1);
	assert_true(sent_to("gw-3"));
	assert_false(recs[0].has_client);
	deliver_all();
	msg_unref(m);
	/* Now here: ours, not the bus's. */
	subs(sb, "c1", "me", (const char *const[]){ "b", NULL });
	assert_int_equal(send_from(sb, "b", NULL), 0);
	/* Elsewhere again, then ended. */
	subs(sb, "c1", "gw-2", (const char *const[]){ "b", NULL });
	subs(sb, "c2", "gw-2", (const char *const[]){ "b", "c/#", NULL });
	struct buf out = { 0 };
	assert_int_equal(state_bus_metrics_render(&out, sb), 0);
	assert_int_equal(buf_append(&out, "", 1), 0);
	assert_non_null(strstr((const char *)buf_head(&out),
			       "kafkagate_state_bus_remote_sessions 2\n"));
	assert_non_null(strstr((const char *)buf_head(&out),
			       "kafkagate_state_bus_remote_filters 3\n"));
	buf_release(&out);
	state_bus_subs(sb, "c1", 2, NULL, NULL, 0);
	assert_int_equal(send_from(sb, "b", NULL), 1); /* c2 still */
	state_bus_subs(sb, "c2", 2, NULL, NULL, 0);
	assert_int_equal(send_from(sb, "b", NULL), 0);
	assert_int_equal(send_from(sb, "c/d", NULL), 0);

	/* Many sessions: the table grows and every one is found again. */
	char id[32];
	for (int i = 0; i < 500; i++) {
		snprintf(id, sizeof(id), "dev-%d", i);
		char inst[16];
		snprintf(inst, sizeof(inst), "gw-%d", 10 + i % 5);
		subs(sb, id, inst, (const char *const[]){ "many", NULL });
	}
	assert_int_equal(send_from(sb, "many", NULL), 5);
	for (int i = 0; i < 500; i++) {
		snprintf(id, sizeof(id), "dev-%d", i);
		state_bus_subs(sb, id, (uint16_t)strlen(id), NULL, NULL, 0);
	}
	assert_int_equal(send_from(sb, "many", NULL), 0);
	state_bus_free(sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_and_none),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_snapshots),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
