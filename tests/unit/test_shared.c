/*
 * test_shared.c - shared subscriptions (broker/shared.c) without a
 * network: the "$share/NAME/FILTER" syntax [MQTT-4.8.2-1], [MQTT-4.8.2-2],
 * the member choice (shared_select) and the registry's bookkeeping
 * (memberships, session references, groups going away with their last
 * member) on a bare struct broker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker_int.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "core/msg.h"

static int parse(const char *s, char *name, char *f)
{
	const char *n, *ff;
	size_t nl, fl;
	int r = shared_parse(s, strlen(s), &n, &nl, &ff, &fl);
	if (r == 0) {
		memcpy(name, n, nl);
		name[nl] = '\0';
		memcpy(f, ff, fl);
		f[fl] = '\0';
	}
	return r;
}

static void test_parse(void **state)
{
	char name[64], f[64];
	(void)state;

	assert_true(shared_is("$share/g/a", 10));
	assert_false(shared_is("$shar/g/a", 9));
	assert_false(shared_is("$SHARE/g/a", 10));
	assert_false(shared_is("a/$share/g", 10));
	assert_int_equal(parse("$share/g/a/b", name, f), 0);
	assert_string_equal(name, "g");
	assert_string_equal(f, "a/b");
	assert_int_equal(parse("$share/group-1/#", name, f), 0);
	assert_string_equal(name, "group-1");
	assert_string_equal(f, "#");
	assert_int_equal(parse("$share/g//", name, f), 0); /* FILTER "/" is valid */
	assert_string_equal(f, "/");
	/* [MQTT-4.8.2-1]: a name of at least one character. */
	assert_int_equal(parse("$share//a", name, f), -1);
	/* [MQTT-4.8.2-2]: no wildcard in the name, then '/' and a filter. */
	assert_int_equal(parse("$share/+/a", name, f), -1);
	assert_int_equal(parse("$share/#", name, f), -1);
	assert_int_equal(parse("$share/g", name, f), -1);
	assert_int_equal(parse("$share/g/", name, f), -1);
	assert_int_equal(parse("$share/", name, f), -1);
	assert_true(shared_invalid("$share/+/a", 10));
	assert_false(shared_invalid("$share/g/a", 10));
	assert_false(shared_invalid("plain/+", 7));
}

static void test_select(void **state)
{
	(void)state;
	const uint8_t R = SHARED_READY, B = SHARED_BUSY, O = SHARED_OFFLINE, S = SHARED_SKIP;

	assert_int_equal(shared_select(NULL, 0, 0), -1);
	/* Round robin over ready members: the start decides. */
	uint8_t all[3] = { R, R, R };
	for (uint32_t st = 0; st < 6; st++)
		assert_int_equal(shared_select(all, 3, st % 3), (int)(st % 3));
	/* A busy member (window full) is skipped while another has room. */
	uint8_t busy[3] = { B, R, B };
	assert_int_equal(shared_select(busy, 3, 0), 1);
	assert_int_equal(shared_select(busy, 3, 2), 1);
	/* All busy: the one at the cursor (it queues). */
	uint8_t allbusy[3] = { B, B, B };
	assert_int_equal(shared_select(allbusy, 3, 2), 2);
	/* Online before offline, whatever the order. */
	uint8_t off[4] = { O, O, B, O };
	assert_int_equal(shared_select(off, 4, 3), 2);
	uint8_t offonly[3] = { O, S, O };
	assert_int_equal(shared_select(offonly, 3, 1), 2);
	uint8_t none[2] = { S, S };
	assert_int_equal(shared_select(none, 2, 0), -1);
}

/* A broker with just what the registry touches. */
static struct broker *bare_broker(void)
{
	struct broker *br = calloc(1, sizeof(*br));
	assert_non_null(br);
	pthread_rwlock_init(&br->subs_lock, NULL);
	br->shared = shared_new();
	assert_non_null(br->shared);
	return br;
}

static void free_broker(struct broker *br)
{
	shared_free(br->shared);
	pthread_rwlock_destroy(&br->subs_lock);
	free(br);
}

