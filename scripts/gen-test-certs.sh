#!/bin/sh
# gen-test-certs.sh DIR - test certificates for the TLS tests (EC P-256,
# valid for ten years from now), made with the openssl command line:
#   ca.crt/.key              test CA
#   server.crt/.key          CN=localhost, SAN DNS:localhost IP:127.0.0.1, serial 0x1001
#   server2.crt/.key         the same names, another key, serial 0x1002 (reload)
#   client.crt/.key          CN=client-cn, SAN DNS:client-san.example, signed by ca
#   other-ca.crt/.key        an unrelated CA
#   other-client.crt/.key    CN=stranger, signed by other-ca (the unknown-CA case)
#   mismatch.key             a key that belongs to no certificate
# Idempotent: does nothing when every file is there; otherwise makes them all
# again. Prints nothing on success; on failure shows openssl's output, exit 1.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
files="ca.crt ca.key server.crt server.key server2.crt server2.key client.crt client.key
	other-ca.crt other-ca.key other-client.crt other-client.key mismatch.key"

missing=
for f in $files; do
	[ -s "$dir/$f" ] || missing=yes
done
[ -z "$missing" ] && exit 0

mkdir -p "$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/kg-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/log

# A config of our own: the system openssl.cnf must not add or change extensions.
cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:client-san.example, email:client@example.com
[stranger]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:stranger.example
EOF

run() {
	"$@" >>"$log" 2>&1 || {
		cat "$log" >&2
		echo "gen-test-certs: failed: $*" >&2
		exit 1
	}
}

key() {
	run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key"
}

# ca NAME CN
ca() {
	key "$1"
	run openssl req -config "$work/openssl.cnf" -new -x509 -key "$work/$1.key" -subj "/CN=$2" \
		-days 3650 -sha256 -set_serial 1 -extensions ca -out "$work/$1.crt"
}

# leaf NAME CN SECTION CA SERIAL
leaf() {
	key "$1"
	run openssl req -config "$work/openssl.cnf" -new -key "$work/$1.key" -subj "/CN=$2" \
		-out "$work/$1.csr"
	run openssl x509 -req -in "$work/$1.csr" -CA "$work/$4.crt" -CAkey "$work/$4.key" \
		-set_serial "$5" -days 3650 -sha256 -extfile "$work/openssl.cnf" -extensions "$3" \
		-out "$work/$1.crt"
}

ca ca "kafkagate test CA"
ca other-ca "unrelated test CA"
leaf server localhost server ca 0x1001
leaf server2 localhost server ca 0x1002
leaf client client-cn client ca 0x2001
leaf other-client stranger stranger other-ca 0x3001
key mismatch

for f in $files; do
	cp "$work/$f" "$dir/$f"
done
