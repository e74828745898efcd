#!/usr/bin/env bash
# tests/faults/run.sh [--full] [SCENARIO...] - the fault scenarios
# (docs/faults.md): QoS 1 publishers (and, in some, devices receiving
# commands) against gateways while Kafka or a gateway fails; then Kafka is
# read back and checked against every acknowledgement.
#
#   tests/faults/run.sh            scaled down (make test; about 3 minutes)
#   tests/faults/run.sh --full     full size (make faults; about 10 minutes)
#   tests/faults/run.sh gw-kill    some scenarios only (`--list` names them)
#
# Prints one RESULT line per scenario, then a markdown table and
# "faults: N passed, N failed, N skipped"; exits 1 when one failed. A
# scenario whose tool is missing (Java for the real Kafka, the cluster mode
# of scripts/kafka-local) is skipped with the reason, not failed.
# A scenario passes when acked_missing = 0 (nothing acknowledged is missing
# from Kafka), no command is lost for a device that acknowledges, every
# gateway stopped cleanly at the end, and its own check holds (slow Kafka:
# no PINGREQ unanswered, the slowest PINGRESP under 1 s).
#
# Environment: KG_BIN (build/kafkagate), FAULTS_BIN (build/tests/faults),
# MOCK_BIN (build/tests/kg-mockkafka when built, else `faults mock`),
# FAULTS_GW_CFG (gateway config template, default tests/faults/gw.cfg.in;
# tests/faults/gw-kafka.cfg.in runs the state-in-Kafka store),
# FAULTS_SKIP (scenario names not to run), KG_KEEP=1 keeps the run directory,
# FAULTS_CLUSTER=1 (cluster-leader in the scaled set too), FAULTS_ROLLING_DL=1
# (commands in rolling-restart), FAULTS_PE_PROPS (the gateway's Kafka
# properties in produce-errors).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

KG_BIN=${KG_BIN:-build/kafkagate}
FAULTS_BIN=${FAULTS_BIN:-build/tests/faults}
GW_TEMPLATE=${FAULTS_GW_CFG:-tests/faults/gw.cfg.in}
ALL=(baseline brokers-down produce-errors mock-idempotence produce-errors-permanent slow-kafka outage-timeout gw-kill downlink-withhold
	real-kill real-stop cluster-leader rolling-restart)
FULL=0
SCEN=()
for a in "$@"; do
	case $a in
	--full) FULL=1 ;;
	--list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
	-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
	*) SCEN+=("$a") ;;
	esac
