/*
 * ab_caps.c - per-client caps, each pushed far past its value by one or a
 * few blocking clients: subscriptions per client, QoS 2 ids awaiting
 * PUBREL, and topic, filter, will and client id sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse.h"

#define WAIT_MS 10000

/* ---- subscriptions -------------------------------------------------------------------- */

#define SUBS_CAP 1000
#define SUBS_PER_PKT 100

static void subs_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)full;
	(void)nofile;
	snprintf(out, cap, "max_subscriptions = %d; max_connect_rate = 0;", SUBS_CAP);
}

static int subs_run(const struct ab_opts *o, struct ab_result *r)
{
	int n = o->full ? 100000 : 10000, pkts = n / SUBS_PER_PKT, sent = 0, got = 0;
	size_t granted = 0, refused = 0;
	static char names[SUBS_PER_PKT][48];
	const char *f[SUBS_PER_PKT];
	struct buf b = { 0 };
	struct ab_cli cl;
	uint8_t rc;

	snprintf(r->params, sizeof(r->params),
		 "one client subscribes %d distinct filters (%d per SUBSCRIBE); max_subscriptions %d",
		 n, SUBS_PER_PKT, SUBS_CAP);
	if (ab_cli_open(&cl, o->host, o->port, "ab-subs", true, 0, &rc, NULL, WAIT_MS) < 0 || rc)
		return ab_fail(r, "no CONNACK 0");
	for (int i = 0; i < SUBS_PER_PKT; i++)
		f[i] = names[i];
	while (got < pkts) {
		/* Up to 16 SUBSCRIBEs in flight. */
		while (sent < pkts && sent - got < 16) {
			for (int i = 0; i < SUBS_PER_PKT; i++)
				snprintf(names[i], sizeof(names[i]), "ab/subs/%07d/+/x",
					 sent * SUBS_PER_PKT + i);
			ab_enc_subscribe(&b, (uint16_t)(sent % 60000 + 1), f, SUBS_PER_PKT, 1);
			if (ab_cli_send(&cl, &b) < 0)
				break;
			sent++;
		}
		int k = ab_cli_recv(&cl, WAIT_MS);
		if (k != 1) {
			ab_fail(r, "connection %s after %d SUBACKs", k == 0 ? "closed" : "silent", got);
			break;
		}
		if (cl.f.type != MQTT_SUBACK)
			continue;
		for (uint32_t i = 2; i < cl.f.body_len; i++) {
			if (cl.f.body[i] == MQTT_SUBACK_FAILURE)
				refused++;
			else
				granted++;
		}
		got++;
	}
	buf_release(&b);
	long mid = ab_gw_kb(o->pid, "VmRSS");
	ab_say("  granted=%zu refused=%zu rss while subscribed %.1f MiB (base %.1f)", granted,
	       refused, mid / 1024.0, r->rss_base_kb / 1024.0);
	if (granted > SUBS_CAP)
		ab_fail(r, "cap not enforced: %zu filters granted > max_subscriptions %d", granted,
			SUBS_CAP);
	else if (granted < SUBS_CAP)
		ab_fail(r, "only %zu granted (want %d)", granted, SUBS_CAP);
	if (got == pkts && !ab_cli_ping(&cl))
		ab_fail(r, "connection unusable after the refused filters");
	ab_cli_quit(&cl);
	long grown = mid - r->rss_base_kb;
	long want = r->rss_base_kb + (grown / 4 > 8 * 1024 ? grown / 4 : 8 * 1024);
	long after = ab_gw_rss_settle(o->pid, want, 15000);
	ab_say("  rss after disconnect %.1f MiB", after / 1024.0);
	if (after > want)
		ab_fail(r, "memory not returned: RSS %.1f MiB after disconnect, %.1f MiB while "
			   "subscribed, %.1f MiB before", after / 1024.0, mid / 1024.0,
			r->rss_base_kb / 1024.0);
	if (r->verdict == AB_PASS)
		ab_note(r, "%zu granted, %zu refused with 0x80; RSS %.1f -> %.1f -> %.1f MiB", granted,
			refused, r->rss_base_kb / 1024.0, mid / 1024.0, after / 1024.0);
	return 0;
}

/* ---- QoS 2 ids never released ---------------------------------------------------------- */

#define QOS2_CAP 1000

static void qos2_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)full;
	(void)nofile;
	snprintf(out, cap, "max_qos2_pending = %d;", QOS2_CAP);
}

