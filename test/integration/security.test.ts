/**
 * Zero trust on the real local stack: client identities, node-enforced policies,
 * request-bound m-of-n approvals, end-to-end reconstruction, key lifecycle, and a
 * table of hostile requests (add a case with one line). A "rogue coordinator" here is
 * the test holding the coordinator's own signing key and calling the nodes directly.
 */
import { randomUUID } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { identifierFor } from '../../lib/crypto/shares';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { LocalStack } from '../../tools/local-stack';
import type { ClientIdentity } from '../../lib/client/signer';
import { withClientRequest } from '../../lib/coordinator/client-context';
import { NodeClient } from '../../lib/coordinator/node-client';
import { decodeEnvelope, signApproval, type ApprovalRequest, type ClientEnvelope } from '../../lib/crypto/client-auth';
import { signStatement } from '../../lib/crypto/identity';
import { fragmentStatement } from '../../lib/reconstruction';
import { generateX25519 } from '../../lib/crypto/seal';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { fromB64, toB64 } from '../../lib/encoding';
import { scanLogForSecrets, scanTablesForSecrets } from '../support/log-scan';
import { call, clientEnvelope, newClient, reconstructEndToEnd, scanAudit, testStack, type Api, nodeEndpoint } from '../support/stack';

let stack: LocalStack;
let alice: ClientIdentity, bob: ClientIdentity, carol: ClientIdentity, dave: ClientIdentity, frank: ClientIdentity;
const SHARED = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const VAULT = 'feedface'.repeat(4);
const released: { name: string; bytes: Uint8Array }[] = [{ name: 'shared key', bytes: Buffer.from(SHARED, 'hex') }, { name: 'vault key', bytes: Buffer.from(VAULT, 'hex') }];
const L = ed25519.Point.Fn.ORDER;

