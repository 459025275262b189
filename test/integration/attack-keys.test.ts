/**
 * Issue 13, the key findings, attacked on the real local stack (sls offline + s3rver +
 * dynalite), through the HTTP surface and the existing test support:
 *  1. import substitution: a relay swaps the secret of a signed import in flight;
 *  2. creation parameters: a rogue coordinator asks the nodes for another threshold or
 *     node set than the client signed (DKG and generate);
 *  3. the federation-wide minimum: an administrator reshares 2-of-3 down to 2-of-2;
 *  4. one key, one purpose: an exportable (imported) key is used to sign;
 *  5. admin lockout: a creator gives a key `admin: []`, and a federation administrator
 *     must still be able to disable and destroy it (break-glass, audited as such).
 * Each test fails on the base commit (1bd142f) for the reason it names.
 */
import { randomUUID } from 'node:crypto';
import type { LocalStack } from '../../tools/local-stack';
import { NodeClient } from '../../lib/coordinator/node-client';
import { withClientRequest } from '../../lib/coordinator/client-context';
import { signedHeaders, type ClientIdentity } from '../../lib/client/signer';
import * as clientAuth from '../../lib/crypto/client-auth';
import { dealKey, identifierFor } from '../../lib/crypto/shares';
import { seal } from '../../lib/crypto/seal';
import { importAad } from '../../lib/node/fragment';
import { fromB64, toB64 } from '../../lib/encoding';
import { call, clientEnvelope, newClient, nodeEndpoint, reconstructEndToEnd, scanAudit, testStack } from '../support/stack';

jest.setTimeout(180_000);

let stack: LocalStack;
let bob: ClientIdentity;
const NODES = ['node1', 'node2', 'node3'];
const participants = NODES.map((nodeId, i) => ({ nodeId, identifier: identifierFor(i + 1) }));

beforeAll(async () => {
  stack = await testStack();
  bob = await newClient(stack, 'bob', ['key-creator']);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
});

/** Call a node directly with the coordinator's key, relaying `env`: what a rogue coordinator can do. */
async function asCoordinator(nodeId: string, method: 'POST' | 'PUT', path: string, env: ReturnType<typeof clientEnvelope>, body: unknown) {
  const client = new NodeClient(fromB64(stack.secrets['coordinator']!['privateKey']!));
  try {
    const answer = await withClientRequest(env, () => client.call(nodeEndpoint(stack, nodeId), { method, path, body }, AbortSignal.timeout(20_000)));
    return { status: 200, body: answer as any, code: undefined as string | undefined };
  } catch (e) {
    const err = e as { httpStatus?: number; code?: string };
    return { status: err.httpStatus ?? 0, body: undefined, code: err.code };
  }
}

/** Send `sent` to POST /keys with the client signature of `signed`: a relay that altered the body in flight. */
async function relayAltered(signed: unknown, sent: unknown, as: ClientIdentity = stack.admin) {
  const headers = signedHeaders(as, 'POST', '/keys', JSON.stringify(signed));
  const res = await fetch(`${stack.url}/keys`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(sent) });
  const body = (await res.json().catch(() => undefined)) as any;
  return { status: res.status, code: body?.error?.code as string | undefined, body };
}

/** The import body a current client sends (with the scalar its signature commits to); as is where the SDK has no such step. */
const asClientSends = (body: Record<string, unknown>): Record<string, unknown> => {
  const prepare = (clientAuth as unknown as Record<string, unknown>)['withImportScalar'] as ((m: string, p: string, b: unknown) => unknown) | undefined;
  return (prepare ? prepare('POST', '/keys', body) : body) as Record<string, unknown>;
};

async function auditActions(keyId: string): Promise<{ stream: string; action: string; outcome: string; actor: string }[]> {
  return (await scanAudit(stack)).filter((i) => i['keyId']?.S === keyId).map((i) => ({ stream: i['stream']!.S!, action: i['action']!.S!, outcome: i['outcome']!.S!, actor: i['actor']!.S! }));
}

