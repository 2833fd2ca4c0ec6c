import { FLOW_ORDERS, FLOW_TRAITS, type FlowOrder, type FlowTrait, type LoopbackChoice } from '../api/types.generated';
import type { FlowQuery } from '../api/types';

/** The flow search's one-value filters, in the order the form shows them. */
export const FLOW_TEXT_FILTERS = ['ip', 'src', 'dst', 'port', 'sport', 'dport', 'proto', 'from', 'to', 'node', 'netns', 'iface'] as const;
export type FlowTextFilter = (typeof FLOW_TEXT_FILTERS)[number];

/** Every parameter the search form sets, so a 400 naming one is shown at its field. */
export const FLOW_FORM_PARAMETERS = [...FLOW_TEXT_FILTERS, 'state', 'has', 'order', 'limit', 'loopback'] as const;
export type FlowFormParameter = (typeof FLOW_FORM_PARAMETERS)[number];

export const DEFAULT_FLOW_ORDER: FlowOrder = '-start';
export const DEFAULT_FLOW_LIMIT = 50;

/** The UI leaves loopback traffic (nettrail's own API calls, the host's DNS) out unless asked; the API keeps it by default. */
export const UI_DEFAULT_LOOPBACK: LoopbackChoice = 'exclude';
const LOOPBACK_CHOICES: readonly LoopbackChoice[] = ['include', 'exclude', 'only'];
const isLoopback = (value: string | null): value is LoopbackChoice => (LOOPBACK_CHOICES as readonly (string | null)[]).includes(value);

/** What a list page shows: one row per connection, or one per flow (capture point). */
export type ListView = 'connections' | 'flows';
export const listViewFromParams = (params: URLSearchParams): ListView => (params.get('view') === 'flows' ? 'flows' : 'connections');

const isOrder = (value: string | null): value is FlowOrder => (FLOW_ORDERS as readonly string[]).includes(value ?? '');
const isTrait = (value: string): value is FlowTrait => (FLOW_TRAITS as readonly string[]).includes(value);

/** A flow search from URL parameters named as the API's (so a search page's URL is its API query). */
export function flowQueryFromParams(params: URLSearchParams): FlowQuery {
  const query: FlowQuery = {};
  for (const name of FLOW_TEXT_FILTERS) {
    const value = params.get(name)?.trim();
    if (value) query[name] = value;
  }
  const states = params.getAll('state').filter(Boolean);
  if (states.length) query.state = states;
  const traits = params.getAll('has').filter(isTrait);
  if (traits.length) query.has = traits;
  const loopback = params.get('loopback');
  query.loopback = isLoopback(loopback) ? loopback : UI_DEFAULT_LOOPBACK;
  const order = params.get('order');
  if (isOrder(order)) query.order = order;
  const limit = Number(params.get('limit'));
  if (Number.isInteger(limit) && limit > 0) query.limit = limit;
  const cursor = params.get('cursor');
  if (cursor) query.cursor = cursor;
  return query;
}

/** The API's (and the search page's) query parameters; empty filters are left out, lists repeat their parameter. */
export function flowQueryParams(query: FlowQuery): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of FLOW_TEXT_FILTERS) {
    const value = query[name]?.trim();
    if (value) params.set(name, value);
  }
  for (const state of query.state ?? []) params.append('state', state);
  for (const trait of query.has ?? []) params.append('has', trait);
  if (query.loopback) params.set('loopback', query.loopback);
  if (query.order) params.set('order', query.order);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  if (query.cursor) params.set('cursor', query.cursor);
  return params;
}

/** The search page of `query` in `view` (connections, the default, are left out of the URL). */
export function flowSearchHref(query: FlowQuery, view: ListView = 'connections'): string {
  const params = flowQueryParams(query);
  if (view === 'flows') params.set('view', 'flows');
  const text = params.toString();
  return text ? `/flows?${text}` : '/flows';
}
