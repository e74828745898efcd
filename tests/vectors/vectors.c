/*
 * vectors.c - runs the byte-level MQTT conformance vectors against the broker.
 *
 * usage: vectors DIR OVERRIDES [--filter SUBSTR] [--verbose] [--jobs N]
 *                [--recv-timeout MS] [--close-timeout MS] [--mqtt5]
 *
 * DIR holds the JSON vectors (format and runner behaviour: DIR/README.md).
 * The broker is started once with gw_start() ($KG_BIN, or KG_BROKER=mosquitto).
 * MQTT 5 tests are skipped unless --mqtt5 is given or KG_MQTT5 is set.
 * The last line is "vectors: N passed, N failed, N skipped"; the exit code is
 * 1 if a test failed or the broker did not stop cleanly, 2 on bad input.
 *
 * OVERRIDES lines: "PATTERN ACTION REASON", ACTION being skip, expect-close,
 * expect-open, "reason XX", "refuse XX", "recv OLD=NEW" or connack-props;
 * PATTERN (a full
 * test name or a substring of one, spaces allowed) is everything before the
 * first ACTION word. '#' starts a comment line. The first matching line wins.
 * expect-close also accepts a close in place of bytes the vector expects (a
 * prefix of them may arrive first). "reason XX" (hex) expects DISCONNECT
 * reason code XX wherever the vector expects a DISCONNECT with another reason
 * code (E0 01 YY). "refuse XX": where the vector expects other bytes,
 * DISCONNECT XX followed by the close ends the test as passed (kafkagate
 * refuses what mosquitto accepts). "recv OLD=NEW" (hex, no spaces) expects NEW in every recv step
 * that expects exactly OLD. connack-props accepts any CONNACK with the flags
 * and reason code the vector expects, whatever its properties (a server
 * announces its own limits there).
 *
 * Tests run on --jobs threads, but only those that cannot disturb each other:
 * a test that subscribes, publishes or sends its own CONNECT (client ids,
 * wills, retained messages) runs in one serial lane in file order, as the
 * vectors were written for. Tests from ZZ-* files check that the broker is
 * still alive, so they run alone at the end.
 *
 * The runner's own CONNECT (clean, keepalive 60) uses the test's full name as
 * client id, except at level 3 where ids are limited to 23 bytes: there it is
 * "vectors-INDEX". The helper that publishes is "vectors-helper-INDEX".
 */
#include "gw.h"
#include "rawmqtt.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { STEP_SEND, STEP_RECV, STEP_PUBLISH };
enum { OV_NONE, OV_SKIP, OV_CLOSE, OV_OPEN, OV_REASON, OV_REFUSE, OV_RECV, OV_CONNACK };
enum { LANE_PARALLEL, LANE_SERIAL, LANE_LAST };
enum { V_PASS = 1, V_FAIL, V_SKIP, V_FILTERED };

static const char *const ov_names[] = { "", "skip", "expect-close", "expect-open", "reason",
					"refuse", "recv", "connack-props" };

struct vstep {
	int type;
	uint8_t *bytes;       /* send/recv */
	size_t len;
	char *topic;          /* publish */
	char *payload;
	int qos;
};

struct override {
	char *pattern;
	int action;
	uint8_t rc;           /* OV_REASON, OV_REFUSE: a DISCONNECT reason code */
	uint8_t *old, *new;   /* OV_RECV: expected bytes and their replacement */
	size_t old_len, new_len;
	char *reason;
	int line;
	bool used;
};

struct vtest {
	char *name;           /* FILE/group/name, " (N)" added to repeats */
	char *base;           /* FILE/group/name */
	int ver;
	bool connect;
	bool expect_disconnect;
	int lane;
	struct override *ov;  /* NULL or borrowed from the override list */
	struct vstep *steps;
	size_t nsteps;
	int verdict;
	char *why;            /* failure or skip reason */
};

