/*
 * ab_store.c - what the gateway stores for clients, flooded: retained
 * messages (count and bytes), bytes queued for offline persistent sessions,
 * and persistent sessions left to expire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse.h"

#define MIB (1024L * 1024L)
#define WAIT_MS 10000

/* ---- retained flood ------------------------------------------------------------------------ */

static long ret_count(bool full) { return full ? 100000 : 1000; }
static long ret_bytes(bool full) { return full ? 256 * MIB : 1 * MIB; }

static void ret_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_retained_messages = %ld; max_retained_bytes = %ld;", ret_count(full),
		 ret_bytes(full));
}

/* Publishes n retained QoS 0 messages of len bytes to prefix/i (len 0
 * clears), then waits for a PINGRESP: everything before it was handled. */
static int ret_flood(struct ab_cli *cl, const char *prefix, long n, size_t len)
{
	static uint8_t payload[65536];
	struct buf b = { 0 };
	char topic[64];

	memset(payload, 'r', sizeof(payload));
	for (long i = 0; i < n; i++) {
		snprintf(topic, sizeof(topic), "%s/%07ld", prefix, i);
		ab_enc_publish(&b, topic, payload, len, 0, true, 0);
		if (buf_used(&b) > 256 * 1024 || i == n - 1) {
			if (ab_cli_send(cl, &b) < 0) {
				buf_release(&b);
				return -1;
			}
		}
	}
	buf_release(&b);
	if (ab_cli_simple(cl, MQTT_PINGREQ) < 0)
		return -1;
	for (;;) {
		int k = ab_cli_recv(cl, 60000);
		if (k != 1)
			return -1;
		if (cl->f.type == MQTT_PINGRESP)
			return 0;
	}
}

static int ret_run(const struct ab_opts *o, struct ab_result *r)
{
	long cap_n = ret_count(o->full), cap_b = ret_bytes(o->full);
	long na = o->full ? 300000 : 20000, nb = o->full ? 5000 : 200;
	struct ab_cli cl;
	uint8_t rc;

	snprintf(r->params, sizeof(r->params),
		 "%ld retained 16 B messages on distinct topics, cleared, then %ld of 64 KiB; caps "
		 "%ld messages, %ld MiB", na, nb, cap_n, cap_b / MIB);
	if (ab_cli_open(&cl, o->host, o->port, "ab-ret", true, 0, &rc, NULL, WAIT_MS) < 0 || rc)
		return ab_fail(r, "no CONNACK 0");
	if (ret_flood(&cl, "ab/ret/a", na, 16) < 0) {
		ab_cli_close(&cl);
		return ab_fail(r, "connection lost during the count flood");
	}
	double stored = ab_metric(o, "kafkagate_retained_messages");
	long rss_a = ab_gw_kb(o->pid, "VmRSS");
	ab_say("  count flood: %ld sent, %.0f stored (cap %ld), RSS %.1f MiB", na, stored, cap_n,
	       rss_a / 1024.0);
	if (stored > cap_n)
		ab_fail(r, "count cap not enforced: %.0f retained > %ld", stored, cap_n);
	else if (stored < cap_n)
		ab_fail(r, "only %.0f retained of a cap of %ld", stored, cap_n);
	if (ret_flood(&cl, "ab/ret/a", na, 0) < 0) {
		ab_cli_close(&cl);
		return ab_fail(r, "connection lost while clearing");
	}
	stored = ab_metric(o, "kafkagate_retained_messages");
	if (stored != 0)
		ab_fail(r, "%.0f retained left after clearing every topic", stored);
	if (ret_flood(&cl, "ab/ret/b", nb, 65536) < 0) {
		ab_cli_close(&cl);
		return ab_fail(r, "connection lost during the bytes flood");
	}
	stored = ab_metric(o, "kafkagate_retained_messages");
	double bytes = ab_metric(o, "kafkagate_retained_bytes");
	if (bytes < 0) /* no gauge: every message of this phase has the same size */
		bytes = stored * (65536 + 14);
	ab_say("  bytes flood: %ld sent, %.0f stored, %.1f MiB (cap %ld MiB)", nb, stored,
	       bytes / MIB, cap_b / MIB);
	if (bytes > cap_b)
		ab_fail(r, "bytes cap not enforced: %.1f MiB retained > %ld MiB", bytes / MIB,
			cap_b / MIB);
	if (!ab_cli_ping(&cl))
		ab_fail(r, "the flooding client was dropped");
	ab_cli_quit(&cl);
	long growth = ab_gw_kb(o->pid, "VmHWM") - r->rss_base_kb;
	if (growth > cap_b / 1024 + 64 * 1024)
		ab_fail(r, "peak RSS grew %ld MiB > max_retained_bytes + 64 MiB", growth / 1024);
	if (r->verdict == AB_PASS)
		ab_note(r, "caps held: at most %ld messages, %.1f MiB; peak RSS +%.0f MiB", cap_n,
			bytes / MIB, growth / 1024.0);
	return 0;
}

