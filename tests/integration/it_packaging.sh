#!/bin/bash
# it_packaging.sh - the packaging files against the real binary: every path,
# flag and port that docker/, systemd/kafkagate.service, the config examples
# and `make install` name must exist and agree.
#
# Runs the gateway once (embedded Kafka, 127.0.0.1, free ports, a fake
# service manager socket) to scrape /metrics and to watch the sd_notify
# messages the unit file relies on. Needs bash, python3 and curl; the YAML
# checks need python3's yaml module and systemd checks systemd-analyze (each
# is skipped, with a message, when missing).
#
# Env: KG_BIN (default build/kafkagate). Last line "packaging: N passed,
# N failed"; exit 1 if anything failed.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
bin=${KG_BIN:-build/kafkagate}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
tmp=$(mktemp -d /tmp/kg-packaging-XXXXXX) || exit 2
gw_pid= rx_pid=
passed=0 failed=0 skipped=0

cleanup() {
	for p in $gw_pid $rx_pid; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

ok() { echo "packaging: ok: $*"; passed=$((passed + 1)); }
bad() { echo "packaging: FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "packaging: skip: $*"; skipped=$((skipped + 1)); }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
quiet() { "$@" >/dev/null 2>&1; }
# same A B DESCRIPTION
same() { if [ "$1" = "$2" ]; then ok "$3 ($1)"; else bad "$3: '$1' != '$2'"; fi; }

df=docker/Dockerfile compose=docker/docker-compose.yml unit=systemd/kafkagate.service
prom=docker/prometheus.yml dash=docker/grafana/dashboards/kafkagate.json
dcfg=docker/kafkagate.cfg pcfg=config/kafkagate.cfg

# --- the binary and its flags ----------------------------------------------
if [ ! -x "$bin" ]; then
	bad "binary $bin not built"
	echo "packaging: $passed passed, $failed failed"
	exit 1
fi
help=$("$bin" --help 2>&1)
check "kafkagate --help exits 0" quiet "$bin" --help
# Every --flag the Dockerfile and the unit pass must be one --help shows.
for f in $(grep -hE '^(ENTRYPOINT|CMD|ExecStart|ExecStartPre)' "$df" "$unit" | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
	check "flag $f (Dockerfile/unit) is in kafkagate --help" grep -qE -- "(^|[^a-z-])$f([^a-z-]|$)" <<<"$help"
done

# --- config files pass --check ---------------------------------------------
# The production example is a secured setup: TLS, a password file and an
# ACL beside it. Check it where those files exist (test certificates, a
# password file written by kafkagate passwd, the shipped ACL example), and
# check that without them it refuses to start rather than serve in the clear.
secure=$tmp/etc-kafkagate
mkdir -p "$secure"
cp "$pcfg" "$secure/kafkagate.cfg"
cp config/acl.example "$secure/acl"
scripts/gen-test-certs.sh "$secure" >/dev/null 2>&1
printf 'device-1-secret\n' | "$bin" passwd -c --stdin "$secure/passwd" device-1 >/dev/null 2>&1
for c in "$secure/kafkagate.cfg" "$dcfg" config/dev.cfg; do
	out=$("$bin" --check --config "$c" 2>&1)
	if [ $? -eq 0 ] && grep -q valid <<<"$out"; then ok "$c passes --check"; else bad "$c: $out"; fi
done
out=$("$bin" --check --config "$pcfg" 2>&1)
if [ $? -ne 0 ] && grep -qE "^$pcfg:[0-9]+: " <<<"$out"; then
	ok "$pcfg without its certificate refuses to start ($out)"
else
	bad "$pcfg without its files: wanted FILE:LINE refusal, got: $out"
fi

# --- Dockerfile --------------------------------------------------------------
cfg_port() { # FILE GROUP: the port of the one-line group "GROUP = { ... port = N; }"
	grep -E "^[[:space:]]*$2[[:space:]]*=[[:space:]]*\{" "$1" | grep -oE 'port[[:space:]]*=[[:space:]]*[0-9]+' | grep -oE '[0-9]+$' | head -1
}
listen_port=$(grep -A3 -E '^listeners[[:space:]]*=' "$dcfg" | grep -oE 'port[[:space:]]*=[[:space:]]*[0-9]+' | grep -oE '[0-9]+$' | head -1)
metrics_port=$(cfg_port "$dcfg" metrics)
check "docker cfg names a listener and a metrics port" test -n "$listen_port" -a -n "$metrics_port"
same "$(grep -E '^FROM' "$df" | awk '{print $2}' | sort -u)" "debian:bookworm-slim" "every Dockerfile stage is FROM"

workdir=$(grep -E '^WORKDIR' "$df" | head -1 | awk '{print $2}')
target=$(grep -E '^RUN .*make ' "$df" | grep -oE 'make( -[^ ]+)* [^ ]+$' | awk '{print $NF}')
check "Make target '$target' from the Dockerfile exists" quiet make -s -n "$target"
bin_src=$(grep -E '^COPY --from=build' "$df" | awk '{print $3}')
bin_dst=$(grep -E '^COPY --from=build' "$df" | awk '{print $4}')
same "$bin_src" "$workdir/$target" "binary copied from the build stage's make target"
while read -r _ src dst; do
	check "COPY source $src exists in the repo" test -e "$src"
	[ "$src" = "$dcfg" ] && cfg_dst=$dst
done < <(grep -E '^COPY [^-]' "$df" | grep -v '^COPY \. ')
same "$(grep -E '^ENTRYPOINT' "$df" | grep -oE '"[^"]+"' | head -1 | tr -d '"')" "$bin_dst" "ENTRYPOINT runs the copied binary"
same "$(grep -E '^CMD' "$df" | grep -oE '"--config", *"[^"]+"' | grep -oE '"/[^"]+"' | tr -d '"')" "${cfg_dst:-?}" "CMD --config is where docker/kafkagate.cfg is copied"
hc=$(grep -A1 -E '^HEALTHCHECK' "$df" | grep -oE 'http://[^ ]+')
same "$hc" "http://127.0.0.1:$metrics_port/readyz" "HEALTHCHECK probes /readyz on the metrics port"
expose=" $(grep -E '^EXPOSE' "$df" | cut -d' ' -f2-) "
check "EXPOSE has listener port $listen_port and metrics port $metrics_port" \
	bash -c "[[ '$expose' == *' $listen_port '* && '$expose' == *' $metrics_port '* ]]"
user=$(grep -E '^USER' "$df" | awk '{print $2}')
check "USER $user is not root and is created with useradd --system" \
	bash -c "[ '$user' != root ] && [ '$user' != 0 ] && grep -qE 'useradd --system.* $user\$' '$df'"

# The -dev package behind each pkg-config module, and the package behind
# each library the binary loads, must be the ones the Dockerfile installs.
if command -v dpkg >/dev/null; then
	pkg_of() { dpkg -S "$1" 2>/dev/null || dpkg -S "/usr$1" 2>/dev/null; }
	build_pkgs=$(awk '/^FROM/ { n++ } n == 1' "$df")
	run_pkgs=$(awk '/^FROM/ { n++ } n == 2' "$df")
	for m in $(sed -n 's/^PKGS *:= *//p' Makefile); do
		pc="$(pkg-config --variable=pcfiledir "$m")/$m.pc"
		p=$(pkg_of "$pc" | head -1 | cut -d: -f1)
		check "build stage installs $p (pkg-config $m)" grep -qw -- "$p" <<<"$build_pkgs"
	done
	for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|64bit|aarch64/ {print $NF; exit}')
		p=$(pkg_of "$(readlink -f "$path")" | head -1 | cut -d: -f1)
		case $p in libc6 | libgcc-s1 | "") continue ;; esac
		check "runtime stage installs $p ($lib)" grep -qw -- "$p" <<<"$run_pkgs"
	done
else
	skip "no dpkg: Debian package names not checked"
fi

# --- compose, prometheus, grafana ---------------------------------------------
prom_target=$(grep -oE 'targets: *\["[^"]+"\]' "$prom" | grep -oE '"[^"]+"' | tr -d '"')
same "${prom_target##*:}" "$metrics_port" "prometheus.yml scrapes the metrics port of docker/kafkagate.cfg"
same "$(sed -n 's/^ *metrics_path: *//p' "$prom")" "/metrics" "prometheus.yml metrics_path"
same "$(sed -n 's/^ *brokers *= *"\(.*\)";.*/\1/p' "$dcfg")" "kafka:9092" "docker cfg brokers"

if python3 -c 'import yaml' 2>/dev/null; then
	while read -r verdict what; do
		case $verdict in ok) ok "$what" ;; *) bad "$what" ;; esac
	done < <(python3 - "$prom_target" "$metrics_port" "$listen_port" "$dash" <<'EOF'
import json, os, sys, yaml
prom_target, metrics_port, listen_port, dash_path = sys.argv[1:5]
out = lambda good, what: print(("ok" if good else "FAIL"), what)
d = yaml.safe_load(open("docker/docker-compose.yml"))
sv = d.get("services", {})
for name in ("kafkagate", "kafka", "prometheus", "grafana"):
    out(name in sv, f"compose has service {name}")
gw, kafka, prom, graf = (sv.get(n, {}) for n in ("kafkagate", "kafka", "prometheus", "grafana"))
b = gw.get("build", {})
ctx = os.path.normpath(os.path.join("docker", b.get("context", "?")))
out(ctx == ".", f"kafkagate build context is the repo root ({ctx})")
out(os.path.isfile(os.path.join(ctx, b.get("dockerfile", "?"))), f"kafkagate dockerfile {b.get('dockerfile')} exists")
out(prom_target.split(":")[0] in sv, f"prometheus target host {prom_target} is a compose service")
ports = [str(p).split(":")[-1] for p in gw.get("ports", [])]
out(metrics_port in ports and listen_port in ports, f"kafkagate publishes {listen_port} and {metrics_port} ({ports})")
env = kafka.get("environment", {})
out(kafka.get("image") == "apache/kafka:4.1.1", f"kafka image {kafka.get('image')}")
out(set(str(env.get("KAFKA_PROCESS_ROLES", "")).split(",")) == {"broker", "controller"}, "kafka is a combined KRaft broker/controller")
out("PLAINTEXT://kafka:9092" in str(env.get("KAFKA_ADVERTISED_LISTENERS")), "kafka advertises kafka:9092")
voters = str(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
out(voters.startswith(str(env.get("KAFKA_NODE_ID")) + "@kafka:"), f"controller quorum is this node ({voters})")
# Bind mounts: the source exists (relative to docker/); remember targets.
mounts = {}
for name, s in sv.items():
    for v in s.get("volumes", []):
        src, dst = str(v).split(":")[:2]
        if src.startswith("."):
            out(os.path.exists(os.path.join("docker", src)), f"{name} mounts existing {src}")
            mounts[os.path.normpath(os.path.join("docker", src))] = dst
pcfg = [a.split("=", 1)[1] for a in prom.get("command", []) if a.startswith("--config.file=")]
out(pcfg and mounts.get("docker/prometheus.yml") == pcfg[0], f"prometheus --config.file is the mounted prometheus.yml ({pcfg})")
out(mounts.get("docker/grafana/provisioning") == "/etc/grafana/provisioning", "grafana provisioning mounted where grafana reads it")
prov = yaml.safe_load(open("docker/grafana/provisioning/dashboards/kafkagate.yml"))
ppath = prov["providers"][0]["options"]["path"]
out(mounts.get("docker/grafana/dashboards") == ppath, f"dashboard provider path {ppath} is the mounted dashboards dir")
home = graf.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
out(home == os.path.join(ppath, os.path.basename(dash_path)), f"grafana home dashboard {home}")
ds = yaml.safe_load(open("docker/grafana/provisioning/datasources/prometheus.yml"))["datasources"][0]
out(ds["url"] == "http://prometheus:9090", f"datasource url {ds['url']} is the prometheus service")
uids = set()
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("datasource"), dict):
            uids.add(o["datasource"].get("uid"))
        for v in o.values(): walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(json.load(open(dash_path)))
out(uids == {ds["uid"]}, f"dashboard panels use the provisioned datasource uid {sorted(map(str, uids))}")
EOF
)
else
	skip "python3 has no yaml module: compose/grafana structure not checked"
fi

# --- the running gateway: /metrics, /readyz, sd_notify, SIGHUP, SIGTERM --------
check "dashboard JSON parses" python3 -m json.tool "$dash" /dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(free_port)
cat >"$tmp/gw.cfg" <<EOF
listeners = ( { address = "127.0.0.1"; port = 0; } );
workers = 1;
metrics = { address = "127.0.0.1"; port = $mport; };
kafka = { brokers = "embedded"; flush_timeout = 2; dead_letter_topic = "dlq"; };
routes = ( { filter = "a/#"; topic = "a"; format = "raw"; } );
downlink = ( { topic = "cmd"; mqtt_topic = "c/\${key}"; qos = 1; } );
EOF
# The fake service manager: records each datagram as one line ("\n" -> " | ").
python3 - "$tmp/notify" "$tmp/notify.log" <<'EOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(0.5)
end = time.time() + 60
with open(sys.argv[2], "a", buffering=1) as f:
    while time.time() < end:
        try: f.write(s.recv(4096).decode(errors="replace").replace("\n", " | ") + "\n")
        except socket.timeout: pass
EOF
rx_pid=$!
for _ in $(seq 50); do [ -S "$tmp/notify" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$tmp/notify WATCHDOG_USEC=2000000 "$bin" --config "$tmp/gw.cfg" >"$tmp/gw.log" 2>&1 &
gw_pid=$!
# wait_for SECONDS COMMAND...: polls every 0.2 s.
wait_for() { local n=$(($1 * 5)); shift; while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done; return 1; }
notified() { grep -q "^$1" "$tmp/notify.log" 2>/dev/null; }
# kill -0 also succeeds on a zombie: look at the process state.
alive() { [ "$(awk '{ print $3 }' "/proc/$gw_pid/stat" 2>/dev/null)" != Z ] && [ -e "/proc/$gw_pid" ]; }

scrape=
if wait_for 10 curl -fsS -o "$tmp/metrics" "http://127.0.0.1:$mport/metrics" 2>/dev/null; then
	scrape=$tmp/metrics
	ok "gateway serves /metrics on the configured port"
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/readyz")
	same "$code" 200 "/readyz (the HEALTHCHECK) answers"
	# Sample names, and declared families (a family may have no series yet,
	# such as the downlink lag before partitions are assigned).
	names=$(sed -n 's/^\([a-z_][a-z0-9_]*\).*/\1/p
		s/^# TYPE \([a-z0-9_]*\) histogram/\1_bucket\n\1_sum\n\1_count/p
		s/^# TYPE \([a-z0-9_]*\) [a-z]*$/\1/p' "$scrape" | sort -u)
	from="a /metrics scrape"
else
	alive && echo "packaging: note: no /metrics on port $mport (endpoint not wired into main yet?)"
	names=$(grep -ohE '"kafkagate_[a-z0-9_]+"' src/*.c | tr -d '"' | sort -u)
	from="src/*.c (no /metrics endpoint to scrape yet)"
	check "/readyz (the HEALTHCHECK path) is served somewhere in src/ (no endpoint to probe)" \
		grep -qF '"/readyz"' src/*.c
fi
for m in $(grep -oE 'kafkagate_[a-z0-9_]+' "$dash" | sort -u); do
	check "dashboard metric $m exists in $from" grep -qx "$m" <<<"$names"
done

check "READY=1 after start-up (Type=notify)" wait_for 10 notified 'READY=1'
check "WATCHDOG=1 within WATCHDOG_USEC (WatchdogSec)" wait_for 3 notified 'WATCHDOG=1'
kill -HUP "$gw_pid" 2>/dev/null
sleep 1
check "SIGHUP (ExecReload) leaves the gateway running" alive
check "RELOADING=1 on SIGHUP" wait_for 3 notified 'RELOADING=1'
kill -TERM "$gw_pid" 2>/dev/null
(sleep 15; kill -KILL "$gw_pid" 2>/dev/null) &
killer=$!
wait "$gw_pid"
rc=$?
kill "$killer" 2>/dev/null
wait "$killer" 2>/dev/null
gw_pid=
same "$rc" 0 "SIGTERM stops the gateway cleanly within 15 s"
check "STOPPING=1 on SIGTERM" notified 'STOPPING=1'
[ "$failed" -gt 0 ] && { echo "packaging: gateway log (last lines):"; tail -15 "$tmp/gw.log"; }

# --- systemd unit --------------------------------------------------------------
unit_val() { sed -n "s/^$1=//p" "$unit" | tail -1; }
same "$(unit_val Type)" notify "unit Type"
same "$(unit_val NotifyAccess)" main "unit NotifyAccess"
same "$(unit_val ExecReload)" '/bin/kill -HUP $MAINPID' "unit ExecReload sends SIGHUP"
same "$(unit_val DynamicUser)" yes "unit DynamicUser"
same "$(unit_val ProtectSystem)" strict "unit ProtectSystem"
same "$(unit_val NoNewPrivileges)/$(unit_val PrivateTmp)" yes/yes "unit NoNewPrivileges/PrivateTmp"
check "unit CapabilityBoundingSet is empty" grep -qx 'CapabilityBoundingSet=' "$unit"
max_conn=$(sed -n 's/^ *max_connections *= *\([0-9]*\);.*/\1/p' "$pcfg")
check "unit LimitNOFILE $(unit_val LimitNOFILE) > limits.max_connections $max_conn" \
	test "$(unit_val LimitNOFILE)" -gt "${max_conn:-0}"
flush=$(sed -n 's/^ *flush_timeout *= *\([0-9]*\);.*/\1/p' "$pcfg")
check "unit TimeoutStopSec $(unit_val TimeoutStopSec) > kafka.flush_timeout $flush" \
	test "$(unit_val TimeoutStopSec)" -gt "${flush:-999}"
check "unit WatchdogSec is set" test -n "$(unit_val WatchdogSec)"

if command -v systemd-analyze >/dev/null; then
	# verify needs the ExecStart binary: point the unit at the built one.
	sed "s|/usr/local/bin/kafkagate|$bin|g" "$unit" >"$tmp/kafkagate.service"
	out=$(cd "$tmp" && systemd-analyze verify ./kafkagate.service 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify"; else bad "systemd-analyze verify: $out"; fi
	if systemd-analyze security --help 2>&1 | grep -q -- --offline; then
		check "systemd-analyze security: exposure at most 2.0" \
			quiet systemd-analyze security --offline=yes --threshold=20 "$tmp/kafkagate.service"
	else
		skip "systemd-analyze security --offline not supported"
	fi
else
	skip "systemd-analyze not installed: unit not verified"
fi

# --- make install ---------------------------------------------------------------
B=build
case $bin in "$root"/*/kafkagate) B=${bin#"$root"/}; B=${B%/kafkagate} ;; esac
dest=$tmp/root
if make -s install B="$B" DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
	ok "make install DESTDIR"
	start=$(sed -n 's/^ExecStart=//p' "$dest/usr/local/lib/systemd/system/kafkagate.service")
	set -- $start
	check "installed unit in /usr/local/lib/systemd/system runs installed binary $1" test -x "$dest$1"
	same "$2" --config "installed unit passes --config"
	check "installed unit's config $3 is installed" test -f "$dest$3"
	# The installed example needs its certificate, password file and ACL
	# beside it before it starts: give it the test ones.
	cfgdir=$(dirname "$dest$3")
	cp "$secure"/server.crt "$secure"/server.key "$secure"/passwd "$secure"/acl "$cfgdir"/
	out=$("$dest$1" --check --config "$dest$3" 2>&1)
	check "installed config passes --check with its files beside it ($out)" test $? -eq 0
	check "make install puts the ACL example beside the config" test -f "$cfgdir/acl.example"
	echo "# local change" >>"$dest$3"
	make -s install B="$B" DESTDIR="$dest" >>"$tmp/install.log" 2>&1
	check "a second install keeps the existing config" grep -q '^# local change' "$dest$3"
	check "a second install leaves the example beside it" cmp -s "$pcfg" "$dest$3.example"
else
	bad "make install DESTDIR: $(tail -3 "$tmp/install.log")"
fi
dest=$tmp/opt
if make -s install B="$B" DESTDIR="$dest" PREFIX=/opt/kg >>"$tmp/install.log" 2>&1; then
	u=$dest/opt/kg/lib/systemd/system/kafkagate.service
	same "$(sed -n 's/^ExecStart=//p' "$u" 2>/dev/null)" "/opt/kg/bin/kafkagate --config /etc/kafkagate/kafkagate.cfg" \
		"PREFIX=/opt/kg: unit names the binary under PREFIX"
	check "PREFIX=/opt/kg: binary installed" test -x "$dest/opt/kg/bin/kafkagate"
else
	bad "make install PREFIX=/opt/kg: $(tail -3 "$tmp/install.log")"
fi

[ "$skipped" -gt 0 ] && echo "packaging: $skipped skipped"
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
