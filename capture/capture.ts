// Packet capture: attach policy (which namespaces and interfaces), following
// them as they come and go, decoding ring-buffer batches, per-point counters.
import type { NetnsRef, PacketRecord } from '../flowlog/records.js';
import { decodePacketBatch, type PointNamer } from './decode.js';
import { DIRECTION, HEADER_BYTES, HOOK, pointKeyLayout } from './layout.js';
import { BpfObject, CaptureError, bpfObjectPath, clockOffsetNs, type AttachHook } from './native.js';
import { listInterfaces, listNamespaces, resolveNamespace, type NetIface } from './netns.js';

export interface CaptureConfig {
  node: string;
  /** Namespace names (`root`, /run/netns names, `pid:PID`); 'all' follows every namespace. */
  netns: string[] | 'all';
  /** Interface names to restrict to; null for all. */
  ifaces: string[] | null;
  onPackets(packets: PacketRecord[]): void;
  /** Problems that do not stop capture elsewhere (one interface failing to attach, a namespace vanishing). */
  onWarning(message: string): void;
  /** How often to look for new namespaces and interfaces (ms). */
  followMs?: number;
  /** Ring buffer bytes (a power of two ≥ page size). */
  ringBytes?: number;
  /** Bytes kept per packet from the link-layer header on; default and maximum HEADER_BYTES (headers only). */
  snaplen?: number;
}

export interface PointStatus {
  node: string;
  netns: string;
  iface: string;
  ifindex: number;
  hooks: AttachHook[];
  packets: number;
  lost: number;
}

export interface CaptureStatus {
  points: PointStatus[];
  packets: number;
  lost: number;
  malformed: number;
  skipped: Array<{ netns: string; iface: string; reason: string }>;
}

interface Attachment {
  netns: NetnsRef;
  iface: NetIface;
  links: number[];
  hooks: AttachHook[];
  packets: number;
}

const TC_HOOKS: Array<[AttachHook, string]> = [
  ['tc-ingress', 'tc_ingress'],
  ['tc-egress', 'tc_egress'],
];
/** Link types whose frames start with an Ethernet header at TC. */
const ETHERNET_LINK_TYPES = new Set(['ether', 'loopback']);

const pointKey = (netnsIno: number, ifindex: number) => `${netnsIno}/${ifindex}`;

export class PacketCapture {
  readonly #config: CaptureConfig;
  readonly #bpf: BpfObject;
  readonly #attachments = new Map<string, Attachment>();
  /** Names of every namespace and interface seen, kept after they vanish for late events. */
  readonly #netnsNames = new Map<number, string>();
  readonly #ifaceNames = new Map<string, string>();
  readonly #skipped = new Map<string, { netns: string; iface: string; reason: string }>();
  #clockOffset = clockOffsetNs();
  #malformed = 0;
  #packets = 0;
  #follow: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> = Promise.resolve();

  readonly #namer: PointNamer;

