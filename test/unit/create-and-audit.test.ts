/**
 * Issue 11, items 5 and 6, at unit level over in-memory ports:
 *  - a create claims its key id on each node, exclusively; a failed create lets go of it
 *    (and of anything it stored) on every node it reached; a claim it could not release
 *    answers 409 key_being_created with a Retry-After, and only its own client may take it
 *    over, once the create that made it cannot still be running;
 *  - requests stopped at the coordinator's client check are audited with the key they named;
 *  - looking (the dashboard's poll, a describe) writes no audit record, and a finding is
 *    recorded once when it appears and once each time it changes.
 */
import { randomUUID } from 'node:crypto';
import { Coordinator } from '../../lib/coordinator/service';
import { NodeClient, type Fetch } from '../../lib/coordinator/node-client';
import { withClientRequest } from '../../lib/coordinator/client-context';
import { DashboardFeed } from '../../lib/coordinator/dashboard-feed';
import { NodeAccess } from '../../lib/node/access';
import { ClientGate, CREATE_SETTLE_MS, CREATE_WINDOW_MS, RELEASED_AT } from '../../lib/node/gate';
import { NodeService, importRequestSchema } from '../../lib/node/service';
import { decodeEnvelope, encodeEnvelope, ENVELOPE_HEADER, signClientRequest, type ClientEnvelope, type ClientRequest } from '../../lib/crypto/client-auth';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { generateX25519 } from '../../lib/crypto/seal';
import { identifierFor } from '../../lib/crypto/shares';
import { toB64 } from '../../lib/encoding';
import { FedkmsError, KeyBeingCreatedError, QuorumError, UnauthorizedError } from '../../lib/errors';
import { keyIdOfPath, recordRefusal } from '../../lib/audit/refusal';
import { changedFindings, FINDING_ACTION, securityOf, type KeyView } from '../../lib/dashboard/state';
import type { AuditRecord } from '../../lib/ports';
import type { NodeEndpoint } from '../../lib/runtime-config';
import { identity, type Identity } from '../support/identities';
import { MemoryAudit, MemoryReplay, MemoryStore } from '../support/fakes';

const alice = identity('alice');
const carl = identity('carl');

/** A client's signed request, as the coordinator relays it. */
function envelope(who: Identity, method: string, path: string, body: unknown): ClientEnvelope {
  const r: ClientRequest = { client: who.name, method, path, query: {}, body: JSON.stringify(body), timestamp: String(Date.now()), requestId: randomUUID() };
  return decodeEnvelope(encodeEnvelope({ ...r, signature: signClientRequest(who.sk, r) }));
}
const createEnv = (who: Identity, keyId: string, extra: Record<string, unknown> = {}) => envelope(who, 'POST', '/keys', { keyId, length: 16, ...extra });

async function outcome(f: () => Promise<unknown>): Promise<{ code: string; status?: number; retryAfterS?: number }> {
  try {
    await f();
    return { code: 'ok' };
  } catch (e) {
    if (e instanceof FedkmsError) return { code: e.code, status: e.status, ...(e.retryAfterS !== undefined ? { retryAfterS: e.retryAfterS } : {}) };
    throw e;
  }
}

/** A test clock for the gates: real time plus an offset the test moves. */
const clock = { offset: 0, now: () => Date.now() + clock.offset };
beforeEach(() => {
  clock.offset = 0;
});

/** One node: its store, its access checks and gate (claims in the shared replay table), its service. */
function makeNode(i: number, replay: MemoryReplay) {
  const id = `node${i}`;
  const x = generateX25519();
  const store = new MemoryStore();
  const audit = new MemoryAudit();
  const wrapKey = new Uint8Array(32).fill(i);
  const access = new NodeAccess({ nodeId: id, wrapKey, store, replay, maxSkewS: 60 });
  const service = new NodeService({ nodeId: id, identifier: identifierFor(i), wrapKey, x25519Private: x.privateKey, version: 'test' }, { store, audit });
  const gate = new ClientGate(access, async (keyId) => (await service.versionsOf(keyId)).at(-1), { now: clock.now, claims: { scope: id, guard: replay } });
  const endpoint: NodeEndpoint = { id, index: i, url: `http://fake/${id}`, x25519Public: toB64(x.publicKey), signingPublic: '' };
  return { id, endpoint, store, audit, access, service, gate, down: false, downFor: new Set<string>() };
}
type FakeNode = ReturnType<typeof makeNode>;

