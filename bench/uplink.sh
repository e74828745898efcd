#!/usr/bin/env bash
# uplink.sh - uplink (MQTT -> Kafka) throughput and latency, with a bare
# librdkafka producer and mosquitto + `mosquitto_sub | kcat -P` beside it, on
# librdkafka's mock cluster and on a real Kafka (scripts/kafka-local).
# Prints one markdown table (also written to $OUT).
#
# Rows, for each cluster and payload size:
#   producer     build/bench/uplink_bench produce: the records the gateway
#                would write (same properties, keys, headers), flat out.
#   kafkagate 0  PUBS MQTT publishers at QoS 0, flat out; msgs/s = records
#                that reached Kafka during the run / its duration.
#   kafkagate 1  PUBS publishers at QoS 1, INFLIGHT unacknowledged each;
#                msgs/s = PUBACKs per second; latency = publish -> PUBACK.
#   kafkagate 1, MQTT 5 (MQTT5=1, the default): the same QoS 1 load from
#                MQTT 5.0 publishers, without and with topic aliases,
#                right after the 3.1.1 row so that they share the load.
#   mosquitto    the same QoS 0 load into mosquitto, bridged by
#                `mosquitto_sub -t '#' | kcat -P`; lossy: "in Kafka" shows
#                how much arrived.
# Each MQTT row gets a fresh broker and a fresh Kafka topic (4 partitions).
# The mock cluster runs in its own process (uplink_bench mock), not inside
# the gateway (brokers = "embedded"), so the gateway's CPU column is the
# gateway's alone.
#
# Environment: DURATION (10 s per row), SIZES ("64 1024"), PUBS (100),
# INFLIGHT (10), CLUSTERS ("mock kafka"), KG_BIN, KG_BIN_OLD (another build,
# e.g. from a branch point: its QoS 0 and QoS 1 rows are run right after
# KG_BIN's, "kafkagate before"), MQTT5 (1: the MQTT 5 QoS 1 rows; 0: none),
# UB (uplink_bench binary), MOSQ_BIN, OUT (bench/results/uplink.md).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
SIZES=${SIZES:-"64 1024"}
PUBS=${PUBS:-100}
INFLIGHT=${INFLIGHT:-10}
CLUSTERS=${CLUSTERS:-"mock kafka"}
KG_BIN=${KG_BIN:-build/kafkagate}
KG_BIN_OLD=${KG_BIN_OLD:-}
MQTT5=${MQTT5:-1}
UB=${UB:-build/bench/uplink_bench}
MOSQ_BIN=${MOSQ_BIN:-/usr/sbin/mosquitto}
OUT=${OUT:-bench/results/uplink.md}
TICK=$(getconf CLK_TCK)
RUNID=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/uplink_lib.sh
. bench/uplink_lib.sh
uplink_setup kg-uplink-bench

# ---- rows ---------------------------------------------------------------

declare -A R

# run_producer CLUSTER SIZE: the bare producer row.
run_producer() {
	local c=$1 s=$2 line
	line=$(timeout $((DURATION + 60)) "$UB" produce --bootstrap "$BOOT" \
		--topic "ub-$c-prod-$s-$RUNID" --clients "$PUBS" --size "$s" \
		--duration "$DURATION" 2>>"$WORK/ub.err" | grep '^RESULT' || true)
	say "  producer $c $s: $line"
	R[$c|$s|prod|line]=$line
	R[$c|$s|prod|rate]=$(field delivered_per_s "$line")
	R[$c|$s|prod|sent]=$(field sent "$line")
	R[$c|$s|prod|kafka]=$(field delivered "$line")
	R[$c|$s|prod|cpu]=$(field cpu_s "$line")
}

# uplink_bench options of a row kind: the MQTT 5 rows' protocol level.
declare -A KIND_ARGS=([kg1m5]="--mqtt5" [kg1m5a]="--topic-alias")

