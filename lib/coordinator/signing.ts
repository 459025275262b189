/**
 * The coordinator's side of FROST signing (RFC 9591). Round 1 takes commitments
 * from the fastest t nodes; round 2 asks exactly those for signature shares. Every
 * share is checked (`verifyShare`) and a cheater is named; with enough nodes left,
 * signing starts over without the cheaters and the unresponsive. The aggregate is
 * verified as a plain Ed25519 signature before it is returned.
 */
import { randomUUID } from 'node:crypto';
import * as z from '../zod.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { publicPointCheck, signingSuite, type PointCheck } from '../crypto/suite.js';
import { commitmentFromHex, publicPackageFromHex, type CommitmentHex } from '../crypto/frost.js';
import { groupPublicKey, identifierFor } from '../crypto/shares.js';
import { fromHex, toB64, toHex } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ConflictError, NotFoundError, type Culprit } from '../errors.js';
import type { PoolEntry, PooledCommitment } from '../ports.js';
import { POOL_TTL_S } from '../node/signing.js';
import { descriptorSchema, type KeyDescriptor } from '../node/fragment.js';
import type { NodeEndpoint } from '../runtime-config.js';
import { gather, markDissenters, type NodeReport, type Verdict, quorumFailure } from './fanout.js';
import { AUDIT_STREAM, type CoordinatorDeps } from './common.js';

export { DIGEST_PREFIX, digestMessage } from '../crypto/sign-message.js';

const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const commitAnswer = z.object({
  nodeId: z.string(),
  identifier: hex32,
  keyId: z.string(),
  version: z.number().check(z.int()),
  commitment: z.strictObject({ identifier: hex32, hiding: hex32, binding: hex32 }),
  descriptor: descriptorSchema,
});
const shareAnswer = z.object({ nodeId: z.string(), identifier: hex32, share: hex32 });
const MAX_ATTEMPTS = 3;

/** Who signs, with which commitments: from a fresh round 1, or from pre-published ones. */
interface Plan {
  d: KeyDescriptor;
  signers: NodeEndpoint[];
  list: CommitmentHex[];
  /** Each signer's nonce session: one id for a fresh round 1, one per commitment from the pool. */
  sessions: Map<string, string>;
  /** The pooled commitments this plan took (one-round signing), to give back those a node refused to spend. */
  taken?: PooledCommitment[];
}

/** Commitments kept per node and key when `poolMaxPerNode` is not configured (POOL_MAX_PER_NODE). */
export const POOL_MAX_PER_NODE = 100;

/** A node's refusal for authorization (401/403): it did no work, spent no nonce, and says nothing against the node. */
const refusedAuth = (r: NodeReport) => r.httpStatus === 401 || r.httpStatus === 403;

const commitmentBatch = z.object({
  nodeId: z.string(),
  identifier: hex32,
  keyId: z.string(),
  version: z.number().check(z.int()),
  descriptor: descriptorSchema,
  commitments: z.array(z.object({ sessionId: z.string(), commitment: z.strictObject({ identifier: hex32, hiding: hex32, binding: hex32 }) })),
});

export class Signing {
  constructor(private readonly deps: CoordinatorDeps) {}

