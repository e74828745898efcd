/*
 * state.h - sessions, retained messages and wills kept in Kafka, shared by
 * every instance on one Kafka (state.store = "kafka"; docs/scaling.md).
 *
 * The state layer sits above the broker and the kafka layer: it gives the
 * broker its state hooks (broker_set_state(), broker/broker.h), writes the
 * records of docs/scaling.md to the state topics, reads them back (its own
 * and other instances') and answers claims, kicks displaced connections,
 * restores sessions and applies retained messages.
 *
 * Threads: state_new/start/stop/free on the main thread; state_ready and
 * the metrics any thread.
 */
#ifndef KG_STATE_H
#define KG_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct cfg;
struct uplink;
struct downlink;
struct state;

/* Returns a new state store for cfg->state (store = "kafka") on bootstrap,
 * with its topics created or checked, or NULL with "reason" in err. Sets
 * the broker's state hooks. Main thread, before broker_start(). */
struct state *state_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			char *err, size_t errlen);
/* Hooks the cross-instance bus into the uplink's publishes and the
 * downlink's records (either NULL ok; state_bus.c). Main thread, after
 * state_new() and uplink_new()/downlink_new(), before broker_start(). */
void state_attach(struct state *st, struct uplink *up, struct downlink *dl);
/* Starts the reader, heartbeat and inbox threads. Returns 0 or -1. */
int state_start(struct state *st);
/* True once the state topics were read to the end seen at start and this
 * instance's heartbeat is written; false again while Kafka is lost beyond
 * state.lease_ms. why (NULL ok) says what it waits for. Any thread. */
bool state_ready(struct state *st, char *why, size_t whylen);
/* Clean stop: marks this instance down in <prefix>.instances, parks what
 * it owns, flushes. Main thread. NULL ok. */
void state_stop(struct state *st);
void state_free(struct state *st);
/* The instance id in use (state.instance_id or the host name). */
const char *state_instance_id(const struct state *st);
/* Appends the state metrics (Prometheus text, core/prom.h) to out; the
 * signature of the admin endpoint's renderers (ud = the state). Returns 0
 * or -1. Any thread. */
struct buf;
int state_metrics_render(struct buf *out, void *ud);

#endif
