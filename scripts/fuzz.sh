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

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "-- $name ($pkg, $FUZZTIME)"
	if ! "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done

echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
