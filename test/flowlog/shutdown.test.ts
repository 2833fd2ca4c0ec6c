import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../flowlog/store.js';

const child = fileURLToPath(new URL('../support/flowlog-load-child.js', import.meta.url));

test('SIGTERM under load: the store holds exactly the rows the writer accepted', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nettrail-shutdown-'));
  try {
    const storePath = path.join(dir, 'store');
    const proc = spawn(process.execPath, [child, storePath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    proc.stdout.setEncoding('utf8');
    const loaded = new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (chunk: string) => {
        output += chunk;
        if (output.startsWith('loaded\n')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`the writer exited (${code}) before it was loaded`)));
    });
    await loaded;
    const exited = once(proc, 'exit');
    proc.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
    const report = JSON.parse(output.trim().split('\n').at(-1)!) as {
      offered: number; accepted: number; dropped: number; written: number; bufferedAtSignal: number;
    };
    assert.ok(report.bufferedAtSignal > 0, 'rows were buffered when SIGTERM came');
    assert.equal(report.accepted + report.dropped, report.offered);
    assert.equal(report.written, report.accepted);

    const store = await openStore({ path: storePath });
    try {
      const result = await store.client.query({ query: 'SELECT count(), uniqExact(packet_id) FROM nettrail.packet_chunks ARRAY JOIN packet_ids AS packet_id', format: 'JSONCompactEachRow' });
      const [[rows, ids]] = await result.json<[string, string]>();
      assert.equal(Number(rows), report.accepted);
      assert.equal(Number(ids), report.accepted);
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
