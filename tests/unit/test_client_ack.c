/*
 * test_client_ack.c - the acknowledgement ring, linked alone: client_ack.c,
 * inflight.c (the QoS 2 id set) and msg.c, with the four functions it calls
 * on the rest of the broker stubbed here. The stubs record what would have
 * gone to the device, so each test states the exact PUBACK/PUBREC sequence
 * and whether the connection was closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/client.h"
#include "broker/client_ack.h"
#include "broker/send.h"
#include "broker/session.h"
#include "core/msg.h"

/* What the stubs saw: "A5" = PUBACK id 5, "R7" = PUBREC id 7; a reason
 * code other than success follows in hex: "A5:80". */
static char sent[4096];
static int closed;
static const char *close_reason;
static int updates;
static int fail_send_at = -1;  /* make the Nth send fail like an encoder would */
static int n_sends;

static int record(struct client *c, char kind, uint16_t pid, uint8_t rc)
{
	if (n_sends++ == fail_send_at) {
		client_close(c, "out of memory encoding a packet", true);
		return -1;
	}
	size_t len = strlen(sent);
	snprintf(sent + len, sizeof(sent) - len, "%s%c%u", len ? " " : "", kind, pid);
	if (rc) {
		len = strlen(sent);
		snprintf(sent + len, sizeof(sent) - len, ":%02x", rc);
	}
	return 0;
}

int send_puback_rc(struct client *c, uint16_t pid, uint8_t rc) { return record(c, 'A', pid, rc); }
int send_pubrec_rc(struct client *c, uint16_t pid, uint8_t rc) { return record(c, 'R', pid, rc); }

void client_close(struct client *c, const char *reason, bool publish_will)
{
	(void)publish_will;
	if (c->state == CL_CLOSING)
		return;
	c->state = CL_CLOSING;
	closed++;
	close_reason = reason;
}

void client_update_read(struct client *c)
{
	(void)c;
	updates++;
}

static struct session sess;
static struct client cl;

static int setup(void **state)
{
	(void)state;
	memset(&cl, 0, sizeof(cl));
	memset(&sess, 0, sizeof(sess));
	pidset_init(&sess.qos2_in);
	cl.s = &sess;
	cl.state = CL_ACTIVE;
	sent[0] = '\0';
	closed = updates = n_sends = 0;
	fail_send_at = -1;
	close_reason = NULL;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	client_acks_free(cl.acks);
	cl.acks = NULL;
	pidset_release(&sess.qos2_in);
	return 0;
}

static void test_in_order_completion(void **state)
{
	(void)state;
	uint32_t a = client_ack_push(&cl, 1, 1);
	uint32_t b = client_ack_push(&cl, 2, 1);
	assert_int_not_equal(a, 0);
	assert_int_not_equal(b, a);
	assert_int_equal(client_ack_count(&cl), 2);
	client_ack_complete(&cl, a, true);
	assert_string_equal(sent, "A1");
	client_ack_complete(&cl, b, true);
	assert_string_equal(sent, "A1 A2");
	assert_int_equal(client_ack_count(&cl), 0);
	assert_int_equal(closed, 0);
}

/* Kafka answers out of order across partitions; acks still leave in the
 * order the publishes arrived, QoS 1 and QoS 2 interleaved. */
static void test_out_of_order_interleaved_qos(void **state)
{
	(void)state;
	uint32_t s1 = client_ack_push(&cl, 10, 1);
	uint32_t s2 = client_ack_push(&cl, 11, 2);
	uint32_t s3 = client_ack_push(&cl, 12, 1);
	uint32_t s4 = client_ack_push(&cl, 13, 2);
	client_ack_complete(&cl, s4, true);
	client_ack_complete(&cl, s2, true);
	assert_string_equal(sent, "");
	assert_false(pidset_has(&sess.qos2_in, 11));
	assert_true(client_ack_pending(&cl, 11));
	assert_true(client_ack_pending(&cl, 13));
	assert_false(client_ack_pending(&cl, 10)); /* QoS 1 ids are not QoS 2 resends */
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A10 R11");
	/* The QoS 2 id is held for duplicate suppression once PUBREC is out. */
	assert_true(pidset_has(&sess.qos2_in, 11));
	assert_false(client_ack_pending(&cl, 11));
	client_ack_complete(&cl, s3, true);
	assert_string_equal(sent, "A10 R11 A12 R13");
	assert_true(pidset_has(&sess.qos2_in, 13));
	assert_int_equal(closed, 0);
}

