/**
 * Refresh and reshare (DESIGN §4): new shares of the same secret, for a new
 * threshold and/or node set, without the secret ever being assembled.
 *   deal     a holder in the chosen t-subset deals λ_i·s_i to the new set with noble's
 *            trustedDealer, each sub-share sealed to its receiver
 *   receive  a new node checks every dealer (C_i[0] = λ_i·Y_i against the old verifying
 *            share, its sub-share against C_i, and Σ C_i[0] = the old group key), sums
 *            its sub-shares and the commitments, and keeps the result sealed
 *   commit   once the coordinator has seen every new node agree, store version v+1
 * The group public key never changes; old and new shares do not combine.
 */
import * as z from '../zod.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { evaluateCommitment, frost, lagrangeAtZero, publicOfScalar, scalarSum, scalePoint, sumCommitments, sumPoints, weightedShare } from '../crypto/frost.js';
import { open, seal, type SealedBox } from '../crypto/seal.js';
import { identifierFor, isValidShare, type PublicPackage } from '../crypto/shares.js';
import { fromB64, fromHex, toHex, wipe } from '../encoding.js';
import { BadRequestError, PeerMisbehaviorError, SessionError, type Culprit } from '../errors.js';
import type { AuditLog } from '../ports.js';
import type { PeerEntry } from '../runtime-config.js';
import { descriptorSchema, publicPackageSchema, type KeyDescriptor } from './fragment.js';
import { dealtControlSchema, type DealtControl } from './access.js';
import { signStatement, verifyStatement } from '../crypto/identity.js';
import { auditStream, type NodeIdentity, type NodeService } from './service.js';
import { SESSION_ID, type SessionVault } from './sessions.js';

const KIND = 'reshare';
const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const sealed = z.strictObject({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() });
const participant = z.strictObject({ nodeId: z.string(), identifier: hex32 });

export const reshareSchemas = {
  deal: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    keyId: z.string(),
    version: z.number().check(z.int(), z.gte(1)),
    dealers: z.array(hex32).check(z.minLength(1), z.maxLength(255)),
    threshold: z.number().check(z.int(), z.gte(2), z.lte(255)),
    participants: z.array(participant).check(z.minLength(2), z.maxLength(255)),
  }),
  receive: z.strictObject({
    sessionId: z.string().check(z.regex(SESSION_ID)),
    old: descriptorSchema,
    threshold: z.number().check(z.int(), z.gte(2), z.lte(255)),
    participants: z.array(participant).check(z.minLength(2), z.maxLength(255)),
    createdAt: z.iso.datetime(),
    deals: z.array(z.strictObject({ nodeId: z.string(), identifier: hex32, commitments: z.array(hex32).check(z.minLength(1), z.maxLength(255)), sealedShare: sealed, control: dealtControlSchema, signature: z.string().check(z.maxLength(100)) })).check(z.minLength(1), z.maxLength(255)),
  }),
  commit: z.strictObject({ sessionId: z.string().check(z.regex(SESSION_ID)), publicPackage: publicPackageSchema }),
};

interface ReceiveState {
  expiresAt: number;
  descriptor: Omit<KeyDescriptor, 'publicPackage'>;
  commitments: string[];
  share: string;
}

const shareAad = (sessionId: string, from: string, to: string) => `fedkms/reshare/v1|${sessionId}|${from}|${to}`;

/**
 * What a dealer signs with its node identity key: this session, the old key version
 * exactly as it holds it, the new threshold and set, its commitments, and the key's
 * state and policy. Receivers check it, so the relay cannot alter any of them.
 */
const dealStatement = (sessionId: string, old: KeyDescriptor, threshold: number, participants: { nodeId: string; identifier: string }[], commitments: string[], control: DealtControl) => ({
  type: 'fedkms.reshare.deal.v1',
  sessionId,
  keyId: old.keyId,
  version: old.version,
  oldDescriptor: sha256Hex(canonicalJson(old)),
  threshold,
  participants,
  commitments,
  control,
});

export class NodeReshare {
  constructor(
    private readonly id: NodeIdentity & { signingKey: Uint8Array },
    private readonly peers: PeerEntry[],
    private readonly node: NodeService,
    private readonly vault: SessionVault,
    private readonly audit: AuditLog,
  ) {}

