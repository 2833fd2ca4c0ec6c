// Flow-log search: filters, ordering and keyset (cursor) pagination over the
// newest state of every flow. Every value goes in as a query parameter.

import { LOOPBACK_IFACE, LOOPBACK_RANGES } from '../model/address.js';
import type { FlowRecord } from '../model/records.js';
import { decodeFlow, FLOW_SELECT_COLUMNS } from './codec.js';
import { LOSS_CONDITION } from './drops-table.js';
import { afterConditions, decodeCursor, encodeCursor, orderBy, trafficConditions } from './keyset-search.js';
import type { KeyColumn, PageRequest, TrafficColumns, TrafficFilter } from './keyset-search.js';
import { ipv6Param, nsText, timeParam, typedParam, type Params } from './query-params.js';
import type { FlowLogStore } from './store.js';

/** Flow properties `has` asks for. */
export const FLOW_TRAITS = ['retrans', 'zero_window', 'drop', 'rst'] as const;
export type FlowTrait = (typeof FLOW_TRAITS)[number];

/** Loopback flows (on a loopback interface, or between loopback addresses): kept (default), left out, or the only ones. */
export const LOOPBACK_CHOICES = ['include', 'exclude', 'only'] as const;
export type LoopbackChoice = (typeof LOOPBACK_CHOICES)[number];

/** Zeek conn.log conn_state codes. */
export const CONN_STATES = ['S0', 'S1', 'SF', 'REJ', 'S2', 'S3', 'RSTO', 'RSTR', 'RSTOS0', 'RSTRH', 'SH', 'SHR', 'OTH'] as const;

const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/** What flows are sorted by, before their id. */
interface OrderKey extends KeyColumn {
  /** SQL for its value as decimal text (epoch ns for times): what a cursor keeps. */
  text: string;
  min: bigint;
  max: bigint;
}

const timeKey = (column: string): OrderKey => ({
  sql: column,
  text: nsText(column),
  param: timeParam,
  min: 0n,
  max: I64_MAX,
});
const sumKey = (a: string, b: string): OrderKey => ({
  sql: `(${a} + ${b})`,
  text: `toString(${a} + ${b})`,
  param: typedParam('UInt64'),
  min: 0n,
  max: U64_MAX,
});

/** What flows can be ordered by; `-` before the name reverses the order. Ties are broken by id (ID_KEY). */
const ORDER_KEYS = {
  start: timeKey('start_ts'),
  end: timeKey('end_ts'),
  duration: {
    sql: '(toUnixTimestamp64Nano(end_ts) - toUnixTimestamp64Nano(start_ts))',
    text: 'toString(toUnixTimestamp64Nano(end_ts) - toUnixTimestamp64Nano(start_ts))',
    param: typedParam('Int64'),
    min: -I64_MAX - 1n,
    max: I64_MAX,
  },
  bytes: sumKey('bytes_c2s', 'bytes_s2c'),
  packets: sumKey('packets_c2s', 'packets_s2c'),
} satisfies Record<string, OrderKey>;

type OrderName = keyof typeof ORDER_KEYS;
export type FlowOrder = OrderName | `-${OrderName}`;
export const FLOW_ORDERS = (Object.keys(ORDER_KEYS) as OrderName[]).flatMap((name): FlowOrder[] => [name, `-${name}`]);
export const DEFAULT_FLOW_ORDER: FlowOrder = '-start';

const ID_KEY: KeyColumn = { sql: 'id', param: typedParam('String') };

/**
 * Every condition given must hold. Addresses and ports: `ip`/`port` either
 * side, `src`/`sport` the client's, `dst`/`dport` the server's; `from`/`to`:
 * flows active at or after `from` and at or before `to`.
 */
export interface FlowFilter extends TrafficFilter {
  /** Any of these conn_state codes. */
  states?: string[];
  /** All of these traits. */
  has?: FlowTrait[];
  /** Loopback flows: kept without (or with 'include'), left out with 'exclude', the only ones with 'only'. */
  loopback?: LoopbackChoice;
}

const FLOW_COLUMNS: TrafficColumns = { src: 'client_ip', sport: 'client_port', dst: 'server_ip', dport: 'server_port', start: 'start_ts', end: 'end_ts' };

/** A position in one order: the last flow of a page. */
export interface FlowCursor {
  order: FlowOrder;
  key: bigint;
  id: string;
}

