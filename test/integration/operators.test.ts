/**
 * A federation of independent operators on the real local stack: every node and the
 * coordinator in their own processes with their own storage and secrets.
 * - a node's process is killed in the middle of a burst: operations succeed and name it;
 * - the coordinator learns a new member without a restart; a membership document that no
 *   administrator signed is refused, and so is one changed in one node's storage;
 * - one operator's whole account (data directory, storage, secret) gives no key, and t of
 *   them do (so the test can fail);
 * - node4 joins at run time, keys are reshared onto it, node1 retires: public keys stay the
 *   same, old shares do not combine with new ones, and every kind of operation still works.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { ed25519 } from '@noble/curves/ed25519.js';
import type { LocalStack } from '../../tools/local-stack';
import { aesGcmOpen } from '../../lib/crypto/aead';
import { combineShares, CombineError, type Share } from '../../lib/crypto/shares';
import { recoverSecret } from '../../lib/reconstruction';
import { fromB64, fromHex, toB64 } from '../../lib/encoding';
import { atRestAad } from '../../lib/node/service';
import { FedkmsClient } from '../../lib/client/api';
import { addNodes, listNodes, removeNode } from '../../lib/client/membership';
import { signMembership, withNode } from '../../lib/federation/membership';
import { call, newClient, reconstructEndToEnd, statusOf, testStack } from '../support/stack';

let stack: LocalStack;
let dir: string;
const SECRET = 'A94F3D82C1B7E6F9';

beforeAll(async () => {
  stack = await testStack();
  dir = path.dirname(stack.units.get('coordinator')!.spec.dir);
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'example', secretHex: SECRET, policy: { serverSideCombine: true } } })).status).toBe(201);
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'signer', type: 'ed25519' } })).status).toBe(201);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
});

const admin = () => new FedkmsClient(stack.url, stack.admin);
const signOk = async (keyId: string, text: string) => {
  const r = await call(stack, 'POST', `/keys/${keyId}/sign`, { body: { message: toB64(Buffer.from(text)) } });
  expect(r.status).toBe(200);
  expect(ed25519.verify(fromHex(r.body.signature.hex), Buffer.from(text), fromHex(r.body.publicKey))).toBe(true);
  return r.body as { publicKey: string; signature: { hex: string } };
};

/** Everything one operator's account holds: its secret file and every object of its own S3 server. */
async function account(id: string) {
  const secret = JSON.parse(readFileSync(path.join(dir, 'nodes', id, 'secrets.json'), 'utf8')) as Record<string, string>;
  const s3 = stack.s3(id);
  const objects: { key: string; body: string }[] = [];
  const list = await s3.send(new ListObjectsV2Command({ Bucket: stack.bucketOf(id) }));
  for (const o of list.Contents ?? []) objects.push({ key: o.Key!, body: await (await s3.send(new GetObjectCommand({ Bucket: stack.bucketOf(id), Key: o.Key! }))).Body!.transformToString('utf8') });
  const audit = await stack.dynamo(id).send(new ScanCommand({ TableName: stack.auditTableOf(id) }));
  return { id, secret, objects, audit: JSON.stringify(audit.Items ?? []) };
}

/** The shares an account can open with its own wrapping key, for one key version. */
function sharesOf(acct: Awaited<ReturnType<typeof account>>, keyId: string, version: number) {
  const obj = acct.objects.find((o) => o.key === `keys/${keyId}/v${version}.json`);
  if (!obj) return undefined;
  const parsed = JSON.parse(obj.body);
  const signingShare = aesGcmOpen(fromB64(acct.secret['wrapKey']!), parsed.share, atRestAad(acct.id, parsed.identifier, parsed.descriptor));
  return { share: { identifier: parsed.identifier, signingShare } as Share, descriptor: parsed.descriptor };
}

