/**
 * A node's side of distributed key generation (noble's FROST DKG, relayed by the
 * coordinator, which never sees a share):
 *   round1  make a polynomial, sign the round-1 package with the node's identity key
 *   confirm check every peer's signature and package (naming a cheater), sign the
 *           digest of the complete round-1 set
 *   round2  only if every peer confirmed the same digest (a relay cannot equivocate),
 *           send each peer its share, sealed to that peer's X25519 key
 *   round3  open and check each received share against its sender's commitment,
 *           finish the key package
 *   commit  store the share as version 1, once the coordinator has seen that every
 *           node computed the same public key package
 * Any failure deletes the session: no partially created key is ever stored.
 */
import * as z from '../zod.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { checkRound1Package, frost, isValidDkgShare, publicPackageToHex, round1FromHex, round1SetDigest, type Round1Hex } from '../crypto/frost.js';
import { signStatement, verifyStatement } from '../crypto/identity.js';
import { open, seal, type SealedBox } from '../crypto/seal.js';
import { identifierFor, isValidShare, type PublicPackage } from '../crypto/shares.js';
import { fromB64, fromHex, toHex, wipe } from '../encoding.js';
import { BadRequestError, ConflictError, KeyBeingCreatedError, PeerMisbehaviorError, SessionError, type Culprit } from '../errors.js';
import type { AuditLog } from '../ports.js';
import type { PeerEntry } from '../runtime-config.js';
import type { DkgKeyType, KeyDescriptor } from './fragment.js';
import { auditStream, type NodeIdentity, type NodeService } from './service.js';
import { SESSION_ID, type SessionVault } from './sessions.js';

const KIND = 'dkg';
const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const sealed = z.strictObject({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() });
const round1Hex = z.strictObject({ identifier: hex32, commitment: z.array(hex32).check(z.minLength(1), z.maxLength(255)), proofOfKnowledge: z.string().check(z.regex(/^[0-9a-f]{128}$/)) });
const participant = z.strictObject({ nodeId: z.string(), identifier: hex32 });

export const dkgSchemas = {
  round1: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    keyId: z.string(),
    threshold: z.number().check(z.int(), z.gte(2), z.lte(255)),
    participants: z.array(participant).check(z.minLength(2), z.maxLength(255)),
    createdAt: z.iso.datetime(),
    /** What the key is for (default ed25519): the same DKG makes both; the descriptor says which. */
    type: z.optional(z.enum(['ed25519', 'encrypt'])),
  }),
  confirm: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    round1: z.array(z.strictObject({ nodeId: z.string(), package: round1Hex, signature: z.string() })).check(z.minLength(2), z.maxLength(255)),
  }),
  round2: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    confirmations: z.array(z.strictObject({ nodeId: z.string(), digest: hex32, signature: z.string() })).check(z.minLength(2), z.maxLength(255)),
  }),
  round3: z.strictObject({ sessionId: z.string().check(z.regex(SESSION_ID)), shares: z.record(z.string(), sealed) }),
  commit: z.strictObject({ sessionId: z.string().check(z.regex(SESSION_ID)), publicPackageDigest: hex32 }),
  abort: z.strictObject({ sessionId: z.string().check(z.regex(SESSION_ID)), reason: z.string().check(z.maxLength(200)) }),
};

interface DkgState {
  expiresAt: number;
  step: 'round1' | 'confirmed' | 'round2' | 'finished';
  keyId: string;
  /** Absent in sessions begun before key types other than ed25519 existed. */
  type?: DkgKeyType;
  threshold: number;
  createdAt: string;
  participants: { nodeId: string; identifier: string }[];
  own: Round1Hex;
  secret: unknown;
  round1?: Round1Hex[];
  digest?: string;
  result?: { publicPackage: PublicPackage; signingShare: string };
  /** The key's control document when round 1 was admitted (the create's claim): commit needs it unchanged. */
  claim?: string | null;
}

