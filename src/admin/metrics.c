/* metrics.c - Prometheus text rendering; see metrics.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/auth_pool.h"
#include "broker/broker_int.h"
#include "broker/inflight.h"
#include "broker/listener.h"
#include "admin/metrics.h"
#include "core/lathist.h"
#include "core/prom.h"
#include "broker/retain.h"
#include "broker/upstream.h"
#include "route/route.h"
#include "route/template.h"
#include "kafka/uplink.h"
#include "broker/worker.h"

#ifndef KG_VERSION
#define KG_VERSION "0.0.0"
#endif

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* MQTT control packet types 1..15, as label values. */
static const char *const packet_names[16] = {
	NULL, "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
	"subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp",
	"disconnect", "auth",
};

/* The workers' counters, summed. */
struct totals {
	uint64_t accepted, rejected, bytes_in, bytes_out;
	uint64_t pkts_in[16], pkts_out[16], msgs_in[3];
	uint64_t qos0_dropped, queue_dropped, malformed, msgs_expired, msgs_too_large;
	uint64_t limit_hits[LIMIT_N];
	uint64_t up_routed, up_unrouted, sink_blocked, sink_failed;
	uint64_t packet_timeouts, partial_refused;
};

static int one_u64(struct buf *out, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	int rc = prom_family(out, name, type, help);
	return rc | prom_u64(out, name, NULL, v);
}

/* A family of n samples labelled key=vals[k], valued v[k]. */
static int by_label(struct buf *out, const char *name, const char *type, const char *help,
		    const char *key, const char *const *vals, const uint64_t *v, int n)
{
	int rc = prom_family(out, name, type, help);

	for (int k = 0; k < n; k++) {
		const char *labels[] = { key, vals[k], NULL };
		rc |= prom_u64(out, name, labels, v[k]);
	}
	return rc;
}

/*
 * The samples of one histogram (its family written by the caller): name_bucket
 * with cumulative counts for the nb buckets (count[], not cumulative), bounded
 * by le_s[0 .. nb-1) seconds and +Inf, then name_sum and name_count. stage:
 * a stage="..." label on every sample, or NULL.
 */
static int histogram(struct buf *out, const char *name, const char *stage, const double *le_s,
		     const uint64_t *count, int nb, double sum_s)
{
	char le[32], bucket[96], sum[96], total[96];
	const char *labels[] = { "stage", stage, "le", le, NULL };
	const char *const *bl = stage ? labels : labels + 2;
	uint64_t cum = 0;
	int rc = 0;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	snprintf(sum, sizeof(sum), "%s_sum", name);
	snprintf(total, sizeof(total), "%s_count", name);
	for (int b = 0; b < nb; b++) {
		cum += count[b];
		if (b < nb - 1)
			snprintf(le, sizeof(le), "%g", le_s[b]);
		else
			snprintf(le, sizeof(le), "+Inf");
		rc |= prom_u64(out, bucket, bl, cum);
	}
	labels[2] = NULL;
	rc |= prom_f64(out, sum, stage ? labels : NULL, sum_s);
	/* The +Inf bucket, so that _count agrees with the buckets just read. */
	rc |= prom_u64(out, total, stage ? labels : NULL, cum);
	return rc;
}

static void sum_workers(const struct broker *br, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int k = 0; k < LIMIT_N; k++)
		t->limit_hits[k] = LD(br->limit_hits[k]);
	for (int i = 0; i < br->n_workers; i++) {
		const struct worker_stats *st = &br->workers[i].st;
		t->accepted += LD(st->conn_accepted);
		t->rejected += LD(st->conn_rejected);
		t->bytes_in += LD(st->bytes_in);
		t->bytes_out += LD(st->bytes_out);
		for (int k = 0; k < 16; k++) {
			t->pkts_in[k] += LD(st->pkts_in[k]);
			t->pkts_out[k] += LD(st->pkts_out[k]);
		}
		for (int q = 0; q < 3; q++)
			t->msgs_in[q] += LD(st->msgs_in[q]);
		t->qos0_dropped += LD(st->qos0_dropped);
		t->queue_dropped += LD(st->queue_dropped);
		t->msgs_expired += LD(st->msgs_expired);
		t->msgs_too_large += LD(st->msgs_too_large);
		for (int k = 0; k < LIMIT_N; k++)
			t->limit_hits[k] += LD(st->limit_hits[k]);
		t->malformed += LD(st->malformed);
		t->sink_blocked += LD(st->sink_blocked);
		t->sink_failed += LD(st->sink_failed);
		t->packet_timeouts += LD(st->packet_timeouts);
		t->partial_refused += LD(st->partial_refused);
	}
}