struct vrun {
	struct vtest *t;
	size_t n, cap;
	struct override *ov;
	size_t nov;
	int port, recv_ms, close_ms, jobs;
	bool mqtt5, verbose;
	const char *filter;
	size_t *par;          /* indices of LANE_PARALLEL tests */
	size_t npar;
	atomic_size_t next;   /* next entry of par to take */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vectors: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die("out of memory");
	return p;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		die("out of memory");
	return p;
}

static void verdict(struct vtest *t, int v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void verdict(struct vtest *t, int v, const char *fmt, ...)
{
	va_list ap;

	t->verdict = v;
	if (!fmt)
		return;
	va_start(ap, fmt);
	if (vasprintf(&t->why, fmt, ap) < 0)
		t->why = NULL;
	va_end(ap);
}

/* True when a send payload holds a packet that touches state shared between
 * connections: CONNECT (client ids, wills), PUBLISH or SUBSCRIBE. */
static bool touches_shared(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t type = p[i] >> 4;
		size_t rem = 0, j = i + 1;

		if (type == 1 || type == 3 || type == 8)
			return true;
		for (int shift = 0; j < len && shift < 28; shift += 7) {
			rem |= (size_t)(p[j] & 0x7f) << shift;
			if (!(p[j++] & 0x80))
				break;
		}
		i = j + rem;
	}
	return false;
}

static const char *jstr(json_t *o, const char *key, const char *where)
{
	const char *s = json_string_value(json_object_get(o, key));

	if (!s)
		die("%s: \"%s\" missing or not a string", where, key);
	return s;
}

static bool jbool(json_t *o, const char *key, bool dflt)
{
	json_t *v = json_object_get(o, key);

	return v ? json_is_true(v) : dflt;
}

static void load_step(struct vstep *s, json_t *m, const char *where)
{
	const char *type = jstr(m, "type", where);
	const char *payload = jstr(m, "payload", where);
	int n;

	if (strcmp(type, "publish") == 0) {
		s->type = STEP_PUBLISH;
		s->topic = xstrdup(jstr(m, "topic", where));
		s->payload = xstrdup(payload);
		s->qos = (int)json_integer_value(json_object_get(m, "qos"));
		return;
	}
	if (strcmp(type, "send") == 0)
		s->type = STEP_SEND;
	else if (strcmp(type, "recv") == 0)
		s->type = STEP_RECV;
	else
		die("%s: unknown step type \"%s\"", where, type);
	s->bytes = xcalloc(strlen(payload) / 2 + 1, 1);
	n = raw_hex_decode(payload, s->bytes, strlen(payload) / 2 + 1);
	if (n < 0)
		die("%s: bad hex payload", where);
	s->len = (size_t)n;
}

static void load_test(struct vrun *r, json_t *jt, const char *file, const char *group,
		      bool disabled)
{
	char base[512], where[600];
	struct vtest *t;
	json_t *msgs, *m;
	size_t i, repeat = 1;

	snprintf(base, sizeof(base), "%.*s/%s/%s", (int)(strlen(file) - 5), file, group,
		 jstr(jt, "name", file));
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 2048;
		r->t = realloc(r->t, r->cap * sizeof(*r->t));
		if (!r->t)
			die("out of memory");
	}
	for (i = 0; i < r->n; i++)
		repeat += strcmp(r->t[i].base, base) == 0;
	t = &r->t[r->n++];
	memset(t, 0, sizeof(*t));
	t->base = xstrdup(base);
	if (repeat > 1 && asprintf(&t->name, "%s (%zu)", base, repeat) < 0)
		die("out of memory");
	if (repeat == 1)
		t->name = xstrdup(base);
	snprintf(where, sizeof(where), "%s/%s", file, t->name);
	t->ver = json_object_get(jt, "ver") ? (int)json_integer_value(json_object_get(jt, "ver")) : 4;
	t->connect = jbool(jt, "connect", true);
	t->expect_disconnect = jbool(jt, "expect_disconnect", true);
	t->lane = strncmp(file, "ZZ", 2) == 0 ? LANE_LAST : LANE_PARALLEL;
	msgs = json_object_get(jt, "msgs");
	if (msgs && !json_is_array(msgs))
		die("%s: \"msgs\" is not a list", where);
	t->nsteps = json_array_size(msgs);
	t->steps = xcalloc(t->nsteps, sizeof(*t->steps));
	json_array_foreach(msgs, i, m) {
		load_step(&t->steps[i], m, where);
		if (t->lane == LANE_PARALLEL &&
		    (t->steps[i].type == STEP_PUBLISH ||
		     (t->steps[i].type == STEP_SEND &&
		      touches_shared(t->steps[i].bytes, t->steps[i].len))))
			t->lane = LANE_SERIAL;
	}
	if (r->filter && !strstr(t->name, r->filter))
		t->verdict = V_FILTERED;
	else if (disabled)
		verdict(t, V_SKIP, "group disabled in the data");
	else if (t->ver == 5 && !r->mqtt5)
		verdict(t, V_SKIP, "MQTT 5 not supported yet");
}