done
[ ${#SCEN[@]} -gt 0 ] || SCEN=("${ALL[@]}")
for f in "$KG_BIN" "$FAULTS_BIN" "$GW_TEMPLATE"; do
	[ -e "$f" ] || { say "faults: $f is missing"; exit 2; }
done
if [ -n "${MOCK_BIN:-}" ]; then
	MOCK_CMD=("$MOCK_BIN")
elif [ -x build/tests/kg-mockkafka ]; then
	MOCK_CMD=(build/tests/kg-mockkafka)
else
	MOCK_CMD=("$FAULTS_BIN" mock)
fi

# Sizes. Scaled: 10 publishers at 50 msg/s, 12 s of load, faults shortened
# to fit; full: 50 publishers at 100 msg/s, 40 s of load, the issue's
# fault lengths (10 s down, 500 ms then 2 s round trips).
if [ $FULL = 1 ]; then
	CLIENTS=50 RATE=100 DUR=40 DEVICES=100 CMD_RATE=5 UPPARTS=16
	T_FAULT=10 T_DOWN=10 T_SLOW=10 MSG_TIMEOUT=5000 T_OUTAGE=15 T_STOP=10 ERR_A=100 ERR_B=30
else
	CLIENTS=10 RATE=50 DUR=12 DEVICES=20 CMD_RATE=5 UPPARTS=8
	T_FAULT=3 T_DOWN=5 T_SLOW=3 MSG_TIMEOUT=3000 T_OUTAGE=6 T_STOP=5 ERR_A=40 ERR_B=10
fi
UPTOPIC=faults.up
CMDTOPIC=faults.cmd

RUN=$(mktemp -d "${TMPDIR:-/tmp}/kg-faults.XXXXXX")
PIDS=()
MOCK_PID=
KAFKA_ON=0
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		stop_pid "$p" 30
	done
	[ $KAFKA_ON != 0 ] && real_stop
	if [ -n "${KG_KEEP:-}" ]; then say "faults: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# ---- Kafka ------------------------------------------------------------------

# mock_start BROKERS: the mock cluster in its own process (it outlives
# gateway SIGKILLs); commands go through a FIFO it holds open itself, its
# answers to $D/mock.out. Sets BOOT.
mock_start() {
	local i
	rm -f "$D/mock.in"
	mkfifo "$D/mock.in"
	exec 7<>"$D/mock.in"
	"${MOCK_CMD[@]}" --brokers "$1" <&7 >"$D/mock.out" 2>"$D/mock.err" &
	MOCK_PID=$!
	exec 7>&-
	PIDS+=("$MOCK_PID")
	BOOT=
	for ((i = 0; i < 100; i++)); do
		BOOT=$(sed -n 's/^bootstrap=//p' "$D/mock.out")
		[ -n "$BOOT" ] && return 0
		sleep 0.1
	done
	say "faults: the mock cluster did not start"; cat "$D/mock.err" >&2
	return 1
}

# mock CMD...: one command, and its answer (ok / error ...) within 5 s.
mock() {
	local before i ans
	before=$(wc -l <"$D/mock.out")
	echo "$*" >"$D/mock.in"
	for ((i = 0; i < 50; i++)); do
		ans=$(sed -n "$((before + 1))p" "$D/mock.out")
		[ -n "$ans" ] && break
		sleep 0.1
	done
	echo "$(date +%T) mock $* -> ${ans:-no answer}" >>"$D/faults.log"
	[ "$ans" = ok ]
}

mock_stop() {
	[ -n "$MOCK_PID" ] || return 0
	stop_pid "$MOCK_PID" 30
	MOCK_PID=
}

# The real broker (scripts/kafka-local), its state in the run directory so
# that it never meets another user's broker.
real_start() {
	KDIR=$D/kafka
	if ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
		SKIP_REASON="no Java for scripts/kafka-local"
		return 1
	fi
	BOOT=$(KAFKA_RUN_DIR=$KDIR KAFKA_NUM_PARTITIONS=4 scripts/kafka-local start 2>>"$D/kafka.err") || {
		SKIP_REASON="scripts/kafka-local start failed (see kafka.err)"
		return 1
	}
	KAFKA_ON=1
}
real_stop() {
	case $KAFKA_ON in
	1) KAFKA_RUN_DIR=$KDIR scripts/kafka-local stop >/dev/null 2>>"$D/kafka.err" ;;
	2) KAFKA_RUN_DIR=$KDIR scripts/kafka-local cluster stop >/dev/null 2>>"$D/kafka.err" ;;
	esac
	KAFKA_ON=0
}

# ---- gateways ---------------------------------------------------------------

# gw_start I [KAFKA_PROPS]: gateway I on its fixed port GWPORT[I] (a
# restart comes back on the same one); waits for "ready".
gw_start() {
	local i=$1 cfg=$D/gw$1.cfg log=$D/gw$1.log n
	sed -e "s|@PORT@|${GWPORT[$i]}|" -e "s|@METRICS@|${GWMET[$i]}|" -e "s|@BOOT@|$BOOT|" \
		-e "s|@INSTANCE@|faults-gw$i|" -e "s|@KAFKA_PROPS@|${2:-}|" \
		-e "s|@UPTOPIC@|$UPTOPIC|" -e "s|@CMDTOPIC@|$CMDTOPIC|" \
		-e "s|@STATE_PREFIX@|faults-$$|" "$ROOT/$GW_TEMPLATE" >"$cfg"
	GWPROPS[$i]=${2:-}
	echo "--- start $(date +%T)" >>"$log"
	n=$(wc -l <"$log")
	"$KG_BIN" --config "$cfg" >>"$log" 2>&1 &
	GW[$i]=$!
	PIDS+=("${GW[$i]}")
	gw_pidfile
	for _ in $(seq 300); do
		tail -n +"$n" "$log" | grep -q " ready" && return 0
		alive "${GW[$i]}" || break
		sleep 0.1
	done
	say "faults: gateway $i did not become ready:"
	tail -n 20 "$log" >&2
	return 1
}