/* The limits group: what was refused, and the state the caps bound. */
static int render_limits(struct buf *out, struct broker *br, const struct totals *t)
{
	const char *names[LIMIT_N];
	size_t n, bytes;
	int64_t total, online;

	for (int k = 0; k < LIMIT_N; k++)
		names[k] = limits_name(k);
	int rc = by_label(out, "kafkagate_limit_hits_total", "counter",
			  "Times a configured limit refused something, by limit (the setting's name).",
			  "limit", names, t->limit_hits, LIMIT_N);
	broker_session_counts(br, &total, &online);
	if (online > total)
		online = total;
	rc |= prom_family(out, "kafkagate_sessions", "gauge",
			  "MQTT sessions, by state: online (a client attached) or offline "
			  "(persistent, kept for its client).");
	{
		const char *on[] = { "state", "online", NULL }, *off[] = { "state", "offline", NULL };
		rc |= prom_i64(out, "kafkagate_sessions", on, online);
		rc |= prom_i64(out, "kafkagate_sessions", off, total - online);
	}
	rc |= one_u64(out, "kafkagate_sessions_expired_total", "counter",
		      "Persistent sessions discarded after limits.session_expiry offline.",
		      LD(br->sessions_expired));
	rc |= prom_family(out, "kafkagate_session_queued_bytes", "gauge",
			  "Topic and payload bytes of the messages in session queues, all sessions.");
	rc |= prom_i64(out, "kafkagate_session_queued_bytes", NULL, mqueue_total_bytes());
	broker_subs_stats(br, &n, &bytes);
	rc |= one_u64(out, "kafkagate_subscriptions", "gauge",
		      "Subscriptions (filter, session) in the subscription trie.", n);
	rc |= one_u64(out, "kafkagate_subscription_trie_bytes", "gauge",
		      "Heap bytes held by the subscription trie.", bytes);
	return rc;
}

