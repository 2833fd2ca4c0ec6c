import { toValue, type MaybeRefOrGetter } from 'vue';
import { timelineUrl } from '../api/client';
import type { TimelineResponse } from '../api/types.generated';
import { useApiResource } from './useApiResource';

/** GET /api/v1/connections/timeline?tuple=[&at=] — every packet and drop of the connection at every capture point, in time order. */
export function useTimeline(tuple: MaybeRefOrGetter<string>, at: MaybeRefOrGetter<string | null>) {
  const resource = useApiResource<TimelineResponse>(() => {
    const text = toValue(tuple).trim();
    return text ? timelineUrl(text, toValue(at)) : null;
  });
  return {
    timeline: resource.data,
    loading: resource.loading,
    error: resource.error,
  };
}
