# shellcheck shell=bash
# bench/lib.sh - process and /proc helpers shared by the bench scripts.
# Sourced, not run. The caller keeps the PIDs it started in the array PIDS
# and stops them with stop_pid (by PID, never by name).

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
