import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { flowsUrl } from '../api/client';
import type { FlowFilters, FlowsResponse } from '../api/types';
import { useApiResource } from './useApiResource';

/** GET /api/v1/flows — flow-log records matching `filters`. */
export function useFlows(filters: MaybeRefOrGetter<FlowFilters>) {
  const resource = useApiResource<FlowsResponse>(() => flowsUrl(toValue(filters)));
  return {
    flows: computed(() => resource.data.value?.flows ?? null),
    loading: resource.loading,
    error: resource.error,
    reload: resource.reload,
  };
}
