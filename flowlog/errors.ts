/**
 * Errors of the flow-log store. Codes: STORE_OPEN, STORE_VERSION (server older
 * than the minimum), STORE_SCHEMA (store written by a newer nettrail),
 * STORE_CONFIG, STORE_CLOSED (a read after close), STORE_FORMAT (a result
 * the reader does not understand), INVALID_VALUE (a record field or query
 * argument out of its column's range), WRITER_CLOSED, FLUSH_FAILED.
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
