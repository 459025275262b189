/**
 * Witnessed checkpoints of the audit chains, as pure functions (no I/O).
 *
 * In the spirit of C2SP tlog-checkpoint and RFC 9162 signed tree heads: the component that
 * writes a chain signs a checkpoint (origin, stream, length, head hash, time) with its
 * identity key; other members countersign it and keep it in their own storage as witnesses.
 * A chain is then checked against what the witnesses hold, so its writer cannot quietly
 * drop, rewrite or delete what a checkpoint covers, and a chain no witness ever saw
 * registered stands out.
 */
import { verifyStatement } from '../crypto/identity.js';
import type { AuditRecord } from '../ports.js';
import { GENESIS_HASH, componentOf, recordHash, recordSigStatement } from './chain.js';

export interface Checkpoint {
  /** Who wrote the chain: a node id, or `coordinator`. */
  origin: string;
  stream: string;
  /** Records covered: seq 1..length. */
  length: number;
  /** The hash of record `length`. */
  head: string;
  time: string;
}

export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  /** The origin's signature over checkpointStatement(checkpoint). */
  signature: string;
}

/** A checkpoint as one witness holds it: countersigned, with the earlier ones it saw (newest last, bounded). */
export interface WitnessedCheckpoint extends SignedCheckpoint {
  witness: string;
  witnessedAt: string;
  cosignature: string;
  history: { length: number; head: string; time: string }[];
}

export const CHECKPOINT_HISTORY = 64;

export const checkpointStatement = (c: Checkpoint) => ({ purpose: 'fedkms/audit-checkpoint/v1', ...c });
export const cosignStatement = (s: SignedCheckpoint, witness: string, witnessedAt: string) => ({
  purpose: 'fedkms/audit-cosignature/v1',
  witness,
  witnessedAt,
  checkpoint: s.checkpoint,
  signature: s.signature,
});

/** The origin a stream belongs to: `node#node1#abc` → `node1`; any other component → `coordinator`. */
export function originOfStream(stream: string): string {
  return stream.startsWith('node#') ? (stream.split('#')[1] ?? '') : 'coordinator';
}

/** Operations that release secret material: each batch of them is checkpointed. */
export const RELEASING_ACTIONS = new Set(['fragment.release', 'sign.share', 'key.decrypt', 'reshare.deal', 'key.reconstruct', 'key.sign']);
export const isReleasing = (r: Pick<AuditRecord, 'action' | 'outcome'>) => r.outcome === 'success' && RELEASING_ACTIONS.has(r.action);

/**
 * When a chain is checkpointed (see docs/design.md §5): when it starts (registration), when its
 * unwitnessed tail holds `releases` releasing records, or when its last witnessed checkpoint is
 * older than `maxAgeMs` and there is something new to cover.
 */
export interface CheckpointPolicy {
  releases: number;
  maxAgeMs: number;
}
export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { releases: 4, maxAgeMs: 30_000 };

export interface ChainState {
  /** Length covered by the last checkpoint at least one witness countersigned; 0 for none. */
  witnessedLength: number;
  witnessedAt: number;
  /** Releasing records appended since that checkpoint. */
  releasesSince: number;
}

export function shouldCheckpoint(state: ChainState | undefined, head: AuditRecord, policy: CheckpointPolicy, now: number): boolean {
  if (!state || state.witnessedLength === 0) return true;
  if (head.seq <= state.witnessedLength) return false;
  return state.releasesSince >= policy.releases || now - state.witnessedAt >= policy.maxAgeMs;
}

/**
 * Whether a witness takes `next` after `prev` for the same stream: a chain only grows, and one
 * length has one head. Returns the reason for refusing, or undefined.
 */
export function checkpointConflict(prev: WitnessedCheckpoint | undefined, next: Checkpoint): string | undefined {
  if (!prev) return undefined;
  const seen = [...prev.history, { length: prev.checkpoint.length, head: prev.checkpoint.head }];
  const same = seen.find((h) => h.length === next.length);
  if (same && same.head !== next.head) return `length ${next.length} was checkpointed with another head`;
  if (next.length < prev.checkpoint.length) return `length ${next.length} is shorter than the witnessed ${prev.checkpoint.length}`;
  return undefined;
}

/** The witness's new copy: `next` countersigned, the previous one moved into the bounded history. */
export function witnessed(prev: WitnessedCheckpoint | undefined, next: SignedCheckpoint, witness: string, witnessedAt: string, cosign: (statement: unknown) => string): WitnessedCheckpoint {
  const history = prev
    ? [...prev.history, { length: prev.checkpoint.length, head: prev.checkpoint.head, time: prev.checkpoint.time }].filter((h) => h.length < next.checkpoint.length).slice(-CHECKPOINT_HISTORY)
    : [];
  return { ...next, witness, witnessedAt, cosignature: cosign(cosignStatement(next, witness, witnessedAt)), history };
}

