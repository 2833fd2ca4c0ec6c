import { onScopeDispose, ref } from 'vue';
import { connectionUrl, getJson, toApiError } from '../api/client';
import { connectionHref } from '../lib/tuple';
import { navigate } from './useLocation';

/**
 * Opens the connection page for a typed tuple once the server has accepted its notation:
 * a 400 keeps the user on the form with the server's message; any other answer (found,
 * not found, failed) is shown by the connection page.
 */
export function useTupleLookup() {
  const checking = ref(false);
  const invalidMessage = ref<string | null>(null);
  let inFlight: AbortController | null = null;

  async function lookUp(input: string): Promise<void> {
    const tuple = input.trim();
    if (!tuple) return;
    inFlight?.abort();
    const request = new AbortController();
    inFlight = request;
    checking.value = true;
    invalidMessage.value = null;
    try {
      await getJson(connectionUrl({ tuple, at: null }), request.signal);
    } catch (failure) {
      if (request.signal.aborted) return;
      const error = toApiError(failure);
      if (error.status === 400) {
        invalidMessage.value = error.message;
        return;
      }
    } finally {
      if (inFlight === request) checking.value = false;
    }
    navigate(connectionHref(tuple));
  }

  onScopeDispose(() => inFlight?.abort());

  return { checking, invalidMessage, lookUp };
}
