/* test_state_rec.c - the session record of <prefix>.sessions: exact
 * encoding, round trips, and malformed records rejected without a crash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "state/state_rec.h"

static void expect_same(const struct state_rec *a, const struct state_rec *b)
{
	assert_int_equal(a->t, b->t);
	assert_string_equal(a->owner, b->owner);
	assert_int_equal(a->boot, b->boot);
	if (a->t == SREC_CLAIM) {
		assert_string_equal(a->conn, b->conn);
		assert_int_equal(a->resume, b->resume);
	}
	assert_int_equal(a->epoch, b->epoch);
	assert_int_equal(a->persistent, b->persistent);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->level, b->level);
	assert_int_equal(a->expiry_s, b->expiry_s);
	assert_int_equal(a->parked_at, b->parked_at);
	assert_int_equal(a->at, b->at);
	assert_int_equal(a->nsubs, b->nsubs);
	for (size_t i = 0; i < a->nsubs; i++) {
		assert_int_equal(a->subs[i].len, b->subs[i].len);
		assert_memory_equal(a->subs[i].filter, b->subs[i].filter, a->subs[i].len);
		assert_int_equal(a->subs[i].opts, b->subs[i].opts);
	}
	assert_int_equal(a->has_will, b->has_will);
	if (a->has_will) {
		const struct state_rec_will *x = &a->will, *y = &b->will;
		assert_int_equal(x->topic_len, y->topic_len);
		assert_memory_equal(x->topic, y->topic, x->topic_len);
		assert_int_equal(x->payload_len, y->payload_len);
		if (x->payload_len)
			assert_memory_equal(x->payload, y->payload, x->payload_len);
		assert_int_equal(x->props_len, y->props_len);
		if (x->props_len)
			assert_memory_equal(x->props, y->props, x->props_len);
		assert_int_equal(x->qos, y->qos);
		assert_int_equal(x->retain, y->retain);
		assert_int_equal(x->delay_s, y->delay_s);
	}
}

/* A claim with two subscriptions and a binary will with properties. */
static void full_claim(struct state_rec *r)
{
	static const struct broker_sub subs[] = {
		{ "a/+", 3, 1 }, { "dev/#", 5, 2u | 4u | (7u << 4) },
	};
	static const uint8_t payload[] = { 0, 1, 2, 0xff, 'x' };
	static const uint8_t props[] = { 0x01, 0x01, 0x03, 0x00, 0x01, 'j' };
	memset(r, 0, sizeof(*r));
	r->t = SREC_CLAIM;
	snprintf(r->owner, sizeof(r->owner), "gw-1");
	r->boot = 1765000000123;
	snprintf(r->conn, sizeof(r->conn), "81985529216486895");
	r->epoch = -1;
	r->resume = true;
	r->persistent = true;
	r->state = SREC_ONLINE;
	r->level = 5;
	r->expiry_s = 3600;
	r->parked_at = 0;
	r->at = 1765000001000;
	assert_int_equal(state_rec_set_subs(r, subs, 2), 0);
	struct state_rec_will w = {
		.topic = "dev/1/status", .topic_len = 12, .payload = (uint8_t *)payload,
		.payload_len = sizeof(payload), .qos = 1, .retain = true, .props = (uint8_t *)props,
		.props_len = sizeof(props), .delay_s = 10,
	};
	assert_int_equal(state_rec_set_will(r, &w), 0);
}

static void test_round_trip_claim(void **state)
{
	(void)state;
	struct state_rec r, d;
	full_claim(&r);
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	assert_int_equal(strlen(js), len);
	assert_int_equal(state_rec_decode(&d, js, len, NULL, 0), 0);
	expect_same(&r, &d);
	/* A copy is equal too and owns its memory. */
	struct state_rec c;
	assert_int_equal(state_rec_copy(&c, &d), 0);
	state_rec_clear(&d);
	expect_same(&r, &c);
	state_rec_clear(&c);
	state_rec_clear(&r);
	free(js);
}

/* The session's queue ("q"): kept through encode/decode and copy; absent
 * means none; malformed ones refused. */
