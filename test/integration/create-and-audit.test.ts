/**
 * Issue 11, items 5 and 6, on the real local stack (sls offline + s3rver + dynalite):
 *  - a failed create leaves nothing that blocks its key id: the coordinator rolls back
 *    every node it reached, and a new create succeeds as soon as the nodes are back;
 *  - concurrent creates of one id have exactly one winner, the others a clear 409;
 *  - a claim nobody could roll back answers 409 key_being_created with Retry-After, and
 *    only its own client's retry takes it over; rollbacks never touch an existing key;
 *  - requests stopped at the coordinator's client check are audited with their key id;
 *  - the dashboard's polling writes no audit record per look: a tampered fragment is
 *    recorded when found and when it changes.
 */
import { randomUUID } from 'node:crypto';
import type { LocalStack } from '../../tools/local-stack';
import { NodeClient } from '../../lib/coordinator/node-client';
import { withClientRequest } from '../../lib/coordinator/client-context';
import { HEADERS, signRequest } from '../../lib/crypto/request-signing';
import { signedHeaders, type ClientIdentity } from '../../lib/client/signer';
import { withImportScalar } from '../../lib/crypto/client-auth';
import { identifierFor } from '../../lib/crypto/shares';
import { fromB64 } from '../../lib/encoding';
import { call, clientEnvelope, newClient, nodeEndpoint, readObject, reconstructEndToEnd, scanAudit, statusOf, testStack, writeObject } from '../support/stack';

let stack: LocalStack;
let bob: ClientIdentity;
const NODES = ['node1', 'node2', 'node3'];

beforeAll(async () => {
  stack = await testStack();
  bob = await newClient(stack, 'bob', ['key-creator']);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of NODES) await stack.setNode(id, { kind: 'up' });
});

/**
 * A signed POST to the coordinator, with the answer's Retry-After header. A request the
 * front door throttles (429: nothing was done) is signed afresh and sent again, as the SDK does.
 */
async function post(path: string, body: unknown, as: ClientIdentity = stack.admin) {
  // An import carries the scalar the client's signature commits to (issue 13), as the SDK sends it.
  const text = JSON.stringify(withImportScalar('POST', path, body));
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...signedHeaders(as, 'POST', path, text) }, body: text });
    const answer = (await res.json().catch(() => undefined)) as any;
    const retryAfter = res.headers.get('retry-after');
    if (res.status === 429 && attempt < 30) {
      await new Promise((r) => setTimeout(r, (Number(retryAfter) || 1) * 1000 * (0.5 + Math.random())));
      continue;
    }
    return { status: res.status, body: answer, code: answer?.error?.code as string | undefined, retryAfter };
  }
}

/** Every audit record, as plain values. */
async function auditRecords(): Promise<{ stream: string; action: string; keyId?: string; outcome: string; actor: string; details: any }[]> {
  // Every operator's own table: each node's chains live in its own storage.
  return (await scanAudit(stack)).map((i) => ({ stream: i['stream']!.S!, action: i['action']!.S!, keyId: i['keyId']?.S, outcome: i['outcome']!.S!, actor: i['actor']!.S!, details: i['details']?.M }));
}

/** Call a node directly with the coordinator's key, relaying `env`: a coordinator that stops halfway. */
async function asCoordinator(nodeId: string, method: 'POST' | 'DELETE', path: string, env: ReturnType<typeof clientEnvelope>, opts: { body?: unknown; query?: Record<string, string> } = {}) {
  const client = new NodeClient(fromB64(stack.secrets['coordinator']!['privateKey']!));
  try {
    const body = await withClientRequest(env, () => client.call(nodeEndpoint(stack, nodeId), { method, path, ...opts }, AbortSignal.timeout(10_000)));
    return { status: 200, body, code: undefined as string | undefined };
  } catch (e) {
    const err = e as { httpStatus?: number; code?: string };
    return { status: err.httpStatus ?? 0, body: undefined, code: err.code };
  }
}

const sign = (keyId: string, as: ClientIdentity = stack.admin) => post(`/keys/${keyId}/sign`, { message: Buffer.from('hello').toString('base64') }, as);

