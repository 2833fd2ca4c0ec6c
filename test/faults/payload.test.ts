// Payload is never stored unless asked for. Traffic between two test namespaces
// carries a random marker string (TCP and UDP, both directions); `nettrail serve`
// (startService) captures it with the default snap length and, as the control
// that shows the checks can see payload at all, with --snaplen 4096. Default:
// every packet's stored bytes end at its L4 header, and the marker is in none of
// them: neither in the header residuals of the store's packet chunks (read in
// SQL, unpacked by the test's own code: a residual past the L4 header is the
// bytes as they are, but packed as XOR with the previous packet's, so the
// packed bytes are not searched as they are) nor in the pcapng the API exports.
// With --snaplen 4096 it is found in both. The store's files are not searched:
// ZSTD codes the chunks' literal bytes with Huffman tables.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService } from '../../service/service.js';
import { createPair, ECHO_PORT, headerEnd, UDP_PORT, type NetnsPair } from '../support/netns-pair.js';
import { chunkResiduals } from '../support/chunk-residuals.js';

/** Enhanced packet blocks of a little-endian pcapng file: their captured bytes. */
function pcapngPackets(file: Buffer): Buffer[] {
  const packets: Buffer[] = [];
  for (let at = 0; at + 12 <= file.length; ) {
    const type = file.readUInt32LE(at);
    const length = file.readUInt32LE(at + 4);
    if (length < 12 || at + length > file.length) throw new Error(`bad pcapng block at ${at}`);
    if (type === 6) packets.push(file.subarray(at + 28, at + 28 + file.readUInt32LE(at + 20)));
    at += length;
  }
  return packets;
}

/** Every file under `dir`, recursively. */
/** A TCP exchange with the echo server and a UDP datagram to the UDP echo, each carrying `marker`; resolves with the TCP client port. */
async function sendMarker(pair: NetnsPair, marker: string): Promise<number> {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    const s = net.connect(${ECHO_PORT}, '${pair.v4}', () => { console.log(s.localPort); s.write('${marker}'); });
    s.once('data', () => {
      s.end();
      const u = dgram.createSocket('udp4');
      u.send('${marker}', ${UDP_PORT}, '${pair.v4}');
      u.once('message', () => u.close());
    });`;
  const proc = spawn('ip', ['netns', 'exec', pair.client.name, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  const [code] = (await once(proc, 'exit')) as [number];
  assert.equal(code, 0);
  return Number(out.trim());
}

interface Capture {
  /** Packets in the pcapng of the TCP connection. */
  tcp: Buffer[];
  /** Packet chunks a header residual of which contains the marker. */
  chunksWithMarker: number;
  /** Packets stored. */
  rows: number;
}

async function captureMarker(t: TestContext, pair: NetnsPair, snaplen: number, marker: string): Promise<Capture> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nettrail-faults-payload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const service = await startService({
    store: { path: path.join(dir, 'store') },
    netns: [pair.client.name, pair.server.name],
    ifaces: ['eth0'],
    snaplen,
    listen: { host: '127.0.0.1', port: 0 },
    node: 'faults',
    log: () => {},
  });
  try {
    assert.equal(service.capture.status().snaplen, snaplen);
    const port = await sendMarker(pair, marker);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await service.flush();
    const tuple = encodeURIComponent(`${pair.clientV4}:${port} -> ${pair.v4}:${ECHO_PORT}`);
    const response = await fetch(`${service.url}/api/v1/pcap?tuple=${tuple}&format=pcapng`);
    assert.equal(response.status, 200);
    const tcp = pcapngPackets(Buffer.from(await response.arrayBuffer()));
    const result = await service.store.client.query({
      query: `SELECT count, hex(packed), toString(residuals) FROM ${service.store.table('packets')}`,
      format: 'JSONCompactEachRow',
    });
    const chunks = await result.json<[number, string, string]>();
    const withMarker = chunks.filter(([n, hex, residuals]) => chunkResiduals(Buffer.from(hex, 'hex'), n, residuals).some((r) => r.includes(marker)));
    return { tcp, chunksWithMarker: withMarker.length, rows: chunks.reduce((sum, [n]) => sum + n, 0) };
  } finally {
    await service.close();
  }
}

test('default snap length: stored bytes end at the L4 header, the payload marker is nowhere; --snaplen 4096 keeps it', async (t) => {
  const pair = await createPair(t);
  const marker = `NTMARK-${randomBytes(16).toString('hex')}`;

  const headersOnly = await captureMarker(t, pair, 0, marker);
  t.diagnostic(`default: ${headersOnly.rows} packets stored, ${headersOnly.tcp.length} TCP packets in the pcapng`);
  assert.ok(headersOnly.rows >= 14, 'the traffic was captured at both ends');
  assert.ok(headersOnly.tcp.length >= 10, 'the connection is in the pcapng');
  for (const packet of headersOnly.tcp) assert.equal(packet.length, headerEnd(packet), 'the captured bytes end at the end of the TCP header');
  assert.equal(headersOnly.chunksWithMarker, 0, 'no stored header bytes hold the marker');
  assert.ok(!headersOnly.tcp.some((p) => p.includes(marker)), 'the pcapng does not hold the marker');

  // The control: asked for, payload is kept, and the same checks find it.
  const withPayload = await captureMarker(t, pair, 4096, marker);
  t.diagnostic(`--snaplen 4096: ${withPayload.chunksWithMarker} packet chunks hold the marker (${withPayload.rows} packets stored)`);
  assert.ok(withPayload.chunksWithMarker >= 8, 'TCP and UDP, both ways, both ends (a chunk each)');
  assert.ok(withPayload.tcp.some((p) => p.includes(marker)), 'the pcapng holds the marker');
  assert.ok(withPayload.tcp.some((p) => p.length > headerEnd(p)));
});
