/**
 * Concurrent fan-out to nodes with a per-node timeout. Each answer is judged as it
 * arrives; answers that agree are grouped (for example by the digest of the public
 * key package they carry), and the fan-out stops as soon as one group has enough
 * valid answers, cancelling the calls still in flight.
 */
import type { NodeEndpoint } from '../runtime-config.js';
import { FedkmsError, QuorumError, type Culprit } from '../errors.js';
import { NodeHttpError } from './node-client.js';

export type NodeStatus =
  | 'valid'
  | 'invalid_share'
  | 'inconsistent'
  | 'corrupted'
  | 'not_found'
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
  timeoutMs: number;
  call: (node: NodeEndpoint, signal: AbortSignal) => Promise<R>;
  judge: (node: NodeEndpoint, answer: R) => Verdict<V>;
  /** Stop at the first group with enough valid answers (default true). */
  stopEarly?: boolean;
  /** Called as each node settles: progress output and metrics. */
  onReport?: (r: NodeReport) => void;
}

export interface GatherResult<V> {
  /** The group that reached its quorum, or, without stopEarly, the largest group. */
  winner?: { group: string; need: number; members: { node: NodeEndpoint; value: V }[] };
  reports: NodeReport[];
}

const TIMEOUT = Symbol('timeout');
const CANCEL = Symbol('cancel');

function classify(e: unknown, signal: AbortSignal): { status: NodeStatus; error: string; culprits?: Culprit[]; httpStatus?: number; code?: string } {
  if (signal.aborted) return signal.reason === CANCEL ? { status: 'cancelled', error: 'not needed' } : { status: 'timeout', error: 'no answer before the timeout' };
  if (e instanceof NodeHttpError) {
    if (e.code === 'fragment_corrupted') return { status: 'corrupted', error: 'node reports its stored fragment failed the integrity check' };
    if (e.code === 'key_not_found') return { status: 'not_found', error: 'node holds no fragment of this key' };
    const culprits = Array.isArray(e.details?.['culprits']) ? (e.details['culprits'] as Culprit[]) : undefined;
    return { status: 'error', error: `${e.httpStatus} ${e.code}`, httpStatus: e.httpStatus, code: e.code, ...(culprits ? { culprits } : {}) };
  }
  return { status: 'unreachable', error: 'connection failed' };
}

export function gather<R, V>(opts: GatherOptions<R, V>): Promise<GatherResult<V>> {
  const stopEarly = opts.stopEarly ?? true;
  const groups = new Map<string, { need: number; members: { node: NodeEndpoint; value: V }[] }>();
  const reports = new Map<string, NodeReport>();
  const controllers = opts.nodes.map(() => new AbortController());

  return new Promise((resolve) => {
    let pending = opts.nodes.length;
    let done = false;
    const finish = (winner?: GatherResult<V>['winner']) => {
      if (done) return;
      done = true;
      controllers.forEach((c) => c.abort(CANCEL));
      const list = opts.nodes.map((n) => reports.get(n.id) ?? { nodeId: n.id, status: 'cancelled' as const, error: 'not needed' });
      resolve({ ...(winner ? { winner } : {}), reports: list });
    };
    const settle = (r: NodeReport) => {
      if (done) return;
      reports.set(r.nodeId, r);
      opts.onReport?.(r);
      pending -= 1;
      if (pending === 0) {
        const best = [...groups.entries()].sort((a, b) => b[1].members.length - a[1].members.length)[0];
        const reached = best && best[1].members.length >= best[1].need;
        finish(best && (reached || !stopEarly) ? { group: best[0], ...best[1] } : undefined);
      }
    };
    if (opts.nodes.length === 0) finish();

    opts.nodes.forEach((node, i) => {
      const ctl = controllers[i]!;
      const started = performance.now();
      const timer = setTimeout(() => ctl.abort(TIMEOUT), opts.timeoutMs);
      const latency = () => Math.round((performance.now() - started) * 100) / 100;
      opts
        .call(node, ctl.signal)
        .then(
          (answer) => {
            let v: Verdict<V>;
            try {
              v = opts.judge(node, answer);
            } catch {
              // An answer that breaks a check is a bad answer, never a hung fan-out.
              v = { ok: false, status: 'error', error: 'answer failed verification' };
            }
            if (!v.ok) return settle({ nodeId: node.id, status: v.status, latencyMs: latency(), error: v.error });
            const g = groups.get(v.group) ?? { need: v.need, members: [] };
            g.members.push({ node, value: v.value });
            groups.set(v.group, g);
            const reached = g.members.length >= g.need;
            settle({ nodeId: node.id, status: 'valid', latencyMs: latency() });
            if (stopEarly && reached) finish({ group: v.group, ...g });
          },
          (e) => settle({ nodeId: node.id, latencyMs: latency(), ...classify(e, ctl.signal) }),
        )
        .finally(() => clearTimeout(timer));
    });
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
  const answered = details.nodes.filter((r) => !['valid', 'timeout', 'unreachable', 'cancelled'].includes(r.status));
  const codes = new Set(answered.map((r) => (r.httpStatus && REFUSALS.has(r.httpStatus) ? `${r.httpStatus} ${r.code}` : 'other')));
  const only = codes.size === 1 ? [...codes][0]! : undefined;
  if (only && only !== 'other') {
    const [status, code] = only.split(' ') as [string, string];
    return new NodeRefusalError(code, Number(status), `the nodes refused: ${code}`, details);
  }
  return new QuorumError(message, details);
}
