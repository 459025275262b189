/**
 * Client request signatures and reconstruction approvals. Pure: no I/O.
 *
 * A client signs every API request itself (Ed25519 over method, path, query, body
 * digest, time and a request id). The coordinator forwards that signed request, as an
 * envelope, to each node, and each node checks it against its own client registry:
 * the coordinator can relay a client's request but cannot make one up.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed25519Sign, ed25519Verify } from './ed25519-signature.js';
import * as z from '../zod.js';
import { fromB64, toB64url, utf8, wipe } from '../encoding.js';
import { importCommitment, MAX_SECRET_BYTES, parseScalar, randomScalarHex } from './shares.js';
import { BadRequestError, UnauthorizedError } from '../errors.js';
import { canonicalJson, sha256Hex } from './hash.js';

export const CLIENT_HEADERS = {
  client: 'x-fedkms-client',
  timestamp: 'x-fedkms-client-timestamp',
  requestId: 'x-fedkms-client-request-id',
  signature: 'x-fedkms-client-signature',
} as const;

/** The header the coordinator uses to hand a client's signed request to a node. */
export const ENVELOPE_HEADER = 'x-fedkms-client-auth';

export const CLIENT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const REQUEST_ID = /^[A-Za-z0-9-]{16,64}$/;

/** A client's request exactly as it signed it. `body` is the raw text; `query` the decoded parameters. */
export interface ClientRequest {
  client: string;
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  timestamp: string;
  requestId: string;
}

export interface SignedClientRequest extends ClientRequest {
  signature: string;
}

export interface Approval {
  approver: string;
  signature: string;
}