export interface FlowPage {
  flows: FlowRecord[];
  /** Where the next page starts; null when this page is the last. */
  next: FlowCursor | null;
}

/** The longest flow id a cursor may carry. */
const MAX_ID_LENGTH = 256;

/** A cursor as opaque text. */
export function encodeFlowCursor(cursor: FlowCursor): string {
  return encodeCursor(cursor.order, [cursor.key.toString(), cursor.id]);
}

/** The cursor `text` encodes, or null when it is not one of `encodeFlowCursor`'s. */
export function decodeFlowCursor(text: string): FlowCursor | null {
  const decoded = decodeCursor(text, FLOW_ORDERS, 2);
  if (decoded === null) return null;
  const [key, id] = decoded.fields;
  if (typeof key !== 'string' || !/^-?\d{1,20}$/.test(key)) return null;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) return null;
  const { min, max } = ORDER_KEYS[orderName(decoded.order)];
  const value = BigInt(key);
  if (value < min || value > max) return null;
  return { order: decoded.order, key: value, id };
}

const orderName = (order: FlowOrder): OrderName => (order.startsWith('-') ? order.slice(1) : order) as OrderName;

/** The WHERE conditions of `filter`; adds their parameters. */
export function filterConditions(store: FlowLogStore, filter: FlowFilter, params: Params): string[] {
  const conditions = trafficConditions(filter, FLOW_COLUMNS, params);
  if (filter.states !== undefined) {
    params.states = filter.states;
    conditions.push('conn_state IN {states:Array(String)}');
  }
  for (const trait of new Set(filter.has)) conditions.push(traitCondition(store, trait));
  if (filter.loopback === 'exclude') conditions.push(`NOT ${loopbackCondition(params)}`);
  if (filter.loopback === 'only') conditions.push(loopbackCondition(params));
  return conditions;
}

/** A flow on a loopback interface or with a loopback address on either side; adds its parameters. */
function loopbackCondition(params: Params): string {
  params.loopback_iface = LOOPBACK_IFACE;
  const ranges = LOOPBACK_RANGES.flatMap((range, i) => {
    params[`loopback_${i}_first`] = ipv6Param(range.first);
    params[`loopback_${i}_last`] = ipv6Param(range.last);
    return ['client_ip', 'server_ip'].map((column) => `${column} BETWEEN {loopback_${i}_first:IPv6} AND {loopback_${i}_last:IPv6}`);
  });
  return `(iface = {loopback_iface:String} OR ${ranges.join(' OR ')})`;
}

/** The condition of `trait` on a flow's columns (the newest version's). */
export function traitCondition(store: FlowLogStore, trait: FlowTrait): string {
  switch (trait) {
    case 'retrans':
      return '(retrans_c2s + retrans_s2c) > 0';
    case 'zero_window':
      return '(zero_window_c2s + zero_window_s2c) > 0';
    case 'rst':
      return `close = 'rst'`;
    case 'drop':
      // A loss of the flow's connection (its tuple, either direction), or of a
      // packet capture saw as part of it (same packet id) whatever tuple the
      // packet had where it was dropped (after a NAT, say). Copies of packets
      // that went on, and packets consumed before they were freed, are no loss.
      return `(conn_key IN (SELECT conn_key FROM ${store.table('drops')} WHERE ${LOSS_CONDITION})
        OR conn_key IN (SELECT conn_key FROM ${store.table('packets')} ARRAY JOIN packet_ids AS packet_id
          WHERE packet_id IN (SELECT packet_id FROM ${store.table('drops')} WHERE ${LOSS_CONDITION})))`;
  }
}

const DAY_NS = 86_400_000_000_000n;
/** The UTC day `ns` falls in, as the flows table partitions by (toDate(start_ts)). */
const dayStart = (ns: bigint): bigint => ns - (ns % DAY_NS);

/**
 * FINAL merges the versions of a flow; all of them share start_ts, and so a
 * partition, so partitions need not be merged with each other.
 */
const FINAL_SETTINGS = { do_not_merge_across_partitions_select_final: 1 } as const;

interface PageQuery {
  key: OrderKey;
  descending: boolean;
  conditions: string[];
  params: Params;
}

interface PageRow {
  flow: FlowRecord;
  key: bigint;
}

/** A start_ts range [from, to), either end open when not given. */
interface StartWindow {
  from?: bigint;
  to?: bigint;
}

