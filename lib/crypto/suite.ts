/**
 * The FROST suite the signing paths use: the libsodium-backed fast suite (same
 * protocol code as noble's, see fast-frost.ts), loaded lazily so that functions and
 * requests that never sign do not pay for the native module at cold start.
 */
import type { FrostSuite } from './fast-frost.js';

let loaded: Promise<FrostSuite> | undefined;

export function signingSuite(): Promise<FrostSuite> {
  loaded ??= import('./fast-frost.js').then((m) => m.fastFrost);
  return loaded;
}