describe('a failed create leaves nothing that blocks the id', () => {
  it.each<[string, { keyId: string; secretHex?: string; type?: string }]>([
    ['an imported key', { keyId: 'failed-import', secretHex: 'a94f3d82c1b7e6f9' }],
    ['a DKG key', { keyId: 'failed-dkg', type: 'ed25519' }],
  ])('%s: two nodes down, the create fails; once they are back a new create of the same id succeeds at once', async (_what, body) => {
    await stack.setNode('node2', { kind: 'down' });
    await stack.setNode('node3', { kind: 'down' });
    const failed = await post('/keys', body);
    expect(failed.status).toBe(503);
    expect(failed.code).toBe('quorum_not_reached');
    expect(statusOf(failed.body, 'node1')).toBe('valid');
    expect(statusOf(failed.body, 'node2')).toBe('unreachable');
    // node1 took part and was rolled back: the key is not there, and nothing holds the id.
    expect((await call(stack, 'GET', `/keys/${body.keyId}`)).status).toBe(404);
    await stack.setNode('node2', { kind: 'up' });
    await stack.setNode('node3', { kind: 'up' });
    const created = await post('/keys', body, bob);
    expect(created.status).toBe(201);
    if (body.type === 'ed25519') expect((await sign(body.keyId, bob)).status).toBe(200);
    else expect((await reconstructEndToEnd(stack, body.keyId, bob)).body.secret.hex).toBe('a94f3d82c1b7e6f9');
    // The failure was audited with what was rolled back.
    const failure = (await auditRecords()).find((r) => r.keyId === body.keyId && r.outcome === 'failure' && /^(key\.import|dkg\.abort)$/.test(r.action));
    expect(failure?.details?.['rolledBack']?.L?.map((x: any) => x.S)).toContain('node1');
  });
});

