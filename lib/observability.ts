/**
 * Structured logs and metrics, on AWS Lambda Powertools: the Logger (JSON lines) and
 * Metrics (CloudWatch Embedded Metric Format, printed to stdout and picked up by
 * CloudWatch Logs; under sls offline they land in the offline log).
 *
 * A correlation id follows a request from the coordinator into every node: the edge
 * (lib/http/api.ts) takes it from the `x-fedkms-correlation-id` header when it is
 * well formed, or mints one, and runs the handler inside an async context, so the
 * node client can forward it without every call site passing it along.
 *
 * Nothing here ever receives a secret: callers pass route names, node ids, status
 * codes and latencies only.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

export const CORRELATION_HEADER = 'x-fedkms-correlation-id';
export const METRICS_NAMESPACE = 'fedkms';

/** Letters, digits and `._:-`, 8 to 128 characters: safe in a log line and a header. */
const CORRELATION_ID = /^[A-Za-z0-9._:-]{8,128}$/;

export const isValidCorrelationId = (v: unknown): v is string => typeof v === 'string' && CORRELATION_ID.test(v);

/** The caller's correlation id if it is well formed, else the platform's invocation id, else a fresh one. */
export function correlationIdFor(headerValue: string | undefined, platformRequestId?: string): string {
  if (isValidCorrelationId(headerValue)) return headerValue;
  if (isValidCorrelationId(platformRequestId)) return platformRequestId;
  return randomUUID();
}

const context = new AsyncLocalStorage<{ correlationId: string }>();

export const withCorrelationId = <T>(correlationId: string, fn: () => Promise<T>): Promise<T> => context.run({ correlationId }, fn);

/** The correlation id of the request being handled, if any. */
export const currentCorrelationId = (): string | undefined => context.getStore()?.correlationId;

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

export interface Telemetry {
  logger: Logger;
  metrics: Metrics;
}

export function telemetry(service: string): Telemetry {
  return {
    logger: new Logger({ serviceName: service }),
    metrics: new Metrics({ namespace: METRICS_NAMESPACE, serviceName: service }),
  };
}

/** One metric with its own dimensions, published at once (EMF needs one dimension set per blob). */
function emit(metrics: Metrics, dims: Record<string, string>, values: [string, Unit, number][]) {
  // A single metric flushes on addMetric and then drops its dimensions: one instance per value.
  for (const [name, unit, value] of values) {
    const single = metrics.singleMetric();
    for (const [k, v] of Object.entries(dims)) single.addDimension(k, v);
    single.addMetric(name, unit, value);
  }
}

/** Per node call, as the coordinator (or dashboard) sees it: outcome and latency. */
export function recordNodeCall(metrics: Metrics, nodeId: string, outcome: 'ok' | 'http_error' | 'network' | 'aborted', latencyMs: number) {
  emit(metrics, { node: nodeId, outcome }, [
    ['NodeCalls', MetricUnit.Count, 1],
    ['NodeLatency', MetricUnit.Milliseconds, latencyMs],
  ]);
}

const TAMPER = new Set(['invalid_share', 'corrupted', 'inconsistent']);
const FAILURE = new Set(['unreachable', 'timeout', 'error', 'not_found']);

/** Per-node results of a fan-out (a response's or error's `nodes` list): failures and tampering per node. */
export function recordNodeReports(metrics: Metrics, reports: unknown) {
  if (!Array.isArray(reports)) return;
  for (const r of reports.slice(0, 64)) {
    const nodeId = (r as { nodeId?: unknown })?.nodeId;
    const status = (r as { status?: unknown })?.status;
    if (typeof nodeId !== 'string' || typeof status !== 'string' || !/^[a-z0-9-]{1,32}$/.test(nodeId)) continue;
    if (TAMPER.has(status)) emit(metrics, { node: nodeId, kind: status }, [['TamperDetected', MetricUnit.Count, 1]]);
    else if (FAILURE.has(status)) emit(metrics, { node: nodeId, status }, [['NodeFailures', MetricUnit.Count, 1]]);
  }
}

/** Security-relevant error codes become their own metrics: auth failures, replays, tampering, fail-closed audit. */
export function recordErrorCode(metrics: Metrics, code: string, status: number, details?: Record<string, unknown>) {
  if (status === 401 || status === 403) {
    const name = code === 'request_replayed' ? 'ReplayRejected' : 'AuthFailures';
    emit(metrics, { code }, [[name, MetricUnit.Count, 1]]);
  } else if (code === 'fragment_corrupted') {
    const nodeId = typeof details?.['nodeId'] === 'string' ? (details['nodeId'] as string) : 'unknown';
    emit(metrics, { node: nodeId, kind: 'corrupted' }, [['TamperDetected', MetricUnit.Count, 1]]);
  } else if (code === 'audit_unavailable') {
    emit(metrics, {}, [['AuditUnavailable', MetricUnit.Count, 1]]);
  }
}

export { MetricUnit };
