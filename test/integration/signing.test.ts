/**
 * Keys born distributed (DKG) and used without being rebuilt (FROST threshold
 * Ed25519), on the real local stack. Signatures are checked by independent
 * verifiers: Node's crypto (OpenSSL) and the real `ssh-keygen -Y verify`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createPublicKey, randomUUID, verify } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ed25519, ed25519_FROST } from '@noble/curves/ed25519.js';
import { seal } from '../../lib/crypto/seal';
import type { LocalStack } from '../../tools/local-stack';
import { NodeClient } from '../../lib/coordinator/node-client';
import { signStatement } from '../../lib/crypto/identity';
import { allowedSignersLine, armorSshSignature, sshsigSignedData } from '../../lib/crypto/key-formats';
import { identifierFor } from '../../lib/crypto/shares';
import { fromB64, fromHex, toB64, toHex } from '../../lib/encoding';
import { call, clientEnvelope, reconstructEndToEnd, statusOf, testStack, nodeEndpoint } from '../support/stack';
import { withClientRequest } from '../../lib/coordinator/client-context';

let stack: LocalStack;

beforeAll(async () => {
  stack = await testStack();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

const sign = (keyId: string, message: Uint8Array) => call(stack, 'POST', `/keys/${keyId}/sign`, { body: { message: toB64(message) } });

/** Signed direct access to one node, as a (rogue or test) coordinator would have. */
function nodeClient() {
  const client = new NodeClient(fromB64(stack.secrets['coordinator']!['privateKey']!));
  const endpoint = (id: string) => nodeEndpoint(stack, id);
  // Acting as the coordinator: relay a fresh request of the administrator that matches the step.
  const envelopeFor = (p: string, body: any) =>
    p === '/sign/share' ? clientEnvelope(stack.admin, 'POST', `/keys/${body.keyId}/sign`, { message: body.message })
    : p === '/dkg/round1' ? clientEnvelope(stack.admin, 'POST', '/keys', { keyId: body.keyId, type: 'ed25519' })
    : undefined;
  const post = async (id: string, p: string, body: unknown) => {
    try {
      const env = envelopeFor(p, body);
      const send = () => client.call(endpoint(id), { method: 'POST', path: p, body }, AbortSignal.timeout(10_000));
      return { status: 200, body: (await (env ? withClientRequest(env, send) : send())) as any };
    } catch (e) {
      const err = e as { httpStatus?: number; code?: string; details?: unknown };
      return { status: err.httpStatus ?? 0, body: { error: { code: err.code, details: err.details } } };
    }
  };
  return { post };
}

