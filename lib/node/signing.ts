/**
 * A node's side of FROST signing (RFC 9591), two rounds:
 *   commit  fresh nonces, kept sealed in the node's own storage, bound to the session,
 *           the key version and the published commitment; only the commitment leaves
 *   share   after checking the commitment list, consume the nonce with one atomic
 *           DynamoDB conditional write, audit, and only then release a signature share
 * A replayed or concurrent second round 2 for the same session finds the nonce
 * consumed and gets nothing, on any Lambda instance.
 */
import * as z from '../zod.js';
import { sha256Hex } from '../crypto/hash.js';
import { commitmentFromHex, commitmentToHex, frost, publicPackageFromHex, type CommitmentHex } from '../crypto/frost.js';
import { fromB64, fromHex, toHex, wipe } from '../encoding.js';
import { publicPointCheck, signingSuite, type PointCheck } from '../crypto/suite.js';
import { BadRequestError, NotFoundError, SessionError } from '../errors.js';
import type { AuditLog, ReplayGuard } from '../ports.js';
import type { KeyDescriptor } from './fragment.js';
import { assertPurpose } from '../access/policy.js';
import { auditStream, type NodeIdentity, type NodeService } from './service.js';
import { SESSION_ID, type SessionVault } from './sessions.js';

const KIND = 'sign';
const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const commitmentHex = z.strictObject({ identifier: hex32, hiding: hex32, binding: hex32 });
export const MAX_MESSAGE_BYTES = 32 * 1024;
/** Pre-published nonces wait longer than a two-round session, but not forever. */
export const POOL_TTL_S = 3600;

export const signSchemas = {
  commit: z.strictObject({ sessionId: z.string().check(z.regex(SESSION_ID)), keyId: z.string(), version: z.optional(z.number().check(z.int(), z.gte(1))) }),
  preprocess: z.strictObject({ keyId: z.string(), sessionIds: z.array(z.string().check(z.regex(SESSION_ID))).check(z.minLength(1), z.maxLength(50)) }),
  share: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    keyId: z.string(),
    message: z.strictBase64().check(z.maxLength(Math.ceil(MAX_MESSAGE_BYTES / 3) * 4 + 4)),
    commitments: z.array(commitmentHex).check(z.minLength(1), z.maxLength(255)),
  }),
};

/**
 * The replay scope of a signature share: the signer set of the commitment list (sorted
 * identifiers, hashed). One client request gets at most one share from a node per set.
 */
export const signerSet = (list: { identifier: string }[]): string => sha256Hex(list.map((c) => c.identifier).sort().join(',')).slice(0, 32);

interface SignState {
  expiresAt: number;
  keyId: string;
  version: number;
  commitment: CommitmentHex;
  nonces: { hiding: string; binding: string };
}

export class NodeSigning {
  constructor(
    private readonly id: NodeIdentity,
    private readonly node: NodeService,
    private readonly vault: SessionVault,
    private readonly audit: AuditLog,
    private readonly replay: ReplayGuard,
  ) {}