  /** `only` pins a key version and node set (the canary of a reshare); otherwise the latest version. */
  async sign(keyId: string, message: Uint8Array, actor: string, mode: 'message' | 'digest' | 'canary', only?: { version: number; nodes: string[] }) {
    const excluded = new Map<string, Culprit>();
    let reports: NodeReport[] = [];
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const candidates = this.deps.nodes.filter((n) => !excluded.has(n.id) && (!only || only.nodes.includes(n.id)));
      // One round trip when t nodes have pre-published commitments; otherwise two rounds.
      let plan = attempt === 1 && !only ? await this.fromPool(keyId, candidates).catch(() => undefined) : undefined;
      const rounds = plan ? 1 : 2;
      if (!plan) {
        const r1 = await this.commitRound(keyId, candidates, only?.version);
        reports = mergeReports(reports, r1.reports);
        plan = r1.plan;
      }
      if (!plan) break;
      const { d, signers, list, sessions } = plan;
      // One key, one purpose: every node refuses too (lib/node/gate.ts); saying so here spares round 2.
      if (d.type !== 'ed25519' && mode !== 'canary') {
        throw new ConflictError('key_not_signing', d.type === 'encrypt' ? `key ${keyId} is an encryption key; it does not sign (decrypt with it instead)` : `key ${keyId} is an exportable secret key; it does not sign (one key, one purpose: create an ed25519 key to sign)`);
      }
      const pub = publicPackageFromHex(d.publicPackage);
      const commitments = list.map(commitmentFromHex);
      const suite = await signingSuite();

      const r2 = await gather({
        nodes: signers,
        timeoutMs: this.deps.timeoutMs,
        stopEarly: false,
        call: (n, signal) => this.deps.client.call(n, { method: 'POST', path: '/sign/share', body: { sessionId: sessions.get(n.id), keyId, message: toB64(message), commitments: list } }, signal),
        judge: (n, a): Verdict<Uint8Array> => {
          const p = shareAnswer.safeParse(a);
          const id = identifierFor(n.index);
          if (!p.success || p.data.nodeId !== n.id || p.data.identifier !== id) return { ok: false, status: 'error', error: 'malformed answer' };
          const share = fromHex(p.data.share);
          // RFC 9591 §5.4: check each share against the signer's verifying share before aggregating.
          return suite.verifyShare(pub, commitments, message, id, share)
            ? { ok: true, group: 'shares', need: signers.length, value: share }
            : { ok: false, status: 'invalid_share', error: 'signature share fails verification (tampered)' };
        },
      });
      reports = mergeReports(reports, r2.reports);
      for (const r of r2.reports) if (r.status !== 'valid') excluded.set(r.nodeId, { nodeId: r.nodeId, reason: r.status === 'invalid_share' ? 'invalid signature share' : r.status });
      // A pooled signer that failed would be drawn again and again: drop its commitments. A node
      // that refused the client (401/403) spent nothing: its commitment goes back to the pool,
      // so a client without the sign permission can neither spend nor drain it.
      if (rounds === 1) {
        const refused = new Set(r2.reports.filter(refusedAuth).map((r) => r.nodeId));
        await this.dropFromPool(keyId, r2.reports.filter((r) => r.status !== 'valid' && !refused.has(r.nodeId)).map((r) => r.nodeId));
        const giveBack = (plan.taken ?? []).filter((c) => refused.has(c.nodeId));
        if (giveBack.length && this.deps.pool) await this.deps.pool.add(giveBack).catch(() => undefined);
      }
      // The client is not authorized (by a node's own policy): another attempt would only be refused again.
      if (r2.reports.some(refusedAuth)) break;
      const got = r2.winner?.members ?? [];
      if (got.length < signers.length) continue;

      const shares = Object.fromEntries(got.map((m) => [identifierFor(m.node.index), m.value]));
      const signature = suite.aggregate(pub, commitments, message, shares);
      const groupKey = groupPublicKey(d.publicPackage);
      // Checked as a plain Ed25519 signature under the group key before it leaves.
      if (!suite.verify(signature, message, fromHex(groupKey))) continue;
      const cheaters = [...excluded.values()].filter((c) => c.reason === 'invalid signature share');
      try {
        await this.deps.audit.append(AUDIT_STREAM, {
          actor,
          action: 'key.sign',
          keyId,
          outcome: 'success',
          details: { version: d.version, mode, rounds, messageSha256: sha256Hex(message), signers: signers.map((s) => s.id), cheaters, attempts: attempt, nodes: reports },
        });
      } catch {
        throw new AuditUnavailableError();
      }
      return {
        keyId,
        version: d.version,
        publicKey: groupKey,
        signature: { hex: toHex(signature), base64: toB64(signature) },
        signers: signers.map((s) => s.id),
        cheaters,
        rounds,
        attempts: attempt,
        nodes: reports,
      };
    }
    const cheaters = [...excluded.values()].filter((c) => c.reason === 'invalid signature share');
    await this.deps.audit.append(AUDIT_STREAM, { actor, action: 'key.sign', keyId, outcome: 'failure', details: { cheaters, nodes: reports } }).catch(() => undefined);
    if (reports.length && reports.every((r) => r.status === 'not_found')) throw new NotFoundError('key_not_found', `key ${keyId} not found`);
    throw quorumFailure(`fewer than the threshold of honest nodes could sign with ${keyId}`, { nodes: reports, cheaters });
  }

  /** Round 1: commitments from the fastest t candidates that agree on the key. */
  private async commitRound(keyId: string, candidates: NodeEndpoint[], version?: number): Promise<{ plan?: Plan; reports: NodeReport[] }> {
    const sessionId = randomUUID();
    const isValidPublicPoint = await publicPointCheck();
    const r1 = await gather({
      nodes: candidates,
      timeoutMs: this.deps.timeoutMs,
      initial: this.deps.threshold,
      call: (n, signal) => this.deps.client.call(n, { method: 'POST', path: '/sign/commit', body: { sessionId, keyId, ...(version !== undefined ? { version } : {}) } }, signal),
      judge: (n, a) => judgeCommit(n, a, keyId, isValidPublicPoint, version),
    });
    const w = r1.winner;
    if (!w || w.members.length < w.need) return { reports: r1.reports };
    const signers = w.members.map((m) => m.node);
    return {
      reports: r1.reports,
      plan: {
        d: w.members[0]!.value.d,
        signers,
        list: w.members.map((m) => m.value.commitment).sort((a, b) => a.identifier.localeCompare(b.identifier)),
        sessions: new Map(signers.map((n) => [n.id, sessionId])),
      },
    };
  }

  /** t pre-published commitments of the newest version, one per node, each taken atomically. */
  private async fromPool(keyId: string, candidates: NodeEndpoint[]): Promise<Plan | undefined> {
    const pool = this.deps.pool;
    if (!pool) return undefined;
    const all = await pool.list(keyId);
    const newest = Math.max(...all.map((c) => c.version));
    const usable = all.filter((c) => c.version === newest && candidates.some((n) => n.id === c.nodeId));
    const digest = usable[0]?.digest;
    const byNode = new Map<string, PoolEntry[]>();
    for (const c of usable) if (c.digest === digest) byNode.set(c.nodeId, [...(byNode.get(c.nodeId) ?? []), c]);
    const need = usable[0]?.threshold;
    // Entries pooled before the threshold was stored have none: they are skipped (two rounds) until they expire.
    if (!need || !Number.isInteger(need) || byNode.size < need) return undefined;
    // Draw from the nodes with the most commitments left, so the pool stays usable for as
    // many signatures as possible; ties in random order to spread the load.
    const order = [...byNode.keys()].map((id) => ({ id, left: byNode.get(id)!.length, r: Math.random() })).sort((a, b) => b.left - a.left || a.r - b.r).map((x) => x.id);
    // One commitment per node, taken from `need` nodes at once (not a DynamoDB round trip per
    // signer in turn); a node whose commitments were all taken by now is replaced by the next.
    const takeFrom = async (nodeId: string) => {
      for (const c of byNode.get(nodeId)!) {
        const taken = await pool.take(c);
        if (taken) return taken;
      }
      return undefined;
    };
    const taken: PooledCommitment[] = [];
    for (let next = 0; taken.length < need && next < order.length; ) {
      const wave = order.slice(next, next + need - taken.length);
      next += wave.length;
      for (const c of await Promise.all(wave.map(takeFrom))) if (c) taken.push(c);
    }
    if (taken.length < need) return undefined;
    // The descriptor comes back with the taken commitments; it must be the one the listing planned with.
    const d = descriptorSchema.parse(JSON.parse(taken[0]!.descriptor)) as KeyDescriptor;
    if (d.publicPackage.threshold !== need || sha256Hex(canonicalJson(d)) !== digest) return undefined;
    const signers = taken.map((c) => candidates.find((n) => n.id === c.nodeId)!);
    return {
      d,
      signers,
      list: taken.map((c) => c.commitment).sort((a, b) => a.identifier.localeCompare(b.identifier)),
      sessions: new Map(taken.map((c) => [c.nodeId, c.sessionId])),
      taken,
    };
  }

  private async dropFromPool(keyId: string, nodeIds: string[]) {
    const pool = this.deps.pool;
    if (!pool || nodeIds.length === 0) return;
    const stale = (await pool.list(keyId).catch(() => [])).filter((c) => nodeIds.includes(c.nodeId));
    await Promise.all(stale.map((c) => pool.take(c).catch(() => undefined)));
  }

  /** Ask every node for `count` pre-published commitments and keep those of the quorum's key version. */
  async preprocess(keyId: string, count: number) {
    const pool = this.deps.pool;
    if (!pool) throw new BadRequestError('pool_not_configured', 'no commitment pool is configured');
    // Each key's pool is bounded per node: a fill asks only for what still fits (so no node
    // makes nonces that would be thrown away), and a full pool refuses the fill.
    const max = this.deps.poolMaxPerNode ?? POOL_MAX_PER_NODE;
    const have = new Map<string, number>();
    for (const c of await pool.list(keyId)) have.set(c.nodeId, (have.get(c.nodeId) ?? 0) + 1);
    const room = max - Math.max(0, ...have.values());
    if (room <= 0) throw new ConflictError('pool_full', `the nonce pool of ${keyId} holds ${max} commitments per node already`);
    count = Math.min(count, room);
    const ids = new Map<string, string[]>(this.deps.nodes.map((n) => [n.id, Array.from({ length: count }, () => randomUUID())]));
    const isValidPublicPoint = await publicPointCheck();
    const r = await gather({
      nodes: this.deps.nodes,
      timeoutMs: Math.max(10_000, this.deps.timeoutMs * 3),
      stopEarly: false,
      call: (n, signal) => this.deps.client.call(n, { method: 'POST', path: '/sign/preprocess', body: { keyId, sessionIds: ids.get(n.id) } }, signal),
      judge: (n, a): Verdict<z.infer<typeof commitmentBatch>> => {
        const p = commitmentBatch.safeParse(a);
        const id = identifierFor(n.index);
        if (!p.success || p.data.nodeId !== n.id || p.data.identifier !== id || p.data.keyId !== keyId) return { ok: false, status: 'error', error: 'malformed answer' };
        if (p.data.commitments.some((c) => c.commitment.identifier !== id || !ids.get(n.id)!.includes(c.sessionId) || !isValidPublicPoint(c.commitment.hiding) || !isValidPublicPoint(c.commitment.binding))) {
          return { ok: false, status: 'invalid_share', error: 'invalid commitment' };
        }
        const d = p.data.descriptor as KeyDescriptor;
        return { ok: true, group: sha256Hex(canonicalJson(d)), need: d.publicPackage.threshold, value: p.data };
      },
    });
    const reports = markDissenters(r);
    const w = r.winner;
    if (!w && reports.length && reports.every((x) => x.status === 'not_found')) throw new NotFoundError('key_not_found', `key ${keyId} not found`);
    if (!w || w.members.length < w.need) throw quorumFailure(`fewer than the threshold of nodes could preprocess ${keyId}`, { nodes: reports });
    const expiresAt = Math.floor(Date.now() / 1000) + POOL_TTL_S - 60;
    const items: PooledCommitment[] = w.members.flatMap((m) =>
      m.value.commitments.map((c) => ({ keyId, nodeId: m.node.id, sessionId: c.sessionId, version: m.value.version, digest: w.group, descriptor: canonicalJson(m.value.descriptor), threshold: w.need, commitment: c.commitment, expiresAt })),
    );
    await pool.add(items);
    return { keyId, version: w.members[0]!.value.version, added: Object.fromEntries(w.members.map((m) => [m.node.id, m.value.commitments.length])), nodes: reports };
  }
}

