import { generateX25519, open, parseX25519Public, seal } from '../../lib/crypto/seal';
import { aesGcmOpen, aesGcmSeal } from '../../lib/crypto/aead';
import { canonicalRequest, generateSigningKey, signRequest, verifyRequestSignature, type RequestParts } from '../../lib/crypto/request-signing';
import { fromB64, toB64 } from '../../lib/encoding';
import { BadRequestError } from '../../lib/errors';

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
