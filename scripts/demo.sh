#!/usr/bin/env bash
# Sets up, brings up the demo lab and serves capture + API + UI at http://127.0.0.1:7070.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
node dist/service/cli.js lab up
exec node dist/service/cli.js serve "$@"
