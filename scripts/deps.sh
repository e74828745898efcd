#!/bin/sh
# deps.sh - installs the Debian packages kafkagate needs to build and test,
# only those that are missing. Runs apt-get update at most once, and only when
# something is missing; as root, or through sudo otherwise. Prints what it
# installs; silent and fast when everything is present.
set -eu

PKGS="build-essential pkg-config librdkafka-dev libpaho-mqtt-dev libjansson-dev
libconfig-dev libcmocka-dev libssl-dev mosquitto mosquitto-clients kcat clang
libclang-rt-14-dev libjemalloc-dev curl gnuplot-nox prometheus libmosquitto-dev
openssl python3 python3-yaml chromium"

# One dpkg-query for all packages; those it does not list as installed are missing.
# shellcheck disable=SC2086 # word splitting of the package list is intended
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null |
	awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }' | tr '\n' ' ')
missing=
for p in $PKGS; do
	case " $installed " in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done
# Java 17 and Maven usually come from elsewhere on the machine: check the tools.
command -v java >/dev/null 2>&1 || missing="$missing openjdk-17-jre-headless"
command -v mvn >/dev/null 2>&1 || missing="$missing maven"
# npm fetches MQTT.js for tests/browser/run.sh; nodejs may come from elsewhere too.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# paho-mqtt for tests/integration/ws_paho.py, in the python3 on PATH: from PyPI
# (into a Debian python3 past its "externally managed" guard); without pip,
# Debian's python3-paho-mqtt (1.x, which the script also supports).
if ! python3 -c 'import paho.mqtt.client' >/dev/null 2>&1; then
	if python3 -m pip --version >/dev/null 2>&1; then
		echo "deps.sh: pip installing paho-mqtt==2.2.0"
		python3 -m pip install --quiet --disable-pip-version-check paho-mqtt==2.2.0 ||
			python3 -m pip install --quiet --disable-pip-version-check \
				--break-system-packages paho-mqtt==2.2.0
	else
		missing="$missing python3-paho-mqtt"
	fi
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	as_root=
elif command -v sudo >/dev/null 2>&1; then
	as_root=sudo
else
	echo "deps.sh: missing:$missing; run as root or install sudo" >&2
	exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
echo "deps.sh: installed:$missing"
