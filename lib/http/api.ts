/**
 * The HTTP edge shared by every function: a middy pipeline that normalises the API
 * Gateway (HTTP API, payload v2) event, enforces the body limit, parses JSON and maps
 * every error to a response in one place. Handlers see a small `HttpRequest` and
 * return a plain value; they never build responses or catch errors themselves.
 */
import middy from '@middy/core';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type * as z from '../zod.js';
import { BadRequestError, DeadlineExceededError, FedkmsError, NotFoundError, PayloadTooLargeError } from '../errors.js';
import { MAX_JSON_DEPTH, jsonDepthWithin } from '../encoding.js';
import { flushRefusals } from '../audit/refusal.js';
import { BUDGET_HEADER, requestDeadline, withDeadline, type Deadline } from '../deadline.js';
import {
  CORRELATION_HEADER,
  MetricUnit,
  correlationIdFor,
  recordErrorCode,
  recordNodeReports,
  telemetry,
  withCorrelationId,
  type Telemetry,
} from '../observability.js';

export const MAX_BODY_BYTES = 64 * 1024;
/**
 * Deepest JSON nesting a request body may have. Checked on the raw text, before `JSON.parse`
 * or anything else that recurses (schemas, canonical JSON) sees it, and before
 * authentication: a 20,000-deep array is a 400, never a stack overflow. No request needs
 * more than a handful of levels.
 */
