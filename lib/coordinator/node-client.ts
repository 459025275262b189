/** Signed HTTPS calls from the coordinator to one node. */
import { randomUUID } from 'node:crypto';
import { HEADERS, signRequest } from '../crypto/request-signing.js';
import type { NodeEndpoint } from '../runtime-config.js';
import { CORRELATION_HEADER, currentCorrelationId } from '../observability.js';
import { encodeEnvelope, ENVELOPE_HEADER } from '../crypto/client-auth.js';
import { currentClientRequest } from './client-context.js';
import { BUDGET_HEADER, currentDeadline } from '../deadline.js';

/** Kept back from the budget a node is given: the coordinator still has to judge and combine its answer. */
const NODE_BUDGET_RESERVE_MS = 100;

export interface NodeRequest {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  query?: Record<string, string>;
  body?: unknown;
}

/** A node answered, but not with success. `code` is the node's stable error code. */
export class NodeHttpError extends Error {
  constructor(readonly httpStatus: number, readonly code: string, readonly details?: Record<string, unknown>, readonly retryAfter?: string) {
    super(`node answered ${httpStatus} ${code}`);
  }
}

export type Fetch = typeof fetch;

/** How one node call ended, for metrics: never carries bodies. */
export type CallObserver = (nodeId: string, outcome: 'ok' | 'http_error' | 'network' | 'aborted', latencyMs: number) => void;

export interface NodeClientOptions {
  observe?: CallObserver;
  /** Who signs (`x-fedkms-signer`): the coordinator, or `node:<id>` for a node's own calls to its peers (audit witnessing). */
  signer?: string;
}

export class NodeClient {
  constructor(
    private readonly signingKey: Uint8Array,
    private readonly fetchImpl: Fetch = fetch,
    private readonly opts: NodeClientOptions = {},
  ) {}

  async call(node: Pick<NodeEndpoint, 'id' | 'url'>, req: NodeRequest, signal: AbortSignal): Promise<unknown> {
    const observe = this.opts.observe;
    if (!observe) return this.send(node, req, signal);
    const t0 = performance.now();
    const ms = () => Math.round((performance.now() - t0) * 100) / 100;
    try {
      const out = await this.send(node, req, signal);
      observe(node.id, 'ok', ms());
      return out;
    } catch (e) {
      observe(node.id, signal.aborted ? 'aborted' : e instanceof NodeHttpError ? 'http_error' : 'network', ms());
      throw e;
    }
  }

  private async send(node: Pick<NodeEndpoint, 'id' | 'url'>, req: NodeRequest, signal: AbortSignal): Promise<unknown> {
    const query = req.query ?? {};
    // The client's signed request rides along: in a header when there is no body (it is
    // small then), inside the JSON body otherwise, so large signing requests fit API Gateway.
    const client = currentClientRequest();
    const inBody = client && req.body !== null && typeof req.body === 'object' && !Array.isArray(req.body);
    const payload = inBody ? { ...(req.body as Record<string, unknown>), clientAuth: client } : req.body;
    const body = payload === undefined ? '' : JSON.stringify(payload);
    const timestamp = String(Date.now());
    const requestId = randomUUID();
    const correlationId = currentCorrelationId();
    const clientHeader = client && !inBody ? encodeEnvelope(client) : undefined;
    const signature = signRequest(this.signingKey, { method: req.method, audience: node.id, path: req.path, query, body, timestamp, requestId, clientAuth: clientHeader });
    const qs = new URLSearchParams(query).toString();
    // The node gets what is left of this request's budget, so it refuses work it cannot finish in time.
    const deadline = currentDeadline();
    const budget = deadline ? String(Math.max(1, Math.floor(deadline.remaining() - NODE_BUDGET_RESERVE_MS))) : undefined;
    const res = await this.fetchImpl(`${node.url.replace(/\/$/, '')}${req.path}${qs ? `?${qs}` : ''}`, {
      method: req.method,
      signal,
      headers: {
        'content-type': 'application/json',
        [HEADERS.signer]: this.opts.signer ?? 'coordinator',
        // Unsigned on purpose: it only labels log lines, and nodes check its format.
        ...(correlationId ? { [CORRELATION_HEADER]: correlationId } : {}),
        ...(clientHeader ? { [ENVELOPE_HEADER]: clientHeader } : {}),
        ...(budget ? { [BUDGET_HEADER]: budget } : {}),
        [HEADERS.timestamp]: timestamp,
        [HEADERS.requestId]: requestId,
        [HEADERS.signature]: signature,
      },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      throw new NodeHttpError(res.status, 'malformed_response');
    }
    if (!res.ok) {
      const error = (parsed as { error?: { code?: unknown; details?: unknown } } | undefined)?.error;
      const details = error?.details && typeof error.details === 'object' ? (error.details as Record<string, unknown>) : undefined;
      throw new NodeHttpError(res.status, typeof error?.code === 'string' ? error.code : 'http_error', details, res.headers.get('retry-after') ?? undefined);
    }
    // A Lambda runtime that killed the function answers 200 with only an error message
    // (sls offline: {"errorMessage":"[504] - Lambda timeout."}): a failure, never an answer.
    if (parsed && typeof parsed === 'object' && 'errorMessage' in parsed && Object.keys(parsed).length <= 3) throw new NodeHttpError(504, 'function_timeout');
    return parsed;
  }
}
