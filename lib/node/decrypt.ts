/**
 * A node's side of threshold decryption (lib/crypto/threshold-decrypt.ts): for an `encrypt`
 * key, check the ciphertext (its context digest and TDH2 validity proof), compute this
 * node's partial D_i = s_i·R with its DLEQ proof against the verifying share, audit the
 * release with the encryption context, and only then hand the partial out, sealed to the
 * client's one-time X25519 key. The coordinator relays a box it cannot open.
 *
 * Versions. The group key survives refresh and reshare, so a ciphertext made under version v
 * opens with the shares of any later version: the node answers with the share version the
 * client asked for (default: its latest), and its proof names that version's verifying share.
 */
import * as z from '../zod.js';
import { seal, type SealedBox } from '../crypto/seal.js';
import { CiphertextError, ciphertextDigest, encryptionKeyFromPublicPackage, MAX_CONTEXT_BYTES, parseEnvelope, partialDecrypt, type EncryptionContext } from '../crypto/threshold-decrypt.js';
import { fromB64, wipe } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ConflictError } from '../errors.js';
import type { AuditLog } from '../ports.js';
import { auditStream, type NodeIdentity, type NodeService } from './service.js';

/** Base64 of an envelope: a wrapped data key is ~250 bytes; this leaves room for small payloads. */
export const MAX_CIPHERTEXT_B64 = 40_000;

export const encryptionContextSchema = z.record(z.string().check(z.maxLength(256)), z.string().check(z.maxLength(MAX_CONTEXT_BYTES)));

export const decryptSchema = z.strictObject({
  keyId: z.string(),
  /** The share version to answer with (default: the latest this node holds). */
  version: z.optional(z.number().check(z.int(), z.gte(1), z.lte(1_000_000))),
  ciphertext: z.string().check(z.minLength(1), z.maxLength(MAX_CIPHERTEXT_B64)),
  context: encryptionContextSchema,
  /** The client's one-time X25519 public key (base64): the partial is sealed to it. */
  recipient: z.string().check(z.maxLength(64)),
  /** Re-encryption (`POST /keys/{id}/reencrypt`): the key the client will encrypt the plaintext to, and under which context; audited. */
  destinationKeyId: z.optional(z.string().check(z.maxLength(63))),
  destinationContext: z.optional(encryptionContextSchema),
});
export type DecryptRequest = z.infer<typeof decryptSchema>;

/** POST /datakey: a node's consent (checked and audited) to the coordinator making a data key under this key. */
export const datakeySchema = z.strictObject({
  keyId: z.string(),
  context: encryptionContextSchema,
  /** The client's one-time X25519 public key the data key will be sealed to (base64). */
  recipient: z.string().check(z.maxLength(64)),
});
export type DatakeyRequest = z.infer<typeof datakeySchema>;

/** What a node answers to POST /datakey: the key it consents to, as it holds it (the coordinator needs t that agree). */
export interface DatakeyConsent {
  nodeId: string;
  keyId: string;
  version: number;
  threshold: number;
  /** The group public key (ristretto255 hex) the data key is to be wrapped under. */
  groupKey: string;
}

/** What a node seals to the client: its partial decryption and the proof of it. */
export interface SealedPartialContent {
  identifier: string;
  partial: string;
  proof: string;
}

export interface DecryptAnswer {
  nodeId: string;
  identifier: string;
  keyId: string;
  /** The share version used: the client checks the proof against that version's verifying share. */
  version: number;
  threshold: number;
  sealed: SealedBox;
}

/** The AAD of a sealed partial: the box opens only as this node's answer for this key version and ciphertext. */
export const partialAad = (keyId: string, version: number, nodeId: string, identifier: string, ciphertextSha256: string) =>
  `fedkms/decrypt/v1|${keyId}|${version}|${nodeId}|${identifier}|${ciphertextSha256}`;

export class NodeDecrypt {
  constructor(
    private readonly id: NodeIdentity,
    private readonly node: NodeService,
    private readonly audit: AuditLog,
  ) {}

