// The API's one error handler and the errors routes throw: every failure is
// `{"error": {"code", "message"}}` with a 4xx/5xx status, never a stack trace.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FlowLogError } from '../flowlog/errors.js';
import { TimeError } from '../model/time.js';
import { TupleError } from '../model/tuple.js';

/** A query or path parameter the route cannot use (HTTP 400). */
export class BadParameterError extends Error {
  readonly code: string;
  constructor(
    readonly parameter: string,
    message: string,
    code = 'BAD_PARAMETER',
  ) {
    super(`${parameter}: ${message}`);
    this.name = 'BadParameterError';
    this.code = code;
  }
}

export class NotFoundError extends Error {
  readonly code = 'NOT_FOUND';
}

interface ErrorBody {
  error: { code: string; message: string; parameter?: string };
}

export const errorBody = (code: string, message: string, parameter?: string): ErrorBody => ({
  error: parameter === undefined ? { code, message } : { code, message, parameter },
});

/** Errors whose message is for the user, with their HTTP status. */
const clientErrors: Array<[new (...args: never[]) => Error & { code: string }, number]> = [
  [BadParameterError, 400],
  [TupleError, 400],
  [TimeError, 400],
  [NotFoundError, 404],
];

/**
 * Why the store failed, short and without the query: for a failure of the
 * client or chDB (STORE_UNAVAILABLE, STORE_QUERY_FAILED) its message, which is
 * that reason (flowlog/errors.ts asStoreError); else the code.
 */
function storeFailureReason(err: FlowLogError): string {
  return err.code === 'STORE_UNAVAILABLE' || err.code === 'STORE_QUERY_FAILED' ? err.message : err.code;
}

/** The parameter a validation error is about: `/limit` → `limit`; an unknown one from ajv's params. */
function validationParameter(validation: NonNullable<FastifyError['validation']>[number]): string | undefined {
  const params = validation.params as Record<string, unknown>;
  if (typeof params.additionalProperty === 'string') return params.additionalProperty;
  if (typeof params.missingProperty === 'string') return params.missingProperty;
  const [first] = validation.instancePath.split('/').filter((part) => part !== '');
  return first;
}

function validationMessage(err: FastifyError, request: FastifyRequest): { parameter?: string; message: string } {
  const [first] = err.validation ?? [];
  const where = err.validationContext === 'params' ? 'path parameter' : 'query parameter';
  if (!first) return { message: err.message };
  const parameter = validationParameter(first);
  const params = first.params as Record<string, unknown>;
  if (typeof params.additionalProperty === 'string') {
    return { parameter, message: `unknown ${where} ${JSON.stringify(parameter?.slice(0, 64))}` };
  }
  const source = (err.validationContext === 'params' ? request.params : request.query) as Record<string, unknown> | undefined;
  const given = parameter === undefined ? undefined : source?.[parameter];
  if (Array.isArray(given) && first.keyword === 'type' && first.instancePath.split('/').length === 2) {
    return { parameter, message: `${parameter}: given more than once` };
  }
  if (Array.isArray(params.allowedValues)) {
    return { parameter, message: `${parameter}: must be one of ${params.allowedValues.join(', ')}` };
  }
  return { parameter, message: `${parameter ?? where}: ${first.message ?? 'is not valid'}` };
}

export function handleError(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (err.validation) {
    const { parameter, message } = validationMessage(err, request);
    return reply.code(400).send(errorBody('BAD_REQUEST', message, parameter));
  }
  for (const [type, status] of clientErrors) {
    if (err instanceof type) {
      const parameter = err instanceof BadParameterError || err instanceof TimeError ? err.parameter : undefined;
      return reply.code(status).send(errorBody((err as Error & { code: string }).code, err.message, parameter));
    }
  }
  // The flow-log store failing: every STORE_ code (its reads throw the client's and chDB's failures as those, flowlog/store.ts).
  if (err instanceof FlowLogError && err.code.startsWith('STORE_')) {
    request.log.error({ err }, 'flow-log store failed');
    return reply
      .code(503)
      .header('retry-after', '5')
      .send(errorBody('STORE_UNAVAILABLE', `the flow-log store is unavailable (${storeFailureReason(err)}); see the server log`));
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return reply.code(err.statusCode).send(errorBody(err.code ?? 'BAD_REQUEST', err.message));
  }
  request.log.error({ err }, 'request failed');
  return reply.code(500).send(errorBody('INTERNAL', 'internal error; see the server log'));
}

/** Errors fastify raises before routing (a path that does not decode), in the same shape. */
export function handleFrameworkError(err: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  return reply.code(status).send(errorBody(err.code === 'FST_ERR_BAD_URL' ? 'BAD_URL' : (err.code ?? 'BAD_REQUEST'), err.message));
}

/**
 * A preValidation hook: ajv (8.x) coerces "1e309" or "Infinity" in a numeric
 * query parameter to ±Infinity and then skips minimum/maximum, so such a
 * value would reach a route. Refuse it first.
 */
export async function refuseInfiniteNumbers(request: FastifyRequest): Promise<void> {
  const schema = request.routeOptions.schema?.querystring as { properties?: Record<string, { type?: string }> } | undefined;
  const query = request.query as Record<string, unknown>;
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (property.type !== 'integer' && property.type !== 'number') continue;
    for (const value of [query[name]].flat()) {
      if (typeof value === 'string' && Math.abs(Number(value)) === Infinity) throw new BadParameterError(name, `${JSON.stringify(value.slice(0, 64))} is not a finite number`);
    }
  }
}