gw_pidfile() {
	local i
	: >"$D/gw.pids.tmp"
	for i in "${!GW[@]}"; do
		[ -n "${GW[$i]}" ] && echo "${GW[$i]}" >>"$D/gw.pids.tmp"
	done
	mv "$D/gw.pids.tmp" "$D/gw.pids"
}

# gw_kill I: SIGKILL, reaped.
gw_kill() {
	kill -KILL "${GW[$1]}" 2>/dev/null
	wait "${GW[$1]}" 2>/dev/null
	forget_pid "${GW[$1]}"
	GW[$1]=
	gw_pidfile
	echo "$(date +%T) gateway $1 SIGKILLed" >>"$D/faults.log"
}

# gw_stop I: SIGTERM and its exit status (GW_BAD gets the non-zero ones).
gw_stop() {
	local pid=${GW[$1]} rc
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 200); do
		alive "$pid" || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rc=$?
	forget_pid "$pid"
	GW[$1]=
	gw_pidfile
	echo "$(date +%T) gateway $1 stopped rc=$rc" >>"$D/faults.log"
	[ $rc = 0 ] || GW_BAD+="gw$1 exit $rc; "
}

# metric PORT NAME: the value of an unlabelled series on /metrics (0 when
# absent or unreachable).
metric() {
	local v
	v=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && timeout 5 cat <&3) 2>/dev/null |
		awk -v n="$2" '$1 == n { printf "%d", $2 }')
	echo "${v:-0}"
}

# ---- load -------------------------------------------------------------------

ports_csv() {
	local IFS=,
	echo "${GWPORT[*]}"
}

# pub_start DRAIN_S: the publishers (background; PUB_PID).
pub_start() {
	"$FAULTS_BIN" pub --ports "$(ports_csv)" --clients "$CLIENTS" --rate "$RATE" --duration "$DUR" \
		--drain "${1:-30}" --stall 20 --log "$D/acks.log" >"$D/pub.out" 2>"$D/pub.err" &
	PUB_PID=$!
	PIDS+=("$PUB_PID")
}

sample_start() {
	"$FAULTS_BIN" sample --pidfile "$D/gw.pids" --interval-ms 100 >"$D/sample.out" 2>&1 &
	SAMPLE_PID=$!
	PIDS+=("$SAMPLE_PID")
}

# dl_start: devices, then the command producer (background).
dl_start() {
	"$FAULTS_BIN" dev --ports "$(ports_csv)" --devices "$DEVICES" --withhold "${1:-0}" \
		--log "$D/recv.log" >"$D/dev.out" 2>"$D/dev.err" &
	DEV_PID=$!
	PIDS+=("$DEV_PID")
	sleep 1
	"$FAULTS_BIN" cmd --bootstrap "$BOOT" --topic "$CMDTOPIC" --devices "$DEVICES" \
		--rate "$CMD_RATE" --duration "$DUR" --flush 90 --log "$D/produced.log" \
		>"$D/cmd.out" 2>"$D/cmd.err" &
	CMD_PID=$!
	PIDS+=("$CMD_PID")
}

# wait_pid PID SECONDS: until it exits (then reaped) or SECONDS pass.
wait_pid() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		alive "$1" || break
		sleep 0.1
	done
	stop_pid "$1" 30
}

