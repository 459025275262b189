/**
 * The dashboard's one way out: signed HTTPS calls to the coordinator's /federation
 * routes, with the dashboard's own Ed25519 key (lib/crypto/request-signing.ts, audience
 * `coordinator`). Kept free of the AWS SDK and of zod so the dashboard function stays
 * small and starts fast (bench/cold-start.ts).
 */
import { randomUUID } from 'node:crypto';
import { HEADERS, signRequest } from '../crypto/request-signing.js';
import { FedkmsError } from '../errors.js';
import { CORRELATION_HEADER, currentCorrelationId } from '../observability.js';

export const COORDINATOR_AUDIENCE = 'coordinator';

export class CoordinatorLink {
  constructor(
    private readonly baseUrl: string,
    private readonly signingKey: Uint8Array,
    private readonly timeoutMs: number,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** The parsed JSON answer; 503 coordinator_unreachable, or 502 coordinator_error naming its status and code. */
  async call(method: 'GET' | 'POST', path: string, payload?: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    const body = payload === undefined ? '' : JSON.stringify(payload);
    const timestamp = String(Date.now());
    const requestId = randomUUID();
    const signature = signRequest(this.signingKey, { method, audience: COORDINATOR_AUDIENCE, path, query: {}, body, timestamp, requestId });
    const correlationId = currentCorrelationId();
    let res: Response;
    let text: string;
    try {
      res = await this.fetchImpl(`${this.baseUrl.replace(/\/$/, '')}${path}`, {
        method,
        signal: AbortSignal.timeout(timeoutMs),
        headers: {
          'content-type': 'application/json',
          [HEADERS.signer]: 'dashboard',
          ...(correlationId ? { [CORRELATION_HEADER]: correlationId } : {}),
          [HEADERS.timestamp]: timestamp,
          [HEADERS.requestId]: requestId,
          [HEADERS.signature]: signature,
        },
        ...(body ? { body } : {}),
      });
      text = await res.text();
    } catch {
      throw new FedkmsError('coordinator_unreachable', 503, 'the coordinator did not answer');
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      throw new FedkmsError('coordinator_error', 502, 'the coordinator sent a malformed answer', { status: res.status });
    }
    if (!res.ok) {
      const code = (parsed as { error?: { code?: unknown } } | undefined)?.error?.code;
      throw new FedkmsError('coordinator_error', 502, 'the coordinator refused the dashboard call', { status: res.status, ...(typeof code === 'string' ? { code: code.slice(0, 40) } : {}) });
    }
    return parsed;
  }
}
