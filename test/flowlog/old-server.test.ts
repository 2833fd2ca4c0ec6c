import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MIN_SERVER_VERSION, openStore } from '../../flowlog/store.js';

// Debian 12's clickhouse-server is ClickHouse 18.16 (2018): a real server older than the minimum.
const SERVER = '/usr/sbin/clickhouse-server';

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

test('a server older than the minimum version is refused with STORE_VERSION, naming the minimum', {
  skip: existsSync(SERVER) ? false : `${SERVER} is not installed (scripts/setup.sh installs Debian's clickhouse-server)`,
}, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nettrail-old-clickhouse-'));
  const [httpPort, tcpPort] = [await freePort(), await freePort()];
  await writeFile(path.join(dir, 'config.xml'), `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/data/tmp/</tmp_path>
  <user_files_path>${dir}/data/user_files/</user_files_path>
  <format_schema_path>${dir}/data/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>
`);
  await writeFile(path.join(dir, 'users.xml'), `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`);
  const server = spawn(SERVER, [`--config-file=${path.join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const exited = once(server, 'exit');
  try {
    const url = `http://127.0.0.1:${httpPort}`;
    let version = '';
    for (let attempt = 0; attempt < 300 && version === ''; attempt++) {
      version = await fetch(`${url}/?query=SELECT%20version()`).then((r) => (r.ok ? r.text() : ''), () => '');
      if (version === '') await sleep(100);
      assert.equal(server.exitCode, null, `clickhouse-server exited: ${log}`);
    }
    assert.match(version, /^18\.16\./, `the server answers SELECT version() (${log})`);

    await assert.rejects(openStore({ url }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_VERSION', err.message);
      assert.ok(err.message.includes(MIN_SERVER_VERSION) && err.message.includes(version.trim()), err.message);
      return true;
    });
  } finally {
    server.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
});
