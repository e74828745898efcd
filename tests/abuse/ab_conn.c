/*
 * ab_conn.c - abuse before a connection is established as MQTT, or while a
 * packet is on its way: slowloris before CONNECT (plain, TLS, WebSocket),
 * huge remaining lengths before and after CONNECT, and half-received
 * packets held open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse.h"

#define MIB (1024L * 1024L)

static bool need_ports(const struct ab_opts *o, struct ab_result *r)
{
	if (o->tls_port > 0 && o->ws_port > 0)
		return true;
	r->verdict = AB_SKIP;
	snprintf(r->reason, sizeof(r->reason), "needs --tls-port and --ws-port");
	return false;
}

/* Fails r for connections that ended otherwise than closed by the gateway. */
static void check_all_closed(struct ab_result *r, const char *label, const struct ab_tally *t)
{
	if (t->open)
		ab_fail(r, "%s: %zu still open at the deadline", label, t->open);
	if (t->conn_err || t->error)
		ab_fail(r, "%s: %zu connect errors, %zu other errors (first errno %d)", label,
			t->conn_err, t->error, t->first_err);
}

/* ---- slowloris -------------------------------------------------------------------- */

static int slow_ct(bool full) { return full ? 10 : 3; }
static int slow_n(bool full) { return full ? 1500 : 200; }

static void slow_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_connections = 1000000; connect_timeout = %d;", slow_ct(full));
}

static int slow_run(const struct ab_opts *o, struct ab_result *r)
{
	static const struct { const char *label; enum ab_transport tr; enum ab_behaviour bh; } g[] = {
		{ "plain idle", TR_PLAIN, BH_IDLE },
		{ "plain trickle", TR_PLAIN, BH_TRICKLE_PRE },
		{ "tls idle", TR_TLS, BH_IDLE },
		{ "tls trickle hello", TR_TLS, BH_TRICKLE_PRE },
		{ "tls trickle connect", TR_TLS, BH_TRICKLE_IN },
		{ "ws idle", TR_WS, BH_IDLE },
		{ "ws trickle upgrade", TR_WS, BH_TRICKLE_PRE },
		{ "ws trickle connect", TR_WS, BH_TRICKLE_IN },
	};
	int ct = slow_ct(o->full), n = slow_n(o->full);
	struct ab_plan p = { .rate = o->full ? 3000 : 2000, .trickle_ms = 500 };
	int64_t bound = ct * 1000 + 1000, early = ct * 1000 - 500;
	size_t total, n_early = 0;
	struct ab_tally t;
	struct ab_rec *rec;

	if (!need_ports(o, r))
		return 0;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		p.spec[p.nspec++] = (struct ab_spec){ g[i].label, g[i].tr, g[i].bh, n, NULL, 0 };
	p.deadline_ms = (int)(8.0 * n * 1000 / p.rate) + ct * 1000 + 15000;
	snprintf(r->params, sizeof(r->params),
		 "%d sockets: %d each plain/TLS/WS idle, trickling 1 B/0.5 s before and after the "
		 "handshake; connect_timeout %d s", 8 * n, n, ct);
	if (!(rec = ab_engine_run(o, &p, &total)))
		return ab_fail(r, "engine failed");
	for (int s = 0; s < p.nspec; s++) {
		ab_tally(rec, total, s, &t);
		ab_tally_say(p.spec[s].label, &t);
		check_all_closed(r, p.spec[s].label, &t);
		if (t.life_max > bound)
			ab_fail(r, "%s: held %.2f s > connect_timeout + 1 s", p.spec[s].label,
				t.life_max / 1000.0);
	}
	for (size_t i = 0; i < total; i++)
		if (rec[i].end == END_PEER && rec[i].t_end - rec[i].t_conn < early)
			n_early++;
	if (n_early)
		ab_fail(r, "%zu sockets closed before connect_timeout (refused at accept?)", n_early);
	ab_tally(rec, total, -1, &t);
	if (r->verdict == AB_PASS)
		ab_note(r, "all %zu closed after %.2f..%.2f s (bound %.1f s)", t.peer,
			t.life_min / 1000.0, t.life_max / 1000.0, bound / 1000.0);
	ab_recs_free(rec, total);
	return 0;
}