describe('1. import substitution', () => {
  it('a relay that swaps the secret of a signed import is refused, and nothing is stored', async () => {
    const honest = asClientSends({ keyId: 'subst', secretHex: 'a94f3d82c1b7e6f9', policy: { serverSideCombine: true } });
    // The relay swaps in a secret it knows, keeping everything else.
    const swapped = await relayAltered(honest, { ...honest, secretHex: '00112233' });
    expect(swapped.status).toBeGreaterThanOrEqual(400);
    expect(swapped.status).toBeLessThan(500);
    // Or it drops the scalar too, making the import look like one with nothing to check.
    const { scalarHex: _dropped, ...bare } = honest;
    void _dropped;
    const stripped = await relayAltered(honest, { ...bare, secretHex: '00112233' });
    expect(stripped.status).toBeGreaterThanOrEqual(400);
    expect(stripped.status).toBeLessThan(500);
    // Nothing was stored on any node: the id is free, not held by the substitute.
    expect((await call(stack, 'GET', '/keys/subst')).status).toBe(404);

    // An import that commits to nothing (an old client, or a relay that built its own) is refused by every node.
    const legacy = await relayAltered({ keyId: 'subst', secretHex: '00112233' }, { keyId: 'subst', secretHex: '00112233' });
    expect(legacy.status).toBe(403);
    expect(legacy.code).toBe('import_commitment_required');

    // The honest request, delivered as signed, imports the client's secret.
    const ok = await relayAltered(honest, honest);
    expect(ok.status).toBe(201);
    expect((await reconstructEndToEnd(stack, 'subst')).body.secret.hex).toBe('a94f3d82c1b7e6f9');
  });
});

describe('2. creation parameters checked by every node', () => {
  it('DKG: a node refuses a round 1 with another threshold or node set than the client signed', async () => {
    const env = () => clientEnvelope(stack.admin, 'POST', '/keys', { keyId: 'asked-three', type: 'ed25519', threshold: 3 });
    const r1 = (threshold: number, ps = participants) => ({ sessionId: randomUUID(), keyId: 'asked-three', threshold, participants: ps, createdAt: new Date().toISOString() });
    const lower = await asCoordinator('node1', 'POST', '/dkg/round1', env(), r1(2));
    expect(lower).toMatchObject({ status: 403, code: 'client_request_mismatch' });
    // The client named no nodes: every member (the default), not a subset the coordinator picked.
    const subset = await asCoordinator('node2', 'POST', '/dkg/round1', clientEnvelope(stack.admin, 'POST', '/keys', { keyId: 'asked-all', type: 'ed25519' }), { ...r1(2, participants.slice(0, 2)), keyId: 'asked-all' });
    expect(subset).toMatchObject({ status: 403, code: 'client_request_mismatch' });
    // Through the coordinator, the key gets what the client asked for.
    const created = await call(stack, 'POST', '/keys', { body: { keyId: 'asked-three', type: 'ed25519', threshold: 3 } });
    expect(created.status).toBe(201);
    expect(created.body.key).toMatchObject({ threshold: 3, total: 3 });
  });

  it('generate: a node refuses a dealt key of another threshold than the client signed', async () => {
    const keyId = 'gen-three';
    const env = clientEnvelope(stack.admin, 'POST', '/keys', { keyId, length: 16, threshold: 3 });
    const dealt = dealKey({ keyId, threshold: 2, identifiers: participants.map((p) => p.identifier), secret: new Uint8Array(16).fill(7) });
    const descriptor = { keyId, version: 1, type: 'secret', origin: 'generate', state: 'active', createdAt: new Date().toISOString(), publicPackage: dealt.publicPackage, participants, wrapped: dealt.wrapped };
    const sealedShare = seal(fromB64(stack.secrets['node1']!['x25519Public']!), dealt.shares[0]!.signingShare, importAad(keyId, 1, 'node1'));
    const r = await asCoordinator('node1', 'PUT', '/fragment', env, { identifier: participants[0]!.identifier, descriptor, sealedShare });
    expect(r).toMatchObject({ status: 403, code: 'client_request_mismatch' });
  });
});

