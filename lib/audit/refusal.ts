/**
 * Refused requests in the audit trail: authentication failures, replays and denials.
 * Best effort by design: the refusal already stands, and a failing audit write must
 * never turn a 401 or 403 into something else, so errors here are swallowed.
 */
import { FedkmsError } from '../errors.js';
import { KEY_ID_PATTERN } from '../key-id.js';
import type { AuditLog } from '../ports.js';

export interface RefusalContext {
  method: string;
  path: string;
  sourceIp?: string | undefined;
  /** The authenticated signer, when the refusal is an authorization denial. */
  signer?: string | undefined;
  /** The key the request named; by default taken from a `/keys/{keyId}/...` path. */
  keyId?: string | undefined;
  /**
   * Also record failures that are not refusals (a 503 when the check itself could not be
   * made): for a gate every request passes, where whatever stops a request is all the
   * trail will ever hear of it.
   */
  everyFailure?: boolean;
}

/** The audit action for a refusal: `auth.replay`, `auth.denied` (403), `auth.failure` (401), or `auth.unavailable` (the check could not be made). */
export function refusalAction(err: FedkmsError): string {
  if (!isRefusal(err)) return 'auth.unavailable';
  return err.code === 'request_replayed' ? 'auth.replay' : err.status === 403 ? 'auth.denied' : 'auth.failure';
}

export const isRefusal = (err: unknown): err is FedkmsError => err instanceof FedkmsError && (err.status === 401 || err.status === 403);

/** The key id of a `/keys/{keyId}` or `/keys/{keyId}/...` path, when it is a well-formed one. */
export function keyIdOfPath(path: string): string | undefined {
  const m = /^\/keys\/([^/?#]+)(?:[/?#]|$)/.exec(path);
  return m && KEY_ID_PATTERN.test(m[1]!) ? m[1] : undefined;
}

/**
 * Refusals are aggregated, so a flood of them writes a bounded number of records. Each
 * (stream, action, code, method, path, actor, source, key) has a window of
 * REFUSAL_WINDOW_MS per function instance: its first refusal is written at once, as before,
 * the ones after it in the window are only counted, and their count is written as one record
 * (`details.count`, `details.aggregated`, `details.windowStart`) when the window ends: on the
 * next refusal after it, or by a timer at its end. At most REFUSAL_KEYS_MAX distinct tuples
 * are tracked per window; past that, refusals share one overflow tuple per stream and
 * action (its path and source are those of the first). N refusals thus write
 * O(windows × tuples) records, not N. Successful, authenticated actions are not refusals
 * and are still audited one by one.
 */
export const REFUSAL_WINDOW_MS = 60_000;
export const REFUSAL_KEYS_MAX = 100;

interface Pending {
  audit: AuditLog;
  stream: string;
  entry: Parameters<AuditLog['append']>[1];
  windowStart: number;
  /** Refusals counted since the window's first (not yet written). */
  suppressed: number;
}

/** Open windows, per audit log (each function runtime has its own). */
const logs = new Map<AuditLog, Map<string, Pending>>();
const allWindows = () => [...logs.values()].flatMap((w) => [...w.entries()].map(([k, p]) => ({ w, k, p })));
let timer: ReturnType<typeof setTimeout> | undefined;

const append = (p: Pick<Pending, 'audit' | 'stream' | 'entry'>, extra: Record<string, unknown>) =>
  p.audit.append(p.stream, { ...p.entry, details: { ...p.entry.details, ...extra } }).then(
    () => undefined,
    () => undefined,
  );

/** Write the count of every window that has ended, and forget those windows. */
export async function flushRefusals(now = Date.now(), all = false): Promise<void> {
  const due: Pending[] = [];
  for (const { w, k, p } of allWindows()) {
    if (!all && now - p.windowStart < REFUSAL_WINDOW_MS) continue;
    w.delete(k);
    if (p.suppressed > 0) due.push(p);
  }
  await Promise.all(due.map((p) => append(p, { count: p.suppressed, aggregated: true, windowStart: new Date(p.windowStart).toISOString() })));
}

function scheduleFlush(): void {
  const open = allWindows();
  if (timer || open.length === 0) return;
  const first = Math.min(...open.map((x) => x.p.windowStart));
  timer = setTimeout(() => {
    timer = undefined;
    void flushRefusals().then(scheduleFlush);
  }, Math.max(0, first + REFUSAL_WINDOW_MS - Date.now()) + 10);
  timer.unref?.();
}

export async function recordRefusal(audit: AuditLog, stream: string, err: unknown, ctx: RefusalContext): Promise<void> {
  if (!isRefusal(err) && !ctx.everyFailure) return;
  const e = err instanceof FedkmsError ? err : new FedkmsError('internal_error', 500, 'internal error');
  const details: Record<string, unknown> = { code: e.code, method: ctx.method.slice(0, 10), path: ctx.path.slice(0, 200) };
  if (ctx.sourceIp) details['sourceIp'] = ctx.sourceIp.slice(0, 64);
  // A check that could not be made names the nodes that failed it (statuses only).
  const nodes = e.details?.['nodes'];
  if (!isRefusal(e) && Array.isArray(nodes)) details['nodes'] = nodes.slice(0, 64);
  const keyId = ctx.keyId ?? keyIdOfPath(ctx.path);
  const entry = {
    actor: ctx.signer ? (ctx.signer.includes(':') ? ctx.signer : `signer:${ctx.signer}`) : 'unauthenticated',
    action: refusalAction(e),
    ...(keyId ? { keyId } : {}),
    outcome: isRefusal(e) ? ('denied' as const) : ('failure' as const),
    details,
  };
  const now = Date.now();
  await flushRefusals(now);
  const windows = logs.get(audit) ?? new Map<string, Pending>();
  logs.set(audit, windows);
  let key = JSON.stringify([stream, entry.action, e.code, details['method'], details['path'], entry.actor, details['sourceIp'] ?? null, keyId ?? null]);
  if (!windows.has(key) && windows.size >= REFUSAL_KEYS_MAX) key = JSON.stringify([stream, entry.action, 'overflow']);
  const open = windows.get(key);
  if (open) {
    open.suppressed++;
    return;
  }
  windows.set(key, { audit, stream, entry, windowStart: now, suppressed: 0 });
  scheduleFlush();
  // The first refusal of a window is written as before; only the window's count is new.
  await append({ audit, stream, entry }, {});
}