beforeAll(async () => {
  stack = await testStack();
  alice = await newClient(stack, 'alice');
  bob = await newClient(stack, 'bob', ['approver']);
  carol = await newClient(stack, 'carol', ['approver']);
  dave = await newClient(stack, 'dave');
  frank = await newClient(stack, 'frank');
  expect((await call(stack, 'POST', '/clients', { body: { name: 'frank', publicKey: toB64(ed25519.getPublicKey(frank.privateKey)), roles: [], status: 'disabled' } })).status).toBe(201);
  const created = await Promise.all([
    call(stack, 'POST', '/keys', { body: { keyId: 'shared', secretHex: SHARED, policy: { reconstruct: ['client:alice', 'client:dave'] } } }),
    call(stack, 'POST', '/keys', { body: { keyId: 'vault', secretHex: VAULT, policy: { reconstruct: ['client:alice'], approvals: { required: 2, approvers: ['role:approver'] } } } }),
    call(stack, 'POST', '/keys', { body: { keyId: 'life', length: 16, state: 'pre-active' } }),
    call(stack, 'POST', '/keys', { body: { keyId: 'gone', length: 16 } }),
    call(stack, 'POST', '/keys', { body: { keyId: 'signer', type: 'ed25519' } }),
  ]);
  expect(created.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
  expect((await call(stack, 'POST', '/keys/gone/state', { body: { state: 'disabled' } })).status).toBe(200);
  expect((await call(stack, 'POST', '/keys/gone/state', { body: { state: 'destroyed', reason: 'test' } })).status).toBe(200);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

// ------------------------------------------------------------------ a rogue coordinator

const endpoint = (id: string) => nodeEndpoint(stack, id);

/** Call a node directly with the coordinator's own key, relaying `env` (or nothing) as the client request. */
async function asCoordinator(nodeId: string, method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, opts: { query?: Record<string, string>; body?: unknown; env?: ClientEnvelope; key?: Uint8Array } = {}): Promise<Api> {
  const client = new NodeClient(opts.key ?? fromB64(stack.secrets['coordinator']!['privateKey']!));
  const send = () => client.call(endpoint(nodeId), { method, path, ...(opts.query ? { query: opts.query } : {}), ...(opts.body !== undefined ? { body: opts.body } : {}) }, AbortSignal.timeout(10_000));
  try {
    const body = await (opts.env ? withClientRequest(opts.env, send) : send());
    return { status: 200, body, text: JSON.stringify(body) };
  } catch (e) {
    const err = e as { httpStatus?: number; code?: string };
    const body = { error: { code: err.code } };
    return { status: err.httpStatus ?? 0, body, text: JSON.stringify(body) };
  }
}

const recipientKey = () => toB64(generateX25519().publicKey);
/** A fragment request to node1 as a rogue coordinator would make it, relaying `env`. */
const forgedFragment = (env: ClientEnvelope | undefined, keyId = 'shared', recipient = recipientKey()) => asCoordinator('node1', 'GET', '/fragment', { query: { keyId, recipient }, ...(env ? { env } : {}) });
const aliceReconstructs = (body: Record<string, unknown>, keyId = 'shared', at?: number) => clientEnvelope(alice, 'POST', `/keys/${keyId}/reconstruct`, body, at);

/** The approval request node1 will check for alice's reconstruction of the vault key. */
async function vaultRequest(recipient: string, expiresAt: number): Promise<ApprovalRequest> {
  const d = await call(stack, 'GET', '/keys/vault');
  return { keyId: 'vault', version: d.body.key.version, requester: 'alice', recipient, expiresAt };
}

/** Round 1 of a signature on node1 and node2, as the coordinator runs it (commitments need no client). */
async function signingSession() {
  const sessionId = randomUUID();
  const [a, b] = await Promise.all(['node1', 'node2'].map((id) => asCoordinator(id, 'POST', '/sign/commit', { body: { sessionId, keyId: 'signer' } })));
  expect([a!.status, b!.status]).toEqual([200, 200]);
  const commitments = [a!.body.commitment, b!.body.commitment].sort((x: { identifier: string }, y: { identifier: string }) => x.identifier.localeCompare(y.identifier));
  return { sessionId, keyId: 'signer', commitments };
}

/** Audit records about one key (raw DynamoDB items). */
async function auditOf(keyId: string, actions = ['key.destroy', 'fragment.delete']) {
  return (await scanAudit(stack)).filter((i) => i['keyId']?.S === keyId && actions.includes(i['action']?.S ?? ''));
}

// ------------------------------------------------------------------ request helpers

/** Mutate a base64 Ed25519 signature into S + L: the same point equation, a non-canonical scalar. */
function highS(sigB64: string): string {
  const sig = Buffer.from(sigB64, 'base64');
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]!);
  s += L;
  for (let i = 0; i < 32; i++) {
    sig[32 + i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return sig.toString('base64');
}

/** A signed request whose headers are changed after signing. */
async function tampered(who: ClientIdentity, method: string, p: string, body: unknown, change: (h: Record<string, string>) => void): Promise<Api> {
  const { signedHeaders } = await import('../../lib/client/signer');
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...signedHeaders(who, method, p, text) };
  change(headers);
  const res = await fetch(`${stack.url}${p}`, { method, headers, ...(text ? { body: text } : {}) });
  const t = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(t);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text: t };
}

/** The same signed request sent twice; the second answer. */
async function replayed(who: ClientIdentity, method: string, p: string, body: unknown): Promise<Api> {
  const { signedHeaders } = await import('../../lib/client/signer');
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers = { 'content-type': 'application/json', ...signedHeaders(who, method, p, text) };
  const send = () => fetch(`${stack.url}${p}`, { method, headers, ...(text ? { body: text } : {}) }).then(async (r) => ({ status: r.status, text: await r.text() }));
  await send();
  const again = await send();
  return { status: again.status, body: JSON.parse(again.text), text: again.text };
}

/** An Ed25519 encoding that is not a point of the curve. */
function offCurve(): string {
  for (let y = 2; ; y++) {
    const b = new Uint8Array(32);
    b[0] = y;
    try {
      ed25519.Point.fromBytes(b);
    } catch {
      return toB64(b);
    }
  }
}

const registration = (publicKey: string) => ({ body: { name: 'mallory', publicKey, roles: ['admin'] } });
const smallOrderX25519 = toB64(new Uint8Array(32));
const identityEd25519 = toB64(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0)));
const order2Ed25519 = toB64(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xec : i === 31 ? 0x7f : 0xff)));
const nonCanonicalY = toB64(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xee : i === 31 ? 0x7f : 0xff)));
const nonCanonicalB64 = (b64: string) => {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  return `${b64.slice(0, 42)}${A[A.indexOf(b64[42]!) | 1]}=`;
};
const stranger: ClientIdentity = { name: 'mallory', privateKey: generateSigningKey().privateKey };

// ------------------------------------------------------------------ features

