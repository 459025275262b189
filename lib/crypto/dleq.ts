/**
 * DLEQ (Chaum–Pedersen) proofs over ristretto255 with SHA-512, exactly as RFC 9497 §2.2
 * defines them (GenerateProof, VerifyProof, ComputeComposites, ComputeCompositesFast), with
 * the group and hash of the "ristretto255-SHA512" suite (RFC 9497 §4.1). A proof shows that
 * `k*A == B` and `k*C[i] == D[i]` for every i, without revealing k; the batched form folds
 * the m pairs into one composite pair (M, Z) with hash-derived weights, so the proof stays
 * 64 bytes for any m.
 *
 * All group and scalar arithmetic is @noble/curves' (ristretto255 points, their `Fn`, and
 * `ristretto255_hasher.hashToScalar`, which is RFC 9497's HashToScalar: expand_message_xmd
 * with SHA-512, 64 bytes, little-endian, mod the group order). Checked against the RFC 9497
 * Appendix A.1.2/A.1.3 vectors (fixtures/rfc9497-ristretto255-sha512.json).
 *
 * Context binding. RFC 9497 parameterises every hash by `contextString`: it is in the
 * HashToScalar DST ("HashToScalar-" || contextString) and in the composite seed
 * ("Seed-" || contextString). The OPRF protocol sets it to CreateContextString(mode, suite)
 * (§3.1); `contextStringFor` below builds a fedkms one instead:
 *
 *   contextString = "FEDKMS-DLEQV1-ristretto255-SHA512-" || SHA-256(canonicalJson(context))
 *
 * so a proof made for one application context (a purpose, a key, a node, a request, a
 * ciphertext) fails for every other, and never verifies as an OPRF proof (whose contexts
 * start "OPRFV1-"). The digest keeps the DST under RFC 9380's 255-byte limit whatever the
 * context holds. The statement (B, C, D) is already in the RFC transcript; A is not, so the
 * context-bound helpers fix A to the generator, as RFC 9497 itself always does.
 *
 * Pure: no I/O.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js';
import { getMinHashLength, mapHashToField } from '@noble/curves/abstract/modular.js';
import { bytesToNumberLE, concatBytes, equalBytes } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { canonicalJson } from './hash.js';

export const Point = ristretto255.Point;
export type Element = InstanceType<typeof ristretto255.Point>;
export const Fn = ristretto255.Point.Fn;

/** RFC 9497 §4.1 suite identifier. */
export const SUITE_ID = 'ristretto255-SHA512';
/** Serialized element and scalar sizes (RFC 9497 §4.1: Ne = Ns = 32); a proof is Ns + Ns. */
export const ELEMENT_BYTES = 32;
export const SCALAR_BYTES = 32;
export const PROOF_BYTES = 2 * SCALAR_BYTES;

/** RFC 9497 §3.1 modes. */
export const MODE_OPRF = 0x00;
export const MODE_VOPRF = 0x01;
export const MODE_POPRF = 0x02;

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** I2OSP(n, 2) (RFC 8017 §4.1); RFC 9497 frames every transcript field with it. */
function i2osp2(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError('I2OSP: value does not fit in 2 bytes');
  return new Uint8Array([n >> 8, n & 0xff]);
}
const framed = (b: Uint8Array): Uint8Array => concatBytes(i2osp2(b.length), b);

/** RFC 9497 §3.1 CreateContextString(mode, identifier) = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier. */
export function createContextString(mode: number, identifier = SUITE_ID): Uint8Array {
  return concatBytes(ascii('OPRFV1-'), new Uint8Array([mode]), ascii(`-${identifier}`));
}

/** RFC 9497 §4.1 HashToScalar with DST = "HashToScalar-" || contextString. */
export function hashToScalar(msg: Uint8Array, contextString: Uint8Array): bigint {
  return ristretto255_hasher.hashToScalar(msg, { DST: concatBytes(ascii('HashToScalar-'), contextString) });
}

