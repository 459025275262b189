/**
 * An audit log that checkpoints its chains with witnesses (lib/audit/checkpoint.ts), inside the
 * request that appends: when a chain starts (its registration), when its unwitnessed tail holds
 * a batch of releasing records, or when its last witnessed checkpoint is too old. Publishing has
 * a small bounded budget; a witness that is down or slow never blocks the operation. How many
 * witnesses countersigned a checkpoint is recorded where it cannot be inflated: in the witnesses'
 * own storage (verification lists them per chain), and logged here; it is not an audit record,
 * so a witness outage cannot change what a chain counts. A chain no witness countersigned yet
 * is retried on its next append.
 */
import type { AuditEntry, AuditLog, AuditRecord } from '../ports.js';
import { checkpointStatement, isReleasing, originOfStream, shouldCheckpoint, type ChainState, type Checkpoint, type CheckpointPolicy, type SignedCheckpoint } from './checkpoint.js';

/** How long a membership change may spend checkpointing a component's chains again (`rewitness`). */
export const REWITNESS_BUDGET_MS = 5_000;

export interface WitnessAnswer {
  witness: string;
  ok: boolean;
  error?: string;
}

export interface CheckpointingDeps {
  origin: string;
  policy: CheckpointPolicy;
  /** Sign a statement with the origin's identity key. */
  sign: (statement: unknown) => string;
  /** Send the signed checkpoint to every witness, each within the budget; never throws. */
  publish: (cp: SignedCheckpoint) => Promise<WitnessAnswer[]>;
  /** A checkpoint fewer witnesses than asked countersigned (for the log). */
  onDegraded?: (cp: Checkpoint, witnesses: string[], failed: WitnessAnswer[]) => void;
  now?: () => number;
}

export class CheckpointingAuditLog<L extends AuditLog> implements AuditLog {
  private readonly state = new Map<string, ChainState>();

  constructor(readonly inner: L, private readonly d: CheckpointingDeps) {}

  async append(stream: string, entry: AuditEntry): Promise<AuditRecord> {
    const record = await this.inner.append(stream, entry);
    await this.after(record);
    return record;
  }

  readAll(): Promise<AuditRecord[]> {
    return this.inner.readAll();
  }

  /**
   * Checkpoint the head of every chain of this component again, with the witnesses of the
   * membership as it is now. A membership change can retire the only witness of a chain (an
   * instance that registered while the other members were down), and a retired member's copies
   * are no longer read: without this, such a chain would verify as `unregistered`. Witnesses
   * refuse a head shorter than one they hold, so this cannot bless a truncation they saw.
   * Best effort within `budgetMs`; never throws.
   */
  async rewitness(budgetMs: number): Promise<{ chains: number; witnessed: number }> {
    const deadline = (this.d.now ?? Date.now)() + budgetMs;
    let heads: AuditRecord[];
    try {
      const byStream = new Map<string, AuditRecord>();
      for (const r of await this.inner.readAll()) {
        if (originOfStream(r.stream) !== this.d.origin) continue;
        const h = byStream.get(r.stream);
        if (!h || r.seq > h.seq) byStream.set(r.stream, r);
      }
      heads = [...byStream.values()];
    } catch {
      return { chains: 0, witnessed: 0 };
    }
    let witnessed = 0;
    for (let i = 0; i < heads.length && (this.d.now ?? Date.now)() < deadline; i += 4) {
      await Promise.all(heads.slice(i, i + 4).map(async (head) => {
        const now = (this.d.now ?? Date.now)();
        const checkpoint: Checkpoint = { origin: this.d.origin, stream: head.stream, length: head.seq, head: head.hash, time: new Date(now).toISOString() };
        try {
          const answers = await this.d.publish({ checkpoint, signature: this.d.sign(checkpointStatement(checkpoint)) });
          if (answers.some((a) => a.ok)) {
            witnessed += 1;
            const s = this.state.get(head.stream);
            if (!s || s.witnessedLength <= head.seq) this.state.set(head.stream, { witnessedLength: head.seq, witnessedAt: now, releasesSince: 0 });
          }
        } catch {
          // Best effort: the next append of a live chain checkpoints it anyway.
        }
      }));
    }
    return { chains: heads.length, witnessed };
  }

  /** Checkpoint `record`'s chain when the policy says so. Never throws: the record is written. */
  private async after(record: AuditRecord): Promise<void> {
    const now = (this.d.now ?? Date.now)();
    let s = this.state.get(record.stream);
    // A chain this instance did not start (its head was re-read) is treated as unregistered here: checkpoint it.
    if (s && isReleasing(record)) s.releasesSince += 1;
    if (!shouldCheckpoint(s, record, this.d.policy, now)) return;
    try {
      const checkpoint: Checkpoint = { origin: this.d.origin, stream: record.stream, length: record.seq, head: record.hash, time: new Date(now).toISOString() };
      const answers = await this.d.publish({ checkpoint, signature: this.d.sign(checkpointStatement(checkpoint)) });
      const ok = answers.filter((a) => a.ok).map((a) => a.witness);
      if (ok.length > 0) {
        s = { witnessedLength: record.seq, witnessedAt: now, releasesSince: 0 };
        this.state.set(record.stream, s);
      } else if (!s) {
        this.state.set(record.stream, { witnessedLength: 0, witnessedAt: 0, releasesSince: isReleasing(record) ? 1 : 0 });
      }
      if (ok.length < answers.length || answers.length === 0) this.d.onDegraded?.(checkpoint, ok, answers.filter((a) => !a.ok));
    } catch {
      // Checkpointing is best effort: the record stands, and the next append tries again.
    }
  }
}

/**
 * Publish to every witness at once, each within `timeoutMs`: what a component hands to
 * CheckpointingAuditLog. `call` sends one signed request (the caller's service signature).
 */
export function publisher<W extends { id: string }>(
  witnesses: () => Promise<W[]>,
  call: (w: W, cp: SignedCheckpoint, signal: AbortSignal) => Promise<unknown>,
  timeoutMs: number,
): (cp: SignedCheckpoint) => Promise<WitnessAnswer[]> {
  return async (cp) => {
    let list: W[];
    try {
      list = await witnesses();
    } catch {
      return [];
    }
    return Promise.all(
      list.map(async (w) => {
        try {
          await call(w, cp, AbortSignal.timeout(timeoutMs));
          return { witness: w.id, ok: true };
        } catch (e) {
          return { witness: w.id, ok: false, error: String((e as { code?: unknown }).code ?? (e as { name?: unknown }).name ?? 'failed') };
        }
      }),
    );
  };
}

/** The log line of a checkpoint with fewer witnesses than asked: names and error codes only. */
export const logDegraded = (cp: Checkpoint, witnesses: string[], failed: WitnessAnswer[]) =>
  console.warn(JSON.stringify({ level: 'WARN', message: 'audit checkpoint with fewer witnesses', origin: cp.origin, stream: cp.stream, length: cp.length, witnesses, failed: failed.map((f) => ({ witness: f.witness, error: (f.error ?? '').slice(0, 64) })) }));
