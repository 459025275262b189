/**
 * Signed service-to-node requests. Ed25519 over a canonical string that binds the
 * method, the audience node, the logical path, the query, the body hash, the time and
 * a unique request id, so a captured request cannot be altered, redirected to
 * another node or replayed (the node also records request ids). Pure: no I/O.
 */
import { ed25519Sign, ed25519Verify, ed25519KeyPair } from './ed25519-signature.js';
import { fromB64, toB64, utf8 } from '../encoding.js';
import { sha256Hex } from './hash.js';

export const HEADERS = {
  signer: 'x-fedkms-signer',
  timestamp: 'x-fedkms-timestamp',
  requestId: 'x-fedkms-request-id',
  signature: 'x-fedkms-signature',
} as const;

export interface RequestParts {
  method: string;
  audience: string;
  path: string;
  query: Record<string, string>;
  body: string;
  timestamp: string;
  requestId: string;
  /** The relayed client request header (x-fedkms-client-auth), when there is one: bound like the body. */
  clientAuth?: string | undefined;
}

export function canonicalRequest(p: RequestParts): string {
  const query = Object.keys(p.query)
    .sort()
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(p.query[k] ?? '')}`)
    .join('&');
  const lines = ['FEDKMS-REQ-1', p.method.toUpperCase(), p.audience, p.path, query, sha256Hex(p.body), p.timestamp, p.requestId];
  if (p.clientAuth !== undefined) lines.push(`client:${sha256Hex(p.clientAuth)}`);
  return lines.join('\n');
}

export const signRequest = (privateKey: Uint8Array, p: RequestParts): string =>
  toB64(ed25519Sign(privateKey, utf8(canonicalRequest(p))));

export function verifyRequestSignature(publicKey: Uint8Array, p: RequestParts, signature: string): boolean {
  try {
    const sig = fromB64(signature, 'signature');
    return sig.length === 64 && ed25519Verify(sig, utf8(canonicalRequest(p)), publicKey);
  } catch {
    return false;
  }
}

export const generateSigningKey = ed25519KeyPair;
