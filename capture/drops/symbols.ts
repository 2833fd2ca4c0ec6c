// Kernel addresses to `function+0xoffset` from /proc/kallsyms: the drop location
// and the stack frames of a drop.
import { readFile } from 'node:fs/promises';

/** A function this far below an address is not taken as its container: kallsyms was read before the code was loaded. */
const MAX_FUNCTION_BYTES = 256 * 1024;
/** Reading kallsyms again for an address it did not cover, at most this often. */
const RELOAD_INTERVAL_MS = 10_000;

export interface KernelSymbol {
  name: string;
  offset: number;
  /** The module, or null for the kernel image. */
  module: string | null;
}

interface SymbolTable {
  /** Start addresses, ascending. */
  addresses: BigUint64Array;
  names: string[];
  modules: Array<string | null>;
}

/** Text symbols (t, T, w, W) of a /proc/kallsyms listing, sorted by address. */
export function parseKallsyms(text: string): SymbolTable {
  const entries: Array<{ address: bigint; name: string; module: string | null }> = [];
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]+) ([tTwW]) (\S+)(?:\t\[(\S+)\])?/.exec(line);
    if (!match) continue;
    const address = BigInt(`0x${match[1]}`);
    if (address !== 0n) entries.push({ address, name: match[3], module: match[4] ?? null });
  }
  entries.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return {
    addresses: BigUint64Array.from(entries, (e) => e.address),
    names: entries.map((e) => e.name),
    modules: entries.map((e) => e.module),
  };
}

/** Symbolizes kernel text addresses; kallsyms can be read again (throttled) for addresses it did not cover. */
export class KernelSymbols {
  #table: SymbolTable;
  #loadedAt: number;
  readonly #path: string;

  private constructor(table: SymbolTable, path: string) {
    this.#table = table;
    this.#loadedAt = Date.now();
    this.#path = path;
  }

  static async load(path = '/proc/kallsyms'): Promise<KernelSymbols> {
    return new KernelSymbols(parseKallsyms(await readFile(path, 'utf8')), path);
  }

  /** False when kallsyms shows no addresses (kernel.kptr_restrict, or not root): locations stay hexadecimal. */
  get available(): boolean {
    return this.#table.addresses.length > 0;
  }

  /** The function holding `address`, or null when kallsyms (as last read) does not cover it. */
  resolve(address: bigint): KernelSymbol | null {
    const { addresses, names, modules } = this.#table;
    let low = 0;
    let high = addresses.length - 1;
    if (high < 0 || address < addresses[0]) return null;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (addresses[middle] <= address) low = middle;
      else high = middle - 1;
    }
    const offset = Number(address - addresses[low]);
    return offset <= MAX_FUNCTION_BYTES ? { name: names[low], offset, module: modules[low] } : null;
  }

  /**
   * Read kallsyms again, for addresses of code loaded since (a module, a BPF
   * program); false, doing nothing, when it was read less than RELOAD_INTERVAL_MS ago.
   */
  async reload(): Promise<boolean> {
    if (Date.now() - this.#loadedAt < RELOAD_INTERVAL_MS) return false;
    this.#loadedAt = Date.now();
    this.#table = parseKallsyms(await readFile(this.#path, 'utf8'));
    return true;
  }
}

/** `nf_hook_slow+0x9c`, `nft_do_chain+0x1a0 [nf_tables]`, or the address in hex when unknown. */
export function formatSymbol(address: bigint, symbol: KernelSymbol | null): string {
  if (!symbol) return `0x${address.toString(16)}`;
  return `${symbol.name}+0x${symbol.offset.toString(16)}${symbol.module ? ` [${symbol.module}]` : ''}`;
}
