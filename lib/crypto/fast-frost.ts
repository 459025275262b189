/**
 * FROST(Ed25519, SHA-512) (RFC 9591) with noble's protocol code and libsodium's group
 * operations: noble's createFROST with exactly the options of noble's ed25519_FROST, over
 * FastPoint (fast-point.ts). A drop-in for `ed25519_FROST`: same methods, same wire
 * formats, same rejections. sodium-native loads synchronously, so importing this module
 * is all the set-up there is; import it lazily (`await import(...)`) where signing or
 * share checks happen, to keep other functions' cold start small.
 */
import { createFROST } from '@noble/curves/abstract/frost.js';
import type { ed25519_FROST } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { createFastPoint, type FastPoint } from './fast-point.js';
import { nativeEd25519, type Ed25519Ops } from './sodium-ed25519.js';

/** Distinct valid point encodings remembered (~200 B each): a few signing sessions' worth of keys and commitments. */
export const PARSE_CACHE_SIZE = 1024;

export type FrostSuite = typeof ed25519_FROST;

/** The suite over a given libsodium backend (the native one in production; others for measurement). */
export function createFastFrost(ops: Ed25519Ops, parseCacheSize = PARSE_CACHE_SIZE) {
  const Point = createFastPoint(ops, { parseCacheSize });
  const suite: FrostSuite = createFROST<FastPoint>({
    name: 'FROST-ED25519-SHA512-v1',
    Point,
    // As noble's ed25519 suite; with known points both checks are free.
    validatePoint: (p) => {
      p.assertValidity();
      if (!p.isTorsionFree()) throw new Error('bad point: not torsion-free');
    },
    hash: sha512,
    // RFC 9591 keeps H2 undecorated for RFC 8032 compatibility (as noble's suite does).
    H2: '',
  });
  return { suite, Point };
}

const native = createFastFrost(nativeEd25519);

/** FROST(Ed25519, SHA-512) on libsodium; same shape as noble's `ed25519_FROST`. */
export const fastFrost: FrostSuite = native.suite;

/** Forget remembered point encodings. */
export const clearFastFrostCache = (): void => native.Point.clearCache();
