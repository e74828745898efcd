/*
 * ab_flood.c - abuse by numbers of connections: a CONNECT flood past
 * max_connect_rate, the per-address limit, and more connections than the
 * gateway has descriptors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abuse.h"

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
	ab_tally_say("flood", &t);
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
	ab_tally_say(src, &t);
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
		 "max_connections_per_address %d: %d held from %s, then %d again; %d from 127.0.0.1",
		 lim, 3 * lim, o->host_addr ? o->host_addr : "-", lim, 3 * lim);
	/* Loopback only: run.sh starts this gateway with
	 * KAFKAGATE_TEST_COUNT_LOOPBACK=1, so that 127.0.0.3 counts like a
	 * remote address while 127.0.0.1 stays exempt. */
	if (!o->host_addr || o->host_port <= 0) {
		r->verdict = AB_SKIP;
		snprintf(r->reason, sizeof(r->reason), "no --host-addr/--host-port given");
		return 0;
	}
	ok = addr_round(o, o->host_addr, o->host, o->host_port, 3 * lim, &refused);
	if (ok != lim || refused != (size_t)(2 * lim))
		ab_fail(r, "first round: %ld accepted (want %d), %zu refused (want %d)", ok, lim,
			refused, 2 * lim);
	ab_sleep_ms(1000); /* the gateway sees the closes and releases the counts */
	ok = addr_round(o, o->host_addr, o->host, o->host_port, lim, &refused);
	if (ok != lim)
		ab_fail(r, "after release: %ld of %d accepted (counts not released?)", ok, lim);
	ok = addr_round(o, "127.0.0.1", o->host, o->port, 3 * lim, &refused);
	if (ok != 3 * lim)
		ab_fail(r, "127.0.0.1: %ld of %d accepted (it is meant to be exempt)", ok,
			3 * lim);
	if (r->verdict == AB_PASS)
		ab_note(r, "exactly %d of %d accepted from %s, all %d after release; "
			   "127.0.0.1 exempt (%d of %d)", lim, 3 * lim, o->host_addr, lim, 3 * lim,
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
	ab_tally_say("hold", &t);
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

const struct ab_case ab_flood_cases[] = {
	{ "connect-flood", flood_limits, flood_run, LEGIT_CYCLE, false },
	{ "per-address", addr_limits, addr_run, LEGIT_CYCLE, false },
	{ "fd-exhaustion", fd_limits, fd_run, LEGIT_PERSIST, false },
	{ NULL },
};