/* A failure in the middle: what is before it is acknowledged, it and
 * everything after it is not, and the connection is closed so that the
 * device resends. */
static void test_failure_in_the_middle(void **state)
{
	(void)state;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 2);
	uint32_t s3 = client_ack_push(&cl, 3, 1);
	client_ack_complete(&cl, s3, true);
	client_ack_complete(&cl, s2, false);
	assert_string_equal(sent, "");
	assert_int_equal(closed, 0);
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A1");
	assert_int_equal(closed, 1);
	assert_string_equal(close_reason, "delivery failed, not acknowledged");
	assert_false(pidset_has(&sess.qos2_in, 2));
}

static void test_failure_at_head_closes_at_once(void **state)
{
	(void)state;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	client_ack_push(&cl, 2, 1);
	client_ack_complete(&cl, s1, false);
	assert_string_equal(sent, "");
	assert_int_equal(closed, 1);
}

/* The connection goes away with acks pending: late answers find it closed
 * (the worker ignores them) and freeing the ring with pending slots and a
 * blocked message leaks nothing (ASan/LSan in make sanitize). */
static void test_close_with_pending(void **state)
{
	(void)state;
	client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 2);
	struct msg *m = msg_new("t", 1, "x", 1, 1, false);
	assert_non_null(m);
	assert_int_equal(client_ack_block(&cl, m, s2), 0);
	msg_unref(m); /* the ring holds its own reference */
	client_close(&cl, "peer closed", true);
	assert_int_equal(client_ack_count(&cl), 2);
	client_acks_free(cl.acks);
	cl.acks = NULL;
	assert_string_equal(sent, "");
}

/* An unknown sequence (a stale answer) changes nothing. */
static void test_unknown_sequence_ignored(void **state)
{
	(void)state;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	client_ack_complete(&cl, s1 + 100, true);
	assert_string_equal(sent, "");
	assert_int_equal(client_ack_count(&cl), 1);
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A1");
}

/* The ring grows past its first capacity and wraps, keeping order. */
static void test_growth_and_wrap(void **state)
{
	(void)state;
	uint32_t seq[100];
	char want[4096] = "";
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 37; i++)
			seq[i] = client_ack_push(&cl, (uint16_t)(round * 100 + i + 1), 1);
		for (int i = 36; i >= 0; i--)
			client_ack_complete(&cl, seq[i], true);
		for (int i = 0; i < 37; i++) {
			size_t len = strlen(want);
			snprintf(want + len, sizeof(want) - len, "%sA%d", len ? " " : "",
				 round * 100 + i + 1);
		}
		assert_string_equal(sent, want);
	}
	assert_int_equal(client_ack_count(&cl), 0);
}

/* An ack that cannot be encoded closes the connection and stops there. */
static void test_send_failure_stops(void **state)
{
	(void)state;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 1);
	fail_send_at = 1;
	client_ack_complete(&cl, s2, true);
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A1");
	assert_int_equal(closed, 1);
}

/* MQTT 5: a failed answer is acknowledged with its reason code in its turn
 * and the connection stays open; a failed QoS 2 id ends its flow (no
 * PUBREL expected, not in qos2_in), a successful one joins qos2_in. */
