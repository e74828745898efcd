#!/usr/bin/env bash
# uplink_latency.sh - how long an honest PUBACK takes, beside a bare
# librdkafka producer measured in the same run, on librdkafka's mock cluster
# and on a real Kafka (scripts/kafka-local). Prints markdown tables (also
# written to $OUT).
#
# Scenarios (SCENARIOS, default "seq window linger"), per cluster:
#   seq     one device, QoS 1, one message in flight: publish -> PUBACK p50 and
#           p99; beside it the bare producer with one record in flight
#           (produce -> delivery report, kafkagate's producer properties);
#           REPEAT rounds, the pipelines interleaved within each round. The
#           gateway's /metrics split its time into stages (mean ms): kafka =
#           publish handed to the producer -> delivery report, handoff ->
#           the owning worker, write -> PUBACK written.
#   window  WPUBS devices x WINFLIGHT QoS 1 messages in flight (10 x 20), SIZE
#           bytes: PUBACKs per second, p50/p99, and the records in Kafka
#           (every acknowledged one must be there); the bare producer with
#           WPUBS x WINFLIGHT records in flight beside it; gateway CPU s per
#           million messages.
#   linger  KG_BIN with linger.ms = each of LINGERS: QoS 0 msgs/s that reached
#           Kafka (QPUBS publishers flat out) and CPU per million, the seq
#           p50/p99, the window acks/s and CPU per million, and QoS 1 with
#           QPUBS publishers x 10 in flight (bench/uplink.sh's QoS 1 row).
# Every MQTT row gets a fresh gateway and a fresh topic (4 partitions).
#
# Environment: DURATION (10 s per row), REPEAT (3), CLUSTERS ("mock kafka"),
# KG_BIN (build/kafkagate), KG_BIN_OLD (a build to compare, e.g. from the
# branch point; its rows are interleaved with KG_BIN's), KG_PROPS (extra
# kafka.properties for KG_BIN rows, "name=value ..."), LINGERS ("0 0.5 1 2
# 5"), SIZE (64), WPUBS (10), WINFLIGHT (20), QPUBS (100), UB, OUT
# (bench/results/uplink_latency.md).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
CLUSTERS=${CLUSTERS:-"mock kafka"}
SCENARIOS=${SCENARIOS:-"seq window linger"}
KG_BIN=${KG_BIN:-build/kafkagate}
KG_BIN_OLD=${KG_BIN_OLD:-}
KG_PROPS=${KG_PROPS:-}
LINGERS=${LINGERS:-"0 0.5 1 2 5"}
SIZE=${SIZE:-64}
WPUBS=${WPUBS:-10}
WINFLIGHT=${WINFLIGHT:-20}
QPUBS=${QPUBS:-100}
UB=${UB:-build/bench/uplink_bench}
OUT=${OUT:-bench/results/uplink_latency.md}
TICK=$(getconf CLK_TCK)
RUNID=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/uplink_lib.sh
. bench/uplink_lib.sh
uplink_setup kg-uplink-latency

# new_topic CLUSTER: a fresh topic name in TOPIC (not a $(...): the counter
# must survive).
SEQ=0
new_topic() { SEQ=$((SEQ + 1)); TOPIC="ul-$1-$RUNID-$SEQ"; }

# Rows: one line each in $WORK/rows, "TABLE|cluster|...". The tables are
# printed from it at the end.
row() { local IFS='|'; echo "$*" >>"$WORK/rows"; }

# bare CLUSTER CLIENTS INFLIGHT: the bare producer; sets LINE.
bare() {
	new_topic "$1"
	LINE=$(timeout $((DURATION + 60)) "$UB" produce --bootstrap "$BOOT" --topic "$TOPIC" \
		--clients "$2" --inflight "$3" --size "$SIZE" --duration "$DURATION" 2>>"$WORK/ub.err" |
		grep '^RESULT' || true)
	say "  bare $1 clients=$2 inflight=$3: $LINE"
}

# gateway BIN CLUSTER CLIENTS INFLIGHT QOS [PROPS...]: publishers through a
# fresh gateway; sets LINE, CPU (s), STAGES.
gateway() {
	local bin=$1 c=$2 n=$3 k=$4 q=$5 t t0 t1 s0 s1
	shift 5
	new_topic "$c"
	t=$TOPIC
	LINE="" CPU="" STAGES="kafka=- handoff=- write=-"
	# shellcheck disable=SC2086
	start_gateway "$bin" "$t" "$@" || return 0
	s0=$(stages "$GW_MPORT")
	t0=$(cpu_ticks "$GW_PID")
	LINE=$(timeout $((DURATION + 120)) "$UB" mqtt --port "$GW_PORT" --clients "$n" --qos "$q" \
		--size "$SIZE" --inflight "$k" --duration "$DURATION" --drain 30 --prefix bench \
		--bootstrap "$BOOT" --topic "$t" 2>>"$WORK/ub.err" | grep '^RESULT' || true)
	t1=$(cpu_ticks "$GW_PID")
	s1=$(stages "$GW_MPORT")
	stop_pid "$GW_PID"
	CPU=$(awk -v t=$((t1 - t0)) -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz }')
	[ -n "$s1" ] && STAGES=$(stage_summary "$s0" "$s1")
	say "  $(basename "$bin") $c clients=$n inflight=$k qos=$q $*: $LINE cpu=$CPU $STAGES"
}

