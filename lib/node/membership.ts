/**
 * The membership document as this node holds it (lib/federation/membership.ts): stored sealed
 * under the node's wrapping key, like its client registry, and accepted only when signed by
 * an active administrator of this node's own registry. It is checked again on every read, so
 * an edit in the node's storage, or an administrator since disabled, makes it unusable here.
 */
import { checkSuccession, membershipSignedBy, signedMembershipSchema, type Member, type Membership, type SignedMembership } from '../federation/membership.js';
import { BadRequestError, ForbiddenError, FragmentCorruptedError } from '../errors.js';
import type { AuditLog } from '../ports.js';
import type { NodeAccess } from './access.js';

export interface MembershipDeps {
  nodeId: string;
  signingPublic: string;
  x25519Public: string;
  access: NodeAccess;
  audit: AuditLog;
  stream: string;
  /** How long an instance reuses what it read: short, so a change reaches every warm instance soon. */
  cacheMs?: number;
}

export class NodeMembership {
  private cached: { at: number; value: SignedMembership | null } | undefined;

  constructor(private readonly d: MembershipDeps) {}

  /** An administrator's signature, checked against this node's registry. */
  private async assertSignedByAdmin(s: SignedMembership): Promise<void> {
    const rec = await this.d.access.client(s.signer);
    if (!rec || rec.status !== 'active' || !rec.roles.includes('admin')) {
      throw new ForbiddenError('membership_unsigned', `${s.signer} is not an active administrator of ${this.d.nodeId}`);
    }
    if (!membershipSignedBy(s, rec.publicKey)) throw new ForbiddenError('membership_unsigned', `the membership document is not signed by ${s.signer}`);
  }

  /** The stored document, verified; null before the first one arrives. `fresh` skips the instance cache. */
  async current(fresh = false): Promise<SignedMembership | null> {
    const ttl = this.d.cacheMs ?? 5000;
    if (!fresh && this.cached && Date.now() - this.cached.at < ttl) return this.cached.value;
    const stored = await this.d.access.readDoc('federation', 'membership', signedMembershipSchema);
    if (stored) {
      try {
        await this.assertSignedByAdmin(stored);
      } catch {
        // Sealed under our key but no longer vouched for by an administrator of ours.
        throw new FragmentCorruptedError(this.d.nodeId, 'federation:membership');
      }
    }
    this.cached = { at: Date.now(), value: stored };
    return stored;
  }

  /** This node's entry, when the document names it with its own keys. */
  me(m: Membership | undefined): Member | undefined {
    return m?.nodes.find((n) => n.id === this.d.nodeId && n.signingPublic === this.d.signingPublic && n.x25519Public === this.d.x25519Public);
  }

  /** Accept a newer signed document: audited first (fail closed), then stored. */
  async update(input: unknown, actor: string): Promise<{ nodeId: string; version: number; member: boolean }> {
    const parsed = signedMembershipSchema.safeParse(input);
    if (!parsed.success) throw new BadRequestError('invalid_membership', 'not a signed membership document (fedkms.membership/v1)');
    const next = parsed.data;
    await this.assertSignedByAdmin(next);
    const cur = await this.current(true);
    if (cur && cur.document.version === next.document.version && cur.signature === next.signature) {
      return { nodeId: this.d.nodeId, version: next.document.version, member: !!this.me(next.document) };
    }
    checkSuccession(cur?.document ?? null, next.document);
    const listed = next.document.nodes.find((n) => n.id === this.d.nodeId);
    if (listed && !this.me(next.document)) throw new BadRequestError('wrong_identity', `the document lists ${this.d.nodeId} with keys that are not this node's`);
    await this.d.audit.append(this.d.stream, {
      actor,
      action: 'membership.update',
      outcome: 'success',
      details: { version: next.document.version, signer: next.signer, nodes: next.document.nodes.map((n) => n.id), threshold: next.document.threshold, member: !!listed },
    });
    await this.d.access.writeDoc('federation', 'membership', next);
    this.cached = { at: Date.now(), value: next };
    return { nodeId: this.d.nodeId, version: next.document.version, member: !!listed };
  }
}
