// The lab's HTTP client, run inside the client namespace by lab.ts:
//   node http-client.js '{"host","port","path","localPort"?}'            one request, prints {"status","localPort","bytes"}
//   node http-client.js '{"host","port","path","everyMs","forMs"}'       one request every everyMs for forMs, prints nothing
import { request } from 'node:http';

interface ClientArgs {
  host: string;
  port: number;
  path: string;
  localPort?: number;
  everyMs?: number;
  forMs?: number;
}

const REQUEST_TIMEOUT_MS = 5000;

function get(args: ClientArgs): Promise<{ status: number; localPort: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: args.host, port: args.port, path: args.path, localPort: args.localPort, agent: false, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const localPort = res.socket.localPort ?? 0;
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, localPort, bytes }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const args = JSON.parse(process.argv[2] ?? '{}') as ClientArgs;
if (args.everyMs === undefined) {
  get(args).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
} else {
  const until = Date.now() + (args.forMs ?? 0);
  const everyMs = args.everyMs;
  const tick = (): void => {
    if (Date.now() >= until) return;
    // A failed request is retried on the next tick: the demo keeps going.
    get(args).catch(() => undefined).finally(() => setTimeout(tick, everyMs));
  };
  tick();
}