// What a node signs. The session, key and participant list are inside, so a package
// cannot be replayed into another run.
// The key type is in it too (only when not ed25519, so statements of signing-key runs are unchanged).
const round1Statement = (sessionId: string, s: Pick<DkgState, 'keyId' | 'threshold' | 'participants' | 'type'>, pkg: Round1Hex) =>
  ({ type: 'fedkms.dkg.round1', sessionId, keyId: s.keyId, ...(s.type && s.type !== 'ed25519' ? { keyType: s.type } : {}), threshold: s.threshold, participants: s.participants, package: pkg });
const confirmStatement = (sessionId: string, digest: string) => ({ type: 'fedkms.dkg.confirm', sessionId, digest });
const shareAad = (sessionId: string, from: string, to: string) => `fedkms/dkg-share/v1|${sessionId}|${from}|${to}`;
export const publicPackageDigest = (p: PublicPackage) => sha256Hex(canonicalJson(p));

export class NodeDkg {
  constructor(
    private readonly id: NodeIdentity & { signingKey: Uint8Array },
    private readonly peers: PeerEntry[],
    private readonly node: NodeService,
    private readonly vault: SessionVault,
    private readonly audit: AuditLog,
  ) {}

  private peer(nodeId: string): PeerEntry {
    const p = this.peers.find((x) => x.id === nodeId);
    if (!p) throw new BadRequestError('unknown_participant', `${nodeId} is not a node of this federation`);
    return p;
  }

  private async abortWith(sessionId: string, keyId: string, err: Error, culprits: Culprit[] = []): Promise<never> {
    await this.vault.drop(KIND, sessionId);
    await this.audit.append(auditStream(this.id.nodeId), { actor: 'coordinator', action: 'dkg.abort', keyId, outcome: 'failure', details: { sessionId, culprits } }).catch(() => undefined);
    throw err;
  }

  async round1(req: z.infer<typeof dkgSchemas.round1>) {
    const n = req.participants.length;
    if (req.threshold > n) throw new BadRequestError('invalid_threshold', `threshold ${req.threshold} exceeds ${n} participants`);
    const ids = new Set(req.participants.map((p) => p.nodeId));
    if (ids.size !== n) throw new BadRequestError('invalid_participants', 'duplicate participant');
    for (const p of req.participants) {
      if (p.identifier !== identifierFor(this.peer(p.nodeId).index)) throw new BadRequestError('invalid_participants', `wrong identifier for ${p.nodeId}`);
    }
    if (!ids.has(this.id.nodeId)) throw new BadRequestError('wrong_node', `${this.id.nodeId} is not a participant`);
    if ((await this.node.versionsOf(req.keyId)).length > 0) throw new ConflictError('key_exists', `key ${req.keyId} already exists`);
    if (await this.vault.exists(KIND, req.sessionId)) throw new SessionError('session_state', `session ${req.sessionId} already exists`);

    // The route admitted this round under the create's claim on the id (lib/node/gate.ts).
    const claim = await this.node.controlStamp(req.keyId);
    const r1 = frost.DKG.round1(this.id.identifier, { min: req.threshold, max: n });
    const own: Round1Hex = { identifier: r1.public.identifier, commitment: r1.public.commitment.map(toHex), proofOfKnowledge: toHex(r1.public.proofOfKnowledge) };
    const state: DkgState = { expiresAt: this.vault.expiry(), step: 'round1', keyId: req.keyId, type: req.type ?? 'ed25519', threshold: req.threshold, createdAt: req.createdAt, participants: req.participants, own, secret: r1.secret, claim };
    await this.vault.save(KIND, req.sessionId, state);
    await this.audit.append(auditStream(this.id.nodeId), { actor: 'coordinator', action: 'dkg.round1', keyId: req.keyId, outcome: 'success', details: { sessionId: req.sessionId, threshold: req.threshold, participants: [...ids] } });
    return { nodeId: this.id.nodeId, package: own, signature: signStatement(this.id.signingKey, round1Statement(req.sessionId, state, own)) };
  }

