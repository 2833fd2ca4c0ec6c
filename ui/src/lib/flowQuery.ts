import { FLOW_ORDERS, FLOW_TRAITS, type FlowOrder, type FlowTrait } from '../api/types.generated';
import type { FlowQuery } from '../api/types';

/** The flow search's one-value filters, in the order the form shows them. */
export const FLOW_TEXT_FILTERS = ['ip', 'src', 'dst', 'port', 'sport', 'dport', 'proto', 'from', 'to', 'node', 'netns', 'iface'] as const;
export type FlowTextFilter = (typeof FLOW_TEXT_FILTERS)[number];

/** Every parameter the search form sets, so a 400 naming one is shown at its field. */
export const FLOW_FORM_PARAMETERS = [...FLOW_TEXT_FILTERS, 'state', 'has', 'order', 'limit'] as const;
export type FlowFormParameter = (typeof FLOW_FORM_PARAMETERS)[number];

export const DEFAULT_FLOW_ORDER: FlowOrder = '-start';
export const DEFAULT_FLOW_LIMIT = 50;

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
  if (query.order) params.set('order', query.order);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  if (query.cursor) params.set('cursor', query.cursor);
  return params;
}

export function flowSearchHref(query: FlowQuery): string {
  const params = flowQueryParams(query).toString();
  return params ? `/flows?${params}` : '/flows';
}
