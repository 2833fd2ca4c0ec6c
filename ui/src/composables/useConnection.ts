import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { connectionUrl } from '../api/client';
import type { ConnectionResponse } from '../api/types.generated';
import { useApiResource } from './useApiResource';

/**
 * GET /api/v1/connections?tuple=[&at=] — the connection's tuples, NAT hops, capture points and drops (404: unknown).
 * `at` picks, among connections that reused the tuple, the one closest to that time.
 */
export function useConnection(tuple: MaybeRefOrGetter<string>, at: MaybeRefOrGetter<string | null>) {
  const resource = useApiResource<ConnectionResponse>(() => {
    const text = toValue(tuple).trim();
    return text ? connectionUrl(text, toValue(at)) : null;
  });
  return {
    connection: computed(() => resource.data.value?.connection ?? null),
    loading: resource.loading,
    error: resource.error,
    notFound: resource.notFound,
  };
}