static int render_mqtt(struct buf *out, struct broker *br, const struct totals *t)
{
	static const char *const all[] = { "listener", "all", NULL };
	static const char *const qos[3] = { "0", "1", "2" };
	int rc = 0;

	rc |= prom_family(out, "kafkagate_connections", "gauge",
			  "Open MQTT connections, in all and by listener (kind:port).");
	rc |= prom_i64(out, "kafkagate_connections", all,
			  atomic_load_explicit(&br->n_connections, memory_order_relaxed));
	for (int i = 0; i < br->n_lis; i++) {
		const char *l[] = { "listener", br->lis[i].name, NULL };
		rc |= prom_i64(out, "kafkagate_connections", l, LD(br->lis[i].open));
	}
	rc |= prom_family(out, "kafkagate_connections_total", "counter",
			     "MQTT connections accepted.");
	rc |= prom_u64(out, "kafkagate_connections_total", all, t->accepted);
	for (int i = 0; i < br->n_lis; i++) {
		const char *l[] = { "listener", br->lis[i].name, NULL };
		rc |= prom_u64(out, "kafkagate_connections_total", l, LD(br->lis[i].accepted));
	}
	rc |= prom_family(out, "kafkagate_connections_rejected_total", "counter",
			  "MQTT connections refused at accept (max_connections, "
			  "max_connections_per_address, max_connect_rate, out of descriptors).");
	rc |= prom_u64(out, "kafkagate_connections_rejected_total", NULL, t->rejected);
	for (int i = 0; i < br->n_lis; i++) {
		const char *l[] = { "listener", br->lis[i].name, NULL };
		rc |= prom_u64(out, "kafkagate_connections_rejected_total", l,
			       LD(br->lis[i].rejected));
	}
	rc |= one_u64(out, "kafkagate_packet_timeouts_total", "counter",
		      "Connections closed because a started packet did not arrive within "
		      "limits.packet_timeout.", t->packet_timeouts);
	rc |= one_u64(out, "kafkagate_partial_refused_total", "counter",
		      "Connections closed because partially received packets reached "
		      "limits.max_partial_bytes.", t->partial_refused);
	rc |= one_u64(out, "kafkagate_partial_bytes", "gauge",
		      "Bytes held by partially received packets, all connections.",
		      (uint64_t)LD(br->partial_bytes));
	rc |= by_label(out, "kafkagate_packets_received_total", "counter",
		       "MQTT control packets received, by type.", "type", packet_names + 1,
		       t->pkts_in + 1, 15);
	rc |= by_label(out, "kafkagate_packets_sent_total", "counter",
		       "MQTT control packets sent, by type.", "type", packet_names + 1,
		       t->pkts_out + 1, 15);
	rc |= one_u64(out, "kafkagate_bytes_received_total", "counter",
		      "Bytes read from MQTT connections.", t->bytes_in);
	rc |= one_u64(out, "kafkagate_bytes_sent_total", "counter",
		      "Bytes written to MQTT connections.", t->bytes_out);
	rc |= by_label(out, "kafkagate_messages_received_total", "counter",
		       "PUBLISH messages received from clients, by QoS.", "qos", qos, t->msgs_in, 3);
	rc |= one_u64(out, "kafkagate_qos0_dropped_total", "counter",
		      "QoS 0 messages dropped because a client's output was full.", t->qos0_dropped);
	rc |= one_u64(out, "kafkagate_queue_dropped_total", "counter",
		      "Messages dropped because a session queue was full.", t->queue_dropped);
	rc |= one_u64(out, "kafkagate_messages_expired_total", "counter",
		      "Messages not sent because their MQTT 5 Message Expiry had passed.",
		      t->msgs_expired);
	rc |= one_u64(out, "kafkagate_messages_too_large_total", "counter",
		      "Messages not sent because they exceed a client's Maximum Packet Size.",
		      t->msgs_too_large);
	rc |= prom_family(out, "kafkagate_session_queued_messages", "gauge",
			     "Messages waiting in session queues (online and offline), all sessions.");
	rc |= prom_i64(out, "kafkagate_session_queued_messages", NULL, mqueue_total());
	rc |= one_u64(out, "kafkagate_malformed_packets_total", "counter",
		      "Malformed MQTT packets (the connection was closed).", t->malformed);
	rc |= one_u64(out, "kafkagate_reloads_total", "counter",
		      "Configuration reloads (SIGHUP) applied.", LD(br->reloads));
	rc |= one_u64(out, "kafkagate_reload_failures_total", "counter",
		      "Configuration reloads rejected (the old configuration stayed).",
		      LD(br->reload_failures));

	size_t retained, retained_bytes;
	broker_retained_stats(br, &retained, &retained_bytes);
	rc |= one_u64(out, "kafkagate_retained_messages", "gauge", "Retained messages stored.",
		      retained);
	rc |= one_u64(out, "kafkagate_retained_bytes", "gauge",
		      "Topic and payload bytes of the retained messages stored.", retained_bytes);
	rc |= render_limits(out, br, t);
	return rc;
}

/* Logins and ACL decisions (broker/auth.h), summed over the workers. */
static int render_auth(struct buf *out, const struct broker *br)
{
	static const char *const fail[AUTH_FAIL_N] = { "wrong_password", "unknown_user",
						       "anonymous" };
	static const char *const access[AUTH_DENY_N] = { "write", "read", "subscribe" };
	uint64_t ok = 0, unavailable = 0, f[AUTH_FAIL_N] = { 0 }, d[AUTH_DENY_N] = { 0 };
	const struct auth *a = br->auth;
	int rc = 0;

	for (int i = 0; a && i < a->n_workers; i++) {
		const struct auth_stats *st = &a->wk[i].st;
		ok += LD(st->success);
		unavailable += LD(st->unavailable);
		for (int k = 0; k < AUTH_FAIL_N; k++)
			f[k] += LD(st->failures[k]);
		for (int k = 0; k < AUTH_DENY_N; k++)
			d[k] += LD(st->denied[k]);
	}
	rc |= one_u64(out, "kafkagate_auth_success_total", "counter",
		      "CONNECTs authenticated by a password or a client certificate.", ok);
	rc |= by_label(out, "kafkagate_auth_failures_total", "counter",
		       "CONNECTs refused for their credentials (CONNACK 4 or 5), by reason.",
		       "reason", fail, f, AUTH_FAIL_N);
	rc |= one_u64(out, "kafkagate_auth_unavailable_total", "counter",
		      "CONNECTs refused with CONNACK 3: verification queue full or failed.",
		      unavailable);
	rc |= one_u64(out, "kafkagate_auth_verify_queue", "gauge",
		      "Password checks waiting for a verification thread.",
		      a && a->pool ? auth_pool_depth(a->pool) : 0);
	rc |= by_label(out, "kafkagate_acl_denied_total", "counter",
		       "Messages and filters the ACL refused: PUBLISH dropped (write), "
		       "deliveries filtered out (read), SUBACK 0x80 (subscribe).",
		       "access", access, d, AUTH_DENY_N);
	return rc;
}

