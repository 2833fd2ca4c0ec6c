// The lab's HTTP server, run inside the server namespace by lab.ts:
//   node http-server.js PORT
// GET /bytes/N answers N bytes (bulk transfers for capture tests); /slow/MS answers after MS
// milliseconds; /abort resets the connection after the response's first bytes (SO_LINGER 0);
// /trickle/N answers a short line, then N bytes 50 ms later; any other path a short greeting.
// Prints "ready" once listening and nothing after that (its stdout pipe may be gone).
import { createServer } from 'node:http';

const MAX_BODY = 16 * 1024 * 1024;
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write(`usage: http-server.js PORT (got ${process.argv[2]})\n`);
  process.exit(2);
}

/** /trickle/N: the pause between the short line and the bulk. */
const TRICKLE_PAUSE_MS = 50;
const MAX_SLOW_MS = 60_000;

const server = createServer((req, res) => {
  const slow = /^\/slow\/(\d+)$/.exec(req.url ?? '');
  if (slow) {
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('slow hello\n'), Math.min(Number(slow[1]), MAX_SLOW_MS));
    return;
  }
  if (req.url === '/abort') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000, connection: 'close' });
    res.write('partial\n', () => setTimeout(() => res.socket?.resetAndDestroy(), TRICKLE_PAUSE_MS));
    return;
  }
  const trickle = /^\/trickle\/(\d+)$/.exec(req.url ?? '');
  if (trickle) {
    const bulk = Buffer.alloc(Math.min(Number(trickle[1]), MAX_BODY), 'x');
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.write('first a short line\n', () => setTimeout(() => res.end(bulk), TRICKLE_PAUSE_MS));
    return;
  }
  const bulk = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  const body = bulk ? Buffer.alloc(Math.min(Number(bulk[1]), MAX_BODY), 'x') : Buffer.from('hello from the nettrail lab\n');
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, connection: 'close' });
  res.end(req.method === 'HEAD' ? undefined : body);
});
server.listen(port, '0.0.0.0', () => process.stdout.write('ready\n'));