async function federation(n = 3) {
  const replay = new MemoryReplay();
  const nodes = Array.from({ length: n }, (_, i) => makeNode(i + 1, replay));
  for (const node of nodes) for (const who of [alice, carl]) await node.access.putClient({ name: who.name, publicKey: toB64(who.pk), roles: ['key-creator'], status: 'active' });
  // The node routes a create touches, as functions/node.ts wires them (coordinator auth is covered elsewhere).
  const fakeFetch: Fetch = async (input, init) => {
    const url = new URL(String(input));
    const node = nodes.find((x) => url.pathname.startsWith(`/${x.id}/`))!;
    const route = `${init?.method} ${url.pathname.slice(node.id.length + 1)}`;
    if (node.down || node.downFor.has(route)) throw new TypeError('fetch failed');
    const headers = init?.headers as Record<string, string>;
    const q = Object.fromEntries(url.searchParams);
    try {
      let body: unknown;
      if (route === 'PUT /fragment') {
        const { clientAuth, ...rest } = JSON.parse(String(init?.body)) as Record<string, unknown>;
        const req = importRequestSchema.parse(rest);
        const g = await node.gate.create(decodeEnvelope(clientAuth), req.descriptor.keyId, req.descriptor.type, 'PUT /fragment');
        body = await node.service.importShare(req, g.actor);
      } else if (route === 'DELETE /fragment') {
        const env = headers[ENVELOPE_HEADER] ? decodeEnvelope(headers[ENVELOPE_HEADER]) : undefined;
        const g = await node.gate.deleteVersion(env, q['keyId']!, Number(q['version']), await node.service.versionsOf(q['keyId']!));
        body = await node.service.deleteVersion(q['keyId']!, Number(q['version']), g.actor);
      } else throw new Error(`no route ${route}`);
      // A node that went down while it worked: the work is done, the answer is lost.
      if (node.down) throw new TypeError('fetch failed');
      return new Response(JSON.stringify(body), { status: 200 });
    } catch (e) {
      if (e instanceof TypeError) throw e;
      const err = e as FedkmsError;
      const h: Record<string, string> = err.retryAfterS !== undefined ? { 'retry-after': String(err.retryAfterS) } : {};
      return new Response(JSON.stringify({ error: { code: err.code ?? 'internal_error' } }), { status: err.status ?? 500, headers: h });
    }
  };
  const audit = new MemoryAudit();
  const coordinator = new Coordinator({ nodes: nodes.map((x) => x.endpoint), threshold: 2, timeoutMs: 1000, client: new NodeClient(generateSigningKey().privateKey, fakeFetch), audit });
  const create = (who: Identity, keyId: string, env = createEnv(who, keyId)) => withClientRequest(env, () => coordinator.createKey({ keyId, length: 16 }, `client:${who.name}`));
  return { nodes, coordinator, audit, replay, create };
}

const ownerOn = async (node: FakeNode, keyId: string) => (await node.access.control(keyId))?.owner;

