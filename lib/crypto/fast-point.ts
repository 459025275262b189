/**
 * An Ed25519 point type for noble's createFROST whose hot operations run in libsodium.
 *
 * A point in the prime-order subgroup is kept as a linear combination Σ kᵢ·Pᵢ of "known"
 * points (the base point, or encodings libsodium has checked to be canonical, in the
 * prime-order subgroup and not of small order), with coefficients mod L in noble's scalar
 * field. add/double/negate/multiplyUnsafe only change coefficients, so noble's own
 * variable-time MSM (FROST's group commitment, VSS evaluation) costs a few bigint
 * operations per step; the sum is computed by libsodium when bytes or an equality are
 * needed. The coefficient algebra is exact because every Pᵢ has prime order L.
 * Anything else (identity, small-order or torsioned points, points from fromAffine or
 * zip215 parsing) stays a plain noble point and every operation on it is noble's, so
 * rejections and their error messages are noble's.
 *
 * Constant time: multiply() (secret scalars) goes straight to libsodium's constant-time
 * scalar multiplication and never into coefficients; multiplyUnsafe() and the
 * combination algebra see only public scalars, as in noble.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import type { AffinePoint, CurvePoint } from '@noble/curves/abstract/curve.js';
import type { EdwardsPoint } from '@noble/curves/abstract/edwards.js';
import { bytesToHex, equalBytes, hexToBytes } from '@noble/curves/utils.js';
import { BoundedCache } from './bounded-cache.js';
import type { Ed25519Ops } from './sodium-ed25519.js';

const Noble = ed25519.Point;
const Fn = Noble.Fn;
const IDENTITY = Noble.ZERO.toBytes();

/** A point of prime order L known by its canonical encoding. */
interface Known {
  readonly enc: Uint8Array;
  readonly base: boolean;
}
/** kᵢ·Pᵢ with 0 < k < L. */
interface Term {
  readonly p: Known;
  readonly k: bigint;
}

const isIdentity = (enc: Uint8Array) => equalBytes(enc, IDENTITY);

function mergeTerms(a: readonly Term[], b: readonly Term[]): Term[] {
  const out = a.slice();
  for (const t of b) {
    const i = out.findIndex((u) => u.p === t.p);
    if (i < 0) {
      out.push(t);
      continue;
    }
    const k = Fn.add(out[i]!.k, t.k);
    if (k === 0n) out.splice(i, 1);
    else out[i] = { p: t.p, k };
  }
  return out;
}

const scaleTerms = (ts: readonly Term[], s: bigint): Term[] => ts.map((t) => ({ p: t.p, k: Fn.mul(t.k, s) }));

export interface FastPointOptions {
  /** Parsed valid encodings remembered (LRU), so a point seen again skips libsodium's subgroup check. */
  parseCacheSize: number;
}

