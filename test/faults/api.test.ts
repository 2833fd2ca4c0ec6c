// Hostile input to the API beyond test/api/fuzz.test.ts (which sends 10 000
// well-formed HTTP requests with hostile parameters through fastify's inject):
//   - raw bytes over real TCP connections to a listening server: malformed request
//     lines, oversized URLs and headers, smuggling-style framing, bodies on a
//     read-only API, pipelining, random garbage (seeded), and a request that is
//     never finished — every answer is a 4xx (or the connection is closed), never a
//     5xx, and the server answers others throughout;
//   - requests while the store is gone (closed under the server): the routes that
//     read it answer 503 STORE_UNAVAILABLE with Retry-After, never 500, the rest
//     answer as usual.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../api/server.js';
import { makeFlows, pick, writeFlows } from '../support/api-fixture.js';
import { prng } from '../../bench/support/prng.js';
import { storeAppOptions } from '../../bench/support/store-app.js';
import { openTempStore, type TempStore } from '../support/store-fixture.js';

const SEED = Number(process.env.NETTRAIL_FUZZ_SEED ?? 0xa91f022);
const GARBAGE = 300;

let temp: TempStore;
let server: FastifyInstance;
let port: number;

before(async () => {
  temp = await openTempStore('faults-api');
  await writeFlows(temp.writer, makeFlows(SEED, 50));
  server = await buildServer(storeAppOptions(temp.store, temp.writer, { rateLimitPerMinute: null }));
  await server.listen({ host: '127.0.0.1', port: 0 });
  port = (server.server.address() as { port: number }).port;
});

after(async () => {
  await server?.close();
  // The last test closes the store under the server: closing it again may fail.
  await temp?.close().catch(() => undefined);
});

/**
 * Sends raw bytes on a new connection; resolves with what came back once the server closes the
 * connection, or has been quiet for `quietMs` after answering, or after `timeoutMs`. `end` half-closes
 * the connection after writing (the server then closes it without answering what is pending).
 */
function raw(bytes: Buffer | string, { end = false, timeoutMs = 3000, quietMs = 200, enough = (_: Buffer<ArrayBufferLike>): boolean => false } = {}): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(quiet);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      clearTimeout(quiet);
      if (enough(Buffer.concat(chunks))) done();
      else quiet = setTimeout(done, quietMs);
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(bytes, () => (end ? socket.end() : undefined));
  });
}

/** Status codes of the HTTP responses in `bytes`. */
const statuses = (bytes: Buffer) => [...bytes.toString('latin1').matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));

