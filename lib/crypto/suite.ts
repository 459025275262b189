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

/** Is this hex a point FROST may use: canonical, on the curve, in the prime-order subgroup, not of small order? */
export type PointCheck = (hex: string) => boolean;

let pointCheck: Promise<PointCheck> | undefined;
const POINT_HEX = /^[0-9a-fA-F]{64}$/;

/**
 * The same verdict as frost.ts `isValidPublicPoint` (test/unit/fast-frost.test.ts), from
 * libsodium: about 40 µs a point instead of noble's 1-2 ms subgroup check, which made
 * checking a signing request's commitments cost milliseconds. Loaded lazily, like the suite.
 */
export function publicPointCheck(): Promise<PointCheck> {
  pointCheck ??= import('./sodium-ed25519.js').then(({ nativeEd25519 }) => (hex: string) => POINT_HEX.test(hex) && nativeEd25519.isValidPoint(Buffer.from(hex, 'hex')));
  return pointCheck;
}