static int refs(struct session *s)
{
	return atomic_load(&s->refs);
}

#define SUB(br, s, f, q) shared_subscribe(br, s, f, (uint16_t)strlen(f), q)
#define UNSUB(br, s, f) shared_unsubscribe(br, s, f, (uint16_t)strlen(f))

static void test_registry(void **state)
{
	(void)state;
	struct broker *br = bare_broker();
	struct session *a = session_new("a", 1, false), *b = session_new("b", 1, false);

	assert_int_equal(SUB(br, a, "$share/g/t/#", 1), 1);
	assert_int_equal(refs(a), 2);                 /* the membership holds one */
	assert_int_equal(SUB(br, a, "$share/g/t/#", 2), 0); /* replaced, not added */
	assert_int_equal(refs(a), 2);
	assert_int_equal(session_subs_find(&a->subs, "$share/g/t/#", 12)->qos, 2);
	assert_int_equal(SUB(br, b, "$share/g/t/#", 1), 1);
	assert_int_equal(SUB(br, a, "$share/h/t/#", 0), 1); /* another group, same filter */
	assert_int_equal(refs(a), 3);
	assert_int_equal(a->subs.n, 2);
	assert_int_equal(SUB(br, a, "$share/+/t", 0), -1); /* invalid: nothing changes */
	assert_int_equal(a->subs.n, 2);

	/* UNSUBSCRIBE removes that membership only. */
	assert_true(UNSUB(br, a, "$share/h/t/#"));
	assert_int_equal(refs(a), 2);
	assert_int_equal(a->subs.n, 1);
	assert_false(UNSUB(br, a, "$share/h/t/#"));    /* not held: no-op */
	assert_int_equal(refs(a), 2);

	/* A session's end removes all of its memberships. */
	shared_session_end(br, b);
	assert_int_equal(refs(b), 1);
	session_subs_release(&b->subs);
	shared_session_end(br, a);
	assert_int_equal(refs(a), 1);
	session_subs_release(&a->subs);
	/* Groups went with their last member: subscribing again starts afresh. */
	assert_int_equal(SUB(br, b, "$share/g/t/#", 1), 1);
	UNSUB(br, b, "$share/g/t/#");
	assert_int_equal(refs(b), 1);

	session_unref(a);
	session_unref(b);
	free_broker(br);
}

static void push(struct session *s, const char *topic, uint8_t qos)
{
	struct msg *m = msg_new(topic, strlen(topic), "x", 1, qos, false);
	assert_non_null(m);
	assert_int_equal(mqueue_push(&s->queue, m, qos, false, false, 100), 0);
}

/* A session ending with messages queued through a shared subscription:
 * they wait in the registry for another member; the rest is released. */
static void test_session_end_keeps_queue(void **state)
{
	(void)state;
	struct broker *br = bare_broker();
	atomic_store(&br->lim.max_queued_total_messages, 100);
	struct session *a = session_new("a", 1, false), *b = session_new("b", 1, false);
	struct session *c = session_new("c", 1, false);

	assert_int_equal(SUB(br, a, "$share/g/t/#", 1), 1);
	assert_int_equal(SUB(br, b, "$share/g/t/#", 1), 1);
	assert_int_equal(SUB(br, c, "$share/solo/t/#", 1), 1);
	push(a, "t/1", 1);
	push(a, "x/1", 1);   /* through no shared subscription */
	push(a, "t/2", 2);
	push(c, "t/3", 1);   /* its group has no one else */
	shared_session_end(br, a);
	assert_int_equal(shared_orphans(br->shared), 2);
	assert_int_equal(a->queue.n, 0);
	assert_int_equal(refs(a), 1);
	shared_session_end(br, c);
	assert_int_equal(shared_orphans(br->shared), 2);
	assert_int_equal(refs(c), 1);
	mqueue_release(&c->queue);
	session_subs_release(&a->subs);
	session_subs_release(&c->subs);
	shared_session_end(br, b);
	session_subs_release(&b->subs);

	session_unref(a);
	session_unref(b);
	session_unref(c);
	free_broker(br); /* frees the two kept */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_session_end_keeps_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
