import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { connectionUrl } from '../api/client';
import type { ConnectionResponse } from '../api/types';
import { useApiResource } from './useApiResource';

/** GET /api/v1/connections?tuple= — the connection's tuples, NAT hops, capture points and drops (404: unknown). */
export function useConnection(tuple: MaybeRefOrGetter<string>) {
  const resource = useApiResource<ConnectionResponse>(() => {
    const text = toValue(tuple).trim();
    return text ? connectionUrl(text) : null;
  });
  return {
    connection: computed(() => resource.data.value?.connection ?? null),
    loading: resource.loading,
    error: resource.error,
    notFound: resource.notFound,
  };
}