describe('a create claims its key id on each node (ClientGate)', () => {
  it('three concurrent creates of one id on one node: exactly one claims it, the others get 409 key_being_created with Retry-After', async () => {
    const { nodes } = await federation(1);
    const node = nodes[0]!;
    const who = [alice, carl, alice];
    const results = await Promise.all(who.map((w) => outcome(() => node.gate.create(createEnv(w, 'k1'), 'k1', 'secret', 'PUT /fragment'))));
    expect(results.filter((r) => r.code === 'ok')).toHaveLength(1);
    for (const r of results.filter((x) => x.code !== 'ok')) {
      expect(r).toMatchObject({ code: 'key_being_created', status: 409 });
      expect(r.retryAfterS).toBeGreaterThanOrEqual(1);
    }
  });

  it('another client never takes a live claim over, and is told when the claim expires', async () => {
    const { nodes } = await federation(1);
    const node = nodes[0]!;
    await node.gate.create(createEnv(alice, 'k2'), 'k2', 'secret', 'PUT /fragment');
    // Just made: the create may be running, so the answer may change once it has settled.
    const early = await outcome(() => node.gate.create(createEnv(carl, 'k2'), 'k2', 'secret', 'PUT /fragment'));
    expect(early).toMatchObject({ code: 'key_being_created', status: 409 });
    expect(early.retryAfterS).toBeLessThanOrEqual(CREATE_SETTLE_MS / 1000);
    // Abandoned (past the settle time): still alice's until the window ends.
    clock.offset = CREATE_SETTLE_MS + 1000;
    const late = await outcome(() => node.gate.create(createEnv(carl, 'k2'), 'k2', 'secret', 'PUT /fragment'));
    expect(late).toMatchObject({ code: 'key_being_created' });
    expect(late.retryAfterS).toBeGreaterThan(CREATE_SETTLE_MS / 1000);
    expect(late.retryAfterS).toBeLessThanOrEqual(CREATE_WINDOW_MS / 1000);
    expect(await ownerOn(node, 'k2')).toBe('alice');
    // Past the window the id is free again.
    clock.offset = CREATE_WINDOW_MS + 1000;
    expect((await outcome(() => node.gate.create(createEnv(carl, 'k2'), 'k2', 'secret', 'PUT /fragment'))).code).toBe('ok');
    expect(await ownerOn(node, 'k2')).toBe('carl');
  });

  it("the claim's own client takes it over with a new request, once the create that made it cannot still be running", async () => {
    const { nodes } = await federation(1);
    const node = nodes[0]!;
    await node.gate.create(createEnv(alice, 'k3'), 'k3', 'secret', 'PUT /fragment');
    expect((await outcome(() => node.gate.create(createEnv(alice, 'k3'), 'k3', 'secret', 'PUT /fragment'))).code).toBe('key_being_created');
    clock.offset = CREATE_SETTLE_MS;
    const retry = createEnv(alice, 'k3');
    expect((await outcome(() => node.gate.create(retry, 'k3', 'secret', 'PUT /fragment'))).code).toBe('ok');
    expect((await node.access.control('k3'))!.createRequest).toBe(`alice:${retry.requestId}`);
  });

  it('a rollback by the creating request lets go of the id at once; no other request may roll back', async () => {
    const { nodes } = await federation(1);
    const node = nodes[0]!;
    const mine = createEnv(alice, 'k4');
    await node.gate.create(mine, 'k4', 'secret', 'PUT /fragment');
    // Another request of the same client, and another client's create, may not release it.
    const deleteAs = (env: ClientEnvelope) => outcome(() => node.gate.deleteVersion(env, 'k4', 1, []));
    expect(await deleteAs(createEnv(alice, 'k4'))).toMatchObject({ code: 'client_request_mismatch', status: 403 });
    expect(await deleteAs(createEnv(carl, 'k4'))).toMatchObject({ code: 'client_request_mismatch', status: 403 });
    expect((await node.access.control('k4'))!.updatedAt).not.toBe(RELEASED_AT);
    // The request that holds the claim may, with its own signed request (single use per node).
    expect((await deleteAs(mine)).code).toBe('ok');
    expect((await node.access.control('k4'))!.updatedAt).toBe(RELEASED_AT);
    expect((await outcome(() => node.gate.create(createEnv(carl, 'k4'), 'k4', 'secret', 'PUT /fragment'))).code).toBe('ok');
  });

  it("a rollback never deletes an existing key's fragments", async () => {
    const f = await federation(3);
    await f.create(alice, 'kept');
    // carl's create of an existing id is refused before it claims anything, so its rollback is refused too.
    const carls = createEnv(carl, 'kept');
    expect(await outcome(() => f.nodes[0]!.gate.create(carls, 'kept', 'secret', 'PUT /fragment'))).toMatchObject({ code: 'key_exists', status: 409 });
    for (const env of [carls, createEnv(alice, 'kept')]) {
      expect(await outcome(() => f.nodes[0]!.gate.deleteVersion(env, 'kept', 1, [1]))).toMatchObject({ code: 'client_request_mismatch', status: 403 });
    }
    for (const n of f.nodes) {
      expect(await n.service.versionsOf('kept')).toEqual([1]);
      expect(await ownerOn(n, 'kept')).toBe('alice');
    }
  });

  it('a contender that died between claiming and writing blocks that version of the document for two slots at most', async () => {
    const { nodes, replay } = await federation(1);
    const node = nodes[0]!;
    // Spend the claims a create of k5 from "no document" would take now, as a crashed one would have.
    const slot = Math.floor(clock.now() / 10_000);
    for (const s of [slot, slot + 1]) await replay.claim('node1', `control:k5:none:${s}`);
    expect((await outcome(() => node.gate.create(createEnv(carl, 'k5'), 'k5', 'secret', 'PUT /fragment'))).code).toBe('key_being_created');
    clock.offset = 20_000;
    expect((await outcome(() => node.gate.create(createEnv(carl, 'k5'), 'k5', 'secret', 'PUT /fragment'))).code).toBe('ok');
  });
});

