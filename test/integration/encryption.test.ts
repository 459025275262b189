/**
 * Threshold encryption (issue #14) on the real local stack: an `encrypt` key born by DKG,
 * encryption in the SDK with no node, decryption end to end (each node seals its proven
 * partial to the client's one-time key; the coordinator relays boxes it cannot open),
 * refusals (context, tampering, permission, lifecycle), a node down, a lying node named,
 * refresh and reshare keeping old ciphertexts decryptable, and the CLI round trip of a file.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LocalStack } from '../../tools/local-stack';
import { FedkmsClient } from '../../lib/client/api';
import type { ClientIdentity } from '../../lib/client/signer';
import { decryptDataKey, decryptEndToEnd, decryptFile, DecryptRequestError, encryptFile, encryptionKey, encryptTo, reencrypt, requestDataKey, type EncryptionPublicKeyInfo } from '../../lib/client/decrypt';
import { datakeyAad } from '../../lib/coordinator/decrypt';
import { signApproval, type ApprovalRequest } from '../../lib/crypto/client-auth';
import { CiphertextError, ciphertextDigest, parseEnvelope } from '../../lib/crypto/threshold-decrypt';
import { Point } from '../../lib/crypto/dleq';
import { partialAad } from '../../lib/node/decrypt';
import { generateX25519, open, seal } from '../../lib/crypto/seal';
import { fromB64, toB64, toHex } from '../../lib/encoding';
import { call, newClient, scanAudit, statusOf, testStack } from '../support/stack';


let stack: LocalStack;
let key: EncryptionPublicKeyInfo;
const enc = new TextEncoder();
const dec = new TextDecoder();
const client = (as?: ClientIdentity) => new FedkmsClient(stack.url, as ?? stack.admin);

beforeAll(async () => {
  // On a busy shared machine a stack may miss its start-up window once: try a second time.
  stack = await testStack().catch(() => testStack());
}, 480_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

describe('encrypt keys', () => {
  it('are born by DKG and publish their encryption key', async () => {
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'vault', type: 'encrypt' } });
    expect(r.status).toBe(201);
    expect(r.body.key).toMatchObject({ keyId: 'vault', type: 'encrypt', origin: 'dkg', threshold: 2, total: 3, version: 1 });
    const pub = await call(stack, 'GET', '/keys/vault/public', { as: null });
    expect(pub.status).toBe(200);
    expect(pub.body).toMatchObject({ keyId: 'vault', version: 1, type: 'encrypt', scheme: 'TDH2-ristretto255-SHA512/HKDF-SHA256/A256GCM', threshold: 2 });
    expect(pub.body.groupKey).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(pub.body.verifyingShares)).toHaveLength(3);
    key = await encryptionKey(client(), 'vault');
    expect(key.groupKey).toBe(pub.body.groupKey);
  });

  it('neither sign nor are reconstructed', async () => {
    const s = await call(stack, 'POST', '/keys/vault/sign', { body: { message: toB64(enc.encode('x')) } });
    // One key, one purpose: refused by the purpose check (409) or, first, by the permission check (no policy may grant it).
    expect([[409, 'key_not_signing'], [403, 'not_authorized']]).toContainEqual([s.status, s.body.error.code]);
    const recipient = toB64(generateX25519().publicKey);
    const r = await call(stack, 'POST', '/keys/vault/reconstruct', { body: { recipient } });
    expect([[409, 'key_not_exportable'], [403, 'not_authorized']]).toContainEqual([r.status, r.body.error.code]);
    expect(r.body.fragments).toBeUndefined();
  });

  it('a signing key does not decrypt', async () => {
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'signer', type: 'ed25519' } })).status).toBe(201);
    const ct = encryptTo({ keyId: 'signer', version: 1, groupKey: key.groupKey }, enc.encode('x'), {});
    const r = await call(stack, 'POST', '/keys/signer/decrypt', { body: { ciphertext: toB64(ct), context: {}, recipient: toB64(generateX25519().publicKey) } });
    expect([[409, 'key_not_encryption'], [403, 'not_authorized']]).toContainEqual([r.status, r.body.error.code]);
  });
});

describe('threshold decryption', () => {
  const context = { app: 'payroll', tenant: 't-42' };
  let ct: Uint8Array;

  it('encrypts with no node and decrypts end to end, audited with the context on each node', async () => {
    ct = encryptTo(key, enc.encode('the payroll master key'), context);
    const r = await decryptEndToEnd(client(), ct, context);
    expect(dec.decode(r.plaintext)).toBe('the payroll master key');
    expect(r.usedNodes).toHaveLength(2);
    expect(r.rejected).toEqual([]);
    const audit = await scanAudit(stack);
    const decrypts = audit.filter((i) => i['action']?.S === 'key.decrypt' && i['outcome']?.S === 'success' && String(i['stream']?.S ?? '').startsWith('node#'));
    expect(decrypts.length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(decrypts.map((d) => d['details']))).toContain('payroll');
  });

  it('the coordinator sees only sealed partials', async () => {
    const recipient = generateX25519();
    const r = await call(stack, 'POST', '/keys/vault/decrypt', { body: { ciphertext: toB64(ct), context, recipient: toB64(recipient.publicKey) } });
    expect(r.status).toBe(200);
    expect(r.body.partials).toHaveLength(2);
    for (const p of r.body.partials) {
      expect(Object.keys(p.sealed).sort()).toEqual(['ct', 'epk', 'iv', 'tag']);
      expect(p).not.toHaveProperty('partial');
    }
  });

  it('refuses a wrong context: in the SDK, and at every node', async () => {
    await expect(decryptEndToEnd(client(), ct, { ...context, tenant: 't-43' })).rejects.toThrow(CiphertextError);
    const r = await call(stack, 'POST', '/keys/vault/decrypt', { body: { ciphertext: toB64(ct), context: { ...context, tenant: 't-43' }, recipient: toB64(generateX25519().publicKey) } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_ciphertext');
  });

  it('refuses a tampered ciphertext', async () => {
    const bad = new Uint8Array(ct);
    bad[bad.length - 1]! ^= 1;
    await expect(decryptEndToEnd(client(), bad, context)).rejects.toThrow(CiphertextError);
    const r = await call(stack, 'POST', '/keys/vault/decrypt', { body: { ciphertext: toB64(bad), context, recipient: toB64(generateX25519().publicKey) } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_ciphertext');
  });

  it('refuses a client without the decrypt permission', async () => {
    const eve = await newClient(stack, 'eve', ['key-creator']);
    const e = await decryptEndToEnd(client(eve), ct, context).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DecryptRequestError);
    expect((e as DecryptRequestError).answer.status).toBe(403);
    expect((e as DecryptRequestError).answer.body.error.code).toBe('not_authorized');
  });

  it('a client the policy lets decrypt needs no describe permission', async () => {
    const dora = await newClient(stack, 'dora');
    const r = await call(stack, 'POST', '/keys', { body: { keyId: 'app-key', type: 'encrypt', policy: { decrypt: ['client:dora'] } } });
    expect(r.status).toBe(201);
    expect((await call(stack, 'GET', '/keys/app-key', { as: dora })).status).toBe(403);
    const k = await encryptionKey(client(dora), 'app-key');
    const out = await decryptEndToEnd(client(dora), encryptTo(k, enc.encode('for dora'), { to: 'dora' }), { to: 'dora' });
    expect(dec.decode(out.plaintext)).toBe('for dora');
  });

  it('decrypts with one node down', async () => {
    await stack.setNode('node2', { kind: 'down' });
    const r = await decryptEndToEnd(client(), ct, context);
    expect(dec.decode(r.plaintext)).toBe('the payroll master key');
    expect(r.usedNodes.sort()).toEqual(['node1', 'node3']);
    // Asked first or kept as a spare (the hedged fan-out remembers failures): never a partial.
    expect(['unreachable', 'cancelled']).toContain(statusOf(r.answer.body, 'node2'));
  });

  it('names a lying node, and decrypts without it', async () => {
    // node3 re-seals a wrong partial: the box opens, but its proof fails.
    await stack.setNode('node3', {
      kind: 'tamper',
      rewrite: (p: string, answer: any) => {
        if (!p.endsWith('/decrypt')) return answer;
        return { ...answer, sealed: { ...answer.sealed, ct: toB64(fromB64(answer.sealed.ct).map((b, i) => (i === 3 ? b ^ 1 : b))) } };
      },
    });
    let r: Awaited<ReturnType<typeof decryptEndToEnd>> | undefined;
    for (let i = 0; i < 6 && !r?.rejected.length; i++) r = await decryptEndToEnd(client(), ct, context);
    expect(dec.decode(r!.plaintext)).toBe('the payroll master key');
    expect(r!.rejected).toEqual([{ nodeId: 'node3', reason: 'sealed partial does not open' }]);
    expect(r!.usedNodes.sort()).toEqual(['node1', 'node2']);
  });

  it('names a node whose partial is well sealed but false (its DLEQ proof fails)', async () => {
    // node1 lies knowingly: it seals a wrong partial, with its real proof, to the client's own key.
    await stack.setNode('node1', {
      kind: 'tamper',
      rewrite: (p: string, answer: any, request: any) => {
        if (!p.endsWith('/decrypt')) return answer;
        const lie = { identifier: answer.identifier, partial: toHex(Point.BASE.multiply(12345n).toBytes()), proof: '00'.repeat(64) };
        const aad = partialAad(answer.keyId, answer.version, answer.nodeId, answer.identifier, ciphertextDigest(fromB64(request.ciphertext)));
        return { ...answer, sealed: seal(fromB64(request.recipient), enc.encode(JSON.stringify(lie)), aad) };
      },
    });
    let r: Awaited<ReturnType<typeof decryptEndToEnd>> | undefined;
    for (let i = 0; i < 6 && !r?.rejected.length; i++) r = await decryptEndToEnd(client(), ct, context);
    expect(dec.decode(r!.plaintext)).toBe('the payroll master key');
    expect(r!.rejected).toEqual([{ nodeId: 'node1', reason: 'partial decryption fails its proof' }]);
    expect(r!.usedNodes.sort()).toEqual(['node2', 'node3']);
  });

  it('disabled keys refuse, and decrypt again once active', async () => {
    expect((await call(stack, 'POST', '/keys/vault/state', { body: { state: 'disabled' } })).status).toBe(200);
    const e = await decryptEndToEnd(client(), ct, context).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DecryptRequestError);
    expect((e as DecryptRequestError).answer.status).toBe(409);
    expect((e as DecryptRequestError).answer.body.error.code).toBe('key_disabled');
    expect((await call(stack, 'POST', '/keys/vault/state', { body: { state: 'active' } })).status).toBe(200);
    expect(dec.decode((await decryptEndToEnd(client(), ct, context)).plaintext)).toBe('the payroll master key');
  });

  it('destroyed keys refuse (410)', async () => {
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'gone', type: 'encrypt' } })).status).toBe(201);
    const k = await encryptionKey(client(), 'gone');
    const old = encryptTo(k, enc.encode('bye'), {});
    expect(dec.decode((await decryptEndToEnd(client(), old, {})).plaintext)).toBe('bye');
    expect((await call(stack, 'POST', '/keys/gone/state', { body: { state: 'disabled' } })).status).toBe(200);
    expect((await call(stack, 'POST', '/keys/gone/state', { body: { state: 'destroyed' } })).status).toBe(200);
    const r = await call(stack, 'POST', '/keys/gone/decrypt', { body: { ciphertext: toB64(old), context: {}, recipient: toB64(generateX25519().publicKey) } });
    expect(r.status).toBe(410);
    expect(r.body.error.code).toBe('key_destroyed');
    const e = await decryptEndToEnd(client(), old, {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DecryptRequestError);
    expect((e as DecryptRequestError).answer.status).toBe(410);
  });

  it('refresh keeps old ciphertexts decryptable', async () => {
    const r = await call(stack, 'POST', '/keys/vault/refresh', { body: {} });
    expect(r.status).toBe(200);
    expect(r.body.key.version).toBe(2);
    const out = await decryptEndToEnd(client(), ct, context);
    expect(out.version).toBe(2);
    expect(dec.decode(out.plaintext)).toBe('the payroll master key');
    // New ciphertexts name version 2 and decrypt too.
    const k2 = await encryptionKey(client(), 'vault');
    expect(k2).toEqual({ ...key, version: 2 });
    expect(dec.decode((await decryptEndToEnd(client(), encryptTo(k2, enc.encode('v2'), {}), {})).plaintext)).toBe('v2');
  });

  it('reshare (to 3-of-3) keeps old ciphertexts decryptable; its canary is the only signature an encrypt key makes', async () => {
    const r = await call(stack, 'POST', '/keys/vault/reshare', { body: { threshold: 3 } });
    expect(r.status).toBe(200);
    expect(r.body.key).toMatchObject({ version: 3, threshold: 3 });
    const out = await decryptEndToEnd(client(), ct, context);
    expect(out.version).toBe(3);
    expect(out.usedNodes.sort()).toEqual(['node1', 'node2', 'node3']);
    expect(dec.decode(out.plaintext)).toBe('the payroll master key');
    expect((await encryptionKey(client(), 'vault')).groupKey).toBe(key.groupKey);
    // Still no signing for clients.
    expect(['key_not_signing', 'not_authorized']).toContain((await call(stack, 'POST', '/keys/vault/sign', { body: { message: toB64(enc.encode('x')) } })).body.error.code);
  });
});

describe('files of any size', () => {
  it('SDK: stream encryption under a wrapped data key round-trips; a truncated file fails', async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const chunks: Uint8Array[] = [];
    for await (const c of encryptFile(key, [data], { file: 'a' })) chunks.push(c);
    const blob = Buffer.concat(chunks);
    const out: Uint8Array[] = [];
    for await (const c of decryptFile(client(), (async function* () { yield blob; })(), { file: 'a' })) out.push(c);
    expect(Buffer.concat(out).equals(data)).toBe(true);
    const cut = blob.subarray(0, blob.length - 100);
    await expect((async () => { for await (const _ of decryptFile(client(), (async function* () { yield cut; })(), { file: 'a' })) void _; })()).rejects.toThrow();
  });
});


/** The CLI as a child process (async: the stack's proxies live in this process), stdout as bytes. */
const BIN = path.resolve(__dirname, '../../bin/fedkms');
function fedkms(args: string[], cwd: string, input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_URL: stack.url, FEDKMS_CLIENT: 'admin', FEDKMS_CLIENT_KEY: stack.secrets['admin']!['privateKey'] };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr }));
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

