/**
 * Threshold decryption (lib/crypto/threshold-decrypt.ts) with keys from the project's dealer
 * (lib/crypto/shares.ts): round trip, any t of n partials decrypt and no t−1 do, the context
 * and the ciphertext are bound, a lying node is caught by its proof and named, and a partial
 * cannot be replayed into another request or ciphertext.
 */
import fc from 'fast-check';
import { ed25519, ristretto255 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/curves/utils.js';
import { DecryptError } from '../../lib/crypto/aead';
import { dealKey, identifierFor, type Share } from '../../lib/crypto/shares';
import {
  CiphertextError,
  combinePartials,
  decrypt,
  encrypt,
  encryptionKeyFromPublicPackage,
  envelopeFromJson,
  envelopeToJson,
  openWithSharedPoint,
  parseEnvelope,
  partialDecrypt,
  ristrettoFromEd25519,
  ThresholdDecryptError,
  verifyEnvelope,
  verifyPartial,
  type EncryptionContext,
  type EncryptionPublicKey,
  type PartialDecryption,
} from '../../lib/crypto/threshold-decrypt';
import { deserializeElement, Fn } from '../../lib/crypto/dleq';

const subsets = <T>(xs: T[], k: number): T[][] =>
  k === 0 ? [[]] : xs.flatMap((x, i) => subsets(xs.slice(i + 1), k - 1).map((s) => [x, ...s]));
const text = (s: string) => new TextEncoder().encode(s);

function setup(t: number, n: number, keyId = 'enc-key', keyVersion = 1) {
  const ids = Array.from({ length: n }, (_, i) => identifierFor(i + 1));
  const dealt = dealKey({ keyId, threshold: t, identifiers: ids, secret: new Uint8Array([0]) });
  return { key: encryptionKeyFromPublicPackage(keyId, keyVersion, dealt.publicPackage), shares: dealt.shares, pub: dealt.publicPackage };
}

const context = { tenant: 'acme', purpose: 'backup' };
const request = { requester: 'q1Z6s2m0b3B7bbzYkq7Jb3t2kJHhdZ0K1bDq3bq5jVU=', requestId: 'req-1' };
const partialsFor = (key: EncryptionPublicKey, shares: Share[], envelope: Uint8Array, req = request, ctx: EncryptionContext = context) =>
  shares.map((share) => partialDecrypt({ key, share, envelope, context: ctx, request: req }));

describe('keys: Ed25519 public packages as ristretto255', () => {
  it('a torsion-free Ed25519 s·B converts to the ristretto255 s·G, for the group key and every verifying share', () => {
    const { key, shares, pub } = setup(2, 3);
    for (const sh of shares) {
      const si = Fn.fromBytes(sh.signingShare);
      expect(key.verifyingShares[sh.identifier]).toBe(bytesToHex(ristretto255.Point.BASE.multiply(si).toBytes()));
    }
    expect(deserializeElement(hexToBytes(key.groupKey)).equals(ristrettoFromEd25519(hexToBytes(pub.commitments[0]!)))).toBe(true);
  });

  it('refuses points with a torsion component and the identity', () => {
    const torsion = ed25519.Point.fromHex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05');
    const mixed = ed25519.Point.BASE.multiply(5n).add(torsion);
    expect(() => ristrettoFromEd25519(mixed.toBytes())).toThrow(/prime-order/);
    expect(() => ristrettoFromEd25519(ed25519.Point.ZERO.toBytes())).toThrow(/prime-order/);
  });
});

describe('envelope', () => {
  const { key } = setup(2, 3);

  it('is self-describing, versioned, and its JSON view round-trips exactly', () => {
    const env = encrypt(key, text('data key bytes'), context);
    const e = parseEnvelope(env);
    expect(Buffer.from(env.subarray(0, 4)).toString()).toBe('FKME');
    expect(e).toMatchObject({ version: 1, scheme: 1, keyId: 'enc-key', keyVersion: 1 });
    expect(env.length).toBe(7 + 'enc-key'.length + 4 + 96 + 64 + 12 + 14 + 16);
    const j = envelopeToJson(env);
    expect(j.scheme).toBe('TDH2-ristretto255-SHA512/HKDF-SHA256/A256GCM');
    expect(Buffer.from(envelopeFromJson(JSON.parse(JSON.stringify(j)))).equals(Buffer.from(env))).toBe(true);
  });

  it('strict parsing: bad magic, version, scheme, key id; truncation', () => {
    const env = encrypt(key, text('x'), context);
    const with_ = (i: number, b: number) => {
      const c = Uint8Array.from(env);
      c[i] = b;
      return c;
    };
    expect(() => parseEnvelope(with_(0, 0))).toThrow(CiphertextError);
    expect(() => parseEnvelope(with_(4, 2))).toThrow(/format version 2/);
    expect(() => parseEnvelope(with_(5, 9))).toThrow(/scheme 9/);
    expect(() => parseEnvelope(with_(7, 'A'.charCodeAt(0)))).toThrow(CiphertextError);
    expect(() => parseEnvelope(env.subarray(0, env.length - 17))).toThrow(/truncated/);
  });

  it('every ciphertext uses a fresh R and nonce', () => {
    const a = parseEnvelope(encrypt(key, text('same'), context));
    const b = parseEnvelope(encrypt(key, text('same'), context));
    expect(bytesToHex(a.R)).not.toBe(bytesToHex(b.R));
    expect(bytesToHex(a.nonce)).not.toBe(bytesToHex(b.nonce));
  });
});

describe('threshold decryption', () => {
  it('round trip with exactly t partials; no liars', () => {
    const { key, shares } = setup(3, 5);
    const env = encrypt(key, text('attack at dawn'), context);
    const out = decrypt({ key, envelope: env, context, request, partials: partialsFor(key, shares.slice(2), env) });
    expect(new TextDecoder().decode(out.plaintext)).toBe('attack at dawn');
    expect(out.liars).toEqual([]);
    expect(out.used).toEqual(shares.slice(2).map((s) => s.identifier));
  });

  it('property: any t of n partials decrypt; any t−1 do not', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 4 }), // noble's dealer needs t >= 2
        fc.integer({ min: 0, max: 2 }),
        fc.uint8Array({ minLength: 0, maxLength: 100 }),
        fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 3 }),
        (t, extra, plaintext, ctx) => {
          const n = t + extra;
          const { key, shares } = setup(t, n);
          const env = encrypt(key, plaintext, ctx);
          const all = partialsFor(key, shares, env, request, ctx);
          for (const sub of subsets(all, t)) {
            const out = decrypt({ key, envelope: env, context: ctx, request, partials: sub });
            expect(Buffer.from(out.plaintext)).toEqual(Buffer.from(plaintext));
          }
          for (const sub of subsets(all, t - 1)) {
            expect(() => decrypt({ key, envelope: env, context: ctx, request, partials: sub })).toThrow(ThresholdDecryptError);
            // Interpolating t−1 partials anyway gives some point other than r·Y: the AEAD refuses it.
            if (sub.length > 0) {
              const Z = combinePartials(sub.map((p) => ({ identifier: p.identifier, partial: deserializeElement(hexToBytes(p.partial)) })));
              expect(() => openWithSharedPoint(key, env, Z)).toThrow(DecryptError);
            }
          }
        },
      ),
      { numRuns: 12 },
    );
  });

  it('a wrong encryption context fails, at the client and at every node', () => {
    const { key, shares } = setup(2, 3);
    const env = encrypt(key, text('secret'), context);
    const parts = partialsFor(key, shares, env);
    const wrongs: EncryptionContext[] = [{ tenant: 'acme' }, { ...context, purpose: 'other' }, { ...context, extra: '' }, {}];
    for (const wrong of wrongs) {
      expect(() => decrypt({ key, envelope: env, context: wrong, request, partials: parts })).toThrow(/context does not match/);
      expect(() => partialDecrypt({ key, share: shares[0]!, envelope: env, context: wrong, request })).toThrow(CiphertextError);
    }
    // Key order does not matter: the context is hashed in canonical JSON.
    const reordered = { purpose: 'backup', tenant: 'acme' };
    expect(new TextDecoder().decode(decrypt({ key, envelope: env, context: reordered, request, partials: parts }).plaintext)).toBe('secret');
  });

  it('a tampered ciphertext fails: every byte, at the client and at the nodes', () => {
    const { key, shares } = setup(2, 3);
    const env = encrypt(key, text('tamper me'), context);
    const parts = partialsFor(key, shares, env);
    for (let i = 0; i < env.length; i++) {
      const bad = Uint8Array.from(env);
      bad[i] = (bad[i] as number) ^ 0x01;
      expect(() => decrypt({ key, envelope: bad, context, request, partials: parts })).toThrow();
      expect(() => partialDecrypt({ key, share: shares[0]!, envelope: bad, context, request })).toThrow();
    }
  });

  it('an R lifted from one ciphertext into a header with another context is refused by the nodes (validity proof)', () => {
    // The TDH2 validity proof needs r: re-framing someone else's R under another context cannot be proven.
    const { key, shares } = setup(2, 3);
    const victim = parseEnvelope(encrypt(key, text('victim'), context));
    const lifted = envelopeFromJson({ ...envelopeToJson(encrypt(key, text('mine'), { tenant: 'evil' })), R: Buffer.from(victim.R).toString('base64'), Rbar: Buffer.from(victim.Rbar).toString('base64') });
    expect(() => partialDecrypt({ key, share: shares[0]!, envelope: lifted, context: { tenant: 'evil' }, request })).toThrow(/validity proof/);
  });

  it('a ciphertext for another key or key version is refused', () => {
    const a = setup(2, 3, 'key-a');
    const env = encrypt(a.key, text('x'), context);
    expect(() => verifyEnvelope({ ...a.key, keyVersion: 2 }, env, context)).toThrow(/another key/);
    expect(() => verifyEnvelope({ ...a.key, keyId: 'key-b' }, env, context)).toThrow(/another key/);
    // Same id and version but a different group key: the validity proof names the group key.
    const b = setup(2, 3, 'key-a');
    expect(() => verifyEnvelope(b.key, env, context)).toThrow(/validity proof/);
  });

  it('a lying node (wrong D_i) is rejected by its proof and named; decryption still succeeds with t honest', () => {
    const { key, shares } = setup(3, 5);
    const env = encrypt(key, text('liars lose'), context);
    const parts = partialsFor(key, shares, env);
    const R = deserializeElement(parseEnvelope(env).R);
    // Node 2 answers with (s_2 + 1)·R but replays its honest proof; node 4 proves a partial of its own choosing with its share's proof.
    const liar2: PartialDecryption = { ...parts[1]!, partial: bytesToHex(R.multiply(Fn.add(Fn.fromBytes(shares[1]!.signingShare), 1n)).toBytes()) };
    const liar4: PartialDecryption = { ...parts[3]!, partial: parts[0]!.partial };
    const unknown: PartialDecryption = { ...parts[4]!, identifier: identifierFor(9) };
    const garbage: PartialDecryption = { ...parts[2]!, proof: 'zz' };
    expect(verifyPartial(key, env, request, liar2)).toBe(false);
    const out = decrypt({ key, envelope: env, context, request, partials: [parts[0]!, liar2, garbage, liar4, unknown, parts[4]!, parts[2]!, parts[3]!] });
    expect(new TextDecoder().decode(out.plaintext)).toBe('liars lose');
    expect(out.liars).toEqual([
      { identifier: shares[1]!.identifier, reason: 'bad_proof' },
      { identifier: shares[2]!.identifier, reason: 'malformed' },
      { identifier: shares[3]!.identifier, reason: 'bad_proof' },
      { identifier: identifierFor(9), reason: 'unknown_identifier' },
    ]);
    expect(out.used).toEqual([shares[0]!.identifier, shares[4]!.identifier, shares[2]!.identifier]);
  });

  it('too many liars: the error names them all', () => {
    const { key, shares } = setup(3, 4);
    const env = encrypt(key, text('x'), context);
    const parts = partialsFor(key, shares, env);
    const lies = parts.slice(0, 2).map((p) => ({ ...p, partial: parts[3]!.partial }));
    try {
      decrypt({ key, envelope: env, context, request, partials: [...lies, parts[2]!, parts[3]!] });
      throw new Error('should not decrypt');
    } catch (e) {
      expect(e).toBeInstanceOf(ThresholdDecryptError);
      expect((e as ThresholdDecryptError).liars.map((l) => l.identifier)).toEqual(shares.slice(0, 2).map((s) => s.identifier));
    }
  });

  it('a duplicate partial counts once', () => {
    const { key, shares } = setup(2, 3);
    const env = encrypt(key, text('x'), context);
    const [p] = partialsFor(key, shares.slice(0, 1), env);
    expect(() => decrypt({ key, envelope: env, context, request, partials: [p!, p!] })).toThrow(ThresholdDecryptError);
  });

  it('a partial proof cannot be replayed into another request, requester or ciphertext', () => {
    const { key, shares } = setup(2, 3);
    const env = encrypt(key, text('x'), context);
    const [p] = partialsFor(key, shares.slice(0, 1), env);
    expect(verifyPartial(key, env, request, p!)).toBe(true);
    expect(verifyPartial(key, env, { ...request, requestId: 'req-2' }, p!)).toBe(false);
    expect(verifyPartial(key, env, { requester: 'someone-else' }, p!)).toBe(false);
    // Same R re-wrapped into another envelope (same key): the ciphertext digest differs.
    const other = encrypt(key, text('x'), context);
    expect(verifyPartial(key, other, request, p!)).toBe(false);
    // Presented as another node's answer.
    expect(verifyPartial(key, env, request, { ...p!, identifier: shares[1]!.identifier })).toBe(false);
  });

  it('a node refuses a share that does not match its verifying share', () => {
    const { key, shares } = setup(2, 3);
    const env = encrypt(key, text('x'), context);
    const wrong = { identifier: shares[0]!.identifier, signingShare: shares[1]!.signingShare };
    expect(() => partialDecrypt({ key, share: wrong, envelope: env, context, request })).toThrow(/verifying share/);
  });
});
