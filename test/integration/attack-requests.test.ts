/**
 * Issue #13, the request-level findings of the attack review, replayed on the real local
 * stack: the nonce pool (fill and drain by a client without sign permission, unbounded
 * size), one signature per client request, 404 for unknown keys on every key route,
 * strict base64, hostile input before authentication, and aggregated refusal records.
 * A "rogue coordinator" is the test holding the coordinator's own signing key.
 */
import { randomUUID } from 'node:crypto';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ListTablesCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import type { LocalStack } from '../../tools/local-stack';
import type { ClientIdentity } from '../../lib/client/signer';
import { signedHeaders } from '../../lib/client/signer';
import { withClientRequest } from '../../lib/coordinator/client-context';
import { NodeClient } from '../../lib/coordinator/node-client';
import type { ClientEnvelope } from '../../lib/crypto/client-auth';
import { generateX25519 } from '../../lib/crypto/seal';
import { identifierFor } from '../../lib/crypto/shares';
import { fromB64, toB64 } from '../../lib/encoding';
import { call, clientEnvelope, newClient, nodeEndpoint, scanAudit, testStack, type Api } from '../support/stack';

jest.setTimeout(240_000);

let stack: LocalStack;
let stranger: ClientIdentity;
const NODES = ['node1', 'node2', 'node3'];

beforeAll(async () => {
  stack = await testStack();
  stranger = await newClient(stack, 'stranger');
  // One at a time: on a busy machine three DKGs side by side can run out of their budget.
  for (const keyId of ['pooled', 'bounded', 'once']) {
    const r = await call(stack, 'POST', '/keys', { body: { keyId, type: 'ed25519' } });
    expect(r.status).toBe(201);
  }
}, 300_000);

afterAll(async () => {
  await stack?.stop();
});

/** Call a node directly with the coordinator's own key, relaying `env` (or nothing) as the client request. */
async function asCoordinator(nodeId: string, method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, opts: { query?: Record<string, string>; body?: unknown; env?: ClientEnvelope } = {}): Promise<Api> {
  const client = new NodeClient(fromB64(stack.secrets['coordinator']!['privateKey']!));
  const send = () => client.call(nodeEndpoint(stack, nodeId), { method, path, ...(opts.query ? { query: opts.query } : {}), ...(opts.body !== undefined ? { body: opts.body } : {}) }, AbortSignal.timeout(15_000));
  try {
    const body = await (opts.env ? withClientRequest(opts.env, send) : send());
    return { status: 200, body, text: JSON.stringify(body) };
  } catch (e) {
    const err = e as { httpStatus?: number; code?: string };
    const body = { error: { code: err.code } };
    return { status: err.httpStatus ?? 0, body, text: JSON.stringify(body) };
  }
}