describe('client identities', () => {
  it('are registered by an administrator, listed, and checked on every request', async () => {
    const list = await call(stack, 'GET', '/clients');
    expect(list.status).toBe(200);
    expect(list.body.clients.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['admin', 'alice', 'bob', 'carol', 'dave', 'frank']));
    expect(list.body.clients.find((c: { name: string }) => c.name === 'frank').status).toBe('disabled');
    const audit = await call(stack, 'GET', '/audit/verify');
    expect(audit.body.ok).toBe(true);
  });

  it('a client disabled by an administrator is refused by the nodes at once', async () => {
    expect((await reconstructEndToEnd(stack, 'shared', dave)).status).toBe(200);
    expect((await call(stack, 'POST', '/clients', { body: { name: 'dave', publicKey: toB64(ed25519.getPublicKey(dave.privateKey)), roles: [], status: 'disabled' } })).status).toBe(201);
    const r = await reconstructEndToEnd(stack, 'shared', dave);
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('client_disabled');
  });
});

describe('policies enforced by every node', () => {
  it('lets the allowed client reconstruct end to end, and no one else', async () => {
    const ok = await reconstructEndToEnd(stack, 'shared', alice);
    expect(ok.status).toBe(200);
    expect(ok.body.secret.hex).toBe(SHARED);
    expect(ok.body.mode).toBe('end-to-end');
    // The coordinator relayed only sealed boxes.
    for (const f of ok.body.fragments) expect(Object.keys(f.sealedShare).sort()).toEqual(['ct', 'epk', 'iv', 'tag']);
    // Each fragment is signed by its node for this request, and the client checked it against the pinned key.
    for (const f of ok.body.fragments) expect(f.signature).toMatch(/^[A-Za-z0-9+/]{86}==$/);
    expect(ok.rejected).toEqual([]);
    const no = await reconstructEndToEnd(stack, 'shared', bob);
    expect(no.status).toBe(403);
    expect(no.body.error.code).toBe('not_authorized');
  });

  it('refuses server-side combining unless the key policy allows it', async () => {
    const r = await call(stack, 'POST', '/keys/shared/reconstruct', { as: alice });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('end_to_end_required');
  });

  it('a rogue coordinator gets nothing without a matching client request', async () => {
    const recipient = recipientKey();
    const env = aliceReconstructs({ recipient });
    // The genuine request works once, for the recipient alice named...
    expect((await forgedFragment(env, 'shared', recipient)).status).toBe(200);
    // ...and never again, nor for another recipient, nor for another key.
    expect((await forgedFragment(env, 'shared', recipient)).body.error.code).toBe('request_replayed');
    expect((await forgedFragment(aliceReconstructs({ recipient }), 'shared', recipientKey())).body.error.code).toBe('recipient_mismatch');
    expect((await forgedFragment(aliceReconstructs({ recipient }, 'vault'), 'shared', recipient)).body.error.code).toBe('client_request_mismatch');
  });

  it('applies a policy change on every node, and each node enforces the new version', async () => {
    const policy = { sign: [], reconstruct: ['client:alice', 'client:bob'], describe: ['role:admin'], admin: ['role:admin'], approvals: { required: 0, approvers: [] }, serverSideCombine: false };
    const r = await call(stack, 'PUT', '/keys/shared/policy', { body: { policy } });
    expect(r.status).toBe(200);
    expect(r.body.nodes.every((n: { status: string }) => n.status === 'valid')).toBe(true);
    expect((await reconstructEndToEnd(stack, 'shared', bob)).status).toBe(200);
    expect((await call(stack, 'GET', '/keys/shared')).body.nodes.length).toBe(3);
  });
});

