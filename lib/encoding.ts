/** Strict encoders: reject anything that would not round-trip, so two spellings never name one value. */
import { BadRequestError } from './errors.js';

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const toB64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
export const toB64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

export function fromHex(s: string, field = 'value'): Uint8Array {
  if (typeof s !== 'string' || !HEX.test(s)) throw new BadRequestError('invalid_encoding', `${field} must be even-length hex`);
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function fromB64(s: string, field = 'value'): Uint8Array {
  if (typeof s !== 'string') throw new BadRequestError('invalid_encoding', `${field} must be base64`);
  const url = B64URL.test(s) && !B64.test(s);
  const buf = Buffer.from(s, url ? 'base64url' : 'base64');
  const canonical = url ? buf.toString('base64url') : buf.toString('base64');
  if (canonical !== s && canonical.replace(/=+$/, '') !== s) {
    throw new BadRequestError('invalid_encoding', `${field} must be canonical base64`);
  }
  return new Uint8Array(buf);
}

export const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

/** Overwrite a buffer in place; a best effort, since JS may have copied it. */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}