const CRAFTED: Array<[string, string | Buffer]> = [
  ['no Host header', 'GET /healthz HTTP/1.1\r\n\r\n'],
  ['HTTP/1.0', 'GET /api/v1/flows?limit=1 HTTP/1.0\r\n\r\n'],
  ['unknown method', 'FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['POST with a body', 'POST /api/v1/flows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"limit": 1}\n'],
  ['DELETE', 'DELETE /api/v1/flows/abc HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['PUT a large body', `PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n${'x'.repeat(200_000)}`],
  ['HTTP/9.9', 'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n'],
  ['HTTP/0.9 style', 'GET /healthz\r\n\r\n'],
  ['no version', 'GET\r\n\r\n'],
  ['bad Content-Length', 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
  ['two Content-Lengths', 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
  ['Content-Length and chunked', 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['a bad chunk', 'GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
  ['chunked, obfuscated', 'GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n'],
  ['bare LF line ends', 'GET /healthz HTTP/1.1\nHost: x\n\n'],
  ['a NUL in a header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n'],
  ['header folding', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n'],
  ['a header without a colon', 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n'],
  ['a space before the colon', 'GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n'],
  ['a 100 KB header', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`],
  ['3000 headers', `GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: ${i}\r\n`).join('')}\r\n`],
  ['a 100 KB URL', `GET /api/v1/flows?ip=${'1'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  ['a 10 KB path', `GET /api/v1/flows/${'a'.repeat(10_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  ['an absolute URL', 'GET http://evil.example/api/v1/flows?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['an authority form', 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n'],
  ['an asterisk form', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['dot segments', 'GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['encoded dot segments', 'GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['a backslash path', 'GET /..\\..\\etc\\passwd HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['raw UTF-8 in the path', Buffer.concat([Buffer.from('GET /api/v1/flows?node='), Buffer.from('日本語😀', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')])],
  ['invalid UTF-8 in the path', Buffer.concat([Buffer.from('GET /api/v1/flows?node='), Buffer.from([0xc0, 0xaf, 0xff, 0xfe]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')])],
  ['an upgrade to websocket', 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'],
  ['h2c prior knowledge', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
  ['a TLS ClientHello', Buffer.from('16030100a5010000a10303' + '00'.repeat(160), 'hex')],
  ['100 pipelined requests', 'GET /api/v1/flows?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(100)],
  ['an Expect: 100-continue', 'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello'],
  ['a bad Authorization', 'GET /api/v1/flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u0000\u00ff\r\n\r\n'],
  ['only CRLFs', '\r\n'.repeat(5000)],
];

test('raw HTTP: crafted and random malformed requests get a 4xx or a closed connection, never a 5xx; the server answers throughout', async (t) => {
  // A request that is never finished, held open the whole time.
  const held = connect(port, '127.0.0.1');
  held.write('GET /api/v1/flows?limit=1 HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  t.after(() => held.destroy());
  const seen = new Map<string, number>();
  const check = async (name: string, bytes: string | Buffer, end = false) => {
    const response = await raw(bytes, { end });
    const codes = statuses(response);
    for (const code of codes) assert.ok(code < 500, `${name}: answered ${code}: ${response.toString('latin1').slice(0, 300)}`);
    const key = codes.length === 0 ? 'closed without an answer' : [...new Set(codes)].join('/');
    seen.set(key, (seen.get(key) ?? 0) + 1);
    return codes;
  };
  for (const [name, bytes] of CRAFTED) await check(name, bytes);
  // Pipelined on a connection kept open (a half-closed one is closed by the server at once).
  const pipelined = await raw('GET /api/v1/flows?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(100), { timeoutMs: 30_000, quietMs: 30_000, enough: (b) => statuses(b).length >= 100 });
  assert.equal(statuses(pipelined).filter((c) => c === 200).length, 100, 'pipelined requests are each answered');

  const random = prng(SEED);
  const ALPHABET = ['GET ', 'POST ', ' HTTP/1.1', '\r\n', '\n', ':', ' ', '/', '?', '&', '=', '%', '%zz', 'Host', 'Content-Length', 'Transfer-Encoding', 'chunked', '0', '-1', '99999999999999999999', '\u0000', '\u00ff'];
  for (let i = 0; i < GARBAGE; i++) {
    let bytes: Buffer;
    if (i % 3 === 0) {
      bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 400) }, () => Math.floor(random() * 256)));
    } else {
      const start = pick(random, ['GET /api/v1/flows?', 'GET /api/v1/connections?tuple=', 'GET /healthz', 'HEAD /metrics', 'GET /api/v1/pcap?tuple=', '']);
      bytes = Buffer.from(start + Array.from({ length: Math.floor(random() * 40) }, () => pick(random, ALPHABET)).join('') + (random() < 0.7 ? '\r\n\r\n' : ''), 'latin1');
    }
    await check(`garbage ${i} (seed ${SEED}): ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`, bytes, !bytes.includes('\r\n\r\n'));
    if (i % 50 === 0) assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, 'the server still answers');
  }
  t.diagnostic(`${CRAFTED.length} crafted and ${GARBAGE} random requests: ${[...seen].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/flows?limit=5`)).status, 200, 'and answers data after all of it');
  assert.ok(!held.destroyed, 'the unfinished request is still open');
});

test('the store gone under the server: reads answer 503 STORE_UNAVAILABLE with Retry-After, never 500; the rest as usual', async (t) => {
  const random = prng(SEED + 1);
  await temp.writer.close();
  await temp.store.close();
  const tuples = ['10.1.0.2:40000 -> 10.0.0.10:80', 'udp [fd00:1::5]:5353 -> [fd00:53::53]:53', 'nonsense'];
  const routes = [
    () => `/api/v1/flows?limit=${1 + Math.floor(random() * 50)}${random() < 0.5 ? '&proto=tcp' : ''}`,
    () => `/api/v1/flows/${pick(random, ['0123456789abcdef', 'zz'])}`,
    () => `/api/v1/connections?tuple=${encodeURIComponent(pick(random, tuples))}`,
    () => `/api/v1/connections/timeline?tuple=${encodeURIComponent(pick(random, tuples))}`,
    () => `/api/v1/pcap?tuple=${encodeURIComponent(pick(random, tuples))}`,
    () => `/api/v1/drops?limit=5`,
    () => `/api/v1/nat?ip=10.0.0.10`,
    () => '/healthz',
    () => '/metrics',
    () => '/api/v1/capture/status',
  ];
  const seen = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const url = pick(random, routes)();
    const response = await server.inject(url);
    const where = `${url} -> ${response.statusCode} ${response.body.slice(0, 200)}`;
    assert.notEqual(response.statusCode, 500, where);
    if (response.statusCode === 503) {
      assert.equal((response.json() as { error: { code: string } }).error.code, 'STORE_UNAVAILABLE', where);
      assert.ok(url === '/healthz' || response.headers['retry-after'] === '5', where);
    }
    if (url === '/metrics' || url === '/api/v1/capture/status') assert.equal(response.statusCode, 200, where);
    const key = `${url.split('?')[0].replace(/\/flows\/.*/, '/flows/:id')} ${response.statusCode}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  t.diagnostic([...seen].sort().map(([k, n]) => `${k} ×${n}`).join(', '));
  assert.ok([...seen.keys()].some((k) => k.endsWith(' 503')), 'the failure is reported as such');
});