describe('DKG 2-of-3', () => {
  let publicKey: string;

  it('creates a key no process ever held, with the same public key on every node', async () => {
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'signer', type: 'ed25519', mode: 'dkg', threshold: 2 } });
    expect(r.status).toBe(201);
    expect(r.body.key).toMatchObject({ keyId: 'signer', type: 'ed25519', origin: 'dkg', threshold: 2, total: 3 });
    publicKey = r.body.key.groupPublicKey;
    const d = await call(stack, 'GET', '/keys/signer');
    expect(d.body.key.groupPublicKey).toBe(publicKey);
    expect(d.body.availability).toEqual({ available: 3, quorumMargin: 1 });
  });

  it('is never reconstructed, whoever asks', async () => {
    const serverSide = await call(stack, 'POST', '/keys/signer/reconstruct');
    expect(serverSide.status).toBe(403);
    expect(['end_to_end_required', 'not_authorized']).toContain(serverSide.body.error.code);
    const r = await reconstructEndToEnd(stack, 'signer');
    // Refused by the purpose check (409) or, first, by the permission check: no policy may grant reconstruct on it.
    expect([[409, 'key_not_exportable'], [403, 'not_authorized']]).toContainEqual([r.status, r.body.error.code]);
  });

  it('exports the public key as raw hex, SPKI PEM and OpenSSH', async () => {
    const r = await call(stack, 'GET', '/keys/signer/public');
    expect(r.status).toBe(200);
    expect(r.body.hex).toBe(publicKey);
    expect(r.body.pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(r.body.openssh).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI/);
    expect(Buffer.from(createPublicKey(r.body.pem).export({ format: 'jwk' }).x!, 'base64url').toString('hex')).toBe(publicKey);
  });

  it('signs: a standard Ed25519 signature that OpenSSL (Node crypto) and noble accept', async () => {
    const msg = new TextEncoder().encode('release v1.2.3');
    const r = await sign('signer', msg);
    expect(r.status).toBe(200);
    expect(r.body.signers).toHaveLength(2);
    const pem = (await call(stack, 'GET', '/keys/signer/public')).body.pem;
    const sig = Buffer.from(r.body.signature.hex, 'hex');
    expect(verify(null, msg, pem, sig)).toBe(true);
    expect(ed25519.verify(sig, msg, fromHex(publicKey))).toBe(true);
    expect(verify(null, new TextEncoder().encode('release v1.2.4'), pem, sig)).toBe(false);
  });

  it('signs in digest mode, domain-separated', async () => {
    const digest = toHex(new Uint8Array(32).fill(7));
    const r = await call(stack, 'POST', '/keys/signer/sign', { body: { digest } });
    expect(r.status).toBe(200);
    const signed = new Uint8Array([...new TextEncoder().encode('fedkms/digest/v1\n'), ...fromHex(digest)]);
    expect(ed25519.verify(fromHex(r.body.signature.hex), signed, fromHex(publicKey))).toBe(true);
  });

  it('produces signatures the real ssh-keygen -Y verify accepts', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-ssh-'));
    const message = Buffer.from('deploy artifact sha256:abc\n');
    const r = await sign('signer', sshsigSignedData(message, 'file'));
    expect(r.status).toBe(200);
    const pub = fromHex(publicKey);
    writeFileSync(path.join(dir, 'msg'), message);
    writeFileSync(path.join(dir, 'msg.sig'), armorSshSignature(pub, 'file', fromHex(r.body.signature.hex)));
    writeFileSync(path.join(dir, 'allowed'), `${allowedSignersLine('release@fedkms', pub)}\n`);
    const run = (input: Buffer) => spawnSync('ssh-keygen', ['-Y', 'verify', '-f', path.join(dir, 'allowed'), '-I', 'release@fedkms', '-n', 'file', '-s', path.join(dir, 'msg.sig')], { input });
    const ok = run(message);
    expect(ok.error).toBeUndefined();
    expect(ok.status).toBe(0);
    expect(run(Buffer.from('deploy artifact sha256:abd\n')).status).not.toBe(0);
    // The OpenSSH public key line is accepted by ssh-keygen as well.
    writeFileSync(path.join(dir, 'key.pub'), `${(await call(stack, 'GET', '/keys/signer/public')).body.openssh}\n`);
    expect(execFileSync('ssh-keygen', ['-l', '-f', path.join(dir, 'key.pub')]).toString()).toMatch(/ED25519/);
  });

  it('signs with one node down, and names it', async () => {
    await stack.setNode('node1', { kind: 'down' });
    const r = await sign('signer', new Uint8Array([1, 2, 3]));
    expect(r.status).toBe(200);
    expect(r.body.signers.sort()).toEqual(['node2', 'node3']);
    expect(statusOf(r.body, 'node1')).toBe('unreachable');
  });

  it('names a node that returns a tampered signature share and still signs with the others', async () => {
    await stack.setNode('node2', {
      kind: 'tamper',
      rewrite: (p, answer) => (p.endsWith('/sign/share') ? { ...answer, share: toHex(fromHex(answer.share).map((b, i) => (i === 0 ? b ^ 1 : b))) } : answer),
    });
    // Slow node3 a little so node2 is among the first two committers.
    let r: Awaited<ReturnType<typeof sign>> | undefined;
    for (let i = 0; i < 5; i++) {
      r = await sign('signer', new Uint8Array([4, 5, 6]));
      if (r.body.cheaters?.length) break;
    }
    expect(r!.status).toBe(200);
    expect(r!.body.cheaters).toEqual([{ nodeId: 'node2', reason: 'invalid signature share' }]);
    expect(statusOf(r!.body, 'node2')).toBe('invalid_share');
    expect(r!.body.signers.sort()).toEqual(['node1', 'node3']);
    expect(ed25519.verify(fromHex(r!.body.signature.hex), new Uint8Array([4, 5, 6]), fromHex(publicKey))).toBe(true);
  });

  it('fails cleanly when fewer than t honest nodes remain', async () => {
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node3', { kind: 'down' });
    const r = await sign('signer', new Uint8Array([9]));
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('quorum_not_reached');
    expect(r.body.signature).toBeUndefined();
  });
});

