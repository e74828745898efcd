/*
 * ab_conn.c - abuse at the connection level: slowloris before CONNECT (plain,
 * TLS, WebSocket), huge remaining lengths, half-received packets, connect
 * floods past max_connect_rate, the per-address limit, and more connections
 * than the gateway has descriptors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse.h"

#define MIB (1024L * 1024L)

static void say_tally(const char *label, const struct ab_tally *t)
{
	ab_say("  %-22s n=%zu closed_by_gw=%zu self=%zu open=%zu conn_err=%zu err=%zu connack=%zu "
	       "life=%.2f..%.2f s after_send_max=%lld ms",
	       label, t->n, t->peer, t->self, t->open, t->conn_err, t->error, t->connack,
	       t->life_min / 1000.0, t->life_max / 1000.0, (long long)t->after_max);
}

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
		say_tally(p.spec[s].label, &t);
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
		say_tally(p.spec[s].label, &t);
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
	say_tally(p.spec[0].label, &t);
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

/* ---- connect flood past max_connect_rate ---------------------------------------------- */

static int flood_rate(bool full) { return full ? 1000 : 200; }

static void flood_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_connections = 1000000; max_connect_rate = %d;", flood_rate(full));
}

static int flood_run(const struct ab_opts *o, struct ab_result *r)
{
	int rate = flood_rate(o->full), secs = o->full ? 8 : 3;
	struct ab_plan p = { .rate = 5.0 * rate, .procs = 1 };
	double rej0 = ab_metric(o, "kafkagate_connections_rejected_total");
	size_t total, accepted = 0, refused = 0;
	int64_t first = INT64_MAX, last = 0;
	struct ab_tally t;
	struct ab_rec *rec;

	p.spec[p.nspec++] = (struct ab_spec){ "flood", TR_PLAIN, BH_CONNECT_QUIT, 5 * rate * secs,
					      NULL, 0 };
	p.deadline_ms = secs * 1000 + 30000;
	snprintf(r->params, sizeof(r->params),
		 "%d CONNECTs at %d/s for %d s against max_connect_rate %d/s", 5 * rate * secs,
		 5 * rate, secs, rate);
	if (!(rec = ab_engine_run(o, &p, &total)))
		return ab_fail(r, "engine failed");
	ab_tally(rec, total, 0, &t);
	say_tally("flood", &t);
	for (size_t i = 0; i < total; i++) {
		if (rec[i].connack == 1)
			accepted++;
		else if (rec[i].end == END_PEER)
			refused++;
		if (rec[i].t_conn && rec[i].t_conn < first)
			first = rec[i].t_conn;
		if (rec[i].t_conn > last)
			last = rec[i].t_conn;
	}
	/* Windows are calendar seconds: a span of S s touches at most S + 2. */
	double span = last > first ? (double)(last - first) / 1000.0 : 0;
	size_t most = (size_t)rate * (size_t)(span + 2);
	if (accepted > most)
		ab_fail(r, "%zu accepted in %.1f s: more than %d/s allows (%zu)", accepted, span, rate,
			most);
	if (accepted < (size_t)rate * (size_t)secs / 4)
		ab_fail(r, "only %zu accepted: the limit refused more than it should", accepted);
	if (refused == 0)
		ab_fail(r, "nothing refused");
	if (t.open || t.conn_err || t.error)
		ab_fail(r, "%zu unanswered, %zu connect errors, %zu errors (errno %d)", t.open,
			t.conn_err, t.error, t.first_err);
	double rej = ab_metric(o, "kafkagate_connections_rejected_total") - rej0;
	ab_say("  accepted=%zu refused=%zu span=%.2f s rejected_total+=%.0f", accepted, refused, span,
	       rej);
	if (r->verdict == AB_PASS)
		ab_note(r, "%zu accepted (at most %zu), %zu refused at accept (metric +%.0f)", accepted,
			most, refused, rej);
	ab_recs_free(rec, total);
	return 0;
}

/* ---- per-address limit ---------------------------------------------------------------- */

static int addr_max(bool full) { return full ? 1000 : 50; }

