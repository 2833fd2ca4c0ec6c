#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (root, Linux with BTF):
# system packages, npm dependencies, BPF objects, the native addon, TypeScript and the UI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 iptables conntrack tcpdump tshark
  ethtool openvswitch-switch chromium iperf3 make g++ python3 util-linux procps
  clickhouse-server) # ClickHouse 18.16: the old server test/flowlog-old-server.test.ts starts on its own
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Only the test runs clickhouse-server (in a temp dir, on a free loopback port): not as a system service.
  if [[ " ${missing[*]} " == *" clickhouse-server "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
  fi
fi

if [ ! -r /sys/kernel/btf/vmlinux ]; then
  echo "setup: this kernel has no BTF (/sys/kernel/btf/vmlinux); nettrail needs CONFIG_DEBUG_INFO_BTF=y" >&2
  exit 1
fi

# `npm install`, not `npm ci`: npm 11 leaves chdb's optional per-platform packages for
# other platforms out of the lock file and `npm ci` then refuses it; install follows the lock.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi

# What is built is rebuilt only when a source is newer than it (make decides for the BPF objects).
# vmlinux.h is generated from this kernel's BTF by bpf/Makefile.
make -s -C bpf
addon=native/build/Release/nettrail_native.node
if [ ! -f "$addon" ] || [ -n "$(find native bpf -maxdepth 1 \( -name '*.cc' -o -name '*.h' -o -name binding.gyp \) -newer "$addon")" ]; then
  (cd native && npx node-gyp rebuild --loglevel=error >/dev/null)
fi
# newer_than STAMP PATH...: the first file under the paths newer than STAMP (every one when STAMP is missing).
newer_than() {
  local stamp=$1
  shift
  if [ ! -f "$stamp" ]; then echo "$stamp"; return; fi
  find "$@" \( -name node_modules -o -name dist \) -prune -o -type f -newer "$stamp" -print -quit
}
ts_sources=(model native capture flows nat-tracker flowlog connection pcap api service lab test bench tsconfig.json tsconfig.test.json package-lock.json)
ts_stamp=dist/.built
if [ -n "$(newer_than "$ts_stamp" "${ts_sources[@]}")" ]; then
  rm -rf dist  # compiled files of moved or deleted sources must not linger
  npx tsc -p tsconfig.json
  npx tsc -p tsconfig.test.json
  touch "$ts_stamp"
fi
ui_stamp=ui/dist/index.html
if [ -n "$(newer_than "$ui_stamp" ui api/schemas "$ts_stamp")" ]; then
  node dist/api/ui-types/write.js  # the UI's API types, from the schemas (api/ui-types/ui-types.ts)
  npx vite build --config ui/vite.config.ts --logLevel warn
fi
echo "setup: done"
