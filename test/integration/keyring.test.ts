/**
 * The AWS Encryption SDK keyring (lib/client/keyring.ts) on the real local stack: a message
 * round-trips through the SDK's own buildClient(REQUIRE_ENCRYPT_REQUIRE_DECRYPT).encrypt and
 * decrypt, the data key unwrapped by threshold decryption (each node audits the SDK's
 * encryption context); a changed context or a tampered encrypted data key fails; decryption
 * works with one node down.
 */
import { buildClient, CommitmentPolicy } from '@aws-crypto/client-node';
import type { LocalStack } from '../../tools/local-stack';
import { FedkmsClient } from '../../lib/client/api';
import { FEDKMS_PROVIDER_ID, FedkmsKeyringNode } from '../../lib/client/keyring';
import { call, scanAudit, testStack } from '../support/stack';

jest.setTimeout(120_000);

let stack: LocalStack;
let keyring: FedkmsKeyringNode;
const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
const enc = new TextEncoder();
const context = { tenant: 'acme', purpose: 'sdk-test' };

beforeAll(async () => {
  // On a busy shared machine a stack may miss its start-up window once: try a second time.
  stack = await testStack().catch(() => testStack());
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'sdk-key', type: 'encrypt' } })).status).toBe(201);
  keyring = await FedkmsKeyringNode.forKey(new FedkmsClient(stack.url, stack.admin), 'sdk-key');
}, 480_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

describe('AWS Encryption SDK with a fedkms keyring', () => {
  let message: Buffer;

  it('round-trips a message through the SDK’s own encrypt and decrypt; the nodes audit the SDK’s context', async () => {
    const { result, messageHeader } = await encrypt(keyring, enc.encode('hello from the Encryption SDK'), { encryptionContext: context });
    message = Buffer.from(result);
    expect(messageHeader.encryptedDataKeys.map((e) => [e.providerId, e.providerInfo])).toEqual([[FEDKMS_PROVIDER_ID, 'sdk-key']]);
    const out = await decrypt(keyring, message);
    expect(new TextDecoder().decode(out.plaintext)).toBe('hello from the Encryption SDK');
    expect(out.messageHeader.encryptionContext).toMatchObject(context);
    const audit = await scanAudit(stack);
    const recs = audit.filter((i) => i['action']?.S === 'key.decrypt' && i['keyId']?.S === 'sdk-key' && i['outcome']?.S === 'success' && String(i['stream']?.S ?? '').startsWith('node#'));
    expect(recs.length).toBeGreaterThanOrEqual(2);
    for (const r of recs) expect(JSON.stringify(r['details'])).toContain('sdk-test');
  });

  it('a changed encryption context in the message fails to decrypt', async () => {
    // Same length, so the message still parses: only the context differs.
    const i = message.indexOf(Buffer.from('sdk-test'));
    expect(i).toBeGreaterThan(0);
    const bad = Buffer.from(message);
    bad.write('sdk-tesX', i);
    await expect(decrypt(keyring, bad)).rejects.toThrow(/encryption context|unable to decrypt/i);
  });

  it('a tampered encrypted data key fails to decrypt', async () => {
    const { messageHeader } = await decrypt(keyring, message);
    const edk = Buffer.from(messageHeader.encryptedDataKeys[0]!.encryptedDataKey);
    const at = message.indexOf(edk);
    expect(at).toBeGreaterThan(0);
    const bad = Buffer.from(message);
    bad[at + edk.length - 1]! ^= 1; // the wrap's AES-GCM tag
    await expect(decrypt(keyring, bad)).rejects.toThrow();
    // A byte of R (the ephemeral point) instead: the validity proof fails, before any node answers.
    const bad2 = Buffer.from(message);
    bad2[at + 7 + 'sdk-key'.length + 4 + 5]! ^= 1;
    await expect(decrypt(keyring, bad2)).rejects.toThrow();
  });

  it('decrypts with one node down', async () => {
    await stack.setNode('node2', { kind: 'down' });
    const used: string[][] = [];
    const k = new FedkmsKeyringNode({ client: new FedkmsClient(stack.url, stack.admin), decryptKeyIds: ['sdk-key'], onDecrypt: (r) => used.push(r.usedNodes) });
    const out = await decrypt(k, message);
    expect(new TextDecoder().decode(out.plaintext)).toBe('hello from the Encryption SDK');
    expect(used[0]!.sort()).toEqual(['node1', 'node3']);
  });
});
