/*
 * acl.h - mosquitto acl_file access control: parse once, expand per
 * connection, check per message.
 *
 * File syntax (mosquitto's; one rule per line):
 *
 *     # comment                 (first non-blank character '#'), blank lines
 *     topic [ACCESS] FILTER     a rule for the current block
 *     user NAME                 starts NAME's block (the rest of the line,
 *                               blanks around it dropped)
 *     pattern [ACCESS] FILTER   a rule for every client, wherever it stands
 *
 * ACCESS is read, write, readwrite or deny; without it the rule is
 * readwrite, and the filter is then the single word after the keyword
 * (with ACCESS, FILTER is the rest of the line and may contain blanks).
 * "topic read" alone is an error rather than mosquitto's rule for the topic
 * "read". FILTER must be a valid MQTT topic filter.
 *
 * Whose rules: the topic rules before the first user line belong to
 * anonymous clients (no user name); a user's topic rules are those of all
 * its blocks (a name may have several). Pattern rules apply to every client
 * with "%u" replaced by its user name and "%c" by its client id (anywhere in
 * the filter, as mosquitto does; "%%" or "%x" stay as they are). A pattern
 * with %u does not apply to anonymous clients.
 *
 * Decisions: a deny rule that matches wins over any read/write rule that
 * matches (stricter than mosquitto, where a user's grant is looked at
 * before the patterns' denials); otherwise access is granted when a matching
 * rule grants it; no matching rule means no access (a file with no rules
 * denies everything).
 *
 * Substitution is never allowed to widen a rule: when the user name or
 * client id put into a grant pattern contains '+', '#' or '/', or is empty,
 * that pattern grants nothing to the client (mosquitto denies such clients
 * every pattern). In a deny pattern the value is taken literally: '+' or
 * '#' make it match nothing (no topic contains them), a '/' just makes it
 * deny the longer topic; a deny never shrinks.
 *
 * Pure: no I/O but acl_load()'s read of one file, no globals, no logging.
 * Threads: a parsed acl is immutable, and so is an acl_client: any thread
 * may use either concurrently. An acl_client copies everything it needs
 * (no reference to its acl), so it stays valid after the acl it came from
 * is freed by a reload; the broker decides when to rebuild it.
 *
 * Files: acl.c implements acl_parse/load/free, acl_client.c the acl_client_*
 * functions; the filter relations behind acl_client_subscribe() are
 * topic_filters_overlap()/topic_filter_covers() (mqtt/topic.h).
 */
#ifndef KG_ACL_H
#define KG_ACL_H

#include <stdbool.h>
#include <stddef.h>

struct acl;
struct acl_client;

enum acl_access {
	ACL_READ = 1,  /* receive messages published on the topic */
	ACL_WRITE = 2, /* publish on the topic */
};

/* Verdict on a SUBSCRIBE filter, for one client. */
enum acl_sub {
	ACL_SUB_DENY = 0,   /* no topic the filter matches is readable: refuse */
	ACL_SUB_GRANT = 1,  /* every topic it matches is readable: no per-message check */
	ACL_SUB_FILTER = 2, /* some are, some may not be: grant, check each delivery */
};

/* Largest file acl_load() reads. */
#define ACL_MAX_FILE (16u << 20)

/*
 * Parses len bytes of acl_file text (no NUL needed; a NUL byte is an error).
 * Returns a new acl (free with acl_free()), or NULL with "LINE: what is
 * wrong" (1-based line) in err, truncated to errlen (err may be NULL).
 */
struct acl *acl_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses the file at path (at most ACL_MAX_FILE bytes). Errors as
 * acl_parse() with "PATH:" in front, or "PATH: reason" when unreadable. */
struct acl *acl_load(const char *path, char *err, size_t errlen);

/* Frees acl. NULL ok. Clients made from it stay valid. */
void acl_free(struct acl *acl);

/*
 * The rules for one connection: its user's topic rules (user NULL:
 * anonymous; a user with no block has none) and the patterns expanded for
 * user and clientid (NUL-terminated; clientid NULL: patterns with %c are
 * left out). Returns a new client (free with acl_client_free()), or NULL
 * on out of memory. Cost: O(log users + rules of this client). Any thread.
 */
struct acl_client *acl_client_new(const struct acl *acl, const char *user,
				  const char *clientid);

/* Frees c. NULL ok. */
void acl_client_free(struct acl_client *c);

/* Number of rules c holds (denials included). For tests and metrics. */
size_t acl_client_rule_count(const struct acl_client *c);

/*
 * Whether the client may do access (ACL_READ, ACL_WRITE or both) on topic
 * (len bytes, a valid topic name, no NUL needed). Allocates nothing; cost is
 * linear in the client's rules. Any thread.
 */
bool acl_client_can(const struct acl_client *c, const char *topic, size_t len,
		    enum acl_access access);

/*
 * The verdict on subscribing to filter (len bytes, a valid filter; strip a
 * "$share/GROUP/" prefix first): DENY when a deny rule covers the filter or
 * no read rule overlaps it; GRANT when one read rule covers it and no deny
 * rule overlaps it; FILTER otherwise (also when only several read rules
 * together cover it: the answer is safe, not always the tightest).
 * Allocates nothing. Any thread.
 */
enum acl_sub acl_client_subscribe(const struct acl_client *c, const char *filter,
				  size_t len);

#endif