describe('signing in one round trip (pre-published commitments)', () => {
  const msg = (i: number) => new TextEncoder().encode(`pooled ${i}`);

  it('uses pre-published commitments, then falls back to two rounds when the pool runs dry mid-burst', async () => {
    const pre = await call(stack, 'POST', '/keys/signer/preprocess', { body: { count: 2 } });
    expect(pre.status).toBe(200);
    expect(pre.body.added).toEqual({ node1: 2, node2: 2, node3: 2 });
    // 3 nodes × 2 commitments, t = 2: three one-round signatures, then the pool is dry.
    const rounds: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await sign('signer', msg(i));
      expect(r.status).toBe(200);
      expect(ed25519.verify(fromHex(r.body.signature.hex), msg(i), fromHex(r.body.publicKey))).toBe(true);
      rounds.push(r.body.rounds);
    }
    expect(rounds).toEqual([1, 1, 1, 2, 2]);
  });

  it('concurrent requests never share a commitment: every signature verifies, each commitment used once', async () => {
    await call(stack, 'POST', '/keys/signer/preprocess', { body: { count: 3 } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => sign('signer', msg(100 + i))));
    const failed = results.filter((r) => r.status !== 200);
    if (failed.length) console.log(JSON.stringify(failed.map((f) => f.body)).slice(0, 3000));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
    results.forEach((r, i) => expect(ed25519.verify(fromHex(r.body.signature.hex), msg(100 + i), fromHex(r.body.publicKey))).toBe(true));
    // 9 commitments, 2 per signature: at most 4 one-round signatures, the rest fell back.
    const oneRound = results.filter((r) => r.body.rounds === 1).length;
    expect(oneRound).toBeGreaterThanOrEqual(1);
    expect(oneRound).toBeLessThanOrEqual(4);
  });

  it('a pooled commitment whose node went down falls back to two rounds, and that node\'s commitments are dropped', async () => {
    await call(stack, 'POST', '/keys/signer/preprocess', { body: { count: 3 } });
    await stack.setNode('node1', { kind: 'down' });
    const first = await sign('signer', msg(200));
    expect(first.status).toBe(200);
    expect(first.body.signers.sort()).toEqual(['node2', 'node3']);
    // Whether or not node1 was drawn first, later requests never draw it again.
    for (let i = 0; i < 3; i++) {
      const r = await sign('signer', msg(201 + i));
      expect(r.status).toBe(200);
      expect(r.body.signers).not.toContain('node1');
    }
  });
});

