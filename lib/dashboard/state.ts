/**
 * What the dashboard shows, as one JSON document: node health, per-key fragment
 * availability and quorum margin, the latest operations, a security log and the
 * audit chain status. Built from the nodes' answers (through a Coordinator that signs
 * as the read-only `dashboard` signer) and from the audit table. Every field is
 * picked explicitly from public data: no share, key or token can reach the page.
 */
import { verifyAll, componentOf, type StreamReport } from '../audit/chain.js';
import { FedkmsError } from '../errors.js';
import type { AuditRecord } from '../ports.js';

export interface NodeReportLike {
  nodeId: string;
  status: string;
  latencyMs?: number;
  error?: string;
}

/** The parts of the Coordinator the dashboard reads (all read-only). */
export interface FederationReader {
  status(): Promise<{ threshold: number; total: number; nodesUp: number; quorum: boolean; nodes: (NodeReportLike & { healthy?: boolean; version?: string; keyCount?: number | null; storage?: string })[] }>;
  listKeys(): Promise<{ keys: { keyId: string; latestVersion: number; heldBy: string[] }[]; nodes: NodeReportLike[] }>;
  describeKey(keyId: string): Promise<{
    key: { keyId: string; version: number; type: string; state: string; createdAt: string; threshold: number; total: number; groupPublicKey: string };
    availability: { available: number; quorumMargin: number };
    nodes: NodeReportLike[];
  }>;
}

export interface AuditReader {
  readBounded(maxItems: number): Promise<{ records: AuditRecord[]; complete: boolean }>;
  /** Per component, the newest checkpoint its witnesses keep (lib/audit/checkpoint.ts lastCheckpoints). */
  checkpoints?(): Promise<{ component: string; stream: string; length: number; time: string; witnesses: string[] }[]>;
}

export interface DashboardDeps {
  federation: FederationReader;
  audit: AuditReader;
  threshold: number;
  nodeIds: string[];
  maxKeys?: number;
  maxAuditItems?: number;
  now?: () => Date;
}

export type NodeState = 'up' | 'degraded' | 'down';

export interface NodeView {
  nodeId: string;
  state: NodeState;
  status: string;
  reason?: string;
  latencyMs?: number;
  version?: string;
  keyCount?: number | null;
  lastSeen?: string;
  lastSeenSource?: 'status' | 'audit';
}

export interface KeyView {
  keyId: string;
  type?: string;
  threshold: number;
  total: number;
  version?: number;
  state?: string;
  createdAt?: string;
  groupPublicKey?: string;
  available: number;
  quorumMargin: number;
  /** null: unknown, because nodes that did not answer in time (busy or slow) could make the quorum. */
  usable: boolean | null;
  /** Nodes that did not answer in time (busy or slow): their fragments are neither counted nor written off. */
  silent: number;
  nodes: { nodeId: string; status: string }[];
  error?: string;
}

/** No answer in time is not a verdict on a node's fragment: load, not loss. */
const SILENT = new Set(['timeout', 'busy']);
const silentOf = (nodes: { status: string }[]) => nodes.filter((n) => SILENT.has(n.status)).length;

export interface EventView {
  time: string;
  component: string;
  action: string;
  keyId?: string;
  outcome: string;
  actor: string;
  reason?: string;
  usedNodes?: string[];
  nodes: { nodeId: string; status: string; latencyMs?: number }[];
}

export type SecurityKind = 'tamper' | 'auth' | 'replay' | 'denied' | 'audit';

export interface SecurityView {
  kind: SecurityKind;
  time: string;
  firstTime: string;
  count: number;
  component: string;
  nodeId?: string;
  keyId?: string;
  detail: string;
}

export interface DashboardState {
  generatedAt: string;
  federation: { threshold: number; total: number; nodesUp: number; quorum: boolean };
  nodes: NodeView[];
  keys: { ok: boolean; error?: string; truncated: boolean; items: KeyView[] };
  events: EventView[];
  security: SecurityView[];
  audit: {
    ok: boolean;
    error?: string;
    complete: boolean;
    records: number;
    verified?: boolean;
    components: { component: string; chains: number; records: number; ok: boolean }[];
    streams: Pick<StreamReport, 'stream' | 'records' | 'verifiedThrough' | 'ok' | 'firstBroken'>[];
    /** Per component: its last witnessed checkpoint, how old it is, and who countersigned it. */
    checkpoints?: { component: string; stream: string; length: number; time: string; ageS: number; witnesses: string[] }[];
  };
}

