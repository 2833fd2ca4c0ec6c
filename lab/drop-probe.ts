// Sends what the lab's drop scenarios need, run inside a namespace by drop-scenarios.ts:
//   node drop-probe.js '{"proto":"tcp","host","port","localPort"?,"timeoutMs"?}'   one connection attempt
//   node drop-probe.js '{"proto":"udp","host","port","localPort"?,"count"?}'        datagrams
// prints {"outcome","localPort","error"?}; with "everyMs" and "forMs" it repeats and prints nothing.
// Only its types are for importing (`import type`): importing it runs it.
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

export interface ProbeArgs {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  localPort?: number;
  /** TCP: how long to wait for the handshake (default 1000 ms). */
  timeoutMs?: number;
  /** UDP: datagrams to send (default 1). */
  count?: number;
  everyMs?: number;
  forMs?: number;
}

export interface ProbeResult {
  /** connected / refused (RST) / timeout (no answer) for TCP; sent for UDP; error when the local stack refused. */
  outcome: 'connected' | 'refused' | 'timeout' | 'sent' | 'error';
  localPort: number;
  error?: string;
}

function tcpAttempt(args: ProbeArgs): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host: args.host, port: args.port, localPort: args.localPort });
    const finish = (outcome: ProbeResult['outcome'], error?: string) => {
      const localPort = socket.localPort ?? args.localPort ?? 0;
      socket.destroy();
      resolve(error ? { outcome, localPort, error } : { outcome, localPort });
    };
    socket.setTimeout(args.timeoutMs ?? 1000, () => finish('timeout'));
    socket.once('connect', () => finish('connected'));
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? finish('refused') : finish('error', err.code ?? err.message)));
  });
}

function udpSend(args: ProbeArgs): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = createSocket(args.host.includes(':') ? 'udp6' : 'udp4');
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.close();
      resolve({ outcome: 'error', localPort: args.localPort ?? 0, error: err.code ?? err.message });
    });
    socket.bind(args.localPort ?? 0, () => {
      const localPort = socket.address().port;
      let left = args.count ?? 1;
      const next = (): void => {
        if (left-- === 0) {
          socket.close();
          resolve({ outcome: 'sent', localPort });
          return;
        }
        socket.send(`nettrail drop probe ${left}`, args.port, args.host, (err) => {
          if (err) {
            socket.close();
            resolve({ outcome: 'error', localPort, error: (err as NodeJS.ErrnoException).code ?? err.message });
          } else next();
        });
      };
      next();
    });
  });
}

const probe = (args: ProbeArgs): Promise<ProbeResult> => (args.proto === 'tcp' ? tcpAttempt(args) : udpSend(args));

const args = JSON.parse(process.argv[2] ?? '{}') as ProbeArgs;
if (args.everyMs === undefined) {
  void probe(args).then((result) => process.stdout.write(`${JSON.stringify(result)}\n`));
} else {
  const until = Date.now() + (args.forMs ?? 0);
  const everyMs = args.everyMs;
  const tick = (): void => {
    if (Date.now() < until) void probe(args).finally(() => setTimeout(tick, everyMs));
  };
  tick();
}
