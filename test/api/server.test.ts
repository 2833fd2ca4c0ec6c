// The API on real listening servers: the bearer token off 127.0.0.1, the CLI's
// refusal to listen off loopback without one, rate limiting, `nettrail flows`
// over HTTP, /docs in a real browser fetching nothing from elsewhere, and one
// real capture through the lab found by flow search and counted in /metrics.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { chromium } from 'playwright-core';
import { buildServer } from '../../api/server.js';
import type { FlowsResponseJson } from '../../api/schemas/flows.js';
import { makeFlows, writeFlows } from '../support/api-fixture.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { labWithService, NODE, requestRecorded } from '../support/service-fixture.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';

const CLI = fileURLToPath(new URL('../../service/cli.js', import.meta.url));
const TOKEN = 'api-test-token-5f1e';

let temp: TempStore;
const servers: FastifyInstance[] = [];

before(async () => {
  temp = await openTempStore('api-server');
  await writeFlows(temp.writer, makeFlows(7, 300));
});

after(async () => {
  for (const server of servers) await server.close();
  await temp?.close();
});

/** A real server on `host`, closed after the tests. */
async function listen(host: string, options: Parameters<typeof storeAppOptions>[2] = {}): Promise<string> {
  const server = await buildServer(storeAppOptions(temp.store, temp.writer, options));
  servers.push(server);
  return server.listen({ host, port: 0 });
}

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

test('off 127.0.0.1 with a token: the data needs it, the UI, docs and health do not', async () => {
  // 127.0.0.2 is loopback too, but not the default address: the token is what guards it here.
  const url = await listen('127.0.0.2', { token: TOKEN });
  assert.match(url, /^http:\/\/127\.0\.0\.2:\d+$/);
  // Other spellings of the same routes, too.
  for (const route of ['/api/v1/flows', '/api/v1/flows/abc', '/api/v1/nat', '/api/v1/capture/status', '/metrics', '/%61pi/v1/flows', '/api/v1/flows/', '/%6Detrics', '/metrics/', '/api/v1/%66lows/abc']) {
    for (const authorization of [undefined, 'Bearer wrong-token', `Bearer ${TOKEN}x`, TOKEN, `bearer ${TOKEN}`]) {
      const response = await fetch(`${url}${route}`, { headers: authorization ? { authorization } : {} });
      assert.equal(response.status, 401, `${route} with ${authorization}`);
      assert.deepEqual(await response.json(), {
        error: { code: 'UNAUTHORIZED', message: "this server requires Authorization: Bearer <token> (or the UI's token cookie)" },
      });
    }
    for (const cookie of ['nettrail_token=wrong', `other=${TOKEN}`, `nettrail_token=${TOKEN}x`, 'nettrail_token=%E0%A4%A']) {
      assert.equal((await fetch(`${url}${route}`, { headers: { cookie } })).status, 401, `${route} with cookie ${cookie}`);
    }
    // The header for scripts, the cookie the web UI sets for its fetches and its PCAP download link.
    for (const headers of [{ authorization: `Bearer ${TOKEN}` }, { cookie: `theme=dark; nettrail_token=${encodeURIComponent(TOKEN)}` }] as Array<Record<string, string>>) {
      const allowed = await fetch(`${url}${route}`, { headers });
      assert.notEqual(allowed.status, 401, `${route} with ${JSON.stringify(headers)}`);
      assert.ok(allowed.status < 500, route);
    }
  }
  for (const route of ['/healthz', '/docs', '/openapi.json']) assert.equal((await fetch(`${url}${route}`)).status, 200, route);
  const spec = (await (await fetch(`${url}/openapi.json`)).json()) as { security: unknown };
  assert.deepEqual(spec.security, [{ bearer: [] }]);
});

test('the CLI refuses a non-loopback --listen without --token, and bad options, with exit code 2', async () => {
  for (const listenOn of ['0.0.0.0:7071', '[::]:7071', '192.0.2.1:7071', '[fd00::1]:7071', 'example.com:7071']) {
    const { code, stderr } = await cli(['serve', '--listen', listenOn]);
    assert.equal(code, 2, `${listenOn}: ${stderr}`);
    assert.match(stderr, /is not a loopback address: give --token TOKEN/, listenOn);
  }
  const rate = await cli(['serve', '--rate-limit', 'many']);
  assert.equal(rate.code, 2);
  assert.match(rate.stderr, /--rate-limit many is not a number/);
});

