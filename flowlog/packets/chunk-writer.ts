// The writer's side of packet chunks (chunk-format.ts). The addon's encoder (native/chunk-encoder.ts)
// stages each packet as it is taken in, groups packets into chunks and packs them into their rows;
// this side names the capture points, as they are named when a chunk's first packet is taken in.

import type { PacketColumns } from '../../model/packet-columns.js';
import { PacketChunkEncoder } from '../../native/chunk-encoder.js';
import type { RowBinaryWriter } from '../rowbinary.js';

/**
 * Packets taken in for one insert, grouped into chunks as they come; encode() writes the chunks' rows.
 * The columns come checked (by the native decoder, or by record-columns.ts), so neither taking them in
 * nor encoding can fail.
 */
export class PacketChunkBuilder {
  readonly #encoder = new PacketChunkEncoder();
  /** Capture nodes, by the number the encoder knows each by. */
  readonly #nodes: string[] = [];
  readonly #nodeNumbers = new Map<string, number>();
  /** The names of each chunk's namespace and interface. */
  #netns: string[] = [];
  #iface: string[] = [];

  /** Bytes the staged packets take. */
  get stagedByteLength(): number {
    return this.#encoder.stagedBytes;
  }

  /** Takes in packets [0, count) of `columns`. */
  add(columns: PacketColumns, count: number): void {
    if (count === 0) return;
    let node = this.#nodeNumbers.get(columns.node);
    if (node === undefined) {
      node = this.#nodes.push(columns.node) - 1;
      this.#nodeNumbers.set(columns.node, node);
    }
    if (this.#encoder.add(columns, count, node) === this.#netns.length) return;
    const points = this.#encoder.points(this.#netns.length);
    for (let k = 0; k < points.length; k += 2) {
      this.#netns.push(columns.names.netnsName(points[k]));
      this.#iface.push(columns.names.ifaceName(points[k], points[k + 1]));
    }
  }

  /** Writes a row per chunk and starts over empty. */
  encode(out: RowBinaryWriter): void {
    this.#encoder.encode(this.#nodes, this.#netns, this.#iface, out);
    this.#netns = [];
    this.#iface = [];
  }
}