# run_mqtt CLUSTER SIZE KIND QOS PORT TOPIC PID...: the publishers against
# PORT, watching TOPIC; CPU is summed over the PIDs.
run_mqtt() {
	local c=$1 s=$2 k=$3 q=$4 port=$5 topic=$6
	shift 6
	local pid t0=0 t1=0 line
	for pid in "$@"; do t0=$((t0 + $(cpu_ticks "$pid"))); done
	# shellcheck disable=SC2086
	line=$(timeout $((DURATION + 120)) "$UB" mqtt --port "$port" --clients "$PUBS" \
		--qos "$q" --size "$s" --inflight "$INFLIGHT" --duration "$DURATION" --drain 30 \
		--prefix bench --bootstrap "$BOOT" --topic "$topic" ${KIND_ARGS[$k]:-} 2>>"$WORK/ub.err" |
		grep '^RESULT' || true)
	for pid in "$@"; do t1=$((t1 + $(cpu_ticks "$pid"))); done
	say "  $k $c $s: $line"
	R[$c|$s|$k|line]=$line
	R[$c|$s|$k|sent]=$(field sent "$line")
	R[$c|$s|$k|kafka]=$(field kafka_records "$line")
	if [ "$q" = 1 ]; then
		R[$c|$s|$k|rate]=$(field acked_per_s "$line")
		R[$c|$s|$k|p50]=$(field p50_ms "$line")
		R[$c|$s|$k|p99]=$(field p99_ms "$line")
	else
		R[$c|$s|$k|rate]=$(field kafka_window_per_s "$line")
	fi
	R[$c|$s|$k|cpu]=$(awk -v t=$((t1 - t0)) -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz }')
}

# run_gateway CLUSTER SIZE QOS KIND BIN: a fresh gateway (BIN) and topic.
run_gateway() {
	local c=$1 s=$2 q=$3 k=$4 bin=$5 topic="ub-$1-$4-$2-$RUNID"
	start_gateway "$bin" "$topic" || return 0
	run_mqtt "$c" "$s" "$k" "$q" "$GW_PORT" "$topic" "$GW_PID"
	stop_pid "$GW_PID"
}

run_mosquitto() {
	local c=$1 s=$2 port topic="ub-$1-mosq-$2-$RUNID" mq sub kc
	if ! [ -x "$MOSQ_BIN" ] || ! command -v mosquitto_sub >/dev/null ||
		! command -v kcat >/dev/null; then
		say "uplink: mosquitto, mosquitto_sub or kcat missing: no mosquitto rows"
		return 0
	fi
	port=$(free_port)
	printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" \
		>"$WORK/mosquitto.conf"
	"$MOSQ_BIN" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
	mq=$!
	PIDS+=("$mq")
	wait_port "$port" || { stop_pid "$mq"; return 0; }
	rm -f "$WORK/pipe"
	mkfifo "$WORK/pipe"
	kcat -P -b "$BOOT" -t "$topic" -X acks=all -X enable.idempotence=true \
		-X linger.ms=5 -X compression.type=lz4 <"$WORK/pipe" 2>>"$WORK/kcat.err" &
	kc=$!
	PIDS+=("$kc")
	mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' -q 0 >"$WORK/pipe" 2>>"$WORK/kcat.err" &
	sub=$!
	PIDS+=("$sub")
	sleep 1
	run_mqtt "$c" "$s" mosq 0 "$port" "$topic" "$mq" "$sub" "$kc"
	# EOF on the pipe makes kcat flush and exit; then count what arrived.
	stop_pid "$sub"
	for _ in $(seq 300); do alive "$kc" || break; sleep 0.1; done
	stop_pid "$kc"
	stop_pid "$mq"
	local line
	line=$("$UB" count --bootstrap "$BOOT" --topic "$topic" 2>/dev/null | grep '^RESULT' || true)
	R[$c|$s|mosq|kafka]=$(field records "$line")
}

# ---- main ---------------------------------------------------------------

