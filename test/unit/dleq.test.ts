/**
 * RFC 9497 §2.2 DLEQ proofs (lib/crypto/dleq.ts) against the RFC 9497 Appendix A.1.2 (VOPRF)
 * and A.1.3 (POPRF) ristretto255-SHA512 vectors: GenerateProof with the vector's
 * ProofRandomScalar reproduces the Proof byte for byte, and VerifyProof accepts it; then the
 * fedkms context binding and its negative cases.
 */
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { bytesToHex, concatBytes, hexToBytes } from '@noble/curves/utils.js';
import V from '../../fixtures/rfc9497-ristretto255-sha512.json';
import {
  contextStringFor,
  createContextString,
  deserializeElement,
  deserializeScalar,
  FEDKMS_CONTEXT_PREFIX,
  Fn,
  generateProof,
  hashToScalar,
  MODE_POPRF,
  MODE_VOPRF,
  Point,
  proveInContext,
  randomScalar,
  verifyInContext,
  verifyProof,
  type Element,
} from '../../lib/crypto/dleq';

const list = (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]);
const elements = (v: string | string[]): Element[] => list(v).map((h) => deserializeElement(hexToBytes(h)));
const flip = (b: Uint8Array, i: number) => {
  const c = Uint8Array.from(b);
  c[i] = (c[i] as number) ^ 1;
  return c;
};

describe('RFC 9497 A.1 ristretto255-SHA512 DLEQ proofs', () => {
  it('the fixture records its source and suite', () => {
    expect(V.source.document).toMatch(/RFC 9497.*A\.1/);
    expect(V.source.readFrom).toMatch(/draft-irtf-cfrg-voprf-21/);
    expect(V.suite).toBe('ristretto255-SHA512');
    expect(V.voprf.vectors).toHaveLength(3);
    expect(V.poprf.vectors).toHaveLength(3);
  });

  it('the context strings are CreateContextString(mode, "ristretto255-SHA512") (§3.1)', () => {
    expect(Buffer.from(createContextString(MODE_VOPRF)).toString('latin1')).toBe('OPRFV1-\x01-ristretto255-SHA512');
    expect(Buffer.from(createContextString(MODE_POPRF)).toString('latin1')).toBe('OPRFV1-\x02-ristretto255-SHA512');
  });

  describe('VOPRF mode (A.1.2): GenerateProof(skS, G, pkS, BlindedElement[], EvaluationElement[])', () => {
    const cs = createContextString(MODE_VOPRF);
    const skS = deserializeScalar(hexToBytes(V.voprf.keys.skSm));
    const pkS = deserializeElement(hexToBytes(V.voprf.keys.pkSm));

    it('pkSm = skSm·G', () => {
      expect(bytesToHex(Point.BASE.multiply(skS).toBytes())).toBe(V.voprf.keys.pkSm);
    });

    it.each(V.voprf.vectors.map((v) => [v.name, v] as const))('%s', (_name, v) => {
      const C = elements(v.BlindedElement);
      const D = elements(v.EvaluationElement);
      // The evaluation itself: D[i] = skS·C[i] (§3.3.2 BlindEvaluate).
      C.forEach((Ci, i) => expect(Ci.multiply(skS).equals(D[i]!)).toBe(true));
      const r = deserializeScalar(hexToBytes(v.ProofRandomScalar));
      expect(bytesToHex(generateProof(cs, skS, Point.BASE, pkS, C, D, r))).toBe(v.Proof);
      expect(verifyProof(cs, Point.BASE, pkS, C, D, hexToBytes(v.Proof))).toBe(true);
    });
  });

  describe('POPRF mode (A.1.3): GenerateProof(t, G, t·G, EvaluationElement[], BlindedElement[])', () => {
    const cs = createContextString(MODE_POPRF);
    const skS = deserializeScalar(hexToBytes(V.poprf.keys.skSm));

    it.each(V.poprf.vectors.map((v) => [v.name, v] as const))('%s', (_name, v) => {
      // §3.3.3 BlindEvaluate: framedInfo = "Info" || I2OSP(len(info), 2) || info; t = skS + HashToScalar(framedInfo).
      const info = hexToBytes(v.Info);
      const framedInfo = concatBytes(new TextEncoder().encode('Info'), new Uint8Array([info.length >> 8, info.length & 0xff]), info);
      const t = Fn.add(skS, hashToScalar(framedInfo, cs));
      const tweakedKey = Point.BASE.multiply(t);
      const C = elements(v.EvaluationElement);
      const D = elements(v.BlindedElement);
      C.forEach((Ci, i) => expect(Ci.multiply(t).equals(D[i]!)).toBe(true));
      const r = deserializeScalar(hexToBytes(v.ProofRandomScalar));
      expect(bytesToHex(generateProof(cs, t, Point.BASE, tweakedKey, C, D, r))).toBe(v.Proof);
      expect(verifyProof(cs, Point.BASE, tweakedKey, C, D, hexToBytes(v.Proof))).toBe(true);
    });
  });

  describe('VerifyProof rejects', () => {
    const cs = createContextString(MODE_VOPRF);
    const v = V.voprf.vectors[2]!;
    const pkS = deserializeElement(hexToBytes(V.voprf.keys.pkSm));
    const C = elements(v.BlindedElement);
    const D = elements(v.EvaluationElement);
    const proof = hexToBytes(v.Proof);

    it('a wrong evaluated element, public key or blinded element', () => {
      const other = Point.BASE.multiply(7n);
      expect(verifyProof(cs, Point.BASE, pkS, C, [D[0]!, other], proof)).toBe(false);
      expect(verifyProof(cs, Point.BASE, other, C, D, proof)).toBe(false);
      expect(verifyProof(cs, Point.BASE, pkS, [other, C[1]!], D, proof)).toBe(false);
      // Swapped order changes the composite weights.
      expect(verifyProof(cs, Point.BASE, pkS, [C[1]!, C[0]!], [D[1]!, D[0]!], proof)).toBe(false);
    });

    it('another context string (the POPRF one, or a fedkms one)', () => {
      expect(verifyProof(createContextString(MODE_POPRF), Point.BASE, pkS, C, D, proof)).toBe(false);
      expect(verifyProof(contextStringFor({}), Point.BASE, pkS, C, D, proof)).toBe(false);
    });

    it('every single-bit malleation of the proof, a non-canonical scalar, and a wrong length', () => {
      for (let i = 0; i < proof.length; i++) expect(verifyProof(cs, Point.BASE, pkS, C, D, flip(proof, i))).toBe(false);
      // s + L encodes the same residue but is not a canonical scalar (RFC 9497 §4.1 DeserializeScalar).
      const s = deserializeScalar(proof.subarray(32));
      const nonCanonical = concatBytes(proof.subarray(0, 32), hexToBytes((s + Fn.ORDER).toString(16).padStart(64, '0')).reverse());
      expect(verifyProof(cs, Point.BASE, pkS, C, D, nonCanonical)).toBe(false);
      expect(verifyProof(cs, Point.BASE, pkS, C, D, proof.subarray(0, 63))).toBe(false);
      expect(verifyProof(cs, Point.BASE, pkS, C, D, new Uint8Array(64))).toBe(false);
    });

    it('DeserializeElement refuses the identity and non-canonical encodings', () => {
      expect(() => deserializeElement(new Uint8Array(32))).toThrow();
      expect(() => deserializeElement(new Uint8Array(32).fill(0xff))).toThrow();
    });
  });
});

