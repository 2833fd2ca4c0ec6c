#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec node --test --test-concurrency=1 --test-reporter=spec dist/test/*.test.js
