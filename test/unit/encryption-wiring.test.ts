/**
 * Threshold encryption wired into the nodes (issue #14), unit level over in-memory fakes:
 * the `decrypt` permission and lifecycle, the node gate's checks of the relayed client
 * request, the node's decrypt (check, prove, audit before release, seal), and the SDK's
 * data-key file format and CLI context parsing. No network, no AWS.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { assertUsable, defaultPolicy, requirePermission, type Policy } from '../../lib/access/policy';
import { decodeEnvelope, encodeEnvelope, signClientRequest, type ClientEnvelope, type ClientRequest } from '../../lib/crypto/client-auth';
import { generateX25519, open } from '../../lib/crypto/seal';
import { dealKey, identifierFor } from '../../lib/crypto/shares';
import { ciphertextDigest, decrypt as thresholdDecrypt, encrypt, encryptionKeyFromPublicPackage, partialDecrypt, verifyPartial, type PartialDecryption } from '../../lib/crypto/threshold-decrypt';
import { toB64 } from '../../lib/encoding';
import { FedkmsError } from '../../lib/errors';
import { NodeAccess, type KeyControl } from '../../lib/node/access';
import { NodeDecrypt, partialAad } from '../../lib/node/decrypt';
import type { KeyDescriptor } from '../../lib/node/fragment';
import { ClientGate } from '../../lib/node/gate';
import { NodeService } from '../../lib/node/service';
import { parseContext } from '../../scripts/cli/encrypt';
import { identity, type Identity } from '../support/identities';
import { MemoryAudit, MemoryReplay, MemoryStore } from '../support/fakes';

async function code(f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (e instanceof FedkmsError) return e.code;
    throw e;
  }
}

function envelope(id: Identity, req: { method: string; path: string; body?: unknown }): ClientEnvelope {
  const r: ClientRequest = { client: id.name, method: req.method, path: req.path, query: {}, body: req.body === undefined ? '' : JSON.stringify(req.body), timestamp: String(Date.now()), requestId: randomUUID() };
  return decodeEnvelope(encodeEnvelope({ ...r, signature: signClientRequest(id.sk, r) }));
}

describe('the decrypt permission', () => {
  const alice = { name: 'alice', roles: [] as string[] };
  const admin = { name: 'root', roles: ['admin'] };
  const bob = { name: 'bob', roles: [] as string[] };

  it('defaults to the owner and administrators, like reconstruct', async () => {
    const p = defaultPolicy('alice');
    expect(p.decrypt).toEqual(['client:alice', 'role:admin']);
    expect(await code(() => requirePermission(p, alice, 'decrypt', 'k'))).toBe('ok');
    expect(await code(() => requirePermission(p, admin, 'decrypt', 'k'))).toBe('ok');
    expect(await code(() => requirePermission(p, bob, 'decrypt', 'k'))).toBe('not_authorized');
    expect(defaultPolicy('alice', { decrypt: ['client:bob'] }).decrypt).toEqual(['client:bob']);
  });

  it('falls back to the reconstruct list in a policy written before decrypt existed', async () => {
    const { decrypt: _, ...old } = defaultPolicy('alice', { reconstruct: ['client:bob'] });
    void _;
    expect(await code(() => requirePermission(old as Policy, bob, 'decrypt', 'k'))).toBe('ok');
    expect(await code(() => requirePermission(old as Policy, alice, 'decrypt', 'k'))).toBe('not_authorized');
  });

  it('needs an active key', async () => {
    expect(await code(() => assertUsable('k', 'active', 'decrypt'))).toBe('ok');
    for (const s of ['pre-active', 'disabled', 'compromised'] as const) expect(await code(() => assertUsable('k', s, 'decrypt'))).toBe(`key_${s.replace('-', '_')}`);
    expect(await code(() => assertUsable('k', 'destroyed', 'decrypt'))).toBe('key_destroyed');
  });
});

/** One node with a dealt `encrypt` key stored, its gate and its decrypt service. */
async function encryptNode(type: KeyDescriptor['type'] = 'encrypt') {
  const store = new MemoryStore();
  const replay = new MemoryReplay();
  const audit = new MemoryAudit();
  const wrapKey = new Uint8Array(randomBytes(32));
  const access = new NodeAccess({ nodeId: 'node1', wrapKey, store, replay, maxSkewS: 60 });
  const ids = [1, 2, 3].map(identifierFor);
  const dealt = dealKey({ keyId: 'vault', threshold: 2, identifiers: ids, secret: new Uint8Array(32) });
  const d: KeyDescriptor = {
    keyId: 'vault',
    version: 1,
    type,
    origin: 'dkg',
    state: 'active',
    createdAt: new Date().toISOString(),
    publicPackage: dealt.publicPackage,
    participants: ids.map((identifier, i) => ({ nodeId: `node${i + 1}`, identifier })),
  };
  const me = { nodeId: 'node1', identifier: ids[0]!, wrapKey, x25519Private: generateX25519().privateKey, version: 'test' };
  const service = new NodeService(me, { store, audit });
  await service.storeShare(d, dealt.shares[0]!.signingShare, 'test');
  const gate = new ClientGate(access, async (keyId) => (await service.versionsOf(keyId)).at(-1), { claims: { scope: 'node1', guard: replay } });
  const alice = identity('alice');
  const bob = identity('bob');
  await access.putClient({ name: 'alice', publicKey: toB64(alice.pk), roles: [], status: 'active' });
  await access.putClient({ name: 'bob', publicKey: toB64(bob.pk), roles: [], status: 'active' });
  await access.putControl(access.newControl('vault', 'alice', undefined, 'active'));
  const key = encryptionKeyFromPublicPackage('vault', 1, d.publicPackage);
  return { access, audit, gate, service, decrypt: new NodeDecrypt(me, service, audit), key, dealt, alice, bob, d };
}

