#!/usr/bin/env bash
# upstream.sh - bridging an existing broker into Kafka: mosquitto with PUBS
# publishers, and three ways to get its messages into Kafka, in one run on
# one machine, for QoS 0 and QoS 1:
#
#   kafkagate upstream  mosquitto -> kafkagate (upstreams, subscription
#                       bench/# at the row's QoS) -> Kafka. QoS 1: kafkagate
#                       acknowledges mosquitto only once Kafka has the record.
#   sub | kcat          mosquitto -> `mosquitto_sub -q Q | kcat -P` -> Kafka,
#                       what a user would otherwise assemble: it acknowledges
#                       mosquitto on receipt, before Kafka (and splits records
#                       at newlines; the payloads here have none).
#   kafkagate direct    the same publishers straight into kafkagate (a
#                       listener and the same route): the load without a
#                       second broker, for comparison.
#
# Kafka is librdkafka's mock cluster in its own process (build/bench/
# uplink_bench mock), so the CPU columns are the bridge's alone. Publishers
# are uplink_bench mqtt (QoS 1: INFLIGHT unacknowledged each); msgs/s into
# Kafka = records in Kafka / time from the first publish to the last record
# (the bridge drains what mosquitto queued). "bridge CPU" is kafkagate's for
# the kafkagate rows and mosquitto_sub + kcat for the pipeline row;
# mosquitto's own CPU is its column. Per message = CPU ÷ records in Kafka.
#
# mosquitto runs with max_inflight_messages MOSQ_INFLIGHT (its default is
# 20) and no queue cap, and kafkagate with limits.max_inflight MOSQ_INFLIGHT,
# so that QoS 1 is not held to 20 messages per Kafka round trip; see
# docs/benchmarks.md for the rows with mosquitto's default.
#
# Environment: DURATION (10 s of publishing per row), PUBS (10), SIZE (64),
# INFLIGHT (10), MOSQ_INFLIGHT (1000), QOSES ("0 1"), KG_BIN, UB, MOSQ_BIN,
# OUT (bench/results/upstream.md). Stops everything it started, by PID.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
PUBS=${PUBS:-10}
SIZE=${SIZE:-64}
INFLIGHT=${INFLIGHT:-10}
MOSQ_INFLIGHT=${MOSQ_INFLIGHT:-1000}
QOSES=${QOSES:-"0 1"}
KG_BIN=${KG_BIN:-build/kafkagate}
UB=${UB:-build/bench/uplink_bench}
MOSQ_BIN=${MOSQ_BIN:-/usr/sbin/mosquitto}
OUT=${OUT:-bench/results/upstream.md}
TICK=$(getconf CLK_TCK)
RUNID=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_setup kg-upstream-bench

for tool in "$MOSQ_BIN" mosquitto_sub kcat; do
	command -v "$tool" >/dev/null || { say "upstream: $tool not found"; exit 1; }
done
timeout 600 make -s "$KG_BIN" "$UB" >"$WORK/make.log" 2>&1 || {
	say "upstream: build failed:"
	tail -n 20 "$WORK/make.log" >&2
	exit 1
}

# ---- the mock cluster ------------------------------------------------------

start_mock "$UB" || { say "upstream: the mock cluster did not start"; exit 1; }

# ---- pieces -----------------------------------------------------------------

# start_mosquitto: sets MQ_PORT, MQ_PID.
start_mosquitto() {
	MQ_PORT=$(free_port)
	printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n%s\n%s\n' \
		"$MQ_PORT" "max_inflight_messages $MOSQ_INFLIGHT" "max_queued_messages 0" \
		>"$WORK/mosquitto.conf"
	"$MOSQ_BIN" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
	MQ_PID=$!
	PIDS+=("$MQ_PID")
	wait_port "$MQ_PORT" || { say "upstream: mosquitto did not start"; exit 1; }
}

# start_gateway TOPIC QOS [UPSTREAM_PORT]: sets GW_PORT, GW_PID.
start_gateway() {
	local topic=$1 q=$2 up=${3:-}
	GW_PORT=$(free_port)
	{
		echo "listeners = ( { address = \"127.0.0.1\"; port = $GW_PORT; } );"
		echo "limits = { max_connections = 100000; max_inflight = $MOSQ_INFLIGHT; };"
		echo "log = { level = \"warn\"; };"
		echo "kafka = { brokers = \"$BOOT\"; flush_timeout = 10; };"
		echo "routes = ( { filter = \"bench/#\"; topic = \"$topic\"; key = \"\${clientid}\"; } );"
		if [ -n "$up" ]; then
			echo "upstreams = ( { name = \"mosq\"; address = \"127.0.0.1\"; port = $up;"
			echo "  clean_session = true; subscriptions = ( { filter = \"bench/#\"; qos = $q; } ); } );"
		fi
	} >"$WORK/gw.cfg"
	"$KG_BIN" --config "$WORK/gw.cfg" >>"$WORK/gw.log" 2>&1 &
	GW_PID=$!
	PIDS+=("$GW_PID")
	wait_port "$GW_PORT" || { say "upstream: kafkagate did not start"; tail -n 5 "$WORK/gw.log" >&2; exit 1; }
	if [ -n "$up" ]; then
		# Subscribed: a probe message on mosquitto shows up in Kafka's count.
		sleep 1
	fi
}

declare -A R