function judgeCommit(n: NodeEndpoint, a: unknown, keyId: string, isValidPublicPoint: PointCheck, version?: number): Verdict<{ d: KeyDescriptor; commitment: CommitmentHex }> {
  const p = commitAnswer.safeParse(a);
  if (!p.success) return { ok: false, status: 'error', error: 'malformed commitment answer' };
  const c = p.data;
  const id = identifierFor(n.index);
  if (c.nodeId !== n.id || c.identifier !== id || c.commitment.identifier !== id || c.keyId !== keyId || c.descriptor.keyId !== keyId) {
    return { ok: false, status: 'invalid_share', error: 'answer is for another node or key' };
  }
  if (version !== undefined && c.descriptor.version !== version) return { ok: false, status: 'inconsistent', error: `answered with version ${c.descriptor.version}, not ${version}` };
  if (!isValidPublicPoint(c.commitment.hiding) || !isValidPublicPoint(c.commitment.binding)) return { ok: false, status: 'invalid_share', error: 'invalid commitment point' };
  const d = c.descriptor as KeyDescriptor;
  return { ok: true, group: sha256Hex(canonicalJson(d)), need: d.publicPackage.threshold, value: { d, commitment: c.commitment } };
}

/** The latest word on each node across attempts. */
function mergeReports(prev: NodeReport[], next: NodeReport[]): NodeReport[] {
  const m = new Map(prev.map((r) => [r.nodeId, r]));
  for (const r of next) if (!(r.status === 'cancelled' && m.has(r.nodeId))) m.set(r.nodeId, r);
  return [...m.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId, 'en', { numeric: true }));
}
