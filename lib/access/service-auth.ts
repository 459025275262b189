/**
 * Checks a signed service request (lib/crypto/request-signing.ts) on the receiving side:
 * a signature by one of the signers this service knows, a timestamp within the allowed
 * skew, and a request id never seen before (recorded atomically in DynamoDB, so it holds
 * across concurrent Lambda instances). Nodes accept the coordinator only; the
 * coordinator accepts the dashboard, on the dashboard's routes only.
 */
import { HEADERS, verifyRequestSignature, type RequestParts } from '../crypto/request-signing.js';
import { UnauthorizedError } from '../errors.js';
import { ENVELOPE_HEADER } from '../crypto/client-auth.js';
import type { ReplayGuard } from '../ports.js';

export interface SignedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  headers: Record<string, string | undefined>;
}

export interface ServiceAuthOptions {
  /** Who the request must be addressed to (a node id, or `coordinator`): bound into the signature. */
  audience: string;
  /** Verification keys of the signers accepted here, by the name they send in `x-fedkms-signer`. */
  signers: Readonly<Record<string, Uint8Array | undefined>>;
  /** The signer assumed when the header is absent. */
  defaultSigner?: string;
  /** Replay slots are recorded under this scope (a node id, or `coordinator`). */
  replayScope: string;
  maxSkewS: number;
  replay: ReplayGuard;
  now?: number;
}

const REQUEST_ID = /^[A-Za-z0-9-]{16,64}$/;

export async function authenticateServiceRequest(req: SignedRequest, opts: ServiceAuthOptions): Promise<{ signer: string; requestId: string }> {
  const h = (name: string) => req.headers[name] ?? req.headers[name.toLowerCase()];
  const signature = h(HEADERS.signature);
  const timestamp = h(HEADERS.timestamp);
  const requestId = h(HEADERS.requestId);
  if (!signature || !timestamp || !requestId) throw new UnauthorizedError('signature_missing', 'request is not signed');
  // The signer header only picks the verification key: a signature made with one key
  // never verifies under another, so relabelling a request gains nothing.
  const signer = h(HEADERS.signer) ?? opts.defaultSigner ?? '';
  const publicKey = Object.hasOwn(opts.signers, signer) ? opts.signers[signer] : undefined;
  if (!publicKey) throw new UnauthorizedError('signer_unknown', `request signer is not known to ${opts.audience}`);
  if (!REQUEST_ID.test(requestId) || !/^\d{10,13}$/.test(timestamp)) throw new UnauthorizedError('signature_invalid', 'malformed signature headers');
  const now = opts.now ?? Date.now();
  if (Math.abs(now - Number(timestamp)) > opts.maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'request timestamp outside the allowed window');
  const parts: RequestParts = { method: req.method, audience: opts.audience, path: req.path, query: req.query, body: req.body, timestamp, requestId, clientAuth: h(ENVELOPE_HEADER) };
  if (!verifyRequestSignature(publicKey, parts, signature)) throw new UnauthorizedError('signature_invalid', 'request signature does not verify');
  // Only a correctly signed request may consume a replay slot, so strangers cannot fill the table.
  const fresh = await opts.replay.claim(opts.replayScope, requestId, Math.floor(now / 1000) + 2 * opts.maxSkewS);
  if (!fresh) throw new UnauthorizedError('request_replayed', 'request id was already used');
  return { signer, requestId };
}
