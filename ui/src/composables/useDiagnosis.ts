import { computed, toValue, type MaybeRefOrGetter } from 'vue';
import { diagnosisUrl, type ConnectionRef } from '../api/client';
import type { DiagnosisResponse } from '../api/types.generated';
import { useApiResource } from './useApiResource';

/** GET /api/v1/connections/diagnosis?id= (or ?tuple=[&at=]) — what went wrong with the connection, where, with the packets that prove it. */
export function useDiagnosis(ref: MaybeRefOrGetter<ConnectionRef | null>) {
  const resource = useApiResource<DiagnosisResponse>(() => {
    const which = toValue(ref);
    return which ? diagnosisUrl(which) : null;
  });
  return {
    diagnosis: resource.data,
    findings: computed(() => resource.data.value?.findings ?? []),
    loading: resource.loading,
    error: resource.error,
  };
}
