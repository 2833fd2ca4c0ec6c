// The in-kernel capture filter: `--filter net=CIDR,... port=N,... proto=tcp|udp`,
// parsed and checked here, written to the BPF maps (filter_config, filter_v4,
// filter_v6, filter_ports) at run time. Kinds combine with AND, values of one kind with OR.
import { parseAddress } from '../../model/address.js';
import { CaptureError } from '../../native/addon.js';
import { FILTER_PROTO, filterLayout, lpmV4Layout, lpmV6Layout } from './layout.js';
import type { BpfObject } from '../../native/addon.js';

export interface CaptureFilter {
  /** Source or destination address in one of these (CIDR text, IPv4 or IPv6). */
  nets: string[];
  /** Source or destination port one of these. */
  ports: number[];
  /** Empty for any. */
  protos: Array<'tcp' | 'udp'>;
}

export const CAPTURE_EVERYTHING: CaptureFilter = { nets: [], ports: [], protos: [] };

const invalid = (message: string) => new CaptureError('INVALID_ARGUMENT', message);

/** `10.0.0.0/8`, `fd00::/64`, or a plain address (/32, /128). */
export function parseCidr(text: string): { family: 4 | 6; addr: Uint8Array; prefixLen: number } {
  const [address, length, extra] = text.split('/');
  const addr = extra === undefined ? parseAddress(address) : null;
  if (addr === null) throw invalid(`"${text}" is not an address or CIDR`);
  const family = addr.length === 4 ? 4 : 6;
  const bits = addr.length * 8;
  const prefixLen = length === undefined ? bits : /^\d{1,3}$/.test(length) ? Number(length) : NaN;
  if (!(prefixLen >= 0 && prefixLen <= bits)) throw invalid(`"${text}": prefix length must be 0-${bits}`);
  return { family, addr, prefixLen };
}

/** Parse `--filter` arguments: each `KIND=V[,V...]` with KIND net, port or proto. */
export function parseFilter(specs: string[]): CaptureFilter {
  const filter: CaptureFilter = { nets: [], ports: [], protos: [] };
  for (const spec of specs) {
    const match = /^(net|port|proto)=(.+)$/.exec(spec);
    if (!match) throw invalid(`--filter ${spec}: expected net=CIDR, port=N or proto=tcp|udp (values comma-separated)`);
    for (const value of match[2].split(',')) {
      if (match[1] === 'net') {
        parseCidr(value);
        filter.nets.push(value);
      } else if (match[1] === 'port') {
        const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
        if (!(port >= 0 && port <= 65535)) throw invalid(`--filter port=${value}: not a port number (0-65535)`);
        filter.ports.push(port);
      } else {
        if (value !== 'tcp' && value !== 'udp') throw invalid(`--filter proto=${value}: tcp or udp`);
        filter.protos.push(value);
      }
    }
  }
  return filter;
}

/**
 * Make the kernel programs of `bpf` capture what `filter` selects instead of
 * `previous`. Entries are written before the switch that turns them on, and
 * removed after it.
 */
export function writeFilter(bpf: BpfObject, filter: CaptureFilter, previous: CaptureFilter): void {
  const config = Buffer.alloc(filterLayout.size);
  config.writeUInt8(filter.nets.length > 0 ? 1 : 0, filterLayout.fields.match_addr.offset);
  config.writeUInt8(filter.ports.length > 0 ? 1 : 0, filterLayout.fields.match_port.offset);
  config.writeUInt8(filter.protos.reduce((bits, p) => bits | FILTER_PROTO[p], 0), filterLayout.fields.protos.offset);

  const netEntry = (text: string) => {
    const net = parseCidr(text);
    const layout = net.family === 4 ? lpmV4Layout : lpmV6Layout;
    const key = Buffer.alloc(layout.size);
    key.writeUInt32LE(net.prefixLen, layout.fields.prefixlen.offset);
    key.set(net.addr, layout.fields.addr.offset);
    return { map: net.family === 4 ? 'filter_v4' : 'filter_v6', key };
  };
  const portKey = (port: number) => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(port);
    return key;
  };

  for (const { map, key } of filter.nets.map(netEntry)) bpf.mapUpdate(map, key, Buffer.of(1));
  for (const port of filter.ports) bpf.mapUpdate('filter_ports', portKey(port), Buffer.of(1));
  bpf.mapUpdate('filter_config', Buffer.alloc(4), config);
  const keptNets = new Set(filter.nets.map((text) => netEntry(text).key.toString('hex')));
  for (const { map, key } of previous.nets.map(netEntry)) if (!keptNets.has(key.toString('hex'))) bpf.mapDelete(map, key);
  for (const port of previous.ports) if (!filter.ports.includes(port)) bpf.mapUpdate('filter_ports', portKey(port), Buffer.of(0));
}
