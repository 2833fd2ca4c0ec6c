// Opening the flow-log store: embedded chDB on a directory, or a ClickHouse
// server over HTTP. Checks the server version and brings the schema up to date.

import { mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection, type ChdbConnection } from 'chdb/connection';
import { FlowLogError } from './errors.js';
import { migrations, SCHEMA_VERSION, schemaVersionTableDdl, type TableName } from './schema.js';

// chdb types its connection against @clickhouse/client-common; the client bundles its own copy of that interface.
type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

export type StoreOptions =
  | { path: string }
  | { url: string; username?: string; password?: string; database?: string };

/** Oldest ClickHouse server the schema and queries work on. */
export const MIN_SERVER_VERSION = '23.8';
/** Database used inside an embedded store, and by default on a server. */
export const DEFAULT_DATABASE = 'nettrail';

export class FlowLogStore {
  constructor(
    readonly client: ClickHouseClient,
    /** A validated identifier, safe to splice into SQL. */
    readonly database: string,
    readonly serverVersion: string,
    /** The embedded engine's connection, or null for a server. */
    private readonly embedded: ChdbConnection | null,
  ) {}

  /** The table's database-qualified name for SQL. */
  table(name: TableName): string {
    return `${this.database}.${name}`;
  }

  /** Inserts JSONCompactEachRow rows (`body`, newline-terminated) into the given columns. */
  async insertRows(name: TableName, columns: readonly string[], body: Buffer): Promise<void> {
    if (this.embedded) {
      // chDB's raw insert hands the bytes to the engine as they are.
      await this.embedded.chdb.rawInsert({ table: this.table(name), columns, format: 'JSONCompactEachRow', values: body });
      return;
    }
    const result = await this.client.exec({
      query: `INSERT INTO ${this.table(name)} (${columns.join(', ')}) FORMAT JSONCompactEachRow`,
      values: Readable.from([body], { objectMode: false }),
    });
    result.stream.resume();
    await finished(result.stream);
  }

  /** True when the store answers a query. */
  async ping(): Promise<boolean> {
    return (await this.client.ping({ select: true })).success;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export async function openStore(opts: StoreOptions): Promise<FlowLogStore> {
  let client: ClickHouseClient;
  let embedded: ChdbConnection | null = null;
  let database = DEFAULT_DATABASE;
  const where = 'path' in opts ? opts.path : opts.url;
  try {
    if ('path' in opts) {
      await mkdir(opts.path, { recursive: true });
      embedded = createChdbConnection({ path: opts.path });
      client = createClient({ connection: embedded as unknown as ClientConnection });
    } else {
      database = opts.database ?? DEFAULT_DATABASE;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
        throw new FlowLogError('STORE_CONFIG', `database name ${JSON.stringify(database)} is not a plain identifier`);
      }
      client = createClient({ url: opts.url, username: opts.username, password: opts.password });
    }
  } catch (err) {
    throw asOpenError(err, where);
  }
  try {
    const version = await selectOne<string>(client, 'SELECT version()');
    checkServerVersion(version);
    await migrate(client, database);
    return new FlowLogStore(client, database, version, embedded);
  } catch (err) {
    await client.close();
    throw asOpenError(err, where);
  }
}

function asOpenError(err: unknown, where: string): FlowLogError {
  if (err instanceof FlowLogError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FlowLogError('STORE_OPEN', `cannot open the flow-log store at ${where}: ${message}`, { cause: err });
}

/** Throws STORE_VERSION when `version` (as `SELECT version()` reports it) is older than MIN_SERVER_VERSION. */
export function checkServerVersion(version: string): void {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const [minMajor, minMinor] = MIN_SERVER_VERSION.split('.').map(Number) as [number, number];
  if (major < minMajor || (major === minMajor && minor < minMinor)) {
    throw new FlowLogError(
      'STORE_VERSION',
      `ClickHouse ${version} is too old for nettrail's flow log: the minimum is ${MIN_SERVER_VERSION}`,
    );
  }
}

async function migrate(client: ClickHouseClient, db: string): Promise<void> {
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
  await client.command({ query: schemaVersionTableDdl(db) });
  const current = Number(await selectOne<number>(client, `SELECT max(version) FROM ${db}.schema_version`));
  if (current > SCHEMA_VERSION) {
    throw new FlowLogError(
      'STORE_SCHEMA',
      `the store has schema version ${current}, written by a newer nettrail; this one knows up to ${SCHEMA_VERSION}`,
    );
  }
  for (const migration of migrations(db)) {
    if (migration.version <= current) continue;
    for (const statement of migration.statements) await client.command({ query: statement });
    await client.command({
      query: `INSERT INTO ${db}.schema_version (version) SELECT {version:UInt32}`,
      query_params: { version: migration.version },
    });
  }
}

async function selectOne<T>(client: ClickHouseClient, query: string): Promise<T> {
  const result = await client.query({ query, format: 'JSONCompactEachRow' });
  const rows = await result.json<[T]>();
  const first = rows[0];
  if (first === undefined) throw new Error(`no result from ${query}`);
  return first[0];
}
