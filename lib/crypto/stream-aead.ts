/**
 * Chunked streaming AEAD for data of any size: the nonce-based STREAM construction of Hoang,
 * Reyhanitabar, Rogaway and Vizár ("Online Authenticated-Encryption and its Nonce-Reuse
 * Misuse-Resistance", CRYPTO 2015, §7), instantiated with AES-256-GCM as Tink's
 * AES-GCM-HKDF streaming AEAD does (fresh per-stream key by HKDF, nonce = prefix ‖ counter ‖
 * last-flag). Each chunk is sealed under nonce
 *
 *   N_i = noncePrefix (7 bytes) ‖ u32be(i) ‖ (0x01 for the final chunk, else 0x00)
 *
 * so a reordered chunk (wrong i), a dropped tail (the new last chunk was sealed with flag 0),
 * an appended chunk (nothing may follow the flag-1 chunk) and any altered byte all fail GCM
 * authentication. The header and the caller's associated data are each chunk's AAD.
 *
 * Stream format, version 1:
 *
 *   offset  length  field
 *   0       4       magic "FKMS"
 *   4       1       version = 0x01
 *   5       4       chunk size P (u32be; plaintext bytes per non-final chunk, 16 .. 2^24)
 *   9       32      salt
 *   41      7       nonce prefix
 *   48      ...     chunks: every non-final chunk is exactly P + 16 bytes (ciphertext ‖ tag);
 *                   the final chunk is 16 .. P + 16 bytes and is always present, so the end
 *                   of the stream is authenticated too. It holds 1 .. P plaintext bytes, or
 *                   none when the whole input is empty (an input of k·P bytes ends in a full
 *                   final chunk, never in an empty one).
 *
 *   chunk key = HKDF-SHA256(ikm = key, salt, info = "fedkms/stream/v1" ‖ header[0..9])
 *   AAD_i     = header (48 bytes) ‖ associated data
 *
 * A fresh salt gives every stream its own chunk key, so one data key may encrypt many streams
 * without nonce reuse. At most 2^32 chunks per stream.
 *
 * Decryption releases each chunk's plaintext as soon as that chunk authenticates; whether the
 * stream is *complete* is only known when the iterator finishes without throwing. Callers that
 * must leave no partial output (the CLI) write to a temporary place and commit only then.
 *
 * Pure: no I/O. Sources are async iterables of bytes (a Node Readable is one); the results are
 * async generators (pass them to `Readable.from` or `stream.pipeline`).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { DecryptError } from './aead.js';

export const STREAM_VERSION = 1;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 16;
export const MAX_CHUNK_SIZE = 1 << 24;
export const HEADER_BYTES = 48;
const TAG_BYTES = 16;
const PREFIX_BYTES = 7;
const MAGIC = Buffer.from('FKMS', 'ascii');
const MAX_CHUNKS = 2 ** 32;

export interface StreamOptions {
  /** Bound to every chunk (e.g. the digest of the envelope that wraps the data key). */
  associatedData?: Uint8Array;
}

/** Raised when the stream is truncated, reordered, extended or altered, or its header is bad. */
export class StreamDecryptError extends DecryptError {}

function chunkKey(key: Uint8Array, header: Buffer): Buffer {
  if (key.length !== 32) throw new RangeError('stream key must be 32 bytes');
  const info = Buffer.concat([Buffer.from('fedkms/stream/v1', 'ascii'), header.subarray(0, 9)]);
  return Buffer.from(hkdfSync('sha256', key, header.subarray(9, 41), info, 32));
}

function nonce(prefix: Buffer, i: number, last: boolean): Buffer {
  if (i >= MAX_CHUNKS) throw new RangeError('stream too long: more than 2^32 chunks');
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(i, PREFIX_BYTES);
  n[11] = last ? 1 : 0;
  return n;
}

/** Accumulates incoming byte chunks and hands out exact-length slices. */
class Buffered {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Uint8Array): void {
    if (b.length === 0) return;
    this.parts.push(Buffer.from(b)); // a copy: a source may reuse its buffers
    this.length += b.length;
  }
  take(n: number): Buffer {
    const all = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.length);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.parts = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
  }
}

/** Encrypt a byte stream under a 32-byte key. Yields the header, then one output per chunk. */
export async function* encryptStream(
  key: Uint8Array,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: StreamOptions & { chunkSize?: number } = {},
): AsyncGenerator<Uint8Array> {
  const P = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(P) || P < MIN_CHUNK_SIZE || P > MAX_CHUNK_SIZE) throw new RangeError('chunk size out of range');
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[4] = STREAM_VERSION;
  header.writeUInt32BE(P, 5);
  randomBytes(32).copy(header, 9);
  const prefix = randomBytes(PREFIX_BYTES);
  prefix.copy(header, 41);
  const aad = Buffer.concat([header, opts.associatedData ?? new Uint8Array(0)]);
  const k = chunkKey(key, header);
  let i = 0;
  const seal = (pt: Buffer, last: boolean): Uint8Array => {
    const c = createCipheriv('aes-256-gcm', k, nonce(prefix, i++, last));
    c.setAAD(aad);
    return new Uint8Array(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
  };
  try {
    yield new Uint8Array(header);
    const buf = new Buffered();
    for await (const piece of source) {
      buf.push(piece);
      // Strictly more than P: a chunk is final only once the source ends, so hold P bytes back.
      while (buf.length > P) yield seal(buf.take(P), false);
    }
    yield seal(buf.take(buf.length), true);
  } finally {
    k.fill(0);
  }
}

/**
 * Decrypt a stream made by encryptStream. Yields plaintext chunk by chunk; throws
 * StreamDecryptError at the first chunk that fails, or at the end if the stream stops
 * before its final chunk.
 */
export async function* decryptStream(
  key: Uint8Array,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: StreamOptions = {},
): AsyncGenerator<Uint8Array> {
  const buf = new Buffered();
  let header: Buffer | null = null;
  let k: Buffer | null = null;
  let P = 0;
  let prefix = Buffer.alloc(0);
  let aad = Buffer.alloc(0);
  let i = 0;
  const open = (ct: Buffer, last: boolean): Uint8Array => {
    try {
      const d = createDecipheriv('aes-256-gcm', k as Buffer, nonce(prefix, i++, last));
      d.setAAD(aad);
      d.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
      return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - TAG_BYTES)), d.final()]));
    } catch {
      throw new StreamDecryptError();
    }
  };
  const readHeader = () => {
    const h = buf.take(HEADER_BYTES);
    const size = h.readUInt32BE(5);
    if (!h.subarray(0, 4).equals(MAGIC) || h[4] !== STREAM_VERSION || size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE) {
      throw new StreamDecryptError();
    }
    header = h;
    P = size;
    prefix = Buffer.from(h.subarray(41, 48));
    aad = Buffer.concat([h, opts.associatedData ?? new Uint8Array(0)]);
    k = chunkKey(key, h);
  };
  try {
    for await (const piece of source) {
      buf.push(piece);
      if (!header && buf.length >= HEADER_BYTES) readHeader();
      // More than one full chunk buffered: the first cannot be the final one.
      while (header && buf.length > P + TAG_BYTES) yield open(buf.take(P + TAG_BYTES), false);
    }
    if (!header) throw new StreamDecryptError();
    if (buf.length < TAG_BYTES) throw new StreamDecryptError(); // no final chunk: truncated
    yield open(buf.take(buf.length), true);
  } finally {
    (k as Buffer | null)?.fill(0);
  }
}
