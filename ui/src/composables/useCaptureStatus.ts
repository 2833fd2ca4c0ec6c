import { onScopeDispose, ref, shallowRef } from 'vue';
import { ApiError, captureStatusUrl, getJson, toApiError } from '../api/client';
import type { CaptureStatus } from '../api/types.generated';

/** GET /api/v1/capture/status every `everyMs` (default 2 s): what capture, drop tracing, NAT tracking and the store are doing. */
export function useCaptureStatus(everyMs = 2000) {
  const status = shallowRef<CaptureStatus | null>(null);
  const error = shallowRef<ApiError | null>(null);
  /** When the shown status was read (ms since the epoch). */
  const readAt = ref<number | null>(null);
  let inFlight: AbortController | null = null;

  async function refresh(): Promise<void> {
    inFlight?.abort();
    const request = new AbortController();
    inFlight = request;
    try {
      const body = await getJson<CaptureStatus>(captureStatusUrl, request.signal);
      if (request.signal.aborted) return;
      status.value = body;
      readAt.value = Date.now();
      error.value = null;
    } catch (failure) {
      if (!request.signal.aborted) error.value = toApiError(failure);
    }
  }

  void refresh();
  const timer = setInterval(() => void refresh(), everyMs);
  onScopeDispose(() => {
    clearInterval(timer);
    inFlight?.abort();
  });
  return { status, error, readAt, refresh };
}