describe('concurrent creates of one id', () => {
  it.each([
    ['imported', (who: number) => ({ keyId: 'race-import', secretHex: `0${who}` })],
    ['DKG', () => ({ keyId: 'race-dkg', type: 'ed25519' })],
  ])('three at once (%s): exactly one winner, the others a 409 key_exists or key_being_created, never a 5xx', async (kind, body) => {
    const who = [stack.admin, bob, stack.admin];
    const results = await Promise.all(who.map((w, i) => post('/keys', body(i), w)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    for (const r of results.filter((x) => x.status !== 201)) {
      if (r.status !== 409) console.log('unexpected answer to a racing create', kind, JSON.stringify(r.body));
      expect(r.status).toBe(409);
      expect(['key_exists', 'key_being_created']).toContain(r.code);
      if (r.code === 'key_being_created') expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    // The winner's key is whole on every node and works.
    const winner = who[results.findIndex((r) => r.status === 201)]!;
    const show = await call(stack, 'GET', `/keys/${body(0).keyId}`, { as: winner });
    expect(show.status).toBe(200);
    expect(show.body.availability.available).toBe(3);
    if (kind === 'DKG') expect((await sign('race-dkg', winner)).status).toBe(200);
    else expect((await reconstructEndToEnd(stack, 'race-import', winner)).status).toBe(200);
  });
});

describe('a claim nobody could roll back', () => {
  it("answers 409 key_being_created with Retry-After; only its own client's retry takes it over, after it", async () => {
    const keyId = 'abandoned';
    // A coordinator that died after round 1 on node3: node3 holds the admin's claim on the id.
    const env = clientEnvelope(stack.admin, 'POST', '/keys', { keyId, type: 'ed25519' });
    const participants = NODES.map((id, i) => ({ nodeId: id, identifier: identifierFor(i + 1) }));
    const r1 = await asCoordinator('node3', 'POST', '/dkg/round1', env, { body: { sessionId: randomUUID(), keyId, threshold: 2, participants, createdAt: new Date().toISOString() } });
    expect(r1.status).toBe(200);

    // Another client: refused, truthfully, with when to try again.
    const other = await post('/keys', { keyId, type: 'ed25519' }, bob);
    expect(other.status).toBe(409);
    expect(other.code).toBe('key_being_created');
    expect(Number(other.retryAfter)).toBeGreaterThanOrEqual(1);
    // The same client at once: that create may still be running, so not yet.
    const early = await post('/keys', { keyId, type: 'ed25519' });
    expect(early.code).toBe('key_being_created');
    const wait = Number(early.retryAfter);
    expect(wait).toBeGreaterThanOrEqual(1);

    await new Promise((r) => setTimeout(r, (wait + 1) * 1000));
    // Another client still may not take it; the claim's own client, with a new request, does.
    expect((await post('/keys', { keyId, type: 'ed25519' }, bob)).code).toBe('key_being_created');
    const retry = await post('/keys', { keyId, type: 'ed25519' });
    expect(retry.status).toBe(201);
    expect((await sign(keyId)).status).toBe(200);
    expect((await post('/keys', { keyId, type: 'ed25519' }, bob)).code).toBe('key_exists');
  }, 120_000);

  it('a DKG run whose claim was released stores nothing at commit', async () => {
    // A coordinator that runs a DKG by hand and releases node3's claim before the commit (as a rollback would).
    const keyId = 'late-commit';
    const env = clientEnvelope(stack.admin, 'POST', '/keys', { keyId, type: 'ed25519' });
    const sessionId = randomUUID();
    const participants = NODES.map((id, i) => ({ nodeId: id, identifier: identifierFor(i + 1) }));
    const all = async (path: string, body: (id: string) => unknown) => {
      const rs = await Promise.all(NODES.map((id) => asCoordinator(id, 'POST', path, env, { body: body(id) })));
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200]);
      return rs.map((r) => r.body as any);
    };
    const r1 = await all('/dkg/round1', () => ({ sessionId, keyId, threshold: 2, participants, createdAt: new Date().toISOString() }));
    const round1 = r1.map((a) => ({ nodeId: a.nodeId, package: a.package, signature: a.signature }));
    const confirmations = (await all('/dkg/confirm', () => ({ sessionId, round1 }))).map((a) => ({ nodeId: a.nodeId, digest: a.digest, signature: a.signature }));
    const r2 = await all('/dkg/round2', () => ({ sessionId, confirmations }));
    const r3 = await all('/dkg/round3', (to) => ({ sessionId, shares: Object.fromEntries(r2.filter((a) => a.nodeId !== to).map((a) => [a.nodeId, a.shares[to]])) }));
    const released = await asCoordinator('node3', 'DELETE', '/fragment', env, { query: { keyId, version: '1' } });
    expect(released).toMatchObject({ status: 404, code: 'key_not_found' });
    const commit = await asCoordinator('node3', 'POST', '/dkg/commit', env, { body: { sessionId, publicPackageDigest: r3[2].publicPackageDigest } });
    expect(commit).toMatchObject({ status: 409, code: 'key_being_created' });
    await expect(readObject(stack, 'node3', `keys/${keyId}/v1.json`)).rejects.toThrow();
  });

  it("a rollback is bound to the request that holds the claim, and never deletes an existing key's fragments", async () => {
    expect((await post('/keys', { keyId: 'kept', secretHex: 'c0ffee' })).status).toBe(201);
    const rollback = (env: ReturnType<typeof clientEnvelope>) => asCoordinator('node1', 'DELETE', '/fragment', env, { query: { keyId: 'kept', version: '1' } });
    // Another client's create of the same id, and the owner's own new create request: both refused.
    expect(await rollback(clientEnvelope(bob, 'POST', '/keys', { keyId: 'kept', secretHex: 'withheld' }))).toMatchObject({ status: 403, code: 'client_request_mismatch' });
    expect(await rollback(clientEnvelope(stack.admin, 'POST', '/keys', { keyId: 'kept', secretHex: 'withheld' }))).toMatchObject({ status: 403, code: 'client_request_mismatch' });
    // Through the coordinator: a create of an existing id is refused before any node claims it, and rolls nothing back.
    expect((await post('/keys', { keyId: 'kept', secretHex: 'beef' }, bob)).code).toBe('key_exists');
    const r = await reconstructEndToEnd(stack, 'kept');
    expect(r.body.secret.hex).toBe('c0ffee');
    expect((await call(stack, 'GET', '/keys/kept')).body.availability.available).toBe(3);
  });
});

describe('requests refused at the coordinator are audited with the key they named', () => {
  beforeAll(async () => {
    expect((await post('/keys', { keyId: 'audited-signer', type: 'ed25519' })).status).toBe(201);
  });

  it('a signing request from an unknown client', async () => {
    const mallory = { name: 'mallory', privateKey: new Uint8Array(32).fill(9) };
    expect((await sign('audited-signer', mallory)).status).toBe(401);
    const recs = (await auditRecords()).filter((r) => r.actor === 'client:mallory');
    expect(recs).toEqual([expect.objectContaining({ action: 'auth.failure', keyId: 'audited-signer', outcome: 'denied' })]);
  });

  it("a signing request whose client the coordinator's check cannot confirm (two nodes down)", async () => {
    // A client this coordinator has never looked up, so its check must ask the nodes.
    const carol = await newClient(stack, 'carol');
    await stack.setNode('node2', { kind: 'down' });
    await stack.setNode('node3', { kind: 'down' });
    const r = await sign('audited-signer', carol);
    expect(r.status).toBeGreaterThanOrEqual(500);
    const recs = (await auditRecords()).filter((x) => x.actor === 'client:carol' && x.keyId === 'audited-signer');
    expect(recs).toEqual([expect.objectContaining({ action: 'auth.unavailable', outcome: 'failure' })]);
    expect(recs[0]!.details['code'].S).toBe(r.code);
  });
});

describe('looking is not an operation', () => {
  /** GET /federation/state as the dashboard function sends it, signed with the dashboard's key. */
  async function poll() {
    const path = '/federation/state';
    const timestamp = String(Date.now());
    const requestId = randomUUID();
    const signature = signRequest(fromB64(stack.secrets['dashboard']!['privateKey']!), { method: 'GET', audience: 'coordinator', path, query: {}, body: '', timestamp, requestId });
    const res = await fetch(`${stack.url}${path}`, { headers: { [HEADERS.signer]: 'dashboard', [HEADERS.signature]: signature, [HEADERS.timestamp]: timestamp, [HEADERS.requestId]: requestId } });
    expect(res.status).toBe(200);
    return (await res.json()) as any;
  }

  it('the dashboard records a tampered fragment when it is found and when it changes, not on every poll', async () => {
    expect((await post('/keys', { keyId: 'watched', length: 16 })).status).toBe(201);
    await poll();
    const clean = (await auditRecords()).length;
    for (let i = 0; i < 3; i++) await poll();
    expect((await auditRecords()).length).toBe(clean);

    const original = await readObject(stack, 'node2', 'keys/watched/v1.json');
    const obj = JSON.parse(original);
    const ct = Buffer.from(obj.share.ct, 'base64');
    ct[0]! ^= 0x01;
    obj.share.ct = ct.toString('base64');
    await writeObject(stack, 'node2', 'keys/watched/v1.json', JSON.stringify(obj));

    const found = await poll();
    expect(found.keys.items.find((k: any) => k.keyId === 'watched').nodes).toContainEqual({ nodeId: 'node2', status: 'corrupted' });
    for (let i = 0; i < 4; i++) await poll();
    const seen = await poll();
    expect(seen.security).toContainEqual(expect.objectContaining({ kind: 'tamper', nodeId: 'node2', keyId: 'watched' }));
    const afterTamper = await auditRecords();
    // Six polls, one record: the finding.
    expect(afterTamper.length).toBe(clean + 1);
    expect(afterTamper.filter((r) => r.keyId === 'watched' && r.action === 'fragment.finding')).toEqual([
      expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ nodeId: { S: 'node2' }, status: { S: 'corrupted' } }) }),
    ]);

    // Repaired: one record of the change, then quiet again.
    await writeObject(stack, 'node2', 'keys/watched/v1.json', original);
    for (let i = 0; i < 3; i++) await poll();
    const repaired = (await auditRecords()).filter((r) => r.keyId === 'watched' && r.action === 'fragment.finding');
    expect(repaired.map((r) => r.details['status'].S).sort()).toEqual(['clean', 'corrupted']);
    expect((await auditRecords()).length).toBe(clean + 2);
  });
});
