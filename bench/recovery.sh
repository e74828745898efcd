#!/usr/bin/env bash
# recovery.sh - how fast the truth comes back after a fault. Prints markdown
# tables (also written to $OUT).
#
#   kafka-restart  Apache Kafka (scripts/kafka-local) is stopped while devices
#                  publish QoS 1, one message in flight each, and started again
#                  OUTAGE seconds later. For each pipeline, running through the
#                  same outage: the silence between two PUBACKs (or delivery
#                  reports), and how long after `scripts/kafka-local up`
#                  returned (the broker serves metadata again) the first one
#                  came. Pipelines: kafkagate (KG_BIN), kafkagate before
#                  (KG_BIN_OLD, if set), and the bare producer with kafkagate's
#                  reconnect.backoff.max.ms (1 s) and with librdkafka's (10 s).
#   gateway-kill   build/bench/downlink_bench --crash: COUNT commands to one
#                  device at RATE/s; the gateway is SIGKILLed after a third and
#                  started again at once. The silence from the new process
#                  accepting connections to the first command delivered, and
#                  whether every command arrived. On the mock cluster and on
#                  Apache Kafka, for KG_BIN and KG_BIN_OLD.
# REPEAT rounds of each.
#
# Environment: SCENARIOS ("kafka-restart gateway-kill"), REPEAT (2), OUTAGE
# (12 s), WARM (8 s of traffic first), KILL_CLUSTERS ("mock kafka"), COUNT
# (1000), RATE (50), KG_BIN (build/kafkagate), KG_BIN_OLD, UB, DB
# (downlink_bench), OUT (bench/results/recovery.md).
set -euo pipefail

cd "$(dirname "$0")/.."
SCENARIOS=${SCENARIOS:-"kafka-restart gateway-kill"}
REPEAT=${REPEAT:-2}
OUTAGE=${OUTAGE:-12}
WARM=${WARM:-8}
KILL_CLUSTERS=${KILL_CLUSTERS:-"mock kafka"}
COUNT=${COUNT:-1000}
RATE=${RATE:-50}
KG_BIN=${KG_BIN:-build/kafkagate}
KG_BIN_OLD=${KG_BIN_OLD:-}
UB=${UB:-build/bench/uplink_bench}
DB=${DB:-build/bench/downlink_bench}
OUT=${OUT:-bench/results/recovery.md}
RUNID=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/uplink_lib.sh
. bench/uplink_lib.sh
uplink_setup kg-recovery

row() { local IFS='|'; echo "$*" >>"$WORK/rows"; }
now() { date +%s.%N; }

# The GAP line of file F that spans wall time T (from <= T <= to), as
# "GAP_MS RESUME_MS" (RESUME = to - T); "- -" when there is none.
gap_over() {
	awk -v t="$2" '/^GAP / {
		split($2, a, "="); split($3, b, "="); split($4, c, "=")
		if (a[2] <= t && t <= b[2]) { printf "%s %.0f\n", c[2], (b[2] - t) * 1000; found = 1 }
	} END { if (!found) print "- -" }' "$1"
}

