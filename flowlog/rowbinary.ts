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

  /** `capacity`: bytes to start with (it grows as needed). */
  constructor(capacity = 1 << 16) {
    this.bytes = allocate(capacity);
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

  private room(n: number): number {
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

  // Each write reserves its room first: growing replaces `bytes` and `view`.

  u8(value: number): void {
    const at = this.room(1);
    this.bytes[at] = value;
  }

  u16(value: number): void {
    const at = this.room(2);
    this.view.setUint16(at, value, true);
  }

  u32(value: number): void {
    const at = this.room(4);
    this.view.setUint32(at, value, true);
  }

  u64(value: bigint): void {
    const at = this.room(8);
    this.view.setBigUint64(at, value, true);
  }

  i64(value: bigint): void {
    const at = this.room(8);
    this.view.setBigInt64(at, value, true);
  }

  /** The LEB128 length prefix of strings and arrays. */
  varUInt(count: number): void {
    let n = count;
    while (n >= 0x80) {
      this.u8((n & 0x7f) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.u8(n);
  }

  /** Raw bytes without a length (FixedString, IPv6). */
  fixed(value: Uint8Array): void {
    const at = this.room(value.length);
    this.bytes.set(value, at);
  }

  /** A String column's value: length, then the bytes. */
  string(value: Uint8Array): void {
    this.varUInt(value.length);
    this.fixed(value);
  }

  /** Writes a String value and returns where its bytes start in `raw`, for changing them in place. */
  stringAt(value: Uint8Array): number {
    this.varUInt(value.length);
    const at = this.room(value.length);
    this.bytes.set(value, at);
    return at;
  }

  /** The buffer written into (replaced when it grows: take it after the last write). */
  get raw(): Uint8Array {
    return this.bytes;
  }
}