const TAMPER = new Set(['invalid_share', 'corrupted', 'inconsistent']);
const str = (v: unknown, max = 200): string | undefined => (typeof v === 'string' ? v.slice(0, max) : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** `node#node2#k3x9` → `node2`; undefined for other components. */
export const nodeOfStream = (stream: string): string | undefined => (stream.startsWith('node#') ? stream.split('#')[1] : undefined);

function reportsOf(details: Record<string, unknown> | undefined): { nodeId: string; status: string; latencyMs?: number; error?: string }[] {
  const nodes = details?.['nodes'];
  if (!Array.isArray(nodes)) return [];
  return nodes.slice(0, 64).flatMap((n) => {
    const nodeId = str((n as Record<string, unknown>)?.['nodeId'], 32);
    const status = str((n as Record<string, unknown>)?.['status'], 32);
    if (!nodeId || !status) return [];
    const latencyMs = num((n as Record<string, unknown>)['latencyMs']);
    const error = str((n as Record<string, unknown>)['error']);
    return [{ nodeId, status, ...(latencyMs !== undefined ? { latencyMs } : {}), ...(error ? { error } : {}) }];
  });
}

const byTimeDesc = (a: { time: string }, b: { time: string }) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0);

/** Operations worth showing: everything but node-internal steps and refused requests. */
export function eventsOf(records: AuditRecord[], limit = 30): EventView[] {
  return records
    // A request stopped because its client could not be checked (auth.unavailable) is a failed operation, not a security event.
    .filter((r) => !r.stream.startsWith('node#') && !r.stream.startsWith('dashboard') && (!r.action.startsWith('auth.') || r.action === 'auth.unavailable'))
    .sort(byTimeDesc)
    .slice(0, limit)
    .map((r) => {
      const d = r.details ?? {};
      const used = Array.isArray(d['usedNodes']) ? (d['usedNodes'] as unknown[]).flatMap((x) => (typeof x === 'string' ? [x.slice(0, 32)] : [])) : undefined;
      const reason = str(d['reason']);
      return {
        time: r.time,
        component: componentOf(r.stream),
        action: r.action,
        ...(r.keyId ? { keyId: r.keyId } : {}),
        outcome: r.outcome,
        actor: str(r.actor, 100) ?? '',
        ...(reason ? { reason } : {}),
        ...(used ? { usedNodes: used } : {}),
        nodes: reportsOf(d).map(({ nodeId, status, latencyMs }) => ({ nodeId, status, ...(latencyMs !== undefined ? { latencyMs } : {}) })),
      };
    });
}

const STATUS_TEXT: Record<string, string> = {
  invalid_share: 'served a share that fails the commitment check (lying node)',
  corrupted: 'reported its stored fragment failed the at-rest integrity check',
  inconsistent: 'served a public key package that disagrees with the quorum',
};

/** Tampering (naming the node), auth failures, replays, denials and fail-closed audit errors, grouped. */
export function securityOf(records: AuditRecord[], limit = 50): SecurityView[] {
  const raw: Omit<SecurityView, 'count' | 'firstTime'>[] = [];
  for (const r of records) {
    const component = componentOf(r.stream);
    const streamNode = nodeOfStream(r.stream);
    const d = r.details ?? {};
    const base = { time: r.time, component, ...(r.keyId ? { keyId: r.keyId } : {}) };
    if (r.action === FINDING_ACTION) {
      const nodeId = str(d['nodeId'], 32);
      const status = str(d['status'], 32) ?? '';
      if (nodeId && STATUS_TEXT[status]) raw.push({ ...base, kind: 'tamper', nodeId, detail: `${nodeId} ${STATUS_TEXT[status]} (found by ${component})` });
      continue;
    }
    if (r.action === 'fragment.integrity') {
      raw.push({ ...base, kind: 'tamper', ...(streamNode ? { nodeId: streamNode } : {}), detail: `stored fragment failed the at-rest integrity check (detected by ${streamNode ?? 'the node'} itself)` });
    } else if (r.action === 'fragment.store' && r.outcome === 'failure' && /commitment/.test(str(d['reason']) ?? '')) {
      raw.push({ ...base, kind: 'tamper', ...(streamNode ? { nodeId: streamNode } : {}), detail: 'refused a dealt share that fails the commitment check' });
    } else if (r.action.startsWith('auth.') && r.action !== 'auth.unavailable') {
      const kind: SecurityKind = r.action === 'auth.replay' ? 'replay' : r.action === 'auth.denied' ? 'denied' : 'auth';
      const what = [str(d['code'], 40), str(d['method'], 10), str(d['path'], 120)].filter(Boolean).join(' ');
      const from = str(d['sourceIp'], 64);
      raw.push({ ...base, kind, ...(streamNode ? { nodeId: streamNode } : {}), detail: `${what}${from ? ` from ${from}` : ''} (refused by ${streamNode ?? component})` });
    } else if (r.outcome === 'denied') {
      raw.push({ ...base, kind: 'denied', ...(streamNode ? { nodeId: streamNode } : {}), detail: `${r.action} denied${str(d['reason']) ? `: ${str(d['reason'])}` : ''}` });
    }
    if (/audit/i.test(str(d['reason']) ?? '')) {
      raw.push({ ...base, kind: 'audit', detail: `${r.action} refused: audit log unavailable (fail closed)` });
    }
    for (const n of reportsOf(d)) {
      if (TAMPER.has(n.status)) {
        raw.push({ ...base, kind: 'tamper', nodeId: n.nodeId, detail: `${n.nodeId} ${STATUS_TEXT[n.status]} during ${r.action} (detected by ${component})` });
      } else if (/audit_unavailable/.test(n.error ?? '')) {
        raw.push({ ...base, kind: 'audit', nodeId: n.nodeId, detail: `${n.nodeId} refused to release during ${r.action}: its audit log was unavailable (fail closed)` });
      }
    }
  }
  const groups = new Map<string, SecurityView>();
  for (const e of raw) {
    const k = [e.kind, e.nodeId ?? '', e.keyId ?? '', e.detail].join('|');
    const g = groups.get(k);
    if (!g) groups.set(k, { ...e, firstTime: e.time, count: 1 });
    else {
      g.count += 1;
      if (e.time > g.time) g.time = e.time;
      if (e.time < g.firstTime) g.firstTime = e.time;
    }
  }
  return [...groups.values()].sort(byTimeDesc).slice(0, limit);
}