describe('m-of-n approvals bound to the request', () => {
  it('releases the vault key only with two approvals of that exact request', async () => {
    const recipient = generateX25519();
    const recipientB64 = toB64(recipient.publicKey);
    const opened = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: recipientB64 } });
    expect(opened.status).toBe(201);
    const req = opened.body.request as ApprovalRequest;
    expect(req.requester).toBe('alice');
    const approve = (who: ClientIdentity) => call(stack, 'POST', '/approvals', { as: who, body: { keyId: 'vault', digest: opened.body.digest, signature: signApproval(who.privateKey, req) } });
    expect((await approve(alice)).body.error.code).toBe('self_approval');
    expect((await approve(bob)).status).toBe(200);
    const one = await reconstructEndToEnd(stack, 'vault', alice, { recipient, expiresAt: req.expiresAt });
    expect(one.status).toBe(403);
    expect(one.body.error.code).toBe('approvals_required');
    expect((await approve(carol)).status).toBe(200);
    const listed = await call(stack, 'GET', '/approvals?keyId=vault', { as: bob });
    expect(listed.body.requests.find((r: { digest: string }) => r.digest === opened.body.digest).approvers).toEqual(['bob', 'carol']);
    const two = await reconstructEndToEnd(stack, 'vault', alice, { recipient, expiresAt: req.expiresAt });
    expect(two.status).toBe(200);
    expect(two.body.secret.hex).toBe(VAULT);
    // Each node that released its share recorded who approved.
    const releases = (await auditOf('vault', ['fragment.release'])).filter((i) => i['outcome']?.S === 'success');
    expect(releases.length).toBeGreaterThanOrEqual(2);
    for (const r of releases) expect(JSON.stringify(r['details'])).toMatch(/bob.*carol/);
    // Approved for alice and that recipient only: bob may not ride on them.
    expect((await reconstructEndToEnd(stack, 'vault', bob, { recipient, expiresAt: req.expiresAt })).status).toBe(403);
  });
});

describe('key lifecycle (NIST SP 800-57)', () => {
  it('pre-active keys are not usable until activated; disabled ones stop working; illegal moves are refused', async () => {
    expect((await reconstructEndToEnd(stack, 'life')).body.error.code).toBe('key_pre_active');
    expect((await call(stack, 'POST', '/keys/life/state', { body: { state: 'active' } })).status).toBe(200);
    expect((await reconstructEndToEnd(stack, 'life')).status).toBe(200);
    expect((await call(stack, 'POST', '/keys/life/state', { body: { state: 'disabled' } })).status).toBe(200);
    expect((await reconstructEndToEnd(stack, 'life')).body.error.code).toBe('key_disabled');
    expect((await call(stack, 'GET', '/keys/life')).body.key).toMatchObject({ state: 'disabled', policyVersion: 1 });
    const illegal = await call(stack, 'POST', '/keys/life/state', { body: { state: 'pre-active' } });
    expect(illegal.status).toBe(409);
    expect(illegal.body.error.code).toBe('illegal_transition');
  });

  it('destroying a key deletes its fragments from every bucket, audited on every node', async () => {
    for (const nodeId of stack.proxies.keys()) {
      const list = await stack.s3(nodeId).send(new ListObjectsV2Command({ Bucket: stack.bucketOf(nodeId), Prefix: 'keys/gone/' }));
      expect(list.Contents ?? []).toHaveLength(0);
    }
    const audit = await call(stack, 'GET', '/audit/verify');
    expect(audit.body.ok).toBe(true);
  });
});

describe('end to end, with nodes down or lying', () => {
  afterEach(async () => {
    for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
  });

  it('reconstructs with n−t nodes down and names them', async () => {
    await stack.setNode('node2', { kind: 'down' });
    const r = await reconstructEndToEnd(stack, 'shared', alice);
    expect(r.status).toBe(200);
    expect(r.body.secret.hex).toBe(SHARED);
    expect(r.body.nodes.find((n: { nodeId: string }) => n.nodeId === 'node2').status).toBe('unreachable');
  });

  it('a node that lies (a wrong share it signs with its own key) is named by the client, left out, and audited', async () => {
    // A compromised node1: it still holds its identity key, so its lie is signed.
    const node1Key = fromB64(stack.secrets['node1']!['signingPrivate']!);
    await stack.setNode('node1', {
      kind: 'tamper',
      rewrite: (p, answer, _req, http) => {
        if (!p.endsWith('/fragment')) return answer;
        const ct = Buffer.from(answer.sealedShare.ct, 'base64');
        ct[0] = ct[0]! ^ 1;
        const lie = { ...answer, sealedShare: { ...answer.sealedShare, ct: ct.toString('base64') } };
        const recipient = new URL(http.url, 'http://x').searchParams.get('recipient')!;
        const requestId = decodeEnvelope(String(http.headers['x-fedkms-client-auth'])).requestId;
        return { ...lie, signature: signStatement(node1Key, fragmentStatement(lie, recipient, requestId)) };
      },
    });
    // Slow node3 past the fan-out's hedge delay, so node1 is among the first answers
    // whichever two nodes the coordinator asks first.
    await stack.setNode('node3', { kind: 'slow', delayMs: 2000 });
    const r = await reconstructEndToEnd(stack, 'shared', alice);
    expect(r.status).toBe(200);
    expect(r.body.secret.hex).toBe(SHARED);
    expect(r.rejected).toEqual([{ nodeId: 'node1', reason: 'sealed share does not open' }]);
    expect(r.body.usedNodes.sort()).toEqual(['node2', 'node3']);
    expect(JSON.stringify((await scanAudit(stack)).filter((i) => i['action']?.S === 'fragment.rejected' && i['keyId']?.S === 'shared'))).toContain('node1');
  });

  it('with more than n−t nodes down it fails cleanly and releases nothing', async () => {
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node2', { kind: 'down' });
    const r = await reconstructEndToEnd(stack, 'shared', alice);
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('quorum_not_reached');
    expect(r.body.fragments).toBeUndefined();
  });
});

