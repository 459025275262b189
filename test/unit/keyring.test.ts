/**
 * The AWS Encryption SDK keyring (lib/client/keyring.ts) with no stack: the SDK's own
 * buildClient(REQUIRE_ENCRYPT_REQUIRE_DECRYPT).encrypt/decrypt round-trips through it, against
 * a fake coordinator that answers as t honest nodes would (real partials, real proofs, sealed
 * to the client's one-time key). Encrypt makes no call; the context is bound; a lying node is
 * named; foreign encrypted data keys are ignored.
 */
import { buildClient, CommitmentPolicy, EncryptedDataKey, NodeAlgorithmSuite, AlgorithmSuiteIdentifier, NodeDecryptionMaterial } from '@aws-crypto/client-node';
import { FEDKMS_PROVIDER_ID, FedkmsKeyringError, FedkmsKeyringNode } from '../../lib/client/keyring';
import type { FedkmsClient } from '../../lib/client/api';
import { dealKey, identifierFor } from '../../lib/crypto/shares';
import { ciphertextDigest, encryptionKeyFromPublicPackage, partialDecrypt, type EncryptionContext } from '../../lib/crypto/threshold-decrypt';
import { seal } from '../../lib/crypto/seal';
import { Point } from '../../lib/crypto/dleq';
import { partialAad } from '../../lib/node/decrypt';
import { fromB64, toHex } from '../../lib/encoding';

const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
const text = (s: string) => new TextEncoder().encode(s);

function federation(opts: { liar?: string } = {}) {
  const ids = [1, 2, 3].map(identifierFor);
  const dealt = dealKey({ keyId: 'sdk-key', threshold: 2, identifiers: ids, secret: new Uint8Array([0]) });
  const key = encryptionKeyFromPublicPackage('sdk-key', 1, dealt.publicPackage);
  const calls: { method: string; path: string; body?: any }[] = [];
  const client = {
    call: async (method: string, path: string, body?: any) => {
      calls.push({ method, path, body });
      if (method === 'GET' && path === '/keys/sdk-key/public') {
        return { status: 200, ms: 0, body: { keyId: 'sdk-key', version: 1, type: 'encrypt', threshold: 2, groupKey: key.groupKey, verifyingShares: key.verifyingShares } };
      }
      if (method === 'POST' && path === '/keys/sdk-key/decrypt') {
        const envelope = fromB64(body.ciphertext);
        const requestId = `rq-${calls.length}`;
        const request = { requester: body.recipient, requestId };
        // Two nodes answer; the liar (if any) first, so the client must drop it and ask again.
        const answering = dealt.shares.map((share, i) => ({ share, nodeId: `node${i + 1}` })).filter((n) => !(body.exclude ?? []).includes(n.nodeId));
        const partials = [];
        for (const { share, nodeId } of answering.slice(0, 2)) {
          let content;
          try {
            content = partialDecrypt({ key, share, envelope, context: body.context as EncryptionContext, request });
          } catch {
            return { status: 400, ms: 0, body: { error: { code: 'invalid_ciphertext', message: 'refused' } } };
          }
          if (nodeId === opts.liar) content = { ...content, partial: toHex(Point.BASE.multiply(7n).toBytes()) };
          const sealed = seal(fromB64(body.recipient), text(JSON.stringify(content)), partialAad('sdk-key', 1, nodeId, share.identifier, ciphertextDigest(envelope)));
          partials.push({ nodeId, identifier: share.identifier, keyId: 'sdk-key', version: 1, threshold: 2, sealed });
        }
        return { status: 200, ms: 0, requestId, body: { keyId: 'sdk-key', version: 1, threshold: 2, partials } };
      }
      return { status: 404, ms: 0, body: { error: { code: 'not_found', message: path } } };
    },
  } as unknown as FedkmsClient;
  return { client, calls, info: { keyId: 'sdk-key', version: 1, groupKey: key.groupKey } };
}

