#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite as root. Tests attach
# BPF programs only inside namespaces they create: afterwards the root
# namespace must hold the same attachments as before (none on a clean machine),
# or the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
before=$(./scripts/root-attachments.sh)
status=0
node --test --test-concurrency=1 --test-reporter=spec dist/test/*/*.test.js || status=$?
after=$(./scripts/root-attachments.sh)
if [ "$after" != "$before" ]; then
  echo "root namespace: BPF attachments changed by the tests (bpftool net show -j), before:"
  echo "${before:-(none)}"
  echo "after:"
  echo "$after"
  status=1
elif [ -z "$after" ]; then
  echo "root namespace after the tests: no XDP, tc or flow-dissector program attached (bpftool net show -j)"
else
  echo "root namespace after the tests: the same attachments as before the tests, none added"
fi
exit "$status"
