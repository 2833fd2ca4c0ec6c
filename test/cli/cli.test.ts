// The `nettrail` command line as a user meets it: a malformed command line is one line saying why
// and a hint (the usage only for --help, no command or an unknown one); `→` is a tuple arrow; a
// 400 with several bad parameters is one line naming each; README.md's synopsis is the CLI's;
// `serve --node NAME` names its capture points' node.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../api/server.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { packageRoot } from '../../model/package-root.js';
import type { CaptureStatusJson } from '../../api/schemas/status.js';
import { startServe } from '../../bench/support/serve-process.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';

const CLI = fileURLToPath(new URL('../../service/cli.js', import.meta.url));

let temp: TempStore;
let server: FastifyInstance;
let url: string;

before(async () => {
  temp = await openTempStore('cli');
  server = await buildServer(storeAppOptions(temp.store, temp.writer));
  url = await server.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await server?.close();
  await temp?.close();
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const lines = (text: string) => text.trimEnd().split('\n');

test('a malformed command line: one line saying why and a one-line hint, exit 2, no usage', async () => {
  const cases: Array<[string[], RegExp, RegExp]> = [
    [['trace', '10.0.0.1:1'], /^nettrail: expected "SRC:SPORT -> DST:DPORT", got "10\.0\.0\.1:1"$/, /^a TUPLE is SRC:SPORT -> DST:DPORT .*→/],
    [['trace'], /^nettrail: a TUPLE is required$/, /^a TUPLE is/],
    [['pcap', '10.0.0.1:70000 -> 10.0.0.2:80', '-o', '/dev/null'], /^nettrail: source port "70000"/, /^a TUPLE is/],
    [['serve', '--bogus'], /^nettrail: Unknown option '--bogus'$/, /^nettrail serve --help shows its options$/],
    [['serve', '--node', 'a/b'], /^nettrail: --node "a\/b": /, /^nettrail serve --help/],
    [['serve', '--listen', 'nowhere'], /^nettrail: --listen nowhere: expected HOST:PORT/, /^nettrail serve --help/],
    [['lab', 'sideways'], /^nettrail: lab "sideways": say up, down or status$/, /^nettrail lab --help/],
    [['lab', 'up', '--scenario', 'mesh'], /^nettrail: --scenario mesh: one of /, /^nettrail lab --help/],
    [['flows', 'extra'], /^nettrail: nettrail flows takes options only/, /^nettrail flows --help/],
  ];
  for (const [args, message, hint] of cases) {
    const { code, stdout, stderr } = await cli(args);
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.equal(stdout, '');
    const [first, second, ...rest] = lines(stderr);
    assert.match(first!, message, args.join(' '));
    assert.match(second!, hint, args.join(' '));
    assert.deepEqual(rest, [], `${args.join(' ')}: no usage after the hint`);
  }
});

test('the usage: on stdout for --help (all, or one command), on stderr after no or an unknown command', async () => {
  const all = await cli(['--help']);
  assert.equal(all.code, 0);
  assert.equal(all.stderr, '');
  const commands = lines(all.stdout).filter((line) => line.startsWith('nettrail ')).map((line) => line.split(' ')[1]);
  assert.deepEqual(commands, ['serve', 'lab', 'trace', 'explain', 'pcap', 'wireshark-profile', 'flows']);
  const serve = await cli(['serve', '--help']);
  assert.equal(serve.code, 0);
  assert.match(serve.stdout, /^usage:\nnettrail serve .*--node NAME/s);
  assert.ok(serve.stdout.includes('--drop-rate-limit') && !serve.stdout.includes('nettrail flows'));
  for (const args of [[], ['frobnicate']]) {
    const { code, stdout, stderr } = await cli(args);
    assert.equal(code, 2);
    assert.equal(stdout, '');
    assert.match(stderr, args.length === 0 ? /^nettrail: a command is required\nusage:\n/ : /^nettrail: unknown command "frobnicate"\nusage:\n/);
    assert.ok(stderr.endsWith(all.stdout.slice('usage:\n'.length)));
  }
});

test('→ is a tuple arrow: the tuple reaches the server as parsed', async () => {
  for (const tuple of ['10.9.0.1:40000 → 10.9.0.2:80', '10.9.0.1:40000→10.9.0.2:80', '10.9.0.1:40000 -> 10.9.0.2:80']) {
    const { code, stderr } = await cli(['trace', tuple, '--server', url]);
    // Nothing is stored: the server looked the tuple up and answers 404 naming it.
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^nettrail: NOT_FOUND: nothing is known of tcp 10\.9\.0\.1:40000 -> 10\.9\.0\.2:80: /, tuple);
    assert.equal(lines(stderr).length, 1);
  }
});

test('several bad parameters: one line naming each, as the API reports them in one 400', async () => {
  const { code, stderr } = await cli(['flows', '--ip', 'not-an-ip', '--port', '70000', '--from', 'noon', '--server', url]);
  assert.equal(code, 2);
  const [first, ...rest] = lines(stderr);
  assert.equal(
    first,
    'nettrail: BAD_PARAMETER: ip: "not-an-ip" is not an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16); ' +
      'BAD_REQUEST: port: must be <= 65535; ' +
      'BAD_TIME: from "noon" is not an ISO-8601 time (2026-11-21T19:23:03.123456789Z) or epoch milliseconds',
  );
  assert.deepEqual(rest, ['nettrail flows --help shows its options']);
});

test('README.md shows the synopsis `nettrail --help` prints, option for option', async () => {
  const readme = readFileSync(`${packageRoot}/README.md`, 'utf8');
  const block = /## Using it\n\n```\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README.md has a code block right under "## Using it"');
  const { stdout } = await cli(['--help']);
  assert.equal(block, stdout.slice('usage:\n'.length));
});

test('serve --node NAME: its capture points and log name that node', async (t) => {
  const netns = `ntcli${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-cli-'));
  t.after(() => {
    execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  execFileSync('ip', ['netns', 'add', netns]);
  execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  const serve = await startServe(['--store', path.join(dir, 'store'), '--netns', netns, '--node', 'edge-7']);
  t.after(() => serve.kill());
  assert.match(serve.stderr(), / namespaces of node edge-7; serving /);
  const status = (await (await fetch(`${serve.url}/api/v1/capture/status`)).json()) as CaptureStatusJson;
  assert.ok(status.points.length > 0);
  assert.deepEqual([...new Set(status.points.map((p) => `${p.node}/${p.netns}`))], [`edge-7/${netns}`]);
});