describe('Coordinator.createKey: rollback, and one winner', () => {
  it('after a failed create (two nodes down) nothing blocks the id: once the nodes are back, a new create succeeds at once', async () => {
    const f = await federation(3);
    f.nodes[1]!.down = true;
    f.nodes[2]!.down = true;
    const failed = await outcome(() => f.create(alice, 'k'));
    expect(failed).toMatchObject({ code: 'quorum_not_reached', status: 503 });
    // node1 stored and claimed, then rolled both back.
    expect(await f.nodes[0]!.store.versions('k')).toEqual([]);
    expect((await f.nodes[0]!.access.control('k'))!.updatedAt).toBe(RELEASED_AT);
    expect(f.audit.records.at(-1)).toMatchObject({ action: 'key.generate', outcome: 'failure', details: { rolledBack: ['node1', 'node2', 'node3'] } });
    f.nodes[1]!.down = false;
    f.nodes[2]!.down = false;
    // Another client, at once.
    const ok = await f.create(carl, 'k');
    expect(ok.key).toMatchObject({ keyId: 'k', version: 1 });
    for (const n of f.nodes) expect(await ownerOn(n, 'k')).toBe('carl');
  });

  it('stops at the first node when it is down: nothing is claimed anywhere', async () => {
    const f = await federation(3);
    f.nodes[0]!.down = true;
    expect((await outcome(() => f.create(alice, 'k'))).status).toBe(503);
    for (const n of f.nodes.slice(1)) expect(await n.access.control('k')).toBeNull();
  });

  it('three concurrent creates of one id: exactly one winner, the others a 409 (key_being_created or key_exists), never a 5xx', async () => {
    const f = await federation(3);
    const results = await Promise.all([alice, carl, alice].map((w) => outcome(() => f.create(w, 'race'))));
    expect(results.filter((r) => r.code === 'ok')).toHaveLength(1);
    for (const r of results.filter((x) => x.code !== 'ok')) {
      expect(r.status).toBe(409);
      expect(['key_being_created', 'key_exists']).toContain(r.code);
    }
    const owners = await Promise.all(f.nodes.map((n) => ownerOn(n, 'race')));
    expect(new Set(owners).size).toBe(1);
    for (const n of f.nodes) expect(await n.store.versions('race')).toEqual([1]);
  });

  it('a claim the rollback could not reach answers 409 key_being_created with Retry-After; its own client takes it over later', async () => {
    const f = await federation(3);
    // node3 admits the create (claims the id), then stops before storing, and cannot be reached for the rollback.
    const importShare = f.nodes[2]!.service.importShare.bind(f.nodes[2]!.service);
    f.nodes[2]!.service.importShare = async () => {
      f.nodes[2]!.down = true;
      throw new TypeError('node stopped');
    };
    expect((await outcome(() => f.create(alice, 'k'))).status).toBe(503);
    f.nodes[2]!.down = false;
    f.nodes[2]!.service.importShare = importShare;
    expect(await f.nodes[0]!.store.versions('k')).toEqual([]);
    expect(await f.nodes[2]!.store.versions('k')).toEqual([]);
    // node3 still holds alice's claim: nobody else may create k there yet, and they are told so.
    const other = await outcome(() => f.create(carl, 'k'));
    expect(other).toMatchObject({ code: 'key_being_created', status: 409 });
    expect(other.retryAfterS).toBeGreaterThanOrEqual(1);
    // carl's attempt reached node1 and node2, and rolled back there: only node3's claim stands.
    expect((await f.nodes[0]!.access.control('k'))!.updatedAt).toBe(RELEASED_AT);
    // alice's retry is refused while her first create might still be running, then takes over.
    expect((await outcome(() => f.create(alice, 'k'))).code).toBe('key_being_created');
    clock.offset = CREATE_SETTLE_MS;
    expect((await f.create(alice, 'k')).key.keyId).toBe('k');
    expect((await outcome(() => f.create(carl, 'k'))).code).toBe('key_exists');
  });
});

