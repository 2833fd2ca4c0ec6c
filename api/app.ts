// The HTTP API and the web UI as a fastify plugin; server.ts only listens.
// Routes live in routes/*.ts and are registered here, after what applies to
// all of them: the error handler, rate limiting, the bearer-token check,
// latency metrics and the OpenAPI description.
import { timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { packageRoot } from '../model/package-root.js';
import { errorBody, handleError, refuseInfiniteNumbers } from './errors.js';
import type { AppOptions } from './options.js';
import { createMetrics, metricsRoutes } from './metrics.js';
import { connectionRoutes } from './routes/connections.js';
import { connectionSearchRoutes } from './routes/connection-search.js';
import { dropRoutes } from './routes/drops.js';
import { flowRoutes } from './routes/flows.js';
import { natRoutes } from './routes/nat.js';
import { wiresharkRoutes } from './routes/wireshark.js';
import { statusRoutes } from './routes/status.js';

/** Requests a client address may make per minute: ample for the UI and scripts, a brake on floods. */
export const DEFAULT_RATE_LIMIT = 1200;

const { version } = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };

/**
 * What the token guards: the data, not the UI, its assets or the API
 * description. Decided by the route matched, not the URL as sent, which may
 * spell the same route otherwise (`/%61pi/v1/flows`, `/metrics/`).
 */
function needsToken(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return route !== undefined && (route.startsWith('/api/') || route === '/metrics');
}

/** The web UI keeps the token in this cookie (see ui/src/components/ApiErrorNotice.vue). */
export const TOKEN_COOKIE = 'nettrail_token';

function tokenCookie(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === TOKEN_COOKIE) {
      try {
        return decodeURIComponent(value.join('='));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

export const app: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  fastify.setErrorHandler(handleError);
  fastify.addHook('preValidation', refuseInfiniteNumbers);

  const rateLimit = options.rateLimitPerMinute === undefined ? DEFAULT_RATE_LIMIT : options.rateLimitPerMinute;
  if (rateLimit !== null) {
    await fastify.register(fastifyRateLimit, {
      max: rateLimit,
      timeWindow: 60_000,
      errorResponseBuilder: (_request, context) =>
        Object.assign(new Error(`more than ${context.max} requests a minute from this address; retry in ${context.after}`), {
          statusCode: context.statusCode,
          code: 'RATE_LIMITED',
        }),
    });
  }

  if (options.token) {
    const expected = Buffer.from(options.token);
    const matches = (given: string | undefined) => {
      const bytes = Buffer.from(given ?? '');
      return bytes.length === expected.length && timingSafeEqual(bytes, expected);
    };
    fastify.addHook('onRequest', async (request, reply) => {
      if (!needsToken(request)) return;
      // Scripts send the header; the web UI (whose PCAP link is a plain download) the cookie it set.
      const bearer = /^Bearer (.*)$/.exec(request.headers.authorization ?? '')?.[1];
      if (!matches(bearer) && !matches(tokenCookie(request.headers.cookie))) {
        return reply.code(401).send(errorBody('UNAUTHORIZED', 'this server requires Authorization: Bearer <token> (or the UI\'s token cookie)'));
      }
    });
  }

  const metrics = createMetrics(options);
  fastify.addHook('onResponse', metrics.observeResponse);

  await fastify.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'nettrail',
        version,
        description: 'Packet-level network forensics: what happened to this connection? Errors are {"error": {"code", "message"}}.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(options.token ? { security: [{ bearer: [] }] } : {}),
    },
  });
  // The UI's assets are served from the package: nothing is fetched from elsewhere.
  await fastify.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true, theme: { title: 'nettrail API' } });
  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger());

  await fastify.register(metricsRoutes, { metrics });
  await fastify.register(statusRoutes, options);
  await fastify.register(connectionRoutes, options);
  await fastify.register(connectionSearchRoutes, options);
  await fastify.register(flowRoutes, options);
  await fastify.register(dropRoutes, options);
  await fastify.register(natRoutes, options);
  await fastify.register(wiresharkRoutes, options);

  if (options.uiDir && existsSync(path.join(options.uiDir, 'index.html'))) {
    await fastify.register(fastifyStatic, { root: options.uiDir, wildcard: false });
    // History-mode routes of the UI (/connection?tuple=...) load index.html.
    fastify.setNotFoundHandler((request, reply) => {
      if (request.method === 'GET' && !request.url.startsWith('/api/')) return reply.sendFile('index.html');
      return reply.code(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));
    });
  } else {
    fastify.setNotFoundHandler((request, reply) =>
      reply.code(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
    );
  }
};
