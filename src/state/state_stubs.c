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

struct state_bus {
	int unused;
};

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