static int qos2_run(const struct ab_opts *o, struct ab_result *r)
{
	enum { BATCH = 256, MAXC = 16 };
	int nc = o->full ? 10 : 2;
	struct ab_cli cl[MAXC];
	int recs[MAXC] = { 0 }, next[MAXC];
	bool closed[MAXC] = { false };
	char payload[64], topic[32], id[32];
	struct buf b = { 0 };
	uint8_t rc;
	long peak = 0;

	memset(payload, 'q', sizeof(payload));
	snprintf(r->params, sizeof(r->params),
		 "%d clients each send QoS 2 ids 1..65535 and never PUBREL; max_qos2_pending %d", nc,
		 QOS2_CAP);
	for (int i = 0; i < nc; i++) {
		snprintf(id, sizeof(id), "ab-q2-%d", i);
		if (ab_cli_open(&cl[i], o->host, o->port, id, true, 0, &rc, NULL, WAIT_MS) < 0 || rc)
			return ab_fail(r, "no CONNACK 0 for %s", id);
		next[i] = 1;
	}
	for (bool more = true; more;) {
		more = false;
		for (int i = 0; i < nc; i++) {
			int first = next[i], sent = 0;
			if (closed[i] || first > 65535)
				continue;
			snprintf(topic, sizeof(topic), "ab/q2/%d", i);
			for (; sent < BATCH && next[i] <= 65535; sent++, next[i]++)
				ab_enc_publish(&b, topic, payload, sizeof(payload), 2, false,
					       (uint16_t)next[i]);
			if (ab_cli_send(&cl[i], &b) < 0) {
				buf_reset(&b);
				closed[i] = true;
				continue;
			}
			for (int got = 0; got < sent;) {
				int k = ab_cli_recv(&cl[i], WAIT_MS);
				if (k != 1) {
					closed[i] = true;
					break;
				}
				if (cl[i].f.type == MQTT_PUBREC) {
					recs[i]++;
					got++;
				}
			}
			more |= !closed[i] && next[i] <= 65535;
		}
		long v = ab_gw_kb(o->pid, "VmRSS");
		if (v > peak)
			peak = v;
	}
	buf_release(&b);
	int n_closed = 0, most = 0;
	for (int i = 0; i < nc; i++) {
		n_closed += closed[i];
		if (recs[i] > most)
			most = recs[i];
	}
	ab_say("  %d of %d clients closed; most PUBRECs on one connection %d; rss peak %.1f MiB",
	       n_closed, nc, most, peak / 1024.0);
	if (most > QOS2_CAP)
		ab_fail(r, "cap not enforced: %d ids awaiting PUBREL on one connection > %d", most,
			QOS2_CAP);
	if (n_closed < nc)
		ab_fail(r, "%d of %d connections never closed", nc - n_closed, nc);
	for (int i = 0; i < nc; i++)
		ab_cli_quit(&cl[i]);
	/* A clean reconnect starts with no ids: id 1 is new again. */
	if (ab_cli_open(&cl[0], o->host, o->port, "ab-q2-0", true, 0, &rc, NULL, WAIT_MS) < 0 || rc)
		ab_fail(r, "no CONNACK 0 on reconnect");
	else {
		ab_enc_publish(&b, "ab/q2/0", "again", 5, 2, false, 1);
		ab_cli_send(&cl[0], &b);
		if (ab_cli_recv(&cl[0], WAIT_MS) != 1 || cl[0].f.type != MQTT_PUBREC)
			ab_fail(r, "no PUBREC for id 1 after reconnecting");
		ab_enc_ack(&b, MQTT_PUBREL, 1);
		ab_cli_send(&cl[0], &b);
		if (ab_cli_recv(&cl[0], WAIT_MS) != 1 || cl[0].f.type != MQTT_PUBCOMP)
			ab_fail(r, "no PUBCOMP for id 1 after reconnecting");
		ab_cli_quit(&cl[0]);
	}
	buf_release(&b);
	long growth = peak - r->rss_base_kb;
	if (growth > 64 * 1024)
		ab_fail(r, "RSS grew %ld MiB holding QoS 2 ids", growth / 1024);
	if (r->verdict == AB_PASS)
		ab_note(r, "every connection closed after at most %d PUBRECs; RSS +%.1f MiB", most,
			growth / 1024.0);
	return 0;
}

/* ---- topic and client id sizes ---------------------------------------------------------------- */

static void topics_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)full;
	(void)nofile;
	snprintf(out, cap, "max_topic_length = 4096; max_topic_levels = 128; "
			   "max_client_id_length = 256; max_packet_size = 1048576;");
}

/* A string of n bytes: 'x' * n, or "a/a/.../a" with levels levels. */
static char *big_topic(size_t n, int levels)
{
	char *t = malloc(n + 1);
	if (!t)
		return NULL;
	if (levels > 0) {
		for (size_t i = 0; i < n; i++)
			t[i] = i % 2 ? '/' : 'a';
		n = (size_t)levels * 2 - 1;
	} else {
		memcpy(t, "ab/", 3);
		memset(t + 3, 'x', n - 3);
	}
	t[n] = 0;
	return t;
}

/* SUBSCRIBE to f: the SUBACK code (-1: no SUBACK; the connection is left
 * open or closed as the gateway chose). */
static int sub_code(struct ab_cli *cl, const char *f)
{
	struct buf b = { 0 };
	int code = -1;

	if (ab_enc_subscribe(&b, 7, &f, 1, 0) == MQTT_OK && ab_cli_send(cl, &b) == 0)
		while (ab_cli_recv(cl, WAIT_MS) == 1)
			if (cl->f.type == MQTT_SUBACK) {
				code = cl->f.body_len >= 3 ? cl->f.body[2] : -1;
				break;
			}
	buf_release(&b);
	return code;
}