describe('separate processes', () => {
  it('runs every node and the coordinator in its own processes, with its own storage', () => {
    const units = [...stack.units.values()];
    expect(units.map((u) => u.name).sort()).toEqual(['coordinator', 'node1', 'node2', 'node3']);
    for (const key of ['offline', 'storage'] as const) expect(new Set(units.map((u) => u[key]!.pid)).size).toBe(units.length);
    expect(new Set(units.map((u) => u.s3Endpoint)).size).toBe(units.length);
    expect(new Set(units.map((u) => u.dynamoEndpoint)).size).toBe(units.length);
    expect(new Set(units.map((u) => u.spec.dir)).size).toBe(units.length);
  });

  it('keeps answering when a node\'s process is killed in the middle of a burst, and names it', async () => {
    try {
      const burst = Array.from({ length: 12 }, (_, i) => (i % 2 ? call(stack, 'POST', '/keys/example/reconstruct') : call(stack, 'POST', '/keys/signer/sign', { body: { message: toB64(Buffer.from(`m${i}`)) } })));
      await new Promise((r) => setTimeout(r, 150));
      await stack.crashNode('node2');
      const answers = await Promise.all(burst);
      // Every caller gets its answer (the bodies of any failure are shown).
      expect(answers.filter((a) => a.status !== 200).map((a) => a.text)).toEqual([]);
      const node2 = stack.units.get('node2')!.offline!;
      expect(node2.exitCode !== null || node2.signalCode !== null).toBe(true);
      const after = await call(stack, 'POST', '/keys/example/reconstruct');
      expect(after.status).toBe(200);
      expect(after.body.secret.hex.toUpperCase()).toBe(SECRET);
      expect(['unreachable', 'cancelled']).toContain(statusOf(after.body, 'node2'));
      const status = await call(stack, 'GET', '/status');
      expect(statusOf(status.body, 'node2')).toBe('unreachable');
      // Each operator's audit chain is gathered from that operator; the one that is down is named.
      const audit = await call(stack, 'GET', '/audit/verify');
      expect(audit.body).toMatchObject({ ok: true, complete: false, missing: ['node2'] });
    } finally {
      await stack.restartNode('node2');
    }
    const back = await call(stack, 'GET', '/audit/verify');
    expect(back.body).toMatchObject({ ok: true, complete: true, missing: [] });
    expect(back.body.nodes.map((n: { nodeId: string; status: string }) => [n.nodeId, n.status])).toEqual([['node1', 'ok'], ['node2', 'ok'], ['node3', 'ok']]);
  }, 120_000);
});

describe('one operator\'s account', () => {
  it('gives no key: one account holds one share, sealed, and nothing else of any key', async () => {
    const one = await account('node1');
    const whole = JSON.stringify(one);
    expect(whole.toLowerCase()).not.toContain(SECRET.toLowerCase());
    const ex = sharesOf(one, 'example', 1)!;
    const sg = sharesOf(one, 'signer', 1)!;
    expect(() => recoverSecret(ex.descriptor, [ex.share])).toThrow(CombineError);
    expect(() => combineShares(sg.descriptor.publicPackage, [sg.share])).toThrow(CombineError);
    // Its secret file holds its own keys only: no other operator's wrapping key, no administrator or coordinator key.
    expect(Object.keys(one.secret).sort()).toEqual(['signingPrivate', 'signingPublic', 'wrapKey', 'x25519Private', 'x25519Public']);
    for (const other of ['node2', 'node3']) expect(whole).not.toContain(stack.secrets[other]!['wrapKey']!);
    expect(whole).not.toContain(stack.secrets['coordinator']!['privateKey']!);
    expect(whole).not.toContain(stack.secrets['admin']!['privateKey']!);
  });

  it('t accounts together do obtain the key (so the test above can fail)', async () => {
    const [a, b] = [await account('node1'), await account('node3')];
    const ex = [sharesOf(a, 'example', 1)!, sharesOf(b, 'example', 1)!];
    expect(Buffer.from(recoverSecret(ex[0]!.descriptor, ex.map((x) => x.share))).toString('hex').toUpperCase()).toBe(SECRET);
    const sg = [sharesOf(a, 'signer', 1)!, sharesOf(b, 'signer', 1)!];
    const s = combineShares(sg[0]!.descriptor.publicPackage, sg.map((x) => x.share));
    expect(toB64(s)).toHaveLength(44);
  });
});

