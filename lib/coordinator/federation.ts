/**
 * The federation's members as the coordinator serves them: `GET /nodes` (who, where, up,
 * how many keys), `PUT /nodes` (an administrator's signed new membership, relayed to every
 * node, each of which checks the signature itself), and audit verification gathered from
 * every member (each node verifies its own chains and signs its report).
 */
import * as z from '../zod.js';
import { untilDeadline } from '../deadline.js';
import { componentsOf } from '../audit/chain.js';
import { lastCheckpoints, originOfStream, verifyFederation, type AuditProblem, type WitnessedCheckpoint } from '../audit/checkpoint.js';
import { witnessedSchema } from '../node/witness.js';
import type { AuditRecord } from '../ports.js';
import { checkSuccession, fingerprint, signedMembershipSchema, type Member, type Membership } from '../federation/membership.js';
import { BadRequestError, QuorumError } from '../errors.js';
import { AUDIT_STREAM, type CoordinatorDeps } from './common.js';
import { Coordinator } from './service.js';
import { endpointOf, type LearnedMembership, type MembershipView } from './membership.js';

const statusSchema = z.object({ nodeId: z.string(), healthy: z.boolean(), keyCount: z.nullable(z.number()), version: z.optional(z.string()), membershipVersion: z.optional(z.nullable(z.number())) });
const updateAnswer = z.object({ nodeId: z.string(), version: z.number(), member: z.boolean() });
const recordsPage = z.object({ nodeId: z.string(), complete: z.boolean(), records: z.array(z.looseObject({ stream: z.string(), seq: z.number() })), next: z.optional(z.object({ stream: z.string(), seq: z.number() })) });
const witnessedAnswer = z.object({ nodeId: z.string(), checkpoints: z.array(witnessedSchema) });
/** Records per page when the verifier reads a member's chains, and at most this many pages. */
const PAGE = 2000;
const MAX_PAGES = 500;

export interface OwnAudit {
  /** The coordinator's own chains, as stored. */
  records: { readAll(): Promise<AuditRecord[]> };
  /** The coordinator's identity public key (base64): its records and checkpoints are signed with it. */
  publicKey: string;
}

export class Federation {
  constructor(
    private readonly deps: CoordinatorDeps,
    /** The latest learned membership (cached briefly by the view): which members vouch for it changes without the document changing. */
    private readonly learnedNow: () => Promise<LearnedMembership>,
    private readonly audit: OwnAudit,
  ) {}

  /** Every member: identity, whether it answers, how many keys it holds, and which membership version it has. */
  async list() {
    const learned = await this.learnedNow();
    const doc = learned.signed.document;
    const { answers, reports } = await new Coordinator(this.deps).collect((n, signal) => this.deps.client.call(n, { method: 'GET', path: '/status' }, signal), statusSchema);
    const held = new Map(learned.reports.map((r) => [r.nodeId, r]));
    const nodes = doc.nodes.map((m: Member) => {
      const a = answers.get(m.id);
      const r = reports.find((x) => x.nodeId === m.id);
      return {
        id: m.id,
        index: m.index,
        endpoint: m.endpoint,
        fingerprint: fingerprint(m.signingPublic, m.x25519Public),
        signingPublic: m.signingPublic,
        x25519Public: m.x25519Public,
        up: !!a?.healthy,
        keys: a?.keyCount ?? null,
        softwareVersion: a?.version ?? null,
        membershipVersion: a?.membershipVersion ?? held.get(m.id)?.version ?? null,
        ...(a ? {} : { status: r?.status ?? 'unreachable', ...(r?.error ? { error: r.error } : {}) }),
      };
    });
    return { version: doc.version, threshold: doc.threshold, agreed: learned.agreed, membership: learned.signed, nodes };
  }

