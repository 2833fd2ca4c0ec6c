// The fastify instance around the app plugin; listening is the caller's.
import Fastify, { type FastifyInstance } from 'fastify';
import { app, type AppOptions } from './app.js';

export async function buildServer(options: AppOptions, logger = false): Promise<FastifyInstance> {
  const server = Fastify({ logger, routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true } });
  await server.register(app, options);
  return server;
}
