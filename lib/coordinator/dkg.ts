/**
 * The coordinator's side of DKG: it only relays. Round-1 packages are signed by
 * their nodes, round-2 shares are sealed to their receivers, and every node checks
 * that all others confirmed the same round-1 set, so the relay can neither read a
 * share nor show different nodes different packages. Every node must take part;
 * on any failure the run is aborted everywhere and the nodes at fault are named.
 */
import { randomUUID } from 'node:crypto';
import * as z from '../zod.js';
import { identifierFor, groupPublicKey, type PublicPackage } from '../crypto/shares.js';
import { AuditUnavailableError, BadRequestError, ConflictError, KeyBeingCreatedError, ProtocolAbortedError, type Culprit, type FedkmsError } from '../errors.js';
import type { DkgKeyType, KeyDescriptor } from '../node/fragment.js';
import { publicPackageSchema } from '../node/fragment.js';
import type { NodeEndpoint } from '../runtime-config.js';
import { gather, type NodeReport, type Verdict, quorumFailure } from './fanout.js';
import { AUDIT_STREAM, summarize, type CoordinatorDeps } from './common.js';
import { NodeHttpError } from './node-client.js';

/*
 * Creating a key (here and in Coordinator.createKey). Each node admits a create under a
 * claim on the key id (lib/node/gate.ts), exclusive on that node. The first node is asked
 * alone, before the others: concurrent creates of one id meet there, so exactly one of
 * them goes on to the rest and the others get a 409 at once. A create that fails lets go
 * of its claim, and removes anything it stored, on every node it reached; a node refuses
 * that rollback to any request but the one that holds the claim there.
 */

/** Node answers that mean the create was refused there before it claimed anything, so there is nothing of ours to undo. */
const UNCLAIMED_CODES = new Set(['key_exists', 'version_exists', 'key_being_created']);
const UNCLAIMED_STATUS = new Set([401, 403, 410]);
const codeOf = (r: NodeReport) => r.code ?? /\b([a-z_]+)$/.exec(r.error ?? '')?.[1];

/** Whether a create may have left its claim (or its share) on the node behind this report. */
export function mayHoldClaim(r: NodeReport): boolean {
  if (r.status === 'cancelled') return false;
  return !UNCLAIMED_CODES.has(codeOf(r) ?? '') && !UNCLAIMED_STATUS.has(r.httpStatus ?? 0);
}

/** Reports for every node, in federation order; nodes the create never reached are `cancelled`. */
export function createReports(nodes: NodeEndpoint[], reports: NodeReport[], why: string): NodeReport[] {
  return nodes.map((n) => reports.find((r) => r.nodeId === n.id) ?? { nodeId: n.id, status: 'cancelled', error: why });
}

/** A node call that keeps the Retry-After of a `key_being_created` refusal, for the client's own answer. */
export function notingRetryAfter<T>(retryAfterS: Map<string, number>, node: NodeEndpoint, p: Promise<T>): Promise<T> {
  return p.catch((e: unknown) => {
    if (e instanceof NodeHttpError && e.code === 'key_being_created') {
      const s = Number(e.retryAfter);
      if (Number.isFinite(s) && s > 0) retryAfterS.set(node.id, s);
    }
    throw e;
  });
}

/**
 * Wake the nodes a create asks after the first one, while the first one works: their cold
 * starts then overlap its own instead of following it. `GET /status` is public and cheap;
 * its answer does not matter.
 */
export function warmUp(deps: CoordinatorDeps, nodes: NodeEndpoint[]): void {
  for (const n of nodes) void deps.client.call(n, { method: 'GET', path: '/status' }, AbortSignal.timeout(Math.max(1000, deps.timeoutMs))).catch(() => undefined);
}

/** The client's answer when a node refused the create on its own authority: the id is taken, or being created. */
export function createRefusal(keyId: string, reports: NodeReport[], retryAfterS: Map<string, number>): FedkmsError | undefined {
  if (reports.some((r) => codeOf(r) === 'key_exists' || codeOf(r) === 'version_exists')) return new ConflictError('key_exists', `key ${keyId} already exists`);
  const held = reports.filter((r) => codeOf(r) === 'key_being_created');
  if (held.length) return new KeyBeingCreatedError(keyId, Math.max(1, ...held.map((r) => retryAfterS.get(r.nodeId) ?? 1)), { nodes: reports });
  return undefined;
}

