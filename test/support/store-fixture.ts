// A real flow-log store (embedded chDB) in a temp directory of its own, with a writer, for
// the tests that write flows and read them back; and the rows a closed store holds.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TableName } from '../../flowlog/schema.js';
import { openStore, type FlowLogStore } from '../../flowlog/store.js';
import { FlowLogWriter } from '../../flowlog/writer.js';

export interface TempStore {
  store: FlowLogStore;
  writer: FlowLogWriter;
  /** Closes the writer and the store, and removes the directory (also when closing fails). */
  close(): Promise<void>;
}

/** A new store in a temp directory named after `name`. */
export async function openTempStore(name: string): Promise<TempStore> {
  const dir = await mkdtemp(path.join(tmpdir(), `nettrail-${name}-`));
  const removeDir = () => rm(dir, { recursive: true, force: true });
  const store = await openStore({ path: path.join(dir, 'store') }).catch(async (err) => {
    await removeDir();
    throw err;
  });
  const writer = new FlowLogWriter(store);
  return {
    store,
    writer,
    async close() {
      try {
        await writer.close();
      } finally {
        try {
          await store.close();
        } finally {
          await removeDir();
        }
      }
    },
  };
}

/**
 * How many records of `table` the embedded store at `storePath` holds (packets: in their chunks); it opens
 * the store, so no one else may have it open.
 */
export async function storedRows(storePath: string, table: TableName): Promise<number> {
  const store = await openStore({ path: storePath });
  try {
    const records = table === 'packets' ? 'sum(count)' : 'count()';
    const result = await store.client.query({ query: `SELECT ${records} FROM ${store.table(table)}`, format: 'JSONCompactEachRow' });
    const [[rows]] = await result.json<[number | string]>();
    return Number(rows);
  } finally {
    await store.close();
  }
}
