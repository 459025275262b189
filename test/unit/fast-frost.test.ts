/**
 * The libsodium-backed FROST suite (lib/crypto/fast-frost.ts) against noble's stock
 * ed25519_FROST: RFC 9591 vectors, cross-suite interoperability (dealer and DKG), and
 * rejection of bad points (identity, the 8 small-order points, non-canonical and torsioned
 * encodings) with the stock suite's outcome and message, wherever a point is parsed.
 */
import { ed25519, ed25519_FROST as stock } from '@noble/curves/ed25519.js';
import { getMinHashLength } from '@noble/curves/abstract/modular.js';
import { bytesToHex, hexToBytes, numberToBytesLE } from '@noble/curves/utils.js';
import SMALL_ORDER_POINTS from '../../fixtures/ed25519-small-order-points.test-vectors.json';
import V from '../../fixtures/rfc9591-frost-ed25519-sha512.json';
import { BoundedCache } from '../../lib/crypto/bounded-cache';
import { clearFastFrostCache, createFastFrost, fastFrost as fast } from '../../lib/crypto/fast-frost';
import { nativeEd25519 } from '../../lib/crypto/sodium-ed25519';
import { isValidPublicPoint } from '../../lib/crypto/frost';
import { publicPointCheck } from '../../lib/crypto/suite';
import { scriptedRng } from '../support/scripted-rng';

type Suite = typeof stock;
const Fn = stock.utils.Fn;
const Noble = ed25519.Point;
const msg = hexToBytes(V.inputs.message);
const id = (n: number) => stock.Identifier.fromNumber(n);

/** noble draws coefficients as mapHashToField(rng(48)) = (x mod (L-1)) + 1: feed c-1 (see frost-vectors.test.ts). */
const coefficientRngBytes = (hex: string) => numberToBytesLE(Fn.sub(Fn.fromBytes(hexToBytes(hex)), Fn.ONE), getMinHashLength(Fn.ORDER));

const vectorSigners = { min: V.config.MIN_PARTICIPANTS, max: V.config.MAX_PARTICIPANTS };
const vectorDeal = (f: Suite) =>
  f.trustedDealer(vectorSigners, [1, 2, 3].map(id), hexToBytes(V.inputs.group_secret_key), scriptedRng(V.inputs.share_polynomial_coefficients.map(coefficientRngBytes)));

describe('fast suite: RFC 9591 E.1 vectors', () => {
  beforeEach(clearFastFrostCache);

  it('dealing reproduces the shares and group key', () => {
    const dealt = vectorDeal(fast);
    expect(bytesToHex(dealt.public.commitments[0]!)).toBe(V.inputs.group_public_key);
    for (const p of V.inputs.participant_shares) {
      const share = dealt.secretShares[id(p.identifier)]!;
      expect(bytesToHex(share.signingShare)).toBe(p.participant_share);
      expect(() => fast.validateSecret(share, dealt.public)).not.toThrow();
    }
    expect(dealt).toEqual(vectorDeal(stock));
  });

  it('commit, signShare, verifyShare and aggregate reproduce the vector outputs', () => {
    const dealt = vectorDeal(fast);
    const round1 = V.round_one_outputs.map((o) => {
      const gen = fast.commit(dealt.secretShares[id(o.identifier)]!, scriptedRng([hexToBytes(o.hiding_nonce_randomness), hexToBytes(o.binding_nonce_randomness)]));
      expect(bytesToHex(gen.nonces.hiding)).toBe(o.hiding_nonce);
      expect(bytesToHex(gen.commitments.hiding)).toBe(o.hiding_nonce_commitment);
      expect(bytesToHex(gen.commitments.binding)).toBe(o.binding_nonce_commitment);
      return { o, ...gen };
    });
    const list = round1.map((r) => r.commitments);
    const shares: Record<string, Uint8Array> = {};
    for (const { o, nonces } of round1) {
      const share = fast.signShare(dealt.secretShares[id(o.identifier)]!, dealt.public, nonces, list, msg);
      expect(bytesToHex(share)).toBe(V.round_two_outputs.find((t) => t.identifier === o.identifier)?.sig_share);
      expect(fast.verifyShare(dealt.public, list, msg, id(o.identifier), share)).toBe(true);
      shares[id(o.identifier)] = share;
    }
    const sig = fast.aggregate(dealt.public, list, msg, shares);
    expect(bytesToHex(sig)).toBe(V.final_output.sig);
    expect(fast.verify(sig, msg, hexToBytes(V.inputs.group_public_key))).toBe(true);
  });

  it('aggregate names a tampered share as the stock suite does', () => {
    const dealt = vectorDeal(fast);
    const gens = [1, 2, 3].map((n) => ({ n, ...fast.commit(dealt.secretShares[id(n)]!) }));
    const list = gens.map((g) => g.commitments);
    const shares: Record<string, Uint8Array> = {};
    for (const g of gens) shares[id(g.n)] = fast.signShare(dealt.secretShares[id(g.n)]!, dealt.public, g.nonces, list, msg);
    shares[id(2)]![0]! ^= 1;
    for (const f of [fast, stock]) expect(() => f.aggregate(dealt.public, list, msg, shares)).toThrow(expect.objectContaining({ message: 'aggregation failed', cheaters: [id(2)] }));
  });
});

