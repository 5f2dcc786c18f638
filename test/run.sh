#!/usr/bin/env bash
# `npm test`: type check, format check, then every test file one at a time — except test/versions.test.ts, which
# runs beside them (its time goes mostly to child test runners and servers of its own, on other Redis lines): the
# suite's wall time is then that of the others, about three minutes less. Its output follows theirs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tsc --noEmit -p tsconfig.json || exit 1
prettier --check --log-level warn "**/*.ts" || exit 1
side=test/versions.test.ts
files=$(find core agent sink restorer api cli test -name '*.test.ts' | sort | grep -vx "$side")
out=$(mktemp)
node --import tsx --test --test-concurrency=1 "$side" >"$out" 2>&1 &
beside=$!
# shellcheck disable=SC2086 # one file name per word (none has a space)
node --import tsx --test --test-concurrency=1 $files
main=$?
wait "$beside"
versions=$?
echo "# $side (ran beside the others), exit $versions:"
cat "$out"
rm -f "$out"
exit $((main != 0 || versions != 0))
