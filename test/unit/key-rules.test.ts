/**
 * Issue 13, the key findings, as pure rules and as the node's gate applies them:
 *  - import: the client's signature covers a commitment to its secret (s·G of a scalar it
 *    chose, and the digest of the secret wrapped under it); a substituted body no longer
 *    verifies, and a dealt key that is not the committed one is refused;
 *  - creation: threshold and node set as the client signed them (explicit defaults), and the
 *    federation's minimum;
 *  - one key, one purpose; break-glass lifecycle for federation administrators.
 */
import { randomUUID } from 'node:crypto';
import { signClientRequest, signedBody, verifyClientRequest, withImportScalar, type ClientEnvelope, type ClientRequest } from '../../lib/crypto/client-auth';
import { dealKey, groupPublicKey, identifierFor, importCommitment, parseScalar, randomScalarHex, unwrapSecret, combineShares, wrappedDigest } from '../../lib/crypto/shares';
import { assertPolicyPurpose, assertPurpose, defaultPolicy, purposeOf } from '../../lib/access/policy';
import { NodeAccess } from '../../lib/node/access';
import { ClientGate, DEFAULT_RULES, type CreateShape } from '../../lib/node/gate';
import type { KeyDescriptor } from '../../lib/node/fragment';
import { toB64 } from '../../lib/encoding';
import { identity, type Identity } from '../support/identities';
import { MemoryReplay, MemoryStore } from '../support/fakes';
import { randomBytes } from 'node:crypto';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { minimumOf, DEFAULT_MINIMUM } = require('../../deploy/settings.cjs') as { minimumOf: (c: object, f: string) => { minThreshold: number; minNodes: number }; DEFAULT_MINIMUM: object };

const outcome = async (fn: () => Promise<unknown>) => {
  try {
    await fn();
    return { code: 'ok' };
  } catch (e) {
    const err = e as { code?: string; status?: number };
    return { code: err.code, status: err.status };
  }
};

describe('import commitment (lib/crypto/client-auth.ts, lib/crypto/shares.ts)', () => {
  it('the SDK adds a fresh scalar to an import, and only to an import', () => {
    const a = withImportScalar('POST', '/keys', { keyId: 'k', secretHex: 'aa' }) as Record<string, string>;
    const b = withImportScalar('POST', '/keys', { keyId: 'k', secretHex: 'aa' }) as Record<string, string>;
    expect(parseScalar(a['scalarHex'])).toBeDefined();
    expect(a['scalarHex']).not.toBe(b['scalarHex']);
    expect(withImportScalar('POST', '/keys', { keyId: 'k', type: 'ed25519' })).toEqual({ keyId: 'k', type: 'ed25519' });
    expect(withImportScalar('POST', '/keys/k/sign', { secretHex: 'aa' })).toEqual({ secretHex: 'aa' });
  });

  it('the signed body withholds secret and scalar and commits to both; another secret changes it', () => {
    const scalarHex = randomScalarHex();
    const raw = JSON.stringify({ keyId: 'k', secretHex: 'a94f3d82c1b7e6f9', scalarHex });
    const signed = JSON.parse(signedBody('POST', '/keys', raw));
    expect(signed).toMatchObject({ keyId: 'k', secretHex: 'withheld', scalarHex: 'withheld' });
    expect(JSON.stringify(signed)).not.toContain('a94f3d82c1b7e6f9');
    expect(JSON.stringify(signed)).not.toContain(scalarHex);
    expect(signed.commitment).toEqual(importCommitment('k', parseScalar(scalarHex)!, Buffer.from('a94f3d82c1b7e6f9', 'hex')));
    // A relay that substitutes the secret (or the scalar, or the key id) changes the signed body.
    for (const altered of [{ keyId: 'k', secretHex: 'c0ffee', scalarHex }, { keyId: 'k', secretHex: 'a94f3d82c1b7e6f9', scalarHex: randomScalarHex() }, { keyId: 'k2', secretHex: 'a94f3d82c1b7e6f9', scalarHex }]) {
      expect(signedBody('POST', '/keys', JSON.stringify(altered))).not.toBe(signedBody('POST', '/keys', raw));
    }
    // A client signature over the honest body does not verify over a substituted one.
    const id = identity('alice');
    const req: ClientRequest = { client: 'alice', method: 'POST', path: '/keys', query: {}, body: signedBody('POST', '/keys', raw), timestamp: String(Date.now()), requestId: randomUUID() };
    const signature = signClientRequest(id.sk, req);
    const swapped = { ...req, body: signedBody('POST', '/keys', JSON.stringify({ keyId: 'k', secretHex: 'c0ffee', scalarHex })), signature };
    expect(verifyClientRequest(id.pk, { ...req, signature })).toBe(true);
    expect(verifyClientRequest(id.pk, swapped)).toBe(false);
  });

  it('a deal with the client scalar matches the commitment, and still reconstructs', () => {
    const scalarHex = randomScalarHex();
    const secret = Buffer.from('super secret');
    const c = importCommitment('k', parseScalar(scalarHex)!, secret);
    const dealt = dealKey({ keyId: 'k', threshold: 2, identifiers: [1, 2, 3].map(identifierFor), secret: new Uint8Array(secret), scalar: parseScalar(scalarHex)! });
    expect(groupPublicKey(dealt.publicPackage)).toBe(c.groupKey);
    expect(wrappedDigest(dealt.wrapped)).toBe(c.wrapped);
    const s = combineShares(dealt.publicPackage, dealt.shares.slice(0, 2));
    expect(Buffer.from(unwrapSecret('k', s, dealt.wrapped)).toString()).toBe('super secret');
  });

  it('refuses non-canonical or zero scalars', () => {
    expect(parseScalar('00'.repeat(32))).toBeUndefined();
    expect(parseScalar('ff'.repeat(32))).toBeUndefined();
    expect(parseScalar('AB'.repeat(32))).toBeUndefined();
  });
});

