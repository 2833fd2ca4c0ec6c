#!/usr/bin/env node
// The `nettrail` command: serve, lab, trace, pcap, flows (../shared/contract.md).
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createLab, destroyLab, labStatus } from '../test/lab/lab.js';
import type { ConnectionJson, FlowJson, FourTupleJson } from './schemas.js';
import { startService } from './service.js';
import { formatEndpoint, parseTuple, TupleError } from './tuple.js';

const USAGE = `usage:
  nettrail serve [--listen HOST:PORT] [--store DIR | --clickhouse-url URL] [--netns NAME|all]... [--iface NAME]...
                 [--snaplen BYTES] [--token TOKEN]
  nettrail lab up|down|status
  nettrail trace TUPLE [--at TIME] [--server URL] [--json]
  nettrail pcap TUPLE -o FILE [--from TIME] [--to TIME] [--server URL]
  nettrail flows [--limit N] [--server URL] [--json]`;

class UsageError extends Error {}

const DEFAULT_SERVER = 'http://127.0.0.1:7070';

type OptionValues = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], options: ParseArgsConfig['options']): { values: OptionValues; positionals: string[] } {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true }) as { values: OptionValues; positionals: string[] };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen ${text}: expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { host: match[1] ?? match[2], port };
}

async function serve(args: string[]): Promise<void> {
  const { values } = parse(args, {
    listen: { type: 'string', default: '127.0.0.1:7070' },
    store: { type: 'string' },
    'clickhouse-url': { type: 'string' },
    netns: { type: 'string', multiple: true },
    iface: { type: 'string', multiple: true },
    snaplen: { type: 'string' },
    token: { type: 'string' },
  });
  if (values.store && values['clickhouse-url']) throw new UsageError('give --store or --clickhouse-url, not both');
  const listen = parseListen(values.listen as string);
  const loopback = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(listen.host);
  if (!loopback && !values.token) throw new UsageError(`--listen ${values.listen} is not a loopback address: give --token TOKEN so that the API is not open to anyone`);
  if (values.snaplen !== undefined && !/^\d+$/.test(values.snaplen as string)) throw new UsageError(`--snaplen ${values.snaplen} is not a number of bytes`);
  const netns = values.netns as string[] | undefined;
  const service = await startService({
    store: values['clickhouse-url'] ? { url: values['clickhouse-url'] as string } : { path: (values.store as string | undefined) ?? './nettrail-data' },
    netns: !netns || netns.includes('all') ? 'all' : netns,
    ifaces: (values.iface as string[] | undefined) ?? null,
    snaplen: values.snaplen === undefined ? undefined : Number(values.snaplen),
    token: values.token as string | undefined,
    listen,
  });
  const status = service.capture.status();
  console.error(`nettrail: capturing on ${status.points.length} interfaces in ${service.capture.namespaces().length} namespaces; serving ${service.url}`);
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

async function lab(args: string[]): Promise<void> {
  const { positionals } = parse(args, {});
  const [action] = positionals;
  if (action === 'up') {
    const created = await createLab({ persist: true });
    await created.request();
    created.startTraffic(2000);
    console.log(`lab up: ${created.namespaces.map((n) => n.name).join(', ')}`);
    console.log(`  client ${created.nodes.client.ifaces[0].ip} -> service ${formatEndpoint(created.service.ip, created.service.port)}` +
      ` (DNAT to ${formatEndpoint(created.server.ip, created.server.port)}, MASQUERADE as ${created.masqueradeIp}); a request every 2 s`);
    return;
  }
  if (action === 'down') {
    await destroyLab();
    console.log('lab down');
    return;
  }
  if (action === 'status') {
    console.log(JSON.stringify(await labStatus(), null, 2));
    return;
  }
  throw new UsageError('nettrail lab up|down|status');
}

async function get(server: string, path: string, params: Record<string, string | undefined>): Promise<Response> {
  const url = new URL(path, server);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, value);
  const response = await fetch(url);
  if (!response.ok) {
    const body = (await response.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    throw new Error(body?.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status} from ${url}`);
  }
  return response;
}

const tupleText = (t: FourTupleJson) => `${formatEndpoint(t.src, t.sport)} -> ${formatEndpoint(t.dst, t.dport)}`;

/** One positional TUPLE, validated here so that a bad one exits 2 before any request. */
function tupleArgument(positionals: string[]): string {
  const text = positionals.join(' ');
  if (text === '') throw new UsageError('a TUPLE is required, e.g. "10.0.0.1:43210 -> 10.0.0.2:80"');
  parseTuple(text);
  return text;
}

async function trace(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { at: { type: 'string' }, server: { type: 'string', default: DEFAULT_SERVER }, json: { type: 'boolean' } });
  const tuple = tupleArgument(positionals);
  const response = await get(values.server as string, '/api/v1/connections', { tuple, at: values.at as string | undefined });
  const { connection } = (await response.json()) as { connection: ConnectionJson };
  if (values.json) {
    console.log(JSON.stringify(connection, null, 2));
    return;
  }
  console.log(`${connection.proto} connection, ${connection.first_seen} .. ${connection.last_seen}`);
  console.log(`  client side  ${tupleText(connection.tuples[0])}`);
  for (const hop of connection.hops) {
    console.log(`  ${hop.kind.padEnd(7)} via ${hop.via} at ${hop.node}/${hop.netns} (zone ${hop.zone})`);
    console.log(`    ${tupleText(hop.before)}  =>  ${tupleText(hop.after)}`);
  }
  if (connection.hops.length === 0) console.log('  no NAT hop observed');
  for (const point of connection.points) console.log(`  seen at ${point.node}/${point.netns}/${point.iface}: ${point.packets} packets, ${point.bytes} bytes`);
  for (const drop of connection.drops) console.log(`  DROP at ${drop.node}/${drop.netns}/${drop.iface}: ${drop.reason} (${drop.location}) ${drop.cause}`);
}

async function pcap(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    output: { type: 'string', short: 'o' },
    from: { type: 'string' },
    to: { type: 'string' },
    server: { type: 'string', default: DEFAULT_SERVER },
  });
  const tuple = tupleArgument(positionals);
  if (!values.output) throw new UsageError('-o FILE is required');
  const response = await get(values.server as string, '/api/v1/pcap', { tuple, from: values.from as string | undefined, to: values.to as string | undefined });
  await pipeline(Readable.fromWeb(response.body! as never), createWriteStream(values.output as string));
  console.error(`wrote ${values.output}`);
}

async function flows(args: string[]): Promise<void> {
  const { values } = parse(args, { limit: { type: 'string', default: '50' }, server: { type: 'string', default: DEFAULT_SERVER }, json: { type: 'boolean' } });
  const response = await get(values.server as string, '/api/v1/flows', { limit: values.limit as string });
  const body = (await response.json()) as { flows: FlowJson[] };
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }
  for (const f of body.flows) {
    console.log(
      `${f.start}  ${f.proto} ${formatEndpoint(f.client.ip, f.client.port)} -> ${formatEndpoint(f.server.ip, f.server.port)}  ` +
        `${f.node}/${f.netns}/${f.iface}  ${f.conn_state} ${f.history}  ${f.packets.c2s}/${f.packets.s2c} pkts`,
    );
  }
}

const commands: Record<string, (args: string[]) => Promise<void>> = { serve, lab, trace, pcap, flows };

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  const run = command ? commands[command] : undefined;
  if (!run) throw new UsageError(command ? `unknown command ${command}` : 'a command is required');
  await run(args);
}

main(process.argv.slice(2)).catch((err: Error) => {
  if (err instanceof UsageError || err instanceof TupleError) {
    console.error(`nettrail: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(`nettrail: ${(err as { code?: string }).code ? `${(err as { code?: string }).code}: ` : ''}${err.message}`);
  process.exit(1);
});
