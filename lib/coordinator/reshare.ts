/**
 * The coordinator's side of refresh and reshare. It picks t healthy holders of the
 * current version as dealers, relays their sealed sub-shares to the new set, checks
 * that every new node derived the same commitments (and so the same group key),
 * commits version v+1, proves it with a canary signature, and only then retires
 * version v. On any failure before the canary, v+1 is removed and v stays in use.
 */
import { randomUUID } from 'node:crypto';
import * as z from '../zod.js';
import { evaluateCommitment } from '../crypto/frost.js';
import { groupPublicKey, identifierFor, type PublicPackage } from '../crypto/shares.js';
import { AuditUnavailableError, BadRequestError, ProtocolAbortedError } from '../errors.js';
import type { KeyDescriptor } from '../node/fragment.js';
import type { NodeEndpoint } from '../runtime-config.js';
import { AUDIT_STREAM, summarize, type CoordinatorDeps } from './common.js';
import { gather, type NodeReport, type Verdict, quorumFailure } from './fanout.js';

const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));
const dealAnswer = z.object({ nodeId: z.string(), identifier: hex32, commitments: z.array(hex32), sealedShares: z.record(z.string(), z.unknown()), control: z.unknown(), signature: z.string() });
const receiveAnswer = z.object({ nodeId: z.string(), identifier: hex32, commitments: z.array(hex32), commitmentsDigest: z.string(), verifyingShare: hex32 });

export const reshareSchema = z
  .strictObject({
    threshold: z.optional(z.number().check(z.int(), z.gte(2), z.lte(255))),
    nodes: z.optional(z.array(z.string().check(z.regex(/^[a-z0-9-]{1,32}$/))).check(z.minLength(2), z.maxLength(255))),
  });

export interface ReshareHooks {
  describe(keyId: string): Promise<{ nodes: NodeReport[]; descriptor: KeyDescriptor }>;
  /** Sign a test message with exactly this version on these nodes; throws unless it verifies. */
  canary(keyId: string, version: number, nodes: string[]): Promise<unknown>;
}

export class Reshare {
  constructor(private readonly deps: CoordinatorDeps, private readonly hooks: ReshareHooks) {}

  private get timeoutMs() {
    return Math.max(10_000, this.deps.timeoutMs * 3);
  }

  private async each<T extends { nodeId: string }>(nodes: NodeEndpoint[], method: 'POST' | 'DELETE', path: string, body: (n: NodeEndpoint) => unknown, schema: z.ZodMiniType<T>, query?: Record<string, string>) {
    const result = await gather({
      nodes,
      timeoutMs: this.timeoutMs,
      stopEarly: false,
      call: (n, signal) => this.deps.client.call(n, { method, path, ...(method === 'POST' ? { body: body(n) } : {}), ...(query ? { query } : {}) }, signal),
      judge: (n, a): Verdict<T> => {
        const p = schema.safeParse(a);
        return p.success && p.data.nodeId === n.id ? { ok: true, group: 'all', need: nodes.length, value: p.data } : { ok: false, status: 'error', error: 'malformed answer' };
      },
    });
    const answers = new Map((result.winner?.members ?? []).map((m) => [m.node.id, m.value] as const));
    return { answers, reports: result.reports, complete: answers.size === nodes.length };
  }