/** The query's conditions and parameters with those of `window`. */
function windowed(query: PageQuery, window: StartWindow): { where: string; params: Params } {
  const conditions = [...query.conditions];
  const params = { ...query.params };
  if (window.from !== undefined) {
    conditions.push(`start_ts >= ${timeParam('window_from')}`);
    params.window_from = window.from.toString();
  }
  if (window.to !== undefined) {
    conditions.push(`start_ts < ${timeParam('window_to')}`);
    params.window_to = window.to.toString();
  }
  return { where: conditions.length > 0 ? conditions.join(' AND ') : '1', params };
}

/** -1, 0 or 1 as (a.key, a.id) sorts before, with or after (b.key, b.id) in the query's order (ids bytewise, as ClickHouse compares them). */
function compareRows(query: PageQuery, a: { key: bigint; id: string }, b: { key: bigint; id: string }): number {
  const ascending = a.key !== b.key ? (a.key < b.key ? -1 : 1) : Buffer.compare(Buffer.from(a.id), Buffer.from(b.id));
  return query.descending ? -ascending : ascending;
}

/** The most candidate flows whose ids and connection keys go to the server as parameters (in its URL over HTTP, ~0.4 MB). */
const MAX_CANDIDATES = 10_000;

/** A flow selected with its sort key after its columns. */
const decodePageRow = (row: unknown): PageRow => ({ flow: decodeFlow(row), key: BigInt((row as unknown[]).at(-1) as string) });

/** The first `limit` rows of `query` in `window` with FINAL: one scan that merges every flow's versions. */
async function selectMerged(store: FlowLogStore, query: PageQuery, limit: number, window: StartWindow): Promise<PageRow[]> {
  const { where, params } = windowed(query, window);
  return store.select(
    `SELECT ${FLOW_SELECT_COLUMNS}, ${query.key.text} FROM ${store.table('flows')} FINAL WHERE ${where}
      ORDER BY ${orderBy([query.key, ID_KEY], query.descending)} LIMIT {limit:UInt32}`,
    { ...params, limit },
    decodePageRow,
    FINAL_SETTINGS,
  );
}

/**
 * The first `limit` rows of `query` in `window`, each flow in its newest
 * state, without merging the whole table (FINAL costs several times a plain
 * scan). 1: the first `candidates` rows of every version, sort key and id only.
 * 2: the newest version of those flows, where it still matches. Every flow
 * whose newest version sorts before the last candidate is among the
 * candidates, so the rows up to it are the answer, if there are `limit` of
 * them; if stale versions crowded them out, null.
 */
async function selectNewest(store: FlowLogStore, query: PageQuery, limit: number, window: StartWindow, candidates: number): Promise<PageRow[] | null> {
  const { where, params } = windowed(query, window);
  const rows = await store.select(
    `SELECT id, toString(conn_key), ${query.key.text} FROM ${store.table('flows')} WHERE ${where}
      ORDER BY ${orderBy([query.key, ID_KEY], query.descending)} LIMIT {limit:UInt32}`,
    { ...params, limit: candidates },
    (row) => row as [string, string, string],
  );
  if (rows.length === 0) return [];
  const newest = await store.select(
    // PREWHERE: the other columns are read for the candidates' rows only (ClickHouse does not move these conditions itself).
    `SELECT ${FLOW_SELECT_COLUMNS}, ${query.key.text} FROM ${store.table('flows')}
      PREWHERE conn_key IN {candidate_keys:Array(UInt64)} AND id IN {candidate_ids:Array(String)}
      WHERE (id, version) IN (SELECT id, max(version) FROM ${store.table('flows')}
          PREWHERE conn_key IN {candidate_keys:Array(UInt64)} AND id IN {candidate_ids:Array(String)} GROUP BY id)
        AND ${where}`,
    { ...params, candidate_keys: [...new Set(rows.map((row) => row[1]))].map(BigInt), candidate_ids: [...new Set(rows.map((row) => row[0]))] },
    decodePageRow,
  );
  const current = newest.sort((a, b) => compareRows(query, { key: a.key, id: a.flow.id }, { key: b.key, id: b.flow.id }));
  if (rows.length < candidates) return current.slice(0, limit);
  const [lastId, , lastKey] = rows[rows.length - 1];
  const last = { key: BigInt(lastKey), id: lastId };
  const settled = current.filter((row) => compareRows(query, { key: row.key, id: row.flow.id }, last) <= 0);
  return settled.length >= limit ? settled.slice(0, limit) : null;
}

