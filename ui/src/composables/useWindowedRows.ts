import { computed, onBeforeUnmount, onMounted, ref, toValue, type MaybeRefOrGetter, type Ref } from 'vue';

/**
 * Windowing for a scroll container of fixed-height rows: only the rows in view (plus `overscan`
 * on each side) are rendered; `offsetTop` and `totalHeight` keep the scrollbar true to the full list.
 */
export function useWindowedRows(
  container: Ref<HTMLElement | null>,
  rowCount: MaybeRefOrGetter<number>,
  rowHeight: number,
  overscan = 12,
) {
  const scrollTop = ref(0);
  const viewportHeight = ref(0);
  const viewportWidth = ref(0);
  let resizeObserver: ResizeObserver | null = null;

  function measure(): void {
    const element = container.value;
    if (!element) return;
    scrollTop.value = element.scrollTop;
    viewportHeight.value = element.clientHeight;
    viewportWidth.value = element.clientWidth;
  }

  onMounted(() => {
    measure();
    resizeObserver = new ResizeObserver(measure);
    if (container.value) resizeObserver.observe(container.value);
  });
  onBeforeUnmount(() => resizeObserver?.disconnect());

  const first = computed(() => Math.max(0, Math.floor(scrollTop.value / rowHeight) - overscan));
  const end = computed(() =>
    Math.min(toValue(rowCount), Math.ceil((scrollTop.value + viewportHeight.value) / rowHeight) + overscan),
  );

  return {
    /** Index of the first rendered row. */
    first,
    /** One past the last rendered row. */
    end,
    offsetTop: computed(() => first.value * rowHeight),
    totalHeight: computed(() => toValue(rowCount) * rowHeight),
    /** The container's inner width, for layouts that fit it. */
    viewportWidth,
    onScroll: measure,
  };
}
