import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { connectionSearchUrl } from '../api/client';
import type { ConnectionSearchResponse } from '../api/types.generated';
import type { FlowQuery } from '../api/types';
import { useApiResource } from './useApiResource';

/** GET /api/v1/connections/search — one page of the connections (one row each) matching `query` (null: none fetched), and the cursor of the next. */
export function useConnectionSearch(query: MaybeRefOrGetter<FlowQuery | null>) {
  const resource = useApiResource<ConnectionSearchResponse>(() => {
    const value = toValue(query);
    return value === null ? null : connectionSearchUrl(value);
  });
  return {
    connections: computed(() => resource.data.value?.connections ?? null),
    nextCursor: computed(() => resource.data.value?.next_cursor ?? null),
    loading: resource.loading,
    error: resource.error,
    reload: resource.reload,
  };
}
