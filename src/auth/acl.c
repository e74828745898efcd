/* acl.c - mosquitto acl_file rules; see acl.h. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/topic.h"

#define ACL_DENY 0 /* access value of a deny rule */

/* How an acl_client's rule is matched (rule_index()): most filters are a
 * literal name or a literal prefix and "/#", matched with one memcmp. */
enum rule_kind {
	RULE_WILD = 0, /* wildcards elsewhere: topic_matches(), after the prefix */
	RULE_EXACT,    /* no wildcard: the topic must equal the filter */
	RULE_TREE,     /* "P/#" (lit = len of P + 1) or "#" (lit = 0) */
};

struct acl_rule {
	char *filter;      /* NUL-terminated; in an acl_client, points into it */
	size_t len;
	const char *owner; /* parse only: user name of the block, NULL anonymous */
	size_t seq;        /* parse only: keeps file order through qsort */
	size_t lit;        /* acl_client only: bytes before the first wildcard level */
	unsigned char access;
	unsigned char kind; /* acl_client only: enum rule_kind */
};

struct acl_user {
	const char *name;
	size_t first, count; /* range in acl->urules */
};

struct acl {
	struct acl_rule *anon, *urules, *patterns;
	size_t nanon, nurules, npatterns;
	struct acl_user *users; /* sorted by name */
	size_t nusers;
	char **names;           /* every user line's name, to free */
	size_t nnames;
};

struct acl_client {
	size_t ndeny, n; /* rule[0..ndeny) deny; rule[ndeny..n) grant */
	struct acl_rule rule[];
	/* then the filters' text */
};

/* A growable array of rules; cap doubles. */
static int push(struct acl_rule **v, size_t *n, const struct acl_rule *r)
{
	if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4...: full */
		struct acl_rule *nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof(**v));
		if (!nv)
			return -1;
		*v = nv;
	}
	(*v)[(*n)++] = *r;
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Next word of [*p, end): its start and length; *p moves past it. */
static size_t word(const char **p, const char *end, const char **w)
{
	while (*p < end && is_space(**p))
		(*p)++;
	*w = *p;
	while (*p < end && !is_space(**p))
		(*p)++;
	return (size_t)(*p - *w);
}

static int access_word(const char *w, size_t n)
{
	static const struct { const char *s; int a; } words[] = {
		{ "read", ACL_READ }, { "write", ACL_WRITE },
		{ "readwrite", ACL_READ | ACL_WRITE }, { "deny", ACL_DENY },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i].s) == n && memcmp(words[i].s, w, n) == 0)
			return words[i].a;
	return -1;
}

/* Parses one line (no '\n', trailing blanks cut) into acl; NULL or what is
 * wrong, written into why. *user is the current block's name. */
static const char *parse_line(struct acl *acl, const char *s, const char *end,
			      const char **user, char *why, size_t whylen)
{
	const char *kw, *w, *f;
	size_t kn = word(&s, end, &kw), wn;

	if (kn == 0 || kw[0] == '#')
		return NULL;
	bool pattern = kn == 7 && memcmp(kw, "pattern", 7) == 0;
	if (kn == 4 && memcmp(kw, "user", 4) == 0) {
		while (s < end && is_space(*s))
			s++;
		if (s == end)
			return "missing user name";
		char *name = util_strdup_n(s, (size_t)(end - s)), **nn = acl->names;
		if (name && (acl->nnames & (acl->nnames - 1)) == 0) /* full at 0, 1, 2, 4... */
			nn = realloc(acl->names, (acl->nnames ? acl->nnames * 2 : 1) * sizeof(*nn));
		if (!name || !nn) {
			free(name);
			return "out of memory";
		}
		acl->names = nn;
		acl->names[acl->nnames++] = name;
		*user = name;
		return NULL;
	}
	if (!pattern && !(kn == 5 && memcmp(kw, "topic", 5) == 0)) {
		snprintf(why, whylen, "unknown keyword '%.*s'", (int)(kn > 40 ? 40 : kn), kw);
		return why;
	}
	int access = ACL_READ | ACL_WRITE;
	wn = word(&s, end, &w);
	while (s < end && is_space(*s))
		s++;
	if (wn == 0)
		return "missing topic filter";
	if (s < end) { /* ACCESS FILTER... */
		if ((access = access_word(w, wn)) < 0) {
			snprintf(why, whylen, "unknown access '%.*s' (read, write, readwrite or deny)",
				 (int)(wn > 40 ? 40 : wn), w);
			return why;
		}
		f = s;
	} else if (access_word(w, wn) >= 0) {
		snprintf(why, whylen, "missing topic filter after '%.*s'", (int)wn, w);
		return why;
	} else {
		f = w;
	}
	struct acl_rule r = { .len = (size_t)(end - f), .access = (unsigned char)access,
			      .owner = *user, .seq = acl->nurules };
	if (!mqtt_topic_filter_valid((const uint8_t *)f, r.len)) {
		snprintf(why, whylen, "invalid topic filter '%.*s'", (int)(r.len > 80 ? 80 : r.len), f);
		return why;
	}
	if (!(r.filter = util_strdup_n(f, r.len)))
		return "out of memory";
	int rc = pattern ? push(&acl->patterns, &acl->npatterns, &r)
		: *user ? push(&acl->urules, &acl->nurules, &r)
		: push(&acl->anon, &acl->nanon, &r);
	if (rc) {
		free(r.filter);
		return "out of memory";
	}
	return NULL;
}

