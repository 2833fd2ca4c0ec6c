import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { flowsUrl } from '../api/client';
import type { FlowsResponse } from '../api/types.generated';
import type { FlowQuery } from '../api/types';
import { useApiResource } from './useApiResource';

/** GET /api/v1/flows — one page of the flow-log records matching `query` (null: none fetched), and the cursor of the next. */
export function useFlows(query: MaybeRefOrGetter<FlowQuery | null>) {
  const resource = useApiResource<FlowsResponse>(() => {
    const value = toValue(query);
    return value === null ? null : flowsUrl(value);
  });
  return {
    flows: computed(() => resource.data.value?.flows ?? null),
    nextCursor: computed(() => resource.data.value?.next_cursor ?? null),
    loading: resource.loading,
    error: resource.error,
    reload: resource.reload,
  };
}
