/**
 * A keyring for the AWS Encryption SDK for JavaScript (`@aws-crypto/client-node`): an
 * application that encrypts with the SDK's message format and a KMS keyring can switch to a
 * federated key that no single party ever holds.
 *
 * Encrypt (`_onEncrypt`) needs no node and makes no network call: the keyring generates the
 * data key when the SDK's material has none (the suite's length), then wraps it under the
 * key's group public key in a fedkms threshold envelope (lib/crypto/threshold-decrypt.ts),
 * with the SDK's encryption context as the envelope's encryption context. The context's
 * SHA-256 is part of the envelope header, which is the AAD of the wrap (and the subject of
 * its validity proof), so an encrypted data key opens only under the exact same context, and
 * every node audits that context when it answers.
 *
 * Decrypt (`_onDecrypt`) unwraps by threshold decryption through the coordinator, exactly as
 * lib/client/decrypt.ts does: a one-time X25519 key, each node's partial sealed to it, every
 * DLEQ proof verified against the key's verifying shares, a lying node named and dropped.
 *
 * Naming in the SDK's message: each encrypted data key carries
 *   providerId   = "fedkms"                (FEDKMS_PROVIDER_ID)
 *   providerInfo = the fedkms key id       (e.g. "payroll"; the envelope itself names the key
 *                                           version and scheme, so providerInfo needs nothing more)
 *   encryptedDataKey = the envelope bytes (format version 1, magic "FKME").
 * On decrypt the keyring tries, in order, the encrypted data keys whose providerId is
 * "fedkms" and whose providerInfo is one of its key ids (its own key, plus `decryptKeyIds`).
 */
import { randomBytes } from 'node:crypto';
import {
  EncryptedDataKey,
  KeyringNode,
  KeyringTraceFlag,
  needs,
  unwrapDataKey,
  type NodeDecryptionMaterial,
  type NodeEncryptionMaterial,
} from '@aws-crypto/client-node';
import { encrypt, parseEnvelope } from '../crypto/threshold-decrypt.js';
import { KEY_ID_PATTERN } from '../key-id.js';
import { wipe } from '../encoding.js';
import type { FedkmsClient } from './api.js';
import { decryptEndToEnd, encryptionKey, type DecryptResult, type EncryptionPublicKeyInfo } from './decrypt.js';

/** The providerId of every encrypted data key this keyring writes. */
export const FEDKMS_PROVIDER_ID = 'fedkms';

export interface FedkmsKeyringOptions {
  /** The key to wrap under: `GET /keys/{id}/public` as `encryptionKey` returns it. Optional for a decrypt-only keyring. */
  key?: EncryptionPublicKeyInfo;
  /** A signed client of the coordinator: needed to decrypt (never used to encrypt). */
  client?: FedkmsClient;
  /** Further key ids whose encrypted data keys this keyring may unwrap (for example the key an older message was made under). */
  decryptKeyIds?: string[];
  /** Told after each successful unwrap: which nodes answered, and which were named as liars. */
  onDecrypt?: (r: Omit<DecryptResult, 'plaintext'>) => void;
}

/** Every fedkms encrypted data key in the message failed to unwrap; `errors` says why, one per key. */
export class FedkmsKeyringError extends Error {
  constructor(
    message: string,
    readonly errors: Error[],
  ) {
    super(message);
  }
}

export class FedkmsKeyringNode extends KeyringNode {
  declare readonly keyId: string | undefined;
  declare readonly keyIds: readonly string[];
  declare private readonly opts: FedkmsKeyringOptions;

  constructor(opts: FedkmsKeyringOptions) {
    super();
    needs(opts.key || opts.client, 'A fedkms keyring needs a key to encrypt to, or a client to decrypt with.');
    const ids = [...(opts.key ? [opts.key.keyId] : []), ...(opts.decryptKeyIds ?? [])];
    for (const id of ids) needs(KEY_ID_PATTERN.test(id), `not a fedkms key id: ${id}`);
    Object.defineProperty(this, 'keyId', { value: opts.key?.keyId, enumerable: true });
    Object.defineProperty(this, 'keyIds', { value: Object.freeze([...new Set(ids)]), enumerable: true });
    Object.defineProperty(this, 'opts', { value: { ...opts } });
  }

