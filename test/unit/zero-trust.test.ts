/**
 * Zero trust, unit level: client request signatures and approvals (pure), key policy and
 * lifecycle (pure), and the node's own checks (NodeAccess, ClientGate) over in-memory fakes.
 * No network, no AWS.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import SMALL_ORDER_POINTS from '../../fixtures/ed25519-small-order-points.test-vectors.json';
import {
  approvalDigest,
  assertClientKey,
  canonicalClientRequest,
  decodeEnvelope,
  encodeEnvelope,
  isSoundEd25519PublicKey,
  signApproval,
  signClientRequest,
  verifyApproval,
  verifyClientRequest,
  type ApprovalRequest,
  type ClientEnvelope,
  type ClientRequest,
} from '../../lib/crypto/client-auth';
import {
  assertTransition,
  assertUsable,
  defaultPolicy,
  KEY_STATES,
  matches,
  OPERATIONS,
  policySchema,
  requirePermission,
  type KeyState,
  type Policy,
  type PolicyInput,
} from '../../lib/access/policy';
import { NodeAccess, type KeyControl } from '../../lib/node/access';
import { ClientGate } from '../../lib/node/gate';
import { toB64, toB64url, utf8 } from '../../lib/encoding';
import { FedkmsError, FragmentCorruptedError } from '../../lib/errors';
import { identity, type Identity } from '../support/identities';
import { MemoryReplay, MemoryStore } from '../support/fakes';

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------


/** The code of the FedkmsError a call throws (sync or async), with its class and status, or 'ok'. */
async function outcome(f: () => unknown): Promise<{ code: string; status?: number; name?: string }> {
  try {
    await f();
    return { code: 'ok' };
  } catch (e) {
    if (e instanceof FedkmsError) return { code: e.code, status: e.status, name: e.name };
    throw e;
  }
}
const code = async (f: () => unknown) => (await outcome(f)).code;

/** Ed25519 group order L. */
const L = ed25519.Point.Fn.ORDER;
const leToBig = (b: Uint8Array) => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
const bigToLe = (n: bigint, len = 32) => Uint8Array.from({ length: len }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));

/** The same signature with S replaced by S + L: equal mod L, so only a strict S < L check rejects it. */
function malleate(b64sig: string): string {
  const sig = Buffer.from(b64sig, 'base64');
  const s = leToBig(sig.subarray(32)) + L;
  expect(s < 1n << 256n).toBe(true);
  return toB64(Uint8Array.from([...sig.subarray(0, 32), ...bigToLe(s)]));
}

// ---------------------------------------------------------------------------------------
// lib/crypto/client-auth.ts
// ---------------------------------------------------------------------------------------

describe('client request signatures (client-auth)', () => {
  const alice = identity('alice');
  const base: ClientRequest = {
    client: 'alice',
    method: 'POST',
    path: '/keys/k1/sign',
    query: { version: '2', mode: 'raw' },
    body: '{"message":"aGVsbG8="}',
    timestamp: '1700000000000',
    requestId: '0123456789abcdef-0123',
  };
  const signed = { ...base, signature: signClientRequest(alice.sk, base) };

  it('round-trips: a request verifies under its signer key only', () => {
    expect(verifyClientRequest(alice.pk, signed)).toBe(true);
    expect(verifyClientRequest(identity('bob').pk, signed)).toBe(false);
  });

  it('is canonical: query key order does not matter, every field is a separate line', () => {
    const reordered = { ...base, query: { mode: 'raw', version: '2' } };
    expect(canonicalClientRequest(reordered)).toBe(canonicalClientRequest(base));
    expect(verifyClientRequest(alice.pk, { ...reordered, signature: signed.signature })).toBe(true);
    expect(canonicalClientRequest(base).split('\n')).toHaveLength(8);
  });

  // Every field the client signed is bound: a relay that edits any of them gets a failed verification.
  it.each<[string, Partial<ClientRequest>]>([
    ['method', { method: 'PUT' }],
    ['path', { path: '/keys/k2/sign' }],
    ['query value', { query: { version: '3', mode: 'raw' } }],
    ['query key added', { query: { ...base.query, extra: '' } }],
    ['query key removed', { query: { version: '2' } }],
    ['query split across = and &', { query: { version: '2&mode=raw' } }],
    ['body', { body: '{"message":"aGVsbG9="}' }],
    ['empty body', { body: '' }],
    ['timestamp', { timestamp: '1700000000001' }],
    ['requestId', { requestId: '0123456789abcdef-0124' }],
    ['client name', { client: 'mallory' }],
  ])('any change to the %s breaks verification', (_what, change) => {
    expect(verifyClientRequest(alice.pk, { ...signed, ...change })).toBe(false);
  });

  it('rejects malformed signatures without throwing', () => {
    // 64 bytes are 86 base64 characters and '=='; the 86th carries 4 unused bits, which must be zero.
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const last = ALPHABET.indexOf(signed.signature[85]!);
    const nonCanonical = `${signed.signature.slice(0, 85)}${ALPHABET[last | 1]}==`;
    for (const signature of ['', 'not base64!', toB64(randomBytes(63)), toB64(randomBytes(64)), nonCanonical]) {
      expect(verifyClientRequest(alice.pk, { ...signed, signature })).toBe(false);
    }
  });

  it('rejects a non-canonical scalar (S >= L): no malleable second signature', () => {
    expect(verifyClientRequest(alice.pk, { ...signed, signature: malleate(signed.signature) })).toBe(false);
  });
});

