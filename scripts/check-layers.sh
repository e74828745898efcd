#!/bin/sh
# check-layers.sh - enforces the include arrows between the folders of src/
# (the table in docs/architecture.md). Reads every '#include "dir/file.h"'
# line under src/ and fails, naming file:line, on an include the table does
# not allow. Also checks that locks stay inside the broker's own files.
# Exit 0: clean; 1: violations (listed); 2: run from the wrong place.
set -u
cd "$(dirname "$0")/.." || exit 2
[ -d src/core ] || { echo "check-layers: src/core not found" >&2; exit 2; }

# allowed LAYER INCLUDED-HEADER: 0 when the include is allowed.
allowed() {
	from=$1 hdr=$2 to=${2%%/*}
	[ "$from" = "$to" ] && return 0
	case "$from" in
	core) return 1 ;;
	mqtt | transport)
		# Pure layers: no logging, sockets, loop or inbox.
		case "$hdr" in
		core/log.h | core/net.h | core/loop.h | core/inbox.h) return 1 ;;
		core/*) return 0 ;;
		esac
		return 1 ;;
	route | auth)
		case "$hdr" in
		core/log.h | core/net.h | core/loop.h | core/inbox.h) return 1 ;;
		core/* | mqtt/*) return 0 ;;
		esac
		return 1 ;;
	broker)
		case "$to" in core | mqtt | auth | transport) return 0 ;; esac
		return 1 ;;
	kafka | upstream)
		case "$hdr" in
		core/* | mqtt/* | route/* | transport/* | broker/broker.h) return 0 ;;
		esac
		return 1 ;;
	state)
		case "$hdr" in
		core/* | mqtt/* | route/* | kafka/* | broker/broker.h) return 0 ;;
		esac
		return 1 ;;
	admin)
		case "$to" in core | mqtt | route | auth | transport | broker | kafka | upstream | state) return 0 ;; esac
		return 1 ;;
	app) return 0 ;;
	esac
	return 1
}

violations() {
	for f in $(find src -name '*.[ch]' | sort); do
		layer=$(echo "$f" | cut -d/ -f2)
		case "$layer" in
		core | mqtt | route | auth | transport | broker | kafka | upstream | state | admin | app) ;;
		*) echo "$f: file outside a known layer folder"; continue ;;
		esac
		grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
		while IFS= read -r line; do
			n=${line%%:*}
			hdr=$(echo "$line" | sed 's/.*include[[:space:]]*"\([^"]*\)".*/\1/')
			case "$hdr" in
			*/*) allowed "$layer" "$hdr" || echo "$f:$n: $layer may not include $hdr" ;;
			*) echo "$f:$n: include \"$hdr\" does not name its layer" ;;
			esac
		done
	done
	# The broker owns its locks: handlers call broker functions and take no
	# lock at all; the admin layer never takes one of the broker's.
	grep -n 'pthread_[a-z]*_\(lock\|rdlock\|wrlock\|trylock\)' \
		src/broker/handle_*.c src/broker/dispatch.c 2>/dev/null |
		sed 's/^\([^:]*:[0-9]*\):.*/\1: takes a lock in a handler (use a broker_ function)/'
	grep -n 'pthread_[a-z]*_\(lock\|rdlock\|wrlock\|trylock\)(&\(br\|s\|w\)->' \
		src/admin/*.c 2>/dev/null |
		sed 's/^\([^:]*:[0-9]*\):.*/\1: takes a broker lock in the admin layer (use a broker_ function)/'
}

out=$(violations)
if [ -n "$out" ]; then
	echo "$out"
	echo "check-layers: $(echo "$out" | wc -l) violation(s); the table is in docs/architecture.md"
	exit 1
fi
echo "check-layers: OK ($(find src -name '*.[ch]' | wc -l) files)"