describe('FedkmsKeyringNode', () => {
  const context = { tenant: 'acme', purpose: 'invoices' };

  it('round-trips through the SDK’s own encrypt and decrypt; encrypting makes no call', async () => {
    const f = federation();
    const encryptOnly = new FedkmsKeyringNode({ key: f.info });
    const { result, messageHeader } = await encrypt(encryptOnly, text('hello, envelope'), { encryptionContext: context });
    expect(f.calls).toHaveLength(0);
    expect(messageHeader.encryptedDataKeys).toHaveLength(1);
    const edk = messageHeader.encryptedDataKeys[0]!;
    expect(edk.providerId).toBe(FEDKMS_PROVIDER_ID);
    expect(edk.providerInfo).toBe('sdk-key');
    expect(Buffer.from(edk.encryptedDataKey.subarray(0, 4)).toString('ascii')).toBe('FKME');

    const seen: string[][] = [];
    const keyring = new FedkmsKeyringNode({ client: f.client, decryptKeyIds: ['sdk-key'], onDecrypt: (r) => seen.push(r.usedNodes) });
    const out = await decrypt(keyring, result);
    expect(new TextDecoder().decode(out.plaintext)).toBe('hello, envelope');
    expect(out.messageHeader.encryptionContext).toMatchObject(context);
    expect(seen).toEqual([['node1', 'node2']]);
    // The nodes were asked with the SDK's whole encryption context (its signing key included).
    const asked = f.calls.find((c) => c.path.endsWith('/decrypt'))!.body.context;
    expect(asked).toMatchObject(context);
    expect(Object.keys(asked)).toContain('aws-crypto-public-key');
  });

  it('binds the encryption context: another context fails before any node is asked', async () => {
    const f = federation();
    const keyring = new FedkmsKeyringNode({ key: f.info, client: f.client });
    const { messageHeader } = await encrypt(keyring, text('x'), { encryptionContext: context, suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY });
    const suite = new NodeAlgorithmSuite(AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY);
    const material = new NodeDecryptionMaterial(suite, { ...context, tenant: 'evil' });
    const e = await keyring.onDecrypt(material, messageHeader.encryptedDataKeys as EncryptedDataKey[]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FedkmsKeyringError);
    expect(String((e as Error).message)).toMatch(/encryption context/);
    expect(f.calls.filter((c) => c.path.endsWith('/decrypt'))).toHaveLength(0);
    // The right context opens it.
    const ok = await keyring.onDecrypt(new NodeDecryptionMaterial(suite, context), messageHeader.encryptedDataKeys as EncryptedDataKey[]);
    expect(ok.hasValidKey()).toBe(true);
  });

  it('a tampered encrypted data key fails', async () => {
    const f = federation();
    const keyring = new FedkmsKeyringNode({ key: f.info, client: f.client });
    const { messageHeader } = await encrypt(keyring, text('x'), { encryptionContext: context });
    const edk = messageHeader.encryptedDataKeys[0]!;
    const bad = new Uint8Array(edk.encryptedDataKey);
    bad[bad.length - 1]! ^= 1;
    const material = new NodeDecryptionMaterial(new NodeAlgorithmSuite(messageHeader.suiteId), messageHeader.encryptionContext);
    await expect(keyring.onDecrypt(material, [new EncryptedDataKey({ providerId: edk.providerId, providerInfo: edk.providerInfo, encryptedDataKey: bad })])).rejects.toThrow(FedkmsKeyringError);
  });

  it('names a lying node and still decrypts', async () => {
    const f = federation({ liar: 'node1' });
    const keyring = new FedkmsKeyringNode({ key: f.info, client: f.client, onDecrypt: (r) => rejected.push(...r.rejected.map((x) => x.nodeId)) });
    const rejected: string[] = [];
    const { result } = await encrypt(keyring, text('with a liar'), { encryptionContext: context });
    const out = await decrypt(keyring, result);
    expect(new TextDecoder().decode(out.plaintext)).toBe('with a liar');
    expect(rejected).toEqual(['node1']);
  });

  it('ignores other providers’ and other keys’ encrypted data keys; a decrypt-only keyring does not encrypt', async () => {
    const f = federation();
    const keyring = new FedkmsKeyringNode({ client: f.client, decryptKeyIds: ['other-key'] });
    const suite = new NodeAlgorithmSuite(AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY);
    const { messageHeader } = await encrypt(new FedkmsKeyringNode({ key: f.info }), text('x'), { encryptionContext: context });
    const foreign = new EncryptedDataKey({ providerId: 'aws-kms', providerInfo: 'sdk-key', encryptedDataKey: new Uint8Array(8) });
    const m = await keyring.onDecrypt(new NodeDecryptionMaterial(suite, messageHeader.encryptionContext), [foreign, ...(messageHeader.encryptedDataKeys as EncryptedDataKey[])]);
    expect(m.hasValidKey()).toBe(false);
    expect(f.calls).toHaveLength(0);
    await expect(encrypt(keyring, text('x'))).rejects.toThrow(/no key to encrypt to/);
  });

  it('forKey reads the public key once; then encrypts offline', async () => {
    const f = federation();
    const keyring = await FedkmsKeyringNode.forKey(f.client, 'sdk-key');
    expect(f.calls.map((c) => `${c.method} ${c.path}`)).toEqual(['GET /keys/sdk-key/public']);
    for (let i = 0; i < 3; i++) await encrypt(keyring, text(`m${i}`), { encryptionContext: context });
    expect(f.calls).toHaveLength(1);
  });
});
