import { generateX25519, open, parseX25519Public, seal } from '../../lib/crypto/seal';
import { aesGcmOpen, aesGcmSeal } from '../../lib/crypto/aead';
import { canonicalRequest, generateSigningKey, signRequest, verifyRequestSignature, type RequestParts } from '../../lib/crypto/request-signing';
import { fromB64, toB64 } from '../../lib/encoding';
import { BadRequestError } from '../../lib/errors';
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed25519KeyPair, ed25519Sign, ed25519Verify } from '../../lib/crypto/ed25519-signature';
import SMALL_ORDER_POINTS from '../../fixtures/ed25519-small-order-points.test-vectors.json';

const SMALL_ORDER = SMALL_ORDER_POINTS.points.map((p) => p.hex);

describe('sealing to an X25519 key', () => {
  const kp = generateX25519();
  const msg = Uint8Array.from([1, 2, 3, 4]);

  it('round-trips for the recipient only, under the same AAD', () => {
    const box = seal(kp.publicKey, msg, 'ctx');
    expect([...open(kp.privateKey, box, 'ctx')]).toEqual([1, 2, 3, 4]);
    expect(() => open(kp.privateKey, box, 'other ctx')).toThrow();
    expect(() => open(generateX25519().privateKey, box, 'ctx')).toThrow();
    const flipped = { ...box, ct: toB64(fromB64(box.ct).map((b, i) => (i === 0 ? b ^ 1 : b))) };
    expect(() => open(kp.privateKey, flipped, 'ctx')).toThrow();
  });

  it('refuses small-order and malformed recipient keys', () => {
    expect(() => seal(new Uint8Array(32), msg, 'ctx')).toThrow(BadRequestError);
    expect(() => parseX25519Public(toB64(new Uint8Array(31)))).toThrow(BadRequestError);
    expect(() => parseX25519Public('not base64!')).toThrow(BadRequestError);
  });

  it('AES-GCM rejects a wrong key or AAD', () => {
    const key = new Uint8Array(32).fill(7);
    const box = aesGcmSeal(key, msg, 'a');
    expect([...aesGcmOpen(key, box, 'a')]).toEqual([...msg]);
    expect(() => aesGcmOpen(key, box, 'b')).toThrow();
    expect(() => aesGcmOpen(new Uint8Array(32), box, 'a')).toThrow();
  });
});

describe('signed node requests', () => {
  const { privateKey, publicKey } = generateSigningKey();
  const parts: RequestParts = { method: 'GET', audience: 'node1', path: '/fragment', query: { keyId: 'k', recipient: 'r' }, body: '', timestamp: '1700000000000', requestId: 'abcdefabcdefabcdef' };

  it('verifies, and any changed field breaks the signature', () => {
    const sig = signRequest(privateKey, parts);
    expect(verifyRequestSignature(publicKey, parts, sig)).toBe(true);
    const changes: Partial<RequestParts>[] = [{ method: 'PUT' }, { audience: 'node2' }, { path: '/keys' }, { query: { keyId: 'x', recipient: 'r' } }, { body: '{}' }, { timestamp: '1700000000001' }, { requestId: 'abcdefabcdefabcdee' }];
    for (const c of changes) expect(verifyRequestSignature(publicKey, { ...parts, ...c }, sig)).toBe(false);
    expect(verifyRequestSignature(generateSigningKey().publicKey, parts, sig)).toBe(false);
    expect(verifyRequestSignature(publicKey, parts, 'garbage')).toBe(false);
  });

  it('canonicalises the query order', () => {
    expect(canonicalRequest({ ...parts, query: { recipient: 'r', keyId: 'k' } })).toBe(canonicalRequest(parts));
  });
});

describe('Ed25519 through node:crypto agrees with noble', () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const msg = new TextEncoder().encode('FEDKMS-REQ-1\nGET\nnode1\n/fragment');

  it('makes the same signatures, and each verifies the other', () => {
    for (let i = 0; i < 20; i++) {
      const { privateKey, publicKey } = ed25519KeyPair();
      expect(Buffer.from(ed25519.getPublicKey(privateKey))).toEqual(Buffer.from(publicKey));
      const ours = ed25519Sign(privateKey, msg);
      expect(Buffer.from(ours)).toEqual(Buffer.from(ed25519.sign(msg, privateKey)));
      expect(ed25519Verify(ours, msg, publicKey)).toBe(true);
      expect(ed25519.verify(ours, msg, publicKey, { zip215: false })).toBe(true);
    }
  });

  it('rejects what strict noble rejects: tampering, S + L, a non-canonical R, wrong lengths, small-order and malformed keys', () => {
    const { privateKey, publicKey } = ed25519KeyPair();
    const sig = ed25519Sign(privateKey, msg);
    const flipped = sig.slice();
    flipped[10]! ^= 1;
    const s = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`);
    const sPlusL = Uint8Array.from([...sig.subarray(0, 32), ...Buffer.from((s + L).toString(16).padStart(64, '0'), 'hex').reverse()]);
    const nonCanonicalR = Uint8Array.from([...Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'), ...sig.subarray(32)]);
    const cases: [Uint8Array, Uint8Array, Uint8Array][] = [
      [flipped, msg, publicKey],
      [sig, new TextEncoder().encode('another message'), publicKey],
      [sPlusL, msg, publicKey],
      [nonCanonicalR, msg, publicKey],
      [sig.subarray(0, 63), msg, publicKey],
      [sig, msg, publicKey.subarray(0, 31)],
      [sig, msg, ed25519KeyPair().publicKey],
      ...SMALL_ORDER.map((hex): [Uint8Array, Uint8Array, Uint8Array] => [sig, msg, Buffer.from(hex, 'hex')]),
      [sig, msg, Buffer.from('0200000000000000000000000000000000000000000000000000000000000000', 'hex')],
    ];
    for (const [sg, m, pk] of cases) {
      expect(ed25519Verify(sg, m, pk)).toBe(false);
      let noble = false;
      try {
        noble = ed25519.verify(sg, m, pk, { zip215: false });
      } catch {
        noble = false;
      }
      expect(noble).toBe(false);
    }
  });
});