static void addr_limits(bool full, char *out, size_t cap, long *nofile)
{
	(void)nofile;
	snprintf(out, cap, "max_connections = 1000000; max_connections_per_address = %d; "
			   "max_connect_rate = 0;", addr_max(full));
}

/* Holds want connections from src to dst:port; returns how many got
 * CONNACK 0, and *refused those closed without one. -1 on an engine error. */
static long addr_round(const struct ab_opts *o, const char *src, const char *dst, int port,
		       int want, size_t *refused)
{
	struct ab_plan p = { .rate = 2000, .src_fixed = src, .dst = dst, .dst_port = port,
			     .deadline_ms = 30000 };
	struct ab_tally t;
	struct ab_rec *rec;
	size_t total;
	long ok;

	p.spec[p.nspec++] = (struct ab_spec){ "hold", TR_PLAIN, BH_CONNECT_HOLD, want, NULL, 0 };
	if (!(rec = ab_engine_run(o, &p, &total)))
		return -1;
	ab_tally(rec, total, 0, &t);
	say_tally(src, &t);
	ok = 0;
	*refused = 0;
	for (size_t i = 0; i < total; i++) {
		ok += rec[i].connack == 1;
		*refused += rec[i].connack == 0 && rec[i].end == END_PEER;
	}
	ab_recs_free(rec, total);
	return ok;
}

static int addr_run(const struct ab_opts *o, struct ab_result *r)
{
	int lim = addr_max(o->full);
	size_t refused;
	long ok;

	snprintf(r->params, sizeof(r->params),
		 "max_connections_per_address %d: %d held from %s, then %d again; %d from 127.0.0.2",
		 lim, 3 * lim, o->host_addr ? o->host_addr : "-", lim, 3 * lim);
	if (!o->host_addr || o->host_port <= 0) {
		r->verdict = AB_SKIP;
		snprintf(r->reason, sizeof(r->reason),
			 "no non-loopback local address: 127/8 and ::1 peers are exempt from the "
			 "limit (net.c sets loopback, listener_admit skips them)");
		return 0;
	}
	ok = addr_round(o, o->host_addr, o->host_addr, o->host_port, 3 * lim, &refused);
	if (ok != lim || refused != (size_t)(2 * lim))
		ab_fail(r, "first round: %ld accepted (want %d), %zu refused (want %d)", ok, lim,
			refused, 2 * lim);
	ab_sleep_ms(1000); /* the gateway sees the closes and releases the counts */
	ok = addr_round(o, o->host_addr, o->host_addr, o->host_port, lim, &refused);
	if (ok != lim)
		ab_fail(r, "after release: %ld of %d accepted (counts not released?)", ok, lim);
	ok = addr_round(o, "127.0.0.2", o->host, o->port, 3 * lim, &refused);
	if (ok != 3 * lim)
		ab_fail(r, "127.0.0.2: %ld of %d accepted (loopback is meant to be exempt)", ok,
			3 * lim);
	if (r->verdict == AB_PASS)
		ab_note(r, "exactly %d of %d accepted from %s, all %d after release; loopback "
			   "127.0.0.2 exempt (%d of %d)", lim, 3 * lim, o->host_addr, lim, 3 * lim,
			3 * lim);
	return 0;
}

/* ---- descriptor exhaustion ---------------------------------------------------------------- */

static void fd_limits(bool full, char *out, size_t cap, long *nofile)
{
	*nofile = full ? 0 : 1024;
	snprintf(out, cap, "max_connections = 1000000; max_connect_rate = 0;");
}

struct fd_hold {
	const struct ab_opts *o;
	int fds;
	long cpu_ms;
	bool alive;
};

static void fd_on_hold(void *ud)
{
	struct fd_hold *h = ud;
	long c0 = ab_gw_cpu_ms(h->o->pid);

	h->fds = ab_gw_fds(h->o->pid);
	ab_sleep_ms(2000);
	h->cpu_ms = (ab_gw_cpu_ms(h->o->pid) - c0) / 2;
	h->alive = ab_gw_alive(h->o->pid);
}

