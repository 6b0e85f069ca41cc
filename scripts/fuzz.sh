#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 5s) each.
# `go test -fuzz` takes one target per run, so enumerate them.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
while IFS= read -r f; do
	dir=$(dirname "$f")
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*testing\.F).*/\1/p' "$f"); do
		echo "fuzz: ./$dir $name ($t)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "./$dir" >"$log" 2>&1 || { cat "$log"; exit 1; }
		n=$((n + 1))
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $n targets ran clean"
