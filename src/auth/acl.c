/* acl.c - mosquitto acl_file rules: parsing, loading, freeing; see acl.h.
 * The per-connection rules (acl_client_*) are in acl_client.c. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/acl_int.h"
#include "core/util.h"
#include "mqtt/mqtt_codec.h"

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
