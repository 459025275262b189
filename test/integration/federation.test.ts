/**
 * The federation end to end, on the real local stack: sls offline serving the node
 * and coordinator Lambdas, s3rver as each node's bucket, dynalite for the audit chain
 * and replay protection. Faults are injected from outside the code under test: node
 * ports closed or delayed, S3 objects edited, DynamoDB stopped.
 */
import { randomUUID } from 'node:crypto';
import { ed25519_FROST } from '@noble/curves/ed25519.js';
import type { LocalStack } from '../../tools/local-stack';
import { aesGcmSeal } from '../../lib/crypto/aead';
import { HEADERS, signRequest } from '../../lib/crypto/request-signing';
import { generateX25519 } from '../../lib/crypto/seal';
import { fromB64, toB64 } from '../../lib/encoding';
import { atRestAad } from '../../lib/node/service';
import { BUDGET_HEADER } from '../../lib/deadline';
import { call, readObject, reconstructEndToEnd, statusOf, testStack, writeObject } from '../support/stack';

const EXAMPLE = 'A94F3D82C1B7E6F9';
const OBJECT = 'keys/example/v1.json';
let stack: LocalStack;

beforeAll(async () => {
  stack = await testStack();
  const r = await call(stack, 'POST', '/keys', { body: { keyId: 'example', secretHex: EXAMPLE, policy: { serverSideCombine: true } } });
  expect(r.status).toBe(201);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

const reconstruct = (keyId = 'example') => call(stack, 'POST', `/keys/${keyId}/reconstruct`);

describe('import and reconstruct', () => {
  it('imports the example key and reconstructs it from t verified shares', async () => {
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(r.body.secret.hex.toUpperCase()).toBe(EXAMPLE);
    expect(r.body.nodes.filter((n: { status: string }) => n.status === 'valid').length).toBeGreaterThanOrEqual(2);
  });

  it('describes the key with its commitments and full availability', async () => {
    const r = await call(stack, 'GET', '/keys/example');
    expect(r.status).toBe(200);
    expect(r.body.key).toMatchObject({ keyId: 'example', version: 1, threshold: 2, total: 3, state: 'active' });
    expect(r.body.key.commitments[0]).toBe(r.body.key.groupPublicKey);
    expect(r.body.availability).toEqual({ available: 3, quorumMargin: 1 });
    expect(JSON.stringify(r.body)).not.toMatch(/signingShare|"share"/);
  });

  it('lists keys with the nodes that hold them', async () => {
    const r = await call(stack, 'GET', '/keys');
    expect(r.status).toBe(200);
    expect(r.body.keys).toContainEqual({ keyId: 'example', latestVersion: 1, heldBy: expect.arrayContaining(['node1', 'node2', 'node3']) });
  });

  it('generates a random key of a requested length, and refuses a duplicate id', async () => {
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'generated', length: 48 } });
    expect(r.status).toBe(201);
    expect(JSON.stringify(r.body)).not.toMatch(/secret"?:\s*\{/);
    const back = await reconstructEndToEnd(stack, 'generated');
    expect(back.status).toBe(200);
    expect(fromB64(back.body.secret.base64)).toHaveLength(48);
    const dup = await call(stack, 'POST', '/keys', { body: { keyId: 'generated', secretHex: '00' } });
    expect(dup.status).toBe(409);
    const still = await reconstructEndToEnd(stack, 'generated');
    expect(still.body.secret.base64).toBe(back.body.secret.base64);
  });

  it('imports secrets from 1 B up to 4 KiB, and refuses larger ones', async () => {
    const big = Buffer.alloc(4096, 0xab).toString('base64');
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'big-4k', secretBase64: big } })).status).toBe(201);
    expect((await reconstructEndToEnd(stack, 'big-4k')).body.secret.base64).toBe(big);
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'tiny', secretHex: '7f', policy: { serverSideCombine: true } } })).status).toBe(201);
    expect((await reconstruct('tiny')).body.secret.hex).toBe('7f');
    const tooBig = await call(stack, 'POST', '/keys', { body: { keyId: 'too-big', secretBase64: Buffer.alloc(4097).toString('base64') } });
    expect(tooBig.status).toBe(400);
  });

  it('never lets a plaintext fragment leave a node: /fragment is sealed to the recipient', async () => {
    const raw = await readObject(stack, 'node1', OBJECT);
    const stored = JSON.parse(raw);
    expect(stored.share).toHaveProperty('ct');
    expect(raw).not.toMatch(/signingShare/);
  });
});

