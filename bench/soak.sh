#!/usr/bin/env bash
# The soaks of docs/faults.md, one after the other (as root, after the build; ~3.5 minutes).
# Each sets up its own namespaces (and, for the load soak, a tmpfs), stops by itself within
# 2 minutes and removes what it created. Arguments go to the load soak (--seconds N, 5..35).
set -euo pipefail
cd "$(dirname "$0")/.."
node dist/bench/soak-load.js "$@"
node dist/bench/soak-churn.js --seconds 90