static int render_routes(struct buf *out, struct uplink *up)
{
	static const char *const names[4] = {
		"kafkagate_route_routed_total", "kafkagate_route_delivered_total",
		"kafkagate_route_failed_total", "kafkagate_route_in_flight",
	};
	static const char *const help[4] = {
		"Records produced for this route.",
		"Records of this route acknowledged by Kafka.",
		"Records of this route that failed (temporarily or permanently).",
		"Records of this route produced and not yet reported.",
	};
	struct route_table *rt = uplink_routes(up);
	size_t n = rt ? route_table_count(rt) : 0;
	int rc = 0;

	for (int f = 0; f < 4; f++) {
		rc |= prom_family(out, names[f], f == 3 ? "gauge" : "counter", help[f]);
		for (size_t i = 0; i < n; i++) {
			const struct route *r = route_table_get(rt, i);
			const struct uplink_route_stats *rs = uplink_route_stats(up, route_index(r));
			char idx[24];
			if (!rs)
				continue;
			snprintf(idx, sizeof(idx), "%zu", route_index(r));
			const char *labels[] = {
				"route", idx, "filter", route_filter(r),
				"topic", template_source(route_topic(r)), NULL,
			};
			if (f == 3)
				rc |= prom_i64(out, names[f], labels, LD(rs->in_flight));
			else
				rc |= prom_u64(out, names[f], labels,
						  f == 0 ? LD(rs->routed) :
						  f == 1 ? LD(rs->delivered) : LD(rs->failed));
		}
	}
	route_table_unref(rt);
	return rc;
}

static int render_latency(struct buf *out, const struct uplink_latency *lat)
{
	static const char name[] = "kafkagate_kafka_delivery_seconds";
	double le[UPLINK_LAT_BUCKETS - 1];
	uint64_t c[UPLINK_LAT_BUCKETS];
	int rc = prom_family(out, name, "histogram",
				"Time from receiving a PUBLISH to Kafka's delivery report.");

	for (int b = 0; b < UPLINK_LAT_BUCKETS; b++) {
		c[b] = LD(lat->count[b]);
		if (b < UPLINK_LAT_BUCKETS - 1)
			le[b] = uplink_lat_bounds_ms[b] / 1000.0;
	}
	return rc | histogram(out, name, NULL, le, c, UPLINK_LAT_BUCKETS,
			      (double)LD(lat->sum_us) / 1e6);
}

/* Where an acknowledgement's time goes, as the series stage=... of one
 * histogram: kafka = produce call -> delivery report (per record); handoff =
 * delivery report -> the owning worker (inbox and wake-up); write = that
 * worker -> the end of the flush that writes the PUBACK/PUBREC (per answer). */
static int render_stages(struct buf *out, const struct broker *br, const struct uplink *up)
{
	static const char name[] = "kafkagate_uplink_ack_stage_seconds";
	static const char *const stage[3] = { "kafka", "handoff", "write" };
	double le[LATHIST_BUCKETS - 1];
	uint64_t c[LATHIST_BUCKETS], sum;
	int rc = prom_family(out, name, "histogram",
			     "Stages of the acknowledgement path: kafka = produce to delivery "
			     "report, handoff = delivery report to the owning worker, write = "
			     "worker to the PUBACK written.");

	for (int b = 0; b < LATHIST_BUCKETS - 1; b++)
		le[b] = lathist_bounds_us[b] / 1e6;
	for (int k = 0; k < 3; k++) {
		memset(c, 0, sizeof(c));
		sum = 0;
		if (k == 0)
			lathist_read(uplink_stage_kafka(up), c, &sum);
		for (int i = 0; k > 0 && i < br->n_workers; i++) {
			const struct worker_stats *st = &br->workers[i].st;
			lathist_read(k == 2 ? &st->ack_write : &st->ack_handoff, c, &sum);
		}
		rc |= histogram(out, name, stage[k], le, c, LATHIST_BUCKETS, (double)sum / 1e9);
	}
	return rc;
}

