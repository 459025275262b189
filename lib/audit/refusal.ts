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

export async function recordRefusal(audit: AuditLog, stream: string, err: unknown, ctx: RefusalContext): Promise<void> {
  if (!isRefusal(err) && !ctx.everyFailure) return;
  const e = err instanceof FedkmsError ? err : new FedkmsError('internal_error', 500, 'internal error');
  const details: Record<string, unknown> = { code: e.code, method: ctx.method.slice(0, 10), path: ctx.path.slice(0, 200) };
  if (ctx.sourceIp) details['sourceIp'] = ctx.sourceIp.slice(0, 64);
  // A check that could not be made names the nodes that failed it (statuses only).
  const nodes = e.details?.['nodes'];
  if (!isRefusal(e) && Array.isArray(nodes)) details['nodes'] = nodes.slice(0, 64);
  const keyId = ctx.keyId ?? keyIdOfPath(ctx.path);
  await audit
    .append(stream, {
      actor: ctx.signer ? (ctx.signer.includes(':') ? ctx.signer : `signer:${ctx.signer}`) : 'unauthenticated',
      action: refusalAction(e),
      ...(keyId ? { keyId } : {}),
      outcome: isRefusal(e) ? 'denied' : 'failure',
      details,
    })
    .then(
      () => undefined,
      () => undefined,
    );
}