# ---- one scenario -----------------------------------------------------------

# Each scenario function sets up Kafka (BOOT), starts the gateways and the
# load, injects its fault, and leaves the rest to finish(). NOTE gets a
# description of what was done; EXTRA more key=value fields.
begin() {
	D=$RUN/$1
	mkdir -p "$D"
	: >"$D/faults.log"
	GW=() GWPORT=() GWMET=() GWPROPS=()
	GW_BAD=
	DL=0 WITHHOLD=0 NOTE= EXTRA= SKIP_REASON= CHECK_FAIL= MISSING_OK= DROPPED=0
	PUB_PID= DEV_PID= CMD_PID= SAMPLE_PID= MOCK_PID=
}

# ports N: fixed loopback ports for N gateways.
ports() {
	local i
	for ((i = 0; i < $1; i++)); do
		GWPORT[$i]=$(free_port) GWMET[$i]=$(free_port)
	done
}

mock_topics() {
	# librdkafka 2.0.2's mock keeps at most 5 MB per partition (then drops
	# the oldest batches: verify reports them as truncated): enough
	# partitions that the full run stays far below.
	mock create "$UPTOPIC" "$UPPARTS" 3 && mock create "$CMDTOPIC" 4 3
}

# finish: waits for the load, stops everything, verifies; prints the row.
finish() {
	local i v vc=
	[ -n "$PUB_PID" ] && wait_pid "$PUB_PID" $((DUR + 120))
	if [ $DL = 1 ]; then
		wait_pid "$CMD_PID" 150
		sleep 5 # the last commands reach their devices
		stop_pid "$DEV_PID" 30
	fi
	stop_pid "$SAMPLE_PID" 30
	DROPPED=0
	for i in "${!GW[@]}"; do
		[ -n "${GW[$i]}" ] && DROPPED=$((DROPPED + $(metric "${GWMET[$i]}" kafkagate_uplink_dropped_total)))
		gw_stop "$i"
	done
	v=$("$FAULTS_BIN" verify --bootstrap "$BOOT" --topic "$UPTOPIC" --acks "$D/acks.log" \
		--timeout 60 --show-order 1 2>"$D/verify.err" | grep '^RESULT')
	[ $DL = 1 ] && vc=$("$FAULTS_BIN" verify-cmd --produced "$D/produced.log" \
		--received "$D/recv.log" --withhold "$WITHHOLD" 2>"$D/verify-cmd.err" | grep '^RESULT')
	row "$v" "$vc"
	mock_stop
	real_stop
}

