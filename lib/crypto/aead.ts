/** AES-256-GCM and HKDF-SHA256 from Node's crypto. Pure: no I/O. */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { fromB64, toB64, utf8 } from '../encoding.js';

/** Serialized AES-GCM box; every field base64. */
export interface AeadBox {
  iv: string;
  ct: string;
  tag: string;
}

export class DecryptError extends Error {
  constructor() {
    super('authenticated decryption failed');
  }
}

/** `iv`: random by default; give one only with a key used for exactly one message. */
export function aesGcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: string, iv: Uint8Array = randomBytes(12)): AeadBox {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(utf8(aad));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv: toB64(iv), ct: toB64(ct), tag: toB64(c.getAuthTag()) };
}

export function aesGcmOpen(key: Uint8Array, box: AeadBox, aad: string): Uint8Array {
  try {
    const iv = fromB64(box.iv, 'iv');
    const tag = fromB64(box.tag, 'tag');
    if (iv.length !== 12 || tag.length !== 16) throw new DecryptError();
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAAD(utf8(aad));
    d.setAuthTag(tag);
    return new Uint8Array(Buffer.concat([d.update(fromB64(box.ct, 'ct')), d.final()]));
  } catch {
    // Any malformed or forged box looks the same to the caller: it does not open.
    throw new DecryptError();
  }
}

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string, length = 32): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, utf8(info), length));
}