static int json_file_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".json") == 0;
}

static void load_dir(struct vrun *r, const char *dir)
{
	struct dirent **names;
	int nf = scandir(dir, &names, json_file_filter, alphasort);

	if (nf < 0)
		die("cannot read %s: %s", dir, strerror(errno));
	for (int f = 0; f < nf; f++) {
		char path[4096];
		json_error_t err;
		json_t *root, *g, *jt;
		size_t gi, ti;

		snprintf(path, sizeof(path), "%s/%s", dir, names[f]->d_name);
		root = json_load_file(path, 0, &err);
		if (!root || !json_is_array(root))
			die("%s:%d: %s", path, err.line, root ? "not a list" : err.text);
		json_array_foreach(root, gi, g) {
			const char *group = jstr(g, "group", path);
			json_t *tests = json_object_get(g, "tests");

			if (!json_is_array(tests))
				die("%s: group \"%s\" has no \"tests\" list", path, group);
			json_array_foreach(tests, ti, jt)
				load_test(r, jt, names[f]->d_name, group, jbool(g, "disable", false));
		}
		json_decref(root);
		free(names[f]);
	}
	free(names);
}

static void load_overrides(struct vrun *r, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	int lineno = 0;

	if (!f)
		die("cannot open overrides %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t"), *tok, *end = NULL;
		int action = OV_NONE;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (*p == '#' || *p == '\0')
			continue;
		for (tok = p; *tok && action == OV_NONE; tok = end + strspn(end, " \t")) {
			end = tok + strcspn(tok, " \t");
			for (int a = OV_SKIP; a <= OV_CONNACK; a++)
				if (tok > p && (size_t)(end - tok) == strlen(ov_names[a]) &&
				    strncmp(tok, ov_names[a], (size_t)(end - tok)) == 0)
					action = a;
		}
		if (action == OV_NONE)
			die("%s:%d: no skip, expect-close, expect-open, reason, refuse, recv or "
			    "connack-props", path, lineno);
		tok = end - strlen(ov_names[action]);
		while (tok > p && (tok[-1] == ' ' || tok[-1] == '\t'))
			tok--;
		*tok = '\0';
		end += strspn(end, " \t");
		unsigned long rc = 0;
		if (action == OV_REASON || action == OV_REFUSE) {
			char *num = end;
			rc = strtoul(num, &end, 16);
			if (end == num || rc < 0x80 || rc > 0xff || (*end != ' ' && *end != '\t'))
				die("%s:%d: %s needs a hex reason code 80..FF", path, lineno,
				    ov_names[action]);
			end += strspn(end, " \t");
		}
		struct override o = { .pattern = xstrdup(p), .action = action, .rc = (uint8_t)rc,
				      .line = lineno };
		if (action == OV_RECV) {
			char *eq, *sp;
			size_t tl = strcspn(end, " \t");
			char *tok2 = strndup(end, tl);
			if (!tok2)
				die("out of memory");
			eq = strchr(tok2, '=');
			if (!eq)
				die("%s:%d: recv needs OLDHEX=NEWHEX", path, lineno);
			*eq = '\0';
			o.old = xcalloc(strlen(tok2) / 2 + 1, 1);
			o.new = xcalloc(strlen(eq + 1) / 2 + 1, 1);
			int a = raw_hex_decode(tok2, o.old, strlen(tok2) / 2 + 1);
			int b = raw_hex_decode(eq + 1, o.new, strlen(eq + 1) / 2 + 1);
			if (a <= 0 || b <= 0)
				die("%s:%d: recv needs OLDHEX=NEWHEX", path, lineno);
			o.old_len = (size_t)a;
			o.new_len = (size_t)b;
			free(tok2);
			sp = end + tl;
			end = sp + strspn(sp, " \t");
		}
		if (*end == '\0')
			die("%s:%d: a reviewed override needs a reason", path, lineno);
		o.reason = xstrdup(end);
		r->ov = realloc(r->ov, (r->nov + 1) * sizeof(*r->ov));
		if (!r->ov)
			die("out of memory");
		r->ov[r->nov++] = o;
	}
	fclose(f);
}

