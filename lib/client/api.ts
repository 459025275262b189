/**
 * A small client for the fedkms HTTP API (coordinator and node /status), used by the
 * `fedkms` CLI and the demo. Plain fetch: no AWS SDK. It never logs; callers decide
 * what to print, and must never print a request body holding a secret.
 */
import { CORRELATION_HEADER } from '../observability.js';
import { signedHeaders, type ClientIdentity } from './signer.js';
import { CLIENT_HEADERS, withImportScalar } from '../crypto/client-auth.js';
import { BUDGET_HEADER } from '../deadline.js';

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  ms: number;
  correlationId?: string;
  /** The client request id this call was signed with (of the last attempt). */
  requestId?: string;
  /** How many times the request was sent (retries included). */
  attempts?: number;
  /** The final answer's `Retry-After` header: the server refused before doing any work. */
  retryAfter?: string;
}

/** The coordinator could not be reached at all (connection refused, DNS, TLS, timeout). */
export class UnreachableError extends Error {
  constructor(readonly url: string, readonly reason: 'unreachable' | 'deadline' = 'unreachable') {
    super(reason === 'deadline' ? `no answer from ${url} within the deadline` : `cannot reach ${url}`);
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


export interface CallOptions {
  /** The caller's whole deadline for this call, retries included (default 60 s). The server is told what is left of it. */
  timeoutMs?: number;
  /** Retry refusals made before any work (429, 503 with Retry-After) and, for idempotent calls, lost connections (default true). */
  retry?: boolean;
  /** Repeating the call cannot apply it twice (default: GET only). Lost connections are retried only then. */
  idempotent?: boolean;
  /** Told before each retry: progress output for a caller that waits. */
  onRetry?: (info: { attempt: number; waitMs: number; status?: number; code?: string }) => void;
}

/** Capped exponential backoff with full jitter (the AWS architecture blog's "full jitter"), never below the server's Retry-After. */
export function backoffMs(attempt: number, retryAfterS: number | undefined, random = Math.random): number {
  const BASE_MS = 100;
  const CAP_MS = 5_000;
  const jitter = random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt);
  return Math.max(jitter, (retryAfterS ?? 0) * 1000);
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/** Attempts of a call refused for overload (503 with Retry-After) or a lost connection. */
const MAX_OVERLOAD_ATTEMPTS = 3;
/** Less than this left after a wait: no further attempt. */
const MIN_ATTEMPT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FedkmsClient {
  /** Without an identity only the public routes (/status) answer. `defaults` apply to every call that does not say otherwise. */
  constructor(
    readonly url: string,
    private readonly identity: ClientIdentity | undefined,
    private readonly fetchImpl: typeof fetch = fetch,
    private readonly defaults: CallOptions = {},
  ) {}

  /**
   * One API call within one deadline. Each attempt is signed afresh (new request id and
   * timestamp: a node never sees a replay), and carries what is left of the deadline.
   * Retried: refusals the server made before doing any work (429, or 503 with Retry-After),
   * and lost connections of idempotent calls. Never retried: anything that may have taken
   * effect (a 5xx without Retry-After, a lost connection on a create), so nothing is applied twice.
   */
  async call<T = any>(method: string, path: string, body?: unknown, callOpts: CallOptions = {}): Promise<ApiAnswer<T>> {
    const opts = { ...this.defaults, ...callOpts };
    // An import carries a fresh random scalar its signature commits to (lib/crypto/client-auth.ts).
    body = withImportScalar(method, path, body);
    const t0 = performance.now();
    const deadline = t0 + (opts.timeoutMs ?? 60_000);
    const retry = opts.retry ?? true;
    const idempotent = opts.idempotent ?? method.toUpperCase() === 'GET';
    for (let attempt = 1; ; attempt++) {
      const left = deadline - performance.now();
      let answer: ApiAnswer<T> | undefined;
      let lost: UnreachableError | undefined;
      try {
        answer = await this.once<T>(method, path, body, left);
      } catch (e) {
        if (!(e instanceof UnreachableError)) throw e;
        lost = e;
      }
      const retryAfterS = parseRetryAfter(answer?.retryAfter);
      // A 429 says "not now" (throttled at the door): retried as long as the deadline allows.
      // A 503 with Retry-After says the nodes were overloaded: retried a few times only.
      const throttled = answer?.status === 429;
      // So does a create that found its id claimed by another create (409 key_being_created): nothing was done.
      const waitable = (answer?.status === 503 || (answer?.status === 409 && (answer.body as any)?.error?.code === 'key_being_created')) && retryAfterS !== undefined;
      const overloaded = waitable && attempt < MAX_OVERLOAD_ATTEMPTS;
      const canRetry = retry && (throttled || overloaded || (lost?.reason === 'unreachable' && idempotent && attempt < MAX_OVERLOAD_ATTEMPTS));
      const waitMs = backoffMs(attempt - 1, retryAfterS);
      // Never start an attempt that has too little time left to finish: return the answer in hand.
      if (!canRetry || performance.now() + waitMs + MIN_ATTEMPT_MS >= deadline) {
        if (lost) throw lost;
        return { ...answer!, ms: performance.now() - t0, attempts: attempt };
      }
      opts.onRetry?.({ attempt, waitMs, ...(answer ? { status: answer.status, code: (answer.body as any)?.error?.code } : {}) });
      await sleep(waitMs);
    }
  }

  private async once<T>(method: string, path: string, body: unknown, budgetMs: number): Promise<ApiAnswer<T>> {
    const t0 = performance.now();
    let res: Response;
    const text0 = body === undefined ? '' : JSON.stringify(body);
    const signed: Record<string, string> = this.identity ? signedHeaders(this.identity, method, path, text0) : {};
    const budget = Math.max(1, Math.floor(budgetMs));
    try {
      res = await this.fetchImpl(`${this.url.replace(/\/+$/, '')}${path}`, {
        method,
        // Every request is signed by the client itself; nodes check the same signature.
        headers: { 'content-type': 'application/json', [BUDGET_HEADER]: String(budget), ...signed },
        ...(body === undefined ? {} : { body: text0 }),
        signal: AbortSignal.timeout(budget),
      });
    } catch (e) {
      throw new UnreachableError(this.url, (e as Error)?.name === 'TimeoutError' ? 'deadline' : 'unreachable');
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new UnreachableError(this.url, (e as Error)?.name === 'TimeoutError' ? 'deadline' : 'unreachable');
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = { error: { code: 'malformed_response', message: `HTTP ${res.status} with a body that is not JSON` } };
    }
    const correlationId = res.headers.get(CORRELATION_HEADER) ?? undefined;
    const retryAfter = res.headers.get('retry-after') ?? undefined;
    const requestId = signed[CLIENT_HEADERS.requestId];
    return {
      status: res.status,
      body: parsed as T,
      ms: performance.now() - t0,
      ...(correlationId ? { correlationId } : {}),
      ...(requestId ? { requestId } : {}),
      ...(retryAfter ? { retryAfter } : {}),
    };
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
