// Drop-reason names read from the running kernel's BTF (/sys/kernel/btf): enum
// skb_drop_reason, the subsystem bits (enum skb_drop_reason_subsys and the mask
// in skb_drop_reason) and the per-subsystem enums of the kernel and its loaded
// modules (`enum mac80211_drop_reason`, `enum ovs_drop_reason`, ...). Nothing is
// compiled in: a value the kernel has no name for is shown by number.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export class DropReasonsError extends Error {
  readonly code = 'BTF_UNREADABLE';
}

export interface BtfEnum {
  name: string;
  /** Values as unsigned (or, for signed enums, signed) integers; 64-bit ones as far as a double holds them. */
  values: Array<{ name: string; value: number }>;
}

const BTF_MAGIC = 0xeb9f;
const BTF_HEADER_MIN = 24;

// BTF kinds (include/uapi/linux/btf.h) and the bytes each adds after struct btf_type.
const KIND_ENUM = 6;
const KIND_ENUM64 = 19;
const extraBytes = (kind: number, vlen: number): number => {
  switch (kind) {
    case 1: // INT
    case 14: // VAR
    case 17: // DECL_TAG
      return 4;
    case 3: // ARRAY
      return 12;
    case 4: // STRUCT
    case 5: // UNION
    case 15: // DATASEC
    case KIND_ENUM64:
      return 12 * vlen;
    case KIND_ENUM:
    case 13: // FUNC_PROTO
      return 8 * vlen;
    case 2: // PTR
    case 7: // FWD
    case 8: // TYPEDEF
    case 9: // VOLATILE
    case 10: // CONST
    case 11: // RESTRICT
    case 12: // FUNC
    case 16: // FLOAT
    case 18: // TYPE_TAG
      return 0;
    default:
      return -1;
  }
};

interface BtfSections {
  view: DataView;
  littleEndian: boolean;
  types: [number, number];
  strings: [number, number];
}

function sections(btf: Uint8Array, what: string): BtfSections {
  const view = new DataView(btf.buffer, btf.byteOffset, btf.byteLength);
  if (btf.length < BTF_HEADER_MIN) throw new DropReasonsError(`${what}: too short for a BTF header`);
  const littleEndian = view.getUint16(0, true) === BTF_MAGIC;
  if (!littleEndian && view.getUint16(0, false) !== BTF_MAGIC) throw new DropReasonsError(`${what}: not BTF (bad magic)`);
  const u32 = (at: number) => view.getUint32(at, littleEndian);
  const headerLen = u32(4);
  const typeOff = headerLen + u32(8);
  const strOff = headerLen + u32(16);
  const types: [number, number] = [typeOff, typeOff + u32(12)];
  const strings: [number, number] = [strOff, strOff + u32(20)];
  if (headerLen < BTF_HEADER_MIN || types[1] > btf.length || strings[1] > btf.length) {
    throw new DropReasonsError(`${what}: BTF sections run past the end of the data`);
  }
  return { view, littleEndian, types, strings };
}

/**
 * The enums of a BTF blob whose names `wanted` accepts. `base` is the BTF a
 * split BTF (a module's) extends: its strings come first in the offsets.
 */
