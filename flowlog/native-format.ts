// ClickHouse's Native format, read: the format bulk reads come back in
// (embedded and server alike). A result is a sequence of blocks; a block is
// `columns rows` (LEB128), then per column its name, its type and its values,
// column after column: fixed-width values as one little-endian array, String
// as LEB128 length + bytes per row, Array(T) as cumulative UInt64 end offsets
// then the elements (a Tuple's elements one column after the other).
//
// Fixed-width columns are copied into aligned typed arrays: on little-endian
// hosts (x86_64, arm64: every host chDB runs on) they are the values.

import { FlowLogError } from './errors.js';

/** A fixed-width column: its values. 16-byte values (IPv6) as 16 bytes each. */
export interface FixedColumn {
  kind: 'fixed';
  type: string;
  values: Uint8Array | Int8Array | Uint16Array | Uint32Array | BigInt64Array | BigUint64Array;
}

/** A String column: row i's bytes are bytes[starts[i], ends[i]). */
export interface StringColumn {
  kind: 'string';
  type: string;
  bytes: Buffer;
  /** Where row i's bytes start and end in `bytes`. */
  starts: Uint32Array;
  ends: Uint32Array;
}

/** An Array(T) or Array(Tuple(...)) column: row i's elements are [offsets[i - 1] (0 for i = 0), offsets[i]) of each element column. */
export interface ArrayColumn {
  kind: 'array';
  type: string;
  offsets: Float64Array;
  /** One column for Array(T); one per tuple element for Array(Tuple(...)). */
  elements: NativeColumn[];
}

export type NativeColumn = FixedColumn | StringColumn | ArrayColumn;

export interface NativeBlock {
  rows: number;
  columns: NativeColumn[];
  names: string[];
}

/** Thrown inside the parser when a block runs past the bytes received so far. */
class Incomplete extends Error {}
const INCOMPLETE = new Incomplete();

/** Bytes per value of the fixed-width types read here. */
function fixedWidth(type: string): number | null {
  if (/^(UInt8|Int8|Bool|Enum8\(.*\))$/.test(type)) return 1;
  if (/^(UInt16|Int16|Enum16\(.*\))$/.test(type)) return 2;
  if (/^(UInt32|Int32|IPv4)$/.test(type)) return 4;
  if (/^(UInt64|Int64|DateTime64\(.*\))$/.test(type)) return 8;
  if (type === 'IPv6') return 16;
  return null;
}

class Cursor {
  at = 0;

  constructor(readonly bytes: Buffer) {}

  need(n: number): void {
    if (this.at + n > this.bytes.length) throw INCOMPLETE;
  }

