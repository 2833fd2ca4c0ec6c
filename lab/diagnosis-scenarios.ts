// The traffic of the diagnosis scenarios (lab.ts sets up what goes wrong; docs/diagnosis.md):
// one connection of each kind from the client namespace, for tests, and the same repeated for
// `nettrail lab up --scenario ...`. Everything runs in the lab's namespaces and dies with them.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLOSED_PORT, REJECTED_PORT, TURNS_PORT, type DiagnosisScenario, type Lab } from './lab.js';
import { inNetns } from './drop-scenarios.js';

const TRAFFIC_JS = fileURLToPath(new URL('./diagnosis-traffic.js', import.meta.url));
const DEMO_FOR_MS = 60 * 60 * 1000;
/** The mtu-blackhole client waits this long for a response that never comes whole, then closes. */
export const BLACKHOLE_GIVE_UP_MS = 3000;

/** What diagnosis-traffic.js runs (its header says what each does). */
export type TrafficArgs =
  | { mode: 'turns'; host: string; port: number; rounds: number; split: boolean; idleMs?: number; keepAliveMs?: number; localPort?: number }
  | { mode: 'read'; host: string; port: number; path: string; pauseMs?: number; timeoutMs?: number; localPort?: number }
  | { mode: 'connect'; host: string; port: number; timeoutMs: number; localPort?: number };

/** One run of diagnosis-traffic.js in the lab's client namespace; what it printed. */
export async function runTraffic<T = Record<string, unknown>>(lab: Lab, args: TrafficArgs): Promise<T> {
  return JSON.parse(await inNetns(lab.nodes.client.netns.name, process.execPath, TRAFFIC_JS, JSON.stringify(args))) as T;
}

/** The connections a scenario's demo makes, each every `everyMs`. */
export function scenarioTraffic(lab: Lab, scenario: DiagnosisScenario): TrafficArgs[] {
  const service = { host: lab.service.ip, port: lab.service.port };
  const server = lab.server.ip;
  switch (scenario) {
    case 'lossy':
      return [{ mode: 'read', ...service, path: '/bytes/300000' }];
    case 'reset':
      return [
        { mode: 'connect', host: server, port: CLOSED_PORT, timeoutMs: 1000 },
        { mode: 'connect', host: server, port: REJECTED_PORT, timeoutMs: 1000 },
        { mode: 'read', ...service, path: '/abort' },
      ];
    case 'nagle':
      return [{ mode: 'turns', host: server, port: TURNS_PORT, rounds: 5, split: true }];
    case 'slow-reader':
      return [{ mode: 'read', ...service, path: '/bytes/4000000', pauseMs: 2000 }];
    case 'mtu-blackhole':
      return [{ mode: 'read', ...service, path: '/trickle/20000', timeoutMs: BLACKHOLE_GIVE_UP_MS }];
    case 'slow-server':
      return [{ mode: 'read', ...service, path: '/slow/1500' }];
  }
}

/** Starts the scenario's traffic in the client namespace, every `everyMs` for an hour; the processes die with the lab. */
export async function startScenarioTraffic(lab: Lab, scenario: DiagnosisScenario, everyMs: number): Promise<void> {
  for (const args of scenarioTraffic(lab, scenario)) {
    const repeated = JSON.stringify({ ...args, everyMs, forMs: DEMO_FOR_MS });
    const proc = spawn('ip', ['netns', 'exec', lab.nodes.client.netns.name, process.execPath, TRAFFIC_JS, repeated], { detached: true, stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', (err) => reject(new Error(`cannot start the ${scenario} traffic: ${err.message}`)));
    });
    proc.unref();
  }
}
