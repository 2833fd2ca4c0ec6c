// Typed wrapper over the addon's packet chunk encoder (native/chunk_encoder.h): the columns' packets
// grouped into chunks and encoded as rows of the flow log's packet_chunks table in C++, so that no
// per-packet work of the write path runs in JavaScript. flowlog/packets/chunk-writer.ts names the
// capture points.
import type { PacketColumns } from '../model/packet-columns.js';
import { CaptureError, loadNative } from './addon.js';

interface NativeChunkEncoder {
  add(batch: Uint8Array, count: number, node: number, linkType: number): number;
  points(from: number): Uint32Array;
  stagedBytes(): number;
  encode(nodes: readonly string[], netns: readonly string[], iface: readonly string[]): number;
  copyEncoded(target: Uint8Array, at: number): void;
}

const U16 = 0xffff;
const isIndex = (n: number, below: number) => Number.isInteger(n) && n >= 0 && n < below;

export class PacketChunkEncoder {
  readonly #native = new (loadNative<{ PacketChunkEncoder: new () => NativeChunkEncoder }>().PacketChunkEncoder)();
  /** Chunks made since the last encode(), in the order encode() writes them. */
  #chunks = 0;

  /** Bytes the staged packets take. */
  get stagedBytes(): number {
    return this.#native.stagedBytes();
  }

  /** Takes in packets [0, count) of `columns`, of the node the caller numbers `node`; returns the chunks made since the last encode(). */
  add(columns: PacketColumns, count: number, node: number): number {
    if (!isIndex(count, columns.count + 1)) throw new CaptureError('INVALID_ARGUMENT', `count ${count}: not 0..${columns.count}`);
    if (!isIndex(node, 2 ** 32)) throw new CaptureError('INVALID_ARGUMENT', `node ${node}: not a 32-bit number`);
    if (!isIndex(columns.linkType, U16 + 1)) throw new CaptureError('INVALID_ARGUMENT', `link type ${columns.linkType}: not a 16-bit number`);
    return (this.#chunks = this.#native.add(columns.batch, count, node, columns.linkType));
  }

  /** Namespace inode and ifindex of each chunk from the `from`th on: two numbers per chunk. */
  points(from: number): Uint32Array {
    return this.#native.points(from);
  }

  /**
   * Writes a row per chunk at `out.reserve()`: chunk k's namespace and interface named netns[k] and iface[k],
   * its node nodes[its node number]; then starts over empty.
   */
  encode(nodes: readonly string[], netns: readonly string[], iface: readonly string[], out: { reserve(n: number): number; readonly raw: Uint8Array }): void {
    if (netns.length !== this.#chunks || iface.length !== this.#chunks) {
      throw new CaptureError('INVALID_ARGUMENT', `${netns.length} namespace and ${iface.length} interface names for ${this.#chunks} chunks`);
    }
    const length = this.#native.encode(nodes, netns, iface);
    this.#chunks = 0;
    const at = out.reserve(length);
    this.#native.copyEncoded(out.raw, at);
  }
}
