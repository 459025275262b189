/**
 * Hex wire forms and checks around @noble/curves' RFC 9591 FROST(Ed25519, SHA-512):
 * DKG round packages, per-sender checks that name a cheater (noble's own round
 * functions stop at the first bad package without saying whose), and the state a
 * node must carry between Lambda invocations. Pure: no I/O, no curve arithmetic.
 */
import { ed25519, ed25519_FROST as frost } from '@noble/curves/ed25519.js';
import { fromHex, toHex } from '../encoding.js';
import { canonicalJson, sha256Hex } from './hash.js';
import type { PublicPackage } from './shares.js';

export { frost };

export interface Round1Hex {
  identifier: string;
  commitment: string[];
  proofOfKnowledge: string;
}

export interface CommitmentHex {
  identifier: string;
  hiding: string;
  binding: string;
}

export const round1ToHex = (p: { identifier: string; commitment: Uint8Array[]; proofOfKnowledge: Uint8Array }): Round1Hex => ({
  identifier: p.identifier,
  commitment: p.commitment.map(toHex),
  proofOfKnowledge: toHex(p.proofOfKnowledge),
});

export const round1FromHex = (p: Round1Hex) => ({
  identifier: p.identifier,
  commitment: p.commitment.map((c) => fromHex(c, 'commitment')),
  proofOfKnowledge: fromHex(p.proofOfKnowledge, 'proofOfKnowledge'),
});

/** Digest of a complete round-1 set, independent of the order it arrived in. */
export function round1SetDigest(set: Round1Hex[]): string {
  return sha256Hex(canonicalJson([...set].sort((a, b) => a.identifier.localeCompare(b.identifier))));
}

// Identifiers no real participant uses: probe participants for checking one package alone.
const PROBE_IDS = Array.from({ length: 256 }, (_, i) => frost.Identifier.fromNumber(65_535 - i));

/**
 * Check one peer's round-1 package exactly as noble's round 2 would (commitment
 * length, points, proof of knowledge), in isolation, so the failing sender can be
 * named. noble's round 2 wants exactly max−1 packages, so the package is checked
 * beside sound packages of probe participants. Returns the reason, or null.
 */
export function checkRound1Package(p: Round1Hex, threshold: number): string | null {
  if (threshold < 2 || threshold > PROBE_IDS.length) return 'threshold out of range';
  const signers = { min: threshold, max: threshold };
  const [me, ...fillers] = PROBE_IDS.slice(0, threshold - 1 + 1).map((id) => frost.DKG.round1(id, signers));
  try {
    frost.DKG.round2(me!.secret, [round1FromHex(p), ...fillers.slice(0, threshold - 2).map((f) => f.public)]);
    return null;
  } catch (e) {
    return (e as Error).message || 'invalid round-1 package';
  } finally {
    frost.DKG.clean(me!.secret);
    fillers.forEach((f) => frost.DKG.clean(f.secret));
  }
}

/** Feldman check of the share `from` sent to `me` against `from`'s round-1 commitment. */
export function isValidDkgShare(me: string, share: Uint8Array, senderCommitment: string[], threshold: number, total: number): boolean {
  try {
    frost.validateSecret(
      { identifier: me, signingShare: share },
      { signers: { min: threshold, max: total }, commitments: senderCommitment.map((c) => fromHex(c)), verifyingShares: {} },
    );
    return true;
  } catch {
    return false;
  }
}

/** The public package of a finished DKG, in the same hex form as dealt keys. */
export function publicPackageToHex(pub: { signers: { min: number; max: number }; commitments: Uint8Array[]; verifyingShares: Record<string, Uint8Array> }): PublicPackage {
  return {
    threshold: pub.signers.min,
    total: pub.signers.max,
    commitments: pub.commitments.map(toHex),
    verifyingShares: Object.fromEntries(Object.entries(pub.verifyingShares).map(([id, v]) => [id, toHex(v)])),
  };
}

export function publicPackageFromHex(p: PublicPackage) {
  return {
    signers: { min: p.threshold, max: p.total },
    commitments: p.commitments.map((c) => fromHex(c, 'commitment')),
    verifyingShares: Object.fromEntries(Object.entries(p.verifyingShares).map(([id, v]) => [id, fromHex(v, 'verifyingShare')])),
  };
}

