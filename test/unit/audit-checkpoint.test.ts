/**
 * The pure parts of the tamper-evident audit trail (lib/audit/checkpoint.ts, checkpointing.ts):
 * signed records, the checkpoint policy, what a witness accepts, and verification against the
 * witnesses' copies: truncation, rewrite (with and without the writer's key), deleted and
 * planted chains, each named with its component and first bad position.
 */
import { nextRecord, recordHash, recordSigStatement } from '../../lib/audit/chain';
import {
  checkpointConflict,
  checkpointStatement,
  lastCheckpoints,
  shouldCheckpoint,
  verifyFederation,
  witnessed,
  type Checkpoint,
  type WitnessedCheckpoint,
} from '../../lib/audit/checkpoint';
import { CheckpointingAuditLog, publisher, type WitnessAnswer } from '../../lib/audit/checkpointing';
import { ed25519KeyPair } from '../../lib/crypto/ed25519-signature';
import { signStatement } from '../../lib/crypto/identity';
import { toB64 } from '../../lib/encoding';
import type { AuditEntry, AuditLog, AuditRecord } from '../../lib/ports';

const ids = ['node1', 'node2', 'node3', 'coordinator'] as const;
const kp = Object.fromEntries(ids.map((id) => [id, ed25519KeyPair()])) as Record<(typeof ids)[number], ReturnType<typeof ed25519KeyPair>>;
const keys = new Map<string, string>(ids.map((id) => [id, toB64(kp[id].publicKey)]));
const signer = (id: (typeof ids)[number]) => (hash: string) => signStatement(kp[id].privateKey, recordSigStatement(hash));
const STREAM = 'node#node1#abc';

function chain(n: number, stream = STREAM, by: (typeof ids)[number] = 'node1'): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let i = 0; i < n; i++) out.push(nextRecord(stream, out.at(-1), { actor: 'client:bob', action: i % 3 === 2 ? 'fragment.release' : 'key.describe', outcome: 'success', details: { i } }, new Date(1_000 * i), signer(by)));
  return out;
}

function checkpointOf(records: AuditRecord[], length: number, origin = 'node1'): Checkpoint {
  const r = records[length - 1]!;
  return { origin, stream: r.stream, length, head: r.hash, time: new Date(length * 1000).toISOString() };
}

function witness(by: 'node2' | 'node3' | 'node1', c: Checkpoint, prev?: WitnessedCheckpoint): WitnessedCheckpoint {
  const signature = signStatement(kp[c.origin as (typeof ids)[number]].privateKey, checkpointStatement(c));
  return witnessed(prev, { checkpoint: c, signature }, by, new Date(c.length * 1000 + 1).toISOString(), (st) => signStatement(kp[by].privateKey, st));
}

const verify = (records: AuditRecord[], w: WitnessedCheckpoint[], readFrom = ['node1', 'node2', 'node3', 'coordinator']) =>
  verifyFederation({ records, readFrom: new Set(readFrom), witnessed: w, keys, witnesses: new Set(['node1', 'node2', 'node3']) });

/** A chain of 12 witnessed at 4, 8 and 12 by node2 and node3 (each keeping the earlier heads). */
function witnessedChain() {
  const records = chain(12);
  const w: WitnessedCheckpoint[] = [];
  for (const by of ['node2', 'node3'] as const) {
    let prev: WitnessedCheckpoint | undefined;
    for (const l of [4, 8, 12]) prev = witness(by, checkpointOf(records, l), prev);
    w.push(prev!);
  }
  return { records, w };
}

/** Recompute every hash from `from` on, as an attacker with table access would (signatures kept, or re-signed with `key`). */
function rehash(records: AuditRecord[], from: number, sign?: (h: string) => string): AuditRecord[] {
  const out = records.map((r) => ({ ...r }));
  for (let i = from - 1; i < out.length; i++) {
    const r = out[i]!;
    if (i > 0) r.prevHash = out[i - 1]!.hash;
    const { hash: _h, sig, ...body } = r;
    r.hash = recordHash(body);
    r.sig = sign ? sign(r.hash) : sig;
  }
  return out;
}

describe('signed records', () => {
  it('each record carries its writer\'s signature over its hash; the hash does not cover the signature', () => {
    const [r] = chain(1);
    const { hash, sig: _s, ...body } = r!;
    expect(recordHash(body)).toBe(hash);
    expect(recordHash({ ...body, sig: 'anything' })).toBe(hash);
    expect(verify(chain(3), witnessedChain().w.filter(() => false)).problems[0]).toMatchObject({ kind: 'unregistered', component: 'node1', seq: 1 });
  });

  it('a record signed by another key, or unsigned, is named at its position', () => {
    const { records, w } = witnessedChain();
    const forged = [...records];
    forged[5] = { ...forged[5]!, sig: signer('node2')(forged[5]!.hash) };
    expect(verify(forged, w).problems).toEqual([expect.objectContaining({ kind: 'bad_signature', component: 'node1', stream: STREAM, seq: 6 })]);
    const unsigned = records.map(({ sig: _s, ...r }) => r);
    expect(verify(unsigned, w).problems[0]).toMatchObject({ kind: 'bad_signature', seq: 1 });
  });
});