row() {
	local v=$1 vc=$2 pub samp verdict=PASS why= line
	pub=$(grep '^RESULT' "$D/pub.out" 2>/dev/null)
	samp=$(grep '^RESULT' "$D/sample.out" 2>/dev/null)
	if [ -z "$v" ] || [ -n "$(field error "$v")" ]; then
		verdict=FAIL why+="verify failed ($(tail -n 1 "$D/verify.err" | cut -c1-160)); "
	else
		if [ "$MISSING_OK" = info ]; then
			verdict=INFO
		elif [ "$MISSING_OK" = dropped ]; then
			[ "$(field acked_missing "$v")" = "$DROPPED" ] ||
				{ verdict=FAIL why+="acked_missing is not the dropped count; "; }
		else
			[ "$(field acked_missing "$v")" = 0 ] || { verdict=FAIL why+="acked_missing; "; }
		fi
		[ "$(field truncated "$v")" = 0 ] || { verdict=FAIL why+="Kafka dropped old records; "; }
		[ "$(field acked "$v")" -gt 0 ] || { verdict=FAIL why+="nothing acknowledged; "; }
	fi
	if [ $DL = 1 ]; then
		if [ -z "$vc" ]; then
			verdict=FAIL why+="verify-cmd failed; "
		elif [ "$(field lost "$vc")" != 0 ]; then
			verdict=FAIL why+="commands lost; "
		fi
	fi
	[ -n "$GW_BAD" ] && { verdict=FAIL why+="$GW_BAD"; }
	[ -n "$CHECK_FAIL" ] && { verdict=FAIL why+="$CHECK_FAIL"; }
	line="RESULT scenario=$S verdict=$verdict"
	line+=" acked=$(field acked "$v") acked_missing=$(field acked_missing "$v")"
	line+=" duplicates=$(field duplicates "$v") order_violations=$(field order_violations "$v")"
	line+=" ack_p50_ms=$(field ack_p50_ms "$v") ack_p99_ms=$(field ack_p99_ms "$v")"
	line+=" ack_max_ms=$(field ack_max_ms "$v")"
	line+=" sent=$(field sent "$pub") unacked_at_end=$(field unacked "$pub")"
	line+=" reconnects=$(field reconnects "$pub") resent=$(field resent "$pub") dropped_by_policy=$DROPPED"
	line+=" peak_rss_mb=$(field peak_rss_mb "$samp") peak_fds=$(field peak_fds "$samp")"
	if [ $DL = 1 ]; then
		line+=" cmds=$(field produced "$vc") cmd_lost=$(field lost "$vc")"
		line+=" cmd_duplicates=$(field cmd_duplicates "$vc")"
		line+=" cmd_order_violations=$(field cmd_order_violations "$vc")"
		line+=" undelivered_withholding=$(field undelivered_withholding "$vc")"
	fi
	line+="$EXTRA note=\"$NOTE\" why=\"$why\""
	emit "$line"
}

skip() {
	emit "RESULT scenario=$S verdict=SKIP why=\"$1\""
}

ROWS=()
emit() {
	say "$1"
	ROWS+=("$1")
}

# ---- scenarios --------------------------------------------------------------

sc_baseline() {
	NOTE="no fault: the reference row"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	pub_start
}

sc_brokers-down() {
	NOTE="mock cluster: all 3 brokers down ${T_DOWN} s, ${T_FAULT} s into the load"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	pub_start
	sleep "$T_FAULT"
	mock down 1; mock down 2; mock down 3
	sleep "$T_DOWN"
	mock up 1; mock up 2; mock up 3
}

# The gateway's producer runs with one request in flight per broker here:
# librdkafka's mock cluster checks idempotent sequence numbers only for
# transactional producers, so with requests pipelined a request after a
# failed one is appended out of order, and librdkafka, which (rightly, for
# a real broker) takes a later acknowledgement as proof that the earlier
# records were written, reports records delivered that the mock never
# stored. The control scenario mock-idempotence shows it without the gateway.
sc_produce-errors() {
	NOTE="mock: $ERR_A Produce requests answered NOT_ENOUGH_REPLICAS, then $ERR_B REQUEST_TIMED_OUT (both retriable), ${T_FAULT} s in; gateway producer max.in.flight.requests.per.connection=1 (see mock-idempotence)"
	mock_start 3 && mock_topics && ports 1 &&
		gw_start 0 "${FAULTS_PE_PROPS-(\"max.in.flight.requests.per.connection\", 1)}" || return 1
	sample_start
	pub_start
	sleep "$T_FAULT"
	mock err Produce NOT_ENOUGH_REPLICAS "$ERR_A" || CHECK_FAIL+="injection refused; "
	sleep 2
	mock err Produce REQUEST_TIMED_OUT "$ERR_B" || CHECK_FAIL+="injection refused; "
}

