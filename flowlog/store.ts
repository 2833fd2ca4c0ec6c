// Opening the flow-log store: embedded chDB on a directory, or a ClickHouse
// server (or cluster) over HTTP. Checks the server version, brings the schema
// up to date and applies the retention asked for.

import { writeFile } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { Session } from 'chdb';
import { createChdbConnection } from 'chdb/connection';
import { asStoreError, FlowLogError } from './errors.js';
import { nativeBlocks, type NativeBlock } from './native-format.js';
import type { Params } from './query-params.js';
import {
  checkIdentifier, createDatabaseStatement, MIGRATIONS, retentionStatement, SCHEMA_VERSION, schemaVersionTableStatement,
  storageTable, TABLE_NAMES, TABLES, ttlExpression, type Retention, type SchemaTarget, type TableName,
} from './schema.js';

// chdb types its connection against @clickhouse/client-common; the client bundles its own copy of that interface.
type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

/** Per table: how long rows are kept (seconds), or null for ever. Tables not named keep the retention they have. */
export type RetentionOptions = Partial<Record<TableName, Retention>>;

export type StoreOptions =
  | { path: string; retention?: RetentionOptions }
  | {
      /** http[s]://[user:password@]host:port[/database]; the other options take precedence over the URL's parts. */
      url: string;
      username?: string;
      password?: string;
      database?: string;
      /** Create replicated tables on every node of this cluster, and Distributed tables over them. */
      cluster?: string;
      retention?: RetentionOptions;
    };

/** Oldest ClickHouse server the schema and queries work on. */
export const MIN_SERVER_VERSION = '23.8';
/** Directory inside an embedded store's for the batch files the engine inserts from. */
const INSERT_DIR = 'nettrail-inserts';

/**
 * Server settings the embedded engine starts with: its memory worker checks the process's memory
 * every 50–100 ms by default, a steady cost while nothing else happens; once a second is enough
 * for the engine's memory accounting in a store this size.
 */
const ENGINE_ARGS = ['--memory_worker_period_ms=1000'];

/**
 * An embedded store's directory, the directory of the batch files the engine inserts from, and the
 * session that started the engine with ENGINE_ARGS (open while the store is: sessions on the path share it).
 */
interface EmbeddedPaths {
  path: string;
  insertDir: string;
  engine: Session;
}

/** Database used inside an embedded store, and by default on a server. */
export const DEFAULT_DATABASE = 'nettrail';

export class FlowLogStore {
  private insertFiles = 0;
  private closed = false;
  /** Embedded: the chDB sessions of the streamed reads in progress, closed with the store. */
  private readonly streamSessions = new Set<Session>();

  constructor(
    readonly client: ClickHouseClient,
    /** Database and cluster, checked identifiers, safe to splice into SQL. */
    readonly target: SchemaTarget,
    readonly serverVersion: string,
    /** Embedded: where the store lives; null for a server. */
    private readonly embedded: EmbeddedPaths | null,
  ) {}

  /** The database-qualified name of the table storing `name`'s records (in a cluster: the Distributed table). */
  table(name: TableName): string {
    return `${this.target.database}.${TABLES[name].name}`;
  }

  /** Inserts RowBinary rows (`body`) of the given columns, encoded with the table's column types. */
  async insertRowBinary(name: TableName, columns: readonly string[], body: Buffer): Promise<void> {
    const into = `INSERT INTO ${this.table(name)} (${columns.join(', ')})`;
    if (this.embedded !== null) {
      // chDB takes inline insert data as text only: binary rows go through a file the engine reads.
      const file = path.join(this.embedded.insertDir, `${name}-${++this.insertFiles}.bin`);
      try {
        // Inside the try: a write that fails part way (a full disk) leaves no file behind either.
        await writeWhole(file, body);
        await this.client.command({
          query: `${into} SELECT * FROM file({file:String}, RowBinary) SETTINGS use_structure_from_insertion_table_in_table_functions = 1`,
          query_params: { file },
        });
      } finally {
        await rm(file, { force: true });
      }
      return;
    }
    const result = await this.client.exec({
      query: `${into} FORMAT RowBinary`,
      values: Readable.from([body], { objectMode: false }),
      // In a cluster: written means on the shards, not queued on the node we talk to.
      clickhouse_settings: this.target.cluster === null ? {} : { insert_distributed_sync: 1 },
    });
    result.stream.resume();
    await finished(result.stream);
  }

  /**
   * The rows of a SELECT (`query` without a FORMAT clause), each decoded by
   * `decode` (from its columns' values in JSONCompactEachRow) as the client's
   * stream delivers it. The client's failures are thrown as the store's
   * (errors.ts asStoreError).
   */
  async select<T>(query: string, params: Params, decode: (row: unknown) => T, settings?: ClickHouseSettings): Promise<T[]> {
    try {
      const result = await this.client.query({ query, query_params: params, format: 'JSONCompactEachRow', clickhouse_settings: settings });
      try {
        const records: T[] = [];
        for await (const rows of result.stream()) {
          for (const row of rows) records.push(decode(row.json()));
        }
        return records;
      } finally {
        result.close();
      }
    } catch (err) {
      throw asStoreError(err);
    }
  }

