#!/usr/bin/env bash
# Runs every FuzzXxx target of every package for FUZZTIME each (go test accepts one -fuzz
# target per run). Failing inputs are written to the package's testdata/fuzz/ by go test;
# commit them as regression seeds once fixed.
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
cd "$(dirname "$0")/.."

# `go test -list` prints each package's matching names followed by its "ok <pkg>" line.
if ! list=$("$GO" test -list '^Fuzz' ./... 2>&1); then
	echo "$list" >&2
	echo "fuzz: listing targets failed" >&2
	exit 1
fi

targets=()
pending=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) pending+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for name in "${pending[@]}"; do targets+=("$pkg $name"); done
		pending=()
		;;
	esac
done <<<"$list"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no targets"
	exit 0
fi

# Go's fuzzer sometimes reports the end of -fuzztime itself as a failure ("context deadline
# exceeded") without any failing input — on a loaded 2-core machine, a few times per run of all
# targets. Such a run is tried again, up to twice; a real failure writes its input under
# testdata/fuzz/ and says so, and is never retried.
fuzz_once() {
	local pkg=$1 name=$2 out
	out=$(mktemp)
	if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1 | tee "$out"; then
		rm -f "$out"
		return 0
	fi
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
		rm -f "$out"
		return 2
	fi
	rm -f "$out"
	return 1
}

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "-- $name ($pkg, $FUZZTIME)"
	rc=0
	fuzz_once "$pkg" "$name" || rc=$?
	for retry in 1 2; do
		[ $rc -eq 2 ] || break
		echo "-- $name: the fuzzer's own deadline flake, trying again ($retry of 2)"
		rc=0
		fuzz_once "$pkg" "$name" || rc=$?
	done
	if [ $rc -ne 0 ]; then
		failed+=("$pkg $name")
	fi
done

echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
