// Running a helper program (nsenter, cat, sysctl, ovs-appctl) to completion.
import { execFile } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit code, null when killed; -1 when the program could not be started (see spawnError). */
  code: number | null;
  spawnError?: NodeJS.ErrnoException;
}

const COMMAND_TIMEOUT_MS = 10_000;

/** Runs a command to completion; never rejects. */
export function runCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024, env }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr, code: 0 });
      const e = err as NodeJS.ErrnoException & { code?: string | number };
      if (typeof e.code === 'string') return resolve({ stdout, stderr, code: -1, spawnError: e });
      resolve({ stdout, stderr, code: typeof e.code === 'number' ? e.code : null });
    });
  });
}