export const commitmentFromHex = (c: CommitmentHex) => ({ identifier: c.identifier, hiding: fromHex(c.hiding, 'hiding'), binding: fromHex(c.binding, 'binding') });
export const commitmentToHex = (c: { identifier: string; hiding: Uint8Array; binding: Uint8Array }): CommitmentHex => ({
  identifier: c.identifier,
  hiding: toHex(c.hiding),
  binding: toHex(c.binding),
});

/** A point field from a peer: canonical, on the curve, in the prime-order subgroup, not the identity. */
export function isValidPublicPoint(hex: string): boolean {
  try {
    const P = ed25519.Point.fromBytes(fromHex(hex));
    return !P.is0() && P.isTorsionFree() && toHex(P.toBytes()) === hex.toLowerCase();
  } catch {
    return false;
  }
}

/**
 * JSON with bigints and byte arrays, for noble's DKG state between invocations.
 * Only the node that wrote it reads it back, after authenticated decryption.
 */
export function encodeState(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return { $n: v.toString(16) };
    if (v instanceof Uint8Array) return { $b: toHex(v) };
    return v;
  });
}

export function decodeState<T>(json: string): T {
  return JSON.parse(json, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if (typeof o['$n'] === 'string' && Object.keys(o).length === 1) return BigInt(`0x${o['$n']}`);
      if (typeof o['$b'] === 'string' && Object.keys(o).length === 1) return fromHex(o['$b']);
    }
    return v;
  }) as T;
}

// --- Resharing helpers (DESIGN §4): dealing λ_i·s_i to a new set, summing what arrives.
// All arithmetic goes through noble's scalar field and point API.
const Fn = ed25519.Point.Fn;
const Point = ed25519.Point;
const scalarOfId = (id: string) => Fn.fromBytes(fromHex(id, 'identifier'));

/** λ_i at 0 over the identifiers in `set`, for participant `me`. */
export function lagrangeAtZero(set: string[], me: string): bigint {
  const xi = scalarOfId(me);
  let num = Fn.ONE;
  let den = Fn.ONE;
  for (const id of set) {
    if (id === me) continue;
    const xj = scalarOfId(id);
    num = Fn.mul(num, xj);
    den = Fn.mul(den, Fn.sub(xj, xi));
  }
  return Fn.mul(num, Fn.inv(den));
}

/** λ·s as scalar bytes: the part of the secret this holder deals to the new set. */
export const weightedShare = (share: Uint8Array, lambda: bigint): Uint8Array => Fn.toBytes(Fn.mul(Fn.fromBytes(share), lambda));

export const scalarSum = (parts: Uint8Array[]): Uint8Array => Fn.toBytes(parts.reduce((acc, p) => Fn.add(acc, Fn.fromBytes(p)), Fn.ZERO));

/** λ·Y for a public point Y (hex). */
export const scalePoint = (pointHex: string, lambda: bigint): string => toHex(Point.fromBytes(fromHex(pointHex)).multiply(lambda).toBytes());

/** Pointwise sum of commitment vectors of equal length. */
export function sumCommitments(vectors: string[][]): string[] {
  const len = vectors[0]?.length ?? 0;
  return Array.from({ length: len }, (_, k) => toHex(vectors.map((v) => Point.fromBytes(fromHex(v[k]!))).reduce((a, b) => a.add(b)).toBytes()));
}

export const sumPoints = (points: string[]): string => toHex(points.map((p) => Point.fromBytes(fromHex(p))).reduce((a, b) => a.add(b)).toBytes());

/** The verifying share a commitment vector implies for `id`: Σ C_k · id^k. */
export function evaluateCommitment(commitments: string[], id: string): string {
  const x = scalarOfId(id);
  let acc = Point.ZERO;
  let pow = Fn.ONE;
  for (const c of commitments) {
    acc = acc.add(Point.fromBytes(fromHex(c)).multiply(pow));
    pow = Fn.mul(pow, x);
  }
  return toHex(acc.toBytes());
}

export const publicOfScalar = (s: Uint8Array): string => toHex(Point.BASE.multiply(Fn.fromBytes(s)).toBytes());
