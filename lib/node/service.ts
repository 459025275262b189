/**
 * What one node does. A node holds one share per key version, encrypted at rest,
 * and never lets it leave unsealed: shares go out only sealed to a requester's
 * X25519 key, and only after the access has been written to the audit chain.
 */
import * as z from '../zod.js';
import { aesGcmOpen, aesGcmSeal } from '../crypto/aead.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { open, seal, type SealedBox } from '../crypto/seal.js';
import { isValidShare } from '../crypto/shares.js';
import { wipe } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ConflictError, FragmentCorruptedError, NotFoundError } from '../errors.js';
import type { AuditEntry, AuditLog, FragmentStore } from '../ports.js';
import {
  FRAGMENT_FORMAT,
  deliveryAad,
  descriptorSchema,
  fragmentObjectSchema,
  importAad,
  shareAad,
  type FragmentObject,
  type KeyDescriptor,
} from './fragment.js';

export interface NodeIdentity {
  nodeId: string;
  identifier: string;
  wrapKey: Uint8Array;
  x25519Private: Uint8Array;
  version: string;
}

export interface NodeDeps {
  store: FragmentStore;
  audit: AuditLog;
}

export const auditStream = (nodeId: string) => `node#${nodeId}`;
const descriptorDigest = (d: KeyDescriptor) => sha256Hex(canonicalJson(d));
// The digest of the public part is bound into the share's AAD: a flipped byte anywhere in
// the object, public fields included, makes the node's own decryption fail.
export const atRestAad = (nodeId: string, identifier: string, d: KeyDescriptor) =>
  `${shareAad(d.keyId, d.version, nodeId, identifier)}|${descriptorDigest(d)}`;

const sealedBoxSchema = z.strictObject({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() });
export const importRequestSchema = z.strictObject({
  identifier: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
  descriptor: descriptorSchema,
  sealedShare: sealedBoxSchema,
});
export type ImportRequest = z.infer<typeof importRequestSchema>;

export interface FragmentResponse {
  nodeId: string;
  identifier: string;
  keyId: string;
  version: number;
  descriptor: KeyDescriptor;
  sealedShare: SealedBox;
}

export class NodeService {
  constructor(private readonly id: NodeIdentity, private readonly deps: NodeDeps) {}

  private async record(entry: AuditEntry): Promise<void> {
    await this.deps.audit.append(auditStream(this.id.nodeId), entry);
  }

  /** Best effort: used on paths that already fail, where the original error must win. */
  private async tryRecord(entry: AuditEntry): Promise<void> {
    await this.record(entry).catch(() => undefined);
  }

  async status() {
    let storage: 'ok' | 'unavailable' = 'ok';
    let keyCount: number | null = null;
    try {
      keyCount = (await this.deps.store.list()).length;
    } catch {
      storage = 'unavailable';
    }
    return {
      nodeId: this.id.nodeId,
      identifier: this.id.identifier,
      healthy: storage === 'ok',
      storage,
      keyCount,
      version: this.id.version,
      time: new Date().toISOString(),
    };
  }

  versionsOf(keyId: string): Promise<number[]> {
    return this.deps.store.versions(keyId);
  }

  async listKeys() {
    return { nodeId: this.id.nodeId, keys: await this.deps.store.list() };
  }

  /**
   * The key's public description. Looking is not an operation: a fragment that fails its
   * integrity check here answers fragment_corrupted without an audit record (every poll of
   * the dashboard would add one); the coordinator records such findings when they change,
   * and every operation that uses the share still records its own failure.
   */
  async describe(keyId: string, version?: number) {
    const { object, share } = await this.load(keyId, version, { look: true });
    wipe(share);
    return { nodeId: this.id.nodeId, identifier: this.id.identifier, descriptor: object.descriptor };
  }

  /**
   * A digest of the key's stored control document as it is now (null for none): the DKG
   * checks at commit that the create claim its round 1 was admitted under still stands.
   */
  async controlStamp(keyId: string): Promise<string | null> {
    const raw = await this.deps.store.getDoc('control', keyId);
    return raw === null ? null : sha256Hex(raw);
  }

