/**
 * A small client for the fedkms HTTP API (coordinator and node /status), used by the
 * `fedkms` CLI and the demo. Plain fetch: no AWS SDK. It never logs; callers decide
 * what to print, and must never print a request body holding a secret.
 */
import { CORRELATION_HEADER } from '../observability.js';
import { signedHeaders, type ClientIdentity } from './signer.js';
import { CLIENT_HEADERS } from '../crypto/client-auth.js';

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  ms: number;
  correlationId?: string;
  /** The client request id this call was signed with. */
  requestId?: string;
}

/** The coordinator could not be reached at all (connection refused, DNS, TLS, timeout). */
export class UnreachableError extends Error {
  constructor(readonly url: string) {
    super(`cannot reach ${url}`);
  }
}

export interface NodeProbe {
  nodeId: string;
  url: string;
  ok: boolean;
  ms: number;
  healthy?: boolean;
  keyCount?: number | null;
  version?: string;
  error?: string;
}

export class FedkmsClient {
  /** Without an identity only the public routes (/status) answer. */
  constructor(readonly url: string, private readonly identity: ClientIdentity | undefined, private readonly fetchImpl: typeof fetch = fetch) {}

  async call<T = any>(method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<ApiAnswer<T>> {
    const t0 = performance.now();
    let res: Response;
    const text0 = body === undefined ? '' : JSON.stringify(body);
    const signed: Record<string, string> = this.identity ? signedHeaders(this.identity, method, path, text0) : {};
    try {
      res = await this.fetchImpl(`${this.url.replace(/\/+$/, '')}${path}`, {
        method,
        // Every request is signed by the client itself; nodes check the same signature.
        headers: { 'content-type': 'application/json', ...signed },
        ...(body === undefined ? {} : { body: text0 }),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
      });
    } catch {
      throw new UnreachableError(this.url);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = { error: { code: 'malformed_response', message: `HTTP ${res.status} with a body that is not JSON` } };
    }
    const correlationId = res.headers.get(CORRELATION_HEADER) ?? undefined;
    const requestId = signed[CLIENT_HEADERS.requestId];
    return { status: res.status, body: parsed as T, ms: performance.now() - t0, ...(correlationId ? { correlationId } : {}), ...(requestId ? { requestId } : {}) };
  }
}

/** One node's public /status, with a timeout; never throws. */
export async function probeNode(nodeId: string, url: string, timeoutMs: number, fetchImpl: typeof fetch = fetch): Promise<NodeProbe> {
  const t0 = performance.now();
  try {
    const r = await fetchImpl(`${url.replace(/\/+$/, '')}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    const ms = performance.now() - t0;
    if (!r.ok) return { nodeId, url, ok: false, ms, error: `HTTP ${r.status}` };
    const s = (await r.json()) as { healthy?: boolean; keyCount?: number | null; version?: string };
    return { nodeId, url, ok: true, ms, healthy: s.healthy === true, keyCount: s.keyCount ?? null, ...(typeof s.version === 'string' ? { version: s.version } : {}) };
  } catch (e) {
    const ms = performance.now() - t0;
    return { nodeId, url, ok: false, ms, error: (e as Error)?.name === 'TimeoutError' ? 'timeout' : 'unreachable' };
  }
}

/** Probe every node at once and report each as it answers, with the ones still pending. */
export async function probeAll(
  nodes: Record<string, string>,
  timeoutMs: number,
  onAnswer: (p: NodeProbe, pending: string[]) => void,
  fetchImpl: typeof fetch = fetch,
): Promise<NodeProbe[]> {
  const pending = new Set(Object.keys(nodes));
  return Promise.all(
    Object.entries(nodes).map(async ([id, url]) => {
      const p = await probeNode(id, url, timeoutMs, fetchImpl);
      pending.delete(id);
      onAnswer(p, [...pending]);
      return p;
    }),
  );
}
