// A streaming zip writer (PKWARE APPNOTE 6.3): each entry's bytes are deflated as they come and
// its CRC-32 and sizes follow it in a data descriptor, so an archive of capture files is written
// with bounded memory, one file after the other. No ZIP64: an entry or the archive past 4 GiB,
// or more than 65 535 entries, is an error. Self-contained.
import { once } from 'node:events';
import { createDeflateRaw, crc32 } from 'node:zlib';

export interface ZipEntry {
  /** The path in the archive, '/'-separated. */
  name: string;
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

const LOCAL_HEADER = 0x04034b50;
const DATA_DESCRIPTOR = 0x08074b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
/** Flags: sizes and CRC in a data descriptor (bit 3), UTF-8 names (bit 11). */
const FLAGS = 0x0808;
const DEFLATE = 8;
/** Version 2.0 needed (deflate, data descriptor); made by Unix (3), version 2.0. */
const VERSION_NEEDED = 20;
const VERSION_MADE_BY = (3 << 8) | 20;
/** A regular file, rw-r--r--, as Unix keeps it in the external attributes' high half. */
const FILE_MODE = 0o100644;
const LIMIT = 0xffffffff;

interface Written {
  name: Buffer;
  crc: number;
  compressed: number;
  size: number;
  offset: number;
}

/** The zip archive of `entries`, in chunks; every entry is dated `time`. */
export async function* writeZip(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>, time = new Date()): AsyncGenerator<Buffer, void, undefined> {
  const [dosTime, dosDate] = dosDateTime(time);
  const written: Written[] = [];
  let offset = 0;
  const emit = (chunk: Buffer): Buffer => {
    offset += chunk.length;
    if (offset > LIMIT) throw new Error('zip archive past 4 GiB: not written (no ZIP64)');
    return chunk;
  };
  for await (const entry of entries) {
    if (written.length === 0xffff) throw new Error('zip archive of more than 65 535 entries: not written (no ZIP64)');
    const name = Buffer.from(entry.name, 'utf8');
    const start = offset;
    const header = Buffer.alloc(30);
    header.writeUInt32LE(LOCAL_HEADER, 0);
    header.writeUInt16LE(VERSION_NEEDED, 4);
    header.writeUInt16LE(FLAGS, 6);
    header.writeUInt16LE(DEFLATE, 8);
    header.writeUInt16LE(dosTime, 10);
    header.writeUInt16LE(dosDate, 12);
    // CRC-32 and sizes (14..25) are 0 here: the data descriptor gives them.
    header.writeUInt16LE(name.length, 26);
    yield emit(Buffer.concat([header, name]));

    const deflate = createDeflateRaw();
    const out: Buffer[] = [];
    deflate.on('data', (chunk: Buffer) => out.push(chunk));
    let crc = 0;
    let size = 0;
    let compressed = 0;
    const take = function* () {
      for (const chunk of out.splice(0)) {
        compressed += chunk.length;
        yield emit(chunk);
      }
    };
    for await (const chunk of entry.data) {
      crc = crc32(chunk, crc);
      size += chunk.length;
      if (size > LIMIT) throw new Error(`zip entry ${entry.name} past 4 GiB: not written (no ZIP64)`);
      if (!deflate.write(chunk)) await once(deflate, 'drain');
      yield* take();
    }
    const ended = once(deflate, 'end');
    deflate.end();
    await ended;
    yield* take();

    const descriptor = Buffer.alloc(16);
    descriptor.writeUInt32LE(DATA_DESCRIPTOR, 0);
    descriptor.writeUInt32LE(crc, 4);
    descriptor.writeUInt32LE(compressed, 8);
    descriptor.writeUInt32LE(size, 12);
    yield emit(descriptor);
    written.push({ name, crc, compressed, size, offset: start });
  }

  const directoryStart = offset;
  for (const w of written) {
    const header = Buffer.alloc(46);
    header.writeUInt32LE(CENTRAL_HEADER, 0);
    header.writeUInt16LE(VERSION_MADE_BY, 4);
    header.writeUInt16LE(VERSION_NEEDED, 6);
    header.writeUInt16LE(FLAGS, 8);
    header.writeUInt16LE(DEFLATE, 10);
    header.writeUInt16LE(dosTime, 12);
    header.writeUInt16LE(dosDate, 14);
    header.writeUInt32LE(w.crc, 16);
    header.writeUInt32LE(w.compressed, 20);
    header.writeUInt32LE(w.size, 24);
    header.writeUInt16LE(w.name.length, 28);
    // Extra field, comment, disk number and internal attributes stay 0.
    header.writeUInt32LE(FILE_MODE * 0x10000, 38);
    header.writeUInt32LE(w.offset, 42);
    yield emit(Buffer.concat([header, w.name]));
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
  end.writeUInt16LE(written.length, 8);
  end.writeUInt16LE(written.length, 10);
  end.writeUInt32LE(offset - directoryStart, 12);
  end.writeUInt32LE(directoryStart, 16);
  yield emit(end);
}

/** MS-DOS time and date words (local time, 2-second steps, from 1980). */
function dosDateTime(d: Date): [number, number] {
  const year = Math.max(1980, d.getFullYear());
  return [(d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1), ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate()];
}
