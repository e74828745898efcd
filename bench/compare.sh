#!/usr/bin/env bash
# compare.sh - run the same MQTT scenarios against kafkagate and mosquitto
# and print one markdown table (also bench/results/latest.md), ratio lines and
# a chart (bench/results/compare.png). See bench/README.md.
#
# Every broker and load generator is started here, on 127.0.0.1, with a time
# bound, and stopped by PID on exit. Each scenario gets a freshly started
# broker so that CPU and memory figures do not carry over between rows.
# The TLS and WebSocket rows (TLS=0 leaves them out) come after the four
# plain ones, which run exactly as without them, and are compared with the
# same broker's plain row of the same run.
# MQTT 5 rows (MQTT5=1, the default): each plain scenario is run again with
# MQTT 5.0 clients, without and with topic aliases, right after kafkagate's
# 3.1.1 row, and compared with it in a table of their own. KG_BIN_OLD
# (another build) adds "kafkagate before" rows at 3.1.1 beside kafkagate's.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}        # seconds of publishing per throughput scenario
RATE=${RATE:-0}                 # msgs/s per scenario, 0 = flat out
E2E_WINDOW=${E2E_WINDOW:-5000}  # deliveries in transit at most, 0 = open loop
SIZE=${SIZE:-64}                # payload bytes
PUBS=${PUBS:-50}                # scenario 1/2 publishers
FANOUT=${FANOUT:-100}           # scenario 3 subscribers
IDLE=${IDLE:-15000}             # scenario 4 connections in total
IDLE_PROCS=${IDLE_PROCS:-3}     # ... spread over this many loadgen processes
KG_BIN=${KG_BIN:-build/kafkagate}
KG_BIN_OLD=${KG_BIN_OLD:-}      # another build: "kafkagate before" rows at 3.1.1
MQTT5=${MQTT5:-1}               # 1: MQTT 5 rows for kafkagate's plain scenarios
MQTT5_MOSQ=${MQTT5_MOSQ:-0}     # 1: and for mosquitto's
TOPIC_ALIAS=${TOPIC_ALIAS:-64}  # Topic Alias Maximum of the MQTT 5 alias rows
ROUNDS=${ROUNDS:-1}             # runs of every row; figures are their medians
KG_CONF=${KG_CONF:-}            # config template; @PORT@ is replaced
MOSQ_BIN=${MOSQ_BIN:-/usr/sbin/mosquitto}
LOADGEN_GIVEN=${LOADGEN:+1}
LOADGEN=${LOADGEN:-build/bench/loadgen}
OUT=${OUT:-bench/results}
TLS=${TLS:-1}                   # 0: the plain TCP scenarios only, as before
WS_PATH=/mqtt

WORK=$(mktemp -d /tmp/kg-bench.XXXXXX)
PIDS=()
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
TICK=$(getconf CLK_TCK)

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid" 50
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The broker and mosquitto need one fd per connection; 20000 is this
# machine's hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

build_loadgen() {
	if [ -n "$LOADGEN_GIVEN" ]; then
		[ -x "$LOADGEN" ] && return 0
		say "compare: LOADGEN=$LOADGEN is not executable"
		exit 1
	fi
	timeout 300 make -s bench >"$WORK/make.log" 2>&1 && [ -x "$LOADGEN" ] && return 0
	# The library may not build yet while other modules are written: the
	# generator only needs the codec and buf.
	say "compare: 'make bench' failed (see below); compiling loadgen from the codec sources"
	tail -n 5 "$WORK/make.log" >&2 || true
	local srcs=() f
	for f in src/mqtt/mqtt_codec.c src/mqtt/mqtt_frame.c src/mqtt/mqtt_decode.c src/mqtt/mqtt_encode.c src/mqtt/mqtt5.c src/mqtt_props.c src/core/buf.c \
		src/transport/ws.c src/transport/ws_handshake.c src/core/http_parse.c; do
		[ -f "$f" ] && srcs+=("$f")
	done
	mkdir -p "$(dirname "$LOADGEN")"
	cc -std=c11 -O2 -D_GNU_SOURCE -Isrc -o "$LOADGEN" bench/loadgen.c "${srcs[@]}" -lssl -lcrypto
}

