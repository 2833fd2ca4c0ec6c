#!/usr/bin/env bash
# Records real traffic for the store benchmark's bytes-per-header figures: two
# network namespaces joined by a veth pair, an iperf3 bulk transfer and a few
# hundred HTTP requests (one connection each), captured with tcpdump on both
# ends (two capture points). Needs root, iperf3, tcpdump, curl, python3.
#   bench/store-capture.sh OUTDIR [offload|no-offload]
# `offload` (default) leaves checksum offload on, as a host's egress sees it
# (TCP checksums not filled in yet); `no-offload` turns it off, so every packet
# carries its real checksum, as on a NIC's ingress. Segmentation offloads are
# turned off either way, so packets are MTU-sized as on a wire.
# Writes OUTDIR/client.pcap and OUTDIR/server.pcap.
set -euo pipefail
out=${1:?usage: store-capture.sh OUTDIR [offload|no-offload]}
mode=${2:-offload}
mkdir -p "$out"
a=ntbench-a
b=ntbench-b

cleanup() {
  for pid in ${pids:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip netns add "$a"
ip netns add "$b"
ip link add ntb0 netns "$a" type veth peer name ntb1 netns "$b"
ip -n "$a" addr add 10.250.0.1/24 dev ntb0
ip -n "$b" addr add 10.250.0.2/24 dev ntb1
for ns in "$a" "$b"; do
  ip -n "$ns" link set lo up
  dev=$([ "$ns" = "$a" ] && echo ntb0 || echo ntb1)
  ip -n "$ns" link set "$dev" up
  ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null
  if [ "$mode" = no-offload ]; then ip netns exec "$ns" ethtool -K "$dev" tx off >/dev/null; fi
done

pids=""
mkdir -p "$out/www"
head -c 20000 /dev/urandom >"$out/www/page.bin"
ip netns exec "$b" iperf3 -s -1 >/dev/null 2>&1 & pids="$pids $!"
(cd "$out/www" && exec ip netns exec "$b" python3 -m http.server 8080 --bind 10.250.0.2 >/dev/null 2>&1) & pids="$pids $!"
ip netns exec "$a" tcpdump -i ntb0 -s 256 -B 65536 --time-stamp-precision=nano -w "$out/client.pcap" >/dev/null 2>&1 & pids="$pids $!"
ip netns exec "$b" tcpdump -i ntb1 -s 256 -B 65536 --time-stamp-precision=nano -w "$out/server.pcap" >/dev/null 2>&1 & pids="$pids $!"
sleep 2

ip netns exec "$a" iperf3 -c 10.250.0.2 -t 3 -b 400M >/dev/null
for _ in $(seq 300); do
  ip netns exec "$a" curl -s -o /dev/null http://10.250.0.2:8080/page.bin
done
sleep 1