# run ROW QOS PORT TOPIC BRIDGE_PIDS MOSQ_PID: publishers against PORT.
run() {
	local row=$1 q=$2 port=$3 topic=$4 bridge=$5 mq=${6:-} b0=0 b1=0 m0=0 m1=0 pid line
	for pid in $bridge; do b0=$((b0 + $(cpu_ticks "$pid"))); done
	[ -n "$mq" ] && m0=$(cpu_ticks "$mq")
	line=$(timeout $((DURATION + 200)) "$UB" mqtt --port "$port" --clients "$PUBS" --qos "$q" \
		--size "$SIZE" --inflight "$INFLIGHT" --duration "$DURATION" --drain 120 \
		--prefix bench --bootstrap "$BOOT" --topic "$topic" 2>>"$WORK/ub.err" |
		grep '^RESULT' || true)
	for pid in $bridge; do b1=$((b1 + $(cpu_ticks "$pid"))); done
	[ -n "$mq" ] && m1=$(cpu_ticks "$mq")
	say "  $row q$q: $line"
	R[$row|$q|line]=$line
	R[$row|$q|sent]=$(field sent "$line")
	R[$row|$q|kafka]=$(field kafka_records "$line")
	R[$row|$q|rate]=$(field kafka_per_s "$line")
	R[$row|$q|cpu]=$(awk -v t=$((b1 - b0)) -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz }')
	R[$row|$q|mcpu]=$( [ -n "$mq" ] && awk -v t=$((m1 - m0)) -v hz="$TICK" \
		'BEGIN { printf "%.2f", t / hz }' || echo -)
}

row_upstream() {
	local q=$1 topic="ub-up-kg$1-$RUNID"
	start_mosquitto
	start_gateway "$topic" "$q" "$MQ_PORT"
	run upstream "$q" "$MQ_PORT" "$topic" "$GW_PID" "$MQ_PID"
	stop_pid "$GW_PID"
	stop_pid "$MQ_PID"
}

row_pipeline() {
	local q=$1 topic="ub-up-kcat$1-$RUNID" sub kc
	start_mosquitto
	rm -f "$WORK/pipe"
	mkfifo "$WORK/pipe"
	kcat -P -b "$BOOT" -t "$topic" -X acks=all -X enable.idempotence=true \
		-X linger.ms=5 -X compression.type=lz4 <"$WORK/pipe" 2>>"$WORK/kcat.err" &
	kc=$!
	PIDS+=("$kc")
	mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -t 'bench/#' -q "$q" -c -i "bench-sub-$RUNID" \
		>"$WORK/pipe" 2>>"$WORK/kcat.err" &
	sub=$!
	PIDS+=("$sub")
	sleep 1
	run pipeline "$q" "$MQ_PORT" "$topic" "$sub $kc" "$MQ_PID"
	stop_pid "$sub"
	for _ in $(seq 300); do alive "$kc" || break; sleep 0.1; done
	stop_pid "$kc"
	stop_pid "$MQ_PID"
}

row_direct() {
	local q=$1 topic="ub-up-direct$1-$RUNID"
	start_gateway "$topic" "$q"
	run direct "$q" "$GW_PORT" "$topic" "$GW_PID"
	stop_pid "$GW_PID"
}

# ---- main -------------------------------------------------------------------

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for q in $QOSES; do
	say "QoS $q"
	row_upstream "$q"
	row_pipeline "$q"
	row_direct "$q"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

val() { local v=${R[$1]:-}; echo "${v:--}"; }
per_msg() {
	awk -v cpu="${1:-}" -v n="${2:-}" 'BEGIN {
		if (cpu == "" || cpu == "-" || n == "" || n + 0 <= 0) print "-";
		else printf "%.2f", cpu * 1e6 / n }'
}

mkdir -p "$(dirname "$OUT")"
{
	echo "# kafkagate upstream (bridging mosquitto) benchmark"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "- load average before / after: $LOAD0 / $LOAD1 (shared machine: compare rows of one run)"
	echo "- $PUBS publishers, ${SIZE} B payloads, ${DURATION} s of publishing per row," \
		"QoS 1 window $INFLIGHT per publisher; mosquitto $("$MOSQ_BIN" -h 2>/dev/null |
		sed -n 's/^mosquitto version //p' | head -n 1) with max_inflight_messages $MOSQ_INFLIGHT;" \
		"librdkafka $(pkg-config --modversion rdkafka) mock cluster"
	echo "- command: DURATION=$DURATION PUBS=$PUBS SIZE=$SIZE INFLIGHT=$INFLIGHT" \
		"MOSQ_INFLIGHT=$MOSQ_INFLIGHT QOSES=\"$QOSES\" bench/upstream.sh"
	echo
	echo "| QoS | pipeline | msgs/s into Kafka | published | in Kafka | bridge CPU s | bridge µs/msg | mosquitto CPU s |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	for q in $QOSES; do
		for row in upstream pipeline direct; do
			case $row in
			upstream) name="mosquitto → kafkagate upstream → Kafka" ;;
			pipeline) name="mosquitto → mosquitto_sub -q $q \\| kcat -P → Kafka" ;;
			direct) name="kafkagate direct (no mosquitto)" ;;
			esac
			echo "| $q | $name | $(val "$row|$q|rate") | $(val "$row|$q|sent") |" \
			     "$(val "$row|$q|kafka") | $(val "$row|$q|cpu") |" \
			     "$(per_msg "${R[$row|$q|cpu]:-}" "${R[$row|$q|kafka]:-}") | $(val "$row|$q|mcpu") |"
		done
	done
	echo
	echo "Raw RESULT lines:"
	echo
	for q in $QOSES; do
		for row in upstream pipeline direct; do
			[ -n "${R[$row|$q|line]:-}" ] && echo "    $row q$q: ${R[$row|$q|line]}"
		done
	done
} | tee "$OUT"