static void apply_overrides(struct vrun *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct vtest *t = &r->t[i];

		if (t->verdict == V_FILTERED)
			continue;
		for (size_t o = 0; o < r->nov && !t->ov; o++)
			if (strstr(t->name, r->ov[o].pattern))
				t->ov = &r->ov[o];
		if (!t->ov)
			continue;
		t->ov->used = true;
		if (t->ov->action == OV_SKIP && !t->verdict)
			verdict(t, V_SKIP, "override: %s", t->ov->reason);
	}
	for (size_t o = 0; o < r->nov; o++)
		if (!r->ov[o].used && !r->filter)
			fprintf(stderr, "vectors: warning: override line %d matches no test: %s\n",
				r->ov[o].line, r->ov[o].pattern);
}

/* Says why raw_recv_exact() returned fewer bytes than asked, from its errno. */
static const char *recv_why(int err, int ms, char *why, size_t cap)
{
	if (err == ETIMEDOUT)
		snprintf(why, cap, " (timeout after %d ms)", ms);
	else if (err == EPIPE)
		snprintf(why, cap, " (connection closed)");
	else
		snprintf(why, cap, " (%s)", strerror(err));
	return why;
}

static int helper_publish(struct vrun *r, size_t idx, const struct vstep *s)
{
	char id[32];
	uint8_t rc = 0xff;
	int fd, ret;

	snprintf(id, sizeof(id), "vectors-helper-%zu", idx);
	fd = raw_mqtt_connect(r->port, id, true, 60, &rc, NULL);
	if (fd < 0)
		return -1;
	ret = rc == 0 ? raw_mqtt_publish(fd, s->topic, s->payload, strlen(s->payload),
					 (uint8_t)s->qos, false, 1) : -1;
	close(fd);
	return ret;
}

/* The bytes a recv step expects (*len of them): the vector's; under a
 * reason override a DISCONNECT (E0 01 YY) with the override's reason code;
 * under a recv override the replacement of the bytes it names. */
static const uint8_t *expected(const struct vtest *t, const struct vstep *s, uint8_t *tmp,
			       size_t *len)
{
	const struct override *o = t->ov;

	*len = s->len;
	if (o && o->action == OV_REASON && s->len == 3 && s->bytes[0] == 0xE0 &&
	    s->bytes[1] == 1) {
		memcpy(tmp, s->bytes, 3);
		tmp[2] = o->rc;
		return tmp;
	}
	if (o && o->action == OV_RECV && s->len == o->old_len &&
	    memcmp(s->bytes, o->old, s->len) == 0) {
		*len = o->new_len;
		return o->new;
	}
	return s->bytes;
}

/* A connack-props recv step: one whole CONNACK with the expected flags and
 * reason code. Returns 0 if it came, -1 (with the verdict) if not. */