describe('ClientGate.decrypt', () => {
  const context = { app: 'payroll' };

  it('admits the exact request of a client the policy lets decrypt, and names it', async () => {
    const { gate, alice } = await encryptNode();
    const body = { ciphertext: 'AAAA', context, recipient: 'R' };
    const env = envelope(alice, { method: 'POST', path: '/keys/vault/decrypt', body });
    const g = await gate.decrypt(env, 'vault', body);
    expect(g).toMatchObject({ actor: 'client:alice', requestId: env.requestId });
  });

  it('refuses another ciphertext, context, recipient, key or route than the client asked for', async () => {
    const { gate, alice } = await encryptNode();
    const body = { ciphertext: 'AAAA', context, recipient: 'R' };
    const req = (b: unknown, p = '/keys/vault/decrypt') => envelope(alice, { method: 'POST', path: p, body: b });
    expect(await code(() => gate.decrypt(req(body), 'vault', { ...body, ciphertext: 'BBBB' }))).toBe('client_request_mismatch');
    expect(await code(() => gate.decrypt(req(body), 'vault', { ...body, context: { app: 'other' } }))).toBe('client_request_mismatch');
    expect(await code(() => gate.decrypt(req(body), 'vault', { ...body, recipient: 'X' }))).toBe('recipient_mismatch');
    expect(await code(() => gate.decrypt(req(body, '/keys/other/decrypt'), 'vault', body))).toBe('client_request_mismatch');
    expect(await code(() => gate.decrypt(req(body, '/keys/vault/reconstruct'), 'vault', body))).toBe('client_request_mismatch');
    expect(await code(() => gate.decrypt(undefined, 'vault', body))).toBe('client_auth_missing');
  });

  it('checks the policy and the lifecycle stored on this node', async () => {
    const { gate, access, alice, bob } = await encryptNode();
    const body = { ciphertext: 'AAAA', context, recipient: 'R' };
    expect(await code(() => gate.decrypt(envelope(bob, { method: 'POST', path: '/keys/vault/decrypt', body }), 'vault', body))).toBe('not_authorized');
    await access.putControl({ ...(await access.control('vault'))!, state: 'disabled' } satisfies KeyControl);
    expect(await code(() => gate.decrypt(envelope(alice, { method: 'POST', path: '/keys/vault/decrypt', body }), 'vault', body))).toBe('key_disabled');
  });
});