export function readBtfEnums(btf: Uint8Array, wanted: (name: string) => boolean, what: string, base?: Uint8Array): BtfEnum[] {
  const own = sections(btf, what);
  const baseSections = base ? sections(base, `${what} (base)`) : null;
  const baseStringBytes = baseSections ? baseSections.strings[1] - baseSections.strings[0] : 0;
  const decoder = new TextDecoder();
  const cString = (bytes: Uint8Array, from: number, end: number) => {
    let to = from;
    while (to < end && bytes[to] !== 0) to++;
    return decoder.decode(bytes.subarray(from, to));
  };
  const name = (offset: number): string => {
    if (base && baseSections && offset < baseStringBytes) return cString(base, baseSections.strings[0] + offset, baseSections.strings[1]);
    const at = own.strings[0] + offset - baseStringBytes;
    return at < own.strings[1] ? cString(btf, at, own.strings[1]) : '';
  };

  const { view, littleEndian } = own;
  const u32 = (at: number) => view.getUint32(at, littleEndian);
  const enums: BtfEnum[] = [];
  for (let at = own.types[0]; at < own.types[1]; ) {
    const info = u32(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const signed = (info >>> 31) === 1;
    const extra = extraBytes(kind, vlen);
    if (extra < 0) throw new DropReasonsError(`${what}: unknown BTF kind ${kind} at byte ${at}`);
    const members = at + 12;
    if ((kind === KIND_ENUM || kind === KIND_ENUM64) && wanted(name(u32(at)))) {
      const values: BtfEnum['values'] = [];
      for (let i = 0; i < vlen; i++) {
        if (kind === KIND_ENUM) {
          const m = members + 8 * i;
          values.push({ name: name(u32(m)), value: signed ? view.getInt32(m + 4, littleEndian) : u32(m + 4) });
        } else {
          const m = members + 12 * i;
          const high = signed ? view.getInt32(m + 8, littleEndian) : u32(m + 8);
          values.push({ name: name(u32(m)), value: high * 2 ** 32 + u32(m + 4) });
        }
      }
      enums.push({ name: name(u32(at)), values });
    }
    at = members + extra;
  }
  return enums;
}

const CORE_ENUM = 'skb_drop_reason';
const SUBSYS_ENUM = 'skb_drop_reason_subsys';
const SUBSYS_MASK_NAME = 'SKB_DROP_REASON_SUBSYS_MASK';
/** Markers in enum skb_drop_reason that are not reasons. */
const CORE_MARKERS = new Set(['SKB_DROP_REASON_MAX', SUBSYS_MASK_NAME]);
const isDropReasonEnum = (name: string) => name === CORE_ENUM || name === SUBSYS_ENUM || name.endsWith('_drop_reason');

/** Names of the kernel's drop reasons; build it with DropReasons.load(). */
export class DropReasons {
  readonly #names: Map<number, string>;
  readonly #subsystems: Map<number, string>;
  /** The subsystem bits of a reason value (SKB_DROP_REASON_SUBSYS_MASK); 0 on kernels without subsystems. */
  readonly subsystemMask: number;
  readonly #shift: number;

  private constructor(names: Map<number, string>, subsystems: Map<number, string>, subsystemMask: number) {
    this.#names = names;
    this.#subsystems = subsystems;
    this.subsystemMask = subsystemMask;
    let shift = 0;
    while (subsystemMask !== 0 && ((subsystemMask >>> shift) & 1) === 0) shift++;
    this.#shift = shift;
  }

  /** Reads vmlinux's BTF and that of every loaded module under `btfDir`. */
  static load(btfDir = '/sys/kernel/btf'): DropReasons {
    const read = (file: string) => {
      try {
        return readFileSync(path.join(btfDir, file));
      } catch (err) {
        throw new DropReasonsError(`cannot read ${path.join(btfDir, file)}: ${(err as Error).message} (the kernel needs CONFIG_DEBUG_INFO_BTF)`);
      }
    };
    const vmlinux = read('vmlinux');
    const enums = readBtfEnums(vmlinux, isDropReasonEnum, path.join(btfDir, 'vmlinux'));
    for (const module of readdirSync(btfDir).filter((f) => f !== 'vmlinux').sort()) {
      let btf: Buffer;
      try {
        btf = readFileSync(path.join(btfDir, module));
      } catch {
        continue; // unloaded meanwhile
      }
      enums.push(...readBtfEnums(btf, isDropReasonEnum, path.join(btfDir, module), vmlinux));
    }
    return DropReasons.fromEnums(enums);
  }

  /** From the enums readBtfEnums found: the core enum, the subsystem enum, and per-subsystem enums. */
  static fromEnums(enums: BtfEnum[]): DropReasons {
    const core = enums.find((e) => e.name === CORE_ENUM);
    if (!core) throw new DropReasonsError(`the kernel's BTF has no enum ${CORE_ENUM} (Linux ≥ 5.17 has it)`);
    const mask = core.values.find((v) => v.name === SUBSYS_MASK_NAME)?.value ?? 0;
    const names = new Map<number, string>();
    for (const { name, value } of core.values) {
      if (CORE_MARKERS.has(name) || names.has(value)) continue;
      names.set(value, name.replace(/^SKB_DROP_REASON_/, '').replace(/^SKB_/, ''));
    }
    const subsystems = new Map<number, string>();
    for (const { name, value } of enums.find((e) => e.name === SUBSYS_ENUM)?.values ?? []) {
      if (name !== 'SKB_DROP_REASON_SUBSYS_NUM') subsystems.set(value, name.replace(/^SKB_DROP_REASON_SUBSYS_/, ''));
    }
    // Per-subsystem enums hold their subsystem in the high bits; their other values (mac80211's RX_CONTINUE, ...)
    // are not reasons, nor are markers such as __OVS_DROP_REASON (the subsystem's base).
    for (const e of enums) {
      if (e.name === CORE_ENUM || e.name === SUBSYS_ENUM) continue;
      for (const { name, value } of e.values) {
        if (mask !== 0 && (value & mask) >>> 0 !== 0 && !name.startsWith('__') && !names.has(value)) names.set(value, name);
      }
    }
    return new DropReasons(names, subsystems, mask >>> 0);
  }

  /** The reason's name (`NETFILTER_DROP`, `OVS_DROP_LAST_ACTION`), or its number when the kernel has no name for it. */
  name(code: number): string {
    return this.#names.get(code) ?? String(code);
  }

  known(code: number): boolean {
    return this.#names.has(code);
  }

  /** The value of a reason name (as name() gives it), or undefined when this kernel has no such reason. */
  code(name: string): number | undefined {
    for (const [code, known] of this.#names) if (known === name) return code;
    return undefined;
  }

  /** The subsystem a reason belongs to (`CORE`, `OPENVSWITCH`, ...), or null when unknown. */
  subsystem(code: number): string | null {
    if (this.subsystemMask === 0) return 'CORE';
    return this.#subsystems.get(((code & this.subsystemMask) >>> 0) >>> this.#shift) ?? null;
  }

  /** Every named reason, by value. */
  entries(): Array<[number, string]> {
    return [...this.#names].sort(([a], [b]) => a - b);
  }
}