# make_certs: the test CA and server certificate (scripts/gen-test-certs.sh)
# in $CERTS, for both brokers. mosquitto started as root reads its key after
# switching to the mosquitto user: that user gets the key and a way in.
make_certs() {
	CERTS=$WORK/certs
	[ -s "$CERTS/server.key" ] && return 0
	scripts/gen-test-certs.sh "$CERTS" || return 1
	if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
		chmod 711 "$WORK" "$CERTS"
		chown mosquitto "$CERTS/server.key"
	fi
}

# transport_args TRANSPORT: the loadgen options for tcp, tls, ws or wss.
transport_args() {
	case $1 in
	tls) echo "--tls $CERTS/ca.crt" ;;
	ws) echo "--ws $WS_PATH" ;;
	wss) echo "--tls $CERTS/ca.crt --ws $WS_PATH" ;;
	esac
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Row kinds: a broker (the part before "_") and how it is driven. kafkagate
# and mosquitto are the 3.1.1 rows as before; _m5: MQTT 5.0 clients; _m5a:
# MQTT 5.0 with topic aliases both ways; kafkagate_old: KG_BIN_OLD at 3.1.1.
declare -A KIND_ARGS=([kafkagate_m5]="--mqtt5" [kafkagate_m5a]="--topic-alias $TOPIC_ALIAS"
	[mosquitto_m5]="--mqtt5" [mosquitto_m5a]="--topic-alias $TOPIC_ALIAS")
declare -A KIND_NAME=([kafkagate]="kafkagate" [mosquitto]="mosquitto"
	[kafkagate_old]="kafkagate before" [kafkagate_m5]="kafkagate" [kafkagate_m5a]="kafkagate"
	[mosquitto_m5]="mosquitto" [mosquitto_m5a]="mosquitto")
declare -A KIND_PROTO=([kafkagate]="3.1.1" [mosquitto]="3.1.1" [kafkagate_old]="3.1.1"
	[kafkagate_m5]="5.0" [kafkagate_m5a]="5.0, topic aliases"
	[mosquitto_m5]="5.0" [mosquitto_m5a]="5.0, topic aliases")

# start_broker KIND [TRANSPORT]: sets BROKER_PID and PORT, or returns 1 (and
# BROKER_ERR). TRANSPORT: tcp (default), tls, ws or wss.
start_broker() {
	local name=${1%%_*} tr=${2:-tcp} conf log=$WORK/$1.log lis targs port2 bin=$KG_BIN
	[ "$1" = kafkagate_old ] && bin=$KG_BIN_OLD
	PORT=$(free_port)
	BROKER_ERR="did not start"
	targs=$(transport_args "$tr")
	if [ "$name" = mosquitto ]; then
		conf=$WORK/mosquitto.conf
		case $tr in
		tcp) lis="listener $PORT 127.0.0.1" ;;
		tls) lis="listener $PORT 127.0.0.1
certfile $CERTS/server.crt
keyfile $CERTS/server.key" ;;
		ws | wss)
			# mosquitto 2.0.11 exits ("Unable to start any listening
			# sockets") with a websockets listener alone, so an MQTT one
			# comes first; and libwebsockets takes the host as an
			# interface: "lo" binds 127.0.0.1, "127.0.0.1" every address.
			port2=$(free_port)
			while [ "$port2" = "$PORT" ]; do port2=$(free_port); done
			lis="listener $port2 127.0.0.1
listener $PORT lo
protocol websockets"
			[ "$tr" = wss ] && lis="$lis