export function canonicalClientRequest(r: ClientRequest): string {
  const query = Object.keys(r.query)
    .sort()
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(r.query[k] ?? '')}`)
    .join('&');
  return ['FEDKMS-CLIENT-1', r.client, r.method.toUpperCase(), r.path, query, sha256Hex(r.body), r.timestamp, r.requestId].join('\n');
}

export const signClientRequest = (privateKey: Uint8Array, r: ClientRequest): string =>
  Buffer.from(ed25519Sign(privateKey, utf8(canonicalClientRequest(r)))).toString('base64');

export function verifyClientRequest(publicKey: Uint8Array, r: SignedClientRequest): boolean {
  try {
    const sig = fromB64(r.signature, 'signature');
    return sig.length === 64 && ed25519Verify(sig, utf8(canonicalClientRequest(r)), publicKey);
  } catch {
    return false;
  }
}

const b64sig = z.string().check(z.maxLength(100));
const envelopeSchema = z
  .strictObject({
    client: z.string().check(z.regex(CLIENT_NAME)),
    method: z.string().check(z.regex(/^[A-Z]{3,7}$/)),
    path: z.string().check(z.maxLength(512)),
    query: z.record(z.string().check(z.maxLength(64)), z.string().check(z.maxLength(512))),
    body: z.string().check(z.maxLength(64 * 1024)),
    timestamp: z.string().check(z.regex(/^\d{10,13}$/)),
    requestId: z.string().check(z.regex(REQUEST_ID)),
    signature: b64sig,
    /** Approvals of this request (reconstruction); each one is self-authenticating. */
    approvals: z.optional(z.array(z.strictObject({ approver: z.string().check(z.regex(CLIENT_NAME)), signature: b64sig })).check(z.maxLength(16))),
  });
export type ClientEnvelope = z.infer<typeof envelopeSchema>;

export const encodeEnvelope = (e: ClientEnvelope): string => toB64url(utf8(JSON.stringify(e)));

export function decodeEnvelope(raw: unknown): ClientEnvelope {
  const bad = () => new UnauthorizedError('client_auth_invalid', 'malformed client authorization');
  let parsed: unknown = raw;
  if (typeof raw === 'string') {
    if (raw.length > 96 * 1024 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw bad();
    try {
      parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    } catch {
      throw bad();
    }
  }
  const r = envelopeSchema.safeParse(parsed);
  if (!r.success) throw bad();
  return r.data;
}

/** Body fields a client signs as "withheld": the coordinator relays the signed body to every node. */
const WITHHELD = ['secretHex', 'secretBase64', 'scalarHex'] as const;

/** The secret of an import body as bytes, or undefined when it is malformed (the coordinator then refuses the body). */
function importedSecret(o: Record<string, unknown>): Uint8Array | undefined {
  try {
    const hex = o['secretHex'];
    const b64 = o['secretBase64'];
    const raw = typeof hex === 'string' && /^(?:[0-9a-fA-F]{2})+$/.test(hex) ? new Uint8Array(Buffer.from(hex, 'hex')) : typeof b64 === 'string' ? fromB64(b64, 'secretBase64') : undefined;
    return raw && raw.length >= 1 && raw.length <= MAX_SECRET_BYTES ? raw : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The body a client signs, and the one the coordinator relays to the nodes. For an import
 * (`POST /keys` with a secret) the secret fields and the scalar are replaced by "withheld", so
 * no node ever receives the plaintext secret (only its own share), and a `commitment` is
 * added in their place: the group key s·G of the random scalar `scalarHex` the client chose,
 * and the digest of its secret wrapped under it (lib/crypto/shares.ts `importCommitment`).
 * Both sides compute it from the body they hold, so a body altered in flight (another secret,
 * another scalar) no longer matches the client's signature; every node also checks the dealt
 * key against it before storing its share. Every other body is signed byte for byte.
 */
export function signedBody(method: string, path: string, raw: string): string {
  if (method.toUpperCase() !== 'POST' || path !== '/keys') return raw;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return raw;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return raw;
  const o = parsed as Record<string, unknown>;
  if (!WITHHELD.some((k) => k in o)) return raw;
  const signed: Record<string, unknown> = Object.fromEntries(Object.entries(o).map(([k, v]) => [k, (WITHHELD as readonly string[]).includes(k) ? 'withheld' : v]));
  if ('scalarHex' in o) {
    const s = parseScalar(o['scalarHex']);
    const secret = importedSecret(o);
    signed['commitment'] = s && secret && typeof o['keyId'] === 'string' ? importCommitment(o['keyId'], s, secret) : 'invalid';
    wipe(s, secret);
  }
  return canonicalJson(signed);
}

/**
 * An import body as a client sends it: with a fresh random scalar (`scalarHex`) beside the
 * secret, which the client's signature then commits to (see `signedBody`). Any other body,
 * or one that already names its scalar, is returned as it is.
 */
export function withImportScalar(method: string, path: string, body: unknown): unknown {
  if (method.toUpperCase() !== 'POST' || path !== '/keys' || !body || typeof body !== 'object' || Array.isArray(body)) return body;
  const o = body as Record<string, unknown>;
  if (!('secretHex' in o || 'secretBase64' in o) || 'scalarHex' in o) return body;
  return { ...o, scalarHex: randomScalarHex() };
}

/** Read a client's signed request from its HTTP headers (the coordinator's first check is shape only). */
export function clientRequestFromHttp(req: {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  headers: Record<string, string | undefined>;
}): SignedClientRequest {
  const h = (n: string) => req.headers[n];
  const client = h(CLIENT_HEADERS.client);
  const timestamp = h(CLIENT_HEADERS.timestamp);
  const requestId = h(CLIENT_HEADERS.requestId);
  const signature = h(CLIENT_HEADERS.signature);
  if (!client || !timestamp || !requestId || !signature) throw new UnauthorizedError('auth_missing', 'request is not signed by a client (see docs: client identities)');
  if (!CLIENT_NAME.test(client) || !/^\d{10,13}$/.test(timestamp) || !REQUEST_ID.test(requestId) || signature.length > 100) {
    throw new UnauthorizedError('auth_invalid', 'malformed client signature headers');
  }
  return { client, method: req.method.toUpperCase(), path: req.path, query: req.query, body: signedBody(req.method, req.path, req.body), timestamp, requestId, signature };
}

/** What `m` approvers sign for one reconstruction: that key version, for that requester, sealed to that recipient, until then. */
export interface ApprovalRequest {
  keyId: string;
  version: number;
  requester: string;
  recipient: string;
  expiresAt: number;
}

export const approvalDigest = (r: ApprovalRequest): string =>
  sha256Hex(canonicalJson({ type: 'fedkms.approval.v1', keyId: r.keyId, version: r.version, requester: r.requester, recipient: r.recipient, expiresAt: r.expiresAt }));

export const signApproval = (privateKey: Uint8Array, r: ApprovalRequest): string =>
  Buffer.from(ed25519Sign(privateKey, utf8(approvalDigest(r)))).toString('base64');

export function verifyApproval(publicKey: Uint8Array, r: ApprovalRequest, signature: string): boolean {
  try {
    const sig = fromB64(signature, 'signature');
    return sig.length === 64 && ed25519Verify(sig, utf8(approvalDigest(r)), publicKey);
  } catch {
    return false;
  }
}

/**
 * A client's Ed25519 public key must be a canonical encoding of a point of the prime-order
 * subgroup, not the identity or a small-order point (those make forgeries trivial).
 */
export function isSoundEd25519PublicKey(raw: Uint8Array): boolean {
  if (raw.length !== 32) return false;
  try {
    const P = ed25519.Point.fromBytes(raw, false);
    return !P.is0() && !P.isSmallOrder() && P.isTorsionFree() && Buffer.from(P.toBytes()).equals(Buffer.from(raw));
  } catch {
    return false;
  }
}

export function assertClientKey(b64: string): void {
  let raw: Uint8Array;
  try {
    raw = fromB64(b64, 'publicKey');
  } catch {
    raw = new Uint8Array();
  }
  if (!isSoundEd25519PublicKey(raw)) {
    throw new BadRequestError('invalid_public_key', 'publicKey must be a canonical 32-byte Ed25519 key of prime order, base64');
  }
}
