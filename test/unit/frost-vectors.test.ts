/**
 * RFC 9591 Appendix E.1 FROST(Ed25519, SHA-512) test vectors against @noble/curves'
 * ed25519_FROST: dealing, round one (nonces from the vector randomness), binding
 * factors, round two, aggregation, and plain Ed25519 verification of the result.
 */
import { verify as nodeVerify } from 'node:crypto';
import { ed25519, ed25519_FROST as frost } from '@noble/curves/ed25519.js';
import { getMinHashLength } from '@noble/curves/abstract/modular.js';
import type { NonceCommitments, Nonces } from '@noble/curves/abstract/frost.js';
import { bytesToHex, bytesToNumberLE, concatBytes, hexToBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import V from '../../fixtures/rfc9591-frost-ed25519-sha512.json';
import { publicKeyFormats } from '../../lib/crypto/key-formats';
import { scriptedRng } from '../support/scripted-rng';

const Fn = frost.utils.Fn;
const signers = { min: V.config.MIN_PARTICIPANTS, max: V.config.MAX_PARTICIPANTS };
const msg = hexToBytes(V.inputs.message);
const groupPublicKey = hexToBytes(V.inputs.group_public_key);
const id = (n: number) => frost.Identifier.fromNumber(n);

/**
 * noble's dealer draws each coefficient as mapHashToField(rng(48)) = (x mod (L-1)) + 1, never the
 * raw bytes; so to make it pick coefficient c we feed it the 48-byte little-endian encoding of c-1
 * (the same trick noble's own RFC 9591 test uses).
 */
const coefficientRngBytes = (hex: string) =>
  numberToBytesLE(Fn.sub(Fn.fromBytes(hexToBytes(hex)), Fn.ONE), getMinHashLength(Fn.ORDER));

function deal() {
  const rng = scriptedRng(V.inputs.share_polynomial_coefficients.map(coefficientRngBytes));
  const identifiers = [1, 2, 3].map(id);
  return frost.trustedDealer(signers, identifiers, hexToBytes(V.inputs.group_secret_key), rng);
}

const shareOf = (dealt: ReturnType<typeof deal>, n: number) => {
  const s = dealt.secretShares[id(n)];
  if (!s) throw new Error(`no share for participant ${n}`);
  return s;
};

/** Round one for participant `o` with the vector's randomness, through noble's own commit(). */
function commitFromVector(dealt: ReturnType<typeof deal>, o: (typeof V.round_one_outputs)[number]) {
  const rng = scriptedRng([hexToBytes(o.hiding_nonce_randomness), hexToBytes(o.binding_nonce_randomness)]);
  return frost.commit(shareOf(dealt, o.identifier), rng);
}

/** The round-one output built directly from the vector's nonce scalars (no RNG). */
function noncesFromVector(o: (typeof V.round_one_outputs)[number]): { nonces: Nonces; commitments: NonceCommitments } {
  const nonces = { hiding: hexToBytes(o.hiding_nonce), binding: hexToBytes(o.binding_nonce) };
  const point = (scalar: Uint8Array) => Uint8Array.from(ed25519.Point.BASE.multiply(Fn.fromBytes(scalar)).toBytes());
  return {
    nonces,
    commitments: { identifier: id(o.identifier), hiding: point(nonces.hiding), binding: point(nonces.binding) },
  };
}

// RFC 9591 §6.1 hashes: H_x(m) = SHA-512(contextString ‖ tag ‖ m); H1 is reduced mod L.
const H = (tag: string, m: Uint8Array) => sha512(concatBytes(new TextEncoder().encode(V.config.contextString + tag), m));

describe('RFC 9591 E.1 FROST(Ed25519, SHA-512)', () => {
  it('the fixture records its source and the RFC parameters', () => {
    expect(V.source.document).toMatch(/RFC 9591.*E\.1/);
    expect(V.source.readFrom).toMatch(/draft-irtf-cfrg-frost/);
    expect(V.inputs.participant_list).toEqual(V.round_one_outputs.map((o) => o.identifier));
  });

  it('dealing with the vector coefficients reproduces the participant shares and group key', () => {
    const dealt = deal();
    expect(bytesToHex(dealt.public.commitments[0]!)).toBe(V.inputs.group_public_key);
    for (const p of V.inputs.participant_shares) {
      const share = shareOf(dealt, p.identifier);
      expect(bytesToHex(share.signingShare)).toBe(p.participant_share);
      expect(() => frost.validateSecret(share, dealt.public)).not.toThrow();
    }
    const signing = V.inputs.participant_list.map((n) => shareOf(dealt, n));
    expect(bytesToHex(frost.combineSecret(signing, signers))).toBe(V.inputs.group_secret_key);
  });

  it('the vector shares lie on the vector polynomial (checked without the RNG trick)', () => {
    const coeffs = V.inputs.share_polynomial_coefficients.map((c) => Fn.fromBytes(hexToBytes(c)));
    const poly = frost.utils.generateSecretPolynomial(signers, hexToBytes(V.inputs.group_secret_key), coeffs);
    expect(bytesToHex(poly.commitment[0]!)).toBe(V.inputs.group_public_key);
    const pub = { signers, commitments: poly.commitment, verifyingShares: {} };
    for (const p of V.inputs.participant_shares) {
      const share = { identifier: id(p.identifier), signingShare: hexToBytes(p.participant_share) };
      expect(() => frost.validateSecret(share, pub)).not.toThrow();
    }
  });

  it('commit() with the vector randomness yields the vector nonces and commitments', () => {
    const dealt = deal();
    for (const o of V.round_one_outputs) {
      const { nonces, commitments } = commitFromVector(dealt, o);
      expect(bytesToHex(nonces.hiding)).toBe(o.hiding_nonce);
      expect(bytesToHex(nonces.binding)).toBe(o.binding_nonce);
      expect(commitments.identifier).toBe(id(o.identifier));
      expect(bytesToHex(commitments.hiding)).toBe(o.hiding_nonce_commitment);
      expect(bytesToHex(commitments.binding)).toBe(o.binding_nonce_commitment);
      expect(noncesFromVector(o).commitments).toEqual(commitments);
    }
  });

  it('binding factor inputs and binding factors match (RFC 9591 §4.4)', () => {
    // encode_group_commitment_list: identifier ‖ hiding ‖ binding, sorted by identifier.
    const encoded = concatBytes(
      ...V.round_one_outputs.flatMap((o) => [hexToBytes(id(o.identifier)), hexToBytes(o.hiding_nonce_commitment), hexToBytes(o.binding_nonce_commitment)]),
    );
    const prefix = concatBytes(groupPublicKey, H('msg', msg), H('com', encoded));
    for (const o of V.round_one_outputs) {
      const input = concatBytes(prefix, hexToBytes(id(o.identifier)));
      expect(bytesToHex(input)).toBe(o.binding_factor_input);
      const factor = Fn.toBytes(Fn.create(bytesToNumberLE(H('rho', input))));
      expect(bytesToHex(factor)).toBe(o.binding_factor);
    }
  });

  it('signShare, verifyShare and aggregate reproduce the vector signature shares and signature', () => {
    const dealt = deal();
    const round1 = V.round_one_outputs.map((o) => ({ o, ...commitFromVector(dealt, o) }));
    const commitmentList = round1.map((r) => r.commitments);
    const sigShares: Record<string, Uint8Array> = {};
    for (const { o, nonces } of round1) {
      const expected = V.round_two_outputs.find((t) => t.identifier === o.identifier);
      const share = frost.signShare(shareOf(dealt, o.identifier), dealt.public, nonces, commitmentList, msg);
      expect(bytesToHex(share)).toBe(expected?.sig_share);
      expect(frost.verifyShare(dealt.public, commitmentList, msg, id(o.identifier), share)).toBe(true);
      sigShares[id(o.identifier)] = share;
    }
    const sig = frost.aggregate(dealt.public, commitmentList, msg, sigShares);
    expect(bytesToHex(sig)).toBe(V.final_output.sig);
  });

  it('nonces built directly from the vector scalars give the same signature shares', () => {
    const dealt = deal();
    const round1 = V.round_one_outputs.map((o) => ({ o, ...noncesFromVector(o) }));
    const commitmentList = round1.map((r) => r.commitments);
    for (const { o, nonces } of round1) {
      const expected = V.round_two_outputs.find((t) => t.identifier === o.identifier);
      const share = frost.signShare(shareOf(dealt, o.identifier), dealt.public, nonces, commitmentList, msg);
      expect(bytesToHex(share)).toBe(expected?.sig_share);
      // signShare consumes the nonces: it zeroes them in place, and a second use is refused.
      expect(nonces.hiding.every((b) => b === 0)).toBe(true);
      expect(() => frost.signShare(shareOf(dealt, o.identifier), dealt.public, nonces, commitmentList, msg)).toThrow(/already used/);
    }
  });

  it('the vector signature is a plain Ed25519 signature: noble, FROST and Node all accept it', () => {
    const sig = hexToBytes(V.final_output.sig);
    expect(ed25519.verify(sig, msg, groupPublicKey)).toBe(true);
    expect(frost.verify(sig, msg, groupPublicKey)).toBe(true);
    const { pem } = publicKeyFormats(groupPublicKey);
    expect(nodeVerify(null, msg, pem, sig)).toBe(true);
    const other = Uint8Array.from(msg);
    other[0]! ^= 1;
    expect(ed25519.verify(sig, other, groupPublicKey)).toBe(false);
    expect(nodeVerify(null, other, pem, sig)).toBe(false);
  });

  it('aggregate names the participant whose share was tampered with', () => {
    const dealt = deal();
    const round1 = V.round_one_outputs.map((o) => ({ o, ...noncesFromVector(o) }));
    const commitmentList = round1.map((r) => r.commitments);
    const sigShares: Record<string, Uint8Array> = {};
    for (const { o, nonces } of round1) {
      sigShares[id(o.identifier)] = frost.signShare(shareOf(dealt, o.identifier), dealt.public, nonces, commitmentList, msg);
    }
    sigShares[id(3)]![0]! ^= 1;
    expect(() => frost.aggregate(dealt.public, commitmentList, msg, sigShares)).toThrow(
      expect.objectContaining({ message: 'aggregation failed', cheaters: [id(3)] }),
    );
  });
});
