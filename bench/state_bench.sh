#!/usr/bin/env bash
# state_bench.sh - the costs of state.store = "kafka" (docs/scaling.md):
#
#   1. uplink QoS 1 throughput, store = "memory" then store = "kafka", in
#      the same run on the same cluster, ROUNDS times in turn (medians) (build/bench/uplink_bench mqtt: PUBS
#      publishers, INFLIGHT unacknowledged each, msgs/s = PUBACKs per
#      second); the target is kafka >= 0.90 x memory.
#   2. cross-instance publish -> deliver latency: three instances on one
#      Kafka; a loadgen subscriber on instance 2, loadgen publishers on
#      instance 1 at LAT_RATE msgs/s, QoS 1; p50/p99 from the payload's
#      timestamp (every process on this machine, one clock), after a 2 s
#      warm-up round that is not counted.
#   3. reconnect storm: STORM_N persistent-session devices (Clean Session 0,
#      one subscription each) on instance 1, spread over STORM_PROCS
#      build/bench/state_storm processes (each may hold at most 20,000 fds);
#      instance 1 is SIGKILLed; every device reconnects at once to instance
#      2 or 3. Connects per second (reconnected / (last CONNACK - first
#      drop), over all processes), CONNECT -> CONNACK p50/p99 and how many
#      found their session (session present = 1: must be all).
#
# Clusters: librdkafka's mock cluster in its own process (uplink_bench mock)
# and the real Apache Kafka of scripts/kafka-local (skipped without java).
# Each cluster gets its own state topic prefix (bench-<run id>-<cluster>).
# Prints a markdown table (also written to $OUT).
#
# Environment: CLUSTERS ("mock kafka"), DURATION (10 s per throughput row),
# ROUNDS (3: the throughput rows, alternating; a shared machine is noisy),
# PUBS (100), INFLIGHT (10), SIZE (64), STORM_N (10000), STORM_PROCS (N /
# 2500 rounded up), STORM_WINDOW (500 connection attempts in progress per
# process), LAT_RATE (1000), LAT_PUBS (10), LAT_DURATION (10), LEASE_MS
# (10000), QUICK (1: DURATION=3, STORM_N=1000, LAT_DURATION=3,
# CLUSTERS=mock), KG_BIN, UB, LOADGEN, STORM, OUT
# (bench/results/state.md), KEEP (1: keep the scratch directory's logs).
set -euo pipefail

cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	: "${DURATION:=3}" "${ROUNDS:=1}" "${STORM_N:=1000}" "${LAT_DURATION:=3}" "${CLUSTERS:=mock}"
fi
CLUSTERS=${CLUSTERS:-"mock kafka"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PUBS=${PUBS:-100}
INFLIGHT=${INFLIGHT:-10}
SIZE=${SIZE:-64}
STORM_N=${STORM_N:-10000}
STORM_PROCS=${STORM_PROCS:-$(((STORM_N + 2499) / 2500))}
STORM_WINDOW=${STORM_WINDOW:-500}
LAT_RATE=${LAT_RATE:-1000}
LAT_PUBS=${LAT_PUBS:-10}
LAT_DURATION=${LAT_DURATION:-10}
LEASE_MS=${LEASE_MS:-10000}
KG_BIN=${KG_BIN:-build/kafkagate}
UB=${UB:-build/bench/uplink_bench}
LOADGEN=${LOADGEN:-build/bench/loadgen}
STORM=${STORM:-build/bench/state_storm}
OUT=${OUT:-bench/results/state.md}
RUNID=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/uplink_lib.sh
. bench/uplink_lib.sh
uplink_setup kg-state-bench
if [ "${KEEP:-0}" = 1 ]; then
	trap 'for p in "${PIDS[@]}"; do stop_pid "$p"; done; [ "${KAFKA_STARTED:-0}" = 1 ] && scripts/kafka-local stop >/dev/null 2>&1; say "logs kept in $WORK"' EXIT
fi

for b in "$KG_BIN" "$UB" "$LOADGEN" "$STORM"; do
	[ -x "$b" ] || { say "state_bench: $b not built (make all bench)"; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((STORM_N + 1000)) ]; then
	say "state_bench: fd limit $(ulimit -n) < STORM_N + 1000: the surviving instances cannot hold the storm"
fi
if [ $(((STORM_N + STORM_PROCS - 1) / STORM_PROCS + 100)) -gt "$(ulimit -n)" ]; then
	say "state_bench: STORM_PROCS=$STORM_PROCS leaves more devices per process than the fd limit"
	exit 2
fi

declare -A R

# gw_start NAME STORE PREFIX INSTANCE TOPIC: a gateway on free ports routing
# bench/# to Kafka topic TOPIC, with state.store = STORE. Sets GP[NAME],
# GM[NAME] (metrics port), GPID[NAME]; returns 1 (log tail shown) if it did
# not come up.
declare -A GP GM GPID
gw_start() {
	local name=$1 store=$2 prefix=$3 inst=$4 topic=$5 port mport
	port=$(free_port)
	mport=$(free_port)
	cat >"$WORK/$name.cfg" <<-EOC
	listeners = ( { address = "127.0.0.1"; port = $port; } );
	limits = { max_connections = 100000; max_connect_rate = 0;
	           max_connections_per_address = 0; max_queued_messages = 100000; };
	log = { level = "warn"; };
	metrics = { address = "127.0.0.1"; port = $mport; };
	kafka = { brokers = "$BOOT"; flush_timeout = 10; instance_id = "$inst"; };
	state = { store = "$store"; instance_id = "$inst"; topic_prefix = "$prefix";
	          partitions = 12; replication_factor = 1; lease_ms = $LEASE_MS; };
	routes = ( { filter = "bench/#"; topic = "$topic"; key = "\${clientid}"; format = "raw"; } );
	EOC
	"$KG_BIN" --config "$WORK/$name.cfg" >>"$WORK/$name.log" 2>&1 &
	GPID[$name]=$!
	PIDS+=("${GPID[$name]}")
	GP[$name]=$port
	GM[$name]=$mport
	if ! wait_port "$port"; then
		say "kafkagate $name did not start; end of its log:"
		tail -n 10 "$WORK/$name.log" >&2
		stop_pid "${GPID[$name]}"
		return 1
	fi
}

# gw_ready NAME: until /readyz answers 200 (60 s: the state topics read to
# their end), or returns 1.
gw_ready() {
	local i
	for ((i = 0; i < 600; i++)); do
		curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:${GM[$1]}/readyz" && return 0
		sleep 0.1
	done
	say "kafkagate $1 not ready after 60 s: $(curl -s --max-time 2 "http://127.0.0.1:${GM[$1]}/readyz" || true)"
	return 1
}

# ---- 1. throughput: memory vs kafka ----------------------------------------

throughput() {
	local c=$1 store line r
	for ((r = 1; r <= ROUNDS; r++)); do
		for store in memory kafka; do
			gw_start tp "$store" "bench-$RUNID-$c-tp$r" "tp-$c" "sb-$c-$store-$r-$RUNID" || continue
			gw_ready tp || { stop_pid "${GPID[tp]}"; continue; }
			line=$(timeout $((DURATION + 120)) "$UB" mqtt --port "${GP[tp]}" --clients "$PUBS" \
				--qos 1 --size "$SIZE" --inflight "$INFLIGHT" --duration "$DURATION" --drain 30 \
				--prefix bench --bootstrap "$BOOT" --topic "sb-$c-$store-$r-$RUNID" \
				2>>"$WORK/ub.err" | grep '^RESULT' || true)
			say "  throughput $c $store round $r: $line"
			R[$c|tp|$store]="${R[$c|tp|$store]:-} $(field acked_per_s "$line")"
			R[$c|tp|$store|p99]="${R[$c|tp|$store|p99]:-} $(field p99_ms "$line")"
			stop_pid "${GPID[tp]}"
		done
	done
	for store in memory kafka; do
		R[$c|tp|$store]=$(median ${R[$c|tp|$store]:-})
		R[$c|tp|$store|p99]=$(median ${R[$c|tp|$store|p99]:-})
	done
}

# median V...: the median of the numbers (the mean of the middle two for an
# even count); empty for none.
median() {
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ a[NR] = $1 } END {
		if (NR == 0) exit
		if (NR % 2) print a[(NR + 1) / 2]; else printf "%g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---- 2. cross-instance latency ---------------------------------------------

# lat_round DURATION: one subscriber on instance 2, LAT_PUBS publishers on
# instance 1 for DURATION s; the subscriber's RESULT line in LAT_LINE and
# the publishers' in LAT_PUB.
lat_round() {
	local d=$1 expect=$((LAT_RATE * $1)) subpid
	: >"$WORK/lat-sub.out"
	"$LOADGEN" sub --port "${GP[g2]}" --clients 1 --qos 1 --topic 'bench/x/#' \
		--expect "$expect" --duration $((d + 15)) --id-prefix lat-sub \
		>"$WORK/lat-sub.out" 2>>"$WORK/lat.err" &
	subpid=$!
	PIDS+=("$subpid")
	for _ in $(seq 100); do grep -q '^CONNECTED' "$WORK/lat-sub.out" && break; sleep 0.1; done
	# The subscription travels to instance 1 through <prefix>.sessions.
	sleep 2
	"$LOADGEN" pub --port "${GP[g1]}" --clients "$LAT_PUBS" --qos 1 --rate "$LAT_RATE" \
		--duration "$d" --topic-prefix bench/x --id-prefix lat-pub \
		>"$WORK/lat-pub.out" 2>>"$WORK/lat.err" || true
	for _ in $(seq 600); do alive "$subpid" || break; sleep 0.1; done
	stop_pid "$subpid"
	LAT_LINE=$(grep '^RESULT' "$WORK/lat-sub.out" || true)
	LAT_PUB=$(grep '^RESULT' "$WORK/lat-pub.out" || true)
}

latency() {
	local c=$1 line
	# A warm-up round, not counted: the first record to another
	# instance's inbox waits for that topic's metadata in the producer.
	lat_round 2
	say "  latency $c warm-up: $LAT_LINE"
	lat_round "$LAT_DURATION"
	line=$LAT_LINE
	say "  latency $c: $line"
	R[$c|lat|sent]=$(field sent "$LAT_PUB")
	R[$c|lat|recv]=$(field received "$line")
	# No delivery, no latency (loadgen prints 0 then).
	if [ "${R[$c|lat|recv]:-0}" -gt 0 ]; then
		R[$c|lat|p50]=$(awk -v u="$(field p50_us "$line")" 'BEGIN { printf "%.2f", u / 1000 }')
		R[$c|lat|p99]=$(awk -v u="$(field p99_us "$line")" 'BEGIN { printf "%.2f", u / 1000 }')
	fi
}

# ---- 3. reconnect storm ----------------------------------------------------

storm() {
	local c=$1 per=$(((STORM_N + STORM_PROCS - 1) / STORM_PROCS)) i from n pids=() ready
	for ((i = 0; i < STORM_PROCS; i++)); do
		from=$((i * per))
		n=$((STORM_N - from < per ? STORM_N - from : per))
		[ "$n" -gt 0 ] || break
		"$STORM" --port "${GP[g1]}" --reconnect "${GP[g2]},${GP[g3]}" --from "$from" \
			--count "$n" --prefix "storm-$c-" --window "$STORM_WINDOW" --timeout 120 \
			--samples "$WORK/storm-$i.samples" >"$WORK/storm-$i.out" 2>>"$WORK/storm.err" &
		pids+=($!)
		PIDS+=($!)
	done
	for _ in $(seq 1200); do
		ready=$(cat "$WORK"/storm-*.out 2>/dev/null | grep -c '^READY' || true)
		[ "$ready" -ge "${#pids[@]}" ] && break
		sleep 0.1
	done
	say "  storm $c: $(cat "$WORK"/storm-*.out | grep '^READY' | tr '\n' ' ')"
	# The subscriptions' records reach Kafka asynchronously: a moment.
	sleep 2
	kill -KILL "${GPID[g1]}"
	wait "${GPID[g1]}" 2>/dev/null || true
	for i in "${pids[@]}"; do
		for _ in $(seq 1500); do alive "$i" || break; sleep 0.1; done
		stop_pid "$i"
	done
	cat "$WORK"/storm-*.out | grep '^RESULT' >"$WORK/storm.results" || true
	R[$c|st|line]=$(awk '{
			for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			ok += v["setup_ok"]; rc += v["reconnected"]; sp += v["session_present"]
			ref += v["refused"]; rt += v["retries"]
			if (v["storm_start_ns"] > 0 && (s == 0 || v["storm_start_ns"] < s)) s = v["storm_start_ns"]
			if (v["storm_end_ns"] > e) e = v["storm_end_ns"]
		} END {
			secs = e > s ? (e - s) / 1e9 : 0
			printf "setup_ok=%d reconnected=%d session_present=%d refused=%d retries=%d storm_s=%.3f connects_per_s=%.0f",
				ok, rc, sp, ref, rt, secs, (secs > 0 ? rc / secs : 0)
		}' "$WORK/storm.results")
	# Percentiles over every process's samples (connack_us total_us).
	R[$c|st|pct]=$(cat "$WORK"/storm-*.samples 2>/dev/null | sort -n -k1,1 | awk '
		{ a[NR] = $1 } END {
			if (NR == 0) { print "connack_p50_ms= connack_p99_ms="; exit }
			printf "connack_p50_ms=%.2f connack_p99_ms=%.2f", a[int(0.5 * (NR - 1)) + 1] / 1000,
				a[int(0.99 * (NR - 1) + 0.5) + 1] / 1000 }')
	R[$c|st|tot]=$(cat "$WORK"/storm-*.samples 2>/dev/null | sort -n -k2,2 | awk '
		{ a[NR] = $2 } END {
			if (NR == 0) { print "total_p99_ms="; exit }
			printf "total_p99_ms=%.2f", a[int(0.99 * (NR - 1) + 0.5) + 1] / 1000 }')
	say "  storm $c: ${R[$c|st|line]} ${R[$c|st|pct]} ${R[$c|st|tot]}"
}

# ---- run -------------------------------------------------------------------

for c in $CLUSTERS; do
	say "state_bench: cluster $c"
	start_cluster "$c" || continue
	throughput "$c"
	prefix="bench-$RUNID-$c"
	ok=1
	for g in g1 g2 g3; do
		gw_start "$g" kafka "$prefix" "st-$c-$g" "sb-$c-x-$RUNID" || ok=0
	done
	if [ "$ok" = 1 ] && gw_ready g1 && gw_ready g2 && gw_ready g3; then
		latency "$c"
		storm "$c"
	fi
	for g in g1 g2 g3; do
		[ -n "${GPID[$g]:-}" ] && stop_pid "${GPID[$g]}"
		GPID[$g]=
	done
	stop_cluster "$c"
done

# ---- table -----------------------------------------------------------------

mkdir -p "$(dirname "$OUT")"
{
	echo "## state.store = \"kafka\" ($(date -u +%Y-%m-%d), $(nproc) CPUs, run $RUNID)"
	echo
	echo "Uplink QoS 1 ($PUBS publishers, $INFLIGHT in flight each, $SIZE B, ${DURATION} s, median of $ROUNDS rounds):"
	echo
	echo "| cluster | memory msgs/s | kafka msgs/s | kafka / memory | target >= 0.90 | p99 ms memory / kafka |"
	echo "|---|---|---|---|---|---|"
	for c in $CLUSTERS; do
		m=${R[$c|tp|memory]:-} k=${R[$c|tp|kafka]:-}
		ratio=$(awk -v m="$m" -v k="$k" 'BEGIN { if (m > 0 && k != "") printf "%.2f", k / m; else print "-" }')
		met=$(awk -v r="$ratio" 'BEGIN { if (r == "-") print "-"; else print (r >= 0.90 ? "yes" : "no") }')
		echo "| $c | ${m:--} | ${k:--} | $ratio | $met | ${R[$c|tp|memory|p99]:--} / ${R[$c|tp|kafka|p99]:--} |"
	done
	echo
	echo "Cross-instance publish -> deliver (QoS 1, $LAT_PUBS publishers on instance 1 at $LAT_RATE msgs/s for ${LAT_DURATION} s, 1 subscriber on instance 2):"
	echo
	echo "| cluster | sent | received | p50 ms | p99 ms | target p99 < 50 ms |"
	echo "|---|---|---|---|---|---|"
	for c in $CLUSTERS; do
		p99=${R[$c|lat|p99]:-}
		met=$(awk -v p="$p99" 'BEGIN { if (p == "") print "-"; else print (p < 50 ? "yes" : "no") }')
		echo "| $c | ${R[$c|lat|sent]:--} | ${R[$c|lat|recv]:--} | ${R[$c|lat|p50]:--} | ${p99:--} | $met |"
	done
	echo
	echo "Reconnect storm ($STORM_N persistent sessions on instance 1, SIGKILLed; $STORM_PROCS processes, $STORM_WINDOW attempts in progress each):"
	echo
	echo "| cluster | reconnected | session present | refused / retries | connects/s | CONNECT->CONNACK p50 / p99 ms | drop->CONNACK p99 ms | target >= 5000/s |"
	echo "|---|---|---|---|---|---|---|---|"
	for c in $CLUSTERS; do
		l=${R[$c|st|line]:-} p=${R[$c|st|pct]:-} t=${R[$c|st|tot]:-}
		cps=$(field connects_per_s "$l")
		met=$(awk -v r="$cps" 'BEGIN { if (r == "") print "-"; else print (r >= 5000 ? "yes" : "no") }')
		echo "| $c | $(field reconnected "$l")/$STORM_N | $(field session_present "$l") | $(field refused "$l") / $(field retries "$l") | ${cps:--} | $(field connack_p50_ms "$p") / $(field connack_p99_ms "$p") | $(field total_p99_ms "$t") | $met |"
	done
} >"$OUT"
cat "$OUT"
