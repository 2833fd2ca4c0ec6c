// ClickHouse's RowBinary format, written into one growing buffer: the insert
// format of every flow-log table (embedded and server alike). Values are
// little-endian; strings and arrays carry a LEB128 length first.

/** Uninitialized memory of `n` bytes, as a plain Uint8Array (element access on Buffers is slower). */
function allocate(n: number): Uint8Array {
  const buffer = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, n);
}

export class RowBinaryWriter {
  private bytes: Uint8Array;
  private view: DataView;
  private at = 0;

  /** `initial`: bytes to start with (it grows as needed), or a buffer to write into, whose contents are no longer needed. */
  constructor(initial: number | Uint8Array = 1 << 16) {
    this.bytes = typeof initial === 'number' ? allocate(initial) : initial;
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.at;
  }

  /** The bytes written so far (a view: valid until the next write or truncate). */
  contents(): Buffer {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.at);
  }

  /** Forgets everything after the first `length` bytes. */
  truncate(length: number): void {
    this.at = length;
  }

  /**
   * Reserves `n` bytes and returns where they start, for writing them through
   * `raw` and `dataView` (taken after this call: growing replaces both).
   */
  reserve(n: number): number {
    const at = this.at;
    if (at + n > this.bytes.length) {
      const grown = allocate(Math.max(this.bytes.length * 2, at + n));
      grown.set(this.bytes.subarray(0, at));
      this.bytes = grown;
      this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
    }
    this.at = at + n;
    return at;
  }

  u8(value: number): void {
    const at = this.reserve(1);
    this.bytes[at] = value;
  }

  u16(value: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, value, true);
  }

  u32(value: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, value, true);
  }

  u64(value: bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, value, true);
  }

  i64(value: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, value, true);
  }

  /** The LEB128 length prefix of strings and arrays. */
  varUInt(count: number): void {
    const at = this.reserve(varUIntSize(count));
    putVarUInt(this.bytes, at, count);
  }

  /** Raw bytes without a length (FixedString, IPv6). */
  fixed(value: Uint8Array): void {
    const at = this.reserve(value.length);
    putBytes(this.bytes, at, value);
  }

  /** A String column's value: length, then the bytes. */
  string(value: Uint8Array): void {
    this.varUInt(value.length);
    this.fixed(value);
  }

  /** The buffer written into (replaced when it grows: take it after the last reserve). */
  get raw(): Uint8Array {
    return this.bytes;
  }

  /** A DataView of `raw`. */
  get dataView(): DataView {
    return this.view;
  }
}

/** Bytes the LEB128 encoding of `count` takes. */
export function varUIntSize(count: number): number {
  let size = 1;
  for (let n = count; n >= 0x80; n = Math.floor(n / 0x80)) size++;
  return size;
}

/** Writes `count` in LEB128 at `at`; returns where the next value starts. */
export function putVarUInt(bytes: Uint8Array, at: number, count: number): number {
  let n = count;
  while (n >= 0x80) {
    bytes[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  bytes[at] = n;
  return at + 1;
}

/** Copies `value` to `at`; returns where the next value starts. */
export function putBytes(bytes: Uint8Array, at: number, value: Uint8Array): number {
  bytes.set(value, at);
  return at + value.length;
}
