/**
 * Envelope encryption with a federated key that is never rebuilt (issue #14), client side.
 *
 * Encrypt needs no node: `encryptTo` encrypts to the key's group public key, as published by
 * `GET /keys/{id}/public` (lib/crypto/threshold-decrypt.ts).
 *
 * Decrypt by threshold, end to end: a fresh X25519 key for this one request; the coordinator
 * relays to t nodes, each of which checks this client's own signed request and the key's
 * policy, then seals its partial and DLEQ proof to that key. Here every box is opened and
 * every proof verified against the verifying shares of the key's public package (the quorum
 * view of `GET /keys/{id}/public`, which reconstruction trusts too); a node whose partial fails is named and
 * dropped, and the request is repeated without it while enough nodes remain.
 */
import { generateX25519, open } from '../crypto/seal.js';
import {
  CiphertextError,
  ciphertextDigest,
  openVerified,
  encrypt,
  parseEnvelope,
  ThresholdDecryptError,
  verifyEnvelope,
  verifyPartial,
  type EncryptionContext,
  type EncryptionPublicKey,
  type PartialDecryption,
} from '../crypto/threshold-decrypt.js';
import { randomBytes } from 'node:crypto';
import { fromB64, toB64, wipe } from '../encoding.js';
import { decryptStream, encryptStream } from '../crypto/stream-aead.js';
import { partialAad } from '../node/decrypt.js';
import { datakeyAad } from '../coordinator/decrypt.js';
import type { ApiAnswer, FedkmsClient } from './api.js';

/** What `GET /keys/{id}/public` answers for an `encrypt` key (the fields `encryptTo` needs). */
export interface EncryptionPublicKeyInfo {
  keyId: string;
  version: number;
  groupKey: string;
}

/** Encrypt `plaintext` to the key under `context`; no node is involved. Returns the envelope bytes. */
export function encryptTo(key: EncryptionPublicKeyInfo, plaintext: Uint8Array, context: EncryptionContext = {}): Uint8Array {
  return encrypt({ keyId: key.keyId, keyVersion: key.version, groupKey: key.groupKey }, plaintext, context);
}

/** Fetch the key's public encryption info from the coordinator (a public route). */
export async function encryptionKey(client: FedkmsClient, keyId: string): Promise<EncryptionPublicKeyInfo> {
  const a = await client.call('GET', `/keys/${keyId}/public`);
  if (a.status !== 200) throw new DecryptRequestError(`cannot read the public key of ${keyId}`, a);
  if (a.body?.type !== 'encrypt') throw new DecryptRequestError(`key ${keyId} is not an encryption key`, a);
  return { keyId, version: a.body.version, groupKey: a.body.groupKey };
}

export interface Rejected {
  nodeId: string;
  reason: string;
}

/** The API refused or failed; `answer` is its response. */
export class DecryptRequestError extends Error {
  constructor(
    message: string,
    readonly answer: ApiAnswer,
    readonly rejected: Rejected[] = [],
  ) {
    super(message);
  }
}

export interface DecryptResult {
  plaintext: Uint8Array;
  keyId: string;
  /** The share version whose partials were combined. */
  version: number;
  usedNodes: string[];
  /** Nodes whose partials failed (named liars), across rounds. */
  rejected: Rejected[];
  answer: ApiAnswer;
}

const answerOf = (status: number, code: string, message: string): ApiAnswer => ({ status, body: { error: { code, message } }, ms: 0 });

/**
 * Decrypt an envelope by threshold. Throws CiphertextError (the envelope does not parse, or
 * does not match the key or `context`: checked here before any node is asked),
 * DecryptRequestError (the API refused; too many liars) or DecryptError (AEAD failed).
 */
export interface DecryptOptions {
  maxRounds?: number;
  /**
   * The one-time X25519 key the partials are sealed to (default: a fresh one per round). A key
   * whose policy requires approvals is decrypted with the recipient the approvers signed for
   * (`POST /approvals` with this public key and `expiresAt`); the caller wipes its private key.
   */
  recipient?: { publicKey: Uint8Array; privateKey: Uint8Array };
  /** The approved request's expiry (ms since the epoch), sent with `recipient` when approvals are required. */
  expiresAt?: number;
  /**
   * Re-encryption: the nodes audit this decryption as a re-encryption to `destination` (its key
   * id and encryption context are part of the signed request). The plaintext still reaches only
   * this client, which encrypts it to the destination itself (`reencrypt`).
   */
  destination?: { keyId: string; context: EncryptionContext };
}