timeout 600 make -s "$KG_BIN" "$UB" >"$WORK/make.log" 2>&1 || {
	say "uplink: build failed:"
	tail -n 20 "$WORK/make.log" >&2
	exit 1
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
RAN=()
for c in $CLUSTERS; do
	say "cluster: $c"
	if ! start_cluster "$c"; then
		R[$c|skip]=1
		continue
	fi
	RAN+=("$c")
	say "  bootstrap $BOOT"
	for s in $SIZES; do
		run_producer "$c" "$s"
		# Old and new builds interleaved, so that they share the load.
		run_gateway "$c" "$s" 0 kg0 "$KG_BIN"
		[ -n "$KG_BIN_OLD" ] && run_gateway "$c" "$s" 0 old0 "$KG_BIN_OLD"
		run_gateway "$c" "$s" 1 kg1 "$KG_BIN"
		if [ "$MQTT5" = 1 ]; then
			run_gateway "$c" "$s" 1 kg1m5 "$KG_BIN"
			run_gateway "$c" "$s" 1 kg1m5a "$KG_BIN"
		fi
		[ -n "$KG_BIN_OLD" ] && run_gateway "$c" "$s" 1 old1 "$KG_BIN_OLD"
		run_mosquitto "$c" "$s"
	done
	stop_cluster "$c"
done

val() { local v=${R[$1]:-}; echo "${v:--}"; }
pct() {
	awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
		if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.1f%%", 100 * a / b }'
}
per_m() {
	awk -v cpu="${1:-}" -v n="${2:-}" 'BEGIN {
		if (cpu == "" || n == "" || n + 0 <= 0) print "-"; else printf "%.2f", cpu / (n / 1e6) }'
}

