/**
 * Chunked streaming AEAD (lib/crypto/stream-aead.ts, STREAM with AES-256-GCM): round trips
 * over any split of the input, and detection of truncation (at and between chunk boundaries),
 * reordering, duplication, appended data, tampering, a wrong key and wrong associated data.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { decryptStream, encryptStream, HEADER_BYTES, StreamDecryptError } from '../../lib/crypto/stream-aead';

const P = 32; // small chunks so tests cross many boundaries
const TAG = 16;

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(Buffer.from(b));
  return Buffer.concat(out);
}

/** Split bytes into pieces at the given cut points, as a stream would. */
function* pieces(b: Uint8Array, cuts: number[]): Generator<Uint8Array> {
  let last = 0;
  for (const c of [...cuts].sort((x, y) => x - y)) {
    if (c > last && c < b.length) {
      yield b.subarray(last, c);
      last = c;
    }
  }
  yield b.subarray(last);
}

const key = new Uint8Array(randomBytes(32));
const enc = (pt: Uint8Array, opts = {}) => collect(encryptStream(key, [pt], { chunkSize: P, ...opts }));
const dec = (ct: Uint8Array, opts = {}, k = key) => collect(decryptStream(k, [ct], opts));

/** The chunks of a stream made with chunk size P. */
function chunks(ct: Buffer): { header: Buffer; body: Buffer[] } {
  const header = ct.subarray(0, HEADER_BYTES);
  const body: Buffer[] = [];
  for (let o = HEADER_BYTES; o < ct.length; o += P + TAG) body.push(ct.subarray(o, Math.min(o + P + TAG, ct.length)));
  return { header, body };
}