describe('CLI', () => {
  it('keys create --type encrypt, then encrypt and decrypt a file: round trip, wrong context leaves no output', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-enc-'));
    const created = await fedkms(['keys', 'create', 'cli-vault', '--type', 'encrypt'], dir);
    expect(created.code).toBe(0);
    expect(created.stdout.toString()).toMatch(/threshold encryption key \(DKG\)/);
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    writeFileSync(path.join(dir, 'plain.bin'), data);
    const e = await fedkms(['encrypt', '--key', 'cli-vault', '--context', 'app=backup', '--context', 'host=db1', 'plain.bin', 'plain.bin.fkm'], dir);
    expect(e.code).toBe(0);
    expect(readFileSync(path.join(dir, 'plain.bin.fkm')).subarray(0, 4).toString()).toBe('FKMF');
    const d = await fedkms(['decrypt', '--context', 'app=backup', '--context', 'host=db1', 'plain.bin.fkm', 'back.bin'], dir);
    expect(d.code).toBe(0);
    expect(d.stderr).toMatch(/Data key unwrapped by threshold decryption/);
    expect(readFileSync(path.join(dir, 'back.bin')).equals(data)).toBe(true);
    // Wrong context: exit 1, no output file, no temporary file left behind.
    const wrong = await fedkms(['decrypt', '--context', 'app=backup', 'plain.bin.fkm', 'nope.bin'], dir);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/context/);
    // Truncated payload: the data key unwraps, the stream does not authenticate: exit 1, nothing written.
    const blob = readFileSync(path.join(dir, 'plain.bin.fkm'));
    writeFileSync(path.join(dir, 'cut.fkm'), blob.subarray(0, blob.length - 1000));
    const cut = await fedkms(['decrypt', '--context', 'app=backup', '--context', 'host=db1', 'cut.fkm', 'cut.bin'], dir);
    expect(cut.code).toBe(1);
    expect(readdirSync(dir).sort()).toEqual(['back.bin', 'cut.fkm', 'plain.bin', 'plain.bin.fkm']);
    expect(existsSync(path.join(dir, 'nope.bin'))).toBe(false);
  });

  it('shows progress on stderr for large files, and round-trips them', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-enc-'));
    const big = Buffer.alloc(17 * 1024 * 1024, 0x5a);
    big.writeUInt32BE(0xdeadbeef, big.length - 4);
    writeFileSync(path.join(dir, 'big.bin'), big);
    const e = await fedkms(['encrypt', '--key', 'cli-vault', 'big.bin', 'big.fkm'], dir);
    expect(e.code).toBe(0);
    expect(e.stderr).toMatch(/encrypted 8 MiB of 17 MiB \(47%\)/);
    expect(e.stderr).toMatch(/encrypted 16 MiB of 17 MiB/);
    const d = await fedkms(['decrypt', 'big.fkm', 'big.out'], dir);
    expect(d.code).toBe(0);
    expect(d.stderr).toMatch(/decrypted 8 MiB/);
    expect(readFileSync(path.join(dir, 'big.out')).equals(big)).toBe(true);
  });

  it('stdin to stdout', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-enc-'));
    const e = await fedkms(['encrypt', '--key', 'cli-vault'], dir, Buffer.from('secret notes\n'));
    expect(e.code).toBe(0);
    const d = await fedkms(['decrypt'], dir, e.stdout);
    expect(d.code).toBe(0);
    expect(d.stdout.toString()).toBe('secret notes\n');
  });
});

