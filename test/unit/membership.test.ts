/**
 * Membership (lib/federation/membership.ts, lib/node/membership.ts, lib/coordinator/membership.ts)
 * and run-time secrets (lib/aws/runtime-settings.ts), with in-memory fakes: the rules every version keeps,
 * who may sign, what a node refuses, and how the coordinator decides which version to believe.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { generateX25519 } from '../../lib/crypto/seal';
import { toB64 } from '../../lib/encoding';
import {
  checkSuccession,
  firstMembership,
  fingerprint,
  membershipDigest,
  membershipSignedBy,
  signIdentity,
  signMembership,
  verifyIdentity,
  withNode,
  withoutNode,
  type SignedMembership,
} from '../../lib/federation/membership';
import { NodeAccess } from '../../lib/node/access';
import { NodeMembership } from '../../lib/node/membership';
import { MembershipView } from '../../lib/coordinator/membership';
import type { NodeClient } from '../../lib/coordinator/node-client';
import { loadSecrets, forgetSecrets } from '../../lib/aws/runtime-settings';
import { MemoryAudit, MemoryReplay, MemoryStore } from '../support/fakes';

function node(id: string, endpoint = `http://127.0.0.1/${id}`) {
  const sk = generateSigningKey();
  const x = generateX25519();
  const identity = signIdentity({ nodeId: id, endpoint, signingPublic: toB64(sk.publicKey), x25519Public: toB64(x.publicKey), softwareVersion: '0.1.0', issuedAt: new Date().toISOString() }, sk.privateKey);
  return { id, sk, x, identity };
}

const admin = generateSigningKey();
const nodes = ['node1', 'node2', 'node3'].map((id) => node(id));
const v1 = firstMembership(nodes.map((n) => n.identity), 2);
const signedV1 = signMembership(v1, 'admin', admin.privateKey);

describe('identity and membership documents', () => {
  it('checks a node\'s self-signed identity, and refuses one changed after signing', () => {
    expect(verifyIdentity(nodes[0]!.identity).nodeId).toBe('node1');
    expect(() => verifyIdentity({ ...nodes[0]!.identity, endpoint: 'http://evil.example' })).toThrow(/not signed by its own key/);
    expect(() => verifyIdentity({ ...nodes[0]!.identity, signingPublic: nodes[1]!.identity.signingPublic })).toThrow(/not signed/);
    expect(() => verifyIdentity({ hello: 1 })).toThrow(/not a node identity document/);
    expect(fingerprint(nodes[0]!.identity.signingPublic, nodes[0]!.identity.x25519Public)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('gives indices in order, never reuses one, and keeps a member\'s index and keys', () => {
    expect(v1.nodes.map((n) => [n.id, n.index])).toEqual([['node1', 1], ['node2', 2], ['node3', 3]]);
    const n4 = node('node4');
    const v2 = withNode(v1, n4.identity);
    expect(v2).toMatchObject({ version: 2, nextIndex: 5, previous: membershipDigest(v1) });
    expect(v2.nodes.at(-1)).toMatchObject({ id: 'node4', index: 4 });
    const v3 = withoutNode(v2, 'node1');
    expect(v3.nodes.map((n) => n.id)).toEqual(['node2', 'node3', 'node4']);
    // node1 back under the same id is a new member with a new index: its old index is never handed out again.
    const v4 = withNode(v3, node('node1').identity);
    expect(v4.nodes.find((n) => n.id === 'node1')!.index).toBe(5);
    expect(() => checkSuccession(v2, { ...v3, version: 2 })).toThrow(/not newer/);
    expect(() => checkSuccession(v1, { ...v2, nodes: v2.nodes.map((n) => (n.id === 'node2' ? { ...n, index: 9 } : n)), nextIndex: 10 })).toThrow(/changes its index or keys/);
    expect(() => checkSuccession(v2, { ...withoutNode(v2, 'node4'), nodes: [...v1.nodes.slice(0, 2), { ...v2.nodes[3]!, id: 'node9', index: 3 }] })).toThrow(/unique|reuses/);
    expect(() => withoutNode(withoutNode(v1, 'node1'), 'node2')).toThrow(/at least two/);
    expect(withoutNode(firstMembership(nodes.map((n) => n.identity), 3), 'node1').threshold).toBe(2);
  });

  it('binds the signer\'s name and the whole document into the signature', () => {
    expect(membershipSignedBy(signedV1, toB64(admin.publicKey))).toBe(true);
    expect(membershipSignedBy({ ...signedV1, signer: 'other' }, toB64(admin.publicKey))).toBe(false);
    expect(membershipSignedBy({ ...signedV1, document: { ...v1, threshold: 3 } }, toB64(admin.publicKey))).toBe(false);
  });
});

describe('a node holding the membership', () => {
  const setup = () => {
    const store = new MemoryStore();
    const audit = new MemoryAudit();
    const access = new NodeAccess({ nodeId: 'node2', wrapKey: new Uint8Array(32).fill(7), store, replay: new MemoryReplay(), bootstrapAdmin: admin.publicKey, maxSkewS: 60 });
    const me = nodes[1]!.identity;
    const m = new NodeMembership({ nodeId: 'node2', signingPublic: me.signingPublic, x25519Public: me.x25519Public, access, audit, stream: 'node#node2', cacheMs: 0 });
    return { store, audit, access, m };
  };

  it('stores a document an administrator signed, audited first, and learns its own index from it', async () => {
    const { m, audit } = setup();
    expect(await m.current()).toBeNull();
    expect(await m.update(signedV1, 'coordinator')).toEqual({ nodeId: 'node2', version: 1, member: true });
    expect(m.me((await m.current())!.document)).toMatchObject({ id: 'node2', index: 2 });
    expect(audit.records.map((r) => r.action)).toEqual(['membership.update']);
  });

  it('refuses a document signed by anyone but an active administrator of its own registry', async () => {
    const { m, access } = setup();
    const mallory = generateSigningKey();
    await expect(m.update(signMembership(v1, 'admin', mallory.privateKey), 'c')).rejects.toMatchObject({ code: 'membership_unsigned' });
    await access.putClient({ name: 'mallory', publicKey: toB64(mallory.publicKey), roles: [], status: 'active' });
    await expect(m.update(signMembership(v1, 'mallory', mallory.privateKey), 'c')).rejects.toMatchObject({ code: 'membership_unsigned' });
    await access.putClient({ name: 'ops', publicKey: toB64(mallory.publicKey), roles: ['admin'], status: 'disabled' });
    await expect(m.update(signMembership(v1, 'ops', mallory.privateKey), 'c')).rejects.toMatchObject({ code: 'membership_unsigned' });
  });

  it('refuses an older version, and a document that lists it with keys that are not its own', async () => {
    const { m } = setup();
    await m.update(signedV1, 'c');
    await expect(m.update(signMembership({ ...v1, issuedAt: 'x' }, 'admin', admin.privateKey), 'c')).rejects.toMatchObject({ code: 'membership_stale' });
    const impostor = node('node2');
    const v2 = { ...withoutNode(withNode(v1, node('node4').identity), 'node2') };
    const withImpostor = withNode(v2, impostor.identity);
    // A fresh node holding nothing yet: the document names "node2" with someone else's keys.
    const fresh = setup();
    await expect(fresh.m.update(signMembership(withImpostor, 'admin', admin.privateKey), 'c')).rejects.toMatchObject({ code: 'wrong_identity' });
  });

  it('treats a stored document it cannot open, or whose signer is no longer an administrator, as corrupted', async () => {
    const { m, store } = setup();
    await m.update(signedV1, 'c');
    const box = JSON.parse(store.docs.get('federation/membership')!);
    store.docs.set('federation/membership', JSON.stringify({ ...box, tag: Buffer.alloc(16).toString('base64') }));
    await expect(m.current(true)).rejects.toMatchObject({ code: 'fragment_corrupted' });
    const fresh = setup();
    const ops = generateSigningKey();
    await fresh.access.putClient({ name: 'ops', publicKey: toB64(ops.publicKey), roles: ['admin'], status: 'active' });
    await fresh.m.update(signMembership(v1, 'ops', ops.privateKey), 'c');
    await fresh.access.putClient({ name: 'ops', publicKey: toB64(ops.publicKey), roles: ['admin'], status: 'disabled' });
    await expect(fresh.m.current(true)).rejects.toMatchObject({ code: 'fragment_corrupted' });
  });
});

describe('the coordinator learning the membership', () => {
  const view = (held: Record<string, SignedMembership | null | Error>, seeds = ['node1', 'node2', 'node3']) => {
    const client = {
      call: async (n: { id: string }) => {
        const h = held[n.id];
        if (h instanceof Error) throw h;
        return { nodeId: n.id, membership: h ?? null };
      },
    } as unknown as NodeClient;
    return new MembershipView({ seeds: seeds.map((id) => ({ id, url: `http://127.0.0.1/${id}` })), client, cacheMs: 0 });
  };
  const v2 = withNode(v1, node('node4').identity);
  const signedV2 = signMembership(v2, 'admin', admin.privateKey);

  it('believes the newest version a threshold of its own members hold, and asks members it was not seeded with', async () => {
    const learned = await view({ node1: signedV2, node2: signedV2, node3: signedV1, node4: signedV2 }, ['node1']).current();
    expect(learned.signed.document.version).toBe(2);
    expect(learned.agreed.sort()).toEqual(['node1', 'node2', 'node4']);
  });

  it('outvotes a node whose copy was rolled back or edited, and refuses a version too few members hold', async () => {
    const learned = await view({ node1: signedV1, node2: signedV1, node3: new Error('fragment_corrupted') }).current();
    expect(learned.agreed).toEqual(['node1', 'node2']);
    // One member holding a newer version is not enough for it: the older one a threshold holds wins.
    expect((await view({ node1: signedV2, node2: signedV1, node3: signedV1 }).current()).signed.document.version).toBe(1);
    // A version held only by nodes it does not list does not count.
    const outsiders = signMembership({ ...v1, version: 7, nodes: v1.nodes.map((n) => ({ ...n, id: `x${n.id}` })) }, 'admin', admin.privateKey);
    expect((await view({ node1: outsiders, node2: signedV1, node3: signedV1 }).current()).signed.document.version).toBe(1);
  });

  it('says why when there is no membership, and keeps a recent one while the members cannot answer', async () => {
    await expect(view({ node1: null, node2: null, node3: null }).current()).rejects.toMatchObject({ code: 'quorum_not_reached' });
    const held: Record<string, SignedMembership | null | Error> = { node1: signedV1, node2: signedV1, node3: signedV1 };
    const v = view(held);
    await v.current();
    for (const id of Object.keys(held)) held[id] = new Error('busy');
    expect((await v.current()).signed.document.version).toBe(1);
    expect((await v.current(true)).signed.document.version).toBe(1);
  });
});

describe('run-time secrets', () => {
  afterEach(() => forgetSecrets());

  it('reads a secrets file, and Secrets Manager by id, once per instance', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'fedkms-sec-')), 's.json');
    writeFileSync(file, JSON.stringify({ wrapKey: 'a' }));
    expect(await loadSecrets({ AWS_REGION: 'us-east-1', file })).toEqual({ wrapKey: 'a' });
    const sm = mockClient(SecretsManagerClient);
    sm.on(GetSecretValueCommand, { SecretId: 'fedkms/dev/node1' }).resolves({ SecretString: JSON.stringify({ wrapKey: 'b' }) });
    const client = new SecretsManagerClient({ region: 'us-east-1' });
    expect(await loadSecrets({ AWS_REGION: 'us-east-1', secretId: 'fedkms/dev/node1' }, client)).toEqual({ wrapKey: 'b' });
    expect(await loadSecrets({ AWS_REGION: 'us-east-1', secretId: 'fedkms/dev/node1' }, client)).toEqual({ wrapKey: 'b' });
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    sm.restore();
  });

  it('fails as unavailable without naming any value, and tries again on the next request', async () => {
    const sm = mockClient(SecretsManagerClient);
    sm.on(GetSecretValueCommand).rejectsOnce(Object.assign(new Error('AccessDenied: secret value abc'), { name: 'AccessDeniedException' })).resolves({ SecretString: '{"k":"v"}' });
    const client = new SecretsManagerClient({ region: 'us-east-1' });
    const err = await loadSecrets({ AWS_REGION: 'us-east-1', secretId: 's' }, client).catch((e: Error) => e);
    expect(err).toMatchObject({ code: 'storage_unavailable', status: 503 });
    expect((err as Error).message).not.toContain('abc');
    expect(await loadSecrets({ AWS_REGION: 'us-east-1', secretId: 's' }, client)).toEqual({ k: 'v' });
    sm.restore();
  });
});