// ------------------------------------------------------------------ hostile requests

type Case = [name: string, send: () => Promise<Api>, status: number, code: string];

const cases: Case[] = [
  // Malformed and oversized input.
  ['malformed JSON', () => call(stack, 'POST', '/keys', { rawBody: '{"keyId":' }), 400, 'invalid_json'],
  ['truncated JSON body of a reconstruction', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, rawBody: '{"recipient":"' }), 400, 'invalid_json'],
  ['a JSON array where an object belongs', () => call(stack, 'POST', '/keys', { rawBody: '[1,2]' }), 400, 'invalid_input'],
  ['wrong type: threshold as a string', () => call(stack, 'POST', '/keys', { body: { keyId: 'w1', threshold: 'two' } }), 400, 'invalid_input'],
  ['unknown field in a reconstruction', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, body: { recipient: recipientKey(), admin: true } }), 400, 'invalid_input'],
  ['unknown field in a policy', () => call(stack, 'PUT', '/keys/shared/policy', { body: { policy: { sign: [], superuser: true } } }), 400, 'invalid_input'],
  ['oversized body', () => call(stack, 'POST', '/keys', { rawBody: JSON.stringify({ keyId: 'big', secretHex: 'ab'.repeat(40_000) }) }), 413, 'payload_too_large'],
  ['unknown lifecycle state', () => call(stack, 'POST', '/keys/life/state', { body: { state: 'zombie' } }), 400, 'invalid_input'],
  ['approvals listing without a key id', () => call(stack, 'GET', '/approvals'), 400, 'invalid_input'],
  ['oversized client registration', () => call(stack, 'POST', '/clients', { rawBody: JSON.stringify({ name: 'big', publicKey: 'x'.repeat(70_000), roles: [] }) }), 413, 'payload_too_large'],
  ['unsigned client listing', () => call(stack, 'GET', '/clients', { as: null }), 401, 'auth_missing'],
  // Encodings, lengths and points.
  ['non-canonical base64 secret', () => call(stack, 'POST', '/keys', { body: { keyId: 'w2', secretBase64: 'QQ=x' } }), 400, 'invalid_encoding'],
  ['non-canonical base64 recipient', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, body: { recipient: nonCanonicalB64(recipientKey()) } }), 400, 'invalid_encoding'],
  ['recipient key of 16 bytes', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, body: { recipient: toB64(new Uint8Array(16).fill(9)) } }), 400, 'invalid_recipient'],
  ['recipient is the X25519 point 0 (small order)', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, body: { recipient: smallOrderX25519 } }), 400, 'invalid_recipient'],
  ['recipient is the X25519 point 1 (small order)', () => call(stack, 'POST', '/keys/shared/reconstruct', { as: alice, body: { recipient: toB64(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))) } }), 400, 'invalid_recipient'],
  ['approval request with a small-order recipient', () => call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: smallOrderX25519 } }), 400, 'invalid_recipient'],
  ['client key is the identity point', () => call(stack, 'POST', '/clients', registration(identityEd25519)), 400, 'invalid_public_key'],
  ['client key is a small-order point', () => call(stack, 'POST', '/clients', registration(order2Ed25519)), 400, 'invalid_public_key'],
  ['client key is not on the curve', () => call(stack, 'POST', '/clients', registration(offCurve())), 400, 'invalid_public_key'],
  ['client key with y >= p (non-canonical)', () => call(stack, 'POST', '/clients', registration(nonCanonicalY)), 400, 'invalid_public_key'],
  ['client key of 31 bytes', () => call(stack, 'POST', '/clients', registration(toB64(new Uint8Array(31).fill(3)))), 400, 'invalid_input'],
  ['client signature with S >= L', () => tampered(alice, 'GET', '/keys', undefined, (h) => (h['x-fedkms-client-signature'] = highS(h['x-fedkms-client-signature']!))), 401, 'client_signature_invalid'],
  ['approval signature with S >= L', async () => {
    const opened = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: recipientKey() } });
    return call(stack, 'POST', '/approvals', { as: bob, body: { keyId: 'vault', digest: opened.body.digest, signature: highS(signApproval(bob.privateKey, opened.body.request)) } });
  }, 400, 'approval_invalid'],
  // Key ids.
  ['key id with ../', () => call(stack, 'POST', '/keys/..%2F..%2Fetc/reconstruct'), 400, 'invalid_key_id'],
  ['key id with %2F', () => call(stack, 'GET', '/keys/a%2Fb'), 400, 'invalid_key_id'],
  ['key id in unicode', () => call(stack, 'GET', `/keys/${encodeURIComponent('clé')}`), 400, 'invalid_key_id'],
  ['empty key id', () => call(stack, 'POST', '/keys', { body: { keyId: '', length: 8 } }), 400, 'invalid_key_id'],
  // Share indices and thresholds.
  ['reshare to a duplicated node', () => call(stack, 'POST', '/keys/shared/reshare', { body: { nodes: ['node1', 'node1', 'node2'] } }), 400, 'invalid_nodes'],
  ['threshold of zero', () => call(stack, 'POST', '/keys', { body: { keyId: 'w3', threshold: 0 } }), 400, 'invalid_input'],
  ['reshare with a threshold of zero', () => call(stack, 'POST', '/keys/shared/reshare', { body: { threshold: 0 } }), 400, 'invalid_input'],
  // Replays and clocks.
  ['replayed request (coordinator route)', () => replayed(alice, 'GET', '/keys', undefined), 401, 'request_replayed'],
  ['replayed reconstruction (nodes decide)', () => replayed(alice, 'POST', '/keys/shared/reconstruct', { recipient: recipientKey() }), 401, 'request_replayed'],
  ['stale request (120 s old)', () => tampered(alice, 'GET', '/keys', undefined, (h) => (h['x-fedkms-client-timestamp'] = String(Date.now() - 120_000))), 401, 'request_stale'],
  ['future-dated request (+120 s)', () => tampered(alice, 'GET', '/keys', undefined, (h) => (h['x-fedkms-client-timestamp'] = String(Date.now() + 120_000))), 401, 'request_stale'],
  ['unsigned request', () => call(stack, 'GET', '/keys', { as: null }), 401, 'auth_missing'],
  ['request signed by an unknown client', () => call(stack, 'GET', '/keys', { as: stranger }), 401, 'client_unknown'],
  ['request signed by a disabled client', () => call(stack, 'GET', '/keys', { as: frank }), 401, 'client_disabled'],
  ['a client signing as another client', () => tampered(alice, 'GET', '/keys', undefined, (h) => (h['x-fedkms-client'] = 'bob')), 401, 'client_signature_invalid'],
  // Valid clients on keys and operations they may not touch.
  ['valid client, key it may not reconstruct', () => reconstructEndToEnd(stack, 'vault', carol), 403, 'not_authorized'],
  ['valid client, key it may not describe', () => call(stack, 'GET', '/keys/vault', { as: alice }), 403, 'not_authorized'],
  ['valid client, administration it may not do', () => call(stack, 'POST', '/keys/shared/state', { as: alice, body: { state: 'disabled' } }), 403, 'not_authorized'],
  ['valid client registering clients', () => call(stack, 'POST', '/clients', { as: alice, body: { name: 'mallory', publicKey: toB64(generateSigningKey().publicKey), roles: ['admin'] } }), 403, 'not_authorized'],
  ['valid client creating keys without the role', () => call(stack, 'POST', '/keys', { as: alice, body: { keyId: 'alices', length: 8 } }), 403, 'not_authorized'],
  // Approvals.
  ['approval by the requester', async () => {
    const opened = await call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: recipientKey() } });
    return call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', digest: opened.body.digest, signature: signApproval(alice.privateKey, opened.body.request) } });
  }, 403, 'self_approval'],
  ['approval request already expired', () => call(stack, 'POST', '/approvals', { as: alice, body: { keyId: 'vault', recipient: recipientKey(), expiresAt: Date.now() - 1000 } }), 400, 'invalid_expiry'],
  ['approval of an unknown request', () => call(stack, 'POST', '/approvals', { as: bob, body: { keyId: 'vault', digest: 'ab'.repeat(32), signature: toB64(new Uint8Array(64)) } }), 404, 'approval_request_not_found'],
  ['duplicated approvals (one approver twice), at the node', async () => {
    const recipient = recipientKey();
    const expiresAt = Date.now() + 600_000;
    const req = await vaultRequest(recipient, expiresAt);
    const sig = signApproval(bob.privateKey, req);
    return forgedFragment({ ...aliceReconstructs({ recipient, expiresAt }, 'vault'), approvals: [{ approver: 'bob', signature: sig }, { approver: 'bob', signature: sig }] }, 'vault', recipient);
  }, 403, 'approvals_required'],
  ['approvals by the requester, at the node', async () => {
    const recipient = recipientKey();
    const expiresAt = Date.now() + 600_000;
    const req = await vaultRequest(recipient, expiresAt);
    return forgedFragment({ ...aliceReconstructs({ recipient, expiresAt }, 'vault'), approvals: [{ approver: 'alice', signature: signApproval(alice.privateKey, req) }, { approver: 'bob', signature: signApproval(bob.privateKey, req) }] }, 'vault', recipient);
  }, 403, 'approvals_required'],
  ['expired approvals, at the node', async () => {
    const recipient = recipientKey();
    const expiresAt = Date.now() - 1000;
    const req = await vaultRequest(recipient, expiresAt);
    return forgedFragment({ ...aliceReconstructs({ recipient, expiresAt }, 'vault'), approvals: [bob, carol].map((w) => ({ approver: w.name, signature: signApproval(w.privateKey, req) })) }, 'vault', recipient);
  }, 403, 'approvals_expired'],
  ['approvals of a different request, at the node', async () => {
    const recipient = recipientKey();
    const expiresAt = Date.now() + 600_000;
    const other = await vaultRequest(recipientKey(), expiresAt);
    return forgedFragment({ ...aliceReconstructs({ recipient, expiresAt }, 'vault'), approvals: [bob, carol].map((w) => ({ approver: w.name, signature: signApproval(w.privateKey, other) })) }, 'vault', recipient);
  }, 403, 'approvals_required'],
  // A forged or compromised coordinator.
  ['forged fragment request: no client request', () => forgedFragment(undefined), 401, 'client_auth_missing'],
  ['forged fragment request: client body altered', () => forgedFragment({ ...aliceReconstructs({ recipient: recipientKey() }), body: JSON.stringify({ recipient: recipientKey() }) }), 401, 'client_signature_invalid'],
  ['forged fragment request: a sign request reused', () => forgedFragment(clientEnvelope(alice, 'POST', '/keys/shared/sign', { message: 'AA==' })), 403, 'client_request_mismatch'],
  ['forged fragment request: stale client request', () => forgedFragment(aliceReconstructs({ recipient: recipientKey() }, 'shared', Date.now() - 300_000)), 401, 'request_stale'],
  ['forged fragment request: signed by a key that is not the coordinator', () => asCoordinator('node1', 'GET', '/fragment', { query: { keyId: 'shared', recipient: recipientKey() }, env: aliceReconstructs({}), key: generateSigningKey().privateKey }), 401, 'signature_invalid'],
  ['forged client registration: no administrator', () => asCoordinator('node2', 'PUT', '/client', { body: { name: 'mallory', publicKey: toB64(generateSigningKey().publicKey), roles: ['admin'], status: 'active' } }), 401, 'client_auth_missing'],
  ['forged client registration: a non-administrator', () => {
    const rec = { name: 'mallory', publicKey: toB64(generateSigningKey().publicKey), roles: ['admin'], status: 'active' };
    return asCoordinator('node2', 'PUT', '/client', { body: rec, env: clientEnvelope(alice, 'POST', '/clients', rec) });
  }, 403, 'not_authorized'],
  ['forged DKG round 1: no client request', () => asCoordinator('node3', 'POST', '/dkg/round1', { body: { sessionId: randomUUID(), keyId: 'forged', threshold: 2, participants: [1, 2, 3].map((i) => ({ nodeId: `node${i}`, identifier: identifierFor(i) })), createdAt: new Date().toISOString() } }), 401, 'client_auth_missing'],
  ['forged signature share: no client request', async () => asCoordinator('node1', 'POST', '/sign/share', { body: { ...(await signingSession()), message: 'AA==' } }), 401, 'client_auth_missing'],
  ['forged signature share: the client asked for another message', async () => asCoordinator('node1', 'POST', '/sign/share', { body: { ...(await signingSession()), message: 'AA==' }, env: clientEnvelope(stack.admin, 'POST', '/keys/signer/sign', { message: 'AQ==' }) }), 403, 'client_request_mismatch'],
  ['forged signature share: a client the key does not allow', async () => asCoordinator('node1', 'POST', '/sign/share', { body: { ...(await signingSession()), message: 'AA==' }, env: clientEnvelope(alice, 'POST', '/keys/signer/sign', { message: 'AA==' }) }), 403, 'not_authorized'],
  ['forged reshare: a refresh turned into a 2-of-2 reshare', () => {
    const participants = [1, 2].map((i) => ({ nodeId: `node${i}`, identifier: identifierFor(i) }));
    return asCoordinator('node1', 'POST', '/reshare/deal', { body: { sessionId: randomUUID(), keyId: 'shared', version: 1, dealers: participants.map((p) => p.identifier), threshold: 2, participants }, env: clientEnvelope(stack.admin, 'POST', '/keys/shared/refresh', {}) });
  }, 403, 'client_request_mismatch'],
  ['forged deletion of the last version of a key', () => asCoordinator('node1', 'DELETE', '/fragment', { query: { keyId: 'shared', version: '1' }, env: clientEnvelope(stack.admin, 'POST', '/keys/shared/refresh', {}) }), 403, 'client_request_mismatch'],
  ['forged rollback of a key the request did not create', () => asCoordinator('node1', 'DELETE', '/fragment', { query: { keyId: 'shared', version: '1' }, env: clientEnvelope(stack.admin, 'POST', '/keys', { keyId: 'shared', secretHex: 'withheld' }) }), 403, 'client_request_mismatch'],
  ['approvals of a request lasting 48 h, at the node', async () => {
    const recipient = recipientKey();
    const expiresAt = Date.now() + 48 * 3600_000;
    const req = await vaultRequest(recipient, expiresAt);
    return forgedFragment({ ...aliceReconstructs({ recipient, expiresAt }, 'vault'), approvals: [bob, carol].map((w) => ({ approver: w.name, signature: signApproval(w.privateKey, req) })) }, 'vault', recipient);
  }, 403, 'approvals_expired'],
  ['forged description of a destroyed key, at the node', () => asCoordinator('node1', 'GET', '/key', { query: { keyId: 'gone' } }), 410, 'key_destroyed'],
  // Lifecycle.
  ['reconstruction of a destroyed key', () => reconstructEndToEnd(stack, 'gone'), 410, 'key_destroyed'],
  ['description of a destroyed key', () => call(stack, 'GET', '/keys/gone'), 410, 'key_destroyed'],
  ['re-creating a destroyed key id', () => call(stack, 'POST', '/keys', { body: { keyId: 'gone', length: 8 } }), 410, 'key_destroyed'],
  ['reviving a destroyed key', () => call(stack, 'POST', '/keys/gone/state', { body: { state: 'active' } }), 410, 'key_destroyed'],
];

