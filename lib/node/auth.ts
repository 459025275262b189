/**
 * A node's own check of every service request: signature by the coordinator key (or
 * a read-only signer's, such as the dashboard, limited to its routes),
 * timestamp within the allowed skew, and a request id never seen before (recorded
 * atomically in DynamoDB, so it holds across concurrent Lambda instances).
 */
import { HEADERS, verifyRequestSignature, type RequestParts } from '../crypto/request-signing.js';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import { ENVELOPE_HEADER } from '../crypto/client-auth.js';
import type { ReplayGuard } from '../ports.js';

export interface SignedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  headers: Record<string, string | undefined>;
}

const REQUEST_ID = /^[A-Za-z0-9-]{16,64}$/;

/**
 * Signers other than the coordinator, and the only routes each may call. The dashboard
 * has its own key and may read public key descriptions, never a fragment, so a
 * compromised dashboard cannot reconstruct anything. Routes not listed are refused.
 */
export const READ_ONLY_SIGNER_ROUTES: Record<string, readonly string[]> = {
  dashboard: ['GET /keys', 'GET /key'],
};

/** Refuse (403, audited by the caller) any route a non-coordinator signer is not allowed. */
export function authorizeSigner(signer: string, method: string, path: string): void {
  if (signer === 'coordinator') return;
  if (!(READ_ONLY_SIGNER_ROUTES[signer] ?? []).includes(`${method.toUpperCase()} ${path}`)) {
    throw new ForbiddenError('signer_not_allowed', `signer ${signer} may not call ${method.toUpperCase()} ${path}`);
  }
}

export async function authenticateServiceRequest(
  req: SignedRequest,
  opts: {
    nodeId: string;
    coordinatorPublicKey: Uint8Array;
    /** Verification keys of the read-only signers (READ_ONLY_SIGNER_ROUTES), by name. */
    otherSigners?: Record<string, Uint8Array | undefined>;
    maxSkewS: number;
    replay: ReplayGuard;
    now?: number;
  },
): Promise<{ signer: string; requestId: string }> {
  const h = (name: string) => req.headers[name] ?? req.headers[name.toLowerCase()];
  const signature = h(HEADERS.signature);
  const timestamp = h(HEADERS.timestamp);
  const requestId = h(HEADERS.requestId);
  if (!signature || !timestamp || !requestId) throw new UnauthorizedError('signature_missing', 'request is not signed');
  // The signer header only picks the verification key: a signature made with one key
  // never verifies under another, so relabelling a request gains nothing.
  const signer = h(HEADERS.signer) ?? 'coordinator';
  const publicKey = signer === 'coordinator' ? opts.coordinatorPublicKey : Object.hasOwn(READ_ONLY_SIGNER_ROUTES, signer) ? opts.otherSigners?.[signer] : undefined;
  if (!publicKey) throw new UnauthorizedError('signer_unknown', 'request signer is not known to this node');
  if (!REQUEST_ID.test(requestId) || !/^\d{10,13}$/.test(timestamp)) throw new UnauthorizedError('signature_invalid', 'malformed signature headers');
  const now = opts.now ?? Date.now();
  if (Math.abs(now - Number(timestamp)) > opts.maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'request timestamp outside the allowed window');
  const parts: RequestParts = { method: req.method, audience: opts.nodeId, path: req.path, query: req.query, body: req.body, timestamp, requestId, clientAuth: h(ENVELOPE_HEADER) };
  if (!verifyRequestSignature(publicKey, parts, signature)) throw new UnauthorizedError('signature_invalid', 'request signature does not verify');
  // Only a correctly signed request may consume a replay slot, so strangers cannot fill the table.
  const fresh = await opts.replay.claim(opts.nodeId, requestId, Math.floor(now / 1000) + 2 * opts.maxSkewS);
  if (!fresh) throw new UnauthorizedError('request_replayed', 'request id was already used');
  return { signer, requestId };
}
