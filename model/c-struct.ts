// Fixed-width C structs as JavaScript sees them: fields declared in order as in a
// header shared with C (bpf/*.h, native/*.h), laid out as the C compiler does, and
// read in host byte order. Each header's test checks the layout against the compiled header.

export interface FieldLayout {
  offset: number;
  size: number;
}

export interface StructLayout<F extends string> {
  size: number;
  fields: Record<F, FieldLayout>;
}

/** The fixed-width types of the shared headers, by size; each is aligned to its size. */
const C_TYPE_BYTES = { u8: 1, u16: 2, u32: 4, u64: 8 } as const;
type CType = keyof typeof C_TYPE_BYTES;
/** A field's type: a C type, or an array [type, length]. */
export type CField = CType | readonly [CType, number];

const alignUp = (offset: number, align: number) => Math.ceil(offset / align) * align;

/** Lays the fields out in order as the C compiler does: each at its type's alignment, the size padded to the largest. */
export function cStruct<F extends string>(fields: Record<F, CField>): StructLayout<F> {
  const layout = { size: 0, fields: {} as Record<F, FieldLayout> };
  let structAlign = 1;
  for (const [name, field] of Object.entries(fields) as Array<[F, CField]>) {
    const [type, length] = typeof field === 'string' ? [field, 1] : field;
    const align = C_TYPE_BYTES[type];
    const offset = alignUp(layout.size, align);
    layout.fields[name] = { offset, size: align * length };
    layout.size = offset + align * length;
    structAlign = Math.max(structAlign, align);
  }
  layout.size = alignUp(layout.size, structAlign);
  return layout;
}

/** Reads fields of the struct of `layout` at `at`, in host byte order (little-endian). */
export function fieldReader<F extends string>(layout: StructLayout<F>, view: DataView, at: number) {
  const fields = layout.fields;
  return {
    u8: (name: F) => view.getUint8(at + fields[name].offset),
    u16: (name: F) => view.getUint16(at + fields[name].offset, true),
    u32: (name: F) => view.getUint32(at + fields[name].offset, true),
    u64: (name: F) => view.getBigUint64(at + fields[name].offset, true),
  };
}