/** RFC 9496 §4.3.2 Encode (RFC 9497 SerializeElement). */
export const serializeElement = (A: Element): Uint8Array => A.toBytes();

/** RFC 9497 §4.1 DeserializeElement: RFC 9496 §4.3.1 Decode, and the identity is refused. */
export function deserializeElement(buf: Uint8Array): Element {
  if (buf.length !== ELEMENT_BYTES) throw new Error('invalid element: expected 32 bytes');
  const A = Point.fromBytes(buf);
  if (A.is0()) throw new Error('invalid element: identity');
  return A;
}

/** RFC 9497 §4.1 SerializeScalar: 32 bytes little-endian. */
export const serializeScalar = (s: bigint): Uint8Array => Fn.toBytes(s);

/** RFC 9497 §4.1 DeserializeScalar: 32 bytes little-endian, refused unless < order (noble's Fn.fromBytes checks it). */
export function deserializeScalar(buf: Uint8Array): bigint {
  if (buf.length !== SCALAR_BYTES) throw new Error('invalid scalar: expected 32 bytes');
  return Fn.fromBytes(buf);
}

/** RFC 9497 §2.1 RandomScalar: uniform and non-zero (noble's mapHashToField over 48 random bytes). */
export function randomScalar(rng: (n: number) => Uint8Array = (n) => new Uint8Array(randomBytes(n))): bigint {
  return bytesToNumberLE(mapHashToField(rng(getMinHashLength(Fn.ORDER)), Fn.ORDER, true));
}

// Every input to these multi-scalar multiplications is public (wire points, transcript weights,
// proof scalars), so noble's variable-time MSM is safe; scalars that are secret (k, r) only ever
// go through the constant-time `multiply`.
const msm = (points: Element[], scalars: bigint[]): Element => mulAddUnsafe(Point, points, scalars);

/** The composite weights d_i of ComputeComposites / ComputeCompositesFast (RFC 9497 §2.2.1). */
function compositeWeights(contextString: Uint8Array, B: Element, C: Element[], D: Element[]): bigint[] {
  if (C.length === 0 || C.length !== D.length) throw new Error('DLEQ: C and D must be non-empty lists of equal length');
  const Bm = serializeElement(B);
  const seedDST = concatBytes(ascii('Seed-'), contextString);
  const seed = sha512(concatBytes(framed(Bm), framed(seedDST)));
  return C.map((Ci, i) => {
    const Di = D[i] as Element;
    const compositeTranscript = concatBytes(
      framed(seed),
      i2osp2(i),
      framed(serializeElement(Ci)),
      framed(serializeElement(Di)),
      ascii('Composite'),
    );
    return hashToScalar(compositeTranscript, contextString);
  });
}

/** RFC 9497 §2.2.2 ComputeComposites: M = Σ d_i·C[i], Z = Σ d_i·D[i] (the verifier's form). */
export function computeComposites(contextString: Uint8Array, B: Element, C: Element[], D: Element[]): { M: Element; Z: Element } {
  const d = compositeWeights(contextString, B, C, D);
  return { M: msm(C, d), Z: msm(D, d) };
}

/** RFC 9497 §2.2.1 ComputeCompositesFast: as above, but Z = k·M (the prover knows k). */
export function computeCompositesFast(contextString: Uint8Array, k: bigint, B: Element, C: Element[], D: Element[]): { M: Element; Z: Element } {
  const d = compositeWeights(contextString, B, C, D);
  const M = msm(C, d);
  return { M, Z: M.multiply(k) };
}

/** The challenge of RFC 9497 §2.2.1/§2.2.2: HashToScalar(framed(Bm, M, Z, t2, t3) || "Challenge"). */
function challenge(contextString: Uint8Array, B: Element, M: Element, Z: Element, t2: Element, t3: Element): bigint {
  const transcript = concatBytes(...[B, M, Z, t2, t3].map((P) => framed(serializeElement(P))), ascii('Challenge'));
  return hashToScalar(transcript, contextString);
}

