/**
 * How the coordinator learns who the members are: from the nodes, at run time, never from its
 * deployment. It asks its seeds and every member it already knows for the signed membership
 * document each holds, and believes the newest version that a threshold of that version's
 * own members hold identically. Each node checked the administrator's signature against its
 * own registry before storing the document, so the coordinator trusts no single node, and a
 * node whose stored copy was edited or rolled back is outvoted and named.
 */
import * as z from '../zod.js';
import { membershipDigest, signedMembershipSchema, type Member, type SignedMembership } from '../federation/membership.js';
import { QuorumError } from '../errors.js';
import { currentDeadline } from '../deadline.js';
import type { NodeEndpoint, SeedEntry } from '../runtime-config.js';
import type { NodeClient } from './node-client.js';

const answerSchema = z.object({ nodeId: z.string(), membership: z.nullable(signedMembershipSchema) });

export interface NodeMembershipReport {
  nodeId: string;
  url: string;
  /** The version this node holds, null for none; undefined when it did not answer. */
  version?: number | null;
  /** The document it holds is the accepted one. */
  agrees: boolean;
  error?: string;
}

export interface LearnedMembership {
  signed: SignedMembership;
  digest: string;
  /** Members that hold exactly this document. */
  agreed: string[];
  reports: NodeMembershipReport[];
  learnedAt: number;
}

/** A member as the fan-out code addresses it. */
export const endpointOf = (m: Member): NodeEndpoint => ({ id: m.id, index: m.index, url: m.endpoint, x25519Public: m.x25519Public, signingPublic: m.signingPublic });

/** How long a learned membership stays usable while the nodes cannot be asked. */
const STALE_MS = 5 * 60_000;

export class MembershipView {
  private learned: LearnedMembership | undefined;
  private inflight: Promise<LearnedMembership> | undefined;

  constructor(private readonly d: { seeds: SeedEntry[]; client: NodeClient; cacheMs: number; askTimeoutMs?: number }) {}

  /**
   * The membership, from the instance cache while it is fresh; `force` asks the nodes now.
   * When asking fails (members busy, slow or down) a membership learned in the last
   * STALE_MS is used rather than refusing every request, even when `force` asked for a
   * fresh one: members change rarely, and with too few members answering the operation
   * that asked will name them itself.
   */
  async current(force = false): Promise<LearnedMembership> {
    const known = this.learned;
    if (!force && known && Date.now() - known.learnedAt < this.d.cacheMs) return known;
    // Concurrent requests of one instance share one round of questions.
    this.inflight ??= this.learn().finally(() => { this.inflight = undefined; });
    try {
      return await this.inflight;
    } catch (e) {
      if (known && Date.now() - known.learnedAt < STALE_MS) return known;
      throw e;
    }
  }

  invalidate(): void {
    this.learned = undefined;
  }

  private async ask(targets: Map<string, string>, answers: Map<string, NodeMembershipReport & { doc?: SignedMembership | null }>) {
    // As long as the request can spare: a busy member is slow, not gone.
    const remaining = currentDeadline()?.remaining() ?? 5000;
    const timeout = Math.floor(Math.max(50, Math.min(this.d.askTimeoutMs ?? 10_000, remaining / 2)));
    await Promise.all([...targets].filter(([id]) => !answers.has(id)).map(async ([id, url]) => {
      try {
        const raw = await this.d.client.call({ id, url }, { method: 'GET', path: '/membership' }, AbortSignal.timeout(timeout));
        const a = answerSchema.parse(raw);
        answers.set(id, { nodeId: id, url, version: a.membership?.document.version ?? null, agrees: false, doc: a.membership });
      } catch (e) {
        const code = e instanceof Error && e.name === 'TimeoutError' ? 'timeout' : typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'unreachable';
        answers.set(id, { nodeId: id, url, agrees: false, error: code });
      }
    }));
  }

  private async learn(): Promise<LearnedMembership> {
    const targets = new Map<string, string>(this.d.seeds.map((s) => [s.id, s.url]));
    for (const m of this.learned?.signed.document.nodes ?? []) targets.set(m.id, m.endpoint);
    const answers = new Map<string, NodeMembershipReport & { doc?: SignedMembership | null }>();
    await this.ask(targets, answers);
    // Members named by any document we were shown but not asked yet (a node that just joined).
    for (const a of [...answers.values()]) for (const m of a.doc?.document.nodes ?? []) if (!targets.has(m.id)) targets.set(m.id, m.endpoint);
    await this.ask(targets, answers);

    const byDigest = new Map<string, { doc: SignedMembership; holders: Set<string> }>();
    for (const a of answers.values()) {
      if (!a.doc) continue;
      const dg = membershipDigest(a.doc.document);
      const e = byDigest.get(dg) ?? { doc: a.doc, holders: new Set<string>() };
      e.holders.add(a.nodeId);
      byDigest.set(dg, e);
    }
    const candidates = [...byDigest.entries()].sort(([, x], [, y]) => y.doc.document.version - x.doc.document.version);
    for (const [digest, c] of candidates) {
      const members = c.doc.document.nodes;
      // Only the document's own members vouch for it, each at most once.
      const agreed = members.filter((m) => c.holders.has(m.id)).map((m) => m.id);
      if (agreed.length < c.doc.document.threshold) continue;
      const reports = [...answers.values()].map(({ doc, ...r }) => ({ ...r, agrees: !!doc && membershipDigest(doc.document) === digest }));
      this.learned = { signed: c.doc, digest, agreed, reports, learnedAt: Date.now() };
      return this.learned;
    }
    const reports = [...answers.values()].map(({ doc: _doc, ...r }) => r);
    throw new QuorumError('no membership document is held by a threshold of its own members: is the federation set up (npx fedkms nodes add), and are enough nodes up?', { nodes: reports });
  }
}

