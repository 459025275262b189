/**
 * Export formats for an Ed25519 group public key (hex, base64, SPKI PEM, OpenSSH) and
 * the OpenSSH "SSHSIG" signature format (`ssh-keygen -Y sign/verify`, PROTOCOL.sshsig),
 * so a threshold signature can be checked with stock tools. Pure: no I/O.
 *
 * SSHSIG signing is split in two so the private key never has to exist in one place:
 * `sshsigSignedData` gives the bytes the (threshold) Ed25519 signature must cover, and
 * `armorSshSignature` wraps the resulting 64-byte signature for `ssh-keygen -Y verify`.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { BadRequestError } from '../errors.js';
import { toB64, toB64url, toHex, utf8 } from '../encoding.js';

export type SshHashAlg = 'sha512' | 'sha256';

export interface PublicKeyFormats {
  hex: string;
  base64: string;
  /** SubjectPublicKeyInfo PEM (RFC 8410), readable by OpenSSL, Node, Java, Go. */
  pem: string;
  /** One-line `ssh-ed25519 AAAA... comment`, as in authorized_keys / *.pub files. */
  openssh: string;
}

const KEY_TYPE = 'ssh-ed25519';
const SSHSIG_MAGIC = utf8('SSHSIG');
const SSHSIG_VERSION = 1;
const HASH_ALGS: readonly SshHashAlg[] = ['sha512', 'sha256'];
// ssh-keygen wraps the armored blob at 70 columns (sshsig.c: sshbuf_dtob64(..., 70)).
const ARMOR_WIDTH = 70;

/**
 * Throw unless `raw` is a canonical (RFC 8032) encoding of an Ed25519 point of
 * large order. Small-order points are refused too: no honest key is one, and any
 * signature "verifies" under the identity for some messages.
 */
export function assertEd25519PublicKey(raw: Uint8Array): void {
  if (!(raw instanceof Uint8Array) || raw.length !== 32) {
    throw new BadRequestError('invalid_public_key', 'Ed25519 public key must be 32 bytes');
  }
  let smallOrder: boolean;
  try {
    smallOrder = ed25519.Point.fromBytes(raw).isSmallOrder();
  } catch {
    throw new BadRequestError('invalid_public_key', 'not a valid Ed25519 point encoding');
  }
  if (smallOrder) throw new BadRequestError('invalid_public_key', 'Ed25519 public key has small order');
}

/** RFC 4251 `uint32`: big-endian. */
function uint32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/** RFC 4251 `string`: uint32 length, then the bytes. */
const sshString = (data: Uint8Array | string): Uint8Array => {
  const bytes = typeof data === 'string' ? utf8(data) : data;
  return concat(uint32(bytes.length), bytes);
};

/** The SSH wire encoding of an Ed25519 public key (RFC 8709 §4). */
export function sshPublicKeyBlob(raw: Uint8Array): Uint8Array {
  assertEd25519PublicKey(raw);
  return concat(sshString(KEY_TYPE), sshString(raw));
}

function assertComment(comment: string): void {
  // A newline would end the authorized_keys line and smuggle in a second entry.
  if (typeof comment !== 'string' || /[\r\n\0]/.test(comment)) {
    throw new BadRequestError('invalid_comment', 'comment must be a single line');
  }
}

function spkiPem(raw: Uint8Array): string {
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: toB64url(raw) }, format: 'jwk' });
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

export function publicKeyFormats(raw: Uint8Array, comment = 'fedkms'): PublicKeyFormats {
  assertEd25519PublicKey(raw);
  assertComment(comment);
  const ssh = `${KEY_TYPE} ${toB64(sshPublicKeyBlob(raw))}`;
  return {
    hex: toHex(raw),
    base64: toB64(raw),
    pem: spkiPem(raw),
    openssh: comment ? `${ssh} ${comment}` : ssh,
  };
}

function assertNamespace(namespace: string): void {
  // PROTOCOL.sshsig: "The namespace value MUST NOT be the empty string."
  if (typeof namespace !== 'string' || namespace.length === 0 || /[\0\r\n]/.test(namespace)) {
    throw new BadRequestError('invalid_namespace', 'SSH signature namespace must be a non-empty single line');
  }
}

