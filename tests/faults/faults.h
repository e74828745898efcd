/*
 * faults.h - the fault harness (tests/faults/, docs/faults.md): one binary,
 * build/tests/faults, with one subcommand per role; tests/faults/run.sh
 * starts the gateway, Kafka and these roles, injects the fault and prints
 * one result row per scenario.
 *
 *   pub     MQTT publishers: QoS 1 payloads "<client> <seq>", reconnecting
 *           with clean session 0 and resending what is unacknowledged; every
 *           PUBACK is logged "<client> <seq> <latency us>"
 *   dev     MQTT devices subscribed QoS 1 to their command topic; every
 *           received command is logged "<device> <seq> <dup>"; a fraction
 *           withholds PUBACK
 *   cmd     a Kafka producer of commands "<device> <seq>" (key = device),
 *           logging every delivered record "<device> <seq>"
 *   verify  reads the uplink topic back and checks it against the ack log
 *   verify-cmd  checks the device logs against the produced commands
 *   sample  peak RSS and descriptor count of the PIDs in a file
 *   ping    PINGREQ -> PINGRESP round trips
 *   mock    a librdkafka mock cluster speaking kg-mockkafka's stdin protocol
 *           (a stand-in used only when build/tests/kg-mockkafka is absent)
 *
 * Every role prints one "RESULT key=value ..." line on stdout at the end.
 */
#ifndef KG_FAULTS_H
#define KG_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int fl_pub_main(int argc, char **argv);
int fl_dev_main(int argc, char **argv);
int fl_ping_main(int argc, char **argv);
int fl_cmd_main(int argc, char **argv);
int fl_verify_main(int argc, char **argv);
int fl_verify_cmd_main(int argc, char **argv);
int fl_sample_main(int argc, char **argv);
int fl_mock_main(int argc, char **argv);

/* Monotonic time. */
int64_t fl_now_us(void);
/* Sleeps us microseconds (restarting on EINTR). */
void fl_sleep_us(int64_t us);

/* "--name value" options: the value of --name in argv, or def. */
const char *fl_opt(int argc, char **argv, const char *name, const char *def);
long fl_opt_l(int argc, char **argv, const char *name, long def);
double fl_opt_d(int argc, char **argv, const char *name, double def);

/* A comma-separated list of ports: fills ports[cap], returns the count. */
int fl_parse_ports(const char *s, int *ports, int cap);

/* Set by SIGTERM/SIGINT once fl_on_signals() installed the handlers. */
extern volatile int fl_stop;
void fl_on_signals(void);

/* Latency percentiles over n values (sorted in place); q in 0..1. */
int64_t fl_pct(int64_t *v, size_t n, double q);

/* A growable array of int64 (sequence numbers, latencies). */
struct fl_vec {
	int64_t *v;
	size_t n, cap;
};
void fl_vec_push(struct fl_vec *a, int64_t x);
void fl_vec_free(struct fl_vec *a);

/* A table of names (client or device ids) to small indexes. */
struct fl_names {
	char **name;
	size_t n, cap;
	size_t *slot; /* open addressing, slot_cap entries, index + 1 */
	size_t slot_cap;
};
/* Index of name, added when absent (add) or -1. */
long fl_names_get(struct fl_names *t, const char *name, bool add);
void fl_names_free(struct fl_names *t);

/* The devices that withhold PUBACK: device d-I when I is a multiple of
 * round(1/frac), so that the verifier can tell them from the id alone. */
static inline bool fl_withholds(long i, double frac)
{
	long every;

	if (frac <= 0)
		return false;
	every = (long)(1.0 / frac + 0.5);
	return every <= 1 || i % every == 0;
}

#endif