describe('client envelopes (client-auth)', () => {
  const alice = identity('alice');
  const request: ClientRequest = {
    client: 'alice',
    method: 'POST',
    path: '/keys/k1/reconstruct',
    query: {},
    body: '{"recipient":"abc"}',
    timestamp: '1700000000000',
    requestId: randomUUID(),
  };
  const envelope: ClientEnvelope = {
    ...request,
    signature: signClientRequest(alice.sk, request),
    approvals: [{ approver: 'bob', signature: toB64(randomBytes(64)) }],
  };
  const raw = (value: unknown) => toB64url(utf8(JSON.stringify(value)));
  const invalid = async (input: unknown) => outcome(() => decodeEnvelope(input));
  const CLIENT_AUTH_INVALID = { code: 'client_auth_invalid', status: 401, name: 'UnauthorizedError' };

  it('round-trips through base64url JSON, and the decoded request still verifies', () => {
    const encoded = encodeEnvelope(envelope);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
    const decoded = decodeEnvelope(encoded);
    expect(decoded).toEqual(envelope);
    expect(verifyClientRequest(alice.pk, decoded)).toBe(true);
    // A JSON body field (not a header) arrives already parsed.
    expect(decodeEnvelope(JSON.parse(JSON.stringify(envelope)))).toEqual(envelope);
  });

  it.each<[string, unknown]>([
    ['empty string', ''],
    ['non-base64url characters', 'abc!def'],
    ['base64 padding', `${encodeEnvelope(envelope)}=`],
    ['base64url of non-JSON', toB64url(utf8('not json'))],
    ['base64url of JSON that is not an object', raw([1, 2])],
    ['an unknown top-level field', raw({ ...envelope, admin: true })],
    ['an unknown field in an approval', raw({ ...envelope, approvals: [{ approver: 'bob', signature: 'x', extra: 1 }] })],
    ['a missing field', raw({ ...envelope, requestId: undefined })],
    ['a bad client name', raw({ ...envelope, client: 'Alice' })],
    ['a lowercase method', raw({ ...envelope, method: 'post' })],
    ['a timestamp in another form', raw({ ...envelope, timestamp: '2023-11-14' })],
    ['a short request id', raw({ ...envelope, requestId: 'abc' })],
    ['an oversized signature', raw({ ...envelope, signature: 'A'.repeat(101) })],
    ['an oversized body', raw({ ...envelope, body: 'x'.repeat(64 * 1024 + 1) })],
    ['too many approvals', raw({ ...envelope, approvals: Array.from({ length: 17 }, (_, i) => ({ approver: `a${i}`, signature: 'x' })) })],
    ['an oversized raw header', 'A'.repeat(96 * 1024 + 1)],
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
  ])('rejects %s as client_auth_invalid (401)', async (_what, input) => {
    expect(await invalid(input)).toEqual(CLIENT_AUTH_INVALID);
  });
});

