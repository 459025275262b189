/**
 * A node's own check of every service request: signature by the coordinator key,
 * timestamp within the allowed skew, and a request id never seen before (recorded
 * atomically in DynamoDB, so it holds across concurrent Lambda instances).
 */
import { HEADERS, verifyRequestSignature, type RequestParts } from '../crypto/request-signing.js';
import { UnauthorizedError } from '../errors.js';
import type { ReplayGuard } from '../ports.js';

export interface SignedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  headers: Record<string, string | undefined>;
}

const REQUEST_ID = /^[A-Za-z0-9-]{16,64}$/;

export async function authenticateServiceRequest(
  req: SignedRequest,
  opts: { nodeId: string; coordinatorPublicKey: Uint8Array; maxSkewS: number; replay: ReplayGuard; now?: number },
): Promise<{ signer: string; requestId: string }> {
  const h = (name: string) => req.headers[name] ?? req.headers[name.toLowerCase()];
  const signature = h(HEADERS.signature);
  const timestamp = h(HEADERS.timestamp);
  const requestId = h(HEADERS.requestId);
  if (!signature || !timestamp || !requestId) throw new UnauthorizedError('signature_missing', 'request is not signed');
  if (!REQUEST_ID.test(requestId) || !/^\d{10,13}$/.test(timestamp)) throw new UnauthorizedError('signature_invalid', 'malformed signature headers');
  const now = opts.now ?? Date.now();
  if (Math.abs(now - Number(timestamp)) > opts.maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'request timestamp outside the allowed window');
  const parts: RequestParts = { method: req.method, audience: opts.nodeId, path: req.path, query: req.query, body: req.body, timestamp, requestId };
  if (!verifyRequestSignature(opts.coordinatorPublicKey, parts, signature)) throw new UnauthorizedError('signature_invalid', 'request signature does not verify');
  // Only a correctly signed request may consume a replay slot, so strangers cannot fill the table.
  const fresh = await opts.replay.claim(opts.nodeId, requestId, Math.floor(now / 1000) + 2 * opts.maxSkewS);
  if (!fresh) throw new UnauthorizedError('request_replayed', 'request id was already used');
  return { signer: h(HEADERS.signer) ?? 'coordinator', requestId };
}
