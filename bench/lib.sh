# shellcheck shell=bash
# bench/lib.sh - process and /proc helpers shared by the bench scripts.
# Sourced, not run. The caller keeps the PIDs it started in the array PIDS
# and stops them with stop_pid (by PID, never by name); bench_setup does
# that on exit.

say() { printf '%s\n' "$*" >&2; }

# alive PID: running and not yet a zombie (kill -0 succeeds on zombies).
alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[ "${st%% *}" != Z ]
}

# stop_pid PID [TENTHS]: TERM, then KILL after TENTHS tenths of a second
# (default 100), reap, and forget the PID so that cleanup never signals a
# recycled one.
stop_pid() {
	local pid=$1 tenths=${2:-100} i keep=()
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < tenths; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	for i in "${PIDS[@]}"; do
		[ "$i" = "$pid" ] || keep+=("$i")
	done
	PIDS=("${keep[@]}")
}

# cpu_ticks PID: utime + stime (fields 14 and 15; the name in field 2 may
# hold spaces, so count from the closing parenthesis).
cpu_ticks() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	st=${st##*) }
	awk '{ print $12 + $13 }' <<<"$st"
}

# free_port: a loopback port nobody listens on (20000-29999).
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# field NAME LINE: the value of NAME=value in a RESULT line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# wait_port PORT: until something listens on the loopback PORT (10 s), or
# returns 1.
wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# bench_cleanup: stops every PID in PIDS, scripts/kafka-local when
# KAFKA_STARTED is 1, and removes WORK.
bench_cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	if [ "${KAFKA_STARTED:-0}" = 1 ]; then
		scripts/kafka-local stop >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}

# bench_setup NAME: a scratch directory WORK (/tmp/NAME.XXXXXX), an empty
# PIDS, KAFKA_STARTED=0, and bench_cleanup on exit (INT and TERM exit 130).
bench_setup() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	PIDS=()
	KAFKA_STARTED=0
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# start_mock UB: librdkafka's mock cluster in its own process (UB mock, i.e.
# uplink_bench), its stdin a fifo that never reaches EOF (it ends on
# SIGTERM). Sets BOOT and MOCK_PID (added to PIDS), or returns 1.
start_mock() {
	BOOT=
	rm -f "$WORK/mock.in"
	mkfifo "$WORK/mock.in"
	exec 7<>"$WORK/mock.in"
	"$1" mock <&7 >"$WORK/mock.out" 2>&1 &
	MOCK_PID=$!
	exec 7>&-
	PIDS+=("$MOCK_PID")
	for _ in $(seq 50); do
		BOOT=$(sed -n 's/^BOOTSTRAP //p' "$WORK/mock.out")
		[ -n "$BOOT" ] && return 0
		sleep 0.1
	done
	return 1
}
