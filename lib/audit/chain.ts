/** The audit hash chain, as pure functions: building the next link and checking a stream. */
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import type { AuditEntry, AuditRecord } from '../ports.js';

export const GENESIS_HASH = '0'.repeat(64);

/** hash = SHA-256 over the canonical JSON of the record without its own hash and signature (prevHash included). */
export function recordHash(r: Omit<AuditRecord, 'hash' | 'sig'> & { sig?: string }): string {
  const { sig: _sig, ...body } = r;
  return sha256Hex(canonicalJson(body));
}

/** What a record's writer signs with its identity key: the record's hash, which covers its stream, position and predecessor. */
export const recordSigStatement = (hash: string) => ({ purpose: 'fedkms/audit-record/v1', hash });

/** Signs a record hash with the writing component's identity key (base64 Ed25519). */
export type RecordSigner = (hash: string) => string;

export function nextRecord(stream: string, head: AuditRecord | undefined, entry: AuditEntry, time: Date, sign?: RecordSigner): AuditRecord {
  const body: Omit<AuditRecord, 'hash'> = {
    stream,
    seq: head ? head.seq + 1 : 1,
    time: time.toISOString(),
    prevHash: head ? head.hash : GENESIS_HASH,
    actor: entry.actor,
    action: entry.action,
    outcome: entry.outcome,
    ...(entry.keyId !== undefined ? { keyId: entry.keyId } : {}),
    details: entry.details ?? {},
  };
  const hash = recordHash(body);
  return { ...body, hash, ...(sign ? { sig: sign(hash) } : {}) };
}

export interface StreamReport {
  stream: string;
  records: number;
  verifiedThrough: number;
  ok: boolean;
  firstBroken?: { seq: number; reason: string };
}

/** Recompute one stream's chain; report the first broken link. */
export function verifyStream(stream: string, records: AuditRecord[]): StreamReport {
  const sorted = [...records].sort((a, b) => a.seq - b.seq);
  let prev = GENESIS_HASH;
  let expectSeq = 1;
  for (const r of sorted) {
    const { hash, sig: _sig, ...body } = r;
    const reason =
      r.seq !== expectSeq ? `expected seq ${expectSeq}` :
      r.prevHash !== prev ? 'prevHash does not match the previous record' :
      recordHash(body) !== hash ? 'hash does not match the record contents' : undefined;
    if (reason) return { stream, records: sorted.length, verifiedThrough: expectSeq - 1, ok: false, firstBroken: { seq: r.seq, reason } };
    prev = hash;
    expectSeq += 1;
  }
  return { stream, records: sorted.length, verifiedThrough: sorted.length, ok: true };
}

/** The component a chain belongs to: its stream name without the instance suffix. */
export const componentOf = (stream: string): string => stream.replace(/#[^#]*$/, '');

export interface ComponentReport {
  component: string;
  chains: number;
  records: number;
  ok: boolean;
}

export function verifyAll(records: AuditRecord[]): { ok: boolean; components: ComponentReport[]; streams: StreamReport[] } {
  const byStream = new Map<string, AuditRecord[]>();
  for (const r of records) byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), r]);
  const streams = [...byStream.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([s, rs]) => verifyStream(s, rs));
  return { ok: streams.every((s) => s.ok), components: componentsOf(streams), streams };
}

/** Per-component totals of chain reports (also of reports gathered from several operators). */
export function componentsOf(streams: StreamReport[]): ComponentReport[] {
  const components = new Map<string, ComponentReport>();
  for (const s of streams) {
    const name = componentOf(s.stream);
    const c = components.get(name) ?? { component: name, chains: 0, records: 0, ok: true };
    c.chains += 1;
    c.records += s.records;
    c.ok &&= s.ok;
    components.set(name, c);
  }
  return [...components.values()];
}