/* ---- bytes queued for offline sessions ------------------------------------------------------ */

static long q_cap(bool full) { return full ? 16 * MIB : 1 * MIB; }

static void queued_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_queued_messages = 100000; max_queued_bytes = %ld;", q_cap(full));
}

static int queued_run(const struct ab_opts *o, struct ab_result *r)
{
	enum { SIZE = 16384, WIN = 32 };
	int ns = o->full ? 8 : 4, nm = o->full ? 2000 : 1000;
	long cap = q_cap(o->full), most = 0;
	static uint8_t payload[SIZE];
	char id[32], topic[32];
	struct buf b = { 0 };
	struct ab_cli cl, pub;
	uint8_t rc;
	bool present;

	snprintf(r->params, sizeof(r->params),
		 "%d offline sessions each sent %d x 16 KiB QoS 1 (%d MiB); max_queued_bytes %ld MiB",
		 ns, nm, nm * SIZE / (int)MIB, cap / MIB);
	memset(payload, 'm', sizeof(payload));
	for (int s = 0; s < ns; s++) {
		const char *f = topic;
		snprintf(id, sizeof(id), "ab-queue-%d", s);
		snprintf(topic, sizeof(topic), "ab/queue/%d", s);
		if (ab_cli_open(&cl, o->host, o->port, id, false, 0, &rc, NULL, WAIT_MS) < 0 || rc)
			return ab_fail(r, "no CONNACK 0 for %s", id);
		ab_enc_subscribe(&b, 1, &f, 1, 1);
		ab_cli_send(&cl, &b);
		if (ab_cli_recv(&cl, WAIT_MS) != 1 || cl.f.type != MQTT_SUBACK)
			ab_fail(r, "no SUBACK for %s", id);
		ab_cli_quit(&cl);
	}
	if (ab_cli_open(&pub, o->host, o->port, "ab-queue-pub", true, 0, &rc, NULL, WAIT_MS) < 0 ||
	    rc)
		return ab_fail(r, "no CONNACK 0 for the publisher");
	for (int s = 0; s < ns; s++) {
		snprintf(topic, sizeof(topic), "ab/queue/%d", s);
		for (int i = 0; i < nm; i += WIN) {
			int k = 0;
			for (; k < WIN && i + k < nm; k++)
				ab_enc_publish(&b, topic, payload, SIZE, 1, false, (uint16_t)(k + 1));
			if (ab_cli_send(&pub, &b) < 0)
				return ab_fail(r, "publisher dropped");
			for (int got = 0; got < k;) {
				if (ab_cli_recv(&pub, WAIT_MS) != 1)
					return ab_fail(r, "publisher: PUBACK missing");
				got += pub.f.type == MQTT_PUBACK;
			}
		}
	}
	ab_cli_quit(&pub);
	long held = ab_gw_kb(o->pid, "VmRSS");
	ab_say("  %d x %d MiB published to offline sessions: RSS %.1f MiB (base %.1f)", ns,
	       nm * SIZE / (int)MIB, held / 1024.0, r->rss_base_kb / 1024.0);
	for (int s = 0; s < ns; s++) {
		long bytes = 0;
		snprintf(id, sizeof(id), "ab-queue-%d", s);
		if (ab_cli_open(&cl, o->host, o->port, id, false, 0, &rc, &present, WAIT_MS) < 0 || rc)
			return ab_fail(r, "no CONNACK 0 for %s on return", id);
		while (ab_cli_recv(&cl, 1500) == 1) {
			if (cl.f.type != MQTT_PUBLISH)
				continue;
			struct mqtt_packet pk;
			if (mqtt_decode(&cl.f, 4, &pk) != MQTT_OK)
				break;
			bytes += pk.u.publish.payload_len;
			ab_enc_ack(&b, MQTT_PUBACK, pk.u.publish.packet_id);
			ab_cli_send(&cl, &b);
		}
		ab_cli_close(&cl);
		/* Leave no session behind. */
		if (ab_cli_open(&cl, o->host, o->port, id, true, 0, &rc, NULL, WAIT_MS) == 0)
			ab_cli_quit(&cl);
		if (bytes > most)
			most = bytes;
	}
	buf_release(&b);
	ab_say("  most delivered to one returning session: %.1f MiB", most / (double)MIB);
	if (most > cap + SIZE)
		ab_fail(r, "cap not enforced: %.1f MiB queued for one session > %ld MiB",
			most / (double)MIB, cap / MIB);
	long growth = held - r->rss_base_kb;
	if (growth > ns * cap / 1024 + 64 * 1024)
		ab_fail(r, "RSS grew %ld MiB with %d sessions offline (cap %ld MiB each)",
			growth / 1024, ns, cap / MIB);
	if (r->verdict == AB_PASS)
		ab_note(r, "at most %.1f MiB queued per session; RSS +%.0f MiB while offline",
			most / (double)MIB, growth / 1024.0);
	return 0;
}

