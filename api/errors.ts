// The API's one error handler and the errors routes throw: every failure is
// `{"error": {"code", "message"}}` with a 4xx/5xx status, never a stack trace; a 400
// also lists every parameter at fault in `errors` (`[{"code", "parameter", "message"}]`).
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FlowLogError } from '../flowlog/errors.js';
import { TimeError } from '../model/time.js';
import { TupleError } from '../model/tuple.js';
import { QUERY_FORMATS, type ParameterProblem, type QueryFormat } from './formats.js';

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
  error: ParameterProblem;
  errors?: ParameterProblem[];
}

const problem = (code: string, message: string, parameter?: string): ParameterProblem =>
  parameter === undefined ? { code, message } : { code, message, parameter };

export const errorBody = (code: string, message: string, parameter?: string): ErrorBody => ({ error: problem(code, message, parameter) });

/** A 400's body: `error` is the first problem (as before there was `errors`), `errors` every one. */
const badRequestBody = (problems: ParameterProblem[]): ErrorBody => ({ error: problems[0]!, errors: problems });

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

type Validation = NonNullable<FastifyError['validation']>[number];

/** What one validation error says, as a problem of its parameter. */
function validationProblem(validation: Validation, context: string | undefined, request: FastifyRequest): ParameterProblem {
  const where = context === 'params' ? 'path parameter' : 'query parameter';
  const parameter = validationParameter(validation);
  const params = validation.params as Record<string, unknown>;
  if (typeof params.additionalProperty === 'string') {
    return problem('BAD_REQUEST', `unknown ${where} ${JSON.stringify(parameter?.slice(0, 64))}`, parameter);
  }
  const source = (context === 'params' ? request.params : request.query) as Record<string, unknown> | undefined;
  const given = parameter === undefined ? undefined : source?.[parameter];
  if (validation.keyword === 'format' && parameter !== undefined && typeof given === 'string' && Object.hasOwn(QUERY_FORMATS, params.format as string)) {
    const found = QUERY_FORMATS[params.format as QueryFormat](given, parameter);
    if (found) return found;
  }
  if (Array.isArray(given) && validation.keyword === 'type' && validation.instancePath.split('/').length === 2) {
    return problem('BAD_REQUEST', `${parameter}: given more than once`, parameter);
  }
  if (Array.isArray(params.allowedValues)) {
    return problem('BAD_REQUEST', `${parameter}: must be one of ${params.allowedValues.join(', ')}`, parameter);
  }
  return problem('BAD_REQUEST', `${parameter ?? where}: ${validation.message ?? 'is not valid'}`, parameter);
}

/** Every parameter the validation found at fault, each once (its first error), in the schema's order. */
function validationProblems(err: FastifyError, request: FastifyRequest): ParameterProblem[] {
  const problems = new Map<string | undefined, ParameterProblem>();
  for (const validation of err.validation ?? []) {
    const found = validationProblem(validation, err.validationContext, request);
    if (!problems.has(found.parameter)) problems.set(found.parameter, found);
  }
  return problems.size > 0 ? [...problems.values()] : [problem('BAD_REQUEST', err.message)];
}

export function handleError(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (err.validation) return reply.code(400).send(badRequestBody(validationProblems(err, request)));
  for (const [type, status] of clientErrors) {
    if (err instanceof type) {
      const parameter = err instanceof BadParameterError || err instanceof TimeError ? err.parameter : undefined;
      const found = problem((err as Error & { code: string }).code, err.message, parameter);
      return reply.code(status).send(status === 400 ? badRequestBody([found]) : { error: found });
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