  private checkParticipants(participants: { nodeId: string; identifier: string }[], threshold: number) {
    if (threshold > participants.length) throw new BadRequestError('invalid_threshold', 'threshold exceeds the new node set');
    if (new Set(participants.map((p) => p.nodeId)).size !== participants.length) throw new BadRequestError('invalid_participants', 'duplicate participant');
    for (const p of participants) {
      const peer = this.peers.find((x) => x.id === p.nodeId);
      if (!peer || identifierFor(peer.index) !== p.identifier) throw new BadRequestError('invalid_participants', `${p.nodeId} is not a node of this federation`);
    }
  }

  /** Deal λ_i·s_i of our share of `version` to the new set; only sealed sub-shares leave. */
  async deal(req: z.infer<typeof reshareSchemas.deal>, actor: string, control: DealtControl) {
    this.checkParticipants(req.participants, req.threshold);
    const { object, share } = await this.node.load(req.keyId, req.version);
    const d = object.descriptor;
    let w: Uint8Array | undefined;
    try {
      const holders = d.participants.map((p) => p.identifier);
      if (!req.dealers.includes(this.id.identifier) || req.dealers.some((x) => !holders.includes(x)) || new Set(req.dealers).size !== req.dealers.length) {
        throw new BadRequestError('invalid_dealers', 'dealer set must be distinct holders of this version, including this node');
      }
      if (req.dealers.length < d.publicPackage.threshold) throw new BadRequestError('invalid_dealers', `need ${d.publicPackage.threshold} dealers`);
      w = weightedShare(share, lagrangeAtZero(req.dealers, this.id.identifier));
      const deal = frost.trustedDealer({ min: req.threshold, max: req.participants.length }, req.participants.map((p) => p.identifier), w);
      const sealedShares: Record<string, SealedBox> = {};
      for (const p of req.participants) {
        const sub = deal.secretShares[p.identifier]!.signingShare;
        const to = this.peers.find((x) => x.id === p.nodeId)!;
        sealedShares[p.nodeId] = seal(fromB64(to.x25519Public), sub, shareAad(req.sessionId, this.id.nodeId, p.nodeId));
        wipe(sub);
      }
      await this.audit.append(auditStream(this.id.nodeId), { actor, action: 'reshare.deal', keyId: req.keyId, outcome: 'success', details: { sessionId: req.sessionId, version: req.version, to: req.participants.map((p) => p.nodeId), threshold: req.threshold } });
      const commitments = deal.public.commitments.map(toHex);
      const signature = signStatement(this.id.signingKey, dealStatement(req.sessionId, d, req.threshold, req.participants, commitments, control));
      return { nodeId: this.id.nodeId, identifier: this.id.identifier, commitments, sealedShares, control, signature };
    } finally {
      wipe(share, w);
    }
  }

