#!/usr/bin/env node
// The `nettrail` command: serve, lab, trace, explain, pcap, wireshark-profile, flows (docs/interface.md).
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createLab, destroyLab, isDiagnosisScenario, LAB_SCENARIO_SUMMARY, LAB_SCENARIOS, labRecentTuples, labStatus, type LabScenario, type LabTuple } from '../lab/lab.js';
import { startScenarioTraffic } from '../lab/diagnosis-scenarios.js';
import { DEMO_BLOCKED_PORT, startDropDemo } from '../lab/drop-scenarios.js';
import type { FourTupleJson } from '../api/schemas/common.js';
import type { ConnectionJson } from '../api/schemas/connections.js';
import type { DiagnosisJson } from '../api/schemas/diagnosis.js';
import type { FlowsResponseJson } from '../api/schemas/flows.js';
import { isLoopbackHost } from '../model/address.js';
import { XDP_MODES, type XdpMode } from '../capture/packets/capture.js';
import { parseFilter } from '../capture/packets/filter.js';
import { startService } from './service.js';
import { dropPrivileges, lookupUser, unreachableAncestor } from './privileges.js';
import { FlowLogError } from '../flowlog/errors.js';
import { checkIdentifier, TABLE_NAMES } from '../flowlog/schema.js';
import { parseRetention, type StoreOptions } from '../flowlog/store.js';
import { PcapngPacketCounter } from '../pcap/pcapng.js';
import { WIRESHARK_PROFILE_NAME, wiresharkProfileZip } from '../connection/wireshark-profile.js';
import { formatEndpoint, parseTuple, TupleError } from '../model/tuple.js';

/** Each command's synopsis (`nettrail --help`, `nettrail COMMAND --help`; README.md's "Using it" shows them all). */
const USAGE: Record<string, string> = {
  serve: `nettrail serve [--listen HOST:PORT] [--store DIR | --clickhouse-url URL] [--netns NAME|all]... [--iface NAME]... [--node NAME]
               [--snaplen BYTES] [--token TOKEN] [--rate-limit REQUESTS_PER_MINUTE|0]
               [--filter net=CIDR,...|port=N,...|proto=tcp|udp]... [--xdp off|native|generic|auto]
               [--conntrack-sysctls] [--ovs-rundir DIR]... [--drop-rate-limit EVENTS_PER_SECOND_PER_CPU|0]
               [--ring-bytes-per-cpu BYTES] [--ring-wakeup-bytes BYTES] [--user USER]
               [--retention DURATION|TABLE=DURATION]... (DURATION: 12h, 7d, 2w, forever; TABLE: ${TABLE_NAMES.join(', ')})
               [--clickhouse-user USER] [--clickhouse-password PASSWORD] [--clickhouse-database DB] [--clickhouse-cluster NAME]`,
  lab: `nettrail lab up|down|status [--scenario ${LAB_SCENARIOS.join('|')}|all]... [--prefix P] [--json]`,
  trace: `nettrail trace TUPLE [--at TIME] [--list] [--server URL] [--json]  |  nettrail trace --id CONNECTION_ID [...]`,
  explain: `nettrail explain TUPLE [--at TIME] | --id CONNECTION_ID [--server URL] [--json]`,
  pcap: `nettrail pcap TUPLE [--at TIME] | --id CONNECTION_ID  -o FILE [--from TIME] [--to TIME] [--point NODE/NETNS/IFACE]... [--server URL]
               [--split point] (a zip of one file per capture point: -o FILE.zip)`,
  'wireshark-profile': `nettrail wireshark-profile -o FILE.zip   (nettrail's Wireshark profile; unzip in ~/.config/wireshark/profiles/)`,
  flows: `nettrail flows [--ip|--src|--dst ADDRESS|CIDR] [--port|--sport|--dport PORT] [--proto tcp|udp] [--from TIME] [--to TIME]
               [--state CONN_STATE]... [--has retrans|zero_window|drop|rst]... [--node N] [--netns N] [--iface N]
               [--order [-]start|end|duration|bytes|packets] [--limit N] [--cursor C] [--server URL] [--json]`,
};
const TOKEN_NOTE = '(trace, explain, pcap and flows send NETTRAIL_TOKEN, when set, as the bearer token; TUPLE: see docs/interface.md)';