  async confirm(req: z.infer<typeof dkgSchemas.confirm>) {
    const s = await this.step(req.sessionId, 'round1');
    const culprits: Culprit[] = [];
    const byNode = new Map(req.round1.map((r) => [r.nodeId, r]));
    for (const p of s.participants) {
      const r = byNode.get(p.nodeId);
      if (!r) culprits.push({ nodeId: p.nodeId, reason: 'no round-1 package' });
      else if (!verifyStatement(this.peer(p.nodeId).signingPublic, round1Statement(req.sessionId, s, r.package), r.signature)) culprits.push({ nodeId: p.nodeId, reason: 'round-1 package not signed by that node' });
      else if (r.package.identifier !== p.identifier) culprits.push({ nodeId: p.nodeId, reason: 'round-1 package for another identifier' });
      else if (p.nodeId === this.id.nodeId) {
        if (canonicalJson(r.package) !== canonicalJson(s.own)) culprits.push({ nodeId: p.nodeId, reason: 'our own package was altered' });
      } else {
        const bad = checkRound1Package(r.package, s.threshold);
        if (bad) culprits.push({ nodeId: p.nodeId, reason: bad });
      }
    }
    if (byNode.size !== req.round1.length || req.round1.length !== s.participants.length) culprits.push({ nodeId: 'coordinator', reason: 'round-1 set has extra or duplicate entries' });
    if (culprits.length) await this.abortWith(req.sessionId, s.keyId, new PeerMisbehaviorError('DKG aborted: bad round-1 package', culprits), culprits);
    const round1 = s.participants.map((p) => byNode.get(p.nodeId)!.package);
    const digest = round1SetDigest(round1);
    await this.vault.save(KIND, req.sessionId, { ...s, step: 'confirmed', round1, digest });
    return { nodeId: this.id.nodeId, digest, signature: signStatement(this.id.signingKey, confirmStatement(req.sessionId, digest)) };
  }

  async round2(req: z.infer<typeof dkgSchemas.round2>) {
    const s = await this.step(req.sessionId, 'confirmed');
    const culprits: Culprit[] = [];
    for (const p of s.participants) {
      const c = req.confirmations.find((x) => x.nodeId === p.nodeId);
      if (!c) culprits.push({ nodeId: p.nodeId, reason: 'no transcript confirmation' });
      else if (!verifyStatement(this.peer(p.nodeId).signingPublic, confirmStatement(req.sessionId, c.digest), c.signature)) culprits.push({ nodeId: p.nodeId, reason: 'confirmation not signed by that node' });
      else if (c.digest !== s.digest) culprits.push({ nodeId: p.nodeId, reason: 'saw a different round-1 set (equivocation)' });
    }
    if (culprits.length) await this.abortWith(req.sessionId, s.keyId, new PeerMisbehaviorError('DKG aborted: participants saw different round-1 sets', culprits), culprits);
    const others = s.round1!.filter((p) => p.identifier !== this.id.identifier).map(round1FromHex);
    const secret = s.secret as Parameters<typeof frost.DKG.round2>[0];
    const out = frost.DKG.round2(secret, others);
    const shares: Record<string, SealedBox> = {};
    for (const p of s.participants.filter((x) => x.nodeId !== this.id.nodeId)) {
      const pkg = out[p.identifier];
      if (!pkg) throw new Error(`no round-2 share for ${p.nodeId}`);
      shares[p.nodeId] = seal(fromB64(this.peer(p.nodeId).x25519Public), pkg.signingShare, shareAad(req.sessionId, this.id.nodeId, p.nodeId));
      wipe(pkg.signingShare);
    }
    await this.vault.save(KIND, req.sessionId, { ...s, step: 'round2', secret });
    return { nodeId: this.id.nodeId, shares };
  }