function assertHashAlg(hashAlg: string): asserts hashAlg is SshHashAlg {
  if (!HASH_ALGS.includes(hashAlg as SshHashAlg)) {
    throw new BadRequestError('invalid_hash_algorithm', 'SSH signature hash must be sha512 or sha256');
  }
}

/**
 * The exact bytes an SSHSIG Ed25519 signature covers (PROTOCOL.sshsig §3):
 * MAGIC "SSHSIG" ‖ string namespace ‖ string reserved ("") ‖ string hash_algorithm ‖ string H(message).
 */
export function sshsigSignedData(message: Uint8Array, namespace: string, hashAlg: SshHashAlg = 'sha512'): Uint8Array {
  assertNamespace(namespace);
  assertHashAlg(hashAlg);
  const digest = new Uint8Array(createHash(hashAlg).update(message).digest());
  return concat(SSHSIG_MAGIC, sshString(namespace), sshString(''), sshString(hashAlg), sshString(digest));
}

function wrap(text: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += width) lines.push(text.slice(i, i + width));
  return lines.join('\n');
}

/**
 * Armor a detached Ed25519 signature over `sshsigSignedData(message, namespace, hashAlg)`
 * as `ssh-keygen -Y sign` would (PROTOCOL.sshsig §1–2). The signature is not checked here.
 */
export function armorSshSignature(
  publicKey: Uint8Array,
  namespace: string,
  signature: Uint8Array,
  hashAlg: SshHashAlg = 'sha512',
): string {
  assertNamespace(namespace);
  assertHashAlg(hashAlg);
  if (!(signature instanceof Uint8Array) || signature.length !== 64) {
    throw new BadRequestError('invalid_signature', 'Ed25519 signature must be 64 bytes');
  }
  const sigBlob = concat(sshString(KEY_TYPE), sshString(signature));
  const blob = concat(
    SSHSIG_MAGIC,
    uint32(SSHSIG_VERSION),
    sshString(sshPublicKeyBlob(publicKey)),
    sshString(namespace),
    sshString(''),
    sshString(hashAlg),
    sshString(sigBlob),
  );
  return `-----BEGIN SSH SIGNATURE-----\n${wrap(toB64(blob), ARMOR_WIDTH)}\n-----END SSH SIGNATURE-----\n`;
}

/**
 * One line of an ssh-keygen allowed_signers file (`principal ssh-ed25519 AAAA...`),
 * optionally limited to `namespaces`. Characters that would change how the line is
 * parsed (whitespace, quotes, a leading '#') are refused rather than escaped.
 */