static void test_queue_field(void **state)
{
	(void)state;
	struct state_rec r = { 0 }, d;
	r.t = SREC_PARK;
	snprintf(r.owner, sizeof(r.owner), "gw-2");
	r.epoch = 5;
	r.state = SREC_PARKED;
	r.level = 4;
	snprintf(r.q_inst, sizeof(r.q_inst), "gw-1");
	r.q_off = 9876543210LL;
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	assert_non_null(strstr(js, "\"q\":{\"i\":\"gw-1\",\"o\":9876543210}"));
	assert_int_equal(state_rec_decode(&d, js, len, NULL, 0), 0);
	assert_string_equal(d.q_inst, "gw-1");
	assert_int_equal(d.q_off, 9876543210LL);
	struct state_rec c;
	assert_int_equal(state_rec_copy(&c, &d), 0);
	assert_string_equal(c.q_inst, "gw-1");
	assert_int_equal(c.q_off, 9876543210LL);
	state_rec_clear(&c);
	state_rec_clear(&d);
	free(js);
	/* None: no "q" written, none read. */
	r.q_inst[0] = '\0';
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	assert_null(strstr(js, "\"q\""));
	assert_int_equal(state_rec_decode(&d, js, len, NULL, 0), 0);
	assert_string_equal(d.q_inst, "");
	state_rec_clear(&d);
	free(js);
	const char *bad[] = {
		"{\"v\":1,\"t\":\"park\",\"owner\":\"a\",\"boot\":1,\"epoch\":1,\"resume\":false,"
		"\"persistent\":true,\"state\":\"parked\",\"level\":4,\"q\":7}",
		"{\"v\":1,\"t\":\"park\",\"owner\":\"a\",\"boot\":1,\"epoch\":1,\"resume\":false,"
		"\"persistent\":true,\"state\":\"parked\",\"level\":4,\"q\":{\"i\":\"\",\"o\":1}}",
		"{\"v\":1,\"t\":\"park\",\"owner\":\"a\",\"boot\":1,\"epoch\":1,\"resume\":false,"
		"\"persistent\":true,\"state\":\"parked\",\"level\":4,\"q\":{\"i\":\"x\",\"o\":-1}}",
		"{\"v\":1,\"t\":\"park\",\"owner\":\"a\",\"boot\":1,\"epoch\":1,\"resume\":false,"
		"\"persistent\":true,\"state\":\"parked\",\"level\":4,\"q\":{\"o\":1}}",
	};
	const char *good = "{\"v\":1,\"t\":\"park\",\"owner\":\"a\",\"boot\":1,\"epoch\":1,"
			   "\"resume\":false,\"persistent\":true,\"state\":\"parked\",\"level\":4,"
			   "\"q\":null}";
	assert_int_equal(state_rec_decode(&d, good, strlen(good), NULL, 0), 0); /* q aside */
	state_rec_clear(&d);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(state_rec_decode(&d, bad[i], strlen(bad[i]), NULL, 0), -1);
		state_rec_clear(&d);
	}
	state_rec_clear(&r);
}

static void test_round_trip_every_type(void **state)
{
	(void)state;
	for (int t = SREC_CLAIM; t <= SREC_WILL; t++) {
		for (int st = SREC_ONLINE; st <= SREC_ENDED; st++) {
			struct state_rec r = { 0 }, d;
			r.t = (enum state_rec_type)t;
			snprintf(r.owner, sizeof(r.owner), "instance-%d", t);
			r.boot = 42;
			r.epoch = (t == SREC_CLAIM || t == SREC_ADOPT) ? -1 : 1234567890123LL;
			r.state = (enum state_rec_state)st;
			r.level = (uint8_t)(3 + st);
			r.expiry_s = UINT32_MAX;
			r.parked_at = st == SREC_PARKED ? 99 : 0;
			r.at = 7;
			char *js;
			size_t len;
			assert_int_equal(state_rec_encode(&r, &js, &len), 0);
			char err[96];
			assert_int_equal(state_rec_decode(&d, js, len, err, sizeof(err)), 0);
			expect_same(&r, &d);
			assert_string_equal(state_rec_type_name(d.t), state_rec_type_name(r.t));
			state_rec_clear(&d);
			free(js);
		}
	}
}

