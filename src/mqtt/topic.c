/* topic.c - MQTT topic matching and level access; see topic.h. */
#include <limits.h>
#include <string.h>

#include "mqtt/topic.h"

bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
	if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
		return false;

	size_t fi = 0, ti = 0;
	for (;;) {
		size_t fe = topic_level_end(filter, flen, fi);
		if (topic_is_hash(filter + fi, fe - fi))
			return true;
		size_t te = topic_level_end(topic, tlen, ti);
		if (!topic_is_plus(filter + fi, fe - fi) &&
		    (fe - fi != te - ti || memcmp(filter + fi, topic + ti, fe - fi) != 0))
			return false;
		bool fdone = fe == flen, tdone = te == tlen;
		if (fdone || tdone) {
			if (fdone && tdone)
				return true;
			/* The topic ran out first: only a trailing "/#" still
			 * matches, because '#' includes the parent level. */
			return tdone && flen - fe == 2 && filter[fe + 1] == '#';
		}
		fi = fe + 1;
		ti = te + 1;
	}
}

size_t topic_level(const char *topic, size_t len, size_t n, const char **start)
{
	size_t pos = 0;
	for (;;) {
		size_t end = topic_level_end(topic, len, pos);
		if (n == 0) {
			if (start)
				*start = topic + pos;
			return end - pos;
		}
		if (end == len)
			return (size_t)-1;
		n--;
		pos = end + 1;
	}
}

int topic_levels(const char *t, size_t len)
{
	int levels = 1;
	if (len == 0)
		return levels;
	for (const char *p = t, *end = t + len; (p = memchr(p, '/', (size_t)(end - p))); p++)
		if (++levels == INT_MAX)
			break;
	return levels;
}

int topic_check_limits(const char *t, size_t len, unsigned max_len, unsigned max_levels)
{
	if (max_len && len > max_len)
		return TOPIC_ERR_TOO_LONG;
	if (!max_levels || len == 0)
		return TOPIC_OK;
	unsigned levels = 1;
	for (const char *p = t, *end = t + len; (p = memchr(p, '/', (size_t)(end - p))); p++)
		if (++levels > max_levels)
			return TOPIC_ERR_TOO_DEEP;
	return TOPIC_OK;
}

const char *topic_err_str(int err)
{
	switch (err) {
	case TOPIC_OK: return "ok";
	case TOPIC_ERR_TOO_LONG: return "topic too long";
	case TOPIC_ERR_TOO_DEEP: return "too many topic levels";
	}
	return "unknown topic error";
}
