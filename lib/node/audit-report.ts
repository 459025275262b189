/**
 * A node's answer to "is your audit trail intact?": its own chains, recomputed where they are
 * stored, with each chain's head hash, signed with the node's identity key. The coordinator
 * gathers one from every member and checks each signature against the membership document,
 * so it cannot misreport a node's trail without the node's key.
 */
import { verifyAll } from '../audit/chain.js';
import type { AuditRecord } from '../ports.js';

export const auditReportStatement = (r: Omit<NodeAuditReport, 'signature'>) => ({ purpose: 'fedkms/audit-report/v1', ...r });

export interface NodeAuditReport {
  nodeId: string;
  time: string;
  ok: boolean;
  records: number;
  /** Every chain: its length, how far it verifies, and the hash of its newest record. */
  streams: { stream: string; records: number; verifiedThrough: number; ok: boolean; head: string | null; firstBroken?: { seq: number; reason: string } }[];
  signature: string;
}

export function auditReport(nodeId: string, records: AuditRecord[], sign: (statement: unknown) => string, now = new Date()): NodeAuditReport {
  const v = verifyAll(records);
  const heads = new Map<string, AuditRecord>();
  for (const r of records) if ((heads.get(r.stream)?.seq ?? 0) < r.seq) heads.set(r.stream, r);
  const body = {
    nodeId,
    time: now.toISOString(),
    ok: v.ok,
    records: records.length,
    streams: v.streams.map((s) => ({ ...s, head: heads.get(s.stream)?.hash ?? null })),
  };
  return { ...body, signature: sign(auditReportStatement(body)) };
}
