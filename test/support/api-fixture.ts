// Flow-log contents for the API tests: realistic flows (a deterministic PRNG
// picks addresses, states, traits, times and sizes), some written in two
// versions as a live flow is; and a reference search over them.
import { BlockList } from 'node:net';
import type { FlowRecord } from '../../model/records.js';
import type { FlowOrder } from '../../flowlog/flow-search.js';
import { prng } from '../../bench/support/prng.js';
import type { FlowLogWriter } from '../../flowlog/writer.js';

export const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)];
const int = (random: () => number, min: number, max: number) => min + Math.floor(random() * (max - min + 1));

/** 2026-11-19T00:00:00Z: flows start over the three days after it (three daily partitions). */
export const T0 = 1_795_046_400_000_000_000n;
export const SECOND = 1_000_000_000n;

const SERVERS = [
  { proto: 'tcp', ip: '10.0.0.10', port: 80 },
  { proto: 'tcp', ip: '10.0.0.10', port: 443 },
  { proto: 'tcp', ip: '192.168.7.20', port: 5432 },
  { proto: 'udp', ip: '10.0.0.53', port: 53 },
  { proto: 'tcp', ip: '2001:db8:0:1::443', port: 443 },
  { proto: 'udp', ip: 'fd00:53::53', port: 53 },
] as const;

const POINTS = [
  { node: 'node-a', netns: 'root', iface: 'eth0' },
  { node: 'node-a', netns: 'ns-client', iface: 'veth-c0' },
  { node: 'node-b', netns: 'ns-router', iface: 'veth-r1' },
  { node: 'node-b', netns: 'root', iface: 'ens3' },
];

function clientIp(random: () => number, v6: boolean): string {
  if (v6) return pick(random, [`fd00:1::${int(random, 1, 0xfff).toString(16)}`, `2001:db8:0:2::${int(random, 1, 0xfff).toString(16)}`]);
  return pick(random, [`10.1.${int(random, 0, 255)}.${int(random, 1, 254)}`, `10.2.${int(random, 0, 3)}.${int(random, 1, 254)}`, `192.168.1.${int(random, 1, 254)}`]);
}

