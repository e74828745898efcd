/*
 * itcerts.h - the fixture the TLS and WebSocket integration tests share
 * (it_tls.c, it_ws.c):
 *
 * - the test certificates of scripts/gen-test-certs.sh (ca.crt,
 *   server.crt/key, client.crt/key, ...) in a temporary directory, made once
 *   per test group;
 * - a one-broker Kafka mock cluster in the test process, with a producer;
 * - a gateway on a whole config (gw_start_files(): each gateway gets its own
 *   copies of the certificates, named by relative paths) with one uplink
 *   route and one downlink on that cluster.
 *
 * Like gw.h and itkafka.h this does not link cmocka: failures are printed
 * on stderr and returned; the test asserts. Run from the repository root
 * (the script's path is relative). Not thread safe: call from the test's
 * main thread.
 */
#ifndef KG_ITCERTS_H
#define KG_ITCERTS_H

#include <stddef.h>

#include "gw.h"
#include "itkafka.h"

/*
 * The group setup: ignores SIGPIPE (the tests write to sockets the gateway
 * may have closed), makes $TMPDIR/kg-it-TAG.XXXXXX (TMPDIR default /tmp;
 * its name into dir, cap bytes) and fills it with scripts/gen-test-certs.sh,
 * starts a mock cluster of one broker in *K and makes a producer of it in
 * *prod (free with itcerts_teardown()). Returns 0, or -1 (printed).
 */
int itcerts_setup(const char *tag, char *dir, size_t cap, struct itkafka_mock *K,
		  rd_kafka_t **prod);

/* The group teardown: destroys prod (NULL ok), releases K and removes dir.
 * Returns 0, or -1 when dir could not be removed. */
int itcerts_teardown(const char *dir, struct itkafka_mock *K, rd_kafka_t *prod);

/*
 * Starts g with gw_start_files(g, dir, cfg) on this config:
 *   GROUPS (verbatim: "listeners = ( ... );" and any other group)
 *   log = { level = "debug"; };
 *   limits = { connect_timeout = CONNECT_TIMEOUT_S; LIMITS };
 *   kafka = { brokers = "BOOTSTRAP"; flush_timeout = 2; ... short group timeouts };
 *   routes = ( { filter = "TAG/#"; topic = "it-TAG-up"; key = "${clientid}"; format = "raw"; } );
 *   downlink = ( { topic = "it-TAG-cmd"; group = "it-TAG-dl";
 *                  mqtt_topic = "devices/${key}/commands"; qos = 1; } );
 * limits may be "". Returns gw_start_files()'s result (or -1, printed, when
 * the config does not fit 4 kB).
 */
int itcerts_gw_start(struct gw *g, const char *tag, const char *dir, const char *bootstrap,
		     const char *groups, int connect_timeout_s, const char *limits);

#endif
