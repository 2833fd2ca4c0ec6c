// The JSON of a connection's diagnosis (api/schemas/diagnosis.ts).
import type { Diagnosis, EvidencePacket, Finding } from '../connection/diagnosis.js';
import type { CapturePoint } from '../model/records.js';
import { packetIdJson } from '../model/packet-id.js';
import { tcpFlagNames } from '../model/protocol.js';
import { isoNs } from '../model/time.js';
import { dropJson } from './json.js';
import type { DiagnosisJson, FindingJson } from './schemas/diagnosis.js';

const pointJson = ({ node, netns, iface }: CapturePoint) => ({ node, netns, iface });

const evidencePacketJson = (p: EvidencePacket) => ({
  ...pointJson(p),
  packet_id: packetIdJson(p.packetId),
  ts: isoNs(p.ts),
  way: p.way,
  role: p.role,
  seq: p.seq,
  len: p.len,
  flags: tcpFlagNames(p.flags),
});

export const findingJson = (f: Finding): FindingJson => ({
  kind: f.kind,
  severity: f.severity,
  way: f.way,
  summary: f.summary,
  where: { from: pointJson(f.where.from), to: f.where.to && pointJson(f.where.to), text: f.where.text },
  evidence: {
    packets: f.evidence.packets.map(evidencePacketJson),
    drops: f.evidence.drops.map(dropJson),
    figures: Object.entries(f.evidence.figures).map(([name, value]) => ({ name, value })),
  },
  advice: f.advice,
});

export const diagnosisJson = (connectionId: string | null, d: Diagnosis): DiagnosisJson => ({
  connection_id: connectionId,
  path: d.path.map(pointJson),
  findings: d.findings.map(findingJson),
  timing: {
    handshake: d.timing.handshake.map((h) => ({ point: pointJson(h.point), rtt_ns: Number(h.rttNs) })),
    exchanges: d.timing.exchanges,
    server_ns: Number(d.timing.serverNs),
    network_ns: Number(d.timing.networkNs),
    hops: d.timing.hops.map((h) => ({ from: pointJson(h.from), to: pointJson(h.to), way: h.way, packets: h.packets, median_ns: Number(h.medianNs), max_ns: Number(h.maxNs) })),
  },
  packets: d.packets,
  truncated: d.truncated,
});