export async function decryptEndToEnd(client: FedkmsClient, ciphertext: Uint8Array, context: EncryptionContext = {}, opts: DecryptOptions = {}): Promise<DecryptResult> {
  const env = parseEnvelope(ciphertext);
  const keyId = env.keyId;
  // The key's public package as a quorum of nodes agrees on it (the view reconstruction trusts
  // too), from the public route: decrypting needs the `decrypt` permission, not `describe`.
  const described = await client.call('GET', `/keys/${keyId}/public`);
  if (described.status !== 200) throw new DecryptRequestError(`cannot read the public key of ${keyId}`, described);
  const k = described.body as { version: number; type: string; threshold: number; groupKey: string; verifyingShares: Record<string, string> };
  if (k.type !== 'encrypt') throw new DecryptRequestError(`key ${keyId} is not an encryption key`, answerOf(409, 'key_not_encryption', `key ${keyId} is ${k.type}`));
  // The key as it was at encryption (same group key) with the verifying shares of the version the nodes will use.
  const key: EncryptionPublicKey = { keyId, keyVersion: env.keyVersion, threshold: k.threshold, groupKey: k.groupKey, verifyingShares: k.verifyingShares };
  verifyEnvelope(key, ciphertext, context);
  const digest = ciphertextDigest(ciphertext);
  const rejected: Rejected[] = [];
  for (let round = 0; round < (opts.maxRounds ?? 3); round++) {
    const recipient = opts.recipient ?? generateX25519();
    try {
      const requester = toB64(recipient.publicKey);
      const body = {
        ciphertext: toB64(ciphertext),
        context,
        recipient: requester,
        version: k.version,
        ...(opts.expiresAt !== undefined ? { expiresAt: opts.expiresAt } : {}),
        ...(opts.destination ? { destinationKeyId: opts.destination.keyId, destinationContext: opts.destination.context } : {}),
        ...(rejected.length ? { exclude: rejected.map((r) => r.nodeId) } : {}),
      };
      const answer = await client.call('POST', `/keys/${keyId}/${opts.destination ? 'reencrypt' : 'decrypt'}`, body);
      if (answer.status !== 200) throw new DecryptRequestError(`decryption refused: ${answer.body?.error?.code ?? answer.status}`, answer, rejected);
      const request = { requester, ...(answer.requestId ? { requestId: answer.requestId } : {}) };
      const partials: PartialDecryption[] = [];
      const byIdentifier = new Map<string, string>();
      for (const p of (answer.body?.partials ?? []) as { nodeId: string; identifier: string; version: number; sealed: { epk: string; iv: string; ct: string; tag: string } }[]) {
        const nodeId = String(p.nodeId);
        // The box's AAD binds node and identifier; the proof, the identifier's verifying share.
        if (p.version !== k.version || typeof p.identifier !== 'string' || !(p.identifier in key.verifyingShares)) {
          rejected.push({ nodeId, reason: 'answer for another key version or identifier' });
          continue;
        }
        let content: PartialDecryption;
        try {
          const plain = open(recipient.privateKey, p.sealed, partialAad(keyId, p.version, nodeId, p.identifier, digest));
          content = JSON.parse(new TextDecoder().decode(plain)) as PartialDecryption;
        } catch {
          rejected.push({ nodeId, reason: 'sealed partial does not open' });
          continue;
        }
        if (byIdentifier.has(content.identifier)) {
          rejected.push({ nodeId, reason: `second answer for identifier ${content.identifier}` });
          continue;
        }
        if (content.identifier !== p.identifier || !verifyPartial(key, ciphertext, request, content)) {
          rejected.push({ nodeId, reason: 'partial decryption fails its proof' });
          continue;
        }
        byIdentifier.set(content.identifier, nodeId);
        partials.push(content);
      }
      if (partials.length >= key.threshold) {
        try {
          const r = openVerified(key, ciphertext, partials);
          return { plaintext: r.plaintext, keyId, version: k.version, usedNodes: r.used.map((id) => byIdentifier.get(id)!), rejected, answer };
        } catch (e) {
          if (!(e instanceof ThresholdDecryptError)) throw e;
        }
      }
      if (!rejected.length) throw new DecryptRequestError('too few partial decryptions', answer, rejected);
    } finally {
      if (!opts.recipient) wipe(recipient.privateKey);
    }
  }
  throw new DecryptRequestError('too many nodes returned invalid partial decryptions', answerOf(502, 'invalid_partials', 'too many nodes returned invalid partial decryptions'), rejected);
}

