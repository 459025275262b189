/**
 * A client identity and the headers that sign one request with it. Used by the SDK,
 * the CLI, the test helpers and scripts/sign-request.ts (for curl users).
 */
import { randomUUID } from 'node:crypto';
import { CLIENT_HEADERS, signClientRequest, signedBody } from '../crypto/client-auth.js';
import { fromB64 } from '../encoding.js';

export interface ClientIdentity {
  name: string;
  /** Ed25519 secret key, 32 bytes. */
  privateKey: Uint8Array;
}

/** `{ name, privateKey }` with the key in base64, as `npm start` writes it to .local/federation.json. */
export function identityFrom(json: { name?: unknown; privateKey?: unknown } | undefined): ClientIdentity | undefined {
  if (!json || typeof json.name !== 'string' || typeof json.privateKey !== 'string') return undefined;
  const privateKey = fromB64(json.privateKey, 'privateKey');
  if (privateKey.length !== 32) throw new Error('a client private key is 32 bytes (base64)');
  return { name: json.name, privateKey };
}

/** Headers signing `method pathAndQuery body` as `id`, now, with a fresh request id. */
export function signedHeaders(id: ClientIdentity, method: string, pathAndQuery: string, body = '', now = Date.now()): Record<string, string> {
  const u = new URL(pathAndQuery, 'http://x');
  const query = Object.fromEntries(u.searchParams);
  const timestamp = String(now);
  const requestId = randomUUID();
  const signed = signedBody(method, u.pathname, body);
  const signature = signClientRequest(id.privateKey, { client: id.name, method: method.toUpperCase(), path: u.pathname, query, body: signed, timestamp, requestId });
  return {
    [CLIENT_HEADERS.client]: id.name,
    [CLIENT_HEADERS.timestamp]: timestamp,
    [CLIENT_HEADERS.requestId]: requestId,
    [CLIENT_HEADERS.signature]: signature,
  };
}
