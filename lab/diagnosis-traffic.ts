// Traffic that shows one thing going wrong each (docs/diagnosis.md), run inside a lab
// namespace by diagnosis-scenarios.ts:
//   node diagnosis-traffic.js turns-server PORT
//       a line server: answers every line ("...\n") it gets with a short line; prints "ready" once listening
//   node diagnosis-traffic.js '{"mode":"turns","host","port","rounds","split","idleMs"?,"keepAliveMs"?,"localPort"?}'
//       one connection, `rounds` request/response turns; `split`: each request in two small writes with
//       Nagle on (the second waits for the ACK of the first); `idleMs` between turns, `keepAliveMs` TCP
//       keep-alive idle time. Prints {"localPort","turnMs":[...]}
//   node diagnosis-traffic.js '{"mode":"read","host","port","path","pauseMs"?,"timeoutMs"?,"localPort"?}'
//       an HTTP GET whose reader stops reading for `pauseMs` after the first bytes; after `timeoutMs` it
//       closes (FIN) whatever it got. Prints {"localPort","bytes","complete"}
//   node diagnosis-traffic.js '{"mode":"connect","host","port","timeoutMs","localPort"?}'
//       one TCP connect; prints {"localPort","outcome"}: connected, refused, reset or timeout
//   Any client object with "everyMs" and "forMs" repeats it (errors ignored) and prints nothing.
import { connect, createServer, type Socket } from 'node:net';
import { clientMain, type RepeatArgs } from './client-main.js';

interface Target extends RepeatArgs {
  host: string;
  port: number;
}
type ClientArgs =
  | (Target & { mode: 'turns'; rounds: number; split: boolean; idleMs?: number; keepAliveMs?: number })
  | (Target & { mode: 'read'; path: string; pauseMs?: number; timeoutMs?: number })
  | (Target & { mode: 'connect'; timeoutMs: number });

const GIVE_UP_MS = 20_000;

function open(args: Target, noDelay: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: args.host, port: args.port, localPort: args.localPort, noDelay });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function turns(args: Extract<ClientArgs, { mode: 'turns' }>): Promise<object> {
  const socket = await open(args, false);
  if (args.keepAliveMs !== undefined) socket.setKeepAlive(true, args.keepAliveMs);
  const lines: string[] = [];
  let buffered = '';
  let waiting: (() => void) | null = null;
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, end));
      buffered = buffered.slice(end + 1);
    }
    waiting?.();
  });
  const turnMs: number[] = [];
  for (let i = 0; i < args.rounds; i++) {
    if (i > 0 && args.idleMs) await sleep(args.idleMs);
    const started = Date.now();
    const answered = new Promise<void>((resolve) => (waiting = resolve));
    if (args.split) {
      socket.write(`request ${i} `);
      socket.write('body\n');
    } else socket.write(`request ${i} body\n`);
    await answered;
    turnMs.push(Date.now() - started);
  }
  await new Promise<void>((resolve) => socket.end(resolve));
  return { localPort: socket.localPort, turnMs, answers: lines.length };
}

async function read(args: Extract<ClientArgs, { mode: 'read' }>): Promise<object> {
  const socket = await open(args, true);
  socket.write(`GET ${args.path} HTTP/1.1\r\nhost: ${args.host}\r\n\r\n`);
  let bytes = 0;
  let paused = false;
  const complete = await new Promise<boolean>((resolve, reject) => {
    if (args.timeoutMs !== undefined) setTimeout(() => resolve(false), args.timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (!paused && args.pauseMs) {
        paused = true;
        socket.pause();
        setTimeout(() => socket.resume(), args.pauseMs);
      }
    });
    socket.once('end', () => resolve(true));
    socket.once('error', reject);
  });
  await new Promise<void>((resolve) => socket.end(resolve));
  const localPort = socket.localPort;
  // Given up on: what never came is not waited for (the FIN went out; nothing unread is left to reset it).
  if (!complete) socket.destroy();
  return { localPort, bytes, complete };
}

function connectOnce(args: Extract<ClientArgs, { mode: 'connect' }>): Promise<object> {
  return new Promise((resolve) => {
    const socket = connect({ host: args.host, port: args.port, localPort: args.localPort });
    const done = (outcome: string) => {
      clearTimeout(timer);
      const localPort = socket.localPort;
      socket.destroy();
      resolve({ localPort, outcome });
    };
    const timer = setTimeout(() => done('timeout'), args.timeoutMs);
    socket.once('connect', () => socket.end(() => done('connected')));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ECONNRESET' ? 'reset' : err.code ?? err.message));
  });
}

function turnsServer(port: number): void {
  const server = createServer({ noDelay: true }, (socket) => {
    let buffered = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let end;
      while ((end = buffered.indexOf('\n')) >= 0) {
        buffered = buffered.slice(end + 1);
        socket.write('ok\n');
      }
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  server.listen(port, '0.0.0.0', () => process.stdout.write('ready\n'));
}

const runs: Record<ClientArgs['mode'], (args: never) => Promise<object>> = { turns, read, connect: connectOnce };

if (process.argv[2] === 'turns-server') {
  turnsServer(Number(process.argv[3]));
} else {
  clientMain(JSON.parse(process.argv[2] ?? '{}') as ClientArgs, (args) => (runs[args.mode] as (args: ClientArgs) => Promise<object>)(args), GIVE_UP_MS);
}