/** The synopsis of one command, or of all. */
const usage = (command?: string): string =>
  command === undefined ? [...Object.values(USAGE), TOKEN_NOTE].join('\n') : `${USAGE[command]}${['serve', 'lab', 'wireshark-profile'].includes(command) ? '' : `\n${TOKEN_NOTE}`}`;

/** A command line nettrail cannot run: one line saying why, then a hint (no usage dump). */
class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const DEFAULT_SERVER = 'http://127.0.0.1:7070';

type OptionValues = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], options: ParseArgsConfig['options']): { values: OptionValues; positionals: string[] } {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true }) as { values: OptionValues; positionals: string[] };
  } catch (err) {
    // node:util's advice on positionals that start with '-' is left out: one line.
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen ${text}: expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { host: match[1] ?? match[2], port };
}

/** --store or --clickhouse-url with its options, and --retention. */
function storeOptions(values: OptionValues): StoreOptions {
  const server = ['clickhouse-user', 'clickhouse-password', 'clickhouse-database', 'clickhouse-cluster'] as const;
  const given = server.filter((name) => values[name] !== undefined);
  if (values.store && values['clickhouse-url']) throw new UsageError('give --store or --clickhouse-url, not both');
  if (given.length > 0 && !values['clickhouse-url']) throw new UsageError(`--${given[0]} goes with --clickhouse-url`);
  try {
    const retention = parseRetention((values.retention as string[] | undefined) ?? []);
    if (!values['clickhouse-url']) return { path: (values.store as string | undefined) ?? './nettrail-data', retention };
    const [username, password, database, cluster] = server.map((name) => values[name] as string | undefined);
    if (database !== undefined) checkIdentifier(database, '--clickhouse-database');
    if (cluster !== undefined) checkIdentifier(cluster, '--clickhouse-cluster');
    return { url: values['clickhouse-url'] as string, username, password, database, cluster, retention };
  } catch (err) {
    if (err instanceof FlowLogError && err.code === 'STORE_CONFIG') throw new UsageError(err.message);
    throw err;
  }
}