static int recv_connack(struct vrun *r, struct vtest *t, size_t i, int fd,
			const struct vstep *s)
{
	uint8_t got[512];
	char want[512], have[512];
	int n = raw_recv_packet(fd, got, sizeof(got), r->recv_ms);

	if (n >= 4 && got[0] == 0x20 && got[2] == s->bytes[2] && got[3] == s->bytes[3])
		return 0;
	verdict(t, V_FAIL, "step %zu recv: expected a CONNACK like %s, got %s", i + 1,
		raw_hex_encode(s->bytes, s->len, want, sizeof(want)),
		n > 0 ? raw_hex_encode(got, (size_t)n, have, sizeof(have)) : "nothing");
	return -1;
}

/* Runs steps; returns 1 if the connection was seen closed (allowed by an
 * expect-close override), 0 to go on with the final check, -1 on failure. */
static int run_steps(struct vrun *r, struct vtest *t, size_t idx, int fd)
{
	bool may_close = t->ov && t->ov->action == OV_CLOSE;

	for (size_t i = 0; i < t->nsteps; i++) {
		struct vstep *s = &t->steps[i];
		char want[512], have[512], why[64];
		uint8_t *got, tmp[3];
		const uint8_t *exp;
		size_t len;
		int n, err;

		if (s->type == STEP_SEND) {
			raw_send(fd, s->bytes, s->len); /* a close shows in later steps */
			continue;
		}
		if (s->type == STEP_PUBLISH) {
			if (helper_publish(r, idx, s) < 0) {
				verdict(t, V_FAIL, "step %zu: helper could not publish to %s",
					i + 1, s->topic);
				return -1;
			}
			continue;
		}
		if (t->ov && t->ov->action == OV_CONNACK && s->len >= 4 && s->bytes[0] == 0x20) {
			if (recv_connack(r, t, i, fd, s) < 0)
				return -1;
			continue;
		}
		exp = expected(t, s, tmp, &len);
		got = xcalloc(len, 1);
		n = raw_recv_exact(fd, got, len, r->recv_ms);
		err = errno;
		if ((size_t)n == len && memcmp(got, exp, len) == 0) {
			free(got);
			continue;
		}
		if ((size_t)n < len && err != ETIMEDOUT && may_close &&
		    memcmp(got, exp, (size_t)n) == 0) {
			free(got);
			return 1;
		}
		/* refuse XX: DISCONNECT XX and the close in place of these bytes */
		if (t->ov && t->ov->action == OV_REFUSE && n == 3 && got[0] == 0xE0 &&
		    got[1] == 1 && got[2] == t->ov->rc &&
		    ((size_t)n < len ? err == EPIPE : raw_closed_within(fd, r->close_ms))) {
			free(got);
			return 1;
		}
		verdict(t, V_FAIL, "step %zu recv: expected %s, got %s%s", i + 1,
			raw_hex_encode(exp, len, want, sizeof(want)),
			n > 0 ? raw_hex_encode(got, (size_t)n, have, sizeof(have)) : "nothing",
			(size_t)n < len ? recv_why(err, r->recv_ms, why, sizeof(why)) : "");
		free(got);
		return -1;
	}
	return 0;
}

/* The final check of a test that expects the connection to stay open. */
static void check_open(struct vrun *r, struct vtest *t, int fd)
{
	char have[64], why[64];
	uint8_t pong[2];
	int n, err;

	if (raw_send(fd, "\xC0\x00", 2) < 0) {
		verdict(t, V_FAIL, "expected the connection open, but PINGREQ failed: %s",
			strerror(errno));
		return;
	}
	n = raw_recv_exact(fd, pong, 2, r->recv_ms);
	err = errno;
	if (n == 2 && pong[0] == 0xD0 && pong[1] == 0)
		t->verdict = V_PASS;
	else
		verdict(t, V_FAIL, "expected the connection open, but PINGREQ got %s%s",
			n > 0 ? raw_hex_encode(pong, (size_t)n, have, sizeof(have)) : "nothing",
			n < 2 ? recv_why(err, r->recv_ms, why, sizeof(why)) : "");
}