certfile $CERTS/server.crt
keyfile $CERTS/server.key"
			;;
		esac
		cat >"$conf" <<-EOF
		$lis
		allow_anonymous true
		persistence false
		max_queued_messages 1000000
		set_tcp_nodelay true
		log_dest stderr
		log_type error
		log_type warning
		EOF
		"$MOSQ_BIN" -c "$conf" >>"$log" 2>&1 &
	else
		conf=$WORK/kafkagate.cfg
		lis="address = \"127.0.0.1\"; port = $PORT;"
		case $tr in ws | wss) lis="$lis protocol = \"websocket\"; path = \"$WS_PATH\";" ;; esac
		case $tr in tls | wss) lis="$lis tls = { cert = \"$CERTS/server.crt\"; key = \"$CERTS/server.key\"; };" ;; esac
		lis="{ $lis }"
		if [ -n "$KG_CONF" ]; then
			if [ "$tr" != tcp ] && ! grep -q '@LISTENER@' "$KG_CONF"; then
				BROKER_ERR="KG_CONF has no @LISTENER@"
				say "compare: $BROKER_ERR (needed for the $tr rows)"
				return 1
			fi
			sed -e "s/@PORT@/$PORT/g" -e "s|@LISTENER@|$lis|g" "$KG_CONF" >"$conf"
		else
			# max_connect_rate (5000/s by default since commit 554378f)
			# would refuse most of scenario 4's connections, which arrive
			# within a second; mosquitto has no such limit.
			cat >"$conf" <<-EOF
			listeners = ( $lis );
			limits = { max_connections = 100000; max_queued_messages = 1000000; max_connect_rate = 0; };
			log = { level = "warn"; };
			EOF
		fi
		"$bin" --config "$conf" >>"$log" 2>&1 &
	fi
	BROKER_PID=$!
	PIDS+=("$BROKER_PID")
	# Ready when an MQTT CONNECT gets its CONNACK; 10 s at most.
	local deadline=$((SECONDS + 10))
	while [ $SECONDS -lt $deadline ]; do
		alive "$BROKER_PID" || break
		# shellcheck disable=SC2086
		if timeout 2 "$LOADGEN" idle --port "$PORT" --clients 1 --hold 0 $targs \
			--connect-timeout 1 --id-prefix probe >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	say "compare: $name did not start on 127.0.0.1:$PORT; its log:"
	tail -n 20 "$log" >&2 || true
	stop_pid "$BROKER_PID"
	return 1
}

# Results: R[scenario|broker|field]
declare -A R
# e.g. SCENARIOS="s4" for the idle run only. t*: TLS, w*: WebSocket, x1: both.
DEFAULT_SCEN="s1 s2 s3 s4"
[ "$TLS" = 0 ] || DEFAULT_SCEN="$DEFAULT_SCEN t1 t2 w1 w2"
read -r -a SCEN_IDS <<< "${SCENARIOS:-$DEFAULT_SCEN}"
PLAIN_IDS=() XPORT_IDS=()
for id in "${SCEN_IDS[@]}"; do
	case $id in
	s[1-4]) PLAIN_IDS+=("$id") ;;
	t[12] | w[12] | x1) XPORT_IDS+=("$id") ;;
	*) say "compare: unknown scenario '$id' (s1-s4, t1, t2, w1, w2, x1)"; exit 2 ;;
	esac
done
declare -A SCEN_NAME=(
	[s1]="$PUBS pub -> 1 sub, QoS 0"
	[s2]="$PUBS pub -> 1 sub, QoS 1"
	[s3]="1 pub -> $FANOUT sub, QoS 0"
	[s4]="$IDLE idle connections"
)
declare -A SCEN_SHORT=([s1]="$PUBS->1 QoS 0" [s2]="$PUBS->1 QoS 1" [s3]="1->$FANOUT QoS 0")
declare -A SCEN_ARGS=(
	[s1]="--pubs $PUBS --subs 1 --qos 0 --topic-prefix bench/s1"
	[s2]="--pubs $PUBS --subs 1 --qos 1 --topic-prefix bench/s2"
	[s3]="--pubs 1 --subs $FANOUT --qos 0 --topic-prefix bench/s3 --topic bench/s3/0"
)
# The TLS and WebSocket scenarios: a plain one (BASE) over another transport.
declare -A SCEN_BASE=([t1]=s1 [t2]=s2 [w1]=s1 [w2]=s2 [x1]=s1)
declare -A SCEN_TRANSPORT=([t1]=tls [t2]=tls [w1]=ws [w2]=ws [x1]=wss)
declare -A TRANSPORT_NAME=([tls]="TLS" [ws]="WebSocket" [wss]="WebSocket over TLS")
for id in t1 t2 w1 w2 x1; do
	SCEN_NAME[$id]="${SCEN_NAME[${SCEN_BASE[$id]}]}, ${TRANSPORT_NAME[${SCEN_TRANSPORT[$id]}]}"
	SCEN_ARGS[$id]="${SCEN_ARGS[${SCEN_BASE[$id]}]/bench\/s?/bench/$id}"
done