describe('verification against witnessed checkpoints', () => {
  it('an intact chain verifies, with its newest checkpoint and witnesses', () => {
    const { records, w } = witnessedChain();
    const more = [...records, ...chain(14).slice(12)]; // two records after the last checkpoint
    const v = verify(more, w);
    expect(v).toMatchObject({ ok: true, problems: [], ignored: [] });
    expect(v.chains[0]).toMatchObject({ stream: STREAM, component: 'node1', records: 14, verifiedThrough: 14, ok: true, checkpoint: { length: 12, witnesses: ['node2', 'node3'] } });
  });

  it('a truncated tail: records missing after a witnessed checkpoint, named from the first missing one', () => {
    const { records, w } = witnessedChain();
    const v = verify(records.slice(0, 9), w);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'truncated', component: 'node1', stream: STREAM, seq: 10 })]);
    expect(v.chains[0]).toMatchObject({ ok: false, verifiedThrough: 9 });
  });

  it('what the last checkpoint does not cover can still go: the documented window', () => {
    const { records, w } = witnessedChain();
    const longer = [...records, ...chain(15).slice(12)];
    expect(verify(longer.slice(0, 12), w).ok).toBe(true);
  });

  it('a rewritten record with every later hash recomputed: named by its signature', () => {
    const { records, w } = witnessedChain();
    const edited = records.map((r) => ({ ...r }));
    edited[4] = { ...edited[4]!, actor: 'client:nobody' };
    const v = verify(rehash(edited, 5), w);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'bad_signature', component: 'node1', seq: 5 })]);
  });

  it('a rewrite by the writer itself (re-signed with its key) before a checkpoint: bounded by the witnessed heads', () => {
    const { records, w } = witnessedChain();
    const edited = records.map((r) => ({ ...r }));
    edited[5] = { ...edited[5]!, actor: 'client:nobody' };
    const v = verify(rehash(edited, 6, signer('node1')), w);
    // Heads at 4 agree, at 8 they do not: the rewrite is in 5..8.
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'rewritten', component: 'node1', seq: 5, upTo: 8 })]);
  });

  it('a deleted chain: witnessed, and now gone', () => {
    const { w } = witnessedChain();
    const v = verify([], w);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'deleted', component: 'node1', stream: STREAM, seq: 1 })]);
    // Not when node1 could not be read: then it is missing, not deleted.
    expect(verify([], w, ['node2', 'node3', 'coordinator']).problems).toEqual([]);
  });

  it('a planted chain, even signed with the writer\'s key, was never registered', () => {
    const { records, w } = witnessedChain();
    const planted = chain(3, 'node#node1#planted');
    const v = verify([...records, ...planted], w);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'unregistered', component: 'node1', stream: 'node#node1#planted', seq: 1 })]);
  });

  it('ignores checkpoints that do not verify: forged origin, forged cosignature, self-witnessed, wrong component', () => {
    const { records, w } = witnessedChain();
    const good = w[0]!;
    const bad: WitnessedCheckpoint[] = [
      { ...good, checkpoint: { ...good.checkpoint, length: 20 } },
      { ...good, cosignature: good.signature },
      witness('node1', checkpointOf(records, 12)),
      { ...good, checkpoint: { ...good.checkpoint, origin: 'node2' } },
    ];
    const v = verify(records, bad);
    expect(v.ignored.map((i) => i.reason)).toEqual([
      'origin signature does not verify',
      'witness cosignature does not verify',
      'not a witness for this stream',
      'checkpoint names a stream of another component',
    ]);
    expect(v.problems[0]).toMatchObject({ kind: 'unregistered' });
  });

  it('the coordinator\'s chains are checked with its key', () => {
    const records = chain(5, 'reconstruct#c1', 'coordinator');
    const w = [witness('node1', checkpointOf(records, 5, 'coordinator'))];
    expect(verify(records, w).ok).toBe(true);
    expect(verify(records.slice(0, 3), w).problems[0]).toMatchObject({ kind: 'truncated', component: 'coordinator', seq: 4 });
    expect(lastCheckpoints(w)).toEqual([expect.objectContaining({ component: 'reconstruct', length: 5, witnesses: ['node1'] })]);
  });
});

describe('what a witness accepts', () => {
  it('a chain only grows, and one length has one head', () => {
    const { records } = witnessedChain();
    const w8 = witness('node2', checkpointOf(records, 8), witness('node2', checkpointOf(records, 4)));
    expect(w8.history.map((h) => h.length)).toEqual([4]);
    expect(checkpointConflict(w8, checkpointOf(records, 12))).toBeUndefined();
    expect(checkpointConflict(w8, checkpointOf(records, 6))).toMatch(/shorter/);
    expect(checkpointConflict(w8, { ...checkpointOf(records, 4), head: 'f'.repeat(64) })).toMatch(/another head/);
  });
});

