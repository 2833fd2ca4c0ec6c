// The fastify instance around the app plugin; listening is the caller's.
import Fastify, { type FastifyInstance } from 'fastify';
import { app } from './app.js';
import type { AppOptions } from './options.js';
import { handleFrameworkError } from './errors.js';
import { ajvFormats } from './formats.js';

export async function buildServer(options: AppOptions, logger = false): Promise<FastifyInstance> {
  const server = Fastify({
    logger,
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    // An unknown query parameter (a typo of a filter) is an error, not silently dropped; every bad
    // parameter is reported, not the first only; addresses, times and tuples are checked as formats.
    ajv: { customOptions: { removeAdditional: false, allErrors: true, formats: ajvFormats } },
    frameworkErrors: handleFrameworkError,
  });
  await server.register(app, options);
  return server;
}
