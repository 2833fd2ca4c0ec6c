// The fastify instance around the app plugin; listening is the caller's.
import Fastify, { type FastifyInstance } from 'fastify';
import { app } from './app.js';
import type { AppOptions } from './options.js';
import { handleFrameworkError } from './errors.js';

export async function buildServer(options: AppOptions, logger = false): Promise<FastifyInstance> {
  const server = Fastify({
    logger,
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    // An unknown query parameter (a typo of a filter) is an error, not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    frameworkErrors: handleFrameworkError,
  });
  await server.register(app, options);
  return server;
}
