/**
 * The HTTP edge shared by every function: a middy pipeline that normalises the API
 * Gateway (HTTP API, payload v2) event, enforces the body limit, parses JSON and maps
 * every error to a response in one place. Handlers see a small `HttpRequest` and
 * return a plain value; they never build responses or catch errors themselves.
 */
import middy from '@middy/core';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { z } from 'zod';
import { BadRequestError, FedkmsError, NotFoundError, PayloadTooLargeError } from '../errors.js';

export const MAX_BODY_BYTES = 64 * 1024;

export interface HttpRequest {
  method: string;
  /** Path as the caller sent it (API Gateway's raw path). */
  rawPath: string;
  pathParams: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  rawBody: string;
  body: unknown;
}

export interface HttpResult {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

export type RouteHandler = (req: HttpRequest, ctx: Context) => Promise<HttpResult | unknown>;

const SECURITY_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

export function json(status: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyStructuredResultV2 {
  return { statusCode: status, headers: { ...SECURITY_HEADERS, ...headers }, body: JSON.stringify(body) };
}

function toRequest(event: APIGatewayProxyEventV2, limit: number): HttpRequest {
  const raw = event.body ?? '';
  const bytes = event.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
  if (bytes.length > limit) throw new PayloadTooLargeError(limit);
  const rawBody = bytes.toString('utf8');
  let body: unknown = undefined;
  if (rawBody.trim() !== '') {
    try {
      body = JSON.parse(rawBody);
    } catch {
      throw new BadRequestError('invalid_json', 'request body is not valid JSON');
    }
  }
  const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v ?? '']));
  const query = Object.fromEntries(Object.entries(event.queryStringParameters ?? {}).map(([k, v]) => [k, v ?? '']));
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    rawPath: event.rawPath ?? '/',
    pathParams: Object.fromEntries(Object.entries(event.pathParameters ?? {}).map(([k, v]) => [k, decodeURIComponent(v ?? '')])),
    query,
    headers,
    rawBody,
    body,
  };
}

/** Map any error to a response; unknown errors become a bare 500 with nothing inside. */
export function errorResponse(err: unknown, logger: Logger): APIGatewayProxyStructuredResultV2 {
  if (err instanceof FedkmsError) {
    if (err.status >= 500) logger.warn('request failed', { code: err.code, status: err.status });
    return json(err.status, { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } });
  }
  if (err instanceof z.ZodError) {
    const issues = err.issues.slice(0, 10).map((i) => ({ path: i.path.join('.'), message: i.message }));
    return json(400, { error: { code: 'invalid_input', message: 'request does not match the schema', details: { issues } } });
  }
  logger.error('unhandled error', { errorName: (err as Error)?.name });
  return json(500, { error: { code: 'internal_error', message: 'internal error' } });
}

export interface ApiOptions {
  service: string;
  /** Resolves the logical route (`GET /status`) of a request. */
  routeOf: (req: HttpRequest) => string;
  routes: Record<string, RouteHandler>;
  maxBodyBytes?: number;
}

export function httpApi(opts: ApiOptions) {
  const logger = new Logger({ serviceName: opts.service });
  const limit = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const core = async (event: APIGatewayProxyEventV2, ctx: Context): Promise<APIGatewayProxyStructuredResultV2> => {
    const req = toRequest(event, limit);
    const key = opts.routeOf(req);
    const route = opts.routes[key];
    if (!route) throw new NotFoundError('route_not_found', `no route ${req.method} ${req.rawPath}`);
    logger.appendKeys({ route: key });
    const out = await route(req, ctx);
    const result = (out && typeof out === 'object' && 'body' in out ? out : { body: out }) as HttpResult;
    return json(result.status ?? 200, result.body, result.headers);
  };
  return middy(core).use({
    before: (request) => {
      logger.addContext(request.context);
      logger.appendKeys({ requestId: request.event.requestContext?.requestId });
    },
    onError: (request) => {
      request.response = errorResponse(request.error, logger);
    },
  });
}

/** Parse a body or a query against a schema; failures are 400 invalid_input. */
export function parseInput<T extends z.ZodTypeAny>(schema: T, value: unknown): z.infer<T> {
  return schema.parse(value);
}
