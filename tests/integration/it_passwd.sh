#!/bin/sh
# it_passwd.sh - "kafkagate passwd" files against a real mosquitto, and
# mosquitto_passwd files against "kafkagate passwd --verify".
#
# Builds nothing: KG_BIN (default build/kafkagate) must exist; needs
# mosquitto, mosquitto_pub and mosquitto_passwd. Starts one mosquitto on a
# free 127.0.0.1 port with allow_anonymous false and our password file,
# reloads it with SIGHUP after each edit, and kills it (by PID) on exit.
# Last line: "it_passwd: N passed, N failed"; exit 1 on any failure, 2 when
# something it needs is missing.
set -u

KG_BIN=${KG_BIN:-build/kafkagate}
passed=0
failed=0
mosq_pid=
dir=$(mktemp -d /tmp/it_passwd.XXXXXX) || exit 2

cleanup() {
	if [ -n "$mosq_pid" ]; then
		kill "$mosq_pid" 2>/dev/null
		wait "$mosq_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

for tool in "$KG_BIN" mosquitto mosquitto_pub mosquitto_passwd; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$tool" ]; then
		echo "it_passwd: $tool not found"
		echo "it_passwd: 0 passed, 1 failed"
		exit 2
	fi
done

# expect NAME WANTED-STATUS COMMAND...: runs the command, compares its exit
# status ("nonzero" accepts any failure).
expect() {
	name=$1 want=$2
	shift 2
	"$@" >"$dir/out" 2>&1
	got=$?
	if [ "$got" = "$want" ] || { [ "$want" = nonzero ] && [ "$got" -ne 0 ]; }; then
		echo "it_passwd: $name: PASS"
		passed=$((passed + 1))
	else
		echo "it_passwd: $name: FAIL (exit $got, want $want)"
		sed 's/^/    /' "$dir/out"
		failed=$((failed + 1))
	fi
}

# kg_set FILE USER PASSWORD [OPTIONS...]
kg_set() {
	f=$1 u=$2 p=$3
	shift 3
	printf '%s\n' "$p" | "$KG_BIN" passwd "$@" --stdin "$f" "$u"
}

# kg_verify FILE USER PASSWORD
kg_verify() {
	printf '%s\n' "$3" | "$KG_BIN" passwd --verify "$1" "$2"
}

# pub USER PASSWORD: one QoS 1 publish; 0 when the broker let us in.
pub() {
	timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port" -i "it-passwd-$$" \
		-u "$1" -P "$2" -t it/passwd -m hello -q 1
}

# has_mode MODE FILE: 0 when FILE's permission bits are MODE (octal).
has_mode() {
	[ "$(stat -c %a "$2")" = "$1" ]
}

start_mosquitto() {
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
		cat >"$dir/mosquitto.conf" <<-EOF
			listener $port 127.0.0.1
			allow_anonymous false
			password_file $pwfile
			persistence false
			log_dest stderr
			user $(id -un)
		EOF
		mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
		mosq_pid=$!
		for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			kill -0 "$mosq_pid" 2>/dev/null || break
			# It logs "... running" once the listener is open.
			grep -q ' running$' "$dir/mosquitto.log" 2>/dev/null && return 0
			sleep 0.1
		done
		kill "$mosq_pid" 2>/dev/null
		wait "$mosq_pid" 2>/dev/null
		mosq_pid=
	done
	echo "it_passwd: mosquitto did not start:"
	sed 's/^/    /' "$dir/mosquitto.log"
	return 1
}

reload_mosquitto() {
	kill -HUP "$mosq_pid"
	sleep 0.5
}

# ---- files written by kafkagate, read by mosquitto -------------------
pwfile=$dir/passwd
expect "create with the default iterations" 0 kg_set "$pwfile" alice 'right pass:1' -c
expect "add a user with --iterations 1000" 0 kg_set "$pwfile" bob 'b0b$pw' --iterations 1000
expect "new file is mode 600" 0 has_mode 600 "$pwfile"
expect "alice hashed with 210000 rounds" 0 grep -q '^alice:\$7\$210000\$' "$pwfile"

if start_mosquitto; then
	expect "mosquitto accepts alice's password" 0 pub alice 'right pass:1'
	expect "mosquitto accepts bob's password" 0 pub bob 'b0b$pw'
	expect "mosquitto refuses a wrong password" nonzero pub alice 'right pass:2'
	expect "mosquitto refuses an unknown user" nonzero pub mallory 'right pass:1'

	chmod 640 "$pwfile"
	expect "change alice's password" 0 kg_set "$pwfile" alice 'new one' --iterations 2000
	expect "an edit keeps mode 640" 0 has_mode 640 "$pwfile"
	expect "delete bob" 0 "$KG_BIN" passwd -D "$pwfile" bob
	expect "mosquitto_passwd adds carol to our file" 0 \
		mosquitto_passwd -b "$pwfile" carol 'from mosquitto'
	reload_mosquitto
	expect "after reload: alice's new password" 0 pub alice 'new one'
	expect "after reload: alice's old password refused" nonzero pub alice 'right pass:1'
	expect "after reload: bob refused" nonzero pub bob 'b0b$pw'
	expect "after reload: carol accepted" 0 pub carol 'from mosquitto'
else
	failed=$((failed + 1))
fi

# ---- files written by mosquitto_passwd, read by kafkagate ------------
mfile=$dir/mosquitto.passwd
mosquitto_passwd -c -b "$mfile" dave 'pbkdf2 pw' >/dev/null 2>&1
mosquitto_passwd -H sha512 -b "$mfile" erin 'sha512 pw' >/dev/null 2>&1
expect "verify a mosquitto \$7\$ password" 0 kg_verify "$mfile" dave 'pbkdf2 pw'
expect "verify a mosquitto \$6\$ password" 0 kg_verify "$mfile" erin 'sha512 pw'
expect "verify: wrong password is 1" 1 kg_verify "$mfile" dave 'pbkdf2 PW'
expect "verify: unknown user is 2" 2 kg_verify "$mfile" frank 'pbkdf2 pw'
expect "verify: missing file is 3" 3 kg_verify "$dir/none" dave x
expect "add to a mosquitto file" 0 kg_set "$mfile" frank 'f pw' --iterations 1000
expect "dave survives the edit" 0 kg_verify "$mfile" dave 'pbkdf2 pw'
expect "frank verifies" 0 kg_verify "$mfile" frank 'f pw'
expect "editing without -c needs the file" 1 kg_set "$dir/none" x y
expect "a bad user name is a usage error" 2 kg_set "$mfile" 'a:b' y
expect "no tty and no --stdin is a usage error" 2 \
	sh -c "'$KG_BIN' passwd '$mfile' zed </dev/null"

echo "it_passwd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
