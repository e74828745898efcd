/*
 * fuzz_state_rec.c - libFuzzer target for the session record of
 * <prefix>.sessions (state/state_rec.h), which every instance reads from
 * Kafka: anything may be there.
 *
 * The input is one record value. Decoding must not crash or leak; what
 * decodes must encode, and decode again to the same record (the fields
 * compared one by one), and a copy of it must be equal too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state/state_rec.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void same(const struct state_rec *a, const struct state_rec *b)
{
	CHECK(a->t == b->t && strcmp(a->owner, b->owner) == 0 && a->boot == b->boot);
	CHECK(a->epoch == b->epoch && a->persistent == b->persistent && a->state == b->state);
	CHECK(a->level == b->level && a->expiry_s == b->expiry_s && a->parked_at == b->parked_at);
	CHECK(a->at == b->at && a->nsubs == b->nsubs && a->has_will == b->has_will);
	if (a->t == SREC_CLAIM)
		CHECK(strcmp(a->conn, b->conn) == 0 && a->resume == b->resume);
	for (size_t i = 0; i < a->nsubs; i++) {
		CHECK(a->subs[i].len == b->subs[i].len && a->subs[i].opts == b->subs[i].opts);
		CHECK(memcmp(a->subs[i].filter, b->subs[i].filter, a->subs[i].len) == 0);
	}
	if (a->has_will) {
		const struct state_rec_will *x = &a->will, *y = &b->will;
		CHECK(x->topic_len == y->topic_len && memcmp(x->topic, y->topic, x->topic_len) == 0);
		CHECK(x->payload_len == y->payload_len && x->props_len == y->props_len);
		CHECK(!x->payload_len || memcmp(x->payload, y->payload, x->payload_len) == 0);
		CHECK(!x->props_len || memcmp(x->props, y->props, x->props_len) == 0);
		CHECK(x->qos == y->qos && x->retain == y->retain && x->delay_s == y->delay_s);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state_rec r, r2, c;
	char err[96];
	if (state_rec_decode(&r, data, size, err, sizeof(err)) == 0) {
		char *js;
		size_t len;
		/* Decoded strings are JSON strings, so valid UTF-8: encodable. */
		CHECK(state_rec_encode(&r, &js, &len) == 0);
		CHECK(state_rec_decode(&r2, js, len, err, sizeof(err)) == 0);
		same(&r, &r2);
		CHECK(state_rec_copy(&c, &r) == 0);
		same(&r, &c);
		state_rec_clear(&c);
		state_rec_clear(&r2);
		free(js);
	} else {
		CHECK(err[0] != '\0');
	}
	state_rec_clear(&r);
	return 0;
}
