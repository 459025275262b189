/**
 * Threshold decryption under a federated key that is never rebuilt: hybrid ElGamal over
 * ristretto255 (RFC 9496) with a key derived by HKDF-SHA256 (RFC 5869) and AES-256-GCM
 * (NIST SP 800-38D), made chosen-ciphertext secure and label-bound in the way of Shoup and
 * Gennaro's TDH2 ("Securing threshold cryptosystems against chosen ciphertext attack",
 * J. Cryptology 2002), with RFC 9497 §2.2 DLEQ proofs (./dleq.ts) for every proof.
 *
 * Keys. The group key Y = s·G and the verifying shares Y_i = s_i·G come from the project's
 * DKG or dealer (scalars mod L; lib/crypto/shares.ts). Those encode points as Ed25519; the
 * ristretto255 generator is the Ed25519 base point, so a torsion-free Ed25519 point s·B *is*
 * the ristretto255 element s·G (`encryptionKeyFromPublicPackage` converts, refusing any point
 * with a torsion component). Everything below works in ristretto255 encodings.
 *
 * Encrypt (no node involved):
 *   r random; R = r·G; R̄ = r·Ḡ; Z = r·Y
 *   k = HKDF-SHA256(ikm = Z, salt = "", info = "fedkms/tdh2/v1/aead-key" || R || Y ||
 *       len8(keyId) || keyId || u32(keyVersion) || len8(scheme) || scheme || contextDigest)
 *   contextDigest = SHA-256(canonicalJson(encryptionContext))
 *   (the digest stands for the canonical JSON in `info` because Node's HKDF caps info at 1024 bytes)
 *   ciphertext = AES-256-GCM(k, nonce, plaintext, aad = header)
 *   validity proof π: DLEQ log_G(R) = log_Ḡ(R̄) with witness r, under the proof context
 *   { purpose: "fedkms/tdh2/v1/validity", scheme, keyId, keyVersion, groupKey: hex(Y),
 *     body: hex(SHA-256(header || nonce || ciphertext)) }.
 * Ḡ is a second generator hashed to the group (RFC 9380 hash_to_ristretto255), so nobody
 * knows log_G(Ḡ). π is TDH2's proof: only someone who knew r could bind R to this header, so
 * nodes, by checking π before answering, never act as a decryption oracle for an R lifted
 * from one ciphertext (and context) into another. That is what makes a node's policy check
 * and audit of the encryption context meaningful.
 *
 * Decrypt by threshold. Node i checks the envelope (context digest and π), then returns
 * D_i = s_i·R with a DLEQ proof of log_G(Y_i) = log_R(D_i) under the partial context
 *   { purpose: "fedkms/tdh2/v1/partial", scheme, keyId, keyVersion, groupKey: hex(Y),
 *     identifier, verifyingShare: hex(Y_i), ciphertext: hex(SHA-256(envelope)),
 *     requester, requestId? }
 * where `requester` is the client's ephemeral (sealing) public key as sent. The client checks
 * every proof against the Y_i it already trusts, names the liars, combines t valid partials
 * with Lagrange coefficients at 0 (RFC 9591 §4.2's formula, computed in noble's Fn):
 * Z = Σ λ_i·D_i = s·R = r·Y, then derives k and opens the AEAD.
 *
 * Envelope, format version 1 (bytes; `envelopeToJson` gives a JSON view of the same fields):
 *
 *   offset  length  field
 *   0       4       magic "FKME"
 *   4       1       format version = 0x01
 *   5       1       scheme = 0x01 ("TDH2-ristretto255-SHA512/HKDF-SHA256/A256GCM")
 *   6       1       keyId length n (1..63; keyId matches ^[a-z0-9][a-z0-9-]{0,62}$)
 *   7       n       keyId (ASCII)
 *   7+n     4       keyVersion (u32 big-endian, >= 1)
 *   11+n    32      R   (ristretto255)
 *   43+n    32      R̄   (ristretto255)
 *   75+n    32      contextDigest = SHA-256(canonicalJson(encryptionContext))
 *   ---------------- the header ends here: it is the AES-GCM AAD ----------------
 *   107+n   64      validity proof π = c || s (RFC 9497 §2.2 serialization)
 *   171+n   12      AES-GCM nonce
 *   183+n   rest    AES-GCM ciphertext || 16-byte tag
 *
 * Pure: no I/O.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { ed25519, ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js';
import { concatBytes, equalBytes } from '@noble/curves/utils.js';
import { fromHex, toB64, toHex, fromB64 } from '../encoding.js';
import { KEY_ID_PATTERN } from '../key-id.js';
import { DecryptError } from './aead.js';
import { deserializeElement, Fn, Point, PROOF_BYTES, proveInContext, randomScalar, verifyInContext, type Element } from './dleq.js';
import { canonicalJson } from './hash.js';
import type { PublicPackage, Share } from './shares.js';

export const FORMAT_VERSION = 1;
export const SCHEME_ID = 1;
export const SCHEME = 'TDH2-ristretto255-SHA512/HKDF-SHA256/A256GCM';
const MAGIC = new Uint8Array([0x46, 0x4b, 0x4d, 0x45]); // "FKME"
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Encryption contexts are small key–value maps (as in AWS KMS); this bounds what nodes hash and audit. */
export const MAX_CONTEXT_BYTES = 8192;

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * Ḡ, TDH2's second generator: hash_to_ristretto255 (RFC 9380 Appendix B) of a fixed label,
 * so its discrete log to G is unknown to everyone.
 */
