/*
 * topic.h - MQTT topic names and filters: matching, relations between
 * filters, and level access.
 *
 * Pure: no allocation, no globals, no logging. Any thread may call.
 * Inputs are assumed valid (mqtt_topic_name_valid() and
 * mqtt_topic_filter_valid() in mqtt_codec.h check them at the edge); on
 * invalid input the results are defined but meaningless. The exceptions
 * are topic_levels() and topic_check_limits(), which take any bytes.
 *
 * A topic is split into levels at every '/'; levels may be empty, so "a//b"
 * has three levels and "/a" has two, the first empty. A topic always has at
 * least one level.
 */
#ifndef KG_TOPIC_H
#define KG_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * Returns whether the topic name matches the filter under the MQTT 3.1.1 /
 * 5.0 rules (section 4.7): '+' matches exactly one level (possibly empty),
 * '#' matches its own level and every level below, including none ("sport/#"
 * matches "sport"), and a filter whose first character is a wildcard never
 * matches a topic starting with '$' (MQTT-4.7.2-1).
 * Neither string needs a NUL terminator.
 */
bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen);

/*
 * Relations between two valid filters (no NUL needed), under topic_matches()
 * (the '$' rule included):
 * topic_filters_overlap: some topic name matches both a and b.
 * topic_filter_covers: every topic name matching inner also matches outer.
 * Both are exact if the empty topic counts as a topic. It cannot be
 * published, so the only slack is on the safe side: overlap may say true
 * when "" is all two filters share ("+" and "/#"), covers may say false
 * when "" is all outer misses (outer "/+/#", inner "/#"). The ACL's
 * SUBSCRIBE verdict (acl_client_subscribe()) is built on them.
 */
bool topic_filters_overlap(const char *a, size_t alen, const char *b, size_t blen);
bool topic_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen);

/*
 * Level n (0-based) of topic: returns its length and points *start at its
 * first byte (start may be NULL), or returns (size_t)-1 when the topic has
 * no level n. Used by route templates (${topic[N]}).
 */
size_t topic_level(const char *topic, size_t len, size_t n, const char **start);

/*
 * Number of levels of the topic name or filter t (len bytes): one more than
 * its number of '/', so at least 1 ("" is one empty level, "/" two).
 * O(len). Saturates at INT_MAX, far above any MQTT topic (65,535 bytes).
 */
int topic_levels(const char *t, size_t len);

/* What topic_check_limits() found; distinct so the caller can say which
 * limit was hit (topic_err_str()). */
enum topic_err {
	TOPIC_OK = 0,
	TOPIC_ERR_TOO_LONG = -1, /* more than max_len bytes */
	TOPIC_ERR_TOO_DEEP = -2, /* more than max_levels levels */
};

/*
 * Checks a topic name or filter against the broker's size limits, before
 * it reaches a trie: returns TOPIC_OK, TOPIC_ERR_TOO_LONG when len exceeds
 * max_len, else TOPIC_ERR_TOO_DEEP when it has more than max_levels levels
 * (topic_levels()). A limit of 0 means no limit. Counting stops at the
 * first level over the limit. Checks sizes only, not syntax.
 */
int topic_check_limits(const char *t, size_t len, unsigned max_len, unsigned max_levels);

/* A short description of a topic_check_limits() result, for logs
 * ("topic too long"). Never NULL. */
const char *topic_err_str(int err);

/* End of the level that starts at s[pos] (pos <= len): the index of the next
 * '/' at or after pos, or len. Tries walk levels with it. */
static inline size_t topic_level_end(const char *s, size_t len, size_t pos)
{
	const char *slash = memchr(s + pos, '/', len - pos);
	return slash ? (size_t)(slash - s) : len;
}

/* Returns whether s (len bytes) is exactly the single-level wildcard "+" or
 * the multi-level wildcard "#". Tries use these to classify filter levels. */
static inline bool topic_is_plus(const char *s, size_t len)
{
	return len == 1 && s[0] == '+';
}

static inline bool topic_is_hash(const char *s, size_t len)
{
	return len == 1 && s[0] == '#';
}

#endif