  /** `recipient` is the parsed X25519 key; `requestId` the client's own request id (bound into the proof). */
  async decrypt(req: DecryptRequest, recipient: Uint8Array, actor: string, requestId: string, approvers: string[] = []): Promise<DecryptAnswer> {
    const stream = auditStream(this.id.nodeId);
    const envelope = fromB64(req.ciphertext, 'ciphertext');
    const digest = ciphertextDigest(envelope);
    const { object, share } = await this.node.load(req.keyId, req.version);
    try {
      const d = object.descriptor;
      if (d.type !== 'encrypt') throw new ConflictError('key_not_encryption', `key ${req.keyId} is not an encryption key (type ${d.type})`);
      let partial: SealedPartialContent;
      let keyVersion: number;
      try {
        keyVersion = parseEnvelope(envelope).keyVersion;
        // The key as it was at encryption (same group key), with this share version's verifying shares.
        const key = encryptionKeyFromPublicPackage(req.keyId, keyVersion, d.publicPackage);
        partial = partialDecrypt({
          key,
          share: { identifier: this.id.identifier, signingShare: share },
          envelope,
          context: req.context as EncryptionContext,
          request: { requester: req.recipient, requestId },
        });
      } catch (e) {
        if (!(e instanceof CiphertextError)) throw e;
        await this.audit.append(stream, { actor, action: 'key.decrypt', keyId: req.keyId, outcome: 'failure', details: { version: d.version, reason: e.message, ciphertextSha256: digest } }).catch(() => undefined);
        throw new BadRequestError('invalid_ciphertext', e.message);
      }
      // Audited before anything leaves (fail closed): who, which key, under which context; a
      // re-encryption also names where the plaintext is going, as the client signed it.
      const reencrypt = req.destinationKeyId !== undefined ? { destinationKeyId: req.destinationKeyId, destinationContext: req.destinationContext ?? {} } : {};
      try {
        await this.audit.append(stream, {
          actor,
          action: req.destinationKeyId !== undefined ? 'key.reencrypt' : 'key.decrypt',
          keyId: req.keyId,
          outcome: 'success',
          details: { version: d.version, keyVersion, context: req.context, ciphertextSha256: digest, sealedTo: req.recipient, requestId, ...reencrypt, ...(approvers.length ? { approvers } : {}) },
        });
      } catch {
        throw new AuditUnavailableError();
      }
      const sealed = seal(recipient, new TextEncoder().encode(JSON.stringify(partial)), partialAad(req.keyId, d.version, this.id.nodeId, this.id.identifier, digest));
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, keyId: req.keyId, version: d.version, threshold: d.publicPackage.threshold, sealed };
    } finally {
      wipe(share);
    }
  }

  /**
   * POST /datakey: this node's consent to a data key under an `encrypt` key (the coordinator
   * makes the key, wraps it and seals it to the client once t nodes agree). Audited with the
   * encryption context before the consent leaves (fail closed). No share is used.
   */
  async datakey(req: DatakeyRequest, actor: string, requestId: string): Promise<DatakeyConsent> {
    const { descriptor: d } = await this.node.describe(req.keyId);
    if (d.type !== 'encrypt') throw new ConflictError('key_not_encryption', `key ${req.keyId} is not an encryption key (type ${d.type})`);
    const key = encryptionKeyFromPublicPackage(req.keyId, d.version, d.publicPackage);
    try {
      await this.audit.append(auditStream(this.id.nodeId), {
        actor,
        action: 'key.datakey',
        keyId: req.keyId,
        outcome: 'success',
        details: { version: d.version, context: req.context, sealedTo: req.recipient, requestId },
      });
    } catch {
      throw new AuditUnavailableError();
    }
    return { nodeId: this.id.nodeId, keyId: req.keyId, version: d.version, threshold: d.publicPackage.threshold, groupKey: key.groupKey };
  }
}
