/**
 * Concurrent fan-out to nodes within the request's deadline. Each answer is judged as
 * it arrives; answers that agree are grouped (for example by the digest of the public
 * key package they carry), and the fan-out stops as soon as one group has enough valid
 * answers, cancelling the calls still in flight.
 *
 * Deadlines, not fixed timeouts: every call may use what is left of the request's
 * budget (lib/deadline.ts), so a node that is starting cold is slow, not down. Hedging
 * keeps that cheap: with `initial`, only that many nodes are asked at first (healthy
 * ones first, rotated so the load spreads); a spare is asked as soon as one of them
 * fails, or when the first ones have been quiet for longer than nodes usually take.
 */
import type { NodeEndpoint } from '../runtime-config.js';
import { FedkmsError, QuorumError, type Culprit } from '../errors.js';
import { remainingOr } from '../deadline.js';
import { NodeHttpError } from './node-client.js';

export type NodeStatus =
  | 'valid'
  | 'invalid_share'
  | 'inconsistent'
  | 'corrupted'
  | 'not_found'
  | 'busy'
  | 'timeout'
  | 'unreachable'
  | 'error'
  | 'cancelled';

export interface NodeReport {
  nodeId: string;
  status: NodeStatus;
  latencyMs?: number;
  error?: string;
  /** Participants this node named as misbehaving (DKG), from its error details. */
  culprits?: Culprit[];
  /** The node's HTTP status and stable error code, when it refused. */
  httpStatus?: number;
  code?: string;
}

export type Verdict<V> = { ok: true; group: string; need: number; value: V } | { ok: false; status: NodeStatus; error: string };

export interface GatherOptions<R, V> {
  nodes: NodeEndpoint[];
  /** Budget when no request deadline is in context (unit tests, scripts); otherwise the deadline rules. */
  timeoutMs: number;
  call: (node: NodeEndpoint, signal: AbortSignal) => Promise<R>;
  judge: (node: NodeEndpoint, answer: R) => Verdict<V>;
  /** Stop at the first group with enough valid answers (default true). */
  stopEarly?: boolean;
  /** With stopEarly: ask only this many nodes at first (the expected quorum) and keep the rest as spares. Default: all. */
  initial?: number;
  /** Time kept back from the deadline for the caller's own work after the fan-out (default a fifth of the budget, 100 ms to 1 s). */
  reserveMs?: number;
  /** Called as each node settles: progress output and metrics. */
  onReport?: (r: NodeReport) => void;
}

export interface GatherResult<V> {
  /** The group that reached its quorum, or, without stopEarly, the largest group. */
  winner?: { group: string; need: number; members: { node: NodeEndpoint; value: V }[] };
  reports: NodeReport[];
}

const TIMEOUT = Symbol('timeout');
/** A busy node is asked again at most this often per fan-out, after about this long. */
const BUSY_RETRIES = 2;
const BUSY_PAUSE_MS = 150;
const CANCEL = Symbol('cancel');

/** Statuses that say nothing against the node's data: it may simply be overloaded or starting. */
const TRANSIENT: ReadonlySet<NodeStatus> = new Set(['busy', 'timeout', 'unreachable', 'cancelled']);
export const isTransient = (status: NodeStatus): boolean => TRANSIENT.has(status);

/**
 * What this instance saw of each node lately: the last failure, and recent latencies
 * (a warm Lambda keeps them between requests). Only ordering and hedge timing use it;
 * no decision about correctness does.
 */
const health = new Map<string, { failedAt: number }>();
const latencies: number[] = [];
const FAILURE_MEMORY_MS = 10_000;
let rotation = 0;

function remember(r: NodeReport) {
  if (r.status === 'valid') {
    health.delete(r.nodeId);
    if (r.latencyMs !== undefined) {
      latencies.push(r.latencyMs);
      if (latencies.length > 64) latencies.shift();
    }
  } else if (r.status !== 'cancelled') health.set(r.nodeId, { failedAt: Date.now() });
}

/** Nodes that failed lately go last; the others rotate, so each request starts with a different pair. */
export function preferredOrder(nodes: NodeEndpoint[], now = Date.now()): NodeEndpoint[] {
  const start = rotation++ % Math.max(1, nodes.length);
  const rotated = [...nodes.slice(start), ...nodes.slice(0, start)];
  const failedLately = (n: NodeEndpoint) => (now - (health.get(n.id)?.failedAt ?? -Infinity) < FAILURE_MEMORY_MS ? 1 : 0);
  return rotated.sort((a, b) => failedLately(a) - failedLately(b));
}

