/*
 * test_state_owner.c - state_owner.c: which instance adopts the sessions of
 * a dead instance. Three owners (three struct state in this process) join
 * the group <prefix>.owners on a librdkafka mock cluster; the sessions view,
 * the instances table and readiness are stubs below (the sessions module
 * and state.c are not linked: the linker takes these definitions, so the
 * archive members that define the real ones are never pulled in).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/buf.h"
#include "core/cfg.h"
#include "state/state_int.h"

#define NPARTS 6

/* enum state_rec_state (state_rec.h) */
enum state_sess_state { STATE_SESS_ONLINE, STATE_SESS_PARKED, STATE_SESS_ENDED };
#define NSESS 60

/* ---- stubs: the sessions view, the instances table, readiness ------------ */

struct fake_sess {
	char id[16];
	int32_t p;
	char owner[16];
	int64_t boot;
	enum state_sess_state state;
	int adopts;          /* state_sessions_adopt() calls */
	char adopter[16];    /* the last adopting instance */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fake_sess sess[NSESS];
static size_t nsess;
static bool fail_adopt;          /* adopts "fail": the owner does not change */
static bool ready[3] = { true, true, true };
static struct state sts[3];

struct fake_inst {
	const char *id;
	bool alive;
	int64_t boot;
};
static struct fake_inst insts[8];
static size_t ninsts;

static int idx_of(const struct state *st)
{
	return (int)(st - sts);
}

int64_t state_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t state_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool state_ready(struct state *st, char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return ready[idx_of(st)];
}

bool state_instance_alive(struct state *st, const char *id)
{
	(void)st;
	for (size_t i = 0; i < ninsts; i++)
		if (strcmp(insts[i].id, id) == 0)
			return insts[i].alive;
	return false; /* never heard of: dead */
}

int64_t state_instance_boot(struct state *st, const char *id)
{
	(void)st;
	for (size_t i = 0; i < ninsts; i++)
		if (strcmp(insts[i].id, id) == 0)
			return insts[i].boot;
	return 0;
}

/* The "sessions" of each fake state are the index, as a pointer. */
/* As the sessions module: ended ones left out. */
void state_sessions_foreach(struct state_sessions *ss, int32_t p, state_sessions_cb cb, void *ud)
{
	(void)ss;
	struct fake_sess copy[NSESS];
	size_t n;
	pthread_mutex_lock(&mu);
	memcpy(copy, sess, sizeof(copy));
	n = nsess;
	pthread_mutex_unlock(&mu);
	for (size_t i = 0; i < n; i++) {
		if (copy[i].p != p || copy[i].state == STATE_SESS_ENDED)
			continue;
		struct state_session_info s = {
			.id = copy[i].id,
			.id_len = (uint16_t)strlen(copy[i].id),
			.owner = copy[i].owner,
			.boot = copy[i].boot,
			.partition = copy[i].p,
			.state = (int)copy[i].state,
		};
		cb(ud, &s);
	}
}

int state_sessions_adopt(struct state_sessions *ss, const char *id, uint16_t len)
{
	int who = (int)(intptr_t)ss - 1;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < nsess; i++) {
		if (strlen(sess[i].id) != len || memcmp(sess[i].id, id, len) != 0)
			continue;
		sess[i].adopts++;
		snprintf(sess[i].adopter, sizeof(sess[i].adopter), "%s", sts[who].instance_id);
		if (sess[i].state == STATE_SESS_ENDED)
			continue;
		if (!fail_adopt) { /* read back: now ours, with our boot */
			snprintf(sess[i].owner, sizeof(sess[i].owner), "%s", sts[who].instance_id);
			sess[i].boot = 1000 + who;
		}
	}
	pthread_mutex_unlock(&mu);
	return 0;
}

/* ---- fixture -------------------------------------------------------------- */

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mc;
static struct cfg *cfg;
static struct state_owner *owners[3];

static void tick_all_for(int ms)
{
	int64_t end = state_now_ms() + ms;
	while (state_now_ms() < end) {
		for (int i = 0; i < 3; i++)
			if (owners[i])
				state_owner_tick(owners[i]);
		usleep(50 * 1000);
	}
}

static void add_sess(const char *id, int32_t p, const char *owner, int64_t boot,
		     enum state_sess_state state)
{
	pthread_mutex_lock(&mu);
	struct fake_sess *s = &sess[nsess++];
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->p = p;
	snprintf(s->owner, sizeof(s->owner), "%s", owner);
	s->boot = boot;
	s->state = state;
	pthread_mutex_unlock(&mu);
}