describe('one key, one purpose (lib/access/policy.ts)', () => {
  it('a key type has one purpose; defaults grant only it', () => {
    expect([purposeOf('secret'), purposeOf('ed25519'), purposeOf('encrypt')]).toEqual(['reconstruct', 'sign', 'decrypt']);
    expect(defaultPolicy('carl', {}, 'secret')).toMatchObject({ sign: [], decrypt: [], reconstruct: ['client:carl', 'role:admin'] });
    expect(defaultPolicy('carl', {}, 'ed25519')).toMatchObject({ sign: ['client:carl', 'role:admin'], decrypt: [], reconstruct: [] });
  });

  it('a policy granting another purpose is refused; use outside the purpose is refused', () => {
    expect(() => assertPolicyPurpose({ sign: ['client:a'] }, 'secret', 'k')).toThrow(expect.objectContaining({ code: 'policy_purpose_mismatch' }));
    expect(() => assertPolicyPurpose({ reconstruct: ['client:a'] }, 'ed25519', 'k')).toThrow(expect.objectContaining({ code: 'policy_purpose_mismatch' }));
    expect(() => assertPolicyPurpose({ reconstruct: ['client:a'], sign: [] }, 'secret', 'k')).not.toThrow();
    expect(() => assertPurpose('secret', 'sign', 'k')).toThrow(expect.objectContaining({ code: 'key_not_signing', status: 409 }));
    expect(() => assertPurpose('ed25519', 'reconstruct', 'k')).toThrow(expect.objectContaining({ code: 'key_not_exportable' }));
    expect(() => assertPurpose('ed25519', 'sign', 'k')).not.toThrow();
  });
});

describe('federation minimum (deploy/settings.cjs)', () => {
  it('defaults to 2-of-3 and validates operator values', () => {
    expect(DEFAULT_MINIMUM).toEqual({ minThreshold: 2, minNodes: 3 });
    expect(DEFAULT_RULES).toEqual({ minThreshold: 2, minNodes: 3 });
    expect(minimumOf({}, 'f')).toEqual({ minThreshold: 2, minNodes: 3 });
    expect(minimumOf({ minThreshold: 3, minNodes: 5 }, 'f')).toEqual({ minThreshold: 3, minNodes: 5 });
    expect(() => minimumOf({ minThreshold: 1 }, 'f')).toThrow(/minThreshold/);
    expect(() => minimumOf({ minThreshold: 4, minNodes: 3 }, 'f')).toThrow(/exceed/);
  });
});

