/**
 * Issue #13, on the real local stack: what a registered client without rights could read or
 * write before, and what a destroyed key leaves in the buckets.
 *  1. least-privilege reads: the registry, key ids, approvals and audit verification;
 *  2. approvals only from those entitled to ask for or give them, bounded per requester;
 *  3. destroy is destruction: no object (or object version) of a destroyed key can be read.
 * Each attack goes through the coordinator's HTTP surface as an ordinary client would.
 */
import { GetObjectCommand, ListObjectsV2Command, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import type { LocalStack } from '../../tools/local-stack';
import type { ClientIdentity } from '../../lib/client/signer';
import { signApproval, type ApprovalRequest } from '../../lib/crypto/client-auth';
import { generateX25519 } from '../../lib/crypto/seal';
import { toB64 } from '../../lib/encoding';
import { call, newClient, reconstructEndToEnd, testStack } from '../support/stack';

jest.setTimeout(240_000);

let stack: LocalStack;
let alice: ClientIdentity, bob: ClientIdentity, mallory: ClientIdentity, audrey: ClientIdentity;
/** lib/coordinator/admin.ts MAX_OPEN_APPROVALS (a literal, so this file also runs on older commits). */
const MAX_OPEN = 8;
const recipient = () => toB64(generateX25519().publicKey);
const names = (r: { body: { clients?: { name: string }[] } }) => (r.body.clients ?? []).map((c) => c.name).sort();
const keyIds = (r: { body: { keys?: { keyId: string }[] } }) => (r.body.keys ?? []).map((k) => k.keyId).sort();

beforeAll(async () => {
  stack = await testStack();
  alice = await newClient(stack, 'alice');
  bob = await newClient(stack, 'bob', ['approver']);
  mallory = await newClient(stack, 'mallory');
  audrey = await newClient(stack, 'audrey', ['auditor']);
  const approvals = { required: 1, approvers: ['role:approver'] };
  const keys = [
    { keyId: 'alices', length: 16, policy: { describe: ['client:alice'], reconstruct: ['client:alice'] } },
    { keyId: 'hidden', length: 16 },
    { keyId: 'vault', length: 16, policy: { reconstruct: ['client:alice'], approvals } },
    { keyId: 'vault2', length: 16, policy: { reconstruct: ['client:alice'], approvals } },
    { keyId: 'doomed', length: 32 },
  ];
  // One at a time: a shared, busy machine makes concurrent creates time out.
  for (const body of keys) {
    const r = await call(stack, 'POST', '/keys', { body });
    expect([body.keyId, r.status, r.status === 201 ? '' : r.text]).toEqual([body.keyId, 201, '']);
  }
}, 300_000);

afterAll(async () => {
  await stack?.stop();
});

describe('issue #13: reads, approvals and destruction', () => {
  it('1. least-privilege reads: a client sees only its own registry entry, the keys it may describe, its own approval requests, and no audit verification', async () => {
    // The registry: whole for an administrator, one's own entry for anyone else.
    const all = await call(stack, 'GET', '/clients');
    expect(all.status).toBe(200);
    expect(names(all)).toEqual(expect.arrayContaining(['admin', 'alice', 'audrey', 'bob', 'mallory']));
    const own = await call(stack, 'GET', '/clients', { as: mallory });
    expect(own.status).toBe(200);
    expect(names(own)).toEqual(['mallory']);

    // Key ids: only those whose policy lets the caller describe them.
    expect(keyIds(await call(stack, 'GET', '/keys'))).toEqual(expect.arrayContaining(['alices', 'doomed', 'hidden', 'vault', 'vault2']));
    const mine = await call(stack, 'GET', '/keys', { as: alice });
    expect(mine.status).toBe(200);
    expect(keyIds(mine)).toEqual(['alices']);
    const none = await call(stack, 'GET', '/keys', { as: mallory });
    expect(none.status).toBe(200);
    expect(keyIds(none)).toEqual([]);
    // The default policy lets auditors describe: audrey sees the keys the administrator created with it.
    expect(keyIds(await call(stack, 'GET', '/keys', { as: audrey }))).toEqual(expect.arrayContaining(['doomed', 'hidden']));

    // Approvals: the requester, the key's approvers and administrators; nobody else.
    const opened = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: recipient() } });
    expect(opened.status).toBe(201);
    const digests = async (who: ClientIdentity | undefined) => {
      const r = await call(stack, 'GET', '/approvals?keyId=vault', who ? { as: who } : {});
      expect(r.status).toBe(200);
      return (r.body.requests as { digest: string }[]).map((x) => x.digest);
    };
    expect(await digests(alice)).toContain(opened.body.digest);
    expect(await digests(bob)).toContain(opened.body.digest);
    expect(await digests(undefined)).toContain(opened.body.digest);
    expect(await digests(mallory)).toEqual([]);

    // A full audit verification: administrators and auditors only.
    const verify = await call(stack, 'GET', '/audit/verify', { as: mallory });
    expect(verify.status).toBe(403);
    expect(verify.body.error.code).toBe('not_authorized');
    expect((await call(stack, 'GET', '/audit/verify', { as: audrey })).status).toBe(200);
  });

  it('2. approvals only from those entitled: requests from clients that may reconstruct, approvals from named approvers, a bounded number open', async () => {
    const listed = async () => (await call(stack, 'GET', '/approvals?keyId=vault2')).body.requests as { digest: string; request: ApprovalRequest; approvers: string[] }[];
    // A client the policy does not let reconstruct may not ask: nothing reaches the table.
    const stranger = await call(stack, 'POST', '/approvals', { as: mallory, body: { keyId: 'vault2', recipient: recipient() } });
    expect(stranger.status).toBe(403);
    expect(stranger.body.error.code).toBe('not_authorized');
    expect((await listed()).filter((r) => r.request.requester === 'mallory')).toEqual([]);

    // A valid signature by a client the policy does not name as approver is refused too.
    const opened = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault2', recipient: recipient() } });
    expect(opened.status).toBe(201);
    const req = opened.body.request as ApprovalRequest;
    const approve = (who: ClientIdentity) => call(stack, 'POST', '/approvals', { as: who, body: { keyId: 'vault2', digest: opened.body.digest, signature: signApproval(who.privateKey, req) } });
    const bogus = await approve(mallory);
    expect(bogus.status).toBe(403);
    expect(bogus.body.error.code).toBe('not_authorized');
    const good = await approve(bob);
    expect(good.status).toBe(200);
    expect((await listed()).find((r) => r.digest === opened.body.digest)!.approvers).toEqual(['bob']);

    // One requester holds at most MAX_OPEN open requests per key.
    const more = [];
    for (let i = 1; i < MAX_OPEN; i++) more.push(await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault2', recipient: recipient() } }));
    expect(more.map((r) => r.status)).toEqual(Array(MAX_OPEN - 1).fill(201));
    const over = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault2', recipient: recipient() } });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe('too_many_open_requests');
    expect((await listed()).filter((r) => r.request.requester === 'alice')).toHaveLength(MAX_OPEN);
  });

  it('3. destroy is destruction: no object, and no object version, of a destroyed key can be read from any bucket', async () => {
    // Two versions: a refresh retires v1, the destroy removes v2.
    expect((await call(stack, 'POST', '/keys/doomed/refresh', { body: {} })).status).toBe(200);
    expect((await call(stack, 'POST', '/keys/doomed/state', { body: { state: 'disabled' } })).status).toBe(200);
    const destroyed = await call(stack, 'POST', '/keys/doomed/state', { body: { state: 'destroyed', reason: 'issue 13' } });
    expect(destroyed.status).toBe(200);
    for (const nodeId of stack.proxies.keys()) {
      const s3 = stack.s3(nodeId);
      const Bucket = stack.bucketOf(nodeId);
      expect((await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'keys/doomed/' }))).Contents ?? []).toHaveLength(0);
      for (const Key of ['keys/doomed/v1.json', 'keys/doomed/v2.json']) {
        await expect(s3.send(new GetObjectCommand({ Bucket, Key }))).rejects.toMatchObject({ name: 'NoSuchKey' });
      }
      // In AWS the bucket is versioned: no version and no delete marker may remain. The local
      // S3 server keeps no versions at all (it answers 405); there the plain listing above is all.
      const versions = await s3.send(new ListObjectVersionsCommand({ Bucket, Prefix: 'keys/doomed/' })).then(
        (r) => [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])],
        (e: { name?: string }) => {
          expect(e.name).toBe('MethodNotAllowed');
          return [];
        },
      );
      expect(versions).toEqual([]);
    }
    expect((await reconstructEndToEnd(stack, 'doomed')).status).toBe(410);
  });
});