/** Up to `limit` rows of `query` in its order whose start_ts lies in `window`: each flow in its newest state, with its sort key. */
async function selectPage(store: FlowLogStore, query: PageQuery, limit: number, window: StartWindow = {}): Promise<PageRow[]> {
  // Twice as many candidates as rows wanted, then 8 and 32 times (their ids and keys are query parameters: at most
  // MAX_CANDIDATES), before merging everything.
  const tries = new Set([2, 8, 32].map((factor) => Math.min(limit * factor, MAX_CANDIDATES)));
  for (const candidates of tries) {
    const rows = await selectNewest(store, query, limit, window, candidates);
    if (rows !== null) return rows;
  }
  return selectMerged(store, query, limit, window);
}

/** The earliest and latest start_ts in the store (from the parts' min/max indexes), null when it has no flow. */
async function startRange(store: FlowLogStore): Promise<{ min: bigint; max: bigint } | null> {
  const [[any, min, max]] = await store.select(
    `SELECT count() > 0, ${nsText('min(start_ts)')}, ${nsText('max(start_ts)')} FROM ${store.table('flows')}`,
    {},
    (row) => row as [boolean | number, string, string],
  );
  return any ? { min: BigInt(min), max: BigInt(max) } : null;
}

/**
 * Rows of a start-ordered page, read a few partitions at a time from where
 * the page begins (the newest day for -start): one day, then two, four, ...
 * until the page is full or the flows run out. The first page of recent
 * flows reads one day of the flow log instead of all of it.
 */
async function selectStartOrderedPage(store: FlowLogStore, query: PageQuery, limit: number, begin: bigint | undefined) {
  const range = await startRange(store);
  if (range === null) return [];
  const rows: PageRow[] = [];
  if (query.descending) {
    let to: bigint | undefined;
    let from = dayStart(begin !== undefined && begin < range.max ? begin : range.max);
    for (let days = 1n; rows.length < limit; days *= 2n) {
      const last = from <= range.min;
      rows.push(...(await selectPage(store, query, limit - rows.length, { from: last ? undefined : from, to })));
      if (last) break;
      [to, from] = [from, from - days * 2n * DAY_NS];
    }
  } else {
    let from: bigint | undefined;
    let to = dayStart(begin !== undefined && begin > range.min ? begin : range.min) + DAY_NS;
    for (let days = 1n; rows.length < limit; days *= 2n) {
      const last = to > range.max;
      rows.push(...(await selectPage(store, query, limit - rows.length, { from, to: last ? undefined : to })));
      if (last) break;
      [from, to] = [to, to + days * 2n * DAY_NS];
    }
  }
  return rows;
}

/**
 * The newest state of the flows matching `filter`, `limit` at a time in
 * `order`, starting after `after` (keyset pagination: pages neither repeat nor
 * skip a flow whose sort key does not change while paging).
 */
export async function searchFlows(
  store: FlowLogStore,
  filter: FlowFilter,
  page: PageRequest<FlowOrder, FlowCursor>,
): Promise<FlowPage> {
  const { order, limit, after } = page;
  const name = orderName(order);
  const query: PageQuery = { key: ORDER_KEYS[name], descending: order.startsWith('-'), conditions: [], params: {} };
  query.conditions = filterConditions(store, filter, query.params);
  if (after) query.conditions.push(...afterConditions([query.key, ID_KEY], query.descending, [after.key.toString(), after.id], query.params));
  // Where a start-ordered page begins: after the cursor, or (newest first) at the latest start `to` allows.
  const begin = after?.key ?? (query.descending ? filter.to : undefined);
  const rows = name === 'start' ? await selectStartOrderedPage(store, query, limit + 1, begin) : await selectPage(store, query, limit + 1);
  const flows = rows.slice(0, limit).map((row) => row.flow);
  const last = rows.length > limit ? rows[limit - 1] : undefined;
  return { flows, next: last === undefined ? null : { order, key: last.key, id: last.flow.id } };
}

/** The newest state of the flow with this id, or null. */
export async function flowById(store: FlowLogStore, id: string): Promise<FlowRecord | null> {
  // PREWHERE: the id column alone is scanned, the others read for its rows (ClickHouse does not move it itself here).
  const query = `SELECT ${FLOW_SELECT_COLUMNS} FROM ${store.table('flows')} PREWHERE id = {id:String} ORDER BY version DESC LIMIT 1`;
  const [flow] = await store.select(query, { id }, decodeFlow);
  return flow ?? null;
}