export { CiphertextError };

/** Where a re-encryption goes: an `encrypt` key (its latest version) and the new encryption context. */
export interface ReencryptDestination {
  key: EncryptionPublicKeyInfo;
  context: EncryptionContext;
}

/**
 * Re-encrypt an envelope to another key, or to the latest version of the same key. The
 * ciphertext never becomes plaintext at the coordinator: this client decrypts by threshold
 * (the nodes audit it as a re-encryption to `dest.key.keyId` under `dest.context`, both in the
 * signed request) and encrypts the plaintext to the destination itself, with no node.
 */
export async function reencrypt(client: FedkmsClient, ciphertext: Uint8Array, context: EncryptionContext, dest: ReencryptDestination, opts: Omit<DecryptOptions, 'destination'> = {}): Promise<{ ciphertext: Uint8Array; from: Omit<DecryptResult, 'plaintext'> }> {
  const r = await decryptEndToEnd(client, ciphertext, context, { ...opts, destination: { keyId: dest.key.keyId, context: dest.context } });
  try {
    const { plaintext: _p, ...from } = r;
    return { ciphertext: encryptTo(dest.key, r.plaintext, dest.context), from };
  } finally {
    wipe(r.plaintext);
  }
}

// ---------------------------------------------------------------------------------------------
// Data keys and streams of any size

/**
 * A fresh 256-bit data key and its envelope under the federated key (AWS KMS's GenerateDataKey,
 * done on the client: the data key is born here and wrapped with no node involved, so no node
 * and no relay ever sees it). Wipe `plaintextKey` after use.
 */
export function generateDataKey(key: EncryptionPublicKeyInfo, context: EncryptionContext = {}): { plaintextKey: Uint8Array; ciphertext: Uint8Array } {
  const plaintextKey = new Uint8Array(randomBytes(32));
  return { plaintextKey, ciphertext: encryptTo(key, plaintextKey, context) };
}

/**
 * `POST /keys/{id}/datakey`: a data key the coordinator makes (once t nodes consent and audit),
 * sealed to a one-time key of this client. The envelope is checked against the key's public
 * key and `context` here. The coordinator sees this data key for a moment: `generateDataKey`
 * (made here, seen by no server) is preferred wherever the client can run this SDK.
 */
export async function requestDataKey(client: FedkmsClient, keyId: string, context: EncryptionContext = {}): Promise<{ plaintextKey: Uint8Array; ciphertext: Uint8Array; version: number; answer: ApiAnswer }> {
  const key = await encryptionKey(client, keyId);
  const recipient = generateX25519();
  try {
    const answer = await client.call('POST', `/keys/${keyId}/datakey`, { context, recipient: toB64(recipient.publicKey) });
    if (answer.status !== 200) throw new DecryptRequestError(`data key refused: ${answer.body?.error?.code ?? answer.status}`, answer);
    const ciphertext = fromB64(String(answer.body.ciphertext), 'ciphertext');
    const env = parseEnvelope(ciphertext);
    if (env.keyId !== keyId) throw new CiphertextError('the data key is wrapped under another key');
    // The same group key this client encrypts to (it survives refresh and reshare), and exactly this context.
    verifyEnvelope({ keyId, keyVersion: env.keyVersion, groupKey: key.groupKey }, ciphertext, context);
    const plaintextKey = open(recipient.privateKey, answer.body.sealedKey, datakeyAad(keyId, env.keyVersion, ciphertextDigest(ciphertext)));
    return { plaintextKey, ciphertext, version: env.keyVersion, answer };
  } finally {
    wipe(recipient.privateKey);
  }
}