const round1Answer = z.object({ nodeId: z.string(), package: z.unknown(), signature: z.string() });
const confirmAnswer = z.object({ nodeId: z.string(), digest: z.string(), signature: z.string() });
const round2Answer = z.object({ nodeId: z.string(), shares: z.record(z.string(), z.unknown()) });
const round3Answer = z.object({ nodeId: z.string(), publicPackage: publicPackageSchema, publicPackageDigest: z.string() });

export class Dkg {
  constructor(private readonly deps: CoordinatorDeps) {}

  private get timeoutMs() {
    // A DKG round may meet cold functions; it is rare and must reach every node.
    return Math.max(10_000, this.deps.timeoutMs * 3);
  }

  /** Call every node (or `only` these) with its own body; all must answer well, or the failures are returned. */
  private async everyNode<T extends { nodeId: string }>(path: string, body: (n: NodeEndpoint) => unknown, schema: z.ZodMiniType<T>, only?: NodeEndpoint[], retryAfterS?: Map<string, number>) {
    const nodes = only ?? this.deps.nodes;
    const result = await gather({
      nodes,
      timeoutMs: this.timeoutMs,
      stopEarly: false,
      call: (n, signal) => {
        const p = this.deps.client.call(n, { method: 'POST', path, body: body(n) }, signal);
        return retryAfterS ? notingRetryAfter(retryAfterS, n, p) : p;
      },
      judge: (n, a): Verdict<T> => {
        const p = schema.safeParse(a);
        return p.success && p.data.nodeId === n.id ? { ok: true, group: 'all', need: nodes.length, value: p.data } : { ok: false, status: 'error', error: 'malformed answer' };
      },
    });
    const answers = new Map((result.winner?.members ?? []).map((m) => [m.node.id, m.value] as const));
    return { answers, reports: result.reports, complete: answers.size === nodes.length };
  }