// ------------------------------------------------------------------ verification

export type ProblemKind = 'broken_link' | 'bad_signature' | 'truncated' | 'rewritten' | 'deleted' | 'unregistered' | 'unknown_component';

export interface AuditProblem {
  kind: ProblemKind;
  /** The component (`node1`, `coordinator`) and its chain. */
  component: string;
  stream: string;
  /** The first bad position (seq). */
  seq: number;
  /** For a rewrite found only by a checkpoint: the earliest seq it can be (the record is in seq..upTo). */
  upTo?: number;
  detail: string;
}

export interface ChainCheckpointView {
  length: number;
  head: string;
  time: string;
  /** Witnesses holding a valid countersigned copy of this (the newest) checkpoint. */
  witnesses: string[];
}

export interface ChainReport {
  stream: string;
  component: string;
  records: number;
  verifiedThrough: number;
  ok: boolean;
  firstBroken?: { seq: number; reason: string };
  checkpoint?: ChainCheckpointView;
}

export interface VerifyInput {
  /** Records of every component that could be read, all together. */
  records: AuditRecord[];
  /** Components whose chains were read completely: only their chains can be missing or short. */
  readFrom: Set<string>;
  /** Every witness's copies. */
  witnessed: WitnessedCheckpoint[];
  /** Identity public keys (base64): nodes by id, and `coordinator`. */
  keys: ReadonlyMap<string, string>;
  /** Who may witness: node ids of the membership. */
  witnesses: ReadonlySet<string>;
}

export interface VerifyResult {
  ok: boolean;
  problems: AuditProblem[];
  chains: ChainReport[];
  /** Witnessed copies that did not verify (ignored), named. */
  ignored: { witness: string; stream: string; reason: string }[];
}

/** Valid witnessed checkpoints by stream: origin signature and witness cosignature both verify. */
function validCheckpoints(input: VerifyInput, ignored: VerifyResult['ignored']): Map<string, WitnessedCheckpoint[]> {
  const out = new Map<string, WitnessedCheckpoint[]>();
  for (const w of input.witnessed) {
    const c = w.checkpoint;
    const originKey = input.keys.get(c.origin);
    const witnessKey = input.keys.get(w.witness);
    const reason =
      originOfStream(c.stream) !== c.origin ? 'checkpoint names a stream of another component' :
      w.witness === c.origin || !input.witnesses.has(w.witness) || !witnessKey ? 'not a witness for this stream' :
      !originKey ? 'origin not known' :
      !verifyStatement(originKey, checkpointStatement(c), w.signature) ? 'origin signature does not verify' :
      !verifyStatement(witnessKey, cosignStatement(w, w.witness, w.witnessedAt), w.cosignature) ? 'witness cosignature does not verify' : undefined;
    if (reason) {
      ignored.push({ witness: w.witness, stream: c.stream, reason });
      continue;
    }
    out.set(c.stream, [...(out.get(c.stream) ?? []), w]);
  }
  return out;
}

/**
 * Check every chain: links and hashes, each record's signature by its writer, and agreement with
 * every witnessed checkpoint (length and head, and the heads of the earlier checkpoints each
 * witness kept). Names, per chain, the first bad position.
 */