describe('fault tolerance', () => {
  it('succeeds with one node down and names it unreachable', async () => {
    await stack.setNode('node2', { kind: 'down' });
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(r.body.secret.hex.toUpperCase()).toBe(EXAMPLE);
    expect(statusOf(r.body, 'node2')).toBe('unreachable');
  });

  it('does not wait for a node slower than the others', async () => {
    await stack.setNode('node3', { kind: 'slow', delayMs: 4000 });
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(['cancelled', 'timeout']).toContain(statusOf(r.body, 'node3'));
    expect(statusOf(r.body, 'node1')).toBe('valid');
    expect(statusOf(r.body, 'node2')).toBe('valid');
  });

  it('with fewer than t healthy nodes answers 503, names every failure and releases nothing', async () => {
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node3', { kind: 'slow', delayMs: 4000 });
    // A caller with a 2 s deadline: node3 cannot answer within it.
    const r = await call(stack, 'POST', '/keys/example/reconstruct', { headers: { [BUDGET_HEADER]: '2000' } });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('quorum_not_reached');
    expect(statusOf(r.body, 'node1')).toBe('unreachable');
    expect(statusOf(r.body, 'node3')).toBe('timeout');
    expect(statusOf(r.body, 'node2')).toBe('valid');
    expect(r.text).not.toMatch(/a94f3d82c1b7e6f9/i);
    expect(r.body.secret).toBeUndefined();
  });
});

/** Longer than the fan-out's longest hedge delay (lib/coordinator/fanout.ts), shorter than the request budget. */
const SLOW_MS = 2000;

describe('tampering', () => {
  let original: string;
  beforeEach(async () => {
    original = await readObject(stack, 'node2', OBJECT);
  });
  afterEach(async () => {
    await writeObject(stack, 'node2', OBJECT, original);
  });

  it('corrupted storage: a flipped byte in a node\'s S3 object is caught by that node and named', async () => {
    const obj = JSON.parse(original);
    const ct = Buffer.from(obj.share.ct, 'base64');
    ct[0]! ^= 0x01;
    obj.share.ct = ct.toString('base64');
    await writeObject(stack, 'node2', OBJECT, JSON.stringify(obj));
    // Delay the other healthy node well past the hedge delay: whichever two nodes the
    // coordinator asks first, node2 is asked (at once, or as the spare) before a quorum fills.
    await stack.setNode('node3', { kind: 'slow', delayMs: SLOW_MS });
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(r.body.secret.hex.toUpperCase()).toBe(EXAMPLE);
    expect(statusOf(r.body, 'node2')).toBe('corrupted');
    const d = await call(stack, 'GET', '/keys/example');
    expect(d.body.availability).toEqual({ available: 2, quorumMargin: 0 });
    expect(statusOf(d.body, 'node2')).toBe('corrupted');
  });

  it('corrupted storage: a flipped byte in a public field is caught too', async () => {
    await writeObject(stack, 'node2', OBJECT, original.replace('"threshold":2', '"threshold":3'));
    await stack.setNode('node3', { kind: 'slow', delayMs: SLOW_MS });
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(statusOf(r.body, 'node2')).toBe('corrupted');
  });

  it('a lying node: a validly encrypted but wrong share is caught by the coordinator\'s commitment check', async () => {
    const obj = JSON.parse(original);
    const wrapKey = fromB64(stack.secrets['node2']!['wrapKey']!);
    obj.share = aesGcmSeal(wrapKey, ed25519_FROST.utils.randomScalar(), atRestAad('node2', obj.identifier, obj.descriptor));
    await writeObject(stack, 'node2', OBJECT, JSON.stringify(obj));
    await stack.setNode('node3', { kind: 'slow', delayMs: SLOW_MS });
    const r = await reconstruct();
    expect(r.status).toBe(200);
    expect(r.body.secret.hex.toUpperCase()).toBe(EXAMPLE);
    expect(statusOf(r.body, 'node2')).toBe('invalid_share');
    const audit = await call(stack, 'GET', '/audit/verify');
    expect(audit.body.ok).toBe(true);
  });
});