/** The data key an envelope wraps, by threshold decryption. */
export async function decryptDataKey(client: FedkmsClient, ciphertext: Uint8Array, context: EncryptionContext = {}, opts: DecryptOptions = {}): Promise<DecryptResult> {
  const r = await decryptEndToEnd(client, ciphertext, context, opts);
  if (r.plaintext.length !== 32) {
    wipe(r.plaintext);
    throw new CiphertextError('the envelope does not wrap a 256-bit data key');
  }
  return r;
}

/**
 * Encrypted file format, version 1 ("FKMF"):
 *   magic "FKMF" | u8 version = 1 | u32be n | n bytes: threshold envelope of a fresh data key |
 *   a STREAM (lib/crypto/stream-aead.ts) under that data key, with SHA-256(envelope) as its
 *   associated data, so the payload cannot be moved under another wrapped key.
 */
const FILE_MAGIC = Buffer.from('FKMF', 'ascii');
const FILE_VERSION = 1;
const MAX_ENVELOPE_BYTES = 4096;

/** Encrypt a byte stream to the key under `context`, with no node: yields the FKMF bytes. */
export async function* encryptFile(key: EncryptionPublicKeyInfo, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, context: EncryptionContext = {}): AsyncGenerator<Uint8Array> {
  const { plaintextKey, ciphertext } = generateDataKey(key, context);
  try {
    const head = Buffer.alloc(9);
    FILE_MAGIC.copy(head, 0);
    head[4] = FILE_VERSION;
    head.writeUInt32BE(ciphertext.length, 5);
    yield new Uint8Array(Buffer.concat([head, ciphertext]));
    yield* encryptStream(plaintextKey, source, { associatedData: fromHexDigest(ciphertext) });
  } finally {
    wipe(plaintextKey);
  }
}

const fromHexDigest = (envelope: Uint8Array) => new Uint8Array(Buffer.from(ciphertextDigest(envelope), 'hex'));

/**
 * Decrypt FKMF bytes: unwrap the data key by threshold (`onKey` is told once it is), then
 * yield the plaintext chunk by chunk. The stream is complete only when the generator finishes
 * without throwing (StreamDecryptError on truncation or tampering).
 */
export async function* decryptFile(client: FedkmsClient, source: AsyncIterable<Uint8Array>, context: EncryptionContext = {}, onKey?: (r: DecryptResult) => void, opts: DecryptOptions = {}): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  const need = async (n: number) => {
    while (buf.length < n) {
      const next = await it.next();
      if (next.done) throw new CiphertextError('not a fedkms encrypted file: truncated header');
      buf = Buffer.concat([buf, next.value]);
    }
  };
  await need(9);
  if (!buf.subarray(0, 4).equals(FILE_MAGIC) || buf[4] !== FILE_VERSION) throw new CiphertextError('not a fedkms encrypted file (bad magic or version)');
  const n = buf.readUInt32BE(5);
  if (n < 1 || n > MAX_ENVELOPE_BYTES) throw new CiphertextError('not a fedkms encrypted file: bad envelope length');
  await need(9 + n);
  const envelope = new Uint8Array(buf.subarray(9, 9 + n));
  const rest = buf.subarray(9 + n);
  const r = await decryptDataKey(client, envelope, context, opts);
  onKey?.(r);
  async function* remainder() {
    if (rest.length) yield rest;
    for (let x = await it.next(); !x.done; x = await it.next()) yield x.value;
  }
  try {
    yield* decryptStream(r.plaintext, remainder(), { associatedData: fromHexDigest(envelope) });
  } finally {
    wipe(r.plaintext);
  }
}

/**
 * Re-encrypt FKMF bytes to another key (or the latest version of the same one), streaming:
 * the data key is unwrapped by threshold (audited by the nodes as a re-encryption to the
 * destination), the payload is decrypted chunk by chunk and encrypted again under a fresh data
 * key wrapped to the destination, with no node. Complete only when the generator finishes.
 */
export function reencryptFile(client: FedkmsClient, source: AsyncIterable<Uint8Array>, context: EncryptionContext, dest: ReencryptDestination, onKey?: (r: DecryptResult) => void, opts: Omit<DecryptOptions, 'destination'> = {}): AsyncGenerator<Uint8Array> {
  const plain = decryptFile(client, source, context, onKey, { ...opts, destination: { keyId: dest.key.keyId, context: dest.context } });
  return encryptFile(dest.key, plain, dest.context);
}
