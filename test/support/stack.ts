/** Helpers for integration tests against a real local stack (sls offline + s3rver + dynalite). */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startLocalStack, type LocalStack, type LocalStackOptions } from '../../tools/local-stack';

export async function testStack(opts: Partial<LocalStackOptions> = {}): Promise<LocalStack> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-it-'));
  return startLocalStack({ dir, ...opts });
}

export interface Api {
  status: number;
  body: any;
  text: string;
}

export async function call(stack: LocalStack, method: string, p: string, opts: { body?: unknown; rawBody?: string; token?: string | null; headers?: Record<string, string> } = {}): Promise<Api> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(opts.headers ?? {}) };
  const token = opts.token === undefined ? stack.token : opts.token;
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(`${stack.url}${p}`, {
    method,
    headers,
    ...(opts.rawBody !== undefined ? { body: opts.rawBody } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

export async function readObject(stack: LocalStack, nodeId: string, key: string): Promise<string> {
  const r = await stack.s3().send(new GetObjectCommand({ Bucket: stack.bucketOf(nodeId), Key: key }));
  return r.Body!.transformToString('utf8');
}

export async function writeObject(stack: LocalStack, nodeId: string, key: string, body: string): Promise<void> {
  await stack.s3().send(new PutObjectCommand({ Bucket: stack.bucketOf(nodeId), Key: key, Body: body }));
}

export const statusOf = (body: any, nodeId: string): string | undefined =>
  (body?.nodes ?? body?.error?.details?.nodes)?.find((n: { nodeId: string }) => n.nodeId === nodeId)?.status;