/**
 * RFC 9497 §2.2.1 GenerateProof(k, A, B, C, D): proof = SerializeScalar(c) || SerializeScalar(s).
 * `r` is the proof randomness; only tests pass it (to replay the RFC's ProofRandomScalar).
 */
export function generateProof(
  contextString: Uint8Array,
  k: bigint,
  A: Element,
  B: Element,
  C: Element[],
  D: Element[],
  r: bigint = randomScalar(),
): Uint8Array {
  const { M, Z } = computeCompositesFast(contextString, k, B, C, D);
  const t2 = A.multiply(r);
  const t3 = M.multiply(r);
  const c = challenge(contextString, B, M, Z, t2, t3);
  const s = Fn.sub(r, Fn.mul(c, k));
  return concatBytes(serializeScalar(c), serializeScalar(s));
}

/**
 * RFC 9497 §2.2.2 VerifyProof(A, B, C, D, proof). Never throws: a malformed proof (wrong
 * length, a scalar ≥ order) is simply not valid.
 */
export function verifyProof(contextString: Uint8Array, A: Element, B: Element, C: Element[], D: Element[], proof: Uint8Array): boolean {
  try {
    if (proof.length !== PROOF_BYTES) return false;
    const c = deserializeScalar(proof.subarray(0, SCALAR_BYTES));
    const s = deserializeScalar(proof.subarray(SCALAR_BYTES));
    const { M, Z } = computeComposites(contextString, B, C, D);
    const t2 = msm([A, B], [s, c]);
    const t3 = msm([M, Z], [s, c]);
    const expected = challenge(contextString, B, M, Z, t2, t3);
    // c is public; the comparison need not be constant-time, but compare canonical bytes anyway.
    return equalBytes(serializeScalar(expected), serializeScalar(c));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Application-context binding (fedkms).

/** Prefix of every fedkms DLEQ contextString; distinct from RFC 9497's "OPRFV1-" contexts. */
export const FEDKMS_CONTEXT_PREFIX = `FEDKMS-DLEQV1-${SUITE_ID}-`;

/** An application context: a flat or nested JSON object, hashed in canonical JSON (lib/crypto/hash.ts). */
export type ProofContext = Record<string, unknown>;

/**
 * contextString = "FEDKMS-DLEQV1-ristretto255-SHA512-" || SHA-256(canonicalJson(context)).
 * Canonical JSON sorts keys and drops whitespace, so prover and verifier agree byte for byte.
 */
export function contextStringFor(context: ProofContext): Uint8Array {
  const digest = createHash('sha256').update(canonicalJson(context)).digest();
  return concatBytes(ascii(FEDKMS_CONTEXT_PREFIX), new Uint8Array(digest));
}

/**
 * The statement "log_G(B) = log_C[i](D[i]) for all i", with A fixed to the ristretto255
 * generator (RFC 9497's transcript omits A; fixing it leaves nothing of the statement outside it).
 */
export interface DleqStatement {
  B: Element;
  C: Element[];
  D: Element[];
}

/** Prove the statement with witness k under an application context (RFC 9497 §2.2.1 GenerateProof). */
export function proveInContext(context: ProofContext, k: bigint, st: DleqStatement, r?: bigint): Uint8Array {
  return generateProof(contextStringFor(context), k, Point.BASE, st.B, st.C, st.D, r);
}

/** Verify a proof made by proveInContext under exactly the same context. Never throws. */
export function verifyInContext(context: ProofContext, st: DleqStatement, proof: Uint8Array): boolean {
  let cs: Uint8Array;
  try {
    cs = contextStringFor(context);
  } catch {
    return false;
  }
  return verifyProof(cs, Point.BASE, st.B, st.C, st.D, proof);
}
