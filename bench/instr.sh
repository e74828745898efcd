#!/usr/bin/env bash
# instr.sh - the broker's user-space instructions per delivered message,
# counted by valgrind's callgrind, for compare.sh's scenarios 1-3 at a fixed
# rate: a figure that does not move with the load on the machine, unlike
# msgs/s and CPU seconds. Kernel time (syscalls, TCP) is not counted.
#
# One kafkagate (KG_BIN) runs under callgrind; for every scenario and
# protocol variant the generator connects, the counters are zeroed
# (callgrind_control -z) while it waits (loadgen --settle), it publishes
# RATE msgs/s for DURATION s and drains, and the counters are dumped
# (callgrind_control -d) before it disconnects (loadgen --linger):
# instructions / deliveries, without connection set-up and teardown. Variants: 3.1.1
# (loadgen's default), 5 (--mqtt5), 5a (--topic-alias TOPIC_ALIAS). With
# KG_BIN_OLD a second build is measured the same way at 3.1.1 only.
# Prints a markdown table (also written to OUT) and, with TOP=N, the N
# functions whose instructions grew most between each variant and 3.1.1.
#
# Environment: KG_BIN (build/kafkagate), KG_BIN_OLD, LOADGEN
# (build/bench/loadgen), RATE (4000 publishes/s; scenario 3: RATE/100
# publishes to 100 subscribers), DURATION (4), ROUNDS (2), SCENARIOS
# ("s1 s2 s3"), VARIANTS ("3.1.1 5 5a"), TOPIC_ALIAS (64), TOP (0), OUT
# (bench/results/instr.md). Needs valgrind.
set -euo pipefail

cd "$(dirname "$0")/.."
KG_BIN=${KG_BIN:-build/kafkagate}
KG_BIN_OLD=${KG_BIN_OLD:-}
LOADGEN=${LOADGEN:-build/bench/loadgen}
RATE=${RATE:-4000}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-2}
SCENARIOS=${SCENARIOS:-"s1 s2 s3"}
VARIANTS=${VARIANTS:-"3.1.1 5 5a"}
TOPIC_ALIAS=${TOPIC_ALIAS:-64}
TOP=${TOP:-0}
OUT=${OUT:-bench/results/instr.md}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_setup kg-instr

for t in valgrind callgrind_control; do
	command -v "$t" >/dev/null || { say "instr: $t not found (Debian package valgrind)"; exit 1; }
done
[ -x "$LOADGEN" ] || timeout 300 make -s bench >"$WORK/make.log" 2>&1 || {
	say "instr: make bench failed"
	tail -n 5 "$WORK/make.log" >&2
	exit 1
}

declare -A SCEN_ARGS=(
	[s1]="--pubs 50 --subs 1 --qos 0 --rate $RATE --topic-prefix bench/i1"
	[s2]="--pubs 50 --subs 1 --qos 1 --rate $RATE --topic-prefix bench/i2"
	[s3]="--pubs 1 --subs 100 --qos 0 --rate $((RATE / 100)) --topic-prefix bench/i3 --topic bench/i3/0"
)
declare -A SCEN_NAME=([s1]="50 pub -> 1 sub, QoS 0" [s2]="50 pub -> 1 sub, QoS 1"
	[s3]="1 pub -> 100 sub, QoS 0")
declare -A VAR_ARGS=([3.1.1]="" [5]="--mqtt5" [5a]="--topic-alias $TOPIC_ALIAS")
declare -A VAR_NAME=([3.1.1]="3.1.1" [5]="5.0" [5a]="5.0, topic aliases")
declare -A R