  /**
   * Verify every chain of the federation (docs/design.md §5): the coordinator's own, and every
   * member's, read from the member page by page and checked here, not taken on its word: links
   * and hashes, each record's signature by its writer (the member's identity key from the
   * membership, or the coordinator's), and agreement with the checkpoints every witness keeps.
   * Names each chain's first bad position. A member that does not answer is named as missing;
   * its chains are not verified, though the witnesses' copies of them still are.
   */
  async verifyAudit() {
    const members = (await this.learnedNow()).signed.document.nodes;
    const own = await this.audit.records.readAll();
    const signal = () => untilDeadline(this.deps.timeoutMs);
    const nodes = await Promise.all(members.map(async (m) => {
      const ep = endpointOf(m);
      const [records, witnessed] = await Promise.all([
        (async () => {
          const out: AuditRecord[] = [];
          let after: { stream: string; seq: number } | undefined;
          for (let page = 0; page < MAX_PAGES; page++) {
            const a = recordsPage.parse(await this.deps.client.call(ep, { method: 'GET', path: '/audit/records', query: { limit: String(PAGE), ...(after ? { afterStream: after.stream, afterSeq: String(after.seq) } : {}) } }, signal()));
            out.push(...(a.records as unknown as AuditRecord[]));
            if (a.complete || !a.next) return out;
            after = a.next;
          }
          throw Object.assign(new Error('too many records'), { code: 'too_many_records' });
        })().then((r) => ({ ok: true as const, records: r }), (e: unknown) => ({ ok: false as const, error: String((e as { code?: unknown }).code ?? 'unreachable') })),
        this.deps.client.call(ep, { method: 'GET', path: '/audit/witnessed' }, signal()).then(
          (a) => witnessedAnswer.parse(a).checkpoints as unknown as WitnessedCheckpoint[],
          () => [] as WitnessedCheckpoint[],
        ),
      ]);
      return { m, records, witnessed };
    }));
    const keys = new Map<string, string>([['coordinator', this.audit.publicKey], ...members.map((m) => [m.id, m.signingPublic] as [string, string])]);
    const readFrom = new Set<string>(['coordinator']);
    const all: AuditRecord[] = [...own];
    const foreign: AuditProblem[] = [];
    for (const n of nodes) {
      if (!n.records.ok) continue;
      readFrom.add(n.m.id);
      for (const r of n.records.records) {
        // A member's table holds its own chains only: anything else in it was put there.
        if (originOfStream(r.stream) === n.m.id) all.push(r);
        else if (!foreign.some((p) => p.stream === r.stream)) foreign.push({ kind: 'unregistered', component: n.m.id, stream: r.stream, seq: r.seq, detail: `a chain of ${originOfStream(r.stream)} stored in ${n.m.id}'s table` });
      }
    }
    const v = verifyFederation({ records: all, readFrom, witnessed: nodes.flatMap((n) => n.witnessed), keys, witnesses: new Set(members.map((m) => m.id)) });
    const problems = [...v.problems, ...foreign];
    const missing = nodes.filter((n) => !n.records.ok).map((n) => n.m.id);
    const streams = v.chains.map(({ component: _c, ...s }) => s);
    return {
      ok: problems.length === 0,
      complete: missing.length === 0,
      missing,
      problems,
      components: componentsOf(streams),
      streams,
      checkpoints: lastCheckpoints(nodes.flatMap((n) => n.witnessed)),
      ...(v.ignored.length ? { ignoredCheckpoints: v.ignored } : {}),
      nodes: nodes.map((n) => {
        const mine = v.chains.filter((c) => c.component === n.m.id);
        return n.records.ok
          ? { nodeId: n.m.id, status: mine.every((c) => c.ok) && !foreign.some((p) => p.component === n.m.id) ? ('ok' as const) : ('broken' as const), records: n.records.records.length, chains: mine.length, heads: Object.fromEntries(mine.map((c) => [c.stream, c.checkpoint?.head ?? null])) }
          : { nodeId: n.m.id, status: 'unreachable' as const, error: n.records.error };
      }),
    };
  }
}

/**
 * Relay an administrator's signed membership to the members of the current and the new
 * version; each node checks the signature against its own registry. It takes effect when a
 * threshold of the new version's members have stored it. Works before any membership exists
 * (`current` null): that is how a federation is first formed.
 */
export async function updateMembership(deps: Pick<CoordinatorDeps, 'client' | 'audit' | 'timeoutMs'>, view: MembershipView, current: Membership | null, input: unknown, actor: string) {
  const p = signedMembershipSchema.safeParse(input);
  if (!p.success) throw new BadRequestError('invalid_membership', 'expected a signed membership document {document, signer, signature}');
  const next = p.data;
  checkSuccession(current, next.document);
  const targets = new Map<string, Member>();
  for (const m of [...(current?.nodes ?? []), ...next.document.nodes]) targets.set(m.id, m);
  const results = await Promise.all([...targets.values()].map(async (m) => {
    try {
      const a = updateAnswer.parse(await deps.client.call(endpointOf(m), { method: 'PUT', path: '/membership', body: next }, untilDeadline(deps.timeoutMs)));
      return { nodeId: m.id, status: 'stored' as const, member: a.member };
    } catch (e) {
      return { nodeId: m.id, status: 'failed' as const, error: (e as { code?: string }).code ?? 'unreachable' };
    }
  }));
  view.invalidate();
  const stored = next.document.nodes.filter((m) => results.some((r) => r.nodeId === m.id && r.status === 'stored')).length;
  const ok = stored >= next.document.threshold;
  await deps.audit.append(AUDIT_STREAM, {
    actor,
    action: 'membership.update',
    outcome: ok ? 'success' : 'failure',
    details: { version: next.document.version, signer: next.signer, members: next.document.nodes.map((n) => n.id), nodes: results },
  });
  if (!ok) throw new QuorumError(`only ${stored} of the new version's members stored it; ${next.document.threshold} needed`, { nodes: results });
  return { version: next.document.version, threshold: next.document.threshold, nodes: results };
}
