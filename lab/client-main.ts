// The main of the lab's client scripts (http-client.ts, diagnosis-traffic.ts): their argument is a
// JSON object; without "everyMs" the client runs once and prints its result as a JSON line, with it
// the client runs again every everyMs for forMs, prints nothing and ignores failures (a demo keeps going).

export interface RepeatArgs {
  localPort?: number;
  everyMs?: number;
  forMs?: number;
}

/** Runs `run` as the argument asks (above); a single run that fails, or gives no result within giveUpMs (when given), exits 1 with the reason on stderr. */
export function clientMain<A extends RepeatArgs>(args: A, run: (args: A) => Promise<object>, giveUpMs?: number): void {
  if (args.everyMs === undefined) {
    const giveUp = giveUpMs === undefined ? undefined : setTimeout(() => {
      process.stderr.write(`no result within ${giveUpMs} ms\n`);
      process.exit(1);
    }, giveUpMs);
    run(args).then(
      (result) => {
        clearTimeout(giveUp);
        process.stdout.write(`${JSON.stringify(result)}\n`);
      },
      (err: Error) => {
        process.stderr.write(`${err.message}\n`);
        process.exit(1);
      },
    );
    return;
  }
  const until = Date.now() + (args.forMs ?? 0);
  const everyMs = args.everyMs;
  const tick = (): void => {
    if (Date.now() >= until) return;
    // Each run on a port of its own: the last one's may still be in TIME_WAIT.
    run({ ...args, localPort: undefined }).catch(() => undefined).finally(() => setTimeout(tick, everyMs));
  };
  tick();
}