static int fd_run(const struct ab_opts *o, struct ab_result *r)
{
	long nofile = ab_gw_nofile(o->pid);
	int over = o->full ? 2000 : 500, spare0 = ab_gw_fds_on(o->pid, "/dev/null"), spare1;
	struct fd_hold h = { .o = o };
	struct ab_plan p = { .rate = o->full ? 4000 : 2000, .on_hold = fd_on_hold, .ud = &h };
	size_t total, ok = 0, refused = 0;
	struct ab_tally t;
	struct ab_cli cl;
	struct ab_rec *rec;
	uint8_t rc = 0xff;

	if (nofile <= 0)
		return ab_fail(r, "cannot read the gateway's open-file limit");
	int n = (int)nofile + over;
	p.spec[p.nspec++] = (struct ab_spec){ "hold", TR_PLAIN, BH_CONNECT_HOLD, n, NULL, 0 };
	p.deadline_ms = (int)(n * 1000.0 / p.rate) + 30000;
	snprintf(r->params, sizeof(r->params),
		 "%d connections held against a gateway limited to %ld descriptors", n, nofile);
	if (!(rec = ab_engine_run(o, &p, &total)))
		return ab_fail(r, "engine failed");
	ab_tally(rec, total, 0, &t);
	say_tally("hold", &t);
	for (size_t i = 0; i < total; i++) {
		ok += rec[i].connack == 1;
		refused += rec[i].connack == 0 && rec[i].end == END_PEER;
	}
	ab_say("  while held: gateway fds=%d cpu=%ld ms/s alive=%d; %zu served, %zu shed", h.fds,
	       h.cpu_ms, h.alive, ok, refused);
	if (!h.alive)
		ab_fail(r, "the gateway died at its descriptor limit");
	if (ok >= (size_t)nofile)
		ab_fail(r, "%zu served with only %ld descriptors?", ok, nofile);
	if (refused < (size_t)over)
		ab_fail(r, "only %zu shed of the %d over the limit", refused, over);
	if (t.open)
		ab_fail(r, "%zu connections never answered (left in the accept queue)", t.open);
	if (t.conn_err || t.error)
		ab_fail(r, "%zu connect errors, %zu errors (errno %d)", t.conn_err, t.error,
			t.first_err);
	if (h.cpu_ms > 500)
		ab_fail(r, "gateway busy at %ld ms CPU per second while only holding", h.cpu_ms);
	ab_recs_free(rec, total);
	/* Descriptors back: a new connection is served. */
	ab_gw_fds_settle(o->pid, r->fds_before + 1, 10000);
	/* Each worker keeps a spare descriptor (/dev/null) to shed with. */
	spare1 = ab_gw_fds_on(o->pid, "/dev/null");
	ab_say("  spare descriptors (/dev/null): %d before, %d after", spare0, spare1);
	if (spare1 < spare0)
		ab_fail(r, "%d of %d spare descriptors lost: the next exhaustion cannot shed",
			spare0 - spare1, spare0);
	if (ab_cli_open(&cl, o->host, o->port, "ab-fd-after", true, 0, &rc, NULL, 5000) < 0 ||
	    rc != 0)
		ab_fail(r, "no CONNACK 0 for a new connection after the release");
	ab_cli_close(&cl);
	if (r->verdict == AB_PASS)
		ab_note(r, "%zu served, %zu shed at the limit (%d fds), %ld ms CPU/s while held; new "
			   "connections served after", ok, refused, h.fds, h.cpu_ms);
	return 0;
}

const struct ab_case ab_conn_cases[] = {
	{ "slowloris", slow_limits, slow_run, LEGIT_CYCLE, false },
	{ "huge-length", huge_limits, huge_run, LEGIT_CYCLE, false },
	{ "half-packets", half_limits, half_run, LEGIT_CYCLE, false },
	{ "connect-flood", flood_limits, flood_run, LEGIT_CYCLE, false },
	{ "per-address", addr_limits, addr_run, LEGIT_CYCLE, false },
	{ "fd-exhaustion", fd_limits, fd_run, LEGIT_PERSIST, false },
};
const size_t ab_n_conn_cases = sizeof(ab_conn_cases) / sizeof(ab_conn_cases[0]);
