// What the API reads from the flow-log store, bound to one store: the one
// place the app's store-backed options are put together.
import { dropsForTuples, searchDrops } from '../flowlog/drops-table.js';
import { flowsBySynSeq, flowsForTuples, flowsOfConnections, natForTuple, natTranslations, packetRowsForTuples } from '../flowlog/queries.js';
import { flowById, searchFlows } from '../flowlog/flow-search.js';
import { searchConnections } from '../flowlog/connection-search.js';
import type { FlowLogStore } from '../flowlog/store.js';
import type { AppOptions } from '../api/options.js';

export type StoreBackedOptions = Pick<AppOptions, 'reader' | 'searchFlows' | 'searchConnections' | 'searchDrops' | 'flowById' | 'natTranslations' | 'storeHealthy'>;

export function storeBackedOptions(store: FlowLogStore): StoreBackedOptions {
  return {
    reader: {
      natForTuple: (proto, tuple, at) => natForTuple(store, proto, tuple, at),
      flowsForTuples: (proto, tuples, range) => flowsForTuples(store, proto, tuples, range),
      flowsBySynSeq: (proto, synSeq, synAckSeq, range) => flowsBySynSeq(store, proto, synSeq, synAckSeq, range),
      flowsOfConnections: (ids) => flowsOfConnections(store, ids),
      packetRowsForTuples: (proto, tuples, range) => packetRowsForTuples(store, proto, tuples, range),
      dropsForTuples: (proto, tuples, range) => dropsForTuples(store, proto, tuples, range),
    },
    searchFlows: (filter, page) => searchFlows(store, filter, page),
    searchConnections: (filter, page) => searchConnections(store, filter, page),
    searchDrops: (filter, page) => searchDrops(store, filter, page),
    flowById: (id) => flowById(store, id),
    natTranslations: (filter) => natTranslations(store, filter),
    storeHealthy: () => store.ping(),
  };
}
