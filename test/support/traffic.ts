// Traffic for the capture tests, run inside a test namespace:
//   serve                      TCP echo :7001, TCP sink that never reads :7003, UDP echo :7002; prints "ready"
//   talk HOST ROUNDS           ROUNDS request/responses over TCP, then over UDP, then a FIN close
//   reset HOST                 one TCP exchange, then an abortive close (RST)
//   refused HOST PORT          a SYN to a closed port (answered by RST)
//   flood HOST MS              writes to the sink for MS ms, then closes
//   hold HOST                  one TCP exchange, then the connection stays idle until stdin closes
// Each client prints its TCP local port on stdout.
import { createSocket } from 'node:dgram';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { ECHO_PORT, SINK_PORT, UDP_PORT } from './netns-pair.js';

const MESSAGE = Buffer.alloc(100, 0x61);

async function exchange(socket: Socket, message: Buffer): Promise<void> {
  let received = 0;
  socket.write(message);
  while (received < message.length) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    received += chunk.length;
  }
}

function open(host: string, port: number): Promise<Socket> {
  const socket = connect({ host, port });
  return once(socket, 'connect').then(() => {
    console.log(socket.localPort);
    return socket;
  });
}

async function serve(): Promise<void> {
  createServer((s) => s.pipe(s).on('error', () => {})).listen(ECHO_PORT, '::');
  createServer((s) => s.pause().on('error', () => {})).listen(SINK_PORT, '::');
  const udp = createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (message, from) => udp.send(message, from.port, from.address));
  udp.bind(UDP_PORT, '::', () => console.log('ready'));
}

async function talk(host: string, rounds: number): Promise<void> {
  const socket = await open(host, ECHO_PORT);
  for (let i = 0; i < rounds; i++) {
    // A pause between rounds keeps segments apart (no GRO merging at the receiver).
    await exchange(socket, MESSAGE);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  socket.end();
  await once(socket, 'close');
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  for (let i = 0; i < rounds; i++) {
    udp.send(Buffer.alloc(50 + i, 0x62), UDP_PORT, host);
    await once(udp, 'message');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  udp.close();
}

async function main(): Promise<void> {
  const [mode, host, arg] = process.argv.slice(2);
  if (mode === 'serve') return serve();
  if (mode === 'talk') return talk(host, Number(arg));
  if (mode === 'reset') {
    const socket = await open(host, ECHO_PORT);
    await exchange(socket, MESSAGE);
    socket.resetAndDestroy();
    return;
  }
  if (mode === 'refused') {
    const socket = connect({ host, port: Number(arg) });
    const [err] = (await once(socket, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    if (err.code !== 'ECONNREFUSED') throw err;
    console.log(0);
    return;
  }
  if (mode === 'flood') {
    const socket = await open(host, SINK_PORT);
    const until = Date.now() + Number(arg);
    const chunk = Buffer.alloc(16384, 0x63);
    while (Date.now() < until) {
      if (!socket.write(chunk)) await Promise.race([once(socket, 'drain'), new Promise((resolve) => setTimeout(resolve, 50))]);
    }
    socket.destroy();
    return;
  }
  if (mode === 'hold') {
    const socket = await open(host, ECHO_PORT);
    await exchange(socket, MESSAGE);
    process.stdin.resume();
    await once(process.stdin, 'end');
    socket.destroy();
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