  async commit(req: z.infer<typeof signSchemas.commit>) {
    const { object, share } = await this.node.load(req.keyId, req.version);
    try {
      if (await this.vault.exists(KIND, req.sessionId)) throw new SessionError('session_state', `signing session ${req.sessionId} already exists`);
      const gen = frost.commit({ identifier: this.id.identifier, signingShare: share });
      const commitment = commitmentToHex(gen.commitments);
      const state: SignState = { expiresAt: this.vault.expiry(), keyId: req.keyId, version: object.descriptor.version, commitment, nonces: { hiding: toHex(gen.nonces.hiding), binding: toHex(gen.nonces.binding) } };
      wipe(gen.nonces.hiding, gen.nonces.binding);
      await this.vault.save(KIND, req.sessionId, state);
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, keyId: req.keyId, version: state.version, commitment, descriptor: object.descriptor };
    } finally {
      wipe(share);
    }
  }

  /**
   * RFC 9591 preprocessing: a batch of commitments published ahead of time, so a later
   * signature needs only round 2. Each nonce is sealed in its own session, used at most once.
   */
  async preprocess(req: z.infer<typeof signSchemas.preprocess>) {
    const { object, share } = await this.node.load(req.keyId);
    try {
      // One key, one purpose: only a signing key pre-publishes nonces (the reshare canary never uses the pool).
      assertPurpose(object.descriptor.type, 'sign', req.keyId);
      const commitments: { sessionId: string; commitment: CommitmentHex }[] = [];
      for (const sessionId of new Set(req.sessionIds)) {
        if (await this.vault.exists(KIND, sessionId)) continue;
        const gen = frost.commit({ identifier: this.id.identifier, signingShare: share });
        const commitment = commitmentToHex(gen.commitments);
        const state: SignState = { expiresAt: this.vault.expiry(Date.now(), POOL_TTL_S), keyId: req.keyId, version: object.descriptor.version, commitment, nonces: { hiding: toHex(gen.nonces.hiding), binding: toHex(gen.nonces.binding) } };
        wipe(gen.nonces.hiding, gen.nonces.binding);
        await this.vault.save(KIND, sessionId, state);
        commitments.push({ sessionId, commitment });
      }
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, keyId: req.keyId, version: object.descriptor.version, descriptor: object.descriptor, commitments };
    } finally {
      wipe(share);
    }
  }

  /** `authorize` (the node's client gate) sees the key version and the exact message, and names the actor. */
  async share(req: z.infer<typeof signSchemas.share>, actor: string, authorize?: (version: number, message: Uint8Array, keyType: KeyDescriptor['type']) => Promise<string>) {
    const s = await this.vault.load<SignState>(KIND, req.sessionId).catch(async (e: unknown) => {
      // No session of a key this node does not hold: the key is what is missing (404, as on every key route).
      if (e instanceof SessionError && (await this.node.versionsOf(req.keyId)).length === 0) throw new NotFoundError('key_not_found', `key ${req.keyId} not found on ${this.id.nodeId}`);
      throw e;
    });
    if (s.keyId !== req.keyId) throw new BadRequestError('invalid_session', 'session is for another key');
    const { object, share } = await this.node.load(req.keyId, s.version);
    try {
      const d = object.descriptor;
      this.checkCommitments(req.commitments, s, d.participants.map((p) => p.identifier), d.publicPackage.threshold, await publicPointCheck());
      const message = fromB64(req.message, 'message');
      if (message.length > MAX_MESSAGE_BYTES) throw new BadRequestError('message_too_large', `message exceeds ${MAX_MESSAGE_BYTES} bytes`);
      if (authorize) actor = await authorize(s.version, message, d.type);
      // Single use, across every Lambda instance: the nonce is spent before any share exists.
      if (!(await this.replay.claim(this.id.nodeId, `nonce-${req.sessionId}`, Math.ceil(s.expiresAt / 1000) + 3600))) {
        throw new SessionError('nonce_used', `the nonce of session ${req.sessionId} was already used`);
      }
      const signers = req.commitments.map((c) => d.participants.find((p) => p.identifier === c.identifier)!.nodeId);
      // Both must succeed before a share exists; with the nonce already claimed, their order does not matter.
      await Promise.all([
        this.vault.drop(KIND, req.sessionId),
        this.audit.append(auditStream(this.id.nodeId), { actor, action: 'sign.share', keyId: req.keyId, outcome: 'success', details: { version: s.version, sessionId: req.sessionId, messageSha256: sha256Hex(message), signers } }),
      ]);
      const nonces = { hiding: fromHex(s.nonces.hiding), binding: fromHex(s.nonces.binding) };
      const suite = await signingSuite();
      const sig = suite.signShare({ identifier: this.id.identifier, signingShare: share }, publicPackageFromHex(d.publicPackage), nonces, req.commitments.map(commitmentFromHex), message);
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, share: toHex(sig) };
    } finally {
      wipe(share);
    }
  }

  /** The list must hold our own commitment as published, distinct participants, and sound points only. */
  private checkCommitments(list: CommitmentHex[], s: SignState, participants: string[], threshold: number, isValidPublicPoint: PointCheck) {
    const ids = list.map((c) => c.identifier);
    if (new Set(ids).size !== ids.length) throw new BadRequestError('invalid_commitments', 'duplicate signer in the commitment list');
    if (list.length < threshold) throw new BadRequestError('invalid_commitments', `need ${threshold} signers`);
    if (ids.some((id) => !participants.includes(id))) throw new BadRequestError('invalid_commitments', 'signer outside the key set');
    const mine = list.find((c) => c.identifier === this.id.identifier);
    if (!mine || mine.hiding !== s.commitment.hiding || mine.binding !== s.commitment.binding) {
      throw new BadRequestError('invalid_commitments', 'our commitment is missing or altered');
    }
    if (list.some((c) => !isValidPublicPoint(c.hiding) || !isValidPublicPoint(c.binding))) {
      throw new BadRequestError('invalid_commitments', 'identity, small-order or malformed commitment point');
    }
  }
}
