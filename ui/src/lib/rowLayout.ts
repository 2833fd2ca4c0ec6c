/** Vertical positions of the rows of a long list: where each row starts. */
export interface RowLayout {
  rowHeight: number;
  /** `tops[i]` is where row i starts; `tops[count]` is the list's full height. */
  tops: Float64Array;
}

export function rowCount(layout: RowLayout): number {
  return layout.tops.length - 1;
}

export function totalHeight(layout: RowLayout): number {
  return layout.tops[layout.tops.length - 1];
}

/** Rows one after the other. */
export function evenRows(count: number, rowHeight: number): RowLayout {
  const tops = new Float64Array(count + 1);
  for (let index = 0; index <= count; index += 1) tops[index] = index * rowHeight;
  return { rowHeight, tops };
}

/**
 * Rows spaced by the time between them: before each row, a gap of `pxPerMs` pixels per
 * millisecond since the previous row, at most `maxGapPx` (longer pauses are labelled instead).
 */
export function timeSpacedRows(intervalsNs: readonly number[], rowHeight: number, pxPerMs: number, maxGapPx: number): RowLayout {
  const tops = new Float64Array(intervalsNs.length + 1);
  let top = 0;
  intervalsNs.forEach((intervalNs, index) => {
    if (index > 0) top += Math.min(maxGapPx, (intervalNs / 1e6) * pxPerMs);
    tops[index] = top;
    top += rowHeight;
  });
  tops[intervalsNs.length] = top;
  return { rowHeight, tops };
}

/** The empty space above row `index` (time spacing), 0 for even rows. */
export function gapAbove(layout: RowLayout, index: number): number {
  return index === 0 ? 0 : layout.tops[index] - layout.tops[index - 1] - layout.rowHeight;
}

/** The row at height `y` (the one whose slot, gap included, holds it), clamped to the rows there are. */
export function rowAt(layout: RowLayout, y: number): number {
  const { tops } = layout;
  const count = tops.length - 1;
  if (count <= 0) return 0;
  let low = 0;
  let high = count - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (tops[middle] <= y) low = middle;
    else high = middle - 1;
  }
  return low;
}