export function allowedSignersLine(principal: string, publicKey: Uint8Array, namespaces?: string[]): string {
  if (typeof principal !== 'string' || !/^[^\s"#][^\s"]*$/.test(principal)) {
    throw new BadRequestError('invalid_principal', 'principal must be non-empty, without whitespace or quotes');
  }
  const key = `${KEY_TYPE} ${toB64(sshPublicKeyBlob(publicKey))}`;
  if (namespaces === undefined) return `${principal} ${key}`;
  if (namespaces.length === 0 || namespaces.some((n) => !/^[^\s",]+$/.test(n))) {
    throw new BadRequestError('invalid_namespace', 'namespaces must be non-empty, without whitespace, quotes or commas');
  }
  return `${principal} namespaces="${namespaces.join(',')}" ${key}`;
}

/** Reads RFC 4251 `string`s off a buffer; throws on anything truncated. */
class SshReader {
  private at = 0;
  constructor(private readonly buf: Uint8Array, private readonly what: string) {}
  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new BadRequestError('invalid_encoding', `${this.what} is truncated`);
  }
  uint32(): number {
    this.need(4);
    const n = new DataView(this.buf.buffer, this.buf.byteOffset + this.at, 4).getUint32(0);
    this.at += 4;
    return n;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.slice(this.at, this.at + n);
    this.at += n;
    return b;
  }
  string(): Uint8Array {
    return this.bytes(this.uint32());
  }
  text(): string {
    return Buffer.from(this.string()).toString('utf8');
  }
  end(): void {
    if (this.at !== this.buf.length) throw new BadRequestError('invalid_encoding', `${this.what} has trailing bytes`);
  }
}

/** The raw key out of an SSH wire-format `ssh-ed25519` public key blob. */
function fromSshBlob(blob: Uint8Array): Uint8Array {
  const r = new SshReader(blob, 'SSH public key');
  if (r.text() !== KEY_TYPE) throw new BadRequestError('invalid_public_key', 'only ssh-ed25519 keys are supported');
  const raw = r.string();
  r.end();
  assertEd25519PublicKey(raw);
  return raw;
}

/**
 * An Ed25519 public key given in any of the forms this project prints: SPKI PEM, an
 * OpenSSH line (`ssh-ed25519 AAAA... [comment]`, as in *.pub and allowed_signers files),
 * 64 hex digits, or the 32 raw bytes. Third parties check signatures with it, so it is
 * validated as strictly as a key the federation serves.
 */
export function parseEd25519PublicKey(input: Uint8Array | string): Uint8Array {
  const bytes = typeof input === 'string' ? utf8(input) : input;
  const text = Buffer.from(bytes).toString('utf8').trim();
  if (text.startsWith('-----BEGIN PUBLIC KEY-----')) {
    let jwk: { kty?: string; crv?: string; x?: string };
    try {
      jwk = createPublicKey({ key: text, format: 'pem' }).export({ format: 'jwk' }) as typeof jwk;
    } catch {
      throw new BadRequestError('invalid_public_key', 'not a readable PEM public key');
    }
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.x) throw new BadRequestError('invalid_public_key', 'the PEM key is not an Ed25519 key');
    const raw = new Uint8Array(Buffer.from(jwk.x, 'base64url'));
    assertEd25519PublicKey(raw);
    return raw;
  }
  // An OpenSSH line, possibly preceded by a principal (allowed_signers): find the key type.
  const ssh = /(?:^|\s)ssh-ed25519\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)/.exec(text);
  if (ssh) return fromSshBlob(new Uint8Array(Buffer.from(ssh[1]!, 'base64')));
  if (/^(?:0x)?[0-9a-fA-F]{64}$/.test(text)) {
    const raw = new Uint8Array(Buffer.from(text.replace(/^0x/i, ''), 'hex'));
    assertEd25519PublicKey(raw);
    return raw;
  }
  if (bytes.length === 32) {
    assertEd25519PublicKey(bytes);
    return new Uint8Array(bytes);
  }
  throw new BadRequestError('invalid_public_key', 'expected an Ed25519 public key as PEM, an OpenSSH ssh-ed25519 line, or 64 hex digits');
}

export interface SshSignature {
  publicKey: Uint8Array;
  namespace: string;
  hashAlg: SshHashAlg;
  /** The 64-byte Ed25519 signature over `sshsigSignedData(message, namespace, hashAlg)`. */
  signature: Uint8Array;
}

/** Unwrap an armored SSHSIG (PROTOCOL.sshsig §2), the inverse of `armorSshSignature`. Nothing is verified here. */
export function parseSshSignature(armored: string): SshSignature {
  const m = /-----BEGIN SSH SIGNATURE-----([\sA-Za-z0-9+/=]+)-----END SSH SIGNATURE-----/.exec(armored);
  if (!m) throw new BadRequestError('invalid_signature', 'not an armored SSH signature (-----BEGIN SSH SIGNATURE-----)');
  const r = new SshReader(new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')), 'SSH signature');
  if (Buffer.compare(Buffer.from(r.bytes(SSHSIG_MAGIC.length)), Buffer.from(SSHSIG_MAGIC)) !== 0) throw new BadRequestError('invalid_signature', 'SSH signature has the wrong magic');
  if (r.uint32() !== SSHSIG_VERSION) throw new BadRequestError('invalid_signature', 'unsupported SSH signature version');
  const publicKey = fromSshBlob(r.string());
  const namespace = r.text();
  r.string(); // reserved
  const hashAlg = r.text();
  assertHashAlg(hashAlg);
  const sig = new SshReader(r.string(), 'SSH signature blob');
  r.end();
  if (sig.text() !== KEY_TYPE) throw new BadRequestError('invalid_signature', 'only ssh-ed25519 signatures are supported');
  const signature = sig.string();
  sig.end();
  if (signature.length !== 64) throw new BadRequestError('invalid_signature', 'Ed25519 signature must be 64 bytes');
  assertNamespace(namespace);
  return { publicKey, namespace, hashAlg, signature };
}
