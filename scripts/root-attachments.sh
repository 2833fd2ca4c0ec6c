#!/usr/bin/env bash
# Prints the BPF programs attached in the root network namespace — XDP, tc and
# flow dissector, as `bpftool net show -j` lists them — one per line; prints
# nothing when none is. (Plain `bpftool net show` prints the headings `xdp:`,
# `tc:` and `flow_dissector:` even when they are empty.)
set -euo pipefail
bpftool net show -j | node -e '
  let text = "";
  process.stdin.on("data", (d) => (text += d)).on("end", () => {
    for (const section of JSON.parse(text)) {
      for (const [kind, attached] of Object.entries(section)) for (const a of attached) console.log(kind, JSON.stringify(a));
    }
  });'