describe('data keys (POST /keys/{keyId}/datakey)', () => {
  it('a fresh data key sealed to the client, its ciphertext opening with decrypt; consented and audited by the nodes with the context', async () => {
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'dk', type: 'encrypt' } })).status).toBe(201);
    const ctx = { bucket: 'invoices' };
    const d = await requestDataKey(client(), 'dk', ctx);
    expect(d.plaintextKey).toHaveLength(32);
    expect(d.version).toBe(1);
    // The ciphertext is the ordinary envelope: threshold decryption gives back the same data key.
    const back = await decryptDataKey(client(), d.ciphertext, ctx);
    expect(toHex(back.plaintext)).toBe(toHex(d.plaintextKey));
    // Over plain HTTP (what curl sends): the coordinator answers a sealed box, never the key in clear.
    const recipient = generateX25519();
    const r = await call(stack, 'POST', '/keys/dk/datakey', { body: { context: ctx, recipient: toB64(recipient.publicKey) } });
    expect(r.status).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['ciphertext', 'keyId', 'nodes', 'sealedKey', 'version']);
    const ct = fromB64(r.body.ciphertext);
    const dataKey = open(recipient.privateKey, r.body.sealedKey, datakeyAad('dk', 1, ciphertextDigest(ct)));
    expect(toHex((await decryptDataKey(client(), ct, ctx)).plaintext)).toBe(toHex(dataKey));
    const audit = await scanAudit(stack);
    const consents = audit.filter((i) => i['action']?.S === 'key.datakey' && i['keyId']?.S === 'dk' && String(i['stream']?.S ?? '').startsWith('node#'));
    expect(consents.length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(consents.map((c) => c['details']))).toContain('invoices');
  });

  it('needs the decrypt permission, an active encrypt key; the request names the recipient', async () => {
    const eve = await newClient(stack, 'eve-dk', ['key-creator']);
    const recipient = toB64(generateX25519().publicKey);
    const denied = await call(stack, 'POST', '/keys/dk/datakey', { as: eve, body: { context: {}, recipient } });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('not_authorized');
    const signer = await call(stack, 'POST', '/keys/signer/datakey', { body: { context: {}, recipient } });
    expect([[409, 'key_not_encryption'], [403, 'not_authorized']]).toContainEqual([signer.status, signer.body.error.code]);
    expect((await call(stack, 'POST', '/keys/dk/state', { body: { state: 'disabled' } })).status).toBe(200);
    const disabled = await call(stack, 'POST', '/keys/dk/datakey', { body: { context: {}, recipient } });
    expect(disabled.status).toBe(409);
    expect(disabled.body.error.code).toBe('key_disabled');
    expect((await call(stack, 'POST', '/keys/dk/state', { body: { state: 'active' } })).status).toBe(200);
  });
});

