// Waiting for what happens a little later (a kernel event, a poll, a flush, a child
// process getting ready): asked again until it holds. A deadline only guards against
// waiting for ever; past it the wait fails, naming what it waited for.
import type { ChildProcess } from 'node:child_process';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface WaitOptions {
  /** Default 20 s. */
  timeoutMs?: number;
  /** Default 100 ms. */
  everyMs?: number;
}

/** The first value other than undefined that `probe` gives; `what` (or what it returns, asked at the deadline) names it. */
export async function waitFor<T>(
  what: string | (() => string),
  probe: () => T | undefined | Promise<T | undefined>,
  { timeoutMs = 20_000, everyMs = 100 }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

/** Until `condition` holds. */
export async function until(what: string | (() => string), condition: () => boolean | Promise<boolean>, options: WaitOptions = {}): Promise<void> {
  await waitFor(what, async () => ((await condition()) ? true : undefined), options);
}

/** Until `proc` has written `text` to its `stream`; fails if it exits first, or after `timeoutMs` (default 5 s). */
export function printed(proc: ChildProcess, stream: 'stdout' | 'stderr', text: string, what: string, timeoutMs = 5000): Promise<void> {
  const output = proc[stream]!;
  output.setEncoding('utf8');
  let seen = '';
  return new Promise<void>((resolve, reject) => {
    const settle = (err?: Error) => {
      clearTimeout(timer);
      output.off('data', onData);
      proc.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: string) => {
      seen += chunk;
      if (seen.includes(text)) settle();
    };
    const onExit = (code: number | null, signal: string | null) => settle(new Error(`${what} exited (${code ?? signal}) before it was ready: ${seen.trim()}`));
    const timer = setTimeout(() => settle(new Error(`${what} was not ready within ${timeoutMs / 1000} s: ${seen.trim()}`)), timeoutMs);
    output.on('data', onData);
    proc.on('exit', onExit);
  });
}