static int by_owner(const void *a, const void *b)
{
	const struct acl_rule *x = a, *y = b;
	int c = strcmp(x->owner, y->owner);
	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Groups the user rules by name and builds the sorted user table. */
static int index_users(struct acl *acl)
{
	if (acl->nurules == 0)
		return 0;
	qsort(acl->urules, acl->nurules, sizeof(*acl->urules), by_owner);
	if (!(acl->users = calloc(acl->nurules, sizeof(*acl->users))))
		return -1;
	struct acl_user *u = NULL;
	for (size_t i = 0; i < acl->nurules; i++) {
		if (!u || strcmp(u->name, acl->urules[i].owner) != 0) {
			u = &acl->users[acl->nusers++];
			u->name = acl->urules[i].owner;
			u->first = i;
		}
		u->count++;
	}
	return 0;
}

struct acl *acl_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct acl *acl = calloc(1, sizeof(*acl));
	const char *user = NULL, *why = NULL;
	char buf[160];
	unsigned line = 0;

	for (size_t pos = 0; acl && pos < len && !why;) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		const char *end = nl ? nl : text + len;
		line++;
		pos = (size_t)(end - text) + 1;
		if (memchr(s, '\0', (size_t)(end - s)))
			why = "NUL byte";
		while (!why && end > s && is_space(end[-1]))
			end--;
		if (!why)
			why = parse_line(acl, s, end, &user, buf, sizeof(buf));
	}
	if (acl && !why && index_users(acl) != 0)
		why = "out of memory";
	if (!acl || why) {
		if (err && errlen)
			snprintf(err, errlen, "%u: %s", line, why ? why : "out of memory");
		acl_free(acl);
		return NULL;
	}
	return acl;
}

struct acl *acl_load(const char *path, char *err, size_t errlen)
{
	char sub[256];
	size_t len;
	char *text = util_read_file(path, ACL_MAX_FILE, &len);

	if (!text) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path,
				 errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
		return NULL;
	}
	struct acl *acl = acl_parse(text, len, sub, sizeof(sub));
	free(text);
	if (!acl && err && errlen)
		snprintf(err, errlen, "%s:%s", path, sub);
	return acl;
}

static void free_rules(struct acl_rule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].filter);
	free(v);
}

void acl_free(struct acl *acl)
{
	if (!acl)
		return;
	free_rules(acl->anon, acl->nanon);
	free_rules(acl->urules, acl->nurules);
	free_rules(acl->patterns, acl->npatterns);
	for (size_t i = 0; i < acl->nnames; i++)
		free(acl->names[i]);
	free(acl->names);
	free(acl->users);
	free(acl);
}

/* ---- filter relations ------------------------------------------------ */

static bool is_wild(const char *f, size_t len)
{
	return len > 0 && (f[0] == '+' || f[0] == '#');
}

/* Whether the filter rest (from pos) is exactly "/#", which also matches
 * the level above it. */
static bool tail_is_hash(const char *f, size_t len, size_t pos)
{
	return len - pos == 2 && f[pos] == '/' && f[pos + 1] == '#';
}