static void test_exact_encoding(void **state)
{
	(void)state;
	struct state_rec r = { 0 };
	r.t = SREC_SUBS;
	snprintf(r.owner, sizeof(r.owner), "gw-2");
	r.boot = 5;
	r.epoch = 17;
	r.persistent = true;
	r.state = SREC_ONLINE;
	r.level = 4;
	r.at = 9;
	static const struct broker_sub s[] = { { "a/b", 3, 1 } };
	assert_int_equal(state_rec_set_subs(&r, s, 1), 0);
	static const struct state_rec_will w = { .topic = "t", .topic_len = 1,
						 .payload = (uint8_t *)"hi", .payload_len = 2 };
	assert_int_equal(state_rec_set_will(&r, &w), 0);
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	assert_string_equal(js,
			    "{\"v\":1,\"t\":\"subs\",\"owner\":\"gw-2\",\"boot\":5,\"epoch\":17,"
			    "\"persistent\":true,\"state\":\"online\",\"level\":4,\"expiry\":0,"
			    "\"parked_at\":0,\"subs\":[{\"f\":\"a/b\",\"o\":1}],"
			    "\"will\":{\"topic\":\"t\",\"payload\":\"aGk=\",\"qos\":0,"
			    "\"retain\":false,\"delay\":0},\"at\":9}");
	free(js);
	state_rec_clear(&r);
}

/* What another version may leave out: optional fields default. */
static void test_minimal_record(void **state)
{
	(void)state;
	static const char js[] = "{\"v\":1,\"t\":\"end\",\"owner\":\"gw-1\",\"boot\":1,"
				 "\"epoch\":3,\"state\":\"ended\",\"level\":5}";
	struct state_rec d;
	assert_int_equal(state_rec_decode(&d, js, sizeof(js) - 1, NULL, 0), 0);
	assert_int_equal(d.t, SREC_END);
	assert_int_equal(d.state, SREC_ENDED);
	assert_int_equal(d.nsubs, 0);
	assert_false(d.has_will);
	assert_false(d.persistent);
	state_rec_clear(&d);
	static const char nullwill[] = "{\"v\":1,\"t\":\"will\",\"owner\":\"g\",\"boot\":1,"
				       "\"epoch\":3,\"state\":\"parked\",\"level\":4,"
				       "\"will\":null,\"subs\":[]}";
	assert_int_equal(state_rec_decode(&d, nullwill, sizeof(nullwill) - 1, NULL, 0), 0);
	assert_false(d.has_will);
	state_rec_clear(&d);
}

#define GOOD_HEAD "{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4"

static void test_malformed_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"null",
		"[]",
		"\"x\"",
		"{}",
		"{\"v\":1",
		"{\"v\":2,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":\"1\",\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"nope\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":7,\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"g\\u0000w\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":-1,\"epoch\":2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":-1,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"claim\",\"owner\":\"gw\",\"boot\":1,\"epoch\":-2,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2.5,\"state\":\"online\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"asleep\",\"level\":4}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\",\"level\":6}",
		"{\"v\":1,\"t\":\"subs\",\"owner\":\"gw\",\"boot\":1,\"epoch\":2,\"state\":\"online\"}",
		GOOD_HEAD ",\"expiry\":4294967296}",
		GOOD_HEAD ",\"expiry\":-1}",
		GOOD_HEAD ",\"resume\":1}",
		GOOD_HEAD ",\"conn\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
		GOOD_HEAD ",\"subs\":{}}",
		GOOD_HEAD ",\"subs\":[1]}",
		GOOD_HEAD ",\"subs\":[{\"o\":1}]}",
		GOOD_HEAD ",\"subs\":[{\"f\":\"\",\"o\":1}]}",
		GOOD_HEAD ",\"subs\":[{\"f\":\"a\",\"o\":-1}]}",
		GOOD_HEAD ",\"subs\":[{\"f\":\"a\"}]}",
		GOOD_HEAD ",\"subs\":[{\"f\":\"a\",\"o\":1},{\"f\":\"a\\u0000\",\"o\":1}]}",
		GOOD_HEAD ",\"will\":1}",
		GOOD_HEAD ",\"will\":{}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"\",\"payload\":\"\",\"qos\":0,\"retain\":false}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"qos\":0,\"retain\":false}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"abc\",\"qos\":0,\"retain\":false}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"a!==\",\"qos\":0,\"retain\":false}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"\",\"qos\":3,\"retain\":false}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"\",\"qos\":0,\"retain\":\"no\"}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"\",\"qos\":0,\"retain\":false,\"props\":5}}",
		GOOD_HEAD ",\"will\":{\"topic\":\"t\",\"payload\":\"\",\"qos\":0,\"retain\":false,\"delay\":-3}}",
		GOOD_HEAD ",\"level\":4}", /* a duplicate key */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct state_rec d;
		char err[96];
		if (state_rec_decode(&d, bad[i], strlen(bad[i]), err, sizeof(err)) == 0)
			fail_msg("accepted bad record %zu: %s", i, bad[i]);
		assert_true(err[0] != '\0');
		state_rec_clear(&d);
	}
	/* The good head itself is accepted (the cases above fail for their
	 * own reason). */
	struct state_rec d;
	assert_int_equal(state_rec_decode(&d, GOOD_HEAD "}", strlen(GOOD_HEAD "}"), NULL, 0), 0);
	state_rec_clear(&d);
	assert_int_equal(state_rec_decode(&d, NULL, 0, NULL, 0), -1);
	state_rec_clear(&d);
}