describe('requests stopped at the coordinator are audited with the key they named', () => {
  it('takes the key id from a well-formed /keys/{keyId} path only', () => {
    expect(keyIdOfPath('/keys/db-master/sign')).toBe('db-master');
    expect(keyIdOfPath('/keys/db-master')).toBe('db-master');
    expect(keyIdOfPath('/keys')).toBeUndefined();
    expect(keyIdOfPath('/keys/Bad_Id/sign')).toBeUndefined();
    expect(keyIdOfPath('/keys/a%2Fb/sign')).toBeUndefined();
    expect(keyIdOfPath('/clients')).toBeUndefined();
  });

  it('records a refusal with its key, and with everyFailure also a check that could not be made (503)', async () => {
    const audit = new MemoryAudit();
    const ctx = { method: 'POST', path: '/keys/k1/sign', signer: 'client:alice' };
    await recordRefusal(audit, 'reconstruct', new UnauthorizedError('client_unknown', 'x'), ctx);
    const unavailable = new QuorumError('not enough nodes agree on client alice', { nodes: [{ nodeId: 'node1', status: 'timeout' }] });
    await recordRefusal(audit, 'reconstruct', unavailable, ctx);
    expect(audit.records).toHaveLength(1);
    await recordRefusal(audit, 'reconstruct', unavailable, { ...ctx, everyFailure: true });
    expect(audit.records.map((r) => [r.action, r.keyId, r.outcome, r.actor])).toEqual([
      ['auth.failure', 'k1', 'denied', 'client:alice'],
      ['auth.unavailable', 'k1', 'failure', 'client:alice'],
    ]);
    expect(audit.records[1]!.details).toMatchObject({ code: 'quorum_not_reached', nodes: [{ nodeId: 'node1', status: 'timeout' }] });
    // A refusal on a route that names no key has none.
    await recordRefusal(audit, 'reconstruct', new UnauthorizedError('client_unknown', 'x'), { method: 'GET', path: '/keys' });
    expect(audit.records.at(-1)!.keyId).toBeUndefined();
  });
});