mkdir -p "$(dirname "$OUT")"
{
	echo "# kafkagate uplink benchmark"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "- load average before: $LOAD0 (everything below shares these CPUs)"
	echo "- DURATION=${DURATION}s per row, PUBS=$PUBS publishers, INFLIGHT=$INFLIGHT per QoS 1" \
		"publisher, topics with 4 partitions, librdkafka $(pkg-config --modversion rdkafka)"
	echo "- command: DURATION=$DURATION SIZES=\"$SIZES\" PUBS=$PUBS INFLIGHT=$INFLIGHT" \
		"CLUSTERS=\"$CLUSTERS\" MQTT5=$MQTT5${KG_BIN_OLD:+ KG_BIN_OLD=$KG_BIN_OLD} bench/uplink.sh"
	echo
	echo "| cluster | payload B | pipeline | msgs/s | p50 ms | p99 ms | sent | in Kafka | CPU s | CPU s per 1M |"
	echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
	for c in $CLUSTERS; do
		if [ -n "${R[$c|skip]:-}" ]; then
			echo "| $c | - | not run (cluster did not start) | - | - | - | - | - | - | - |"
			continue
		fi
		for s in $SIZES; do
			for k in prod kg0 old0 kg1 kg1m5 kg1m5a old1 mosq; do
				case $k in
				prod) name="bare librdkafka producer" ;;
				kg0) name="kafkagate QoS 0" ;;
				old0) name="kafkagate before, QoS 0" ;;
				kg1) name="kafkagate QoS 1" ;;
				kg1m5) name="kafkagate QoS 1, MQTT 5" ;;
				kg1m5a) name="kafkagate QoS 1, MQTT 5, topic aliases" ;;
				old1) name="kafkagate before, QoS 1" ;;
				mosq) name="mosquitto + mosquitto_sub \\| kcat (QoS 0)" ;;
				esac
				# Rows that were run show even when they failed.
				[ -z "${R[$c|$s|$k|line]:-}" ] && [ "$k" != prod ] && [ "$k" != mosq ] &&
					[ "$k" != kg0 ] && [ "$k" != kg1 ] &&
					{ [ "$MQTT5" != 1 ] || [ "${k#kg1m5}" = "$k" ]; } && continue
				echo "| $c | $s | $name | $(val "$c|$s|$k|rate") | $(val "$c|$s|$k|p50") |" \
				     "$(val "$c|$s|$k|p99") | $(val "$c|$s|$k|sent") | $(val "$c|$s|$k|kafka") |" \
				     "$(val "$c|$s|$k|cpu") | $(per_m "${R[$c|$s|$k|cpu]:-}" "${R[$c|$s|$k|kafka]:-}") |"
			done
		done
	done
	echo
	echo "msgs/s: producer = delivery reports/s; kafkagate QoS 0 and mosquitto = records that"
	echo "reached Kafka during the run ÷ DURATION; kafkagate QoS 1 = PUBACKs/s. CPU s: the"
	echo "gateway process (kafkagate rows), mosquitto + mosquitto_sub + kcat (mosquitto rows),"
	echo "the producer process (producer rows), over the row; per 1M = per million records in Kafka."
	echo
	echo "Targets:"
	echo
	for c in "${RAN[@]}"; do
		for s in $SIZES; do
			echo "- $c, ${s} B: QoS 0 kafkagate / bare producer =" \
				"$(pct "${R[$c|$s|kg0|rate]:-}" "${R[$c|$s|prod|rate]:-}") (target ≥ 60%);" \
				"QoS 1: $(val "$c|$s|kg1|rate") msgs/s, p99 $(val "$c|$s|kg1|p99") ms" \
				"(target on mock: ≥ 50000 msgs/s, p99 < 50 ms); mosquitto pipeline delivered" \
				"$(pct "${R[$c|$s|mosq|kafka]:-}" "${R[$c|$s|mosq|sent]:-}") of what was published"
			if [ "$MQTT5" = 1 ]; then
				echo "  - QoS 1 MQTT 5 / MQTT 3.1.1 msgs/s:" \
					"$(pct "${R[$c|$s|kg1m5|rate]:-}" "${R[$c|$s|kg1|rate]:-}")," \
					"with topic aliases $(pct "${R[$c|$s|kg1m5a|rate]:-}" "${R[$c|$s|kg1|rate]:-}")" \
					"(target ≥ 90%); CPU per 1M" \
					"$(pct "$(per_m "${R[$c|$s|kg1m5|cpu]:-}" "${R[$c|$s|kg1m5|kafka]:-}")" \
						"$(per_m "${R[$c|$s|kg1|cpu]:-}" "${R[$c|$s|kg1|kafka]:-}")")," \
					"$(pct "$(per_m "${R[$c|$s|kg1m5a|cpu]:-}" "${R[$c|$s|kg1m5a|kafka]:-}")" \
						"$(per_m "${R[$c|$s|kg1|cpu]:-}" "${R[$c|$s|kg1|kafka]:-}")");" \
					"p99 $(val "$c|$s|kg1m5|p99"), $(val "$c|$s|kg1m5a|p99") ms" \
					"against $(val "$c|$s|kg1|p99") ms"
			fi
			[ -z "$KG_BIN_OLD" ] && continue
			echo "  - against kafkagate before: QoS 0 msgs/s" \
				"$(pct "${R[$c|$s|kg0|rate]:-}" "${R[$c|$s|old0|rate]:-}")," \
				"CPU per 1M $(pct "$(per_m "${R[$c|$s|kg0|cpu]:-}" "${R[$c|$s|kg0|kafka]:-}")" \
					"$(per_m "${R[$c|$s|old0|cpu]:-}" "${R[$c|$s|old0|kafka]:-}")");" \
				"QoS 1 msgs/s $(pct "${R[$c|$s|kg1|rate]:-}" "${R[$c|$s|old1|rate]:-}")," \
				"CPU per 1M $(pct "$(per_m "${R[$c|$s|kg1|cpu]:-}" "${R[$c|$s|kg1|kafka]:-}")" \
					"$(per_m "${R[$c|$s|old1|cpu]:-}" "${R[$c|$s|old1|kafka]:-}")")"
		done
	done
	echo
	echo "Raw RESULT lines:"
	echo
	for c in "${RAN[@]}"; do
		for s in $SIZES; do
			for k in prod kg0 old0 kg1 kg1m5 kg1m5a old1 mosq; do
				[ -n "${R[$c|$s|$k|line]:-}" ] && echo "    $c $s $k: ${R[$c|$s|$k|line]}"
			done
		done
	done
} | tee "$OUT"
