import fc from 'fast-check';
import { combineShares, dealKey, identifierFor, isValidShare, unwrapSecret, CombineError, type Share } from '../../lib/crypto/shares';
import { ed25519_FROST } from '@noble/curves/ed25519.js';
import { fastFrost } from '../../lib/crypto/fast-frost';

const subsets = <T>(xs: T[], k: number): T[][] =>
  k === 0 ? [[]] : xs.flatMap((x, i) => subsets(xs.slice(i + 1), k - 1).map((s) => [x, ...s]));

const copy = (s: Share): Share => ({ identifier: s.identifier, signingShare: Uint8Array.from(s.signingShare) });

describe('verifiable threshold shares', () => {
  it('every t-subset reconstructs the secret; no (t-1)-subset does, even with a guessed share', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (t, extra, secret) => {
        const n = t + extra;
        const ids = Array.from({ length: n }, (_, i) => identifierFor(i + 1));
        const dealt = dealKey({ keyId: 'k', threshold: t, identifiers: ids, secret: Uint8Array.from(secret) });
        for (const sub of subsets(dealt.shares, t)) {
          const s = combineShares(dealt.publicPackage, sub.map(copy));
          expect(Buffer.from(unwrapSecret('k', s, dealt.wrapped))).toEqual(Buffer.from(secret));
        }
        for (const sub of subsets(dealt.shares, t - 1)) {
          expect(() => combineShares(dealt.publicPackage, sub.map(copy))).toThrow(CombineError);
          const missing = ids.find((id) => !sub.some((s) => s.identifier === id))!;
          const guess = { identifier: missing, signingShare: ed25519_FROST.utils.randomScalar() };
          expect(() => combineShares(dealt.publicPackage, [...sub.map(copy), guess])).toThrow(CombineError);
        }
      }),
      { numRuns: 15 },
    );
  });

  it('verifies honest shares and rejects a tampered one', () => {
    const ids = [1, 2, 3].map(identifierFor);
    const dealt = dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: Uint8Array.from([1, 2, 3]) });
    for (const s of dealt.shares) expect(isValidShare(dealt.publicPackage, s)).toBe(true);
    const bad = copy(dealt.shares[0]!);
    bad.signingShare[0]! ^= 1;
    expect(isValidShare(dealt.publicPackage, bad)).toBe(false);
    expect(isValidShare(dealt.publicPackage, { ...dealt.shares[0]!, identifier: ids[1]! })).toBe(false);
    expect(isValidShare(dealt.publicPackage, { identifier: ids[0]!, signingShare: new Uint8Array(31) })).toBe(false);
  });

  it('wipes the dealer copy of the secret', () => {
    const secret = Uint8Array.from([9, 9, 9, 9]);
    dealKey({ keyId: 'k', threshold: 2, identifiers: [1, 2, 3].map(identifierFor), secret });
    expect([...secret]).toEqual([0, 0, 0, 0]);
  });

  it('refuses secrets outside 1 B to 4 KiB', () => {
    const ids = [1, 2].map(identifierFor);
    expect(() => dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: new Uint8Array(0) })).toThrow(RangeError);
    expect(() => dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: new Uint8Array(4097) })).toThrow(RangeError);
    expect(() => dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: new Uint8Array(4096) })).not.toThrow();
  });

  it('binds the wrapped secret to its key id', () => {
    const ids = [1, 2].map(identifierFor);
    const dealt = dealKey({ keyId: 'k', threshold: 2, identifiers: ids, secret: Uint8Array.from([5]) });
    const s = combineShares(dealt.publicPackage, dealt.shares);
    expect(() => unwrapSecret('other', s, dealt.wrapped)).toThrow();
  });
});

describe('the Feldman check through the libsodium-backed suite', () => {
  it('gives the stock verdict on honest shares, shares of another node, flipped bits and zero', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 4 }), fc.integer({ min: 0, max: 255 }), (t, bit) => {
        const ids = Array.from({ length: t + 1 }, (_, i) => identifierFor(i + 1));
        const d = dealKey({ keyId: 'k', threshold: t, identifiers: ids, secret: new Uint8Array([1, 2, 3]) });
        const flipped = copy(d.shares[0]!);
        flipped.signingShare[bit % 32]! ^= 1 << (bit % 8);
        const cases: Share[] = [...d.shares, { identifier: d.shares[0]!.identifier, signingShare: d.shares[1]!.signingShare }, flipped, { identifier: d.shares[0]!.identifier, signingShare: new Uint8Array(32) }];
        for (const s of cases) expect(isValidShare(d.publicPackage, s, fastFrost)).toBe(isValidShare(d.publicPackage, s));
        expect(d.shares.every((s) => isValidShare(d.publicPackage, s, fastFrost))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });
});
