// The app options of a real store with nothing captured: the API over a flow
// log alone, as the API tests and the API benchmark serve it.
import type { AppOptions } from '../../api/options.js';
import type { FlowLogStore } from '../../flowlog/store.js';
import type { FlowLogWriter } from '../../flowlog/writer.js';
import { storeBackedOptions } from '../../service/store-reader.js';

/** AppOptions reading a real store. */
export function storeAppOptions(store: FlowLogStore, writer: FlowLogWriter | null, extra: Partial<AppOptions> = {}): AppOptions {
  return {
    ...storeBackedOptions(store),
    captureStatus: () => null,
    dropStatus: () => null,
    dropFates: () => null,
    natStatus: () => null,
    writerStats: () => writer?.stats() ?? null,
    uiDir: null,
    token: null,
    rateLimitPerMinute: null,
    ...extra,
  };
}