describe('membership', () => {
  it('refuses a membership document no administrator signed', async () => {
    const mallory = await newClient(stack, 'mallory', []);
    const { listing } = await listNodes(admin());
    const forged = signMembership({ ...listing!.membership.document, version: listing!.version + 1, threshold: 3 }, 'mallory', mallory.privateKey);
    const r = await call(stack, 'PUT', '/nodes', { body: forged, as: mallory });
    expect(r.status).toBe(503);
    expect(r.body.error.details.nodes.map((n: { error: string }) => n.error)).toEqual(['membership_unsigned', 'membership_unsigned', 'membership_unsigned']);
    // Claiming to be the administrator without its key is refused the same way.
    const claimed = signMembership({ ...listing!.membership.document, version: listing!.version + 1 }, 'admin', mallory.privateKey);
    expect((await call(stack, 'PUT', '/nodes', { body: claimed })).status).toBe(503);
    expect((await listNodes(admin())).listing!.version).toBe(listing!.version);
  });

  it('refuses a membership document changed in one node\'s storage, and outvotes that node', async () => {
    const s3 = stack.s3('node3');
    const Key = 'meta/federation/membership.json';
    const original = await (await s3.send(new GetObjectCommand({ Bucket: stack.bucketOf('node3'), Key }))).Body!.transformToString('utf8');
    const box = JSON.parse(original);
    const ct = Buffer.from(box.ct, 'base64');
    ct[5] = ct[5]! ^ 1;
    await s3.send(new PutObjectCommand({ Bucket: stack.bucketOf('node3'), Key, Body: JSON.stringify({ ...box, ct: ct.toString('base64') }) }));
    try {
      // The coordinator re-learns within its cache time; node3 no longer vouches for the document.
      let agreed: string[] = [];
      for (let i = 0; i < 40; i++) {
        const r = await call(stack, 'GET', '/nodes');
        expect(r.status).toBe(200);
        agreed = r.body.agreed;
        if (!agreed.includes('node3')) break;
        await new Promise((res) => setTimeout(res, 500));
      }
      expect(agreed).toEqual(['node1', 'node2']);
      // A node cannot use a document it cannot vouch for: it refuses work that needs its share index.
      expect((await call(stack, 'POST', '/keys', { body: { keyId: 'while-tampered', type: 'ed25519' } })).status).not.toBe(201);
    } finally {
      await s3.send(new PutObjectCommand({ Bucket: stack.bucketOf('node3'), Key, Body: original }));
    }
  }, 60_000);
});

