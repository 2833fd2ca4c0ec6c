// The lab's HTTP server, run inside the server namespace by lab.ts:
//   node http-server.js PORT
// GET /bytes/N answers N bytes (bulk transfers for capture tests); any other path a short greeting.
// Prints "ready" once listening and nothing after that (its stdout pipe may be gone).
import { createServer } from 'node:http';

const MAX_BODY = 16 * 1024 * 1024;
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write(`usage: http-server.js PORT (got ${process.argv[2]})\n`);
  process.exit(2);
}

const server = createServer((req, res) => {
  const bulk = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  const body = bulk ? Buffer.alloc(Math.min(Number(bulk[1]), MAX_BODY), 'x') : Buffer.from('hello from the nettrail lab\n');
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, connection: 'close' });
  res.end(req.method === 'HEAD' ? undefined : body);
});
server.listen(port, '0.0.0.0', () => process.stdout.write('ready\n'));