static void test_v5_failure_answered_in_order(void **state)
{
	(void)state;
	cl.level = 5;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 2);
	uint32_t s3 = client_ack_push(&cl, 3, 1);
	uint32_t s4 = client_ack_push(&cl, 4, 2);
	uint32_t s5 = client_ack_push(&cl, 5, 2);
	client_ack_complete(&cl, s3, true);
	client_ack_complete(&cl, s2, false);
	client_ack_complete_rc(&cl, s4, 0x97);
	client_ack_complete(&cl, s5, true);
	assert_string_equal(sent, "");
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A1 R2:80 A3 R4:97 R5");
	assert_int_equal(closed, 0);
	assert_false(pidset_has(&sess.qos2_in, 2));
	assert_false(pidset_has(&sess.qos2_in, 4));
	assert_true(pidset_has(&sess.qos2_in, 5));
	assert_int_equal(client_ack_count(&cl), 0);
	/* Only 5 still counts against the Receive Maximum: PUBCOMP is owed. */
	assert_int_equal(client_ack_quota_used(&cl), 1);
}

/* A success code other than 0 (0x10 No matching subscribers) is sent as
 * given and is a success: the QoS 2 id is remembered. */
static void test_v5_success_code_kept(void **state)
{
	(void)state;
	cl.level = 5;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 2);
	client_ack_complete_rc(&cl, s1, 0x10);
	client_ack_complete_rc(&cl, s2, 0x10);
	assert_string_equal(sent, "A1:10 R2:10");
	assert_true(pidset_has(&sess.qos2_in, 2));
	assert_int_equal(closed, 0);
}

/* Below MQTT 5 a reason code >= 0x80 is the old failure: close, no ack. */
static void test_v4_reason_code_failure_closes(void **state)
{
	(void)state;
	cl.level = 4;
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	client_ack_complete_rc(&cl, s1, 0x97);
	assert_string_equal(sent, "");
	assert_int_equal(closed, 1);
}

/* The Receive Maximum count: publishes in the ring plus QoS 2 ids this
 * connection holds until PUBREL; ids an earlier connection left in the
 * session's qos2_in do not count [MQTT-4.9.0-1]. */
static void test_v5_quota(void **state)
{
	(void)state;
	cl.level = 5;
	assert_int_equal(pidset_add(&sess.qos2_in, 77), 0); /* from the last connection */
	assert_int_equal(client_ack_quota_used(&cl), 0);
	uint32_t s1 = client_ack_push(&cl, 1, 1);
	uint32_t s2 = client_ack_push(&cl, 2, 2);
	assert_int_equal(client_ack_quota_used(&cl), 2);
	client_ack_complete(&cl, s2, true);
	client_ack_complete(&cl, s1, true);
	assert_string_equal(sent, "A1 R2");
	assert_int_equal(client_ack_quota_used(&cl), 1);
	assert_true(client_ack_qos2_released(&cl, 77));
	assert_int_equal(client_ack_quota_used(&cl), 1);
	assert_true(client_ack_qos2_released(&cl, 2));
	assert_int_equal(client_ack_quota_used(&cl), 0);
	assert_false(client_ack_qos2_released(&cl, 2));
	/* Accepted without the ring (no sink): counted the same way. */
	assert_int_equal(client_ack_qos2_accepted(&cl, 9), 0);
	assert_true(pidset_has(&sess.qos2_in, 9));
	assert_int_equal(client_ack_quota_used(&cl), 1);
}

/* Below MQTT 5 a full ring pauses reading; at MQTT 5 it never does (the
 * Receive Maximum is enforced instead). */
static void test_window_full(void **state)
{
	(void)state;
	cl.level = 4;
	client_ack_push(&cl, 1, 1);
	client_ack_push(&cl, 2, 1);
	assert_false(client_ack_window_full(&cl, 3));
	assert_true(client_ack_window_full(&cl, 2));
	cl.level = 5;
	assert_false(client_ack_window_full(&cl, 2));
	assert_false(client_ack_window_full(&cl, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_in_order_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_interleaved_qos, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_in_the_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_at_head_closes_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_sequence_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth_and_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_failure_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v5_failure_answered_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v5_success_code_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v4_reason_code_failure_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v5_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_full, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