per_m() {
	awk -v cpu="${1:-}" -v n="${2:-}" 'BEGIN {
		if (cpu == "" || n == "" || n + 0 <= 0) print "-"; else printf "%.2f", cpu / (n / 1e6) }'
}

# The gateways to compare: label and binary (KG_PROPS go to the new one).
declare -a GWS=("kafkagate|$KG_BIN")
[ -n "$KG_BIN_OLD" ] && GWS+=("kafkagate before|$KG_BIN_OLD")
read -r -a NEW_PROPS <<<"$KG_PROPS"

scenario_seq() {
	local c=$1 r g label bin props
	for ((r = 1; r <= REPEAT; r++)); do
		bare "$c" 1 1
		row seq "$c" "bare producer" "$r" "$(field p50_ms "$LINE")" "$(field p99_ms "$LINE")" \
			"$(field delivered_per_s "$LINE")" "-"
		for g in "${GWS[@]}"; do
			label=${g%%|*} bin=${g#*|}
			props=()
			[ "$bin" = "$KG_BIN" ] && props=("${NEW_PROPS[@]}")
			gateway "$bin" "$c" 1 1 1 "${props[@]}"
			row seq "$c" "$label" "$r" "$(field p50_ms "$LINE")" "$(field p99_ms "$LINE")" \
				"$(field acked_per_s "$LINE")" "$STAGES"
		done
	done
}

scenario_window() {
	local c=$1 r g label bin props
	for ((r = 1; r <= REPEAT; r++)); do
		bare "$c" "$WPUBS" $((WPUBS * WINFLIGHT))
		row window "$c" "bare producer" "$r" "$(field delivered_per_s "$LINE")" \
			"$(field p50_ms "$LINE")" "$(field p99_ms "$LINE")" "$(field delivered "$LINE")" \
			"$(field delivered "$LINE")" "-" "-"
		local bare_rate
		bare_rate=$(field delivered_per_s "$LINE")
		for g in "${GWS[@]}"; do
			label=${g%%|*} bin=${g#*|}
			props=()
			[ "$bin" = "$KG_BIN" ] && props=("${NEW_PROPS[@]}")
			gateway "$bin" "$c" "$WPUBS" "$WINFLIGHT" 1 "${props[@]}"
			row window "$c" "$label" "$r" "$(field acked_per_s "$LINE")" \
				"$(field p50_ms "$LINE")" "$(field p99_ms "$LINE")" "$(field acked "$LINE")" \
				"$(field kafka_records "$LINE")" "$(per_m "$CPU" "$(field acked "$LINE")")" \
				"$(awk -v a="$(field acked_per_s "$LINE")" -v b="$bare_rate" \
					'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')"
		done
	done
}

scenario_linger() {
	local c=$1 l q0 q0cpu s50 s99 w wcpu w50 w99 h hcpu h99
	for l in $LINGERS; do
		gateway "$KG_BIN" "$c" "$QPUBS" 10 0 "${NEW_PROPS[@]}" "linger.ms=$l"
		q0=$(field kafka_window_per_s "$LINE")
		q0cpu=$(per_m "$CPU" "$(field kafka_records "$LINE")")
		gateway "$KG_BIN" "$c" 1 1 1 "${NEW_PROPS[@]}" "linger.ms=$l"
		s50=$(field p50_ms "$LINE") s99=$(field p99_ms "$LINE")
		gateway "$KG_BIN" "$c" "$WPUBS" "$WINFLIGHT" 1 "${NEW_PROPS[@]}" "linger.ms=$l"
		w=$(field acked_per_s "$LINE") w50=$(field p50_ms "$LINE") w99=$(field p99_ms "$LINE")
		wcpu=$(per_m "$CPU" "$(field acked "$LINE")")
		gateway "$KG_BIN" "$c" "$QPUBS" 10 1 "${NEW_PROPS[@]}" "linger.ms=$l"
		h=$(field acked_per_s "$LINE") h99=$(field p99_ms "$LINE")
		hcpu=$(per_m "$CPU" "$(field acked "$LINE")")
		row linger "$c" "$l" "$q0" "$q0cpu" "$s50" "$s99" "$w" "$w50" "$w99" "$wcpu" "$h" "$h99" \
			"$hcpu"
	done
}

# ---- main ---------------------------------------------------------------

timeout 600 make -s "$KG_BIN" "$UB" >"$WORK/make.log" 2>&1 || {
	say "uplink_latency: build failed:"
	tail -n 20 "$WORK/make.log" >&2
	exit 1
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$WORK/rows"
for c in $CLUSTERS; do
	say "cluster: $c"
	start_cluster "$c" || { row skip "$c"; continue; }
	say "  bootstrap $BOOT"
	for s in $SCENARIOS; do
		"scenario_$s" "$c"
	done
	stop_cluster "$c"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# median of the numbers on stdin ("-" when none)
median() { sort -g | awk '/^[0-9.]+$/ { v[n++] = $1 } END {
	if (!n) print "-"; else if (n % 2) print v[(n - 1) / 2]; else printf "%.3f\n", (v[n / 2 - 1] + v[n / 2]) / 2 }'; }
col() { awk -F'|' -v t="$1" -v c="$2" -v p="$3" -v k="$4" '$1 == t && $2 == c && $3 == p { print $k }' "$WORK/rows"; }

mkdir -p "$(dirname "$OUT")"
{
	echo "# kafkagate uplink latency"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "- load average before: $LOAD0; after: $LOAD1 (everything shares these CPUs)"
	echo "- DURATION=${DURATION}s per row, REPEAT=$REPEAT, SIZE=$SIZE B, topics with 4 partitions," \
		"librdkafka $(pkg-config --modversion rdkafka)"
	echo "- KG_BIN=$KG_BIN${KG_PROPS:+ with $KG_PROPS}${KG_BIN_OLD:+, KG_BIN_OLD=$KG_BIN_OLD}"
	for c in $CLUSTERS; do
		grep -q "^skip|$c$" "$WORK/rows" && echo "- $c: not run (the cluster did not start)"
	done
	if [[ " $SCENARIOS " == *" seq "* ]]; then
		echo
		echo "## Sequential QoS 1: one message in flight"
		echo
		echo "| cluster | pipeline | round | p50 ms | p99 ms | acks/s | stages, mean ms |"
		echo "|---|---|---:|---:|---:|---:|---|"
		awk -F'|' '$1 == "seq" { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8 }' \
			"$WORK/rows"
		echo
		echo "| cluster | pipeline | median p50 ms | median p99 ms | target: p50 <= 1.5 x bare + 0.3 ms |"
		echo "|---|---|---:|---:|---|"
		for c in $CLUSTERS; do
			local_bare=$(col seq "$c" "bare producer" 5 | median)
			for p in "bare producer" "kafkagate" "kafkagate before"; do
				[ -z "$(col seq "$c" "$p" 5)" ] && continue
				m50=$(col seq "$c" "$p" 5 | median)
				m99=$(col seq "$c" "$p" 6 | median)
				verdict=$(awk -v g="$m50" -v b="$local_bare" -v p="$p" 'BEGIN {
					if (p == "bare producer" || g == "-" || b == "-") { print "-"; exit }
					lim = 1.5 * b + 0.3
					printf "%s (limit %.3f)", (g <= lim ? "met" : "not met"), lim }')
				echo "| $c | $p | $m50 | $m99 | $verdict |"
			done
		done
	fi
	if [[ " $SCENARIOS " == *" window "* ]]; then
		echo
		echo "## $WPUBS devices x $WINFLIGHT QoS 1 messages in flight, $SIZE B"
		echo
		echo "| cluster | pipeline | round | acks/s | p50 ms | p99 ms | acked | in Kafka | CPU s per 1M | vs bare |"
		echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		awk -F'|' '$1 == "window" { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			$2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$WORK/rows"
		echo
		echo "acks/s for the bare producer: delivery reports/s with $((WPUBS * WINFLIGHT)) records" \
			"in flight. \"in Kafka\": records that reached the row's fresh topic (high watermarks);" \
			"it must be at least \"acked\"."
	fi
	if [[ " $SCENARIOS " == *" linger "* ]]; then
		echo
		echo "## linger.ms (KG_BIN)"
		echo
		echo "| cluster | linger.ms | QoS 0 msgs/s ($QPUBS pubs) | QoS 0 CPU s per 1M |" \
			"seq p50 ms | seq p99 ms | window acks/s | window p50 ms | window p99 ms |" \
			"window CPU s per 1M | QoS 1 $QPUBS pubs x 10 acks/s | its p99 ms | its CPU s per 1M |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		awk -F'|' '$1 == "linger" { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }' "$WORK/rows"
	fi
} | tee "$OUT"