static void run_test(struct vrun *r, size_t idx)
{
	struct vtest *t = &r->t[idx];
	struct raw_connect c = { .level = (uint8_t)t->ver, .client_id = t->name,
				 .clean = true, .keepalive = 60 };
	bool expect_close = t->expect_disconnect;
	char short_id[24];
	uint8_t rc = 0;
	int fd, st;

	if (t->ver == 3) {
		snprintf(short_id, sizeof(short_id), "vectors-%zu", idx);
		c.client_id = short_id;
	}

	if (t->ov && (t->ov->action == OV_CLOSE || t->ov->action == OV_OPEN))
		expect_close = t->ov->action == OV_CLOSE;
	fd = raw_connect_tcp(r->port);
	if (fd < 0) {
		verdict(t, V_FAIL, "TCP connect to port %d failed: %s", r->port, strerror(errno));
		return;
	}
	if (t->connect && raw_mqtt_handshake(fd, &c, &rc, NULL, r->recv_ms) < 0)
		verdict(t, V_FAIL, "no CONNACK for the runner's CONNECT (level %d)", t->ver);
	else if (t->connect && rc != 0)
		verdict(t, V_FAIL, "CONNACK return code %u for the runner's CONNECT", rc);
	else if ((st = run_steps(r, t, idx, fd)) != 0)
		t->verdict = st > 0 ? V_PASS : V_FAIL;
	else if (expect_close)
		verdict(t, raw_closed_within(fd, r->close_ms) ? V_PASS : V_FAIL,
			"connection still open %d ms after the last step", r->close_ms);
	else
		check_open(r, t, fd);
	if (t->verdict == V_PASS) {
		free(t->why);
		t->why = NULL;
	}
	close(fd);
}

static bool runnable(const struct vtest *t, int lane)
{
	return t->lane == lane && !t->verdict;
}

static void *worker(void *arg)
{
	struct vrun *r = arg;
	size_t k;

	while ((k = atomic_fetch_add(&r->next, 1)) < r->npar)
		run_test(r, r->par[k]);
	return NULL;
}

/* The serial lane runs on its own thread, then helps with the parallel pool. */
static void *serial_worker(void *arg)
{
	struct vrun *r = arg;

	for (size_t i = 0; i < r->n; i++)
		if (runnable(&r->t[i], LANE_SERIAL))
			run_test(r, i);
	return worker(arg);
}

static void run_all(struct vrun *r)
{
	pthread_t th[256];
	int jobs = r->jobs;

	r->par = xcalloc(r->n, sizeof(*r->par));
	for (size_t i = 0; i < r->n; i++)
		if (runnable(&r->t[i], LANE_PARALLEL))
			r->par[r->npar++] = i;
	for (int j = 0; j < jobs; j++)
		if (pthread_create(&th[j], NULL, j ? worker : serial_worker, r) != 0)
			die("cannot start thread %d", j);
	for (int j = 0; j < jobs; j++)
		pthread_join(th[j], NULL);
	for (size_t i = 0; i < r->n; i++)
		if (runnable(&r->t[i], LANE_LAST))
			run_test(r, i);
}

static int report(struct vrun *r)
{
	size_t pass = 0, fail = 0, skip = 0;

	for (size_t i = 0; i < r->n; i++) {
		struct vtest *t = &r->t[i];
		const char *ov = t->ov && t->ov->action != OV_SKIP ? ov_names[t->ov->action] : NULL;

		pass += t->verdict == V_PASS;
		fail += t->verdict == V_FAIL;
		skip += t->verdict == V_SKIP;
		if (t->verdict == V_FILTERED)
			continue;
		if (t->verdict == V_FAIL)
			printf("FAIL %s: %s%s%s%s\n", t->name, t->why ? t->why : "?",
			       ov ? " [override " : "", ov ? ov : "", ov ? "]" : "");
		else if (r->verbose)
			printf("%s %s%s%s\n", t->verdict == V_PASS ? "PASS" : "SKIP", t->name,
			       t->why ? ": " : "", t->why ? t->why : "");
	}
	for (size_t i = 0; i < r->n; i++) {
		size_t same = 0;
		bool first = true;

		if (r->t[i].verdict != V_SKIP)
			continue;
		for (size_t j = 0; j < r->n; j++)
			if (r->t[j].verdict == V_SKIP && strcmp(r->t[j].why, r->t[i].why) == 0) {
				first = first && j >= i;
				same++;
			}
		if (first)
			printf("vectors: %zu skipped: %s\n", same, r->t[i].why);
	}
	printf("vectors: %zu passed, %zu failed, %zu skipped\n", pass, fail, skip);
	return fail ? 1 : 0;
}