describe(`${cases.length} hostile requests each get a clear 4xx with a stable code`, () => {
  const seen: { name: string; status: number; text: string }[] = [];

  it.each(cases)('%s', async (name, send, status, code) => {
    const r = await send();
    seen.push({ name, status: r.status, text: r.text });
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status, code });
    expect(r.text).not.toMatch(/\n\s+at |Error:|stack/);
    for (const s of released) expect(r.text.toLowerCase()).not.toContain(Buffer.from(s.bytes).toString('hex'));
  });

  it('none of them got a 5xx, and no secret reached any log', async () => {
    expect(seen.length).toBe(cases.length);
    expect(seen.filter((s) => s.status >= 500)).toEqual([]);
    const scan = await scanLogForSecrets(stack, released);
    expect(scan.leaks).toEqual([]);
  });

  it('nothing the coordinator stores (audit, replay, commitments, approvals) holds a key or a share', async () => {
    const scan = await scanTablesForSecrets(stack, released);
    expect(scan.tables.length).toBeGreaterThanOrEqual(4);
    expect(scan.lines).toBeGreaterThan(100);
    expect(scan.shares).toBeGreaterThan(0);
    expect(scan.leaks).toEqual([]);
    // Destruction is audited by every node.
    const text = JSON.stringify(await auditOf('gone'));
    for (const n of stack.proxies.keys()) expect(text).toContain(`node#${n}#`);
  });
});
