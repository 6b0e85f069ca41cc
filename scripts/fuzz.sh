#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 5s) each.
# `go test -fuzz` takes one target per run, so enumerate them.
#
# Go 1.26's fuzz coordinator can end a clean run with a bare "context deadline
# exceeded" at the -fuzztime boundary (golang/go#75804, fixed in Go 1.27). A
# real failure always writes its input to testdata/fuzz/<target>/, so a run
# that fails with exactly that message and writes no new input is that race,
# and is reported as such; every other failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0 raced=0
corpus() { ls "$1" 2>/dev/null | sort || true; }
while IFS= read -r f; do
	dir=$(dirname "$f")
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*testing\.F).*/\1/p' "$f"); do
		echo "fuzz: ./$dir $name ($t)"
		before=$(corpus "$dir/testdata/fuzz/$name")
		if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "./$dir" >"$log" 2>&1; then
			after=$(corpus "$dir/testdata/fuzz/$name")
			if [ "$before" = "$after" ] && grep -qx -- "--- FAIL: $name ([0-9.]*s)" "$log" &&
				[ "$(grep -A1 -x -- "--- FAIL: $name ([0-9.]*s)" "$log" | tail -n1 | tr -d '[:space:]')" = "contextdeadlineexceeded" ]; then
				echo "fuzz: $name: ended by Go's fuzz coordinator deadline race (golang/go#75804); no failing input was written"
				raced=$((raced + 1))
			else
				cat "$log"
				exit 1
			fi
		fi
		n=$((n + 1))
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $n targets ran clean ($raced ended by the coordinator race)"