describe('reconstruction approvals (client-auth)', () => {
  const bob = identity('bob');
  const request: ApprovalRequest = { keyId: 'k1', version: 2, requester: 'alice', recipient: 'UkVDSVBJRU5U', expiresAt: 1_700_000_060_000 };

  // An approval for one request must never count for another: every field is in the digest.
  it.each<[keyof ApprovalRequest, ApprovalRequest[keyof ApprovalRequest]]>([
    ['keyId', 'k2'],
    ['version', 3],
    ['requester', 'mallory'],
    ['recipient', 'T1RIRVI='],
    ['expiresAt', 1_700_000_060_001],
  ])('approvalDigest binds %s', (field, value) => {
    const other = { ...request, [field]: value };
    expect(approvalDigest(other)).not.toBe(approvalDigest(request));
    expect(verifyApproval(bob.pk, other, signApproval(bob.sk, request))).toBe(false);
  });

  it('approvalDigest is deterministic and independent of field order', () => {
    const { expiresAt, recipient, requester, version, keyId } = request;
    expect(approvalDigest({ expiresAt, recipient, requester, version, keyId })).toBe(approvalDigest(request));
    expect(approvalDigest(request)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('verifyApproval accepts the approver signature and nothing else', () => {
    const sig = signApproval(bob.sk, request);
    expect(verifyApproval(bob.pk, request, sig)).toBe(true);
    expect(verifyApproval(identity('carol').pk, request, sig)).toBe(false);
    expect(verifyApproval(bob.pk, request, malleate(sig))).toBe(false);
    expect(verifyApproval(bob.pk, request, 'garbage!')).toBe(false);
    expect(verifyApproval(bob.pk, request, toB64(randomBytes(32)))).toBe(false);
  });
});

describe('client public keys (client-auth)', () => {
  const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
  const p = ed25519.Point.Fp.ORDER;
  // The eight torsion points (orders 1, 2, 4, 8), each in its canonical encoding.
  const SMALL_ORDER = SMALL_ORDER_POINTS.points.map((x) => x.hex);

  it('accepts a real key', () => {
    for (let i = 0; i < 8; i++) expect(isSoundEd25519PublicKey(identity('x').pk)).toBe(true);
  });

  it('rejects the identity and every small-order point', () => {
    for (const h of SMALL_ORDER) {
      expect(ed25519.Point.fromBytes(hex(h)).isSmallOrder()).toBe(true); // sanity: they are real points
      expect(isSoundEd25519PublicKey(hex(h))).toBe(false);
    }
  });

  it('rejects a mixed-order point (real key plus a torsion component)', () => {
    const mixed = ed25519.Point.fromBytes(identity('x').pk).add(ed25519.Point.fromBytes(hex(SMALL_ORDER[4]!)));
    expect(isSoundEd25519PublicKey(mixed.toBytes())).toBe(false);
  });

  it('rejects an encoding that is not on the curve', () => {
    const offCurve = bigToLe(2n); // y = 2 has no x
    expect(() => ed25519.Point.fromBytes(offCurve)).toThrow();
    expect(isSoundEd25519PublicKey(offCurve)).toBe(false);
  });

  it('rejects non-canonical encodings (y >= p, and x = 0 with the sign bit set)', () => {
    // y + p for y in {0, 1, 3}: each decodes under lenient (ZIP-215) rules, so only canonicality stops it.
    for (const y of [0n, 1n, 3n]) {
      const enc = bigToLe(y + p);
      expect(() => ed25519.Point.fromBytes(enc, true)).not.toThrow();
      expect(isSoundEd25519PublicKey(enc)).toBe(false);
    }
    expect(isSoundEd25519PublicKey(bigToLe(1n | (1n << 255n)))).toBe(false); // "-0": the identity again
  });

  it('rejects wrong lengths', () => {
    const pk = identity('x').pk;
    for (const raw of [new Uint8Array(), pk.subarray(0, 31), Uint8Array.from([...pk, 0]), new Uint8Array(64)]) {
      expect(isSoundEd25519PublicKey(raw)).toBe(false);
    }
  });

  it('assertClientKey applies the same rule to base64 input (400 invalid_public_key)', async () => {
    expect(await code(() => assertClientKey(toB64(identity('x').pk)))).toBe('ok');
    for (const bad of [toB64(hex(SMALL_ORDER[0]!)), 'not base64!', toB64(new Uint8Array(31))]) {
      expect(await outcome(() => assertClientKey(bad))).toEqual({ code: 'invalid_public_key', status: 400, name: 'BadRequestError' });
    }
  });
});

// ---------------------------------------------------------------------------------------
// lib/access/policy.ts
// ---------------------------------------------------------------------------------------

describe('key policy (access/policy)', () => {
  const alice = { name: 'alice', roles: [] as string[] };
  const admin = { name: 'root', roles: ['admin'] };
  const auditor = { name: 'audit-bot', roles: ['auditor'] };
  const stranger = { name: 'mallory', roles: ['approver'] };

  it('defaultPolicy gives the creator and admins everything, auditors describe, no server-side combine', () => {
    const p = defaultPolicy('alice');
    expect(p).toEqual({
      sign: ['client:alice', 'role:admin'],
      reconstruct: ['client:alice', 'role:admin'],
      decrypt: ['client:alice', 'role:admin'],
      describe: ['client:alice', 'role:admin', 'role:auditor'],
      admin: ['client:alice', 'role:admin'],
      approvals: { required: 0, approvers: ['role:approver'] },
      serverSideCombine: false,
    });
    expect(policySchema.parse(p)).toEqual(p);
  });

  it('defaultPolicy takes each given field and defaults the rest', () => {
    const input: PolicyInput = { sign: ['role:signer'], approvals: { required: 2, approvers: ['client:bob'] }, serverSideCombine: true };
    const p = defaultPolicy('alice', input);
    expect(p.sign).toEqual(['role:signer']);
    expect(p.approvals).toEqual({ required: 2, approvers: ['client:bob'] });
    expect(p.serverSideCombine).toBe(true);
    expect(p.reconstruct).toEqual(['client:alice', 'role:admin']);
  });

  it('matches by client name or by role, never one for the other', () => {
    expect(matches(['client:alice'], alice)).toBe(true);
    expect(matches(['role:admin'], admin)).toBe(true);
    expect(matches(['client:alice'], admin)).toBe(false);
    expect(matches(['role:alice'], alice)).toBe(false); // a role named like the client is not the client
    expect(matches(['client:admin'], { name: 'root', roles: ['admin'] })).toBe(false); // nor a client named like the role
    expect(matches([], admin)).toBe(false);
  });

  it('requirePermission allows listed principals and refuses others with 403 not_authorized', async () => {
    const p = defaultPolicy('alice');
    for (const op of OPERATIONS) {
      expect(await code(() => requirePermission(p, alice, op, 'k1'))).toBe('ok');
      expect(await code(() => requirePermission(p, admin, op, 'k1'))).toBe('ok');
      expect(await outcome(() => requirePermission(p, stranger, op, 'k1'))).toEqual({ code: 'not_authorized', status: 403, name: 'ForbiddenError' });
    }
    expect(await code(() => requirePermission(p, auditor, 'describe', 'k1'))).toBe('ok');
    expect(await code(() => requirePermission(p, auditor, 'sign', 'k1'))).toBe('not_authorized');
    expect(await code(() => requirePermission(p, auditor, 'reconstruct', 'k1'))).toBe('not_authorized');
  });

  // NIST SP 800-57 Part 1 §7 (suspended and deactivated both map to 'disabled').
  const ALLOWED: [KeyState, KeyState][] = [
    ['pre-active', 'active'],
    ['pre-active', 'compromised'],
    ['pre-active', 'destroyed'],
    ['active', 'disabled'],
    ['active', 'compromised'],
    ['disabled', 'active'],
    ['disabled', 'compromised'],
    ['disabled', 'destroyed'],
    ['compromised', 'destroyed'],
  ];
  const allowed = (from: KeyState, to: KeyState) => ALLOWED.some(([f, t]) => f === from && t === to);
  const ILLEGAL = KEY_STATES.flatMap((from) => KEY_STATES.filter((to) => !allowed(from, to)).map((to): [KeyState, KeyState] => [from, to]));

  it.each(ALLOWED)('assertTransition allows %s -> %s', async (from, to) => {
    expect(await code(() => assertTransition('k1', from, to))).toBe('ok');
  });

  it('assertTransition refuses every other transition (409 illegal_transition)', async () => {
    // The named ones first, then the full complement of the allowed set (self-transitions included).
    for (const [from, to] of [['destroyed', 'active'], ['disabled', 'pre-active'], ['compromised', 'active'], ['active', 'destroyed'], ...ILLEGAL] as [KeyState, KeyState][]) {
      expect(await outcome(() => assertTransition('k1', from, to))).toEqual({ code: 'illegal_transition', status: 409, name: 'ConflictError' });
    }
    expect(ILLEGAL).toHaveLength(KEY_STATES.length ** 2 - ALLOWED.length);
  });

  it('assertUsable: sign and reconstruct need an active key', async () => {
    for (const op of ['sign', 'reconstruct'] as const) {
      expect(await code(() => assertUsable('k1', 'active', op))).toBe('ok');
      expect(await outcome(() => assertUsable('k1', 'pre-active', op))).toMatchObject({ code: 'key_pre_active', status: 409 });
      expect(await outcome(() => assertUsable('k1', 'disabled', op))).toMatchObject({ code: 'key_disabled', status: 409 });
      expect(await outcome(() => assertUsable('k1', 'compromised', op))).toMatchObject({ code: 'key_compromised', status: 409 });
    }
  });

  it('assertUsable: describe and admin work in every state but destroyed', async () => {
    for (const state of KEY_STATES.filter((s) => s !== 'destroyed')) {
      expect(await code(() => assertUsable('k1', state, 'describe'))).toBe('ok');
      expect(await code(() => assertUsable('k1', state, 'admin'))).toBe('ok');
    }
  });

  it('assertUsable: a destroyed key answers 410 key_destroyed to every operation', async () => {
    for (const op of OPERATIONS) {
      expect(await outcome(() => assertUsable('k1', 'destroyed', op))).toEqual({ code: 'key_destroyed', status: 410, name: 'KeyGoneError' });
    }
  });
});

// ---------------------------------------------------------------------------------------
// lib/node/access.ts and lib/node/gate.ts over MemoryStore / MemoryReplay
// ---------------------------------------------------------------------------------------

const MAX_SKEW_S = 60;

function node(opts: { bootstrapAdmin?: Uint8Array | undefined; wrapKey?: Uint8Array; store?: MemoryStore; nodeId?: string } = {}) {
  const store = opts.store ?? new MemoryStore();
  const replay = new MemoryReplay();
  const wrapKey = opts.wrapKey ?? new Uint8Array(randomBytes(32));
  const access = new NodeAccess({ nodeId: opts.nodeId ?? 'node1', wrapKey, store, replay, bootstrapAdmin: opts.bootstrapAdmin, maxSkewS: MAX_SKEW_S });
  return { store, replay, wrapKey, access };
}

const register = (access: NodeAccess, id: Identity, roles: string[] = [], status: 'active' | 'disabled' = 'active') =>
  access.putClient({ name: id.name, publicKey: toB64(id.pk), roles, status });

/**
 * A client-signed request as a node receives it: signed with the real client signer,
 * then encoded and decoded as the coordinator relays it.
 */
function envelope(
  id: Identity,
  req: { method: string; path: string; body?: unknown; query?: Record<string, string>; timestamp?: number; requestId?: string },
  approvals?: ClientEnvelope['approvals'],
): ClientEnvelope {
  const r: ClientRequest = {
    client: id.name,
    method: req.method,
    path: req.path,
    query: req.query ?? {},
    body: req.body === undefined ? '' : typeof req.body === 'string' ? req.body : JSON.stringify(req.body),
    timestamp: String(req.timestamp ?? Date.now()),
    requestId: req.requestId ?? randomUUID(),
  };
  return decodeEnvelope(encodeEnvelope({ ...r, signature: signClientRequest(id.sk, r), ...(approvals ? { approvals } : {}) }));
}

describe('NodeAccess: registry and control documents', () => {
  const admin = identity('admin');
  const alice = identity('alice');

  it('recognises the bootstrap admin from configuration', async () => {
    const { access } = node({ bootstrapAdmin: admin.pk });
    expect(await access.client('admin')).toEqual({ name: 'admin', publicKey: toB64(admin.pk), roles: ['admin'], status: 'active' });
    expect((await access.listClients()).map((c) => c.name)).toEqual(['admin']);
    const a = await access.authenticate(envelope(admin, { method: 'POST', path: '/clients', body: { name: 'alice' } }), 'PUT /client#alice');
    expect(a.who).toEqual({ name: 'admin', roles: ['admin'] });
    expect(a.body).toEqual({ name: 'alice' });
  });

  it('has no admin without configuration, and a registry entry named admin overrides the bootstrap key', async () => {
    expect(await node().access.client('admin')).toBeNull();
    const { access } = node({ bootstrapAdmin: admin.pk });
    await register(access, admin, ['admin'], 'disabled');
    expect(await access.client('admin')).toMatchObject({ status: 'disabled' });
    expect(await code(() => access.authenticate(envelope(admin, { method: 'POST', path: '/clients' }), 's'))).toBe('client_disabled');
  });

  it('round-trips clients and controls through sealed documents', async () => {
    const { access, store } = node();
    await register(access, alice, ['key-creator']);
    const control = access.newControl('k1', 'alice', undefined, 'active');
    await access.putControl(control);
    expect(await access.client('alice')).toEqual({ name: 'alice', publicKey: toB64(alice.pk), roles: ['key-creator'], status: 'active' });
    expect(await access.control('k1')).toEqual(control);
    expect(await access.control('k2')).toBeNull();
    // At rest the documents are ciphertext: neither the key nor the policy is readable in the bucket.
    expect(store.docs.get('client/alice')).not.toContain(toB64(alice.pk));
    expect(store.docs.get('control/k1')).not.toContain('client:alice');
  });

  it('refuses a document written with another wrap key (FragmentCorruptedError)', async () => {
    const { access, store } = node();
    const intruder = node({ store }); // same bucket, another key
    await register(intruder.access, alice, ['admin']);
    await intruder.access.putControl(intruder.access.newControl('k1', 'alice', { serverSideCombine: true }, 'active'));
    await expect(access.client('alice')).rejects.toThrow(FragmentCorruptedError);
    await expect(access.control('k1')).rejects.toThrow(FragmentCorruptedError);
    await expect(access.listClients()).rejects.toThrow(FragmentCorruptedError);
    // The same wrap key under another node id does not open it either (the AAD names the node).
    const twin = node({ store, wrapKey: intruder.wrapKey, nodeId: 'node2' });
    await expect(twin.access.client('alice')).rejects.toThrow(FragmentCorruptedError);
  });

  it('refuses a document edited, moved or planted in the store', async () => {
    const { access, store } = node();
    await register(access, alice, []);
    await access.putControl(access.newControl('k1', 'alice', undefined, 'active'));

    // Edited ciphertext.
    const box = JSON.parse(store.docs.get('control/k1')!) as { ct: string };
    const ct = Buffer.from(box.ct, 'base64');
    ct[0] = ct[0]! ^ 1;
    store.docs.set('control/k1', JSON.stringify({ ...box, ct: ct.toString('base64') }));
    await expect(access.control('k1')).rejects.toMatchObject({ code: 'fragment_corrupted' });

    // A valid document copied under another name (the AAD names the document).
    store.docs.set('client/mallory', store.docs.get('client/alice')!);
    await expect(access.client('mallory')).rejects.toThrow(FragmentCorruptedError);

    // Plain JSON planted by someone with bucket write access only.
    store.docs.set('client/eve', JSON.stringify({ name: 'eve', publicKey: toB64(identity('eve').pk), roles: ['admin'], status: 'active' }));
    await expect(access.client('eve')).rejects.toThrow(FragmentCorruptedError);
    store.docs.set('client/junk', 'not json');
    await expect(access.client('junk')).rejects.toThrow(FragmentCorruptedError);
  });
});

describe('NodeAccess.authenticate', () => {
  const alice = identity('alice');
  const now = 1_700_000_000_000;
  const req = (over: { timestamp?: number; requestId?: string; body?: unknown } = {}) =>
    envelope(alice, { method: 'POST', path: '/keys/k1/sign', body: { message: 'aGk=' }, timestamp: now, ...over });
  const setup = async (status: 'active' | 'disabled' = 'active') => {
    const n = node();
    await register(n.access, alice, ['signer'], status);
    return n;
  };

  it('accepts a fresh signed request and returns the principal and parsed body', async () => {
    const { access } = await setup();
    const a = await access.authenticate(req(), 'POST /sign/share#s1', now);
    expect(a.who).toEqual({ name: 'alice', roles: ['signer'] });
    expect(a.body).toEqual({ message: 'aGk=' });
    expect(a.request.path).toBe('/keys/k1/sign');
  });

  it('parses only a JSON object body; anything else is an empty body', async () => {
    const { access } = await setup();
    expect((await access.authenticate(req({ body: 'not json' }), 's', now)).body).toEqual({});
    expect((await access.authenticate(req({ body: [1, 2] }), 's', now)).body).toEqual({});
    expect((await access.authenticate(req({ body: '' }), 's', now)).body).toEqual({});
  });

  it('refuses a missing envelope (client_auth_missing)', async () => {
    const { access } = await setup();
    expect(await outcome(() => access.authenticate(undefined, 's', now))).toEqual({ code: 'client_auth_missing', status: 401, name: 'UnauthorizedError' });
  });

  it('refuses a stale or future request but accepts one at the edge of the window (request_stale)', async () => {
    const { access } = await setup();
    const skew = MAX_SKEW_S * 1000;
    expect(await code(() => access.authenticate(req({ timestamp: now - skew - 1 }), 's', now))).toBe('request_stale');
    expect(await code(() => access.authenticate(req({ timestamp: now + skew + 1 }), 's', now))).toBe('request_stale');
    expect(await code(() => access.authenticate(req({ timestamp: now - skew }), 's', now))).toBe('ok');
    expect(await code(() => access.authenticate(req({ timestamp: now + skew }), 's', now))).toBe('ok');
  });

  it('refuses an unregistered client (client_unknown)', async () => {
    const { access } = await setup();
    const env = envelope(identity('zed'), { method: 'POST', path: '/keys/k1/sign', timestamp: now });
    expect(await outcome(() => access.authenticate(env, 's', now))).toMatchObject({ code: 'client_unknown', status: 401 });
  });

  it('refuses a request not signed by the registered key, or altered after signing (client_signature_invalid)', async () => {
    const { access } = await setup();
    const forged = envelope({ ...identity('alice'), name: 'alice' }, { method: 'POST', path: '/keys/k1/sign', timestamp: now });
    expect(await code(() => access.authenticate(forged, 's', now))).toBe('client_signature_invalid');
    const altered = { ...req(), path: '/keys/k2/sign' };
    expect(await code(() => access.authenticate(altered, 's', now))).toBe('client_signature_invalid');
  });

  it('refuses a disabled client (client_disabled)', async () => {
    const { access } = await setup('disabled');
    expect(await outcome(() => access.authenticate(req(), 's', now))).toMatchObject({ code: 'client_disabled', status: 401 });
  });

  it('spends a request id once per scope: replay refused, another scope accepted', async () => {
    const { access } = await setup();
    const env = req();
    expect(await code(() => access.authenticate(env, 'GET /fragment', now))).toBe('ok');
    expect(await code(() => access.authenticate(env, 'GET /fragment', now))).toBe('request_replayed');
    expect(await code(() => access.authenticate(env, 'POST /sign/share#s2', now))).toBe('ok');
  });

  it('does not spend the request id on a forged copy (the signature is checked first)', async () => {
    const { access } = await setup();
    const env = req();
    expect(await code(() => access.authenticate({ ...env, body: '{"message":"ZXZpbA=="}' }, 'GET /fragment', now))).toBe('client_signature_invalid');
    expect(await code(() => access.authenticate(env, 'GET /fragment', now))).toBe('ok');
  });
});

describe('NodeAccess.checkApprovals', () => {
  const now = Date.now();
  const [alice, bob, carol, dave, eve, frank] = ['alice', 'bob', 'carol', 'dave', 'eve', 'frank'].map(identity) as [Identity, Identity, Identity, Identity, Identity, Identity];
  const request: ApprovalRequest = { keyId: 'k1', version: 1, requester: 'alice', recipient: 'UkVDSVBJRU5U', expiresAt: now + 60_000 };
  const policy = (required: number, approvers = ['role:approver']): Policy => defaultPolicy('alice', { approvals: { required, approvers } });
  const approve = (id: Identity, r: ApprovalRequest = request, as = id.name) => ({ approver: as, signature: signApproval(id.sk, r) });

  let access: NodeAccess;
  beforeAll(async () => {
    ({ access } = node());
    await register(access, alice, ['approver']);
    await register(access, bob, ['approver']);
    await register(access, carol, ['approver']);
    await register(access, dave, ['approver']);
    await register(access, eve, ['approver'], 'disabled');
    await register(access, frank, []); // registered but not an approver
  });

  it('needs nothing when the policy requires no approvals', async () => {
    expect(await access.checkApprovals(policy(0), { ...request, expiresAt: 0 }, undefined, now)).toBe(0);
  });

  it('counts distinct, active, allowed approvers other than the requester', async () => {
    expect(await access.checkApprovals(policy(2), request, [approve(bob), approve(carol)], now)).toBe(2);
    const noisy = [
      approve(alice), // the requester approving herself
      approve(bob),
      approve(bob), // the same approver twice
      approve(eve), // disabled
      approve(frank), // not allowed by the policy
      approve(identity('zed')), // not registered
      approve(dave, { ...request, recipient: 'T1RIRVI=' }), // another request
      approve(carol, request, 'dave'), // carol's signature claimed as dave's
      approve(carol),
    ];
    expect(await access.checkApprovals(policy(2), request, noisy, now)).toBe(2);
  });

  it('follows the policy approver list (a named client counts, a role outside the list does not)', async () => {
    expect(await access.checkApprovals(policy(1, ['client:frank']), request, [approve(frank), approve(bob)], now)).toBe(1);
    expect(await code(() => access.checkApprovals(policy(1, ['client:frank']), request, [approve(bob)], now))).toBe('approvals_required');
  });

  it('refuses too few valid approvals (403 approvals_required)', async () => {
    const few = [approve(alice), approve(bob), approve(bob), approve(eve), approve(frank)];
    expect(await outcome(() => access.checkApprovals(policy(2), request, few, now))).toEqual({ code: 'approvals_required', status: 403, name: 'ForbiddenError' });
    expect(await code(() => access.checkApprovals(policy(1), request, undefined, now))).toBe('approvals_required');
  });

  it('refuses an expired request whatever the approvals (403 approvals_expired)', async () => {
    const expired = { ...request, expiresAt: now };
    expect(await outcome(() => access.checkApprovals(policy(1), expired, [approve(bob, expired)], now))).toEqual({ code: 'approvals_expired', status: 403, name: 'ForbiddenError' });
  });
});

describe('ClientGate.fragment', () => {
  const alice = identity('alice');
  const bob = identity('bob');
  const recipient = toB64(randomBytes(32));

  async function setup(policy: PolicyInput = {}, versions: number[] = [1]) {
    const n = node();
    await register(n.access, alice, []);
    await register(n.access, bob, ['approver']);
    await n.access.putControl(n.access.newControl('k1', 'alice', policy, 'active'));
    const gate = new ClientGate(n.access, async () => versions.at(-1), { claims: { scope: 'node1', guard: n.replay } });
    return { ...n, gate };
  }
  const reconstruct = (body: unknown, path = '/keys/k1/reconstruct', method = 'POST', id = alice, approvals?: ClientEnvelope['approvals']) =>
    envelope(id, { method, path, body }, approvals);

  it('serves the key owner end to end when the client named the recipient', async () => {
    const { gate } = await setup();
    const g = await gate.fragment(reconstruct({ recipient }), 'k1', recipient);
    expect(g).toMatchObject({ actor: 'client:alice', mode: 'end-to-end', control: { keyId: 'k1', owner: 'alice' } });
  });

  it('refuses a client request for another key or another route (client_request_mismatch)', async () => {
    const { gate } = await setup();
    for (const env of [reconstruct({ recipient }, '/keys/k2/reconstruct'), reconstruct({ recipient }, '/keys/k1/sign'), reconstruct({ recipient }, '/keys/k1/reconstruct', 'PUT')]) {
      expect(await outcome(() => gate.fragment(env, 'k1', recipient))).toMatchObject({ code: 'client_request_mismatch', status: 403 });
    }
  });

  it('refuses to seal to another recipient than the client named (recipient_mismatch)', async () => {
    const { gate } = await setup();
    expect(await code(() => gate.fragment(reconstruct({ recipient }), 'k1', toB64(randomBytes(32))))).toBe('recipient_mismatch');
  });

  it('requires end to end when serverSideCombine is off and no recipient was named', async () => {
    const { gate } = await setup();
    expect(await code(() => gate.fragment(reconstruct({}), 'k1', recipient))).toBe('end_to_end_required');
  });

  it('allows server-side combine only when the policy says so and needs no approvals', async () => {
    expect(await (await setup({ serverSideCombine: true })).gate.fragment(reconstruct({}), 'k1', recipient)).toMatchObject({ mode: 'server-side' });
    const withApprovals = await setup({ serverSideCombine: true, approvals: { required: 1, approvers: ['role:approver'] } });
    expect(await code(() => withApprovals.gate.fragment(reconstruct({}), 'k1', recipient))).toBe('end_to_end_required');
  });

  it('checks the policy and the lifecycle on this node', async () => {
    const { gate, access } = await setup();
    expect(await code(() => gate.fragment(reconstruct({ recipient }, undefined, undefined, bob), 'k1', recipient))).toBe('not_authorized');
    await access.putControl({ ...(await access.control('k1'))!, state: 'disabled' } satisfies KeyControl);
    expect(await code(() => gate.fragment(reconstruct({ recipient }), 'k1', recipient))).toBe('key_disabled');
  });

  it('checks approvals over the exact request: key, latest version, requester, recipient, expiry', async () => {
    const { gate } = await setup({ approvals: { required: 1, approvers: ['role:approver'] } }, [1, 2, 3]);
    const expiresAt = Date.now() + 60_000;
    const approval = (version: number) => [{ approver: 'bob', signature: signApproval(bob.sk, { keyId: 'k1', version, requester: 'alice', recipient, expiresAt }) }];
    const body = { recipient, expiresAt };
    expect(await code(() => gate.fragment(reconstruct(body, undefined, undefined, alice, approval(3)), 'k1', recipient))).toBe('ok');
    // The coordinator asked for an explicit version: the approval must name that one.
    expect(await code(() => gate.fragment(reconstruct(body, undefined, undefined, alice, approval(2)), 'k1', recipient, 2))).toBe('ok');
    expect(await code(() => gate.fragment(reconstruct(body, undefined, undefined, alice, approval(2)), 'k1', recipient))).toBe('approvals_required');
    expect(await code(() => gate.fragment(reconstruct(body), 'k1', recipient))).toBe('approvals_required');
    // No expiry in the signed body: treated as expired.
    expect(await code(() => gate.fragment(reconstruct({ recipient }, undefined, undefined, alice, approval(3)), 'k1', recipient))).toBe('approvals_expired');
  });
});

describe('ClientGate.create', () => {
  const carl = identity('carl'); // a key creator
  const bob = identity('bob'); // a plain client

  async function setup(versions: Record<string, number[]> = {}) {
    const n = node();
    await register(n.access, carl, ['key-creator']);
    await register(n.access, bob, ['approver']);
    const gate = new ClientGate(n.access, async (keyId) => versions[keyId]?.at(-1), { claims: { scope: 'node1', guard: n.replay } });
    return { ...n, gate };
  }
  const createReq = (id: Identity, body: Record<string, unknown>) => envelope(id, { method: 'POST', path: '/keys', body });

  it("writes a sealed control document with the creator's default policy", async () => {
    const { gate, access } = await setup();
    const g = await gate.create(createReq(carl, { keyId: 'k9', type: 'secret' }), 'k9', 'secret', 'PUT /fragment');
    expect(g.actor).toBe('client:carl');
    expect(g.control).toMatchObject({ keyId: 'k9', state: 'active', owner: 'carl', policyVersion: 1, policy: defaultPolicy('carl', {}, 'secret') });
    expect(await access.control('k9')).toEqual(g.control);
  });

  it('takes the policy and initial state the client signed', async () => {
    const { gate } = await setup();
    const policy = { approvals: { required: 1, approvers: ['client:bob'] } };
    const g = await gate.create(createReq(carl, { keyId: 'k9', type: 'ed25519', policy, state: 'pre-active' }), 'k9', 'ed25519', 'POST /dkg/round1');
    expect(g.control.state).toBe('pre-active');
    expect(g.control.policy).toEqual({ ...defaultPolicy('carl', {}, 'ed25519'), ...policy });
  });

  it('refuses clients that may not create keys (not_authorized), writing nothing', async () => {
    const { gate, access } = await setup();
    expect(await outcome(() => gate.create(createReq(bob, { keyId: 'k9', type: 'secret' }), 'k9', 'secret', 'PUT /fragment'))).toMatchObject({ code: 'not_authorized', status: 403 });
    expect(await access.control('k9')).toBeNull();
  });

  it('refuses a create request for another key, type or route (client_request_mismatch)', async () => {
    const { gate } = await setup();
    const cases = [
      createReq(carl, { keyId: 'k8', type: 'secret' }),
      createReq(carl, { keyId: 'k9', type: 'ed25519' }),
      envelope(carl, { method: 'POST', path: '/keys/k9/sign', body: { keyId: 'k9', type: 'secret' } }),
    ];
    for (const env of cases) expect(await code(() => gate.create(env, 'k9', 'secret', 'PUT /fragment'))).toBe('client_request_mismatch');
  });

  it('refuses an existing key (409 key_exists) and a destroyed one (410 key_destroyed)', async () => {
    const { gate, access } = await setup({ k1: [1] });
    const original = access.newControl('k1', 'alice', undefined, 'active');
    await access.putControl(original);
    expect(await outcome(() => gate.create(createReq(carl, { keyId: 'k1', type: 'secret' }), 'k1', 'secret', 'PUT /fragment'))).toMatchObject({ code: 'key_exists', status: 409 });
    expect(await access.control('k1')).toEqual(original);

    await access.putControl(access.newControl('k2', 'alice', undefined, 'active'));
    await access.putControl({ ...(await access.control('k2'))!, state: 'destroyed' });
    expect(await outcome(() => gate.create(createReq(carl, { keyId: 'k2', type: 'secret' }), 'k2', 'secret', 'PUT /fragment'))).toMatchObject({ code: 'key_destroyed', status: 410 });
  });

  it('replaces a stale control document left over from a failed create (no fragment stored)', async () => {
    const { gate, access } = await setup();
    const stale = new Date(Date.now() - 20 * 60_000).toISOString();
    await access.putControl({ ...access.newControl('k3', 'alice', undefined, 'active'), updatedAt: stale, createRequest: 'alice:old-request-id-0001' });
    const g = await gate.create(createReq(carl, { keyId: 'k3', type: 'secret' }), 'k3', 'secret', 'PUT /fragment');
    expect((await access.control('k3'))!.owner).toBe('carl');
    expect(g.control.owner).toBe('carl');
  });

  // Two creators racing for one id: the one whose create is still in flight keeps it.
  it('refuses to take over an id another request is creating right now', async () => {
    const { gate, access } = await setup();
    await access.putControl({ ...access.newControl('k5', 'alice', undefined, 'active'), createRequest: 'alice:in-flight-request-01' });
    expect(await code(() => gate.create(createReq(carl, { keyId: 'k5', type: 'secret' }), 'k5', 'secret', 'PUT /fragment'))).toBe('key_being_created');
    expect((await access.control('k5'))!.owner).toBe('alice');
  });

  // A deleted control document (bucket write access alone) must not let a creator take a key over.
  it('refuses a key whose fragments exist even when its control document is missing', async () => {
    const { gate, access } = await setup({ k4: [1] });
    expect(await code(() => gate.create(createReq(carl, { keyId: 'k4', type: 'secret' }), 'k4', 'secret', 'PUT /fragment'))).toBe('key_exists');
    expect(await access.control('k4')).toBeNull();
  });
});

describe('an import never relays its secret to the nodes', () => {
  it('signs and relays "withheld" in place of secretHex and secretBase64; other bodies byte for byte', async () => {
    const { signedHeaders } = await import('../../lib/client/signer');
    const { clientRequestFromHttp, verifyClientRequest, signedBody } = await import('../../lib/crypto/client-auth');
    const { generateSigningKey } = await import('../../lib/crypto/request-signing');
    const k = generateSigningKey();
    const raw = JSON.stringify({ keyId: 'x', secretHex: 'a94f3d82c1b7e6f9', threshold: 2 });
    const headers = signedHeaders({ name: 'alice', privateKey: k.privateKey }, 'POST', '/keys', raw);
    const relayed = clientRequestFromHttp({ method: 'POST', path: '/keys', query: {}, body: raw, headers });
    expect(relayed.body).not.toMatch(/a94f3d82c1b7e6f9/i);
    expect(JSON.parse(relayed.body)).toEqual({ keyId: 'x', secretHex: 'withheld', threshold: 2 });
    expect(verifyClientRequest(k.publicKey, relayed)).toBe(true);
    const b64 = JSON.stringify({ keyId: 'x', secretBase64: 'qU89gsG35vk=' });
    expect(signedBody('POST', '/keys', b64)).not.toContain('qU89gsG35vk');
    const other = '{"message":"AA==" }';
    expect(signedBody('POST', '/keys/x/sign', other)).toBe(other);
    expect(signedBody('POST', '/keys', '{"keyId":"y","length":8}')).toBe('{"keyId":"y","length":8}');
    expect(signedBody('POST', '/keys', 'not json')).toBe('not json');
  });
});

describe('end-to-end reconstruction with pinned node keys', () => {
  it('rejects relayed fragments that their node did not sign for this request', async () => {
    const { FedkmsClient } = await import('../../lib/client/api');
    const { reconstructEndToEnd } = await import('../../lib/client/reconstruct');
    const { generateSigningKey } = await import('../../lib/crypto/request-signing');
    const { signStatement } = await import('../../lib/crypto/identity');
    const { toB64 } = await import('../../lib/encoding');
    const node1 = generateSigningKey();
    const impostor = generateSigningKey();
    const descriptor = { keyId: 'k', version: 1, type: 'secret', state: 'active', createdAt: new Date(0).toISOString(), publicPackage: { threshold: 1, total: 1, commitments: ['00'.repeat(32)], verifyingShares: { ['01' + '00'.repeat(31)]: '00'.repeat(32) } }, participants: [] };
    const sealedShare = { epk: 'AA==', iv: 'AA==', ct: 'AA==', tag: 'AA==' };
    const fragment = { nodeId: 'node1', identifier: '01' + '00'.repeat(31), keyId: 'k', version: 1, descriptor, sealedShare };
    // A relay that forges the answer: signed by the wrong key, or not at all.
    const fetchImpl = (async (_url: string, init: RequestInit) => {
      const requestId = (init.headers as Record<string, string>)['x-fedkms-client-request-id']!;
      const recipient = JSON.parse(String(init.body)).recipient as string;
      const { fragmentStatement } = await import('../../lib/reconstruction');
      const forged = { ...fragment, signature: signStatement(impostor.privateKey, fragmentStatement(fragment as never, recipient, requestId)) };
      return new Response(JSON.stringify({ threshold: 1, fragments: [forged, { ...fragment, nodeId: 'node1' }] }), { status: 200 });
    }) as unknown as typeof fetch;
    const client = new FedkmsClient('http://relay', { name: 'alice', privateKey: generateSigningKey().privateKey }, fetchImpl);
    const r = await reconstructEndToEnd(client, 'k', { nodeKeys: { node1: toB64(node1.publicKey) }, maxRounds: 1 });
    expect(r.ok).toBe(false);
    expect(r.rejected.map((x) => x.reason)).toEqual(['fragment not signed by that node for this request', 'fragment not signed by that node for this request']);
  });
});