describe('nonces are single use', () => {
  const commitList = async (n: ReturnType<typeof nodeClient>, sessionId: string) => {
    const a = await n.post('node1', '/sign/commit', { sessionId, keyId: 'signer' });
    const b = await n.post('node2', '/sign/commit', { sessionId, keyId: 'signer' });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    return [a.body.commitment, b.body.commitment].sort((x: { identifier: string }, y: { identifier: string }) => x.identifier.localeCompare(y.identifier));
  };

  it('a replayed round 2 gets nothing', async () => {
    const n = nodeClient();
    const sessionId = randomUUID();
    const commitments = await commitList(n, sessionId);
    const body = { sessionId, keyId: 'signer', message: toB64(new Uint8Array([1])), commitments };
    expect((await n.post('node1', '/sign/share', body)).status).toBe(200);
    const again = await n.post('node1', '/sign/share', body);
    expect(again.status).toBe(409);
    expect(['nonce_used', 'session_not_found']).toContain(again.body.error.code);
  });

  it('two concurrent round 2 requests get exactly one share', async () => {
    const n = nodeClient();
    const sessionId = randomUUID();
    const commitments = await commitList(n, sessionId);
    const results = await Promise.all(
      [1, 2, 3, 4].map((i) => n.post('node1', '/sign/share', { sessionId, keyId: 'signer', message: toB64(new Uint8Array([i])), commitments })),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(3);
  });

  it('refuses a commitment list without its own commitment, with duplicates, or with an identity point', async () => {
    const n = nodeClient();
    const sessionId = randomUUID();
    const commitments = await commitList(n, sessionId);
    const base = { sessionId, keyId: 'signer', message: toB64(new Uint8Array([1])) };
    const identity = '01' + '00'.repeat(31);
    for (const list of [
      [commitments[1], commitments[1]],
      [commitments[0], { ...commitments[1], hiding: identity }],
      [{ ...commitments[0], binding: commitments[1].binding }, commitments[1]],
    ]) {
      const r = await n.post('node1', '/sign/share', { ...base, commitments: list });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('invalid_commitments');
    }
  });
});

describe('DKG with a misbehaving participant', () => {
  it('a node with a bad proof of knowledge is named and the DKG aborts; no key is created', async () => {
    const node3Key = fromB64(stack.secrets['node3']!['signingPrivate']!);
    await stack.setNode('node3', {
      kind: 'tamper',
      rewrite: (p, answer, request) => {
        if (!p.endsWith('/dkg/round1')) return answer;
        // A compromised node3: a wrong proof, correctly signed with its own identity key.
        const pkg = { ...answer.package, proofOfKnowledge: toHex(ed25519.sign(new Uint8Array([1]), ed25519.utils.randomSecretKey())) };
        const statement = { type: 'fedkms.dkg.round1', sessionId: request.sessionId, keyId: request.keyId, threshold: request.threshold, participants: request.participants, package: pkg };
        return { ...answer, package: pkg, signature: signStatement(node3Key, statement) };
      },
    });
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'bad-dkg', type: 'ed25519' } });
    expect(r.status).toBe(502);
    expect(r.body.error.code).toBe('dkg_aborted');
    expect(r.body.error.details.culprits).toEqual([{ nodeId: 'node3', reason: expect.stringMatching(/proof of knowledge/) }]);
    await stack.setNode('node3', { kind: 'up' });
    expect((await call(stack, 'GET', '/keys/bad-dkg')).status).toBe(404);
  });

  it('a node that sends a bad round-2 share is named by its receiver and no key is created', async () => {
    await stack.setNode('node3', {
      kind: 'tamper',
      rewrite: (p, answer, request) => {
        if (!p.endsWith('/dkg/round2')) return answer;
        // Validly sealed to node1, but not the evaluation of node3's committed polynomial.
        const wrong = seal(fromB64(stack.secrets['node1']!['x25519Public']!), ed25519_FROST.utils.randomScalar(), `fedkms/dkg-share/v1|${request.sessionId}|node3|node1`);
        return { ...answer, shares: { ...answer.shares, node1: wrong } };
      },
    });
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'bad-share-dkg', type: 'ed25519' } });
    expect(r.status).toBe(502);
    expect(r.body.error.details.culprits).toEqual([{ nodeId: 'node3', reason: "round-2 share fails the sender's commitment" }]);
    await stack.setNode('node3', { kind: 'up' });
    expect((await call(stack, 'GET', '/keys/bad-share-dkg')).status).toBe(404);
  });

  it('a node that forges another node\'s round-1 package is caught by the signature check', async () => {
    await stack.setNode('node2', {
      kind: 'tamper',
      rewrite: (p, answer) => (p.endsWith('/dkg/round1') ? { ...answer, signature: toB64(new Uint8Array(64)) } : answer),
    });
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'forged-dkg', type: 'ed25519' } });
    expect(r.status).toBe(502);
    expect(r.body.error.details.culprits).toContainEqual({ nodeId: 'node2', reason: 'round-1 package not signed by that node' });
  });

  it('equivocation: nodes that saw different round-1 sets refuse round 2 and name who disagrees', async () => {
    // The test plays a rogue relay that shows node1 and node2 different packages from node3.
    const n = nodeClient();
    const sessionId = randomUUID();
    const participants = ['node1', 'node2', 'node3'].map((id, i) => ({ nodeId: id, identifier: identifierFor(i + 1) }));
    const r1body = { sessionId, keyId: 'equivocal', threshold: 2, participants, createdAt: new Date().toISOString() };
    const r1 = await Promise.all(['node1', 'node2', 'node3'].map((id) => n.post(id, '/dkg/round1', r1body)));
    expect(r1.map((r) => r.status)).toEqual([200, 200, 200]);
    const honest = r1.map((r) => ({ nodeId: r.body.nodeId, package: r.body.package, signature: r.body.signature }));
    // A second, validly signed round-1 package of node3 (node3's key is known to the test).
    // (Another key id: the one being created is owned by the request creating it.)
    const other = await n.post('node3', '/dkg/round1', { ...r1body, keyId: 'equivocal-alt', sessionId: randomUUID() });
    expect(other.status).toBe(200);
    const node3Key = fromB64(stack.secrets['node3']!['signingPrivate']!);
    const alt = { ...other.body.package };
    const altSig = signStatement(node3Key, { type: 'fedkms.dkg.round1', sessionId, keyId: 'equivocal', threshold: 2, participants, package: alt });
    const shown = { node1: honest, node2: [honest[0], honest[1], { nodeId: 'node3', package: alt, signature: altSig }], node3: honest };
    const conf = await Promise.all((['node1', 'node2', 'node3'] as const).map((id) => n.post(id, '/dkg/confirm', { sessionId, round1: shown[id] })));
    expect(conf.map((c) => c.status)).toEqual([200, 200, 200]);
    expect(conf[0]!.body.digest).not.toBe(conf[1]!.body.digest);
    const confirmations = conf.map((c) => c.body);
    const r2 = await n.post('node1', '/dkg/round2', { sessionId, confirmations });
    expect(r2.status).toBe(400);
    expect(r2.body.error.code).toBe('peer_misbehaved');
    expect(r2.body.error.details.culprits).toEqual([{ nodeId: 'node2', reason: 'saw a different round-1 set (equivocation)' }]);
  });
});