async function serve(args: string[]): Promise<void> {
  const { values } = parse(args, {
    listen: { type: 'string', default: '127.0.0.1:7070' },
    store: { type: 'string' },
    'clickhouse-url': { type: 'string' },
    'clickhouse-user': { type: 'string' },
    'clickhouse-password': { type: 'string' },
    'clickhouse-database': { type: 'string' },
    'clickhouse-cluster': { type: 'string' },
    retention: { type: 'string', multiple: true },
    netns: { type: 'string', multiple: true },
    iface: { type: 'string', multiple: true },
    snaplen: { type: 'string' },
    filter: { type: 'string', multiple: true },
    xdp: { type: 'string', default: 'off' },
    token: { type: 'string' },
    'rate-limit': { type: 'string' },
    'conntrack-sysctls': { type: 'boolean' },
    'ovs-rundir': { type: 'string', multiple: true },
    'drop-rate-limit': { type: 'string' },
    'ring-bytes-per-cpu': { type: 'string' },
    'ring-wakeup-bytes': { type: 'string' },
    user: { type: 'string' },
    node: { type: 'string' },
  });
  const listen = parseListen(values.listen as string);
  const node = values.node as string | undefined;
  if (node !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(node)) {
    throw new UsageError(`--node ${JSON.stringify(node)}: 1-64 of [A-Za-z0-9_.-], starting with a letter or digit (it is the first part of NODE/NETNS/IFACE)`);
  }
  const ringBytes = values['ring-bytes-per-cpu'] as string | undefined;
  const wakeupBytes = values['ring-wakeup-bytes'] as string | undefined;
  if (wakeupBytes !== undefined && !/^\d{1,10}$/.test(wakeupBytes)) throw new UsageError(`--ring-wakeup-bytes ${wakeupBytes}: a number of bytes (0: wake at every record)`);
  if (ringBytes !== undefined && !(/^\d{1,10}$/.test(ringBytes) && Number(ringBytes) >= 4096)) throw new UsageError(`--ring-bytes-per-cpu ${ringBytes}: a number of bytes, at least 4096`);
  const store = storeOptions(values);
  // --user: checked before anything starts, applied once everything is attached (service/privileges.ts).
  const user = values.user === undefined ? null : lookupUser(values.user as string);
  if (values.user !== undefined && user === null) throw new UsageError(`--user ${values.user}: no such user`);
  const blocked = user && 'path' in store ? unreachableAncestor(store.path, user) : null;
  if (user && blocked) throw new UsageError(`--user ${user.name}: it cannot reach the store directory ${'path' in store ? store.path : ''} (${blocked} is not searchable for it)`);
  if (!isLoopbackHost(listen.host) && !values.token) throw new UsageError(`--listen ${values.listen} is not a loopback address: give --token TOKEN so that the API is not open to anyone`);
  if (values.snaplen !== undefined && !/^\d+$/.test(values.snaplen as string)) throw new UsageError(`--snaplen ${values.snaplen} is not a number of bytes`);
  if (!XDP_MODES.includes(values.xdp as XdpMode)) throw new UsageError(`--xdp ${values.xdp}: one of ${XDP_MODES.join(', ')}`);
  let filter;
  try {
    filter = parseFilter((values.filter as string[] | undefined) ?? []);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const rateLimit = values['rate-limit'] as string | undefined;
  if (rateLimit !== undefined && !/^\d{1,9}$/.test(rateLimit)) throw new UsageError(`--rate-limit ${rateLimit} is not a number of requests per minute (0: no limit)`);
  const dropRateLimit = values['drop-rate-limit'] as string | undefined;
  if (dropRateLimit !== undefined && !/^\d{1,9}$/.test(dropRateLimit)) throw new UsageError(`--drop-rate-limit ${dropRateLimit} is not a number of drop events per second per CPU (0: no limit)`);
  const netns = values.netns as string[] | undefined;
  const service = await startService({
    node,
    store,
    ringBytesPerCpu: ringBytes === undefined ? undefined : Number(ringBytes),
    wakeupBytes: wakeupBytes === undefined ? undefined : Number(wakeupBytes),
    netns: !netns || netns.includes('all') ? 'all' : netns,
    ifaces: (values.iface as string[] | undefined) ?? null,
    snaplen: values.snaplen === undefined ? undefined : Number(values.snaplen),
    xdp: values.xdp as XdpMode,
    filter,
    token: values.token as string | undefined,
    rateLimitPerMinute: rateLimit === undefined ? undefined : Number(rateLimit) || null,
    listen,
    onListening: (url) => console.error(`nettrail: listening on ${url}; capture is starting`),
    conntrackSysctls: values['conntrack-sysctls'] === true,
    ovsRundirs: values['ovs-rundir'] as string[] | undefined,
    dropRateLimit: dropRateLimit === undefined ? undefined : Number(dropRateLimit),
  });
  if (user) await dropPrivileges(service, user, 'path' in store ? store.path : null, (message) => console.error(`nettrail: ${message}`));
  const status = service.capture.status();
  console.error(`nettrail: capturing on ${status.points.length} interfaces in ${service.capture.namespaces().length} namespaces of node ${service.node}; serving ${service.url}`);
  const shutdown = (signal: string) => {
    console.error(`nettrail: ${signal}: detaching and writing out what was captured`);
    service.close().then(
      () => process.exit(0),
      (err) => {
        console.error(`nettrail: shutdown: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

/** The client port the port-reuse scenario's traffic connects from, every time. */
const REUSED_CLIENT_PORT = 40404;

/** How often a diagnosis scenario's connections repeat under `lab up`. */
const DIAGNOSIS_TRAFFIC_EVERY_MS = 5000;

/** --scenario values: default fullnat, `all` for every one. */
function labScenarios(given: string[] | undefined): LabScenario[] {
  if (!given || given.length === 0) return ['fullnat'];
  if (given.includes('all')) return [...LAB_SCENARIOS];
  const unknown = given.filter((s) => !(LAB_SCENARIOS as readonly string[]).includes(s));
  if (unknown.length > 0) throw new UsageError(`--scenario ${unknown.join(', ')}: one of ${LAB_SCENARIOS.join(', ')}, all`);
  return [...new Set(given)] as LabScenario[];
}

const labTupleText = (t: LabTuple) => `${formatEndpoint(t.src, t.sport)} -> ${formatEndpoint(t.dst, t.dport)}`;

/** `lab status`: a line per scenario with a tuple to paste from each side. */
async function labStatusTable(prefix: string, scenarios: LabScenario[]): Promise<void> {
  const rows = await Promise.all(
    scenarios.map(async (scenario) => {
      const status = await labStatus(prefix, scenario);
      const tuples = await labRecentTuples(prefix, scenario);
      const existing = status.namespaces.filter((ns) => ns.exists).length;
      const state = status.up ? (status.traffic ? 'up' : 'up, no traffic') : existing > 0 ? `broken (${existing}/${status.namespaces.length} namespaces)` : 'down';
      return [scenario, state, tuples ? labTupleText(tuples.client) : '-', tuples ? labTupleText(tuples.server) : '-'];
    }),
  );
  const table = [['SCENARIO', 'STATE', 'CLIENT SIDE', 'SERVER SIDE'], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) console.log(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
  if (rows.some((row) => row[2] !== '-')) console.log('(a recent connection of each lab, as its client sent it and its server received it: paste either into the UI or nettrail trace)');
  if (rows.some((row) => row[1].startsWith('broken'))) console.log(`(a broken lab: nettrail lab up${prefix === 'nt' ? '' : ` --prefix ${prefix}`} rebuilds it)`);
}

async function lab(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { scenario: { type: 'string', multiple: true }, prefix: { type: 'string', default: 'nt' }, json: { type: 'boolean' } });
  const [action] = positionals;
  const prefix = values.prefix as string;
  const scenarios = labScenarios(values.scenario as string[] | undefined);
  if (action === 'up') {
    for (const scenario of scenarios) {
      // Idempotent: a lab that is up with its traffic is kept; one partly there is built again.
      const status = await labStatus(prefix, scenario);
      if (status.up && status.traffic) {
        console.log(`lab up already, ${scenario}: ${status.namespaces.map((n) => n.name).join(', ')}`);
        continue;
      }
      if (status.namespaces.some((ns) => ns.exists)) {
        console.log(`lab ${scenario} is there but not working: building it again`);
        await destroyLab(prefix, scenario);
      }
      const created = await createLab({ prefix, scenario, persist: true });
      await created.request();
      const localPort = scenario === 'port-reuse' ? REUSED_CLIENT_PORT : undefined;
      await created.startTraffic(2000, { localPort });
      console.log(`lab up, ${scenario} (${LAB_SCENARIO_SUMMARY[scenario]}): ${created.namespaces.map((n) => n.name).join(', ')}`);
      console.log(`  client ${created.nodes.client.ifaces[0].ip} -> service ${formatEndpoint(created.service.ip, created.service.port)} -> ` +
        `${created.backends.map((b) => formatEndpoint(b.ip, b.port)).join(' / ')}` +
        `${created.masqueradeIp ? `, masqueraded as ${created.masqueradeIp}` : ''}; a request every 2 s${localPort ? ` from port ${localPort}` : ''}`);
      if (isDiagnosisScenario(scenario)) {
        await startScenarioTraffic(created, scenario, DIAGNOSIS_TRAFFIC_EVERY_MS);
        console.log(`  ${scenario} traffic every ${DIAGNOSIS_TRAFFIC_EVERY_MS / 1000} s: nettrail explain shows what went wrong (docs/diagnosis.md)`);
      }
      if (created.ovsRundir) console.log(`  Open vSwitch runs in ${created.ovsRundir}: nettrail serve --ovs-rundir ${created.ovsRundir}`);
      if (scenario !== 'ovs') {
        await startDropDemo(created, 2000);
        console.log(`  a drop: TCP to ${formatEndpoint(created.server.ip, DEMO_BLOCKED_PORT)} is dropped in the FORWARD chain of ` +
          `${created.nodes.router.netns.name}; the client tries every 2 s`);
      }
    }
    return;
  }
  if (action === 'down') {
    await destroyLab(prefix);
    console.log('lab down');
    return;
  }
  if (action === 'status') {
    // Without --scenario: every scenario, a line each (--json: fullnat's, as before).
    if (!values.json) return labStatusTable(prefix, values.scenario === undefined ? [...LAB_SCENARIOS] : scenarios);
    const statuses = await Promise.all(scenarios.map((scenario) => labStatus(prefix, scenario)));
    console.log(JSON.stringify(statuses.length === 1 ? statuses[0] : statuses, null, 2));
    return;
  }
  throw new UsageError(action === undefined ? 'lab: say up, down or status' : `lab ${JSON.stringify(action)}: say up, down or status`);
}

async function get(server: string, path: string, params: Record<string, string | string[] | undefined>): Promise<Response> {
  const url = new URL(path, server);
  for (const [name, value] of Object.entries(params)) {
    for (const one of value === undefined ? [] : [value].flat()) url.searchParams.append(name, one);
  }
  const token = process.env.NETTRAIL_TOKEN;
  const response = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {}).catch((err: Error) => {
    const cause = err.cause as { code?: string; message?: string } | undefined;
    throw new Error(`cannot reach ${server} (${cause?.code ?? cause?.message ?? err.message}): is nettrail serve running there? (--server URL)`);
  });
  if (!response.ok) {
    type Problem = { code: string; message: string };
    const body = (await response.json().catch(() => null)) as { error?: Problem; errors?: Problem[] } | null;
    const problems = body?.errors ?? (body?.error ? [body.error] : []);
    const message = problems.length > 0 ? problems.map((p) => `${p.code}: ${p.message}`).join('; ') : `HTTP ${response.status} from ${url}`;
    // A request the server finds malformed is a usage error, as a malformed TUPLE is.
    throw response.status === 400 ? new UsageError(message) : new Error(message);
  }
  return response;
}

const TUPLE_HINT = 'a TUPLE is SRC:SPORT -> DST:DPORT as seen at any hop, e.g. "10.0.0.1:43210 -> 10.0.0.2:80" (-> or →; docs/interface.md)';

const tupleText = (t: FourTupleJson) => `${formatEndpoint(t.src, t.sport)} -> ${formatEndpoint(t.dst, t.dport)}`;

/** One positional TUPLE, validated here so that a bad one exits 2 before any request. */
function tupleArgument(positionals: string[]): string {
  const text = positionals.join(' ');
  if (text === '') throw new UsageError('a TUPLE is required', TUPLE_HINT);
  parseTuple(text);
  return text;
}

/** Which connection: `--id ID`, or TUPLE with `--at TIME` (default: the newest of the tuple), as the API's query parameters. */
function connectionArguments(positionals: string[], values: Record<string, unknown>): Record<string, string | undefined> {
  const id = values.id as string | undefined;
  if (id === undefined) return { tuple: tupleArgument(positionals), at: values.at as string | undefined };
  if (positionals.length > 0 || values.at !== undefined) throw new UsageError('give either --id or a TUPLE (with --at), not both');
  return { id };
}

async function trace(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    at: { type: 'string' },
    id: { type: 'string' },
    list: { type: 'boolean' },
    server: { type: 'string', default: DEFAULT_SERVER },
    json: { type: 'boolean' },
  });
  const response = await get(values.server as string, '/api/v1/connections', connectionArguments(positionals, values));
  const { connection } = (await response.json()) as { connection: ConnectionJson };
  if (values.list) {
    // Every connection that used the tuple, oldest first; the one shown without --list is marked.
    const all = [...connection.others, { id: connection.id ?? '', first_seen: connection.first_seen, last_seen: connection.last_seen, points: connection.points.length, isn: connection.flows.find((f) => f.syn_seq !== null)?.syn_seq ?? null }]
      .sort((a, b) => (a.first_seen < b.first_seen ? -1 : a.first_seen > b.first_seen ? 1 : 0));
    if (values.json) {
      console.log(JSON.stringify(all, null, 2));
      return;
    }
    for (const c of all) {
      const mark = c.id === connection.id ? '*' : ' ';
      console.log(`${mark} ${c.id.padEnd(16)}  ${c.first_seen} .. ${c.last_seen}  ${c.points} points${c.isn === null ? '' : `  isn ${c.isn}`}`);
    }
    return;
  }
  if (values.json) {
    console.log(JSON.stringify(connection, null, 2));
    return;
  }
  console.log(`${connection.proto} connection ${connection.id ?? '(no flow seen)'}, ${connection.first_seen} .. ${connection.last_seen}`);
  if (connection.others.length > 0) {
    console.log(`  ${connection.others.length} other connection${connection.others.length === 1 ? '' : 's'} used this tuple (trace --list; trace --id ID shows one)`);
  }
  console.log(`  client side  ${tupleText(connection.tuples[0])}`);
  for (const hop of connection.hops) {
    console.log(`  ${hop.kind.padEnd(7)} via ${hop.via} at ${hop.node}/${hop.netns} (zone ${hop.zone})`);
    console.log(`    ${tupleText(hop.before)}  =>  ${tupleText(hop.after)}`);
  }
  if (connection.hops.length === 0) console.log('  no NAT hop observed');
  for (const point of connection.points) console.log(`  seen at ${point.node}/${point.netns}/${point.iface}: ${point.packets} packets, ${point.bytes} bytes`);
  for (const drop of connection.drops) console.log(`  DROP at ${drop.node}/${drop.netns}/${drop.iface}: ${drop.reason} (${drop.location}) ${drop.cause}`);
}

/** What went wrong with one connection, where, and the packets that prove it (docs/diagnosis.md). */
async function explain(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { at: { type: 'string' }, id: { type: 'string' }, server: { type: 'string', default: DEFAULT_SERVER }, json: { type: 'boolean' } });
  const response = await get(values.server as string, '/api/v1/connections/diagnosis', connectionArguments(positionals, values));
  const diagnosis = (await response.json()) as DiagnosisJson;
  if (values.json) {
    console.log(JSON.stringify(diagnosis, null, 2));
    return;
  }
  console.log(`connection ${diagnosis.connection_id ?? '(no flow seen)'}: ${diagnosis.path.map((p) => `${p.node}/${p.netns}/${p.iface}`).join(' -> ') || 'no packets'}`);
  if (diagnosis.findings.length === 0) console.log('  nothing went wrong that nettrail can tell from its packets');
  for (const f of diagnosis.findings) {
    console.log(`${f.severity.toUpperCase()} ${f.kind} ${f.where.text}`);
    console.log(`  ${f.summary}`);
    for (const p of f.evidence.packets) {
      console.log(`    ${p.ts}  ${p.node}/${p.netns}/${p.iface}  ${p.way}  ${p.role.padEnd(14)}  seq ${p.seq} len ${p.len} [${p.flags.join(',')}]  packet ${p.packet_id}`);
    }
    for (const d of f.evidence.drops) console.log(`    ${d.ts}  DROP at ${d.node}/${d.netns}/${d.iface}: ${d.reason} (${d.location})`);
    if (f.evidence.figures.length > 0) console.log(`    ${f.evidence.figures.map((x) => `${x.name} ${x.value}`).join(', ')}`);
    console.log(`  what to do: ${f.advice}`);
  }
  const t = diagnosis.timing;
  if (t.exchanges > 0) console.log(`time: ${t.exchanges} request/response turns, server ${(t.server_ns / 1e6).toFixed(1)} ms, network ${(t.network_ns / 1e6).toFixed(1)} ms`);
  for (const h of t.handshake) console.log(`  handshake seen at ${h.point.node}/${h.point.netns}/${h.point.iface}: ${(h.rtt_ns / 1e6).toFixed(3)} ms`);
  if (diagnosis.truncated) console.log(`(diagnosed from the first ${diagnosis.packets} packets)`);
}

async function pcap(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    output: { type: 'string', short: 'o' },
    from: { type: 'string' },
    to: { type: 'string' },
    point: { type: 'string', multiple: true },
    split: { type: 'string' },
    at: { type: 'string' },
    id: { type: 'string' },
    server: { type: 'string', default: DEFAULT_SERVER },
  });
  const which = connectionArguments(positionals, values);
  if (!values.output) throw new UsageError('-o FILE is required');
  if (values.split !== undefined && values.split !== 'point') throw new UsageError(`--split ${values.split}: only --split point is known`);
  const split = values.split as 'point' | undefined;
  const server = values.server as string;
  const { connection } = (await (await get(server, '/api/v1/connections', which)).json()) as { connection: ConnectionJson };
  const expected = connection.points.reduce((sum, point) => sum + point.packets, 0);
  const points = (values.point as string[] | undefined)?.join(',');
  // The connection just looked up, by its id: the file holds that one, whatever else uses the tuple by then.
  // An unknown --point is the server's 400 naming the connection's points, a usage error here.
  const response = await get(server, '/api/v1/pcap', { ...(connection.id === null ? which : { id: connection.id }), from: values.from as string | undefined, to: values.to as string | undefined, points, split });
  const counter = new PcapngPacketCounter();
  // A zip's packets are not counted as it goes by: its bytes are.
  const progress = () => split === 'point'
    ? `${(counter.bytes / 1e6).toFixed(1)} MB (zip of one file per capture point)`
    : `${counter.packets.toLocaleString('en')} of ~${expected.toLocaleString('en')} packets, ${(counter.bytes / 1e6).toFixed(1)} MB`;
  const ticker = process.stderr.isTTY ? setInterval(() => process.stderr.write(`\r${progress()}  `), 250) : undefined;
  const counted = async function* (chunks: AsyncIterable<Uint8Array>) {
    for await (const chunk of chunks) {
      if (split === 'point') counter.bytes += chunk.length;
      else counter.push(chunk);
      yield chunk;
    }
  };
  try {
    await pipeline(Readable.fromWeb(response.body! as never), counted, createWriteStream(values.output as string));
  } finally {
    clearInterval(ticker);
  }
  console.error(`${process.stderr.isTTY ? '\r' : ''}wrote ${values.output}: ${progress()}`);
}

/** `nettrail flows` options: the API's filters, each passed on as the query parameter of the same name. */
const FLOW_FILTER_OPTIONS = {
  ip: { type: 'string' },
  src: { type: 'string' },
  dst: { type: 'string' },
  port: { type: 'string' },
  sport: { type: 'string' },
  dport: { type: 'string' },
  proto: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  state: { type: 'string', multiple: true },
  has: { type: 'string', multiple: true },
  node: { type: 'string' },
  netns: { type: 'string' },
  iface: { type: 'string' },
  order: { type: 'string' },
  limit: { type: 'string', default: '50' },
  cursor: { type: 'string' },
} as const;

async function flows(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...FLOW_FILTER_OPTIONS, server: { type: 'string', default: DEFAULT_SERVER }, json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`nettrail flows takes options only, not ${JSON.stringify(positionals.join(' '))}`);
  const params: Record<string, string | string[] | undefined> = {};
  for (const name of Object.keys(FLOW_FILTER_OPTIONS)) {
    const value = values[name] as string | string[] | undefined;
    // --has retrans,rst is --has retrans --has rst.
    params[name] = Array.isArray(value) ? value.flatMap((one) => one.split(',')) : value;
  }
  const response = await get(values.server as string, '/api/v1/flows', params);
  const body = (await response.json()) as FlowsResponseJson;
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }
  for (const f of body.flows) {
    console.log(
      `${f.start}  ${f.id}  ${f.proto} ${formatEndpoint(f.client.ip, f.client.port)} -> ${formatEndpoint(f.server.ip, f.server.port)}  ` +
        `${f.node}/${f.netns}/${f.iface}  ${f.conn_state} ${f.history}  ${f.packets.c2s}/${f.packets.s2c} pkts` +
        `${f.retrans.c2s + f.retrans.s2c > 0 ? `  retrans ${f.retrans.c2s}/${f.retrans.s2c}` : ''}  ${f.close}`,
    );
  }
  if (body.next_cursor !== null) console.error(`more: repeat with --cursor ${body.next_cursor}`);
}

/** `nettrail wireshark-profile -o FILE.zip`: the profile the server's /api/v1/wireshark-profile gives, made here. */
async function wiresharkProfile(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { output: { type: 'string', short: 'o' } });
  if (positionals.length > 0) throw new UsageError(`nettrail wireshark-profile takes -o FILE.zip only, not ${JSON.stringify(positionals.join(' '))}`);
  if (!values.output) throw new UsageError('-o FILE.zip is required');
  await pipeline(Readable.from(wiresharkProfileZip()), createWriteStream(values.output as string));
  console.error(`wrote ${values.output}: unzip it in ~/.config/wireshark/profiles/ (or %APPDATA%\\Wireshark\\profiles\\), then wireshark -C ${WIRESHARK_PROFILE_NAME}`);
}

const commands: Record<string, (args: string[]) => Promise<void>> = { serve, lab, trace, explain, pcap, flows, 'wireshark-profile': wiresharkProfile };

/** The command being run, for the hint after an error. */
let current: string | undefined;

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    if (command === undefined) throw new UsageError('a command is required', `usage:\n${usage()}`);
    console.log(`usage:\n${usage()}`);
    return;
  }
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command ${JSON.stringify(command)}`, `usage:\n${usage()}`);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(`usage:\n${usage(command)}`);
    return;
  }
  current = command;
  await run(args);
}

main(process.argv.slice(2)).catch((err: Error) => {
  if (err instanceof UsageError || err instanceof TupleError) {
    const hint = err instanceof UsageError && err.hint !== undefined ? err.hint : err instanceof TupleError ? TUPLE_HINT : `nettrail ${current} --help shows its options`;
    console.error(`nettrail: ${err.message}\n${hint}`);
    process.exit(2);
  }
  console.error(`nettrail: ${(err as { code?: string }).code ? `${(err as { code?: string }).code}: ` : ''}${err.message}`);
  process.exit(1);
});