describe('3. federation-wide minimum', () => {
  it('an administrator alone cannot reshare 2-of-3 down to 2-of-2, nor create below the minimum', async () => {
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'floor', type: 'ed25519' } })).status).toBe(201);
    const down = await call(stack, 'POST', '/keys/floor/reshare', { body: { threshold: 2, nodes: ['node1', 'node2'] } });
    expect(down.status).toBe(403);
    expect(down.body.error.code).toBe('below_federation_minimum');
    expect((await call(stack, 'GET', '/keys/floor')).body.key).toMatchObject({ version: 1, threshold: 2, total: 3 });
    const small = await call(stack, 'POST', '/keys', { body: { keyId: 'small', type: 'ed25519', nodes: ['node1', 'node2'] } });
    expect(small.status).toBe(403);
    expect(small.body.error.code).toBe('below_federation_minimum');
    // At the minimum or above is fine.
    expect((await call(stack, 'POST', '/keys/floor/reshare', { body: { threshold: 3 } })).status).toBe(200);
  });
});

describe('4. one key, one purpose', () => {
  it('an exportable (imported) key does not sign or pre-publish nonces, and a policy cannot make it', async () => {
    const imported = await call(stack, 'POST', '/keys', { body: { keyId: 'exportable', secretHex: 'c0ffee', policy: { reconstruct: ['client:bob', 'role:admin'] } } });
    expect(imported.status).toBe(201);
    // Whoever may reconstruct it holds its scalar: it must never be a signing key too.
    expect((await reconstructEndToEnd(stack, 'exportable', bob)).body.secret.hex).toBe('c0ffee');
    const sign = await call(stack, 'POST', '/keys/exportable/sign', { body: { message: toB64(Buffer.from('forged?')) } });
    // Refused before any node signs: no policy may grant `sign` on it (403 not_authorized from
    // the pool's permission check, or 409 key_not_signing from the purpose check, whichever runs first).
    expect(sign.body.signature).toBeUndefined();
    expect([[403, 'not_authorized'], [409, 'key_not_signing']]).toContainEqual([sign.status, sign.body.error.code]);
    const pre = await call(stack, 'POST', '/keys/exportable/preprocess', { body: { count: 2 } });
    expect(pre.status).toBeGreaterThanOrEqual(400);
    expect(pre.status).toBeLessThan(500);
    // A policy that grants another purpose is refused, on create and on update.
    const both = await call(stack, 'POST', '/keys', { body: { keyId: 'both', secretHex: 'aa', policy: { sign: ['client:bob'] } } });
    expect(both.status).toBe(403);
    expect(both.body.error.code).toBe('policy_purpose_mismatch');
    const policy = { sign: ['role:admin'], reconstruct: ['role:admin'], describe: ['role:admin'], admin: ['role:admin'], approvals: { required: 0, approvers: [] }, serverSideCombine: false };
    const update = await call(stack, 'PUT', '/keys/exportable/policy', { body: { policy } });
    expect(update.status).toBe(403);
    expect(update.body.error.code).toBe('policy_purpose_mismatch');
  });
});

describe('5. admin lockout and break-glass', () => {
  it('a federation administrator disables and destroys a key whose creator set admin: [], audited as break-glass', async () => {
    const created = await call(stack, 'POST', '/keys', { body: { keyId: 'locked', type: 'ed25519', policy: { admin: [] } }, as: bob });
    expect(created.status).toBe(201);
    const disabled = await call(stack, 'POST', '/keys/locked/state', { body: { state: 'disabled', reason: 'incident' } });
    expect(disabled.status).toBe(200);
    expect(disabled.body.breakGlass).toBe(true);
    // Break-glass never re-activates a key.
    expect((await call(stack, 'POST', '/keys/locked/state', { body: { state: 'active' } })).status).toBe(403);
    const destroyed = await call(stack, 'POST', '/keys/locked/state', { body: { state: 'destroyed' } });
    expect(destroyed.status).toBe(200);
    expect((await call(stack, 'GET', '/keys/locked')).status).toBe(410);
    const records = await auditActions('locked');
    for (const id of NODES) {
      expect(records).toContainEqual({ stream: expect.stringContaining(id), action: 'key.state.break-glass', outcome: 'success', actor: 'client:admin' });
    }
    expect(records.some((r) => r.action === 'key.destroy.break-glass' && r.stream.startsWith('reconstruct'))).toBe(true);
  });
});