test('rate limiting: 429 RATE_LIMITED past the limit, with Retry-After', async () => {
  const url = await listen('127.0.0.1', { rateLimitPerMinute: 5 });
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${url}/api/v1/flows?limit=1`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-ratelimit-limit'), '5');
  }
  const limited = await fetch(`${url}/api/v1/flows?limit=1`);
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  const body = (await limited.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'RATE_LIMITED');
  assert.match(body.error.message, /more than 5 requests a minute/);
});

test('nettrail flows: the API\'s filters and pages, as text or JSON, with NETTRAIL_TOKEN', async () => {
  const url = await listen('127.0.0.1', { token: TOKEN });
  const env = { NETTRAIL_TOKEN: TOKEN };
  const api = async (query: string) =>
    (await (await fetch(`${url}/api/v1/flows?${query}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as FlowsResponseJson;

  const json = await cli(['flows', '--src', '10.0.0.0/8', '--has', 'retrans', '--limit', '5', '--json', '--server', url], env);
  assert.equal(json.code, 0, json.stderr);
  const first = JSON.parse(json.stdout) as FlowsResponseJson;
  assert.deepEqual(first, await api('src=10.0.0.0/8&has=retrans&limit=5'));
  assert.equal(first.flows.length, 5);
  assert.ok(first.next_cursor);

  const next = await cli(['flows', '--src', '10.0.0.0/8', '--has', 'retrans', '--limit', '5', '--json', '--cursor', first.next_cursor!, '--server', url], env);
  assert.deepEqual(JSON.parse(next.stdout), await api(`src=10.0.0.0/8&has=retrans&limit=5&cursor=${first.next_cursor}`));

  const several = await cli(['flows', '--has', 'retrans,rst', '--state', 'RSTO', '--state', 'RSTR', '--state', 'REJ', '--order', 'bytes', '--json', '--server', url], env);
  assert.deepEqual(JSON.parse(several.stdout), await api('has=retrans&has=rst&state=RSTO&state=RSTR&state=REJ&order=bytes&limit=50'));

  const text = await cli(['flows', '--dport', '53', '--proto', 'udp', '--limit', '3', '--server', url], env);
  assert.equal(text.code, 0, text.stderr);
  const expected = await api('dport=53&proto=udp&limit=3');
  const lines = text.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  for (const [i, flow] of expected.flows.entries()) {
    assert.ok(lines[i].startsWith(`${flow.start}  ${flow.id}  udp ${flow.client.ip.includes(':') ? '[' : ''}${flow.client.ip}`), lines[i]);
  }
  assert.match(text.stderr, new RegExp(`more: repeat with --cursor ${expected.next_cursor}`));

  const bad = await cli(['flows', '--src', '10.0.0.0/33', '--server', url], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /BAD_PARAMETER: src: "10\.0\.0\.0\/33" is not an IPv4 or IPv6 address or CIDR range/);
  const unauthorized = await cli(['flows', '--server', url]);
  assert.equal(unauthorized.code, 1);
  assert.match(unauthorized.stderr, /UNAUTHORIZED/);
});

test('/docs in a browser: renders the operations, loads nothing from elsewhere', async () => {
  const url = await listen('127.0.0.1');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    const page = await browser.newPage();
    const requested: string[] = [];
    const errors: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${url}/docs`);
    await page.locator('.opblock-summary-path[data-path="/api/v1/flows"]').first().waitFor({ state: 'visible', timeout: 30_000 });
    const paths = await page.locator('.opblock-summary-path').evaluateAll((nodes) => nodes.map((n) => n.getAttribute('data-path')));
    for (const route of ['/api/v1/flows', '/api/v1/flows/{id}', '/api/v1/connections', '/api/v1/nat', '/metrics']) assert.ok(paths.includes(route), `${route} not in ${paths}`);
    const offsite = requested.filter((request) => !request.startsWith(`${url}/`) && !request.startsWith('data:'));
    assert.deepEqual(offsite, [], 'requests to other origins');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('a real connection through the lab: found by flow search, counted in /metrics', async (t) => {
  await temp.store.close(); // the embedded engine holds one data directory per process
  const { lab, service } = await labWithService(t);
  const localPort = randomClientPort();
  await requestRecorded(lab, service, localPort);

  const client = lab.nodes.client;
  const search = async (query: string) => {
    const response = await fetch(`${service.url}/api/v1/flows?${query}`);
    assert.equal(response.status, 200, query);
    return ((await response.json()) as FlowsResponseJson).flows;
  };
  const clientSide = await search(`src=${client.ifaces[0].ip}&sport=${localPort}&dst=${lab.service.ip}&dport=${lab.service.port}&proto=tcp`);
  assert.ok(clientSide.some((f) => f.netns === client.netns.name), JSON.stringify(clientSide));
  const atClient = clientSide.find((f) => f.netns === client.netns.name)!;
  assert.ok(atClient.packets.c2s > 2 && atClient.packets.s2c > 2, JSON.stringify(atClient));
  assert.deepEqual((await search(`ip=${client.ifaces[0].ip.replace(/\.\d+$/, '.0')}/24&sport=${localPort}&netns=${client.netns.name}&state=${atClient.conn_state}`)).map((f) => f.id), [atClient.id]);
  const serverSide = await search(`dst=${lab.server.ip}&dport=${lab.server.port}&netns=${lab.nodes.server.netns.name}`);
  assert.ok(serverSide.length >= 1, 'the server side of the connection is found too');
  const byId = await fetch(`${service.url}/api/v1/flows/${atClient.id}`);
  assert.deepEqual(await byId.json(), atClient);

  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  const status = service.capture.status();
  assert.ok(status.points.length >= 4);
  for (const point of status.points) {
    // Scraped before status(): the counters may have grown since, never shrunk.
    const labels = `\\{node="${NODE}",netns="${point.netns}",iface="${point.iface}"\\}`;
    for (const [metric, value] of [['events', point.events], ['lost_events', point.lost], ['packets', point.packets]] as const) {
      const scraped = new RegExp(`^nettrail_capture_${metric}_total${labels} (\\d+)$`, 'm').exec(metrics);
      assert.ok(scraped, `no ${metric} metric for ${point.netns}/${point.iface}`);
      assert.ok(Number(scraped[1]) <= value, `${metric} at ${point.netns}/${point.iface}: ${scraped[1]} > ${value}`);
    }
  }
  const clientPoint = new RegExp(`^nettrail_capture_events_total\\{node="${NODE}",netns="${client.netns.name}",iface="${client.ifaces[0].name}"\\} (\\d+)$`, 'm').exec(metrics);
  assert.ok(Number(clientPoint?.[1]) >= atClient.packets.c2s + atClient.packets.s2c);
  const written = /^nettrail_store_rows_written_total\{table="packets"\} (\d+)$/m.exec(metrics);
  assert.ok(Number(written?.[1]) >= atClient.packets.c2s + atClient.packets.s2c);
  assert.match(metrics, new RegExp(`^nettrail_capture_points ${status.points.length}$`, 'm'));
});
