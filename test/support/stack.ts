/** Helpers for integration tests against a real local stack (sls offline + s3rver + dynalite). */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { startLocalStack, type LocalStack, type LocalStackOptions } from '../../tools/local-stack';
import { randomUUID } from 'node:crypto';
import { signedHeaders, type ClientIdentity } from '../../lib/client/signer';
import { signClientRequest, withImportScalar, type ClientEnvelope } from '../../lib/crypto/client-auth';
import { FedkmsClient } from '../../lib/client/api';
import { reconstructEndToEnd as e2e } from '../../lib/client/reconstruct';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import type { NodeEndpoint } from '../../lib/runtime-config';
import { toB64 } from '../../lib/encoding';

export async function testStack(opts: Partial<LocalStackOptions> = {}): Promise<LocalStack> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-it-'));
  return startLocalStack({ dir, ...opts });
}

export interface Api {
  status: number;
  body: any;
  text: string;
}

/**
 * Call the coordinator. Requests are signed by the stack's administrator client unless
 * `as` names another identity, or `as: null` sends them unsigned. A request the front
 * door throttles (429, nothing done) is signed afresh and sent again after its
 * Retry-After, as the SDK does, unless `retry: false` (tests of the throttling itself).
 */
export async function call(
  stack: LocalStack,
  method: string,
  p: string,
  opts: { body?: unknown; rawBody?: string; as?: ClientIdentity | null; headers?: Record<string, string>; retry?: boolean } = {},
): Promise<Api> {
  for (let attempt = 1; ; attempt++) {
    const r = await callOnce(stack, method, p, opts);
    if (r.status !== 429 || opts.retry === false || attempt >= 30) return r;
    await new Promise((resolve) => setTimeout(resolve, (Number(r.retryAfter ?? 1) || 1) * 1000 * (0.5 + Math.random())));
  }
}

async function callOnce(stack: LocalStack, method: string, p: string, opts: Parameters<typeof call>[3] & object): Promise<Api & { retryAfter?: string }> {
  // An import carries a fresh random scalar the client's signature commits to, as the SDK sends it.
  const text = opts.rawBody !== undefined ? opts.rawBody : opts.body !== undefined ? JSON.stringify(withImportScalar(method, p, opts.body)) : '';
  const who = opts.as === undefined ? stack.admin : opts.as;
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(who ? signedHeaders(who, method, p, text) : {}), ...(opts.headers ?? {}) };
  const res = await fetch(`${stack.url}${p}`, {
    method,
    headers,
    ...(text !== '' || opts.rawBody !== undefined ? { body: text } : {}),
  });
  const answer = await res.text();
  let body: any;
  try {
    body = JSON.parse(answer);
  } catch {
    body = undefined;
  }
  const retryAfter = res.headers.get('retry-after') ?? undefined;
  return { status: res.status, body, text: answer, ...(retryAfter ? { retryAfter } : {}) };
}

export async function readObject(stack: LocalStack, nodeId: string, key: string): Promise<string> {
  const r = await stack.s3(nodeId).send(new GetObjectCommand({ Bucket: stack.bucketOf(nodeId), Key: key }));
  return r.Body!.transformToString('utf8');
}

export async function writeObject(stack: LocalStack, nodeId: string, key: string, body: string): Promise<void> {
  await stack.s3(nodeId).send(new PutObjectCommand({ Bucket: stack.bucketOf(nodeId), Key: key, Body: body }));
}

export const statusOf = (body: any, nodeId: string): string | undefined =>
  (body?.nodes ?? body?.error?.details?.nodes)?.find((n: { nodeId: string }) => n.nodeId === nodeId)?.status;

/** Register a new client through the coordinator (as the administrator) and return its identity. */
export async function newClient(stack: LocalStack, name: string, roles: string[] = []): Promise<ClientIdentity> {
  const k = generateSigningKey();
  const r = await call(stack, 'POST', '/clients', { body: { name, publicKey: toB64(k.publicKey), roles } });
  if (r.status !== 201) throw new Error(`registering ${name}: ${r.status} ${r.text}`);
  return { name, privateKey: k.privateKey };
}

/**
 * End-to-end reconstruction as a client does it (lib/client/reconstruct.ts), answered in
 * the shape of a server-side one: `{ status, body: { secret: { hex, base64 }, ... } }`.
 */
export async function reconstructEndToEnd(stack: LocalStack, keyId: string, as: ClientIdentity = stack.admin, opts: { expiresAt?: number; recipient?: { publicKey: Uint8Array; privateKey: Uint8Array } } = {}): Promise<Api & { rejected: { nodeId: string; reason: string }[] }> {
  // The client pins every node's identity key, as a careful client would.
  const nodeKeys = Object.fromEntries([...stack.proxies.keys()].map((id) => [id, stack.secrets[id]!['signingPublic']!]));
  const r = await e2e(new FedkmsClient(stack.url, as), keyId, { ...opts, nodeKeys });
  if (!r.ok) return { status: r.answer.status, body: r.answer.body, text: JSON.stringify(r.answer.body), rejected: r.rejected };
  const body = { ...r.answer.body, secret: { hex: Buffer.from(r.secret).toString('hex'), base64: Buffer.from(r.secret).toString('base64') }, usedNodes: r.usedNodes };
  return { status: 200, body, text: JSON.stringify(body), rejected: r.rejected };
}

/**
 * A client's signed request as the coordinator relays it to nodes (lib/coordinator/client-context.ts):
 * what a test needs to act as a (possibly rogue) coordinator on a client's behalf.
 */
export function clientEnvelope(who: ClientIdentity, method: string, path: string, body: unknown = undefined, at = Date.now()): ClientEnvelope {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const r = { client: who.name, method, path, query: {}, body: text, timestamp: String(at), requestId: randomUUID() };
  return { ...r, signature: signClientRequest(who.privateKey, r) };
}

/** A node as the coordinator sees it, reached through the stack's proxy (for tests acting as the coordinator). */
export const nodeEndpoint = (stack: LocalStack, id: string): NodeEndpoint => ({
  id,
  // The first members get indices in config order (the first membership document).
  index: stack.config.nodes.findIndex((n) => n.id === id) + 1,
  url: stack.proxies.get(id)!.url,
  x25519Public: stack.secrets[id]!['x25519Public']!,
  signingPublic: stack.secrets[id]!['signingPublic']!,
});

/** Every audit record of every operator (raw DynamoDB items): each node and the coordinator keep their own table. */
export async function scanAudit(stack: LocalStack): Promise<Record<string, AttributeValue>[]> {
  const items: Record<string, AttributeValue>[] = [];
  for (const unit of stack.units.keys()) {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await stack.dynamo(unit).send(new ScanCommand({ TableName: stack.auditTableOf(unit), ExclusiveStartKey: start, ConsistentRead: true }));
      items.push(...(page.Items ?? []));
      start = page.LastEvaluatedKey;
    } while (start);
  }
  return items;
}