/* ---- session expiry ----------------------------------------------------------------------------- */

static int exp_secs(bool full) { return full ? 3 : 2; }

static void exp_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "session_expiry = %d; max_connect_rate = 0;", exp_secs(full));
}

/* A persistent session for id, subscribed to its own topic, left offline. */
static int exp_park(const struct ab_opts *o, const char *id, int i)
{
	char topic[32];
	const char *f = topic;
	struct buf b = { 0 };
	struct ab_cli cl;
	uint8_t rc;
	int ok;

	snprintf(topic, sizeof(topic), "ab/exp/%d", i);
	if (ab_cli_open(&cl, o->host, o->port, id, false, 0, &rc, NULL, WAIT_MS) < 0 || rc)
		return -1;
	ab_enc_subscribe(&b, 1, &f, 1, 1);
	ab_cli_send(&cl, &b);
	ok = ab_cli_recv(&cl, WAIT_MS) == 1 && cl.f.type == MQTT_SUBACK;
	buf_release(&b);
	ab_cli_quit(&cl);
	return ok ? 0 : -1;
}

/* The sweep discards at most 128 expired sessions per 250 ms tick
 * (docs/security.md, Decisions): 512 a second. */
#define EXP_SWEEP_PER_S 512

static int exp_run(const struct ab_opts *o, struct ab_result *r)
{
	int secs = exp_secs(o->full), n = o->full ? 5000 : 500, stale = 0;
	static uint8_t payload[1024];
	char id[32], topic[32];
	struct buf b = { 0 };
	struct ab_cli cl;
	uint8_t rc;
	bool present = false;
	double expired0 = ab_metric(o, "kafkagate_sessions_expired_total"), expired = -1;

	snprintf(r->params, sizeof(r->params),
		 "%d persistent sessions, each subscribed and sent 5 x 1 KiB QoS 1 while offline; "
		 "session_expiry %d s", n, secs);
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "ab-exp-%d", i);
		if (exp_park(o, id, i) < 0)
			return ab_fail(r, "could not park session %s", id);
	}
	int64_t parked = ab_now_ms();
	if (ab_cli_open(&cl, o->host, o->port, "ab-exp-pub", true, 0, &rc, NULL, WAIT_MS) < 0 || rc)
		return ab_fail(r, "no CONNACK 0 for the publisher");
	memset(payload, 'e', sizeof(payload));
	for (int i = 0, pid = 0; i < n; i++) {
		snprintf(topic, sizeof(topic), "ab/exp/%d", i);
		for (int k = 0; k < 5; k++, pid = pid % 60000 + 1)
			ab_enc_publish(&b, topic, payload, sizeof(payload), 1, false, (uint16_t)(pid + 1));
		if (buf_used(&b) > 256 * 1024 && ab_cli_send(&cl, &b) < 0)
			break;
	}
	ab_cli_send(&cl, &b);
	if (!ab_cli_ping(&cl)) /* skips the PUBACKs */
		ab_fail(r, "publisher dropped");
	ab_cli_quit(&cl);
	long held = ab_gw_kb(o->pid, "VmRSS");
	/* Sanity: a session is there right after it was parked. */
	if (exp_park(o, "ab-exp-control", n) < 0 ||
	    ab_cli_open(&cl, o->host, o->port, "ab-exp-control", false, 0, &rc, &present,
			WAIT_MS) < 0)
		return ab_fail(r, "control session failed");
	ab_cli_quit(&cl);
	if (!present)
		ab_fail(r, "a session was gone at once (expected it to last %d s)", secs);
	/* Every session expired and swept: the counter says when. */
	int64_t bound = parked + secs * 1000 + (int64_t)n * 1000 / EXP_SWEEP_PER_S + 3000;
	if (expired0 >= 0) {
		while ((expired = ab_metric(o, "kafkagate_sessions_expired_total") - expired0) < n &&
		       ab_now_ms() < bound)
			ab_sleep_ms(100);
	} else {
		ab_sleep_ms((int)(bound - ab_now_ms()));
	}
	double lag = (double)(ab_now_ms() - parked) / 1000.0 - secs;
	long after = ab_gw_kb(o->pid, "VmRSS");
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "ab-exp-%d", i);
		/* Only a clean 0 CONNECT says whether a session was there. */
		if (ab_cli_open(&cl, o->host, o->port, id, false, 0, &rc, &present, WAIT_MS) < 0) {
			ab_fail(r, "reconnect of %s failed", id);
			break;
		}
		stale += present;
		ab_cli_quit(&cl);
		if (ab_cli_open(&cl, o->host, o->port, id, true, 0, &rc, NULL, WAIT_MS) == 0)
			ab_cli_quit(&cl);
	}
	buf_release(&b);
	ab_say("  %.0f expired (kafkagate_sessions_expired_total) %.1f s after the last one was "
	       "due; RSS %.1f MiB with sessions offline, %.1f MiB after; %d of %d still present",
	       expired, lag, held / 1024.0, after / 1024.0, stale, n);
	if (expired0 >= 0 && expired < n)
		ab_fail(r, "only %.0f of %d sessions expired %.1f s after they were due (sweep %d/s)",
			expired, n, lag, EXP_SWEEP_PER_S);
	if (stale)
		ab_fail(r, "expiry not enforced: %d of %d sessions still present", stale, n);
	if (r->verdict == AB_PASS)
		ab_note(r, "all %d swept within %.1f s of their expiry; none resumed; RSS %.1f -> "
			   "%.1f MiB", n, lag, held / 1024.0, after / 1024.0);
	return 0;
}

const struct ab_case ab_store_cases[] = {
	{ "retained", ret_limits, ret_run, LEGIT_CYCLE, false },
	{ "queued-bytes", queued_limits, queued_run, LEGIT_CYCLE, false },
	{ "session-expiry", exp_limits, exp_run, LEGIT_CYCLE, false },
	{ NULL },
};
