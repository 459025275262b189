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
});
export type DecryptRequest = z.infer<typeof decryptSchema>;

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
  async decrypt(req: DecryptRequest, recipient: Uint8Array, actor: string, requestId: string): Promise<DecryptAnswer> {
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
      // Audited before anything leaves (fail closed): who, which key, under which context.
      try {
        await this.audit.append(stream, {
          actor,
          action: 'key.decrypt',
          keyId: req.keyId,
          outcome: 'success',
          details: { version: d.version, keyVersion, context: req.context, ciphertextSha256: digest, sealedTo: req.recipient, requestId },
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
}