  varUInt(): number {
    let value = 0;
    for (let shift = 0; shift < 63; shift += 7) {
      this.need(1);
      const byte = this.bytes[this.at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new FlowLogError('STORE_FORMAT', 'Native block: a length prefix runs over 9 bytes');
  }

  string(): string {
    const length = this.varUInt();
    this.need(length);
    const text = this.bytes.toString('utf8', this.at, this.at + length);
    this.at += length;
    return text;
  }

  /** `count` fixed-width values of `width` bytes, copied to an aligned buffer. */
  fixed(count: number, width: number): ArrayBuffer {
    const length = count * width;
    this.need(length);
    const copy = new ArrayBuffer(length);
    new Uint8Array(copy).set(this.bytes.subarray(this.at, this.at + length));
    this.at += length;
    return copy;
  }
}

function typedValues(type: string, width: number, data: ArrayBuffer): FixedColumn['values'] {
  switch (width) {
    case 1:
      return type === 'Int8' || type.startsWith('Enum8') ? new Int8Array(data) : new Uint8Array(data);
    case 2:
      return new Uint16Array(data);
    case 4:
      return new Uint32Array(data);
    case 8:
      return type === 'UInt64' ? new BigUint64Array(data) : new BigInt64Array(data);
    default:
      return new Uint8Array(data);
  }
}

/** The element types of `Tuple(A, B, ...)` (no nested parentheses inside an element), or null if `type` is not one. */
function tupleElements(type: string): string[] | null {
  const match = /^Tuple\(([^()]*)\)$/.exec(type);
  return match ? match[1].split(',').map((t) => t.trim()) : null;
}

function readColumn(c: Cursor, type: string, rows: number): NativeColumn {
  const width = fixedWidth(type);
  if (width !== null) return { kind: 'fixed', type, values: typedValues(type, width, c.fixed(rows, width)) };
  if (type === 'String') {
    const starts = new Uint32Array(rows);
    const ends = new Uint32Array(rows);
    const bytes = c.bytes;
    let at = c.at;
    for (let i = 0; i < rows; i++) {
      // Lengths below 128 take one byte: most values here.
      let length = at < bytes.length ? bytes[at] : 0x80;
      if (length < 0x80) {
        at++;
      } else {
        c.at = at;
        length = c.varUInt();
        at = c.at;
      }
      starts[i] = at;
      at += length;
      if (at > bytes.length) throw INCOMPLETE;
      ends[i] = at;
    }
    c.at = at;
    return { kind: 'string', type, bytes, starts, ends };
  }
  const array = /^Array\((.*)\)$/.exec(type);
  if (array) {
    const offsets = new Float64Array(rows);
    const raw = new BigUint64Array(c.fixed(rows, 8));
    for (let i = 0; i < rows; i++) offsets[i] = Number(raw[i]);
    const count = rows === 0 ? 0 : offsets[rows - 1];
    const elementTypes = tupleElements(array[1]) ?? [array[1]];
    return { kind: 'array', type, offsets, elements: elementTypes.map((t) => readColumn(c, t, count)) };
  }
  throw new FlowLogError('STORE_FORMAT', `Native block: column type ${type} is not read by nettrail`);
}

/** The block at the cursor; throws INCOMPLETE when the bytes end inside it. */
function readBlock(c: Cursor): NativeBlock {
  const columnCount = c.varUInt();
  const rows = c.varUInt();
  const names: string[] = [];
  const columns: NativeColumn[] = [];
  for (let i = 0; i < columnCount; i++) {
    names.push(c.string());
    columns.push(readColumn(c, c.string(), rows));
  }
  return { rows, columns, names };
}

/**
 * Native blocks of a result arriving in chunks of any size. A block is parsed
 * once it has arrived whole; a parse that runs out of bytes is retried only
 * after the bytes buffered have doubled (or the result ended), so the work
 * stays linear.
 */
export async function* nativeBlocks(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<NativeBlock> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let retryAt = 0;
  /** Blocks whole in what has arrived; keeps the rest pending. */
  function* parse(): Generator<NativeBlock> {
    const bytes = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
    const c = new Cursor(bytes);
    let consumed = 0;
    try {
      while (c.at < bytes.length) {
        const block = readBlock(c);
        consumed = c.at;
        yield block;
      }
    } catch (err) {
      if (err !== INCOMPLETE) throw err;
    }
    const rest = bytes.subarray(consumed);
    pending = rest.length > 0 ? [rest] : [];
    pendingBytes = rest.length;
    retryAt = 2 * rest.length;
  }
  for await (const chunk of chunks) {
    pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    pendingBytes += chunk.byteLength;
    if (pendingBytes >= retryAt) yield* parse();
  }
  if (pendingBytes > 0) yield* parse();
  if (pendingBytes > 0) throw new FlowLogError('STORE_FORMAT', `Native result ends inside a block (${pendingBytes} bytes left over)`);
}

/** The column named `name` of the given kind and type; throws STORE_FORMAT otherwise. */
export function column<K extends NativeColumn['kind']>(
  block: NativeBlock, name: string, kind: K, type?: string,
): Extract<NativeColumn, { kind: K }> {
  const index = block.names.indexOf(name);
  const found = block.columns[index];
  if (found === undefined || found.kind !== kind || (type !== undefined && found.type !== type)) {
    throw new FlowLogError('STORE_FORMAT', `Native block: expected column ${name} (${type ?? kind}), got ${found ? found.type : 'none'}`);
  }
  return found as Extract<NativeColumn, { kind: K }>;
}