/* ---- huge remaining lengths --------------------------------------------------------- */

static void huge_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)full;
	(void)nofile;
	snprintf(out, cap, "max_connections = 1000000; max_connect_size = 65536; "
			   "max_packet_size = 1048576;");
}

static int huge_run(const struct ab_opts *o, struct ab_result *r)
{
	/* 268,435,455: the largest a varint holds. */
	static const uint8_t pre[] = { 0x10, 0xff, 0xff, 0xff, 0x7f };
	static const uint8_t five[] = { 0x10, 0xff, 0xff, 0xff, 0xff, 0x7f };
	static uint8_t post[4096 + 5] = { 0x30, 0xff, 0xff, 0xff, 0x7f };
	/* 1,048,577: one byte over max_packet_size. */
	static const uint8_t just[] = { 0x30, 0x81, 0x80, 0x40, 0x00, 0x01, 'a' };
	int n = o->full ? 4000 : 400;
	struct ab_plan p = { .rate = o->full ? 3000 : 2000 };
	long growth_max = 32 * 1024;
	size_t total;
	struct ab_tally t;
	struct ab_rec *rec;

	if (!need_ports(o, r))
		return 0;
	memset(post + 5, 'x', sizeof(post) - 5);
	p.spec[p.nspec++] = (struct ab_spec){ "pre-CONNECT plain", TR_PLAIN, BH_SEND, n, pre,
					      sizeof(pre) };
	p.spec[p.nspec++] = (struct ab_spec){ "pre-CONNECT tls", TR_TLS, BH_SEND, n, pre,
					      sizeof(pre) };
	p.spec[p.nspec++] = (struct ab_spec){ "pre-CONNECT ws", TR_WS, BH_SEND, n, pre,
					      sizeof(pre) };
	p.spec[p.nspec++] = (struct ab_spec){ "5-byte length", TR_PLAIN, BH_SEND, n, five,
					      sizeof(five) };
	p.spec[p.nspec++] = (struct ab_spec){ "post-CONNECT plain", TR_PLAIN, BH_CONNECT_SEND, n,
					      post, sizeof(post) };
	p.spec[p.nspec++] = (struct ab_spec){ "post-CONNECT ws", TR_WS, BH_CONNECT_SEND, n, post,
					      sizeof(post) };
	p.spec[p.nspec++] = (struct ab_spec){ "max_packet_size + 1", TR_PLAIN, BH_CONNECT_SEND, n,
					      just, sizeof(just) };
	p.deadline_ms = (int)(p.nspec * n * 1000.0 / p.rate) + 20000;
	snprintf(r->params, sizeof(r->params),
		 "%d connections: remaining length 268435455 before CONNECT (plain/TLS/WS) and after "
		 "(plain/WS), a 5-byte length, max_packet_size+1", p.nspec * n);
	if (!(rec = ab_engine_run(o, &p, &total)))
		return ab_fail(r, "engine failed");
	for (int s = 0; s < p.nspec; s++) {
		ab_tally(rec, total, s, &t);
		ab_tally_say(p.spec[s].label, &t);
		check_all_closed(r, p.spec[s].label, &t);
		if (t.after_max > 1000)
			ab_fail(r, "%s: closed %lld ms after the header (not at once)", p.spec[s].label,
				(long long)t.after_max);
		if (p.spec[s].bh == BH_CONNECT_SEND && t.connack != t.n)
			ab_fail(r, "%s: %zu of %zu got a CONNACK", p.spec[s].label, t.connack, t.n);
	}
	long growth = ab_gw_kb(o->pid, "VmHWM") - r->rss_base_kb;
	if (growth > growth_max)
		ab_fail(r, "peak RSS grew %ld MiB (> %ld MiB)", growth / 1024, growth_max / 1024);
	ab_tally(rec, total, -1, &t);
	if (r->verdict == AB_PASS)
		ab_note(r, "all %zu closed at most %lld ms after the header; peak RSS +%.1f MiB",
			t.peer, (long long)t.after_max, growth / 1024.0);
	ab_recs_free(rec, total);
	return 0;
}

/* ---- half-received packets ------------------------------------------------------------ */

static int half_pt(bool full) { return full ? 30 : 3; }
static long half_cap(bool full) { return full ? 256 * MIB : 32 * MIB; }