/* A PUBLISH to t: true if the gateway closed the connection for it. */
static bool pub_closed(struct ab_cli *cl, const char *t)
{
	struct buf b = { 0 };
	bool closed = false;

	if (ab_enc_publish(&b, t, "p", 1, 1, false, 9) == MQTT_OK && ab_cli_send(cl, &b) == 0) {
		int k;
		while ((k = ab_cli_recv(cl, 3000)) == 1)
			if (cl->f.type == MQTT_PUBACK)
				break;
		closed = k == 0;
	} else {
		closed = true;
	}
	buf_release(&b);
	return closed;
}

static int topics_run(const struct ab_opts *o, struct ab_result *r)
{
	int reps = o->full ? 200 : 20;
	char *long_t = big_topic(60000, 0), *deep_t = big_topic(40000, 20000);
	char *ok_len = big_topic(4096, 0), *ok_deep = big_topic(300, 128);
	char *long_id = big_topic(60000, 0);
	int sub_long = 0, sub_deep = 0, pub_long = 0, pub_deep = 0, will = 0, cid = 0, fine = 0;
	struct ab_cli cl;
	uint8_t rc;

	snprintf(r->params, sizeof(r->params),
		 "%d rounds: filters and topics of 60000 B and 20000 levels, a 60000 B will topic "
		 "and client id; caps 4096 B, 128 levels, id 256 B", reps);
	if (!long_t || !deep_t || !ok_len || !ok_deep || !long_id)
		return ab_fail(r, "out of memory");
	ok_len[4095] = 'y';
	for (int i = 0; i < reps; i++) {
		if (ab_cli_open(&cl, o->host, o->port, "ab-topics", true, 0, &rc, NULL, WAIT_MS) < 0)
			return ab_fail(r, "no CONNACK");
		sub_long += sub_code(&cl, long_t) == MQTT_SUBACK_FAILURE;
		sub_deep += sub_code(&cl, deep_t) == MQTT_SUBACK_FAILURE;
		fine += sub_code(&cl, ok_len) == 0 && sub_code(&cl, ok_deep) == 0;
		pub_long += pub_closed(&cl, long_t);
		ab_cli_close(&cl);
		if (ab_cli_open(&cl, o->host, o->port, "ab-topics", true, 0, &rc, NULL, WAIT_MS) < 0)
			return ab_fail(r, "no CONNACK");
		pub_deep += pub_closed(&cl, deep_t);
		ab_cli_close(&cl);
		struct mqtt_connect k = {
			.level = 4, .clean = true, .will = true,
			.client_id = { (const uint8_t *)"ab-will", 7 },
			.will_topic = { (const uint8_t *)long_t, 60000 },
			.will_payload = { (const uint8_t *)"w", 1 },
		};
		rc = 0xff;
		if (ab_cli_open_with(&cl, o->host, o->port, &k, &rc, NULL, WAIT_MS) < 0 || rc != 0)
			will++;
		ab_cli_close(&cl);
		rc = 0xff;
		if (ab_cli_open(&cl, o->host, o->port, long_id, true, 0, &rc, NULL, WAIT_MS) == 0 &&
		    rc == MQTT_CONNACK_ID_REJECTED)
			cid++;
		ab_cli_close(&cl);
	}
	ab_say("  of %d: long filter refused %d, deep filter refused %d, long topic closed %d, "
	       "deep topic closed %d, long will refused %d, long id CONNACK 2 %d, at-cap accepted %d",
	       reps, sub_long, sub_deep, pub_long, pub_deep, will, cid, fine);
	if (sub_long < reps)
		ab_fail(r, "60000 B filter granted %d times (want SUBACK 0x80)", reps - sub_long);
	if (sub_deep < reps)
		ab_fail(r, "20000-level filter granted %d times", reps - sub_deep);
	if (pub_long < reps)
		ab_fail(r, "PUBLISH to a 60000 B topic accepted %d times (want a close)",
			reps - pub_long);
	if (pub_deep < reps)
		ab_fail(r, "PUBLISH to a 20000-level topic accepted %d times", reps - pub_deep);
	if (will < reps)
		ab_fail(r, "CONNECT with a 60000 B will topic accepted %d times", reps - will);
	if (cid < reps)
		ab_fail(r, "60000 B client id not refused with CONNACK 2 %d times", reps - cid);
	if (fine < reps)
		ab_fail(r, "filters at the caps (4096 B, 128 levels) refused %d times", reps - fine);
	long growth = ab_gw_kb(o->pid, "VmHWM") - r->rss_base_kb;
	if (r->verdict == AB_PASS)
		ab_note(r, "every oversized name refused as documented; peak RSS +%.1f MiB",
			growth / 1024.0);
	free(long_t);
	free(deep_t);
	free(ok_len);
	free(ok_deep);
	free(long_id);
	return 0;
}
const struct ab_case ab_caps_cases[] = {
	{ "subscriptions", subs_limits, subs_run, LEGIT_CYCLE, false },
	{ "qos2-ids", qos2_limits, qos2_run, LEGIT_CYCLE, false },
	{ "topic-sizes", topics_limits, topics_run, LEGIT_CYCLE, false },
	{ NULL },
};