describe('join and retire', () => {
  let before: { example: string; signer: string };

  it('the coordinator learns a new member without a restart', async () => {
    before = {
      example: (await call(stack, 'GET', '/keys/example')).body.key.groupPublicKey,
      signer: (await signOk('signer', 'before')).publicKey,
    };
    const { identity } = await stack.addOperator('node4');
    const r = await addNodes(admin(), stack.admin, [identity]);
    expect(r.status).toBe(200);
    let ids: string[] = [];
    for (let i = 0; i < 40 && !ids.includes('node4'); i++) {
      const l = await call(stack, 'GET', '/nodes');
      ids = l.body.nodes.map((n: { id: string }) => n.id);
      if (!ids.includes('node4')) await new Promise((res) => setTimeout(res, 500));
    }
    expect(ids).toEqual(['node1', 'node2', 'node3', 'node4']);
    const l = await call(stack, 'GET', '/nodes');
    expect(l.body.nodes.find((n: { id: string }) => n.id === 'node4')).toMatchObject({ index: 4, up: true, keys: 0, fingerprint: expect.stringMatching(/^SHA256:/) });
  }, 240_000);

  it('reshares onto it with the public keys unchanged, and old shares do not combine with new ones', async () => {
    const old1 = sharesOf(await account('node1'), 'example', 1)!;
    for (const keyId of ['example', 'signer']) {
      const r = await call(stack, 'POST', `/keys/${keyId}/reshare`, { body: { threshold: 3, nodes: ['node1', 'node2', 'node3', 'node4'] } });
      expect(r.status).toBe(200);
    }
    expect((await call(stack, 'GET', '/keys/example')).body.key).toMatchObject({ groupPublicKey: before.example, threshold: 3, total: 4, version: 2 });
    expect((await signOk('signer', 'after reshare')).publicKey).toBe(before.signer);
    const new2 = sharesOf(await account('node2'), 'example', 2)!;
    const new3 = sharesOf(await account('node3'), 'example', 2)!;
    const new4 = sharesOf(await account('node4'), 'example', 2)!;
    expect(() => combineShares(new2.descriptor.publicPackage, [old1.share, new2.share, new3.share])).toThrow(CombineError);
    expect(Buffer.from(recoverSecret(new2.descriptor, [new2.share, new3.share, new4.share])).toString('hex').toUpperCase()).toBe(SECRET);
  }, 120_000);

  it('signs and reconstructs 3-of-4 with node1\'s process stopped', async () => {
    await stack.crashNode('node1');
    try {
      expect((await reconstructEndToEnd(stack, 'example')).body.secret.hex.toUpperCase()).toBe(SECRET);
      await signOk('signer', 'node1 down');
    } finally {
      await stack.restartNode('node1');
    }
  }, 120_000);

  it('retires node1: reshared off it, removed from the membership, and everything still works', async () => {
    for (const keyId of ['example', 'signer']) {
      expect((await call(stack, 'POST', `/keys/${keyId}/reshare`, { body: { threshold: 2, nodes: ['node2', 'node3', 'node4'] } })).status).toBe(200);
    }
    const r = await removeNode(admin(), stack.admin, 'node1');
    expect(r.status).toBe(200);
    let ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      ids = (await call(stack, 'GET', '/nodes')).body.nodes.map((n: { id: string }) => n.id);
      if (!ids.includes('node1')) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(ids).toEqual(['node2', 'node3', 'node4']);
    // Every kind of operation, with node1's process gone for good.
    await stack.crashNode('node1');
    expect((await call(stack, 'GET', '/keys/example')).body.key.groupPublicKey).toBe(before.example);
    expect((await call(stack, 'POST', '/keys/example/reconstruct')).body.secret.hex.toUpperCase()).toBe(SECRET);
    expect((await reconstructEndToEnd(stack, 'example')).body.secret.hex.toUpperCase()).toBe(SECRET);
    expect((await signOk('signer', 'after retire')).publicKey).toBe(before.signer);
    expect((await call(stack, 'POST', '/keys/signer/refresh', { body: {} })).status).toBe(200);
    expect((await signOk('signer', 'after refresh')).publicKey).toBe(before.signer);
    const fresh = await call(stack, 'POST', '/keys', { body: { keyId: 'born-after', type: 'ed25519' } });
    expect(fresh.status).toBe(201);
    expect(fresh.body.key.participants.map((p: { nodeId: string }) => p.nodeId)).toEqual(['node2', 'node3', 'node4']);
    await signOk('born-after', 'hello');
    const imported = await call(stack, 'POST', '/keys', { body: { keyId: 'imported-after', secretHex: 'C0FFEE' } });
    expect(imported.status).toBe(201);
    const audit = await call(stack, 'GET', '/audit/verify');
    expect(audit.body.problems).toEqual([]);
    expect(audit.body).toMatchObject({ ok: true, complete: true });
    expect(audit.body.nodes.map((n: { nodeId: string }) => n.nodeId)).toEqual(['node2', 'node3', 'node4']);
    // A retired node's own copy says so: it is no longer a member.
    expect(withNode).toBeDefined();
  }, 240_000);
});