/** Signs with `signer` suite per participant (alternating suites when given two), checks with `checker`. */
function signAcross(signers: Suite[], checker: Suite, dealt: { public: ReturnType<Suite['trustedDealer']>['public']; secretShares: Record<string, { identifier: string; signingShare: Uint8Array }> }, ids: string[]) {
  const gens = ids.map((i, k) => signers[k % signers.length]!.commit(dealt.secretShares[i]!));
  const list = gens.map((g) => g.commitments);
  const shares: Record<string, Uint8Array> = {};
  ids.forEach((i, k) => {
    shares[i] = signers[k % signers.length]!.signShare(dealt.secretShares[i]!, dealt.public, gens[k]!.nonces, list, msg);
    expect(checker.verifyShare(dealt.public, list, msg, i, shares[i]!)).toBe(true);
  });
  const sig = checker.aggregate(dealt.public, list, msg, shares);
  const pk = dealt.public.commitments[0]!;
  expect(stock.verify(sig, msg, pk)).toBe(true);
  expect(fast.verify(sig, msg, pk)).toBe(true);
  expect(ed25519.verify(sig, msg, pk)).toBe(true);
  return sig;
}

describe('fast and stock suites interoperate', () => {
  beforeEach(clearFastFrostCache);
  const ids = [1, 2, 3, 4, 5].map(id);

  it.each([
    ['fast deals, stock checks and signs', fast, stock],
    ['stock deals, fast checks and signs', stock, fast],
  ])('%s', (_name, dealer, other) => {
    const dealt = dealer.trustedDealer({ min: 3, max: 5 }, ids);
    for (const i of ids) expect(() => other.validateSecret(dealt.secretShares[i]!, dealt.public)).not.toThrow();
    signAcross([dealer], other, dealt, ids.slice(0, 3));
    signAcross([other], dealer, dealt, ids.slice(2, 5));
    signAcross([fast, stock], dealer, dealt, [ids[0]!, ids[2]!, ids[4]!]);
    expect(dealer.combineSecret(ids.slice(1, 4).map((i) => dealt.secretShares[i]!), { min: 3, max: 5 })).toEqual(
      other.combineSecret(ids.slice(0, 3).map((i) => dealt.secretShares[i]!), { min: 3, max: 5 }),
    );
  });

  it('a DKG with fast and stock participants gives one key both suites sign and check with', () => {
    const signers = { min: 2, max: 3 };
    const suites = [fast, stock, fast];
    const r1 = suites.map((s, k) => s.DKG.round1(id(k + 1), signers));
    const others = (k: number) => r1.filter((_, j) => j !== k).map((r) => r.public);
    const r2 = suites.map((s, k) => s.DKG.round2(r1[k]!.secret, others(k)));
    const keys = suites.map((s, k) =>
      s.DKG.round3(
        r1[k]!.secret,
        others(k),
        r2.filter((_, j) => j !== k).map((m) => m[id(k + 1)]!),
      ),
    );
    expect(keys[1]!.public).toEqual(keys[0]!.public);
    expect(keys[2]!.public).toEqual(keys[0]!.public);
    const dealt = { public: keys[0]!.public, secretShares: Object.fromEntries(keys.map((k) => [k.secret.identifier, k.secret])) };
    for (const k of keys) for (const s of [fast, stock]) expect(() => s.validateSecret(k.secret, dealt.public)).not.toThrow();
    signAcross([stock, fast], fast, dealt, [id(1), id(2)]);
    signAcross([fast], stock, dealt, [id(2), id(3)]);
  });
});

