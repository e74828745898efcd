#!/usr/bin/env bash
# kafka-cluster-check.sh - checks `scripts/kafka-local cluster` end to end on
# this machine: three brokers start; records produced with acks=all to a
# replication-factor-3 topic (min.insync.replicas 2) are delivered; after
# SIGKILL of the partition's leader the next records are still delivered (a
# new leader from the ISR); the killed broker restarts and rejoins the ISR;
# with the new leader paused (SIGSTOP) records are delivered again once it
# is fenced; after SIGCONT every record is readable; stop leaves no JVM.
# Uses kcat as the client. Run from the repository root; about 40-60 s on 2
# cores. Not part of `make test` (three JVMs); run it by hand after
# changing the cluster mode.
#
# Exit 0 when every check passed or when java/kcat is missing (a "skip:"
# line says so), 1 on a failure. A private KAFKA_RUN_DIR, stopped on exit.
set -euo pipefail

KL=scripts/kafka-local
TOPIC=kg-cluster-check
command -v java >/dev/null || { echo "kafka-cluster-check: skip: java not found"; exit 0; }
command -v kcat >/dev/null || { echo "kafka-cluster-check: skip: kcat not found"; exit 0; }

KAFKA_RUN_DIR=$(mktemp -d /tmp/kg-cluster-check.XXXXXX)
export KAFKA_RUN_DIR
cleanup() {
	"$KL" cluster stop >/dev/null 2>&1 || true
	rm -rf "$KAFKA_RUN_DIR"
}
trap cleanup EXIT

fail() { echo "kafka-cluster-check: FAIL: $*"; "$KL" cluster status || true; exit 1; }
ok() { echo "kafka-cluster-check: ok: $*"; }

# produce FIRST LAST: records FIRST..LAST with acks=all; kcat exits non-zero
# when a delivery failed.
produce() {
	local t0=$SECONDS
	# Connection errors on the way are expected (a broker is down): kcat's
	# stderr is dropped, its exit status counts.
	seq "$1" "$2" | kcat -P -b "$BS" -t "$TOPIC" -X acks=all -X message.timeout.ms=40000 \
		-X topic.metadata.refresh.interval.ms=1000 -X log_level=0 2>/dev/null ||
		fail "records $1..$2 not delivered"
	echo "$((SECONDS - t0))"
}

leader() { "$KL" cluster leader "$TOPIC" 0; }

# Waits up to 20 s for the ISR of partition 0 to be exactly $1 brokers.
wait_isr() {
	local i isr
	for ((i = 0; i < 40; i++)); do
		isr=$(kcat -b "$BS" -L -t "$TOPIC" -m 5 2>/dev/null |
			sed -n 's/^ *partition 0, .*isrs: \([0-9,]*\).*/\1/p')
		[[ -n $isr && $(tr ',' '\n' <<<"$isr" | wc -l) -eq $1 ]] && { echo "$isr"; return 0; }
		sleep 0.5
	done
	fail "ISR of $TOPIC[0] is '$isr', wanted $1 brokers"
}

t0=$SECONDS
BS=$("$KL" cluster start) || fail "cluster start"
ok "cluster start in $((SECONDS - t0)) s: $BS"
[[ $(tr ',' '\n' <<<"$BS" | grep -c '^127\.0\.0\.1:[0-9]*$') -eq 3 ]] || fail "bootstrap '$BS'"

produce 1 5 >/dev/null
isr=$(wait_isr 3)
ok "5 records with acks=all; replicas in sync: $isr"

l=$(leader)
"$KL" cluster kill "$l"
s=$(produce 6 10)
l2=$(leader)
[[ $l2 != "$l" && $l2 != -1 ]] || fail "leader still '$l2' after killing $l"
ok "leader $l killed: 5 more records delivered in $s s, new leader $l2"

t0=$SECONDS
"$KL" cluster restart "$l" || fail "restart $l"
isr=$(wait_isr 3)
ok "broker $l restarted in $((SECONDS - t0)) s; ISR $isr"

"$KL" cluster pause "$l2"
[[ $("$KL" cluster status | grep -c ' paused ') -eq 1 ]] || fail "status does not show the pause"
s=$(produce 11 15)
ok "leader $l2 paused: 5 more records delivered in $s s, leader now $(leader)"
"$KL" cluster resume "$l2"
isr=$(wait_isr 3)
"$KL" cluster status >/dev/null || fail "not every broker runs after resume"

got=$(kcat -C -b "$BS" -t "$TOPIC" -e -q -X log_level=0 | sort -n | tr '\n' ' ')
[[ $got == "$(seq 1 15 | tr '\n' ' ')" ]] || fail "read back '$got'"
ok "after resume ISR $isr; all 15 records read back"

pids=$(for i in 1 2 3; do "$KL" cluster pid "$i"; done)
t0=$SECONDS
"$KL" cluster stop
for p in $pids; do
	# An exiting JVM or a zombie not yet reaped has an empty cmdline.
	[[ -n $(tr -d '\0' 2>/dev/null <"/proc/$p/cmdline") ]] && fail "pid $p still runs after stop"
done
ok "cluster stop in $((SECONDS - t0)) s; no JVM left"
