#!/bin/sh
# run-tests.sh SUITE BIN... - runs each test binary and counts binaries.
#
# Each binary runs under `timeout` (TEST_TIMEOUT seconds, default 300) with its
# own output shown as it goes (cmocka prints one line per test). A binary
# passes when it exits 0. The last line is "SUITE: N passed, N failed";
# the exit code is 1 if any binary failed, 2 on bad usage.
set -u

if [ $# -lt 1 ]; then
	echo "usage: $0 SUITE BIN..." >&2
	exit 2
fi
suite=$1
shift
limit=${TEST_TIMEOUT:-300}
passed=0
failed=0
failed_names=

for bin in "$@"; do
	name=$(basename "$bin")
	if [ ! -x "$bin" ]; then
		echo "$suite: $name: FAIL (not found or not executable: $bin)"
		failed=$((failed + 1))
		failed_names="$failed_names $name"
		continue
	fi
	echo "$suite: $name: running"
	start=$(date +%s)
	# --kill-after: a binary that ignores SIGTERM still ends.
	timeout --kill-after=10 "$limit" "$bin"
	rc=$?
	secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		echo "$suite: $name: PASS (${secs}s)"
		passed=$((passed + 1))
	else
		case $rc in
		124 | 137) why="timed out after ${limit}s" ;;
		12[5-7]) why="could not run (status $rc)" ;;
		*) if [ "$rc" -gt 128 ]; then
			why="killed by signal $((rc - 128))"
		   else
			why="exit status $rc"
		   fi ;;
		esac
		echo "$suite: $name: FAIL ($why, ${secs}s)"
		failed=$((failed + 1))
		failed_names="$failed_names $name"
	fi
done

[ "$failed" -gt 0 ] && echo "$suite: failed:$failed_names"
echo "$suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
