#!/usr/bin/env bash
# Sets up (building only what changed), brings up the demo lab — every scenario, under the prefix
# `demo` (NETTRAIL_DEMO_PREFIX), kept when it is already up and working, built again otherwise — and
# serves capture + API + UI at http://127.0.0.1:7070 (arguments go to `nettrail serve`), with the
# OVS scenario's Open vSwitch tracked. Ctrl-C (or SIGTERM) stops serve and removes the demo lab.
set -euo pipefail
cd "$(dirname "$0")/.."
# NETTRAIL_DEMO_SETUP=0 skips the set-up (test/lab/demo.test.ts runs the demo on what is built).
[ "${NETTRAIL_DEMO_SETUP:-1}" = 0 ] || ./scripts/setup.sh
prefix=${NETTRAIL_DEMO_PREFIX:-demo}
nettrail() { node dist/service/cli.js "$@"; }

remove_lab() { nettrail lab down --prefix "$prefix" >/dev/null && echo "demo: lab $prefix removed"; }
trap remove_lab EXIT
nettrail lab up --scenario all --prefix "$prefix"
ovs_rundir=$(node --input-type=module -e "import { labOvsRundir } from './dist/lab/lab.js'; console.log(labOvsRundir(process.argv[1]))" "$prefix")
echo "demo: nettrail lab status --prefix $prefix shows each scenario's tuples; Ctrl-C stops serve and removes the lab"

# Not through the function: $! is then serve itself, not a subshell around it.
node dist/service/cli.js serve --ovs-rundir "$ovs_rundir" "$@" &
serve=$!
# serve writes out what it captured on SIGTERM; the lab goes once it has exited.
stopping=0
trap 'stopping=1; kill -TERM "$serve" 2>/dev/null || true' INT TERM
status=0
wait "$serve" || status=$?
# A trapped signal interrupts wait: wait again, for serve's own exit status.
while [ "$stopping" = 1 ] && [ "$status" -gt 128 ]; do
  status=0
  wait "$serve" || status=$?
done
exit "$status"
