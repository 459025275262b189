/**
 * Dashboard sign-in: the dashboard's own viewer token (not the API token: a viewer
 * cannot create or reconstruct keys), sent either as the password of HTTP Basic
 * authentication, which every browser can do (any user name), or as a bearer token
 * (scripts). Compared in constant time over digests, whatever the lengths.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '../errors.js';

export const DASHBOARD_REALM = 'Basic realm="fedkms dashboard", charset="UTF-8"';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The presented credential, or undefined when none was sent. */
export function presentedCredential(headers: Record<string, string>): string | undefined {
  const h = headers['authorization'] ?? '';
  const bearer = /^Bearer\s+(\S+)$/i.exec(h);
  if (bearer) return bearer[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(h);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}

/** Returns the actor recorded for the session; throws 401 auth_missing / auth_invalid. */
export function requireViewer(headers: Record<string, string>, viewerToken: string): string {
  const given = presentedCredential(headers);
  if (given === undefined || given === '') throw new UnauthorizedError('auth_missing', 'sign in with the dashboard viewer token');
  if (!timingSafeEqual(digest(given), digest(viewerToken))) throw new UnauthorizedError('auth_invalid', 'invalid dashboard credentials');
  return 'viewer:dashboard-token';
}