describe('cross-check with @noble/curves ristretto255_oprf (an independent RFC 9497 implementation)', () => {
  const cs = createContextString(MODE_VOPRF);
  const { voprf } = ristretto255_oprf;

  it('batched proofs from noble verify here, and proofs made here pass noble finalizeBatch', () => {
    const keys = voprf.generateKeyPair();
    const inputs = [1, 2, 3].map((i) => new TextEncoder().encode(`input ${i}`));
    const blinds = inputs.map((x) => voprf.blind(x));
    const blinded = blinds.map((b) => b.blinded);
    const theirs = voprf.blindEvaluateBatch(keys.secretKey, keys.publicKey, blinded);
    const pkS = deserializeElement(keys.publicKey);
    const C = blinded.map((b) => deserializeElement(b));
    const D = theirs.evaluated.map((e) => deserializeElement(e));
    expect(verifyProof(cs, Point.BASE, pkS, C, D, theirs.proof)).toBe(true);

    const ours = generateProof(cs, deserializeScalar(keys.secretKey), Point.BASE, pkS, C, D);
    const items = inputs.map((input, i) => ({ input, blind: blinds[i]!.blind, evaluated: theirs.evaluated[i]!, blinded: blinded[i]! }));
    expect(() => voprf.finalizeBatch(items, keys.publicKey, ours)).not.toThrow();
    expect(() => voprf.finalizeBatch(items, keys.publicKey, flip(ours, 0))).toThrow();
  });
});

describe('fedkms context binding', () => {
  const k = randomScalar();
  const R = Point.BASE.multiply(randomScalar());
  const st = { B: Point.BASE.multiply(k), C: [R], D: [R.multiply(k)] };
  const ctx = { purpose: 'test', keyId: 'k1', keyVersion: 1, requester: 'AAAA', ciphertext: 'ab'.repeat(32) };

  it('contextString = prefix || SHA-256(canonical JSON), whatever the key order', () => {
    const cs = contextStringFor(ctx);
    expect(Buffer.from(cs.subarray(0, FEDKMS_CONTEXT_PREFIX.length)).toString()).toBe('FEDKMS-DLEQV1-ristretto255-SHA512-');
    expect(cs.length).toBe(FEDKMS_CONTEXT_PREFIX.length + 32);
    const reordered = Object.fromEntries(Object.entries(ctx).reverse());
    expect(bytesToHex(contextStringFor(reordered))).toBe(bytesToHex(cs));
  });

  it('a proof verifies under its own context and statement only', () => {
    const proof = proveInContext(ctx, k, st);
    expect(verifyInContext(ctx, st, proof)).toBe(true);
    for (const field of Object.keys(ctx) as (keyof typeof ctx)[]) {
      const changed = { ...ctx, [field]: typeof ctx[field] === 'number' ? 2 : `${ctx[field]}x` };
      expect(verifyInContext(changed, st, proof)).toBe(false);
    }
    expect(verifyInContext({ ...ctx, extra: '1' }, st, proof)).toBe(false);
    const other = Point.BASE.multiply(5n);
    expect(verifyInContext(ctx, { ...st, D: [other] }, proof)).toBe(false);
    expect(verifyInContext(ctx, { ...st, C: [other] }, proof)).toBe(false);
    expect(verifyInContext(ctx, { ...st, B: other }, proof)).toBe(false);
    for (let i = 0; i < proof.length; i += 7) expect(verifyInContext(ctx, st, flip(proof, i))).toBe(false);
  });

  it('a false statement cannot be proven (D ≠ k·C)', () => {
    const lie = { ...st, D: [R.multiply(Fn.add(k, 1n))] };
    expect(verifyInContext(ctx, lie, proveInContext(ctx, k, lie))).toBe(false);
  });
});