describe('bad input gets a clear 4xx', () => {
  const cases: [string, () => Promise<{ status: number; body: any; text: string }>, number, string][] = [
    ['key id with ../', () => call(stack, 'POST', '/keys/..%2F..%2Fetc/reconstruct'), 400, 'invalid_key_id'],
    ['key id with uppercase', () => call(stack, 'GET', '/keys/Example'), 400, 'invalid_key_id'],
    ['unknown key', () => reconstruct('no-such-key'), 404, 'key_not_found'],
    ['unknown key (describe)', () => call(stack, 'GET', '/keys/no-such-key'), 404, 'key_not_found'],
    ['malformed JSON', () => call(stack, 'POST', '/keys', { rawBody: '{"keyId":' }), 400, 'invalid_json'],
    ['unknown field', () => call(stack, 'POST', '/keys', { body: { keyId: 'x1', secretHex: '00', admin: true } }), 400, 'invalid_input'],
    ['wrong type', () => call(stack, 'POST', '/keys', { body: { keyId: 'x2', threshold: 'two' } }), 400, 'invalid_input'],
    ['odd-length hex secret', () => call(stack, 'POST', '/keys', { body: { keyId: 'x3', secretHex: 'abc' } }), 400, 'invalid_secret'],
    ['non-canonical base64 secret', () => call(stack, 'POST', '/keys', { body: { keyId: 'x4', secretBase64: 'QQ=x' } }), 400, 'invalid_encoding'],
    ['threshold above n', () => call(stack, 'POST', '/keys', { body: { keyId: 'x5', threshold: 4 } }), 400, 'invalid_threshold'],
    ['threshold of one', () => call(stack, 'POST', '/keys', { body: { keyId: 'x6', threshold: 1 } }), 400, 'invalid_input'],
    ['unsigned request', () => call(stack, 'POST', '/keys/example/reconstruct', { as: null }), 401, 'auth_missing'],
    ['unknown client', () => call(stack, 'POST', '/keys/example/reconstruct', { as: { name: 'mallory', privateKey: new Uint8Array(32).fill(7) } }), 401, 'client_unknown'],
    ['oversized body', () => call(stack, 'POST', '/keys', { rawBody: JSON.stringify({ keyId: 'big', secretHex: 'ab'.repeat(40_000) }) }), 413, 'payload_too_large'],
    ['unknown route', () => call(stack, 'GET', '/no/such/route'), 404, 'route_not_found'],
    ['known route, wrong method', () => call(stack, 'DELETE', '/keys/example'), 405, 'method_not_allowed'],
    ['sign: neither message nor digest', () => call(stack, 'POST', '/keys/example/sign', { body: {} }), 400, 'invalid_input'],
    ['sign: both message and digest', () => call(stack, 'POST', '/keys/example/sign', { body: { message: 'AA==', digest: 'ab'.repeat(32) } }), 400, 'invalid_input'],
    ['sign: non-canonical base64 message', () => call(stack, 'POST', '/keys/example/sign', { body: { message: 'QQ=x' } }), 400, 'invalid_encoding'],
    ['sign: digest of a wrong length', () => call(stack, 'POST', '/keys/example/sign', { body: { digest: 'abcd' } }), 400, 'invalid_input'],
    ['sign: unknown key', () => call(stack, 'POST', '/keys/no-such-key/sign', { body: { message: 'AA==' } }), 404, 'key_not_found'],
    ['public: unknown key', () => call(stack, 'GET', '/keys/no-such-key/public'), 404, 'key_not_found'],
    ['ed25519 key with a secret', () => call(stack, 'POST', '/keys', { body: { keyId: 'x7', type: 'ed25519', secretHex: '00' } }), 400, 'invalid_input'],
    ['refresh changing the threshold', () => call(stack, 'POST', '/keys/example/refresh', { body: { threshold: 3 } }), 400, 'use_reshare'],
    ['reshare above n', () => call(stack, 'POST', '/keys/example/reshare', { body: { threshold: 9 } }), 400, 'invalid_threshold'],
    ['reshare to an unknown node', () => call(stack, 'POST', '/keys/example/reshare', { body: { nodes: ['node1', 'node9'] } }), 400, 'invalid_nodes'],
    ['reshare unknown field', () => call(stack, 'POST', '/keys/example/reshare', { body: { nodes: ['node1', 'node2'], force: true } }), 400, 'invalid_input'],
  ];

  it.each(cases)('%s', async (_name, run, status, code) => {
    const r = await run();
    expect(r.status).toBe(status);
    if (code) expect(r.body.error.code).toBe(code);
    expect(r.text).not.toMatch(/at .*\.(ts|js):\d+|stack/i);
  });
});

describe('node request authentication on the wire', () => {
  const signed = (nodeId: string, opts: { timestamp?: number; requestId?: string } = {}) => {
    const query = { keyId: 'example', recipient: toB64(generateX25519().publicKey) };
    const timestamp = String(opts.timestamp ?? Date.now());
    const requestId = opts.requestId ?? randomUUID();
    const signature = signRequest(fromB64(stack.secrets['coordinator']!['privateKey']!), { method: 'GET', audience: nodeId, path: '/fragment', query, body: '', timestamp, requestId });
    const url = `${stack.proxies.get(nodeId)!.url}/fragment?${new URLSearchParams(query)}`;
    const headers = { [HEADERS.signature]: signature, [HEADERS.timestamp]: timestamp, [HEADERS.requestId]: requestId };
    return () => fetch(url, { headers }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
  };

  it('a coordinator-signed request alone gets no fragment, and is accepted only once', async () => {
    const send = signed('node1');
    const first = await send();
    // The coordinator's signature passes, but without a client's own signed request there is no share.
    expect(first.status).toBe(401);
    expect(first.body.error.code).toBe('client_auth_missing');
    const again = await send();
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe('request_replayed');
  });

  it('rejects unsigned, stale and mis-addressed requests', async () => {
    const unsigned = await fetch(`${stack.proxies.get('node1')!.url}/fragment?keyId=example&recipient=x`);
    expect(unsigned.status).toBe(401);
    expect((await signed('node1', { timestamp: Date.now() - 120_000 })()).body.error.code).toBe('request_stale');
    // Signed for node1, delivered to node2.
    const forNode1 = signed('node1');
    const viaNode2 = await fetch(`${stack.proxies.get('node2')!.url}/fragment?keyId=example&recipient=x`, { headers: {} });
    expect(viaNode2.status).toBe(401);
    void forNode1;
  });

  it('serves /status publicly with node id, storage health and key count', async () => {
    const r = await fetch(`${stack.proxies.get('node3')!.url}/status`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ nodeId: 'node3', healthy: true, storage: 'ok', keyCount: expect.any(Number) });
  });
});