// ---------------------------------------------------------------- bad points

/** The 8 points of small order (RFC 8032 errata / libsodium's blocklist, canonical encodings). */
const SMALL_ORDER: [string, string][] = SMALL_ORDER_POINTS.points.map((p) => [p.name, p.hex]);
const somePoint = Noble.BASE.multiply(0x1234567890abcdefn);
const BAD: [string, string][] = [
  ...SMALL_ORDER,
  ['non-canonical: y = p', 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
  ['non-canonical: y = p + 1 (identity)', 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
  ['non-canonical: x = 0 with the sign bit', '0100000000000000000000000000000000000000000000000000000000000080'],
  ['not on the curve', '0200000000000000000000000000000000000000000000000000000000000000'],
  ['torsioned: valid point + order-2 point', somePoint.add(Noble.fromHex(SMALL_ORDER[1]![1])).toHex()],
  ['torsioned: valid point + order-8 point', somePoint.add(Noble.fromHex(SMALL_ORDER[4]![1])).toHex()],
];

describe('the libsodium point check agrees with the stock one', () => {
  it.each(BAD)('rejects %s', async (_kind, hex) => {
    const check = await publicPointCheck();
    expect(isValidPublicPoint(hex)).toBe(false);
    expect(check(hex)).toBe(false);
    expect(check(hex.toUpperCase())).toBe(false);
  });

  it('accepts what the stock check accepts, in either case, and refuses malformed hex', async () => {
    const check = await publicPointCheck();
    for (let i = 0; i < 50; i++) {
      const hex = Noble.BASE.multiply(Fn.fromBytes(stock.utils.randomScalar())).toHex();
      expect([check(hex), check(hex.toUpperCase())]).toEqual([isValidPublicPoint(hex), isValidPublicPoint(hex.toUpperCase())]);
      expect(check(hex)).toBe(true);
    }
    const good = somePoint.toHex();
    for (const bad of ['', good.slice(2), `${good}00`, `${good.slice(0, 62)}zz`, ` ${good.slice(1)}`]) {
      expect(isValidPublicPoint(bad)).toBe(false);
      expect(check(bad)).toBe(false);
    }
  });
});

describe('the small-order table', () => {
  it('holds 8 distinct points of small order', () => {
    const pts = SMALL_ORDER.map(([, h]) => Noble.fromHex(h));
    for (const p of pts) expect(p.isSmallOrder()).toBe(true);
    expect(new Set(pts.map((p) => p.toHex())).size).toBe(8);
  });
});

type Outcome = { ok: true; value: unknown } | { ok: false; message: string };
function outcome(fn: () => unknown): Outcome {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

/** Fresh signing material per case (signShare consumes nonces). */
function session() {
  const ids = [1, 2, 3].map(id);
  const dealt = stock.trustedDealer({ min: 2, max: 3 }, ids);
  const gens = ids.slice(0, 2).map((i) => stock.commit(dealt.secretShares[i]!));
  const list = gens.map((g) => g.commitments);
  const shares = Object.fromEntries(ids.slice(0, 2).map((i, k) => [i, stock.signShare(dealt.secretShares[i]!, dealt.public, { ...gens[k]!.nonces, hiding: gens[k]!.nonces.hiding.slice(), binding: gens[k]!.nonces.binding.slice() }, list, msg)]));
  const sig = stock.aggregate(dealt.public, list, msg, shares);
  return { ids, dealt, gens, list, shares, sig };
}
type Session = ReturnType<typeof session>;
const withGpk = (pub: Session['dealt']['public'], bad: Uint8Array) => ({ ...pub, commitments: [bad, ...pub.commitments.slice(1)] });
const withCommitment = (list: Session['list'], k: number, field: 'hiding' | 'binding', bad: Uint8Array) => list.map((c, j) => (j === k ? { ...c, [field]: bad } : c));
const freshNonces = (s: Session, k: number) => ({ hiding: s.gens[k]!.nonces.hiding.slice(), binding: s.gens[k]!.nonces.binding.slice() });

/** Each place a suite parses a point, with the point replaced by `bad`. */
const SITES: [string, (f: Suite, s: Session, bad: Uint8Array) => unknown][] = [
  ['validateSecret: group public key', (f, s, bad) => f.validateSecret(s.dealt.secretShares[s.ids[0]!]!, withGpk(s.dealt.public, bad))],
  ['validateSecret: VSS commitment', (f, s, bad) => f.validateSecret(s.dealt.secretShares[s.ids[0]!]!, { ...s.dealt.public, commitments: [s.dealt.public.commitments[0]!, bad] })],
  ['signShare: group public key', (f, s, bad) => f.signShare(s.dealt.secretShares[s.ids[0]!]!, withGpk(s.dealt.public, bad), freshNonces(s, 0), s.list, msg)],
  ['signShare: another signer’s commitment', (f, s, bad) => f.signShare(s.dealt.secretShares[s.ids[0]!]!, s.dealt.public, freshNonces(s, 0), withCommitment(s.list, 1, 'binding', bad), msg)],
  ['verifyShare: verifying share', (f, s, bad) => f.verifyShare({ ...s.dealt.public, verifyingShares: { ...s.dealt.public.verifyingShares, [s.ids[0]!]: bad } }, s.list, msg, s.ids[0]!, s.shares[s.ids[0]!]!)],
  ['verifyShare: own hiding commitment', (f, s, bad) => f.verifyShare(s.dealt.public, withCommitment(s.list, 0, 'hiding', bad), msg, s.ids[0]!, s.shares[s.ids[0]!]!)],
  ['verifyShare: another signer’s binding commitment', (f, s, bad) => f.verifyShare(s.dealt.public, withCommitment(s.list, 1, 'binding', bad), msg, s.ids[0]!, s.shares[s.ids[0]!]!)],
  ['aggregate: group public key', (f, s, bad) => f.aggregate(withGpk(s.dealt.public, bad), s.list, msg, s.shares)],
  ['aggregate: a commitment', (f, s, bad) => f.aggregate(s.dealt.public, withCommitment(s.list, 0, 'hiding', bad), msg, s.shares)],
  ['verify: public key', (f, s, bad) => f.verify(s.sig, msg, bad)],
  ['verify: R of the signature', (f, s, bad) => f.verify(Uint8Array.from([...bad, ...s.sig.subarray(32)]), msg, s.dealt.public.commitments[0]!)],
  [
    'DKG round 2: first commitment (proof of knowledge key)',
    (f, _s, bad) => {
      const signers = { min: 2, max: 2 };
      const [a, b] = [1, 2].map((n) => stock.DKG.round1(id(n), signers));
      return f.DKG.round2(a!.secret, [{ ...b!.public, commitment: [bad, b!.public.commitment[1]!] }]);
    },
  ],
  [
    'DKG round 2: second commitment',
    (f, _s, bad) => {
      const signers = { min: 2, max: 2 };
      const [a, b] = [1, 2].map((n) => stock.DKG.round1(id(n), signers));
      return f.DKG.round2(a!.secret, [{ ...b!.public, commitment: [b!.public.commitment[0]!, bad] }]);
    },
  ],
];

describe.each(SITES)('%s: bad points are rejected as by the stock suite', (_site, run) => {
  beforeEach(clearFastFrostCache);
  it.each(BAD)('%s', (_kind, hex) => {
    const s = session();
    const bad = hexToBytes(hex);
    const expected = outcome(() => run(stock, s, bad));
    // Rejected: an exception, or (verify / verifyShare) false.
    expect(expected.ok ? expected.value : false).toBe(false);
    expect(outcome(() => run(fast, s, bad))).toEqual(expected);
    // Again, now that the fast suite's parse cache has seen the good points.
    expect(outcome(() => run(fast, s, bad))).toEqual(expected);
  });
});

// ---------------------------------------------------------------- the point layer

describe('FastPoint agrees with noble', () => {
  const { Point } = createFastFrost(nativeEd25519, 4);
  const rnd = () => Fn.fromBytes(stock.utils.randomScalar());

  it('on combinations, multiplications, equality and encodings', () => {
    for (let i = 0; i < 20; i++) {
      const [a, b, c] = [rnd(), rnd(), rnd()];
      const P = Noble.BASE.multiply(a);
      const Q = Noble.BASE.multiply(b);
      const fP = Point.fromBytes(P.toBytes());
      const fQ = Point.fromBytes(Q.toBytes());
      expect(Point.BASE.multiply(a).toHex()).toBe(P.toHex());
      expect(fP.multiply(c).toHex()).toBe(P.multiply(c).toHex());
      const combo = fP.multiplyUnsafe(c).add(fQ.double()).subtract(Point.BASE.multiplyUnsafe(b));
      const expected = P.multiplyUnsafe(c).add(Q.double()).subtract(Noble.BASE.multiplyUnsafe(b));
      expect(combo.toHex()).toBe(expected.toHex());
      expect(combo.clearCofactor().toHex()).toBe(expected.clearCofactor().toHex());
      expect(combo.equals(Point.fromBytes(expected.toBytes()))).toBe(true);
      expect(combo.subtract(combo).is0()).toBe(true);
      expect(fP.add(fQ).subtract(fQ).equals(fP)).toBe(true);
      expect(fP.equals(fQ)).toBe(false);
      expect(combo.toAffine()).toEqual(expected.toAffine());
    }
  });

  it('keeps noble’s scalar range checks', () => {
    expect(() => Point.BASE.multiply(0n)).toThrow(RangeError);
    expect(() => Point.BASE.multiply(Fn.ORDER)).toThrow(RangeError);
    expect(() => Point.BASE.multiplyUnsafe(Fn.ORDER)).toThrow(RangeError);
    expect(Point.BASE.multiplyUnsafe(0n).is0()).toBe(true);
  });

  it('hands out copies: changing returned bytes does not change a remembered point', () => {
    const enc = Noble.BASE.multiply(rnd()).toBytes();
    const p = Point.fromBytes(enc);
    p.toBytes().fill(0);
    enc.fill(0);
    expect(Point.fromBytes(Noble.BASE.toBytes()).equals(Point.BASE)).toBe(true);
    expect(p.is0()).toBe(false);
  });

  it('remembers at most the configured number of encodings', () => {
    Point.clearCache();
    for (let i = 0; i < 10; i++) Point.fromBytes(Noble.BASE.multiply(rnd()).toBytes());
    expect(Point.cacheSize).toBe(4);
  });
});

describe('BoundedCache', () => {
  it('drops the least recently used entry', () => {
    const c = new BoundedCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1);
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.size).toBe(2);
  });
});