  private constructor(config: CaptureConfig, bpf: BpfObject) {
    this.#config = config;
    this.#bpf = bpf;
    this.#namer = {
      node: config.node,
      snaplen: config.snaplen ?? HEADER_BYTES,
      netnsName: (ino) => this.#netnsNames.get(ino) ?? `ino:${ino}`,
      ifaceName: (ino, ifindex) => this.#ifaceNames.get(pointKey(ino, ifindex)) ?? `if${ifindex}`,
    };
  }

  static async start(config: CaptureConfig): Promise<PacketCapture> {
    const { snaplen } = config;
    if (snaplen !== undefined && (!Number.isInteger(snaplen) || snaplen < 34 || snaplen > HEADER_BYTES)) {
      throw new CaptureError(
        'INVALID_ARGUMENT',
        `snaplen ${snaplen}: from 34 (Ethernet + IPv4 + ports) to ${HEADER_BYTES} bytes (the L2-L4 headers); payload capture is not available yet`,
      );
    }
    const bpf = BpfObject.load(bpfObjectPath('tc_capture'), config.ringBytes ? { packet_events: config.ringBytes } : {});
    const capture = new PacketCapture(config, bpf);
    bpf.consume('packet_events', (batch) => capture.#onBatch(batch));
    try {
      await capture.refresh();
    } catch (err) {
      await bpf.close();
      throw err;
    }
    capture.#follow = setInterval(() => void capture.refresh(), config.followMs ?? 2000);
    capture.#follow.unref();
    return capture;
  }

  #onBatch(batch: Buffer): void {
    const { packets, malformed } = decodePacketBatch(batch, this.#clockOffset, this.#namer);
    this.#malformed += malformed;
    this.#packets += packets.length;
    for (const packet of packets) {
      const attachment = this.#attachments.get(pointKey(packet.netnsIno, packet.ifindex));
      if (attachment) attachment.packets++;
    }
    if (packets.length > 0) this.#config.onPackets(packets);
  }

  /** Attach to namespaces and interfaces that appeared, forget those that vanished. Serialized. */
  refresh(): Promise<void> {
    this.#refreshing = this.#refreshing.then(() => this.#refresh()).catch((err) => this.#config.onWarning(`refresh: ${(err as Error).message}`));
    return this.#refreshing;
  }

  async #namespacesInScope(): Promise<NetnsRef[]> {
    if (this.#config.netns === 'all') return listNamespaces();
    const found: NetnsRef[] = [];
    for (const name of this.#config.netns) {
      const netns = await resolveNamespace(name);
      if (netns) found.push(netns);
      else this.#config.onWarning(`namespace ${name} not found`);
    }
    return found;
  }

  async #refresh(): Promise<void> {
    this.#clockOffset = clockOffsetNs();
    const seen = new Set<string>();
    for (const netns of await this.#namespacesInScope()) {
      this.#netnsNames.set(netns.ino, netns.name);
      let ifaces: NetIface[];
      try {
        ifaces = await listInterfaces(netns);
      } catch {
        continue; // the namespace vanished while we looked
      }
      for (const iface of ifaces) {
        if (this.#config.ifaces && !this.#config.ifaces.includes(iface.name)) continue;
        const key = pointKey(netns.ino, iface.ifindex);
        seen.add(key);
        this.#ifaceNames.set(key, iface.name);
        if (this.#attachments.has(key) || this.#skipped.has(key)) continue;
        if (!ETHERNET_LINK_TYPES.has(iface.linkType)) {
          this.#skipped.set(key, { netns: netns.name, iface: iface.name, reason: `link type ${iface.linkType} has no Ethernet header` });
          continue;
        }
        this.#attach(netns, iface, key);
      }
    }
    for (const [key, attachment] of this.#attachments) {
      if (seen.has(key)) continue;
      for (const link of attachment.links) this.#bpf.detach(link);
      this.#attachments.delete(key);
    }
  }

  #attach(netns: NetnsRef, iface: NetIface, key: string): void {
    const attachment: Attachment = { netns, iface, links: [], hooks: [], packets: 0 };
    for (const [hook, program] of TC_HOOKS) {
      try {
        attachment.links.push(this.#bpf.attach(program, netns.path, iface.name, hook).link);
        attachment.hooks.push(hook);
      } catch (err) {
        if (err instanceof CaptureError && (err.code === 'NETNS_NOT_FOUND' || err.code === 'IFACE_NOT_FOUND')) return;
        this.#config.onWarning(`attach ${hook} on ${netns.name}/${iface.name}: ${(err as Error).message}`);
      }
    }
    if (attachment.links.length > 0) this.#attachments.set(key, attachment);
  }

  /** Ring-buffer reservations that failed, per point, as counted by the kernel program. */
  #lostByPoint(): Map<string, number> {
    const lost = new Map<string, number>();
    const F = pointKeyLayout.fields;
    for (const { key, value } of this.#bpf.mapEntries('lost_events')) {
      if (key.length < pointKeyLayout.size) continue;
      const point = pointKey(key.readUInt32LE(F.netns_ino.offset), key.readUInt32LE(F.ifindex.offset));
      const hook = key.readUInt8(F.hook.offset);
      const direction = key.readUInt8(F.direction.offset);
      if (hook !== HOOK.tc || (direction !== DIRECTION.ingress && direction !== DIRECTION.egress)) continue;
      lost.set(point, (lost.get(point) ?? 0) + Number(value.readBigUInt64LE(0)));
    }
    return lost;
  }

  /** The namespaces with at least one attached interface. */
  namespaces(): NetnsRef[] {
    const unique = new Map<number, NetnsRef>();
    for (const { netns } of this.#attachments.values()) unique.set(netns.ino, netns);
    return [...unique.values()];
  }

  status(): CaptureStatus {
    const lost = this.#lostByPoint();
    const points: PointStatus[] = [];
    for (const [key, a] of this.#attachments) {
      points.push({
        node: this.#config.node,
        netns: a.netns.name,
        iface: a.iface.name,
        ifindex: a.iface.ifindex,
        hooks: [...a.hooks],
        packets: a.packets,
        lost: lost.get(key) ?? 0,
      });
    }
    return {
      points,
      packets: this.#packets,
      lost: [...lost.values()].reduce((sum, n) => sum + n, 0),
      malformed: this.#malformed,
      skipped: [...this.#skipped.values()],
    };
  }

  /** Detach everything after delivering every packet already captured. */
  async stop(): Promise<void> {
    clearInterval(this.#follow);
    await this.#refreshing;
    await this.#bpf.close();
  }
}
