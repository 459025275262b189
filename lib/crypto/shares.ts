/**
 * Verifiable threshold shares of a key: Feldman-VSS Shamir over the ed25519 scalar
 * field, exactly as @noble/curves' RFC 9591 FROST implements it. The arbitrary-length
 * user secret is wrapped under a key derived from the shared scalar `s`, so the
 * secret is only ever recoverable by combining t verified shares. Pure: no I/O.
 */
import { randomBytes } from 'node:crypto';
import { ed25519, ed25519_FROST as frost } from '@noble/curves/ed25519.js';
import { fromB64, fromHex, toB64, toHex, wipe } from '../encoding.js';
import { aesGcmOpen, aesGcmSeal, hkdf, type AeadBox } from './aead.js';
import { canonicalJson, sha256Hex } from './hash.js';

export const MAX_SECRET_BYTES = 4096;

/** Public key package, hex-encoded for storage and the wire. `commitments[0]` is the group public key. */
export interface PublicPackage {
  threshold: number;
  total: number;
  commitments: string[];
  verifyingShares: Record<string, string>;
}

/** The user's secret, wrapped under HKDF(s). Stored (public) beside every share. */
export interface WrappedSecret extends AeadBox {
  alg: 'HKDF-SHA256/A256GCM';
  salt: string;
  length: number;
}

export interface Share {
  identifier: string;
  signingShare: Uint8Array;
}

export interface DealtKey {
  publicPackage: PublicPackage;
  wrapped: WrappedSecret;
  shares: Share[];
}

export const identifierFor = (index: number): string => frost.Identifier.fromNumber(index);

const wrapInfo = (keyId: string) => `fedkms/wrap/v1|${keyId}`;
const wrapAad = (keyId: string) => `fedkms/secret/v1|${keyId}`;

function toNoble(p: PublicPackage) {
  return {
    signers: { min: p.threshold, max: p.total },
    commitments: p.commitments.map((c) => fromHex(c, 'commitment')),
    verifyingShares: Object.fromEntries(Object.entries(p.verifyingShares).map(([id, v]) => [id, fromHex(v, 'verifyingShare')])),
  };
}

export const publicPackageDigest = (p: PublicPackage): string => sha256Hex(canonicalJson(p));
export const groupPublicKey = (p: PublicPackage): string => p.commitments[0] ?? '';

/** A random scalar for an import (the client draws it: lib/crypto/client-auth.ts `withImportScalar`), hex. */
export const randomScalarHex = (): string => toHex(frost.utils.randomScalar());

/** A canonical, non-zero ed25519 scalar from 64 hex characters, or undefined. */
export function parseScalar(hex: unknown): Uint8Array | undefined {
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) return undefined;
  try {
    const s = fromHex(hex, 'scalar');
    const n = ed25519.Point.Fn.fromBytes(s);
    return ed25519.Point.Fn.is0(n) ? undefined : s;
  } catch {
    return undefined;
  }
}

/**
 * Wrap `secret` under HKDF(`s`). With `deterministic`, the salt and nonce are derived from `s`
 * (and the key id) instead of drawn: the same wrapped blob then follows from (keyId, s, secret),
 * which lets a client commit to it before the dealer makes it. Safe because `s` is a fresh
 * random scalar that wraps exactly one secret.
 */
export function wrapSecret(keyId: string, s: Uint8Array, secret: Uint8Array, deterministic = false): WrappedSecret {
  const salt = deterministic ? hkdf(s, new Uint8Array(), `fedkms/wrap-salt/v1|${keyId}`) : randomBytes(32);
  const k = hkdf(s, salt, wrapInfo(keyId));
  const iv = deterministic ? hkdf(s, salt, `fedkms/wrap-iv/v1|${keyId}`, 12) : undefined;
  const box = aesGcmSeal(k, secret, wrapAad(keyId), iv);
  wipe(k);
  return { alg: 'HKDF-SHA256/A256GCM', salt: toB64(salt), length: secret.length, ...box };
}

export const wrappedDigest = (w: WrappedSecret): string => sha256Hex(canonicalJson(w));

