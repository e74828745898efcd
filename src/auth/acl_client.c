/* acl_client.c - the rules of one connection: an acl (acl.c) expanded for
 * a user name and client id, and the access and SUBSCRIBE checks on them;
 * see acl.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/acl_int.h"
#include "mqtt/topic.h"

/* How an acl_client's rule is matched (rule_index()): most filters are a
 * literal name or a literal prefix and "/#", matched with one memcmp. */
enum rule_kind {
	RULE_WILD = 0, /* wildcards elsewhere: topic_matches(), after the prefix */
	RULE_EXACT,    /* no wildcard: the topic must equal the filter */
	RULE_TREE,     /* "P/#" (lit = len of P + 1) or "#" (lit = 0) */
};

struct acl_client {
	size_t ndeny, n; /* rule[0..ndeny) deny; rule[ndeny..n) grant */
	struct acl_rule rule[];
	/* then the filters' text */
};

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
		if (topic_filter_covers(r->filter, r->len, filter, len))
			return ACL_SUB_DENY;
		denied_part = denied_part || topic_filters_overlap(r->filter, r->len, filter, len);
	}
	for (size_t i = c->ndeny; i < c->n && !covered; i++) {
		const struct acl_rule *r = &c->rule[i];
		if (!(r->access & ACL_READ) || !topic_filters_overlap(r->filter, r->len, filter, len))
			continue;
		readable = true;
		covered = topic_filter_covers(r->filter, r->len, filter, len);
	}
	if (!readable)
		return ACL_SUB_DENY;
	return covered && !denied_part ? ACL_SUB_GRANT : ACL_SUB_FILTER;
}