export function verifyFederation(input: VerifyInput): VerifyResult {
  const ignored: VerifyResult['ignored'] = [];
  const checkpoints = validCheckpoints(input, ignored);
  const byStream = new Map<string, AuditRecord[]>();
  for (const r of input.records) byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), r]);
  const problems: AuditProblem[] = [];
  const chains: ChainReport[] = [];
  const streams = new Set([...byStream.keys(), ...[...checkpoints.keys()].filter((s) => input.readFrom.has(originOfStream(s)))]);
  for (const stream of [...streams].sort()) {
    const component = originOfStream(stream);
    const records = [...(byStream.get(stream) ?? [])].sort((a, b) => a.seq - b.seq);
    const cps = checkpoints.get(stream) ?? [];
    const problem = (kind: ProblemKind, seq: number, detail: string, upTo?: number): AuditProblem => ({ kind, component, stream, seq, ...(upTo !== undefined ? { upTo } : {}), detail });
    let found: AuditProblem | undefined;
    const key = input.keys.get(component);
    // Links, hashes and signatures, in order: the first failure is the first bad position.
    let prev = GENESIS_HASH;
    let through = 0;
    const hashAt = new Map<number, string>();
    if (!key) found = problem('unknown_component', records[0]?.seq ?? 1, `${component} is not a member of the federation: no key to check its records`);
    for (const r of found ? [] : records) {
      const expect = through + 1;
      const { hash, sig: _sig, ...body } = r;
      found =
        r.seq !== expect ? problem(r.seq > expect ? 'truncated' : 'broken_link', expect, r.seq > expect ? `record ${expect} is missing` : `seq ${r.seq} repeats`) :
        r.prevHash !== prev ? problem('broken_link', r.seq, 'prevHash does not match the previous record') :
        recordHash(body) !== hash ? problem('rewritten', r.seq, 'hash does not match the record contents') :
        !r.sig || !verifyStatement(key!, recordSigStatement(hash), r.sig) ? problem('bad_signature', r.seq, `record is not signed by ${component}'s identity key (rewritten or planted)`) : undefined;
      if (found) break;
      hashAt.set(r.seq, hash);
      prev = hash;
      through = r.seq;
    }
    // Against the witnesses: the newest checkpoint any of them holds, and every earlier head they kept.
    const newest = cps.reduce<WitnessedCheckpoint | undefined>((a, w) => (!a || w.checkpoint.length > a.checkpoint.length ? w : a), undefined);
    if (!found && records.length === 0 && newest) {
      found = problem('deleted', 1, `chain deleted: witnessed at length ${newest.checkpoint.length} by ${cps.map((w) => w.witness).join(', ')}`);
    }
    if (!found && newest && through < newest.checkpoint.length) {
      found = problem('truncated', through + 1, `records ${through + 1}..${newest.checkpoint.length} are missing: witnessed at length ${newest.checkpoint.length} by ${cps.filter((w) => w.checkpoint.length === newest.checkpoint.length).map((w) => w.witness).join(', ')}`);
    }
    if (!found) {
      // Every (length, head) a witness vouches for, oldest first: the first that disagrees bounds the rewrite.
      const vouched = new Map<number, string>();
      for (const w of cps) for (const h of [...w.history, w.checkpoint]) vouched.set(h.length, h.head);
      let agreedThrough = 0;
      for (const [length, head] of [...vouched.entries()].sort(([a], [b]) => a - b)) {
        if (hashAt.get(length) !== head) {
          found = problem('rewritten', agreedThrough + 1, `the chain differs from what the witnesses saw at length ${length}: a record in ${agreedThrough + 1}..${length} was rewritten`, length);
          break;
        }
        agreedThrough = length;
      }
    }
    if (!found && records.length > 0 && !newest) {
      found = problem('unregistered', 1, `no witness holds a checkpoint of this chain: it was never registered`);
    }
    if (found) problems.push(found);
    chains.push({
      stream,
      component,
      records: records.length,
      verifiedThrough: found ? Math.min(through, found.seq - 1) : through,
      ok: !found,
      ...(found ? { firstBroken: { seq: found.seq, reason: `${found.kind}: ${found.detail}` } } : {}),
      ...(newest ? { checkpoint: { length: newest.checkpoint.length, head: newest.checkpoint.head, time: newest.checkpoint.time, witnesses: cps.filter((w) => w.checkpoint.length === newest.checkpoint.length && w.checkpoint.head === newest.checkpoint.head).map((w) => w.witness).sort() } } : {}),
    });
  }
  return { ok: problems.length === 0, problems, chains, ignored };
}

/** The witnessed copies whose origin signature and witness cosignature verify (the rest dropped). */
export function trustedCheckpoints(witnessed: WitnessedCheckpoint[], keys: ReadonlyMap<string, string>, witnesses: ReadonlySet<string>): WitnessedCheckpoint[] {
  const ignored: VerifyResult['ignored'] = [];
  return [...validCheckpoints({ records: [], readFrom: new Set(), witnessed, keys, witnesses }, ignored).values()].flat();
}

/** Per component: the newest witnessed checkpoint of any of its chains (what the dashboard shows). */
export function lastCheckpoints(witnessed: WitnessedCheckpoint[]): { component: string; stream: string; length: number; time: string; witnesses: string[] }[] {
  const best = new Map<string, { component: string; stream: string; length: number; time: string; witnesses: Set<string> }>();
  for (const w of witnessed) {
    const component = componentOf(w.checkpoint.stream);
    const b = best.get(component);
    if (!b || b.time < w.checkpoint.time) best.set(component, { component, stream: w.checkpoint.stream, length: w.checkpoint.length, time: w.checkpoint.time, witnesses: new Set([w.witness]) });
    else if (b.time === w.checkpoint.time && b.stream === w.checkpoint.stream) b.witnesses.add(w.witness);
  }
  return [...best.values()].sort((a, b) => a.component.localeCompare(b.component)).map((b) => ({ ...b, witnesses: [...b.witnesses].sort() }));
}