  async round3(req: z.infer<typeof dkgSchemas.round3>) {
    const s = await this.step(req.sessionId, 'round2');
    const culprits: Culprit[] = [];
    const received: { identifier: string; signingShare: Uint8Array }[] = [];
    for (const p of s.participants.filter((x) => x.nodeId !== this.id.nodeId)) {
      const box = req.shares[p.nodeId];
      const pkg = s.round1!.find((r) => r.identifier === p.identifier)!;
      if (!box) {
        culprits.push({ nodeId: p.nodeId, reason: 'no round-2 share' });
        continue;
      }
      let share: Uint8Array;
      try {
        share = open(this.id.x25519Private, box, shareAad(req.sessionId, p.nodeId, this.id.nodeId));
      } catch {
        culprits.push({ nodeId: p.nodeId, reason: 'round-2 share does not open' });
        continue;
      }
      if (!isValidDkgShare(this.id.identifier, share, pkg.commitment, s.threshold, s.participants.length)) {
        culprits.push({ nodeId: p.nodeId, reason: "round-2 share fails the sender's commitment" });
        wipe(share);
        continue;
      }
      received.push({ identifier: p.identifier, signingShare: share });
    }
    if (culprits.length) {
      received.forEach((r) => wipe(r.signingShare));
      await this.abortWith(req.sessionId, s.keyId, new PeerMisbehaviorError('DKG aborted: bad round-2 share', culprits), culprits);
    }
    const others = s.round1!.filter((p) => p.identifier !== this.id.identifier).map(round1FromHex);
    const key = frost.DKG.round3(s.secret as Parameters<typeof frost.DKG.round3>[0], others, received);
    received.forEach((r) => wipe(r.signingShare));
    const publicPackage = publicPackageToHex(key.public);
    if (!isValidShare(publicPackage, { identifier: this.id.identifier, signingShare: key.secret.signingShare })) {
      await this.abortWith(req.sessionId, s.keyId, new Error('DKG result does not verify'));
    }
    await this.vault.save(KIND, req.sessionId, { ...s, step: 'finished', secret: null, result: { publicPackage, signingShare: toHex(key.secret.signingShare) } });
    wipe(key.secret.signingShare);
    return { nodeId: this.id.nodeId, publicPackage, publicPackageDigest: publicPackageDigest(publicPackage) };
  }

  async commit(req: z.infer<typeof dkgSchemas.commit>) {
    const s = await this.step(req.sessionId, 'finished');
    const r = s.result!;
    if (publicPackageDigest(r.publicPackage) !== req.publicPackageDigest) {
      await this.abortWith(req.sessionId, s.keyId, new PeerMisbehaviorError('DKG aborted: nodes computed different public keys', [{ nodeId: 'coordinator', reason: 'public key package digest differs' }]));
    }
    // A run whose claim was released (its own rollback) or taken over (its client's retry,
    // once this run was presumed dead) stores nothing: the id is no longer its to fill.
    const claimStands = async () => s.claim === undefined || (await this.node.controlStamp(s.keyId)) === s.claim;
    const lost = () => this.abortWith(req.sessionId, s.keyId, new KeyBeingCreatedError(s.keyId, 1));
    if (!(await claimStands())) await lost();
    const d: KeyDescriptor = { keyId: s.keyId, version: 1, type: s.type ?? 'ed25519', origin: 'dkg', state: 'active', createdAt: s.createdAt, publicPackage: r.publicPackage, participants: s.participants };
    const share = fromHex(r.signingShare);
    try {
      const out = await this.node.storeShare(d, share, 'coordinator');
      // Checked again once stored: a rollback that released the claim while this share was
      // being written found nothing to delete, so the share is taken back here.
      if (!(await claimStands())) {
        await this.node.deleteVersion(s.keyId, 1, 'coordinator').catch(() => undefined);
        await lost();
      }
      await this.vault.drop(KIND, req.sessionId);
      return out;
    } finally {
      wipe(share);
    }
  }

  async abort(req: z.infer<typeof dkgSchemas.abort>) {
    const existed = await this.vault.exists(KIND, req.sessionId);
    await this.vault.drop(KIND, req.sessionId);
    await this.audit.append(auditStream(this.id.nodeId), { actor: 'coordinator', action: 'dkg.abort', outcome: 'failure', details: { sessionId: req.sessionId, reason: req.reason } }).catch(() => undefined);
    return { nodeId: this.id.nodeId, aborted: existed };
  }

  private async step(sessionId: string, expected: DkgState['step']): Promise<DkgState> {
    const s = await this.vault.load<DkgState>(KIND, sessionId);
    if (s.step !== expected) throw new SessionError('session_state', `DKG session is at ${s.step}, not ${expected}`);
    return s;
  }
}
