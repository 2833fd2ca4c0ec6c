import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { connectionUrl, type ConnectionRef } from '../api/client';
import type { ConnectionResponse } from '../api/types.generated';
import { useApiResource } from './useApiResource';

/**
 * GET /api/v1/connections?id= or ?tuple=[&at=] — the connection's tuples, NAT hops, capture points, drops
 * and the other connections of its tuples (404: unknown). `at` picks, among connections that reused the
 * tuple, the one closest to that time.
 */
export function useConnection(ref: MaybeRefOrGetter<ConnectionRef | null>) {
  const resource = useApiResource<ConnectionResponse>(() => {
    const which = toValue(ref);
    return which ? connectionUrl(which) : null;
  });
  return {
    connection: computed(() => resource.data.value?.connection ?? null),
    loading: resource.loading,
    error: resource.error,
    notFound: resource.notFound,
  };
}
