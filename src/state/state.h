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
 * or NULL with "reason" in err (a bad instance id or topic prefix, a
 * librdkafka handle). Sets the broker's state hooks. Kafka is not asked
 * yet: the reader thread creates or checks the topics, retrying while Kafka
 * cannot answer (state_ready() says why it waits). Main thread, before
 * broker_start(). */
struct state *state_new(const struct cfg *cfg, struct broker *br, const char *bootstrap,
			char *err, size_t errlen);
/* Hooks the cross-instance bus into the uplink's publishes and the
 * downlink's records (either NULL ok; state_bus.c). Main thread, after
 * state_new() and uplink_new()/downlink_new(), before broker_start(). */
void state_attach(struct state *st, struct uplink *up, struct downlink *dl);
/* Starts the reader (topics, records, heartbeats, lease), the producer's
 * poll thread and the bus. Returns 0 or -1 (state_free() still needed). */
int state_start(struct state *st);
/* True once the state topics were read to the end seen at start and this
 * instance's heartbeat is written; false again while Kafka is lost beyond
 * state.lease_ms. why (NULL ok) says what it waits for. Any thread. */
bool state_ready(struct state *st, char *why, size_t whylen);
/* First step of a clean stop, before broker_drain()/broker_stop(): stops
 * and joins the bus and the reader (nothing more is applied to, kicked
 * from or injected into the broker). The producer stays: the broker's hooks
 * keep writing while the broker parks its sessions. Main thread. NULL ok. */
void state_stop(struct state *st);
/* After broker_stop(): writes this instance's "down" heartbeat (after the
 * park records), flushes within kafka.flush_timeout, closes the producer
 * and frees (state_stop() first if it was not called). NULL ok. */
void state_free(struct state *st);
/* The instance id in use (state.instance_id or the host name). */
const char *state_instance_id(const struct state *st);
/* Appends the state metrics (Prometheus text, core/prom.h) to out; the
 * signature of the admin endpoint's renderers (ud = the state). Returns 0
 * or -1. Any thread. */
struct buf;
int state_metrics_render(struct buf *out, void *ud);

#endif
