#!/bin/sh
# tests/browser/run.sh - MQTT.js in headless Chromium against the gateway's
# WebSocket listener: the dashboard use case.
#
# Starts $KG_BIN (default build/kafkagate) with a plain MQTT and a WebSocket
# listener on 127.0.0.1 (ports picked by the gateway, read from its log),
# serves tests/browser/index.html and MQTT.js's browser bundle with
# tests/browser/serve.py, and opens the page in headless Chromium. The page
# subscribes to dash/#, makes a QoS 1 round trip to itself and announces
# itself on page/ready; then a device publishes a reading over plain MQTT
# (mosquitto_pub), which the page must show. The page POSTs its final DOM,
# which is checked here. Everything binds 127.0.0.1; the whole run is bounded
# (BROWSER_TIMEOUT seconds, default 60) and stops what it started by PID.
#
# MQTT.js comes from npm (mqtt@$MQTTJS_VERSION) into .cache/browser/ the
# first time. Needs chromium, python3, mosquitto_pub/_sub, npm (scripts/deps.sh).
# Run from anywhere: make packaging, or tests/browser/run.sh. KG_KEEP=1 keeps
# the work directory (config, logs, the DOM). Last line:
# "browser: N passed, N failed"; exit 1 if any check failed.
set -u

cd "$(dirname "$0")/../.." || exit 2
here=tests/browser
bin=${KG_BIN:-build/kafkagate}
limit=${BROWSER_TIMEOUT:-60}
MQTTJS_VERSION=5.16.0
cache=.cache/browser
bundle=$cache/node_modules/mqtt/dist/mqtt.min.js

passed=0
failed=0
gw_pid=
srv_pid=
chrome_pid=
sub_pid=
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/kg-browser.XXXXXX")

ok() {
	echo "browser: ok: $1"
	passed=$((passed + 1))
}
bad() {
	echo "browser: FAIL: $1"
	failed=$((failed + 1))
}
left() {
	echo $((limit - ($(date +%s) - start)))
}
# stop PID: SIGTERM, 5 s, SIGKILL; reaps it. Chromium runs as the leader of
# its own process group (setsid), so its helpers go with it.
stop() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null
	[ "${2:-}" = group ] && kill -TERM -- "-$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	# The helpers left in the group die now (init reaps them).
	[ "${2:-}" = group ] && kill -KILL -- "-$1" 2>/dev/null
	return 0
}
finish() {
	stop "$sub_pid"
	stop "$chrome_pid" group
	stop "$srv_pid"
	stop "$gw_pid"
	if [ "${KG_KEEP:-}" = 1 ]; then
		echo "browser: kept $work"
	else
		rm -rf "$work"
	fi
	echo "browser: $passed passed, $failed failed"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
	exit $?
}
trap finish EXIT
trap 'exit 1' INT TERM HUP
# A check that cannot run is a failure, not a skip: deps.sh installs all this.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	bad "$1 is not installed (make deps)"
	exit 1
}

chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { bad "chromium is not installed (make deps)"; exit 1; }
need python3
need mosquitto_pub
need mosquitto_sub
[ -x "$bin" ] || { bad "no gateway binary at $bin (make)"; exit 1; }

# ---- MQTT.js, once -------------------------------------------------------------
if [ ! -s "$bundle" ]; then
	need npm
	echo "browser: fetching mqtt@$MQTTJS_VERSION with npm into $cache"
	mkdir -p "$cache"
	timeout 120 npm install --prefix "$cache" --no-audit --no-fund --no-save --ignore-scripts \
		--loglevel=error "mqtt@$MQTTJS_VERSION" >"$work/npm.log" 2>&1 || {
		cat "$work/npm.log"
		bad "npm install mqtt@$MQTTJS_VERSION failed"
		exit 1
	}
fi
[ -s "$bundle" ] || { bad "no $bundle after npm install"; exit 1; }