describe('ClientGate: re-encryption and data keys', () => {
  const context = { app: 'payroll' };

  it('a re-encryption is admitted only for the destination key and context the client signed, and only on the reencrypt route', async () => {
    const { gate, alice } = await encryptNode();
    const body = { ciphertext: 'AAAA', context, recipient: 'R', destinationKeyId: 'dest', destinationContext: { app: 'new' } };
    const req = (b: unknown, p = '/keys/vault/reencrypt') => envelope(alice, { method: 'POST', path: p, body: b });
    expect(await gate.decrypt(req(body), 'vault', body)).toMatchObject({ actor: 'client:alice', approvers: [] });
    expect(await code(() => gate.decrypt(req(body), 'vault', { ...body, destinationKeyId: 'elsewhere' }))).toBe('client_request_mismatch');
    expect(await code(() => gate.decrypt(req(body), 'vault', { ...body, destinationContext: { app: 'other' } }))).toBe('client_request_mismatch');
    // A plain decrypt request does not authorize a re-encryption, nor the other way round.
    expect(await code(() => gate.decrypt(req(body, '/keys/vault/decrypt'), 'vault', body))).toBe('client_request_mismatch');
    const plain = { ciphertext: 'AAAA', context, recipient: 'R' };
    expect(await code(() => gate.decrypt(req(plain), 'vault', plain))).toBe('client_request_mismatch');
  });

  it('a decrypt under a policy with approvals needs them (approvals_required)', async () => {
    const { gate, access, alice } = await encryptNode();
    const c = (await access.control('vault'))!;
    await access.putControl({ ...c, policy: { ...c.policy, approvals: { required: 1, approvers: ['role:approver'] } } });
    const body = { ciphertext: 'AAAA', context, recipient: 'R' };
    const env = envelope(alice, { method: 'POST', path: '/keys/vault/decrypt', body: { ...body, expiresAt: Date.now() + 60_000 } });
    expect(await code(() => gate.decrypt(env, 'vault', body))).toBe('approvals_required');
    // No approved request named at all: the same refusal, telling the client to open one.
    expect(await code(() => gate.decrypt(envelope(alice, { method: 'POST', path: '/keys/vault/decrypt', body }), 'vault', body))).toBe('approvals_required');
  });

  it('a data key needs the decrypt permission, the datakey route, and the context and recipient the client signed', async () => {
    const { gate, alice, bob } = await encryptNode();
    const body = { context, recipient: 'R' };
    const req = (who: Identity, b: unknown, p = '/keys/vault/datakey') => envelope(who, { method: 'POST', path: p, body: b });
    expect(await gate.datakey(req(alice, body), 'vault', body)).toMatchObject({ actor: 'client:alice' });
    expect(await code(() => gate.datakey(req(alice, body), 'vault', { ...body, context: { app: 'x' } }))).toBe('client_request_mismatch');
    expect(await code(() => gate.datakey(req(alice, body), 'vault', { ...body, recipient: 'X' }))).toBe('recipient_mismatch');
    expect(await code(() => gate.datakey(req(alice, body, '/keys/vault/decrypt'), 'vault', body))).toBe('client_request_mismatch');
    expect(await code(() => gate.datakey(req(bob, body), 'vault', body))).toBe('not_authorized');
  });
});

describe('ClientGate.create for encrypt keys', () => {
  it('admits a DKG round 1 for exactly the type the client asked, and never a dealt encrypt key', async () => {
    const { gate, access } = await encryptNode();
    const carl = identity('carl');
    await access.putClient({ name: 'carl', publicKey: toB64(carl.pk), roles: ['key-creator'], status: 'active' });
    const create = (body: unknown) => envelope(carl, { method: 'POST', path: '/keys', body });
    expect(await code(() => gate.create(create({ keyId: 'e1', type: 'encrypt' }), 'e1', 'encrypt', 'POST /dkg/round1'))).toBe('ok');
    expect(await code(() => gate.create(create({ keyId: 'e2', type: 'encrypt' }), 'e2', 'ed25519', 'POST /dkg/round1'))).toBe('client_request_mismatch');
    expect(await code(() => gate.create(create({ keyId: 'e3', type: 'ed25519' }), 'e3', 'encrypt', 'POST /dkg/round1'))).toBe('client_request_mismatch');
    expect(await code(() => gate.create(create({ keyId: 'e4' }), 'e4', 'encrypt', 'POST /dkg/round1'))).toBe('client_request_mismatch');
    // A coordinator dealing the key itself would know it: refused.
    expect(await code(() => gate.create(create({ keyId: 'e5', type: 'encrypt' }), 'e5', 'encrypt', 'PUT /fragment'))).toBe('client_request_mismatch');
  });
});