export const G_BAR: Element = ristretto255_hasher.hashToCurve(ascii('fedkms/tdh2/v1 second generator'), {
  DST: 'FEDKMS-TDH2-V1-ristretto255_XMD:SHA-512_R255MAP_RO_',
});

/** A threshold encryption key as the client and nodes trust it; points are ristretto255 hex. */
export interface EncryptionPublicKey {
  keyId: string;
  keyVersion: number;
  threshold: number;
  groupKey: string;
  verifyingShares: Record<string, string>;
}

/** Key–value pairs bound to a ciphertext (AWS KMS's "encryption context"). */
export type EncryptionContext = Record<string, string>;

/** Who asked for a partial: the client's ephemeral public key (as sent) and an optional request id. */
export interface RequestContext {
  requester: string;
  requestId?: string;
}

/** One node's answer; hex fields. */
export interface PartialDecryption {
  identifier: string;
  partial: string;
  proof: string;
}

export type LiarReason = 'unknown_identifier' | 'duplicate' | 'malformed' | 'bad_proof';
export interface Liar {
  identifier: string;
  reason: LiarReason;
}

/** A ciphertext that does not parse, does not match its context, or whose validity proof fails. */
export class CiphertextError extends Error {}

/** Fewer than t partials survived verification; `liars` names the ones dropped. */
export class ThresholdDecryptError extends Error {
  constructor(
    message: string,
    readonly liars: Liar[],
  ) {
    super(message);
  }
}

