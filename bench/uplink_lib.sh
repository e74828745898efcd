# shellcheck shell=bash
# bench/uplink_lib.sh - what bench/uplink.sh, bench/uplink_latency.sh and
# bench/recovery.sh share: the Kafka clusters (librdkafka's mock cluster in
# its own process, or Apache Kafka from scripts/kafka-local), a gateway
# started on a free port with its metrics endpoint, and the acknowledgement
# stages read from its /metrics. Sourced after bench/lib.sh, from the
# repository root, with UB (uplink_bench) set by the caller, which then
# calls uplink_setup.

# uplink_setup NAME: bench_setup NAME, and scripts/kafka-local's data under
# WORK with 4 partitions a topic.
uplink_setup() {
	bench_setup "$1"
	export KAFKA_RUN_DIR=$WORK/kafka-run KAFKA_NUM_PARTITIONS=4
}

# start_cluster NAME: mock or kafka; sets BOOT, or returns 1.
start_cluster() {
	BOOT=
	if [ "$1" = mock ]; then
		start_mock "$UB"
		return
	fi
	command -v java >/dev/null || { say "java not found: no real-Kafka rows"; return 1; }
	KAFKA_STARTED=1
	BOOT=$(timeout 300 scripts/kafka-local start 2>"$WORK/kafka-start.err") || {
		say "scripts/kafka-local start failed:"
		tail -n 5 "$WORK/kafka-start.err" >&2
		return 1
	}
}

stop_cluster() {
	if [ "$1" = mock ]; then
		stop_pid "$MOCK_PID"
		rm -f "$WORK/mock.in"
	else
		scripts/kafka-local stop >/dev/null 2>&1 || true
		KAFKA_STARTED=0
	fi
}

# start_gateway BIN TOPIC [NAME=VALUE...]: a gateway routing bench/# to the
# Kafka topic TOPIC (key = client id, raw), with these kafka.properties
# after its defaults, and a metrics endpoint. Sets GW_PID, GW_PORT and
# GW_MPORT, or returns 1 (the end of its log is shown).
start_gateway() {
	local bin=$1 topic=$2 props="" p
	shift 2
	for p in "$@"; do
		props="$props${props:+, }(\"${p%%=*}\", \"${p#*=}\")"
	done
	GW_PORT=$(free_port)
	GW_MPORT=$(free_port)
	cat >"$WORK/gw.cfg" <<-EOC
	listeners = ( { address = "127.0.0.1"; port = $GW_PORT; } );
	limits = { max_connections = 100000; };
	log = { level = "warn"; };
	metrics = { address = "127.0.0.1"; port = $GW_MPORT; };
	kafka = { brokers = "$BOOT"; flush_timeout = 10; ${props:+properties = ( $props );} };
	routes = ( { filter = "bench/#"; topic = "$topic"; key = "\${clientid}"; format = "raw"; } );
	EOC
	"$bin" --config "$WORK/gw.cfg" >>"$WORK/gw.log" 2>&1 &
	GW_PID=$!
	PIDS+=("$GW_PID")
	if ! wait_port "$GW_PORT"; then
		say "kafkagate ($bin) did not start; end of its log:"
		tail -n 10 "$WORK/gw.log" >&2
		stop_pid "$GW_PID"
		return 1
	fi
}

# stages MPORT: one line "kafka COUNT SUM_S B1..BN handoff ... write ..."
# with the cumulative buckets of kafkagate_uplink_ack_stage_seconds; empty
# when the gateway has no such histogram (a build from before it).
stages() {
	# Never fails: a scrape that did not answer is an empty snapshot.
	{ curl -s --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } | awk '
		/^kafkagate_uplink_ack_stage_seconds_/ {
			match($0, /stage="[a-z]+"/); st = substr($0, RSTART + 7, RLENGTH - 8)
			if ($0 ~ /_bucket/) b[st] = b[st] " " $2
			else if ($0 ~ /_sum/) s[st] = $2
			else c[st] = $2
		}
		END { for (k in c) printf "%s %s %s%s\n", k, c[k], s[k], b[k] }'
}

# stage_summary BEFORE AFTER: the mean of each stage, in ms, over the
# observations between two stages() snapshots:
# "kafka=0.212 handoff=0.021 write=0.019" ("-" when there were none).
stage_summary() {
	awk -v before="$1" -v after="$2" 'BEGIN {
		n = split(before, L, "\n")
		for (i = 1; i <= n; i++) { split(L[i], f, " "); C[f[1]] = f[2]; S[f[1]] = f[3] }
		n = split(after, L, "\n")
		for (i = 1; i <= n; i++) {
			split(L[i], a, " ")
			if (a[1] != "" && a[2] - C[a[1]] > 0)
				out[a[1]] = sprintf("%.3f", (a[3] - S[a[1]]) / (a[2] - C[a[1]]) * 1e3)
		}
		printf "kafka=%s handoff=%s write=%s", ("kafka" in out) ? out["kafka"] : "-",
			("handoff" in out) ? out["handoff"] : "-", ("write" in out) ? out["write"] : "-"
	}'
}
