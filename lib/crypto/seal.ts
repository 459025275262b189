/**
 * Sealing to an X25519 public key: ephemeral X25519 + HKDF-SHA256 + AES-256-GCM.
 * Used to hand a share to exactly one recipient (a client or a node), so relays,
 * API Gateway and logs only ever see ciphertext.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { BadRequestError } from '../errors.js';
import { fromB64, toB64 } from '../encoding.js';
import { aesGcmOpen, aesGcmSeal, hkdf, type AeadBox } from './aead.js';

// DER prefixes for raw 32-byte X25519 keys (RFC 8410), so raw keys can cross the wire.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const INFO = 'fedkms/seal/v1';

export interface X25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export interface SealedBox extends AeadBox {
  epk: string;
}

export function generateX25519(): X25519KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return {
    publicKey: new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length)),
    privateKey: new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length)),
  };
}

export function x25519PublicFromPrivate(priv: Uint8Array): Uint8Array {
  return imported(priv).publicKey;
}

/** Parse a recipient key given as base64; the caller's input, so errors are 400s. */
export function parseX25519Public(b64: string, field = 'recipient'): Uint8Array {
  const raw = fromB64(b64, field);
  if (raw.length !== 32) throw new BadRequestError('invalid_recipient', `${field} must be a 32-byte X25519 public key`);
  try {
    // A small-order point (0, 1, the order-8 points, their non-canonical twins) gives an
    // all-zero shared secret: anyone could open what is sealed to it. OpenSSL refuses such
    // a derivation, so one trial exchange with a throw-away key finds them all.
    const shared = diffieHellman({ privateKey: PROBE_KEY, publicKey: pubKeyObject(raw) });
    if (shared.every((b) => b === 0)) throw new Error('small order');
  } catch {
    throw new BadRequestError('invalid_recipient', `${field} is not a valid X25519 public key (small-order or malformed)`);
  }
  return raw;
}

const PROBE_KEY = generateKeyPairSync('x25519').privateKey;

/**
 * A private key imported once per array (not per value: no secret becomes a map key), with
 * its public key: an X25519 import costs more than the exchange itself, and a warm instance
 * opens with the same long-lived key again and again. Callers wipe an ephemeral key's array
 * after its last use; the entry goes when the array is collected.
 */
const importedKeys = new WeakMap<Uint8Array, { key: KeyObject; publicKey: Uint8Array }>();

function imported(raw: Uint8Array): { key: KeyObject; publicKey: Uint8Array } {
  let k = importedKeys.get(raw);
  if (!k) {
    const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
    const publicKey = new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length));
    k = { key, publicKey };
    importedKeys.set(raw, k);
  }
  return k;
}
const pubKeyObject = (raw: Uint8Array) =>
  createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });

function deriveKey(shared: Uint8Array, epk: Uint8Array, recipient: Uint8Array): Uint8Array {
  // A small-order recipient key yields an all-zero secret; refuse rather than encrypt to nobody.
  if (shared.every((b) => b === 0)) throw new BadRequestError('invalid_recipient', 'recipient is a small-order point');
  return hkdf(shared, Buffer.concat([epk, recipient]), INFO);
}

function agree(priv: KeyObject, pub: Uint8Array): Uint8Array {
  try {
    return new Uint8Array(diffieHellman({ privateKey: priv, publicKey: pubKeyObject(pub) }));
  } catch {
    throw new BadRequestError('invalid_recipient', 'recipient is not a usable X25519 public key');
  }
}

export function seal(recipient: Uint8Array, plaintext: Uint8Array, aad: string): SealedBox {
  // The ephemeral key never leaves OpenSSL: no raw copy to export, re-import and wipe.
  const eph = generateKeyPairSync('x25519');
  const ephPublic = new Uint8Array(eph.publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length));
  const key = deriveKey(agree(eph.privateKey, recipient), ephPublic, recipient);
  const box = aesGcmSeal(key, plaintext, aad);
  key.fill(0);
  return { epk: toB64(ephPublic), ...box };
}

export function open(recipientPrivate: Uint8Array, box: SealedBox, aad: string): Uint8Array {
  const me = imported(recipientPrivate);
  const epk = fromB64(box.epk, 'epk');
  const key = deriveKey(agree(me.key, epk), epk, me.publicKey);
  try {
    return aesGcmOpen(key, box, aad);
  } finally {
    key.fill(0);
  }
}
