/** Signed HTTPS calls from the coordinator to one node. */
import { randomUUID } from 'node:crypto';
import { HEADERS, signRequest } from '../crypto/request-signing.js';
import type { NodeEndpoint } from '../runtime-config.js';

export interface NodeRequest {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  query?: Record<string, string>;
  body?: unknown;
}

/** A node answered, but not with success. `code` is the node's stable error code. */
export class NodeHttpError extends Error {
  constructor(readonly httpStatus: number, readonly code: string) {
    super(`node answered ${httpStatus} ${code}`);
  }
}

export type Fetch = typeof fetch;

export class NodeClient {
  constructor(private readonly signingKey: Uint8Array, private readonly fetchImpl: Fetch = fetch) {}

  async call(node: NodeEndpoint, req: NodeRequest, signal: AbortSignal): Promise<unknown> {
    const query = req.query ?? {};
    const body = req.body === undefined ? '' : JSON.stringify(req.body);
    const timestamp = String(Date.now());
    const requestId = randomUUID();
    const signature = signRequest(this.signingKey, { method: req.method, audience: node.id, path: req.path, query, body, timestamp, requestId });
    const qs = new URLSearchParams(query).toString();
    const res = await this.fetchImpl(`${node.url.replace(/\/$/, '')}${req.path}${qs ? `?${qs}` : ''}`, {
      method: req.method,
      signal,
      headers: {
        'content-type': 'application/json',
        [HEADERS.signer]: 'coordinator',
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
      const code = (parsed as { error?: { code?: unknown } } | undefined)?.error?.code;
      throw new NodeHttpError(res.status, typeof code === 'string' ? code : 'http_error');
    }
    return parsed;
  }
}
