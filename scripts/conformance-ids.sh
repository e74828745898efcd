#!/bin/sh
# conformance-ids.sh - MQTT statement ids in the tests, and a check of the
# citations in docs/conformance.md.
#
#   scripts/conformance-ids.sh            every [MQTT-x.y.z-n] id named in
#                                         tests/integration, tests/unit and
#                                         the vector names, with where
#   scripts/conformance-ids.sh --check    every test docs/conformance.md cites
#                                         exists; prints the summary counts
#
# Run from the repository root. VECTORS overrides the vector directory
# (default ../shared/conformance/mqtt-vectors), DOC the document.
# Citation forms understood by --check (see docs/conformance.md):
#   it_connect.c: test_second_connect_closes   a test function in tests/integration
#   it_connect.c: malformed_publish-qos3       a bad_cases entry of it_connect.c
#   test_codec.c: test_utf8                    a test function in tests/unit
#   test_codec.c: test_cases "will qos 3"      a row of test_codec.c's cases table
#   vectors: PUBLISH.json "GROUP/NAME"         a vector (NAME may be a prefix)
# Exit code: 0 fine, 1 a citation does not resolve, 2 bad usage.
set -u

VECTORS=${VECTORS:-../shared/conformance/mqtt-vectors}
DOC=${DOC:-docs/conformance.md}
IDRE='MQTT-[0-9][0-9.-]*[0-9]'

# "FILE.json/GROUP/NAME" for every vector; the data has one group key and
# one test per line, so the last group line seen owns the names below it.
vector_names() {
	for f in "$VECTORS"/*.json; do
		awk -v file="$(basename "$f")" '
			match($0, /"group": *"[^"]*"/) {
				g = substr($0, RSTART, RLENGTH); sub(/^"group": *"/, "", g); sub(/"$/, "", g)
			}
			match($0, /"name": *"[^"]*"/) {
				n = substr($0, RSTART, RLENGTH); sub(/^"name": *"/, "", n); sub(/"$/, "", n)
				print file "/" g "/" n
			}' "$f"
	done
}

list_ids() {
	{
		grep -o "$IDRE" tests/integration/*.c tests/unit/*.c 2>/dev/null |
			sed 's|^tests/[a-z]*/||'
		vector_names | grep -v '^[^/]*/v5\.0' | sed -n "s|^\([A-Za-z-]*\.json\)/.*\[\($IDRE\)\].*|\1:\2|p"
	} | awk -F: '{ where[$2] = where[$2] (where[$2] == "" ? "" : " ") $1 }
		     END { for (id in where) print id, where[id] }' |
		awk '{ n = split($0, w, " "); line = w[1]; delete seen
		       for (i = 2; i <= n; i++) if (!(w[i] in seen)) { seen[w[i]] = 1; line = line " " w[i] }
		       print line }' |
		sort -t- -k2,2V -k3,3n
}

check_doc() {
	[ -r "$DOC" ] || { echo "cannot read $DOC" >&2; exit 2; }
	tmp=$(mktemp) || exit 2
	trap 'rm -f "$tmp"' EXIT
	vector_names >"$tmp"
	bad=0
	cited=0

	# Test functions and malformed_ cases.
	for c in $(grep -o '\(it\|test\)_[a-z0-9_]*\.c: [A-Za-z0-9_-]*' "$DOC" | tr ' ' '#' | sort -u); do
		file=${c%%.c:#*}.c
		name=${c#*:#}
		case $file in
		it_*) path=tests/integration/$file ;;
		*) path=tests/unit/$file ;;
		esac
		cited=$((cited + 1))
		case $name in
		malformed_*)
			awk '/bad_cases\[\] = \{/, /^\};/' "$path" 2>/dev/null |
				grep -qF "{ \"${name#malformed_}\"," && continue ;;
		*)
			grep -q "^static void $name(" "$path" 2>/dev/null &&
				grep -q "(${name}[,)]" "$path" && continue ;;
		esac
		echo "missing: $file: $name"
		bad=1
	done

	# Rows of test_codec.c's cases table.
	grep -o 'test_cases "[^"]*"' "$DOC" | sed 's/^test_cases "//; s/"$//' | sort -u >"$tmp.cases"
	while IFS= read -r what; do
		cited=$((cited + 1))
		grep -qF "\"$what\" }" tests/unit/test_codec.c || {
			echo "missing: test_codec.c: test_cases \"$what\""
			bad=1
		}
	done <"$tmp.cases"
	rm -f "$tmp.cases"

	# Vectors: FILE.json "GROUP/NAME", NAME possibly a prefix of the full name.
	grep -o 'vectors: [A-Za-z-]*\.json "[^"]*"' "$DOC" | sed 's/^vectors: //' | sort -u >"$tmp.vec"
	while IFS= read -r v; do
		file=${v%% *}
		want=${v#* \"}
		want=${want%\"}
		cited=$((cited + 1))
		grep -qF -- "$file/$want" "$tmp" || {
			echo "missing: vectors: $file \"$want\""
			bad=1
		}
	done <"$tmp.vec"
	rm -f "$tmp.vec"

	# Summary: rows are "| [MQTT-..." lines; the third cell says the status.
	awk -F'|' '/^\| \[MQTT-/ {
			n++; c = $4
			if (c ~ /^ *\*\*not tested\*\*/) nt++
			else if (c ~ /^ *n\/a/) na++
			else { cov++; if ($5 ~ /^ *Partly/) part++ }
		}
		END { printf "statements: %d; covered by a test: %d (%d of them partly); not tested: %d; not applicable: %d\n",
			     n, cov, part, nt, na }' "$DOC"
	echo "citations checked: $cited"
	return $bad
}

case ${1:-} in
"") list_ids ;;
--check) check_doc ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