  async run(keyId: string, input: z.infer<typeof reshareSchema>, actor: string, kind: 'refresh' | 'reshare') {
    const { descriptor: old, nodes: availability } = await this.hooks.describe(keyId);
    const oldT = old.publicPackage.threshold;
    const oldIds = old.participants.map((p) => p.nodeId);
    const newIds = input.nodes ?? oldIds;
    const newT = input.threshold ?? oldT;
    if (kind === 'refresh' && (input.threshold !== undefined || input.nodes !== undefined)) {
      throw new BadRequestError('use_reshare', 'refresh keeps the threshold and the node set; use reshare to change them');
    }
    if (newT > newIds.length) throw new BadRequestError('invalid_threshold', `threshold ${newT} exceeds the ${newIds.length} nodes`);
    if (new Set(newIds).size !== newIds.length) throw new BadRequestError('invalid_nodes', 'duplicate node');
    const byId = (id: string) => {
      const n = this.deps.nodes.find((x) => x.id === id);
      if (!n) throw new BadRequestError('invalid_nodes', `unknown node ${id}`);
      return n;
    };
    const newNodes = newIds.map(byId);
    const participants = newNodes.map((n) => ({ nodeId: n.id, identifier: identifierFor(n.index) }));
    const healthy = availability.filter((r) => r.status === 'valid').map((r) => r.nodeId).filter((id) => oldIds.includes(id));
    if (healthy.length < oldT) throw quorumFailure(`fewer than ${oldT} healthy holders of ${keyId}`, { nodes: availability });
    const dealers = healthy.slice(0, oldT).map(byId);
    const dealerIds = dealers.map((n) => identifierFor(n.index));
    const sessionId = randomUUID();
    const newVersion = old.version + 1;
    const fail = async (message: string, reports: NodeReport[], culpritsFrom = true): Promise<never> => {
      await this.each(newNodes, 'DELETE', '/fragment', () => undefined, z.object({ nodeId: z.string() }), { keyId, version: String(newVersion) }).catch(() => undefined);
      await this.deps.audit.append(AUDIT_STREAM, { actor, action: `key.${kind}`, keyId, outcome: 'failure', details: { sessionId, reason: message, nodes: reports } }).catch(() => undefined);
      const culprits = culpritsFrom ? reports.flatMap((r) => r.culprits ?? []) : [];
      throw culprits.length ? new ProtocolAbortedError('dkg_aborted', `${kind} of ${keyId} aborted: ${message}`, { culprits, nodes: reports }) : quorumFailure(`${kind} of ${keyId} failed: ${message}`, { nodes: reports });
    };

    const dealt = await this.each(dealers, 'POST', '/reshare/deal', () => ({ sessionId, keyId, version: old.version, dealers: dealerIds, threshold: newT, participants }), dealAnswer);
    if (!dealt.complete) await fail('a dealer failed', dealt.reports);
    // Relayed as the dealers signed them (commitments, key rules, signature): receivers check each.
    const deals = (to: NodeEndpoint) =>
      dealers.map((d) => {
        const a = dealt.answers.get(d.id)!;
        return { nodeId: d.id, identifier: identifierFor(d.index), commitments: a.commitments, sealedShare: a.sealedShares[to.id], control: a.control, signature: a.signature };
      });
    const createdAt = new Date().toISOString();
    const got = await this.each(newNodes, 'POST', '/reshare/receive', (n) => ({ sessionId, old, threshold: newT, participants, createdAt, deals: deals(n) }), receiveAnswer);
    if (!got.complete) await fail('a new node refused its dealing', got.reports);
    const answers = [...got.answers.values()];
    if (new Set(answers.map((a) => a.commitmentsDigest)).size !== 1) await fail('new nodes derived different commitments', got.reports, false);
    const commitments = answers[0]!.commitments;
    const publicPackage: PublicPackage = { threshold: newT, total: newNodes.length, commitments, verifyingShares: Object.fromEntries(answers.map((a) => [a.identifier, a.verifyingShare])) };
    if (groupPublicKey(publicPackage) !== groupPublicKey(old.publicPackage)) await fail('the group key would change', got.reports, false);
    if (answers.some((a) => evaluateCommitment(commitments, a.identifier) !== a.verifyingShare)) await fail('a verifying share does not match the commitments', got.reports, false);

    const committed = await this.each(newNodes, 'POST', '/reshare/commit', () => ({ sessionId, publicPackage }), z.object({ nodeId: z.string(), stored: z.literal(true) }));
    if (!committed.complete) await fail('commit failed', committed.reports);
    try {
      await this.hooks.canary(keyId, newVersion, newIds);
    } catch {
      await fail('the canary signature with the new shares did not verify', committed.reports, false);
    }
    const descriptor: KeyDescriptor = { ...old, version: newVersion, createdAt, participants, publicPackage };
    try {
      await this.deps.audit.append(AUDIT_STREAM, {
        actor,
        action: `key.${kind}`,
        keyId,
        outcome: 'success',
        details: { sessionId, fromVersion: old.version, toVersion: newVersion, threshold: newT, nodes: newIds, dealers: dealers.map((d) => d.id) },
      });
    } catch {
      await fail('audit unavailable', committed.reports, false).catch(() => undefined);
      throw new AuditUnavailableError();
    }
    // Commitments published for v are useless now.
    await this.deps.pool?.clear(keyId).catch(() => undefined);
    // The new version works and is on record: retire the old one wherever it was held.
    const retired = await this.each(old.participants.map((p) => byId(p.nodeId)), 'DELETE', '/fragment', () => undefined, z.object({ nodeId: z.string(), deleted: z.literal(true) }), { keyId, version: String(old.version) });
    return { key: summarize(descriptor), previousVersion: old.version, dealers: dealers.map((d) => d.id), retired: retired.reports };
  }
}