# run_traffic ID KIND: one throughput scenario on a fresh broker.
run_traffic() {
	local id=$1 b=$2 c0 c1 line lg out=$WORK/$1-$2.out tr=${SCEN_TRANSPORT[$1]:-tcp}
	start_broker "$b" "$tr" || { R[$id|$b|err]=$BROKER_ERR; return 0; }
	c0=$(cpu_ticks "$BROKER_PID")
	# In the background so that a signal reaches the trap at once (bash
	# defers traps while a foreground command runs).
	# shellcheck disable=SC2086
	timeout -k 5 $((DURATION + 90)) "$LOADGEN" run --port "$PORT" ${SCEN_ARGS[$id]} \
		$(transport_args "$tr") ${KIND_ARGS[$b]:-} \
		--size "$SIZE" --rate "$RATE" --e2e-window "$E2E_WINDOW" \
		--duration "$DURATION" --drain 20 \
		>"$out" 2>"$WORK/$id-$b.err" &
	lg=$!
	PIDS+=("$lg")
	wait "$lg" || true
	stop_pid "$lg"
	c1=$(cpu_ticks "$BROKER_PID")
	stop_pid "$BROKER_PID"
	line=$(grep '^RESULT' "$out" || true)
	if [ -z "$line" ]; then
		R[$id|$b|err]="loadgen failed"
		tail -n 5 "$WORK/$id-$b.err" >&2 || true
		return 0
	fi
	say "  $b: $line"
	R[$id|$b|line]=$line
	R[$id|$b|rate]=$(field msgs_per_s "$line")
	R[$id|$b|p50]=$(field p50_us "$line")
	R[$id|$b|p99]=$(field p99_us "$line")
	R[$id|$b|p999]=$(field p999_us "$line")
	R[$id|$b|cpu]=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$(field received "$line")" \
		'BEGIN { if (n > 0) printf "%.3f", t / hz / (n / 1e6); else print "-" }')
}