# The control for produce-errors, no gateway: an idempotent librdkafka
# producer (faults cmd, 5 requests in flight) against the mock, the same
# errors injected; its delivery reports are checked against the log like
# PUBACKs. Records reported delivered but absent are the mock's, not the
# gateway's. Informational (verdict INFO): it shows why produce-errors
# runs with one request in flight.
sc_mock-idempotence() {
	local c
	if [ $FULL = 0 ]; then
		SKIP_REASON="control experiment: make faults only"
		return 2
	fi
	NOTE="no gateway: librdkafka idempotent producer, 10 keys x 50 records/s, 200 NOT_ENOUGH_REPLICAS then 50 REQUEST_TIMED_OUT injected ${T_FAULT} s in; delivery reports checked against the mock's log"
	mock_start 3 && mock_topics || return 1
	"$FAULTS_BIN" cmd --bootstrap "$BOOT" --topic "$UPTOPIC" --devices 10 --rate 50 --duration "$DUR" \
		--flush 60 --log "$D/produced.log" >"$D/cmd.out" 2>"$D/cmd.err" &
	c=$!
	PIDS+=("$c")
	sleep "$T_FAULT"
	mock err Produce NOT_ENOUGH_REPLICAS 200
	sleep 2
	mock err Produce REQUEST_TIMED_OUT 50
	wait_pid "$c" $((DUR + 70))
	awk '{ print $1, $2, 0 }' "$D/produced.log" >"$D/acks.log"
	MISSING_OK=info
}

# A permanent error: the gateway's documented policy (config/kafkagate.cfg,
# dead_letter_topic) drops such records, counted in
# kafkagate_uplink_dropped_total, and acknowledges them; this scenario
# checks that exactly those are the acknowledged records missing.
sc_produce-errors-permanent() {
	NOTE="mock: 5 Produce requests answered TOPIC_AUTHORIZATION_FAILED (permanent: dropped by policy, no dead-letter topic), ${T_FAULT} s in"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	pub_start
	sleep "$T_FAULT"
	mock err Produce TOPIC_AUTHORIZATION_FAILED 5 || CHECK_FAIL+="injection refused; "
	MISSING_OK=dropped
}

sc_slow-kafka() {
	local pr
	NOTE="mock: every broker's round trip 500 ms for ${T_SLOW} s, then 2000 ms for ${T_SLOW} s; PINGREQ every 200 ms throughout"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	pub_start
	sleep "$T_FAULT"
	"$FAULTS_BIN" ping --port "${GWPORT[0]}" --duration $((2 * T_SLOW + 1)) --interval-ms 200 \
		--timeout-ms 5000 >"$D/ping.out" 2>&1 &
	pr=$!
	PIDS+=("$pr")
	mock rtt all 500
	sleep "$T_SLOW"
	mock rtt all 2000
	sleep "$T_SLOW"
	mock rtt all 0
	wait_pid "$pr" 15
	pr=$(grep '^RESULT' "$D/ping.out")
	EXTRA=" ping_p50_ms=$(field ping_p50_ms "$pr") ping_p99_ms=$(field ping_p99_ms "$pr")"
	EXTRA+=" ping_max_ms=$(field ping_max_ms "$pr") pings_lost=$(field lost "$pr")"
	[ "$(field lost "$pr")" = 0 ] || CHECK_FAIL+="PINGREQ unanswered; "
	awk -v m="$(field ping_max_ms "$pr")" 'BEGIN { exit !(m != "" && m < 1000) }' ||
		CHECK_FAIL+="PINGRESP slower than 1 s; "
}

sc_outage-timeout() {
	NOTE="mock: all brokers down ${T_OUTAGE} s, longer than the gateway's message.timeout.ms = ${MSG_TIMEOUT}"
	mock_start 3 && mock_topics && ports 1 &&
		gw_start 0 "(\"message.timeout.ms\", $MSG_TIMEOUT)" || return 1
	sample_start
	pub_start 60
	sleep "$T_FAULT"
	mock down 1; mock down 2; mock down 3
	sleep "$T_OUTAGE"
	mock up 1; mock up 2; mock up 3
}

sc_gw-kill() {
	NOTE="gateway SIGKILLed ${T_FAULT} s in, restarted 1 s later on the same port (mock cluster; devices receive commands throughout)"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	DL=1
	dl_start 0
	pub_start
	sleep "$T_FAULT"
	gw_kill 0
	sleep 1
	gw_start 0 || CHECK_FAIL+="restart failed; "
}