static int render_brokers(struct buf *out, struct uplink *up)
{
	static const char name[] = "kafkagate_kafka_broker_up";
	struct uplink_broker_state *bs = malloc(UPLINK_MAX_BROKERS * sizeof(*bs));
	size_t n = bs ? uplink_broker_states(up, bs, UPLINK_MAX_BROKERS) : 0;
	int rc = bs ? 0 : -1;

	rc |= prom_family(out, name, "gauge",
			     "1 if the producer's connection to this Kafka broker is up, else 0 "
			     "(from librdkafka statistics).");

	for (size_t i = 0; i < n; i++) {
		const char *labels[] = { "broker", bs[i].name, NULL };
		rc |= prom_u64(out, name, labels, uplink_broker_is_up(&bs[i]) ? 1 : 0);
	}
	free(bs);
	return rc;
}

static int render_uplink(struct buf *out, const struct broker *br, struct uplink *up,
			 const struct totals *t)
{
	const struct uplink_stats *st = uplink_stats(up);
	int rc = 0;

	rc |= one_u64(out, "kafkagate_uplink_routed_total", "counter",
		      "Records handed to the Kafka producer.", t->up_routed);
	rc |= one_u64(out, "kafkagate_uplink_blocked_total", "counter",
		      "Times a connection waited for room in the producer queue.", t->sink_blocked);
	rc |= one_u64(out, "kafkagate_uplink_delivered_total", "counter",
		      "Records acknowledged by Kafka.", LD(st->delivered));
	rc |= one_u64(out, "kafkagate_uplink_failed_total", "counter",
		      "Records that failed temporarily (not acknowledged to MQTT).",
		      LD(st->failed));
	rc |= one_u64(out, "kafkagate_uplink_dead_letters_total", "counter",
		      "Records written to the dead-letter topic.", LD(st->dead_letters));
	rc |= one_u64(out, "kafkagate_uplink_dropped_total", "counter",
		      "Records failed permanently without a dead-letter topic.", LD(st->dropped));
	rc |= one_u64(out, "kafkagate_uplink_qos0_failed_total", "counter",
		      "QoS 0 records that did not reach Kafka.", LD(st->qos0_failed));
	rc |= one_u64(out, "kafkagate_uplink_expired_total", "counter",
		      "Routed MQTT 5 messages not produced: their Message Expiry had passed.",
		      uplink_expired(up));
	rc |= one_u64(out, "kafkagate_uplink_connections_closed_total", "counter",
		      "MQTT connections closed after a failed Kafka delivery.", t->sink_failed);
	rc |= prom_family(out, "kafkagate_uplink_in_flight", "gauge",
			     "Records produced and not yet reported by Kafka.");
	rc |= prom_i64(out, "kafkagate_uplink_in_flight", NULL, LD(st->in_flight));
	rc |= prom_family(out, "kafkagate_kafka_queue_depth", "gauge",
			     "Records held by the Kafka producer (librdkafka queue).");
	rc |= prom_i64(out, "kafkagate_kafka_queue_depth", NULL, uplink_queue_depth(up));
	rc |= render_brokers(out, up);
	rc |= render_latency(out, uplink_latency(up));
	rc |= render_stages(out, br, up);
	rc |= render_routes(out, up);
	return rc;
}

/* One family over every upstream; v(up, snapshot) gives each value. */
static int upstream_family(struct buf *out, struct broker *br, const char *name, const char *type,
			   const char *help, double (*v)(struct upstream *, const struct upstream_snapshot *))
{
	int rc = prom_family(out, name, type, help);

	for (int i = 0; i < br->n_ups; i++) {
		struct upstream_snapshot sn;
		const char *labels[] = { "upstream", br->ups[i].name, NULL };
		upstream_snapshot(&br->ups[i], &sn);
		rc |= prom_f64(out, name, labels, v(&br->ups[i], &sn));
	}
	return rc;
}