# run_idle KIND: IDLE connections from IDLE_PROCS processes.
run_idle() {
	local b=$1 per=$(( (IDLE + IDLE_PROCS - 1) / IDLE_PROCS )) left=$IDLE i n
	local rss0 rss1 ok=0 lg=() deadline
	start_broker "$b" || { R[s4|$b|err]="did not start"; return 0; }
	sleep 0.5
	rss0=$(rss_kib "$BROKER_PID")
	for i in $(seq "$IDLE_PROCS"); do
		n=$((left < per ? left : per))
		left=$((left - n))
		[ "$n" -gt 0 ] || continue
		# shellcheck disable=SC2086
		timeout -k 5 300 "$LOADGEN" idle --port "$PORT" --clients "$n" --hold 240 \
			--connect-timeout 120 --id-prefix "idle$i-" ${KIND_ARGS[$b]:-} \
			>"$WORK/idle-$b-$i.out" 2>"$WORK/idle-$b-$i.err" &
		lg+=($!)
		PIDS+=($!)
	done
	deadline=$((SECONDS + 150))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(cat "$WORK"/idle-"$b"-*.out 2>/dev/null | grep -c '^CONNECTED')" -ge "${#lg[@]}" ] && break
		sleep 0.5
	done
	sleep 1
	rss1=$(rss_kib "$BROKER_PID")
	ok=$(cat "$WORK"/idle-"$b"-*.out 2>/dev/null |
		awk '/^CONNECTED/ { sub("ok=", "", $2); s += $2 } END { print s + 0 }')
	for i in "${lg[@]}"; do
		stop_pid "$i"
	done
	stop_pid "$BROKER_PID"
	say "  $b: connected=$ok/$IDLE broker VmRSS ${rss0} KiB -> ${rss1} KiB"
	R[s4|$b|line]="connected=$ok of $IDLE, VmRSS $rss0 -> $rss1 KiB"
	R[s4|$b|rss]=$(awk -v a="$rss0" -v z="$rss1" -v n="$ok" \
		'BEGIN { if (n > 0) printf "%.2f", (z - a) / n; else print "-" }')
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
build_loadgen
if [ ${#XPORT_IDS[@]} -gt 0 ] && ! make_certs; then
	say "compare: scripts/gen-test-certs.sh failed: no TLS or WebSocket rows"
	XPORT_IDS=()
	SCEN_IDS=("${PLAIN_IDS[@]}")
fi
HAVE_KG=1
if [ ! -x "$KG_BIN" ]; then
	say "compare: kafkagate binary '$KG_BIN' not found or not executable: only mosquitto rows will be measured"
	HAVE_KG=0
fi
if [ -n "$KG_BIN_OLD" ] && [ ! -x "$KG_BIN_OLD" ]; then
	say "compare: KG_BIN_OLD '$KG_BIN_OLD' not found or not executable: no 'kafkagate before' rows"
	KG_BIN_OLD=
fi
BROKERS=(kafkagate mosquitto)

# kinds ID: the rows of scenario ID, in the order they run: each variant of
# a broker right after its 3.1.1 row, so that they share the machine's
# state. MQTT 5 rows for the plain scenarios only; s4 (idle) without the
# alias variant, which only changes PUBLISH.
kinds() {
	local k=(kafkagate)
	[ -n "$KG_BIN_OLD" ] && k+=(kafkagate_old)
	case $1 in s[1-4])
		if [ "$MQTT5" = 1 ]; then
			k+=(kafkagate_m5)
			[ "$1" = s4 ] || k+=(kafkagate_m5a)
		fi ;;
	esac
	k+=(mosquitto)
	case $1 in s[1-4])
		if [ "$MQTT5_MOSQ" = 1 ]; then
			k+=(mosquitto_m5)
			[ "$1" = s4 ] || k+=(mosquitto_m5a)
		fi ;;
	esac
	echo "${k[@]}"
}

FIELDS="rate p50 p99 p999 cpu rss"

# median ID KIND: with ROUNDS > 1, each figure of a row becomes the median
# of its rounds that succeeded (the mean of the middle two for an even
# count); the row fails only if every round did.
median() {
	local id=$1 b=$2 f r v vals
	R[$id|$b|err]=
	for f in $FIELDS; do
		vals=""
		for ((r = 1; r <= ROUNDS; r++)); do
			v=${R[$id|$b#$r|$f]:-}
			[ -n "$v" ] && [ "$v" != - ] && [ -z "${R[$id|$b#$r|err]:-}" ] && vals="$vals $v"
		done
		# Printed as run_traffic and run_idle print them.
		R[$id|$b|$f]=$(echo "$vals" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk -v f="$f" '
			{ v[NR] = $1 } END {
				if (NR == 0) exit
				m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
				fmt = f == "rate" ? "%.0f" : f == "cpu" ? "%.3f" : f == "rss" ? "%.2f" : "%.1f"
				printf fmt, m }')
	done
	if [ -z "${R[$id|$b|rate]:-}${R[$id|$b|rss]:-}" ]; then
		R[$id|$b|err]=${R[$id|$b#$ROUNDS|err]:-failed}
	fi
}

for id in "${SCEN_IDS[@]}"; do
	say "scenario: ${SCEN_NAME[$id]}"
	# ROUNDS > 1: the rows of a scenario in turn, again and again, so
	# that drifting load on the machine spreads over all of them.
	for ((round = 1; round <= ROUNDS; round++)); do
		for b in $(kinds "$id"); do
			if [ "${b%%_*}" = kafkagate ] && [ "$HAVE_KG" = 0 ]; then
				R[$id|$b|err]="not built"
				continue
			fi
			say " row: ${KIND_NAME[$b]}, MQTT ${KIND_PROTO[$b]}$([ "$ROUNDS" -gt 1 ] && echo ", round $round of $ROUNDS")"
			for f in $FIELDS line err; do unset "R[$id|$b|$f]"; done
			if [ "$id" = s4 ]; then run_idle "$b"; else run_traffic "$id" "$b"; fi
			for f in $FIELDS line err; do R[$id|$b#$round|$f]=${R[$id|$b|$f]:-}; done
		done
	done
	if [ "$ROUNDS" -gt 1 ]; then
		for b in $(kinds "$id"); do
			[ "${R[$id|$b|err]:-}" = "not built" ] || median "$id" "$b"
		done
	fi
done

ms() { awk -v u="$1" 'BEGIN { if (u == "") print "-"; else printf "%.3f", u / 1000 }'; }
val() { local v=${R[$1]:-}; echo "${v:--}"; }
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "n/a";
		else printf "%.2f", a / b }'
}

times() { local r; r=$(ratio "$1" "$2"); [ "$r" = n/a ] && echo "$r" || echo "${r}x"; }

# tls_of BROKER: version:cipher its TLS rows negotiated, per the loadgen.
tls_of() {
	local id v
	for id in "${XPORT_IDS[@]}"; do
		v=$(field tls "${R[$id|$1|line]:-}")
		[ -n "$v" ] && { echo "$v"; return; }
	done
	echo "-"
}

# The TLS and WebSocket table: each row against the same broker's plain row
# of this run (SCEN_BASE), then kafkagate against mosquitto.
xport_report() {
	local id b base r c verdict
	echo "## TLS and WebSocket"
	echo
	echo "TLS: the same certificates for both brokers (scripts/gen-test-certs.sh: test CA," \
	     "EC P-256 server key); the generator verifies the broker and makes a full handshake" \
	     "per connection; negotiated: kafkagate $(tls_of kafkagate), mosquitto $(tls_of mosquitto)." \
	     "WebSocket: path $WS_PATH, one masked binary frame per flush from the generator." \
	     "\"vs TCP\" divides by the same broker's plain TCP row of this run."
	echo
	echo "| scenario | broker | msgs/s | p50 ms | p99 ms | p999 ms | CPU s per 1M msgs | msgs/s vs TCP | CPU/msg vs TCP |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
	for id in "${XPORT_IDS[@]}"; do
		base=${SCEN_BASE[$id]}
		for b in "${BROKERS[@]}"; do
			if [ -n "${R[$id|$b|err]:-}" ]; then
				echo "| ${SCEN_NAME[$id]} | $b | ${R[$id|$b|err]} | - | - | - | - | - | - |"
				continue
			fi
			echo "| ${SCEN_NAME[$id]} | $b | $(val "$id|$b|rate") | $(ms "${R[$id|$b|p50]:-}") |" \
			     "$(ms "${R[$id|$b|p99]:-}") | $(ms "${R[$id|$b|p999]:-}") | $(val "$id|$b|cpu") |" \
			     "$(times "${R[$id|$b|rate]:-}" "${R[$base|$b|rate]:-}") |" \
			     "$(times "${R[$id|$b|cpu]:-}" "${R[$base|$b|cpu]:-}") |"
		done
	done
	echo
	echo "Ratios kafkagate/mosquitto; target for TLS: msgs/s >= 1, CPU per message <= 0.7:"
	echo
	for id in "${XPORT_IDS[@]}"; do
		r=$(ratio "${R[$id|kafkagate|rate]:-}" "${R[$id|mosquitto|rate]:-}")
		c=$(ratio "${R[$id|kafkagate|cpu]:-}" "${R[$id|mosquitto|cpu]:-}")
		verdict=""
		if [ "${SCEN_TRANSPORT[$id]}" != ws ]; then
			verdict=$(awk -v r="$r" -v c="$c" 'BEGIN {
				if (r == "n/a" || c == "n/a") print ": target not measured";
				else if (r + 0 >= 1 && c + 0 <= 0.7) print ": target met";
				else print ": target NOT met" }')
		fi
		echo "- ${SCEN_NAME[$id]}: msgs/s $r," \
		     "p99 $(ratio "${R[$id|kafkagate|p99]:-}" "${R[$id|mosquitto|p99]:-}")," \
		     "CPU per 1M $c$verdict"
	done
	echo
}

# The plain TCP table and its ratio lines, as before the TLS rows existed.
plain_report() {
	local id b
	echo "| scenario | broker | msgs/s | p50 ms | p99 ms | p999 ms | CPU s per 1M msgs | RSS/conn KiB |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
	for id in "${PLAIN_IDS[@]}"; do
		for b in "${BROKERS[@]}"; do
			if [ -n "${R[$id|$b|err]:-}" ]; then
				echo "| ${SCEN_NAME[$id]} | $b | ${R[$id|$b|err]} | - | - | - | - | - |"
			elif [ "$id" = s4 ]; then
				echo "| ${SCEN_NAME[$id]} | $b | - | - | - | - | - | $(val "s4|$b|rss") |"
			else
				echo "| ${SCEN_NAME[$id]} | $b | $(val "$id|$b|rate") | $(ms "${R[$id|$b|p50]:-}") |" \
				     "$(ms "${R[$id|$b|p99]:-}") | $(ms "${R[$id|$b|p999]:-}") | $(val "$id|$b|cpu") | - |"
			fi
		done
	done
	echo
	echo "Ratios kafkagate/mosquitto (msgs/s: higher is better; p99, CPU, RSS: lower is better):"
	echo
	for id in s1 s2 s3; do
		echo "- ${SCEN_NAME[$id]}: msgs/s $(ratio "${R[$id|kafkagate|rate]:-}" "${R[$id|mosquitto|rate]:-}")," \
		     "p99 $(ratio "${R[$id|kafkagate|p99]:-}" "${R[$id|mosquitto|p99]:-}")," \
		     "CPU per 1M $(ratio "${R[$id|kafkagate|cpu]:-}" "${R[$id|mosquitto|cpu]:-}")"
	done
	echo "- ${SCEN_NAME[s4]}: RSS/conn $(ratio "${R[s4|kafkagate|rss]:-}" "${R[s4|mosquitto|rss]:-}")"
	echo
}

# The cell of a row in the MQTT 5 and before/after tables.
row_cells() {
	local id=$1 b=$2
	if [ -n "${R[$id|$b|err]:-}" ]; then
		echo "${R[$id|$b|err]} | - | - | - | - | -"
	elif [ "$id" = s4 ]; then
		echo "- | - | - | - | - | $(val "s4|$b|rss")"
	else
		echo "$(val "$id|$b|rate") | $(ms "${R[$id|$b|p50]:-}") | $(ms "${R[$id|$b|p99]:-}") |" \
		     "$(ms "${R[$id|$b|p999]:-}") | $(val "$id|$b|cpu") | -"
	fi
}

# within10 KIND ID BASE: whether row KIND of scenario ID is within 10% of
# row BASE: msgs/s at least 0.90x, CPU per message and RSS per connection
# at most 1.10x.
within10() {
	local b=$1 id=$2 base=$3
	if [ "$id" = s4 ]; then
		awk -v r="$(ratio "${R[$id|$b|rss]:-}" "${R[$id|$base|rss]:-}")" 'BEGIN {
			if (r == "n/a") print "RSS/conn n/a: not measured";
			else printf "RSS/conn %.2fx: %s\n", r, (r <= 1.10 ? "met" : "NOT met") }'
		return
	fi
	awk -v r="$(ratio "${R[$id|$b|rate]:-}" "${R[$id|$base|rate]:-}")" \
	    -v c="$(ratio "${R[$id|$b|cpu]:-}" "${R[$id|$base|cpu]:-}")" \
	    -v p="$(ratio "${R[$id|$b|p99]:-}" "${R[$id|$base|p99]:-}")" 'BEGIN {
		if (r == "n/a" || c == "n/a") { print "not measured"; exit }
		printf "msgs/s %.2fx (%s), CPU per message %.2fx (%s), p99 %s\n", r,
			(r >= 0.90 ? "met" : "NOT met"), c, (c <= 1.10 ? "met" : "NOT met"),
			(p == "n/a" ? "n/a" : sprintf("%.2fx", p)) }'
}

# MQTT 5 rows beside the same broker's 3.1.1 row of this run.
m5_report() {
	local id b base ks
	echo "## MQTT 5"
	echo
	echo "The plain scenarios with MQTT 5.0 clients (loadgen --mqtt5), and with topic aliases" \
	     "both ways (--topic-alias $TOPIC_ALIAS: each publisher aliases its topic; subscribers" \
	     "announce Topic Alias Maximum $TOPIC_ALIAS, so a broker may alias toward them), each" \
	     "right after the same broker's 3.1.1 row of this run. Target: within 10% of 3.1.1."
	echo
	echo "| scenario | broker | MQTT | msgs/s | p50 ms | p99 ms | p999 ms | CPU s per 1M msgs | RSS/conn KiB |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
	for id in "${PLAIN_IDS[@]}"; do
		ks=" $(kinds "$id") "
		for b in $ks; do
			# A broker's 3.1.1 row when it has MQTT 5 rows, then those.
			case $b in
			kafkagate_old) continue ;;
			*_m5*) ;;
			*) [[ $ks == *" ${b}_m5 "* ]] || continue ;;
			esac
			echo "| ${SCEN_NAME[$id]} | ${KIND_NAME[$b]} | ${KIND_PROTO[$b]} | $(row_cells "$id" "$b") |"
		done
	done
	echo
	echo "Against the same broker's 3.1.1 row (target: msgs/s >= 0.90x, CPU per message and RSS per connection <= 1.10x):"
	echo
	for id in "${PLAIN_IDS[@]}"; do
		for b in $(kinds "$id"); do
			case $b in *_m5*) ;; *) continue ;; esac
			base=${b%%_*}
			echo "- ${SCEN_NAME[$id]}, ${KIND_NAME[$b]} MQTT ${KIND_PROTO[$b]}: $(within10 "$b" "$id" "$base")"
		done
	done
	echo
}