/* Every prefix of a valid record, and every one-byte change of it: no
 * crash, no leak (under ASan), and a prefix never decodes. */
static void test_truncated_and_flipped(void **state)
{
	(void)state;
	struct state_rec r, d;
	full_claim(&r);
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), 0);
	for (size_t n = 0; n < len; n++) {
		assert_int_equal(state_rec_decode(&d, js, n, NULL, 0), -1);
		state_rec_clear(&d);
	}
	char *m = malloc(len);
	assert_non_null(m);
	static const char subst[] = { '\0', '"', '}', '9', '-', '=', 'x', '\xff' };
	for (size_t i = 0; i < len; i++) {
		for (size_t k = 0; k < sizeof subst; k++) {
			memcpy(m, js, len);
			m[i] = subst[k];
			if (state_rec_decode(&d, m, len, NULL, 0) == 0) {
				/* What decodes re-encodes and decodes the same. */
				char *j2;
				size_t l2;
				struct state_rec d2;
				assert_int_equal(state_rec_encode(&d, &j2, &l2), 0);
				assert_int_equal(state_rec_decode(&d2, j2, l2, NULL, 0), 0);
				expect_same(&d, &d2);
				state_rec_clear(&d2);
				free(j2);
			}
			state_rec_clear(&d);
		}
	}
	free(m);
	free(js);
	state_rec_clear(&r);
}

static void test_set_subs_and_will(void **state)
{
	(void)state;
	struct state_rec r = { 0 };
	static const struct broker_sub s[] = { { "x/yz", 2, 0 } }; /* len 2: "x/" */
	assert_int_equal(state_rec_set_subs(&r, s, 1), 0);
	assert_int_equal(r.nsubs, 1);
	assert_int_equal(r.subs[0].len, 2);
	assert_string_equal(r.subs[0].filter, "x/");
	assert_int_equal(state_rec_set_subs(&r, NULL, 0), 0);
	assert_int_equal(r.nsubs, 0);
	assert_null(r.subs);
	static const struct state_rec_will w = { .topic = "abc", .topic_len = 3 };
	assert_int_equal(state_rec_set_will(&r, &w), 0);
	assert_true(r.has_will);
	assert_string_equal(r.will.topic, "abc");
	assert_null(r.will.payload);
	assert_int_equal(state_rec_set_will(&r, NULL), 0);
	assert_false(r.has_will);
	state_rec_clear(&r);
	state_rec_clear(NULL);
}

/* A filter that is not UTF-8 cannot be JSON: the encoder says so. */
static void test_encode_refuses_invalid_utf8(void **state)
{
	(void)state;
	struct state_rec r = { 0 };
	r.t = SREC_SUBS;
	snprintf(r.owner, sizeof(r.owner), "gw");
	r.level = 4;
	static const struct broker_sub s[] = { { "a/\xff", 3, 0 } };
	assert_int_equal(state_rec_set_subs(&r, s, 1), 0);
	char *js;
	size_t len;
	assert_int_equal(state_rec_encode(&r, &js, &len), -1);
	assert_null(js);
	state_rec_clear(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_claim),
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_queue_field),
		cmocka_unit_test(test_exact_encoding),
		cmocka_unit_test(test_minimal_record),
		cmocka_unit_test(test_malformed_rejected),
		cmocka_unit_test(test_truncated_and_flipped),
		cmocka_unit_test(test_set_subs_and_will),
		cmocka_unit_test(test_encode_refuses_invalid_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