describe('looking is not an operation', () => {
  it("a node's describe of a tampered fragment answers fragment_corrupted without an audit record; an operation still records it", async () => {
    const f = await federation(3);
    await f.create(alice, 'k');
    const node = f.nodes[1]!;
    const [name, raw] = [...node.store.objects.entries()][0]!;
    node.store.objects.set(name, raw.replace(/"ct":"(.)/, (_m, c: string) => `"ct":"${c === 'A' ? 'B' : 'A'}`));
    const before = node.audit.records.length;
    for (let i = 0; i < 3; i++) expect((await outcome(() => node.service.describe('k'))).code).toBe('fragment_corrupted');
    expect(node.audit.records).toHaveLength(before);
    expect((await outcome(() => node.service.fragment('k', generateX25519().publicKey, 'client:alice'))).code).toBe('fragment_corrupted');
    expect(node.audit.records.at(-1)).toMatchObject({ action: 'fragment.integrity', outcome: 'failure' });
  });

  /** A federation reader whose key `k` shows node2 in `status`. */
  function feedFor(statusOf: () => string) {
    const audit = Object.assign(new MemoryAudit(), { readBounded: async () => ({ records: [...audit.records], complete: true }) });
    const replay = new MemoryReplay();
    const federation = {
      status: async () => ({ threshold: 2, total: 3, nodesUp: 3, quorum: true, nodes: ['node1', 'node2', 'node3'].map((nodeId) => ({ nodeId, status: 'valid', healthy: true })) }),
      listKeys: async () => ({ keys: [{ keyId: 'k', latestVersion: 1, heldBy: ['node1', 'node2', 'node3'] }], nodes: [] }),
      describeKey: async () => ({
        key: { keyId: 'k', version: 1, type: 'secret', state: 'active', createdAt: '2026-01-01T00:00:00Z', threshold: 2, total: 3, groupPublicKey: 'ab' },
        availability: { available: statusOf() === 'valid' ? 3 : 2, quorumMargin: statusOf() === 'valid' ? 1 : 0 },
        nodes: [
          { nodeId: 'node1', status: 'valid' },
          { nodeId: 'node2', status: statusOf() },
          { nodeId: 'node3', status: 'valid' },
        ],
      }),
    };
    const feed = new DashboardFeed({ federation, audit, replay, dashboardPublicKey: undefined, threshold: 2, nodeIds: ['node1', 'node2', 'node3'], maxKeys: 10, maxAuditItems: 1000, maxSkewS: 60, ownStream: 'reconstruct' });
    return { feed, audit };
  }

  it('the dashboard poll records a tampered fragment once when found and once per change, not per poll', async () => {
    let node2 = 'valid';
    const { feed, audit } = feedFor(() => node2);
    for (let i = 0; i < 3; i++) await feed.state();
    expect(audit.records).toHaveLength(0);
    node2 = 'corrupted';
    for (let i = 0; i < 5; i++) await feed.state();
    // Concurrent polls too.
    await Promise.all([feed.state(), feed.state(), feed.state()]);
    expect(audit.records.map((r) => [r.action, r.keyId, r.details?.['nodeId'], r.details?.['status'], r.outcome])).toEqual([[FINDING_ACTION, 'k', 'node2', 'corrupted', 'failure']]);
    const state = await feed.state();
    expect(state.security).toEqual([expect.objectContaining({ kind: 'tamper', nodeId: 'node2', keyId: 'k', count: 1 })]);
    node2 = 'valid';
    for (let i = 0; i < 3; i++) await feed.state();
    node2 = 'corrupted';
    for (let i = 0; i < 3; i++) await feed.state();
    expect(audit.records.map((r) => [r.details?.['status'], r.details?.['previous']])).toEqual([
      ['corrupted', 'clean'],
      ['clean', 'corrupted'],
      ['corrupted', 'clean'],
    ]);
    // A node that does not answer says nothing either way.
    node2 = 'unreachable';
    await feed.state();
    expect(audit.records).toHaveLength(3);
  });

  it('findings: a changed status against the last record of its node and key, unreachable nodes ignored', () => {
    const key = (statuses: Record<string, string>): KeyView => ({ keyId: 'k', threshold: 2, total: 3, version: 1, available: 2, quorumMargin: 0, usable: true, silent: 0, nodes: Object.entries(statuses).map(([nodeId, status]) => ({ nodeId, status })) });
    const rec = (status: string, time: string, seq = 1): AuditRecord => ({ stream: 'reconstruct#i', seq, time, prevHash: '', hash: `h${seq}`, actor: 'signer:dashboard', action: FINDING_ACTION, keyId: 'k', outcome: 'failure', details: { nodeId: 'node2', status } });
    expect(changedFindings([key({ node1: 'valid', node2: 'corrupted', node3: 'timeout' })], [])).toEqual([{ finding: { nodeId: 'node2', keyId: 'k', status: 'corrupted', version: 1 } }]);
    const last = rec('corrupted', '2026-01-01T00:00:02Z', 2);
    expect(changedFindings([key({ node2: 'corrupted' })], [rec('clean', '2026-01-01T00:00:01Z'), last])).toEqual([]);
    expect(changedFindings([key({ node2: 'valid' })], [last])).toEqual([{ finding: { nodeId: 'node2', keyId: 'k', status: 'clean', version: 1 }, previous: last }]);
    expect(securityOf([last])).toEqual([expect.objectContaining({ kind: 'tamper', nodeId: 'node2', keyId: 'k', count: 1 })]);
    expect(securityOf([rec('clean', '2026-01-01T00:00:03Z', 3)])).toEqual([]);
  });
});

it('KeyBeingCreatedError is a 409 with a whole-second Retry-After of at least 1', () => {
  expect(new KeyBeingCreatedError('k', 0.2)).toMatchObject({ status: 409, code: 'key_being_created', retryAfterS: 1 });
  expect(new KeyBeingCreatedError('k', 29.1).retryAfterS).toBe(30);
});