# KG_BIN against KG_BIN_OLD, both at 3.1.1.
old_report() {
	local id b
	echo "## kafkagate before and after"
	echo
	echo "\"kafkagate\": $KG_BIN; \"kafkagate before\": $KG_BIN_OLD; both with 3.1.1 clients," \
	     "each scenario on the two builds one after the other."
	echo
	echo "| scenario | build | msgs/s | p50 ms | p99 ms | p999 ms | CPU s per 1M msgs | RSS/conn KiB |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
	for id in "${SCEN_IDS[@]}"; do
		for b in kafkagate kafkagate_old; do
			echo "| ${SCEN_NAME[$id]} | ${KIND_NAME[$b]} | $(row_cells "$id" "$b") |"
		done
	done
	echo
	echo "After / before (msgs/s: higher is better; p99, CPU, RSS: lower is better):"
	echo
	for id in "${SCEN_IDS[@]}"; do
		if [ "$id" = s4 ]; then
			echo "- ${SCEN_NAME[$id]}: RSS/conn $(ratio "${R[s4|kafkagate|rss]:-}" "${R[s4|kafkagate_old|rss]:-}")"
		else
			echo "- ${SCEN_NAME[$id]}: msgs/s $(ratio "${R[$id|kafkagate|rate]:-}" "${R[$id|kafkagate_old|rate]:-}")," \
			     "p99 $(ratio "${R[$id|kafkagate|p99]:-}" "${R[$id|kafkagate_old|p99]:-}")," \
			     "CPU per 1M $(ratio "${R[$id|kafkagate|cpu]:-}" "${R[$id|kafkagate_old|cpu]:-}")"
		fi
	done
	echo
}