# self_costs FILE: "function instructions" lines, the instructions spent in
# each function itself (callgrind's cost lines, without the inclusive cost
# of the calls).
self_costs() {
	awk '
		/^c?fn=\(/ {
			l = $0; callee = substr(l, 1, 1) == "c"
			sub(/^c?fn=\(/, "", l); id = l; sub(/\).*/, "", id)
			if (index(l, ") ")) { n = substr(l, index(l, ") ") + 2); gsub(/ /, "_", n); name[id] = n }
			if (!callee) cur = name[id]
			next
		}
		/^calls=/ { skip = 1; next }
		/^[0-9+*-]/ { if (skip) { skip = 0; next } if (cur != "") c[cur] += $2 }
		END { for (f in c) print f, c[f] }' "$1" | LC_ALL=C sort
}

# wait_line WORD SECONDS: until the generator's output has a line starting
# with WORD, or returns 1.
wait_line() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		grep -q "^$1" "$WORK/lg.out" 2>/dev/null && return 0
		sleep 0.05
	done
	say "instr: no $1 line from the generator"
	return 1
}

# measure TAG BIN VARIANTS: one broker under callgrind, every scenario and
# variant ROUNDS times.
measure() {
	local tag=$1 bin=$2 vars=$3 port pid id v r f ir rx line lg
	port=$(free_port)
	cat >"$WORK/kg.cfg" <<-EOF
	listeners = ( { address = "127.0.0.1"; port = $port; } );
	limits = { max_connections = 100000; max_queued_messages = 1000000; max_connect_rate = 0; };
	log = { level = "warn"; };
	EOF
	valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$tag.%p" \
		"$bin" --config "$WORK/kg.cfg" >>"$WORK/kg-$tag.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	if ! wait_port "$port" && ! wait_port "$port"; then
		say "instr: $bin did not start under valgrind; its log:"
		tail -n 10 "$WORK/kg-$tag.log" >&2
		stop_pid "$pid"
		return 1
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		for id in $SCENARIOS; do
			for v in $vars; do
				# shellcheck disable=SC2086
				timeout $((DURATION + 90)) "$LOADGEN" run --port "$port" \
					${SCEN_ARGS[$id]} ${VAR_ARGS[$v]} --duration "$DURATION" \
					--e2e-window 5000 --settle 2 --linger 2 \
					>"$WORK/lg.out" 2>>"$WORK/loadgen.err" &
				lg=$!
				PIDS+=("$lg")
				wait_line CONNECTED 60 && callgrind_control -z "$pid" >/dev/null
				wait_line DRAINED $((DURATION + 60)) && callgrind_control -d "$pid" >/dev/null
				wait "$lg" || true
				stop_pid "$lg"
				line=$(grep '^RESULT' "$WORK/lg.out" || true)
				f=$(ls -t "$WORK/cg-$tag.$pid".* 2>/dev/null | head -n 1)
				ir=$(sed -n 's/^summary: //p' "$f" | head -n 1)
				rx=$(field received "$line")
				say "  $tag $id $v round $r: instructions=$ir received=$rx"
				R[$tag|$id|$v|$r]=$(awk -v i="${ir:-0}" -v n="${rx:-0}" \
					'BEGIN { if (n > 0) printf "%.0f", i / n; else print "-" }')
				R[$tag|$id|$v|$r|file]=$f
				R[$tag|$id|$v|$r|line]=$line
			done
		done
	done
	stop_pid "$pid"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "instr: $KG_BIN"
measure new "$KG_BIN" "$VARIANTS"
if [ -n "$KG_BIN_OLD" ]; then
	say "instr: $KG_BIN_OLD"
	measure old "$KG_BIN_OLD" "3.1.1"
fi

# mean TAG ID VARIANT: the rounds' mean.
mean() {
	local r vals=""
	for ((r = 1; r <= ROUNDS; r++)); do vals="$vals ${R[$1|$2|$3|$r]:--}"; done
	awk -v v="$vals" 'BEGIN { n = split(v, a, " "); s = 0; k = 0
		for (i = 1; i <= n; i++) if (a[i] != "-") { s += a[i]; k++ }
		if (k) printf "%.0f", s / k; else print "-" }'
}
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'
}