/**
 * What a client signs for an import: the group key s·G of the scalar it chose (public, the
 * Feldman commitments' constant term) and the digest of its secret wrapped under that scalar.
 * Neither reveals a low-entropy secret: both depend on a random scalar only the dealer sees.
 */
export function importCommitment(keyId: string, s: Uint8Array, secret: Uint8Array): { groupKey: string; wrapped: string } {
  const groupKey = toHex(ed25519.Point.BASE.multiply(ed25519.Point.Fn.fromBytes(s)).toBytes());
  return { groupKey, wrapped: wrappedDigest(wrapSecret(keyId, s, secret, true)) };
}

/**
 * Deal a scalar `s` to `identifiers`, t-of-n, and wrap `secret` under it: a fresh random one,
 * or the one a client chose for an import (its wrap is then deterministic, see `wrapSecret`).
 * The caller's secret buffer and every intermediate copy of `s` are wiped before returning.
 */
export function dealKey(opts: { keyId: string; threshold: number; identifiers: string[]; secret: Uint8Array; scalar?: Uint8Array }): DealtKey {
  const { keyId, threshold, identifiers, secret } = opts;
  if (secret.length < 1 || secret.length > MAX_SECRET_BYTES) throw new RangeError('secret length out of range');
  const s = opts.scalar ? Uint8Array.from(opts.scalar) : frost.utils.randomScalar();
  try {
    const deal = frost.trustedDealer({ min: threshold, max: identifiers.length }, identifiers, s);
    const wrapped = wrapSecret(keyId, s, secret, opts.scalar !== undefined);
    return {
      publicPackage: {
        threshold,
        total: identifiers.length,
        commitments: deal.public.commitments.map(toHex),
        verifyingShares: Object.fromEntries(Object.entries(deal.public.verifyingShares).map(([id, v]) => [id, toHex(v)])),
      },
      wrapped,
      shares: identifiers.map((id) => {
        const sh = deal.secretShares[id];
        if (!sh) throw new Error(`dealer produced no share for ${id}`);
        return { identifier: id, signingShare: sh.signingShare };
      }),
    };
  } finally {
    wipe(s, secret);
  }
}

/** What the Feldman check needs of a FROST suite. */
export type ShareSuite = Pick<typeof frost, 'validateSecret'>;

/**
 * Feldman check of one share against the public commitments. Never throws. `suite`: noble's
 * stock FROST by default; the signing paths pass the libsodium-backed one (lib/crypto/suite.ts),
 * same protocol code and verdicts, about 20x less CPU per check.
 */
export function isValidShare(pub: PublicPackage, share: Share, suite: ShareSuite = frost): boolean {
  try {
    if (share.signingShare.length !== 32 || !(share.identifier in pub.verifyingShares)) return false;
    suite.validateSecret({ identifier: share.identifier, signingShare: share.signingShare }, toNoble(pub));
    return true;
  } catch {
    return false;
  }
}

export class CombineError extends Error {}

/** Combine exactly t verified shares into `s`, and prove it by checking s·G against the group key. */
export function combineShares(pub: PublicPackage, shares: Share[]): Uint8Array {
  if (shares.length < pub.threshold) throw new CombineError(`need ${pub.threshold} shares, have ${shares.length}`);
  const chosen = shares.slice(0, pub.threshold);
  const s = frost.combineSecret(
    chosen.map((x) => ({ identifier: x.identifier, signingShare: x.signingShare })),
    { min: pub.threshold, max: pub.total },
  );
  const Y = ed25519.Point.BASE.multiply(ed25519.Point.Fn.fromBytes(s));
  if (toHex(Y.toBytes()) !== groupPublicKey(pub)) {
    wipe(s);
    throw new CombineError('combined scalar does not match the group public key');
  }
  return s;
}

/** Unwrap the user's secret with the combined scalar. Wipes the derived key. */
export function unwrapSecret(keyId: string, s: Uint8Array, wrapped: WrappedSecret): Uint8Array {
  const k = hkdf(s, fromB64(wrapped.salt, 'salt'), wrapInfo(keyId));
  try {
    return aesGcmOpen(k, wrapped, wrapAad(keyId));
  } finally {
    wipe(k);
  }
}