static void half_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_packet_size = 1048576; packet_timeout = %d; max_partial_bytes = %ld;",
		 half_pt(full), half_cap(full));
}

static int half_run(const struct ab_opts *o, struct ab_result *r)
{
	int n = o->full ? 300 : 100, pt = half_pt(o->full);
	long cap = half_cap(o->full);
	uint32_t rl = 1048576 - 4;    /* with its 4-byte header: 1 MiB, the largest allowed */
	size_t len = 4 + rl - 64;     /* all but the last 64 bytes */
	uint8_t *pkt = malloc(len);
	struct ab_plan p = { .rate = 1000 };
	size_t total, by_cap = 0, by_timeout = 0;
	struct ab_tally t;
	struct ab_rec *rec;

	if (!pkt)
		return ab_fail(r, "out of memory");
	pkt[0] = 0x30;
	pkt[1] = (uint8_t)(0x80 | (rl & 0x7f));
	pkt[2] = (uint8_t)(0x80 | ((rl >> 7) & 0x7f));
	pkt[3] = (uint8_t)(rl >> 14);
	pkt[4] = 0;
	pkt[5] = 7;
	memcpy(pkt + 6, "ab/half", 7);
	memset(pkt + 13, 'h', len - 13);
	p.spec[p.nspec++] = (struct ab_spec){ "1 MiB unfinished", TR_PLAIN, BH_CONNECT_SEND, n, pkt,
					      len };
	p.deadline_ms = pt * 1000 + 30000;
	snprintf(r->params, sizeof(r->params),
		 "%d connections x 1 MiB of an unfinished PUBLISH, keepalive 0; packet_timeout %d s, "
		 "max_partial_bytes %ld MiB", n, pt, cap / MIB);
	if (!(rec = ab_engine_run(o, &p, &total))) {
		free(pkt);
		return ab_fail(r, "engine failed");
	}
	ab_tally(rec, total, 0, &t);
	ab_tally_say(p.spec[0].label, &t);
	check_all_closed(r, "half", &t);
	if (t.connack != t.n)
		ab_fail(r, "%zu of %zu got a CONNACK", t.connack, t.n);
	for (size_t i = 0; i < total; i++) {
		if (rec[i].end != END_PEER || !rec[i].t_first)
			continue;
		if (rec[i].t_end - rec[i].t_first < pt * 1000 - 500)
			by_cap++;
		else
			by_timeout++;
	}
	if (t.first_max > pt * 1000 + 1500)
		ab_fail(r, "a half packet was held %.1f s > packet_timeout + 1.5 s",
			t.first_max / 1000.0);
	long growth = ab_gw_kb(o->pid, "VmHWM") - r->rss_base_kb;
	long bound = cap / 1024 + cap / 4096 + 32 * 1024;
	if (growth > bound)
		ab_fail(r, "peak RSS grew %ld MiB > %ld MiB (max_partial_bytes + 25%% + 32 MiB)",
			growth / 1024, bound / 1024);
	double held = ab_metric(o, "kafkagate_partial_bytes");
	double tmo = ab_metric(o, "kafkagate_packet_timeouts_total");
	double refused = ab_metric(o, "kafkagate_partial_refused_total");
	ab_say("  metrics: partial_bytes=%.0f packet_timeouts_total=%.0f partial_refused_total=%.0f",
	       held, tmo, refused);
	if (held > 0)
		ab_fail(r, "kafkagate_partial_bytes is %.0f after every connection closed", held);
	if (r->verdict == AB_PASS)
		ab_note(r, "%.0f MiB sent; peak RSS +%.0f MiB; %zu closed by max_partial_bytes, %zu by "
			   "packet_timeout (longest %.1f s after the first byte)",
			(double)n * (double)len / MIB, growth / 1024.0, by_cap, by_timeout,
			t.first_max / 1000.0);
	ab_recs_free(rec, total);
	free(pkt);
	return 0;
}

const struct ab_case ab_conn_cases[] = {
	{ "slowloris", slow_limits, slow_run, LEGIT_CYCLE, false },
	{ "huge-length", huge_limits, huge_run, LEGIT_CYCLE, false },
	{ "half-packets", half_limits, half_run, LEGIT_CYCLE, false },
	{ NULL },
};