sc_downlink-withhold() {
	NOTE="$DEVICES devices receive commands at $CMD_RATE/s each; every 10th withholds PUBACK (mock cluster)"
	mock_start 3 && mock_topics && ports 1 && gw_start 0 || return 1
	sample_start
	DL=1 WITHHOLD=0.1
	dl_start 0.1
	pub_start
}

# The real broker: the JVM SIGKILLed (then `kafka-local up` on its data).
sc_real-kill() {
	local kpid
	NOTE="real Kafka (one KRaft broker) SIGKILLed ${T_FAULT} s in, started again on its data 2 s later"
	real_start || return 2
	ports 1 && gw_start 0 || return 1
	sample_start
	pub_start 60
	sleep "$T_FAULT"
	kpid=$(cat "$KDIR/pid")
	kill -KILL "$kpid"
	echo "$(date +%T) kafka $kpid SIGKILLed" >>"$D/faults.log"
	sleep 2
	KAFKA_RUN_DIR=$KDIR scripts/kafka-local up >/dev/null 2>>"$D/kafka.err" ||
		CHECK_FAIL+="kafka did not come back; "
}

sc_real-stop() {
	local kpid
	NOTE="real Kafka SIGSTOPped ${T_STOP} s, ${T_FAULT} s in, then SIGCONT"
	real_start || return 2
	ports 1 && gw_start 0 || return 1
	sample_start
	pub_start 60
	sleep "$T_FAULT"
	kpid=$(cat "$KDIR/pid")
	kill -STOP "$kpid"
	sleep "$T_STOP"
	kill -CONT "$kpid"
	echo "$(date +%T) kafka $kpid stopped ${T_STOP} s" >>"$D/faults.log"
}

# Three real brokers (scripts/kafka-local cluster: replication 3,
# min.insync.replicas 2): the leader of the uplink topic's partition 0
# SIGKILLed mid-stream, brought back (`cluster restart`) T_DOWN s later.
sc_cluster-leader() {
	local leader
	if [ $FULL = 0 ] && [ -z "${FAULTS_CLUSTER:-}" ]; then
		SKIP_REASON="three JVMs on this machine: make faults (or FAULTS_CLUSTER=1) only"
		return 2
	fi
	if ! grep -q "^cluster)" scripts/kafka-local; then
		SKIP_REASON="scripts/kafka-local has no cluster mode"
		return 2
	fi
	if ! command -v java >/dev/null || ! command -v kcat >/dev/null; then
		SKIP_REASON="needs java and kcat (kafka-local cluster leader)"
		return 2
	fi
	KDIR=$D/kafka
	BOOT=$(KAFKA_RUN_DIR=$KDIR KAFKA_NUM_PARTITIONS=4 scripts/kafka-local cluster start 2>>"$D/kafka.err") || {
		SKIP_REASON="kafka-local cluster start failed (see kafka.err)"
		KAFKA_RUN_DIR=$KDIR scripts/kafka-local cluster stop >/dev/null 2>&1
		return 2
	}
	KAFKA_ON=2
	ports 1 && gw_start 0 || return 1
	sample_start
	DL=1
	dl_start 0
	pub_start 60
	sleep "$T_FAULT"
	leader=$(KAFKA_RUN_DIR=$KDIR scripts/kafka-local cluster leader "$UPTOPIC" 0 2>>"$D/kafka.err")
	NOTE="three KRaft brokers (RF 3, min ISR 2): broker $leader, leader of $UPTOPIC [0], SIGKILLed ${T_FAULT} s in, restarted ${T_DOWN} s later; devices receive commands throughout"
	if [ -z "$leader" ]; then
		CHECK_FAIL+="no leader found; "
		return 0
	fi
	KAFKA_RUN_DIR=$KDIR scripts/kafka-local cluster kill "$leader" 2>>"$D/kafka.err"
	echo "$(date +%T) broker $leader SIGKILLed" >>"$D/faults.log"
	sleep "$T_DOWN"
	KAFKA_RUN_DIR=$KDIR scripts/kafka-local cluster restart "$leader" >/dev/null 2>>"$D/kafka.err" ||
		CHECK_FAIL+="broker $leader did not come back; "
	echo "$(date +%T) broker $leader restarted" >>"$D/faults.log"
}