/** How long the first nodes may stay quiet before a spare is asked: a few times the usual answer, within bounds. */
export function hedgeDelayMs(): number {
  if (latencies.length < 4) return 400;
  const sorted = [...latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return Math.min(1000, Math.max(100, 4 * median));
}

function classify(e: unknown, signal: AbortSignal): { status: NodeStatus; error: string; culprits?: Culprit[]; httpStatus?: number; code?: string } {
  if (signal.aborted) return signal.reason === CANCEL ? { status: 'cancelled', error: 'not needed' } : { status: 'timeout', error: 'no answer within the deadline' };
  if (e instanceof NodeHttpError) {
    if (e.code === 'fragment_corrupted') return { status: 'corrupted', error: 'node reports its stored fragment failed the integrity check' };
    if (e.code === 'key_not_found') return { status: 'not_found', error: 'node holds no fragment of this key' };
    if (e.httpStatus === 429 || (e.httpStatus === 503 && e.retryAfter !== undefined)) {
      return { status: 'busy', error: `node refused before doing any work (${e.httpStatus} ${e.code})`, httpStatus: e.httpStatus, code: e.code };
    }
    if (e.httpStatus === 504) return { status: 'timeout', error: `node ran out of time (${e.code})`, httpStatus: e.httpStatus, code: e.code };
    const culprits = Array.isArray(e.details?.['culprits']) ? (e.details['culprits'] as Culprit[]) : undefined;
    return { status: 'error', error: `${e.httpStatus} ${e.code}`, httpStatus: e.httpStatus, code: e.code, ...(culprits ? { culprits } : {}) };
  }
  return { status: 'unreachable', error: 'connection failed' };
}

export function gather<R, V>(opts: GatherOptions<R, V>): Promise<GatherResult<V>> {
  const stopEarly = opts.stopEarly ?? true;
  const budget = remainingOr(opts.timeoutMs);
  // Every call, spares included, ends by the same instant: the deadline less the caller's reserve.
  const callsEndAt = performance.now() + Math.max(1, budget - (opts.reserveMs ?? Math.min(1000, Math.max(100, budget / 5))));
  const order = stopEarly && opts.initial !== undefined ? preferredOrder(opts.nodes) : opts.nodes;
  const groups = new Map<string, { need: number; members: { node: NodeEndpoint; value: V }[] }>();
  const reports = new Map<string, NodeReport>();
  const controllers = new Map<string, AbortController>();
  const retried = new Map<string, number>();

  return new Promise((resolve) => {
    let next = 0;
    let inFlight = 0;
    let done = false;
    let hedgeTimer: ReturnType<typeof setTimeout> | undefined;
    const finish = (winner?: GatherResult<V>['winner']) => {
      if (done) return;
      done = true;
      clearTimeout(hedgeTimer);
      controllers.forEach((c) => c.abort(CANCEL));
      const list = opts.nodes.map((n) => reports.get(n.id) ?? { nodeId: n.id, status: 'cancelled' as const, error: 'not needed' });
      resolve({ ...(winner ? { winner } : {}), reports: list });
    };
    const best = () => [...groups.entries()].sort((a, b) => b[1].members.length - a[1].members.length)[0];
    /** Valid answers still missing for the most promising group (the expected quorum before any answer). */
    const missing = () => {
      const b = best();
      return b ? b[1].need - b[1].members.length : (opts.initial ?? opts.nodes.length);
    };
    const launchSpares = (extra = 0) => {
      while (!done && next < order.length && inFlight < missing() + extra) start(order[next++]!);
      if (!done && inFlight === 0 && next >= order.length) {
        const b = best();
        const reached = b && b[1].members.length >= b[1].need;
        finish(b && (reached || !stopEarly) ? { group: b[0], ...b[1] } : undefined);
      }
    };
    const armHedge = () => {
      clearTimeout(hedgeTimer);
      if (next >= order.length) return;
      hedgeTimer = setTimeout(() => {
        launchSpares(1);
        armHedge();
      }, hedgeDelayMs());
    };
    const settle = (r: NodeReport, node: NodeEndpoint) => {
      if (done) return;
      reports.set(r.nodeId, r);
      remember(r);
      opts.onReport?.(r);
      inFlight -= 1;
      // A node that refused before doing any work (at its concurrency limit) is asked
      // again after a short jittered pause, while the deadline leaves room for it.
      const tries = (retried.get(node.id) ?? 0) + 1;
      if (r.status === 'busy' && tries <= BUSY_RETRIES && callsEndAt - performance.now() > 2 * BUSY_PAUSE_MS) {
        retried.set(node.id, tries);
        inFlight += 1;
        setTimeout(() => {
          inFlight -= 1;
          if (done) return;
          order.push(node);
          launchSpares();
        }, BUSY_PAUSE_MS * (0.5 + Math.random()));
        return;
      }
      launchSpares();
    };
    const start = (node: NodeEndpoint) => {
      const ctl = new AbortController();
      controllers.set(node.id, ctl);
      inFlight += 1;
      const started = performance.now();
      const timer = setTimeout(() => ctl.abort(TIMEOUT), Math.max(1, callsEndAt - performance.now()));
      const latency = () => Math.round((performance.now() - started) * 100) / 100;
      opts
        .call(node, ctl.signal)
        .then(
          (answer) => {
            if (done) return;
            let v: Verdict<V>;
            try {
              v = opts.judge(node, answer);
            } catch {
              // An answer that breaks a check is a bad answer, never a hung fan-out.
              v = { ok: false, status: 'error', error: 'answer failed verification' };
            }
            if (!v.ok) return settle({ nodeId: node.id, status: v.status, latencyMs: latency(), error: v.error }, node);
            const g = groups.get(v.group) ?? { need: v.need, members: [] };
            g.members.push({ node, value: v.value });
            groups.set(v.group, g);
            const reached = g.members.length >= g.need;
            if (stopEarly && reached) {
              reports.set(node.id, { nodeId: node.id, status: 'valid', latencyMs: latency() });
              remember(reports.get(node.id)!);
              opts.onReport?.(reports.get(node.id)!);
              return finish({ group: v.group, ...g });
            }
            settle({ nodeId: node.id, status: 'valid', latencyMs: latency() }, node);
          },
          (e) => settle({ nodeId: node.id, latencyMs: latency(), ...classify(e, ctl.signal) }, node),
        )
        .finally(() => clearTimeout(timer));
    };

    if (opts.nodes.length === 0) return finish();
    const first = stopEarly && opts.initial !== undefined ? Math.min(opts.initial, order.length) : order.length;
    for (let i = 0; i < first; i++) start(order[next++]!);
    if (next < order.length) armHedge();
  });
}

/** After a winner is known, members of other groups disagreed with the quorum: name them. */
export function markDissenters<V>(result: GatherResult<V>): NodeReport[] {
  if (!result.winner) return result.reports;
  const inWinner = new Set(result.winner.members.map((m) => m.node.id));
  return result.reports.map((r) =>
    r.status === 'valid' && !inWinner.has(r.nodeId) ? { ...r, status: 'inconsistent', error: 'public key package disagrees with the quorum' } : r,
  );
}

/** The nodes refused on their own authority (401, 403, 409, 410): the caller gets that refusal. */
export class NodeRefusalError extends FedkmsError {}

const REFUSALS = new Set([401, 403, 409, 410]);

/**
 * Why a fan-out failed. When the nodes that answered all refused with the same client
 * error (not authorized, key disabled, destroyed...), that refusal is the answer, with
 * every node's report; otherwise it is a quorum failure naming each node's fault.
 */
export function quorumFailure(message: string, details: { nodes: NodeReport[] } & Record<string, unknown>): FedkmsError {
  // Valid answers short of a quorum, and nodes that did not answer, say nothing about why the rest refused.
  const answered = details.nodes.filter((r) => r.status !== 'valid' && !TRANSIENT.has(r.status));
  const codes = new Set(answered.map((r) => (r.httpStatus && REFUSALS.has(r.httpStatus) ? `${r.httpStatus} ${r.code}` : 'other')));
  const only = codes.size === 1 ? [...codes][0]! : undefined;
  if (only && only !== 'other') {
    const [status, code] = only.split(' ') as [string, string];
    return new NodeRefusalError(code, Number(status), `the nodes refused: ${code}`, details);
  }
  // Nothing was refused on its merits and some node was only busy or slow: load, not an
  // outage or a fault. Nothing was released, so the caller may try again shortly (the SDK
  // retries on Retry-After). Nodes that refuse connections are down: no Retry-After.
  const loadOnly = answered.length === 0 && details.nodes.some((r) => r.status === 'busy' || r.status === 'timeout');
  return new QuorumError(message, details, loadOnly ? RETRY_AFTER_S : undefined);
}

/** The Retry-After of a refusal caused by load, seconds. */
export const RETRY_AFTER_S = 1;
