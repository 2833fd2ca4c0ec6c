import { flowQueryParams } from '../lib/flowQuery';
import type { ApiErrorBody } from './types.generated';
import type { FlowQuery } from './types';

/** A failed API call: an HTTP error with the server's {error:{code,message,parameter?}}, or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The query parameter the server rejected, when it named one. */
  readonly parameter: string | null;

  constructor(status: number, code: string, message: string, parameter: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.parameter = parameter;
  }
}

export function toApiError(failure: unknown): ApiError {
  if (failure instanceof ApiError) return failure;
  const message = failure instanceof Error ? failure.message : String(failure);
  return new ApiError(0, 'NETWORK_ERROR', message || 'the request failed');
}

function isErrorBody(body: unknown): body is ApiErrorBody {
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const error = (body as { error: unknown }).error;
  return typeof error === 'object' && error !== null && 'code' in error && 'message' in error;
}

async function errorFromResponse(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body: unknown = JSON.parse(text);
    if (isErrorBody(body)) return new ApiError(response.status, body.error.code, body.error.message, body.error.parameter ?? null);
  } catch {
    // not JSON: fall through to the status line
  }
  return new ApiError(response.status, `HTTP_${response.status}`, response.statusText || text.slice(0, 200));
}

export async function getJson<T>(url: string, signal: AbortSignal): Promise<T> {
  const response = await fetch(url, { signal, headers: { accept: 'application/json' } });
  if (!response.ok) throw await errorFromResponse(response);
  const contentType = response.headers.get('content-type') ?? '';
  if (!contentType.includes('json')) {
    throw new ApiError(response.status, 'BAD_RESPONSE', `expected JSON from ${url}, got ${contentType || 'no content type'}`);
  }
  return (await response.json()) as T;
}

/**
 * Which connection a page shows: one connection id, or a tuple with `at` picking, among the
 * connections that used the tuple, the one closest to that time (default: the newest).
 */
export type ConnectionRef = { id: string } | { tuple: string; at: string | null };

/** A connection's URL under `path`. */
function withConnection(path: string, ref: ConnectionRef): string {
  if ('id' in ref) return `${path}?id=${encodeURIComponent(ref.id)}`;
  const atPart = ref.at ? `&at=${encodeURIComponent(ref.at)}` : '';
  return `${path}?tuple=${encodeURIComponent(ref.tuple)}${atPart}`;
}

export const connectionUrl = (ref: ConnectionRef) => withConnection('/api/v1/connections', ref);
export const timelineUrl = (ref: ConnectionRef) => withConnection('/api/v1/connections/timeline', ref);
export const diagnosisUrl = (ref: ConnectionRef) => withConnection('/api/v1/connections/diagnosis', ref);
export const pcapUrl = (ref: ConnectionRef) => withConnection('/api/v1/pcap', ref);
/** A zip of one pcapng per capture point: each reads right in Wireshark's own TCP analysis. */
export const pcapByPointUrl = (ref: ConnectionRef) => `${pcapUrl(ref)}&split=point`;
/** The pcapng of one capture point (node/netns/iface). */
export const pcapOfPointUrl = (ref: ConnectionRef, point: string) => `${pcapUrl(ref)}&points=${encodeURIComponent(point)}`;
export const wiresharkProfileUrl = '/api/v1/wireshark-profile';
export const captureStatusUrl = '/api/v1/capture/status';

export const flowsUrl = (query: FlowQuery) => `/api/v1/flows?${flowQueryParams(query)}`;
/** The connection search has no order: newest first always. */
export const connectionSearchUrl = (query: FlowQuery) => `/api/v1/connections/search?${flowQueryParams({ ...query, order: undefined })}`;