bool acl_filter_overlaps(const char *a, size_t alen, const char *b, size_t blen)
{
	/* A filter starting with a wildcard matches no '$' topic; one starting
	 * with '$' matches only those. */
	if ((is_wild(a, alen) && blen > 0 && b[0] == '$') ||
	    (is_wild(b, blen) && alen > 0 && a[0] == '$'))
		return false;
	for (size_t ai = 0, bi = 0;;) {
		size_t ae = topic_level_end(a, alen, ai), be = topic_level_end(b, blen, bi);
		if (topic_is_hash(a + ai, ae - ai) || topic_is_hash(b + bi, be - bi))
			return true;
		if (!topic_is_plus(a + ai, ae - ai) && !topic_is_plus(b + bi, be - bi) &&
		    (ae - ai != be - bi || memcmp(a + ai, b + bi, ae - ai) != 0))
			return false;
		bool adone = ae == alen, bdone = be == blen;
		if (adone && bdone)
			return true;
		if (adone || bdone)
			return adone ? tail_is_hash(b, blen, be) : tail_is_hash(a, alen, ae);
		ai = ae + 1;
		bi = be + 1;
	}
}

bool acl_filter_covers(const char *o, size_t olen, const char *in, size_t ilen)
{
	if (ilen > 0 && in[0] == '$' && is_wild(o, olen))
		return false;
	for (size_t oi = 0, ii = 0;;) {
		size_t oe = topic_level_end(o, olen, oi), ie = topic_level_end(in, ilen, ii);
		if (topic_is_hash(o + oi, oe - oi))
			return true;
		if (topic_is_hash(in + ii, ie - ii))
			/* inner takes the level above too; only "+/#" first equals "#"
			 * (the level above the first is the empty topic). */
			return ii == 0 && topic_is_plus(o, oe) && tail_is_hash(o, olen, oe);
		if (topic_is_plus(in + ii, ie - ii) && !topic_is_plus(o + oi, oe - oi))
			return false;
		if (!topic_is_plus(o + oi, oe - oi) &&
		    (oe - oi != ie - ii || memcmp(o + oi, in + ii, oe - oi) != 0))
			return false;
		bool odone = oe == olen, idone = ie == ilen;
		if (odone || idone)
			return odone && idone ? true : idone && tail_is_hash(o, olen, oe);
		oi = oe + 1;
		ii = ie + 1;
	}
}

/* ---- per-client rules ------------------------------------------------ */

/* What a value may be put into a rule: 0 never, 1 deny rules only, 2 any.
 * NULL (no user name, no client id) is never. */
static int value_use(const char *v)
{
	if (!v)
		return 0;
	if (strpbrk(v, "+#"))
		return 0; /* a deny with it would match no topic anyway */
	return (!*v || strchr(v, '/')) ? 1 : 2;
}

/* Writes r's filter with %u and %c replaced into out (when not NULL) and
 * returns its length, or (size_t)-1 when the rule does not apply. */
static size_t expand(const struct acl_rule *r, const char *user, const char *cid, char *out)
{
	int need = r->access == ACL_DENY ? 1 : 2;
	size_t n = 0;

	for (size_t i = 0; i < r->len; i++) {
		char k = r->filter[i] == '%' && i + 1 < r->len ? r->filter[i + 1] : 0;
		if (k != 'u' && k != 'c') {
			if (out)
				out[n] = r->filter[i];
			n++;
			continue;
		}
		const char *v = k == 'u' ? user : cid;
		if (value_use(v) < need)
			return (size_t)-1;
		size_t vl = strlen(v);
		if (out)
			memcpy(out + n, v, vl);
		n += vl;
		i++;
	}
	return n;
}