describe('re-encryption (POST /keys/{keyId}/reencrypt)', () => {
  it('to another key: decrypted by threshold for the client alone, encrypted to the destination here; nodes audit the destination and context', async () => {
    expect((await call(stack, 'POST', '/keys', { body: { keyId: 'dest', type: 'encrypt' } })).status).toBe(201);
    const src = await encryptionKey(client(), 'dk');
    const dest = await encryptionKey(client(), 'dest');
    const ct = encryptTo(src, enc.encode('moving house'), { app: 'old' });
    const r = await reencrypt(client(), ct, { app: 'old' }, { key: dest, context: { app: 'new' } });
    expect(parseEnvelope(r.ciphertext)).toMatchObject({ keyId: 'dest', keyVersion: 1 });
    expect(dec.decode((await decryptEndToEnd(client(), r.ciphertext, { app: 'new' })).plaintext)).toBe('moving house');
    await expect(decryptEndToEnd(client(), r.ciphertext, { app: 'old' })).rejects.toThrow(CiphertextError);
    const audit = await scanAudit(stack);
    const recs = audit.filter((i) => i['action']?.S === 'key.reencrypt' && i['keyId']?.S === 'dk' && i['outcome']?.S === 'success' && String(i['stream']?.S ?? '').startsWith('node#'));
    expect(recs.length).toBeGreaterThanOrEqual(2);
    for (const x of recs) expect(JSON.stringify(x['details'])).toMatch(/"destinationKeyId":\{"S":"dest"\}.*"destinationContext":\{"M":\{"app":\{"S":"new"\}\}\}/);
  });

  it('to the latest version of the same key, after a refresh', async () => {
    const v1 = await encryptionKey(client(), 'dest');
    const ct = encryptTo(v1, enc.encode('rotate me'), {});
    expect((await call(stack, 'POST', '/keys/dest/refresh', { body: {} })).status).toBe(200);
    const v2 = await encryptionKey(client(), 'dest');
    expect(v2.version).toBe(2);
    const r = await reencrypt(client(), ct, {}, { key: v2, context: {} });
    expect(parseEnvelope(r.ciphertext).keyVersion).toBe(2);
    expect(dec.decode((await decryptEndToEnd(client(), r.ciphertext, {})).plaintext)).toBe('rotate me');
  });

  it('a wrong context fails at every node; a client without the decrypt permission is refused', async () => {
    const src = await encryptionKey(client(), 'dk');
    const ct = encryptTo(src, enc.encode('x'), {});
    const recipient = toB64(generateX25519().publicKey);
    const wrong = await call(stack, 'POST', '/keys/dk/reencrypt', { body: { ciphertext: toB64(ct), context: { a: 'b' }, recipient, destinationKeyId: 'dest', destinationContext: {} } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe('invalid_ciphertext');
    const eve = await newClient(stack, 'eve-re', ['key-creator']);
    const denied = await call(stack, 'POST', '/keys/dk/reencrypt', { as: eve, body: { ciphertext: toB64(ct), context: {}, recipient, destinationKeyId: 'dest', destinationContext: {} } });
    expect(denied.status).toBe(403);
  });
});

describe('approvals for decrypt', () => {
  it('a key whose policy requires approvals decrypts only with them, for that requester and recipient', async () => {
    const ann = await newClient(stack, 'ann');
    const ben = await newClient(stack, 'ben', ['approver']);
    const cat = await newClient(stack, 'cat', ['approver']);
    const created = await call(stack, 'POST', '/keys', { body: { keyId: 'guarded', type: 'encrypt', policy: { decrypt: ['client:ann', 'client:ben'], approvals: { required: 2, approvers: ['role:approver'] } } } });
    expect(created.status).toBe(201);
    const k = await encryptionKey(client(ann), 'guarded');
    const ct = encryptTo(k, enc.encode('two people must agree'), { case: '7' });
    // Without approvals: every node refuses.
    const none = await decryptEndToEnd(client(ann), ct, { case: '7' }).catch((x: unknown) => x);
    expect(none).toBeInstanceOf(DecryptRequestError);
    expect((none as DecryptRequestError).answer.status).toBe(403);
    expect((none as DecryptRequestError).answer.body.error.code).toBe('approvals_required');
    // Open a request for this recipient; two approvers sign that exact request.
    const recipient = generateX25519();
    const opened = await call(stack, 'POST', '/approvals', { as: ann, body: { keyId: 'guarded', recipient: toB64(recipient.publicKey) } });
    expect(opened.status).toBe(201);
    const req = opened.body.request as ApprovalRequest;
    const approve = (who: ClientIdentity) => call(stack, 'POST', '/approvals', { as: who, body: { keyId: 'guarded', digest: opened.body.digest, signature: signApproval(who.privateKey, req) } });
    expect((await approve(ben)).status).toBe(200);
    const one = await decryptEndToEnd(client(ann), ct, { case: '7' }, { recipient, expiresAt: req.expiresAt }).catch((x: unknown) => x);
    expect((one as DecryptRequestError).answer.body.error.code).toBe('approvals_required');
    expect((await approve(cat)).status).toBe(200);
    const ok = await decryptEndToEnd(client(ann), ct, { case: '7' }, { recipient, expiresAt: req.expiresAt });
    expect(dec.decode(ok.plaintext)).toBe('two people must agree');
    // Each node's audit record of the release names the approvers.
    const audit = await scanAudit(stack);
    const recs = audit.filter((i) => i['action']?.S === 'key.decrypt' && i['keyId']?.S === 'guarded' && i['outcome']?.S === 'success' && String(i['stream']?.S ?? '').startsWith('node#'));
    expect(recs.length).toBeGreaterThanOrEqual(2);
    for (const x of recs) expect(JSON.stringify(x['details'])).toMatch(/"approvers":\{"L":\[\{"S":"ben"\},\{"S":"cat"\}\]\}/);
    // Approved for ann and that recipient only: ben may not ride on them, nor ann with another recipient.
    const other = await decryptEndToEnd(client(ben), ct, { case: '7' }, { recipient, expiresAt: req.expiresAt }).catch((x: unknown) => x);
    expect((other as DecryptRequestError).answer.body.error.code).toBe('approvals_required');
    const fresh = generateX25519();
    const moved = await decryptEndToEnd(client(ann), ct, { case: '7' }, { recipient: fresh, expiresAt: req.expiresAt }).catch((x: unknown) => x);
    expect((moved as DecryptRequestError).answer.body.error.code).toBe('approvals_required');
  });
});

describe('CLI reencrypt', () => {
  it('re-encrypts a file to another key and context, streaming; a wrong context leaves no output', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-enc-'));
    const data = Buffer.alloc(150_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    writeFileSync(path.join(dir, 'p.bin'), data);
    expect((await fedkms(['encrypt', '--key', 'cli-vault', '--context', 'app=a', 'p.bin', 'p.fkm'], dir)).code).toBe(0);
    const r = await fedkms(['reencrypt', '--key', 'dest', '--context', 'app=a', '--to-context', 'app=b', 'p.fkm', 'q.fkm'], dir);
    expect(r.stderr).toMatch(/Re-encrypted to "dest"/);
    expect(r.code).toBe(0);
    const blob = readFileSync(path.join(dir, 'q.fkm'));
    expect(parseEnvelope(blob.subarray(9, 9 + blob.readUInt32BE(5))).keyId).toBe('dest');
    const d = await fedkms(['decrypt', '--context', 'app=b', 'q.fkm', 'back.bin'], dir);
    expect(d.code).toBe(0);
    expect(readFileSync(path.join(dir, 'back.bin')).equals(data)).toBe(true);
    const wrong = await fedkms(['reencrypt', '--key', 'dest', '--context', 'app=zzz', 'p.fkm', 'r.fkm'], dir);
    expect(wrong.code).toBe(1);
    expect(existsSync(path.join(dir, 'r.fkm'))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(['back.bin', 'p.bin', 'p.fkm', 'q.fkm']);
  });
});
