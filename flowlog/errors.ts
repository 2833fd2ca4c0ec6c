/**
 * Errors of the flow-log store. Codes: STORE_OPEN, STORE_VERSION (server older
 * than the minimum), STORE_SCHEMA (store written by a newer nettrail),
 * STORE_CONFIG, STORE_CLOSED (a read after close), STORE_FORMAT (a result
 * the reader does not understand), STORE_UNAVAILABLE (a read the store did not
 * answer: the embedded engine closed, a server unreachable or not answering in
 * time), STORE_QUERY_FAILED (a read the engine failed with an error of its
 * own), INVALID_VALUE (a record field or query argument out of its column's
 * range), WRITER_CLOSED, FLUSH_FAILED.
 */
export class FlowLogError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlowLogError';
  }
}

/** Network failures of a ClickHouse server connection (Node system errors and undici's). */
const NETWORK_ERROR_CODES = /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/;

/** chDB's codes for a session that is closed, did not connect or ran out of time. */
const CHDB_UNAVAILABLE_CODES = new Set(['CHDB_CLOSED', 'CHDB_CONNECTION', 'CHDB_TIMEOUT']);

/** The parts of the ClickHouse client's and chDB's errors the store's failures are told by. */
type DriverError = Error & { code?: unknown; type?: unknown };

/** An error of the engine: `ClickHouseError` carries the server's (or chDB's) numeric code and type name. */
const isEngineError = ({ name, code, type }: DriverError): boolean =>
  name === 'ClickHouseError' || (typeof code === 'string' && /^\d+$/.test(code) && typeof type === 'string');

/** The store not answering: the embedded engine closed, a server unreachable or not answering in time. */
function isUnavailable({ code, message }: DriverError): boolean {
  if (typeof code === 'string' && (CHDB_UNAVAILABLE_CODES.has(code) || NETWORK_ERROR_CODES.test(code))) return true;
  return message === 'ChdbConnection is closed' || /^Timeout error\.?$/.test(message) || message === 'socket hang up';
}

/**
 * Whether `err`, thrown by the ClickHouse client or chDB, is the store
 * failing: an error of the engine, one of chDB's (codes CHDB_*), the embedded
 * engine closed, a server unreachable or not answering in time.
 */
export function isStoreFailure(err: unknown): err is Error {
  if (!(err instanceof Error) || err instanceof FlowLogError) return false;
  const { code } = err as DriverError;
  return isEngineError(err) || (typeof code === 'string' && code.startsWith('CHDB_')) || isUnavailable(err);
}

/** Why the store failed, short and without the query: the engine's code and type, the error's code, or its first line. */
function failureReason(err: DriverError): string {
  const { code, type } = err;
  if (typeof type === 'string' && typeof code === 'string') return `ClickHouse error ${code} ${type}`;
  if (typeof code === 'string') return code;
  return err.message.split('\n')[0].slice(0, 120);
}

/**
 * `err`, thrown by the ClickHouse client or chDB while reading, as the store's
 * error when it is the store failing (isStoreFailure): STORE_UNAVAILABLE or
 * STORE_QUERY_FAILED, its message the short reason (the engine's code and
 * type, the error's code, or its first line; never the query), `err` its
 * cause. Any other error is returned as it is.
 */
export function asStoreError(err: unknown): unknown {
  if (!isStoreFailure(err)) return err;
  return new FlowLogError(isUnavailable(err) ? 'STORE_UNAVAILABLE' : 'STORE_QUERY_FAILED', failureReason(err), { cause: err });
}