mkdir -p "$OUT"
{
	echo "# kafkagate vs mosquitto"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r)"
	echo "- load average before the run: $LOAD0 (other work on the machine skews every row)"
	echo "- mosquitto: $("$MOSQ_BIN" -h 2>&1 | sed -n 's/^mosquitto version //p' | head -n 1)"
	echo "- kafkagate: $([ "$HAVE_KG" = 1 ] && echo "$KG_BIN" || echo "not measured ($KG_BIN missing)")${KG_BIN_OLD:+; before: $KG_BIN_OLD}"
	echo "- parameters: DURATION=${DURATION}s RATE=$RATE E2E_WINDOW=$E2E_WINDOW SIZE=${SIZE}B PUBS=$PUBS FANOUT=$FANOUT IDLE=$IDLE (x$IDLE_PROCS processes)"
	[ "$ROUNDS" -gt 1 ] && echo "- ROUNDS=$ROUNDS: every row ran $ROUNDS times (a scenario's rows in turn); each figure is the median of its rounds (for 2: their mean)"
	echo
	[ ${#PLAIN_IDS[@]} -eq 0 ] || plain_report
	[ ${#XPORT_IDS[@]} -eq 0 ] || xport_report
	{ [ "$MQTT5" = 1 ] || [ "$MQTT5_MOSQ" = 1 ]; } && [ ${#PLAIN_IDS[@]} -gt 0 ] && m5_report
	[ -n "$KG_BIN_OLD" ] && old_report
	echo "Raw loadgen results:"
	echo
	for id in "${SCEN_IDS[@]}"; do
		for b in $(kinds "$id"); do
			if [ "$ROUNDS" -gt 1 ]; then
				for ((round = 1; round <= ROUNDS; round++)); do
					[ -n "${R[$id|$b#$round|line]:-}" ] &&
						echo "    $id $b round $round: ${R[$id|$b#$round|line]}"
				done
			elif [ -n "${R[$id|$b|line]:-}" ]; then
				echo "    $id $b: ${R[$id|$b|line]}"
			fi
		done
	done
	echo
	echo "![msgs/s and CPU per 1M messages](compare.png)"
} | tee "$OUT/latest.md"

{
	echo "# scenario mosquitto_msgs kafkagate_msgs mosquitto_cpu kafkagate_cpu"
	for id in s1 s2 s3; do
		printf '"%s" %s %s %s %s\n' "${SCEN_SHORT[$id]}" \
			"$(val "$id|mosquitto|rate")" "$(val "$id|kafkagate|rate")" \
			"$(val "$id|mosquitto|cpu")" "$(val "$id|kafkagate|cpu")"
	done
} >"$OUT/compare.dat"
if timeout 60 gnuplot -c bench/plot.gp "$OUT/compare.dat" "$OUT/compare.png" 2>"$WORK/gnuplot.err"; then
	say "chart: $OUT/compare.png"
else
	say "compare: gnuplot failed:"
	cat "$WORK/gnuplot.err" >&2
fi