sc_rolling-restart() {
	local i
	NOTE="3 gateways on one mock cluster, publishers spread over them; each restarted in turn (SIGTERM, start) under load"
	mock_start 3 && mock_topics && ports 3 && gw_start 0 && gw_start 1 && gw_start 2 || return 1
	sample_start
	# FAULTS_ROLLING_DL=1: devices and commands too, spread over the three
	# (a command reaches a device on another instance only with the state
	# store in Kafka: issue 13).
	if [ -n "${FAULTS_ROLLING_DL:-}" ]; then
		DL=1
		NOTE+="; devices receive commands throughout"
		dl_start 0
	fi
	pub_start
	for i in 0 1 2; do
		sleep $((DUR / 4))
		gw_stop "$i"
		gw_start "$i" || CHECK_FAIL+="gw$i restart failed; "
	done
}

PASSED=0 FAILED=0 SKIPPED=0 INFO=0
for S in "${SCEN[@]}"; do
	say "== $S"
	if ! declare -F "sc_$S" >/dev/null; then
		emit "RESULT scenario=$S verdict=FAIL why=\"no such scenario\""
		FAILED=$((FAILED + 1))
		continue
	fi
	if [[ " ${FAULTS_SKIP:-} " == *" $S "* ]]; then
		skip "in FAULTS_SKIP"
		SKIPPED=$((SKIPPED + 1))
		continue
	fi
	begin "$S"
	"sc_$S"
	rc=$?
	if [ $rc = 2 ]; then
		skip "$SKIP_REASON"
		real_stop
	elif [ $rc != 0 ] && [ -z "$PUB_PID" ]; then
		emit "RESULT scenario=$S verdict=FAIL why=\"setup failed (see $D)\""
		for p in "${PIDS[@]}"; do stop_pid "$p" 30; done
		MOCK_PID=
		real_stop
	else
		finish
	fi
	case ${ROWS[-1]} in
	*verdict=PASS*) PASSED=$((PASSED + 1)) ;;
	*verdict=SKIP*) SKIPPED=$((SKIPPED + 1)) ;;
	*verdict=INFO*) INFO=$((INFO + 1)) ;;
	*) FAILED=$((FAILED + 1)) ;;
	esac
done

q() { sed -n "s/.*\\b$1=\"\\([^\"]*\\)\".*/\\1/p" <<<"$2"; }
m() { local v; v=$(field "$1" "$2"); printf '%s' "${v:--}"; }
echo
echo "| scenario | acked | acked_missing | duplicates | order violations | ack p50 / p99 / max ms | peak RSS MB | peak fds | commands lost / dup / order | PINGRESP p99 / max ms | result |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for l in "${ROWS[@]}"; do
	printf '| %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s / %s / %s | %s / %s | %s %s|\n' \
		"$(field scenario "$l")" "$(m acked "$l")" "$(m acked_missing "$l")" "$(m duplicates "$l")" \
		"$(m order_violations "$l")" "$(m ack_p50_ms "$l")" "$(m ack_p99_ms "$l")" "$(m ack_max_ms "$l")" \
		"$(m peak_rss_mb "$l")" "$(m peak_fds "$l")" "$(m cmd_lost "$l")" "$(m cmd_duplicates "$l")" \
		"$(m cmd_order_violations "$l")" "$(m ping_p99_ms "$l")" "$(m ping_max_ms "$l")" \
		"$(field verdict "$l")" "$(q why "$l")"
done
echo
summary="faults: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ $INFO -gt 0 ] && summary+=", $INFO informational"
echo "$summary"
[ $FAILED -eq 0 ]
