/**
 * DKG 3-of-5, refresh and reshare on a 5-node local federation: the group key
 * never changes, old and new shares do not combine, a node that lost its bucket
 * is given a new share without the key being assembled, and imported keys sign.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { ed25519 } from '@noble/curves/ed25519.js';
import type { LocalStack } from '../../tools/local-stack';
import { aesGcmOpen } from '../../lib/crypto/aead';
import { combineShares, CombineError, type PublicPackage } from '../../lib/crypto/shares';
import { fromB64, fromHex, toB64 } from '../../lib/encoding';
import { atRestAad } from '../../lib/node/service';
import { call, readObject, statusOf, testStack } from '../support/stack';

let stack: LocalStack;
const NODES = ['node1', 'node2', 'node3', 'node4', 'node5'];

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-5-'));
  const configFile = path.join(dir, 'five.json');
  writeFileSync(configFile, JSON.stringify({ threshold: 3, nodes: NODES.map((id) => ({ id })) }));
  stack = await testStack({ configFile });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

const signOk = async (keyId: string, msg: Uint8Array, publicKey: string) => {
  const r = await call(stack, 'POST', `/keys/${keyId}/sign`, { body: { message: toB64(msg) } });
  expect(r.status).toBe(200);
  expect(ed25519.verify(fromHex(r.body.signature.hex), msg, fromHex(publicKey))).toBe(true);
  return r.body;
};

/** A node's share of one version, read straight from its bucket with its wrapping key (test only). */
async function shareOf(nodeId: string, keyId: string, version: number) {
  const obj = JSON.parse(await readObject(stack, nodeId, `keys/${keyId}/v${version}.json`));
  const share = aesGcmOpen(fromB64(stack.secrets[nodeId]!['wrapKey']!), obj.share, atRestAad(nodeId, obj.identifier, obj.descriptor));
  return { identifier: obj.identifier as string, signingShare: share, pub: obj.descriptor.publicPackage as PublicPackage };
}

describe('DKG 3-of-5 and reshare', () => {
  let publicKey: string;

  it('runs DKG across five node Lambdas and signs', async () => {
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'wide', type: 'ed25519' } });
    expect(r.status).toBe(201);
    expect(r.body.key).toMatchObject({ threshold: 3, total: 5, version: 1 });
    publicKey = r.body.key.groupPublicKey;
    const s = await signOk('wide', new Uint8Array([1]), publicKey);
    expect(s.signers).toHaveLength(3);
  });

  it('reshares 3-of-5 down to 2-of-3 and back up to 3-of-5, keeping the group key', async () => {
    const down = await call(stack, 'POST', '/keys/wide/reshare', { body: { threshold: 2, nodes: ['node1', 'node2', 'node3'] } });
    expect(down.status).toBe(200);
    expect(down.body.key).toMatchObject({ version: 2, threshold: 2, total: 3, groupPublicKey: publicKey });
    const s = await signOk('wide', new Uint8Array([2]), publicKey);
    expect(s.signers).toHaveLength(2);
    expect((await call(stack, 'GET', '/keys/wide')).body.key.participants.map((p: { nodeId: string }) => p.nodeId)).toEqual(['node1', 'node2', 'node3']);

    const up = await call(stack, 'POST', '/keys/wide/reshare', { body: { threshold: 3, nodes: NODES } });
    expect(up.status).toBe(200);
    expect(up.body.key).toMatchObject({ version: 3, threshold: 3, total: 5, groupPublicKey: publicKey });
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node2', { kind: 'down' });
    const s3 = await signOk('wide', new Uint8Array([3]), publicKey);
    expect(s3.signers.sort()).toEqual(['node3', 'node4', 'node5']);
  });

  it('refuses a refresh that would change the threshold', async () => {
    const r = await call(stack, 'POST', '/keys/wide/refresh', { body: { threshold: 2 } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('use_reshare');
  });
});

describe('refresh of an imported key', () => {
  const SECRET = 'A94F3D82C1B7E6F9';
  let publicKey: string;

  // Issue 13, one key, one purpose: an imported key is exportable and never signs (it used to sign here).
  it('an imported (dealer) key is exportable only: it does not sign', async () => {
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'imported', secretHex: SECRET, policy: { serverSideCombine: true } } });
    expect(r.status).toBe(201);
    publicKey = r.body.key.groupPublicKey;
    const s = await call(stack, 'POST', '/keys/imported/sign', { body: { message: toB64(new TextEncoder().encode('hello')) } });
    // Refused before any share: by the purpose check (409) or, first, by the permission check (no policy may grant sign on it).
    expect([[409, 'key_not_signing'], [403, 'not_authorized']]).toContainEqual([s.status, s.body.error.code]);
  });

  it('refresh: same group key and secret, old and new shares do not combine, old version retired', async () => {
    const old1 = await shareOf('node1', 'imported', 1);
    const r = await call(stack, 'POST', '/keys/imported/refresh', { body: {} });
    expect(r.status).toBe(200);
    expect(r.body.key).toMatchObject({ version: 2, threshold: 3, groupPublicKey: publicKey });
    const new2 = await shareOf('node2', 'imported', 2);
    const new3 = await shareOf('node3', 'imported', 2);
    // Mixed versions fail the group-key check; a full new set works.
    expect(() => combineShares(new2.pub, [old1, new2, new3])).toThrow(CombineError);
    const new1 = await shareOf('node1', 'imported', 2);
    expect(() => combineShares(new2.pub, [new1, new2, new3])).not.toThrow();
    expect(r.body.retired.every((x: { status: string }) => x.status === 'valid')).toBe(true);
    await expect(readObject(stack, 'node1', 'keys/imported/v1.json')).rejects.toThrow();
    const back = await call(stack, 'POST', '/keys/imported/reconstruct');
    expect(back.body.secret.hex.toUpperCase()).toBe(SECRET);
  });

  it('a node that lost its bucket is given a new share without the key being assembled', async () => {
    await stack.s3('node4').send(new DeleteObjectCommand({ Bucket: stack.bucketOf('node4'), Key: 'keys/imported/v2.json' }));
    const before = await call(stack, 'GET', '/keys/imported');
    expect(statusOf(before.body, 'node4')).toBe('not_found');
    const r = await call(stack, 'POST', '/keys/imported/reshare', { body: {} });
    expect(r.status).toBe(200);
    expect(r.body.dealers).not.toContain('node4');
    const after = await call(stack, 'GET', '/keys/imported');
    expect(after.body.availability).toEqual({ available: 5, quorumMargin: 2 });
    // node4 must take part: leave only three nodes up, node4 among them.
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node2', { kind: 'down' });
    const back = await call(stack, 'POST', '/keys/imported/reconstruct');
    expect(back.body.secret.hex.toUpperCase()).toBe(SECRET);
    expect(statusOf(back.body, 'node4')).toBe('valid');
  });
});