  /** This node's share of the key, sealed to `recipient`. Audited before release (fail closed). */
  async fragment(keyId: string, recipient: Uint8Array, actor: string, version?: number, extra: Record<string, unknown> = {}): Promise<FragmentResponse> {
    const { object, share } = await this.load(keyId, version);
    const d = object.descriptor;
    if (d.type !== 'secret') {
      // Keys born distributed are never exported, whoever asks.
      wipe(share);
      await this.tryRecord({ actor, action: 'fragment.release', keyId, outcome: 'denied', details: { reason: 'key not exportable' } });
      throw new ConflictError('key_not_exportable', `key ${keyId} is a distributed ${d.type === 'encrypt' ? 'encryption' : 'signing'} key and is never exported`);
    }
    try {
      await this.record({ actor, action: 'fragment.release', keyId, outcome: 'success', details: { ...extra, version: d.version, sealedTo: Buffer.from(recipient).toString('base64') } });
      const sealedShare = seal(recipient, share, deliveryAad(d.keyId, d.version, this.id.nodeId, this.id.identifier));
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, keyId, version: d.version, descriptor: d, sealedShare };
    } finally {
      wipe(share);
    }
  }

  /** Store a share dealt to this node. The share must verify against the public commitments. */
  async importShare(req: ImportRequest, actor: string): Promise<{ nodeId: string; keyId: string; version: number; stored: true }> {
    const d = req.descriptor;
    const me = d.participants.find((p) => p.nodeId === this.id.nodeId);
    if (req.identifier !== this.id.identifier || !me || me.identifier !== this.id.identifier) {
      throw new BadRequestError('wrong_node', `share is not addressed to ${this.id.nodeId}`);
    }
    let share: Uint8Array;
    try {
      share = open(this.id.x25519Private, req.sealedShare, importAad(d.keyId, d.version, this.id.nodeId));
    } catch {
      throw new BadRequestError('invalid_share', 'sealed share does not open for this node');
    }
    try {
      if (!isValidShare(d.publicPackage, { identifier: this.id.identifier, signingShare: share })) {
        await this.tryRecord({ actor, action: 'fragment.store', keyId: d.keyId, outcome: 'failure', details: { reason: 'share fails the commitment check' } });
        throw new BadRequestError('invalid_share', 'share does not match the public commitments');
      }
      return await this.storeShare(d, share, actor);
    } finally {
      wipe(share);
    }
  }

  /**
   * Persist a verified share of a new key version, encrypted under the wrapping key,
   * and audit it; undone if the audit record cannot be written. Never overwrites.
   */
  async storeShare(d: KeyDescriptor, share: Uint8Array, actor: string): Promise<{ nodeId: string; keyId: string; version: number; stored: true }> {
    const object: FragmentObject = {
      format: FRAGMENT_FORMAT,
      nodeId: this.id.nodeId,
      identifier: this.id.identifier,
      descriptor: d,
      share: aesGcmSeal(this.id.wrapKey, share, atRestAad(this.id.nodeId, this.id.identifier, d)),
    };
    if (!(await this.deps.store.create(d.keyId, d.version, JSON.stringify(object)))) {
      throw new ConflictError('version_exists', `key ${d.keyId} v${d.version} already exists on ${this.id.nodeId}`);
    }
    try {
      await this.record({ actor, action: 'fragment.store', keyId: d.keyId, outcome: 'success', details: { version: d.version, type: d.type } });
    } catch {
      // Nothing stays unaudited: undo the write.
      await this.deps.store.delete(d.keyId, d.version).catch(() => undefined);
      throw new AuditUnavailableError();
    }
    return { nodeId: this.id.nodeId, keyId: d.keyId, version: d.version, stored: true };
  }

  /** Remove one version (used to roll back an import that did not reach every node). */
  async deleteVersion(keyId: string, version: number, actor: string) {
    if (!(await this.deps.store.versions(keyId)).includes(version)) throw new NotFoundError('key_not_found', `key ${keyId} v${version} not found`);
    await this.record({ actor, action: 'fragment.delete', keyId, outcome: 'success', details: { version } });
    await this.deps.store.delete(keyId, version);
    return { nodeId: this.id.nodeId, keyId, version, deleted: true };
  }

  /** The stored fragment and its decrypted share; the caller wipes the share. */
  async load(keyId: string, version?: number, opts: { look?: boolean } = {}): Promise<{ object: FragmentObject; share: Uint8Array }> {
    // A named version is read directly (a missing object reads as null): listing the
    // bucket first would add a storage round trip to every signature share.
    const v = version ?? (await this.deps.store.versions(keyId)).at(-1);
    if (v === undefined) throw new NotFoundError('key_not_found', `key ${keyId} not found on ${this.id.nodeId}`);
    const raw = await this.deps.store.get(keyId, v);
    if (raw === null) throw new NotFoundError('key_not_found', `key ${keyId} not found on ${this.id.nodeId}`);
    try {
      const object = fragmentObjectSchema.parse(JSON.parse(raw)) as FragmentObject;
      if (object.nodeId !== this.id.nodeId || object.identifier !== this.id.identifier || object.descriptor.keyId !== keyId || object.descriptor.version !== v) {
        throw new Error('object does not belong here');
      }
      const share = aesGcmOpen(this.id.wrapKey, object.share, atRestAad(this.id.nodeId, this.id.identifier, object.descriptor));
      return { object, share };
    } catch {
      if (!opts.look) await this.tryRecord({ actor: this.id.nodeId, action: 'fragment.integrity', keyId, outcome: 'failure', details: { version: v, reason: 'at-rest integrity check failed' } });
      throw new FragmentCorruptedError(this.id.nodeId, keyId);
    }
  }
}
