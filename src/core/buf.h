/*
 * buf.h - a growable byte buffer with a read offset.
 *
 * Bytes live in data[off .. len). Appending grows the allocation (doubling);
 * consuming advances off, and the buffer compacts itself when it empties.
 * A zeroed struct buf is an empty buffer that owns nothing.
 *
 * Not thread safe: a buffer belongs to one thread at a time.
 */
#ifndef KG_BUF_H
#define KG_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t off;  /* first unread byte */
	size_t len;  /* end of written bytes */
	size_t cap;
};

void buf_init(struct buf *b);
/* Frees the storage; the buffer is empty and reusable afterwards. NULL ok. */
void buf_release(struct buf *b);

static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline const uint8_t *buf_head(const struct buf *b)
{
	return b->data ? b->data + b->off : b->data; /* no NULL + 0 */
}

/* Ensures room for n more bytes at the end. Returns 0, or -1 on allocation
 * failure (the buffer is unchanged). */
int buf_reserve(struct buf *b, size_t n);
/* Appends n bytes. Returns 0 or -1 on allocation failure. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Marks n bytes at the head as consumed. */
void buf_consume(struct buf *b, size_t n);
/* Drops the contents but keeps the allocation. */
static inline void buf_reset(struct buf *b) { b->off = b->len = 0; }
/* Frees the allocation if the buffer is empty and larger than keep bytes. */
void buf_shrink(struct buf *b, size_t keep);

#endif