# ---- the gateway ---------------------------------------------------------------------
cat >"$work/gw.cfg" <<'EOF'
listeners = (
  { address = "127.0.0.1"; port = 0; },
  { address = "127.0.0.1"; port = 0; protocol = "websocket"; path = "/mqtt"; }
);
log = { level = "debug"; };
EOF
"$bin" --config "$work/gw.cfg" >"$work/gw.log" 2>&1 &
gw_pid=$!
i=0
while ! grep -q "kafkagate started" "$work/gw.log" 2>/dev/null; do
	if ! kill -0 "$gw_pid" 2>/dev/null || [ $i -ge 100 ]; then
		tail -20 "$work/gw.log"
		bad "the gateway did not start"
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done
ports=$(grep -v "metrics listening" "$work/gw.log" | sed -n 's/.* listening address=[^ ]* port=\([0-9]*\).*/\1/p')
mqtt_port=$(echo "$ports" | sed -n 1p)
ws_port=$(echo "$ports" | sed -n 2p)
[ -n "$mqtt_port" ] && [ -n "$ws_port" ] || { bad "no listener ports in the log"; exit 1; }
echo "browser: gateway pid $gw_pid, mqtt port $mqtt_port, ws port $ws_port"

# ---- the page server ---------------------------------------------------------------
mkdir "$work/www"
cp "$here/index.html" "$bundle" "$work/www/"
python3 "$here/serve.py" "$work/www" "$work/dom.html" >"$work/serve.port" 2>"$work/serve.log" &
srv_pid=$!
i=0
while [ ! -s "$work/serve.port" ]; do
	if ! kill -0 "$srv_pid" 2>/dev/null || [ $i -ge 100 ]; then
		cat "$work/serve.log"
		bad "the page server did not start"
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done
http_port=$(head -1 "$work/serve.port")
url="http://127.0.0.1:$http_port/index.html?port=$ws_port"

# ---- the page, and a device --------------------------------------------------------
# Listen for the page's announcement before the page exists.
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -i kg-browser-runner -t page/ready -C 1 \
	-W "$(left)" >"$work/ready.txt" 2>"$work/sub.log" &
sub_pid=$!
sleep 0.3
echo "browser: opening $url"
setsid "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--disable-dev-shm-usage --user-data-dir="$work/profile" "$url" \
	>"$work/chromium.log" 2>&1 &
chrome_pid=$!

wait "$sub_pid"
sub_pid=
if [ "$(cat "$work/ready.txt")" = ready ]; then
	ok "the page connected over ws://, subscribed and announced itself (MQTT.js, Chromium)"
	mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -i kg-device-d1 -q 1 \
		-t dash/device/d1/temp -m 21.5 || bad "mosquitto_pub failed"
else
	bad "no page/ready from the page within ${limit} s"
fi

while [ ! -s "$work/dom.html" ] && [ "$(left)" -gt 0 ]; do
	sleep 0.2
done
if [ ! -s "$work/dom.html" ]; then
	bad "the page reported no DOM within ${limit} s"
	tail -5 "$work/chromium.log"
	exit 1
fi
dom=$work/dom.html

# ---- the DOM --------------------------------------------------------------------------
if grep -q "<title>PASS</title>" "$dom"; then
	ok "document.title is PASS"
else
	bad "document.title: $(sed -n 's/.*<title>\(.*\)<\/title>.*/\1/p' "$dom")"
fi
if grep -q "^self: hello-from-page$" "$dom"; then
	ok "QoS 1 round trip from the page to itself"
else
	bad "the page did not get its own message back"
fi
if grep -q '<td class="device">d1</td><td class="temp">21.5</td>' "$dom"; then
	ok "a device's plain MQTT publish shows in the page's table"
else
	bad "the device reading is not in the page's table"
fi
# The page closed its connection before it reported: the gateway logs that
# close with the listener's name.
i=0
while ! grep -q "conn close client=\"kg-browser-[0-9a-f]*\" .* listener=ws:$ws_port " "$work/gw.log" &&
	[ $i -lt 30 ]; do
	sleep 0.1
	i=$((i + 1))
done
if grep -q "conn close client=\"kg-browser-[0-9a-f]*\" .* listener=ws:$ws_port " "$work/gw.log"; then
	ok "the gateway served the browser on its ws:$ws_port listener"
else
	bad "the gateway logged no WebSocket connection from the browser"
fi
if [ "$failed" -gt 0 ]; then
	echo "browser: --- the page's log ---"
	sed -n '/<pre id="log">/,/<\/pre>/p' "$dom"
fi