  /** Check every dealer, then sum our sub-shares into the new share (kept sealed until commit). */
  /** `admit` (the node's client gate) sees the state and policy every dealer signed for, before anything is kept. */
  async receive(req: z.infer<typeof reshareSchemas.receive>, admit: (control: DealtControl) => Promise<void>) {
    this.checkParticipants(req.participants, req.threshold);
    const me = req.participants.find((p) => p.nodeId === this.id.nodeId);
    if (!me || me.identifier !== this.id.identifier) throw new BadRequestError('wrong_node', `${this.id.nodeId} is not in the new set`);
    const old = req.old as KeyDescriptor;
    // A node that holds the old version trusts its own copy of the public package, not the relay's.
    const mine = (await this.node.versionsOf(old.keyId)).includes(old.version) ? await this.node.describe(old.keyId, old.version).catch(() => undefined) : undefined;
    if (mine && canonicalJson(mine.descriptor) !== canonicalJson(old)) {
      throw new PeerMisbehaviorError('reshare refused: the old key version differs from ours', [{ nodeId: 'coordinator', reason: 'relayed a different key description' }]);
    }
    const controls = new Set(req.deals.map((dl) => canonicalJson(dl.control)));
    if (controls.size !== 1) throw new PeerMisbehaviorError('reshare refused: dealers disagree on the key state or policy', [{ nodeId: 'coordinator', reason: 'relayed dealings with different key rules' }]);
    const dealerIds = req.deals.map((x) => x.identifier);
    const culprits: Culprit[] = [];
    const subShares: Uint8Array[] = [];
    for (const dl of req.deals) {
      const holder = old.participants.find((p) => p.nodeId === dl.nodeId && p.identifier === dl.identifier);
      const Y = old.publicPackage.verifyingShares[dl.identifier];
      if (!holder || !Y) {
        culprits.push({ nodeId: dl.nodeId, reason: 'not a holder of the old version' });
        continue;
      }
      const peer = this.peers.find((x) => x.id === dl.nodeId);
      if (!peer || !verifyStatement(peer.signingPublic, dealStatement(req.sessionId, old, req.threshold, req.participants, dl.commitments, dl.control), dl.signature)) {
        culprits.push({ nodeId: dl.nodeId, reason: 'dealing not signed by that node for this key version' });
        continue;
      }
      if (dl.commitments.length !== req.threshold) {
        culprits.push({ nodeId: dl.nodeId, reason: 'commitment vector of the wrong length' });
        continue;
      }
      if (dl.commitments[0] !== scalePoint(Y, lagrangeAtZero(dealerIds, dl.identifier))) {
        culprits.push({ nodeId: dl.nodeId, reason: 'dealt value is not its weighted old share' });
        continue;
      }
      let sub: Uint8Array;
      try {
        sub = open(this.id.x25519Private, dl.sealedShare, shareAad(req.sessionId, dl.nodeId, this.id.nodeId));
      } catch {
        culprits.push({ nodeId: dl.nodeId, reason: 'sub-share does not open' });
        continue;
      }
      const pkg: PublicPackage = { threshold: req.threshold, total: req.participants.length, commitments: dl.commitments, verifyingShares: { [me.identifier]: evaluateCommitment(dl.commitments, me.identifier) } };
      if (!isValidShare(pkg, { identifier: me.identifier, signingShare: sub })) {
        culprits.push({ nodeId: dl.nodeId, reason: 'sub-share fails its commitments' });
        wipe(sub);
        continue;
      }
      subShares.push(sub);
    }
    if (!culprits.length && sumPoints(req.deals.map((x) => x.commitments[0]!)) !== old.publicPackage.commitments[0]) {
      culprits.push({ nodeId: 'coordinator', reason: 'dealer set does not rebuild the group key' });
    }
    if (culprits.length) {
      subShares.forEach((x) => wipe(x));
      throw new PeerMisbehaviorError('reshare refused: bad dealing', culprits);
    }
    try {
      await admit(req.deals[0]!.control);
    } catch (e) {
      subShares.forEach((x) => wipe(x));
      throw e;
    }
    const share = scalarSum(subShares);
    subShares.forEach((x) => wipe(x));
    const commitments = sumCommitments(req.deals.map((x) => x.commitments));
    const { publicPackage: _drop, ...rest } = old;
    void _drop;
    const descriptor = { ...rest, version: old.version + 1, createdAt: req.createdAt, participants: req.participants };
    await this.vault.save<ReceiveState>(KIND, req.sessionId, { expiresAt: this.vault.expiry(), descriptor, commitments, share: toHex(share) });
    const verifyingShare = publicOfScalar(share);
    wipe(share);
    return { nodeId: this.id.nodeId, identifier: this.id.identifier, commitments, commitmentsDigest: sha256Hex(canonicalJson(commitments)), verifyingShare };
  }

  /** Store version v+1 under the agreed public package; our share must verify against it. */
  async commit(req: z.infer<typeof reshareSchemas.commit>, actor: string) {
    const s = await this.vault.load<ReceiveState>(KIND, req.sessionId);
    const pub = req.publicPackage as PublicPackage;
    if (canonicalJson(pub.commitments) !== canonicalJson(s.commitments) || pub.commitments.length !== pub.threshold) {
      throw new PeerMisbehaviorError('reshare commit refused: commitments differ from ours', [{ nodeId: 'coordinator', reason: 'relayed different commitments' }]);
    }
    for (const [id, y] of Object.entries(pub.verifyingShares)) {
      if (evaluateCommitment(pub.commitments, id) !== y) throw new PeerMisbehaviorError('reshare commit refused: a verifying share does not match', [{ nodeId: 'coordinator', reason: `bad verifying share for ${id}` }]);
    }
    const share = fromHex(s.share);
    try {
      if (!isValidShare(pub, { identifier: this.id.identifier, signingShare: share })) throw new SessionError('session_state', 'our new share does not verify');
      const out = await this.node.storeShare({ ...s.descriptor, publicPackage: pub } as KeyDescriptor, share, actor);
      await this.vault.drop(KIND, req.sessionId);
      return out;
    } finally {
      wipe(share);
    }
  }
}
