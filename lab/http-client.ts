// The lab's HTTP client, run inside the client namespace by lab.ts:
//   node http-client.js '{"host","port","path","localPort"?}'            one request, prints {"status","localPort","bytes"}
//   node http-client.js '{"host","port","path","everyMs","forMs"}'       one request every everyMs for forMs, prints nothing
import { request } from 'node:http';
import { clientMain, type RepeatArgs } from './client-main.js';

interface ClientArgs extends RepeatArgs {
  host: string;
  port: number;
  path: string;
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

clientMain(JSON.parse(process.argv[2] ?? '{}') as ClientArgs, get);
