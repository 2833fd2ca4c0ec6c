import { computed, onBeforeUnmount, onMounted, ref, toValue, type MaybeRefOrGetter, type Ref } from 'vue';
import { rowAt, rowCount, type RowLayout } from '../lib/rowLayout';

/**
 * Windowing for a scroll container of rows laid out by `layout`: only the rows in view
 * (plus `overscan` on each side) are rendered, so the DOM stays small however long the list.
 */
export function useWindowedRows(container: Ref<HTMLElement | null>, layout: MaybeRefOrGetter<RowLayout>, overscan = 12) {
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

  const first = computed(() => Math.max(0, rowAt(toValue(layout), scrollTop.value) - overscan));
  const end = computed(() => {
    const current = toValue(layout);
    return Math.min(rowCount(current), rowAt(current, scrollTop.value + viewportHeight.value) + 1 + overscan);
  });

  return {
    /** Index of the first rendered row. */
    first,
    /** One past the last rendered row. */
    end,
    /** The container's inner width, for layouts that fit it. */
    viewportWidth,
    /** Re-reads the scroll position (on scroll, and after setting it). */
    onScroll: measure,
  };
}
