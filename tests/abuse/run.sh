#!/usr/bin/env bash
# tests/abuse/run.sh [--full] [CASE...] - the abuse cases against the real
# gateway, one fresh gateway per case (so that its peak RSS, VmHWM, is the
# case's own), all producing to one mock Kafka cluster hosted by
# `abuse mock` (so that the takeover storm can delay its answers).
#
#   tests/abuse/run.sh            scaled down (make test; under 2 minutes)
#   tests/abuse/run.sh --full     full size (make abuse; several minutes)
#   tests/abuse/run.sh slowloris  some cases only
#
# Prints each case's detail lines, then a markdown table and
# "abuse: N passed, N failed"; exits 1 when a case failed (a skipped case,
# one that cannot run here, does not fail the run).
# Environment: KG_BIN (build/kafkagate), ABUSE_BIN (build/tests/abuse),
# KG_KEEP=1 keeps the run directory (configs, logs, outputs), ABUSE_SKIP
# (case names, space-separated: reported as skipped, not run).
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=bench/lib.sh
. bench/lib.sh

KG_BIN=${KG_BIN:-build/kafkagate}
ABUSE_BIN=${ABUSE_BIN:-build/tests/abuse}
FULL=0
CASES=()
for a in "$@"; do
	case $a in
	--full) FULL=1 ;;
	-h | --help)
		sed -n '2,17p' "$0"
		exit 0
		;;
	*) CASES+=("$a") ;;
	esac
done
for f in "$KG_BIN" "$ABUSE_BIN"; do
	[ -x "$f" ] || { say "abuse: $f is missing (make $f)"; exit 2; }