/** Run `fn` over `items`, at most `width` at a time, keeping order. */
async function pool<T, R>(items: T[], width: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

async function keyView(f: FederationReader, keyId: string, threshold: number, total: number): Promise<KeyView | undefined> {
  try {
    const d = await f.describeKey(keyId);
    return {
      keyId,
      type: d.key.type,
      threshold: d.key.threshold,
      total: d.key.total,
      version: d.key.version,
      state: d.key.state,
      createdAt: d.key.createdAt,
      groupPublicKey: d.key.groupPublicKey,
      available: d.availability.available,
      quorumMargin: d.availability.quorumMargin,
      usable: d.availability.quorumMargin >= 0,
      silent: silentOf(d.nodes),
      nodes: d.nodes.map((n) => ({ nodeId: n.nodeId, status: n.status })),
    };
  } catch (e) {
    if (e instanceof FedkmsError && e.code === 'key_not_found') return undefined;
    const nodes = e instanceof FedkmsError ? reportsOf(e.details) : [];
    const available = nodes.filter((n) => n.status === 'valid').length;
    const silent = silentOf(nodes);
    return {
      keyId,
      threshold,
      total,
      available,
      quorumMargin: available - threshold,
      // Short of a quorum only because some nodes were slow or busy: unknown, not unusable.
      usable: available + silent >= threshold ? null : false,
      silent,
      nodes: nodes.map((n) => ({ nodeId: n.nodeId, status: n.status })),
      error: e instanceof FedkmsError ? e.code : 'internal_error',
    };
  }
}

export async function dashboardState(deps: DashboardDeps): Promise<DashboardState> {
  return (await lookAtFederation(deps)).state;
}

/** The dashboard state and the audit records it was built from (the caller may act on what the look found). */
export async function lookAtFederation(deps: DashboardDeps): Promise<{ state: DashboardState; records: AuditRecord[] }> {
  const now = (deps.now ?? (() => new Date()))();
  const maxKeys = deps.maxKeys ?? 25;
  const [status, listing, audit] = await Promise.all([
    deps.federation.status(),
    deps.federation.listKeys().then(
      (l) => ({ ok: true as const, l }),
      (e: unknown) => ({ ok: false as const, error: e instanceof FedkmsError ? e.code : 'internal_error' }),
    ),
    deps.audit.readBounded(deps.maxAuditItems ?? 20_000).then(
      (a) => ({ ok: true as const, ...a }),
      (e: unknown) => ({ ok: false as const, error: e instanceof FedkmsError ? e.code : 'internal_error' }),
    ),
  ]);
  // After the reads above, not alongside them: each node serves few requests at once (its reserved concurrency).
  const checkpoints = deps.audit.checkpoints ? await deps.audit.checkpoints().catch(() => undefined) : undefined;
  const records = audit.ok ? audit.records : [];

  const lastAudited = new Map<string, string>();
  for (const r of records) {
    const n = nodeOfStream(r.stream);
    if (n && (lastAudited.get(n) ?? '') < r.time) lastAudited.set(n, r.time);
  }
  const nodes: NodeView[] = status.nodes.map((n) => {
    const answered = n.status === 'valid';
    const state: NodeState = answered ? (n.healthy ? 'up' : 'degraded') : 'down';
    const seen = answered ? now.toISOString() : lastAudited.get(n.nodeId);
    return {
      nodeId: n.nodeId,
      state,
      status: n.status,
      ...(answered ? (n.healthy ? {} : { reason: `storage ${n.storage ?? 'unavailable'}` }) : { reason: str(n.error) ?? n.status }),
      ...(n.latencyMs !== undefined ? { latencyMs: n.latencyMs } : {}),
      ...(answered && n.version ? { version: str(n.version, 40) } : {}),
      ...(answered && n.keyCount !== undefined ? { keyCount: n.keyCount } : {}),
      ...(seen ? { lastSeen: seen, lastSeenSource: answered ? ('status' as const) : ('audit' as const) } : {}),
    };
  });

  const total = deps.nodeIds.length;
  const keyIds = listing.ok ? listing.l.keys.map((k) => k.keyId) : [];
  const described = await pool(keyIds.slice(0, maxKeys), 4, (id) => keyView(deps.federation, id, deps.threshold, total));
  const keys = {
    ok: listing.ok,
    ...(listing.ok ? {} : { error: listing.error }),
    truncated: keyIds.length > maxKeys,
    items: described.filter((k): k is KeyView => k !== undefined),
  };

  let auditView: DashboardState['audit'];
  if (!audit.ok) {
    auditView = { ok: false, error: audit.error, complete: false, records: 0, components: [], streams: [] };
  } else {
    const v = verifyAll(records);
    const streams = [...v.streams].sort((a, b) => Number(a.ok) - Number(b.ok) || a.stream.localeCompare(b.stream)).slice(0, 200);
    auditView = {
      ok: true,
      complete: audit.complete,
      records: records.length,
      // A partial scan cannot vouch for the chains: say so rather than show green.
      ...(audit.complete ? { verified: v.ok } : {}),
      components: v.components,
      streams: streams.map((s) => ({ stream: s.stream, records: s.records, verifiedThrough: s.verifiedThrough, ok: s.ok, ...(s.firstBroken ? { firstBroken: s.firstBroken } : {}) })),
      ...(checkpoints ? { checkpoints: checkpoints.slice(0, 100).map((c) => ({ ...c, ageS: Math.max(0, Math.round((now.getTime() - Date.parse(c.time)) / 1000)) })) } : {}),
    };
  }

  const state: DashboardState = {
    generatedAt: now.toISOString(),
    federation: { threshold: status.threshold, total: status.total, nodesUp: status.nodesUp, quorum: status.quorum },
    nodes,
    keys,
    events: eventsOf(records),
    security: securityOf(records),
    audit: auditView,
  };
  return { state, records };
}

/**
 * Findings: what a look found about one node's fragment of one key. A look is not an
 * operation, so it writes nothing by itself; a finding is recorded once when it appears
 * and once each time it changes (tampered, repaired, tampered differently), never per poll.
 */
export const FINDING_ACTION = 'fragment.finding';

export interface Finding {
  nodeId: string;
  keyId: string;
  /** `corrupted`, `invalid_share`, `inconsistent`, or `clean` when the node's fragment answered well again. */
  status: string;
  version?: number;
}

export interface FindingChange {
  finding: Finding;
  /** The last finding recorded for this node and key, if any: the change is from its status. */
  previous?: AuditRecord;
}

/** The last finding record per `node|key`, from the records at hand (latest by time, then by chain position). */
function lastFindings(records: AuditRecord[]): Map<string, AuditRecord> {
  const last = new Map<string, AuditRecord>();
  for (const r of records) {
    if (r.action !== FINDING_ACTION || !r.keyId) continue;
    const nodeId = str(r.details?.['nodeId'], 32);
    if (!nodeId) continue;
    const k = `${nodeId}|${r.keyId}`;
    const prev = last.get(k);
    if (!prev || r.time > prev.time || (r.time === prev.time && r.seq > prev.seq)) last.set(k, r);
  }
  return last;
}

/**
 * The findings of this look that differ from the last one recorded for their node and key.
 * A node that did not answer says nothing either way; a clean answer counts only as the
 * end of an earlier finding (no record for a fragment that was never in doubt).
 */
export function changedFindings(keys: KeyView[], records: AuditRecord[]): FindingChange[] {
  const last = lastFindings(records);
  const out: FindingChange[] = [];
  for (const k of keys) {
    for (const n of k.nodes) {
      const status = TAMPER.has(n.status) ? n.status : n.status === 'valid' ? 'clean' : undefined;
      if (!status) continue;
      const previous = last.get(`${n.nodeId}|${k.keyId}`);
      const before = str(previous?.details?.['status'], 32) ?? 'clean';
      if (status === before) continue;
      out.push({ finding: { nodeId: n.nodeId, keyId: k.keyId, status, ...(k.version !== undefined ? { version: k.version } : {}) }, ...(previous ? { previous } : {}) });
    }
  }
  return out;
}