describe('stream AEAD', () => {
  it('property: round trip for any length and any split of input and ciphertext', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 0, maxLength: 5 * P + 3 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 6 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 6 }),
        async (pt, cutsIn, cutsOut) => {
          const ct = await collect(encryptStream(key, pieces(pt, cutsIn), { chunkSize: P }));
          // Length: header + full chunks + a final chunk that is always present.
          expect(ct.length).toBe(HEADER_BYTES + pt.length + TAG * (Math.floor(Math.max(pt.length - 1, 0) / P) + 1));
          expect(await collect(decryptStream(key, pieces(ct, cutsOut)))).toEqual(Buffer.from(pt));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('works with Node streams through pipeline', async () => {
    const pt = randomBytes(200_000);
    const ct: Buffer[] = [];
    await pipeline(Readable.from([pt.subarray(0, 70_000), pt.subarray(70_000)]), (src: AsyncIterable<Uint8Array>) => encryptStream(key, src), async (src: AsyncIterable<Uint8Array>) => {
      for await (const b of src) ct.push(Buffer.from(b));
    });
    const back = await collect(decryptStream(key, Readable.from([Buffer.concat(ct)])));
    expect(back.equals(pt)).toBe(true);
  });

  it('detects truncation: at every chunk boundary, inside a chunk, and to the bare header', async () => {
    const ct = await enc(randomBytes(3 * P + 5));
    const { body } = chunks(ct);
    expect(body).toHaveLength(4);
    for (let cut = HEADER_BYTES; cut < ct.length; cut++) {
      await expect(dec(ct.subarray(0, cut))).rejects.toThrow(StreamDecryptError);
    }
    await expect(dec(ct.subarray(0, 10))).rejects.toThrow(StreamDecryptError);
  });

  it('an exact multiple of the chunk size ends in a full final chunk; dropping it is detected', async () => {
    const ct = await enc(randomBytes(2 * P));
    const { body } = chunks(ct);
    expect(body.map((b) => b.length)).toEqual([P + TAG, P + TAG]);
    await expect(dec(ct.subarray(0, ct.length - (P + TAG)))).rejects.toThrow(StreamDecryptError);
  });

  it('empty input is one final chunk holding only a tag', async () => {
    const ct = await enc(new Uint8Array(0));
    expect(ct.length).toBe(HEADER_BYTES + TAG);
    expect((await dec(ct)).length).toBe(0);
    await expect(dec(ct.subarray(0, HEADER_BYTES))).rejects.toThrow(StreamDecryptError);
  });

  it('detects reordered, duplicated, dropped and appended chunks', async () => {
    const ct = await enc(randomBytes(3 * P + 5));
    const { header, body } = chunks(ct);
    const [c0, c1, c2, c3] = body as [Buffer, Buffer, Buffer, Buffer];
    for (const bad of [
      [c1, c0, c2, c3],
      [c0, c2, c1, c3],
      [c0, c0, c1, c2, c3],
      [c0, c2, c3],
      [c0, c1, c2, c3, c3],
      [c0, c1, c2, c3, Buffer.alloc(1)],
    ]) {
      await expect(dec(Buffer.concat([header, ...bad]))).rejects.toThrow(StreamDecryptError);
    }
  });

  it('chunks of one stream cannot be spliced into another under the same key', async () => {
    const pt = randomBytes(2 * P + 1);
    const a = chunks(await enc(pt));
    const b = chunks(await enc(pt));
    await expect(dec(Buffer.concat([a.header, a.body[0]!, b.body[1]!, a.body[2]!]))).rejects.toThrow(StreamDecryptError);
    await expect(dec(Buffer.concat([b.header, ...a.body]))).rejects.toThrow(StreamDecryptError);
  });

  it('detects any flipped bit, in the header or any chunk', async () => {
    const ct = await enc(randomBytes(2 * P + 7));
    for (let i = 0; i < ct.length; i++) {
      const bad = Buffer.from(ct);
      bad[i] = (bad[i] as number) ^ 0x80;
      await expect(dec(bad)).rejects.toThrow(StreamDecryptError);
    }
  });

  it('releases no plaintext from a chunk before it authenticates', async () => {
    const pt = randomBytes(3 * P);
    const ct = Buffer.from(await enc(pt));
    const at = HEADER_BYTES + (P + TAG) + 3; // inside the second chunk
    ct[at] = (ct[at] as number) ^ 1;
    const got: Buffer[] = [];
    await expect(
      (async () => {
        for await (const b of decryptStream(key, [ct])) got.push(Buffer.from(b));
      })(),
    ).rejects.toThrow(StreamDecryptError);
    expect(Buffer.concat(got).equals(pt.subarray(0, P))).toBe(true);
  });

  it('refuses a wrong key and wrong associated data', async () => {
    const aad = new TextEncoder().encode('envelope digest');
    const ct = await enc(randomBytes(50), { associatedData: aad });
    expect((await dec(ct, { associatedData: aad })).length).toBe(50);
    await expect(dec(ct)).rejects.toThrow(StreamDecryptError);
    await expect(dec(ct, { associatedData: new TextEncoder().encode('other') })).rejects.toThrow(StreamDecryptError);
    await expect(dec(ct, { associatedData: aad }, new Uint8Array(randomBytes(32)))).rejects.toThrow(StreamDecryptError);
  });

  it('uses a fresh salt and nonce prefix per stream', async () => {
    const pt = randomBytes(10);
    const [a, b] = [await enc(pt), await enc(pt)];
    expect(a.subarray(9, HEADER_BYTES).equals(b.subarray(9, HEADER_BYTES))).toBe(false);
    expect(a.subarray(HEADER_BYTES).equals(b.subarray(HEADER_BYTES))).toBe(false);
  });

  it('refuses bad parameters', async () => {
    await expect(collect(encryptStream(key, [new Uint8Array(1)], { chunkSize: 8 }))).rejects.toThrow(RangeError);
    await expect(collect(encryptStream(new Uint8Array(16), [new Uint8Array(1)]))).rejects.toThrow(RangeError);
  });
});