static void vrun_release(struct vrun *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct vtest *t = &r->t[i];

		for (size_t k = 0; k < t->nsteps; k++) {
			free(t->steps[k].bytes);
			free(t->steps[k].topic);
			free(t->steps[k].payload);
		}
		free(t->steps);
		free(t->name);
		free(t->base);
		free(t->why);
	}
	for (size_t o = 0; o < r->nov; o++) {
		free(r->ov[o].pattern);
		free(r->ov[o].reason);
		free(r->ov[o].old);
		free(r->ov[o].new);
	}
	free(r->t);
	free(r->ov);
	free(r->par);
}

static size_t selected(const struct vrun *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->t[i].verdict != V_FILTERED;
	return n;
}

static int opt_int(int argc, char **argv, int *i, int lo, int hi)
{
	char *end;
	long v;

	if (++*i >= argc)
		die("%s needs a value", argv[*i - 1]);
	v = strtol(argv[*i], &end, 10);
	if (*end || v < lo || v > hi)
		die("%s: %s is not in %d..%d", argv[*i - 1], argv[*i], lo, hi);
	return (int)v;
}

int main(int argc, char **argv)
{
	struct vrun r = { .recv_ms = 2000, .close_ms = 1500, .jobs = 16 };
	struct timespec t0, t1;
	struct stat st;
	struct gw g = { 0 };
	int rc, stop, early;
	bool died;

	r.mqtt5 = getenv("KG_MQTT5") && *getenv("KG_MQTT5");
	if (argc < 3)
		die("usage: vectors DIR OVERRIDES [--filter SUBSTR] [--verbose] [--jobs N] "
		    "[--recv-timeout MS] [--close-timeout MS] [--mqtt5]");
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
			r.filter = argv[++i];
		else if (strcmp(argv[i], "--verbose") == 0)
			r.verbose = true;
		else if (strcmp(argv[i], "--mqtt5") == 0)
			r.mqtt5 = true;
		else if (strcmp(argv[i], "--jobs") == 0)
			r.jobs = opt_int(argc, argv, &i, 1, 256);
		else if (strcmp(argv[i], "--recv-timeout") == 0)
			r.recv_ms = opt_int(argc, argv, &i, 1, 600000);
		else if (strcmp(argv[i], "--close-timeout") == 0)
			r.close_ms = opt_int(argc, argv, &i, 1, 600000);
		else
			die("unknown option %s", argv[i]);
	}
	if (stat(argv[1], &st) < 0 || !S_ISDIR(st.st_mode)) {
		printf("vectors: SKIPPED: %s not found (conformance vectors absent)\n", argv[1]);
		return 0;
	}
	load_overrides(&r, argv[2]);
	load_dir(&r, argv[1]);
	apply_overrides(&r);
	if (gw_start(&g, NULL) < 0) {
		printf("vectors: the broker did not start\n");
		return 1;
	}
	r.port = g.port;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run_all(&r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	early = gw_wait_exit(&g, 0);
	died = g.pid == 0;
	stop = gw_stop(&g);
	printf("vectors: %zu tests in %.1f s on port %d, %d jobs\n", selected(&r),
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       r.port, r.jobs);
	if (died)
		printf("vectors: the broker exited during the run with status %d"
		       " (KG_KEEP=1 keeps its log)\n", early);
	else if (stop != 0)
		printf("vectors: the broker exited with status %d when stopped\n", stop);
	if (died)
		stop = 1;
	rc = report(&r);
	fflush(stdout);
	vrun_release(&r);
	return rc || stop != 0 ? 1 : 0;
}
