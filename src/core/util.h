/*
 * util.h - the few helpers every module wants and no library gives.
 *
 * Thread safe: all functions may be called from any thread.
 */
#ifndef KG_UTIL_H
#define KG_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The struct that embeds member, from a pointer to that member. */
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Milliseconds on the monotonic clock: for timeouts and durations only,
 * never for timestamps shown to people or stored (it has no epoch). */
int64_t util_now_ms(void);
/* Tests only: util_now_ms() returns now_ms() from here on (NULL restores the
 * monotonic clock), so that ticks and timeouts follow a clock the test
 * moves. Call it before any other thread runs. */
void util_set_clock(int64_t (*now_ms)(void));
/* Milliseconds since the Unix epoch (wall clock; may jump). */
int64_t util_wall_ms(void);
/* Returns a new NUL-terminated copy of the first n bytes of s (which need not
 * be terminated), free with free(); NULL on allocation failure. */
char *util_strdup_n(const char *s, size_t n);
/* Reads a whole file of at most max bytes. Returns a new NUL-terminated
 * buffer (free with free()) and sets *len, or NULL with errno set (EFBIG when
 * the file is larger than max). */
char *util_read_file(const char *path, size_t max, size_t *len);

#endif
