import { computed, onScopeDispose, ref, shallowRef, toValue, watch, type MaybeRefOrGetter } from 'vue';
import { ApiError, getJson, toApiError } from '../api/client';

/**
 * GETs a JSON resource whenever its URL changes (null: nothing to fetch).
 * `data` is cleared when the URL changes and kept while `reload()` runs.
 */
export function useApiResource<T>(url: MaybeRefOrGetter<string | null>) {
  const data = shallowRef<T | null>(null);
  const error = shallowRef<ApiError | null>(null);
  const loading = ref(false);
  let inFlight: AbortController | null = null;

  async function load(target: string | null): Promise<void> {
    inFlight?.abort();
    error.value = null;
    if (target === null) {
      loading.value = false;
      return;
    }
    const request = new AbortController();
    inFlight = request;
    loading.value = true;
    try {
      const body = await getJson<T>(target, request.signal);
      if (!request.signal.aborted) data.value = body;
    } catch (failure) {
      if (!request.signal.aborted) {
        data.value = null;
        error.value = toApiError(failure);
      }
    } finally {
      if (inFlight === request) loading.value = false;
    }
  }

  watch(
    () => toValue(url),
    (target) => {
      data.value = null;
      void load(target);
    },
    { immediate: true },
  );
  onScopeDispose(() => inFlight?.abort());

  return {
    data,
    error,
    loading,
    notFound: computed(() => error.value?.status === 404),
    reload: () => load(toValue(url)),
  };
}