/** Pooled commitments of a key, per node (the coordinator's commitments table). */
async function poolOf(keyId: string): Promise<Record<string, number>> {
  const tables = (await stack.dynamo().send(new ListTablesCommand({}))).TableNames ?? [];
  const table = tables.find((t) => t.endsWith('commitments'));
  if (!table) throw new Error(`no commitments table among ${tables.join(', ')}`);
  const out: Record<string, number> = {};
  let start: Record<string, any> | undefined;
  do {
    const page = await stack.dynamo().send(new ScanCommand({ TableName: table, ExclusiveStartKey: start, ConsistentRead: true }));
    for (const i of page.Items ?? []) if (i['keyId']?.S === keyId) out[i['nodeId']!.S!] = (out[i['nodeId']!.S!] ?? 0) + 1;
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** Session objects (nonces and other protocol state) in each node's bucket. */
async function sessionObjects(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const id of NODES) {
    let n = 0;
    let token: string | undefined;
    do {
      const page = await stack.s3(id).send(new ListObjectsV2Command({ Bucket: stack.bucketOf(id), Prefix: 'sessions/', ContinuationToken: token }));
      n += page.KeyCount ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    out[id] = n;
  }
  return out;
}

describe('finding: the nonce pool', () => {
  it('a client without sign permission can neither fill nor drain a key\'s pool, and a pool is bounded per node', async () => {
    const pre = await call(stack, 'POST', '/keys/pooled/preprocess', { body: { count: 5 } });
    expect(pre.status).toBe(200);
    expect(await poolOf('pooled')).toEqual({ node1: 5, node2: 5, node3: 5 });
    const objects = await sessionObjects();

    // Fill: refused by every node before any nonce exists; nothing pooled, nothing orphaned.
    const fill = await call(stack, 'POST', '/keys/pooled/preprocess', { as: stranger, body: { count: 50 } });
    expect(fill.status).toBe(403);
    expect(fill.body.error.code).toBe('not_authorized');
    expect(await poolOf('pooled')).toEqual({ node1: 5, node2: 5, node3: 5 });
    expect(await sessionObjects()).toEqual(objects);

    // Drain: a refused signature spends nothing and drops nothing.
    for (let i = 0; i < 3; i++) {
      const drain = await call(stack, 'POST', '/keys/pooled/sign', { as: stranger, body: { message: toB64(new Uint8Array([i])) } });
      expect(drain.status).toBe(403);
      expect(drain.body.error.code).toBe('not_authorized');
    }
    expect(await poolOf('pooled')).toEqual({ node1: 5, node2: 5, node3: 5 });
    expect(await sessionObjects()).toEqual(objects);

    // The owner still signs in one round from the intact pool.
    const ok = await call(stack, 'POST', '/keys/pooled/sign', { body: { message: toB64(new Uint8Array([42])) } });
    expect(ok.status).toBe(200);
    expect(ok.body.rounds).toBe(1);

    // Bounded: fills are trimmed to the per-node bound (default 100), then refused.
    const added: number[] = [];
    let last: Api | undefined;
    for (let i = 0; i < 4; i++) {
      last = await call(stack, 'POST', '/keys/bounded/preprocess', { body: { count: 50 } });
      if (last.status !== 200) break;
      added.push(last.body.added.node1);
    }
    expect(added).toEqual([50, 50]);
    expect(last!.status).toBe(409);
    expect(last!.body.error.code).toBe('pool_full');
    const sizes = await poolOf('bounded');
    expect(Math.max(...Object.values(sizes))).toBeLessThanOrEqual(100);
  });
});

describe('finding: one signature per client request', () => {
  it('a rogue coordinator cannot turn one signing request into a second signature with fresh sessions', async () => {
    const message = toB64(new TextEncoder().encode('pay 10 to bob'));
    const env = clientEnvelope(stack.admin, 'POST', '/keys/once/sign', { message });
    const shares = async () => {
      const sessionId = randomUUID();
      const commits = await Promise.all(['node1', 'node2'].map((id) => asCoordinator(id, 'POST', '/sign/commit', { body: { sessionId, keyId: 'once' }, env })));
      expect(commits.map((c) => c.status)).toEqual([200, 200]);
      const commitments = commits.map((c) => c.body.commitment).sort((x: { identifier: string }, y: { identifier: string }) => x.identifier.localeCompare(y.identifier));
      return Promise.all(['node1', 'node2'].map((id) => asCoordinator(id, 'POST', '/sign/share', { body: { sessionId, keyId: 'once', message, commitments }, env })));
    };
    const first = await shares();
    expect(first.map((s) => s.status)).toEqual([200, 200]);
    const second = await shares();
    expect(second.map((s) => s.status)).toEqual([401, 401]);
    expect(second.map((s) => s.body.error.code)).toEqual(['request_replayed', 'request_replayed']);
  });
});

describe('finding: 404 for unknown keys', () => {
  const K = 'no-such-key';
  const recipient = () => toB64(generateX25519().publicKey);
  const participants = [1, 2, 3].map((i) => ({ nodeId: `node${i}`, identifier: identifierFor(i) }));
  const hex = 'ab'.repeat(32);
  const coordinatorRoutes: [string, () => Promise<Api>][] = [
    ['GET /keys/{k}', () => call(stack, 'GET', `/keys/${K}`)],
    ['GET /keys/{k}/public', () => call(stack, 'GET', `/keys/${K}/public`, { as: null })],
    ['POST /keys/{k}/sign', () => call(stack, 'POST', `/keys/${K}/sign`, { body: { message: 'AA==' } })],
    ['POST /keys/{k}/preprocess', () => call(stack, 'POST', `/keys/${K}/preprocess`, { body: { count: 2 } })],
    ['POST /keys/{k}/reconstruct', () => call(stack, 'POST', `/keys/${K}/reconstruct`, { body: { recipient: recipient() } })],
    ['POST /keys/{k}/state', () => call(stack, 'POST', `/keys/${K}/state`, { body: { state: 'disabled' } })],
    ['PUT /keys/{k}/policy', () => call(stack, 'PUT', `/keys/${K}/policy`, { body: { policy: { sign: ['role:admin'], reconstruct: ['role:admin'], describe: ['role:admin'], admin: ['role:admin'], approvals: { required: 0, approvers: [] }, serverSideCombine: false } } })],
    ['POST /keys/{k}/refresh', () => call(stack, 'POST', `/keys/${K}/refresh`, { body: {} })],
    ['POST /keys/{k}/reshare', () => call(stack, 'POST', `/keys/${K}/reshare`, { body: { threshold: 2 } })],
  ];
  const env = (method: string, p: string, body?: unknown) => clientEnvelope(stack.admin, method, p, body);
  const nodeRoutes: [string, () => Promise<Api>][] = [
    ['node POST /sign/commit', () => asCoordinator('node1', 'POST', '/sign/commit', { body: { sessionId: randomUUID(), keyId: K }, env: env('POST', `/keys/${K}/sign`, { message: 'AA==' }) })],
    ['node POST /sign/preprocess', () => asCoordinator('node1', 'POST', '/sign/preprocess', { body: { keyId: K, sessionIds: [randomUUID()] }, env: env('POST', `/keys/${K}/preprocess`, { count: 1 }) })],
    ['node POST /sign/share', () => asCoordinator('node1', 'POST', '/sign/share', { body: { sessionId: randomUUID(), keyId: K, message: 'AA==', commitments: [{ identifier: identifierFor(1), hiding: hex, binding: hex }] }, env: env('POST', `/keys/${K}/sign`, { message: 'AA==' }) })],
    ['node GET /key', () => asCoordinator('node1', 'GET', '/key', { query: { keyId: K }, env: env('GET', `/keys/${K}`) })],
    ['node GET /fragment', () => {
      const r = recipient();
      return asCoordinator('node1', 'GET', '/fragment', { query: { keyId: K, recipient: r }, env: env('POST', `/keys/${K}/reconstruct`, { recipient: r }) });
    }],
    ['node POST /key/state', () => asCoordinator('node1', 'POST', '/key/state', { body: { keyId: K, state: 'disabled' }, env: env('POST', `/keys/${K}/state`, { state: 'disabled' }) })],
    ['node POST /reshare/deal', () => asCoordinator('node1', 'POST', '/reshare/deal', { body: { sessionId: randomUUID(), keyId: K, version: 1, dealers: participants.slice(0, 2).map((p) => p.identifier), threshold: 2, participants }, env: env('POST', `/keys/${K}/refresh`, {}) })],
  ];

  it.each([...coordinatorRoutes, ...nodeRoutes])('%s answers 404 key_not_found', async (_name, send) => {
    const r = await send();
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: 404, code: 'key_not_found' });
  });
});

