/** The pure pieces of DKG, signing and resharing around noble's FROST. */
import {
  checkRound1Package, decodeState, encodeState, evaluateCommitment, frost, isValidDkgShare, isValidPublicPoint, lagrangeAtZero,
  publicOfScalar, publicPackageToHex, round1SetDigest, round1ToHex, scalarSum, scalePoint, sumCommitments, weightedShare,
} from '../../lib/crypto/frost';
import { identifierFor, isValidShare } from '../../lib/crypto/shares';
import { toHex } from '../../lib/encoding';
import { SessionVault } from '../../lib/node/sessions';
import { SessionError } from '../../lib/errors';
import { MemoryStore } from '../support/fakes';

const ids = (n: number) => Array.from({ length: n }, (_, i) => identifierFor(i + 1));

describe('DKG helpers', () => {
  it('names the bad package: wrong proof, wrong commitment count, identity point', () => {
    const r = frost.DKG.round1(identifierFor(1), { min: 3, max: 5 });
    const good = round1ToHex(r.public as never);
    expect(checkRound1Package(good, 3)).toBeNull();
    const otherProof = round1ToHex(frost.DKG.round1(identifierFor(2), { min: 3, max: 5 }).public as never).proofOfKnowledge;
    expect(checkRound1Package({ ...good, proofOfKnowledge: otherProof }, 3)).toMatch(/proof of knowledge/);
    expect(checkRound1Package({ ...good, commitment: good.commitment.slice(1) }, 3)).toMatch(/commitments/);
    expect(checkRound1Package({ ...good, commitment: ['01' + '00'.repeat(31), ...good.commitment.slice(1)] }, 3)).not.toBeNull();
  });

  it('digests a round-1 set independently of order', () => {
    const set = ids(3).map((id) => round1ToHex(frost.DKG.round1(id, { min: 2, max: 3 }).public as never));
    expect(round1SetDigest([set[2]!, set[0]!, set[1]!])).toBe(round1SetDigest(set));
    expect(round1SetDigest(set.slice(0, 2))).not.toBe(round1SetDigest(set));
  });

  it('round-trips noble DKG state (bigints, bytes) through JSON and finishes the protocol with it', () => {
    const S = { min: 2, max: 3 };
    const r1 = ids(3).map((id) => frost.DKG.round1(id, S));
    const restored = r1.map((r) => ({ ...r, secret: decodeState<typeof r.secret>(encodeState(r.secret)) }));
    const r2 = restored.map((r, i) => frost.DKG.round2(r.secret, r1.filter((_, j) => j !== i).map((x) => x.public)));
    const again = restored.map((r) => decodeState<typeof r.secret>(encodeState(r.secret)));
    const keys = again.map((sec, i) => frost.DKG.round3(sec, r1.filter((_, j) => j !== i).map((x) => x.public), r2.filter((_, j) => j !== i).map((m) => m[ids(3)[i]!]!)));
    expect(new Set(keys.map((k) => toHex(k.public.commitments[0]!))).size).toBe(1);
    // Each received share checks against its sender's commitment, and not against another's.
    const share = r2[1]![ids(3)[0]!]!.signingShare;
    expect(isValidDkgShare(ids(3)[0]!, share, r1[1]!.public.commitment.map(toHex), 2, 3)).toBe(true);
    expect(isValidDkgShare(ids(3)[0]!, share, r1[2]!.public.commitment.map(toHex), 2, 3)).toBe(false);
  });

  it('rejects identity, non-canonical and off-curve points', () => {
    expect(isValidPublicPoint(publicOfScalar(frost.utils.randomScalar()))).toBe(true);
    expect(isValidPublicPoint('01' + '00'.repeat(31))).toBe(false);
    expect(isValidPublicPoint('ff'.repeat(32))).toBe(false);
    expect(isValidPublicPoint('00'.repeat(31))).toBe(false);
  });
});

describe('resharing arithmetic (all through noble)', () => {
  it('λ-weighted re-dealing keeps the group key and yields a valid new package', () => {
    const old = ids(3);
    const deal = frost.trustedDealer({ min: 2, max: 3 }, old);
    const pub = publicPackageToHex(deal.public);
    const dealers = [old[0]!, old[2]!];
    const to = ids(5);
    const parts = dealers.map((id) => {
      const l = lagrangeAtZero(dealers, id);
      const d = frost.trustedDealer({ min: 3, max: 5 }, to, weightedShare(deal.secretShares[id]!.signingShare, l));
      expect(toHex(d.public.commitments[0]!)).toBe(scalePoint(pub.verifyingShares[id]!, l));
      return d;
    });
    const commitments = sumCommitments(parts.map((d) => d.public.commitments.map(toHex)));
    expect(commitments[0]).toBe(pub.commitments[0]);
    const shares = to.map((j) => scalarSum(parts.map((d) => d.secretShares[j]!.signingShare)));
    const next = { threshold: 3, total: 5, commitments, verifyingShares: Object.fromEntries(to.map((j, k) => [j, evaluateCommitment(commitments, j)])) };
    to.forEach((j, k) => {
      expect(publicOfScalar(shares[k]!)).toBe(next.verifyingShares[j]);
      expect(isValidShare(next, { identifier: j, signingShare: shares[k]! })).toBe(true);
    });
  });
});

describe('session vault', () => {
  it('seals state, expires it, and refuses a session of another node', async () => {
    const store = new MemoryStore();
    const key = new Uint8Array(32).fill(3);
    const vault = new SessionVault(store, 'node1', key, 60);
    await vault.save('sign', 'session-0000000000001', { expiresAt: Date.now() + 60_000, x: 1n });
    expect(await vault.load<{ expiresAt: number; x: bigint }>('sign', 'session-0000000000001')).toMatchObject({ x: 1n });
    expect([...store.sessions.values()][0]).not.toMatch(/"x"/);
    await vault.save('sign', 'session-0000000000002', { expiresAt: Date.now() - 1 });
    await expect(vault.load('sign', 'session-0000000000002')).rejects.toMatchObject({ code: 'session_expired' });
    const other = new SessionVault(store, 'node2', key, 60);
    await expect(other.load('sign', 'session-0000000000001')).rejects.toBeInstanceOf(SessionError);
  });
});