  async create(input: { keyId: string; threshold: number; type?: DkgKeyType }, actor: string) {
    const { keyId, threshold } = input;
    const type = input.type ?? 'ed25519';
    const nodes = this.deps.nodes;
    if (threshold < 2 || threshold > nodes.length) throw new BadRequestError('invalid_threshold', `threshold must be 2 to ${nodes.length}`);
    const sessionId = randomUUID();
    const participants = nodes.map((n) => ({ nodeId: n.id, identifier: identifierFor(n.index) }));
    const createdAt = new Date().toISOString();
    await this.deps.audit.append(AUDIT_STREAM, { actor, action: 'dkg.start', keyId, outcome: 'success', details: { sessionId, type, threshold, participants: nodes.map((n) => n.id) } });

    let reports: NodeReport[] = [];
    // The nodes that may hold this create's claim (known after round 1): an abort releases it there.
    let claimed: NodeEndpoint[] = [];
    const abort = async (message: string, culprits: Culprit[]): Promise<never> => {
      // On each node at once: drop the session, and let go of the id (removing anything
      // committed). Either order is safe: a commit checks that its claim still stands.
      await Promise.all(
        claimed.flatMap((n) => [this.quietly(n, '/dkg/abort', { sessionId, reason: message.slice(0, 200) }), this.quietly(n, '/fragment', undefined, { keyId, version: '1' })]),
      );
      const rolledBack = claimed.map((n) => n.id);
      await this.deps.audit.append(AUDIT_STREAM, { actor, action: 'dkg.abort', keyId, outcome: 'failure', details: { sessionId, reason: message, culprits, nodes: reports, rolledBack } }).catch(() => undefined);
      const unavailable = culprits.length === 0;
      throw unavailable
        ? quorumFailure(`DKG for ${keyId} aborted: ${message}`, { nodes: reports })
        : new ProtocolAbortedError('dkg_aborted', `DKG for ${keyId} aborted: ${message}`, { culprits, nodes: reports });
    };
    const failed = (r: NodeReport[]) => r.filter((x) => x.status !== 'valid');
    // Nodes that refused because of someone else name that someone: prefer their word.
    const blame = (r: NodeReport[]): Culprit[] => {
      const named = r.flatMap((x) => x.culprits ?? []);
      return named.length ? dedupe(named) : [];
    };

    // Round 1 claims the id on each node: the first node alone, then the rest (see above).
    const retryAfterS = new Map<string, number>();
    // ed25519 runs send no type, as before: a node that predates other types still takes part.
    const round1Body = () => ({ sessionId, keyId, threshold, participants, createdAt, ...(type === 'ed25519' ? {} : { type }) });
    warmUp(this.deps, nodes.slice(1));
    const lead = await this.everyNode('/dkg/round1', round1Body, round1Answer, nodes.slice(0, 1), retryAfterS);
    const rest = lead.complete ? await this.everyNode('/dkg/round1', round1Body, round1Answer, nodes.slice(1), retryAfterS) : undefined;
    const r1 = {
      answers: new Map([...lead.answers, ...(rest?.answers ?? [])]),
      reports: createReports(nodes, [...lead.reports, ...(rest?.reports ?? [])], `not asked: round 1 failed on ${nodes[0]!.id}`),
    };
    reports = r1.reports;
    claimed = nodes.filter((n) => mayHoldClaim(r1.reports.find((r) => r.nodeId === n.id)!));
    if (r1.answers.size !== nodes.length) {
      const refusal = createRefusal(keyId, r1.reports, retryAfterS);
      if (refusal) {
        await abort(refusal.code === 'key_exists' ? 'key exists' : 'key being created', []).catch(() => undefined);
        throw refusal;
      }
      await abort(`round 1 failed on ${failed(r1.reports).map((x) => x.nodeId).join(', ')}`, []);
    }
    const round1 = nodes.map((n) => ({ nodeId: n.id, package: r1.answers.get(n.id)!.package, signature: r1.answers.get(n.id)!.signature }));

    const conf = await this.everyNode('/dkg/confirm', () => ({ sessionId, round1 }), confirmAnswer);
    reports = conf.reports;
    if (!conf.complete) await abort('round-1 packages rejected', blame(conf.reports));
    const confirmations = nodes.map((n) => conf.answers.get(n.id)!);

    const r2 = await this.everyNode('/dkg/round2', () => ({ sessionId, confirmations }), round2Answer);
    reports = r2.reports;
    if (!r2.complete) await abort('transcript confirmation failed', blame(r2.reports));

    // Deliver to each node the sealed shares addressed to it; the relay cannot open them.
    const inbox = (to: NodeEndpoint) => Object.fromEntries(nodes.filter((f) => f.id !== to.id).map((f) => [f.id, r2.answers.get(f.id)!.shares[to.id]]));
    const r3 = await this.everyNode('/dkg/round3', (n) => ({ sessionId, shares: inbox(n) }), round3Answer);
    reports = r3.reports;
    if (!r3.complete) await abort('round-2 shares rejected', blame(r3.reports));
    const digests = new Set([...r3.answers.values()].map((a) => a.publicPackageDigest));
    if (digests.size !== 1) await abort('nodes computed different group keys', nodes.map((n) => ({ nodeId: n.id, reason: 'public key package disagrees' })));
    const first = r3.answers.get(nodes[0]!.id)!;
    const publicPackage = first.publicPackage as PublicPackage;

    const commit = await this.everyNode('/dkg/commit', () => ({ sessionId, publicPackageDigest: first.publicPackageDigest }), z.object({ nodeId: z.string(), stored: z.literal(true) }));
    reports = commit.reports;
    if (!commit.complete) await abort(`commit failed on ${failed(commit.reports).map((x) => x.nodeId).join(', ')}`, []);
    const descriptor: KeyDescriptor = { keyId, version: 1, type, origin: 'dkg', state: 'active', createdAt, publicPackage, participants };
    try {
      await this.deps.audit.append(AUDIT_STREAM, { actor, action: 'dkg.finish', keyId, outcome: 'success', details: { sessionId, groupPublicKey: groupPublicKey(publicPackage), threshold, nodes: reports } });
    } catch {
      await Promise.all(nodes.map((n) => this.quietly(n, '/fragment', undefined, { keyId, version: '1' })));
      throw new AuditUnavailableError();
    }
    return { key: summarize(descriptor), nodes: reports };
  }

  private async quietly(node: NodeEndpoint, path: string, body?: unknown, query?: Record<string, string>) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), this.timeoutMs);
    await this.deps.client
      .call(node, { method: body === undefined ? 'DELETE' : 'POST', path, ...(body === undefined ? {} : { body }), ...(query ? { query } : {}) }, ctl.signal)
      .catch(() => undefined)
      .finally(() => clearTimeout(t));
  }
}

function dedupe(cs: Culprit[]): Culprit[] {
  const seen = new Map<string, Culprit>();
  for (const c of cs) if (!seen.has(c.nodeId)) seen.set(c.nodeId, c);
  return [...seen.values()];
}