  /**
   * The result of a SELECT (`query` without a FORMAT clause) as Native blocks,
   * streamed as the engine produces them: embedded, through a chDB session of
   * the read's own (a session streams one result at a time); from a server,
   * from the HTTP response. Memory holds about one block (max_block_size rows).
   * The client's and chDB's failures are thrown as the store's (errors.ts asStoreError).
   */
  async *selectNative(query: string, params: Params): AsyncGenerator<NativeBlock> {
    if (this.closed) throw new FlowLogError('STORE_CLOSED', 'the flow-log store is closed');
    try {
      yield* this.embedded === null ? this.serverNative(query, params) : this.embeddedNative(this.embedded, query, params);
    } catch (err) {
      throw asStoreError(err);
    }
  }

  private async *serverNative(query: string, params: Params): AsyncGenerator<NativeBlock> {
    const result = await this.client.exec({ query: `${query} FORMAT Native`, query_params: params });
    try {
      yield* nativeBlocks(result.stream);
    } finally {
      result.stream.destroy();
    }
  }

  private async *embeddedNative(embedded: EmbeddedPaths, query: string, params: Params): AsyncGenerator<NativeBlock> {
    const session = new Session(embedded.path);
    this.streamSessions.add(session);
    try {
      // The engine fetches the next chunk (on a libuv thread) while the reader decodes this one.
      const chunks = async function* (): AsyncGenerator<Uint8Array> {
        const stream = session.queryStreamBind(query, params, { format: 'Native' })[Symbol.asyncIterator]();
        try {
          let next = stream.next();
          for (;;) {
            const { value: chunk, done } = await next;
            if (done) return;
            next = stream.next();
            yield chunk.raw();
          }
        } finally {
          await stream.return?.();
        }
      };
      yield* nativeBlocks(chunks());
    } finally {
      this.streamSessions.delete(session);
      session.close();
    }
  }

  /** True when the store answers a query. */
  async ping(): Promise<boolean> {
    return (await this.client.ping({ select: true })).success;
  }

  async close(): Promise<void> {
    this.closed = true;
    // A session still streaming ends with an error in its reader; chDB tears it down once its fetch returns.
    for (const session of this.streamSessions) session.close();
    this.streamSessions.clear();
    await this.client.close();
    this.embedded?.engine.close();
  }
}

export async function openStore(opts: StoreOptions): Promise<FlowLogStore> {
  let client: ClickHouseClient;
  let embedded: EmbeddedPaths | null = null;
  let target: SchemaTarget;
  const where = 'path' in opts ? opts.path : redactedUrl(opts.url);
  try {
    if ('path' in opts) {
      await mkdir(opts.path, { recursive: true });
      embedded = { path: opts.path, insertDir: path.join(opts.path, INSERT_DIR), engine: new Session(opts.path, { connectionArgs: ENGINE_ARGS }) };
      client = createClient({ connection: createChdbConnection({ path: opts.path }) as unknown as ClientConnection });
      target = { database: DEFAULT_DATABASE, cluster: null };
    } else {
      const server = serverConfig(opts);
      target = server.target;
      client = createClient({
        url: server.url, username: server.username, password: server.password,
        // In a cluster, a query on a Distributed table with an IN subquery on another (flow search,
        // drops, tcp-seq flows) is refused by default; 'global' runs the subquery once, over the
        // whole cluster, and sends its result to the shards.
        clickhouse_settings: target.cluster === null ? {} : { distributed_product_mode: 'global' },
      });
    }
  } catch (err) {
    (embedded as EmbeddedPaths | null)?.engine.close();
    throw asOpenError(err, where);
  }
  try {
    // TabSeparated: a format every server version speaks, so that an old one gets to the version check.
    const version = (await (await client.query({ query: 'SELECT version()', format: 'TabSeparated' })).text()).trim();
    checkServerVersion(version);
    if (embedded !== null) {
      // The engine has the directory now. Batch files an earlier run left are of no use: they were inserted or failed.
      await rm(embedded.insertDir, { recursive: true, force: true });
      await mkdir(embedded.insertDir);
    }
    await migrate(client, target);
    await applyRetention(client, target, opts.retention ?? {});
    return new FlowLogStore(client, target, version, embedded);
  } catch (err) {
    await client.close();
    embedded?.engine.close();
    throw asOpenError(err, where);
  }
}

