/** Client authentication baseline: a bearer token from configuration, compared in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '../errors.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Returns the actor name recorded in the audit trail. */
export function requireBearer(headers: Record<string, string>, token: string): string {
  const m = /^Bearer\s+(\S+)$/i.exec(headers['authorization'] ?? '');
  if (!m) throw new UnauthorizedError('auth_missing', 'missing bearer token');
  // Hash both sides first so the comparison is constant time whatever the lengths.
  if (!timingSafeEqual(digest(m[1]!), digest(token))) throw new UnauthorizedError('auth_invalid', 'invalid bearer token');
  return 'client:api-token';
}