describe('when a chain is checkpointed', () => {
  const policy = { releases: 4, maxAgeMs: 30_000 };
  const head = (seq: number) => ({ seq } as AuditRecord);
  it('at registration, after a batch of releases, or when the last checkpoint is old', () => {
    expect(shouldCheckpoint(undefined, head(1), policy, 0)).toBe(true);
    expect(shouldCheckpoint({ witnessedLength: 0, witnessedAt: 0, releasesSince: 0 }, head(2), policy, 0)).toBe(true);
    expect(shouldCheckpoint({ witnessedLength: 5, witnessedAt: 1000, releasesSince: 3 }, head(9), policy, 2000)).toBe(false);
    expect(shouldCheckpoint({ witnessedLength: 5, witnessedAt: 1000, releasesSince: 4 }, head(9), policy, 2000)).toBe(true);
    expect(shouldCheckpoint({ witnessedLength: 5, witnessedAt: 1000, releasesSince: 0 }, head(6), policy, 31_000)).toBe(true);
  });

  class MemoryLog implements AuditLog {
    records: AuditRecord[] = [];
    async append(stream: string, entry: AuditEntry) {
      const r = nextRecord(`${stream}#i1`, this.records.at(-1), entry, new Date(), signer('node1'));
      this.records.push(r);
      return r;
    }
    async readAll() {
      return this.records;
    }
  }

  it('publishes a signed checkpoint within the request; a witness that is down does not block, and is named', async () => {
    const sent: { witness: string; length: number }[] = [];
    const degraded: string[][] = [];
    let now = 0;
    const publish = publisher(
      async () => [{ id: 'node2' }, { id: 'node3' }],
      async (w, cp) => {
        if (w.id === 'node3') throw Object.assign(new Error('down'), { code: 'unreachable' });
        sent.push({ witness: w.id, length: cp.checkpoint.length });
      },
      100,
    );
    const log = new CheckpointingAuditLog(new MemoryLog(), { origin: 'node1', policy, sign: (s) => signStatement(kp.node1.privateKey, s), publish, onDegraded: (_c, ok, failed) => degraded.push([...ok, ...failed.map((f: WitnessAnswer) => `!${f.witness}`)]), now: () => now });
    await log.append('node#node1', { actor: 'a', action: 'key.describe', outcome: 'success' });
    expect(sent).toEqual([{ witness: 'node2', length: 1 }]);
    for (let i = 0; i < 3; i++) await log.append('node#node1', { actor: 'a', action: 'fragment.release', outcome: 'success' });
    expect(sent).toHaveLength(1);
    await log.append('node#node1', { actor: 'a', action: 'fragment.release', outcome: 'success' });
    expect(sent.at(-1)).toEqual({ witness: 'node2', length: 5 });
    now = 31_000;
    await log.append('node#node1', { actor: 'a', action: 'key.describe', outcome: 'success' });
    expect(sent.at(-1)).toEqual({ witness: 'node2', length: 6 });
    expect(degraded).toEqual([['node2', '!node3'], ['node2', '!node3'], ['node2', '!node3']]);
  });

  it('a registration no witness countersigned is retried on the next append', async () => {
    let up = false;
    const lengths: number[] = [];
    const log = new CheckpointingAuditLog(new MemoryLog(), {
      origin: 'node1',
      policy,
      sign: (s) => signStatement(kp.node1.privateKey, s),
      publish: async (cp) => {
        lengths.push(cp.checkpoint.length);
        return [{ witness: 'node2', ok: up }];
      },
    });
    await log.append('node#node1', { actor: 'a', action: 'x', outcome: 'success' });
    up = true;
    await log.append('node#node1', { actor: 'a', action: 'x', outcome: 'success' });
    await log.append('node#node1', { actor: 'a', action: 'x', outcome: 'success' });
    expect(lengths).toEqual([1, 2]);
  });

  it('after a membership change, checkpoints the head of every chain of its own again (a retired witness), and only its own', async () => {
    const inner = new MemoryLog();
    const other = chain(2, 'node#node2#zz', 'node2');
    const sent: { stream: string; length: number }[] = [];
    let witnesses = ['node1-only-witness'];
    const log = new CheckpointingAuditLog(inner, {
      origin: 'node1',
      policy,
      sign: (st) => signStatement(kp.node1.privateKey, st),
      publish: async (cp) => {
        sent.push({ stream: cp.checkpoint.stream, length: cp.checkpoint.length });
        return witnesses.map((w) => ({ witness: w, ok: true }));
      },
    });
    for (let i = 0; i < 3; i++) await log.append('node#node1', { actor: 'a', action: 'key.describe', outcome: 'success' });
    inner.records.push(...other);
    sent.length = 0;
    witnesses = ['node3', 'node4'];
    expect(await log.rewitness(1_000)).toEqual({ chains: 1, witnessed: 1 });
    expect(sent).toEqual([{ stream: 'node#node1#i1', length: 3 }]);
  });
});