restart_round() {
	local r=$1 dur=$((WARM + OUTAGE + 25)) names=() files=() i t_down t_up
	local g label bin
	for g in "kafkagate|$KG_BIN" ${KG_BIN_OLD:+"kafkagate before|$KG_BIN_OLD"}; do
		label=${g%%|*} bin=${g#*|}
		start_gateway "$bin" "rec-$RUNID-$r-${#names[@]}" || return 1
		"$UB" mqtt --port "$GW_PORT" --clients 1 --qos 1 --inflight 1 --duration "$dur" \
			--drain 40 --gaps 200 --prefix bench >"$WORK/p${#names[@]}" 2>>"$WORK/ub.err" &
		PIDS+=("$!")
		names+=("$label")
		files+=("$WORK/p$((${#names[@]} - 1))")
	done
	for b in 1000 10000; do
		"$UB" produce --bootstrap "$BOOT" --topic "rec-$RUNID-$r-bare-$b" --clients 1 \
			--inflight 1 --duration "$dur" --drain 40 --gaps 200 \
			--prop "reconnect.backoff.max.ms=$b" >"$WORK/p${#names[@]}" 2>>"$WORK/ub.err" &
		PIDS+=("$!")
		names+=("bare producer, reconnect.backoff.max.ms=$b")
		files+=("$WORK/p$((${#names[@]} - 1))")
	done
	sleep "$WARM"
	t_down=$(now)
	scripts/kafka-local down >/dev/null 2>>"$WORK/kafka.err"
	sleep "$OUTAGE"
	scripts/kafka-local up >/dev/null 2>>"$WORK/kafka.err"
	t_up=$(now)
	say "  round $r: kafka down at $t_down, serving again at $t_up"
	wait_clients
	for i in "${!names[@]}"; do
		read -r gap resume < <(gap_over "${files[$i]}" "$t_up")
		say "    ${names[$i]}: $(grep -c '^GAP' "${files[$i]}" || true) gaps;" \
			"$(grep '^RESULT' "${files[$i]}" | cut -c1-160)"
		row restart "$r" "${names[$i]}" "$(awk -v a="$t_down" -v b="$t_up" \
			'BEGIN { printf "%.1f", b - a }')" "$gap" "$resume" \
			"$(field max_gap_ms "$(grep '^RESULT' "${files[$i]}" || true)")"
	done
	# The gateways, now that their publishers are done.
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
}

# Waits for the uplink_bench processes of this round (the gateways stay).
wait_clients() {
	local pid
	for pid in "${PIDS[@]}"; do
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q uplink_bench; then
			wait "$pid" 2>/dev/null || true
		fi
	done
}

kill_round() {
	local c=$1 r=$2 g label bin line boot=()
	[ "$c" = kafka ] && boot=(--bootstrap "$BOOT")
	for g in "kafkagate|$KG_BIN" ${KG_BIN_OLD:+"kafkagate before|$KG_BIN_OLD"}; do
		label=${g%%|*} bin=${g#*|}
		line=$(KG_BIN=$bin timeout 600 "$DB" "${boot[@]}" --crash --count "$COUNT" \
			--rate "$RATE" 2>>"$WORK/db.err" | tee -a "$WORK/db.out" | grep '^RESULT' || true)
		say "  $label $c round $r: $line"
		row kill "$c" "$r" "$label" "$(field ready_to_first_ms "$line")" \
			"$(field kill_to_first_ms "$line")" "$(field arrived "$line")" \
			"$(field count "$line")" "$(field duplicates "$line")"
	done
}

timeout 600 make -s "$KG_BIN" "$UB" "$DB" >"$WORK/make.log" 2>&1 || {
	say "recovery: build failed:"
	tail -n 20 "$WORK/make.log" >&2
	exit 1
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$WORK/rows"
if [[ " $SCENARIOS " == *" kafka-restart "* ]]; then
	say "kafka-restart"
	if start_cluster kafka; then
		for ((r = 1; r <= REPEAT; r++)); do
			restart_round "$r" || say "  round $r failed"
		done
		stop_cluster kafka
	fi
fi
if [[ " $SCENARIOS " == *" gateway-kill "* ]]; then
	for c in $KILL_CLUSTERS; do
		say "gateway-kill on $c"
		BOOT=
		if [ "$c" = kafka ]; then
			start_cluster kafka || continue
		fi
		for ((r = 1; r <= REPEAT; r++)); do
			kill_round "$c" "$r"
		done
		[ "$c" = kafka ] && stop_cluster kafka
	done
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$OUT")"
{
	echo "# kafkagate recovery after faults"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) CPUs; load average before:" \
		"$LOAD0, after: $LOAD1; librdkafka $(pkg-config --modversion rdkafka)"
	echo "- KG_BIN=$KG_BIN${KG_BIN_OLD:+, KG_BIN_OLD=$KG_BIN_OLD}"
	if grep -q '^restart' "$WORK/rows"; then
		echo
		echo "## Kafka stopped for ${OUTAGE} s and started again (one device, QoS 1, one in flight)"
		echo
		echo "| round | pipeline | down -> serving again s | silence ms | first ack after serving, ms | longest silence ms |"
		echo "|---:|---|---:|---:|---:|---:|"
		awk -F'|' '$1 == "restart" { printf "| %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7 }' \
			"$WORK/rows"
		echo
		echo "Target: acks resume within 1 s of the broker serving again (kafkagate)."
	fi
	if grep -q '^kill' "$WORK/rows"; then
		echo
		echo "## Gateway SIGKILLed and restarted ($COUNT commands at $RATE/s to one device, QoS 1)"
		echo
		echo "| cluster | round | gateway | ready -> first command ms | kill -> first command ms | arrived | of | duplicates |"
		echo "|---|---:|---|---:|---:|---:|---:|---:|"
		awk -F'|' '$1 == "kill" { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9 }' \
			"$WORK/rows"
		echo
		echo "Target: commands flow again within 2 s of the new process being ready, none lost."
		echo "The mock cluster does not implement static membership: there the restarted member"
		echo "waits for the old one's session (kafkagate's default 10 s)."
	fi
} | tee "$OUT"