  /** Read the key's public encryption key once (the only network call encrypting needs, made here, not per message). */
  static async forKey(client: FedkmsClient, keyId: string, opts: Omit<FedkmsKeyringOptions, 'key' | 'client'> = {}): Promise<FedkmsKeyringNode> {
    return new FedkmsKeyringNode({ ...opts, client, key: await encryptionKey(client, keyId) });
  }

  async _onEncrypt(material: NodeEncryptionMaterial): Promise<NodeEncryptionMaterial> {
    const key = this.opts.key;
    needs(key, 'This fedkms keyring has no key to encrypt to (it was built to decrypt only).');
    const trace = { keyNamespace: FEDKMS_PROVIDER_ID, keyName: key.keyId };
    if (!material.hasUnencryptedDataKey) {
      material.setUnencryptedDataKey(new Uint8Array(randomBytes(material.suite.keyLengthBytes)), { ...trace, flags: KeyringTraceFlag.WRAPPING_KEY_GENERATED_DATA_KEY });
    }
    const dataKey = unwrapDataKey(material.getUnencryptedDataKey());
    // The SDK's encryption context is the envelope's: its digest is in the header, the wrap's AAD.
    const envelope = encrypt({ keyId: key.keyId, keyVersion: key.version, groupKey: key.groupKey }, dataKey, { ...material.encryptionContext });
    const edk = new EncryptedDataKey({ providerId: FEDKMS_PROVIDER_ID, providerInfo: key.keyId, encryptedDataKey: envelope });
    return material.addEncryptedDataKey(edk, KeyringTraceFlag.WRAPPING_KEY_ENCRYPTED_DATA_KEY | KeyringTraceFlag.WRAPPING_KEY_SIGNED_ENC_CTX);
  }

  /** Is this encrypted data key one of ours (provider "fedkms", one of our key ids, and an envelope naming that key)? */
  private mine(edk: EncryptedDataKey): boolean {
    if (edk.providerId !== FEDKMS_PROVIDER_ID || !this.keyIds.includes(edk.providerInfo)) return false;
    try {
      return parseEnvelope(edk.encryptedDataKey).keyId === edk.providerInfo;
    } catch {
      return false;
    }
  }

  async _onDecrypt(material: NodeDecryptionMaterial, encryptedDataKeys: EncryptedDataKey[]): Promise<NodeDecryptionMaterial> {
    if (material.hasValidKey()) return material;
    const client = this.opts.client;
    const edks = encryptedDataKeys.filter((e) => this.mine(e));
    if (!edks.length) return material;
    needs(client, 'This fedkms keyring has no client: it cannot decrypt.');
    const errors: Error[] = [];
    for (const edk of edks) {
      let r: DecryptResult | undefined;
      try {
        r = await decryptEndToEnd(client, edk.encryptedDataKey, { ...material.encryptionContext });
        if (r.plaintext.length !== material.suite.keyLengthBytes) throw new Error(`the envelope wraps ${r.plaintext.length} bytes, not a ${material.suite.keyLengthBytes}-byte data key`);
        // The material keeps its own copy; ours is wiped below.
        material.setUnencryptedDataKey(new Uint8Array(r.plaintext), {
          keyNamespace: FEDKMS_PROVIDER_ID,
          keyName: edk.providerInfo,
          flags: KeyringTraceFlag.WRAPPING_KEY_DECRYPTED_DATA_KEY | KeyringTraceFlag.WRAPPING_KEY_VERIFIED_ENC_CTX,
        });
        const { plaintext: _p, ...info } = r;
        this.opts.onDecrypt?.(info);
        return material;
      } catch (e) {
        errors.push(e instanceof Error ? e : new Error(String(e)));
      } finally {
        if (r) wipe(r.plaintext);
      }
    }
    // As the SDK's KMS keyring does: no key unwrapped, so say why (a multi-keyring tries its other children first).
    throw new FedkmsKeyringError(`fedkms: unable to decrypt the data key: ${errors.map((e) => e.message).join('; ')}`, errors);
  }
}
