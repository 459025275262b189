/**
 * Refused requests in the audit trail: authentication failures, replays and denials.
 * Best effort by design: the refusal already stands, and a failing audit write must
 * never turn a 401 or 403 into something else, so errors here are swallowed.
 */
import { FedkmsError } from '../errors.js';
import type { AuditLog } from '../ports.js';

export interface RefusalContext {
  method: string;
  path: string;
  sourceIp?: string | undefined;
  /** The authenticated signer, when the refusal is an authorization denial. */
  signer?: string | undefined;
}

/** The audit action for a refusal: `auth.replay`, `auth.denied` (403) or `auth.failure` (401). */
export function refusalAction(err: FedkmsError): string {
  return err.code === 'request_replayed' ? 'auth.replay' : err.status === 403 ? 'auth.denied' : 'auth.failure';
}

export const isRefusal = (err: unknown): err is FedkmsError => err instanceof FedkmsError && (err.status === 401 || err.status === 403);

export async function recordRefusal(audit: AuditLog, stream: string, err: unknown, ctx: RefusalContext): Promise<void> {
  if (!isRefusal(err)) return;
  const details: Record<string, unknown> = { code: err.code, method: ctx.method.slice(0, 10), path: ctx.path.slice(0, 200) };
  if (ctx.sourceIp) details['sourceIp'] = ctx.sourceIp.slice(0, 64);
  await audit
    .append(stream, { actor: ctx.signer ? (ctx.signer.includes(':') ? ctx.signer : `signer:${ctx.signer}`) : 'unauthenticated', action: refusalAction(err), outcome: 'denied', details })
    .then(
      () => undefined,
      () => undefined,
    );
}
