/**
 * The federation's members as the coordinator serves them: `GET /nodes` (who, where, up,
 * how many keys), `PUT /nodes` (an administrator's signed new membership, relayed to every
 * node, each of which checks the signature itself), and audit verification gathered from
 * every member (each node verifies its own chains and signs its report).
 */
import * as z from '../zod.js';
import { untilDeadline } from '../deadline.js';
import { componentsOf, verifyAll, type StreamReport } from '../audit/chain.js';
import { verifyStatement } from '../crypto/identity.js';
import { checkSuccession, fingerprint, signedMembershipSchema, type Member, type Membership } from '../federation/membership.js';
import { BadRequestError, QuorumError } from '../errors.js';
import { auditReportStatement, type NodeAuditReport } from '../node/audit-report.js';
import { AUDIT_STREAM, type CoordinatorDeps } from './common.js';
import { Coordinator } from './service.js';
import { endpointOf, type LearnedMembership, type MembershipView } from './membership.js';

const statusSchema = z.object({ nodeId: z.string(), healthy: z.boolean(), keyCount: z.nullable(z.number()), version: z.optional(z.string()), membershipVersion: z.optional(z.nullable(z.number())) });
const updateAnswer = z.object({ nodeId: z.string(), version: z.number(), member: z.boolean() });
const streamSchema = z.object({ stream: z.string(), records: z.number(), verifiedThrough: z.number(), ok: z.boolean(), head: z.nullable(z.string()), firstBroken: z.optional(z.object({ seq: z.number(), reason: z.string() })) });
const reportSchema = z.object({ nodeId: z.string(), time: z.string(), ok: z.boolean(), records: z.number(), streams: z.array(streamSchema), signature: z.string() });

export class Federation {
  constructor(
    private readonly deps: CoordinatorDeps,
    /** The latest learned membership (cached briefly by the view): which members vouch for it changes without the document changing. */
    private readonly learnedNow: () => Promise<LearnedMembership>,
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
   * The coordinator's own chains, plus every member's report of its chains, each signed by
   * that node. A member that does not answer, or whose report is not signed by it, is named.
   */
  async verifyAudit() {
    const own = verifyAll(await this.deps.audit.readAll());
    const members = (await this.learnedNow()).signed.document.nodes;
    const nodes = await Promise.all(members.map(async (m) => {
      try {
        const r = reportSchema.parse(await this.deps.client.call(endpointOf(m), { method: 'GET', path: '/audit/verify' }, untilDeadline(this.deps.timeoutMs)));
        const { signature, ...body } = r;
        if (r.nodeId !== m.id || !verifyStatement(m.signingPublic, auditReportStatement(body as Omit<NodeAuditReport, 'signature'>), signature)) {
          return { nodeId: m.id, status: 'bad_signature' as const };
        }
        return { nodeId: m.id, status: r.ok ? ('ok' as const) : ('broken' as const), report: r };
      } catch (e) {
        return { nodeId: m.id, status: 'unreachable' as const, error: (e as { code?: string }).code ?? 'unreachable' };
      }
    }));
    const nodeStreams: StreamReport[] = nodes.flatMap((n) => (n.report?.streams ?? []).map(({ head: _h, ...s }) => s as StreamReport));
    const streams = [...own.streams, ...nodeStreams];
    const missing = nodes.filter((n) => n.status === 'unreachable' || n.status === 'bad_signature').map((n) => n.nodeId);
    return {
      ok: own.ok && nodes.every((n) => n.status === 'ok' || n.status === 'unreachable'),
      complete: missing.length === 0,
      missing,
      components: componentsOf(streams),
      streams,
      nodes: nodes.map(({ report, ...n }) => ({ ...n, ...(report ? { records: report.records, chains: report.streams.length, heads: Object.fromEntries(report.streams.map((s) => [s.stream, s.head])) } : {}) })),
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