static const struct acl_user *find_user(const struct acl *acl, const char *user)
{
	size_t lo = 0, hi = acl->nusers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(user, acl->users[mid].name);
		if (c == 0)
			return &acl->users[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Sets r->kind and r->lit for rule_matches(). */
static void rule_index(struct acl_rule *r)
{
	size_t pos = 0;

	for (;;) {
		size_t end = topic_level_end(r->filter, r->len, pos);
		if (topic_is_plus(r->filter + pos, end - pos)) {
			r->kind = RULE_WILD;
			break;
		}
		if (topic_is_hash(r->filter + pos, end - pos)) {
			r->kind = RULE_TREE; /* '#' is last in a valid filter */
			break;
		}
		if (end == r->len) {
			r->kind = RULE_EXACT;
			pos = r->len;
			break;
		}
		pos = end + 1;
	}
	r->lit = pos;
}

/* topic_matches(r->filter, topic), faster for the common kinds. */
static bool rule_matches(const struct acl_rule *r, const char *topic, size_t len)
{
	/* Most rules differ from the topic in their first byte. */
	if (r->lit > 1 && len > 0 && r->filter[0] != topic[0])
		return false;
	switch (r->kind) {
	case RULE_EXACT:
		return len == r->len && memcmp(r->filter, topic, len) == 0;
	case RULE_TREE:
		if (r->lit == 0) /* "#": everything but the '$' topics */
			return len == 0 || topic[0] != '$';
		/* "P/#": P itself, or below it (lit - 1 = length of P) */
		return len >= r->lit - 1 && memcmp(r->filter, topic, r->lit - 1) == 0 &&
		       (len == r->lit - 1 || topic[r->lit - 1] == '/');
	default:
		return len >= r->lit && memcmp(r->filter, topic, r->lit) == 0 &&
		       topic_matches(r->filter, r->len, topic, len);
	}
}

struct acl_client *acl_client_new(const struct acl *acl, const char *user, const char *clientid)
{
	const struct acl_rule *fixed = acl->anon;
	size_t nfixed = acl->nanon, n = 0, text = 0, len;

	if (user) {
		const struct acl_user *u = find_user(acl, user);
		fixed = u ? acl->urules + u->first : NULL;
		nfixed = u ? u->count : 0;
	}
	for (size_t i = 0; i < nfixed; i++, n++)
		text += fixed[i].len + 1;
	for (size_t i = 0; i < acl->npatterns; i++)
		if ((len = expand(&acl->patterns[i], user, clientid, NULL)) != (size_t)-1) {
			text += len + 1;
			n++;
		}
	struct acl_client *c = malloc(sizeof(*c) + n * sizeof(c->rule[0]) + text);
	if (!c)
		return NULL;
	char *p = (char *)&c->rule[n];
	c->n = n;
	c->ndeny = 0;
	/* Two passes over the rules: denials to the front, grants after. */
	for (int deny = 1, k = 0; deny >= 0; deny--) {
		for (size_t i = 0; i < nfixed + acl->npatterns; i++) {
			const struct acl_rule *r = i < nfixed ? &fixed[i] : &acl->patterns[i - nfixed];
			if ((r->access == ACL_DENY) != deny)
				continue;
			len = i < nfixed ? r->len : expand(r, user, clientid, NULL);
			if (len == (size_t)-1)
				continue; /* counted as left out above, too */
			if (i < nfixed)
				memcpy(p, r->filter, len);
			else
				expand(r, user, clientid, p);
			p[len] = '\0';
			c->rule[k] = (struct acl_rule){ .filter = p, .len = len, .access = r->access };
			rule_index(&c->rule[k++]);
			p += len + 1;
		}
		if (deny)
			c->ndeny = (size_t)k;
	}
	return c;
}

void acl_client_free(struct acl_client *c) { free(c); }

size_t acl_client_rule_count(const struct acl_client *c) { return c->n; }

bool acl_client_can(const struct acl_client *c, const char *topic, size_t len,
		    enum acl_access access)
{
	unsigned want = (unsigned)access & (ACL_READ | ACL_WRITE), got = 0;

	for (size_t i = 0; i < c->ndeny; i++)
		if (rule_matches(&c->rule[i], topic, len))
			return false;
	for (size_t i = c->ndeny; i < c->n && want && got != want; i++)
		if ((c->rule[i].access & want & ~got) && rule_matches(&c->rule[i], topic, len))
			got |= c->rule[i].access & want;
	return want && got == want;
}

enum acl_sub acl_client_subscribe(const struct acl_client *c, const char *filter, size_t len)
{
	bool denied_part = false, readable = false, covered = false;

	for (size_t i = 0; i < c->ndeny; i++) {
		const struct acl_rule *r = &c->rule[i];
		if (acl_filter_covers(r->filter, r->len, filter, len))
			return ACL_SUB_DENY;
		denied_part = denied_part || acl_filter_overlaps(r->filter, r->len, filter, len);
	}
	for (size_t i = c->ndeny; i < c->n && !covered; i++) {
		const struct acl_rule *r = &c->rule[i];
		if (!(r->access & ACL_READ) || !acl_filter_overlaps(r->filter, r->len, filter, len))
			continue;
		readable = true;
		covered = acl_filter_covers(r->filter, r->len, filter, len);
	}
	if (!readable)
		return ACL_SUB_DENY;
	return covered && !denied_part ? ACL_SUB_GRANT : ACL_SUB_FILTER;
}