/** The URL without credentials and database, and those taken from the options or else the URL. */
function serverConfig(opts: Extract<StoreOptions, { url: string }>) {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new FlowLogError('STORE_CONFIG', `${JSON.stringify(redactedUrl(opts.url))} is not a URL (http[s]://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FlowLogError('STORE_CONFIG', `the ClickHouse URL must be http:// or https://, not ${url.protocol}//`);
  }
  const username = opts.username ?? (url.username === '' ? undefined : decodeURIComponent(url.username));
  const password = opts.password ?? (url.password === '' ? undefined : decodeURIComponent(url.password));
  const database = opts.database ?? (url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : DEFAULT_DATABASE);
  url.username = '';
  url.password = '';
  url.pathname = '/';
  const target: SchemaTarget = {
    database: checkIdentifier(database, 'database name'),
    cluster: opts.cluster === undefined ? null : checkIdentifier(opts.cluster, 'cluster name'),
  };
  return { url: url.toString(), username, password, target };
}

/** The URL as it may be shown: without a password. */
function redactedUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return text.replace(/\/\/[^@/]*@/, '//***@');
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
  if (!(major > minMajor || (major === minMajor && minor >= minMinor))) {
    throw new FlowLogError(
      'STORE_VERSION',
      `ClickHouse ${version} is too old for nettrail's flow log: the minimum is ${MIN_SERVER_VERSION}`,
    );
  }
}

async function selectOne(client: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<unknown> {
  const result = await client.query({ query, query_params: params, format: 'JSONCompactEachRow' });
  const rows = await result.json<[unknown]>();
  return rows[0]?.[0];
}

async function migrate(client: ClickHouseClient, t: SchemaTarget): Promise<void> {
  await client.command({ query: createDatabaseStatement(t) });
  await client.command({ query: schemaVersionTableStatement(t) });
  const current = Number(await selectOne(client, `SELECT max(version) FROM ${t.database}.schema_version`));
  if (current > SCHEMA_VERSION) {
    throw new FlowLogError(
      'STORE_SCHEMA',
      `the store has schema version ${current}, written by a newer nettrail; this one knows up to ${SCHEMA_VERSION}`,
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    for (const step of migration.statements(t)) {
      if (typeof step === 'string') await client.command({ query: step });
      else if (Number(await selectOne(client, step.onlyIf)) !== 0) {
        for (const statement of step.statements) await client.command({ query: statement });
      }
    }
    await client.command({
      query: `INSERT INTO ${t.database}.schema_version (version) SELECT {version:UInt32}`,
      query_params: { version: migration.version },
    });
  }
}

/** Sets each named table's TTL unless it already is the one asked for (changing it rewrites TTL information of every part). */
async function applyRetention(client: ClickHouseClient, t: SchemaTarget, retention: RetentionOptions): Promise<void> {
  for (const name of TABLE_NAMES) {
    const wanted = retention[name];
    if (wanted === undefined) continue;
    const def = TABLES[name];
    const [database, table] = storageTable(t, def.name).split('.');
    const engine = String(await selectOne(
      client,
      'SELECT engine_full FROM system.tables WHERE database = {database:String} AND name = {table:String}',
      { database, table },
    ));
    const current = /\bTTL (.*?)(?: SETTINGS |$)/.exec(engine)?.[1] ?? null;
    if (current === (wanted === null ? null : ttlExpression(def, wanted))) continue;
    await client.command({ query: retentionStatement(t, def, wanted) });
  }
}

const DURATION_UNITS: Record<string, number> = { h: 3600, d: 86_400, w: 604_800 };

/**
 * Retention from `--retention` values: `DURATION` for every table or
 * `TABLE=DURATION` for one (later values win); DURATION is a whole number of
 * hours, days or weeks (`12h`, `7d`, `2w`) or `forever`.
 */
export function parseRetention(specs: readonly string[]): RetentionOptions {
  const retention: RetentionOptions = {};
  for (const spec of specs) {
    const match = /^(?:([a-z_]+)=)?(?:(\d{1,9})([hdw])|(forever))$/.exec(spec);
    const table = match?.[1];
    if (!match || (table !== undefined && !(TABLE_NAMES as readonly string[]).includes(table))) {
      throw new FlowLogError(
        'STORE_CONFIG',
        `retention ${JSON.stringify(spec)}: expected DURATION or TABLE=DURATION, DURATION as 12h, 7d, 2w or forever, TABLE one of ${TABLE_NAMES.join(', ')}`,
      );
    }
    const seconds = match[4] ? null : Number(match[2]) * DURATION_UNITS[match[3]];
    if (seconds === 0) throw new FlowLogError('STORE_CONFIG', `retention ${JSON.stringify(spec)}: must be longer than 0`);
    for (const name of table === undefined ? TABLE_NAMES : [table as TableName]) retention[name] = seconds;
  }
  return retention;
}

/**
 * Writes `body` to a new file in one write on libuv's pool. (fs/promises'
 * writeFile writes 512 KiB at a time, each after a turn of the event loop,
 * which a busy capture loop delays: docs/store.md.)
 */
function writeWhole(file: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => writeFile(file, body, (err) => (err ? reject(err) : resolve())));
}
