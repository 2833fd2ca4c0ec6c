// What `nettrail serve` runs to collect records: packet capture, NAT tracking,
// drop tracing. service/service.ts lists them in the order they start and goes
// down the list to start them, to hand them the namespaces capture is attached
// in, and to stop them.
import type { NetnsRef } from './records.js';

export interface Collector {
  /** As log lines name it: `${name} is off: ${why}`. */
  readonly name: string;
  /** serve does not run without it; without any other it goes on, saying so once. */
  readonly required?: boolean;
  /** Resolves once it collects; rejects when it cannot collect at all. */
  start(): Promise<void>;
  /** Collect in exactly these namespaces from now on (capture's, whenever they may have changed). */
  follow(namespaces: NetnsRef[]): void | Promise<void>;
  /** Hand over everything collected so far and let go of what was attached or opened. */
  stop(): Promise<void>;
}