#define UPV(fn, expr) \
	static double fn(struct upstream *u, const struct upstream_snapshot *sn) \
	{ (void)u; (void)sn; return (double)(expr); }
UPV(up_connected, sn->state == UPSTREAM_UP)
UPV(up_in, LD(u->st.msgs_in))
UPV(up_out, LD(u->st.msgs_out))
UPV(up_acked, LD(u->st.acked_out))
UPV(up_dropped, LD(u->st.dropped))
UPV(up_reconnects, LD(u->st.attempts) > 0 ? LD(u->st.attempts) - 1 : 0)
UPV(up_connects, LD(u->st.connects))
UPV(up_inflight, sn->inflight)
UPV(up_queued, sn->queued)
UPV(up_error_time, sn->last_error_ms / 1e3)

static int render_upstreams(struct buf *out, struct broker *br)
{
	int rc = 0;

	if (br->n_ups == 0)
		return 0;
	rc |= upstream_family(out, br, "kafkagate_upstream_connected", "gauge",
			      "1 while the connection to the upstream broker is up (CONNACK accepted).",
			      up_connected);
	rc |= upstream_family(out, br, "kafkagate_upstream_messages_received_total", "counter",
			      "PUBLISH packets received from the upstream broker.", up_in);
	rc |= upstream_family(out, br, "kafkagate_upstream_messages_sent_total", "counter",
			      "PUBLISH packets sent to the upstream broker (downlink commands, "
			      "resends included).", up_out);
	rc |= upstream_family(out, br, "kafkagate_upstream_commands_acknowledged_total", "counter",
			      "QoS 1/2 commands the upstream broker acknowledged (PUBACK, PUBCOMP).",
			      up_acked);
	rc |= upstream_family(out, br, "kafkagate_upstream_dropped_total", "counter",
			      "Messages acknowledged but not taken (topic over the limits), and "
			      "commands dropped (QoS 0 while down, queue full).", up_dropped);
	rc |= upstream_family(out, br, "kafkagate_upstream_reconnects_total", "counter",
			      "Connection attempts after the first.", up_reconnects);
	rc |= upstream_family(out, br, "kafkagate_upstream_connections_total", "counter",
			      "Connections the upstream broker accepted.", up_connects);
	rc |= upstream_family(out, br, "kafkagate_upstream_commands_inflight", "gauge",
			      "Commands sent and not yet acknowledged by the upstream broker.",
			      up_inflight);
	rc |= upstream_family(out, br, "kafkagate_upstream_commands_queued", "gauge",
			      "Commands waiting for the upstream broker (its window, or a reconnect).",
			      up_queued);
	rc |= upstream_family(out, br, "kafkagate_upstream_last_error_timestamp_seconds", "gauge",
			      "When the last error (in /api/v1/status) happened; 0: none.",
			      up_error_time);
	return rc;
}

int metrics_render(struct buf *out, struct broker *br, struct uplink *up, int64_t start_wall_ms,
		   const struct metrics_hook *hook)
{
	static const char *const version[] = { "version", KG_VERSION, NULL };
	struct totals t;
	int rc = 0;

	sum_workers(br, &t);
	if (up)
		uplink_counts(up, &t.up_routed, &t.up_unrouted);
	rc |= prom_family(out, "kafkagate_build_info", "gauge",
			     "Always 1; the labels describe the build.");
	rc |= prom_u64(out, "kafkagate_build_info", version, 1);
	rc |= prom_family(out, "kafkagate_start_time_seconds", "gauge",
			     "Start time of the process since the Unix epoch, in seconds.");
	rc |= prom_f64(out, "kafkagate_start_time_seconds", NULL, (double)start_wall_ms / 1e3);
	rc |= render_mqtt(out, br, &t);
	rc |= render_auth(out, br);
	rc |= render_upstreams(out, br);
	rc |= one_u64(out, "kafkagate_uplink_unrouted_total", "counter",
		      "Published messages that matched no route.", t.up_unrouted);
	if (up)
		rc |= render_uplink(out, br, up, &t);
	if (hook && hook->render)
		rc |= hook->render(out, hook->ud);
	return rc ? -1 : 0;
}
