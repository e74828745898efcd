/* topic.c - MQTT topic matching, filter relations and level access; see
 * topic.h. */
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

bool topic_filters_overlap(const char *a, size_t alen, const char *b, size_t blen)
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

bool topic_filter_covers(const char *o, size_t olen, const char *in, size_t ilen)
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

/* ---- levels and limits ----------------------------------------------- */

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
