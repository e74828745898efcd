/*
 * acl_int.h - what acl.c (parsing an acl_file into a struct acl) and
 * acl_client.c (expanding it for one connection, the checks) share. Not a
 * public interface: other modules use acl.h.
 *
 * A parsed acl is immutable: any thread may read it (acl.h).
 */
#ifndef KG_ACL_INT_H
#define KG_ACL_INT_H

#include <stddef.h>

#define ACL_DENY 0 /* access value of a deny rule */

struct acl_rule {
	char *filter;      /* NUL-terminated; in an acl_client, points into it */
	size_t len;
	const char *owner; /* parse only: user name of the block, NULL anonymous */
	size_t seq;        /* parse only: keeps file order through qsort */
	size_t lit;        /* acl_client only: bytes before the first wildcard level */
	unsigned char access;
	unsigned char kind; /* acl_client only: enum rule_kind (acl_client.c) */
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

#endif