const hex16 = (random: () => number) =>
  Array.from({ length: 2 }, () => Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0')).join('');

/** One flow in its final state, as flow assembly would write it. */
function finalFlow(random: () => number, start: bigint): FlowRecord {
  const server = pick(random, SERVERS);
  const v6 = server.ip.includes(':');
  const tcp = server.proto === 'tcp';
  const close = tcp ? pick(random, ['fin', 'fin', 'fin', 'rst', 'timeout', 'open'] as const) : pick(random, ['timeout', 'open'] as const);
  const connState = !tcp
    ? pick(random, ['SF', 'S0'])
    : close === 'fin' ? 'SF' : close === 'rst' ? pick(random, ['REJ', 'RSTO', 'RSTR']) : close === 'open' ? 'S1' : pick(random, ['S0', 'SF', 'OTH']);
  const packets = { c2s: int(random, 1, 5000), s2c: connState === 'S0' || connState === 'REJ' ? int(random, 0, 1) : int(random, 1, 8000) };
  const retrans = random() < 0.12 ? { c2s: int(random, 0, 40), s2c: int(random, 1, 40) } : { c2s: 0, s2c: 0 };
  const id = hex16(random);
  return {
    id,
    connectionId: id,
    proto: server.proto,
    client: { ip: clientIp(random, v6), port: int(random, 32768, 60999) },
    server: { ip: server.ip, port: server.port },
    ...pick(random, POINTS),
    start,
    end: start + BigInt(int(random, 0, 120_000)) * 1_000_000n + BigInt(int(random, 0, 999_999)),
    packets,
    bytes: { c2s: packets.c2s * int(random, 40, 1500), s2c: packets.s2c * int(random, 40, 1500) },
    connState,
    history: tcp ? pick(random, ['ShADadFf', 'ShADadfF', 'Sr', 'ShADadR', 'S', 'ShAD']) : pick(random, ['Dd', 'D']),
    rttNs: tcp && connState !== 'S0' ? BigInt(int(random, 20_000, 80_000_000)) : null,
    retrans: tcp ? retrans : { c2s: 0, s2c: 0 },
    zeroWindow: tcp && random() < 0.04 ? { c2s: 0, s2c: int(random, 1, 12) } : { c2s: 0, s2c: 0 },
    outOfOrder: { c2s: 0, s2c: 0 },
    close,
    synSeq: tcp ? Math.floor(random() * 2 ** 32) : null,
    synAckSeq: tcp && connState !== 'S0' ? Math.floor(random() * 2 ** 32) : null,
  };
}

/** The same flow earlier in its life: as the writer stores it while the flow is open. */
const earlierState = (flow: FlowRecord): FlowRecord => ({
  ...flow,
  end: flow.start + (flow.end - flow.start) / 2n,
  packets: { c2s: 1, s2c: 0 },
  bytes: { c2s: 60, s2c: 0 },
  connState: flow.proto === 'tcp' ? 'S1' : 'S0',
  history: flow.proto === 'tcp' ? 'Sh' : 'D',
  retrans: { c2s: 0, s2c: 0 },
  zeroWindow: { c2s: 0, s2c: 0 },
  outOfOrder: { c2s: 0, s2c: 0 },
  close: 'open',
});

/**
 * `count` flows over three days. Some start at the same nanosecond (ties in
 * the start order); a third are written first in an earlier, open state.
 */
export function makeFlows(seed: number, count: number): { earlier: FlowRecord[]; final: FlowRecord[] } {
  const random = prng(seed);
  const final: FlowRecord[] = [];
  for (let i = 0; i < count; i++) {
    const start = i > 0 && random() < 0.05 ? final[i - 1].start : T0 + BigInt(Math.floor(random() * 3 * 86_400_000)) * 1_000_000n + BigInt(int(random, 0, 999_999));
    final.push(finalFlow(random, start));
  }
  const earlier = final.filter(() => random() < 0.33).map(earlierState);
  return { earlier, final };
}

/** Writes the earlier states, then the final ones, in separate inserts (so the store holds both versions). */
export async function writeFlows(writer: FlowLogWriter, flows: { earlier: FlowRecord[]; final: FlowRecord[] }): Promise<void> {
  writer.addFlows(flows.earlier);
  await writer.flush();
  writer.addFlows(flows.final);
  await writer.flush();
}

// ---- reference search, independent of the store and of the API's address parsing

export interface ReferenceQuery {
  ip?: string;
  src?: string;
  dst?: string;
  port?: number;
  sport?: number;
  dport?: number;
  proto?: string;
  from?: bigint;
  to?: bigint;
  state?: string[];
  has?: string[];
  node?: string;
  netns?: string;
  iface?: string;
  loopback?: 'include' | 'exclude' | 'only';
}

/** Address or CIDR membership through node's BlockList. */
function inRange(spec: string, ip: string): boolean {
  const list = new BlockList();
  const [network, prefix] = spec.split('/');
  const type = network.includes(':') ? 'ipv6' : 'ipv4';
  if ((ip.includes(':') ? 'ipv6' : 'ipv4') !== type) return false;
  if (prefix === undefined) list.addAddress(network, type);
  else list.addSubnet(network, Number(prefix), type);
  return list.check(ip, type);
}

/** Whether `f` matches `q`; `dropped` names the flows with a drop. */
export function referenceMatch(f: FlowRecord, q: ReferenceQuery, dropped: ReadonlySet<string> = new Set()): boolean {
  if (q.ip !== undefined && !inRange(q.ip, f.client.ip) && !inRange(q.ip, f.server.ip)) return false;
  if (q.src !== undefined && !inRange(q.src, f.client.ip)) return false;
  if (q.dst !== undefined && !inRange(q.dst, f.server.ip)) return false;
  if (q.port !== undefined && f.client.port !== q.port && f.server.port !== q.port) return false;
  if (q.sport !== undefined && f.client.port !== q.sport) return false;
  if (q.dport !== undefined && f.server.port !== q.dport) return false;
  if (q.proto !== undefined && f.proto !== q.proto) return false;
  if (q.from !== undefined && f.end < q.from) return false;
  if (q.to !== undefined && f.start > q.to) return false;
  if (q.state !== undefined && !q.state.includes(f.connState)) return false;
  for (const trait of q.has ?? []) {
    if (trait === 'retrans' && f.retrans.c2s + f.retrans.s2c === 0) return false;
    if (trait === 'zero_window' && f.zeroWindow.c2s + f.zeroWindow.s2c === 0) return false;
    if (trait === 'rst' && f.close !== 'rst') return false;
    if (trait === 'drop' && !dropped.has(f.id)) return false;
  }
  if (q.node !== undefined && f.node !== q.node) return false;
  if (q.netns !== undefined && f.netns !== q.netns) return false;
  if (q.iface !== undefined && f.iface !== q.iface) return false;
  if (q.loopback === 'exclude' && isLoopbackFlow(f)) return false;
  if (q.loopback === 'only' && !isLoopbackFlow(f)) return false;
  return true;
}

/** On the loopback interface, or with a loopback address on either side. */
export const isLoopbackFlow = (f: FlowRecord): boolean =>
  f.iface === 'lo' || [f.client.ip, f.server.ip].some((ip) => inRange('127.0.0.0/8', ip) || inRange('::1', ip));

const ORDER_VALUE: Record<string, (f: FlowRecord) => bigint> = {
  start: (f) => f.start,
  end: (f) => f.end,
  duration: (f) => f.end - f.start,
  bytes: (f) => BigInt(f.bytes.c2s + f.bytes.s2c),
  packets: (f) => BigInt(f.packets.c2s + f.packets.s2c),
};

/** Flows in `order`, ties by id (byte order; ids are ASCII). */
export function referenceSort(flows: FlowRecord[], order: FlowOrder): FlowRecord[] {
  const descending = order.startsWith('-');
  const value = ORDER_VALUE[descending ? order.slice(1) : order];
  const sign = descending ? -1 : 1;
  return [...flows].sort((a, b) => {
    const [x, y] = [value(a), value(b)];
    if (x !== y) return x < y ? -sign : sign;
    return a.id === b.id ? 0 : a.id < b.id ? -sign : sign;
  });
}

// ---- connections: flows of one connection at several capture points, across a NAT hop

export type GeneratedHop = 'SNAT' | 'DNAT' | 'FULLNAT';

export interface GeneratedConnection {
  id: string;
  /** Its flows in path order (final state). */
  flows: FlowRecord[];
  /** The NAT hop between its second and third point, if it has one. */
  hop: GeneratedHop | null;
}

/** A connection's path: the client's interface, a router's two, the server's. */
const PATH = [
  { node: 'node-a', netns: 'ns-client', iface: 'eth0' },
  { node: 'node-a', netns: 'ns-router', iface: 'in0' },
  { node: 'node-a', netns: 'ns-router', iface: 'out0' },
  { node: 'node-b', netns: 'ns-server', iface: 'eth0' },
];

/** nettrail's own API traffic and the host's DNS: flows on lo between loopback addresses. */
const LOOPBACK_SERVERS = [
  { proto: 'tcp', ip: '127.0.0.1', port: 7070 },
  { proto: 'udp', ip: '127.0.0.53', port: 53 },
  { proto: 'tcp', ip: '::1', port: 7070 },
] as const;

/**
 * `count` connections over three days: most along PATH (1, 2 or 4 points; a
 * SNAT, DNAT or FULLNAT hop between the router's interfaces on most of those
 * with 4), a sixth on lo. Retransmissions, zero windows and resets are on one
 * point only (so a filter on them matches the connection through that flow).
 * Some connections start at the same nanosecond as the one before; for a
 * third, each flow is written first in an earlier, open state, the later
 * points not yet joined (connection_id their own id).
 */
export function makeConnections(seed: number, count: number): { connections: GeneratedConnection[]; earlier: FlowRecord[]; final: FlowRecord[] } {
  const random = prng(seed);
  const connections: GeneratedConnection[] = [];
  const earlier: FlowRecord[] = [];
  for (let i = 0; i < count; i++) {
    const start = i > 0 && random() < 0.05 ? connections[i - 1].flows[0].start : T0 + BigInt(Math.floor(random() * 3 * 86_400_000)) * 1_000_000n + BigInt(int(random, 0, 999_999));
    const base = finalFlow(random, start);
    const loopback = random() < 1 / 6;
    let points: Array<{ node: string; netns: string; iface: string }>;
    let hop: GeneratedHop | null = null;
    if (loopback) {
      const server = pick(random, LOOPBACK_SERVERS);
      Object.assign(base, { proto: server.proto, server: { ip: server.ip, port: server.port }, client: { ip: server.ip === '::1' ? '::1' : '127.0.0.1', port: base.client.port } });
      points = [{ node: 'node-a', netns: 'root', iface: 'lo' }];
    } else {
      points = PATH.slice(0, pick(random, [1, 2, 4, 4, 4]));
      if (points.length === 4) hop = pick(random, [null, 'SNAT', 'DNAT', 'FULLNAT'] as const);
    }
    const marked = int(random, 0, points.length - 1);
    const flows = points.map((point, p): FlowRecord => {
      const translated = hop !== null && p >= 2;
      const v6 = base.server.ip.includes(':');
      const id = hex16(random);
      return {
        ...base,
        ...point,
        id,
        connectionId: id,
        client: translated && hop !== 'DNAT' ? { ip: v6 ? 'fd00:99::1' : '10.99.0.1', port: 20000 + (i % 40000) } : base.client,
        server: translated && hop !== 'SNAT' ? { ip: v6 ? 'fd00:98::2' : '10.98.0.2', port: 8000 + (i % 1000) } : base.server,
        start: base.start + BigInt(p) * 20_000n,
        end: base.end + BigInt(p) * 20_000n,
        retrans: p === marked ? base.retrans : { c2s: 0, s2c: 0 },
        zeroWindow: p === marked ? base.zeroWindow : { c2s: 0, s2c: 0 },
        close: p === marked || base.close !== 'rst' ? base.close : 'fin',
      };
    });
    for (const flow of flows) flow.connectionId = flows[0].id;
    if (random() < 0.33) earlier.push(...flows.map((flow) => ({ ...earlierState(flow), connectionId: flow.id })));
    connections.push({ id: flows[0].id, flows, hop });
  }
  return { connections, earlier, final: connections.flatMap((c) => c.flows) };
}
