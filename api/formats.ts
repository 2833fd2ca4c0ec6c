// The string formats of query parameters (addresses, CIDR ranges, times, tuples): checked by the
// schemas' validation (ajv `format`, every parameter at once), with the parsers the routes then
// use, so a request with several bad parameters hears of all of them in one 400.
import { canonicalAddress, parseAddressRange } from '../model/address.js';
import { parseTime, TimeError } from '../model/time.js';
import { parseTuple, TupleError } from '../model/tuple.js';

/** One bad parameter, as the error body's `errors` lists it. */
export interface ParameterProblem {
  code: string;
  parameter?: string;
  message: string;
}

type Check = (text: string, parameter: string) => ParameterProblem | null;

const thrown = (parse: () => unknown): ParameterProblem | null => {
  try {
    parse();
    return null;
  } catch (err) {
    if (err instanceof TimeError || err instanceof TupleError) return { code: err.code, message: err.message };
    throw err;
  }
};

/** Each format's check: null when `text` is one, else what is wrong with it. */
export const QUERY_FORMATS = {
  'address-or-cidr': (text, parameter) =>
    parseAddressRange(text) === null
      ? { code: 'BAD_PARAMETER', parameter, message: `${parameter}: ${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR range (10.0.0.0/8, fd00::/16)` }
      : null,
  'ip-address': (text, parameter) =>
    canonicalAddress(text) === null ? { code: 'BAD_PARAMETER', parameter, message: `${parameter}: ${JSON.stringify(text)} is not an IPv4 or IPv6 address` } : null,
  'query-time': (text, parameter) => {
    const problem = thrown(() => parseTime(text, parameter));
    return problem && { ...problem, parameter };
  },
  tuple: (text, parameter) => {
    const problem = thrown(() => parseTuple(text));
    return problem && { ...problem, parameter };
  },
} satisfies Record<string, Check>;

export type QueryFormat = keyof typeof QUERY_FORMATS;

/** The formats as ajv takes them (fastify's `ajv.customOptions.formats`). */
export const ajvFormats = Object.fromEntries(
  Object.entries(QUERY_FORMATS).map(([name, check]) => [name, { type: 'string', validate: (text: string) => check(text, '') === null }]),
) as Record<QueryFormat, { type: 'string'; validate: (text: string) => boolean }>;
