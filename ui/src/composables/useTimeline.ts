import { toValue, type MaybeRefOrGetter } from 'vue';
import { timelineUrl, type ConnectionRef } from '../api/client';
import type { TimelineResponse } from '../api/types.generated';
import { useApiResource } from './useApiResource';

/** GET /api/v1/connections/timeline?id= (or ?tuple=[&at=]) — every packet and drop of the connection at every capture point, in time order. */
export function useTimeline(ref: MaybeRefOrGetter<ConnectionRef | null>) {
  const resource = useApiResource<TimelineResponse>(() => {
    const which = toValue(ref);
    return which ? timelineUrl(which) : null;
  });
  return {
    timeline: resource.data,
    loading: resource.loading,
    error: resource.error,
  };
}