mkdir -p "$(dirname "$OUT")"
{
	echo "# kafkagate: user-space instructions per delivered message (callgrind)"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); load average before: $LOAD0 (does not change these counts)"
	echo "- command: RATE=$RATE DURATION=$DURATION ROUNDS=$ROUNDS${KG_BIN_OLD:+ KG_BIN_OLD=$KG_BIN_OLD} bench/instr.sh ($KG_BIN)"
	echo "- $(valgrind --version); the broker's instructions (all threads) from the end of the set-up to the end of the drain, ÷ deliveries"
	echo
	echo "| scenario | build | MQTT | instructions per message | each round | vs 3.1.1, same build |$([ -n "$KG_BIN_OLD" ] && echo " vs before, 3.1.1 |")"
	echo "|---|---|---|---:|---|---:|$([ -n "$KG_BIN_OLD" ] && echo "---:|")"
	for id in $SCENARIOS; do
		base=$(mean new "$id" 3.1.1)
		old=$([ -n "$KG_BIN_OLD" ] && mean old "$id" 3.1.1 || echo -)
		for v in $VARIANTS; do
			m=$(mean new "$id" "$v")
			rounds=""
			for ((r = 1; r <= ROUNDS; r++)); do rounds="$rounds${rounds:+ / }${R[new|$id|$v|$r]:--}"; done
			echo "| ${SCEN_NAME[$id]} | kafkagate | ${VAR_NAME[$v]} | $m | $rounds | $(ratio "$m" "$base") |$([ -n "$KG_BIN_OLD" ] && echo " $(ratio "$m" "$old") |")"
		done
		if [ -n "$KG_BIN_OLD" ]; then
			rounds=""
			for ((r = 1; r <= ROUNDS; r++)); do rounds="$rounds${rounds:+ / }${R[old|$id|3.1.1|$r]:--}"; done
			echo "| ${SCEN_NAME[$id]} | kafkagate before | 3.1.1 | $old | $rounds | - | 1.00x |"
		fi
	done
	echo
	if [ "$TOP" -gt 0 ]; then
		echo "Functions whose own instructions per message grew and shrank most (round 1):"
		echo
		for id in $SCENARIOS; do
			cmp=()
			for v in $VARIANTS; do [ "$v" = 3.1.1 ] || cmp+=("new|$v"); done
			[ -n "$KG_BIN_OLD" ] && cmp+=("old|3.1.1")
			for c in "${cmp[@]}"; do
				tag=${c%%|*} v=${c#*|}
				if [ "$tag" = old ]; then
					a=${R[old|$id|3.1.1|1|file]:-} b=${R[new|$id|3.1.1|1|file]:-}
					what="kafkagate 3.1.1 against kafkagate before"
				else
					a=${R[new|$id|3.1.1|1|file]:-} b=${R[new|$id|$v|1|file]:-}
					what="MQTT ${VAR_NAME[$v]} against 3.1.1"
				fi
				[ -n "$a" ] && [ -n "$b" ] || continue
				rx=$(field received "${R[new|$id|3.1.1|1|line]}")
				# Both ends: a renamed function shows as one
				# that grew and one that shrank.
				LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 <(self_costs "$a") <(self_costs "$b") |
					awk -v n="$rx" '{ printf "%.1f %s\n", ($3 - $2) / n, $1 }' >"$WORK/diff"
				echo "- ${SCEN_NAME[$id]}, $what: grew" \
				     "$(sort -rn "$WORK/diff" | head -n "$TOP" |
					awk '$1 >= 1 { printf "%s%s +%.0f", (NR > 1 ? ", " : ""), $2, $1 }');" \
				     "shrank $(sort -n "$WORK/diff" | head -n "$TOP" |
					awk '$1 <= -1 { printf "%s%s %.0f", (NR > 1 ? ", " : ""), $2, $1 }')"
			done
		done
		echo
	fi
	echo "Raw RESULT lines:"
	echo
	for tag in new old; do
		for id in $SCENARIOS; do
			for v in $VARIANTS; do
				for ((r = 1; r <= ROUNDS; r++)); do
					[ -n "${R[$tag|$id|$v|$r|line]:-}" ] &&
						echo "    $tag $id $v round $r: ${R[$tag|$id|$v|$r|line]}"
				done
			done
		done
	done
} | tee "$OUT"