export { MAX_JSON_DEPTH };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parse a JSON text within the depth bound; 400 for anything else. */
export function parseBoundedJson(text: string, what = 'request body'): unknown {
  if (!jsonDepthWithin(text)) throw new BadRequestError('json_too_deep', `${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequestError('invalid_json', `${what} is not valid JSON`);
  }
}

export interface HttpRequest {
  method: string;
  /** Path as the caller sent it (API Gateway's raw path). */
  rawPath: string;
  pathParams: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string>;
  rawBody: string;
  body: unknown;
  /** Client address as API Gateway saw it (for the audit trail of refused requests). */
  sourceIp?: string;
  /** The request's correlation id (see lib/observability.ts). */
  correlationId?: string;
}

export interface HttpResult {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Send `body` (a string) as is, e.g. an HTML page, instead of as JSON; set content-type in headers. */
  raw?: boolean;
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
  let rawBody: string;
  try {
    // Invalid UTF-8 is refused, not silently replaced: the signed text must be the text read.
    rawBody = strictUtf8.decode(bytes);
  } catch {
    throw new BadRequestError('invalid_encoding', 'request body is not valid UTF-8');
  }
  let body: unknown = undefined;
  if (rawBody.trim() !== '') body = parseBoundedJson(rawBody);
  const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v ?? '']));
  const query = Object.fromEntries(Object.entries(event.queryStringParameters ?? {}).map(([k, v]) => [k, v ?? '']));
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    rawPath: event.rawPath ?? '/',
    pathParams: Object.fromEntries(Object.entries(event.pathParameters ?? {}).map(([k, v]) => [k, decodePathParam(v ?? '')])),
    query,
    headers,
    rawBody,
    body,
    ...(event.requestContext?.http?.sourceIp ? { sourceIp: event.requestContext.http.sourceIp } : {}),
  };
}

/** A percent-decoded path parameter; a malformed escape is the caller's error (400), not ours. */
function decodePathParam(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw new BadRequestError('invalid_path', 'a path parameter is not valid percent-encoded UTF-8');
  }
}

/** Map any error to a response; unknown errors become a bare 500 with nothing inside. */
export function errorResponse(err: unknown, logger: Logger, opts: { challenge?: string } = {}): APIGatewayProxyStructuredResultV2 {
  if (err instanceof FedkmsError) {
    if (err.status >= 500) logger.warn('request failed', { code: err.code, status: err.status });
    else if (err.status === 401 || err.status === 403) logger.warn('request refused', { code: err.code, status: err.status });
    const headers: Record<string, string> = err.status === 401 && opts.challenge ? { 'www-authenticate': opts.challenge } : {};
    if (err.retryAfterS !== undefined) headers['retry-after'] = String(err.retryAfterS);
    return json(err.status, { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } }, headers);
  }
  if (isSchemaError(err)) return errorResponse(invalidInput(err), logger, opts);
  logger.error('unhandled error', { errorName: (err as Error)?.name });
  return json(500, { error: { code: 'internal_error', message: 'internal error' } });
}

export interface ApiOptions {
  service: string;
  /** Resolves the logical route (`GET /status`) of a request. */
  routeOf: (req: HttpRequest) => string;
  routes: Record<string, RouteHandler>;
  maxBodyBytes?: number;
  /** `WWW-Authenticate` value sent with every 401 (lets a browser prompt for credentials). */
  challenge?: string;
  /** Shared logger and metrics (default: new ones named after `service`). */
  telemetry?: Telemetry;
  /** The budget of a request whose caller names none (ms); the function's own timeout caps it either way. */
  defaultBudgetMs?: (req: HttpRequest) => number;
}

/** Less than this left of a request's budget on arrival: refused at once rather than started and abandoned. */
const MIN_START_MS = 25;

/** Run `fn` within the deadline: the caller gets its answer, or a 504, by then, never later. */
function withinDeadline<T>(deadline: Deadline, fn: () => Promise<T>): Promise<T> {
  if (deadline.remaining() < MIN_START_MS) return Promise.reject(new DeadlineExceededError('the request arrived with too little of its budget left to start'));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError()), Math.ceil(deadline.remaining()));
  });
  return Promise.race([withDeadline(deadline, fn), expired]).finally(() => clearTimeout(timer));
}

/**
 * Every request gets: a correlation id (from `x-fedkms-correlation-id` when well formed,
 * echoed in the response), one structured log line with route, status and duration,
 * and EMF metrics (requests, latency and errors per route; per-node failures and
 * tampering from any per-node report; auth failures, replays and fail-closed audit
 * errors by code). Log lines carry route names, codes and timings, never bodies.
 */
export function httpApi(opts: ApiOptions) {
  const { logger, metrics } = opts.telemetry ?? telemetry(opts.service);
  const limit = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const core = async (event: APIGatewayProxyEventV2, ctx: Context): Promise<APIGatewayProxyStructuredResultV2> => {
    // Counts of refusal windows that have ended are written by the next request to this
    // instance, whatever it is (a frozen Lambda runs no timers between requests).
    await flushRefusals();
    const req = toRequest(event, limit);
    req.correlationId = logger.getCorrelationId() as string | undefined;
    const key = opts.routeOf(req);
    const route = opts.routes[key];
    if (!route) throw new NotFoundError('route_not_found', `no route ${req.method} ${req.rawPath}`);
    logger.appendKeys({ route: key });
    metrics.addDimension('route', key);
    const remaining = typeof ctx?.getRemainingTimeInMillis === 'function' ? ctx.getRemainingTimeInMillis() : undefined;
    const deadline = requestDeadline(req.headers[BUDGET_HEADER], remaining, opts.defaultBudgetMs?.(req) ?? remaining ?? 10_000);
    const out = await withCorrelationId(req.correlationId ?? correlationIdFor(undefined), () => withinDeadline(deadline, () => route(req, ctx)));
    const result = (out && typeof out === 'object' && 'body' in out ? out : { body: out }) as HttpResult;
    if (result.body && typeof result.body === 'object') recordNodeReports(metrics, (result.body as { nodes?: unknown }).nodes);
    if (result.raw && typeof result.body === 'string') {
      return { statusCode: result.status ?? 200, headers: { ...SECURITY_HEADERS, ...result.headers }, body: result.body };
    }
    return json(result.status ?? 200, result.body, result.headers);
  };
  const started = new WeakMap<object, number>();
  const finish = (request: { event: APIGatewayProxyEventV2; response: APIGatewayProxyStructuredResultV2 | null }) => {
    const status = request.response?.statusCode ?? 500;
    const t0 = started.get(request.event);
    const durationMs = t0 === undefined ? undefined : Math.round((performance.now() - t0) * 100) / 100;
    const correlationId = logger.getCorrelationId() as string | undefined;
    if (request.response && correlationId) request.response.headers = { ...request.response.headers, [CORRELATION_HEADER]: correlationId };
    logger.info('request', { method: request.event.requestContext?.http?.method, status, ...(durationMs !== undefined ? { durationMs } : {}) });
    metrics.addMetric('Requests', MetricUnit.Count, 1);
    if (durationMs !== undefined) metrics.addMetric('Latency', MetricUnit.Milliseconds, durationMs);
    if (status >= 500) metrics.addMetric('ServerErrors', MetricUnit.Count, 1);
    else if (status >= 400) metrics.addMetric('ClientErrors', MetricUnit.Count, 1);
    metrics.publishStoredMetrics();
    logger.removeKeys(['route']);
  };
  return middy(core).use({
    before: (request) => {
      started.set(request.event, performance.now());
      logger.addContext(request.context);
      const headers = request.event.headers ?? {};
      const given = Object.entries(headers).find(([k]) => k.toLowerCase() === CORRELATION_HEADER)?.[1] as string | undefined;
      // Fallback: the Lambda invocation id (unique per call everywhere; sls offline fixes the API Gateway one).
      logger.setCorrelationId(correlationIdFor(given, request.context?.awsRequestId));
      logger.appendKeys({ requestId: request.event.requestContext?.requestId });
    },
    after: (request) => finish(request),
    onError: (request) => {
      const err = request.error;
      request.response = errorResponse(err, logger, { challenge: opts.challenge });
      if (err instanceof FedkmsError) {
        recordErrorCode(metrics, err.code, err.status, err.details);
        recordNodeReports(metrics, err.details?.['nodes']);
      }
      finish(request);
    },
  });
}

/** Parse a body or a query against a schema; failures are 400 invalid_input. */
export function parseInput<T extends z.ZodMiniType>(schema: T, value: unknown): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalidInput(r.error);
  return r.data;
}

type SchemaError = { name: string; issues: { path: PropertyKey[]; message: string }[] };

/**
 * A zod error that escaped a `.parse` elsewhere. Recognised by shape, not by class, so
 * this module needs no zod at run time: the dashboard function, which validates nothing
 * with zod, then loads none (bench/cold-start.ts).
 */
const isSchemaError = (err: unknown): err is SchemaError =>
  // zod/mini's errors are named '$ZodError' (classic zod's 'ZodError').
  err instanceof Error && (err.name === '$ZodError' || err.name === 'ZodError') && Array.isArray((err as Partial<SchemaError>).issues);

const invalidInput = (err: SchemaError) =>
  new BadRequestError('invalid_input', 'request does not match the schema', {
    issues: err.issues.slice(0, 10).map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
  });