describe('ClientGate: creation shape, import commitment, break-glass', () => {
  const carl = identity('carl');
  const admin = identity('root');
  const NODES = ['node1', 'node2', 'node3'];
  const defaults = { threshold: 2, nodeIds: NODES };

  async function setup() {
    const store = new MemoryStore();
    const replay = new MemoryReplay();
    const access = new NodeAccess({ nodeId: 'node1', wrapKey: new Uint8Array(randomBytes(32)), store, replay, maxSkewS: 60 });
    await access.putClient({ name: carl.name, publicKey: toB64(carl.pk), roles: ['key-creator'], status: 'active' });
    await access.putClient({ name: admin.name, publicKey: toB64(admin.pk), roles: ['admin'], status: 'active' });
    const gate = new ClientGate(access, async () => undefined, { claims: { scope: 'node1', guard: replay } });
    return { access, gate };
  }
  const env = (id: Identity, method: string, path: string, raw: string): ClientEnvelope => {
    const r: ClientRequest = { client: id.name, method, path, query: {}, body: signedBody(method, path, raw), timestamp: String(Date.now()), requestId: randomUUID() };
    return { ...r, signature: signClientRequest(id.sk, r) };
  };
  const shape = (threshold: number, nodeIds: string[], descriptor?: KeyDescriptor): CreateShape => ({ threshold, nodeIds, defaults, ...(descriptor ? { descriptor } : {}) });

  it('DKG: the threshold and node set must be what the client signed, or the defaults', async () => {
    const { gate } = await setup();
    const asked3 = () => env(carl, 'POST', '/keys', JSON.stringify({ keyId: 'k', type: 'ed25519', threshold: 3 }));
    expect(await outcome(() => gate.create(asked3(), 'k', 'ed25519', 'POST /dkg/round1', shape(2, NODES)))).toEqual({ code: 'client_request_mismatch', status: 403 });
    const plain = () => env(carl, 'POST', '/keys', JSON.stringify({ keyId: 'k', type: 'ed25519' }));
    expect(await outcome(() => gate.create(plain(), 'k', 'ed25519', 'POST /dkg/round1', shape(2, ['node1', 'node2', 'node4'])))).toEqual({ code: 'client_request_mismatch', status: 403 });
    expect(await outcome(() => gate.create(asked3(), 'k', 'ed25519', 'POST /dkg/round1', shape(3, NODES)))).toEqual({ code: 'ok' });
  });

  it('refuses a shape below the federation minimum even when the client asked for it', async () => {
    const { gate } = await setup();
    const e = env(carl, 'POST', '/keys', JSON.stringify({ keyId: 'k', type: 'ed25519', nodes: ['node1', 'node2'] }));
    expect(await outcome(() => gate.create(e, 'k', 'ed25519', 'POST /dkg/round1', shape(2, ['node1', 'node2'])))).toEqual({ code: 'below_federation_minimum', status: 403 });
  });

  it('import: a dealt key must be the committed one; an import without commitment is refused', async () => {
    const { gate } = await setup();
    const scalarHex = randomScalarHex();
    const ids = NODES.map((_, i) => identifierFor(i + 1));
    const descriptorOf = (secret: string, scalar?: string): KeyDescriptor => {
      const d = dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: Buffer.from(secret, 'hex'), ...(scalar ? { scalar: parseScalar(scalar)! } : {}) });
      return { keyId: 'k', version: 1, type: 'secret', origin: 'import', state: 'active', createdAt: new Date().toISOString(), publicPackage: d.publicPackage, participants: NODES.map((nodeId, i) => ({ nodeId, identifier: ids[i]! })), wrapped: d.wrapped };
    };
    const honest = () => env(carl, 'POST', '/keys', JSON.stringify({ keyId: 'k', secretHex: 'a94f', scalarHex }));
    expect(await outcome(() => gate.create(honest(), 'k', 'secret', 'PUT /fragment', shape(2, NODES, descriptorOf('c0ffee', scalarHex))))).toEqual({ code: 'import_commitment_mismatch', status: 403 });
    expect(await outcome(() => gate.create(honest(), 'k', 'secret', 'PUT /fragment', shape(2, NODES, descriptorOf('a94f'))))).toEqual({ code: 'import_commitment_mismatch', status: 403 });
    const legacy = env(carl, 'POST', '/keys', JSON.stringify({ keyId: 'k', secretHex: 'a94f' }));
    expect(await outcome(() => gate.create(legacy, 'k', 'secret', 'PUT /fragment', shape(2, NODES, descriptorOf('a94f'))))).toEqual({ code: 'import_commitment_required', status: 403 });
    expect(await outcome(() => gate.create(honest(), 'k', 'secret', 'PUT /fragment', shape(2, NODES, descriptorOf('a94f', scalarHex))))).toEqual({ code: 'ok' });
  });

  it('break-glass: a federation administrator may disable or destroy a key whose policy shuts it out, never re-activate it', async () => {
    const { gate, access } = await setup();
    await access.putControl(access.newControl('k', 'carl', { admin: [] }, 'active', 'secret'));
    const state = (s: string) => env(admin, 'POST', '/keys/k/state', JSON.stringify({ state: s }));
    expect(await gate.transition(state('disabled'), 'k', 'disabled')).toMatchObject({ breakGlass: true, actor: 'client:root' });
    expect(await gate.transition(state('destroyed'), 'k', 'destroyed')).toMatchObject({ breakGlass: true });
    expect(await outcome(() => gate.transition(state('active'), 'k', 'active'))).toEqual({ code: 'not_authorized', status: 403 });
    // The key's creator, not an administrator of it any more, gets nothing.
    expect(await outcome(() => gate.transition(env(carl, 'POST', '/keys/k/state', JSON.stringify({ state: 'disabled' })), 'k', 'disabled'))).toEqual({ code: 'not_authorized', status: 403 });
  });
});
