/*
 * metrics.h - the /metrics scrape: Prometheus text exposition format 0.0.4.
 *
 * Everything is read at scrape time: per-worker counters (struct
 * worker_stats) summed with relaxed atomic loads, the broker's connection
 * gauge, the uplink's counters and latency histogram, and the retained
 * message count (broker_retained_stats(), under retain_lock, held for one
 * count). Scraping never takes a lock that a worker holds on its hot path
 * and never touches a worker's clients: counters may be a few increments
 * apart from one another, which Prometheus tolerates.
 *
 * The connection families have a listener="all" series (the rejections an
 * unlabelled one) and one per listener ("kind:port").
 *
 * Another module (downlink: records consumed, delivered, skipped,
 * kafkagate_downlink_consumer_lag{topic,partition,group}) renders its own
 * families with core/prom.h through metrics_render()'s `hook`.
 *
 * Threads: the admin thread (or any thread that is not a worker holding
 * retain_lock). Everything appends to a caller-owned buffer.
 */
#ifndef KG_METRICS_H
#define KG_METRICS_H

#include <stdint.h>

#include "core/buf.h"

struct broker;
struct uplink;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Another module's families, appended after the built-in ones. Must follow
 * the same rules (relaxed loads, no worker locks). Returns 0 or -1 (ENOMEM). */
struct metrics_hook {
	int (*render)(struct buf *out, void *ud);
	void *ud;
};

/*
 * Appends a whole scrape of br to out. start_wall_ms is the process start
 * (Unix ms) for kafkagate_start_time_seconds; http.c passes the time its
 * server was created, during start-up. hook may be NULL.
 * Returns 0, or -1 on allocation failure (out then holds a partial scrape).
 */
int metrics_render(struct buf *out, struct broker *br, struct uplink *up, int64_t start_wall_ms,
		   const struct metrics_hook *hook);

#endif