/** Builds the point class over one libsodium backend; each class has its own parse cache. */
export function createFastPoint(ops: Ed25519Ops, options: FastPointOptions) {
  const parsed = new BoundedCache<string, FastPoint>(options.parseCacheSize);
  const BASE_KNOWN: Known = { enc: Noble.BASE.toBytes(), base: true };

  /** Σ kᵢ·Pᵢ by libsodium; scalars leave no copy behind. */
  function materialize(ts: readonly Term[]): Uint8Array {
    let acc: Uint8Array | undefined;
    for (const { p, k } of ts) {
      let part = p.enc;
      if (k !== 1n) {
        const n = Fn.toBytes(k);
        part = p.base ? ops.baseMul(n) : ops.mul(n, p.enc);
        n.fill(0);
      }
      acc = acc ? ops.add(acc, part) : part;
    }
    return acc ?? IDENTITY;
  }

  function assertPoint(other: unknown): asserts other is FastPoint {
    if (!(other instanceof FastPoint)) throw new Error('EdwardsPoint expected');
  }

  class FastPoint implements CurvePoint<bigint, FastPoint> {
    static readonly BASE: FastPoint = new FastPoint([{ p: BASE_KNOWN, k: 1n }], undefined, BASE_KNOWN.enc);
    static readonly ZERO: FastPoint = new FastPoint([], undefined, IDENTITY);
    static readonly Fp = Noble.Fp;
    static readonly Fn = Noble.Fn;

    /**
     * terms: the prime-order representation; slow: a noble point (exactly one is set).
     * enc: the combination's encoding once libsodium has computed it.
     */
    private constructor(
      private readonly terms: readonly Term[] | undefined,
      private readonly slow: EdwardsPoint | undefined,
      private enc?: Uint8Array,
    ) {}

    /** This computed combination as one known point, made once so merges can match it by identity. */
    private self?: Known;

    private static known(enc: Uint8Array): FastPoint {
      return isIdentity(enc) ? FastPoint.ZERO : new FastPoint([{ p: { enc, base: false }, k: 1n }], undefined, enc);
    }

    private static combo(ts: Term[]): FastPoint {
      return ts.length === 0 ? FastPoint.ZERO : new FastPoint(ts, undefined);
    }

    private static noble(p: EdwardsPoint): FastPoint {
      return new FastPoint(undefined, p);
    }

    /** RFC 8032 decoding. A canonical encoding libsodium accepts becomes a known point; all else is noble's. */
    static fromBytes(bytes: Uint8Array, zip215 = false): FastPoint {
      if (!zip215 && bytes instanceof Uint8Array && bytes.length === 32) {
        const key = bytesToHex(bytes);
        const hit = parsed.get(key);
        if (hit) return hit;
        const enc = Uint8Array.from(bytes);
        if (ops.isValidPoint(enc)) {
          const p = FastPoint.known(enc);
          parsed.set(key, p);
          return p;
        }
      }
      return FastPoint.noble(Noble.fromBytes(bytes, zip215));
    }

    static fromHex(hex: string, zip215 = false): FastPoint {
      return FastPoint.fromBytes(hexToBytes(hex), zip215);
    }

    static fromAffine(p: AffinePoint<bigint>): FastPoint {
      return FastPoint.noble(Noble.fromAffine(p));
    }

    /** Forget parsed encodings (tests, and benchmarks that model a fresh process). */
    static clearCache(): void {
      parsed.clear();
    }

    static get cacheSize(): number {
      return parsed.size;
    }

    /** The terms, with a computed combination collapsed to one known point. */
    private current(): readonly Term[] {
      const ts = this.terms!;
      if (ts.length <= 1 || !this.enc) return ts;
      if (isIdentity(this.enc)) return [];
      return [{ p: (this.self ??= { enc: this.enc, base: false }), k: 1n }];
    }

    private bytes(): Uint8Array {
      return (this.enc ??= materialize(this.terms!));
    }

    private toNoble(): EdwardsPoint {
      return this.slow ?? Noble.fromBytes(this.bytes());
    }

    private scale(s: bigint): FastPoint {
      return s === 0n ? FastPoint.ZERO : FastPoint.combo(scaleTerms(this.current(), s));
    }

    get x(): bigint {
      return this.toNoble().x;
    }

    get y(): bigint {
      return this.toNoble().y;
    }

    add(other: FastPoint): FastPoint {
      assertPoint(other);
      if (this.terms && other.terms) return FastPoint.combo(mergeTerms(this.current(), other.current()));
      return FastPoint.noble(this.toNoble().add(other.toNoble()));
    }

    subtract(other: FastPoint): FastPoint {
      assertPoint(other);
      return this.add(other.negate());
    }

    negate(): FastPoint {
      return this.terms ? this.scale(Fn.neg(1n)) : FastPoint.noble(this.slow!.negate());
    }

    double(): FastPoint {
      return this.terms ? this.scale(2n) : FastPoint.noble(this.slow!.double());
    }

    /** Constant time in the scalar (libsodium, or noble for non-prime-order points). */
    multiply(scalar: bigint): FastPoint {
      if (!Fn.isValidNot0(scalar)) throw new RangeError('invalid scalar: expected 1 <= sc < curve.n');
      if (!this.terms) return FastPoint.noble(this.slow!.multiply(scalar));
      const base = this.terms.length === 1 && this.terms[0]!.p.base && this.terms[0]!.k === 1n;
      const enc = base ? undefined : this.bytes();
      if (enc && isIdentity(enc)) return FastPoint.ZERO;
      const n = Fn.toBytes(scalar);
      try {
        return FastPoint.known(enc ? ops.mul(n, enc) : ops.baseMul(n));
      } finally {
        n.fill(0);
      }
    }

    /** Public scalars only: a change of coefficients, no curve arithmetic yet. */
    multiplyUnsafe(scalar: bigint): FastPoint {
      if (!Fn.isValid(scalar)) throw new RangeError('invalid scalar: expected 0 <= sc < curve.n');
      return this.terms ? this.scale(scalar) : FastPoint.noble(this.slow!.multiplyUnsafe(scalar));
    }

    clearCofactor(): FastPoint {
      return this.terms ? this.scale(8n) : FastPoint.noble(this.slow!.clearCofactor());
    }

    is0(): boolean {
      if (!this.terms) return this.slow!.is0();
      const ts = this.current();
      if (ts.length === 0) return true;
      if (this.enc) return isIdentity(this.enc);
      // Σ kᵢPᵢ = 0 ⇔ Σ (kᵢ/kⱼ)Pᵢ = 0 (prime order): a coefficient of 1 saves one multiplication.
      const j = ts.find((t) => !t.p.base && t.k === 1n) ?? ts.find((t) => !t.p.base);
      return isIdentity(materialize(j && j.k !== 1n ? scaleTerms(ts, Fn.inv(j.k)) : ts));
    }

    equals(other: FastPoint): boolean {
      assertPoint(other);
      if (!this.terms || !other.terms) return this.toNoble().equals(other.toNoble());
      if (this.enc && other.enc) return equalBytes(this.enc, other.enc);
      return this.subtract(other).is0();
    }

    /** Known points are valid by construction: only the identity fails, as in noble. */
    assertValidity(): void {
      if (!this.terms) return this.slow!.assertValidity();
      if (this.is0()) throw new Error('bad point: ZERO');
    }

    isTorsionFree(): boolean {
      return this.terms ? true : this.slow!.isTorsionFree();
    }

    isSmallOrder(): boolean {
      return this.terms ? this.is0() : this.slow!.isSmallOrder();
    }

    /** No tables to build: libsodium has its own. */
    precompute(): FastPoint {
      return this;
    }

    toAffine(invertedZ?: bigint): AffinePoint<bigint> {
      return this.toNoble().toAffine(invertedZ);
    }

    toBytes(): Uint8Array {
      return this.terms ? Uint8Array.from(this.bytes()) : this.slow!.toBytes();
    }

    toHex(): string {
      return bytesToHex(this.toBytes());
    }

    toString(): string {
      return `<FastPoint ${this.toHex()}>`;
    }
  }
  return FastPoint;
}

export type FastPointCons = ReturnType<typeof createFastPoint>;
export type FastPoint = FastPointCons['ZERO'];