export interface Envelope {
  version: number;
  scheme: number;
  keyId: string;
  keyVersion: number;
  R: Uint8Array;
  Rbar: Uint8Array;
  contextDigest: Uint8Array;
  proof: Uint8Array;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  /** The AAD: bytes 0 .. 107+n. */
  header: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Keys

/**
 * Decode an Ed25519-encoded point of the project's public packages as the ristretto255 element
 * with the same discrete log. Refuses non-canonical encodings, the identity, and any point with
 * a torsion component (which has no ristretto255 counterpart of the same discrete log).
 */
export function ristrettoFromEd25519(bytes: Uint8Array): Element {
  const ep = ed25519.Point.fromBytes(bytes);
  if (ep.is0() || !ep.isTorsionFree()) throw new Error('point is not in the prime-order subgroup');
  return new ristretto255.Point(ep);
}

/** The encryption key of a DKG-born (or dealt) key: its public package, in ristretto255 encodings. */
export function encryptionKeyFromPublicPackage(keyId: string, keyVersion: number, pub: PublicPackage): EncryptionPublicKey {
  const conv = (hex: string, what: string) => toHex(ristrettoFromEd25519(fromHex(hex, what)).toBytes());
  const group = pub.commitments[0];
  if (!group) throw new Error('public package has no group key');
  return {
    keyId,
    keyVersion,
    threshold: pub.threshold,
    groupKey: conv(group, 'groupKey'),
    verifyingShares: Object.fromEntries(Object.entries(pub.verifyingShares).map(([id, v]) => [id, conv(v, 'verifyingShare')])),
  };
}

const point = (hex: string, what: string): Element => {
  try {
    return deserializeElement(fromHex(hex, what));
  } catch {
    throw new CiphertextError(`${what} is not a valid ristretto255 element`);
  }
};

/** A share identifier (32-byte little-endian hex scalar, lib/crypto/shares.ts `identifierFor`) as a non-zero scalar. */
function identifierScalar(id: string): bigint {
  const x = Fn.fromBytes(fromHex(id, 'identifier'));
  if (Fn.is0(x)) throw new Error('identifier must be non-zero');
  return x;
}

// ---------------------------------------------------------------------------------------------
// Envelope

function checkKeyRef(keyId: string, keyVersion: number): void {
  if (!KEY_ID_PATTERN.test(keyId)) throw new CiphertextError('keyId does not match ^[a-z0-9][a-z0-9-]{0,62}$');
  if (!Number.isInteger(keyVersion) || keyVersion < 1 || keyVersion > 0xffffffff) throw new CiphertextError('keyVersion out of range');
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function encodeHeader(keyId: string, keyVersion: number, R: Uint8Array, Rbar: Uint8Array, contextDigest: Uint8Array): Uint8Array {
  checkKeyRef(keyId, keyVersion);
  return concatBytes(MAGIC, new Uint8Array([FORMAT_VERSION, SCHEME_ID, keyId.length]), ascii(keyId), u32(keyVersion), R, Rbar, contextDigest);
}

export function serializeEnvelope(e: Omit<Envelope, 'header'>): Uint8Array {
  if (e.version !== FORMAT_VERSION || e.scheme !== SCHEME_ID) throw new CiphertextError('unsupported format version or scheme');
  return concatBytes(encodeHeader(e.keyId, e.keyVersion, e.R, e.Rbar, e.contextDigest), e.proof, e.nonce, e.ciphertext);
}

/** Parse the byte form strictly (no trailing or missing bytes); throws CiphertextError. */
export function parseEnvelope(bytes: Uint8Array): Envelope {
  const fail = (why: string): never => {
    throw new CiphertextError(`not a fedkms ciphertext: ${why}`);
  };
  if (bytes.length < 7 || !equalBytes(bytes.subarray(0, 4), MAGIC)) fail('bad magic');
  const version = bytes[4] as number;
  const scheme = bytes[5] as number;
  if (version !== FORMAT_VERSION) fail(`unsupported format version ${version}`);
  if (scheme !== SCHEME_ID) fail(`unsupported scheme ${scheme}`);
  const n = bytes[6] as number;
  const headerEnd = 7 + n + 4 + 32 * 3;
  if (bytes.length < headerEnd + PROOF_BYTES + NONCE_BYTES + TAG_BYTES) fail('truncated');
  const keyId = new TextDecoder().decode(bytes.subarray(7, 7 + n));
  const keyVersion = new DataView(bytes.buffer, bytes.byteOffset + 7 + n, 4).getUint32(0);
  checkKeyRef(keyId, keyVersion);
  let o = 11 + n;
  const take = (len: number) => bytes.slice(o, (o += len));
  const R = take(32);
  const Rbar = take(32);
  const contextDigest = take(32);
  const proof = take(PROOF_BYTES);
  const nonce = take(NONCE_BYTES);
  const ciphertext = bytes.slice(o);
  return { version, scheme, keyId, keyVersion, R, Rbar, contextDigest, proof, nonce, ciphertext, header: bytes.slice(0, headerEnd) };
}

/** JSON view of an envelope (binary fields base64); `envelopeFromJson` inverts it exactly. */
export interface EnvelopeJson {
  v: number;
  scheme: string;
  keyId: string;
  keyVersion: number;
  R: string;
  Rbar: string;
  contextDigest: string;
  proof: string;
  nonce: string;
  ciphertext: string;
}

export function envelopeToJson(bytes: Uint8Array): EnvelopeJson {
  const e = parseEnvelope(bytes);
  return {
    v: e.version,
    scheme: SCHEME,
    keyId: e.keyId,
    keyVersion: e.keyVersion,
    R: toB64(e.R),
    Rbar: toB64(e.Rbar),
    contextDigest: toHex(e.contextDigest),
    proof: toB64(e.proof),
    nonce: toB64(e.nonce),
    ciphertext: toB64(e.ciphertext),
  };
}

export function envelopeFromJson(j: EnvelopeJson): Uint8Array {
  if (j.scheme !== SCHEME) throw new CiphertextError('unsupported scheme');
  return serializeEnvelope({
    version: j.v,
    scheme: SCHEME_ID,
    keyId: j.keyId,
    keyVersion: j.keyVersion,
    R: fromB64(j.R, 'R'),
    Rbar: fromB64(j.Rbar, 'Rbar'),
    contextDigest: fromHex(j.contextDigest, 'contextDigest'),
    proof: fromB64(j.proof, 'proof'),
    nonce: fromB64(j.nonce, 'nonce'),
    ciphertext: fromB64(j.ciphertext, 'ciphertext'),
  });
}

// ---------------------------------------------------------------------------------------------
// Hashes, key derivation, AEAD

const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** SHA-256 of the canonical JSON of an encryption context; validates its shape first. */
export function contextDigest(context: EncryptionContext): Uint8Array {
  if (context === null || typeof context !== 'object' || Array.isArray(context)) throw new CiphertextError('encryption context must be an object');
  for (const [k, v] of Object.entries(context)) {
    if (typeof v !== 'string') throw new CiphertextError(`encryption context value for ${JSON.stringify(k)} must be a string`);
  }
  const json = canonicalJson(context);
  if (json.length > MAX_CONTEXT_BYTES) throw new CiphertextError('encryption context too large');
  return sha256(ascii(json));
}

/** SHA-256 of the whole envelope: how a partial's proof names the ciphertext it answers. */
export const ciphertextDigest = (envelope: Uint8Array): string => toHex(sha256(envelope));

function deriveAeadKey(Z: Element, e: Pick<Envelope, 'R' | 'keyId' | 'keyVersion' | 'contextDigest'>, Y: Element): Uint8Array {
  const info = concatBytes(
    ascii('fedkms/tdh2/v1/aead-key'),
    e.R,
    Y.toBytes(),
    new Uint8Array([e.keyId.length]),
    ascii(e.keyId),
    u32(e.keyVersion),
    new Uint8Array([SCHEME.length]),
    ascii(SCHEME),
    e.contextDigest,
  );
  return new Uint8Array(hkdfSync('sha256', Z.toBytes(), new Uint8Array(0), info, 32));
}

function validityContext(key: Pick<EncryptionPublicKey, 'keyId' | 'keyVersion' | 'groupKey'>, header: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array) {
  return {
    purpose: 'fedkms/tdh2/v1/validity',
    scheme: SCHEME,
    keyId: key.keyId,
    keyVersion: key.keyVersion,
    groupKey: key.groupKey,
    body: toHex(sha256(header, nonce, ciphertext)),
  };
}

// ---------------------------------------------------------------------------------------------
// Encrypt

/** Encrypt `plaintext` to the key's group public key under `context`. Needs no node. */
export function encrypt(key: Pick<EncryptionPublicKey, 'keyId' | 'keyVersion' | 'groupKey'>, plaintext: Uint8Array, context: EncryptionContext): Uint8Array {
  const Y = point(key.groupKey, 'groupKey');
  const digest = contextDigest(context);
  const r = randomScalar();
  const R = Point.BASE.multiply(r);
  const Rbar = G_BAR.multiply(r);
  const Z = Y.multiply(r);
  const Rb = R.toBytes();
  const header = encodeHeader(key.keyId, key.keyVersion, Rb, Rbar.toBytes(), digest);
  const k = deriveAeadKey(Z, { R: Rb, keyId: key.keyId, keyVersion: key.keyVersion, contextDigest: digest }, Y);
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const c = createCipheriv('aes-256-gcm', k, nonce);
  c.setAAD(header);
  const ciphertext = new Uint8Array(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
  k.fill(0);
  const proof = proveInContext(validityContext(key, header, nonce, ciphertext), r, { B: R, C: [G_BAR], D: [Rbar] });
  return concatBytes(header, proof, nonce, ciphertext);
}

// ---------------------------------------------------------------------------------------------
// Decrypt by threshold

/**
 * Check a ciphertext before acting on it (nodes before answering, clients before combining):
 * it parses, names this key and version, was made under exactly `context`, and its TDH2
 * validity proof holds. Returns the parsed envelope; throws CiphertextError.
 */
export function verifyEnvelope(key: Pick<EncryptionPublicKey, 'keyId' | 'keyVersion' | 'groupKey'>, bytes: Uint8Array, context: EncryptionContext): Envelope {
  const e = parseEnvelope(bytes);
  if (e.keyId !== key.keyId || e.keyVersion !== key.keyVersion) throw new CiphertextError('ciphertext is for another key or key version');
  if (!equalBytes(e.contextDigest, contextDigest(context))) throw new CiphertextError('encryption context does not match the ciphertext');
  let R: Element;
  let Rbar: Element;
  try {
    R = deserializeElement(e.R);
    Rbar = deserializeElement(e.Rbar);
  } catch {
    throw new CiphertextError('ciphertext holds an invalid element');
  }
  if (!verifyInContext(validityContext(key, e.header, e.nonce, e.ciphertext), { B: R, C: [G_BAR], D: [Rbar] }, e.proof)) {
    throw new CiphertextError('ciphertext validity proof does not verify');
  }
  return e;
}

function partialContext(key: EncryptionPublicKey, identifier: string, envelope: Uint8Array, req: RequestContext) {
  const verifyingShare = key.verifyingShares[identifier];
  if (verifyingShare === undefined) throw new Error(`no verifying share for ${identifier}`);
  return {
    purpose: 'fedkms/tdh2/v1/partial',
    scheme: SCHEME,
    keyId: key.keyId,
    keyVersion: key.keyVersion,
    groupKey: key.groupKey,
    identifier,
    verifyingShare,
    ciphertext: ciphertextDigest(envelope),
    requester: req.requester,
    requestId: req.requestId,
  };
}

/**
 * Node side: D_i = s_i·R and its DLEQ proof log_G(Y_i) = log_R(D_i), bound to the request.
 * Refuses (CiphertextError) a ciphertext that fails `verifyEnvelope`, and (Error) a share
 * that does not match its verifying share.
 */
export function partialDecrypt(opts: {
  key: EncryptionPublicKey;
  share: Share;
  envelope: Uint8Array;
  context: EncryptionContext;
  request: RequestContext;
}): PartialDecryption {
  const { key, share, envelope, context, request } = opts;
  const e = verifyEnvelope(key, envelope, context);
  const Yi = point(key.verifyingShares[share.identifier] ?? '', 'verifyingShare');
  const si = Fn.fromBytes(share.signingShare);
  if (Fn.is0(si) || !Point.BASE.multiply(si).equals(Yi)) throw new Error('share does not match its verifying share');
  const R = deserializeElement(e.R);
  const Di = R.multiply(si);
  const proof = proveInContext(partialContext(key, share.identifier, envelope, request), si, { B: Yi, C: [R], D: [Di] });
  return { identifier: share.identifier, partial: toHex(Di.toBytes()), proof: toHex(proof) };
}

/** Client side: is this partial proven correct for this key, ciphertext and request? Never throws. */
export function verifyPartial(key: EncryptionPublicKey, envelope: Uint8Array, request: RequestContext, p: PartialDecryption): boolean {
  return checkPartial(key, envelope, request, p) === null;
}

function checkPartial(key: EncryptionPublicKey, envelope: Uint8Array, request: RequestContext, p: PartialDecryption): LiarReason | null {
  if (typeof p.identifier !== 'string' || !(p.identifier in key.verifyingShares)) return 'unknown_identifier';
  try {
    const e = parseEnvelope(envelope);
    const Yi = deserializeElement(fromHex(key.verifyingShares[p.identifier] ?? '', 'verifyingShare'));
    const Di = deserializeElement(fromHex(p.partial, 'partial'));
    const proof = fromHex(p.proof, 'proof');
    const R = deserializeElement(e.R);
    return verifyInContext(partialContext(key, p.identifier, envelope, request), { B: Yi, C: [R], D: [Di] }, proof) ? null : 'bad_proof';
  } catch {
    return 'malformed';
  }
}

/**
 * Lagrange interpolation at 0 in the exponent: Σ λ_i·D_i with λ_i = Π_{j≠i} x_j / (x_j − x_i)
 * (RFC 9591 §4.2), all in noble's scalar field. No threshold check: callers pass t partials.
 */
export function combinePartials(partials: { identifier: string; partial: Element }[]): Element {
  const xs = partials.map((p) => identifierScalar(p.identifier));
  if (new Set(xs).size !== xs.length) throw new Error('duplicate identifier');
  const lambdas = xs.map((xi) => {
    let num = Fn.ONE;
    let den = Fn.ONE;
    for (const xj of xs) {
      if (xj === xi) continue;
      num = Fn.mul(num, xj);
      den = Fn.mul(den, Fn.sub(xj, xi));
    }
    return Fn.div(num, den);
  });
  // Partials and coefficients are public: the variable-time MSM is fine.
  return mulAddUnsafe(
    Point,
    partials.map((p) => p.partial),
    lambdas,
  );
}

/** Open the AEAD given Z = r·Y (= s·R). Throws DecryptError. */
export function openWithSharedPoint(key: Pick<EncryptionPublicKey, 'groupKey'>, envelope: Uint8Array, Z: Element): Uint8Array {
  const e = parseEnvelope(envelope);
  const k = deriveAeadKey(Z, e, point(key.groupKey, 'groupKey'));
  try {
    const d = createDecipheriv('aes-256-gcm', k, e.nonce);
    d.setAAD(e.header);
    d.setAuthTag(e.ciphertext.subarray(e.ciphertext.length - TAG_BYTES));
    return new Uint8Array(Buffer.concat([d.update(e.ciphertext.subarray(0, e.ciphertext.length - TAG_BYTES)), d.final()]));
  } catch {
    throw new DecryptError();
  } finally {
    k.fill(0);
  }
}

/**
 * Client side, end to end: check the ciphertext against the key and context, verify every
 * partial, drop and name liars, combine the first t valid partials (in the order given) and
 * open. Throws CiphertextError, ThresholdDecryptError (too few valid partials; names the
 * liars) or DecryptError.
 */
export function decrypt(opts: {
  key: EncryptionPublicKey;
  envelope: Uint8Array;
  context: EncryptionContext;
  request: RequestContext;
  partials: PartialDecryption[];
}): { plaintext: Uint8Array; used: string[]; liars: Liar[] } {
  const { key, envelope, context, request, partials } = opts;
  verifyEnvelope(key, envelope, context);
  const liars: Liar[] = [];
  const good: { identifier: string; partial: Element }[] = [];
  const seen = new Set<string>();
  for (const p of partials) {
    if (seen.has(p.identifier)) {
      liars.push({ identifier: p.identifier, reason: 'duplicate' });
      continue;
    }
    const bad = checkPartial(key, envelope, request, p);
    if (bad) {
      liars.push({ identifier: String(p.identifier), reason: bad });
      continue;
    }
    seen.add(p.identifier);
    good.push({ identifier: p.identifier, partial: deserializeElement(fromHex(p.partial)) });
  }
  if (good.length < key.threshold) {
    throw new ThresholdDecryptError(`need ${key.threshold} valid partial decryptions, have ${good.length}`, liars);
  }
  const chosen = good.slice(0, key.threshold);
  const Z = combinePartials(chosen);
  const plaintext = openWithSharedPoint(key, envelope, Z);
  return { plaintext, used: chosen.map((c) => c.identifier), liars };
}

/**
 * Combine and open with partials the caller has already checked one by one (`verifyPartial`,
 * after `verifyEnvelope`): the client verifies each partial as it opens its sealed box, to name
 * a liar, so checking them all again here would double the cost of a decryption.
 */
export function openVerified(key: Pick<EncryptionPublicKey, 'groupKey' | 'threshold'>, envelope: Uint8Array, verified: PartialDecryption[]): { plaintext: Uint8Array; used: string[] } {
  if (verified.length < key.threshold) throw new ThresholdDecryptError(`need ${key.threshold} valid partial decryptions, have ${verified.length}`, []);
  const chosen = verified.slice(0, key.threshold).map((p) => ({ identifier: p.identifier, partial: deserializeElement(fromHex(p.partial, 'partial')) }));
  return { plaintext: openWithSharedPoint(key, envelope, combinePartials(chosen)), used: chosen.map((c) => c.identifier) };
}