static struct fake_sess *find(const char *id)
{
	for (size_t i = 0; i < nsess; i++)
		if (strcmp(sess[i].id, id) == 0)
			return &sess[i];
	return NULL;
}

/* Waits until the three owners watch disjoint sets covering every
 * partition, each at least one; returns true then. */
static bool settled(int live_mask, int timeout_ms)
{
	int64_t end = state_now_ms() + timeout_ms;
	while (state_now_ms() < end) {
		int count[NPARTS] = { 0 };
		bool each = true;
		for (int i = 0; i < 3; i++) {
			if (!(live_mask & (1 << i)))
				continue;
			int32_t parts[NPARTS + 4];
			size_t n = state_owner_watched(owners[i], parts, NPARTS + 4);
			if (n == 0)
				each = false;
			for (size_t j = 0; j < n && j < NPARTS + 4; j++)
				if (parts[j] >= 0 && parts[j] < NPARTS)
					count[parts[j]]++;
		}
		bool ok = each;
		for (int p = 0; p < NPARTS; p++)
			ok = ok && count[p] == 1;
		if (ok)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

static int setup(void **state)
{
	(void)state;
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	assert_non_null(mock_rk);
	mc = rd_kafka_mock_cluster_new(mock_rk, 1);
	assert_non_null(mc);
	assert_int_equal(rd_kafka_mock_topic_create(mc, "t.sessions", NPARTS, 1), 0);
	const char *text =
		"listeners = ( { address = \"127.0.0.1\"; port = 0; } );\n"
		"kafka = { brokers = \"127.0.0.1:1\"; };\n"
		"state = { store = \"kafka\"; topic_prefix = \"t\"; partitions = 6;\n"
		"          lease_ms = 1000; claim_timeout_ms = 300; };\n";
	assert_int_equal(cfg_parse_string(text, "test.cfg", &cfg, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++) {
		sts[i].cfg = cfg;
		snprintf(sts[i].instance_id, sizeof(sts[i].instance_id), "gw-%d", i + 1);
		snprintf(sts[i].t_sessions, sizeof(sts[i].t_sessions), "t.sessions");
		snprintf(sts[i].bootstrap, sizeof(sts[i].bootstrap), "%s",
			 rd_kafka_mock_cluster_bootstraps(mc));
		sts[i].sessions = (struct state_sessions *)(intptr_t)(i + 1);
		insts[ninsts++] = (struct fake_inst){ sts[i].instance_id, true, 1000 + i };
	}
	insts[ninsts++] = (struct fake_inst){ "gw-dead", false, 7 };
	insts[ninsts++] = (struct fake_inst){ "gw-restarted", true, 9 };
	insts[ninsts++] = (struct fake_inst){ "gw-alive", true, 5 };
	for (int i = 0; i < 3; i++) {
		owners[i] = state_owner_new(&sts[i]);
		assert_non_null(owners[i]);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		state_owner_free(owners[i]);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(mock_rk);
	cfg_free(cfg);
	return 0;
}

/* ---- tests ---------------------------------------------------------------- */

/* The group splits the sessions partitions among the three: each watched
 * by exactly one. */
static void test_split(void **state)
{
	(void)state;
	assert_true(settled(7, 30000));
	/* /metrics: the watched partitions add up to all of them. */
	unsigned long total = 0;
	for (int i = 0; i < 3; i++) {
		struct buf b;
		buf_init(&b);
		assert_int_equal(state_owner_metrics_render(&b, owners[i]), 0);
		assert_int_equal(buf_append(&b, "", 1), 0);
		const char *l = strstr((const char *)buf_head(&b), "\nkafkagate_state_owner_partitions ");
		assert_non_null(l);
		unsigned long n = strtoul(l + strlen("\nkafkagate_state_owner_partitions "), NULL, 10);
		assert_true(n >= 1);
		total += n;
		assert_non_null(strstr((const char *)buf_head(&b), "kafkagate_state_owner_adopts_total 0"));
		buf_release(&b);
	}
	assert_int_equal(total, NPARTS);
}

/* Sessions of a dead instance are adopted once each, by the watcher of
 * their partition; ended ones, those of live instances and our own are
 * left alone. */
static void test_dead_adopted_once(void **state)
{
	(void)state;
	assert_true(settled(7, 30000));
	char id[16];
	for (int i = 0; i < 24; i++) {
		snprintf(id, sizeof(id), "dead-%d", i);
		add_sess(id, i % NPARTS, "gw-dead", 7, i % 2 ? STATE_SESS_ONLINE : STATE_SESS_PARKED);
	}
	add_sess("ended-1", 0, "gw-dead", 7, STATE_SESS_ENDED);
	add_sess("live-1", 1, "gw-alive", 5, STATE_SESS_ONLINE);
	add_sess("own-1", 2, "gw-1", 1000, STATE_SESS_ONLINE);
	tick_all_for(2500);

	int32_t parts[3][NPARTS + 4];
	size_t np[3];
	for (int i = 0; i < 3; i++)
		np[i] = state_owner_watched(owners[i], parts[i], NPARTS + 4);
	for (int i = 0; i < 24; i++) {
		snprintf(id, sizeof(id), "dead-%d", i);
		struct fake_sess *s = find(id);
		assert_int_equal(s->adopts, 1);
		/* the adopter watches that partition */
		int who = s->adopter[3] - '1';
		bool watches = false;
		for (size_t j = 0; j < np[who]; j++)
			watches = watches || parts[who][j] == s->p;
		assert_true(watches);
	}
	assert_int_equal(find("ended-1")->adopts, 0);
	assert_int_equal(find("live-1")->adopts, 0);
	assert_int_equal(find("own-1")->adopts, 0);
}

/* Not ready (cut off from Kafka): everyone looks dead, nothing is adopted;
 * nor during the first lease after it is ready again. */
static void test_not_ready(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		ready[i] = false;
	add_sess("nr-1", 0, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("nr-2", 4, "gw-dead", 7, STATE_SESS_PARKED);
	tick_all_for(1500);
	assert_int_equal(find("nr-1")->adopts, 0);
	assert_int_equal(find("nr-2")->adopts, 0);
	for (int i = 0; i < 3; i++)
		ready[i] = true;
	/* Ready again: a whole lease (1 s) before anything is adopted. */
	tick_all_for(700);
	assert_int_equal(find("nr-1")->adopts, 0);
	assert_int_equal(find("nr-2")->adopts, 0);
	tick_all_for(2000);
	assert_int_equal(find("nr-1")->adopts, 1);
	assert_int_equal(find("nr-2")->adopts, 1);
}

/* The owner restarted (alive, another boot): its own restart path has a
 * lease to adopt; after that the watcher does. */
static void test_restarted_grace(void **state)
{
	(void)state;
	add_sess("rs-1", 5, "gw-restarted", 8, STATE_SESS_PARKED);
	add_sess("rs-2", 5, "gw-restarted", 9, STATE_SESS_PARKED); /* current boot */
	tick_all_for(700); /* < lease_ms (1000) from the first scan seeing it */
	assert_int_equal(find("rs-1")->adopts, 0);
	tick_all_for(2500);
	assert_int_equal(find("rs-1")->adopts, 1);
	assert_int_equal(find("rs-2")->adopts, 0);
}

/* An adopt that is never read back is asked again after the claim
 * timeout, not at every scan. */
static void test_retry_paced(void **state)
{
	(void)state;
	fail_adopt = true;
	add_sess("rt-1", 1, "gw-dead", 7, STATE_SESS_ONLINE);
	tick_all_for(3200); /* scans every second: 3 or 4 scans */
	int n = find("rt-1")->adopts;
	fail_adopt = false;
	assert_true(n >= 2 && n <= 4);
	tick_all_for(1500);
	int m = find("rt-1")->adopts;
	tick_all_for(1500);
	assert_int_equal(find("rt-1")->adopts, m); /* adopted for good: no more */
}

/* An instance stops: its partitions move to the other two (a clean stop
 * leaves the group at once). */
static void test_member_leaves(void **state)
{
	(void)state;
	state_owner_free(owners[2]);
	owners[2] = NULL;
	assert_true(settled(3, 30000));
	add_sess("lv-1", 0, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("lv-2", 1, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("lv-3", 2, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("lv-4", 3, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("lv-5", 4, "gw-dead", 7, STATE_SESS_ONLINE);
	add_sess("lv-6", 5, "gw-dead", 7, STATE_SESS_ONLINE);
	tick_all_for(2500);
	for (int i = 1; i <= 6; i++) {
		char id[16];
		snprintf(id, sizeof(id), "lv-%d", i);
		assert_int_equal(find(id)->adopts, 1);
		assert_string_not_equal(find(id)->adopter, "gw-3");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_dead_adopted_once),
		cmocka_unit_test(test_not_ready),
		cmocka_unit_test(test_restarted_grace),
		cmocka_unit_test(test_retry_paced),
		cmocka_unit_test(test_member_leaves),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
