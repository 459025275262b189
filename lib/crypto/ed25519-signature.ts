/**
 * Plain Ed25519 signatures (RFC 8032) for request authentication and statements, through
 * Node's crypto (OpenSSL): about 30 µs to sign and 80 µs to verify, against 0.8 and 1.1 ms
 * for noble's pure-JS code, and a request crosses two or three of them on its critical
 * path. Signatures are byte-for-byte the same as noble's (Ed25519 is deterministic);
 * test/unit/seal-and-signing.test.ts checks both directions. FROST stays with noble.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { BoundedCache } from './bounded-cache.js';

// DER prefixes of a PKCS#8 Ed25519 private key (RFC 8410) and of an SPKI Ed25519 public key.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Parsed public keys by hex: importing one costs about as much as a verification. */
const publicKeys = new BoundedCache<string, KeyObject>(512);

function publicKeyObject(raw: Uint8Array): KeyObject {
  const hex = Buffer.from(raw).toString('hex');
  let k = publicKeys.get(hex);
  if (!k) {
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    publicKeys.set(hex, k);
  }
  return k;
}

/**
 * Imported private keys, by the very array that holds the seed (not by its value, so no
 * secret becomes a map key): importing costs ~15 times the signature itself, and the keys
 * that sign (the coordinator's, a node's, a client's) are long-lived arrays a warm instance
 * reuses. An entry goes when its array is collected.
 */
const privateKeys = new WeakMap<Uint8Array, KeyObject>();

/** Sign with a 32-byte Ed25519 secret key (the RFC 8032 seed, as noble's `ed25519.sign` takes it). */
export function ed25519Sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  if (secretKey.length !== 32) throw new Error('Ed25519 secret key must be 32 bytes');
  let key = privateKeys.get(secretKey);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' });
    privateKeys.set(secretKey, key);
  }
  return new Uint8Array(sign(null, message, key));
}

/** False for a bad signature, and for a malformed key or signature: never throws. */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return verify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/** A fresh key pair: the 32-byte secret key (seed) and the 32-byte public key. */
export function ed25519KeyPair(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey: new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length)),
    publicKey: new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length)),
  };
}

/** The public key of a 32-byte secret key (seed), as a node derives its identity from its stored secret. */
export function ed25519PublicFromPrivate(secretKey: Uint8Array): Uint8Array {
  if (secretKey.length !== 32) throw new Error('Ed25519 secret key must be 32 bytes');
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' });
  return new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length));
}
