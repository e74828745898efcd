/*
 * state_stubs.c - TEMPORARY. Minimal stand-ins for the functions of
 * state_sessions.c, state_bus.c and state_owner.c, written in parallel on
 * other branches (s13-sess, s13-bus, s13-owner), so that the s13-core branch
 * links and runs on its own. THE LEAD DELETES THIS FILE AT MERGE, when the
 * real modules arrive (each function below then has its real definition).
 *
 * What they do meanwhile: no sessions view (claims answered OK at once, as
 * for a clean session: nothing is resumed from Kafka), no cross-instance
 * bus, no owner watch.
 */
#include <stdlib.h>

#include "broker/broker.h"
#include "state/state_int.h"

struct state_sessions {
	struct state *st;
};
struct state_bus {
	int unused;
};
struct state_owner {
	int unused;
};

struct state_sessions *state_sessions_new(struct state *st)
{
	struct state_sessions *ss = calloc(1, sizeof(*ss));
	if (ss)
		ss->st = st;
	return ss;
}
void state_sessions_record(struct state_sessions *ss, const rd_kafka_message_t *rec)
{
	(void)ss;
	(void)rec;
}
void state_sessions_caught_up(struct state_sessions *ss) { (void)ss; }
void state_sessions_tick(struct state_sessions *ss) { (void)ss; }
void state_sessions_reader_at(struct state_sessions *ss, int32_t p, int64_t next_offset)
{
	(void)ss;
	(void)p;
	(void)next_offset;
}
void state_sessions_free(struct state_sessions *ss) { free(ss); }

int state_sessions_claim(struct state_sessions *ss, const struct broker_claim *c)
{
	broker_state_claimed(ss->st->br, c->conn_id, BROKER_CLAIM_OK, NULL);
	return 0;
}
void state_sessions_subs_changed(struct state_sessions *ss, const char *id, uint16_t id_len,
				 const struct broker_sub *subs, size_t n)
{
	(void)ss;
	(void)id;
	(void)id_len;
	(void)subs;
	(void)n;
}
void state_sessions_parked(struct state_sessions *ss, const char *id, uint16_t id_len,
			   uint32_t expiry_s, const struct msg *will, uint32_t will_delay_s)
{
	(void)ss;
	(void)id;
	(void)id_len;
	(void)expiry_s;
	(void)will;
	(void)will_delay_s;
}
void state_sessions_ended(struct state_sessions *ss, const char *id, uint16_t id_len)
{
	(void)ss;
	(void)id;
	(void)id_len;
}

struct state_bus *state_bus_new(struct state *st)
{
	(void)st;
	return calloc(1, sizeof(struct state_bus));
}
int state_bus_start(struct state_bus *sb)
{
	(void)sb;
	return 0;
}
void state_bus_subs(struct state_bus *sb, const char *id, uint16_t id_len, const char *owner,
		    const struct broker_sub *subs, size_t n)
{
	(void)sb;
	(void)id;
	(void)id_len;
	(void)owner;
	(void)subs;
	(void)n;
}
void state_bus_stop(struct state_bus *sb) { (void)sb; }
void state_bus_free(struct state_bus *sb) { free(sb); }

struct state_owner *state_owner_new(struct state *st)
{
	(void)st;
	return calloc(1, sizeof(struct state_owner));
}
void state_owner_tick(struct state_owner *so) { (void)so; }
void state_owner_free(struct state_owner *so) { free(so); }