done
[ ${#CASES[@]} -gt 0 ] || mapfile -t CASES < <("$ABUSE_BIN" list)
FULLFLAG=()
[ $FULL = 1 ] && FULLFLAG=(--full)
CASE_TIMEOUT=$((FULL ? 900 : 180))

RUN=$(mktemp -d "${TMPDIR:-/tmp}/kg-abuse.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		stop_pid "$p" 30
	done
	if [ -n "${KG_KEEP:-}" ]; then say "abuse: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/gen-test-certs.sh "$RUN/certs" || exit 2

"$ABUSE_BIN" mock --ctl "$RUN/mock.ctl" --out "$RUN/mock.boot" >"$RUN/mock.log" 2>&1 &
MOCK=$!
PIDS+=("$MOCK")
for _ in $(seq 100); do
	[ -s "$RUN/mock.boot" ] && break
	alive "$MOCK" || break
	sleep 0.1
done
[ -s "$RUN/mock.boot" ] || { say "abuse: the mock cluster did not start"; cat "$RUN/mock.log" >&2; exit 2; }
BOOT=$(cat "$RUN/mock.boot")

# The per-address case: loopback peers are exempt from
# max_connections_per_address, and tests use loopback only, so that case's
# gateway runs with KAFKAGATE_TEST_COUNT_LOOPBACK=1 (127.0.0.1 stays exempt,
# 127.0.0.3 counts like a remote address).

GW=0
GW_DIR=
# gw_start CASE: a fresh gateway with the case's limits; sets GW and PORTS.
gw_start() {
	local c=$1 dir=$RUN/$1 out limits nofile extra=
	mkdir -p "$dir"
	out=$("$ABUSE_BIN" cfg "$c" "${FULLFLAG[@]}") || return 1
	limits=$(sed -n 's/^limits=//p' <<<"$out")
	nofile=$(sed -n 's/^nofile=//p' <<<"$out")

	cat >"$dir/gw.cfg" <<EOF
listeners = (
  { address = "127.0.0.1"; port = 0; },
  { address = "127.0.0.1"; port = 0;
    tls = { cert = "$RUN/certs/server.crt"; key = "$RUN/certs/server.key"; }; },
  { address = "127.0.0.1"; port = 0; protocol = "websocket"; path = "/mqtt"; }$extra
);
workers = 0;
limits = { $limits };
log = { level = "info"; };
metrics = { address = "127.0.0.1"; port = 0; };
kafka = { brokers = "$BOOT"; flush_timeout = 2; properties = ( ("linger.ms", 2) ); };
routes = (
  { filter = "storm/#"; topic = "storm"; key = "\${clientid}"; },
  { filter = "legit/#"; topic = "legit"; key = "\${clientid}"; }
);
EOF
	GW_DIR=$dir
	(
		[ "${nofile:-0}" -gt 0 ] && ulimit -n "$nofile"
		[ "$c" = per-address ] && export KAFKAGATE_TEST_COUNT_LOOPBACK=1
		exec "$KG_BIN" --config "$dir/gw.cfg"
	) >"$dir/gw.log" 2>&1 &
	GW=$!
	PIDS+=("$GW")
	for _ in $(seq 100); do
		grep -q "kafkagate started" "$dir/gw.log" && break
		alive "$GW" || break
		sleep 0.1
	done
	if ! grep -q "kafkagate started" "$dir/gw.log"; then
		say "abuse: the gateway did not start for $c:"
		tail -n 20 "$dir/gw.log" >&2
		return 1
	fi
	mapfile -t PORTS < <(grep -v "metrics listening" "$dir/gw.log" |
		sed -n 's/.* listening address=[^ ]* port=\([0-9]*\).*/\1/p')
	METRICS=$(sed -n 's/.*metrics listening address=[^ ]* port=\([0-9]*\).*/\1/p' "$dir/gw.log")
}

# gw_stop: TERM, reap, and the exit status (a crash is not a clean stop).
gw_stop() {
	local rc i keep=()
	kill -TERM "$GW" 2>/dev/null
	for ((i = 0; i < 150; i++)); do
		alive "$GW" || break
		sleep 0.1
	done
	kill -KILL "$GW" 2>/dev/null
	wait "$GW"
	rc=$?
	for i in "${PIDS[@]}"; do
		[ "$i" = "$GW" ] || keep+=("$i")
	done
	PIDS=("${keep[@]}")
	return $rc
}

ROWS=()
PASSED=0
FAILED=0
SKIPPED=0
for c in "${CASES[@]}"; do
	say "== $c"
	line=
	if [[ " ${ABUSE_SKIP:-} " == *" $c "* ]]; then
		line="RESULT case=$c params=\"\" verdict=SKIP reason=\"in ABUSE_SKIP\""
	elif gw_start "$c"; then
		args=(--pid "$GW" --port "${PORTS[0]}" --tls-port "${PORTS[1]}" --ws-port "${PORTS[2]}"
			--ws-path /mqtt --metrics-port "$METRICS" --bootstrap "$BOOT"
			--mock-ctl "$RUN/mock.ctl" --log "$GW_DIR/gw.log")
		[ "$c" = per-address ] && args+=(--host-addr 127.0.0.3 --host-port "${PORTS[0]}")
		timeout -k 10 "$CASE_TIMEOUT" "$ABUSE_BIN" "$c" "${FULLFLAG[@]}" "${args[@]}" \
			>"$GW_DIR/out.txt" 2>"$GW_DIR/err.txt"
		drc=$?
		grep '^#' "$GW_DIR/out.txt" >&2
		tail -n 5 "$GW_DIR/err.txt" >&2
		line=$(grep '^RESULT ' "$GW_DIR/out.txt" | tail -n 1)
		gw_stop
		grc=$?
		if [ -z "$line" ]; then
			line="RESULT case=$c params=\"\" verdict=FAIL reason=\"driver exited $drc without a result\""
		fi
		if [ $grc -ne 0 ]; then
			line=${line/verdict=PASS/verdict=FAIL}
			line="${line%\"} (gateway exit status $grc)\""
		fi
		if grep -q "AddressSanitizer\|runtime error:" "$GW_DIR/gw.log"; then
			line=${line/verdict=PASS/verdict=FAIL}
			line="${line%\"} (sanitizer report in the gateway log)\""
		fi
	else
		line="RESULT case=$c params=\"\" verdict=FAIL reason=\"the gateway did not start\""
	fi
	say "$line"
	case $(field verdict "$line") in
	PASS) PASSED=$((PASSED + 1)) ;;
	SKIP) SKIPPED=$((SKIPPED + 1)) ;;
	*) FAILED=$((FAILED + 1)) ;;
	esac
	ROWS+=("$line")
done

q() { sed -n "s/.*\\b$1=\"\\([^\"]*\\)\".*/\\1/p" <<<"$2"; }
mb() { local v; v=$(field "$1" "$2"); printf '%s' "${v:--}"; }
echo
echo "| case | parameters | legit PUBACK p50 / p99 ms | legit CONNACK p99 ms | gateway RSS start / peak MB | gateway fds before / after | result |"
echo "|---|---|---|---|---|---|---|"
for line in "${ROWS[@]}"; do
	printf '| %s | %s | %s / %s | %s | %s / %s | %s / %s | %s: %s |\n' \
		"$(field case "$line")" "$(q params "$line")" \
		"$(mb legit_p50_ms "$line")" "$(mb legit_p99_ms "$line")" "$(mb legit_conn_p99_ms "$line")" \
		"$(mb rss_base_mb "$line")" "$(mb rss_peak_mb "$line")" \
		"$(mb fds_before "$line")" "$(mb fds_after "$line")" \
		"$(field verdict "$line")" "$(q reason "$line")"
done
echo
summary="abuse: $PASSED passed, $FAILED failed"
[ $SKIPPED -gt 0 ] && summary+=", $SKIPPED skipped"
echo "$summary"
[ $FAILED -eq 0 ]