describe('NodeDecrypt', () => {
  const context = { app: 'payroll', tenant: 't-1' };

  it('answers a sealed, proven partial, audited with the context before release', async () => {
    const { decrypt, audit, key, dealt } = await encryptNode();
    const ct = encrypt(key, new TextEncoder().encode('hello'), context);
    const recipient = generateX25519();
    const req = { keyId: 'vault', ciphertext: toB64(ct), context, recipient: toB64(recipient.publicKey) };
    const a = await decrypt.decrypt(req, recipient.publicKey, 'client:alice', 'req-1');
    expect(a).toMatchObject({ nodeId: 'node1', keyId: 'vault', version: 1, threshold: 2 });
    const p = JSON.parse(new TextDecoder().decode(open(recipient.privateKey, a.sealed, partialAad('vault', 1, 'node1', a.identifier, ciphertextDigest(ct))))) as PartialDecryption;
    const request = { requester: req.recipient, requestId: 'req-1' };
    expect(verifyPartial(key, ct, request, p)).toBe(true);
    // Bound to the request: another request id or recipient does not verify.
    expect(verifyPartial(key, ct, { ...request, requestId: 'req-2' }, p)).toBe(false);
    // It combines with another share's partial into the plaintext.
    const p2 = partialDecrypt({ key, share: dealt.shares[1]!, envelope: ct, context, request });
    expect(new TextDecoder().decode(thresholdDecrypt({ key, envelope: ct, context, request, partials: [p, p2] }).plaintext)).toBe('hello');
    const rec = audit.records.find((r) => r.action === 'key.decrypt');
    expect(rec).toMatchObject({ actor: 'client:alice', keyId: 'vault', outcome: 'success' });
    expect(JSON.stringify(rec!.details)).toContain('t-1');
  });

  it('refuses a wrong context or an altered ciphertext (invalid_ciphertext), and audits the refusal', async () => {
    const { decrypt, audit, key } = await encryptNode();
    const ct = encrypt(key, new TextEncoder().encode('hello'), context);
    const r = generateX25519();
    const base = { keyId: 'vault', ciphertext: toB64(ct), context, recipient: toB64(r.publicKey) };
    expect(await code(() => decrypt.decrypt({ ...base, context: { app: 'x' } }, r.publicKey, 'client:alice', 'q'))).toBe('invalid_ciphertext');
    const bad = new Uint8Array(ct);
    bad[bad.length - 1]! ^= 1;
    expect(await code(() => decrypt.decrypt({ ...base, ciphertext: toB64(bad) }, r.publicKey, 'client:alice', 'q'))).toBe('invalid_ciphertext');
    expect(audit.records.filter((x) => x.action === 'key.decrypt').map((x) => x.outcome)).toEqual(['failure', 'failure']);
  });

  it('fails closed when the audit log is down: nothing is released', async () => {
    const { decrypt, audit, key } = await encryptNode();
    const ct = encrypt(key, new TextEncoder().encode('hello'), context);
    const r = generateX25519();
    audit.failing = true;
    expect(await code(() => decrypt.decrypt({ keyId: 'vault', ciphertext: toB64(ct), context, recipient: toB64(r.publicKey) }, r.publicKey, 'client:alice', 'q'))).toBe('audit_unavailable');
  });

  it('refuses keys that are not encryption keys', async () => {
    for (const type of ['ed25519', 'secret'] as const) {
      const { decrypt, key } = await encryptNode(type);
      const ct = encrypt(key, new TextEncoder().encode('hello'), context);
      const r = generateX25519();
      expect(await code(() => decrypt.decrypt({ keyId: 'vault', ciphertext: toB64(ct), context, recipient: toB64(r.publicKey) }, r.publicKey, 'client:alice', 'q'))).toBe('key_not_encryption');
    }
  });

  it('never releases an encrypt key as a fragment', async () => {
    const { service } = await encryptNode();
    expect(await code(() => service.fragment('vault', generateX25519().publicKey, 'client:alice'))).toBe('key_not_exportable');
  });
});

describe('CLI --context', () => {
  it('parses repeated KEY=VALUE (values may hold =) and refuses malformed or repeated keys', () => {
    expect(parseContext(['app=x', 'q=a=b'])).toEqual({ app: 'x', q: 'a=b' });
    expect(parseContext(undefined)).toEqual({});
    expect(() => parseContext(['novalue'])).toThrow(/KEY=VALUE/);
    expect(() => parseContext(['=x'])).toThrow(/KEY=VALUE/);
    expect(() => parseContext(['a=1', 'a=2'])).toThrow(/twice/);
  });
});