describe('finding: strict base64', () => {
  it.each([
    ['base64url secret', { keyId: 'b64-url', secretBase64: Buffer.from([0xfb, 0xff, 0xbf, 0x01, 0x02, 0x03]).toString('base64url') }],
    ['unpadded secret', { keyId: 'b64-unpadded', secretBase64: 'AQID' + 'BA' }],
    ['secret with non-zero padding bits', { keyId: 'b64-bits', secretBase64: 'AQIDBB==' }],
  ])('%s is refused with invalid_encoding, and no key is created', async (_name, body) => {
    const r = await call(stack, 'POST', '/keys', { body });
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: 400, code: 'invalid_encoding' });
    expect((await call(stack, 'GET', `/keys/${body.keyId}`)).status).toBe(404);
  });

  it('a base64url message to sign is refused too', async () => {
    const r = await call(stack, 'POST', '/keys/once/sign', { body: { message: Buffer.from([0xfb, 0xff, 0xfe]).toString('base64url') } });
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: 400, code: 'invalid_encoding' });
  });
});

describe('finding: hostile input before authentication', () => {
  const deepArray = '['.repeat(20_000) + ']'.repeat(20_000);
  const deepObject = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
  const invalidUtf8 = Buffer.concat([Buffer.from('{"keyId":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]);
  const bodies: [string, string | Buffer, string?][] = [
    ['20,000-deep array', deepArray],
    ['10,000-deep object', deepObject],
    ['a 60 KB string', JSON.stringify({ keyId: 'x'.repeat(60_000) })],
    ['a 200 KB body', JSON.stringify({ keyId: 'y'.repeat(200_000) })],
    ['invalid UTF-8', invalidUtf8],
    ['a form body', 'keyId=a&threshold=2', 'application/x-www-form-urlencoded'],
    ['text/plain JSON', '{"keyId":"a"}', 'text/plain'],
    ['numbers out of range', '{"keyId":"n1","threshold":1e400,"count":-1e308,"version":99999999999999999999999}'],
    ['lone surrogate escapes', '{"keyId":"\\ud800\\udfff\\ud800"}'],
  ];
  const coordinatorRoutes: [string, string][] = [
    ['POST', '/keys'],
    ['POST', '/keys/once/sign'],
    ['POST', '/keys/once/preprocess'],
    ['POST', '/clients'],
    ['POST', '/approvals'],
    ['POST', '/dashboard'],
  ];
  const nodeRoutes: [string, string][] = [
    ['POST', '/sign/share'],
    ['PUT', '/fragment'],
    ['POST', '/dkg/round1'],
  ];
  const send = async (url: string, method: string, body: string | Buffer, type = 'application/json', signed = false, p = '') => {
    const headers: Record<string, string> = { 'content-type': type, ...(signed && typeof body === 'string' ? signedHeaders(stack.admin, method, p, body) : {}) };
    const res = await fetch(url, { method, headers, body });
    return { status: res.status, text: await res.text() };
  };
  const cases: [string, () => Promise<{ status: number; text: string }>][] = [];
  for (const [what, body, type] of bodies) {
    for (const [method, p] of coordinatorRoutes) {
      cases.push([`coordinator ${method} ${p}, unsigned: ${what}`, () => send(`${stack.url}${p}`, method, body, type)]);
      cases.push([`coordinator ${method} ${p}, signed: ${what}`, () => send(`${stack.url}${p}`, method, body, type, true, p)]);
    }
    for (const [method, p] of nodeRoutes) cases.push([`node1 ${method} ${p}: ${what}`, () => send(`${stack.proxies.get('node1')!.url}${p}`, method, body, type)]);
  }
  cases.push(['coordinator: malformed percent-escape in a key id', () => send(`${stack.url}/keys/%E0%A4%A/sign`, 'POST', '{}')]);
  cases.push(['coordinator: malformed percent-escape, signed', () => send(`${stack.url}/keys/%E0%A4%A/sign`, 'POST', '{}', 'application/json', true, '/keys/%E0%A4%A/sign')]);
  cases.push(['coordinator: overlong percent-encoded key id', () => send(`${stack.url}/keys/${'%C0%AF'.repeat(500)}`, 'GET', undefined as unknown as string)]);

  it(`${cases.length} hostile inputs across coordinator, dashboard and node routes: none gets a 5xx, none leaks a stack`, async () => {
    const seen: { name: string; status: number; text: string }[] = [];
    for (const [name, run] of cases) {
      const r = await run();
      seen.push({ name, status: r.status, text: r.text.slice(0, 200) });
    }
    expect(seen.filter((s) => s.status >= 500 || s.status === 0)).toEqual([]);
    expect(seen.filter((s) => /\n\s+at |RangeError|Maximum call stack/.test(s.text))).toEqual([]);
    // The deep bodies are refused as such, before authentication.
    const deep = seen.filter((s) => /deep (array|object)/.test(s.name) && s.name.startsWith('coordinator POST /keys,'));
    expect(deep.map((s) => s.status)).toEqual([400, 400, 400, 400]);
  });
});

describe('finding: refusal records are aggregated', () => {
  const refusalsOf = async (keyId: string) =>
    (await scanAudit(stack)).filter((i) => i['keyId']?.S === keyId && (i['action']?.S ?? '').startsWith('auth.'));

  it('a flood of unsigned requests writes a bounded number of records; signed actions are still audited one by one', async () => {
    const N = 30;
    for (let i = 0; i < N; i++) {
      const r = await call(stack, 'POST', '/keys/flood-probe/sign', { as: null, body: { message: 'AA==' } });
      expect(r.status).toBe(401);
    }
    const recs = await refusalsOf('flood-probe');
    expect(recs.length).toBeGreaterThanOrEqual(1);
    // One per function instance and window at most (sls offline runs a few instances).
    expect(recs.length).toBeLessThanOrEqual(4);

    const signed = [];
    for (let i = 0; i < 3; i++) signed.push(await call(stack, 'POST', '/keys/once/sign', { body: { message: toB64(new Uint8Array([100 + i])) } }));
    expect(signed.map((s) => s.status)).toEqual([200, 200, 200]);
    const signs = (await scanAudit(stack)).filter((i) => i['keyId']?.S === 'once' && i['action']?.S === 'key.sign' && i['outcome']?.S === 'success');
    expect(signs.length).toBeGreaterThanOrEqual(3);
  });
  // The count a window writes when it ends is covered in test/unit/input-bounds.test.ts.
});
